import { parentPort } from "node:worker_threads";
import { decodeJpegFast, warmFastJpeg } from "./jpeg-fast.ts";

/**
 * A decode thread of `JpegDecodePool`: `{id, bytes, width, height}` in, `{id, data?}` out, the
 * RGB pixels transferred (not copied). No `data` means "declined, use sharp".
 */
interface Job {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly width: number;
  readonly height: number;
}

const port = parentPort;
if (port === null) throw new Error("jpeg-worker.ts runs as a worker thread");
await warmFastJpeg();
port.on("message", (job: Job) => {
  const out = decodeJpegFast(job.bytes, job.width, job.height);
  if (out === undefined) port.postMessage({ id: job.id });
  else port.postMessage({ id: job.id, data: out.data }, [out.data.buffer as ArrayBuffer]);
});
port.postMessage({ ready: true });
