import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // The cluster tier (3 API processes behind HAProxy) runs on its own: `npm run test:cluster`.
    exclude: ["**/node_modules/**", "test/cluster/**"],
    environment: "node",
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Unit and integration tests share the two cores; each file has its own database.
    fileParallelism: true,
    reporters: ["default"],
  },
});
