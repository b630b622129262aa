import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { jpeg } from "../inference/helpers.ts";
import { GuideRunner, isCurl, ORIGIN, type Ran, readGuide } from "./guide-runner.ts";
import { expectedStatus, jqRaw, parseCurl, type ShellLine, shellLines, tokenize } from "./shell-examples.ts";

/** docs/api-guide.md, run top to bottom against a test app (see guide-runner.ts). */

const GUIDE = "docs/api-guide.md";
const guide = readGuide(GUIDE);

let t: TestContext;
let runner: GuideRunner;
beforeAll(async () => {
  t = await buildTestApp();
  runner = new GuideRunner(guide, { app: t.app, files: new Map([["frame.jpg", await jpeg(224, 224, 7)]]) });
});
afterAll(async () => {
  await t?.close();
});

describe(`${GUIDE} examples`, () => {
  it("state an expected status for every curl, and every curl sits in an sh block", () => {
    expect(guide.lines.filter(isCurl).length).toBeGreaterThan(20);
    const missing = guide.lines.filter((l) => isCurl(l) && expectedStatus(l) === undefined).map((l) => runner.where(l));
    expect(missing).toEqual([]);
    // A curl outside an `sh` block would never run: make it runnable or not a curl.
    expect(guide.stray).toEqual([]);
  });

  it("run in order against the app with the documented statuses, headers and fields", async () => {
    await runner.runAll();
    expect(runner.ran.length).toBe(guide.lines.filter(isCurl).length);
    expect(runner.outputProblems()).toEqual([]);
  }, 120_000);

  it("shows every component check of /health in its sample", async () => {
    const health = runner.ran.find((r) => r.request.url === `${ORIGIN}/health`);
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
