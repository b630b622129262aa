/**
 * Writes models/demo-vla-tiny/{model.onnx, config.json, dataset_statistics.json}
 * deterministically (seeded weights, hand-written protobuf). Run: `npx node scripts/make-demo-model.ts`.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildDemoModel, demoConfig } from "../src/modules/models/demo-model.ts";

const root = path.resolve(import.meta.dirname, "..");
const dir = path.join(root, "models", "demo-vla-tiny");
mkdirSync(dir, { recursive: true });

const model = buildDemoModel();
writeFileSync(path.join(dir, "model.onnx"), model);
writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(demoConfig(), null, 2)}\n`);

// One key, copied from the mock model's bridge_orig statistics (see models/mock-openvla-7b/README.md).
const all = JSON.parse(readFileSync(path.join(root, "models", "mock-openvla-7b", "dataset_statistics.json"), "utf8"));
writeFileSync(
  path.join(dir, "dataset_statistics.json"),
  `${JSON.stringify({ bridge_orig: all.bridge_orig }, null, 2)}\n`,
);

const sha = createHash("sha256").update(model).digest("hex");
console.log(`wrote ${path.relative(root, dir)}/model.onnx (${model.byteLength} bytes, sha256 ${sha})`);
