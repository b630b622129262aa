import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { buildLimitsApp, hasRedis, type LimitsContext } from "../helpers/limits.ts";
import { flushLogs, newKey, pattern } from "../inference/helpers.ts";
import { buildStreamApp, Client, jpeg, type StreamTestContext, started } from "../streaming/helpers.ts";
import { installConsentSessions, owner, storedContext, storedInstructions, storedObjects } from "./helpers.ts";

/**
 * Enforcement of store_instructions: for each consent state, one inference through every entry
 * point (REST ok, REST failed, /act, WS /v1/stream, WS /v1/openpi), then
 * the stored rows: the SHA-256 always, the text only when the effective consent allows it.
 */
let t: StreamTestContext;
let img: Buffer;
beforeAll(async () => {
  t = await buildStreamApp();
  installConsentSessions(t.app);
  img = await jpeg(64, 64, 3);
});
afterAll(async () => {
  await t?.close();
});

const HOUR = 3_600_000;

async function setConsent(app: LimitsContext["app"], customerId: string, body: Record<string, unknown>) {
  const res = await app.inject({ method: "PUT", url: "/v1/consent", headers: owner(customerId), payload: body });
  expect(res.statusCode, res.body).toBe(200);
}

function rest(app: LimitsContext["app"], key: string, instruction: string, model?: string) {
  return app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: {
      image: img.toString("base64"),
      instruction,
      robot_id: "arm-c",
      unnorm_key: "bridge_orig",
      ...(model === undefined ? {} : { model }),
    },
  });
}

/** One inference per entry point: REST (ok and failed), /act, WS /v1/stream, WS /v1/openpi. */
async function driveAll(key: string, instruction: string): Promise<void> {
  expect((await rest(t.app, key, instruction)).statusCode).toBe(200);
  expect((await rest(t.app, key, instruction, "no-such-model")).statusCode).toBe(404);
  const act = await t.app.inject({
    method: "POST",
    url: "/act",
    headers: { "x-api-key": key, "content-type": "application/json" },
    payload: JSON.stringify({
      image: { __numpy__: pattern(64, 64, 2).toString("base64"), dtype: "|u1", shape: [64, 64, 3] },
      instruction,
      unnorm_key: "bridge_orig",
    }),
  });
  expect(act.statusCode, act.body).toBe(200);
  const { c } = await started(t, { instruction }, key);
  c.json({ type: "frame", seq: 1, image: img.toString("base64") });
  await c.type("action");
  c.json({ type: "stop" });
  await c.closed;
  const pi = new Client(`${t.baseUrl}/v1/openpi?unnorm_key=bridge_orig`, { authorization: `Api-Key ${key}` });
  await pi.opened();
  await pi.next(() => pi.raw.length >= 1); // metadata
  pi.ws.send(
    packMsgpackNumpy({
      "observation/image": { data: pattern(224, 224, 4), shape: [224, 224, 3] },
      prompt: instruction,
    }),
  );
  await pi.next(() => pi.raw.length >= 2);
  pi.close();
  await pi.closed;
}

interface Case {
  readonly name: string;
  readonly consent: Record<string, unknown> | null;
  /** Instruction text kept. */
  readonly stored: boolean;
  /** context_metadata: rows at all (not under `full`), with an embedding, with a stored image. */
  readonly context: "none" | "metrics" | "embedding" | "image" | "embedding+image";
  readonly expire?: boolean;
}

const CASES: readonly Case[] = [
  { name: "no record (CONSENT_DEFAULT_TIER=basic)", consent: null, stored: true, context: "metrics" },
  { name: "tier none", consent: { tier: "none", policy_version: "p" }, stored: false, context: "metrics" },
  { name: "tier basic", consent: { tier: "basic", policy_version: "p" }, stored: true, context: "metrics" },
  {
    name: "tier analytics",
    consent: { tier: "analytics", policy_version: "p" },
    stored: true,
    context: "embedding",
  },
  {
    name: "tier research",
    consent: { tier: "research", policy_version: "p" },
    stored: true,
    context: "embedding+image",
  },
  {
    name: "research with store_embeddings narrowed off",
    consent: { tier: "research", permissions: { store_embeddings: false }, policy_version: "p" },
    stored: true,
    context: "image",
  },
  {
    name: "research with store_images narrowed off",
    consent: { tier: "research", permissions: { store_images: false }, policy_version: "p" },
    stored: true,
    context: "embedding",
  },
  {
    name: "basic with store_instructions narrowed off",
    consent: { tier: "basic", permissions: { store_instructions: false }, policy_version: "p" },
    stored: false,
    context: "metrics",
  },
  {
    name: "research with anonymization partial",
    consent: { tier: "research", anonymization: "partial", policy_version: "p" },
    stored: false,
    context: "embedding+image",
  },
  {
    name: "research with anonymization full",
    consent: { tier: "research", anonymization: "full", policy_version: "p" },
    stored: false,
    context: "none",
  },
  {
    name: "research, expired",
    consent: { tier: "research", policy_version: "p" },
    stored: false,
    context: "metrics",
    expire: true,
  },
];

/**
 * context_metadata and the object store: one row per successful inference (4: REST, /act, stream,
 * openpi; the failed one has no image), hash and size always, the embedding and the image only
 * as the case allows; `full` keeps neither rows nor objects. The objects are exactly the keys the
 * rows name: the JPEG sent twice (REST and stream) is one object, the two arrays are PNGs.
 */
async function checkContext(k: Case, customerId: string): Promise<void> {
  const rows = await storedContext(t.database, customerId);
  const objects = await storedObjects(t.app, customerId);
  if (k.context === "none") {
    expect(rows).toEqual([]);
    expect(objects).toEqual([]);
    return;
  }
  expect(rows).toHaveLength(4);
  const embedding = k.context.includes("embedding");
  const image = k.context.includes("image");
  for (const r of rows) {
    expect(r.imageSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(r.imageBytes).toBeGreaterThan(0);
    expect(r.width).toBeGreaterThan(0);
    expect(r.height).toBeGreaterThan(0);
    if (embedding) {
      expect(r.embedding).toHaveLength(64);
      expect(r.embeddingKind).toBe("thumbnail-8x8-v1");
    } else {
      expect(r.embedding).toBeNull();
      expect(r.embeddingKind).toBeNull();
    }
    if (image)
      expect(r.imageKey).toBe(`images/${customerId}/${r.imageSha256}.${r.imageFormat === "jpeg" ? "jpg" : "png"}`);
    else expect(r.imageKey).toBeNull();
  }
  const jpegSha = createHash("sha256").update(img).digest("hex");
  expect(rows.filter((r) => r.imageFormat === "jpeg").map((r) => r.imageSha256)).toEqual([jpegSha, jpegSha]);
  expect(rows.filter((r) => r.imageFormat === "array")).toHaveLength(2);
  if (!image) {
    expect(objects).toEqual([]);
    return;
  }
  expect(objects).toEqual([...new Set(rows.map((r) => r.imageKey as string))].sort());
  expect(objects).toHaveLength(3);
  const stored = await t.app.platform.objectStore.get(`images/${customerId}/${jpegSha}.jpg`);
  const chunks: Buffer[] = [];
  for await (const ch of stored?.body ?? []) chunks.push(ch as Buffer);
  expect(Buffer.concat(chunks).equals(img)).toBe(true);
}

describe("instruction text, context metadata and images are stored only as consent allows", () => {
  for (const k of CASES) {
    it(`${k.name}: text ${k.stored ? "stored" : "not stored"}, hash always`, async () => {
      const c = await newKey(t);
      if (k.consent !== null) {
        const expiresAt = k.expire === true ? new Date(t.clock.now() + HOUR).toISOString() : undefined;
        await setConsent(t.app, c.customerId, {
          ...k.consent,
          ...(expiresAt === undefined ? {} : { expires_at: expiresAt }),
        });
      }
      if (k.expire === true) t.clock.advance(2 * HOUR);
      const instruction = `secret task for ${k.name}`;
      await driveAll(c.key, instruction);
      await flushLogs(t.app);
      const rows = await storedInstructions(t.database, c.customerId);
      expect(new Set(rows.map((r) => `${r.source}/${r.status}`))).toEqual(
        new Set(["rest/ok", "rest/error", "act/ok", "stream/ok", "openpi/ok"]),
      );
      for (const r of rows) {
        if (k.context === "none") continue; // `full` keeps no hash (anonymization.test.ts)
        expect(r.sha, JSON.stringify(r)).toMatch(/^[0-9a-f]{64}$/);
        expect(r.instruction, JSON.stringify(r)).toBe(k.stored ? instruction : null);
      }
      await checkContext(k, c.customerId);
    });
  }

  it("a change applies to the very next request (the cached consent is dropped at once)", async () => {
    const c = await newKey(t);
    expect((await rest(t.app, c.key, "first")).statusCode).toBe(200); // caches the default consent
    await setConsent(t.app, c.customerId, { tier: "none", policy_version: "p" });
    expect((await rest(t.app, c.key, "second")).statusCode).toBe(200);
    await setConsent(t.app, c.customerId, { tier: "basic", policy_version: "p" });
    expect((await rest(t.app, c.key, "third")).statusCode).toBe(200);
    const withdrawn = await t.app.inject({
      method: "DELETE",
      url: `/admin/consent/${c.customerId}`,
      headers: { authorization: `Bearer super:${c.customerId}` },
    });
    expect(withdrawn.statusCode, withdrawn.body).toBe(200);
    expect((await rest(t.app, c.key, "fourth")).statusCode).toBe(200);
    await flushLogs(t.app);
    const rows = await storedInstructions(t.database, c.customerId);
    expect(rows.map((r) => r.instruction).sort()).toEqual(["first", "third", null, null].sort());
  });

  it("LOG_INSTRUCTIONS=false is a ceiling: no text even with research consent", async () => {
    const other = await buildLimitsApp({ env: { MODELS_WARM_UP: "false", LOG_INSTRUCTIONS: "false" } });
    try {
      installConsentSessions(other.app);
      const c = await newKey(other);
      await setConsent(other.app, c.customerId, { tier: "research", policy_version: "p" });
      const view = await other.app.inject({ method: "GET", url: "/v1/consent", headers: owner(c.customerId) });
      expect(view.json()).toMatchObject({ permissions: { store_instructions: true }, instruction_text_stored: false });
      expect((await rest(other.app, c.key, "kept?")).statusCode).toBe(200);
      await flushLogs(other.app);
      const rows = await storedInstructions(other.database, c.customerId);
      expect(rows).toHaveLength(1);
      expect(rows[0]?.instruction).toBeNull();
    } finally {
      await other.close();
    }
  });

  it("CONSENT_DEFAULT_TIER=none: a customer without a record keeps no text", async () => {
    const other = await buildLimitsApp({ env: { MODELS_WARM_UP: "false", CONSENT_DEFAULT_TIER: "none" } });
    try {
      const c = await newKey(other);
      expect((await rest(other.app, c.key, "hidden")).statusCode).toBe(200);
      await flushLogs(other.app);
      const rows = await storedInstructions(other.database, c.customerId);
      expect(rows.map((r) => r.instruction)).toEqual([null]);
    } finally {
      await other.close();
    }
  });
});

describe.skipIf(!hasRedis)("across instances (Redis)", () => {
  it("a change on one instance drops the other's cached consent", async () => {
    const prefix = `vla:consent-${Date.now()}-${Math.random().toString(36).slice(2)}:`;
    const a = await buildLimitsApp({ env: { MODELS_WARM_UP: "false" }, redisKeyPrefix: prefix });
    const b = await buildLimitsApp({
      env: { MODELS_WARM_UP: "false" },
      database: a.database,
      redisKeyPrefix: prefix,
      clock: a.clock,
    });
    try {
      installConsentSessions(b.app);
      for (
        let i = 0;
        i < 100 && !(a.app.platform.invalidation.broadcasting && b.app.platform.invalidation.broadcasting);
        i++
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const c = await newKey(a);
      expect((await rest(a.app, c.key, "before")).statusCode).toBe(200); // a caches the default (basic)
      await setConsent(b.app, c.customerId, { tier: "none", policy_version: "p" });
      // The broadcast arrives asynchronously: poll until a stores no text (bounded), never time it.
      let stored: (string | null)[] = [];
      for (let i = 0; i < 100; i++) {
        expect((await rest(a.app, c.key, `after-${i}`)).statusCode).toBe(200);
        await flushLogs(a.app);
        stored = (await storedInstructions(a.database, c.customerId)).map((r) => r.instruction);
        if (stored.includes(null)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(stored).toContain(null);
      expect(stored).toContain("before");
    } finally {
      await b.close();
      await a.close();
    }
  });
});
