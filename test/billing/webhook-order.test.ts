import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customers } from "../../src/platform/db/schema/index.ts";
import {
  FAKE_PRICE_ENTERPRISE,
  FAKE_PRICE_PRO,
  FAKE_PRICE_PRO_YEARLY,
  type JsonObject,
  type SignedEvent,
  type StripeFake,
  signedEvent,
} from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";
import { customerRow, deliverOk } from "./webhook-helpers.ts";

/**
 * Property: whatever order Stripe delivers a subscription's events in, with whatever
 * duplicates, the customer row ends where in-order delivery leaves it. A random history
 * (statuses, prices, cancel-at-period-end, a new subscription after a cancellation) is applied
 * to the fake step by step; each step produces the events Stripe would send, carrying that
 * step's snapshot. Customer A gets them in order as they happen; customer B, living through the
 * same history, gets each event at a random later step (possibly only at the end), shuffled,
 * some twice, each batch concurrently. An implementation that trusted the event payloads or
 * their order would end B on an intermediate state.
 */

const NOW = Date.parse("2026-12-01T12:00:00Z");
const T0 = Math.floor(NOW / 1000) - 40 * 86_400;
let t: BillingTestContext;

beforeAll(async () => {
  t = await buildBillingApp({ now: () => NOW });
});
afterAll(async () => {
  await t?.close();
});

type Status = "incomplete" | "trialing" | "active" | "past_due" | "unpaid" | "paused" | "canceled";
interface Step {
  /** Start a new subscription (only after the previous one was canceled). */
  readonly renew: boolean;
  readonly status: Status;
  readonly price: string;
  readonly cancelAtPeriodEnd: boolean;
}

const PRICES = [FAKE_PRICE_PRO, FAKE_PRICE_PRO_YEARLY, FAKE_PRICE_ENTERPRISE];
const LATER: Status[] = ["active", "trialing", "past_due", "unpaid", "paused", "canceled"];
const FIRST: Status[] = ["incomplete", "active", "trialing"];

const stepArb = (statuses: Status[]) =>
  fc.record({
    status: fc.constantFrom(...statuses),
    price: fc.constantFrom(...PRICES),
    cancelAtPeriodEnd: fc.boolean(),
  });

/** Realistic histories: a subscription starts incomplete/active/trialing, canceled is terminal, then maybe a new one. */
const historyArb = fc
  .tuple(stepArb(FIRST), fc.array(fc.tuple(stepArb(LATER), stepArb(FIRST)), { minLength: 0, maxLength: 6 }))
  .map(([first, rest]) => {
    const steps: Step[] = [{ ...first, renew: true }];
    for (const [later, fresh] of rest) {
      const prev = steps.at(-1) as Step;
      steps.push(prev.status === "canceled" ? { ...fresh, renew: true } : { ...later, renew: false });
    }
    return steps;
  });

interface Actor {
  readonly customerId: string;
  readonly stripeCustomerId: string;
  subId: string | null;
  prevStatus: Status | null;
}

async function newActor(fake: StripeFake, tag: string): Promise<Actor> {
  const cus = fake.state.putCustomer({});
  const rows = await t.database.db
    .insert(customers)
    .values({
      name: tag,
      email: `${tag}-${Math.random().toString(36).slice(2)}@example.com`,
      stripeCustomerId: cus.id as string,
    })
    .returning({ id: customers.id });
  const id = (rows[0] as { id: string }).id;
  (cus.metadata as JsonObject).customer_id = id;
  return { customerId: id, stripeCustomerId: cus.id as string, subId: null, prevStatus: null };
}

/** Applies step `i` to the actor's subscription in the fake and returns the events Stripe would send. */
function applyStep(fake: StripeFake, a: Actor, step: Step, i: number): SignedEvent[] {
  if (step.renew) a.subId = null;
  const sub = fake.state.putSubscription({
    ...(a.subId === null ? {} : { id: a.subId }),
    customer: a.stripeCustomerId,
    price: step.price,
    status: step.status,
    cancelAtPeriodEnd: step.cancelAtPeriodEnd,
    // A new subscription is newer than the one it replaces; the period moves each step.
    created: T0 + i * 1000,
    currentPeriodStart: T0 + i * 86_400,
    currentPeriodEnd: T0 + (i + 30) * 86_400,
    metadata: { customer_id: a.customerId },
  });
  const subId = sub.id as string;
  const snapshot = () => structuredClone(fake.state.subscriptions.get(subId)) as JsonObject;
  const events: SignedEvent[] = [];
  const prev = step.renew ? null : a.prevStatus;
  const subType =
    prev === null
      ? "customer.subscription.created"
      : step.status === "canceled"
        ? "customer.subscription.deleted"
        : step.status === "paused"
          ? "customer.subscription.paused"
          : prev === "paused"
            ? "customer.subscription.resumed"
            : "customer.subscription.updated";
  events.push(signedEvent(fake, { type: subType, object: snapshot() }));
  if (step.status === "past_due" || step.status === "unpaid") {
    const inv = fake.state.putInvoice({ customer: a.stripeCustomerId, subscription: subId, status: "open" });
    events.push(signedEvent(fake, { type: "invoice.payment_failed", object: structuredClone(inv) as JsonObject }));
  } else if (step.status === "active" && (prev === "past_due" || prev === "unpaid" || prev === null)) {
    const inv = fake.state.putInvoice({ customer: a.stripeCustomerId, subscription: subId, status: "paid" });
    events.push(signedEvent(fake, { type: "invoice.paid", object: structuredClone(inv) as JsonObject }));
  }
  if (step.renew && prev === null && step.status !== "incomplete") {
    const session = {
      id: `cs_test_${i}`,
      object: "checkout.session",
      mode: "subscription",
      customer: a.stripeCustomerId,
    };
    events.push(
      signedEvent(fake, {
        type: "checkout.session.completed",
        object: { ...session, subscription: subId, client_reference_id: a.customerId, metadata: {} },
      }),
    );
  }
  a.subId = subId;
  a.prevStatus = step.status;
  return events;
}

const comparable = (row: Awaited<ReturnType<typeof customerRow>>) => ({
  tier: row.tier,
  subscriptionStatus: row.subscriptionStatus,
  stripePriceId: row.stripePriceId,
  cancelAtPeriodEnd: row.cancelAtPeriodEnd,
  graceUntil: row.graceUntil?.toISOString() ?? null,
  currentPeriodStart: row.currentPeriodStart?.toISOString() ?? null,
  currentPeriodEnd: row.currentPeriodEnd?.toISOString() ?? null,
});

describe("unordered, duplicated delivery (property)", () => {
  it("ends every customer where in-order delivery ends it", async () => {
    await fc.assert(
      fc.asyncProperty(historyArb, fc.infiniteStream(fc.nat()), async (history, rand) => {
        const r = rand[Symbol.iterator]();
        const next = (n: number) => (r.next().value as number) % n;
        const inOrder = await newActor(t.fake, "in-order");
        const shuffled = await newActor(t.fake, "shuffled");
        const slots: SignedEvent[][] = history.map(() => []);
        const end: SignedEvent[] = [];
        for (const [i, step] of history.entries()) {
          for (const ev of applyStep(t.fake, inOrder, step, i)) await deliverOk(t, ev);
          for (const ev of applyStep(t.fake, shuffled, step, i)) {
            // Delivered at a random step from now on, or only at the end; a fifth of them twice.
            const copies = next(5) === 0 ? 2 : 1;
            for (let c = 0; c < copies; c++) {
              const at = i + next(history.length - i + 1);
              (at < history.length ? (slots[at] as SignedEvent[]) : end).push(ev);
            }
          }
          const batch = slots[i] as SignedEvent[];
          await Promise.all(shuffle(batch, next).map((ev) => deliverOk(t, ev)));
        }
        await Promise.all(shuffle(end, next).map((ev) => deliverOk(t, ev)));
        const want = comparable(await customerRow(t, inOrder.customerId));
        const got = comparable(await customerRow(t, shuffled.customerId));
        expect(got).toEqual(want);
        // And in-order delivery itself matches the final state in the fake.
        const final = history.at(-1) as Step;
        expect(want.subscriptionStatus).toBe(final.status);
        expect(want.stripePriceId).toBe(final.price);
      }),
      {
        numRuns: Number(process.env.BILLING_PROPERTY_RUNS ?? 40),
        seed: Number(process.env.BILLING_PROPERTY_SEED ?? 20261205),
      },
    );
  });
});

function shuffle<T>(items: readonly T[], next: (n: number) => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = next(i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
