import type { FastifyRequest } from "fastify";
import type { RawData, WebSocket } from "ws";
import { type AppError, errors, isAppError } from "../../platform/errors.ts";
import { MAX_INSTRUCTION_CHARS } from "../inference/inference.service.ts";
import type { RunInput } from "../inference/inference-runner.ts";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../inference/msgpack-numpy.ts";
import { isNdArray, type NdArray } from "../inference/ndarray.ts";
import { streamTimeError } from "../rate-limit/stream-time.ts";
import type { SafetyResult } from "../safety/types.ts";
import type { StreamConnection } from "./connections.ts";
import type { OpenpiAdmission } from "./openpi-admission.ts";
import { CLOSE, closeReason } from "./protocol.ts";
import { SessionTime } from "./session-time.ts";
import { invalidCharacter, nulProblems } from "./text-guard.ts";
import { describeError, type StreamDeps } from "./ws-common.ts";

/** Where openpi clients put the main camera, in order of preference (reference section 6). */
export const OPENPI_IMAGE_KEYS = [
  "observation/image",
  "observation/exterior_image_1_left",
  "observation/images/image",
  "observation.images.image",
  "observation.image",
  "image",
] as const;

/** Messages that may wait behind the observation in flight; the stock client sends one at a time. */
const MAX_BACKLOG = 4;

const toBuffer = (data: RawData): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);

/** A uint8 (3, H, W) array (ALOHA-style channel-first) as (H, W, 3); anything else unchanged. */
export function toChannelLast(a: NdArray): NdArray {
  const [c, h, w] = a.shape;
  if (a.shape.length !== 3 || c !== 3 || h === undefined || w === undefined || w === 3 || a.dtype !== "|u1") return a;
  const src = a.data as Uint8Array;
  const out = new Uint8Array(src.length);
  const plane = h * w;
  for (let p = 0; p < plane; p++) {
    out[p * 3] = src[p] as number;
    out[p * 3 + 1] = src[plane + p] as number;
    out[p * 3 + 2] = src[2 * plane + p] as number;
  }
  return { dtype: "|u1", shape: [h, w, 3], data: out };
}

function imageValue(v: unknown, key: string): RunInput["image"] {
  if (v instanceof Uint8Array) return { imageBytes: v };
  if (isNdArray(v)) return { imageArray: toChannelLast(v) };
  throw errors.invalidImage(`${key} must be a uint8 HxWx3 (or 3xHxW) ndarray or encoded image bytes.`);
}

/** Finds the main camera image of an observation: the usual keys, then `images/<first camera>`, then any *image* key. */
export function findImage(obs: Record<string, unknown>): RunInput["image"] {
  for (const k of OPENPI_IMAGE_KEYS) if (obs[k] !== undefined) return imageValue(obs[k], k);
  const images = obs.images;
  if (images !== null && typeof images === "object" && !isNdArray(images) && !(images instanceof Uint8Array)) {
    const cams = images as Record<string, unknown>;
    const first = cams.cam_high !== undefined ? "cam_high" : Object.keys(cams)[0];
    if (first !== undefined) return imageValue(cams[first], `images/${first}`);
  }
  const candidates = Object.keys(obs)
    .filter((k) => k.toLowerCase().includes("image") && !k.toLowerCase().includes("wrist"))
    .sort();
  const k = candidates[0];
  if (k !== undefined) return imageValue(obs[k], k);
  throw errors.invalidImage(`No image in the observation; put it under one of ${OPENPI_IMAGE_KEYS.join(", ")}.`);
}

function invalidObservation(path: string, message: string): AppError {
  return errors.validation([{ in: "body", path, message }], "The observation is invalid.");
}

/** The prompt as str or bytes (UTF-8); problems name `/prompt`. */
export function promptOf(obs: Record<string, unknown>): string {
  const p = obs.prompt;
  if (p === undefined || p === null) throw invalidObservation("/prompt", "is required (str or bytes)");
  const text = typeof p === "string" ? p : p instanceof Uint8Array ? Buffer.from(p).toString("utf8") : undefined;
  if (text === undefined) throw invalidObservation("/prompt", "must be str or bytes");
  if (text.trim() === "") throw invalidObservation("/prompt", "must not be empty");
  if (text.length > MAX_INSTRUCTION_CHARS) {
    throw invalidObservation("/prompt", `must be at most ${MAX_INSTRUCTION_CHARS} characters`);
  }
  // Bytes are not scanned with the rest of the observation: check the decoded text.
  const nul = nulProblems(text, "/prompt");
  if (nul.length > 0) throw invalidCharacter(nul, "The observation");
  return text;
}

/** The safety verdict in an openpi reply (the stock client hands unknown keys to the caller). */
export function openpiSafety(safety: SafetyResult): Record<string, unknown> {
  return {
    status: safety.status,
    action_taken: safety.action_taken,
    violations: safety.violations.map((v) => ({ rule: v.type, severity: v.severity })),
  };
}

/**
 * openpi's error text, `code: detail`, with the field problems spelled out: the stock client
 * raises it as a RuntimeError, and nothing else of the error reaches the user.
 */
export function openpiErrorText(e: unknown): string {
  const { code, message } = describeError(e);
  const fields = isAppError(e) ? (e.errors ?? []) : [];
  if (fields.length === 0) return `${code}: ${message}`;
  const list = fields.map((f) => `${f.path === "" ? "the observation" : f.path} ${f.message}`).join("; ");
  return `${code}: ${message} (${list})`;
}

/**
 * One `WS /v1/openpi` connection, behaving like openpi's WebsocketPolicyServer: a msgpack
 * metadata frame on connect, then one msgpack reply per observation; any error is a text frame
 * followed by close 1011. Authentication, the model and the session slot were settled on the
 * upgrade request (openpi-admission.ts). Unlike openpi, inference runs in the shared engine, so
 * one client's inference never blocks another connection.
 */
export class OpenpiConnection implements StreamConnection {
  readonly socket: WebSocket;
  alive = true;
  private readonly request: FastifyRequest;
  private readonly deps: StreamDeps;
  private readonly admission: OpenpiAdmission;
  private started = false;
  private closing = false;
  private busy: Promise<void> = Promise.resolve();
  private backlog = 0;
  /** openpi's prev_total_ms: from waiting for an observation to having sent its reply. */
  private loopStart = performance.now();
  private fpsTokens = 0;
  private fpsAt: number | undefined;
  private prevTotalMs: number | undefined;
  private time: SessionTime | undefined;
  private timeTimer: NodeJS.Timeout | undefined;
  /** Closes a connection that sends nothing for OPENPI_IDLE_TIMEOUT_MS (it holds a session slot); none when 0. */
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(socket: WebSocket, request: FastifyRequest, deps: StreamDeps, admission: OpenpiAdmission) {
    this.socket = socket;
    this.request = request;
    this.deps = deps;
    this.admission = admission;
  }

  open(): void {
    this.deps.registry.add(this);
    this.socket.on("pong", () => {
      this.alive = true;
    });
    this.socket.on("close", (code) => this.cleanup(code));
    const idleMs = this.deps.platform.config.stream.openpiIdleTimeoutMs;
    if (idleMs > 0) this.idleTimer = setTimeout(() => this.onIdle(), idleMs);
    this.socket.on("message", (data, isBinary) => {
      if (this.closing) return;
      this.touch();
      if (++this.backlog > MAX_BACKLOG) {
        this.fail(errors.badRequest("Send one observation at a time and wait for its reply."), CLOSE.policyViolation);
        return;
      }
      this.run(() => this.onObservation(toBuffer(data), isBinary));
    });
    this.begin();
  }

  private run(task: () => Promise<void>): void {
    this.busy = this.busy
      .then(async () => {
        if (!this.closing) await task();
      })
      .catch((e: unknown) => {
        if (!isAppError(e)) this.request.log.error({ err: e }, "openpi connection failed");
        this.fail(e, CLOSE.internalError);
      })
      // Idle counts from the reply too: a slow answer does not eat into the client's next wait.
      .finally(() => this.touch());
  }

  private touch(): void {
    if (!this.closing) this.idleTimer?.refresh();
  }

  /**
   * No observation for OPENPI_IDLE_TIMEOUT_MS: close 1000 `idle_timeout`, which frees the session
   * slot and ends the stream-time charge. Not an error, so no text frame (like the shutdown's
   * 1001); pings do not count, since the client's WebSocket library answers them on its own.
   */
  private onIdle(): void {
    if (this.closing) return;
    if (this.backlog > 0) {
      // An observation is still being answered: the client is waiting, not idle.
      this.idleTimer?.refresh();
      return;
    }
    this.closing = true;
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(CLOSE.normal, "idle_timeout");
  }

  /** openpi's error convention: the message as a text frame, then the close. */
  private fail(e: unknown, code: number): void {
    if (this.closing) return;
    this.closing = true;
    if (this.socket.readyState === this.socket.OPEN) {
      this.socket.send(openpiErrorText(e));
      this.socket.close(code, closeReason(describeError(e).code));
    }
  }

  private begin(): void {
    const { platform, metrics } = this.deps;
    const { principal, model, unnormKey, unnormKeySource } = this.admission;
    if (platform.lifecycle.isShuttingDown) {
      // Admitted just before the shutdown began.
      metrics.rejected.inc({ endpoint: "openpi", reason: "shutting_down" });
      this.fail(errors.shuttingDown(), CLOSE.goingAway);
      return;
    }
    this.started = true;
    this.time = new SessionTime(
      platform.limits.streamTime,
      principal.customerId,
      platform.now,
      this.admission.streamTime,
    );
    this.scheduleCharge();
    metrics.sessions.inc({ endpoint: "openpi" });
    this.request.log.info(
      { customer_id: principal.customerId, robot_id: this.admission.robotId, model: model.id },
      "openpi session started",
    );
    this.socket.send(
      packMsgpackNumpy({
        server: "vla-inference-api",
        model: model.id,
        backend: model.backend,
        action_dim: model.action.dim,
        action_horizon: model.action.chunk,
        unnorm_key: unnormKey,
        unnorm_key_source: unnormKeySource,
        unnorm_keys: model.unnorm_keys,
        idle_timeout_ms:
          platform.config.stream.openpiIdleTimeoutMs === 0 ? null : platform.config.stream.openpiIdleTimeoutMs,
        ...(this.admission.experiment === undefined
          ? {}
          : { experiment: { id: this.admission.experiment.id, variant: this.admission.experiment.variant } }),
      }),
    );
    this.loopStart = performance.now();
  }

  private async onObservation(data: Buffer, isBinary: boolean): Promise<void> {
    const { principal, model, unnormKey } = this.admission;
    const { platform, runner, metrics } = this.deps;
    const started = performance.now();
    const ctx = { principal, source: "openpi" as const, elapsedMs: () => performance.now() - started };
    let input: RunInput;
    try {
      if (!isBinary) throw errors.badRequest("Observations are binary msgpack frames (openpi-client).");
      const limits = platform.config.models;
      const obs = unpackMsgpackNumpy(data, { limits: { maxBytes: limits.imageMaxPixels * 3 * 4, maxDims: 4 } });
      if (
        obs === null ||
        typeof obs !== "object" ||
        Array.isArray(obs) ||
        obs instanceof Uint8Array ||
        isNdArray(obs)
      ) {
        throw errors.badRequest("An observation must be a msgpack map.");
      }
      const o = obs as Record<string, unknown>;
      const nul = nulProblems(o);
      if (nul.length > 0) throw invalidCharacter(nul, "The observation");
      if (o.__ctrl__ !== undefined) {
        this.acknowledge(o.__ctrl__);
        return;
      }
      input = {
        model: model.id,
        experiment: this.admission.experiment,
        unnormKey,
        instruction: promptOf(o),
        robotId: this.admission.robotId,
        image: findImage(o),
      };
    } catch (e) {
      this.backlog--;
      // U+0000 is refused without a log row, like on the native stream.
      if (isAppError(e) && e.code !== "invalid_character") {
        runner.recordFailure(
          ctx,
          { model: model.id, robotId: this.admission.robotId, experiment: this.admission.experiment },
          e.code,
        );
      }
      metrics.frames.inc({ endpoint: "openpi", outcome: "error" });
      throw e;
    }
    await this.pace();
    let out: Awaited<ReturnType<typeof runner.run>>;
    try {
      out = await runner.run(ctx, input);
    } catch (e) {
      this.backlog--;
      metrics.frames.inc({ endpoint: "openpi", outcome: "error" });
      throw e as AppError;
    }
    const chunk = out.actionChunk ?? [out.action];
    const dim = chunk[0]?.length ?? 0;
    const flat = new Float32Array(chunk.length * dim);
    chunk.forEach((step, i) => {
      flat.set(step, i * dim);
    });
    const timing = out.result.timing;
    const reply = packMsgpackNumpy({
      actions: { data: flat, shape: [chunk.length, dim] },
      policy_timing: { infer_ms: timing.model_ms },
      server_timing: {
        // Upstream times `policy.infer` (input transforms + model) and has no queue: the wait for
        // the shared model queue is reported beside it, not hidden in it.
        infer_ms: Math.round((timing.preprocess_ms + timing.model_ms) * 1000) / 1000,
        queue_ms: timing.queue_ms,
        ...(this.prevTotalMs === undefined ? {} : { prev_total_ms: this.prevTotalMs }),
      },
      safety: openpiSafety(out.safety),
      inference_id: out.id,
    });
    this.backlog--;
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(reply);
    metrics.frames.inc({ endpoint: "openpi", outcome: "action" });
    const now = performance.now();
    this.prevTotalMs = now - this.loopStart;
    this.loopStart = now;
  }

  /**
   * Newer openpi clients send `{"__ctrl__": "episode_start" | "episode_end", ...}` around
   * episodes; the reference server answers `{"__ack__": <ctrl>}` (`"ignored"` for anything else)
   * without inference. Not metered, not logged.
   */
  private acknowledge(ctrl: unknown): void {
    this.backlog--;
    const ack = ctrl === "episode_start" || ctrl === "episode_end" ? ctrl : "ignored";
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(packMsgpackNumpy({ __ack__: ack }));
    this.loopStart = performance.now();
  }

  /**
   * The tier's frame-rate ceiling (a token bucket, bursts up to one second's worth). openpi's
   * protocol has no `dropped` reply and its client waits for each answer, so an observation over
   * the ceiling is held until it fits instead: a faster loop is slowed to the ceiling.
   */
  private async pace(): Promise<void> {
    const max = this.admission.streamTime.allowance.maxFps;
    if (max === null) return;
    const refill = () => {
      const t = performance.now();
      this.fpsTokens = this.fpsAt === undefined ? max : Math.min(max, this.fpsTokens + ((t - this.fpsAt) * max) / 1000);
      this.fpsAt = t;
    };
    refill();
    if (this.fpsTokens < 1) {
      await new Promise((r) => setTimeout(r, Math.ceil(((1 - this.fpsTokens) * 1000) / max)));
      refill();
    }
    this.fpsTokens = Math.max(0, this.fpsTokens - 1);
  }

  pushStats(): void {}

  async chargeTime(): Promise<void> {
    const time = this.time;
    if (time === undefined || this.closing) return;
    await time.charge();
    if (time.exhausted().length > 0) {
      // openpi's error convention: the text frame (the stock client raises it as an error), then close 4429.
      this.fail(streamTimeError(time.last), CLOSE.streamTimeExhausted);
      return;
    }
    this.scheduleCharge();
  }

  /** When less than a heartbeat is left, charges again the moment it runs out. */
  private scheduleCharge(): void {
    const left = this.time?.leftMs() ?? null;
    clearTimeout(this.timeTimer);
    if (left === null || left >= this.deps.platform.config.stream.heartbeatMs) return;
    this.timeTimer = setTimeout(() => void this.chargeTime().catch(() => {}), Math.max(1, left)).unref();
  }

  customerId(): string | undefined {
    return this.admission.principal.customerId;
  }

  /** openpi's error convention: the text frame `customer_suspended: ...`, then close 4403. */
  revoke(e: AppError): void {
    if (this.closing) return;
    this.fail(e, CLOSE.customerSuspended);
  }

  async shutdown(): Promise<void> {
    // Let the observation in flight be answered, then go away.
    const inFlight = this.busy;
    this.closing = true;
    await inFlight;
    // The last stretch of session time, before the usage counters' final flush.
    clearTimeout(this.timeTimer);
    clearTimeout(this.idleTimer);
    await this.time?.end().catch(() => undefined);
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(CLOSE.goingAway, "server_shutdown");
  }

  private cleanup(code: number): void {
    this.closing = true;
    clearTimeout(this.timeTimer);
    clearTimeout(this.idleTimer);
    void this.time?.end().catch((err: unknown) => this.request.log.warn({ err }, "stream time charge failed"));
    this.deps.registry.delete(this);
    this.admission.slot.release();
    if (this.started) {
      this.started = false;
      this.request.log.info({ close_code: code, model: this.admission.model.id }, "openpi session ended");
      this.deps.metrics.sessions.dec({ endpoint: "openpi" });
    }
  }
}
