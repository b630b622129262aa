import { hash, randomBytes, randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { errors } from "../../platform/errors.ts";

/** 32 random bytes, base64url: refresh, reset and verification tokens. */
export function randomToken(): string {
  return randomBytes(32).toString("base64url");
}

/** High-entropy tokens need a fast hash, not a password hash: SHA-256, hex. */
export function sha256(value: string): string {
  return hash("sha256", value, "hex");
}

/** Header `typ` of our access tokens (RFC 9068 media type), checked on every verification. */
export const ACCESS_TOKEN_HEADER_TYP = "at+jwt";
/** Payload `typ`: a token minted for another purpose can never pass as an access token. */
export const ACCESS_TOKEN_TYPE = "access";
const ALGORITHM = "HS256";

export interface AccessClaims {
  readonly sub: string;
  readonly jti: string;
  readonly iat: number;
  readonly exp: number;
  /** The user's token version when the token was minted; a bump kills every older token. */
  readonly ver: number;
  /** The refresh-token family (session) this token belongs to; logout revokes it. */
  readonly sid: string;
}

export interface AccessTokenOptions {
  readonly secretKey: string;
  readonly issuer: string;
  readonly audience: string;
  readonly ttlSeconds: number;
}

/**
 * JWT access tokens via jose: HS256 pinned (`alg: none` and every other algorithm are refused
 * before the signature is looked at), `iss`, `aud`, `exp` checked with no clock tolerance beyond
 * 5 s, header and payload type checked.
 */
export class AccessTokens {
  private readonly key: Uint8Array;
  private readonly options: AccessTokenOptions;

  constructor(options: AccessTokenOptions) {
    this.key = new TextEncoder().encode(options.secretKey);
    this.options = options;
  }

  get ttlSeconds(): number {
    return this.options.ttlSeconds;
  }

  async sign(
    input: { userId: string; tokenVersion: number; sessionId: string },
    now = Date.now(),
  ): Promise<{
    token: string;
    claims: AccessClaims;
  }> {
    const iat = Math.floor(now / 1000);
    const claims: AccessClaims = {
      sub: input.userId,
      jti: randomUUID(),
      iat,
      exp: iat + this.options.ttlSeconds,
      ver: input.tokenVersion,
      sid: input.sessionId,
    };
    const token = await new SignJWT({ typ: ACCESS_TOKEN_TYPE, ver: claims.ver, sid: claims.sid })
      .setProtectedHeader({ alg: ALGORITHM, typ: ACCESS_TOKEN_HEADER_TYP })
      .setSubject(claims.sub)
      .setJti(claims.jti)
      .setIssuedAt(claims.iat)
      .setExpirationTime(claims.exp)
      .setIssuer(this.options.issuer)
      .setAudience(this.options.audience)
      .sign(this.key);
    return { token, claims };
  }

  /** Verifies signature, algorithm, type, issuer, audience and expiry; throws 401 invalid_token. */
  async verify(token: string): Promise<AccessClaims> {
    let payload: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, this.key, {
        algorithms: [ALGORITHM],
        issuer: this.options.issuer,
        audience: this.options.audience,
        typ: ACCESS_TOKEN_HEADER_TYP,
        requiredClaims: ["sub", "jti", "iat", "exp"],
        clockTolerance: 5,
      });
      payload = result.payload as Record<string, unknown>;
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw invalid("The access token has expired; refresh it.");
      if (e instanceof joseErrors.JOSEError) throw invalid();
      throw e;
    }
    const { sub, jti, iat, exp, ver, sid, typ } = payload;
    if (
      typ !== ACCESS_TOKEN_TYPE ||
      typeof sub !== "string" ||
      typeof jti !== "string" ||
      typeof iat !== "number" ||
      typeof exp !== "number" ||
      typeof ver !== "number" ||
      !Number.isInteger(ver) ||
      typeof sid !== "string"
    ) {
      throw invalid();
    }
    return { sub, jti, iat, exp, ver, sid };
  }
}

function invalid(detail?: string) {
  return errors.invalidToken(detail);
}
