import { randomUUID } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { RawData, WebSocket } from "ws";
import type { Principal } from "../../platform/auth.ts";
import { AppError, errors, isAppError } from "../../platform/errors.ts";
import { experimentServices } from "../experiments/experiments.module.ts";
import type { CallContext, ExperimentAssignment, RunOutput } from "../inference/inference-runner.ts";
import { withKeyDefaults } from "../inference/key-defaults.ts";
import { streamExhausted, streamTimeError } from "../rate-limit/stream-time.ts";
import type { StreamConnection } from "./connections.ts";
import {
  CLOSE,
  closeReason,
  decodeEnvelope,
  type Encoding,
  encode,
  type ParseLimits,
  ProtocolViolation,
  parseAuth,
  parseBare,
  parseFrame,
  parseStart,
  type StartMessage,
  seqOf,
} from "./protocol.ts";
import { SessionTime } from "./session-time.ts";
import { StreamSession } from "./stream-session.ts";
import { describeError, type StreamDeps, upgradeCredential, verifyPrincipal } from "./ws-common.ts";

const toBuffer = (data: RawData): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);

/**
 * One `WS /v1/stream` connection: authentication (headers, or a first `auth` message within the
 * deadline), the session slot, message dispatch in arrival order, idle timeout, and the
 * StreamSession that schedules frames. docs/streaming.md describes the protocol.
 */
export class NativeStreamConnection implements StreamConnection {
  readonly socket: WebSocket;
  alive = true;
  private readonly request: FastifyRequest;
  private readonly deps: StreamDeps;
  private readonly limits: ParseLimits;
  private encoding: Encoding | undefined;
  private principal: Principal | undefined;
  /** The session slot this connection holds (see ConnectionRegistry.acquire). */
  private slot: string | undefined;
  private session: StreamSession | undefined;
  /** The split experiment that chose the session's model (its frames' log rows name it). */
  private experiment: ExperimentAssignment | undefined;
  /** The session's running charge of the customer's stream time (from `start`). */
  private time: SessionTime | undefined;
  private timeTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private closing = false;
  private chain: Promise<void> = Promise.resolve();
  private authTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(socket: WebSocket, request: FastifyRequest, deps: StreamDeps) {
    this.socket = socket;
    this.request = request;
    this.deps = deps;
    const models = deps.platform.config.models;
    this.limits = { imageMaxBytes: models.imageMaxBytes, imageMaxPixels: models.imageMaxPixels };
  }

  open(): void {
    const { registry } = this.deps;
    const cfg = this.deps.platform.config.stream;
    registry.add(this);
    this.socket.on("pong", () => {
      this.alive = true;
    });
    this.socket.on("message", (data, isBinary) => {
      this.touch();
      this.enqueue(() => this.onMessage(toBuffer(data), isBinary));
    });
    this.socket.on("close", (code) => this.cleanup(code));
    this.idleTimer = setTimeout(() => this.enqueue(() => this.finish("idle_timeout", CLOSE.normal)), cfg.idleTimeoutMs);
    if (this.deps.platform.lifecycle.isShuttingDown) {
      this.reject("shutting_down", errors.shuttingDown(), CLOSE.goingAway);
      return;
    }
    const credential = upgradeCredential(this.request);
    if (credential instanceof AppError)
      this.enqueue(async () => this.reject("auth", credential, CLOSE.policyViolation));
    else if (credential !== undefined)
      this.enqueue(() =>
        this.authenticate(
          () => this.deps.verified.get(this.request) ?? verifyPrincipal(this.deps.platform, credential, this.request),
          false,
        ),
      );
    else {
      this.authTimer = setTimeout(() => {
        if (this.principal === undefined) {
          this.reject("auth", errors.unauthorized("No auth message within the deadline."), CLOSE.policyViolation);
        }
      }, cfg.authTimeoutMs);
    }
  }

  private enqueue(task: () => Promise<void> | void): void {
    this.chain = this.chain.then(task).catch((e: unknown) => this.onFailure(e));
  }

  private touch(): void {
    this.idleTimer?.refresh();
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(encode(message, this.encoding ?? "json"));
  }

  private close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.close(code, closeReason(reason));
  }

  private sendError(e: unknown, seq?: number): void {
    const { code, message } = describeError(e);
    this.send({
      type: "error",
      ...(seq === undefined ? {} : { seq }),
      code,
      message,
      ...(isAppError(e) && e.errors !== undefined ? { errors: e.errors } : {}),
    });
  }

  /** An error message, then the close (auth failures, session limit, shutdown). */
  private reject(reason: string, e: AppError, closeCode: number): void {
    this.deps.metrics.rejected.inc({ endpoint: "stream", reason });
    this.sendError(e);
    this.close(closeCode, `${e.code}: ${e.detail ?? e.title}`);
  }

  private onFailure(e: unknown): void {
    if (e instanceof ProtocolViolation) {
      this.close(e.closeCode, e.message);
      return;
    }
    if (isAppError(e) && e.status < 500) {
      // A malformed stats/stop message: recoverable, like a bad frame.
      this.sendError(e);
      return;
    }
    this.request.log.error({ err: e }, "stream connection failed");
    this.sendError(e);
    this.close(CLOSE.internalError, "internal_error");
  }

  private async authenticate(verify: () => Promise<Principal>, viaMessage: boolean): Promise<void> {
    let principal: Principal;
    try {
      principal = await verify();
    } catch (e) {
      this.reject("auth", isAppError(e) ? e : errors.unauthorized(), CLOSE.policyViolation);
      return;
    }
    clearTimeout(this.authTimer);
    if (this.closing) return;
    const { registry, metrics, platform } = this.deps;
    const time = await platform.limits.streamTime.peek(principal.customerId);
    if (this.closing) return;
    if (streamExhausted(time).length > 0) {
      this.reject("stream_time", streamTimeError(time), CLOSE.streamTimeExhausted);
      return;
    }
    const slot = await registry.acquire(principal.customerId, principal.tier);
    if (this.closing) {
      // The client left while the slot was being taken.
      if (slot !== undefined) registry.release(principal.customerId, slot);
      return;
    }
    if (slot === undefined) {
      this.reject(
        "too_many_sessions",
        errors.tooManySessions(registry.limitFor(principal.tier)),
        CLOSE.policyViolation,
      );
      return;
    }
    this.slot = slot;
    this.principal = principal;
    metrics.sessions.inc({ endpoint: "stream" });
    // Only an auth message is answered; header-authenticated clients just send start.
    if (viaMessage) this.send({ type: "authenticated" });
  }

  private async onMessage(data: Buffer, isBinary: boolean): Promise<void> {
    if (this.closing) return;
    const o = decodeEnvelope(data, isBinary, this.limits);
    this.encoding ??= isBinary ? "msgpack" : "json";
    const type = o.type as string;
    if (type === "auth") {
      if (this.principal !== undefined || this.authTimer === undefined) {
        throw new ProtocolViolation(CLOSE.protocolError, "already authenticated");
      }
      let key: string;
      try {
        key = parseAuth(o).apiKey;
      } catch (e) {
        this.reject("auth", e as AppError, CLOSE.policyViolation);
        return;
      }
      await this.authenticate(
        () => verifyPrincipal(this.deps.platform, { kind: "api_key", key, via: "api-key" }, this.request),
        true,
      );
      return;
    }
    if (this.principal === undefined) {
      this.reject("auth", errors.unauthorized("Authenticate first: send an auth message."), CLOSE.policyViolation);
      return;
    }
    switch (type) {
      case "start":
        return this.onStart(o, this.principal);
      case "frame":
        return this.onFrame(o, this.principal);
      case "stats":
        parseBare(o, "stats");
        if (this.session === undefined) throw new ProtocolViolation(CLOSE.protocolError, "stats before start");
        this.send(this.statsMessage(this.session));
        return;
      case "stop":
        parseBare(o, "stop");
        return this.finish("client_stop", CLOSE.normal);
      default:
        throw new ProtocolViolation(CLOSE.unsupportedData, closeReason(`unknown message type ${JSON.stringify(type)}`));
    }
  }

  private async onStart(o: Record<string, unknown>, principal: Principal): Promise<void> {
    if (this.session !== undefined) throw new ProtocolViolation(CLOSE.protocolError, "session already started");
    let start: StartMessage;
    let model: ReturnType<StreamDeps["platform"]["engine"]["describe"]>;
    let unnormKey: string;
    let experiment: ExperimentAssignment | undefined;
    try {
      const asked = parseStart(o);
      // The API key's defaults fill what the start message leaves out; its robot binds (403 robot_mismatch).
      const engine = this.deps.platform.engine;
      let target = withKeyDefaults(principal, asked, engine.defaultModel);
      // Neither the start message nor the key names a model: a running split experiment picks it
      // once for the session (docs/experiments.md); every frame is logged with that variant.
      if (target.model === undefined) {
        experiment = await experimentServices.get(this.deps.platform)?.assignment(principal, target.robotId);
        if (experiment !== undefined) {
          target = withKeyDefaults(principal, { ...asked, model: experiment.model }, engine.defaultModel);
        }
      }
      if (target.robotId === undefined) {
        throw errors.validation(
          [{ in: "body", path: "/robot_id", message: "is required (this API key is not bound to a robot)" }],
          "The start message is invalid.",
        );
      }
      start = { ...asked, ...target };
      model = engine.describe(start.model ?? engine.defaultModel, principal);
      unnormKey = resolveUnnormKey(start.unnormKey, model.unnorm_keys, model.default_unnorm_key);
    } catch (e) {
      this.sendError(e);
      return;
    }
    const { platform, runner, metrics } = this.deps;
    const cfg = platform.config.stream;
    const settings: StartMessage = { ...start, model: model.id, unnormKey };
    this.experiment = experiment;
    const admitted = await platform.limits.streamTime.peek(principal.customerId);
    if (this.closing) return;
    if (streamExhausted(admitted).length > 0) {
      this.reject("stream_time", streamTimeError(admitted), CLOSE.streamTimeExhausted);
      return;
    }
    const allowance = admitted.allowance;
    const session: StreamSession = new StreamSession(
      randomUUID(),
      settings,
      {
        infer: (frame, previousAction, postprocess): Promise<RunOutput> => {
          const ctx: CallContext = {
            principal,
            source: "stream",
            elapsedMs: () => performance.now() - frame.receivedAt,
          };
          return runner.run(ctx, {
            model: settings.model,
            unnormKey,
            instruction: frame.instruction ?? session.instruction ?? "",
            robotId: settings.robotId,
            image: frame.image,
            robotState: frame.robotState,
            previousAction,
            postprocess,
            experiment,
          });
        },
        send: (m) => this.send(m),
        bufferedAmount: () => this.socket.bufferedAmount,
        now: () => performance.now(),
        outcome: (outcome) => metrics.frames.inc({ endpoint: "stream", outcome }),
        logError: (err) => this.request.log.error({ err }, "stream frame failed"),
      },
      { sendBufferBytes: cfg.sendBufferBytes, maxMustGoQueue: cfg.maxMustGoQueue, maxFps: allowance.maxFps },
    );
    this.session = session;
    this.time = new SessionTime(platform.limits.streamTime, principal.customerId, platform.now, admitted);
    this.scheduleCharge();
    this.request.log.info(
      { session_id: session.id, customer_id: principal.customerId, robot_id: settings.robotId, model: model.id },
      "stream session started",
    );
    const limits = await platform.limits.service.limitsOf(principal.customerId);
    this.send({
      type: "started",
      session_id: session.id,
      model: { id: model.id, backend: model.backend, action: model.action, unnorm_key: unnormKey },
      robot_id: settings.robotId,
      ...(experiment === undefined ? {} : { experiment: { id: experiment.id, variant: experiment.variant } }),
      target_fps: settings.targetFps,
      smoothing: settings.smoothing,
      chunk_aggregation: settings.chunkAggregation,
      limits: {
        max_frame_bytes: cfg.maxFrameBytes,
        max_sessions: this.deps.registry.limitFor(principal.tier),
        idle_timeout_ms: cfg.idleTimeoutMs,
        heartbeat_interval_ms: cfg.heartbeatMs,
        stats_interval_ms: cfg.statsIntervalMs,
        send_buffer_bytes: cfg.sendBufferBytes,
        max_must_go_queue: cfg.maxMustGoQueue,
        rate_limit: { per_minute: limits.perMinute, per_day: limits.perDay, per_month: limits.perMonth },
        stream_time: {
          per_day_s: allowance.secondsPerDay,
          per_month_s: allowance.secondsPerMonth,
          max_fps: allowance.maxFps,
        },
      },
      stream_time: this.time.snapshot(),
    });
  }

  private onFrame(o: Record<string, unknown>, principal: Principal): void {
    const session = this.session;
    if (session === undefined) throw new ProtocolViolation(CLOSE.protocolError, "frame before start");
    if (this.stopping) return;
    try {
      const frame = parseFrame(o, this.limits);
      if (frame.instruction === undefined && session.instruction === undefined) {
        throw errors.validation(
          [{ in: "body", path: "/instruction", message: "is required (in start or in the frame)" }],
          "The frame message is invalid.",
        );
      }
      if (session.submit(frame) === "stale_seq") {
        throw errors.validation(
          [{ in: "body", path: "/seq", message: "must be greater than the previous frame's seq" }],
          "The frame message is invalid.",
        );
      }
    } catch (e) {
      if (!isAppError(e)) throw e;
      session.recordInvalid();
      // A bad frame is answered and logged like a failed REST call; the session goes on. A frame
      // holding U+0000 is not logged at all: its text would fail the log batch's INSERT.
      if (e.code !== "invalid_character") {
        this.deps.runner.recordFailure(
          { principal, source: "stream", elapsedMs: () => 0 },
          {
            model: session.settings.model,
            unnormKey: session.settings.unnormKey,
            instruction: typeof o.instruction === "string" ? o.instruction : session.instruction,
            robotId: session.settings.robotId,
            experiment: this.experiment,
          },
          e.code,
        );
      }
      this.deps.metrics.frames.inc({ endpoint: "stream", outcome: "error" });
      this.sendError(e, seqOf(o));
    }
  }

  /** Ends the session: in-flight and must_go frames finish, then `stopped` with final stats and the close. */
  private async finish(
    reason: "client_stop" | "idle_timeout" | "server_shutdown" | "stream_time_exhausted",
    code: number,
    closeText: string = reason,
  ): Promise<void> {
    if (this.closing || this.stopping) return;
    this.stopping = true;
    const session = this.session;
    if (session !== undefined) {
      session.stopAccepting();
      await session.idle();
    }
    if (this.time !== undefined) await this.time.end().catch(() => undefined);
    this.send({
      type: "stopped",
      reason,
      ...(session === undefined ? {} : { session_id: session.id, stats: session.stats.snapshot() }),
      ...(this.time === undefined ? {} : { stream_time: this.time.snapshot() }),
    });
    this.close(code, closeText);
  }

  private statsMessage(s: StreamSession): Record<string, unknown> {
    return {
      type: "stats",
      session_id: s.id,
      stats: s.stats.snapshot(),
      ...(this.time === undefined ? {} : { stream_time: this.time.snapshot() }),
    };
  }

  pushStats(): void {
    const s = this.session;
    if (s === undefined || this.stopping || this.closing) return;
    if (this.socket.bufferedAmount > this.deps.platform.config.stream.sendBufferBytes) return;
    this.send(this.statsMessage(s));
  }

  async chargeTime(): Promise<void> {
    const time = this.time;
    if (time === undefined || this.stopping || this.closing) return;
    await time.charge();
    if (time.exhausted().length > 0) {
      // The allowance is used up: an error naming the window, `stopped`, then close 4429.
      const e = streamTimeError(time.last);
      this.enqueue(async () => {
        if (this.closing || this.stopping) return;
        this.sendError(e);
        await this.finish("stream_time_exhausted", CLOSE.streamTimeExhausted, `${e.code}: ${e.detail ?? e.title}`);
      });
      return;
    }
    this.scheduleCharge();
  }

  /** When less than a heartbeat is left, charges again the moment it runs out instead of a heartbeat later. */
  private scheduleCharge(): void {
    const left = this.time?.leftMs() ?? null;
    clearTimeout(this.timeTimer);
    if (left === null || left >= this.deps.platform.config.stream.heartbeatMs) return;
    this.timeTimer = setTimeout(() => void this.chargeTime().catch(() => {}), Math.max(1, left)).unref();
  }

  customerId(): string | undefined {
    return this.principal?.customerId;
  }

  revoke(e: AppError): void {
    if (this.closing) return;
    this.stopping = true;
    const session = this.session;
    session?.stopAccepting();
    this.sendError(e);
    this.send({
      type: "stopped",
      reason: "customer_suspended",
      ...(session === undefined ? {} : { session_id: session.id, stats: session.stats.snapshot() }),
      ...(this.time === undefined ? {} : { stream_time: this.time.snapshot() }),
    });
    this.close(CLOSE.customerSuspended, `${e.code}: ${e.detail ?? e.title}`);
  }

  shutdown(): Promise<void> {
    // Without a session there is nothing to finish: say goodbye now, even if an auth check is pending.
    if (this.session === undefined) return this.finish("server_shutdown", CLOSE.goingAway);
    return new Promise<void>((resolve) => {
      this.enqueue(async () => {
        await this.finish("server_shutdown", CLOSE.goingAway);
        resolve();
      });
    });
  }

  private cleanup(code: number): void {
    // The socket is gone: an authentication still waiting on verify() or a slot must not take
    // (and so leak) a session slot when it resumes.
    this.closing = true;
    clearTimeout(this.authTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.timeTimer);
    this.session?.abandon();
    // The last stretch of session time (idempotent after finish's charge).
    void this.time?.end().catch((err: unknown) => this.request.log.warn({ err }, "stream time charge failed"));
    if (this.session !== undefined) {
      this.request.log.info(
        {
          session_id: this.session.id,
          close_code: code,
          stats: this.session.stats.snapshot(),
          ...(this.time === undefined ? {} : { stream_time: this.time.snapshot() }),
        },
        "stream session ended",
      );
    }
    this.deps.registry.delete(this);
    if (this.slot !== undefined && this.principal !== undefined) {
      this.deps.registry.release(this.principal.customerId, this.slot);
      this.slot = undefined;
      this.deps.metrics.sessions.dec({ endpoint: "stream" });
    }
  }
}

/** The session's unnorm_key: the one asked for (must exist), else the model's default. */
export function resolveUnnormKey(asked: string | undefined, keys: readonly string[], fallback: string | null): string {
  if (asked !== undefined) {
    if (!keys.includes(asked)) {
      throw errors.invalidUnnormKey(`unnorm_key "${asked}" is not one of ${keys.join(", ")}.`, keys);
    }
    return asked;
  }
  if (fallback === null) {
    throw errors.invalidUnnormKey(
      `This model has several unnorm_keys and no default; pick one of ${keys.join(", ")}.`,
      keys,
    );
  }
  return fallback;
}
