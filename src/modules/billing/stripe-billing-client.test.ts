import Stripe from "stripe";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  FAKE_PRICE_ENTERPRISE,
  FAKE_PRICE_PRO,
  FAKE_PRICE_PRO_YEARLY,
  parseForm,
  type StripeFake,
  signedEvent,
  startStripeFake,
} from "../../../test/helpers/stripe-fake.ts";
import {
  type BillingClient,
  BillingRequestError,
  BillingUnavailableError,
  InvalidSignatureError,
} from "./billing-client.ts";
import { createStripeBillingClient } from "./stripe-billing-client.ts";

let fake: StripeFake;
let client: BillingClient;

beforeAll(async () => {
  fake = await startStripeFake();
  client = createStripeBillingClient(fake.billingConfig());
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  fake.setDown(false);
});

let n = 0;
const ourId = (): string => `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`;

async function newCustomer(): Promise<{ ours: string; stripeId: string }> {
  const ours = ourId();
  const { id } = await client.createCustomer({ ourCustomerId: ours, email: `${ours}@example.com`, name: "Acme" });
  return { ours, stripeId: id };
}

async function checkout(c: { ours: string; stripeId: string }, priceId = FAKE_PRICE_PRO) {
  return client.createCheckoutSession({
    stripeCustomerId: c.stripeId,
    ourCustomerId: c.ours,
    priceId,
    successUrl: "http://localhost:3000/billing/success",
    cancelUrl: "http://localhost:3000/billing/cancel",
    idempotencyKey: `checkout-${c.ours}-1`,
  });
}

describe("stripe billing client: requests", () => {
  it("creates a customer once per our id: derived idempotency key, our id in metadata", async () => {
    const ours = ourId();
    const before = fake.state.customers.size;
    const a = await client.createCustomer({ ourCustomerId: ours, email: "owner@example.com", name: "Acme Robotics" });
    const b = await client.createCustomer({ ourCustomerId: ours, email: "owner@example.com", name: "Acme Robotics" });
    expect(a.id).toMatch(/^cus_/);
    expect(b.id).toBe(a.id);
    expect(fake.state.customers.size).toBe(before + 1);
    const reqs = fake.requestsTo("/v1/customers", "POST").slice(-2);
    expect(reqs.map((r) => r.idempotencyKey)).toEqual([`customer-create-${ours}`, `customer-create-${ours}`]);
    expect(reqs.map((r) => r.replayed)).toEqual([false, true]);
    expect(reqs[0]?.body).toEqual({
      email: "owner@example.com",
      name: "Acme Robotics",
      metadata: { customer_id: ours },
    });
    expect(reqs[0]?.headers.authorization).toBe(`Bearer ${fake.secretKey}`);
    expect(reqs[0]?.headers["stripe-version"]).toBe(Stripe.API_VERSION);
    expect(fake.state.customers.get(a.id)?.metadata).toEqual({ customer_id: ours });
  });

  it("retries a dropped answer with the same Idempotency-Key, so the customer exists once", async () => {
    const retrying = createStripeBillingClient(fake.billingConfig({ maxNetworkRetries: 2 }));
    const ours = ourId();
    const before = fake.state.customers.size;
    fake.failNext(1, { afterProcessing: true, pathPrefix: "/v1/customers" });
    const { id } = await retrying.createCustomer({ ourCustomerId: ours, email: "x@example.com", name: "X" });
    expect(fake.state.customers.size).toBe(before + 1);
    expect(fake.state.customers.get(id)?.metadata).toEqual({ customer_id: ours });
    const reqs = fake.requestsTo("/v1/customers", "POST").filter((r) => r.idempotencyKey === `customer-create-${ours}`);
    expect(reqs.map((r) => [r.status, r.replayed])).toEqual([
      [0, false],
      [200, true],
    ]);
  });

  it("creates a subscription-mode checkout session with one line item and our id everywhere", async () => {
    const c = await newCustomer();
    const session = await checkout(c);
    expect(session.id).toMatch(/^cs_test_/);
    expect(session.url).toBe(`https://checkout.stripe.com/c/pay/${session.id}#fidkdWxOYHwnPyd1blpxYHZxWjA0`);
    const req = fake.requestsTo("/v1/checkout/sessions", "POST").at(-1);
    expect(req?.idempotencyKey).toBe(`checkout-${c.ours}-1`);
    expect(req?.body).toEqual({
      mode: "subscription",
      customer: c.stripeId,
      client_reference_id: c.ours,
      line_items: [{ price: FAKE_PRICE_PRO, quantity: "1" }],
      success_url: "http://localhost:3000/billing/success",
      cancel_url: "http://localhost:3000/billing/cancel",
      metadata: { customer_id: c.ours },
      subscription_data: { metadata: { customer_id: c.ours } },
    });
    // The same logical attempt returns the same session.
    expect(await checkout(c)).toEqual(session);
    expect([...fake.state.checkoutSessions.values()].filter((s) => s.customer === c.stripeId)).toHaveLength(1);
  });

  it("reuses of a checkout key with other parameters are refused as a request error, not an outage", async () => {
    const c = await newCustomer();
    await checkout(c);
    const err = await checkout(c, FAKE_PRICE_ENTERPRISE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BillingRequestError);
    expect((err as BillingRequestError).statusCode).toBe(400);
  });

  it("refuses an unknown price as a request error carrying Stripe's code", async () => {
    const c = await newCustomer();
    const err = await checkout(c, "price_does_not_exist").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BillingRequestError);
    expect((err as BillingRequestError).stripeCode).toBe("resource_missing");
  });

  it("creates a billing portal session", async () => {
    const c = await newCustomer();
    const { url } = await client.createPortalSession({
      stripeCustomerId: c.stripeId,
      returnUrl: "http://localhost:3000/x",
    });
    expect(url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\/test_/);
    const req = fake.requestsTo("/v1/billing_portal/sessions", "POST").at(-1);
    expect(req?.body).toEqual({ customer: c.stripeId, return_url: "http://localhost:3000/x" });
  });

  it("maps a subscription, reading the period from its item (API 2025-03-31 and later)", async () => {
    const c = await newCustomer();
    const session = await checkout(c, FAKE_PRICE_PRO_YEARLY);
    const sub = fake.completeCheckout(session.id);
    expect(fake.state.checkoutSessions.get(session.id)).toMatchObject({ status: "complete", subscription: sub.id });
    const item = (sub.items as { data: { current_period_start: number; current_period_end: number }[] }).data[0];
    expect(sub).not.toHaveProperty("current_period_start");
    const snap = await client.retrieveSubscription(sub.id as string);
    expect(snap).toEqual({
      id: sub.id,
      customerId: c.stripeId,
      status: "active",
      priceId: FAKE_PRICE_PRO_YEARLY,
      unitAmount: 29_000,
      currency: "usd",
      interval: "year",
      intervalCount: 1,
      quantity: 1,
      currentPeriodStart: item?.current_period_start,
      currentPeriodEnd: item?.current_period_end,
      cancelAtPeriodEnd: false,
      created: sub.created,
      ourCustomerId: c.ours,
      latestInvoiceId: sub.latest_invoice,
    });
    expect(snap?.currentPeriodEnd).toBe((item?.current_period_start ?? 0) + 365 * 86_400);
  });

  it("answers null for a subscription or invoice Stripe does not know", async () => {
    expect(await client.retrieveSubscription("sub_doesnotexist")).toBeNull();
    expect(await client.retrieveInvoice("in_doesnotexist")).toBeNull();
  });

  it("lists a customer's subscriptions of any status, newest first", async () => {
    const c = await newCustomer();
    const old = fake.state.putSubscription({
      customer: c.stripeId,
      price: FAKE_PRICE_PRO,
      status: "canceled",
      created: 1_700_000_000,
    });
    const mid = fake.state.putSubscription({
      customer: c.stripeId,
      price: FAKE_PRICE_PRO,
      status: "past_due",
      created: 1_700_000_100,
    });
    const cur = fake.state.putSubscription({
      customer: c.stripeId,
      price: FAKE_PRICE_ENTERPRISE,
      created: 1_700_000_200,
    });
    const other = await newCustomer();
    fake.state.putSubscription({ customer: other.stripeId, price: FAKE_PRICE_PRO });
    const list = await client.listSubscriptions(c.stripeId);
    expect(list.map((s) => [s.id, s.status])).toEqual([
      [cur.id, "active"],
      [mid.id, "past_due"],
      [old.id, "canceled"],
    ]);
    expect(fake.requestsTo("/v1/subscriptions", "GET").at(-1)?.query).toMatchObject({
      customer: c.stripeId,
      status: "all",
    });
  });

  it("pages invoices with a cursor and maps their subscription from parent.subscription_details", async () => {
    const c = await newCustomer();
    const sub = fake.state.putSubscription({ customer: c.stripeId, price: FAKE_PRICE_PRO });
    const ids = [1, 2, 3].map(
      (i) =>
        fake.state.putInvoice({
          customer: c.stripeId,
          subscription: sub.id as string,
          created: 1_700_000_000 + i,
          amountDue: 2900,
        }).id as string,
    );
    fake.state.putInvoice({ customer: c.stripeId, status: "open", created: 1_600_000_000, amountDue: 100 });
    const first = await client.listInvoices({ stripeCustomerId: c.stripeId, limit: 2 });
    expect(first.hasMore).toBe(true);
    expect(first.data.map((i) => i.id)).toEqual([ids[2], ids[1]]);
    expect(first.data[0]).toMatchObject({
      status: "paid",
      amountDue: 2900,
      amountPaid: 2900,
      currency: "usd",
      subscriptionId: sub.id,
      created: 1_700_000_003,
    });
    expect(first.data[0]?.hostedInvoiceUrl).toMatch(/^https:\/\/invoice\.stripe\.com\//);
    const second = await client.listInvoices({
      stripeCustomerId: c.stripeId,
      limit: 2,
      startingAfter: ids[1] as string,
    });
    expect(second.hasMore).toBe(false);
    expect(second.data.map((i) => [i.status, i.subscriptionId])).toEqual([
      ["paid", sub.id],
      ["open", null],
    ]);
    expect(await client.retrieveInvoice(ids[0] as string)).toMatchObject({ id: ids[0], subscriptionId: sub.id });
  });

  it("cancels now without proration or final invoice; an already canceled or unknown subscription is success", async () => {
    const c = await newCustomer();
    const sub = fake.state.putSubscription({ customer: c.stripeId, price: FAKE_PRICE_PRO });
    await client.cancelSubscription(sub.id as string);
    expect(fake.state.subscriptions.get(sub.id as string)?.status).toBe("canceled");
    const req = fake.requestsTo(`/v1/subscriptions/${sub.id as string}`, "DELETE").at(-1);
    expect(req?.query).toEqual({ invoice_now: "false", prorate: "false" });
    // Stripe answers 404 for cancelling a canceled subscription.
    await client.cancelSubscription(sub.id as string);
    expect(fake.requestsTo(`/v1/subscriptions/${sub.id as string}`, "DELETE").at(-1)?.status).toBe(404);
    await client.cancelSubscription("sub_neverexisted");
  });

  it("deletes a customer; deleting it again is success", async () => {
    const c = await newCustomer();
    await client.deleteCustomer(c.stripeId);
    expect(fake.state.deletedCustomers.has(c.stripeId)).toBe(true);
    await client.deleteCustomer(c.stripeId);
    expect(fake.requestsTo(`/v1/customers/${c.stripeId}`, "DELETE").map((r) => r.status)).toEqual([200, 404]);
  });

  it("reports a meter event keyed by its identifier; a repeat is not counted twice", async () => {
    const c = await newCustomer();
    const ts = Math.floor(Date.now() / 1000) - 60;
    const ev = {
      eventName: "vla_overage_requests",
      stripeCustomerId: c.stripeId,
      value: 1234,
      identifier: `ovr-${c.ours}-w1`,
      timestamp: ts,
    };
    await client.reportMeterEvent(ev);
    await client.reportMeterEvent(ev);
    await client.reportMeterEvent({ ...ev, identifier: `ovr-${c.ours}-w2`, value: 6 });
    expect(fake.state.meterTotal(c.stripeId, "vla_overage_requests")).toBe(1240);
    const reqs = fake.requestsTo("/v1/billing/meter_events", "POST").slice(-3);
    expect(reqs.map((r) => r.idempotencyKey)).toEqual([
      `meter-event-ovr-${c.ours}-w1`,
      `meter-event-ovr-${c.ours}-w1`,
      `meter-event-ovr-${c.ours}-w2`,
    ]);
    expect(reqs[0]?.body).toEqual({
      event_name: "vla_overage_requests",
      payload: { stripe_customer_id: c.stripeId, value: "1234" },
      identifier: `ovr-${c.ours}-w1`,
      timestamp: String(ts),
    });
  });

  it("refuses malformed ids and meter values before calling Stripe", async () => {
    const count = fake.requests.length;
    await expect(client.retrieveSubscription("../customers/cus_x")).rejects.toBeInstanceOf(BillingRequestError);
    await expect(client.listSubscriptions("sub_wrongprefix")).rejects.toBeInstanceOf(BillingRequestError);
    const c = { eventName: "e", stripeCustomerId: "cus_x", identifier: "i", timestamp: 1_700_000_000 };
    await expect(client.reportMeterEvent({ ...c, value: 0 })).rejects.toBeInstanceOf(BillingRequestError);
    await expect(client.reportMeterEvent({ ...c, value: 1.5 })).rejects.toBeInstanceOf(BillingRequestError);
    expect(fake.requests.length).toBe(count);
  });
});

describe("stripe billing client: Stripe unavailable or answering nonsense", () => {
  it("maps a 500 to BillingUnavailableError after the configured retries, all with the same Idempotency-Key", async () => {
    // 1, not the SDK's default of 2, so a client that forgets to pass the setting is caught.
    const retrying = createStripeBillingClient(fake.billingConfig({ maxNetworkRetries: 1 }));
    const ours = ourId();
    fake.setDown(true);
    const err = await retrying
      .createCustomer({ ourCustomerId: ours, email: "a@example.com", name: "A" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BillingUnavailableError);
    expect(String((err as Error).message)).not.toContain(fake.secretKey);
    const reqs = fake.requestsTo("/v1/customers", "POST").filter((r) => r.idempotencyKey === `customer-create-${ours}`);
    expect(reqs.map((r) => r.status)).toEqual([500, 500]);
  });

  it("does not retry a 500 when retries are off", async () => {
    const ours = ourId();
    fake.setDown(true);
    await expect(
      client.createCustomer({ ourCustomerId: ours, email: "a@example.com", name: "A" }),
    ).rejects.toBeInstanceOf(BillingUnavailableError);
    expect(
      fake.requestsTo("/v1/customers", "POST").filter((r) => r.idempotencyKey === `customer-create-${ours}`),
    ).toHaveLength(1);
  });

  it.each([
    ["reset", { maxNetworkRetries: 1 }],
    ["hang", { timeoutMs: 300 }],
  ] as const)("maps a %s connection to BillingUnavailableError", async (mode, overrides) => {
    const c = createStripeBillingClient(fake.billingConfig(overrides));
    fake.setDown(mode);
    await expect(c.retrieveSubscription("sub_abc")).rejects.toBeInstanceOf(BillingUnavailableError);
  });

  it("maps 429 rate limiting to BillingUnavailableError", async () => {
    fake.failNext(1, 429);
    await expect(client.retrieveInvoice("in_abc")).rejects.toBeInstanceOf(BillingUnavailableError);
  });

  it("maps an invalid key (401) to BillingRequestError without echoing the key", async () => {
    const wrongKey = "sk_test_wrongwrongwrongwrong1234";
    const c = createStripeBillingClient(fake.billingConfig({ stripeSecretKey: wrongKey }));
    const err = await c.retrieveSubscription("sub_abc").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BillingRequestError);
    expect((err as BillingRequestError).statusCode).toBe(401);
    expect((err as Error).message).not.toMatch(/sk_test_/);
  });

  it("reaches nothing when no server listens", async () => {
    const closed = await startStripeFake();
    const cfg = closed.billingConfig();
    await closed.close();
    await expect(createStripeBillingClient(cfg).retrieveSubscription("sub_abc")).rejects.toBeInstanceOf(
      BillingUnavailableError,
    );
  });

  const sub = (over: Record<string, unknown>) =>
    JSON.stringify({
      id: "sub_ok",
      object: "subscription",
      customer: "cus_ok",
      status: "active",
      currency: "usd",
      cancel_at_period_end: false,
      created: 1_700_000_000,
      latest_invoice: null,
      metadata: {},
      items: {
        object: "list",
        has_more: false,
        data: [
          {
            id: "si_1",
            current_period_start: 1,
            current_period_end: 2,
            price: { id: "price_x", unit_amount: 5, recurring: { interval: "month" } },
          },
        ],
      },
      ...over,
    });

  it("accepts the well-formed reference answer used below", async () => {
    fake.failNext(1, { status: 200, rawBody: sub({}) });
    expect(await client.retrieveSubscription("sub_ok")).toMatchObject({
      id: "sub_ok",
      priceId: "price_x",
      currentPeriodEnd: 2,
    });
  });

  it.each([
    ["not JSON", "<html>gateway</html>"],
    ["JSON null", "null"],
    ["an array", "[]"],
    ["unknown status", sub({ status: "exploded" })],
    ["numeric id", sub({ id: 42 })],
    ["customer of the wrong kind", sub({ customer: "acct_123" })],
    ["no items", sub({ items: { object: "list", data: [], has_more: false } })],
    ["NaN-ish created", sub({ created: "yesterday" })],
    [
      "negative amount",
      sub({ items: { object: "list", has_more: false, data: [{ price: { id: "price_x", unit_amount: -5 } }] } }),
    ],
    ["an invoice", JSON.stringify({ id: "in_1", object: "invoice" })],
    ["a huge id", sub({ id: `sub_${"a".repeat(300)}` })],
  ])("maps a subscription answer that is %s to BillingUnavailableError", async (_name, rawBody) => {
    fake.failNext(1, { status: 200, rawBody });
    await expect(client.retrieveSubscription("sub_ok")).rejects.toBeInstanceOf(BillingUnavailableError);
  });

  it.each([
    ["a checkout session without url", JSON.stringify({ id: "cs_test_1", object: "checkout.session", url: null })],
    ["a checkout url that is not https", JSON.stringify({ id: "cs_test_1", url: "javascript:alert(1)" })],
    ["a list without data", JSON.stringify({ object: "list", has_more: false })],
  ])("maps %s to BillingUnavailableError", async (name, rawBody) => {
    fake.failNext(1, { status: 200, rawBody });
    const c = { ours: ourId(), stripeId: "cus_x" };
    const p = name.startsWith("a list") ? client.listInvoices({ stripeCustomerId: "cus_x", limit: 5 }) : checkout(c);
    await expect(p).rejects.toBeInstanceOf(BillingUnavailableError);
  });
});

describe("stripe billing client: webhook verification", () => {
  const invoiceObject = { id: "in_123", object: "invoice", status: "paid" };

  it("accepts a fresh signed event and returns its fields", () => {
    const e = signedEvent(fake, { type: "invoice.paid", object: invoiceObject, created: 1_700_000_000 });
    expect(client.verifyWebhook(e.body, e.signature)).toEqual({
      id: e.event.id,
      type: "invoice.paid",
      created: 1_700_000_000,
      livemode: false,
      object: invoiceObject,
    });
  });

  it("accepts a signature 290 s old (tolerance 300 s)", () => {
    const e = signedEvent(fake, {
      type: "invoice.paid",
      object: invoiceObject,
      timestamp: Math.floor(Date.now() / 1000) - 290,
    });
    expect(client.verifyWebhook(e.body, e.signature).type).toBe("invoice.paid");
  });

  it("rejects a stale signature (301 s old), a tampered body, a wrong secret and a missing header", () => {
    const stale = signedEvent(fake, {
      type: "invoice.paid",
      object: invoiceObject,
      timestamp: Math.floor(Date.now() / 1000) - 301,
    });
    expect(() => client.verifyWebhook(stale.body, stale.signature)).toThrow(InvalidSignatureError);

    const e = signedEvent(fake, { type: "invoice.paid", object: invoiceObject });
    const tampered = Buffer.from(e.payload.replace('"paid"', '"void"'));
    expect(tampered.equals(e.body)).toBe(false);
    expect(() => client.verifyWebhook(tampered, e.signature)).toThrow(InvalidSignatureError);

    const wrong = signedEvent("whsec_someone_else", { type: "invoice.paid", object: invoiceObject });
    expect(() => client.verifyWebhook(wrong.body, wrong.signature)).toThrow(InvalidSignatureError);

    expect(() => client.verifyWebhook(e.body, undefined)).toThrow(InvalidSignatureError);
    expect(() => client.verifyWebhook(e.body, "")).toThrow(InvalidSignatureError);
    expect(() => client.verifyWebhook(e.body, "t=1,v1=deadbeef")).toThrow(InvalidSignatureError);
  });

  it("rejects a correctly signed payload that is not a usable event", () => {
    const sign = (payload: string) => ({
      body: Buffer.from(payload),
      sig: Stripe.webhooks.generateTestHeaderString({ payload, secret: fake.webhookSecret }),
    });
    for (const payload of [
      JSON.stringify({ id: "evt_1", type: "x.y", created: 1, data: {} }),
      JSON.stringify({ id: "not_an_event", type: "x.y", created: 1, data: { object: {} } }),
      JSON.stringify({ id: "evt_1", type: 7, created: 1, data: { object: {} } }),
      JSON.stringify({ id: "evt_1", type: "x.y", created: -1, data: { object: {} } }),
      "[1,2]",
      "not json",
    ]) {
      const { body, sig } = sign(payload);
      expect(() => client.verifyWebhook(body, sig), payload).toThrow(InvalidSignatureError);
    }
  });
});

describe("stripe fake: checks what the SDK sends", () => {
  const post = (path: string, body: string, headers: Record<string, string>) =>
    fetch(`${fake.url}${path}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    });
  const good = () => ({
    authorization: `Bearer ${fake.secretKey}`,
    "stripe-version": Stripe.API_VERSION,
    "idempotency-key": `k-${ourId()}`,
  });

  it("refuses a missing or wrong key, another API version, a POST without Idempotency-Key, JSON and unknown parameters", async () => {
    const h = good();
    const cases: [Record<string, string>, string, number][] = [
      [{ ...h, authorization: "" }, "email=a", 401],
      [{ ...h, authorization: "Bearer sk_test_other" }, "email=a", 401],
      [{ ...h, "stripe-version": "2024-06-20" }, "email=a", 400],
      [{ authorization: h.authorization, "stripe-version": h["stripe-version"] }, "email=a", 400],
      [{ ...h, "content-type": "application/json" }, '{"email":"a"}', 400],
      [{ ...h, "idempotency-key": `u-${ourId()}` }, "emial=a", 400],
    ];
    for (const [headers, body, status] of cases) {
      const res = await post("/v1/customers", body, headers);
      expect(res.status, JSON.stringify(headers)).toBe(status);
      const json = (await res.json()) as { error: { type: string; message: string } };
      expect(typeof json.error.message).toBe("string");
    }
  });

  it("replays a repeated Idempotency-Key and refuses it with other parameters", async () => {
    const h = good();
    const a = await post("/v1/customers", "email=a%40example.com", h);
    const b = await post("/v1/customers", "email=a%40example.com", h);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect(((await b.json()) as { id: string }).id).toBe(((await a.json()) as { id: string }).id);
    const c = await post("/v1/customers", "email=b%40example.com", h);
    expect(c.status).toBe(400);
    expect(((await c.json()) as { error: { type: string } }).error.type).toBe("idempotency_error");
  });

  it("answers 404 resource_missing in Stripe's error shape", async () => {
    const res = await fetch(`${fake.url}/v1/subscriptions/sub_nope`, {
      headers: { authorization: `Bearer ${fake.secretKey}`, "stripe-version": Stripe.API_VERSION },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: {
        type: "invalid_request_error",
        code: "resource_missing",
        param: "id",
        message: "No such subscription: 'sub_nope'",
      },
    });
  });

  it("parses Stripe's bracket form encoding", () => {
    expect(
      parseForm(
        "a=1&metadata[customer_id]=c%201&line_items[0][price]=p&line_items[0][quantity]=1&line_items[1][price]=q",
      ),
    ).toEqual({
      a: "1",
      metadata: { customer_id: "c 1" },
      line_items: [{ price: "p", quantity: "1" }, { price: "q" }],
    });
    expect(parseForm("x%5By%5D=1")).toEqual({ x: { y: "1" } });
    expect(() => parseForm("a=1&a=2")).toThrow();
    expect(() => parseForm("a=1&a[b]=2")).toThrow();
  });
});
