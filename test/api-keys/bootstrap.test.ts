import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { eq } from "drizzle-orm";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { BOOTSTRAP_ADMIN_EMAIL, BOOTSTRAP_DEMO_EMAIL, DEMO_KEY_MODEL } from "../../src/modules/api-keys/bootstrap.ts";
import { verifyPassword } from "../../src/modules/auth/password.ts";
import { UsersRepo } from "../../src/modules/users/users.repo.ts";
import { apiKeys, customers } from "../../src/platform/db/schema/index.ts";
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

  it("prints an inference command that works as printed: its frame exists and the request succeeds", async () => {
    const ctx = await buildLimitsApp({ env: { BOOTSTRAP_DEMO: "auto", MODELS_WARM_UP: "false" }, realClock: true });
    try {
      const command = curlCommands(ctx.app.platform.notices).find((c) => c.url.endsWith("/v1/inference"));
      if (command === undefined) throw new Error("no inference command printed");
      const image = command.files.get("image");
      expect(image).toBeDefined();
      const file = image as string;
      expect(path.isAbsolute(file)).toBe(true);
      expect(path.dirname(file)).toBe(path.resolve(ctx.app.platform.config.dataDir));
      expect(existsSync(file)).toBe(true);
      const meta = await sharp(file).metadata();
      expect(meta).toMatchObject({ format: "jpeg", width: 224, height: 224 });

      // The request curl would send, field for field.
      const boundary = "----firstrun";
      const parts: Buffer[] = [];
      for (const [name, value] of command.fields) {
        parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`));
      }
      parts.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${path.basename(file)}"\r\nContent-Type: image/jpeg\r\n\r\n`,
        ),
        readFileSync(file),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      );
      const res = await ctx.app.inject({
        method: "POST",
        url: new URL(command.url).pathname,
        headers: { ...command.headers, "content-type": `multipart/form-data; boundary=${boundary}` },
        payload: Buffer.concat(parts),
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().action).toHaveLength(7);
      expect(res.json().model).toBe("demo-vla-tiny");
    } finally {
      await ctx.close();
    }
  });

  it("gives the demo customer limits a simulation can use and writes the demo key to DATA_DIR/demo-key (0600)", async () => {
    const ctx = await buildLimitsApp({ env: { BOOTSTRAP_DEMO: "auto", MODELS_WARM_UP: "false" }, realClock: true });
    try {
      const text = ctx.app.platform.notices.join("\n");
      const key = /(vla_live_[1-9A-HJ-NP-Za-km-z]+)/.exec(text)?.[1] as string;
      const file = path.join(ctx.app.platform.config.dataDir, "demo-key");
      expect(readFileSync(file, "utf8")).toBe(`${key}\n`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(text).toContain(`(also in ${file}, mode 0600: npm run sim uses it when given no --key)`);
      expect(text).toContain(
        "1200/min, 100000/day, 1000000/month, streams 100 frames/s (development only, for npm run sim)",
      );
      expect(text).toContain("npm run sim -- --episodes 5 --via rest");
      const [demo] = await ctx.database.db.select().from(customers).where(eq(customers.email, BOOTSTRAP_DEMO_EMAIL));
      expect(demo).toMatchObject({
        tier: "free",
        rateLimitPerMinute: 1200,
        quotaPerDay: 100_000,
        quotaPerMonth: 1_000_000,
      });
      const usage = await ctx.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
      expect(JSON.stringify(usage.json())).toContain("1200");
      // Bound to the trained tabletop policy: /act (which names no model) drives the simulated arm.
      const [row] = await ctx.database.db
        .select()
        .from(apiKeys)
        .where(eq(apiKeys.customerId, demo?.id as string));
      expect(row).toMatchObject({ model: DEMO_KEY_MODEL.model, unnormKey: DEMO_KEY_MODEL.unnormKey });
      expect(text).toContain(`scope inference, model ${DEMO_KEY_MODEL.model})`);
    } finally {
      await ctx.close();
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

interface CurlCommand {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly fields: Map<string, string>;
  readonly files: Map<string, string>;
}

/** The curl commands of the notice, split into words as a POSIX shell would (quotes, line continuations). */
function curlCommands(lines: readonly string[]): CurlCommand[] {
  const text = lines.join("\n").replace(/\\\n/g, " ");
  const out: CurlCommand[] = [];
  for (const line of text.split("\n")) {
    const start = line.indexOf("curl ");
    if (start === -1) continue;
    const words: string[] = [];
    let word: string | null = null;
    const src = line.slice(start);
    for (let i = 0; i < src.length; i++) {
      const ch = src[i] as string;
      if (ch === "'") {
        const end = src.indexOf("'", i + 1);
        word = (word ?? "") + src.slice(i + 1, end);
        i = end;
      } else if (ch === '"') {
        let j = i + 1;
        let v = "";
        while (src[j] !== '"') {
          if (src[j] === "\\") j++;
          v += src[j];
          j++;
        }
        word = (word ?? "") + v;
        i = j;
      } else if (ch === " ") {
        if (word !== null) words.push(word);
        word = null;
      } else {
        word = (word ?? "") + ch;
      }
    }
    if (word !== null) words.push(word);
    const cmd: CurlCommand = { url: "", headers: {}, fields: new Map(), files: new Map() };
    for (let i = 1; i < words.length; i++) {
      const w = words[i] as string;
      if (w === "-H") {
        const [k, ...v] = (words[++i] as string).split(":");
        cmd.headers[(k as string).toLowerCase()] = v.join(":").trim();
      } else if (w === "-F") {
        const f = words[++i] as string;
        const eq = f.indexOf("=");
        const name = f.slice(0, eq);
        const value = f.slice(eq + 1);
        if (value.startsWith("@")) cmd.files.set(name, value.slice(1));
        else cmd.fields.set(name, value);
      } else {
        Object.assign(cmd, { url: w });
      }
    }
    out.push(cmd);
  }
  return out;
}
