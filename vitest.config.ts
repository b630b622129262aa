import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    environment: "node",
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Unit and integration tests share the two cores; each file has its own database.
    fileParallelism: true,
    reporters: ["default"],
  },
});
