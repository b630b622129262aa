import { describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { AccessTokens, randomToken, sha256 } from "./tokens.ts";

const options = { secretKey: "s".repeat(40), issuer: "https://api.example.test", audience: "vla-api", ttlSeconds: 900 };

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return e instanceof AppError ? e.code : "other";
  }
}

describe("AccessTokens", () => {
  it("round-trips the claims", async () => {
    const tokens = new AccessTokens(options);
    const { token, claims } = await tokens.sign({ userId: "u1", tokenVersion: 3, sessionId: "s1" });
    expect(await tokens.verify(token)).toEqual(claims);
    expect(claims.exp - claims.iat).toBe(900);
  });

  it("refuses a token from another key, issuer or audience, and an expired one", async () => {
    const { token } = await new AccessTokens(options).sign({ userId: "u1", tokenVersion: 0, sessionId: "s" });
    expect(await code(new AccessTokens({ ...options, secretKey: "t".repeat(40) }).verify(token))).toBe("invalid_token");
    expect(await code(new AccessTokens({ ...options, issuer: "https://other" }).verify(token))).toBe("invalid_token");
    expect(await code(new AccessTokens({ ...options, audience: "other" }).verify(token))).toBe("invalid_token");
    const old = await new AccessTokens(options).sign(
      { userId: "u1", tokenVersion: 0, sessionId: "s" },
      Date.now() - 3_600_000,
    );
    expect(await code(new AccessTokens(options).verify(old.token))).toBe("invalid_token");
  });

  it("mints distinct ids every time", async () => {
    const tokens = new AccessTokens(options);
    const a = await tokens.sign({ userId: "u1", tokenVersion: 0, sessionId: "s" });
    const b = await tokens.sign({ userId: "u1", tokenVersion: 0, sessionId: "s" });
    expect(a.claims.jti).not.toBe(b.claims.jti);
  });
});

describe("opaque tokens", () => {
  it("are 32 random bytes in base64url and hash to 64 hex characters", () => {
    const t = randomToken();
    expect(Buffer.from(t, "base64url")).toHaveLength(32);
    expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomToken()).not.toBe(t);
    expect(sha256(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(sha256("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});
