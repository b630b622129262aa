import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import S3rver from "s3rver";
import type { Config } from "../../src/config.ts";

/** s3rver's fixed credentials (it checks signatures against them). */
const S3RVER_KEY = "S3RVER";

export interface S3Fake {
  /** `config.objectStore.s3` pointing the real AWS SDK at the fake. */
  readonly s3: NonNullable<Config["objectStore"]["s3"]>;
  close(): Promise<void>;
}

/**
 * Starts s3rver (a real S3-protocol server) on 127.0.0.1 with a random port and a temporary
 * directory, with one bucket. Nothing leaves the loopback interface.
 */
export async function startS3Fake(bucket = "vla-test"): Promise<S3Fake> {
  const directory = await mkdtemp(path.join(tmpdir(), "vla-s3rver-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const addr = await server.run();
  return {
    s3: {
      bucket,
      endpoint: `http://127.0.0.1:${addr.port}`,
      region: "us-east-1",
      credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
      forcePathStyle: true,
    },
    async close() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
