import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/modules/auth/password.ts";
import { customers, users } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, login, PASSWORD, signUp, uniqueEmail } from "../auth/helpers.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { FAKE_PRICE_ENTERPRISE, FAKE_PRICE_PRO } from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";

let t: BillingTestContext;
beforeAll(async () => {
  t = await buildBillingApp({ env: { BILLING_REDIRECT_ORIGINS: '["https://shop.example.test"]' } });
});
afterAll(async () => {
  await t?.close();
});

async function stripeIdOf(customerId: string): Promise<string | null> {
  const rows = await t.database.db
    .select({ id: customers.stripeCustomerId })
    .from(customers)
    .where(eq(customers.id, customerId));
  return rows[0]?.id ?? null;
}

async function apiKey(ctx: TestContext, token: string, scopes: string[]): Promise<string> {
  const res = await ctx.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: bearer(token),
    payload: { name: `k-${scopes.join("-")}`, scopes },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().key as string;
}

function checkout(token: string, payload: Record<string, unknown>, headers: Record<string, string> = {}) {
  return t.app.inject({
    method: "POST",
    url: "/v1/billing/checkout",
    headers: { ...bearer(token), ...headers },
    payload,
  });
}

describe("billing disabled (no STRIPE_SECRET_KEY)", () => {
  it("every billing route answers 503 billing_disabled and /health says disabled", async () => {
    const plain = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
    try {
      const s = await signUp(plain, "nobill");
      for (const [method, url, payload] of [
        ["POST", "/v1/billing/checkout", { tier: "pro" }],
        ["GET", "/v1/billing/portal", undefined],
        ["POST", "/v1/billing/portal", {}],
        ["GET", "/v1/billing/subscription", undefined],
        ["GET", "/v1/billing/invoices", undefined],
      ] as const) {
        const res = await plain.app.inject({
          method,
          url,
          headers: bearer(s.access),
          ...(payload === undefined ? {} : { payload }),
        });
        expectProblem(res, 503, "billing_disabled");
      }
      const health = await plain.app.inject({ method: "GET", url: "/health" });
      expect(health.json().checks.billing.status).toBe("disabled");
    } finally {
      await plain.close();
    }
  });
});

describe("POST /v1/billing/checkout", () => {
  it("creates the Stripe customer once (our id in metadata, idempotency key from our id) and a subscription session", async () => {
    const s = await signUp(t, "checkout");
    const res = await checkout(s.access, { tier: "pro" });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as { url: string; session_id: string };
    expect(body.session_id).toMatch(/^cs_/);
    expect(body.url).toContain(body.session_id);

    const stripeId = await stripeIdOf(s.customerId);
    expect(stripeId).toMatch(/^cus_/);
    const created = t.fake.requestsTo("/v1/customers", "POST").filter((r) => r.body.metadata !== undefined);
    const mine = created.filter((r) => (r.body.metadata as Record<string, string>).customer_id === s.customerId);
    expect(mine).toHaveLength(1);
    expect(mine[0]?.idempotencyKey).toContain(s.customerId);

    const session = t.fake.state.checkoutSessions.get(body.session_id) as Record<string, unknown>;
    expect(session.customer).toBe(stripeId);
    expect(session.mode).toBe("subscription");
    const sessionReq = t.fake.requestsTo("/v1/checkout/sessions", "POST").at(-1);
    expect(sessionReq?.body.line_items).toEqual([{ price: FAKE_PRICE_PRO, quantity: "1" }]);
    expect(sessionReq?.body.success_url).toBe("https://app.example.test/billing/success");

    // A second checkout (e.g. after abandoning the first) reuses the Stripe customer.
    const again = await checkout(s.access, { tier: "enterprise" });
    expect(again.statusCode, again.body).toBe(200);
    const all = t.fake
      .requestsTo("/v1/customers", "POST")
      .filter((r) => (r.body.metadata as Record<string, string> | undefined)?.customer_id === s.customerId);
    expect(all).toHaveLength(1);
    expect(t.fake.requestsTo("/v1/checkout/sessions", "POST").at(-1)?.body.line_items).toEqual([
      { price: FAKE_PRICE_ENTERPRISE, quantity: "1" },
    ]);
  });

  it("two concurrent checkouts of a new customer leave one Stripe customer", async () => {
    const s = await signUp(t, "race");
    const [a, b] = await Promise.all([checkout(s.access, { tier: "pro" }), checkout(s.access, { tier: "pro" })]);
    expect(a.statusCode, a.body).toBe(200);
    expect(b.statusCode, b.body).toBe(200);
    const ids = [...t.fake.state.customers.values()].filter(
      (c) => (c.metadata as Record<string, string>).customer_id === s.customerId,
    );
    expect(ids).toHaveLength(1);
    expect(await stripeIdOf(s.customerId)).toBe(ids[0]?.id);
  });

  it("the same Idempotency-Key returns the same session; another key a new one", async () => {
    const s = await signUp(t, "idem");
    const one = await checkout(s.access, { tier: "pro" }, { "idempotency-key": "try-1" });
    const two = await checkout(s.access, { tier: "pro" }, { "idempotency-key": "try-1" });
    const three = await checkout(s.access, { tier: "pro" }, { "idempotency-key": "try-2" });
    expect(one.json().session_id).toBe(two.json().session_id);
    expect(three.json().session_id).not.toBe(one.json().session_id);
  });

  it("a customer with a live subscription gets 409 subscription_exists", async () => {
    const s = await signUp(t, "subscribed");
    for (const status of ["active", "past_due", "trialing"]) {
      await t.database.db.update(customers).set({ subscriptionStatus: status }).where(eq(customers.id, s.customerId));
      const body = expectProblem(await checkout(s.access, { tier: "pro" }), 409, "subscription_exists");
      expect(String(body.detail)).toContain("portal");
    }
    await t.database.db.update(customers).set({ subscriptionStatus: "canceled" }).where(eq(customers.id, s.customerId));
    expect((await checkout(s.access, { tier: "pro" })).statusCode).toBe(200);
  });

  it("redirect URLs must be on an allowed origin (no open redirect)", async () => {
    const s = await signUp(t, "redirect");
    const before = t.fake.requestsTo("/v1/checkout/sessions", "POST").length;
    for (const url of [
      "https://evil.example.com/phish",
      "https://app.example.test.evil.com/x",
      "https://user:pass@app.example.test/x",
      "javascript:alert(1)",
      "ftp://app.example.test/x",
    ]) {
      const res = await checkout(s.access, { tier: "pro", success_url: url });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
      expect(["redirect_not_allowed", "invalid_request", "validation_failed"]).toContain(res.json().code);
      const bad = await checkout(s.access, { tier: "pro", cancel_url: url });
      expect(bad.statusCode, url).toBe(400);
    }
    expect(t.fake.requestsTo("/v1/checkout/sessions", "POST").length).toBe(before);
    const ok = await checkout(s.access, {
      tier: "pro",
      success_url: "https://shop.example.test/thanks?x=1",
      cancel_url: "https://app.example.test/billing",
    });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(t.fake.requestsTo("/v1/checkout/sessions", "POST").at(-1)?.body.success_url).toBe(
      "https://shop.example.test/thanks?x=1",
    );
  });

  it("validates the body: unknown tier, free tier, extra fields", async () => {
    const s = await signUp(t, "badbody");
    for (const payload of [{ tier: "free" }, { tier: "gold" }, {}, { tier: "pro", price: "price_x" }]) {
      const res = await checkout(s.access, payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(422);
    }
  });

  it("only the owner or an admin key may start checkout; a member or an inference key is 403", async () => {
    const owner = await signUp(t, "owner");
    const memberEmail = uniqueEmail("member");
    await t.database.db.insert(users).values({
      customerId: owner.customerId,
      email: memberEmail,
      role: "member",
      passwordHash: await hashPassword(PASSWORD),
    });
    const memberToken = (await login(t, memberEmail, PASSWORD)).json().access_token as string;
    expectProblem(await checkout(memberToken, { tier: "pro" }), 403, "forbidden");
    expectProblem(
      await t.app.inject({ method: "GET", url: "/v1/billing/subscription", headers: bearer(memberToken) }),
      403,
      "forbidden",
    );
    const inferenceKey = await apiKey(t, owner.access, ["inference"]);
    expectProblem(
      await t.app.inject({
        method: "POST",
        url: "/v1/billing/checkout",
        headers: { "x-api-key": inferenceKey },
        payload: { tier: "pro" },
      }),
      403,
      "forbidden",
    );
    const adminKey = await apiKey(t, owner.access, ["admin"]);
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/billing/checkout",
      headers: { "x-api-key": adminKey },
      payload: { tier: "pro" },
    });
    expect(res.statusCode, res.body).toBe(200);
    expectProblem(
      await t.app.inject({ method: "POST", url: "/v1/billing/checkout", payload: { tier: "pro" } }),
      401,
      "unauthorized",
    );
  });

  it("Stripe down: 503 billing_unavailable without Stripe's text, and nothing written", async () => {
    const s = await signUp(t, "down");
    t.fake.setDown(true);
    try {
      const res = await checkout(s.access, { tier: "pro" });
      const body = expectProblem(res, 503, "billing_unavailable");
      expect(res.headers["retry-after"]).toBeDefined();
      expect(JSON.stringify(body)).not.toMatch(/api_error|stripe\.com|sk_test/i);
      expect(await stripeIdOf(s.customerId)).toBeNull();
    } finally {
      t.fake.setDown(false);
    }
    expect((await checkout(s.access, { tier: "pro" })).statusCode).toBe(200);
  });
});

describe("billing portal", () => {
  it("GET and POST return a portal session for the customer's Stripe customer, return_url allow-listed", async () => {
    const s = await signUp(t, "portal");
    const get = await t.app.inject({ method: "GET", url: "/v1/billing/portal", headers: bearer(s.access) });
    expect(get.statusCode, get.body).toBe(200);
    expect(get.json().url).toMatch(/^https:\/\//);
    const stripeId = await stripeIdOf(s.customerId);
    expect(stripeId).toMatch(/^cus_/);
    const post = await t.app.inject({
      method: "POST",
      url: "/v1/billing/portal",
      headers: bearer(s.access),
      payload: { return_url: "https://shop.example.test/account" },
    });
    expect(post.statusCode, post.body).toBe(200);
    const req = t.fake.requestsTo("/v1/billing_portal/sessions", "POST").at(-1);
    expect(req?.body.customer).toBe(stripeId);
    expect(req?.body.return_url).toBe("https://shop.example.test/account");
    expectProblem(
      await t.app.inject({
        method: "GET",
        url: "/v1/billing/portal?return_url=https%3A%2F%2Fevil.example.com%2F",
        headers: bearer(s.access),
      }),
      400,
      "redirect_not_allowed",
    );
  });
});

describe("GET /v1/billing/subscription and /v1/billing/invoices", () => {
  it("a new customer: status none, free tier, usage against the included quota, no invoice", async () => {
    const s = await signUp(t, "fresh");
    const res = await t.app.inject({ method: "GET", url: "/v1/billing/subscription", headers: bearer(s.access) });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      customer_id: s.customerId,
      tier: "free",
      status: "none",
      price: null,
      grace_until: null,
      last_invoice: null,
      overage: { enabled: false, reported_requests: 0, reported_stream_seconds: 0 },
    });
    expect(body.usage.requests).toEqual({ used: 0, included: 10_000, overage: 0, overage_cap: null });
    expect(body.usage.stream_seconds.included).toBe(5 * 3600);
  });

  it("a subscribed customer: price, period, last invoice; invoices paginate and are its own only", async () => {
    const a = await signUp(t, "payer");
    const b = await signUp(t, "other");
    const cus = t.fake.state.putCustomer({ email: a.email, metadata: { customer_id: a.customerId } });
    const sub = t.fake.state.putSubscription({ customer: cus.id as string, price: FAKE_PRICE_PRO, status: "active" });
    for (let i = 0; i < 3; i++) {
      t.fake.state.putInvoice({
        customer: cus.id as string,
        subscription: sub.id as string,
        status: "paid",
        amountDue: 4900,
      });
    }
    await t.database.db
      .update(customers)
      .set({
        tier: "pro",
        stripeCustomerId: cus.id as string,
        stripeSubscriptionId: sub.id as string,
        subscriptionStatus: "active",
        stripePriceId: FAKE_PRICE_PRO,
        currentPeriodStart: new Date("2026-12-01T00:00:00Z"),
        currentPeriodEnd: new Date("2027-01-01T00:00:00Z"),
      })
      .where(eq(customers.id, a.customerId));
    await t.app.platform.limits.customerChanged(a.customerId);

    const res = await t.app.inject({ method: "GET", url: "/v1/billing/subscription", headers: bearer(a.access) });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.tier).toBe("pro");
    expect(body.status).toBe("active");
    expect(body.current_period_end).toBe("2027-01-01T00:00:00.000Z");
    expect(body.price).toMatchObject({ id: FAKE_PRICE_PRO, currency: "usd", interval: "month" });
    expect(typeof body.price.amount).toBe("number");
    expect(body.usage.requests.included).toBe(100_000);
    expect(body.last_invoice).toMatchObject({ status: "paid", amount_due: 4900 });

    const page1 = await t.app.inject({ method: "GET", url: "/v1/billing/invoices?limit=2", headers: bearer(a.access) });
    expect(page1.statusCode, page1.body).toBe(200);
    expect(page1.json().data).toHaveLength(2);
    expect(page1.json().has_more).toBe(true);
    const cursor = page1.json().next_cursor as string;
    const page2 = await t.app.inject({
      method: "GET",
      url: `/v1/billing/invoices?limit=2&starting_after=${cursor}`,
      headers: bearer(a.access),
    });
    expect(page2.json().data).toHaveLength(1);
    expect(page2.json().has_more).toBe(false);
    const ids = [...page1.json().data, ...page2.json().data].map((i: { id: string }) => i.id);
    expect(new Set(ids).size).toBe(3);

    // Cached: the same page again does not ask Stripe.
    const before = t.fake.requestsTo("/v1/invoices", "GET").length;
    await t.app.inject({ method: "GET", url: "/v1/billing/invoices?limit=2", headers: bearer(a.access) });
    expect(t.fake.requestsTo("/v1/invoices", "GET").length).toBe(before);

    // Another customer sees none of them.
    const other = await t.app.inject({ method: "GET", url: "/v1/billing/invoices", headers: bearer(b.access) });
    expect(other.statusCode).toBe(200);
    expect(other.json().data).toEqual([]);
    expectProblem(
      await t.app.inject({
        method: "GET",
        url: "/v1/billing/invoices?starting_after=cus_123",
        headers: bearer(a.access),
      }),
      400,
      "invalid_request",
    );
    // A well-formed cursor that names no invoice: the caller's mistake (Stripe's resource_missing), not an outage.
    expectProblem(
      await t.app.inject({
        method: "GET",
        url: "/v1/billing/invoices?starting_after=in_78AD6F1v9",
        headers: bearer(a.access),
      }),
      400,
      "invalid_request",
    );
    expect(
      (await t.app.inject({ method: "GET", url: "/v1/billing/invoices?limit=1000", headers: bearer(a.access) }))
        .statusCode,
    ).toBe(400);
  });

  it("Stripe down: the subscription view still answers from our copy and flags the missing invoice", async () => {
    const s = await signUp(t, "viewdown");
    const cus = t.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
    await t.database.db
      .update(customers)
      .set({ stripeCustomerId: cus.id as string })
      .where(eq(customers.id, s.customerId));
    t.fake.setDown(true);
    try {
      const res = await t.app.inject({ method: "GET", url: "/v1/billing/subscription", headers: bearer(s.access) });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().last_invoice).toBeNull();
      expect(res.json().last_invoice_unavailable).toBe(true);
      expectProblem(
        await t.app.inject({ method: "GET", url: "/v1/billing/invoices", headers: bearer(s.access) }),
        503,
        "billing_unavailable",
      );
    } finally {
      t.fake.setDown(false);
    }
  });
});
