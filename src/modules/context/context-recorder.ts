import type { ContextMetadataEntry } from "./context-metadata.repo.ts";
import type { ImageUploadQueue, UploadBody } from "./image-uploads.ts";
import { THUMBNAIL_EMBEDDING_KIND } from "./thumbnail-embedding.ts";

/** What the inference runner hands over after a successful inference whose consent allows a row. */
export interface ContextInput {
  readonly inferenceId: string;
  readonly customerId: string;
  /** ISO instant, the same as the inference log row's. */
  readonly createdAt: string;
  readonly imageSha256: string;
  readonly image: {
    readonly format: ContextMetadataEntry["imageFormat"];
    readonly bytes: number;
    readonly width: number;
    readonly height: number;
  };
  /** Only with consent `store_embeddings`. */
  readonly embedding?: Float32Array | undefined;
  /** Only with consent `store_images`. */
  readonly upload?: UploadBody | undefined;
}

/**
 * Builds context_metadata rows and hands them to the batch writer; with an image to keep, the
 * row waits for its upload (off the request path) and names the object only once it is stored,
 * so a row never points at an image that was never written. Never throws into the caller.
 */
export class ContextRecorder {
  private readonly sink: { push(row: ContextMetadataEntry): void };
  private readonly uploads: ImageUploadQueue;

  constructor(o: { sink: { push(row: ContextMetadataEntry): void }; uploads: ImageUploadQueue }) {
    this.sink = o.sink;
    this.uploads = o.uploads;
  }

  record(input: ContextInput): void {
    const row: ContextMetadataEntry = {
      inferenceId: input.inferenceId,
      customerId: input.customerId,
      createdAt: input.createdAt,
      imageSha256: input.imageSha256,
      imageFormat: input.image.format,
      imageBytes: input.image.bytes,
      width: input.image.width,
      height: input.image.height,
      embedding: input.embedding === undefined ? null : Array.from(input.embedding),
      embeddingKind: input.embedding === undefined ? null : THUMBNAIL_EMBEDDING_KIND,
      imageKey: null,
    };
    if (input.upload === undefined) {
      this.sink.push(row);
      return;
    }
    this.uploads.enqueue({
      customerId: input.customerId,
      sha256: input.imageSha256,
      body: input.upload,
      done: (key) => this.sink.push({ ...row, imageKey: key }),
    });
  }
}
