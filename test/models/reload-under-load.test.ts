import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAdminApp } from "../admin/suspension-helpers.ts";
import { bearer, type Session } from "../auth/helpers.ts";
import { signUpSuperuser } from "../helpers/admin.ts";
import type { TestContext } from "../helpers/app.ts";
import { seedCustomer, seedKey } from "../helpers/limits.ts";
import { jpeg } from "../inference/helpers.ts";
import { mockEntry, RegistryFile } from "./reload-helpers.ts";

/**
 * Done-when of issue 23: "a registry reload under load with no failed request". Eight requests are
 * in flight at all times (two customers, the default model and two named ones) while the registry
 * file is rewritten and reloaded four times: a model changed twice, one added, one removed that no
 * load targets, the default kept. Every request must answer 200.
 */

const batching = { max_batch_size: 4, max_concurrent_batches: 1 };
const v1 = {
  default_model: "main",
  models: [
    mockEntry("main", { batching }),
    mockEntry("side", { batching, description: "side v1" }),
    mockEntry("idle", { batching }),
  ],
};
const file = new RegistryFile(v1);
let t: TestContext;
let root: Session;
const keys: string[] = [];
let img: string;

beforeAll(async () => {
  t = await buildAdminApp({ env: { MODELS_CONFIG: file.path } });
  root = await signUpSuperuser(t);
  for (let i = 0; i < 2; i++) {
    const customer = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000, perDay: 1_000_000 });
    keys.push((await seedKey(t.database, customer)).key);
  }
  img = (await jpeg(64, 64, 1)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

describe("a registry reload under load", () => {
  it("fails no request; the changed model's new settings are visible afterwards", async () => {
    const targets = [undefined, "main", "side", "side"] as const;
    const failures: string[] = [];
    let done = 0;
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const model = targets[(w + i) % targets.length];
        const res = await t.app.inject({
          method: "POST",
          url: "/v1/inference",
          headers: { "x-api-key": keys[w % keys.length] as string },
          payload: { image: img, instruction: "pick up the block", robot_id: `arm-${w}`, ...(model ? { model } : {}) },
        });
        if (res.statusCode !== 200) failures.push(`${model ?? "(default)"}: ${res.statusCode} ${res.body}`);
        done += 1;
      }
    };
    /** Lets the load run until `n` more requests have answered (the reloads happen under it). */
    const more = async (n: number) => {
      const target = done + n;
      while (done < target && failures.length === 0) await new Promise((r) => setTimeout(r, 5));
    };
    const reload = async (doc: unknown) => {
      file.write(doc);
      const res = await t.app.inject({ method: "POST", url: "/admin/models/reload", headers: bearer(root.access) });
      expect(res.statusCode, res.body).toBe(200);
      return res.json();
    };

    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    try {
      await more(40);
      // 1. `side` changed (description and batch size).
      const side2 = mockEntry("side", { batching: { ...batching, max_batch_size: 2 }, description: "side v2" });
      expect(await reload({ ...v1, models: [v1.models[0], side2, v1.models[2]] })).toMatchObject({
        changed: ["side"],
        unchanged: ["main", "idle"],
      });
      await more(40);
      // 2. `extra` added.
      const v3 = { ...v1, models: [v1.models[0], side2, v1.models[2], mockEntry("extra")] };
      expect(await reload(v3)).toMatchObject({ added: ["extra"], changed: [] });
      await more(40);
      // 3. `idle` removed (no load targets it).
      const v4 = { ...v1, models: [v1.models[0], side2, mockEntry("extra")] };
      expect(await reload(v4)).toMatchObject({ removed: ["idle"], added: [], changed: [] });
      await more(40);
      // 4. `side` changed again, and `main` (the default, under load) too.
      const side3 = mockEntry("side", { batching: { ...batching, max_batch_size: 3 }, description: "side v3" });
      const main2 = mockEntry("main", { batching, description: "main v2" });
      expect(await reload({ ...v1, models: [main2, side3, mockEntry("extra")] })).toMatchObject({
        changed: ["main", "side"],
        unchanged: ["extra"],
        default_model: "main",
      });
      await more(40);
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThanOrEqual(200);
    const side = await t.app.inject({
      method: "GET",
      url: "/v1/models/side",
      headers: { "x-api-key": keys[0] as string },
    });
    expect(side.json()).toMatchObject({ description: "side v3", batching: { max_batch_size: 3 } });
    const main = await t.app.inject({
      method: "GET",
      url: "/v1/models/main",
      headers: { "x-api-key": keys[0] as string },
    });
    expect(main.json()).toMatchObject({ description: "main v2" });
    // The replaced and removed instances drained and closed.
    await expect.poll(() => t.app.platform.engine.draining).toBe(0);
  }, 60_000);
});
