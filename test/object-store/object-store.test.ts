import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { text } from "node:stream/consumers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FolderObjectStore, type ObjectStore, S3ObjectStore } from "../../src/platform/object-store.ts";
import { type S3Fake, startS3Fake } from "../helpers/s3.ts";

async function all(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out.sort();
}

/** The contract every ObjectStore keeps; run against the folder store and against S3 (s3rver). */
function contract(name: string, make: () => ObjectStore) {
  describe(`${name}: object store contract`, () => {
    it("put, exists, get (size and bytes), overwrite, delete", async () => {
      const s = make();
      const key = "images/c1/abc.jpg";
      expect(await s.exists(key)).toBe(false);
      expect(await s.get(key)).toBeUndefined();
      await s.put(key, Buffer.from("first"), "image/jpeg");
      expect(await s.exists(key)).toBe(true);
      const got = await s.get(key);
      expect(got?.size).toBe(5);
      expect(await text(got?.body as NodeJS.ReadableStream)).toBe("first");
      await s.put(key, Buffer.from("second!"));
      const again = await s.get(key);
      expect(again?.size).toBe(7);
      expect(await text(again?.body as NodeJS.ReadableStream)).toBe("second!");
      await s.delete(key);
      expect(await s.exists(key)).toBe(false);
      await s.delete(key); // deleting nothing is fine
    });

    it("lists by prefix, and only that prefix", async () => {
      const s = make();
      for (const k of ["images/a1/x.jpg", "images/a1/y.png", "images/a10/z.jpg", "images/b2/x.jpg", "other/a1"]) {
        await s.put(k, Buffer.from(k));
      }
      expect(await all(s.list("images/a1/"))).toEqual(["images/a1/x.jpg", "images/a1/y.png"]);
      expect(await all(s.list("images/a1"))).toEqual(["images/a1/x.jpg", "images/a1/y.png", "images/a10/z.jpg"]);
      expect(await all(s.list("images/nobody/"))).toEqual([]);
      expect((await all(s.list("images/"))).length).toBe(4);
    });

    it("refuses keys that could escape (.., absolute, empty segments)", async () => {
      const s = make();
      for (const bad of ["../x", "images/../../etc/passwd", "/abs", "a//b", "", "a/b c"]) {
        await expect(s.put(bad, Buffer.from("x"))).rejects.toThrow(/invalid key/);
      }
    });
  });
}

let dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  dirs = [];
});
const folderRoot = await mkdtemp(path.join(tmpdir(), "vla-objects-"));
dirs.push(folderRoot);
let n = 0;
contract("folder", () => new FolderObjectStore(path.join(folderRoot, String(n++))));

describe("folder store specifics", () => {
  it("files are 0600, written through a temporary file, and stray temporary files are never listed", async () => {
    const root = path.join(folderRoot, "specific");
    const s = new FolderObjectStore(root);
    await s.put("images/c/h.jpg", Buffer.from("x"));
    expect((await stat(path.join(root, "images/c/h.jpg"))).mode & 0o777).toBe(0o600);
    expect(await readdir(path.join(root, "images/c"))).toEqual(["h.jpg"]);
    await writeFile(path.join(root, "images/c/h2.jpg.tmp-abc123"), "partial"); // a crash mid-put
    expect(await all(s.list("images/c/"))).toEqual(["images/c/h.jpg"]);
  });
});

// s3rver starts in well under a second on loopback; the S3 pass runs always.
let fake: S3Fake | undefined;
beforeAll(async () => {
  fake = await startS3Fake();
});
afterAll(async () => {
  await fake?.close();
});
const s3Stores: S3ObjectStore[] = [];
afterAll(() => {
  for (const s of s3Stores) s.close();
});
let bucketRun = 0;
contract("s3 (s3rver on 127.0.0.1)", () => {
  const f = fake as S3Fake;
  // One bucket, a fresh key space per test: prefix every key through a wrapper.
  const inner = new S3ObjectStore(f.s3);
  s3Stores.push(inner);
  const ns = `t${bucketRun++}`;
  return {
    kind: "s3",
    put: (k, b, t) => inner.put(`${ns}/${k}`, b, t),
    get: (k) => inner.get(`${ns}/${k}`),
    delete: (k) => inner.delete(`${ns}/${k}`),
    exists: (k) => inner.exists(`${ns}/${k}`),
    async *list(p) {
      for await (const k of inner.list(`${ns}/${p}`)) yield k.slice(ns.length + 1);
    },
  };
});

describe("s3 store specifics", () => {
  it("a bucket that does not exist fails the call (the upload queue then retries)", async () => {
    const s = new S3ObjectStore({ ...(fake as S3Fake).s3, bucket: "no-such-bucket" });
    s3Stores.push(s);
    await expect(s.put("images/c/h.jpg", Buffer.from("x"))).rejects.toThrow();
  });
});
