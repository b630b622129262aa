import { describe, expect, it } from "vitest";
import type { ObjectStore } from "../../platform/object-store.ts";
import { ImageUploadQueue, imageKey, type UploadJob } from "./image-uploads.ts";

/** An in-memory store that fails the first `failures` puts. */
function memoryStore(failures = 0): ObjectStore & { objects: Map<string, Uint8Array>; puts: number } {
  const objects = new Map<string, Uint8Array>();
  let left = failures;
  const s = {
    kind: "folder" as const,
    objects,
    puts: 0,
    async put(key: string, body: Uint8Array) {
      s.puts++;
      if (left-- > 0) throw new Error("down");
      objects.set(key, body);
    },
    async get() {
      return undefined;
    },
    async delete(key: string) {
      objects.delete(key);
    },
    async exists(key: string) {
      return objects.has(key);
    },
    async *list() {},
  };
  return s;
}

function job(customerId: string, sha: string, results: (string | null)[]): UploadJob {
  return {
    customerId,
    sha256: sha,
    body: { kind: "encoded", bytes: Buffer.from(sha), format: "jpeg" },
    done: (k) => results.push(k),
  };
}

describe("ImageUploadQueue", () => {
  it("keys are content-addressed per customer; the same image twice is stored once", async () => {
    const store = memoryStore();
    const q = new ImageUploadQueue({ store, maxQueued: 10, attempts: 1, retryMs: 1, concurrency: 1 });
    const results: (string | null)[] = [];
    q.enqueue(job("c1", "aa", results));
    q.enqueue(job("c1", "aa", results));
    q.enqueue(job("c2", "aa", results));
    await q.drained();
    expect(results).toEqual(["images/c1/aa.jpg", "images/c1/aa.jpg", "images/c2/aa.jpg"]);
    expect(store.puts).toBe(2);
    expect(imageKey("c", "ff", { kind: "pixels", data: new Uint8Array(3), width: 1, height: 1 })).toBe(
      "images/c/ff.png",
    );
  });

  it("close() gives a job backing off its next attempt at once, and no further one", async () => {
    const store = memoryStore(5);
    const q = new ImageUploadQueue({ store, maxQueued: 10, attempts: 10, retryMs: 3_600_000 });
    const results: (string | null)[] = [];
    q.enqueue(job("c1", "bb", results));
    for (let i = 0; i < 50 && store.puts < 1; i++) await new Promise((r) => setImmediate(r));
    await q.close(); // without it, the retry would wait an hour
    expect(store.puts).toBe(2);
    expect(results).toEqual([null]);
    expect(q.enqueue(job("c1", "cc", results))).toBe(false); // closed: dropped
    expect(results).toEqual([null, null]);
  });

  it("settled(customer) waits for that customer's uploads only", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const store = memoryStore();
    const slow: ObjectStore = { ...store, put: async (k, b) => gate.then(() => store.put(k, b)) };
    const q = new ImageUploadQueue({ store: slow, maxQueued: 10, attempts: 1, retryMs: 1 });
    const results: (string | null)[] = [];
    q.enqueue(job("busy", "dd", results));
    await q.settled("idle"); // resolves although "busy" still has an upload held
    let busyDone = false;
    const busy = q.settled("busy").then(() => {
      busyDone = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(busyDone).toBe(false);
    release();
    await busy;
    expect(results).toEqual(["images/busy/dd.jpg"]);
  });
});
