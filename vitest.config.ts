import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { defineConfig } from "vitest/config";

// TEST_REDIS_CLUSTER_NODES (host:port,...): the Redis tests run against that Redis Cluster;
// TEST_REDIS_URL is set to it too (as redis+cluster://), so every "has Redis" check sees it.
const clusterNodes = process.env.TEST_REDIS_CLUSTER_NODES;
const clusterEnv =
  clusterNodes === undefined || clusterNodes === "" ? {} : { TEST_REDIS_URL: `redis+cluster://${clusterNodes}` };

/**
 * Files that never touch PostgreSQL or Redis whatever TEST_DATABASE_URL / TEST_REDIS_URL say (the
 * CLI tests run the CLI on an embedded DATA_DIR, as an operator's shell does; the pure simulator
 * and deployment-file checks use no database). `.ci/run` sets TEST_SKIP_EMBEDDED_ONLY=1 for its
 * PostgreSQL + Redis pass, so they run once per CI, in the embedded pass, not twice for nothing.
 */
const EMBEDDED_ONLY = [
  "test/cli.test.ts",
  "test/cli-entry.test.ts",
  "test/admin/customers-cli.test.ts",
  "test/retention/cli.test.ts",
  "test/account-export/cli.test.ts",
  "test/deploy/kubernetes.test.ts",
  "test/deploy/compose.test.ts",
  "test/sim/render.test.ts",
  "test/sim/scene.test.ts",
  "test/sim/tasks.test.ts",
  "test/sim/expert.test.ts",
  "test/sim/dataset.test.ts",
  "test/sim/episode.test.ts",
  "test/sim/wire.test.ts",
  "test/sim/closed-loop.test.ts",
];
const skipEmbeddedOnly = process.env.TEST_SKIP_EMBEDDED_ONLY === "1";

/**
 * The unit tests beside the code (src/**) that cannot reach PostgreSQL or Redis: they neither read
 * TEST_DATABASE_URL / TEST_REDIS_URL nor import the test helpers (which do). Found by reading the
 * files, so a new unit test needs no list; they too run once per CI, in the embedded pass.
 */
function storeFreeUnitTests(): string[] {
  const files = readdirSync("src", { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => path.join("src", f).split(path.sep).join("/"));
  return files.filter((f) => !/TEST_DATABASE_URL|TEST_REDIS_URL|test\/helpers\//.test(readFileSync(f, "utf8")));
}

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // The cluster tier (3 API processes behind HAProxy) runs on its own: `npm run test:cluster`.
    exclude: [
      "**/node_modules/**",
      "test/cluster/**",
      ...(skipEmbeddedOnly ? [...EMBEDDED_ONLY, ...storeFreeUnitTests()] : []),
    ],
    environment: "node",
    env: clusterEnv,
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Unit and integration tests share the two cores; each file has its own database. Vitest's
    // default is one worker fewer than the cores (a single worker on the 2-core CI machine); the
    // files spend much of their time waiting on databases, sockets and child processes, so two
    // workers there cut the embedded pass from 734 to 528 s (2026-12-06, same machine and head).
    fileParallelism: true,
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ["default"],
  },
});
