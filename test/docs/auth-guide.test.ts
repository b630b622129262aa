import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuthContext, buildAuthApp, PUBLIC_BASE } from "../auth/helpers.ts";
import { linkIn, type ReceivedMail } from "../helpers/smtp.ts";
import { GuideRunner, isCurl, readGuide } from "./guide-runner.ts";
import { type CurlRequest, expectedStatus } from "./shell-examples.ts";

/** docs/auth.md's flows, run top to bottom against a test app with a loopback SMTP server. */

const GUIDE = "docs/auth.md";
const guide = readGuide(GUIDE);

const SUBJECTS: Record<string, RegExp> = {
  "/auth/verify-email/confirm": /confirm your email/i,
  "/auth/password-reset/confirm": /reset your password/i,
};

let t: AuthContext;
let runner: GuideRunner;
beforeAll(async () => {
  t = await buildAuthApp({ env: { MODELS_WARM_UP: "false" } });
  /** `<from the email>`: the token of the oldest unused email of the kind the request confirms. */
  const used = new Set<ReceivedMail>();
  const fromTheEmail = async (request: CurlRequest): Promise<string> => {
    const subject = SUBJECTS[new URL(request.url).pathname];
    if (subject === undefined) throw new Error(`no email kind for ${request.url}`);
    const mail = await t.smtp.waitFor((m) => subject.test(m.subject) && !used.has(m));
    used.add(mail);
    const token = linkIn(mail, PUBLIC_BASE).searchParams.get("token");
    if (token === null) throw new Error("no token in the email");
    return token;
  };
  runner = new GuideRunner(guide, {
    app: t.app,
    files: new Map(),
    placeholders: { "<from the email>": fromTheEmail },
  });
});
afterAll(async () => {
  await t?.close();
});

describe(`${GUIDE} examples`, () => {
  it("state an expected status for every curl, and every curl sits in an sh block", () => {
    expect(guide.lines.filter(isCurl).length).toBeGreaterThan(15);
    const missing = guide.lines.filter((l) => isCurl(l) && expectedStatus(l) === undefined).map((l) => runner.where(l));
    expect(missing).toEqual([]);
    expect(guide.stray).toEqual([]);
  });

  it("run in order against the app with the documented statuses and fields", async () => {
    await runner.runAll();
    expect(runner.ran.length).toBe(guide.lines.filter(isCurl).length);
    expect(runner.outputProblems()).toEqual([]);
  }, 120_000);
});
