import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STRIPE_EVENT_RETENTION_DAYS } from "../../src/modules/billing/webhook.repo.ts";
import { retentionJobs } from "../../src/modules/retention/retention.module.ts";
import { stripeEvents } from "../../src/platform/db/schema/index.ts";
import { type SignedEvent, signedEvent } from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";
import { deliverOk, eventRow } from "./webhook-helpers.ts";

const DAY = 86_400_000;
const NOW = Date.now();
let t: BillingTestContext;

beforeAll(async () => {
  t = await buildBillingApp({ now: () => NOW });
});
afterAll(async () => {
  await t?.close();
});

const idOf = (ev: SignedEvent) => ev.event.id as string;

/** A delivered event (a type we do not handle: recorded `unknown_type`), received `daysAgo` days before NOW. */
async function receivedAgo(daysAgo: number) {
  const ev = signedEvent(t.fake, { type: "customer.created", object: { id: "cus_retention", object: "customer" } });
  expect(await deliverOk(t, ev)).toBe("unknown_type");
  await t.database.db
    .update(stripeEvents)
    .set({ receivedAt: new Date(NOW - daysAgo * DAY) })
    .where(eq(stripeEvents.id, idOf(ev)));
  return ev;
}

describe("retention of stripe_events (webhook deduplication)", () => {
  it("deletes events received more than 30 days ago; recent ones stay and still deduplicate", async () => {
    expect(STRIPE_EVENT_RETENTION_DAYS).toBe(30);
    const old = await receivedAgo(45);
    const justPast = await receivedAgo(30.01);
    const justInside = await receivedAgo(29.99);
    // Still inside Stripe's 3-day retry window.
    const recent = await receivedAgo(2);
    const job = retentionJobs.get(t.app.platform);
    if (job === undefined) throw new Error("no retention job");

    const dry = await job.run({ dryRun: true });
    expect(dry.stripeEvents).toBe(2);
    expect(await eventRow(t, idOf(old))).toBeDefined();

    const r = await job.run();
    expect(r.stripeEvents).toBe(2);
    expect(await eventRow(t, idOf(old))).toBeUndefined();
    expect(await eventRow(t, idOf(justPast))).toBeUndefined();
    expect(await eventRow(t, idOf(justInside))).toMatchObject({ outcome: "unknown_type" });
    expect(await eventRow(t, idOf(recent))).toMatchObject({ outcome: "unknown_type" });
    // Stripe redelivers the recent ones: still recognized, nothing applied twice.
    expect(await deliverOk(t, recent)).toBe("duplicate");
    expect(await deliverOk(t, justInside)).toBe("duplicate");

    const again = await job.run();
    expect(again.stripeEvents).toBe(0);
    const left = await t.database.db.execute(sql`select count(*)::int as n from stripe_events`);
    expect(Number((left as unknown as { rows: { n: number }[] }).rows[0]?.n)).toBe(2);
  });

  it("deletes in batches of RETENTION_BATCH_SIZE until none is left", async () => {
    const own = await buildBillingApp({ now: () => NOW, env: { RETENTION_BATCH_SIZE: "2" } });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const ev = signedEvent(own.fake, { type: "customer.created", object: { id: `cus_b${i}`, object: "customer" } });
        expect(await deliverOk(own, ev)).toBe("unknown_type");
        ids.push(idOf(ev));
      }
      await own.database.db.update(stripeEvents).set({ receivedAt: new Date(NOW - 31 * DAY) });
      const job = retentionJobs.get(own.app.platform);
      expect((await job?.run())?.stripeEvents).toBe(5);
      for (const id of ids) expect(await eventRow(own, id)).toBeUndefined();
    } finally {
      await own.close();
    }
  });
});
