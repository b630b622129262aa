import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { repoRoot, run, tool } from "./tools.ts";

// `haproxy -c` only parses the configuration; it connects nowhere, and `init-addr none` lets it
// accept the compose service names without resolving them.
const haproxy = tool("haproxy", "haproxy");

const read = (p: string) => readFileSync(path.join(repoRoot, p), "utf8");
const HAPROXY_CFG = "deploy/haproxy/haproxy.cfg";

/** `server <name> <host>:<port>` lines of a backend. */
function backendServers(cfg: string, backend: string): { name: string; host: string; port: number }[] {
  const section = cfg.split(new RegExp(`^backend ${backend}\\s*$`, "m"))[1]?.split(/^\S/m)[0] ?? "";
  return [...section.matchAll(/^\s+server\s+(\S+)\s+([^:\s]+):(\d+)/gm)].map((m) => ({
    name: m[1] as string,
    host: m[2] as string,
    port: Number(m[3]),
  }));
}

/** Duration of a `timeout <name>` line in milliseconds (HAProxy units: ms, s, m, h, d). */
function timeoutMs(cfg: string, name: string): number {
  const m = new RegExp(`^\\s*timeout ${name}\\s+(\\d+)(ms|s|m|h|d)?\\s*$`, "m").exec(cfg);
  if (m === null) throw new Error(`no "timeout ${name}" in ${HAPROXY_CFG}`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "ms") as "ms"];
  return Number(m[1]) * unit;
}

describe.skipIf(haproxy.skip)("HAProxy configuration (haproxy -c)", () => {
  it(`haproxy -c -f ${HAPROXY_CFG}`, () => {
    const r = run(haproxy.require(), ["-c", "-f", HAPROXY_CFG]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/Configuration file is valid/);
  });
});

describe("compose stack: HAProxy, API instances and Prometheus agree", () => {
  const cfg = read(HAPROXY_CFG);
  const compose = read("deploy/compose.yaml");
  const servers = backendServers(cfg, "api");

  it("HAProxy balances over every API service of compose.yaml, on the app's PORT", () => {
    const apiServices = [...compose.matchAll(/^ {2}(api\d+):\s*$/gm)].map((m) => m[1]);
    expect(apiServices).toEqual(["api1", "api2"]);
    expect(servers.map((s) => s.host)).toEqual(apiServices);
    const port = Number(/^\s+PORT:\s*"?(\d+)"?\s*$/m.exec(compose)?.[1]);
    for (const s of servers) expect(s.port).toBe(port);
  });

  it("health checks on /health, without DNS at check time, and WebSocket-friendly timeouts", () => {
    expect(cfg).toMatch(/^\s+option httpchk\s*$/m);
    expect(cfg).toMatch(/^\s+http-check send meth GET uri \/health\b/m);
    expect(cfg).toMatch(/^\s+default-server .*\bcheck\b.*\binit-addr none\b/m);
    // Upgraded stream sockets idle between frames; the server pings every STREAM_HEARTBEAT_MS (15 s).
    expect(timeoutMs(cfg, "tunnel")).toBeGreaterThanOrEqual(4 * 15_000);
    // Idle keep-alive connections end on HAProxy's side before the app's KEEP_ALIVE_TIMEOUT_MS (72 s).
    expect(timeoutMs(cfg, "http-keep-alive")).toBeLessThan(72_000);
    // /metrics stays internal.
    expect(cfg).toMatch(/http-request deny .* if \{ path \/metrics \}/);
  });

  it("Prometheus scrapes /metrics of every API instance", () => {
    const prom = read("deploy/prometheus/prometheus.yml");
    const job = prom.split(/job_name:\s*vla-api/)[1]?.split(/job_name:/)[0] ?? "";
    const targets = [...job.matchAll(/"([^"]+:\d+)"/g)].map((m) => m[1]);
    expect(targets.sort()).toEqual(servers.map((s) => `${s.host}:${s.port}`).sort());
    expect(job).toMatch(/metrics_path:\s*\/metrics/);
  });

  it("the API containers get more than SHUTDOWN_TIMEOUT_MS to stop", () => {
    const shutdownMs = Number(/^\s+SHUTDOWN_TIMEOUT_MS:\s*"?(\d+)"?\s*$/m.exec(compose)?.[1]);
    const grace = /^\s+stop_grace_period:\s*(\d+)s\s*$/m.exec(compose);
    expect(shutdownMs).toBeGreaterThan(0);
    expect(Number(grace?.[1]) * 1000).toBeGreaterThan(shutdownMs);
  });
});

describe("a missing tool", () => {
  const saved = process.env.CI;
  afterEach(() => {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
    vi.restoreAllMocks();
  });

  it("is skipped with a note outside CI, and fails naming the Debian package in CI", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    delete process.env.CI;
    const local = tool("no-such-tool-vla-test", "some-debian-package");
    expect(local.skip).toBe(true);
    expect(warn.mock.calls[0]?.[0]).toMatch(/apt-get install -y some-debian-package/);

    process.env.CI = "true";
    const ci = tool("no-such-tool-vla-test", "some-debian-package");
    expect(ci.skip).toBe(false);
    expect(() => ci.require()).toThrow(
      /no-such-tool-vla-test is not installed: apt-get install -y some-debian-package/,
    );
  });
});
