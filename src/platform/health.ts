export type ComponentStatus = "ok" | "degraded" | "down" | "disabled";

export interface CheckResult {
  readonly status: ComponentStatus;
  readonly detail?: string;
}

export interface ComponentReport extends CheckResult {
  readonly latency_ms: number;
}

interface Registered {
  readonly check: () => Promise<CheckResult>;
  /** A critical component that is down makes the whole service `down` (HTTP 503). */
  readonly critical: boolean;
}

/**
 * Components register a check; `/health` runs them all concurrently, each bounded by a
 * timeout, and folds them into ok / degraded / down.
 */
export class HealthRegistry {
  private readonly checks = new Map<string, Registered>();
  private readonly timeoutMs: number;

  constructor(timeoutMs = 2_000) {
    this.timeoutMs = timeoutMs;
  }

  register(name: string, check: () => Promise<CheckResult>, options: { critical?: boolean } = {}): void {
    this.checks.set(name, { check, critical: options.critical ?? false });
  }

  async run(): Promise<{ status: "ok" | "degraded" | "down"; checks: Record<string, ComponentReport> }> {
    const entries = [...this.checks.entries()];
    const reports = await Promise.all(entries.map(([, r]) => this.runOne(r)));
    const checks: Record<string, ComponentReport> = {};
    let status: "ok" | "degraded" | "down" = "ok";
    entries.forEach(([name, r], i) => {
      const report = reports[i] as ComponentReport;
      checks[name] = report;
      if (report.status === "down" && r.critical) status = "down";
      else if ((report.status === "down" || report.status === "degraded") && status === "ok") status = "degraded";
    });
    return { status, checks };
  }

  private async runOne(r: Registered): Promise<ComponentReport> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        r.check(),
        new Promise<CheckResult>((resolve) => {
          timer = setTimeout(
            () => resolve({ status: "down", detail: `no answer within ${this.timeoutMs} ms` }),
            this.timeoutMs,
          );
        }),
      ]);
      return { ...result, latency_ms: round(performance.now() - started) };
    } catch (e) {
      return {
        status: "down",
        detail: e instanceof Error ? e.message : String(e),
        latency_ms: round(performance.now() - started),
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
