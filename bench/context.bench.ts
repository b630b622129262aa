/**
 * What context_metadata adds to one inference on the request path, in process (no HTTP):
 * the thumbnail-8x8-v1 embedding of a 224x224 model input (only with store_embeddings), building
 * and queueing the row (every inference but anonymization full), and the copy of a uint8 array
 * kept for upload (only with store_images). Run: `npx node bench/context.bench.ts`.
 */
import { ContextRecorder } from "../src/modules/context/context-recorder.ts";
import { ImageUploadQueue } from "../src/modules/context/image-uploads.ts";
import { thumbnailEmbedding } from "../src/modules/context/thumbnail-embedding.ts";
import { FolderObjectStore } from "../src/platform/object-store.ts";

function perOp(label: string, n: number, f: () => void): void {
  for (let i = 0; i < Math.min(n, 1000); i++) f(); // warm up
  const t = performance.now();
  for (let i = 0; i < n; i++) f();
  console.log(`${label.padEnd(34)} ${(((performance.now() - t) / n) * 1000).toFixed(2)} us/op`);
}

const rgb = new Uint8Array(224 * 224 * 3).map((_, i) => (i * 31) & 255);
let sunk = 0;
const recorder = new ContextRecorder({
  sink: {
    push() {
      sunk++;
    },
  },
  uploads: new ImageUploadQueue({
    store: new FolderObjectStore("/nonexistent"),
    maxQueued: 1,
    attempts: 1,
    retryMs: 1,
  }),
});
const base = {
  inferenceId: "00000000-0000-4000-8000-000000000000",
  customerId: "00000000-0000-4000-8000-000000000001",
  createdAt: new Date().toISOString(),
  imageSha256: "a".repeat(64),
  image: { format: "jpeg" as const, bytes: 10_000, width: 224, height: 224 },
};
const embedding = thumbnailEmbedding(rgb, 224, 224);

perOp("thumbnail-8x8-v1 of 224x224x3", 2_000, () => void thumbnailEmbedding(rgb, 224, 224));
perOp("row (hash and size)", 100_000, () => recorder.record(base));
perOp("row with embedding", 100_000, () => recorder.record({ ...base, embedding }));
perOp("copy of a 224x224x3 uint8 array", 10_000, () => {
  const d = new Uint8Array(rgb.byteLength);
  d.set(rgb);
});
console.log(`(${sunk} rows recorded)`);
