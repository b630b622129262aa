import { pack } from "msgpackr";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { inferenceLogWriters } from "../../src/modules/inference/inference.module.ts";
import type { InferenceLogEntry } from "../../src/modules/inference/inference-logs.repo.ts";
import { packMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { closeReason } from "../../src/modules/streaming/protocol.ts";
import { buildStreamApp, Client, connect, flushLogs, jpeg, type StreamTestContext, started } from "./helpers.ts";

/** Malformed and hostile input on WS /v1/stream and WS /v1/openpi (docs/streaming.md). */

let t: StreamTestContext;
let img: Buffer;
let b64: string;
/** Every row handed to the inference log writer. */
const logged: InferenceLogEntry[] = [];
beforeAll(async () => {
  t = await buildStreamApp();
  img = await jpeg(64, 64, 1);
  b64 = img.toString("base64");
  const writer = inferenceLogWriters.get(t.app.platform);
  if (writer === undefined) throw new Error("no inference log writer");
  const push = writer.push.bind(writer);
  writer.push = (row: InferenceLogEntry) => {
    logged.push(row);
    push(row);
  };
});
afterAll(async () => {
  await t?.close();
});
beforeEach(() => {
  logged.length = 0;
});

const NUL = "\u0000";
const hasNul = (v: unknown): boolean => JSON.stringify(v).includes("\\u0000");
const rowsOf = (robotId: string) => logged.filter((r) => r.robotId === robotId);

async function history(query: string): Promise<Record<string, unknown>[]> {
  await flushLogs(t.app);
  const res = await t.app.inject({
    method: "GET",
    url: `/v1/inference/history?${query}`,
    headers: { "x-api-key": t.key },
  });
  return res.json().data as Record<string, unknown>[];
}

describe("WS /v1/stream: U+0000 is refused with invalid_character", () => {
  const startCases: [string, Record<string, unknown>, string][] = [
    ["model", { model: `mock${NUL}` }, "/model"],
    ["robot_id", { robot_id: `arm${NUL}1` }, "/robot_id"],
    ["unnorm_key", { unnorm_key: `bridge_orig${NUL}` }, "/unnorm_key"],
    ["instruction", { instruction: `pick${NUL}` }, "/instruction"],
    ["a nested value", { smoothing: { method: `ema${NUL}` } }, "/smoothing/method"],
    ["a member name", { [`x${NUL}`]: 1 }, ""],
    ["a nested member name", { smoothing: { [`alpha${NUL}`]: 0.5 } }, "/smoothing"],
  ];
  for (const encoding of ["json", "msgpack"] as const) {
    it(`start (${encoding}): each field is named; the connection stays and a clean start works`, async () => {
      const c = await connect(t, t.key);
      const send = (m: Record<string, unknown>) => (encoding === "json" ? c.json(m) : c.msgpack(m));
      const base = { type: "start", robot_id: "arm-nul-start", instruction: "go", unnorm_key: "bridge_orig" };
      for (const [i, [, fields, path]] of startCases.entries()) {
        send({ ...base, ...fields });
        const e = await c.next(() => c.of("error").length > i).then(() => c.of("error")[i]);
        expect(e).toMatchObject({ type: "error", code: "invalid_character" });
        expect(e?.errors).toEqual([{ in: "body", path, message: expect.stringContaining("U+0000") }]);
        expect(String(e?.message)).toContain("NUL");
      }
      send(base);
      expect(await c.type("started")).toMatchObject({ robot_id: "arm-nul-start" });
      expect(c.raw.every((r) => r.isBinary === (encoding === "msgpack"))).toBe(true);
      c.close();
    });
  }

  it("frames: answered with the seq, counted as failed, never logged; the session goes on", async () => {
    const { c } = await started(t, { robot_id: "arm-nul-frame" });
    c.json({ type: "frame", seq: 1, image: b64, instruction: `open${NUL}the drawer` });
    const e1 = await c.type("error", (m) => m.seq === 1);
    expect(e1).toMatchObject({ code: "invalid_character", errors: [{ path: "/instruction" }] });
    c.json({ type: "frame", seq: 2, image: b64, robot_state: { ee_position: [0, 0, 0], [`grip${NUL}`]: 1 } });
    expect(await c.type("error", (m) => m.seq === 2)).toMatchObject({
      code: "invalid_character",
      errors: [{ path: "/robot_state" }],
    });
    c.json({ type: "frame", seq: 3, image: `${b64.slice(0, 8)}${NUL}` });
    expect(await c.type("error", (m) => m.seq === 3)).toMatchObject({ errors: [{ path: "/image" }] });
    c.json({ type: "frame", seq: 4, image: b64 });
    expect(await c.type("action")).toMatchObject({ seq: 4 });
    c.json({ type: "stats" });
    expect((await c.type("stats")).stats).toMatchObject({ frames_received: 4, frames_failed: 3, frames_inferred: 1 });
    c.close();
    // Only the good frame reached the log writer, and its batch was stored.
    expect(rowsOf("arm-nul-frame").map((r) => r.status)).toEqual(["ok"]);
    expect(logged.some(hasNul)).toBe(false);
    expect(await history("source=stream&robot_id=arm-nul-frame")).toHaveLength(1);
  });

  it("msgpack frames: str values and bin member names", async () => {
    const c = await connect(t, t.key);
    c.msgpack({ type: "start", robot_id: "arm-nul-mp", instruction: "go", unnorm_key: "bridge_orig" });
    await c.type("started");
    c.msgpack({ type: "frame", seq: 1, image: img, instruction: `a${NUL}` });
    expect(await c.type("error", (m) => m.seq === 1)).toMatchObject({ code: "invalid_character" });
    c.ws.send(
      pack(
        new Map<unknown, unknown>([
          ["type", "frame"],
          ["seq", 2],
          ["image", img],
          [Buffer.from(`must_go${NUL}`), true],
        ]),
      ),
    );
    expect(await c.type("error", (m) => m.seq === 2)).toMatchObject({
      code: "invalid_character",
      errors: [{ path: "", message: expect.stringContaining("member name") }],
    });
    c.msgpack({ type: "frame", seq: 3, image: img });
    expect(await c.type("action")).toMatchObject({ seq: 3 });
    c.close();
    expect(rowsOf("arm-nul-mp").map((r) => r.status)).toEqual(["ok"]);
  });

  it("auth: an api_key holding U+0000 fails authentication (error, close 1008)", async () => {
    const c = await connect(t, null);
    c.json({ type: "auth", api_key: `${t.key}${NUL}` });
    expect(await c.type("error")).toMatchObject({ code: "invalid_character", errors: [{ path: "/api_key" }] });
    expect((await c.closed).code).toBe(1008);
  });

  it("stats and stop: a recoverable error", async () => {
    const { c } = await started(t);
    c.json({ type: "stats", [`x${NUL}`]: 1 });
    expect(await c.type("error")).toMatchObject({ code: "invalid_character" });
    c.json({ type: "stop", y: `${NUL}` });
    expect(await c.type("error", (m) => (m.errors as { path: string }[])[0]?.path === "/y")).toBeDefined();
    c.json({ type: "stop" });
    expect(await c.type("stopped")).toMatchObject({ reason: "client_stop" });
    expect((await c.closed).code).toBe(1000);
  });
});

describe("WS /v1/stream: other malformed input", () => {
  it("a message quoting megabytes of input in its close reason is closed at once (1003, reason <= 123 bytes)", async () => {
    // The reason used to be trimmed one character at a time, each time re-measuring the whole
    // string: quadratic, about half a second for 60 KB and minutes for this one.
    const c = await connect(t, t.key);
    c.json({ type: "é".repeat(1_500_000) });
    const closed = await c.closed;
    expect(closed.code).toBe(1003);
    expect(Buffer.byteLength(closed.reason)).toBeLessThanOrEqual(123);
    expect(closed.reason).toMatch(/^unknown message type "é+$/);
  });

  it("close reasons are cut to 123 bytes without splitting a surrogate pair", () => {
    expect(closeReason(`${"x".repeat(120)}\u{1F600}`)).toBe("x".repeat(120));
    expect(closeReason("é".repeat(100))).toBe("é".repeat(61));
    expect(closeReason("short")).toBe("short");
  });

  it("a message with thousands of unknown members gets at most 20 field problems", async () => {
    const { c } = await started(t);
    const m: Record<string, unknown> = { type: "stats" };
    for (let i = 0; i < 5000; i++) m[`m${i}`] = i;
    c.json(m);
    const e = await c.type("error");
    expect(e.code).toBe("validation_failed");
    expect(e.errors).toHaveLength(20);
    expect((e.errors as { path: string }[])[0]?.path).toBe("/m0");
    c.close();
  });

  it("binary and text frames may be mixed; answers keep the first message's encoding", async () => {
    const { c } = await started(t);
    c.msgpack({ type: "frame", seq: 1, image: img });
    expect(await c.type("action", (m) => m.seq === 1)).toBeDefined();
    expect(c.raw.every((r) => !r.isBinary)).toBe(true);
    c.close();
  });

  const nd = (o: Record<string, unknown>) =>
    pack({ type: "frame", seq: 1, image: { __ndarray__: true, data: Buffer.alloc(12), dtype: "|u1", ...o } });
  const closing: [string, () => Buffer][] = [
    ["an unknown msgpack extension", () => Buffer.from([0x81, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xd4, 0x05, 0x01])],
    ["a msgpack timestamp", () => Buffer.concat([Buffer.from([0x81, 0xa1, 0x74, 0xd6, 0xff]), Buffer.alloc(4)])],
    ["a map32 header with no entries", () => Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff])],
    ["an integer map key", () => Buffer.from([0x81, 0x01, 0x02])],
    [
      "100 000 nested arrays",
      () => Buffer.concat([Buffer.from([0x81, 0xa1, 0x78]), Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])]),
    ],
    ["a shape that does not match the data", () => nd({ shape: [2, 2, 3], data: Buffer.alloc(5) })],
    ["a negative dimension", () => nd({ shape: [-2, -2, 3] })],
    ["a shape whose product overflows", () => nd({ shape: [2 ** 53 - 1, 2 ** 53 - 1, 3] })],
    ["an unknown dtype", () => nd({ shape: [2, 2, 3], dtype: "<f16" })],
    ["a structured dtype", () => nd({ shape: [2, 2, 3], dtype: "|V1" })],
  ];
  for (const [name, payload] of closing) {
    it(`${name} -> 1003`, async () => {
      const { c } = await started(t);
      c.ws.send(payload());
      const closed = await c.closed;
      expect(closed.code).toBe(1003);
      expect(closed.reason).toMatch(/^binary frame is not msgpack: /);
    });
  }

  it("an image map with data and dtype but no shape (or a false __ndarray__) is invalid_array, not an internal error", async () => {
    const { c } = await started(t);
    c.msgpack({ type: "frame", seq: 1, image: { data: Buffer.alloc(3), dtype: "|u1" } });
    c.msgpack({
      type: "frame",
      seq: 2,
      image: { __ndarray__: false, data: Buffer.alloc(3), dtype: "|u1", shape: null },
    });
    const errs = await c.next(() => c.of("error").length >= 2).then(() => c.of("error"));
    expect(errs.map((e) => [e.seq, e.code])).toEqual([
      [1, "invalid_array"],
      [2, "invalid_array"],
    ]);
    c.msgpack({ type: "frame", seq: 3, image: img });
    expect(await c.type("action", (m) => m.seq === 3)).toBeDefined();
    c.close();
  });

  it("invalid UTF-8 in a text frame -> 1007", async () => {
    const { c } = await started(t);
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await c.closed).code).toBe(1007);
  });

  it("numbers at the edges and values of the wrong type are field problems, not crashes", async () => {
    const { c } = await started(t);
    const frames: [number, Record<string, unknown>, string][] = [
      [1, { seq: 2 ** 64 }, "/seq"],
      [2, { seq: 2, timestamp: Number.NaN }, "/timestamp"],
      [3, { seq: 3, instruction: ["a"] }, "/instruction"],
      [4, { seq: 4, instruction: Buffer.from("a") }, "/instruction"],
      [5, { seq: 5, robot_state: { ee_position: [Number.POSITIVE_INFINITY, 0, 0] } }, "/robot_state/ee_position"],
      [6, { seq: 6, must_go: "yes" }, "/must_go"],
    ];
    for (const [, f] of frames) c.msgpack({ type: "frame", image: img, ...f });
    // seq 2**64 has no usable seq: the error comes without one.
    const errs = await c.next(() => c.of("error").length >= frames.length).then(() => c.of("error"));
    expect(errs.map((e) => (e.errors as { path: string }[])[0]?.path)).toEqual(frames.map(([, , p]) => p));
    expect(errs.map((e) => e.seq)).toEqual([undefined, 2, 3, 4, 5, 6]);
    c.msgpack({ type: "frame", seq: 7, image: img });
    expect(await c.type("action", (m) => m.seq === 7)).toBeDefined();
    c.close();
  });
});

describe("WS /v1/openpi: U+0000 and field names", () => {
  const pixels = () => ({ data: new Uint8Array(32 * 32 * 3), shape: [32, 32, 3] });

  async function openpi(query = "?unnorm_key=bridge_orig") {
    const c = new Client(`${t.baseUrl}/v1/openpi${query}`, { authorization: `Api-Key ${t.key}` });
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    return c;
  }

  /** The error text frame and the close of a connection that was sent `payload`. */
  async function refused(payload: Buffer | string, query?: string): Promise<{ text: string; code: number }> {
    const c = await openpi(query);
    c.ws.send(payload);
    const closed = await c.closed;
    const last = c.raw[c.raw.length - 1];
    expect(last?.isBinary).toBe(false);
    return { text: String(last?.data), code: closed.code };
  }

  const nulCases: [string, () => Buffer, string][] = [
    ["a str prompt", () => packMsgpackNumpy({ "observation/image": pixels(), prompt: `pick${NUL}` }), "/prompt"],
    [
      "a bytes prompt",
      () => packMsgpackNumpy({ "observation/image": pixels(), prompt: Buffer.from(`pick${NUL}`) }),
      "/prompt",
    ],
    [
      "a nested value",
      () => packMsgpackNumpy({ "observation/image": pixels(), prompt: "go", meta: { task: [`a${NUL}`] } }),
      "/meta/task/0",
    ],
    [
      "a bin member name",
      () =>
        pack(
          new Map<unknown, unknown>([
            ["observation/image", Buffer.from(img)],
            ["prompt", "go"],
            [Buffer.from(`state${NUL}`), 1],
          ]),
        ),
      "the top level",
    ],
    [
      "an episode control message",
      () => packMsgpackNumpy({ __ctrl__: "episode_start", __task__: `t${NUL}` }),
      "/__task__",
    ],
  ];
  for (const [name, payload, where] of nulCases) {
    it(`${name}: invalid_character naming ${where}, close 1011, nothing logged`, async () => {
      const { text, code } = await refused(payload(), "?unnorm_key=bridge_orig&robot_id=pi-nul");
      expect(code).toBe(1011);
      expect(text).toMatch(/^invalid_character: /);
      expect(text).toContain(where);
      expect(rowsOf("pi-nul")).toEqual([]);
    });
  }

  it("a missing prompt is logged as a failure (the check above can see rows)", async () => {
    await refused(packMsgpackNumpy({ "observation/image": pixels() }), "?unnorm_key=bridge_orig&robot_id=pi-nul");
    expect(rowsOf("pi-nul").map((r) => r.errorCode)).toEqual(["validation_failed"]);
  });

  const promptCases: [string, unknown, string][] = [
    ["missing", undefined, "/prompt is required (str or bytes)"],
    ["numeric", 5, "/prompt must be str or bytes"],
    ["list", ["pick"], "/prompt must be str or bytes"],
    ["blank", "  ", "/prompt must not be empty"],
    ["too long", "x".repeat(1001), "/prompt must be at most 1000 characters"],
  ];
  for (const [name, prompt, expected] of promptCases) {
    it(`a ${name} prompt: the error names the field`, async () => {
      const obs: Record<string, unknown> = { "observation/image": pixels() };
      if (prompt !== undefined) obs.prompt = prompt;
      const { text, code } = await refused(packMsgpackNumpy(obs));
      expect(code).toBe(1011);
      expect(text).toBe(`validation_failed: The observation is invalid. (${expected})`);
    });
  }

  it("query parameters holding U+0000 are refused before the upgrade with 400 invalid_character", async () => {
    for (const [param, path] of [
      ["model=a%00b", "/model"],
      ["unnorm_key=bridge_orig%00", "/unnorm_key"],
      ["robot_id=arm%00", "/robot_id"],
    ]) {
      const res = await t.app.inject({ method: "GET", url: `/v1/openpi?${param}` });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: "invalid_character", errors: [{ in: "query", path }] });
    }
    const c = new Client(`${t.baseUrl}/v1/openpi?model=a%00b`, { authorization: `Api-Key ${t.key}` });
    await expect(c.opened()).rejects.toThrow(/400/);
  });

  const malformed: [string, () => Buffer, RegExp][] = [
    ["an unknown extension", () => Buffer.from([0x81, 0xa1, 0x78, 0xd4, 0x05, 0x01]), /^invalid_array: /],
    ["an array instead of a map", () => pack([1, 2]), /^bad_request: /],
    ["an ndarray instead of a map", () => packMsgpackNumpy(pixels()), /^bad_request: /],
    [
      "an image whose shape does not match its data",
      () => pack({ image: { __ndarray__: true, data: Buffer.alloc(5), dtype: "|u1", shape: [2, 2, 3] }, prompt: "x" }),
      /^invalid_array: Array data has 5 bytes/,
    ],
    [
      "a shape whose product overflows",
      () =>
        pack({
          image: { __ndarray__: true, data: Buffer.alloc(0), dtype: "|u1", shape: [2 ** 53 - 1, 2 ** 53 - 1, 3, 3] },
          prompt: "x",
        }),
      /^invalid_array: Array of [\d.e+]+ bytes exceeds/,
    ],
    [
      "a negative dimension",
      () => pack({ image: { __ndarray__: true, data: Buffer.alloc(0), dtype: "|u1", shape: [-1, 0, 3] }, prompt: "x" }),
      /^invalid_array: shape entries/,
    ],
    [
      "an unknown dtype",
      () => pack({ image: { __ndarray__: true, data: Buffer.alloc(0), dtype: "float16", shape: [0] }, prompt: "x" }),
      /^invalid_array: Unsupported dtype/,
    ],
    [
      "an empty image with a huge dimension",
      () =>
        pack({
          image: { __ndarray__: true, data: Buffer.alloc(0), dtype: "|u1", shape: [0, 2 ** 53 - 1, 3] },
          prompt: "x",
        }),
      /^invalid_image: /,
    ],
    [
      "an image map with data and dtype but no shape",
      () => pack({ image: { data: Buffer.alloc(3), dtype: "|u1" }, prompt: "x" }),
      /^invalid_image: /,
    ],
    [
      "a float image",
      () => packMsgpackNumpy({ image: { data: new Float32Array(3), shape: [1, 1, 3] }, prompt: "x" }),
      /^invalid_image: /,
    ],
  ];
  for (const [name, payload, expected] of malformed) {
    it(`${name}: an error text frame, then close 1011`, async () => {
      const { text, code } = await refused(payload());
      expect(code).toBe(1011);
      expect(text).toMatch(expected);
    });
  }

  it("invalid UTF-8 in a text frame closes with 1007", async () => {
    const c = await openpi();
    c.ws.send(Buffer.from([0xff, 0xfe]), { binary: false });
    expect((await c.closed).code).toBe(1007);
  });
});
