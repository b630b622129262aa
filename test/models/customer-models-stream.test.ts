import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customerModelExample } from "../../src/modules/models/models.schemas.ts";
import { inferenceLogs } from "../../src/platform/db/schema/index.ts";
import { seedKey } from "../helpers/limits.ts";
import {
  buildStreamApp,
  Client,
  connect,
  flushLogs,
  jpeg,
  newKey,
  type StreamTestContext,
} from "../streaming/helpers.ts";
import { type OpenvlaFake, startOpenvlaFake } from "./openvla-fake.ts";

/**
 * A customer's own model on the streaming paths (/v1/stream, /v1/openpi): served to its customer,
 * unknown to others. The endpoint is a loopback fake OpenVLA server (allow-list 127.0.0.0/8, http
 * allowed); its URL is a literal IP, so nothing is resolved.
 */

let fake: OpenvlaFake;
let t: StreamTestContext;
let admin: string;
let otherKey: string;
let img: Buffer;

beforeAll(async () => {
  fake = await startOpenvlaFake([0.02, 0, 0, 0, 0, 0, 1]);
  t = await buildStreamApp({ BYOM_ALLOW_HTTP: "true", BYOM_ALLOWED_NETWORKS: "127.0.0.0/8" });
  admin = (await seedKey(t.database, t.customerId, { scopes: ["inference", "admin"] })).key;
  otherKey = (await newKey(t)).key;
  img = await jpeg(64, 48, 9);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/models",
    headers: { "x-api-key": admin },
    payload: {
      ...customerModelExample,
      id: "cell-policy",
      backend: { kind: "openvla-http", endpoints: [fake.url] },
    },
  });
  if (res.statusCode !== 201) throw new Error(res.body);
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

describe("a customer's own model on the streaming paths", () => {
  it("WS /v1/stream: its customer streams with it (actions, logged with source stream); others get unknown_model", async () => {
    const c = await connect(t, t.key);
    c.json({ type: "start", robot_id: "arm-9", model: "cell-policy", instruction: "pick the bolt" });
    expect(await c.type("started")).toMatchObject({ model: { id: "cell-policy", backend: "openvla-http" } });
    c.json({ type: "frame", seq: 1, image: img.toString("base64") });
    const a = await c.type("action");
    expect(a).toMatchObject({ seq: 1, action: [0.02, 0, 0, 0, 0, 0, 1] });
    c.close();
    await c.closed;
    await flushLogs(t.app);
    const rows = await t.database.db.select().from(inferenceLogs).where(eq(inferenceLogs.model, "cell-policy"));
    expect(rows.map((r) => [r.customerId, r.source, r.status])).toEqual([[t.customerId, "stream", "ok"]]);

    const other = await connect(t, otherKey);
    other.json({ type: "start", robot_id: "arm-1", model: "cell-policy", instruction: "pick" });
    expect(await other.type("error")).toMatchObject({ code: "unknown_model" });
    other.close();
  });

  it("WS /v1/openpi?model=: opens for its customer", async () => {
    const ok = new Client(`${t.baseUrl}/v1/openpi?model=cell-policy`, { authorization: `Api-Key ${t.key}` });
    await ok.opened();
    ok.close();
  });
});
