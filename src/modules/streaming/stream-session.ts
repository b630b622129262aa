import { type AppError, isAppError } from "../../platform/errors.ts";
import type { DecodedAction, RunOutput } from "../inference/inference-runner.ts";
import type { FrameMessage, StartMessage } from "./protocol.ts";
import { type DropReason, SessionStats } from "./session-stats.ts";
import { SessionSmoother } from "./smoothing.ts";

/** What a session needs from the outside world; the WebSocket handler and unit tests provide it. */
export interface SessionPorts {
  /** Runs the inference (the InferenceRunner with this session's robot, model and previous action). */
  infer(
    frame: QueuedFrame,
    previousAction: readonly number[] | null,
    postprocess: (decoded: DecodedAction) => DecodedAction,
  ): Promise<RunOutput>;
  send(message: Record<string, unknown>): void;
  /** Bytes queued in the socket's send buffer. */
  bufferedAmount(): number;
  /** Monotonic ms. */
  now(): number;
  /** An unexpected (non-catalogue) failure, for the log. */
  logError(error: unknown): void;
  /** Counts each frame's outcome (metrics). */
  outcome(outcome: "action" | DropReason | "error"): void;
}

export interface SessionLimits {
  readonly sendBufferBytes: number;
  readonly maxMustGoQueue: number;
  /** The tier's frame-rate ceiling (frames per second, bursts up to one second's worth); null: none. */
  readonly maxFps: number | null;
}

export interface QueuedFrame extends FrameMessage {
  /** Monotonic ms when the frame arrived. */
  readonly receivedAt: number;
}

/** Engine answers that mean "no capacity right now": the frame is dropped as overloaded, not an error. */
const OVERLOAD_CODES: readonly string[] = ["model_overloaded", "service_overloaded"];

/**
 * One stream session's scheduler: at most one inference in flight; a newer frame supersedes the
 * one waiting (latest-frame-wins) unless that one is `must_go`, which queue up (bounded) and are
 * always inferred. Frames arriving while the socket's send buffer is above the bound are dropped
 * unanswered (slow consumer). Framework-free: the WebSocket handler feeds it and sends for it.
 */
export class StreamSession {
  readonly id: string;
  readonly settings: StartMessage;
  readonly stats: SessionStats;
  private readonly ports: SessionPorts;
  private readonly limits: SessionLimits;
  private readonly smoother: SessionSmoother;
  private previousAction: number[] | null = null;
  private lastSeq = -1;
  private inFlight = false;
  private pending: QueuedFrame | null = null;
  private readonly mustGo: QueuedFrame[] = [];
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** Frame-rate ceiling: a token bucket of `maxFps` tokens refilled at `maxFps` per second. */
  private fpsTokens: number;
  private fpsAt: number;
  instruction: string | undefined;

  constructor(id: string, settings: StartMessage, ports: SessionPorts, limits: SessionLimits) {
    this.id = id;
    this.settings = settings;
    this.ports = ports;
    this.limits = limits;
    this.instruction = settings.instruction;
    this.stats = new SessionStats(ports.now, settings.targetFps);
    this.smoother = new SessionSmoother(settings.smoothing, settings.chunkAggregation);
    this.fpsTokens = limits.maxFps ?? 0;
    this.fpsAt = ports.now();
  }

  /** Takes one frame's token of the rate ceiling; false when the session sends faster than its tier allows. */
  private withinCeiling(t: number): boolean {
    const max = this.limits.maxFps;
    if (max === null) return true;
    this.fpsTokens = Math.min(max, this.fpsTokens + ((t - this.fpsAt) * max) / 1000);
    this.fpsAt = t;
    if (this.fpsTokens < 1) return false;
    this.fpsTokens -= 1;
    return true;
  }

  /** The last action sent (what safety's acceleration checks compare against). */
  get lastAction(): readonly number[] | null {
    return this.previousAction;
  }

  /**
   * Accepts a parsed frame. Returns "stale_seq" (and does nothing) when the frame is out of
   * order: its seq must grow. Everything else is answered asynchronously.
   */
  submit(frame: FrameMessage): "ok" | "stale_seq" {
    if (this.closed) return "ok";
    if (frame.seq <= this.lastSeq) return "stale_seq";
    this.stats.received++;
    this.lastSeq = frame.seq;
    if (frame.instruction !== undefined) this.instruction = frame.instruction;
    const queued: QueuedFrame = { ...frame, receivedAt: this.ports.now() };
    // Above the tier's frame-rate ceiling: answered at once, never queued or inferred.
    if (!this.withinCeiling(queued.receivedAt)) {
      this.drop(queued, "rate_ceiling", { max_fps: this.limits.maxFps });
      return "ok";
    }
    // Slow consumer: the client is not reading what we send; do not add to its backlog.
    if (this.ports.bufferedAmount() > this.limits.sendBufferBytes) {
      this.stats.recordDrop("overloaded");
      this.ports.outcome("overloaded");
      return "ok";
    }
    if (this.pending !== null) {
      this.drop(this.pending, "superseded");
      this.pending = null;
    }
    if (!this.inFlight) this.start(queued);
    else if (!queued.mustGo) this.pending = queued;
    else if (this.mustGo.length >= this.limits.maxMustGoQueue) this.drop(queued, "overloaded");
    else this.mustGo.push(queued);
    return "ok";
  }

  /** A frame refused before scheduling (invalid, stale seq): counted as received and failed. */
  recordInvalid(): void {
    this.stats.received++;
    this.stats.failed++;
  }

  /** Resolves once nothing is in flight or waiting. */
  idle(): Promise<void> {
    if (!this.inFlight && this.pending === null && this.mustGo.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking frames; the waiting non-must_go frame is dropped (superseded), must_go ones still run. */
  stopAccepting(): void {
    if (this.pending !== null) {
      this.drop(this.pending, "superseded");
      this.pending = null;
    }
    this.closed = true;
  }

  /** The socket is gone: forget whatever waits. */
  abandon(): void {
    this.closed = true;
    this.pending = null;
    this.mustGo.length = 0;
  }

  private drop(frame: QueuedFrame, reason: DropReason, extra: Record<string, unknown> = {}): void {
    this.stats.recordDrop(reason);
    this.ports.outcome(reason);
    this.safeSend({ type: "dropped", seq: frame.seq, reason, ...extra });
  }

  private safeSend(message: Record<string, unknown>): void {
    try {
      this.ports.send(message);
    } catch {
      // The socket closed under us; the close handler cleans up.
    }
  }

  private start(frame: QueuedFrame): void {
    this.inFlight = true;
    void this.process(frame).finally(() => {
      this.inFlight = false;
      const next = this.mustGo.shift() ?? this.pending;
      if (next !== undefined && next !== null) {
        if (next === this.pending) this.pending = null;
        this.start(next);
        return;
      }
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    });
  }

  private async process(frame: QueuedFrame): Promise<void> {
    try {
      const out = await this.ports.infer(frame, this.previousAction, (decoded) =>
        this.smoother.apply(frame.seq, decoded, this.previousAction),
      );
      this.previousAction = [...out.action];
      const totalMs = Math.round((this.ports.now() - frame.receivedAt) * 1000) / 1000;
      this.stats.recordAction(totalMs);
      this.ports.outcome("action");
      this.safeSend({
        type: "action",
        seq: frame.seq,
        inference_id: out.id,
        action: out.action,
        ...(out.actionChunk === undefined ? {} : { action_chunk: out.actionChunk }),
        safety: out.safety,
        timing: {
          preprocess_ms: out.result.timing.preprocess_ms,
          queue_ms: out.result.timing.queue_ms,
          model_ms: out.result.timing.model_ms,
          total_ms: totalMs,
        },
        ...(frame.timestamp === undefined ? {} : { timestamp: frame.timestamp }),
      });
    } catch (e) {
      const err: AppError | undefined = isAppError(e) ? e : undefined;
      if (err !== undefined && OVERLOAD_CODES.includes(err.code)) {
        this.drop(frame, "overloaded");
        return;
      }
      this.stats.failed++;
      this.ports.outcome("error");
      this.safeSend({
        type: "error",
        seq: frame.seq,
        code: err?.code ?? "internal_error",
        message: err?.detail ?? err?.title ?? "An unexpected error occurred.",
        ...(err?.errors === undefined ? {} : { errors: err.errors }),
      });
      if (err === undefined) this.ports.logError(e);
    }
  }
}
