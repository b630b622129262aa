import { eq } from "drizzle-orm";
import { expect } from "vitest";
import { customers, stripeEvents } from "../../src/platform/db/schema/index.ts";
import { bearer, signUp } from "../auth/helpers.ts";
import type { TestContext } from "../helpers/app.ts";
import {
  FAKE_PRICE_PRO,
  type JsonObject,
  type SignedEvent,
  type StripeFake,
  signedEvent,
} from "../helpers/stripe-fake.ts";

type Res = Awaited<ReturnType<TestContext["app"]["inject"]>>;

/** Posts a signed event the way Stripe does (raw JSON bytes, Stripe-Signature header). */
export function deliver(ctx: TestContext, ev: SignedEvent, signature: string | null = ev.signature): Promise<Res> {
  return ctx.app.inject({
    method: "POST",
    url: "/v1/billing/webhook",
    headers: {
      "content-type": "application/json; charset=utf-8",
      ...(signature === null ? {} : { "stripe-signature": signature }),
    },
    payload: ev.body,
  });
}

/** Delivers and expects a 200; returns the outcome. */
export async function deliverOk(ctx: TestContext, ev: SignedEvent): Promise<string> {
  const res = await deliver(ctx, ev);
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { outcome: string }).outcome;
}

export function subEvent(fake: StripeFake, type: string, subId: string, id?: string): SignedEvent {
  const object = structuredClone(fake.state.subscriptions.get(subId)) as JsonObject;
  return signedEvent(fake, { type, object, ...(id === undefined ? {} : { id }) });
}

export function invoiceEvent(fake: StripeFake, type: string, invoiceId: string): SignedEvent {
  const object = structuredClone(fake.state.invoices.get(invoiceId)) as JsonObject;
  return signedEvent(fake, { type, object });
}

export async function customerRow(ctx: TestContext, id: string) {
  const rows = await ctx.database.db.select().from(customers).where(eq(customers.id, id));
  const row = rows[0];
  if (row === undefined) throw new Error(`no customer ${id}`);
  return row;
}

export async function eventRow(ctx: TestContext, id: string) {
  const rows = await ctx.database.db.select().from(stripeEvents).where(eq(stripeEvents.id, id));
  return rows[0];
}

export interface Subscribed {
  readonly customerId: string;
  readonly email: string;
  readonly access: string;
  readonly stripeCustomerId: string;
  readonly subId: string;
}

/**
 * A signed-up customer that went through checkout: our API creates the Stripe customer and the
 * session, the fake "pays", and Stripe's checkout.session.completed is delivered.
 */
export async function subscribe(
  ctx: TestContext & { fake: StripeFake },
  tag: string,
  tier: "pro" | "enterprise" = "pro",
): Promise<Subscribed> {
  const s = await signUp(ctx, tag);
  const res = await ctx.app.inject({
    method: "POST",
    url: "/v1/billing/checkout",
    headers: bearer(s.access),
    payload: { tier },
  });
  expect(res.statusCode, res.body).toBe(200);
  const sessionId = (res.json() as { session_id: string }).session_id;
  const sub = ctx.fake.completeCheckout(sessionId);
  const session = structuredClone(ctx.fake.state.checkoutSessions.get(sessionId)) as JsonObject;
  expect(await deliverOk(ctx, signedEvent(ctx.fake, { type: "checkout.session.completed", object: session }))).toBe(
    "applied",
  );
  return {
    customerId: s.customerId,
    email: s.email,
    access: s.access,
    stripeCustomerId: sub.customer as string,
    subId: sub.id as string,
  };
}

export { FAKE_PRICE_PRO };
