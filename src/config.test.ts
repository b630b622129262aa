import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";
import { parseClusterUrl } from "./platform/redis-url.ts";

const opts = { dotenv: false, persistGeneratedSecret: false } as const;

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env, opts);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("loadConfig", () => {
  it("runs on embedded defaults with an empty environment", () => {
    const c = loadConfig({}, opts);
    expect(c.env).toBe("development");
    expect(c.http.port).toBe(8000);
    expect(c.db.url).toBeUndefined();
    expect(c.db.poolMax).toBe(30);
    expect(c.batchWriterFlushMs).toBe(250);
    expect(c.redis.url).toBeUndefined();
    expect(c.auth.secretKeyGenerated).toBe(true);
    expect(Buffer.byteLength(c.auth.secretKey)).toBeGreaterThanOrEqual(32);
    expect(c.http.publicBaseUrl).toBe("http://localhost:8000");
  });

  it("bring-your-own endpoints: https only and no allow-listed network by default; CIDR lists checked", () => {
    const c = loadConfig({}, opts);
    expect(c.models.byom).toEqual({ allowHttp: false, allowedNetworks: [], maxModelsPerCustomer: 10 });
    const set = loadConfig({ BYOM_ALLOW_HTTP: "true", BYOM_ALLOWED_NETWORKS: "10.20.0.0/16, fd00::/8" }, opts);
    expect(set.models.byom.allowHttp).toBe(true);
    expect(set.models.byom.allowedNetworks.map((n) => n.text)).toEqual(["10.20.0.0/16", "fd00::/8"]);
    expect(problemsOf({ BYOM_ALLOWED_NETWORKS: "10.0.0.0/8,internal" }).join()).toMatch(
      /BYOM_ALLOWED_NETWORKS: not a network in CIDR notation .*"internal"/,
    );
    // One customer's network: `<customer id>=<network>`.
    const scoped = loadConfig(
      { BYOM_ALLOWED_NETWORKS: "0B5E2C3D-4F6A-4B7C-8D9E-0F1A2B3C4D5E=10.20.0.0/16,fd00:20::/32" },
      opts,
    );
    expect(scoped.models.byom.allowedNetworks.map((n) => [n.text, n.owner])).toEqual([
      ["10.20.0.0/16", "0b5e2c3d-4f6a-4b7c-8d9e-0f1a2b3c4d5e"],
      ["fd00:20::/32", undefined],
    ]);
    expect(problemsOf({ BYOM_ALLOWED_NETWORKS: "acme=10.0.0.0/8" }).join()).toMatch(
      /BYOM_ALLOWED_NETWORKS: not a customer id/,
    );
  });

  it("tracing: off without an endpoint; sampler ratio and its problems", () => {
    const off = loadConfig({}, opts).tracing;
    expect(off).toMatchObject({ endpoint: undefined, serviceName: "vla-inference-api", sampleRatio: 1 });
    const on = loadConfig(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318",
        OTEL_SERVICE_NAME: "api",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
      },
      opts,
    ).tracing;
    expect(on).toMatchObject({ endpoint: "http://127.0.0.1:4318", serviceName: "api", sampleRatio: 0.25 });
    expect(loadConfig({ OTEL_TRACES_SAMPLER: "parentbased_always_off" }, opts).tracing.sampleRatio).toBe(0);
    expect(problemsOf({ OTEL_TRACES_SAMPLER_ARG: "2" }).join()).toContain("OTEL_TRACES_SAMPLER_ARG");
    expect(problemsOf({ OTEL_TRACES_SAMPLER: "jaeger_remote" }).join()).toContain("OTEL_TRACES_SAMPLER");
    expect(problemsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://x" }).join()).toContain("OTEL_EXPORTER_OTLP_ENDPOINT");
  });

  it("is frozen all the way down", () => {
    const c = loadConfig({}, opts);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.http)).toBe(true);
    expect(Object.isFrozen(c.http.corsOrigins)).toBe(true);
  });

  it("reads typed values", () => {
    const c = loadConfig(
      {
        PORT: "9001",
        DATABASE_URL: "postgres://u:p@db:5432/app",
        REDIS_URL: "redis://cache:6379",
        DB_POOL_MAX: "12",
        CORS_ORIGINS: '["https://app.example.com"]',
        CORS_CREDENTIALS: "true",
        PUBLIC_BASE_URL: "https://api.example.com/",
        BATCH_WRITER_FLUSH_MS: "1000",
      },
      opts,
    );
    expect(c.http.port).toBe(9001);
    expect(c.batchWriterFlushMs).toBe(1000);
    expect(c.db.url).toBe("postgres://u:p@db:5432/app");
    expect(c.db.poolMax).toBe(12);
    expect(c.http.corsOrigins).toEqual(["https://app.example.com"]);
    expect(c.http.corsCredentials).toBe(true);
    expect(c.http.publicBaseUrl).toBe("https://api.example.com");
  });

  it("selects a Redis Cluster by REDIS_CLUSTER_NODES or a redis+cluster:// URL (issue 22)", () => {
    const byNodes = loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002" }, opts);
    expect(byNodes.redis.clusterNodes).toEqual(["10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"]);
    expect(byNodes.redis.url).toBeUndefined();
    const byUrl = loadConfig({ REDIS_URL: "rediss+cluster://default:s%40cret@a:7000,b:7001" }, opts);
    expect(byUrl.redis.url).toBe("rediss+cluster://default:s%40cret@a:7000,b:7001");
    expect(byUrl.redis.clusterNodes).toBeUndefined();
    expect(parseClusterUrl(byUrl.redis.url as string)).toEqual({
      nodes: [
        { host: "a", port: 7000 },
        { host: "b", port: 7001 },
      ],
      tls: true,
      username: "default",
      password: "s@cret",
    });
    expect(loadConfig({ REDIS_URL: "redis://cache:6379" }, opts).redis.clusterNodes).toBeUndefined();
    expect(problemsOf({ REDIS_CLUSTER_NODES: "a:7000,b" }).join("\n")).toMatch(
      /REDIS_CLUSTER_NODES: "b" is not host:port/,
    );
    expect(problemsOf({ REDIS_CLUSTER_NODES: "a:7000", REDIS_URL: "redis://a:6379" }).join("\n")).toMatch(
      /set one of them, not both/,
    );
    expect(problemsOf({ REDIS_URL: "redis+cluster://a:99999" }).join("\n")).toMatch(/REDIS_URL: "a:99999"/);
    expect(problemsOf({ REDIS_URL: "http://cache:6379" }).join("\n")).toMatch(/REDIS_URL: protocol/);
  });

  it("names every bad variable at once", () => {
    const problems = problemsOf({
      PORT: "eighty",
      DB_POOL_MAX: "0",
      CORS_ORIGINS: "https://a.example.com",
      LOG_LEVEL: "loud",
      DATABASE_URL: "mysql://x",
      SECRET_KEY: "short",
      LOG_PRETTY: "maybe",
    });
    const names = problems.map((p) => p.split(":")[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        "PORT",
        "DB_POOL_MAX",
        "CORS_ORIGINS",
        "LOG_LEVEL",
        "DATABASE_URL",
        "SECRET_KEY",
        "LOG_PRETTY",
      ]),
    );
  });

  it("refuses insecure defaults in production", () => {
    const problems = problemsOf({ NODE_ENV: "production", CORS_ORIGINS: '["*"]', CORS_CREDENTIALS: "true" });
    expect(problems.some((p) => p.startsWith("SECRET_KEY"))).toBe(true);
    expect(problems.some((p) => p.startsWith("CORS_ORIGINS"))).toBe(true);
    expect(problems.some((p) => p.startsWith("DATABASE_URL"))).toBe(true);
  });

  it("accepts a complete production configuration", () => {
    const c = loadConfig(
      {
        NODE_ENV: "production",
        SECRET_KEY: "x".repeat(48),
        DATABASE_URL: "postgres://db/app",
        CORS_ORIGINS: '["https://app.example.com"]',
      },
      opts,
    );
    expect(c.env).toBe("production");
    expect(c.auth.secretKeyGenerated).toBe(false);
  });

  it("allows the embedded database in production only when asked", () => {
    const c = loadConfig(
      { NODE_ENV: "production", SECRET_KEY: "x".repeat(48), ALLOW_EMBEDDED_DB_IN_PRODUCTION: "true" },
      opts,
    );
    expect(c.db.url).toBeUndefined();
  });
});

describe("limits and api-keys settings", () => {
  it("has the documented defaults", () => {
    const c = loadConfig({}, opts);
    expect(c.limits).toEqual({ redisTimeoutMs: 50, redisRetryMs: 1_000, instanceCount: 1, usageFlushMs: 10_000 });
    expect(c.apiKeys.cacheFreshMs).toBe(10_000);
    expect(c.apiKeys.negativeCacheMs).toBe(5_000);
    expect(c.apiKeys.lastUsedFlushMs).toBe(60_000);
  });

  it("lists every bad value at once", () => {
    const problems = problemsOf({ LIMITS_REDIS_TIMEOUT_MS: "0", LIMITS_INSTANCE_COUNT: "many", BOOTSTRAP_DEMO: "yes" });
    expect(problems.join("\n")).toMatch(/LIMITS_REDIS_TIMEOUT_MS/);
    expect(problems.join("\n")).toMatch(/LIMITS_INSTANCE_COUNT/);
    expect(problems.join("\n")).toMatch(/BOOTSTRAP_DEMO/);
  });

  describe("billing", () => {
    it("is off without a Stripe key: no prices or webhook secret needed", () => {
      const c = loadConfig({}, opts);
      expect(c.billing.stripeSecretKey).toBeUndefined();
      expect(c.billing.graceDays).toBe(7);
      expect(c.billing.redirectOrigins).toEqual(["http://localhost:8000"]);
    });

    it("a key without the webhook secret or the tier prices stops startup, naming each", () => {
      const p = problemsOf({
        NODE_ENV: "production",
        SECRET_KEY: "x".repeat(40),
        DATABASE_URL: "postgres://db/app",
        STRIPE_SECRET_KEY: "sk_live_abc123",
      });
      expect(p.some((m) => m.startsWith("STRIPE_WEBHOOK_SECRET"))).toBe(true);
      expect(p.some((m) => m.startsWith("STRIPE_PRICE_PRO"))).toBe(true);
      expect(p.some((m) => m.startsWith("STRIPE_PRICE_ENTERPRISE"))).toBe(true);
      const ok = problemsOf({
        STRIPE_SECRET_KEY: "sk_test_abc123",
        STRIPE_WEBHOOK_SECRET: "whsec_abc",
        STRIPE_PRICE_PRO: "price_pro_m, price_pro_y",
        STRIPE_PRICE_ENTERPRISE: "price_ent",
      });
      expect(ok).toEqual([]);
    });

    it("refuses malformed keys, prices, a price in both tiers and redirect origins with a path", () => {
      const p = problemsOf({
        STRIPE_SECRET_KEY: "pk_test_publishable",
        STRIPE_WEBHOOK_SECRET: "whsec_abc",
        STRIPE_PRICE_PRO: "price_a,prod_b",
        STRIPE_PRICE_ENTERPRISE: "price_a",
        BILLING_REDIRECT_ORIGINS: '["https://ok.example.com", "https://bad.example.com/path", "javascript:x"]',
      });
      expect(p.some((m) => m.startsWith("STRIPE_SECRET_KEY"))).toBe(true);
      expect(p.some((m) => m.includes('"prod_b"'))).toBe(true);
      expect(p.some((m) => m.includes("listed for both tiers"))).toBe(true);
      expect(p.filter((m) => m.startsWith("BILLING_REDIRECT_ORIGINS"))).toHaveLength(2);
    });

    it("parses prices per tier, the first one sold at checkout", () => {
      const c = loadConfig(
        {
          PUBLIC_BASE_URL: "https://api.example.com/",
          STRIPE_SECRET_KEY: "rk_live_abc",
          STRIPE_WEBHOOK_SECRET: "whsec_abc",
          STRIPE_PRICE_PRO: "price_pro_m,price_pro_y",
          STRIPE_PRICE_ENTERPRISE: "price_ent",
          BILLING_REDIRECT_ORIGINS: '["https://app.example.com"]',
        },
        opts,
      );
      expect(c.billing.prices).toEqual({ pro: ["price_pro_m", "price_pro_y"], enterprise: ["price_ent"] });
      expect(c.billing.redirectOrigins).toEqual(["https://api.example.com", "https://app.example.com"]);
    });
  });
});

describe("object store settings", () => {
  it("defaults to the folder under DATA_DIR, with no S3", () => {
    const c = loadConfig({ DATA_DIR: "/tmp/vla-x" }, opts);
    expect(c.objectStore).toMatchObject({ dir: "/tmp/vla-x/objects", s3: undefined, uploadQueueMax: 1000 });
  });

  it("a bucket alone is AWS with the default credential chain; an endpoint and both keys are taken", () => {
    expect(loadConfig({ S3_BUCKET: "robot-frames" }, opts).objectStore.s3).toEqual({
      bucket: "robot-frames",
      endpoint: undefined,
      region: "us-east-1",
      credentials: undefined,
      forcePathStyle: false,
    });
    const c = loadConfig(
      {
        S3_BUCKET: "robot-frames",
        S3_ENDPOINT: "http://127.0.0.1:9000",
        S3_REGION: "eu-west-1",
        S3_ACCESS_KEY_ID: "AKIAEXAMPLE",
        S3_SECRET_ACCESS_KEY: "secret-example",
        S3_FORCE_PATH_STYLE: "true",
      },
      opts,
    );
    expect(c.objectStore.s3).toMatchObject({
      endpoint: "http://127.0.0.1:9000",
      region: "eu-west-1",
      credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "secret-example" },
      forcePathStyle: true,
    });
  });

  it("refuses half-configured credentials, settings without a bucket, and bad names, all at once", () => {
    const half = problemsOf({ S3_BUCKET: "robot-frames", S3_ACCESS_KEY_ID: "AKIAEXAMPLE" }).join("\n");
    expect(half).toMatch(/S3_ACCESS_KEY_ID \/ S3_SECRET_ACCESS_KEY: set both or neither/);
    expect(half).not.toContain("AKIAEXAMPLE");
    const noBucket = problemsOf({ S3_ENDPOINT: "http://127.0.0.1:9000", S3_SECRET_ACCESS_KEY: "x" }).join("\n");
    expect(noBucket).toMatch(/S3_BUCKET: required when S3_ENDPOINT, S3_SECRET_ACCESS_KEY is set/);
    expect(noBucket).toMatch(/set both or neither/);
    expect(problemsOf({ S3_BUCKET: "Bad_Bucket" }).join("\n")).toMatch(/S3_BUCKET: not a valid bucket name/);
    expect(problemsOf({ S3_BUCKET: "b-ok", S3_ENDPOINT: "ftp://x" }).join("\n")).toMatch(/S3_ENDPOINT/);
    expect(problemsOf({ IMAGE_UPLOAD_ATTEMPTS: "0" }).join("\n")).toMatch(/IMAGE_UPLOAD_ATTEMPTS/);
  });
});
