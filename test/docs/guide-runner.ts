import { readFileSync } from "node:fs";
import path from "node:path";
import type { LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import type { App } from "../../src/app.ts";
import { flushLogs } from "../inference/helpers.ts";
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
 * Runs the `sh` blocks of a Markdown guide in order against an app, as a reader would paste them:
 * variables captured from earlier answers (`KEY=$(curl ... | jq -r .key)`), each curl's status
 * checked against the one the guide states, the headers its `-i` output shows present (RateLimit
 * quotas and remaining counts equal), and the JSON fields its sample output names present.
 */

const root = path.resolve(import.meta.dirname, "../..");
export const ORIGIN = "http://localhost:8000";

export interface Ran {
  readonly line: ShellLine;
  readonly request: CurlRequest;
  readonly response: LightMyRequestResponse;
}

export interface Guide {
  readonly file: string;
  readonly lines: ShellLine[];
  /** Lines of non-`sh` blocks that hold a curl (they would never run). */
  readonly stray: string[];
}

const CURL_LINE = /^(?:[A-Za-z_][A-Za-z0-9_]*=\$\()?curl\s/;
export const isCurl = (l: ShellLine): boolean => CURL_LINE.test(l.text);

export function readGuide(file: string): Guide {
  const blocks = codeBlocks(readFileSync(path.join(root, file), "utf8"));
  return {
    file,
    lines: blocks.filter(isShell).flatMap(shellLines),
    stray: blocks
      .filter((b) => !isShell(b))
      .flatMap((b) => b.body.map((text, i) => ({ text, line: b.line + 1 + i })))
      .filter((l) => /(^|[\s($])curl\s/.test(l.text))
      .map((l) => `${file}:${l.line}: ${l.text}`),
  };
}

export interface RunOptions {
  readonly app: App;
  /** Files the examples read (`-F image=@frame.jpg`, `base64 -w0 frame.jpg`). */
  readonly files: ReadonlyMap<string, Buffer>;
  /** Literal placeholders in curl arguments (e.g. `<from the email>`) and how to fill them in. */
  readonly placeholders?: Record<string, (request: CurlRequest) => Promise<string>>;
}

export class GuideRunner {
  readonly ran: Ran[] = [];
  private readonly env = new Map<string, string>();

  private readonly guide: Guide;
  private readonly options: RunOptions;

  constructor(guide: Guide, options: RunOptions) {
    this.guide = guide;
    this.options = options;
  }

  where(l: ShellLine): string {
    return `${this.guide.file}:${l.line}: ${l.text.slice(0, 160)}`;
  }

  /** Runs every line in order; fails at the first unexpected status. */
  async runAll(): Promise<void> {
    for (const line of this.guide.lines) {
      const tokens = tokenize(line.text, this.env);
      const head = tokens[0];
      const assignment = head?.kind === "word" ? /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(head.value) : null;
      if (head?.kind === "word" && assignment !== null) {
        if (tokens.length !== 1) throw new Error(`${this.where(line)}: only NAME=word or NAME=$(...) is supported`);
        const name = assignment[1] as string;
        const value = head.value.slice(name.length + 1);
        if (head.sub !== undefined) {
          if (value !== "\u0000") throw new Error(`${this.where(line)}: $( ) must be the whole value`);
          this.env.set(name, (await this.run(pipeline(tokenize(head.sub, this.env)), line)).trimEnd());
        } else this.env.set(name, value);
        continue;
      }
      await this.run(pipeline(tokens), line);
    }
  }

  private async curl(args: string[], line: ShellLine): Promise<LightMyRequestResponse> {
    let filled = args;
    for (const [placeholder, fill] of Object.entries(this.options.placeholders ?? {})) {
      if (!filled.some((a) => a.includes(placeholder))) continue;
      const value = await fill(parseCurl(filled));
      filled = filled.map((a) => a.split(placeholder).join(value));
    }
    const request = parseCurl(filled);
    if (!request.url.startsWith(ORIGIN)) throw new Error(`${this.where(line)}: URL outside ${ORIGIN}`);
    const headers = { ...request.headers };
    let payload: string | Buffer | undefined;
    if (request.form.length > 0) {
      const m = multipartBody(request.form, this.options.files);
      payload = m.body;
      headers["content-type"] = m.contentType;
    } else if (request.data.length > 0) payload = request.data.join("&");
    // History rows are written in batches off the request path; write them now, as a second would.
    await flushLogs(this.options.app);
    const response = await this.options.app.inject({
      method: request.method as "GET",
      url: request.url.slice(ORIGIN.length) || "/",
      headers,
      ...(payload === undefined ? {} : { payload }),
    });
    this.ran.push({ line, request, response });
    expect(response.statusCode, `${this.where(line)}\n-> ${response.body.slice(0, 500)}`).toBe(expectedStatus(line));
    return response;
  }

  /** Runs a pipeline and returns its standard output (only what the guides need). */
  private async run(words: { value: string }[][], line: ShellLine): Promise<string> {
    const [first, ...rest] = words as [{ value: string }[], ...{ value: string }[][]];
    const argv = first.map((w) => w.value);
    const later = rest.map((c) => c.map((w) => w.value));
    let out: string;
    if (argv[0] === "curl") {
      out = (await this.curl(argv.slice(1), line)).body;
    } else if (argv[0] === "echo" && argv.length === 2) {
      out = `${argv[1]}\n`;
    } else if (argv[0] === "base64" && argv[1] === "-w0" && argv.length === 3) {
      const bytes = this.options.files.get(argv[2] as string);
      if (bytes === undefined) throw new Error(`${this.where(line)}: no fixture for ${argv[2]}`);
      out = bytes.toString("base64");
    } else if (argv[0] === "head" && argv[1] === "-c" && /^\/dev\/(zero|urandom)$/.test(argv[3] ?? "")) {
      const n = Number(argv[2]);
      if (!Number.isInteger(n) || n < 0 || n > 16 * 1024 * 1024) throw new Error(`${this.where(line)}: bad size`);
      if (later[0]?.join(" ") !== "base64 -w0") throw new Error(`${this.where(line)}: raw bytes must go to base64`);
      later.shift();
      out = Buffer.alloc(n).toString("base64"); // zeros stand in for random bytes too
    } else throw new Error(`${this.where(line)}: unsupported command: ${argv.join(" ")}`);
    for (const cmd of later) {
      if (cmd[0] === "head" && argv[0] === "curl") continue;
      if (cmd[0] === "jq" && cmd[1] === "-r" && cmd.length === 3) out = jqRaw(JSON.parse(out), cmd[2] as string);
      else throw new Error(`${this.where(line)}: unsupported command in a pipeline: ${cmd.join(" ")}`);
    }
    return out;
  }

  /** What the documented output claims about headers and JSON fields, where it does not hold. */
  outputProblems(): string[] {
    return this.ran.flatMap((r) => this.checkOutput(r));
  }

  private checkOutput(r: Ran): string[] {
    const problems: string[] = [];
    const lines = r.line.output;
    if (r.request.include) {
      for (const o of lines) {
        const h = /^([a-z][a-z0-9-]*): (.*)$/.exec(o);
        if (h === null) continue;
        const [, name, documented] = h as unknown as [string, string, string];
        const actual = r.response.headers[name];
        if (actual === undefined) {
          problems.push(`${this.where(r.line)}: header ${name} is documented but not sent`);
          continue;
        }
        if (name === "ratelimit" || name === "ratelimit-policy") {
          const got = sfList(String(actual));
          for (const [policy, params] of sfList(documented)) {
            for (const k of ["q", "w", "r"]) {
              const want = params.get(k);
              if (want === undefined || !/^\d+$/.test(want)) continue;
              if (got.get(policy)?.get(k) !== want) {
                problems.push(`${this.where(r.line)}: ${name} "${policy}";${k}=${want} documented, sent ${actual}`);
              }
            }
          }
        } else if (!documented.includes("…") && !/\d/.test(documented) && !String(actual).startsWith(documented)) {
          problems.push(`${this.where(r.line)}: ${name}: ${documented} documented, sent ${actual}`);
        }
      }
    }
    // Every field the sample output names must be in the answer.
    const first = lines.findIndex((o) => /^[{[]/.test(o));
    if (first >= 0) {
      const sample = lines.slice(first).join("\n");
      for (const m of sample.matchAll(/"([A-Za-z_][A-Za-z0-9_-]*)":/g)) {
        if (!r.response.body.includes(`"${m[1]}":`)) {
          problems.push(`${this.where(r.line)}: field "${m[1]}" in the sample output is not in the answer`);
        }
      }
    }
    return problems;
  }
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
