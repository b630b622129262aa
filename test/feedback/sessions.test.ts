import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/modules/auth/password.ts";
import { auditLog, feedback, users } from "../../src/platform/db/schema/index.ts";
import { type AuthContext, bearer, buildAuthApp, login, PASSWORD, signUp } from "../auth/helpers.ts";
import { seedInference } from "./helpers.ts";

/** Feedback from real user sessions: attribution, and what account deletion does to it. */
let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp({ env: { MODELS_WARM_UP: "false" } });
});
afterAll(async () => {
  await t?.close();
});

const rows = (customerId: string) => t.database.db.select().from(feedback).where(eq(feedback.customerId, customerId));

describe("feedback and account deletion", () => {
  it("records the session's user; a deleted member's feedback stays unattributed; the owner's deletion erases it", async () => {
    const owner = await signUp(t, "fb-owner");
    const memberEmail = `fb-member-${owner.userId.slice(0, 8)}@example.com`;
    await t.database.db.insert(users).values({
      customerId: owner.customerId,
      email: memberEmail,
      role: "member",
      passwordHash: await hashPassword(PASSWORD),
    });
    const member = (await login(t, memberEmail, PASSWORD)).json() as { access_token: string };
    // seedInference only needs the database and a clock.
    const id = await seedInference(
      { database: t.database, clock: { now: () => Date.now() } } as never,
      owner.customerId,
    );

    const send = (token: string, rating: number) =>
      t.app.inject({
        method: "POST",
        url: "/v1/feedback/success",
        headers: bearer(token),
        payload: { inference_id: id, rating },
      });
    const byMember = await send(member.access_token, 2);
    expect(byMember.statusCode, byMember.body).toBe(201);
    const memberId = (byMember.json() as { user_id: string }).user_id;
    expect(memberId).toMatch(/^[0-9a-f-]{36}$/);
    expect(memberId).not.toBe(owner.userId);
    const byOwner = await send(owner.access, 5);
    expect((byOwner.json() as { user_id: string; api_key_id: null }).user_id).toBe(owner.userId);

    // The member leaves: the customer keeps the feedback, without the member's id.
    const gone = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: bearer(member.access_token),
      payload: { password: PASSWORD },
    });
    expect(gone.statusCode, gone.body).toBe(204);
    expect((await rows(owner.customerId)).map((r) => r.userId).sort()).toEqual([null, owner.userId].sort());
    const [memberAudit] = await t.database.db.select().from(auditLog).where(eq(auditLog.actorUserId, memberId));
    expect(memberAudit?.details).toMatchObject({ deleted: { feedback_unattributed: 1 } });

    // The sole owner leaves: the customer and its feedback go, counted.
    const all = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: bearer(owner.access),
      payload: { password: PASSWORD },
    });
    expect(all.statusCode, all.body).toBe(204);
    expect(await rows(owner.customerId)).toHaveLength(0);
    const [ownerAudit] = await t.database.db.select().from(auditLog).where(eq(auditLog.actorUserId, owner.userId));
    expect(ownerAudit?.details).toMatchObject({ customer_deleted: true, deleted: { feedback: 2 } });
  });
});
