import { readFileSync } from "node:fs";
import path from "node:path";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { flushLogs, jpeg } from "../inference/helpers.ts";
import {
  type CurlRequest,
  codeBlocks,
  expectedStatus,
  isShell,
  jqRaw,
  multipartBody,
  parseCurl,
  pipeline,
  type ShellLine,
  shellLines,
  tokenize,
} from "./shell-examples.ts";

/**
 * Runs the `sh` blocks of docs/api-guide.md in order against a test app, as a reader would paste
 * them: variables captured from earlier answers (`KEY=$(curl ... | jq -r .key)`), each curl's
 * status checked against the one the guide states, the headers its `-i` output shows present
 * (RateLimit quotas and remaining counts equal), and the JSON fields its sample output names present.
 */

const root = path.resolve(import.meta.dirname, "../..");
const GUIDE = "docs/api-guide.md";
const ORIGIN = "http://localhost:8000";

const markdown = readFileSync(path.join(root, GUIDE), "utf8");
const blocks = codeBlocks(markdown);
const shellBlockLines = blocks.filter(isShell).flatMap(shellLines);

const CURL_LINE = /^(?:[A-Za-z_][A-Za-z0-9_]*=\$\()?curl\s/;
const isCurl = (l: ShellLine) => CURL_LINE.test(l.text);

interface Ran {
  readonly line: ShellLine;
  readonly request: CurlRequest;
  readonly response: LightMyRequestResponse;
}

let t: TestContext;
const ran: Ran[] = [];
let files: Map<string, Buffer>;

beforeAll(async () => {
  t = await buildTestApp();
  files = new Map([["frame.jpg", await jpeg(224, 224, 7)]]);
});
afterAll(async () => {
  await t?.close();
});

const where = (l: ShellLine) => `${GUIDE}:${l.line}: ${l.text.slice(0, 160)}`;

async function curl(args: string[], line: ShellLine): Promise<LightMyRequestResponse> {
  const request = parseCurl(args);
  if (!request.url.startsWith(ORIGIN)) throw new Error(`${where(line)}: URL outside ${ORIGIN}`);
  const headers = { ...request.headers };
  let payload: string | Buffer | undefined;
  if (request.form.length > 0) {
    const m = multipartBody(request.form, files);
    payload = m.body;
    headers["content-type"] = m.contentType;
  } else if (request.data.length > 0) payload = request.data.join("&");
  // History rows are written in batches off the request path; write them now, as a second would.
  await flushLogs(t.app);
  const response = await t.app.inject({
    method: request.method as "GET",
    url: request.url.slice(ORIGIN.length) || "/",
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
  ran.push({ line, request, response });
  const expected = expectedStatus(line);
  expect(response.statusCode, `${where(line)}\n-> ${response.body.slice(0, 500)}`).toBe(expected);
  return response;
}

/** Runs a pipeline and returns its standard output (only what the guide needs). */
async function run(words: { value: string }[][], line: ShellLine): Promise<string> {
  const [first, ...rest] = words as [{ value: string }[], ...{ value: string }[][]];
  const argv = first.map((w) => w.value);
  const later = rest.map((c) => c.map((w) => w.value));
  if (argv[0] === "curl") {
    const response = await curl(argv.slice(1), line);
    let out = response.body;
    for (const cmd of later) {
      if (cmd[0] === "head") continue;
      if (cmd[0] === "jq" && cmd[1] === "-r" && cmd.length === 3) out = jqRaw(JSON.parse(out), cmd[2] as string);
      else throw new Error(`${where(line)}: unsupported command after curl: ${cmd.join(" ")}`);
    }
    return out;
  }
  const base64 = later.length === 1 && later[0]?.join(" ") === "base64 -w0";
  if (argv[0] === "base64" && argv[1] === "-w0" && argv.length === 3 && later.length === 0) {
    const bytes = files.get(argv[2] as string);
    if (bytes === undefined) throw new Error(`${where(line)}: no fixture for ${argv[2]}`);
    return bytes.toString("base64");
  }
  if (argv[0] === "head" && argv[1] === "-c" && /^(\/dev\/zero|\/dev\/urandom)$/.test(argv[3] ?? "") && base64) {
    const n = Number(argv[2]);
    if (!Number.isInteger(n) || n < 0 || n > 16 * 1024 * 1024) throw new Error(`${where(line)}: bad size ${argv[2]}`);
    return Buffer.alloc(n).toString("base64"); // zeros stand in for random bytes too
  }
  throw new Error(`${where(line)}: unsupported command: ${[argv, ...later].map((c) => c.join(" ")).join(" | ")}`);
}

/** `name;k=v;k=v, ...` (RFC 9651 list) as name -> params. */
function sfList(value: string): Map<string, Map<string, string>> {
  return new Map(
    value.split(",").map((item) => {
      const [name, ...params] = item.trim().split(";");
      return [
        (name ?? "").replace(/"/g, ""),
        new Map(params.map((p) => p.split("=") as [string, string]).map(([k, v]) => [k.trim(), (v ?? "").trim()])),
      ];
    }),
  );
}

/** Checks what a command's documented output claims about headers and JSON fields. */
function checkOutput(r: Ran): string[] {
  const problems: string[] = [];
  const lines = r.line.output;
  if (r.request.include) {
    for (const o of lines) {
      const h = /^([a-z][a-z0-9-]*): (.*)$/.exec(o);
      if (h === null) continue;
      const [, name, documented] = h as unknown as [string, string, string];
      const actual = r.response.headers[name];
      if (actual === undefined) {
        problems.push(`${where(r.line)}: header ${name} is documented but not sent`);
        continue;
      }
      if (name === "ratelimit" || name === "ratelimit-policy") {
        const got = sfList(String(actual));
        for (const [policy, params] of sfList(documented)) {
          for (const k of ["q", "w", "r"]) {
            const want = params.get(k);
            if (want === undefined || !/^\d+$/.test(want)) continue;
            const have = got.get(policy)?.get(k);
            if (have !== want)
              problems.push(`${where(r.line)}: ${name} "${policy}";${k}=${want} documented, sent ${actual}`);
          }
        }
      } else if (!documented.includes("…") && !/\d/.test(documented) && !String(actual).startsWith(documented)) {
        problems.push(`${where(r.line)}: ${name}: ${documented} documented, sent ${actual}`);
      }
    }
  }
  // Every field the sample output names must be in the answer.
  const first = lines.findIndex((o) => /^[{[]/.test(o));
  if (first >= 0) {
    const sample = lines.slice(first).join("\n");
    for (const m of sample.matchAll(/"([A-Za-z_][A-Za-z0-9_-]*)":/g)) {
      if (!r.response.body.includes(`"${m[1]}":`)) {
        problems.push(`${where(r.line)}: field "${m[1]}" in the sample output is not in the answer`);
      }
    }
  }
  return problems;
}

describe(`${GUIDE} examples`, () => {
  it("state an expected status for every curl, and every curl sits in an sh block", () => {
    expect(shellBlockLines.filter(isCurl).length).toBeGreaterThan(20);
    const missing = shellBlockLines.filter((l) => isCurl(l) && expectedStatus(l) === undefined).map(where);
    expect(missing).toEqual([]);
    // A curl outside an `sh` block would never run: make it runnable or not a curl.
    const stray = blocks
      .filter((b) => !isShell(b))
      .flatMap((b) => b.body.map((text, i) => ({ text, line: b.line + 1 + i })))
      .filter((l) => /(^|[\s($])curl\s/.test(l.text))
      .map((l) => `${GUIDE}:${l.line}: ${l.text}`);
    expect(stray).toEqual([]);
  });

  it("run in order against the app with the documented statuses, headers and fields", async () => {
    const env = new Map<string, string>();
    for (const line of shellBlockLines) {
      const tokens = tokenize(line.text, env);
      const head = tokens[0];
      const assignment = head?.kind === "word" ? /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(head.value) : null;
      if (head?.kind === "word" && assignment !== null) {
        if (tokens.length !== 1) throw new Error(`${where(line)}: only NAME=word or NAME=$(...) is supported`);
        const name = assignment[1] as string;
        const value = head.value.slice(name.length + 1);
        if (head.sub !== undefined) {
          if (value !== "\u0000") throw new Error(`${where(line)}: $( ) must be the whole value`);
          env.set(name, (await run(pipeline(tokenize(head.sub, env)), line)).trimEnd());
        } else env.set(name, value);
        continue;
      }
      await run(pipeline(tokens), line);
    }
    expect(ran.length).toBe(shellBlockLines.filter(isCurl).length);
    expect(ran.flatMap(checkOutput)).toEqual([]);
  }, 120_000);

  it("shows every component check of /health in its sample", async () => {
    const health = ran.find((r) => r.request.url === `${ORIGIN}/health`);
    expect(health).toBeDefined();
    const documented = [...(health as Ran).line.output.join("\n").matchAll(/"([a-z_]+)":\{"status"/g)].map((m) => m[1]);
    const actual = Object.keys((health as Ran).response.json().checks);
    expect(actual.length).toBeGreaterThanOrEqual(6);
    expect([...documented].sort()).toEqual([...actual].sort());
  });
});

describe("shell example reader", () => {
  const block = (body: string) => shellLines({ info: "sh", line: 1, body: body.split("\n") });

  it("reads the status from a trailing comment or the -i status line, and finds none otherwise", () => {
    const [a, b, c] = block(
      "curl -s -X DELETE http://x/a   # 204\n\ncurl -si http://x/b \\\n  -H 'a: b'\n# HTTP/1.1 404 Not Found\n\ncurl -s http://x/c # the list",
    ) as [ShellLine, ShellLine, ShellLine];
    expect(expectedStatus(a)).toBe(204);
    expect(b.text).toBe("curl -si http://x/b  -H 'a: b'");
    expect(expectedStatus(b)).toBe(404);
    expect(expectedStatus(c)).toBeUndefined();
  });

  it("unquotes, expands variables and keeps command substitutions for the runner", () => {
    const env = new Map([["KEY", "vla_live_x"]]);
    const tokens = tokenize(`curl -H "X-API-Key: $KEY" -d '{"a":"$KEY"}' -F name="a b" | jq -r .id`, env);
    expect(tokens).toEqual([
      { kind: "word", value: "curl" },
      { kind: "word", value: "-H" },
      { kind: "word", value: "X-API-Key: vla_live_x" },
      { kind: "word", value: "-d" },
      { kind: "word", value: '{"a":"$KEY"}' },
      { kind: "word", value: "-F" },
      { kind: "word", value: "name=a b" },
      { kind: "pipe" },
      { kind: "word", value: "jq" },
      { kind: "word", value: "-r" },
      { kind: "word", value: ".id" },
    ]);
    expect(tokenize("ID=$(curl -s http://x | jq -r .id)", env)).toEqual([
      { kind: "word", value: "ID=\u0000", sub: "curl -s http://x | jq -r .id" },
    ]);
    expect(() => tokenize("curl $UNSET", env)).toThrow(/before it is set/);
    expect(() => tokenize("curl http://x > out", env)).toThrow(/unsupported/);
    expect(() => parseCurl(["--compressed", "http://x"])).toThrow(/unsupported curl option/);
  });

  it("builds requests as curl does", () => {
    expect(parseCurl(["-s", "http://x/t", "-d", "a=1", "-d", "b=2"])).toMatchObject({
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      data: ["a=1", "b=2"],
    });
    expect(parseCurl(["-X", "DELETE", "http://x/k"]).method).toBe("DELETE");
    expect(jqRaw({ a: { b: [{ c: "x" }] } }, ".a.b[0].c")).toBe("x");
    expect(jqRaw({ a: null }, ".a")).toBe("null");
  });
});
