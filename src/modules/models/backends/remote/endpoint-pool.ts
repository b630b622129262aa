import { AppError, errors } from "../../../../platform/errors.ts";
import type { CheckResult } from "../../../../platform/health.ts";
import type { RemoteSettings } from "../../registry.ts";
import type { EndpointReport } from "../types.ts";

/** A failure of one remote call; `retryable` false means another endpoint would fail the same way. */
export class RemoteCallError extends Error {
  readonly retryable: boolean;
  readonly kind: "timeout" | "network" | "status" | "invalid_answer" | "remote_error";
  constructor(kind: RemoteCallError["kind"], message: string, retryable = true, cause?: unknown) {
    super(message, { cause });
    this.name = "RemoteCallError";
    this.kind = kind;
    this.retryable = retryable;
  }
}

export interface EndpointState {
  readonly url: string;
  /**
   * A customer's endpoint (`egress` set) as messages name it: "endpoint 2 (https://gpu.example.com)",
   * its position and origin, never its path, which may hold a token (https://host/t/<token>/act).
   * Messages become error details, causes and `lastError`, and those reach the server's logs.
   * Undefined for the operator's endpoints, which messages name by URL (`endpointName`).
   */
  readonly redactedName: string | undefined;
  outstanding: number;
  consecutiveFailures: number;
  /** Circuit open until this time (ms since epoch); 0 = closed. */
  openUntil: number;
  /** A half-open trial request is in flight. */
  trial: boolean;
  /** Last result of an active health probe (true when never probed). */
  probeOk: boolean;
  lastError: string | undefined;
}

/**
 * How a message names `e`: a customer's endpoint by position and origin (`redactedName`), the
 * operator's by its URL followed by `suffix` (the path called, such as "/act").
 */
export function endpointName(e: EndpointState, suffix = ""): string {
  return e.redactedName ?? `${e.url}${suffix}`;
}

/**
 * Several interchangeable endpoints of one remote model: least-outstanding-requests balancing,
 * per-endpoint circuit breakers (open after N consecutive failures, one trial after the
 * cooldown), timeouts, and retry of a failed call on a different endpoint.
 */
export class EndpointPool {
  readonly endpoints: EndpointState[];
  private readonly settings: RemoteSettings;
  private readonly modelId: string;
  private rr = 0;
  private readonly now: () => number;
  /** Aborted by `close`: the calls in flight end at once, and no new attempt starts. */
  private readonly closing = new AbortController();

  constructor(modelId: string, settings: RemoteSettings, now: () => number = Date.now) {
    this.modelId = modelId;
    this.settings = settings;
    this.now = now;
    this.endpoints = settings.endpoints.map((url, i) => ({
      url,
      redactedName: settings.egress === undefined ? undefined : `endpoint ${i + 1} (${new URL(url).origin})`,
      outstanding: 0,
      consecutiveFailures: 0,
      openUntil: 0,
      trial: false,
      probeOk: true,
      lastError: undefined,
    }));
  }

  private available(e: EndpointState, now: number): boolean {
    if (!e.probeOk && e.openUntil === 0) return false;
    if (e.openUntil === 0) return true;
    return now >= e.openUntil && !e.trial; // half-open: one trial at a time
  }

  /** The endpoint with the fewest outstanding requests among those usable, ties round-robin. */
  pick(exclude: ReadonlySet<EndpointState>): EndpointState | undefined {
    const now = this.now();
    const n = this.endpoints.length;
    let best: EndpointState | undefined;
    for (let k = 0; k < n; k++) {
      const e = this.endpoints[(this.rr + k) % n] as EndpointState;
      if (exclude.has(e) || !this.available(e, now)) continue;
      if (best === undefined || e.outstanding < best.outstanding) best = e;
    }
    this.rr = (this.rr + 1) % n;
    if (best !== undefined && best.openUntil !== 0) best.trial = true;
    return best;
  }

  private success(e: EndpointState): void {
    e.consecutiveFailures = 0;
    e.openUntil = 0;
    e.trial = false;
    e.probeOk = true;
    e.lastError = undefined;
  }

  private failure(e: EndpointState, err: unknown): void {
    e.lastError = err instanceof Error ? err.message : String(err);
    e.consecutiveFailures += 1;
    if (e.trial || e.consecutiveFailures >= this.settings.circuit.failureThreshold) {
      e.openUntil = this.now() + this.settings.circuit.cooldownMs;
    }
    e.trial = false;
  }

  /**
   * Runs `fn` on an endpoint, retrying on other endpoints (up to `retries` more) after a
   * retryable failure. Final errors are catalogue errors: model_unavailable, or
   * invalid_model_output when the remote answered with garbage.
   */
  async call<T>(fn: (endpoint: EndpointState, signal: AbortSignal) => Promise<T>): Promise<T> {
    const tried = new Set<EndpointState>();
    let last: unknown;
    let lastEndpoint: EndpointState | undefined;
    for (let attempt = 0; attempt <= this.settings.retries; attempt++) {
      if (this.closing.signal.aborted) throw errors.modelUnavailable(this.modelId, "the model was closed");
      const e = this.pick(tried);
      if (e === undefined) break;
      tried.add(e);
      e.outstanding += 1;
      const timeout = AbortSignal.timeout(this.settings.timeoutMs);
      const signal = AbortSignal.any([timeout, this.closing.signal]);
      try {
        const result = await fn(e, signal);
        this.success(e);
        return result;
      } catch (err) {
        const wrapped =
          err instanceof RemoteCallError || err instanceof AppError
            ? err
            : this.closing.signal.aborted
              ? errors.modelUnavailable(this.modelId, "the model was closed")
              : timeout.aborted
                ? new RemoteCallError(
                    "timeout",
                    `${endpointName(e)} did not answer within ${this.settings.timeoutMs} ms`,
                    true,
                    err,
                  )
                : new RemoteCallError(
                    "network",
                    `${endpointName(e)}: ${err instanceof Error ? err.message : String(err)}`,
                    true,
                    err,
                  );
        last = wrapped;
        lastEndpoint = e;
        const retryable = wrapped instanceof RemoteCallError ? wrapped.retryable : false;
        if (retryable) this.failure(e, wrapped);
        else this.success(e); // the endpoint answered properly; the request itself is at fault
        if (!retryable) break;
      } finally {
        e.outstanding -= 1;
      }
    }
    if (last instanceof AppError) throw last;
    if (last instanceof RemoteCallError) {
      const reason = this.shown(last, lastEndpoint);
      if (last.kind === "invalid_answer") throw errors.invalidModelOutput(reason, last);
      throw errors.modelUnavailable(this.modelId, reason, last);
    }
    throw errors.modelUnavailable(this.modelId, "no endpoint is available (all circuits open or unhealthy)");
  }

  /**
   * The failure as the caller's customer reads it. A customer's own model (`egress` set): all of it,
   * the endpoint is its own (messages name it by position and origin already, `redactedName`). The operator's: its endpoints are internal addresses, so each is named
   * by its position ("endpoint 2") and a network error by its code only (`connect ECONNREFUSED
   * 10.0.3.4:8000` names the address); the whole message stays in the error's cause, for the logs.
   */
  private shown(err: RemoteCallError, endpoint: EndpointState | undefined): string {
    if (this.settings.egress !== undefined) return err.message;
    const position = (e: EndpointState) => `endpoint ${this.endpoints.indexOf(e) + 1}`;
    if (err.kind === "network") {
      const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
      return `${endpoint === undefined ? "an endpoint" : position(endpoint)} could not be reached${code === undefined ? "" : ` (${code})`}`;
    }
    // Longest first: "http://a:80" must not eat the start of "http://a:8000".
    let text = err.message;
    for (const e of [...this.endpoints].sort((a, b) => b.url.length - a.url.length)) {
      text = text.split(`${e.url}/act`).join(position(e)).split(e.url).join(position(e));
    }
    return text;
  }

  /**
   * Ends the calls in flight (their requests fail with model_unavailable) and starts no new one: a
   * closed model must not keep a connection to an endpoint that does not answer for the rest of
   * `timeout_ms` x attempts (a customer's: up to 4 minutes, holding up drain and shutdown).
   */
  close(): void {
    this.closing.abort(new Error("the model was closed"));
  }

  /** Each endpoint's circuit and counters (the deep health route). */
  report(): EndpointReport[] {
    const now = this.now();
    return this.endpoints.map((e) => ({
      url: e.url,
      circuit: e.openUntil === 0 ? "closed" : now < e.openUntil ? "open" : "half_open",
      probe_ok: e.probeOk,
      consecutive_failures: e.consecutiveFailures,
      outstanding: e.outstanding,
      last_error: e.lastError ?? null,
    }));
  }

  /** Circuit-based health: ok when every endpoint is usable, degraded when some are, down when none. */
  health(): CheckResult {
    const now = this.now();
    const usable = this.endpoints.filter(
      (e) =>
        e.probeOk &&
        (e.openUntil === 0 || now >= e.openUntil) &&
        e.consecutiveFailures < this.settings.circuit.failureThreshold,
    );
    const detail = this.endpoints
      .map(
        (e) =>
          `${endpointName(e)} ${e.openUntil > now ? "open" : e.probeOk ? "up" : "down"}${e.lastError ? ` (${e.lastError})` : ""}`,
      )
      .join("; ");
    if (usable.length === this.endpoints.length) return { status: "ok", detail };
    return { status: usable.length === 0 ? "down" : "degraded", detail };
  }
}

/** Reads a response body, refusing more than `max` bytes (remote answers are bounded like user input). */
export async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > max) {
    await res.body?.cancel();
    throw new RemoteCallError("invalid_answer", `answer of ${declared} bytes exceeds the limit of ${max}`);
  }
  if (res.body === null) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new RemoteCallError("invalid_answer", `answer exceeds the limit of ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
