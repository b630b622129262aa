/**
 * Added latency of consent enforcement on POST /v1/inference at a paced 200 req/s (issue 19:
 * target <= 0.1 ms median). There is no operator switch that turns consent off (it would be a
 * privacy hole), so the "off" side is the tree before consent existed: BENCH_BASELINE=<dir>, a
 * checkout of that commit (e.g. `git archive 2698252^1 | tar -x -C /tmp/base` and a symlink to
 * this tree's node_modules). Three servers, one child process each, all embedded (PGlite, no Redis):
 *
 *   - baseline:       the tree before consent (no consent lookup, no anonymization)
 *   - consent:        this tree, a customer without a consent record (default tier; the cached lookup)
 *   - consent-full:   this tree, a customer with anonymization `full` (lookup + pseudonyms + redaction)
 *
 * One client paces requests at BENCH_RATE (default 200/s) against one server at a time, in
 * BENCH_ROUNDS rounds (default 5) of BENCH_SECONDS (default 8) per server, order rotated every
 * round, so load drifts on a shared machine hit all alike. Latency is measured by the client
 * (send to last byte) and read from the server's own `total_ms`. Mock model (0 ms), 64x64 JPEG.
 * Bounded: fixed durations, loopback only; every child is stopped at the end.
 *
 * `npx node bench/consent.bench.ts --micro`: the same comparison in process (see micro()).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, openSync, writeSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

const ROOT = path.resolve(import.meta.dirname, "..");
const RATE = Number(process.env.BENCH_RATE ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const BASELINE = process.env.BENCH_BASELINE;

// ---------------------------------------------------------------- server (child)

/** `--serve <tree> [full]`: that tree's app on embedded PGlite; READY {port, key} on fd 3. */
async function serve(root: string, anonymization: string | undefined): Promise<void> {
  const { buildApp } = (await import(path.join(root, "src/app.ts"))) as typeof import("../src/app.ts");
  const { createDatabase } = (await import(
    path.join(root, "src/platform/db/client.ts")
  )) as typeof import("../src/platform/db/client.ts");
  const { benchConfig, seedUnlimitedKey } = (await import(
    path.join(root, "bench/lib/server.ts")
  )) as typeof import("./lib/server.ts");
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-consent-"));
  const database = await createDatabase({});
  const app = await buildApp(benchConfig(dataDir, { ANALYTICS_ROLLUPS: "false" }), { database, migrate: true });
  const { key, customerId } = await seedUnlimitedKey(database);
  if (anonymization !== undefined) {
    await database.db.execute(`insert into customer_data_consent (customer_id, version, tier, store_instructions,
      store_images, store_embeddings, use_for_training, anonymization, retention_days, granted_at, policy_version)
      values ('${customerId}', 1, 'basic', true, false, false, false, '${anonymization}', 90, now(), 'bench')`);
  }
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  writeSync(3, `READY ${JSON.stringify({ port: Number(new URL(address).port), key })}\n`);
  process.on("SIGTERM", () => {
    void app.close().then(async () => {
      await database.close();
      process.exit(0);
    });
  });
}

// ---------------------------------------------------------------- parent

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly key: string;
}

async function startChild(name: string, args: string[]): Promise<Child> {
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, [import.meta.filename, ...args], {
    stdio: ["ignore", devNull, "inherit", "pipe"],
  });
  const lines = createInterface({ input: child.stdio[3] as NodeJS.ReadableStream });
  const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
    lines.on("line", (line) => {
      if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)) as { port: number; key: string });
    });
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return { name, child, ...ready };
}

async function stopChild(c: Child): Promise<void> {
  if (c.child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => c.child.once("exit", () => resolve()));
  c.child.kill("SIGTERM");
  const timer = setTimeout(() => c.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** A small JPEG (sharp is a dependency of the service). */
async function jpegBase64(): Promise<string> {
  const sharp = (await import("sharp")).default;
  const raw = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7) % 251;
  return (
    await sharp(raw, { raw: { width: 64, height: 64, channels: 3 } })
      .jpeg()
      .toBuffer()
  ).toString("base64");
}

interface Sample {
  client: number[];
  server: number[];
  errors: number;
}

/** Paces `rate` requests per second for `seconds` against one server; one keep-alive agent. */
async function paced(c: Child, body: string, rate: number, seconds: number, into: Sample): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const n = Math.round(rate * seconds);
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      new Promise<void>((resolve) => {
        const t0 = performance.now();
        const req = http.request(
          {
            host: "127.0.0.1",
            port: c.port,
            path: "/v1/inference",
            method: "POST",
            agent,
            headers: {
              "content-type": "application/json",
              "x-api-key": c.key,
              "content-length": Buffer.byteLength(body),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (d: Buffer) => chunks.push(d));
            res.on("end", () => {
              const ms = performance.now() - t0;
              if (res.statusCode === 200) {
                into.client.push(ms);
                const total = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { timing?: { total_ms?: number } })
                  .timing?.total_ms;
                if (typeof total === "number") into.server.push(total);
              } else into.errors++;
              resolve();
            });
          },
        );
        req.on("error", () => {
          into.errors++;
          resolve();
        });
        req.end(body);
      }),
    );
  }
  await Promise.all(pending);
  agent.destroy();
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number);
};

async function main(): Promise<void> {
  if (BASELINE === undefined) {
    process.stderr.write("BENCH_BASELINE=<dir of the commit before consent> is required (see the header)\n");
    process.exit(2);
  }
  const children: Child[] = [];
  try {
    children.push(await startChild("baseline", ["--serve", path.resolve(BASELINE)]));
    children.push(await startChild("consent", ["--serve", ROOT]));
    children.push(await startChild("consent-full", ["--serve", ROOT, "full"]));
    const body = JSON.stringify({
      image: await jpegBase64(),
      instruction: "pick up the red block",
      robot_id: "arm-1",
      unnorm_key: "bridge_orig",
    });
    const samples = new Map<string, Sample>(children.map((c) => [c.name, { client: [], server: [], errors: 0 }]));
    for (const c of children) await paced(c, body, RATE, 3, { client: [], server: [], errors: 0 }); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      for (let j = 0; j < children.length; j++) {
        const c = children[(round + j) % children.length] as Child;
        await paced(c, body, RATE, SECONDS, samples.get(c.name) as Sample);
      }
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`);
    }
    const base = samples.get("baseline") as Sample;
    const rows = children.map((c) => {
      const s = samples.get(c.name) as Sample;
      const d = (p: number, k: "client" | "server") => (pct(s[k], p) - pct(base[k], p)).toFixed(3);
      return `| ${c.name} | ${s.client.length} | ${s.errors} | ${pct(s.client, 50).toFixed(3)} | ${pct(s.client, 99).toFixed(3)} | ${d(50, "client")} | ${pct(s.server, 50).toFixed(3)} | ${pct(s.server, 99).toFixed(3)} | ${d(50, "server")} |`;
    });
    process.stdout.write(
      `${RATE} req/s, ${ROUNDS} rounds x ${SECONDS} s per server\n\n` +
        "| server | requests | errors | client p50 (ms) | client p99 | p50 - baseline | server total_ms p50 | p99 | p50 - baseline |\n" +
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
        `${rows.join("\n")}\n`,
    );
  } finally {
    for (const c of children) await stopChild(c);
  }
}

/**
 * `--micro`: the enforcement in process, without HTTP noise: InferenceRunner.run over a stub engine
 * (resolves at once) and a no-op sink, with no consent gate (what the runner did before consent) vs
 * the real ConsentService with the customer cached (anonymization none) vs cached `full` (plus two
 * HMACs and the redaction). Rounds alternate; ns per run().
 */
async function micro(): Promise<void> {
  const { InferenceRunner } = await import("../src/modules/inference/inference-runner.ts");
  const { ConsentService } = await import("../src/modules/consent/consent.service.ts");
  const { Pseudonymizer } = await import("../src/platform/pseudonym.ts");
  type Engine = ConstructorParameters<typeof InferenceRunner>[0]["engine"];
  const engine = {
    defaultModel: "mock",
    modelIds: () => ["mock"],
    infer: async () => ({
      action: [0, 0, 0, 0, 0, 0, 1],
      backend: "mock",
      model: "mock",
      unnormKey: "bridge_orig",
      timing: { preprocess_ms: 0, queue_ms: 0, model_ms: 0 },
      batchSize: 1,
      imageSha256: "0".repeat(64),
    }),
  } as unknown as Engine;
  const consent = (level: "none" | "full") =>
    new ConsentService({
      repo: {
        latest: async () => ({
          version: 1,
          tier: "basic",
          storeInstructions: true,
          storeImages: false,
          storeEmbeddings: false,
          useForTraining: false,
          anonymization: level,
          retentionDays: 90,
          expiresAt: null,
          grantedAt: new Date(0),
          withdrawn: false,
        }),
      } as never,
      invalidation: { on: () => {}, onReset: () => {}, publish: async () => {} },
      now: Date.now,
      defaultTier: "basic",
      cacheFreshMs: 600_000,
    });
  const sink = { push: () => {} };
  const pseudonyms = new Pseudonymizer("bench-secret-key-that-is-long-enough-0123456789");
  const runners = {
    "no consent gate": new InferenceRunner({ engine, sink, logInstructions: true }),
    "consent (cached, none)": new InferenceRunner({
      engine,
      sink,
      logInstructions: true,
      consent: consent("none"),
      pseudonyms,
    }),
    "consent (cached, full)": new InferenceRunner({
      engine,
      sink,
      logInstructions: true,
      consent: consent("full"),
      pseudonyms,
    }),
  };
  const ctx = {
    principal: {
      kind: "api_key" as const,
      customerId: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
      userId: null,
      apiKeyId: "1a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
      scopes: ["inference" as const],
      isSuperuser: false,
      tier: "enterprise" as const,
    },
    source: "rest" as const,
    elapsedMs: () => 1,
  };
  const input = { instruction: "pick up the red block", robotId: "arm-1", image: { imageBytes: Buffer.alloc(1) } };
  const N = 200_000;
  const ns: Record<string, number[]> = {};
  for (let round = 0; round < 8; round++) {
    const names = Object.keys(runners) as (keyof typeof runners)[];
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length] as keyof typeof runners;
      const r = runners[name];
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) await r.run(ctx, input as never);
      const per = Number(process.hrtime.bigint() - t0) / N;
      if (round === 0) continue; // warm-up
      const list = ns[name] ?? [];
      list.push(per);
      ns[name] = list;
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const base = median(ns["no consent gate"] as number[]);
  process.stdout.write("| runner | ns per run() (median of 7 rounds) | minus no gate (ns) |\n| --- | --- | --- |\n");
  for (const [name, xs] of Object.entries(ns)) {
    process.stdout.write(`| ${name} | ${median(xs).toFixed(0)} | ${(median(xs) - base).toFixed(0)} |\n`);
  }
}

const argv = process.argv.slice(2);
if (argv[0] === "--serve") await serve(argv[1] as string, argv[2]);
else if (argv[0] === "--micro") await micro();
else await main();
