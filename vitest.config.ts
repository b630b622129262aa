import { defineConfig } from "vitest/config";

// TEST_REDIS_CLUSTER_NODES (host:port,...): the Redis tests run against that Redis Cluster;
// TEST_REDIS_URL is set to it too (as redis+cluster://), so every "has Redis" check sees it.
const clusterNodes = process.env.TEST_REDIS_CLUSTER_NODES;
const clusterEnv =
  clusterNodes === undefined || clusterNodes === "" ? {} : { TEST_REDIS_URL: `redis+cluster://${clusterNodes}` };

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // The cluster tier (3 API processes behind HAProxy) runs on its own: `npm run test:cluster`.
    exclude: ["**/node_modules/**", "test/cluster/**"],
    environment: "node",
    env: clusterEnv,
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Unit and integration tests share the two cores; each file has its own database.
    fileParallelism: true,
    reporters: ["default"],
  },
});
