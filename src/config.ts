import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type AllowedNetwork, parseAllowedNetwork } from "./platform/egress.ts";
import { isClusterUrl, parseClusterUrl, parseNodes } from "./platform/redis-url.ts";

/**
 * Every setting of the service, read once from the environment (and an optional `.env`),
 * validated, grouped by concern and frozen. Nothing else in the code reads `process.env`.
 */
export interface Config {
  readonly env: "development" | "test" | "production";
  readonly version: string;
  readonly http: {
    readonly host: string;
    readonly port: number;
    readonly publicBaseUrl: string;
    readonly corsOrigins: readonly string[];
    readonly corsCredentials: boolean;
    readonly trustProxy: boolean;
    readonly bodyLimitBytes: number;
    readonly inferenceBodyLimitBytes: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly shutdownTimeoutMs: number;
    readonly maxEventLoopDelayMs: number;
    readonly eventLoopSampleMs: number;
    readonly notFoundPerMinute: number;
  };
  readonly log: { readonly level: string; readonly pretty: boolean };
  /** OpenTelemetry tracing (src/platform/tracing.ts); off while `endpoint` is undefined. */
  readonly tracing: {
    /** OTLP/HTTP base URL (the exporter posts to `<endpoint>/v1/traces`). */
    readonly endpoint: string | undefined;
    readonly serviceName: string;
    /** Share of new traces (no sampled parent) that are recorded, 0..1. */
    readonly sampleRatio: number;
    readonly exportDelayMs: number;
    readonly exportTimeoutMs: number;
  };
  readonly db: {
    /** Undefined means the embedded PGlite database under `dataDir`. */
    readonly url: string | undefined;
    readonly poolMax: number;
    readonly migrateOnStart: boolean;
    readonly allowEmbeddedInProduction: boolean;
    readonly statementTimeoutMs: number;
    /** DATABASE_READ_URL: a streaming read replica for heavy reads; undefined reads from the primary. */
    readonly readUrl: string | undefined;
    /** Replay lag above which reads go back to the primary. */
    readonly readMaxLagMs: number;
    /** Interval of the replica health check. */
    readonly readCheckMs: number;
  };
  readonly dataDir: string;
  /** How often the batch writers (inference logs, incidents, shadow results, ...) store their buffers. */
  readonly batchWriterFlushMs: number;
  readonly redis: {
    /** `redis://`, `rediss://`, or `redis+cluster://host:port,host:port` (cluster mode). */
    readonly url: string | undefined;
    /** REDIS_CLUSTER_NODES (host:port each): a Redis Cluster seeded by these nodes; else undefined. */
    readonly clusterNodes: readonly string[] | undefined;
    readonly keyPrefix: string;
    readonly commandTimeoutMs: number;
  };
  readonly auth: {
    readonly secretKey: string;
    /** True when the key was generated for this data directory (embedded development default). */
    readonly secretKeyGenerated: boolean;
    readonly issuer: string;
    readonly audience: string;
    readonly accessTokenTtlSeconds: number;
    readonly refreshTokenTtlDays: number;
  };
  readonly email: {
    readonly smtpUrl: string | undefined;
    readonly from: string;
    readonly outboxDir: string;
  };
  readonly models: {
    /** JSON model registry (docs/models.md); undefined = embedded defaults (mock-openvla-7b, demo-vla-tiny, mock-pi0). */
    readonly configPath: string | undefined;
    readonly imageMaxBytes: number;
    readonly imageMaxPixels: number;
    /** Worker threads decoding small model-sized JPEGs (0: on the event loop). */
    readonly jpegDecodeThreads: number;
    /** Load/check every backend at startup (in the background; models report `loading` until done). */
    readonly warmUp: boolean;
    /** Scraping of remote backends' metrics pages (registry `metrics_urls`); intervalMs 0 = off. */
    readonly backendMetrics: {
      readonly intervalMs: number;
      readonly timeoutMs: number;
      readonly maxBytes: number;
      readonly staleAfter: number;
    };
    /** Customer-registered model endpoints (docs/models.md, "Bring your own endpoint"). */
    readonly byom: {
      /** Allow plain http endpoint URLs (default: https only). */
      readonly allowHttp: boolean;
      /** Networks a customer endpoint may resolve to although not public (default none); some one customer's. */
      readonly allowedNetworks: readonly AllowedNetwork[];
      /** Registered models per customer. */
      readonly maxModelsPerCustomer: number;
    };
  };
  readonly inference: {
    /** Store instruction text in inference_logs (its SHA-256 is always stored). */
    readonly logInstructions: boolean;
    /** Largest image file part of a multipart inference upload. */
    readonly multipartMaxFileBytes: number;
    /** How often the partition job makes sure the next monthly partitions of inference_logs exist. */
    readonly partitionCheckMs: number;
  };
  /** Ground-truth feedback on inferences (docs/feedback.md). */
  readonly experiments: {
    /** How long a customer's running experiments are served from the in-process cache (changes are broadcast). */
    readonly cacheMs: number;
    /** Shadow requests waiting for the candidate model, per instance; more are dropped and counted. */
    readonly shadowQueueMax: number;
    /** The most bytes (request images) the waiting shadow requests may hold, per instance. */
    readonly shadowQueueMaxBytes: number;
    /** Shadow candidate calls running at once per instance. */
    readonly shadowConcurrency: number;
  };
  readonly feedback: {
    /**
     * Feedback is accepted on inferences at most this many days old (the project keeps no other
     * retention setting for inference_logs); older ones answer 404.
     */
    readonly maxAgeDays: number;
    /** Feedback requests (POST and GET) per customer per minute on one instance, before 429 rate_limited. */
    readonly perMinute: number;
    /**
     * With several instances (LIMITS_INSTANCE_COUNT > 1), how long a feedback request whose inference
     * is not stored yet (still buffered by another instance's log writer) waits before looking again.
     */
    readonly lookupWaitMs: number;
  };
  /** Data consent (docs/privacy.md). */
  readonly consent: {
    /** The tier of a customer with no consent version yet (basic keeps instruction text, as before consent existed). */
    readonly defaultTier: "none" | "basic" | "analytics" | "research";
    /** How long a customer's consent is served from the in-process cache (changes are broadcast at once). */
    readonly cacheFreshMs: number;
  };
  /** Account exports (GDPR Art. 15/20; docs/privacy.md, "Export"). */
  readonly exports: {
    /** How long a finished archive can be downloaded before the cleanup deletes it. */
    readonly ttlHours: number;
    /** Rows per keyset page when a section streams a large table (inference logs). */
    readonly batchRows: number;
    /** How often the cleanup deletes expired archives and fails jobs whose process died. */
    readonly cleanupIntervalMs: number;
  };
  /** The retention job (docs/privacy.md "Retention"). */
  /** Stored camera images (docs/privacy.md): a folder under DATA_DIR, or an S3-compatible bucket. */
  readonly objectStore: {
    /** The folder store's root (`DATA_DIR/objects`); used when `s3` is undefined. */
    readonly dir: string;
    readonly s3:
      | {
          readonly bucket: string;
          /** Undefined: AWS's endpoint for the region. */
          readonly endpoint: string | undefined;
          readonly region: string;
          /** Both or neither; neither: the SDK's default chain (environment role, instance profile). */
          readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
          readonly forcePathStyle: boolean;
        }
      | undefined;
    /** Uploads waiting at most; beyond it new uploads are dropped (counted). */
    readonly uploadQueueMax: number;
    /** Attempts per upload (the first included) before it counts as failed. */
    readonly uploadAttempts: number;
    /** First retry delay; doubled per attempt. */
    readonly uploadRetryMs: number;
  };
  readonly retention: {
    /** How often the job deletes what is older than each customer's consent `retention_days`. */
    readonly intervalMs: number;
    /** Rows per DELETE statement (each its own short transaction). */
    readonly batchSize: number;
  };
  readonly safety: {
    /** Classifiers run on every action besides the rules: `ood` (the shipped one) or none. */
    readonly classifiers: readonly "ood"[];
    /** OOD classifier: flag values more than k standard deviations from the dataset mean. */
    readonly oodK: number;
    /** Per classifier; a slower classifier counts as failed. */
    readonly classifierTimeoutMs: number;
    /** closed: a failed classifier is a violation (high); open: it is reported as skipped. */
    readonly classifierFailMode: "closed" | "open";
    /** How long a robot's stored profile is served from the in-process cache (changes are broadcast). */
    readonly profileCacheMs: number;
    /** Control periods a robot's previous action is kept for the acceleration rule (REST). */
    readonly previousActionPeriods: number;
  };
  readonly apiKeys: {
    /** How long a verified key is served from the in-process cache without asking the database. */
    readonly cacheFreshMs: number;
    /** After `cacheFreshMs` an entry is still served (and refreshed in the background) up to this age. */
    readonly cacheStaleMs: number;
    /** How long an unknown key hash is remembered as unknown. */
    readonly negativeCacheMs: number;
    /** How often batched `last_used_at` updates are written. */
    readonly lastUsedFlushMs: number;
    /** Failed key verifications per client IP per minute before answering 429. */
    readonly invalidAttemptsPerMinute: number;
    /** Non-revoked keys a customer may hold. */
    readonly maxKeysPerCustomer: number;
  };
  readonly limits: {
    /** A Redis limiter call slower than this falls back to the in-process limiter. */
    readonly redisTimeoutMs: number;
    /** After a Redis failure, how long requests use the fallback before Redis is tried again. */
    readonly redisRetryMs: number;
    /** API instances sharing the limits; the fallback limiter divides limits by this. */
    readonly instanceCount: number;
    /** How often durable monthly usage counters are written to the database. */
    readonly usageFlushMs: number;
  };
  /** Real-time streaming (`WS /v1/stream`, `WS /v1/openpi`); docs/streaming.md. */
  readonly stream: {
    /** Largest WebSocket message accepted; larger ones close the connection with 1009. */
    readonly maxFrameBytes: number;
    /** Concurrent stream sessions (both endpoints) per customer and tier (across instances with Redis). */
    readonly maxSessions: { readonly free: number; readonly pro: number; readonly enterprise: number };
    /** A session with no client message for this long is stopped (close 1000). */
    readonly idleTimeoutMs: number;
    /**
     * An openpi connection with no observation for this long is closed 1000 `idle_timeout`; 0: never.
     * Longer than `idleTimeoutMs`: the stock openpi client does not reconnect, and robots pause
     * between episodes (scene resets) while keeping their client.
     */
    readonly openpiIdleTimeoutMs: number;
    /** Server pings this often; a client that has not answered the previous ping is dropped. */
    readonly heartbeatMs: number;
    /** Browsers authenticate with a first `auth` message; it must arrive within this time (else 1008). */
    readonly authTimeoutMs: number;
    /** Above this many bytes waiting in a socket's send buffer, incoming frames are dropped unanswered. */
    readonly sendBufferBytes: number;
    /** How often `stats` are pushed to native stream clients. */
    readonly statsIntervalMs: number;
    /** must_go frames that may wait behind the one in flight; more are dropped as overloaded. */
    readonly maxMustGoQueue: number;
  };
  /** Usage analytics (docs/analytics.md): the rollup job that keeps the analytics tables current. */
  readonly analytics: {
    /** Run the rollup job in this instance (any number of instances may; one works at a time). */
    readonly rollups: boolean;
    /** How often the rollup job looks for new inference_logs and feedback rows. */
    readonly rollupIntervalMs: number;
  };
  /** Stripe billing (docs/billing.md); disabled (routes answer 503 billing_disabled) without a secret key. */
  readonly billing: {
    /** Undefined: billing disabled; tiers change only by administrators. */
    readonly stripeSecretKey: string | undefined;
    readonly webhookSecret: string | undefined;
    /** Price ids per paid tier; the first one is what checkout sells, the others (e.g. yearly) map to the tier too. */
    readonly prices: { readonly pro: readonly string[]; readonly enterprise: readonly string[] };
    /** Where the SDK sends requests; undefined = api.stripe.com. Tests point it at a loopback fake. */
    readonly apiBase: string | undefined;
    readonly timeoutMs: number;
    readonly maxNetworkRetries: number;
    /** Days a past-due subscription keeps its paid tier before dropping to free. */
    readonly graceDays: number;
    /** Origins checkout/portal redirect URLs may point to, besides PUBLIC_BASE_URL's. */
    readonly redirectOrigins: readonly string[];
    /** Billing Meter event names for overage: requests beyond the monthly quota, and stream robot-seconds. */
    readonly meterEventRequests: string;
    readonly meterEventStreamSeconds: string;
    /** How often the billing job runs (grace expiry, Stripe erasure outbox, overage reports, quota alerts). */
    readonly jobIntervalMs: number;
    /** How long a customer's invoice list is served from cache. */
    readonly invoiceCacheMs: number;
  };
  /** First-run demo data (admin user + demo key) in embedded development mode. */
  readonly bootstrap: { readonly demo: "auto" | "off" };
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Collects every problem instead of stopping at the first one. */
class Reader {
  readonly problems: string[] = [];
  private readonly env: Env;
  constructor(env: Env) {
    this.env = env;
  }

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  }

  str(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  /** REDIS_URL and REDIS_CLUSTER_NODES: one server, or a cluster (either form, not both). */
  redis(): { url: string | undefined; clusterNodes: readonly string[] | undefined } {
    const url = this.raw("REDIS_URL");
    const nodes = this.raw("REDIS_CLUSTER_NODES");
    let clusterNodes: string[] | undefined;
    if (nodes !== undefined) {
      try {
        parseNodes(nodes);
        clusterNodes = nodes
          .split(",")
          .map((n) => n.trim())
          .filter((n) => n !== "");
      } catch (e) {
        this.problems.push(`REDIS_CLUSTER_NODES: ${(e as Error).message}; expected host:port,host:port`);
      }
      if (url !== undefined) this.problems.push("REDIS_URL and REDIS_CLUSTER_NODES: set one of them, not both");
      return { url: undefined, clusterNodes };
    }
    if (url !== undefined && isClusterUrl(url)) {
      try {
        parseClusterUrl(url);
      } catch (e) {
        this.problems.push(`REDIS_URL: ${(e as Error).message}`);
        return { url: undefined, clusterNodes: undefined };
      }
      return { url, clusterNodes: undefined };
    }
    return {
      url: this.optionalUrl("REDIS_URL", ["redis:", "rediss:", "redis+cluster:", "rediss+cluster:"]),
      clusterNodes: undefined,
    };
  }

  optionalUrl(name: string, protocols: readonly string[]): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    try {
      const u = new URL(v);
      if (!protocols.includes(u.protocol)) {
        this.problems.push(`${name}: protocol must be one of ${protocols.join(", ")}`);
      }
      return v;
    } catch {
      this.problems.push(`${name}: not a valid URL`);
      return undefined;
    }
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^-?\d+$/.test(v)) {
      this.problems.push(`${name}: expected an integer, got "${v}"`);
      return fallback;
    }
    const n = Number(v);
    if (n < min || n > max) {
      this.problems.push(`${name}: must be between ${min} and ${max}, got ${n}`);
      return fallback;
    }
    return n;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    this.problems.push(`${name}: expected true or false, got "${v}"`);
    return fallback;
  }

  /** A comma-separated list of networks in CIDR notation, each maybe `<customer id>=` one customer's; empty when unset. */
  cidrs(name: string): AllowedNetwork[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    const out: AllowedNetwork[] = [];
    for (const part of v.split(",").map((x) => x.trim())) {
      if (part === "") continue;
      try {
        out.push(parseAllowedNetwork(part));
      } catch (e) {
        this.problems.push(`${name}: ${(e as Error).message}`);
      }
    }
    return out;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if ((allowed as readonly string[]).includes(v)) return v as T;
    this.problems.push(`${name}: must be one of ${allowed.join(", ")}, got "${v}"`);
    return fallback;
  }

  stringArray(name: string, fallback: readonly string[]): readonly string[] {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    try {
      const parsed: unknown = JSON.parse(v);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) return parsed;
    } catch {
      // fall through to the problem below
    }
    this.problems.push(`${name}: expected a JSON array of strings, e.g. ["https://app.example.com"]`);
    return fallback;
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/**
 * In embedded development mode a random signing key is generated once per data directory
 * and kept in `<DATA_DIR>/secret-key`, so sessions survive restarts without any setup.
 * Production must set SECRET_KEY explicitly (enforced below).
 */
function embeddedSecret(dataDir: string): string {
  const file = path.join(dataDir, "secret-key");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32).toString("base64url");
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

export interface LoadConfigOptions {
  /** Read `.env` from the working directory (default true outside tests). */
  readonly dotenv?: boolean;
  /** Allow writing a generated secret under DATA_DIR (default true). */
  readonly persistGeneratedSecret?: boolean;
}

/**
 * OTEL_TRACES_SAMPLER_ARG: the ratio of traces sampled (parentbased_traceidratio), 0..1, default 1.
 * OTEL_TRACES_SAMPLER, when set, must name that sampler or one of its special cases.
 */
function readSampleRatio(r: Reader): number {
  const sampler = r.raw("OTEL_TRACES_SAMPLER");
  const samplers = ["parentbased_traceidratio", "parentbased_always_on", "parentbased_always_off"];
  if (sampler !== undefined && !samplers.includes(sampler)) {
    r.problems.push(`OTEL_TRACES_SAMPLER: expected one of ${samplers.join(", ")}`);
  }
  if (sampler === "parentbased_always_off") return 0;
  if (sampler === "parentbased_always_on") return 1;
  const raw = r.raw("OTEL_TRACES_SAMPLER_ARG");
  if (raw === undefined) return 1;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || v < 0 || v > 1) {
    r.problems.push("OTEL_TRACES_SAMPLER_ARG: expected a number between 0 and 1");
    return 1;
  }
  return v;
}

/** Parses the environment into a frozen Config or throws ConfigError naming every bad variable. */
export function loadConfig(env: Env = process.env, options: LoadConfigOptions = {}): Config {
  if (options.dotenv !== false && env === process.env && existsSync(".env")) {
    process.loadEnvFile(".env");
  }
  const r = new Reader(env);
  const nodeEnv = r.oneOf("NODE_ENV", ["development", "test", "production"] as const, "development");
  const production = nodeEnv === "production";

  const port = r.int("PORT", 8000, 0, 65535);
  const host = r.str("HOST", "0.0.0.0");
  const publicBaseUrl = (r.optionalUrl("PUBLIC_BASE_URL", ["http:", "https:"]) ?? `http://localhost:${port}`).replace(
    /\/+$/,
    "",
  );
  const corsOrigins = r.stringArray("CORS_ORIGINS", []);
  const corsCredentials = r.bool("CORS_CREDENTIALS", false);
  const dataDir = path.resolve(r.str("DATA_DIR", "./data"));
  const dbUrl = r.optionalUrl("DATABASE_URL", ["postgres:", "postgresql:"]);
  const allowEmbeddedInProduction = r.bool("ALLOW_EMBEDDED_DB_IN_PRODUCTION", false);
  const readUrl = r.optionalUrl("DATABASE_READ_URL", ["postgres:", "postgresql:"]);
  if (readUrl !== undefined && dbUrl === undefined) {
    r.problems.push("DATABASE_READ_URL: a read replica needs DATABASE_URL (the embedded database has none)");
  }

  let secretKey = r.raw("SECRET_KEY");
  let secretKeyGenerated = false;
  if (secretKey !== undefined && Buffer.byteLength(secretKey) < 32) {
    r.problems.push("SECRET_KEY: must be at least 32 bytes (e.g. `openssl rand -base64 48`)");
  }
  if (secretKey === undefined) {
    if (production) {
      r.problems.push("SECRET_KEY: required in production (at least 32 random bytes)");
      secretKey = "";
    } else if (options.persistGeneratedSecret === false) {
      secretKey = randomBytes(32).toString("base64url");
      secretKeyGenerated = true;
    } else {
      secretKey = embeddedSecret(dataDir);
      secretKeyGenerated = true;
    }
  }

  if (production) {
    if (corsOrigins.includes("*") && corsCredentials) {
      r.problems.push("CORS_ORIGINS: a wildcard origin cannot be combined with CORS_CREDENTIALS=true");
    }
    if (dbUrl === undefined && !allowEmbeddedInProduction) {
      r.problems.push(
        "DATABASE_URL: required in production (or set ALLOW_EMBEDDED_DB_IN_PRODUCTION=true to run on the embedded database)",
      );
    }
  }

  const logPrettyDefault = !production && process.stdout.isTTY === true;
  const config: Config = {
    env: nodeEnv,
    version: packageVersion(),
    http: {
      host,
      port,
      publicBaseUrl,
      corsOrigins,
      corsCredentials,
      trustProxy: r.bool("TRUST_PROXY", false),
      bodyLimitBytes: r.int("BODY_LIMIT_BYTES", 256 * 1024, 1024, 1024 ** 3),
      inferenceBodyLimitBytes: r.int("INFERENCE_BODY_LIMIT_BYTES", 12 * 1024 * 1024, 1024, 1024 ** 3),
      requestTimeoutMs: r.int("REQUEST_TIMEOUT_MS", 30_000, 1_000, 600_000),
      keepAliveTimeoutMs: r.int("KEEP_ALIVE_TIMEOUT_MS", 72_000, 1_000, 600_000),
      shutdownTimeoutMs: r.int("SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
      maxEventLoopDelayMs: r.int("MAX_EVENT_LOOP_DELAY_MS", 1_000, 0, 60_000),
      eventLoopSampleMs: r.int("EVENT_LOOP_SAMPLE_MS", 1_000, 10, 60_000),
      notFoundPerMinute: r.int("NOT_FOUND_PER_MINUTE", 120, 1, 1_000_000),
    },
    log: {
      level: r.oneOf("LOG_LEVEL", LOG_LEVELS, nodeEnv === "test" ? "silent" : "info"),
      pretty: r.bool("LOG_PRETTY", logPrettyDefault),
    },
    tracing: {
      endpoint: r.optionalUrl("OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]),
      serviceName: r.str("OTEL_SERVICE_NAME", "vla-inference-api"),
      sampleRatio: readSampleRatio(r),
      exportDelayMs: r.int("OTEL_BSP_SCHEDULE_DELAY", 5_000, 10, 600_000),
      exportTimeoutMs: r.int("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000, 100, 600_000),
    },
    db: {
      url: dbUrl,
      poolMax: r.int("DB_POOL_MAX", 30, 1, 1_000),
      migrateOnStart: r.bool("DB_MIGRATE_ON_START", true),
      allowEmbeddedInProduction,
      statementTimeoutMs: r.int("DB_STATEMENT_TIMEOUT_MS", 15_000, 0, 3_600_000),
      readUrl,
      readMaxLagMs: r.int("DATABASE_READ_MAX_LAG_MS", 5_000, 0, 3_600_000),
      readCheckMs: r.int("DATABASE_READ_CHECK_MS", 1_000, 100, 600_000),
    },
    dataDir,
    batchWriterFlushMs: r.int("BATCH_WRITER_FLUSH_MS", 250, 10, 60_000),
    redis: {
      ...r.redis(),
      keyPrefix: r.str("REDIS_KEY_PREFIX", "vla:"),
      commandTimeoutMs: r.int("REDIS_COMMAND_TIMEOUT_MS", 500, 1, 60_000),
    },
    auth: {
      secretKey,
      secretKeyGenerated,
      issuer: r.str("JWT_ISSUER", publicBaseUrl),
      audience: r.str("JWT_AUDIENCE", "vla-api"),
      accessTokenTtlSeconds: r.int("ACCESS_TOKEN_TTL_SECONDS", 900, 60, 86_400),
      refreshTokenTtlDays: r.int("REFRESH_TOKEN_TTL_DAYS", 30, 1, 365),
    },
    email: {
      smtpUrl: r.optionalUrl("SMTP_URL", ["smtp:", "smtps:"]),
      from: r.str("EMAIL_FROM", "VLA Inference API <no-reply@localhost>"),
      outboxDir: path.resolve(r.str("EMAIL_OUTBOX_DIR", path.join(dataDir, "outbox"))),
    },
    models: {
      configPath: r.raw("MODELS_CONFIG") === undefined ? undefined : path.resolve(r.str("MODELS_CONFIG", "")),
      imageMaxBytes: r.int("IMAGE_MAX_BYTES", 8 * 1024 * 1024, 1024, 256 * 1024 * 1024),
      imageMaxPixels: r.int("IMAGE_MAX_PIXELS", 4096 * 4096, 64, 1024 * 1024 * 1024),
      jpegDecodeThreads: r.int("JPEG_DECODE_THREADS", 2, 0, 16),
      warmUp: r.bool("MODELS_WARM_UP", true),
      backendMetrics: {
        intervalMs: r.int("BACKEND_METRICS_INTERVAL_MS", 15_000, 0, 3_600_000),
        timeoutMs: r.int("BACKEND_METRICS_TIMEOUT_MS", 2_000, 1, 60_000),
        maxBytes: r.int("BACKEND_METRICS_MAX_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
        staleAfter: r.int("BACKEND_METRICS_STALE_SCRAPES", 3, 1, 1000),
      },
      byom: {
        allowHttp: r.bool("BYOM_ALLOW_HTTP", false),
        allowedNetworks: r.cidrs("BYOM_ALLOWED_NETWORKS"),
        maxModelsPerCustomer: r.int("BYOM_MAX_MODELS_PER_CUSTOMER", 10, 0, 1000),
      },
    },
    inference: {
      logInstructions: r.bool("LOG_INSTRUCTIONS", true),
      multipartMaxFileBytes: r.int("INFERENCE_UPLOAD_MAX_BYTES", 8 * 1024 * 1024, 1024, 256 * 1024 * 1024),
      partitionCheckMs: r.int("INFERENCE_PARTITION_CHECK_MS", 6 * 3_600_000, 1_000, 7 * 86_400_000),
    },
    experiments: {
      cacheMs: r.int("EXPERIMENTS_CACHE_MS", 5_000, 0, 3_600_000),
      shadowQueueMax: r.int("SHADOW_QUEUE_MAX", 100, 0, 100_000),
      shadowQueueMaxBytes: r.int("SHADOW_QUEUE_MAX_BYTES", 64 * 1024 * 1024, 0, 64 * 1024 ** 3),
      shadowConcurrency: r.int("SHADOW_CONCURRENCY", 1, 1, 256),
    },
    feedback: {
      maxAgeDays: r.int("FEEDBACK_MAX_AGE_DAYS", 90, 1, 36_500),
      perMinute: r.int("FEEDBACK_PER_MINUTE", 600, 1, 1_000_000),
      lookupWaitMs: r.int("FEEDBACK_LOOKUP_WAIT_MS", 300, 0, 10_000),
    },
    consent: {
      defaultTier: r.oneOf("CONSENT_DEFAULT_TIER", ["none", "basic", "analytics", "research"] as const, "basic"),
      cacheFreshMs: r.int("CONSENT_CACHE_FRESH_MS", 600_000, 0, 86_400_000),
    },
    exports: {
      ttlHours: r.int("EXPORT_TTL_HOURS", 24, 1, 24 * 30),
      batchRows: r.int("EXPORT_BATCH_ROWS", 5_000, 100, 100_000),
      cleanupIntervalMs: r.int("EXPORT_CLEANUP_INTERVAL_MS", 600_000, 1_000, 86_400_000),
    },
    objectStore: readObjectStore(r, dataDir),
    retention: {
      intervalMs: r.int("RETENTION_INTERVAL_MS", 3_600_000, 1_000, 7 * 86_400_000),
      batchSize: r.int("RETENTION_BATCH_SIZE", 5_000, 1, 100_000),
    },
    safety: {
      classifiers: parseClassifiers(r),
      oodK: r.int("SAFETY_OOD_K", 5, 1, 1_000),
      classifierTimeoutMs: r.int("SAFETY_CLASSIFIER_TIMEOUT_MS", 50, 1, 60_000),
      classifierFailMode: r.oneOf("SAFETY_CLASSIFIER_FAIL_MODE", ["closed", "open"] as const, "closed"),
      profileCacheMs: r.int("SAFETY_PROFILE_CACHE_MS", 5_000, 0, 3_600_000),
      previousActionPeriods: r.int("SAFETY_PREVIOUS_ACTION_PERIODS", 3, 1, 1_000),
    },
    apiKeys: {
      cacheFreshMs: r.int("API_KEY_CACHE_FRESH_MS", 10_000, 0, 3_600_000),
      cacheStaleMs: r.int("API_KEY_CACHE_STALE_MS", 300_000, 0, 86_400_000),
      negativeCacheMs: r.int("API_KEY_NEGATIVE_CACHE_MS", 5_000, 0, 3_600_000),
      lastUsedFlushMs: r.int("API_KEY_LAST_USED_FLUSH_MS", 60_000, 100, 3_600_000),
      invalidAttemptsPerMinute: r.int("API_KEY_INVALID_ATTEMPTS_PER_MINUTE", 30, 1, 1_000_000),
      maxKeysPerCustomer: r.int("API_KEY_MAX_PER_CUSTOMER", 100, 1, 100_000),
    },
    limits: {
      redisTimeoutMs: r.int("LIMITS_REDIS_TIMEOUT_MS", 50, 1, 10_000),
      redisRetryMs: r.int("LIMITS_REDIS_RETRY_MS", 1_000, 10, 600_000),
      instanceCount: r.int("LIMITS_INSTANCE_COUNT", 1, 1, 10_000),
      usageFlushMs: r.int("USAGE_FLUSH_INTERVAL_MS", 10_000, 100, 3_600_000),
    },
    stream: {
      maxFrameBytes: r.int("STREAM_MAX_FRAME_BYTES", 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
      maxSessions: {
        free: r.int("STREAM_MAX_SESSIONS_FREE", 2, 0, 100_000),
        pro: r.int("STREAM_MAX_SESSIONS_PRO", 10, 0, 100_000),
        enterprise: r.int("STREAM_MAX_SESSIONS_ENTERPRISE", 200, 0, 100_000),
      },
      idleTimeoutMs: r.int("STREAM_IDLE_TIMEOUT_MS", 60_000, 100, 86_400_000),
      openpiIdleTimeoutMs: r.int("OPENPI_IDLE_TIMEOUT_MS", 300_000, 0, 86_400_000),
      heartbeatMs: r.int("STREAM_HEARTBEAT_MS", 15_000, 100, 3_600_000),
      authTimeoutMs: r.int("STREAM_AUTH_TIMEOUT_MS", 5_000, 50, 60_000),
      sendBufferBytes: r.int("STREAM_SEND_BUFFER_BYTES", 1024 * 1024, 1024, 1024 ** 3),
      statsIntervalMs: r.int("STREAM_STATS_INTERVAL_MS", 5_000, 100, 3_600_000),
      maxMustGoQueue: r.int("STREAM_MAX_MUST_GO_QUEUE", 8, 1, 1_000),
    },
    analytics: {
      rollups: r.bool("ANALYTICS_ROLLUPS", true),
      rollupIntervalMs: r.int("ANALYTICS_ROLLUP_INTERVAL_MS", 5_000, 50, 3_600_000),
    },
    billing: readBilling(r, publicBaseUrl),
    bootstrap: {
      // Never in production, never in tests unless asked explicitly.
      demo: production
        ? "off"
        : r.oneOf("BOOTSTRAP_DEMO", ["auto", "off"] as const, nodeEnv === "test" ? "off" : "auto"),
    },
  };

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  // A typed array with elements cannot be frozen (the allow-listed networks' address bytes).
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function readBilling(r: Reader, publicBaseUrl: string): Config["billing"] {
  const key = r.raw("STRIPE_SECRET_KEY");
  if (key !== undefined && !/^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/.test(key)) {
    r.problems.push("STRIPE_SECRET_KEY: expected a Stripe secret or restricted key (sk_test_..., sk_live_..., rk_...)");
  }
  const webhookSecret = r.raw("STRIPE_WEBHOOK_SECRET");
  const priceList = (name: string): readonly string[] => {
    const v = r.raw(name);
    if (v === undefined) return [];
    const ids = v
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== "");
    for (const id of ids) {
      if (!/^price_[A-Za-z0-9_]+$/.test(id)) r.problems.push(`${name}: "${id}" is not a Stripe price id (price_...)`);
    }
    return ids;
  };
  const prices = { pro: priceList("STRIPE_PRICE_PRO"), enterprise: priceList("STRIPE_PRICE_ENTERPRISE") };
  const shared = prices.pro.filter((p) => prices.enterprise.includes(p));
  if (shared.length > 0)
    r.problems.push(`STRIPE_PRICE_PRO / STRIPE_PRICE_ENTERPRISE: ${shared.join(", ")} listed for both tiers`);
  if (key !== undefined) {
    // A key without these would take money it cannot account for: refuse to start.
    if (webhookSecret === undefined) {
      r.problems.push(
        "STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set (the endpoint's signing secret, whsec_...)",
      );
    }
    if (prices.pro.length === 0) r.problems.push("STRIPE_PRICE_PRO: required when STRIPE_SECRET_KEY is set");
    if (prices.enterprise.length === 0)
      r.problems.push("STRIPE_PRICE_ENTERPRISE: required when STRIPE_SECRET_KEY is set");
  }
  const redirectOrigins: string[] = [new URL(publicBaseUrl).origin];
  for (const o of r.stringArray("BILLING_REDIRECT_ORIGINS", [])) {
    try {
      const u = new URL(o);
      if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error("protocol");
      if (u.origin !== o.replace(/\/+$/, "")) throw new Error("not an origin");
      redirectOrigins.push(u.origin);
    } catch {
      r.problems.push(`BILLING_REDIRECT_ORIGINS: "${o}" is not an origin (scheme://host[:port], no path)`);
    }
  }
  return {
    stripeSecretKey: key,
    webhookSecret,
    prices,
    apiBase: r.optionalUrl("STRIPE_API_BASE", ["http:", "https:"]),
    timeoutMs: r.int("STRIPE_TIMEOUT_MS", 10_000, 100, 120_000),
    maxNetworkRetries: r.int("STRIPE_MAX_NETWORK_RETRIES", 2, 0, 10),
    graceDays: r.int("BILLING_GRACE_DAYS", 7, 0, 90),
    redirectOrigins,
    meterEventRequests: r.str("STRIPE_METER_EVENT_REQUESTS", "vla_overage_requests"),
    meterEventStreamSeconds: r.str("STRIPE_METER_EVENT_STREAM_SECONDS", "vla_overage_stream_seconds"),
    jobIntervalMs: r.int("BILLING_JOB_INTERVAL_MS", 60_000, 50, 3_600_000),
    invoiceCacheMs: r.int("BILLING_INVOICE_CACHE_MS", 60_000, 0, 3_600_000),
  };
}

function readObjectStore(r: Reader, dataDir: string): Config["objectStore"] {
  const bucket = r.raw("S3_BUCKET");
  const endpoint = r.optionalUrl("S3_ENDPOINT", ["http:", "https:"]);
  const region = r.str("S3_REGION", "us-east-1");
  const accessKeyId = r.raw("S3_ACCESS_KEY_ID");
  const secretAccessKey = r.raw("S3_SECRET_ACCESS_KEY");
  const forcePathStyle = r.bool("S3_FORCE_PATH_STYLE", false);
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    r.problems.push(
      "S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY: set both or neither (neither: the AWS SDK's default credential chain)",
    );
  }
  if (bucket === undefined) {
    const stray = ["S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"].filter((n) => r.raw(n) !== undefined);
    if (stray.length > 0) r.problems.push(`S3_BUCKET: required when ${stray.join(", ")} is set`);
  } else if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    r.problems.push("S3_BUCKET: not a valid bucket name (3-63 lowercase letters, digits, '.', '-')");
  }
  return {
    dir: path.join(dataDir, "objects"),
    s3:
      bucket === undefined
        ? undefined
        : {
            bucket,
            endpoint,
            region,
            credentials:
              accessKeyId !== undefined && secretAccessKey !== undefined ? { accessKeyId, secretAccessKey } : undefined,
            forcePathStyle,
          },
    uploadQueueMax: r.int("IMAGE_UPLOAD_QUEUE_MAX", 1_000, 1, 1_000_000),
    uploadAttempts: r.int("IMAGE_UPLOAD_ATTEMPTS", 5, 1, 100),
    uploadRetryMs: r.int("IMAGE_UPLOAD_RETRY_MS", 500, 1, 600_000),
  };
}

function parseClassifiers(r: Reader): readonly "ood"[] {
  const v = r.str("SAFETY_CLASSIFIERS", "ood").toLowerCase();
  if (v === "none") return [];
  const out: "ood"[] = [];
  for (const name of v.split(",").map((x) => x.trim())) {
    if (name === "ood") {
      if (!out.includes("ood")) out.push("ood");
    } else r.problems.push(`SAFETY_CLASSIFIERS: unknown classifier "${name}" (known: ood; or none)`);
  }
  return out;
}
