import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import Stripe from "stripe";
import type { Config } from "../../src/config.ts";

/**
 * A Stripe-protocol fake on 127.0.0.1 for tests: the real SDK (pointed here through
 * `STRIPE_API_BASE`) talks to it over HTTP. It checks what the SDK sends the way Stripe does
 * (Bearer key, pinned `Stripe-Version`, form-encoded bodies, known parameters) and also that every
 * POST carries an `Idempotency-Key`; a repeated key replays the stored answer, a repeated key with
 * other parameters is a 400 `idempotency_error`. Objects are shaped like the API reference for
 * the pinned version (`current_period_*` on subscription items, an invoice's subscription under
 * `parent.subscription_details`).
 *
 *   const fake = await startStripeFake();
 *   const client = createStripeBillingClient(fake.billingConfig());
 *   ...
 *   await fake.close();
 */

export const FAKE_SECRET_KEY = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc";
export const FAKE_WEBHOOK_SECRET = "whsec_fake_7d3f0c1a9b8e4f2aa5c6";
export const FAKE_PRICE_PRO = "price_fake_pro_monthly";
export const FAKE_PRICE_PRO_YEARLY = "price_fake_pro_yearly";
export const FAKE_PRICE_ENTERPRISE = "price_fake_enterprise_monthly";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface FakePrice {
  readonly id: string;
  readonly unitAmount: number | null;
  readonly currency: string;
  readonly interval: "day" | "week" | "month" | "year";
}

export interface StripeFakeOptions {
  readonly secretKey?: string;
  readonly webhookSecret?: string;
  /** The version the SDK must send; default the SDK's pinned `Stripe.API_VERSION`. */
  readonly apiVersion?: string;
  /** Extra prices besides the three FAKE_PRICE_* ones. */
  readonly prices?: readonly FakePrice[];
  /** Seconds since the epoch for `created` and periods; default the wall clock. */
  readonly now?: () => number;
}

export interface RecordedRequest {
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  readonly query: JsonObject;
  /** The parsed form body (POST) or {}. */
  readonly body: JsonObject;
  readonly rawBody: string;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly idempotencyKey: string | undefined;
  /** Status answered (0 when the socket was destroyed instead). */
  status: number;
  /** True when the answer was replayed from the idempotency store. */
  replayed: boolean;
}

export interface MeterEventRecord {
  readonly identifier: string;
  readonly eventName: string;
  readonly stripeCustomerId: string;
  readonly value: number;
  readonly timestamp: number;
}

/** How the fake fails while down: a 500 `api_error`, a destroyed socket, or no answer at all. */
export type DownMode = "500" | "reset" | "hang";

export interface FailOptions {
  /** Status to answer (default 500); 429 answers `rate_limit`. */
  readonly status?: number;
  /** A raw body instead of Stripe's error JSON (e.g. garbage, or a wrong shape with status 200). */
  readonly rawBody?: string;
  /** Process the request first (state changes, idempotency stored), then destroy the socket. */
  readonly afterProcessing?: boolean;
  /** Only requests whose path starts with this count. */
  readonly pathPrefix?: string;
}

interface PendingFailure extends FailOptions {
  remaining: number;
}

class FakeError extends Error {
  readonly status: number;
  readonly body: JsonObject;
  /** Validation failures are not stored under the idempotency key (Stripe saves only executed requests). */
  readonly storable: boolean;
  constructor(status: number, type: string, message: string, extra: JsonObject = {}, storable = true) {
    super(message);
    this.status = status;
    this.body = { error: { type, message, ...extra } };
    this.storable = storable;
  }
}

const missing = (what: string, id: string): FakeError =>
  new FakeError(404, "invalid_request_error", `No such ${what}: '${id}'`, { code: "resource_missing", param: "id" });

const invalid = (message: string, extra: JsonObject = {}): FakeError =>
  new FakeError(400, "invalid_request_error", message, extra, false);

function rand(n = 14): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(n);
  let s = "";
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/** The state behind the fake, exposed so tests can arrange and inspect it. */
export class StripeFakeState {
  readonly customers = new Map<string, JsonObject>();
  readonly deletedCustomers = new Set<string>();
  readonly subscriptions = new Map<string, JsonObject>();
  readonly invoices = new Map<string, JsonObject>();
  readonly checkoutSessions = new Map<string, JsonObject>();
  readonly portalSessions: JsonObject[] = [];
  readonly prices = new Map<string, FakePrice>();
  /** Accepted meter events, one per identifier (a repeat identifier is not counted again). */
  readonly meterEvents = new Map<string, MeterEventRecord>();
  /** Every meter event POST accepted, duplicates included. */
  meterEventPosts = 0;
  /** What a checkout session sells (Stripe exposes it through a sub-resource, not on the session). */
  readonly checkoutDetails = new Map<
    string,
    { lineItems: { price: string; quantity: number }[]; subscriptionMetadata: Record<string, string> }
  >();
  /** Breaks ties between objects created in the same second, for newest-first lists. */
  readonly creationOrder = new WeakMap<object, number>();
  private seq = 0;
  private readonly now: () => number;

  constructor(now: () => number) {
    this.now = now;
  }

  /** `created` for a new object; lists break ties within a second by creation order. */
  nextCreated(): number {
    return this.now();
  }

  order(): number {
    return ++this.seq;
  }

  clock(): number {
    return this.now();
  }

  newId(prefix: string): string {
    return `${prefix}_${rand()}`;
  }

  priceObject(priceId: string): JsonObject {
    const p = this.prices.get(priceId);
    if (p === undefined) throw missing("price", priceId);
    return {
      id: p.id,
      object: "price",
      active: true,
      billing_scheme: "per_unit",
      created: 1_700_000_000,
      currency: p.currency,
      livemode: false,
      lookup_key: null,
      metadata: {},
      nickname: null,
      product: `prod_${p.id.replace(/^price_/, "")}`,
      recurring: {
        interval: p.interval,
        interval_count: 1,
        meter: null,
        trial_period_days: null,
        usage_type: "licensed",
      },
      tax_behavior: "unspecified",
      tiers_mode: null,
      transform_quantity: null,
      type: "recurring",
      unit_amount: p.unitAmount,
      unit_amount_decimal: p.unitAmount === null ? null : String(p.unitAmount),
    };
  }

  /** Creates a Stripe customer directly (as if created in the dashboard). */
  putCustomer(
    input: { id?: string; email?: string; name?: string; metadata?: Record<string, string> } = {},
  ): JsonObject {
    const id = input.id ?? this.newId("cus");
    const customer: JsonObject = {
      id,
      object: "customer",
      address: null,
      balance: 0,
      created: this.nextCreated(),
      currency: null,
      default_source: null,
      delinquent: false,
      description: null,
      email: input.email ?? null,
      invoice_prefix: rand(8).toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata: input.metadata ?? {},
      name: input.name ?? null,
      phone: null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: "none",
      test_clock: null,
    };
    this.customers.set(id, customer);
    this.deletedCustomers.delete(id);
    return customer;
  }

  /**
   * Creates or replaces a subscription, Stripe-shaped; the period lives on the item.
   * Unknown prices are allowed only when registered (`fake.state.prices`), like Stripe.
   */
  putSubscription(input: {
    id?: string;
    customer: string;
    price: string;
    status?: string;
    currentPeriodStart?: number;
    currentPeriodEnd?: number;
    cancelAtPeriodEnd?: boolean;
    created?: number;
    metadata?: Record<string, string>;
    latestInvoice?: string | null;
    canceledAt?: number | null;
  }): JsonObject {
    const id = input.id ?? this.newId("sub");
    const now = this.clock();
    const price = this.priceObject(input.price);
    const start = input.currentPeriodStart ?? now;
    const interval = this.prices.get(input.price)?.interval ?? "month";
    const end = input.currentPeriodEnd ?? start + periodSeconds(interval);
    const created = input.created ?? this.subscriptions.get(id)?.created ?? now;
    const status = input.status ?? "active";
    const sub: JsonObject = {
      id,
      object: "subscription",
      application: null,
      automatic_tax: { enabled: false, liability: null },
      billing_cycle_anchor: start,
      cancel_at: null,
      cancel_at_period_end: input.cancelAtPeriodEnd ?? false,
      canceled_at: input.canceledAt ?? (status === "canceled" ? now : null),
      cancellation_details: { comment: null, feedback: null, reason: null },
      collection_method: "charge_automatically",
      created: created as number,
      currency: price.currency as string,
      customer: input.customer,
      days_until_due: null,
      default_payment_method: null,
      description: null,
      discounts: [],
      ended_at: status === "canceled" ? now : null,
      items: {
        object: "list",
        data: [
          {
            id: `si_${rand()}`,
            object: "subscription_item",
            created: created as number,
            current_period_end: end,
            current_period_start: start,
            discounts: [],
            metadata: {},
            price,
            quantity: 1,
            subscription: id,
            tax_rates: [],
          },
        ],
        has_more: false,
        total_count: 1,
        url: `/v1/subscription_items?subscription=${id}`,
      },
      latest_invoice: input.latestInvoice ?? null,
      livemode: false,
      metadata: input.metadata ?? {},
      pause_collection: null,
      start_date: created as number,
      status,
      test_clock: null,
      trial_end: null,
      trial_start: null,
    };
    this.subscriptions.set(id, sub);
    this.creationOrder.set(sub, this.order());
    return sub;
  }

  /** Changes fields of a stored subscription (Stripe names, e.g. {status: "past_due"}). */
  updateSubscription(id: string, patch: JsonObject): JsonObject {
    const sub = this.subscriptions.get(id);
    if (sub === undefined) throw new Error(`stripe fake: no subscription ${id}`);
    Object.assign(sub, patch);
    return sub;
  }

  putInvoice(input: {
    id?: string;
    customer: string;
    subscription?: string | null;
    status?: "draft" | "open" | "paid" | "uncollectible" | "void";
    amountDue?: number;
    amountPaid?: number;
    currency?: string;
    created?: number;
    number?: string | null;
    periodStart?: number;
    periodEnd?: number;
  }): JsonObject {
    const id = input.id ?? this.newId("in");
    const now = this.clock();
    const status = input.status ?? "paid";
    const amountDue = input.amountDue ?? 2900;
    const amountPaid = input.amountPaid ?? (status === "paid" ? amountDue : 0);
    const subscription = input.subscription ?? null;
    const invoice: JsonObject = {
      id,
      object: "invoice",
      account_country: "US",
      account_name: "VLA Robotics",
      amount_due: amountDue,
      amount_overpaid: 0,
      amount_paid: amountPaid,
      amount_remaining: amountDue - amountPaid,
      attempt_count: status === "draft" ? 0 : 1,
      attempted: status !== "draft",
      billing_reason: subscription === null ? "manual" : "subscription_cycle",
      collection_method: "charge_automatically",
      created: input.created ?? now,
      currency: input.currency ?? "usd",
      customer: input.customer,
      customer_email: null,
      hosted_invoice_url: status === "draft" ? null : `https://invoice.stripe.com/i/acct_fake/test_${rand(24)}`,
      invoice_pdf: status === "draft" ? null : `https://pay.stripe.com/invoice/acct_fake/test_${rand(24)}/pdf`,
      livemode: false,
      metadata: {},
      number:
        input.number === undefined
          ? status === "draft"
            ? null
            : `FAKE-${String(this.order()).padStart(4, "0")}`
          : input.number,
      parent:
        subscription === null
          ? null
          : {
              quote_details: null,
              subscription_details: { metadata: {}, subscription },
              type: "subscription_details",
            },
      period_end: input.periodEnd ?? now,
      period_start: input.periodStart ?? now,
      status,
      subtotal: amountDue,
      total: amountDue,
    };
    this.invoices.set(id, invoice);
    this.creationOrder.set(invoice, this.order());
    return invoice;
  }

  /** Sum of accepted (de-duplicated) meter event values for a customer and event name. */
  meterTotal(stripeCustomerId: string, eventName: string): number {
    let total = 0;
    for (const e of this.meterEvents.values()) {
      if (e.stripeCustomerId === stripeCustomerId && e.eventName === eventName) total += e.value;
    }
    return total;
  }
}

function periodSeconds(interval: FakePrice["interval"]): number {
  switch (interval) {
    case "day":
      return 86_400;
    case "week":
      return 7 * 86_400;
    case "month":
      return 30 * 86_400;
    case "year":
      return 365 * 86_400;
  }
}

export interface StripeFake {
  readonly url: string;
  readonly port: number;
  readonly secretKey: string;
  readonly webhookSecret: string;
  readonly apiVersion: string;
  readonly state: StripeFakeState;
  /** Every request received, in order (controls included). */
  readonly requests: RecordedRequest[];
  /** `config.billing` pointing at this fake (tiers: FAKE_PRICE_PRO[+yearly] / FAKE_PRICE_ENTERPRISE). */
  billingConfig(overrides?: Partial<Config["billing"]>): Config["billing"];
  /** Down: every request fails (default a 500 api_error). */
  setDown(down: boolean | DownMode): void;
  /** The next n matching requests fail (500 api_error unless told otherwise). */
  failNext(n: number, statusOrOptions?: number | FailOptions): void;
  /** Completes a checkout session as the customer paying would: an active subscription for its price. */
  completeCheckout(sessionId: string, input?: { status?: string }): JsonObject;
  /** Requests to a path (method optional), for assertions. */
  requestsTo(path: string, method?: string): RecordedRequest[];
  close(): Promise<void>;
}

interface StoredIdempotent {
  readonly method: string;
  readonly path: string;
  readonly rawBody: string;
  readonly status: number;
  readonly body: string;
}

export async function startStripeFake(options: StripeFakeOptions = {}): Promise<StripeFake> {
  const secretKey = options.secretKey ?? FAKE_SECRET_KEY;
  const webhookSecret = options.webhookSecret ?? FAKE_WEBHOOK_SECRET;
  const apiVersion = options.apiVersion ?? Stripe.API_VERSION;
  const state = new StripeFakeState(options.now ?? (() => Math.floor(Date.now() / 1000)));
  for (const p of [
    { id: FAKE_PRICE_PRO, unitAmount: 2900, currency: "usd", interval: "month" },
    { id: FAKE_PRICE_PRO_YEARLY, unitAmount: 29_000, currency: "usd", interval: "year" },
    { id: FAKE_PRICE_ENTERPRISE, unitAmount: 49_900, currency: "usd", interval: "month" },
    ...(options.prices ?? []),
  ] satisfies FakePrice[]) {
    state.prices.set(p.id, p);
  }
  const requests: RecordedRequest[] = [];
  const idempotency = new Map<string, StoredIdempotent>();
  const sockets = new Set<Socket>();
  let down: DownMode | false = false;
  const failures: PendingFailure[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      handle(req, res, Buffer.concat(chunks).toString("utf8"));
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  function handle(req: IncomingMessage, res: ServerResponse, rawBody: string): undefined {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const method = (req.method ?? "GET").toUpperCase();
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : v;
    const idempotencyKey = headers["idempotency-key"];
    let body: JsonObject = {};
    let query: JsonObject = {};
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      query,
      body,
      rawBody,
      headers,
      idempotencyKey,
      status: 0,
      replayed: false,
    };
    requests.push(record);

    const send = (status: number, payload: string, extra: Record<string, string> = {}): undefined => {
      record.status = status;
      res.writeHead(status, {
        "content-type": "application/json",
        "request-id": `req_${rand()}`,
        "stripe-version": apiVersion,
        ...(idempotencyKey === undefined ? {} : { "idempotency-key": idempotencyKey }),
        ...extra,
      });
      res.end(payload);
    };
    const destroy = (): undefined => {
      record.status = 0;
      req.socket.destroy();
    };

    if (down === "reset") return destroy();
    if (down === "hang") return;
    if (down === "500") {
      return send(500, JSON.stringify(apiError()));
    }
    const failure = failures.find(
      (f) => f.remaining > 0 && (f.pathPrefix === undefined || url.pathname.startsWith(f.pathPrefix)),
    );
    if (failure !== undefined) failure.remaining--;
    if (failure !== undefined && !failure.afterProcessing) {
      const status = failure.status ?? 500;
      if (failure.rawBody !== undefined) return send(status, failure.rawBody);
      if (status === 429) {
        return send(
          429,
          JSON.stringify({
            error: {
              type: "invalid_request_error",
              code: "rate_limit",
              message: "Too many requests hit the API too quickly.",
            },
          }),
        );
      }
      return send(status, JSON.stringify(apiError()));
    }

    try {
      checkHeaders(method, headers);
      query = parseForm(url.search.slice(1));
      body = method === "POST" ? parseForm(rawBody) : {};
      (record as { query: JsonObject }).query = query;
      (record as { body: JsonObject }).body = body;
      if (method === "DELETE" && rawBody !== "")
        throw invalid("DELETE requests take their parameters in the query string");
    } catch (err) {
      const e = asFakeError(err);
      return send(e.status, JSON.stringify(e.body));
    }

    if (method === "POST" && idempotencyKey !== undefined) {
      const stored = idempotency.get(idempotencyKey);
      if (stored !== undefined) {
        if (stored.method !== method || stored.path !== url.pathname || stored.rawBody !== rawBody) {
          return send(
            400,
            JSON.stringify({
              error: {
                type: "idempotency_error",
                message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
              },
            }),
          );
        }
        record.replayed = true;
        if (failure?.afterProcessing) return destroy();
        return send(stored.status, stored.body, { "idempotent-replayed": "true" });
      }
    }

    let status: number;
    let payload: string;
    let storable = true;
    try {
      const out = route(method, url.pathname, query, body);
      status = 200;
      payload = JSON.stringify(out);
    } catch (err) {
      const e = asFakeError(err);
      status = e.status;
      payload = JSON.stringify(e.body);
      storable = e.storable;
    }
    if (method === "POST" && idempotencyKey !== undefined && storable && status < 500) {
      idempotency.set(idempotencyKey, { method, path: url.pathname, rawBody, status, body: payload });
    }
    if (failure?.afterProcessing) return destroy();
    send(status, payload);
  }

  function checkHeaders(method: string, headers: Record<string, string | undefined>): void {
    const auth = headers.authorization;
    if (auth === undefined) {
      throw new FakeError(
        401,
        "invalid_request_error",
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        {},
        false,
      );
    }
    const m = /^Bearer (\S+)$/.exec(auth);
    if (m === null || m[1] !== secretKey) {
      const given = m?.[1] ?? "";
      throw new FakeError(
        401,
        "invalid_request_error",
        `Invalid API Key provided: ${given.slice(0, 8)}${"*".repeat(Math.max(0, given.length - 12))}${given.slice(-4)}`,
        {},
        false,
      );
    }
    const version = headers["stripe-version"];
    if (version !== apiVersion) {
      throw invalid(`Invalid Stripe API version: ${version ?? "(none)"}; this fake only speaks ${apiVersion}.`);
    }
    if (method === "POST") {
      const type = headers["content-type"] ?? "";
      if (!type.startsWith("application/x-www-form-urlencoded")) {
        throw invalid(`Invalid request: POST bodies must be application/x-www-form-urlencoded, got '${type}'.`);
      }
      const key = headers["idempotency-key"];
      if (key === undefined || key === "") throw invalid("stripe fake: every POST must carry an Idempotency-Key.");
      if (key.length > 255) throw invalid("Idempotency-Key must be at most 255 characters.");
    }
  }

  function route(method: string, path: string, query: JsonObject, body: JsonObject): Json {
    const parts = path.split("/").filter((p) => p !== "");
    if (parts[0] !== "v1") throw unrecognized(method, path);
    const [, resource, id, extra] = parts;
    if (parts.length > 4) throw unrecognized(method, path);
    const key = `${method} ${resource}${id === undefined ? "" : "/:id"}${extra === undefined ? "" : "/:extra"}`;
    switch (key) {
      case "POST customers":
        return createCustomer(body);
      case "GET customers/:id":
        return retrieveCustomer(need(id));
      case "DELETE customers/:id":
        return deleteCustomer(need(id));
      case "POST checkout/:id":
        if (id === "sessions") return createCheckoutSession(body);
        break;
      case "GET checkout/:id/:extra":
        if (id === "sessions") return checkoutSession(need(extra));
        break;
      case "POST billing_portal/:id":
        if (id === "sessions") return createPortalSession(body);
        break;
      case "GET subscriptions":
        return listSubscriptions(query);
      case "GET subscriptions/:id":
        return subscription(need(id));
      case "DELETE subscriptions/:id":
        return cancelSubscription(need(id), query);
      case "GET invoices":
        return listInvoices(query);
      case "GET invoices/:id":
        return invoice(need(id));
      case "POST billing/:id":
        if (id === "meter_events") return createMeterEvent(body);
        break;
    }
    throw unrecognized(method, path);
  }

  function createCustomer(body: JsonObject): Json {
    allowOnly(body, ["email", "name", "metadata", "description", "expand"]);
    const c = state.putCustomer({
      ...(typeof body.email === "string" ? { email: body.email } : {}),
      ...(typeof body.name === "string" ? { name: body.name } : {}),
      metadata: metadataParam(body.metadata, "metadata"),
    });
    return c;
  }

  function retrieveCustomer(id: string): Json {
    if (state.deletedCustomers.has(id)) return { id, object: "customer", deleted: true };
    const c = state.customers.get(id);
    if (c === undefined) throw missing("customer", id);
    return c;
  }

  function deleteCustomer(id: string): Json {
    if (!state.customers.has(id)) throw missing("customer", id);
    state.customers.delete(id);
    state.deletedCustomers.add(id);
    // Stripe cancels the customer's subscriptions immediately when deleting it.
    for (const s of state.subscriptions.values()) {
      if (s.customer === id && s.status !== "canceled")
        Object.assign(s, { status: "canceled", canceled_at: now(), ended_at: now() });
    }
    return { id, object: "customer", deleted: true };
  }

  function createCheckoutSession(body: JsonObject): Json {
    allowOnly(body, [
      "mode",
      "customer",
      "client_reference_id",
      "line_items",
      "success_url",
      "cancel_url",
      "metadata",
      "subscription_data",
      "allow_promotion_codes",
      "automatic_tax",
      "billing_address_collection",
      "customer_update",
      "expand",
    ]);
    const mode = requireString(body, "mode");
    if (!["payment", "setup", "subscription"].includes(mode)) throw invalid(`Invalid mode: ${mode}`, { param: "mode" });
    const successUrl = requireString(body, "success_url");
    checkUrl(successUrl, "success_url");
    if (body.cancel_url !== undefined) checkUrl(requireString(body, "cancel_url"), "cancel_url");
    const customer = body.customer;
    if (customer !== undefined) {
      if (typeof customer !== "string" || !state.customers.has(customer)) {
        throw new FakeError(400, "invalid_request_error", `No such customer: '${String(customer)}'`, {
          code: "resource_missing",
          param: "customer",
        });
      }
    }
    const items = body.line_items;
    if (!Array.isArray(items) || items.length === 0) {
      throw invalid("Missing required param: line_items.", { code: "parameter_missing", param: "line_items" });
    }
    const lineItems: { price: string; quantity: number }[] = [];
    for (const [i, item] of items.entries()) {
      if (item === null || typeof item !== "object" || Array.isArray(item)) throw invalid(`Invalid line_items[${i}]`);
      allowOnly(item, ["price", "quantity"], `line_items[${i}]`);
      const price = item.price;
      if (typeof price !== "string" || !state.prices.has(price)) {
        throw new FakeError(400, "invalid_request_error", `No such price: '${String(price)}'`, {
          code: "resource_missing",
          param: `line_items[${i}][price]`,
        });
      }
      const quantity = Number(item.quantity ?? "1");
      if (!Number.isInteger(quantity) || quantity < 1)
        throw invalid("Invalid quantity", { param: `line_items[${i}][quantity]` });
      lineItems.push({ price, quantity });
    }
    const clientRef = body.client_reference_id;
    if (clientRef !== undefined && (typeof clientRef !== "string" || !/^[A-Za-z0-9_-]{1,200}$/.test(clientRef))) {
      throw invalid("Invalid client_reference_id", { param: "client_reference_id" });
    }
    const subscriptionData = body.subscription_data;
    let subscriptionMetadata: Record<string, string> = {};
    if (subscriptionData !== undefined) {
      if (mode !== "subscription") throw invalid("subscription_data is only allowed in subscription mode.");
      if (subscriptionData === null || typeof subscriptionData !== "object" || Array.isArray(subscriptionData)) {
        throw invalid("Invalid subscription_data");
      }
      allowOnly(subscriptionData, ["metadata", "trial_period_days", "description"], "subscription_data");
      subscriptionMetadata = metadataParam(subscriptionData.metadata, "subscription_data[metadata]");
    }
    const id = `cs_test_${rand(58)}`;
    const firstPrice = lineItems[0]?.price ?? "";
    const session: JsonObject = {
      id,
      object: "checkout.session",
      amount_subtotal: state.prices.get(firstPrice)?.unitAmount ?? null,
      amount_total: state.prices.get(firstPrice)?.unitAmount ?? null,
      cancel_url: typeof body.cancel_url === "string" ? body.cancel_url : null,
      client_reference_id: typeof clientRef === "string" ? clientRef : null,
      created: now(),
      currency: state.prices.get(firstPrice)?.currency ?? "usd",
      customer: typeof customer === "string" ? customer : null,
      expires_at: now() + 86_400,
      livemode: false,
      metadata: metadataParam(body.metadata, "metadata"),
      mode,
      payment_status: "unpaid",
      status: "open",
      subscription: null,
      success_url: successUrl,
      ui_mode: "hosted",
      url: `https://checkout.stripe.com/c/pay/${id}#fidkdWxOYHwnPyd1blpxYHZxWjA0`,
    };
    state.checkoutSessions.set(id, session);
    state.checkoutDetails.set(id, { lineItems, subscriptionMetadata });
    return session;
  }

  function checkoutSession(id: string): Json {
    const s = state.checkoutSessions.get(id);
    if (s === undefined) throw missing("checkout.session", id);
    return s;
  }

  function createPortalSession(body: JsonObject): Json {
    allowOnly(body, ["customer", "return_url", "configuration", "locale", "flow_data", "expand"]);
    const customer = requireString(body, "customer");
    if (!state.customers.has(customer)) {
      throw new FakeError(400, "invalid_request_error", `No such customer: '${customer}'`, {
        code: "resource_missing",
        param: "customer",
      });
    }
    const returnUrl = body.return_url === undefined ? null : requireString(body, "return_url");
    if (returnUrl !== null) checkUrl(returnUrl, "return_url");
    const id = `bps_${rand(24)}`;
    const session: JsonObject = {
      id,
      object: "billing_portal.session",
      configuration: `bpc_${rand(24)}`,
      created: now(),
      customer,
      flow: null,
      livemode: false,
      locale: null,
      on_behalf_of: null,
      return_url: returnUrl,
      url: `https://billing.stripe.com/p/session/test_${rand(40)}`,
    };
    state.portalSessions.push(session);
    return session;
  }

  function subscription(id: string): Json {
    const s = state.subscriptions.get(id);
    if (s === undefined) throw missing("subscription", id);
    return s;
  }

  function listSubscriptions(query: JsonObject): Json {
    allowOnly(query, ["customer", "status", "limit", "starting_after", "ending_before", "price", "expand"]);
    const status = typeof query.status === "string" ? query.status : undefined;
    let all = [...state.subscriptions.values()].filter(
      (s) => query.customer === undefined || s.customer === query.customer,
    );
    if (status === undefined) all = all.filter((s) => s.status !== "canceled");
    else if (status !== "all") all = all.filter((s) => s.status === status);
    return page(all, query, "/v1/subscriptions");
  }

  function cancelSubscription(id: string, query: JsonObject): Json {
    allowOnly(query, ["invoice_now", "prorate", "cancellation_details", "expand"]);
    const s = state.subscriptions.get(id);
    // Stripe answers 404 for a subscription that is already canceled, though it can still be retrieved.
    if (s === undefined || s.status === "canceled" || s.status === "incomplete_expired")
      throw missing("subscription", id);
    Object.assign(s, { status: "canceled", canceled_at: now(), ended_at: now() });
    return s;
  }

  function invoice(id: string): Json {
    const i = state.invoices.get(id);
    if (i === undefined) throw missing("invoice", id);
    return i;
  }

  function listInvoices(query: JsonObject): Json {
    allowOnly(query, ["customer", "subscription", "status", "limit", "starting_after", "ending_before", "expand"]);
    const all = [...state.invoices.values()].filter(
      (i) =>
        (query.customer === undefined || i.customer === query.customer) &&
        (query.status === undefined || i.status === query.status),
    );
    return page(all, query, "/v1/invoices");
  }

  function createMeterEvent(body: JsonObject): Json {
    allowOnly(body, ["event_name", "payload", "identifier", "timestamp"]);
    const eventName = requireString(body, "event_name");
    const payload = body.payload;
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      throw invalid("Missing required param: payload.", { code: "parameter_missing", param: "payload" });
    }
    const customer = payload.stripe_customer_id;
    if (typeof customer !== "string" || !state.customers.has(customer)) {
      throw new FakeError(400, "invalid_request_error", `No such customer: '${String(customer)}'`, {
        code: "resource_missing",
        param: "payload[stripe_customer_id]",
      });
    }
    const valueText = payload.value;
    // Meter values are sent as strings of a whole number (decimals are a separate feature).
    if (typeof valueText !== "string" || !/^[0-9]{1,15}$/.test(valueText)) {
      throw invalid("payload[value] must be a whole number string.", { param: "payload[value]" });
    }
    const identifier = body.identifier === undefined ? `fake_${rand(20)}` : requireString(body, "identifier");
    if (identifier.length > 100) throw invalid("identifier is too long (max 100)", { param: "identifier" });
    const timestamp = body.timestamp === undefined ? now() : Number(requireString(body, "timestamp"));
    if (!Number.isInteger(timestamp)) throw invalid("Invalid timestamp", { param: "timestamp" });
    // Stripe accepts events up to 35 days in the past and 5 minutes in the future.
    if (timestamp < now() - 35 * 86_400 || timestamp > now() + 300) {
      throw invalid("timestamp must be within the past 35 days and at most 5 minutes in the future.", {
        param: "timestamp",
      });
    }
    state.meterEventPosts++;
    if (!state.meterEvents.has(identifier)) {
      state.meterEvents.set(identifier, {
        identifier,
        eventName,
        stripeCustomerId: customer,
        value: Number(valueText),
        timestamp,
      });
    }
    return {
      object: "billing.meter_event",
      created: now(),
      event_name: eventName,
      identifier,
      livemode: false,
      payload: { stripe_customer_id: customer, value: valueText },
      timestamp,
    };
  }

  function page(all: JsonObject[], query: JsonObject, url: string): Json {
    const sorted = all.sort(
      (a, b) =>
        (b.created as number) - (a.created as number) ||
        (state.creationOrder.get(b) ?? 0) - (state.creationOrder.get(a) ?? 0),
    );
    const limit = query.limit === undefined ? 10 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw invalid("Invalid integer: limit must be between 1 and 100", { param: "limit" });
    }
    let start = 0;
    if (typeof query.starting_after === "string") {
      const i = sorted.findIndex((o) => o.id === query.starting_after);
      if (i === -1) {
        throw new FakeError(400, "invalid_request_error", `No such object: '${query.starting_after}'`, {
          code: "resource_missing",
          param: "starting_after",
        });
      }
      start = i + 1;
    }
    const data = sorted.slice(start, start + limit);
    return { object: "list", data, has_more: start + limit < sorted.length, url };
  }

  function now(): number {
    return state.clock();
  }

  const listening = await new Promise<AddressInfo>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address() as AddressInfo));
  });
  const port = listening.port;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    port,
    secretKey,
    webhookSecret,
    apiVersion,
    state,
    requests,
    billingConfig(overrides = {}) {
      return {
        stripeSecretKey: secretKey,
        webhookSecret,
        prices: { pro: [FAKE_PRICE_PRO, FAKE_PRICE_PRO_YEARLY], enterprise: [FAKE_PRICE_ENTERPRISE] },
        apiBase: url,
        timeoutMs: 2_000,
        maxNetworkRetries: 0,
        graceDays: 7,
        redirectOrigins: ["http://localhost:3000"],
        meterEventRequests: "vla_overage_requests",
        meterEventStreamSeconds: "vla_overage_stream_seconds",
        jobIntervalMs: 60_000,
        invoiceCacheMs: 0,
        ...overrides,
      };
    },
    setDown(d) {
      down = d === true ? "500" : d === false ? false : d;
    },
    failNext(n, statusOrOptions) {
      const opts: FailOptions =
        typeof statusOrOptions === "number" ? { status: statusOrOptions } : (statusOrOptions ?? {});
      failures.push({ ...opts, remaining: n });
    },
    completeCheckout(sessionId, input = {}) {
      const session = state.checkoutSessions.get(sessionId);
      if (session === undefined) throw new Error(`stripe fake: no checkout session ${sessionId}`);
      if (session.status !== "open")
        throw new Error(`stripe fake: checkout session ${sessionId} is ${String(session.status)}`);
      let customer = session.customer;
      if (typeof customer !== "string") {
        customer = state.putCustomer({}).id as string;
        session.customer = customer;
      }
      const details = state.checkoutDetails.get(sessionId);
      const price = details?.lineItems[0]?.price;
      if (price === undefined) throw new Error(`stripe fake: checkout session ${sessionId} has no line item`);
      const sub = state.putSubscription({
        customer,
        price,
        status: input.status ?? "active",
        metadata: details?.subscriptionMetadata ?? {},
      });
      const inv = state.putInvoice({
        customer,
        subscription: sub.id as string,
        amountDue: state.prices.get(price)?.unitAmount ?? 0,
        status: input.status === undefined || input.status === "active" ? "paid" : "open",
      });
      sub.latest_invoice = inv.id as string;
      Object.assign(session, { status: "complete", payment_status: "paid", subscription: sub.id });
      return sub;
    },
    requestsTo(path, method) {
      return requests.filter((r) => r.path === path && (method === undefined || r.method === method));
    },
    async close() {
      down = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function apiError(): JsonObject {
  return { error: { type: "api_error", message: "An unknown error occurred (stripe fake is down)." } };
}

function unrecognized(method: string, path: string): FakeError {
  return new FakeError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${path}).`, {}, false);
}

function need(id: string | undefined): string {
  if (id === undefined) throw invalid("missing id");
  return id;
}

function asFakeError(err: unknown): FakeError {
  if (err instanceof FakeError) return err;
  return new FakeError(
    500,
    "api_error",
    `stripe fake bug: ${err instanceof Error ? err.message : String(err)}`,
    {},
    false,
  );
}

function allowOnly(obj: JsonObject, allowed: readonly string[], prefix?: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      const name = prefix === undefined ? k : `${prefix}[${k}]`;
      throw invalid(`Received unknown parameter: ${name}`, { code: "parameter_unknown", param: name });
    }
  }
}

function requireString(obj: JsonObject, field: string): string {
  const v = obj[field];
  if (v === undefined) throw invalid(`Missing required param: ${field}.`, { code: "parameter_missing", param: field });
  if (typeof v !== "string") throw invalid(`Invalid ${field}: must be a string`, { param: field });
  return v;
}

function checkUrl(v: string, param: string): void {
  try {
    const u = new URL(v);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw invalid(`Not a valid URL`, { code: "url_invalid", param });
  }
}

function metadataParam(v: Json | undefined, param: string): Record<string, string> {
  if (v === undefined || v === "") return {};
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw invalid(`Invalid ${param}`, { param });
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "string") throw invalid(`Invalid ${param}[${k}]: must be a string`, { param: `${param}[${k}]` });
    if (k.length > 40) throw invalid("Metadata keys can be at most 40 characters", { param });
    if (val.length > 500) throw invalid("Metadata values can be at most 500 characters", { param });
    if (val !== "") out[k] = val;
  }
  return out;
}

/**
 * Parses an `application/x-www-form-urlencoded` body with Stripe's bracket notation
 * (`metadata[customer_id]=x`, `line_items[0][price]=y`) into nested objects; objects whose keys
 * are all indices become arrays. Every leaf stays a string, as on the wire.
 */
export function parseForm(text: string): JsonObject {
  const root: JsonObject = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
    if (m === null) throw invalid(`Invalid parameter name: ${key}`);
    const path = [m[1] as string, ...[...(m[2] ?? "").matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1] as string)];
    let node: JsonObject = root;
    for (const [i, seg] of path.entries()) {
      if (seg === "") throw invalid(`Invalid parameter name (empty brackets): ${key}`);
      if (i === path.length - 1) {
        if (node[seg] !== undefined) throw invalid(`Parameter given twice: ${key}`);
        node[seg] = value;
      } else {
        const next = node[seg];
        if (next === undefined) {
          const created: JsonObject = {};
          node[seg] = created;
          node = created;
        } else if (typeof next === "object" && next !== null && !Array.isArray(next)) {
          node = next;
        } else {
          throw invalid(`Parameter is both a value and an object: ${key}`);
        }
      }
    }
  }
  return arrayify(root) as JsonObject;
}

function arrayify(v: Json): Json {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(arrayify);
  const keys = Object.keys(v);
  const out: JsonObject = {};
  for (const k of keys) out[k] = arrayify(v[k] as Json);
  if (keys.length > 0 && keys.every((k) => /^(0|[1-9][0-9]*)$/.test(k))) {
    const idx = keys.map(Number).sort((a, b) => a - b);
    if (idx.every((n, i) => n === i)) return idx.map((n) => out[String(n)] as Json);
  }
  return out;
}

export interface SignedEvent {
  /** The exact bytes to POST. */
  readonly body: Buffer;
  readonly payload: string;
  readonly signature: string;
  readonly event: JsonObject;
}

/**
 * A Stripe webhook event for `object`, signed like Stripe signs deliveries. `timestamp` (seconds)
 * overrides the signing time, e.g. 301 s ago for a stale signature.
 */
export function signedEvent(
  secretOrFake: string | { readonly webhookSecret: string },
  input: {
    type: string;
    object: JsonObject;
    id?: string;
    created?: number;
    timestamp?: number;
    previousAttributes?: JsonObject;
  },
): SignedEvent {
  const secret = typeof secretOrFake === "string" ? secretOrFake : secretOrFake.webhookSecret;
  const created = input.created ?? Math.floor(Date.now() / 1000);
  const event: JsonObject = {
    id: input.id ?? `evt_${rand(24)}`,
    object: "event",
    api_version: Stripe.API_VERSION,
    created,
    data: {
      object: input.object,
      ...(input.previousAttributes === undefined ? {} : { previous_attributes: input.previousAttributes }),
    },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: input.type,
  };
  const payload = JSON.stringify(event, null, 2);
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload,
    secret,
    ...(input.timestamp === undefined ? {} : { timestamp: input.timestamp }),
  });
  return { body: Buffer.from(payload, "utf8"), payload, signature, event };
}
