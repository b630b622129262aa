/**
 * A parser for the Prometheus text exposition format (version 0.0.4), enough to read a
 * backend's /metrics page (Triton serves it on :8002/metrics): `# HELP`/`# TYPE` and other
 * comments are skipped; samples are `name{label="value",...} value [timestamp]`. Label values
 * unescape `\\`, `\"` and `\n`; values accept NaN, +Inf, -Inf and exponents. A malformed line
 * makes the whole page invalid (a garbage answer must not yield half-read numbers).
 */
export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export class PromParseError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "PromParseError";
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

function parseValue(s: string): number | undefined {
  switch (s) {
    case "NaN":
      return Number.NaN;
    case "+Inf":
    case "Inf":
      return Number.POSITIVE_INFINITY;
    case "-Inf":
      return Number.NEGATIVE_INFINITY;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

export function parsePromText(text: string): PromSample[] {
  const out: PromSample[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const lineNo = i + 1;
    const nameMatch = NAME.exec(line);
    if (nameMatch === null) throw new PromParseError(lineNo, "expected a metric name");
    const name = nameMatch[0];
    let pos = name.length;
    const labels: Record<string, string> = {};
    if (line[pos] === "{") {
      pos += 1;
      for (;;) {
        while (line[pos] === " ") pos += 1;
        if (line[pos] === "}") {
          pos += 1;
          break;
        }
        const ln = LABEL_NAME.exec(line.slice(pos));
        if (ln === null) throw new PromParseError(lineNo, "expected a label name");
        pos += ln[0].length;
        while (line[pos] === " ") pos += 1;
        if (line[pos] !== "=" || line[pos + 1] !== '"') throw new PromParseError(lineNo, 'expected ="');
        pos += 2;
        let value = "";
        for (;;) {
          const c = line[pos];
          if (c === undefined) throw new PromParseError(lineNo, "unterminated label value");
          pos += 1;
          if (c === '"') break;
          if (c === "\\") {
            const n = line[pos];
            pos += 1;
            if (n === "n") value += "\n";
            else if (n === "\\" || n === '"') value += n;
            else throw new PromParseError(lineNo, "invalid escape in a label value");
          } else value += c;
        }
        labels[ln[0]] = value;
        while (line[pos] === " ") pos += 1;
        if (line[pos] === ",") pos += 1;
        else if (line[pos] !== "}") throw new PromParseError(lineNo, "expected , or }");
      }
    }
    const rest = line.slice(pos).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === "") throw new PromParseError(lineNo, "expected a value");
    const value = parseValue(rest[0] as string);
    if (value === undefined) throw new PromParseError(lineNo, `invalid value ${JSON.stringify(rest[0])}`);
    if (rest.length === 2 && !/^-?\d+$/.test(rest[1] as string)) throw new PromParseError(lineNo, "invalid timestamp");
    out.push({ name, labels, value });
  }
  return out;
}
