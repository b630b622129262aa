import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeArchive } from "../../src/modules/account-export/archive.ts";
import { imageUploadQueues } from "../../src/modules/context/context.module.ts";
import { retentionJobs } from "../../src/modules/retention/retention.module.ts";
import { type ObjectStore, S3ObjectStore } from "../../src/platform/object-store.ts";
import { ndjson, untarBuffers } from "../account-export/helpers.ts";
import { installConsentSessions, owner, storedContext, storedObjects } from "../consent/helpers.ts";
import { buildLimitsApp, type LimitsContext } from "../helpers/limits.ts";
import { type S3Fake, startS3Fake } from "../helpers/s3.ts";
import { flushLogs, jpeg, newKey } from "../inference/helpers.ts";

const DAY = 86_400_000;
let ctx: LimitsContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

async function app(options: { env?: Record<string, string>; objectStore?: ObjectStore } = {}) {
  ctx = await buildLimitsApp({
    env: { MODELS_WARM_UP: "false", ...options.env },
    ...(options.objectStore === undefined ? {} : { objectStore: options.objectStore }),
  });
  installConsentSessions(ctx.app);
  return ctx;
}

async function consent(c: LimitsContext, customerId: string, body: Record<string, unknown>) {
  const res = await c.app.inject({
    method: "PUT",
    url: "/v1/consent",
    headers: owner(customerId),
    payload: { policy_version: "p", ...body },
  });
  expect(res.statusCode, res.body).toBe(200);
}

async function infer(c: LimitsContext, key: string, image: Buffer) {
  const res = await c.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: image.toString("base64"), instruction: "pick", robot_id: "arm-1", unnorm_key: "bridge_orig" },
  });
  expect(res.statusCode, res.body).toBe(200);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function metric(c: LimitsContext, line: string): Promise<number | undefined> {
  const text = await c.app.platform.metrics.registry.metrics();
  const m = text.split("\n").find((l) => l.startsWith(`${line} `));
  return m === undefined ? undefined : Number(m.split(" ")[1]);
}

/** A store whose calls wait until the test lets them fail or pass. */
class GatedStore implements ObjectStore {
  readonly kind = "folder";
  readonly objects = new Map<string, Buffer>();
  failing = true;
  puts = 0;
  private gate: Promise<void> = Promise.resolve();
  private release: () => void = () => {};
  hold(): void {
    this.gate = new Promise((r) => {
      this.release = r;
    });
  }
  open(): void {
    this.release();
  }
  async put(key: string, body: Uint8Array): Promise<void> {
    this.puts++;
    await this.gate;
    if (this.failing) throw new Error("store down");
    this.objects.set(key, Buffer.from(body));
  }
  async get() {
    return undefined;
  }
  async delete(key: string) {
    this.objects.delete(key);
  }
  async exists(key: string) {
    await this.gate;
    if (this.failing) throw new Error("store down");
    return this.objects.has(key);
  }
  async *list(prefix: string) {
    for (const k of this.objects.keys()) if (k.startsWith(prefix)) yield k;
  }
}

describe("image uploads are off the request path", () => {
  it("a failing store never fails or waits the inference: retried, then failed, the row keeps no key", async () => {
    const store = new GatedStore();
    store.hold();
    const c = await app({ objectStore: store, env: { IMAGE_UPLOAD_ATTEMPTS: "3", IMAGE_UPLOAD_RETRY_MS: "1" } });
    const k = await newKey(c);
    await consent(c, k.customerId, { tier: "research" });
    const img = await jpeg(64, 64, 1);
    await infer(c, k.key, img); // answered while the upload is still held
    expect(imageUploadQueues.get(c.app.platform)?.depth).toBe(1);
    expect(await metric(c, "vla_image_upload_queue_depth")).toBe(1);
    store.open();
    await flushLogs(c.app);
    const rows = await storedContext(c.database, k.customerId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ imageSha256: sha(img), imageKey: null, imageFormat: "jpeg", width: 64 });
    expect(await metric(c, 'vla_image_uploads_total{outcome="failed"}')).toBe(1);
    expect(await metric(c, "vla_image_upload_retries_total")).toBe(2);
    expect(await metric(c, "vla_image_upload_queue_depth")).toBe(0);
  });

  it("a retry that succeeds stores the image; a full queue drops the next upload (counted)", async () => {
    const store = new GatedStore();
    store.hold();
    const c = await app({
      objectStore: store,
      env: { IMAGE_UPLOAD_ATTEMPTS: "5", IMAGE_UPLOAD_RETRY_MS: "1", IMAGE_UPLOAD_QUEUE_MAX: "1" },
    });
    const k = await newKey(c);
    await consent(c, k.customerId, { tier: "research" });
    const a = await jpeg(64, 64, 2);
    const b = await jpeg(64, 64, 3);
    await infer(c, k.key, a);
    await infer(c, k.key, b); // the queue holds one: dropped
    expect(await metric(c, 'vla_image_uploads_total{outcome="dropped"}')).toBe(1);
    store.failing = false;
    store.open();
    await flushLogs(c.app);
    const rows = await storedContext(c.database, k.customerId);
    const byHash = new Map(rows.map((r) => [r.imageSha256, r.imageKey]));
    expect(byHash.get(sha(a))).toBe(`images/${k.customerId}/${sha(a)}.jpg`);
    expect(byHash.get(sha(b))).toBeNull();
    expect([...store.objects.keys()]).toEqual([`images/${k.customerId}/${sha(a)}.jpg`]);
    expect(await metric(c, 'vla_image_uploads_total{outcome="uploaded"}')).toBe(1);
  });
});

describe("retention of stored images", () => {
  it("withdrawing store_images: the next run deletes the customer's images and clears image_key", async () => {
    const c = await app();
    const k = await newKey(c);
    const other = await newKey(c);
    await consent(c, k.customerId, { tier: "research" });
    await consent(c, other.customerId, { tier: "research" });
    const img = await jpeg(64, 64, 4);
    await infer(c, k.key, img);
    await infer(c, other.key, img);
    await flushLogs(c.app);
    const key = `images/${k.customerId}/${sha(img)}.jpg`;
    expect(await c.app.platform.objectStore.exists(key)).toBe(true);

    await consent(c, k.customerId, { tier: "research", permissions: { store_images: false } });
    const job = retentionJobs.get(c.app.platform);
    const dry = await job?.run({ dryRun: true });
    expect(dry?.imageKeysCleared).toBe(1);
    expect(await c.app.platform.objectStore.exists(key)).toBe(true);
    const r = await job?.run();
    expect(r).toMatchObject({ imagesDeleted: 1, imageKeysCleared: 1, contextRows: 0 });
    expect(await c.app.platform.objectStore.exists(key)).toBe(false);
    const rows = await storedContext(c.database, k.customerId);
    expect(rows.map((x) => [x.imageKey, x.imageSha256])).toEqual([[null, sha(img)]]); // the metrics stay
    // The other customer keeps its image (same bytes, its own key).
    expect(await storedObjects(c.app, other.customerId)).toEqual([`images/${other.customerId}/${sha(img)}.jpg`]);
    expect(await metric(c, 'vla_retention_images_deleted_total{reason="consent"}')).toBe(1);
    expect((await job?.run())?.imagesDeleted).toBe(0);
  });

  it("past retention_days: rows go, and an image goes once no remaining row names it", async () => {
    const c = await app();
    const k = await newKey(c);
    await consent(c, k.customerId, { tier: "research", retention_days: 30 });
    const x = await jpeg(64, 64, 5);
    const y = await jpeg(64, 64, 6);
    await infer(c, k.key, x);
    c.clock.advance(20 * DAY);
    await infer(c, k.key, x); // the same image again: one object, two rows
    await infer(c, k.key, y);
    await flushLogs(c.app);
    expect(await storedObjects(c.app, k.customerId)).toHaveLength(2);
    const job = retentionJobs.get(c.app.platform);
    c.clock.advance(15 * DAY);
    expect(await job?.run()).toMatchObject({ contextRows: 1, imagesDeleted: 0 });
    expect(await storedObjects(c.app, k.customerId)).toHaveLength(2);
    c.clock.advance(20 * DAY);
    expect(await job?.run()).toMatchObject({ contextRows: 2, imagesDeleted: 2 });
    expect(await storedObjects(c.app, k.customerId)).toEqual([]);
    expect(await storedContext(c.database, k.customerId)).toEqual([]);
  });
});

describe("export and erasure", () => {
  it("the export holds the stored images (same bytes) under images/ and context_metadata rows", async () => {
    const c = await app();
    const k = await newKey(c);
    await consent(c, k.customerId, { tier: "research" });
    const img = await jpeg(64, 64, 7);
    await infer(c, k.key, img);
    const dir = await mkdtemp(path.join(tmpdir(), "vla-export-"));
    try {
      const out = path.join(dir, "a.tar.gz");
      await writeArchive({
        customerId: k.customerId,
        sections: c.app.platform.exports.sections,
        db: c.database.db,
        outFile: out,
        stagePrefix: path.join(dir, "stage-"),
        now: c.clock.now,
      });
      const files = untarBuffers(await readFile(out));
      const name = `images/${sha(img)}.jpg`;
      expect(files.get(name)?.equals(img)).toBe(true);
      expect(ndjson(files.get("images.ndjson")?.toString())).toEqual([
        { file: name, key: `images/${k.customerId}/${sha(img)}.jpg`, sha256: sha(img), bytes: img.length },
      ]);
      const meta = ndjson(files.get("context_metadata.ndjson")?.toString());
      expect(meta).toHaveLength(1);
      expect(meta[0]).toMatchObject({ image_sha256: sha(img), embedding_kind: "thumbnail-8x8-v1" });
      expect(meta[0]?.embedding).toHaveLength(64);
      const manifest = JSON.parse(files.get("manifest.json")?.toString() ?? "{}") as { files: { name: string }[] };
      expect(manifest.files.map((f) => f.name)).toContain("images");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("deleting the customer deletes its rows and objects, and only its own", async () => {
    const c = await app();
    const k = await newKey(c);
    const other = await newKey(c);
    const img = await jpeg(64, 64, 8);
    for (const x of [k, other]) {
      await consent(c, x.customerId, { tier: "research" });
      await infer(c, x.key, img);
    }
    await flushLogs(c.app);
    const deletion = c.app.platform.deletion;
    const ctx2 = { userId: randomUUID(), customerId: k.customerId };
    const counts = await c.database.db.transaction((tx) => deletion.run({ tx, ...ctx2 }, true));
    expect(counts.context_metadata).toBe(1);
    expect(await deletion.afterCommit({ ...ctx2, wholeCustomer: true })).toEqual([]);
    expect(await storedObjects(c.app, k.customerId)).toEqual([]);
    expect(await storedContext(c.database, k.customerId)).toEqual([]);
    expect(await storedObjects(c.app, other.customerId)).toHaveLength(1);
  });
});

describe("on S3 (s3rver on 127.0.0.1)", () => {
  let fake: S3Fake;
  let store: S3ObjectStore;
  beforeAll(async () => {
    fake = await startS3Fake();
    store = new S3ObjectStore(fake.s3);
  });
  afterAll(async () => {
    store?.close();
    await fake?.close();
  });

  it("stores the image in the bucket; withdrawal and the next run delete it", async () => {
    const c = await app({ objectStore: store });
    const k = await newKey(c);
    await consent(c, k.customerId, { tier: "research" });
    const img = await jpeg(64, 64, 9);
    await infer(c, k.key, img);
    await flushLogs(c.app);
    const key = `images/${k.customerId}/${sha(img)}.jpg`;
    expect(await store.exists(key)).toBe(true);
    expect((await store.get(key))?.size).toBe(img.length);
    await consent(c, k.customerId, { tier: "basic" });
    expect((await retentionJobs.get(c.app.platform)?.run())?.imagesDeleted).toBe(1);
    expect(await store.exists(key)).toBe(false);
  });
});
