import { writeFileSync } from "node:fs";
import path from "node:path";
import type { App } from "../../src/app.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import { ApiKeysRepo } from "../../src/modules/api-keys/api-keys.repo.ts";
import { generateKey } from "../../src/modules/api-keys/key-format.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT } from "../../src/modules/models/registry.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { customers } from "../../src/platform/db/schema/index.ts";

/**
 * Helpers of the benchmarks' server child processes: an enterprise customer whose limits never
 * bind (2e9 per window, and a stream frame-rate ceiling of 1e6 fps so a tight openpi loop measures
 * the server, not the tier's 100 fps ceiling) with one `inference` key, and the READY line the
 * parent waits for.
 */
export async function seedUnlimitedKey(database: Database): Promise<{ customerId: string; key: string }> {
  const [customer] = await database.db
    .insert(customers)
    .values({
      name: "bench",
      email: `bench-${process.pid}-${Date.now()}@example.com`,
      tier: "enterprise",
      rateLimitPerMinute: 2_000_000_000,
      quotaPerDay: 2_000_000_000,
      quotaPerMonth: 2_000_000_000,
      streamMaxFps: 1_000_000,
    })
    .returning();
  if (customer === undefined) throw new Error("no customer");
  const key = generateKey();
  await new ApiKeysRepo(database.db).insert({
    customerId: customer.id,
    name: "bench",
    keyHash: key.hash,
    displayPrefix: key.displayPrefix,
    scopes: ["inference"],
    expiresAt: null,
    createdByUserId: null,
  });
  return { customerId: customer.id, key: key.key };
}

/**
 * The benchmarks' server config: development mode, silent logs, load shedding and the demo
 * bootstrap off, a fixed secret, data under `dataDir`, plus `env`. `JPEG_DECODE_THREADS` from
 * the environment passes through, to compare decode thread counts (0: on the event loop).
 */
export function benchConfig(dataDir: string, env: Record<string, string> = {}): Config {
  return loadConfig(
    {
      NODE_ENV: "development",
      LOG_LEVEL: "silent",
      DATA_DIR: dataDir,
      MAX_EVENT_LOOP_DELAY_MS: "0",
      BOOTSTRAP_DEMO: "off",
      SECRET_KEY: "bench-secret-key-that-is-long-enough-0123456789",
      ...(process.env.JPEG_DECODE_THREADS === undefined
        ? {}
        : { JPEG_DECODE_THREADS: process.env.JPEG_DECODE_THREADS }),
      ...env,
    },
    { dotenv: false, persistGeneratedSecret: false },
  );
}

/** Listens on a free loopback port, prints `READY {port, key}`, and closes cleanly on SIGTERM. */
export async function serveForBench(app: App, database: Database, key: string): Promise<number> {
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  const port = Number(new URL(address).port);
  process.stdout.write(`READY ${JSON.stringify({ port, key })}\n`);
  process.on("SIGTERM", () => {
    void app.close().then(async () => {
      await database.close();
      process.exit(0);
    });
  });
  return port;
}

/**
 * Writes a registry with only `mock-openvla-7b` (0 ms, its statistics by absolute path) into
 * `dataDir` and returns the file for `MODELS_CONFIG`; `overrides` adjust the model entry.
 */
export function writeMockRegistry(dataDir: string, overrides: Record<string, unknown>): string {
  const mock = EMBEDDED_REGISTRY.models.find((m) => m.id === "mock-openvla-7b");
  if (mock === undefined) throw new Error("no mock-openvla-7b in the embedded registry");
  const file = path.join(dataDir, "models.json");
  const entry = {
    ...mock,
    dataset_statistics: path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json"),
    ...overrides,
  };
  writeFileSync(file, JSON.stringify({ default_model: "mock-openvla-7b", models: [entry] }));
  return file;
}
