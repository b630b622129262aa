import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jpeg } from "../engine/helpers.ts";
import {
  buildLimitsApp,
  FakeClock,
  hasRedis,
  type LimitsContext,
  owner,
  seedCustomer,
  seedKey,
  xKey,
} from "../helpers/limits.ts";
import { createExperiment, split } from "./helpers.ts";

let a: LimitsContext;
let b: LimitsContext;
let img: string;

beforeAll(async () => {
  const clock = new FakeClock();
  const env = { MODELS_WARM_UP: "false" };
  a = await buildLimitsApp({ clock, env });
  b = await buildLimitsApp({ clock, env, database: a.database });
  img = (await jpeg(224, 224, 3)).toString("base64");
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

describe("an experiment across instances", () => {
  it("keeps each robot on the same variant on both instances (no shared state but the database)", async () => {
    const customerId = await seedCustomer(a.database, { tier: "enterprise", perMinute: 1_000_000 });
    const { key } = await seedKey(a.database, customerId);
    const e = await createExperiment(
      a.app,
      customerId,
      split([
        { name: "control", model: "mock-openvla-7b", weight: 1 },
        { name: "candidate", model: "demo-vla-tiny", weight: 1 },
      ]),
    );
    expect(e.statusCode, e.body).toBe(201);
    const variantOn = async (app: LimitsContext["app"], robot: string) => {
      const res = await app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: xKey(key),
        payload: { image: img, instruction: "pick", robot_id: robot, unnorm_key: "bridge_orig" },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().experiment.id).toBe(e.json().id);
      return res.json().experiment.variant as string;
    };
    const variants = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const robot = `robot-${i}`;
      const onA = await variantOn(a.app, robot);
      const onB = await variantOn(b.app, robot);
      expect(onB, robot).toBe(onA);
      expect(await variantOn(a.app, robot)).toBe(onA);
      variants.add(onA);
    }
    expect(variants.size).toBe(2);
  });

  it.skipIf(!hasRedis)("a stop on one instance reaches the other at once through Redis (no cache wait)", async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    const clock = new FakeClock();
    const env = { MODELS_WARM_UP: "false", EXPERIMENTS_CACHE_MS: "3600000" };
    const x = await buildLimitsApp({ clock, env, redisKeyPrefix: prefix });
    const y = await buildLimitsApp({ clock, env, redisKeyPrefix: prefix, database: x.database });
    try {
      const customerId = await seedCustomer(x.database, { tier: "enterprise", perMinute: 1_000_000 });
      const { key } = await seedKey(x.database, customerId);
      const call = async (app: LimitsContext["app"]) =>
        (
          await app.inject({
            method: "POST",
            url: "/v1/inference",
            headers: xKey(key),
            payload: { image: img, instruction: "pick", robot_id: "arm-1", unnorm_key: "bridge_orig" },
          })
        ).json().experiment;
      const e = (
        await createExperiment(
          x.app,
          customerId,
          split([
            { name: "a", model: "mock-openvla-7b", weight: 1 },
            { name: "b", model: "demo-vla-tiny", weight: 1 },
          ]),
        )
      ).json();
      expect((await call(y.app))?.id).toBe(e.id); // y caches the running experiment for an hour
      const stop = await x.app.inject({
        method: "POST",
        url: `/v1/experiments/${e.id}/stop`,
        headers: owner(customerId),
      });
      expect(stop.statusCode).toBe(200);
      let tagged: unknown = "pending";
      for (let i = 0; i < 50 && tagged !== undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        tagged = await call(y.app);
      }
      expect(tagged).toBeUndefined();
    } finally {
      await y.close();
      await x.close();
    }
  });
});
