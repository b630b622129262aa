import { eq } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { customers } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, signUp } from "../auth/helpers.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";

let t: BillingTestContext;
beforeAll(async () => {
  t = await buildBillingApp();
});
afterAll(async () => {
  await t?.close();
});

it("an unknown starting_after is 400 invalid_request, not a Stripe outage (found by the fuzz tier)", async () => {
  const s = await signUp(t, "cursor");
  const cus = t.fake.state.putCustomer({});
  await t.database.db
    .update(customers)
    .set({ stripeCustomerId: cus.id as string })
    .where(eq(customers.id, s.customerId));
  const res = await t.app.inject({
    method: "GET",
    url: "/v1/billing/invoices?starting_after=in_nosuchinvoice",
    headers: bearer(s.access),
  });
  const body = expectProblem(res, 400, "invalid_request");
  expect(JSON.stringify(body.errors)).toContain("/starting_after");
});
