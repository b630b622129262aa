import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";

/** One answer of the fake: an action (json_numpy float64, shape [7]) or a raw status and body. */
export type FakeAnswer = readonly number[] | { readonly status: number; readonly body: string };

/** What the fake received: the path and the parsed OpenVLA request document. */
export interface FakeCall {
  readonly url: string | undefined;
  readonly doc: Record<string, unknown>;
}

export interface OpenvlaFake {
  /** `http://127.0.0.1:<port>`: a customer endpoint URL (tests allow-list 127.0.0.0/8 and http). */
  readonly url: string;
  readonly calls: FakeCall[];
  close(): Promise<void>;
}

/**
 * A loopback stand-in for a customer's OpenVLA server (`POST /act`, json_numpy): records every
 * call and answers what `answer` returns for it (by default the fixed action `action`).
 */
export async function startOpenvlaFake(
  action: readonly number[] = [0.01, -0.02, 0.03, 0, 0, 0, 1],
  answer: (call: FakeCall) => FakeAnswer = () => action,
): Promise<OpenvlaFake> {
  const calls: FakeCall[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const call = { url: req.url, doc: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> };
      calls.push(call);
      const a = answer(call);
      const [status, body] =
        "status" in a
          ? [a.status, a.body]
          : [200, JSON.stringify(encodeJsonNumpy(new Float64Array(a as number[]), [a.length]))];
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
