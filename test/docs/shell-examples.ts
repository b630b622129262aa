/**
 * Reads the `sh` code blocks of a Markdown guide as the small subset of shell they are written in,
 * so a test can run them against the app and keep the guide honest. Supported, and nothing else
 * (anything else in an `sh` block is an error, so the guide cannot silently drift out of reach):
 *
 *   - comments (`# ...`), blank lines, `\` line continuations;
 *   - `curl [-s] [-i] [-X METHOD] [-H 'Name: value']... [-d DATA]... [-F name=value|name=@file]... URL`,
 *     optionally piped into `head` (ignored) or `jq -r .field.path`;
 *   - assignments `NAME=word` and `NAME=$(command)`, where command is such a curl piped into
 *     `jq -r`, `base64 -w0 FILE`, or `head -c N /dev/zero|/dev/urandom | base64 -w0`;
 *   - words in '...' and "..." (with \" \\ \$ escapes), and $NAME / ${NAME} expansion.
 *
 * Every curl must state the status it expects: a trailing comment that starts with the status
 * (`curl ... # 204`) or, for `curl -i`, an output comment line `# HTTP/1.1 200 OK` below it.
 */

export interface ShellLine {
  /** The logical line (continuations joined), without its trailing comment. */
  readonly text: string;
  /** The trailing comment, without `#`, or undefined. */
  readonly comment: string | undefined;
  /** Comment lines that follow, up to the next command (documented output), without `# `. */
  readonly output: string[];
  /** 1-based line number in the Markdown file. */
  readonly line: number;
}

export interface ShellBlock {
  readonly info: string;
  readonly line: number;
  readonly body: string[];
}

/** The fenced code blocks of a Markdown text, with their info strings. */
export function codeBlocks(markdown: string): ShellBlock[] {
  const lines = markdown.split("\n");
  const blocks: ShellBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+)(.*)$/.exec(lines[i] as string);
    if (open === null) continue;
    const fence = open[2] as string;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !(lines[i] as string).trim().startsWith(fence); i++) body.push(lines[i] as string);
    blocks.push({ info: (open[3] as string).trim(), line: start + 1, body });
  }
  return blocks;
}

export const isShell = (block: ShellBlock): boolean => /^(sh|bash|shell)\b/.test(block.info);

/** Finds where an unquoted `#` starts a comment on a (joined) line, or -1. */
function commentStart(text: string): number {
  let quote: string | null = null;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === "'") {
      if (c === "'") quote = null;
      continue;
    }
    if (c === "\\") {
      i++;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = null;
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    else if (c === "$" && text[i + 1] === "(") {
      depth++;
      i++;
    } else if (c === ")" && depth > 0) depth--;
    else if (c === "#" && (i === 0 || /\s/.test(text[i - 1] as string))) return i;
  }
  return -1;
}

/** The logical lines of an `sh` block: continuations joined, comments split off. */
export function shellLines(block: ShellBlock): ShellLine[] {
  const out: { text: string; comment: string | undefined; output: string[]; line: number }[] = [];
  // Output comments belong to the command right above them; a blank line ends them.
  let afterCommand = false;
  for (let i = 0; i < block.body.length; i++) {
    const line = block.line + 1 + i;
    let text = block.body[i] as string;
    if (text.trim() === "") {
      afterCommand = false;
      continue;
    }
    if (text.trim().startsWith("#")) {
      const last = out[out.length - 1];
      if (afterCommand && last !== undefined) last.output.push(text.trim().replace(/^#\s?/, ""));
      continue;
    }
    afterCommand = true;
    while (/\\\s*$/.test(text) && i + 1 < block.body.length) {
      text = `${text.replace(/\\\s*$/, "")} ${(block.body[++i] as string).trim()}`;
    }
    const at = commentStart(text);
    const comment = at < 0 ? undefined : text.slice(at + 1).trim();
    out.push({ text: (at < 0 ? text : text.slice(0, at)).trim(), comment, output: [], line });
  }
  return out;
}

type Token = { kind: "word"; value: string; sub?: string } | { kind: "pipe" };

/** Splits a command line into words (quotes removed, variables expanded) and pipes. */
export function tokenize(text: string, env: ReadonlyMap<string, string>): Token[] {
  const tokens: Token[] = [];
  let word: string | null = null;
  let sub: string | undefined;
  const variable = (at: number): [string, number] => {
    const braced = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(text.slice(at));
    const plain = /^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(text.slice(at));
    const m = braced ?? plain;
    if (m === null) return ["$", at + 1];
    const name = m[1] as string;
    const value = env.get(name);
    if (value === undefined) throw new Error(`$${name} is used before it is set`);
    return [value, at + m[0].length];
  };
  const end = () => {
    if (word !== null)
      tokens.push(sub === undefined ? { kind: "word", value: word } : { kind: "word", value: word, sub });
    word = null;
    sub = undefined;
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      end();
      i++;
    } else if (c === "|") {
      end();
      tokens.push({ kind: "pipe" });
      i++;
    } else if (c === ";" || c === "&" || c === ">" || c === "<" || c === "`") {
      throw new Error(`unsupported shell syntax ${c} in: ${text}`);
    } else if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) throw new Error(`unclosed ' in: ${text}`);
      word = (word ?? "") + text.slice(i + 1, close);
      i = close + 1;
    } else if (c === '"') {
      word ??= "";
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\" && /["\\$`]/.test(text[i + 1] ?? "")) {
          word += text[i + 1];
          i += 2;
        } else if (text[i] === "$") {
          if (text[i + 1] === "(") throw new Error(`$( ) inside quotes is not supported: ${text}`);
          const [value, next] = variable(i);
          word += value;
          i = next;
        } else {
          word += text[i];
          i++;
        }
      }
      if (i >= text.length) throw new Error(`unclosed " in: ${text}`);
      i++;
    } else if (c === "$" && text[i + 1] === "(") {
      let depth = 1;
      let j = i + 2;
      let quote: string | null = null;
      for (; j < text.length && depth > 0; j++) {
        const d = text[j] as string;
        if (quote !== null) {
          if (d === quote) quote = null;
          else if (d === "\\" && quote === '"') j++;
        } else if (d === "'" || d === '"') quote = d;
        else if (d === "(") depth++;
        else if (d === ")") depth--;
      }
      if (depth !== 0) throw new Error(`unclosed $( in: ${text}`);
      if (sub !== undefined) throw new Error(`two command substitutions in one word: ${text}`);
      sub = text.slice(i + 2, j - 1);
      word = `${word ?? ""}\u0000`;
      i = j;
    } else if (c === "$") {
      const [value, next] = variable(i);
      word = (word ?? "") + value;
      i = next;
    } else if (c === "\\") {
      word = (word ?? "") + (text[i + 1] ?? "");
      i += 2;
    } else {
      word = (word ?? "") + c;
      i++;
    }
  }
  end();
  return tokens;
}

/** Splits tokens at pipes into commands (lists of words). */
export function pipeline(tokens: Token[]): { value: string; sub?: string }[][] {
  const commands: { value: string; sub?: string }[][] = [[]];
  for (const t of tokens) {
    if (t.kind === "pipe") commands.push([]);
    else (commands[commands.length - 1] as { value: string; sub?: string }[]).push(t);
  }
  if (commands.some((c) => c.length === 0)) throw new Error("empty command in a pipeline");
  return commands;
}

export interface CurlRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly data: string[];
  readonly form: { name: string; value: string; file?: string }[];
  readonly include: boolean;
}

/** Reads curl's arguments (the supported subset). */
export function parseCurl(args: string[]): CurlRequest {
  let method: string | undefined;
  let url: string | undefined;
  let include = false;
  const headers: Record<string, string> = {};
  const data: string[] = [];
  const form: CurlRequest["form"] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const next = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`curl ${a} needs a value`);
      return v;
    };
    if (/^-[siS]+$/.test(a)) {
      if (a.includes("i")) include = true;
    } else if (a === "-X" || a === "--request") method = next();
    else if (a === "-H" || a === "--header") {
      const h = next();
      const colon = h.indexOf(":");
      if (colon < 1) throw new Error(`bad header ${h}`);
      headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
    } else if (a === "-d" || a === "--data" || a === "--data-raw") {
      const d = next();
      if (a !== "--data-raw" && d.startsWith("@")) throw new Error(`curl -d @file is not supported: ${d}`);
      data.push(d);
    } else if (a === "-F" || a === "--form") {
      const f = next();
      const eq = f.indexOf("=");
      if (eq < 1) throw new Error(`bad form field ${f}`);
      const name = f.slice(0, eq);
      const value = f.slice(eq + 1);
      form.push(value.startsWith("@") ? { name, value: "", file: value.slice(1) } : { name, value });
    } else if (a.startsWith("-")) throw new Error(`unsupported curl option ${a}`);
    else if (url === undefined) url = a;
    else throw new Error(`a second URL ${a}`);
  }
  if (url === undefined) throw new Error("curl without a URL");
  if (data.length > 0 && form.length > 0) throw new Error("curl with both -d and -F");
  if (data.length > 0 && headers["content-type"] === undefined)
    headers["content-type"] = "application/x-www-form-urlencoded";
  return {
    method: method ?? (data.length > 0 || form.length > 0 ? "POST" : "GET"),
    url,
    headers,
    data,
    form,
    include,
  };
}

/** A multipart/form-data body as curl -F builds it. */
export function multipartBody(
  form: CurlRequest["form"],
  files: ReadonlyMap<string, Buffer>,
): { body: Buffer; contentType: string } {
  const boundary = "------------------------docsguide0123456789";
  const parts: Buffer[] = [];
  for (const f of form) {
    if (f.file !== undefined) {
      const bytes = files.get(f.file);
      if (bytes === undefined) throw new Error(`no fixture for the file ${f.file}`);
      const type = f.file.endsWith(".png") ? "image/png" : "image/jpeg";
      parts.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${f.name}"; filename="${f.file}"\r\n` +
            `Content-Type: ${type}\r\n\r\n`,
        ),
        bytes,
        Buffer.from("\r\n"),
      );
    } else {
      parts.push(
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${f.name}"\r\n\r\n${f.value}\r\n`),
      );
    }
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** `jq -r .a.b[0].c` on a parsed body; strings raw, other values as JSON (null as "null"). */
export function jqRaw(value: unknown, filter: string): string {
  if (!/^(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*)+$/.test(filter)) throw new Error(`unsupported jq filter ${filter}`);
  let v: unknown = value;
  for (const m of filter.matchAll(/\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]/g)) {
    const key = m[1] ?? Number(m[2]);
    v = v !== null && typeof v === "object" ? (v as Record<string | number, unknown>)[key] : null;
    v ??= null;
  }
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** The status a command documents: `# 201 ...` after it, or a `# HTTP/1.1 200 OK` output line. */
export function expectedStatus(line: ShellLine): number | undefined {
  const trailing = /^(\d{3})\b/.exec(line.comment ?? "");
  if (trailing !== null) return Number(trailing[1]);
  for (const o of line.output) {
    const m = /^HTTP\/[\d.]+ (\d{3})\b/.exec(o);
    if (m !== null) return Number(m[1]);
  }
  return undefined;
}
