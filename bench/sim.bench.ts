/**
 * The simulator's costs, in process:
 *   1. render one 224x224 frame (four blocks, the gripper, shadows), clean;
 *   2. the same with sensor noise (sigma 5) and a random lighting;
 *   3. JPEG-encode a frame (sharp, quality 90), as the closed loop sends it;
 *   4. a whole expert episode (pick) with rendering, and the physics + expert alone;
 *   5. a GIF of one 50-frame episode.
 *
 *   npx node bench/sim.bench.ts            (FRAMES=2000 by default)
 * Results go to stdout and bench/results/sim-latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { expertPolicy, runEpisode, setupEpisode } from "../sim/episode.ts";
import { encodeGif } from "../sim/gif.ts";
import { encodeJpeg, type Frame, randomLighting, render } from "../sim/render.ts";
import { createScene } from "../sim/scene.ts";

const FRAMES = Number(process.env.FRAMES ?? 2000);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

async function time(label: string, n: number, fn: (i: number) => unknown) {
  for (let i = 0; i < Math.min(200, n); i++) await fn(i);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const row = {
    label,
    n,
    mean_ms: samples.reduce((a, b) => a + b, 0) / n,
    p50_ms: percentile(samples, 0.5),
    p99_ms: percentile(samples, 0.99),
  };
  console.log(
    `${label.padEnd(44)} mean ${row.mean_ms.toFixed(3)} ms  p50 ${row.p50_ms.toFixed(3)} ms  p99 ${row.p99_ms.toFixed(3)} ms`,
  );
  return row;
}

const scene = createScene(2, { blocks: 4 });
const frame: Frame = render(scene);
const rows = [
  await time("render 224x224", FRAMES, () => render(scene)),
  await time("render 224x224 + noise + lighting", FRAMES, (i) =>
    render(scene, { noise: { sigma: 5, seed: i }, lighting: randomLighting(i) }),
  ),
  await time("encodeJpeg (q90)", Math.max(50, FRAMES / 10), () => encodeJpeg(frame)),
  await time("expert pick episode, rendered", 100, (i) =>
    runEpisode(setupEpisode(i, { kind: "pick" }), expertPolicy, { keepFrames: false }),
  ),
  await time("expert pick episode, physics only", 1000, (i) =>
    runEpisode(setupEpisode(i, { kind: "pick" }), expertPolicy, { render: false }),
  ),
  await time("GIF of 50 frames", 10, () => encodeGif(Array.from({ length: 50 }, () => frame))),
];

const out = fileURLToPath(new URL("./results/", import.meta.url));
mkdirSync(out, { recursive: true });
writeFileSync(
  `${out}sim-latest.json`,
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, rows }, null, 2)}\n`,
);
