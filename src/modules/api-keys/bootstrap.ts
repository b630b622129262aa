import { randomBytes } from "node:crypto";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { count } from "drizzle-orm";
import type { Config } from "../../config.ts";
import type { Database } from "../../platform/db/client.ts";
import { customers, users } from "../../platform/db/schema/index.ts";
import { hashPassword } from "../auth/password.ts";
import { UsersRepo } from "../users/users.repo.ts";
import type { ApiKeysRepo } from "./api-keys.repo.ts";
import { generateKey } from "./key-format.ts";
import { writeSampleFrame } from "./sample-frame.ts";

export const BOOTSTRAP_ADMIN_EMAIL = "admin@vla.local";
export const BOOTSTRAP_DEMO_EMAIL = "demo@vla.local";

/**
 * The demo customer's per-customer overrides of the free tier's request windows, so that
 * `npm run sim` (one request per control step: a 50-step episode is 50 requests) is not held to
 * 10 requests a minute, nor its streams to 15 frames/s. Only ever set by this development-only bootstrap.
 */
export const DEMO_LIMITS = {
  rateLimitPerMinute: 1200,
  quotaPerDay: 100_000,
  quotaPerMonth: 1_000_000,
  // Streams: the free tier's 15 frames/s would pace a simulated loop that runs faster than a robot.
  streamMaxFps: 100,
} as const;

/**
 * The model the demo key is bound to (its default model and unnorm_key, docs/api-keys.md "Keys
 * bound to a robot"): the trained tabletop policy, so `npm run sim` drives the simulated arm
 * through every protocol, `/act` included (OpenVLA's /act names no model: it serves the key's).
 * Requests that name another model still get it. Left unbound when the registry lacks the model.
 */
export const DEMO_KEY_MODEL = { model: "tabletop-policy-chunk", unnormKey: "sim_tabletop" } as const;

/** The demo key's file under DATA_DIR (mode 0600), read by `npm run sim` when no key is given. */
export const DEMO_KEY_FILE = "demo-key";

/** Whether this start may create first-run demo data: embedded database, not production, allowed by BOOTSTRAP_DEMO. */
export function bootstrapAllowed(config: Config): boolean {
  return config.bootstrap.demo === "auto" && config.env !== "production" && config.db.url === undefined;
}

/** Quotes one word for a POSIX shell, so a printed command works whatever the path holds. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** curl's `-F name=@file`, with the file name in curl's own quotes when `;` or `,` would split it. */
function curlFileField(name: string, file: string): string {
  return `${name}=@${/[;,"\\]/.test(file) ? `"${file.replace(/[\\"]/g, "\\$&")}"` : file}`;
}

/**
 * First run on an empty embedded database: an admin (superuser) with a generated password and
 * a demo customer with one `inference` key and limits a simulation can use (DEMO_LIMITS), the
 * key (bound to DEMO_KEY_MODEL when it is served) also written to `DATA_DIR/demo-key` (0600) for `npm run sim`. Both secrets are stored hashed and returned once
 * as notice lines for server.ts to print after listening, with `curl` commands that work as
 * printed: the inference one sends a sample frame written into DATA_DIR
 * (`sample-frame.jpg`). Returns [] when anything exists.
 */
export async function bootstrapDemo(
  config: Config,
  database: Database,
  keys: ApiKeysRepo,
  served: { has(model: string, unnormKey: string): boolean },
): Promise<string[]> {
  if (!bootstrapAllowed(config)) return [];
  const db = database.db;
  const [existing] = await db.select({ n: count() }).from(users);
  const [existingCustomers] = await db.select({ n: count() }).from(customers);
  if ((existing?.n ?? 0) > 0 || (existingCustomers?.n ?? 0) > 0) return [];

  // Written before anything is created: the credentials are printed once, so nothing after
  // their creation may fail. A frame that cannot be written only costs the ready-made file.
  let frame: string;
  let frameNote: string | undefined;
  try {
    frame = await writeSampleFrame(config.dataDir);
  } catch (e) {
    frame = "frame.jpg";
    frameNote = `  (could not write a sample frame into ${config.dataDir}: ${e instanceof Error ? e.message : String(e)}; send any JPEG)`;
  }

  const password = randomBytes(18).toString("base64url");
  const account = await new UsersRepo(db).createAccount({
    email: BOOTSTRAP_ADMIN_EMAIL,
    passwordHash: await hashPassword(password),
    fullName: "Administrator",
    isSuperuser: true,
    tier: "enterprise",
  });
  if (account === undefined) return [];
  const [demo] = await db
    .insert(customers)
    .values({ name: "Demo customer", email: BOOTSTRAP_DEMO_EMAIL, tier: "free", ...DEMO_LIMITS })
    .returning();
  if (demo === undefined) return [];
  const key = generateKey("live");
  const bound = served.has(DEMO_KEY_MODEL.model, DEMO_KEY_MODEL.unnormKey) ? DEMO_KEY_MODEL : undefined;
  await keys.insert({
    ...(bound === undefined ? {} : { model: bound.model, unnormKey: bound.unnormKey }),
    customerId: demo.id,
    name: "demo key",
    keyHash: key.hash,
    displayPrefix: key.displayPrefix,
    scopes: ["inference"],
    expiresAt: null,
    createdByUserId: null,
  });
  // For `npm run sim`; a file that cannot be written only costs that default (the key is printed).
  const keyFile = path.join(config.dataDir, DEMO_KEY_FILE);
  let keyNote: string;
  try {
    await mkdir(config.dataDir, { recursive: true });
    // A file left from an earlier database is replaced; chmod also narrows an existing file.
    await writeFile(keyFile, `${key.key}\n`, { mode: 0o600 });
    await chmod(keyFile, 0o600);
    keyNote = `  (also in ${keyFile}, mode 0600: npm run sim uses it when given no --key)`;
  } catch (e) {
    keyNote = `  (could not write ${keyFile}: ${e instanceof Error ? e.message : String(e)}; pass --key to npm run sim)`;
  }
  const base = config.http.publicBaseUrl;
  const perMinute = DEMO_LIMITS.rateLimitPerMinute;
  // npm run sim asks http://127.0.0.1:8000 unless told otherwise.
  const simUrl = /^http:\/\/(localhost|127\.0\.0\.1):8000$/.test(base) ? "" : ` --url ${base}`;
  return [
    "",
    "First run: created demo credentials (shown once; the database keeps only their hashes).",
    `  admin login     ${BOOTSTRAP_ADMIN_EMAIL} / ${password}`,
    `  demo API key    ${key.key}   (customer "Demo customer", free tier, scope inference${bound === undefined ? "" : `, model ${bound.model}`})`,
    keyNote,
    `  demo limits     ${perMinute}/min, ${DEMO_LIMITS.quotaPerDay}/day, ${DEMO_LIMITS.quotaPerMonth}/month, streams ${DEMO_LIMITS.streamMaxFps} frames/s (development only, for npm run sim)`,
    "  try it:",
    `    curl -H "X-API-Key: ${key.key}" ${base}/v1/usage`,
    `    curl -H "X-API-Key: ${key.key}" -F ${shellQuote(curlFileField("image", frame))} -F "instruction=pick up the cup" \\`,
    `         -F robot_id=arm-1 -F model=demo-vla-tiny ${base}/v1/inference`,
    ...(frameNote === undefined ? [] : [frameNote]),
    `  drive the simulated robot: npm run sim -- --episodes 5 --via rest${simUrl}   (docs/sim.md)`,
    "  Set BOOTSTRAP_DEMO=off to skip this on an empty database.",
    "",
  ];
}
