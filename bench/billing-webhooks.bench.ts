/**
 * Stripe webhook throughput and correctness under redelivery and disorder.
 *
 *   npx node bench/billing-webhooks.bench.ts                                   (embedded PGlite)
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx node bench/billing-webhooks.bench.ts
 *
 * The parent starts the Stripe-protocol fake (test/helpers/stripe-fake.ts) on 127.0.0.1 and a
 * child process serving the app with billing pointed at it (on PostgreSQL: a fresh database
 * created on that server and dropped at the end). For CUSTOMERS customers it plays random
 * subscription histories on the fake (plan changes, cancel-at-period-end, payment failures and
 * recoveries, pauses, cancellations and new subscriptions), each step producing the events Stripe
 * would send with that step's snapshot, until UNIQUE events exist; adds DUPLICATE_SHARE of them
 * again, shuffles all, and delivers them signed (signed just before sending, as Stripe does) over
 * CONNECTIONS keep-alive connections. It reports events/s and checks the final state: every
 * customer's row must match the fake's truth (the customer's current subscription: live before
 * dead, then newest; its status, price, cancel flag and the tier they give), the event table must
 * hold exactly the unique ids, and no delivery may fail. Results: stdout and
 * bench/results/billing-webhooks-latest.json.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { count, inArray } from "drizzle-orm";
import pg from "pg";
import Stripe from "stripe";
import { buildApp } from "../src/app.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { customers, stripeEvents } from "../src/platform/db/schema/index.ts";
import type { ModuleOptions } from "../src/platform/module.ts";
import {
  FAKE_PRICE_ENTERPRISE,
  FAKE_PRICE_PRO,
  FAKE_PRICE_PRO_YEARLY,
  FAKE_SECRET_KEY,
  FAKE_WEBHOOK_SECRET,
  type JsonObject,
  type StripeFake,
  signedEvent,
  startStripeFake,
} from "../test/helpers/stripe-fake.ts";
import { benchConfig } from "./lib/server.ts";

const CUSTOMERS = Number(process.env.BENCH_CUSTOMERS ?? 400);
const UNIQUE = Number(process.env.BENCH_UNIQUE_EVENTS ?? 8_000);
const DUPLICATE_SHARE = 0.2;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const DATABASE_URL = process.env.DATABASE_URL;

// ---------------------------------------------------------------- server (child)

async function serve(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-webhooks-"));
  const fakeUrl = process.env.BENCH_FAKE_URL as string;
  const config = benchConfig(dataDir, {
    STRIPE_SECRET_KEY: FAKE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET,
    STRIPE_PRICE_PRO: `${FAKE_PRICE_PRO},${FAKE_PRICE_PRO_YEARLY}`,
    STRIPE_PRICE_ENTERPRISE: FAKE_PRICE_ENTERPRISE,
    STRIPE_API_BASE: fakeUrl,
    STRIPE_MAX_NETWORK_RETRIES: "0",
    BILLING_JOB_INTERVAL_MS: "3600000",
    MODELS_WARM_UP: "false",
  });
  const database = await createDatabase(DATABASE_URL === undefined ? {} : { url: DATABASE_URL, poolMax: 20 });
  const stripeIds = (process.env.BENCH_STRIPE_CUSTOMERS as string).split(",");
  const probe: FastifyPluginAsyncTypebox<ModuleOptions> = async (app) => {
    app.get("/bench/state", { schema: { hide: true } }, async () => {
      const rows = await database.db
        .select({
          stripeCustomerId: customers.stripeCustomerId,
          tier: customers.tier,
          status: customers.subscriptionStatus,
          subscriptionId: customers.stripeSubscriptionId,
          priceId: customers.stripePriceId,
          cancelAtPeriodEnd: customers.cancelAtPeriodEnd,
        })
        .from(customers)
        .where(inArray(customers.stripeCustomerId, stripeIds));
      const events = await database.db.select({ n: count() }).from(stripeEvents);
      return { rows, events: events[0]?.n ?? 0 };
    });
  };
  const app = await buildApp(config, { database, migrate: true, plugins: [probe] });
  const seeded = await database.db
    .insert(customers)
    .values(
      stripeIds.map((id, i) => ({
        name: `bench ${i}`,
        email: `bench-${i}-${process.pid}@example.com`,
        stripeCustomerId: id,
      })),
    )
    .returning({ id: customers.id, stripeCustomerId: customers.stripeCustomerId });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  process.stdout.write(`READY ${JSON.stringify({ port: Number(new URL(address).port), customers: seeded })}\n`);
  process.on("SIGTERM", () => {
    void app.close().then(async () => {
      await database.close();
      process.exit(0);
    });
  });
}

// ---------------------------------------------------------------- histories (parent)

type Status = "trialing" | "active" | "past_due" | "unpaid" | "paused" | "canceled";
const PRICES = [FAKE_PRICE_PRO, FAKE_PRICE_PRO_YEARLY, FAKE_PRICE_ENTERPRISE];
const LATER: Status[] = ["active", "active", "trialing", "past_due", "past_due", "unpaid", "paused", "canceled"];

interface Actor {
  readonly stripeCustomerId: string;
  readonly ourId: string;
  subId: string | null;
  status: Status | null;
  step: number;
}

interface Pending {
  readonly id: string;
  readonly payload: string;
}

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

/** One step of an actor's history on the fake; returns the events Stripe would send. */
function step(fake: StripeFake, a: Actor, t0: number): Pending[] {
  const renew = a.subId === null || a.status === "canceled";
  const status: Status = renew ? pick<Status>(["active", "active", "trialing"]) : pick(LATER);
  const prev = renew ? null : a.status;
  const i = a.step++;
  const sub = fake.state.putSubscription({
    ...(renew ? {} : { id: a.subId as string }),
    customer: a.stripeCustomerId,
    price: pick(PRICES),
    status,
    cancelAtPeriodEnd: Math.random() < 0.2,
    created: t0 + i * 10,
    currentPeriodStart: t0 + i * 86_400,
    currentPeriodEnd: t0 + (i + 30) * 86_400,
    metadata: { customer_id: a.ourId },
  });
  a.subId = sub.id as string;
  a.status = status;
  const snapshot = structuredClone(sub) as JsonObject;
  const type =
    prev === null
      ? "customer.subscription.created"
      : status === "canceled"
        ? "customer.subscription.deleted"
        : status === "paused"
          ? "customer.subscription.paused"
          : prev === "paused"
            ? "customer.subscription.resumed"
            : "customer.subscription.updated";
  const out = [signedEvent(fake, { type, object: snapshot })];
  if (status === "past_due" || status === "unpaid") {
    const inv = fake.state.putInvoice({ customer: a.stripeCustomerId, subscription: a.subId, status: "open" });
    out.push(signedEvent(fake, { type: "invoice.payment_failed", object: structuredClone(inv) as JsonObject }));
  } else if (status === "active" && (prev === null || prev === "past_due" || prev === "unpaid")) {
    const inv = fake.state.putInvoice({ customer: a.stripeCustomerId, subscription: a.subId, status: "paid" });
    out.push(signedEvent(fake, { type: "invoice.paid", object: structuredClone(inv) as JsonObject }));
  }
  return out.map((e) => ({ id: e.event.id as string, payload: e.payload }));
}

/** What the customer row must say: the current subscription is live before dead, then newest. */
function truth(fake: StripeFake, stripeCustomerId: string) {
  const subs = [...fake.state.subscriptions.values()].filter((s) => s.customer === stripeCustomerId);
  const live = (s: JsonObject) => ["active", "trialing", "past_due"].includes(s.status as string);
  subs.sort(
    (a, b) =>
      Number(live(b)) - Number(live(a)) ||
      (b.created as number) - (a.created as number) ||
      ((b.id as string) > (a.id as string) ? 1 : -1),
  );
  const cur = subs[0] as JsonObject;
  const price = ((cur.items as { data: { price: { id: string } }[] }).data[0] as { price: { id: string } }).price.id;
  const paid = price === FAKE_PRICE_ENTERPRISE ? "enterprise" : "pro";
  return {
    subscriptionId: cur.id,
    status: cur.status,
    priceId: price,
    cancelAtPeriodEnd: cur.cancel_at_period_end,
    // past_due keeps the paid tier during grace (the bench runs well inside it).
    tier: live(cur) ? paid : "free",
  };
}

// ---------------------------------------------------------------- load (parent)

async function deliverAll(port: number, events: readonly Pending[]) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const statuses = new Map<number, number>();
  const outcomes = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < events.length; i = next++) {
      const e = events[i] as Pending;
      // Signed just before sending, as Stripe does on each delivery attempt.
      const signature = Stripe.webhooks.generateTestHeaderString({ payload: e.payload, secret: FAKE_WEBHOOK_SECRET });
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            method: "POST",
            path: "/v1/billing/webhook",
            agent,
            headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": signature },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          },
        );
        req.on("error", reject);
        req.end(e.payload);
      });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 200) {
        const o = (JSON.parse(body) as { outcome: string }).outcome;
        outcomes.set(o, (outcomes.get(o) ?? 0) + 1);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { seconds, statuses: Object.fromEntries(statuses), outcomes: Object.fromEntries(outcomes) };
}

async function main(): Promise<void> {
  const fake = await startStripeFake();
  let dbUrl: string | undefined;
  let dropDb: (() => Promise<void>) | undefined;
  if (DATABASE_URL !== undefined) {
    const name = `vla_bench_webhooks_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const u = new URL(DATABASE_URL);
    u.pathname = `/${name}`;
    dbUrl = u.toString();
    dropDb = async () => {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    };
  }
  const stripeIds = Array.from({ length: CUSTOMERS }, (_, i) => `cus_bench${String(i).padStart(5, "0")}`);
  const child: ChildProcess = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve"], {
    env: {
      ...process.env,
      ...(dbUrl === undefined ? {} : { DATABASE_URL: dbUrl }),
      BENCH_FAKE_URL: fake.url,
      BENCH_STRIPE_CUSTOMERS: stripeIds.join(","),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const ready = await new Promise<{ port: number; customers: { id: string; stripeCustomerId: string }[] }>(
      (resolve, reject) => {
        child.once("exit", (code) => reject(new Error(`server exited (${code})`)));
        createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
          if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)));
        });
      },
    );
    const actors: Actor[] = ready.customers.map((c) => {
      fake.state.putCustomer({ id: c.stripeCustomerId, metadata: { customer_id: c.id } });
      return { stripeCustomerId: c.stripeCustomerId, ourId: c.id, subId: null, status: null, step: 0 };
    });
    const t0 = Math.floor(Date.now() / 1000) - 90 * 86_400;
    const unique: Pending[] = [];
    while (unique.length < UNIQUE) unique.push(...step(fake, pick(actors), t0));
    unique.length = UNIQUE;
    const dupes = Array.from({ length: Math.round((UNIQUE * DUPLICATE_SHARE) / (1 - DUPLICATE_SHARE)) }, () =>
      pick(unique),
    );
    const all = [...unique, ...dupes];
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [all[i], all[j]] = [all[j] as Pending, all[i] as Pending];
    }
    // Actors whose events were all cut off by the UNIQUE bound have no truth to check against.
    const touched = new Set(
      unique.map((e) => (JSON.parse(e.payload) as { data: { object: { customer: string } } }).data.object.customer),
    );
    const fakeGets = fake.requests.length;
    process.stdout.write(
      `delivering ${all.length} events (${UNIQUE} unique, ${dupes.length} duplicates) for ${touched.size} customers over ${CONNECTIONS} connections, ${dbUrl === undefined ? "embedded PGlite" : "PostgreSQL"}\n`,
    );
    const run = await deliverAll(ready.port, all);

    const state = (await (await fetch(`http://127.0.0.1:${ready.port}/bench/state`)).json()) as {
      rows: { stripeCustomerId: string; [k: string]: unknown }[];
      events: number;
    };
    let mismatches = 0;
    const examples: unknown[] = [];
    for (const row of state.rows) {
      if (!touched.has(row.stripeCustomerId)) continue;
      const want = truth(fake, row.stripeCustomerId);
      const got = {
        subscriptionId: row.subscriptionId,
        status: row.status,
        priceId: row.priceId,
        cancelAtPeriodEnd: row.cancelAtPeriodEnd,
        tier: row.tier,
      };
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        mismatches++;
        if (examples.length < 3) examples.push({ customer: row.stripeCustomerId, want, got });
      }
    }
    const result = {
      date: new Date().toISOString(),
      database: dbUrl === undefined ? "pglite" : "postgresql",
      connections: CONNECTIONS,
      delivered: all.length,
      unique: UNIQUE,
      duplicates: dupes.length,
      customers: touched.size,
      seconds: Number(run.seconds.toFixed(2)),
      eventsPerSecond: Math.round(all.length / run.seconds),
      stripeRequests: fake.requests.length - fakeGets,
      statuses: run.statuses,
      outcomes: run.outcomes,
      recordedEvents: state.events,
      finalStateMismatches: mismatches,
      examples,
      ok: mismatches === 0 && state.events === UNIQUE && run.statuses[200] === all.length,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "billing-webhooks-latest.json"), `${JSON.stringify(result, null, 2)}\n`);
    if (!result.ok) process.exitCode = 1;
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    await fake.close();
    await dropDb?.();
  }
}

if (process.argv.includes("--serve")) {
  await serve();
} else {
  await main();
}
