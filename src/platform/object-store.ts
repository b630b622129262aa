import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import type { Config } from "../config.ts";

/**
 * Blobs by key: stored camera images (docs/privacy.md, "Images"). Two implementations: a folder
 * under `DATA_DIR/objects` (the default) and any S3-compatible bucket (`S3_*` settings).
 * Keys are relative paths of `[A-Za-z0-9._-]` segments separated by `/`; anything else (empty
 * segments, `.` or `..`, a leading `/`) is refused, so a key never escapes the folder.
 */
export interface ObjectStore {
  readonly kind: "folder" | "s3";
  /** Stores `body` under `key`, replacing any object there (readers see the old or the new one, never a part). */
  put(key: string, body: Uint8Array, contentType?: string): Promise<void>;
  /** The object's size and a stream of its bytes; undefined when there is none. */
  get(key: string): Promise<StoredObject | undefined>;
  /** Removes the object; no error when there is none. */
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  /** Every key starting with `prefix`, in no guaranteed order, paged internally. */
  list(prefix: string): AsyncIterable<string>;
  /** Releases connections (S3); the folder store has none. */
  close?(): void;
}

export interface StoredObject {
  readonly size: number;
  readonly body: Readable;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Throws unless `key` is a safe relative key. */
export function assertKey(key: string): void {
  const parts = key.split("/");
  if (key.length === 0 || key.length > 1024 || parts.some((p) => !SEGMENT.test(p) || p === "." || p === "..")) {
    throw new Error(`object store: invalid key ${JSON.stringify(key)}`);
  }
}

/** A prefix is a key, or a key followed by `/`, or empty. */
function assertPrefix(prefix: string): void {
  if (prefix === "") return;
  assertKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
}

const TMP_MARK = ".tmp-";

/**
 * Objects as files under `root` (mode 0600, folders 0700). A put writes a temporary file beside
 * the target and renames it over the target, so a reader or a crash never sees half an object;
 * temporary files left by a crash are skipped by `list` and never returned by `get`.
 */
export class FolderObjectStore implements ObjectStore {
  readonly kind = "folder";
  private readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  private file(key: string): string {
    assertKey(key);
    return path.join(this.root, ...key.split("/"));
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const file = this.file(key);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}${TMP_MARK}${randomBytes(6).toString("hex")}`;
    try {
      await writeFile(tmp, body, { mode: 0o600, flag: "wx" });
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  async get(key: string): Promise<StoredObject | undefined> {
    const file = this.file(key);
    try {
      const s = await stat(file);
      if (!s.isFile()) return undefined;
      return { size: s.size, body: createReadStream(file) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.file(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(this.file(key))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    assertPrefix(prefix);
    // Walk from the deepest folder the prefix names; filter the rest by string.
    const dirPart = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : "";
    const start = dirPart === "" ? this.root : path.join(this.root, ...dirPart.split("/"));
    const walk = async function* (dir: string, rel: string): AsyncGenerator<string> {
      let entries: import("node:fs").Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        throw e;
      }
      for (const ent of entries) {
        const key = rel === "" ? ent.name : `${rel}/${ent.name}`;
        if (ent.isDirectory()) {
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* walk(path.join(dir, ent.name), key);
        } else if (ent.isFile() && !ent.name.includes(TMP_MARK) && key.startsWith(prefix)) {
          yield key;
        }
      }
    };
    yield* walk(start, dirPart);
  }
}

export interface S3StoreOptions {
  readonly bucket: string;
  readonly endpoint?: string | undefined;
  readonly region: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined;
  readonly forcePathStyle?: boolean;
  /** Per request (default 10 s); connecting at most 3 s. */
  readonly requestTimeoutMs?: number;
}

function notFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === "NoSuchKey" || err.name === "NotFound" || err.$metadata?.httpStatusCode === 404;
}

/** Objects in an S3-compatible bucket (`@aws-sdk/client-s3`). */
export class S3ObjectStore implements ObjectStore {
  readonly kind = "s3";
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(o: S3StoreOptions) {
    this.bucket = o.bucket;
    this.client = new S3Client({
      region: o.region,
      ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
      ...(o.credentials === undefined ? {} : { credentials: { ...o.credentials } }),
      forcePathStyle: o.forcePathStyle ?? false,
      maxAttempts: 2, // the upload queue retries with its own backoff
      // Checksums only where S3 requires them: several S3-compatible stores reject or ignore the newer ones.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { requestTimeout: o.requestTimeoutMs ?? 10_000, connectionTimeout: 3_000 },
    });
  }

  async put(key: string, body: Uint8Array, contentType?: string): Promise<void> {
    assertKey(key);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ...(contentType === undefined ? {} : { ContentType: contentType }),
      }),
    );
  }

  async get(key: string): Promise<StoredObject | undefined> {
    assertKey(key);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const body = res.Body;
      if (body === undefined) return undefined;
      return { size: res.ContentLength ?? 0, body: body instanceof Readable ? body : Readable.from([]) };
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    assertKey(key);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async exists(key: string): Promise<boolean> {
    assertKey(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (e) {
      if (notFound(e)) return false;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    assertPrefix(prefix);
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
      for (const o of res.Contents ?? []) if (o.Key !== undefined) yield o.Key;
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  close(): void {
    this.client.destroy();
  }
}

/** The store the settings name: S3 when `S3_BUCKET` is set, else the folder under DATA_DIR. */
export function createObjectStore(config: Config["objectStore"]): ObjectStore {
  if (config.s3 === undefined) return new FolderObjectStore(config.dir);
  return new S3ObjectStore(config.s3);
}
