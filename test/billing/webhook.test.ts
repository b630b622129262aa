import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, expectProblem, signUp } from "../auth/helpers.ts";
import { buildTestApp } from "../helpers/app.ts";
import { TestSmtp } from "../helpers/smtp.ts";
import { FAKE_PRICE_ENTERPRISE, FAKE_PRICE_PRO, type JsonObject, signedEvent } from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";
import {
  customerRow,
  deliver,
  deliverOk,
  eventRow,
  invoiceEvent,
  type Subscribed,
  subEvent,
  subscribe,
} from "./webhook-helpers.ts";

const DAY = 86_400_000;
let nowMs = Date.parse("2026-12-01T12:00:00Z");
let t: BillingTestContext;
let smtp: TestSmtp;

beforeAll(async () => {
  smtp = await new TestSmtp().start();
  t = await buildBillingApp({
    now: () => nowMs,
    env: { SMTP_URL: smtp.url, EMAIL_FROM: "VLA <billing@example.test>", BILLING_GRACE_DAYS: "7" },
  });
});
afterAll(async () => {
  await t?.close();
  await smtp?.close();
});

async function usageTier(access: string): Promise<{ tier: string; limit: number | null }> {
  const res = await t.app.inject({ method: "GET", url: "/v1/usage", headers: bearer(access) });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json() as { tier: string; minute: { limit: number | null } };
  return { tier: body.tier, limit: body.minute.limit };
}

describe("signature", () => {
  let sub: Subscribed;
  beforeAll(async () => {
    sub = await subscribe(t, "sig");
  });

  it("refuses a missing, bad, stale (> 300 s) or tampered signature with 400 invalid_signature and changes nothing", async () => {
    t.fake.state.updateSubscription(sub.subId, { status: "canceled" });
    const ev = subEvent(t.fake, "customer.subscription.deleted", sub.subId);
    const cases: [string, Parameters<typeof deliver>[1], string | null][] = [
      ["missing", ev, null],
      ["garbage", ev, "t=123,v1=deadbeef"],
      ["wrong secret", ev, signedEvent("whsec_someone_else", { type: ev.event.type as string, object: {} }).signature],
      [
        "stale",
        signedEvent(t.fake, {
          type: "customer.subscription.deleted",
          object: ev.event.data as JsonObject,
          timestamp: Math.floor(Date.now() / 1000) - 301,
        }),
        undefined as unknown as string,
      ],
    ];
    for (const [name, e, sig] of cases) {
      const res = await deliver(t, e, sig === undefined ? e.signature : sig);
      expect(res.statusCode, name).toBe(400);
      expectProblem(res, 400, "invalid_signature");
    }
    // Tampered: the signature is for other bytes.
    const tampered = { ...ev, body: Buffer.from(ev.payload.replace('"canceled"', '"active"  ')) };
    expectProblem(await deliver(t, tampered, ev.signature), 400, "invalid_signature");
    const row = await customerRow(t, sub.customerId);
    expect(row.tier).toBe("pro");
    expect(row.subscriptionStatus).toBe("active");
    expect(await eventRow(t, ev.event.id as string)).toBeUndefined();
    // The genuine one then works.
    expect(await deliverOk(t, ev)).toBe("applied");
    expect((await customerRow(t, sub.customerId)).tier).toBe("free");
  });

  it("a signature made 299 s ago is still accepted (tolerance 300 s)", async () => {
    const s = await subscribe(t, "tolerance");
    const ev = signedEvent(t.fake, {
      type: "customer.subscription.updated",
      object: structuredClone(t.fake.state.subscriptions.get(s.subId)) as JsonObject,
      timestamp: Math.floor(Date.now() / 1000) - 299,
    });
    expect(await deliverOk(t, ev)).toBe("applied");
  });

  it("is not behind auth or the JSON parser of the other routes: no credentials needed, raw bytes verified", async () => {
    // A body with a U+0000 escape would be refused by the global JSON parser (invalid_character);
    // the webhook verifies the bytes first and only then reads them.
    const s = await subscribe(t, "rawbytes");
    const object = structuredClone(t.fake.state.subscriptions.get(s.subId)) as JsonObject;
    object.description = "nul \u0000 inside";
    const ev = signedEvent(t.fake, { type: "customer.subscription.updated", object });
    expect(ev.payload).toContain("\\u0000");
    expect(await deliverOk(t, ev)).toBe("applied");
  });
});

describe("body", () => {
  it("refuses a body over 1 MiB before reading it as an event, and a non-JSON media type", async () => {
    const big = await t.app.inject({
      method: "POST",
      url: "/v1/billing/webhook",
      headers: { "content-type": "application/json", "stripe-signature": "t=1,v1=00" },
      payload: Buffer.alloc(1024 * 1024 + 1, 0x20),
    });
    expect(big.statusCode).toBe(413);
    const form = await t.app.inject({
      method: "POST",
      url: "/v1/billing/webhook",
      headers: { "content-type": "application/x-www-form-urlencoded", "stripe-signature": "t=1,v1=00" },
      payload: "a=b",
    });
    expect(form.statusCode).toBe(415);
  });

  it("other routes keep the ordinary JSON parser (the raw-bytes parser is encapsulated)", async () => {
    // Were the Buffer parser global, this body would reach validation as bytes and fail.
    const s = await signUp(t, "parser");
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/billing/checkout",
      headers: { ...bearer(s.access), "content-type": "application/json" },
      payload: JSON.stringify({ tier: "pro" }),
    });
    expect(res.statusCode, res.body).toBe(200);
  });
});

describe("billing disabled", () => {
  it("answers 503 billing_disabled", async () => {
    const plain = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
    try {
      const res = await plain.app.inject({
        method: "POST",
        url: "/v1/billing/webhook",
        headers: { "content-type": "application/json", "stripe-signature": "t=1,v1=00" },
        payload: "{}",
      });
      expectProblem(res, 503, "billing_disabled");
    } finally {
      await plain.close();
    }
  });
});

describe("checkout and tier sync", () => {
  it("checkout.session.completed sets the tier, and the limiter serves the new limits at once", async () => {
    const s = await signUp(t, "limits");
    expect(await usageTier(s.access)).toEqual({ tier: "free", limit: 10 });
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/billing/checkout",
      headers: bearer(s.access),
      payload: { tier: "enterprise" },
    });
    const sessionId = (res.json() as { session_id: string }).session_id;
    t.fake.completeCheckout(sessionId);
    const session = structuredClone(t.fake.state.checkoutSessions.get(sessionId)) as JsonObject;
    expect(await deliverOk(t, signedEvent(t.fake, { type: "checkout.session.completed", object: session }))).toBe(
      "applied",
    );
    const row = await customerRow(t, s.customerId);
    expect(row).toMatchObject({
      tier: "enterprise",
      subscriptionStatus: "active",
      stripePriceId: FAKE_PRICE_ENTERPRISE,
    });
    expect(row.currentPeriodEnd).not.toBeNull();
    // Cached free limits were dropped: the next request sees enterprise.
    expect(await usageTier(s.access)).toEqual({ tier: "enterprise", limit: 1000 });
  });

  it("maps a Stripe customer we have not stored through metadata.customer_id and attaches it", async () => {
    const s = await signUp(t, "attach");
    const cus = t.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
    const sub = t.fake.state.putSubscription({
      customer: cus.id as string,
      price: FAKE_PRICE_PRO,
      metadata: { customer_id: s.customerId },
    });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.created", sub.id as string))).toBe("applied");
    const row = await customerRow(t, s.customerId);
    expect(row).toMatchObject({ tier: "pro", stripeCustomerId: cus.id, stripeSubscriptionId: sub.id });
  });

  it("an event for a Stripe customer of nobody here is acknowledged and ignored", async () => {
    const cus = t.fake.state.putCustomer({});
    const sub = t.fake.state.putSubscription({ customer: cus.id as string, price: FAKE_PRICE_PRO });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.created", sub.id as string))).toBe("ignored");
  });

  it("a plan change in the portal (updated) moves the tier; cancel_at_period_end is kept", async () => {
    const s = await subscribe(t, "change");
    t.fake.state.putSubscription({
      id: s.subId,
      customer: s.stripeCustomerId,
      price: FAKE_PRICE_ENTERPRISE,
      cancelAtPeriodEnd: true,
    });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.updated", s.subId))).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "enterprise", cancelAtPeriodEnd: true });
    expect((await usageTier(s.access)).tier).toBe("enterprise");
  });

  it("unknown price: logged, counted, tier unchanged, outcome unknown_price", async () => {
    const s = await subscribe(t, "unknownprice");
    t.fake.state.prices.set("price_somebody_elses", {
      id: "price_somebody_elses",
      unitAmount: 100,
      currency: "usd",
      interval: "month",
    });
    t.fake.state.putSubscription({ id: s.subId, customer: s.stripeCustomerId, price: "price_somebody_elses" });
    const ev = subEvent(t.fake, "customer.subscription.updated", s.subId);
    expect(await deliverOk(t, ev)).toBe("unknown_price");
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
    expect((await eventRow(t, ev.event.id as string))?.outcome).toBe("unknown_price");
    const metrics = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/vla_billing_unknown_price_total [1-9]/);
  });

  it("an unknown event type is acknowledged (200), recorded and counted", async () => {
    const ev = signedEvent(t.fake, { type: "charge.refund.updated", object: { id: "re_123", object: "refund" } });
    expect(await deliverOk(t, ev)).toBe("unknown_type");
    expect((await eventRow(t, ev.event.id as string))?.outcome).toBe("unknown_type");
    const metrics = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/vla_billing_webhook_events_total\{type="other",outcome="unknown_type"\} [1-9]/);
  });

  it("customer.deleted (in Stripe's dashboard) clears our Stripe ids and drops the tier to free", async () => {
    const s = await subscribe(t, "cusdeleted");
    const ev = signedEvent(t.fake, {
      type: "customer.deleted",
      object: { ...(structuredClone(t.fake.state.customers.get(s.stripeCustomerId)) as JsonObject), deleted: true },
    });
    expect(await deliverOk(t, ev)).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "free",
      stripeCustomerId: null,
      stripeSubscriptionId: null,
      subscriptionStatus: null,
    });
    expect((await usageTier(s.access)).tier).toBe("free");
    await smtp.waitForMail(s.email, /subscription canceled/i);
  });
});

describe("at-least-once delivery", () => {
  it("a duplicate delivery is 200 duplicate with no second effect", async () => {
    const s = await subscribe(t, "dup");
    t.fake.state.updateSubscription(s.subId, { status: "past_due" });
    const inv = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    const ev = invoiceEvent(t.fake, "invoice.payment_failed", inv.id as string);
    expect(await deliverOk(t, ev)).toBe("applied");
    const first = await customerRow(t, s.customerId);
    nowMs += 60_000;
    // Meanwhile the customer paid; the redelivered failure must not touch anything.
    t.fake.state.updateSubscription(s.subId, { status: "active" });
    expect(await deliverOk(t, ev)).toBe("duplicate");
    expect(await customerRow(t, s.customerId)).toEqual(first);
    await smtp.waitForMail(s.email, /payment failed/i);
    expect(smtp.messages.filter((m) => m.to.includes(s.email) && /payment failed/i.test(m.subject))).toHaveLength(1);
  });

  it("two concurrent deliveries of one event produce one effect", async () => {
    const s = await subscribe(t, "concurrent");
    t.fake.state.updateSubscription(s.subId, { status: "past_due" });
    const inv = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    const ev = invoiceEvent(t.fake, "invoice.payment_failed", inv.id as string);
    const before = t.fake.requestsTo(`/v1/subscriptions/${s.subId}`, "GET").length;
    const outcomes = await Promise.all([deliverOk(t, ev), deliverOk(t, ev), deliverOk(t, ev)]);
    expect(outcomes.sort()).toEqual(["applied", "duplicate", "duplicate"]);
    // Only one delivery re-read the subscription (the others stopped at the event id).
    expect(t.fake.requestsTo(`/v1/subscriptions/${s.subId}`, "GET").length - before).toBe(1);
    await smtp.waitForMail(s.email, /payment failed/i);
    expect(smtp.messages.filter((m) => m.to.includes(s.email) && /payment failed/i.test(m.subject))).toHaveLength(1);
  });

  it("Stripe down while handling: 503, nothing recorded or changed; the redelivery then applies", async () => {
    const s = await subscribe(t, "down");
    t.fake.state.updateSubscription(s.subId, { status: "canceled" });
    const ev = subEvent(t.fake, "customer.subscription.deleted", s.subId);
    t.fake.setDown(true);
    try {
      expectProblem(await deliver(t, ev), 503, "billing_unavailable");
    } finally {
      t.fake.setDown(false);
    }
    expect(await eventRow(t, ev.event.id as string)).toBeUndefined();
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "pro", subscriptionStatus: "active" });
    expect(await deliverOk(t, ev)).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "free", subscriptionStatus: "canceled" });
    expect((await eventRow(t, ev.event.id as string))?.outcome).toBe("applied");
  });
});

describe("out-of-order delivery", () => {
  it("updated after deleted does not resurrect the subscription", async () => {
    const s = await subscribe(t, "resurrect");
    const updated = subEvent(t.fake, "customer.subscription.updated", s.subId); // status active in the payload
    t.fake.state.updateSubscription(s.subId, { status: "canceled" });
    const deleted = subEvent(t.fake, "customer.subscription.deleted", s.subId);
    expect(await deliverOk(t, deleted)).toBe("applied");
    expect(await deliverOk(t, updated)).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "free", subscriptionStatus: "canceled" });
    expect((await usageTier(s.access)).tier).toBe("free");
  });

  it("created after updated does not roll the plan back", async () => {
    const s = await signUp(t, "createdlate");
    const cus = t.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
    const sub = t.fake.state.putSubscription({
      customer: cus.id as string,
      price: FAKE_PRICE_PRO,
      status: "incomplete",
      metadata: { customer_id: s.customerId },
    });
    const created = subEvent(t.fake, "customer.subscription.created", sub.id as string); // incomplete, pro
    t.fake.state.putSubscription({
      id: sub.id as string,
      customer: cus.id as string,
      price: FAKE_PRICE_ENTERPRISE,
      metadata: { customer_id: s.customerId },
    });
    const updated = subEvent(t.fake, "customer.subscription.updated", sub.id as string); // active, enterprise
    expect(await deliverOk(t, updated)).toBe("applied");
    expect(await deliverOk(t, created)).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "enterprise",
      subscriptionStatus: "active",
      stripePriceId: FAKE_PRICE_ENTERPRISE,
    });
  });

  it("a late event of an old canceled subscription does not overwrite the live current one", async () => {
    const s = await subscribe(t, "oldsub");
    const oldUpdated = subEvent(t.fake, "customer.subscription.updated", s.subId);
    t.fake.state.updateSubscription(s.subId, { status: "canceled" });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.deleted", s.subId))).toBe("applied");
    // A new subscription (after the old one ended), created a second later.
    const fresh = t.fake.state.putSubscription({
      customer: s.stripeCustomerId,
      price: FAKE_PRICE_ENTERPRISE,
      created: Math.floor(Date.now() / 1000) + 1,
      metadata: { customer_id: s.customerId },
    });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.created", fresh.id as string))).toBe("applied");
    expect(await deliverOk(t, oldUpdated)).toBe("stale");
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "enterprise",
      subscriptionStatus: "active",
      stripeSubscriptionId: fresh.id,
    });
  });
});

describe("dunning", () => {
  it("payment failed -> past_due with grace (tier kept, email with the invoice link and deadline) -> grace over -> free", async () => {
    const s = await subscribe(t, "grace");
    t.fake.state.updateSubscription(s.subId, { status: "past_due" });
    const inv = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_failed", inv.id as string))).toBe("applied");
    const graceUntil = nowMs + 7 * DAY;
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "pro",
      subscriptionStatus: "past_due",
      graceUntil: new Date(graceUntil),
    });
    const mail = await smtp.waitForMail(s.email, /payment failed/i);
    expect(mail.decoded).toContain(inv.hosted_invoice_url as string);
    expect(mail.decoded).toContain(new Date(graceUntil).toISOString().slice(0, 10));

    // A second failure (Stripe's retry) does not extend the deadline.
    nowMs += 3 * DAY;
    const inv2 = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_failed", inv2.id as string))).toBe("applied");
    expect((await customerRow(t, s.customerId)).graceUntil).toEqual(new Date(graceUntil));

    // Still inside the grace period: the job changes nothing.
    await t.runJobs();
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
    expect((await usageTier(s.access)).tier).toBe("pro");

    nowMs = graceUntil + 1;
    await t.runJobs();
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "free", subscriptionStatus: "past_due" });
    expect((await usageTier(s.access)).tier).toBe("free");
    await smtp.waitForMail(s.email, /moved to the free plan/i);

    // Paid at last: back to pro, grace cleared, "recovered".
    t.fake.state.updateSubscription(s.subId, { status: "active" });
    (t.fake.state.invoices.get(inv.id as string) as JsonObject).status = "paid";
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.paid", inv.id as string))).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "pro",
      subscriptionStatus: "active",
      graceUntil: null,
    });
    expect((await usageTier(s.access)).tier).toBe("pro");
    await smtp.waitForMail(s.email, /payment received/i);
  });

  it("recovered before the deadline: grace cleared, tier never dropped, a later job run changes nothing", async () => {
    const s = await subscribe(t, "recover");
    t.fake.state.updateSubscription(s.subId, { status: "past_due" });
    const inv = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_failed", inv.id as string))).toBe("applied");
    nowMs += 2 * DAY;
    t.fake.state.updateSubscription(s.subId, { status: "active" });
    (t.fake.state.invoices.get(inv.id as string) as JsonObject).status = "paid";
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_succeeded", inv.id as string))).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({
      tier: "pro",
      subscriptionStatus: "active",
      graceUntil: null,
    });
    await smtp.waitForMail(s.email, /payment received/i);
    nowMs += 30 * DAY;
    await t.runJobs();
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
  });

  it("payment action required mails the owner the invoice link; the subscription is left as Stripe says", async () => {
    const s = await subscribe(t, "sca");
    const inv = t.fake.state.putInvoice({ customer: s.stripeCustomerId, subscription: s.subId, status: "open" });
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_action_required", inv.id as string))).toBe(
      "applied",
    );
    const mail = await smtp.waitForMail(s.email, /confirm your payment/i);
    expect(mail.decoded).toContain(inv.hosted_invoice_url as string);
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
  });

  it("deleted subscription: free at once (overrides kept) and a canceled email", async () => {
    const s = await subscribe(t, "cancel");
    await t.database.db.execute(
      // An administrator's per-customer override survives the downgrade.
      (await import("drizzle-orm")).sql`update customers set rate_limit_per_minute = 42 where id = ${s.customerId}`,
    );
    t.fake.state.updateSubscription(s.subId, { status: "canceled" });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.deleted", s.subId))).toBe("applied");
    expect(await customerRow(t, s.customerId)).toMatchObject({ tier: "free", rateLimitPerMinute: 42 });
    await smtp.waitForMail(s.email, /subscription canceled/i);
  });

  it("paused -> free, resumed -> paid tier again", async () => {
    const s = await subscribe(t, "pause");
    t.fake.state.updateSubscription(s.subId, { status: "paused" });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.paused", s.subId))).toBe("applied");
    expect((await customerRow(t, s.customerId)).tier).toBe("free");
    t.fake.state.updateSubscription(s.subId, { status: "active" });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.resumed", s.subId))).toBe("applied");
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
  });
});
