import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, type InferenceTestContext, jpeg } from "../inference/helpers.ts";

/**
 * Bad input at the HTTP edge: every case answers a 4xx problem document (never a 500), and no
 * text PostgreSQL cannot store (U+0000) gets past the parsers.
 */

let t: InferenceTestContext;
let img: string;
let jpegBytes: Buffer;
beforeAll(async () => {
  t = await buildInferenceApp();
  jpegBytes = await jpeg(64, 64, 1);
  img = jpegBytes.toString("base64");
});
afterAll(async () => {
  await t?.close();
});

type Res = Awaited<ReturnType<InferenceTestContext["app"]["inject"]>>;

function problem(res: Res, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.code, res.body).toBe(code);
  return body;
}

const ok = { instruction: "pick up the red block", robot_id: "arm-1", unnorm_key: "bridge_orig" };
const owner = () => ({ authorization: `Bearer owner:${t.customerId}` });

const get = (url: string, headers: Record<string, string> = { "x-api-key": t.key }) =>
  t.app.inject({ method: "GET", url, headers });

const postRaw = (url: string, payload: string | Buffer, headers: Record<string, string>) =>
  t.app.inject({ method: "POST", url, headers: { "x-api-key": t.key, ...headers }, payload });

describe("NUL characters are refused at the edge", () => {
  it("JSON bodies: a \\u0000 escape in a value or a key -> 400 invalid_character naming the field", async () => {
    const bodies = [
      `{"image":"${img}","instruction":"pick\\u0000up","robot_id":"arm-1","unnorm_key":"bridge_orig"}`,
      `{"image":"${img}","instruction":"pick up","robot_id":"arm-1","unnorm_key":"\\u0000"}`,
      `{"image":"${img}","instruction":"go","robot_id":"a","unnorm_key":"bridge_orig","robot_state":{"ee_position":[1,2,3],"x\\u0000":1}}`,
    ];
    const paths = ["/instruction", "/unnorm_key", "/robot_state/x\u0000"];
    for (const [i, body] of bodies.entries()) {
      const p = problem(
        await postRaw("/v1/inference", body, { "content-type": "application/json" }),
        400,
        "invalid_character",
      );
      const errs = p.errors as { in: string; path: string }[];
      expect(errs[0]?.in).toBe("body");
      expect(errs[0]?.path).toBe(paths[i]);
    }
  });

  it("the same with a charset parameter and an upper-case media type", async () => {
    const res = await postRaw("/v1/inference", `{"image":"${img}","instruction":"a\\u0000","robot_id":"a"}`, {
      "content-type": "Application/JSON; charset=utf-8",
    });
    problem(res, 400, "invalid_character");
  });

  it("an escaped backslash followed by u0000 is plain text, not NUL", async () => {
    const body = `{"image":"${img}","instruction":"pick \\\\u0000 up","robot_id":"arm-1","unnorm_key":"bridge_orig"}`;
    const res = await postRaw("/v1/inference", body, { "content-type": "application/json" });
    expect(res.statusCode, res.body).toBe(200);
  });

  it("POST /v1/api-keys with a NUL name -> 400, not 500", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(), "content-type": "application/json" },
      payload: '{"name":"\\u0000"}',
    });
    problem(res, 400, "invalid_character");
  });

  it("query strings: %00 in robot_id on history, incidents and summary -> 400 invalid_character", async () => {
    for (const url of [
      "/v1/inference/history?robot_id=%00",
      "/v1/safety/incidents?robot_id=%00",
      "/v1/safety/summary?robot_id=%00",
      "/v1/inference/history?model=a%00b",
    ]) {
      const p = problem(await get(url), 400, "invalid_character");
      expect((p.errors as { in: string }[])[0]?.in).toBe("query");
    }
    // The key name too.
    problem(await get("/v1/inference/history?a%00=1"), 400, "invalid_character");
  });

  it("path parameters: %00 -> 400 invalid_character", async () => {
    const res = await t.app.inject({
      method: "PUT",
      url: "/v1/robots/arm%00x/safety-profile",
      headers: { ...owner(), "content-type": "application/json" },
      payload: "{}",
    });
    problem(res, 400, "invalid_character");
  });

  it("form bodies: %00 -> 400 invalid_character", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "grant_type=password&username=a%40b.c&password=x%00y",
    });
    problem(res, 400, "invalid_character");
  });

  it("multipart text fields: NUL -> 400 invalid_character", async () => {
    const boundary = "----vlanul";
    const payload = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="instruction"\r\n\r\npick\u0000up\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="robot_id"\r\n\r\narm\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="unnorm_key"\r\n\r\nbridge_orig\r\n` +
          `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n`,
      ),
      jpegBytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await postRaw("/v1/inference", payload, {
      "content-type": `multipart/form-data; boundary=${boundary}`,
    });
    const p = problem(res, 400, "invalid_character");
    expect((p.errors as { path: string }[])[0]?.path).toBe("/instruction");
  });

  it("/act: NUL in the body or inside the `encoded` document -> 400 with X-Problem-Code invalid_character", async () => {
    const doc = {
      image: { __numpy__: "AAAA", dtype: "|u1", shape: [1, 1, 3] },
      instruction: "pick\u0000up",
      unnorm_key: "bridge_orig",
    };
    for (const payload of [JSON.stringify(doc), JSON.stringify({ encoded: JSON.stringify(doc) })]) {
      const res = await postRaw("/act", payload, { "content-type": "application/json" });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers["x-problem-code"]).toBe("invalid_character");
      expect(res.body).toBe('"error"');
    }
  });
});

describe("/act `encoded` document: prototype poisoning is refused like the outer body", () => {
  it('"__proto__" or "constructor.prototype" inside `encoded` -> 400 invalid_json', async () => {
    const image = '{"__numpy__":"AAAA","dtype":"|u1","shape":[1,1,3]}';
    for (const inner of [
      `{"image":${image},"instruction":"go","unnorm_key":"bridge_orig","__proto__":{"polluted":1}}`,
      `{"image":${image},"instruction":"go","unnorm_key":"bridge_orig","x":{"constructor":{"prototype":{"p":1}}}}`,
      `{"image":${image},"instruction":"go","unnorm_key":"bridge_orig","\\u005f_proto__":{"polluted":1}}`,
    ]) {
      const res = await postRaw("/act", JSON.stringify({ encoded: inner }), { "content-type": "application/json" });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers["x-problem-code"]).toBe("invalid_json");
    }
  });
});

describe("/act body: prototype poisoning at any depth is refused, look-alike keys pass", () => {
  const image = '{"__numpy__":"AAAA","dtype":"|u1","shape":[1,1,3]}';
  const doc = (extra: string) => `{"image":${image},"instruction":"go","unnorm_key":"bridge_orig"${extra}}`;
  const nest = (depth: number, inner: string) => '{"a":['.repeat(depth) + inner + "]}".repeat(depth);

  it("__proto__ or constructor.prototype at the top, nested, in arrays, escaped, or deeper than the key walk -> 400 invalid_json", async () => {
    for (const body of [
      doc(',"__proto__":{"polluted":1}'),
      doc(',"__proto__":null'),
      doc(',"\\u005f_proto__":{"polluted":1}'),
      doc(',"x":{"y":[1,{"__proto__":{"p":1}}]}'),
      doc(',"constructor":{"prototype":{"p":1}}'),
      doc(',"x":[[{"constructor":{"prototype":null}}]]'),
      doc(',"c\\u006fnstructor":{"prototype":1}'),
      doc(`,"deep":${nest(40, '{"__proto__":{"p":1}}')}`),
      doc(`,"deep":${nest(40, '{"constructor":{"prototype":{}}}')}`),
      `{"__proto__":{"polluted":1}}`,
    ]) {
      const res = await postRaw("/act", body, { "content-type": "application/json" });
      expect(res.statusCode, body.slice(0, 200)).toBe(400);
      expect(res.headers["x-problem-code"], body.slice(0, 200)).toBe("invalid_json");
      expect(res.body).toBe('"error"');
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keys named "constructor" or "prototype" that cannot poison, at any depth, pass as before', async () => {
    for (const body of [
      doc(',"constructor":"x"'),
      doc(',"meta":{"constructor":1,"prototype":{"a":1}}'),
      doc(',"meta":[{"constructor":{"name":"x"}},{"constructor":null},{"constructor":["prototype"]}]'),
      doc(',"proto":"__proto__","x":{"__proto":1,"_proto__":2}'),
      doc(`,"deep":${nest(40, '{"constructor":"x"}')}`),
    ]) {
      const res = await postRaw("/act", body, { "content-type": "application/json" });
      expect(res.statusCode, `${body.slice(0, 200)} ${res.headers["x-problem-detail"]}`).toBe(200);
    }
  });

  it("malformed, empty, BOM-prefixed and charset-labelled bodies answer as before", async () => {
    const bad = await postRaw("/act", doc("").slice(0, -1), { "content-type": "application/json" });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers["x-problem-code"]).toBe("invalid_json");
    const empty = await postRaw("/act", "", { "content-type": "application/json" });
    expect(empty.statusCode).toBe(400);
    expect(empty.headers["x-problem-code"]).toBe("invalid_json");
    expect(empty.headers["x-problem-detail"]).toContain("sends none");
    const bom = await postRaw("/act", `\ufeff${doc("")}`, { "content-type": "application/json" });
    expect(bom.statusCode, bom.headers["x-problem-detail"] as string).toBe(200);
    const charset = await postRaw("/act", doc(""), { "content-type": "Application/JSON; charset=utf-8" });
    expect(charset.statusCode, charset.headers["x-problem-detail"] as string).toBe(200);
  });
});

describe("bad bodies on POST /v1/inference never answer 500", () => {
  const boundary = "----vlabad";
  const head =
    `--${boundary}\r\nContent-Disposition: form-data; name="instruction"\r\n\r\npick\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="robot_id"\r\n\r\narm\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n`;

  it("a truncated multipart body -> 400", async () => {
    const payload = Buffer.concat([Buffer.from(head), jpegBytes.subarray(0, 100)]);
    const res = await postRaw("/v1/inference", payload, {
      "content-type": `multipart/form-data; boundary=${boundary}`,
    });
    problem(res, 400, "bad_request");
  });

  it("no body and no content type -> 422 naming the body, not 500", async () => {
    const res = await t.app.inject({ method: "POST", url: "/v1/inference", headers: { "x-api-key": t.key } });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([expect.objectContaining({ in: "body", message: expect.stringContaining("required") })]);
  });

  it("a garbage multipart body -> 400", async () => {
    const res = await postRaw("/v1/inference", Buffer.from("this is not multipart at all"), {
      "content-type": `multipart/form-data; boundary=${boundary}`,
    });
    problem(res, 400, "bad_request");
  });

  it("a valid multipart body cut at any of 60 points, or 40 seeded garbage bodies: a 4xx problem every time", async () => {
    const full = Buffer.concat([Buffer.from(head), jpegBytes, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    const headers = { "content-type": `multipart/form-data; boundary=${boundary}` };
    const bodies: Buffer[] = [];
    for (let i = 0; i < 60; i++) bodies.push(full.subarray(0, Math.floor((full.length * i) / 60)));
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 40; i++) {
      const b = Buffer.from(full.subarray(0, 100 + Math.floor(rand() * 400)));
      for (let j = 0; j < 8; j++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      bodies.push(b);
    }
    for (const body of bodies) {
      const res = await postRaw("/v1/inference", body, headers);
      expect([400, 413, 422], `${body.length} bytes: ${res.body}`).toContain(res.statusCode);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
  });

  it("multipart/form-data without a boundary -> 400 naming the boundary", async () => {
    const res = await postRaw("/v1/inference", Buffer.from(head), { "content-type": "multipart/form-data" });
    const p = problem(res, 400, "bad_request");
    expect(String(p.detail)).toMatch(/boundary/);
  });

  it("an image part over the part limit -> 413 naming that limit, not the body limit", async () => {
    const small = await buildInferenceApp({ INFERENCE_UPLOAD_MAX_BYTES: "2048" });
    try {
      const payload = Buffer.concat([Buffer.from(head), Buffer.alloc(4096, 1), Buffer.from(`\r\n--${boundary}--\r\n`)]);
      const res = await small.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": small.key, "content-type": `multipart/form-data; boundary=${boundary}` },
        payload,
      });
      const p = problem(res, 413, "payload_too_large");
      expect(String(p.detail)).toContain("2048");
      expect(String(p.detail)).toMatch(/part|file/i);
      expect(String(p.detail)).not.toContain(String(small.app.platform.config.http.inferenceBodyLimitBytes));
    } finally {
      await small.close();
    }
  });

  it("text/plain (even holding JSON) -> 415 unsupported_media_type naming the accepted types", async () => {
    for (const type of ["text/plain", "application/xml", "application/octet-stream"]) {
      const res = await postRaw("/v1/inference", JSON.stringify({ image: img, ...ok }), { "content-type": type });
      const p = problem(res, 415, "unsupported_media_type");
      expect(String(p.detail)).toContain("application/json");
      expect(String(p.detail)).toContain("multipart/form-data");
    }
  });

  it("an unsupported type on any other body route -> 415 naming application/json", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(), "content-type": "text/plain" },
      payload: '{"name":"k"}',
    });
    const p = problem(res, 415, "unsupported_media_type");
    expect(String(p.detail)).toContain("application/json");
    // A route without a body schema: a body it cannot read is refused the same way...
    const stop = (headers: Record<string, string>, payload?: string) =>
      t.app.inject({
        method: "POST",
        url: "/v1/robots/arm-415/clear-stop",
        headers: { ...owner(), ...headers },
        payload,
      });
    const refused = problem(await stop({ "content-type": "application/xml" }, "<x/>"), 415, "unsupported_media_type");
    expect(String(refused.detail)).toContain("application/json");
    problem(await stop({ "content-type": "text/plain" }, "x"), 415, "unsupported_media_type");
    // ...while a Content-Type without a body is no body at all.
    expect((await stop({ "content-type": "text/plain" })).statusCode).not.toBe(415);
  });
});

describe("date-time and number query parameters out of range -> 400, never 500", () => {
  it.each([
    "/v1/inference/history?limit=1e309",
    "/v1/inference/history?limit=NaN",
    "/v1/inference/history?limit=Infinity",
    "/v1/inference/history?to=0000-01-01T00:00:00Z",
    "/v1/inference/history?from=0000-01-01T00:00:00Z",
    "/v1/inference/history?from=2026-02-30T00:00:00Z",
    "/v1/inference/history?from=99999-01-01T00:00:00Z",
    "/v1/inference/history?from=2016-12-31T23:59:60Z",
    "/v1/inference/history?to=0001-01-01T00:00:00%2B01:00",
    "/v1/safety/incidents?limit=1e309",
    "/v1/safety/incidents?to=0000-01-01T00:00:00Z",
    "/v1/safety/incidents?from=0000-01-01T00:00:00Z",
    "/v1/safety/summary?to=0000-01-01T00:00:00Z",
    "/v1/safety/summary?from=0000-01-01T00:00:00Z",
    "/v1/robots?limit=1e309",
  ])("%s", async (url) => {
    problem(await get(url, owner()), 400, "invalid_request");
  });

  it("summary: the default window (the 24 hours before `to`) does not reach before year 1", async () => {
    const res = await get("/v1/safety/summary?to=0001-01-01T06:00:00Z", owner());
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ from: "0001-01-01T00:00:00.000Z", to: "0001-01-01T06:00:00.000Z", total: 0 });
  });

  it("an expires_at on a leap second (valid RFC 3339, no JS Date) -> 422, not 500", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(), "content-type": "application/json" },
      payload: { name: "k", expires_at: "2030-12-31T23:59:60Z" },
    });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([{ in: "body", path: "/expires_at", message: 'must match format "date-time"' }]);
  });

  it("a cursor holding an instant PostgreSQL cannot store -> 400, not 500", async () => {
    const id = "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11";
    const history = Buffer.from(JSON.stringify(["0000-01-01T00:00:00.000Z", id])).toString("base64url");
    const incidents = Buffer.from(`0000-01-01T00:00:00.000Z|${id}`).toString("base64url");
    problem(await get(`/v1/inference/history?cursor=${history}`), 400, "invalid_request");
    problem(await get(`/v1/safety/incidents?cursor=${incidents}`, owner()), 400, "invalid_request");
  });
});

describe("fields with a fixed set of values list the allowed values", () => {
  it("history status", async () => {
    const p = problem(await get("/v1/inference/history?status=bogus"), 400, "invalid_request");
    expect(p.errors).toEqual([{ in: "query", path: "/status", message: "must be one of: ok, error" }]);
  });

  it("grant_type", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "grant_type=client_credentials&username=a%40b.c&password=x",
    });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([{ in: "body", path: "/grant_type", message: "must be password" }]);
  });

  it("key scopes", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(), "content-type": "application/json" },
      payload: { name: "k", scopes: ["inference", "root"] },
    });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([{ in: "body", path: "/scopes/1", message: "must be one of: inference, admin" }]);
  });
});
