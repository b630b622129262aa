import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

let t: TestContext;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t.close();
});

type Media = { schema: { examples?: unknown[] }; example?: unknown; examples?: unknown };
const hasExample = (m: Media | undefined) =>
  m !== undefined && (m.example !== undefined || m.examples !== undefined || (m.schema.examples?.length ?? 0) > 0);

type Op = {
  tags?: string[];
  summary?: string;
  description?: string;
  requestBody?: { content: Record<string, Media> };
  responses: Record<string, { description?: string; content?: Record<string, Media> }>;
  security?: unknown[];
};

const EXPECTED = [
  "post /auth/register",
  "post /auth/token",
  "post /auth/refresh",
  "get /auth/me",
  "patch /auth/me",
  "delete /auth/me",
  "post /auth/me/password",
  "post /auth/logout",
  "post /auth/logout-all",
  "post /auth/password-reset/request",
  "post /auth/password-reset/confirm",
  "post /auth/verify-email/request",
  "post /auth/verify-email/confirm",
];

describe("auth routes in OpenAPI", () => {
  it("documents every route with tag, summary, description, body and response schemas with examples", async () => {
    const doc = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json();
    const paths = doc.paths as Record<string, Record<string, Op>>;
    const found = Object.entries(paths).flatMap(([p, ops]) =>
      Object.keys(ops)
        .filter(() => p.startsWith("/auth"))
        .map((m) => `${m} ${p}`),
    );
    expect(found.sort()).toEqual([...EXPECTED].sort());
    for (const key of EXPECTED) {
      const [method, p] = key.split(" ") as [string, string];
      const op = paths[p]?.[method] as Op;
      expect(op.tags, key).toEqual(["auth"]);
      expect(op.summary, key).toBeTruthy();
      expect((op.description ?? "").length, key).toBeGreaterThan(40);
      const success = Object.entries(op.responses).find(([code]) => code.startsWith("2"));
      expect(success, key).toBeDefined();
      const [code, response] = success as [string, Op["responses"][string]];
      if (code !== "204") {
        expect(hasExample(Object.values(response.content ?? {})[0]), `${key} response example`).toBe(true);
        expect(response.description, `${key} response description`).not.toBe("Default Response");
      }
      if (op.requestBody !== undefined) {
        for (const media of Object.values(op.requestBody.content))
          expect(hasExample(media), `${key} body example`).toBe(true);
      }
      expect(
        Object.keys(op.responses).some((c) => c.startsWith("4")),
        key,
      ).toBe(true);
    }
    expect(Object.keys(paths["/auth/token"]?.post?.requestBody?.content ?? {})).toEqual(
      expect.arrayContaining(["application/x-www-form-urlencoded", "application/json"]),
    );
    expect(paths["/auth/me"]?.get?.security).toEqual(expect.arrayContaining([{ bearerAuth: [] }]));
    expect(doc.components.securitySchemes.oauth2Password.flows.password.tokenUrl).toMatch(/\/auth\/token$/);
    expect(doc.tags.map((x: { name: string }) => x.name)).toContain("auth");
  });
});
