import { defineConfig } from "drizzle-kit";

// Used only by `npm run db:generate` and the drift check; the service never loads it.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/platform/db/schema/index.ts",
  out: "./migrations",
});
