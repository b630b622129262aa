import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg } from "../inference/helpers.ts";
import { settle } from "./helpers.ts";

/** From POST /v1/inference through the log writer and the rollup job to the analytics routes. */
describe.each([
  ["true", "pick up the red block"],
  ["false", null],
])("analytics end to end (LOG_INSTRUCTIONS=%s)", (logInstructions, shown) => {
  let t: InferenceTestContext;
  let img: string;
  beforeAll(async () => {
    t = await buildInferenceApp({ ANALYTICS_ROLLUPS: "false", LOG_INSTRUCTIONS: logInstructions });
    img = (await jpeg(64, 64, 5)).toString("base64");
  });
  afterAll(async () => {
    await t?.close();
  });

  it("counts inferences, grouping instructions by their normalized form", async () => {
    for (const instruction of ["pick up the red block", "  Pick UP the red\tblock "]) {
      const res = await t.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": t.key },
        payload: { image: img, instruction, robot_id: "arm-1", unnorm_key: "bridge_orig" },
      });
      expect(res.statusCode, res.body).toBe(200);
    }
    await flushLogs(t.app);
    await settle(t.app, t.database);
    const ins = await t.app.inject({
      method: "GET",
      url: "/v1/analytics/instructions",
      headers: { "x-api-key": t.key },
    });
    expect(ins.statusCode).toBe(200);
    const data = ins.json().data;
    expect(data).toHaveLength(1);
    expect(data[0]).toMatchObject({ count: 2, errors: 0, success_rate: 1 });
    // The text only when instruction logging allows it (one of the spellings); the hash always.
    if (shown === null) expect(data[0].instruction).toBeNull();
    else expect([shown, "  Pick UP the red\tblock "]).toContain(data[0].instruction);
    expect(data[0].instruction_key).toMatch(/^[0-9a-f]{64}$/);
    const usage = (
      await t.app.inject({ method: "GET", url: "/v1/analytics/usage?group_by=robot", headers: { "x-api-key": t.key } })
    ).json();
    expect(usage.series).toHaveLength(1);
    expect(usage.series[0]).toMatchObject({ group: "arm-1", totals: { requests: 2, errors: 0 } });
    expect(usage.totals.p50_ms).toBeGreaterThan(0);
  });
});
