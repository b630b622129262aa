import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { BOOTSTRAP_ADMIN_EMAIL } from "../../src/modules/api-keys/bootstrap.ts";
import { verifyPassword } from "../../src/modules/auth/password.ts";
import { UsersRepo } from "../../src/modules/users/users.repo.ts";
import { isolatedDatabase } from "../helpers/app.ts";
import { buildLimitsApp } from "../helpers/limits.ts";

describe("first-run demo bootstrap", () => {
  it("is off in tests and production unless asked", () => {
    const opts = { dotenv: false, persistGeneratedSecret: false } as const;
    expect(loadConfig({ NODE_ENV: "test" }, opts).bootstrap.demo).toBe("off");
    expect(loadConfig({}, opts).bootstrap.demo).toBe("auto");
    expect(loadConfig({ BOOTSTRAP_DEMO: "off" }, opts).bootstrap.demo).toBe("off");
    expect(
      loadConfig(
        { NODE_ENV: "production", BOOTSTRAP_DEMO: "auto", SECRET_KEY: "x".repeat(40), DATABASE_URL: "postgres://h/db" },
        opts,
      ).bootstrap.demo,
    ).toBe("off");
  });

  it("creates an admin and a demo key once, prints them once, stores only hashes", async () => {
    const isolated = await isolatedDatabase();
    try {
      const first = await buildLimitsApp({
        database: isolated.database,
        env: { BOOTSTRAP_DEMO: "auto" },
        realClock: true,
      });
      let key: string;
      let password: string;
      try {
        const text = first.app.platform.notices.join("\n");
        key = /(vla_live_[1-9A-HJ-NP-Za-km-z]+)/.exec(text)?.[1] as string;
        password = new RegExp(`${BOOTSTRAP_ADMIN_EMAIL} / (\\S+)`).exec(text)?.[1] as string;
        expect(key).toBeDefined();
        expect(password).toBeDefined();
        expect(text).toContain(`curl -H "X-API-Key: ${key}" http://localhost:8000/v1/usage`);
        expect(text).toContain("-F robot_id=arm-1 -F model=demo-vla-tiny http://localhost:8000/v1/inference");
        const usage = await first.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
        expect(usage.statusCode).toBe(200);
        expect(usage.json()).toMatchObject({ tier: "free" });
        const list = await first.app.inject({ method: "GET", url: "/v1/api-keys", headers: { "x-api-key": key } });
        expect(list.statusCode).toBe(403); // an inference key
      } finally {
        await first.close();
      }
      const admin = await new UsersRepo(isolated.database.db).findByEmail(BOOTSTRAP_ADMIN_EMAIL);
      expect(admin?.isSuperuser).toBe(true);
      expect(admin?.passwordHash).not.toContain(password);
      expect((await verifyPassword(admin?.passwordHash as string, password)).ok).toBe(true);

      const second = await buildLimitsApp({ database: isolated.database, env: { BOOTSTRAP_DEMO: "auto" } });
      try {
        expect(second.app.platform.notices).toEqual([]);
      } finally {
        await second.close();
      }
    } finally {
      await isolated.drop();
    }
  });

  it("does nothing unless asked", async () => {
    const ctx = await buildLimitsApp();
    try {
      expect(ctx.app.platform.notices).toEqual([]);
    } finally {
      await ctx.close();
    }
  });
});
