import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/modules/models/registry.ts";

/** A registry file for live reload tests, rewritten in place (atomically: write, then rename). */

export const STATS_FILE = path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json");

export const mockEntry = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  backend: { kind: "mock", latency_ms: 1 },
  action: { dim: 7, chunk: 1 },
  dataset_statistics: STATS_FILE,
  default_unnorm_key: "bridge_orig",
  ...extra,
});

export class RegistryFile {
  readonly path: string;

  constructor(doc: unknown) {
    this.path = path.join(mkdtempSync(path.join(tmpdir(), "vla-reload-")), "models.json");
    this.write(doc);
  }

  /** Replaces the file as an operator's deploy tool would (a reader never sees half a file). */
  write(doc: unknown): void {
    this.writeText(JSON.stringify(doc, null, 2));
  }

  writeText(text: string): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, this.path);
  }
}
