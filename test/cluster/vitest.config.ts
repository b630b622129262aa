import { defineConfig } from "vitest/config";

/** The cluster tier (`npm run test:cluster`): one file, three API processes behind HAProxy. */
export default defineConfig({
  test: {
    root: `${import.meta.dirname}/../..`,
    include: ["test/cluster/**/*.test.ts"],
    environment: "node",
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    reporters: ["default"],
  },
});
