import { describe, expect, it } from "vitest";
import { isSecretParam, redactUrl } from "./logger.ts";

describe("isSecretParam", () => {
  it.each([
    "token",
    "api_key",
    "apikey",
    "apiKey",
    "key",
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "secret",
    "client_secret",
    "password",
    "new_password",
    "signature",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "x-api-key",
    "private_key",
    "jwt",
    "session",
    "auth",
    "%74oken",
    "tok%65n",
    "bad%zzname",
  ])("%s is a secret", (name) => {
    expect(isSecretParam(name)).toBe(true);
  });

  it.each(["unnorm_key", "limit", "cursor", "model", "robot_id", "from", "to", "severity", "lang"])(
    "%s is not",
    (name) => {
      expect(isSecretParam(name)).toBe(false);
    },
  );
});

describe("redactUrl", () => {
  it("replaces secret values and keeps the rest of the URL", () => {
    expect(redactUrl("/reset-password?token=abc")).toBe("/reset-password?token=[redacted]");
    expect(redactUrl("/x?a=1&key=k;sig=s&b=2")).toBe("/x?a=1&key=[redacted];sig=[redacted]&b=2");
    expect(redactUrl("/x?token=a&token=b")).toBe("/x?token=[redacted]&token=[redacted]");
    expect(redactUrl("/x?token=")).toBe("/x?token=");
    expect(redactUrl("/plain/path")).toBe("/plain/path");
  });

  it("finds URLs inside free text", () => {
    expect(redactUrl('Reply was already sent in the "/v?code=xyz" route')).toBe(
      'Reply was already sent in the "/v?code=[redacted]" route',
    );
    expect(redactUrl("a = b and c=d")).toBe("a = b and c=d");
  });
});
