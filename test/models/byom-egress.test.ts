import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { postBytes } from "../../src/modules/models/backends/remote/http-post.ts";
import { type ModelDefinition, PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import {
  createGuardedAgents,
  type EgressPolicy,
  EgressRefusedError,
  parseCidr,
  type Resolver,
  refusedUrl,
} from "../../src/platform/egress.ts";
import { AppError } from "../../src/platform/errors.ts";
import { jpeg } from "../engine/helpers.ts";

/**
 * The SSRF guard on real sockets, with loopback only: every server here listens on 127.0.0.1 and
 * the injected resolver decides what a name "resolves" to. A refused name must never reach a
 * socket: the servers count TCP connections, not just requests.
 */

interface CountingServer {
  readonly port: number;
  connections: number;
  requests: number;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  close(): Promise<void>;
}

async function countingServer(handler: CountingServer["handler"]): Promise<CountingServer> {
  const state = { connections: 0, requests: 0, handler } as CountingServer & { server: Server };
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      state.requests += 1;
      state.handler(req, res);
    });
  });
  server.on("connection", () => {
    state.connections += 1;
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  Object.assign(state, {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  return state;
}

const servers: CountingServer[] = [];
async function server(handler: CountingServer["handler"]): Promise<CountingServer> {
  const s = await countingServer(handler);
  servers.push(s);
  return s;
}

const ok = (_req: IncomingMessage, res: ServerResponse) => {
  const body = JSON.stringify(encodeJsonNumpy(new Float64Array([0.1, 0.2, 0.3, 0, 0, 0, 1]), [7]));
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
};

/** A resolver whose answers a test sets per name (and may change: DNS rebinding). */
function fakeDns(map: Record<string, string[]>): Resolver & { calls: string[]; map: Record<string, string[]> } {
  const calls: string[] = [];
  const fn: Resolver = async (host) => {
    calls.push(host);
    const list = map[host];
    if (list === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    return list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }) as const);
  };
  return Object.assign(fn, { calls, map });
}

const httpNoNetworks: EgressPolicy = { allowHttp: true, allowedNetworks: [] };
const loopbackAllowed: EgressPolicy = { allowHttp: true, allowedNetworks: [parseCidr("127.0.0.0/8")] };

async function post(url: string, policy: EgressPolicy, resolver: Resolver) {
  const agents = createGuardedAgents(policy, resolver);
  try {
    return await postBytes(
      url,
      "{}",
      { "content-type": "application/json" },
      {
        signal: AbortSignal.timeout(5_000),
        maxBytes: 1024,
        agents,
      },
    );
  } finally {
    agents.close();
  }
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a failure");
}

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe("guarded agents: every connection is checked", () => {
  it("a name resolving to a non-allow-listed address is refused before any socket connects", async () => {
    const s = await server(ok);
    const dns = fakeDns({ "model.customer.example": ["127.0.0.1"] });
    const e = await failure(post(`http://model.customer.example:${s.port}/act`, httpNoNetworks, dns));
    expect(e).toBeInstanceOf(EgressRefusedError);
    expect((e as Error).message).toBe(
      "egress refused: model.customer.example does not resolve to public addresses only",
    );
    expect((e as EgressRefusedError).detail).toMatch(/127\.0\.0\.1 is not a public address \(loopback\)/);
    expect(dns.calls).toEqual(["model.customer.example"]);
    expect(s.connections).toBe(0);
  });

  it("DNS rebinding: public at registration, loopback at connection time, refused with no connection", async () => {
    const s = await server(ok);
    const dns = fakeDns({ "rebind.example": ["93.184.216.34"] });
    const url = `http://rebind.example:${s.port}`;
    expect(await refusedUrl(url, httpNoNetworks, dns)).toBeUndefined(); // registration passes
    dns.map["rebind.example"] = ["127.0.0.1"]; // the attacker's DNS now answers loopback
    const e = await failure(post(`${url}/act`, httpNoNetworks, dns));
    expect(e).toBeInstanceOf(EgressRefusedError);
    expect((e as EgressRefusedError).detail).toMatch(/rebind\.example: 127\.0\.0\.1 .*loopback/);
    expect(dns.calls).toEqual(["rebind.example", "rebind.example"]);
    expect(s.connections).toBe(0);
  });

  it("a literal IP host (which skips lookup) is checked by the agent", async () => {
    const s = await server(ok);
    const dns = fakeDns({});
    for (const host of ["127.0.0.1", "[::ffff:127.0.0.1]"]) {
      const e = await failure(post(`http://${host}:${s.port}/act`, httpNoNetworks, dns));
      expect(e).toBeInstanceOf(EgressRefusedError);
      expect((e as Error).message).toMatch(/loopback/);
    }
    expect(dns.calls).toEqual([]);
    expect(s.connections).toBe(0);
  });

  it("https: the same refusals happen before TLS or TCP (a name, a literal IP)", async () => {
    const s = await server(ok);
    const dns = fakeDns({ "secure.example": ["127.0.0.1"] });
    const strict: EgressPolicy = { allowHttp: false, allowedNetworks: [] };
    for (const url of [`https://secure.example:${s.port}/act`, `https://127.0.0.1:${s.port}/act`]) {
      const e = await failure(post(url, strict, dns));
      expect(e, url).toBeInstanceOf(EgressRefusedError);
    }
    expect(dns.calls).toEqual(["secure.example"]);
    expect(s.connections).toBe(0);
  });

  it("inside an operator allow-listed network the call goes to the checked address", async () => {
    const s = await server(ok);
    const dns = fakeDns({ "gpu.internal.example": ["127.0.0.1"] });
    const res = await post(`http://gpu.internal.example:${s.port}/act`, loopbackAllowed, dns);
    expect(res.status).toBe(200);
    expect(dns.calls).toEqual(["gpu.internal.example"]);
    expect(s.connections).toBe(1);
  });
});

let image: Buffer;
beforeAll(async () => {
  image = await jpeg(64, 48, 2);
});

const engines: InferenceEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

/** An engine serving one openvla-http model whose backend passes the guard (as a customer's does). */
function guardedEngine(
  endpoint: string,
  dns: Resolver,
  extra: Record<string, unknown> = {},
  policy: EgressPolicy = loopbackAllowed,
): InferenceEngine {
  const reg = parseRegistry(
    {
      models: [
        {
          id: "byom",
          backend: { kind: "openvla-http", endpoints: [endpoint], retries: 0, ...extra },
          action: { dim: 7, chunk: 1 },
          dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
          default_unnorm_key: "bridge_orig",
        },
      ],
    },
    PROJECT_ROOT,
  );
  const def = reg.models[0] as ModelDefinition;
  const guarded = {
    ...def,
    backend: { ...def.backend, egress: { policy, resolver: dns } },
  } as ModelDefinition;
  const e = new InferenceEngine({ defaultModel: "byom", models: [guarded] });
  engines.push(e);
  return e;
}

const infer = (e: InferenceEngine) =>
  e.infer({ model: "byom", imageBytes: image, instruction: "pick up the block", customerId: "c" });

describe("a customer's endpoint answers are refused unless proper", () => {
  it("a redirect is an error and its Location is never followed", async () => {
    const target = await server(ok);
    const s = await server((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${target.port}/act`, "content-length": "0" });
      res.end();
    });
    const dns = fakeDns({ "redirecting.example": ["127.0.0.1"] });
    const e = await failure(infer(guardedEngine(`http://redirecting.example:${s.port}`, dns)));
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe("model_unavailable");
    expect((e as AppError).message).toMatch(/redirect \(HTTP 302\), which is never followed/);
    expect(s.requests).toBe(1);
    expect(target.connections).toBe(0);
  });

  it("an answer larger than max_response_bytes is invalid_model_output", async () => {
    const s = await server((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }); // no length: chunked, counted while read
      res.end(JSON.stringify({ padding: "x".repeat(4096) }));
    });
    const dns = fakeDns({ "big.example": ["127.0.0.1"] });
    const e = await failure(infer(guardedEngine(`http://big.example:${s.port}`, dns, { max_response_bytes: 1024 })));
    expect((e as AppError).code).toBe("invalid_model_output");
    expect((e as AppError).message).toMatch(/exceeds the limit of 1024 bytes/);
  });

  it.each([
    ["a non-finite action", encodeJsonNumpy(new Float64Array([Number.NaN, 0, 0, 0, 0, 0, 1]), [7])],
    ["the wrong dimension", encodeJsonNumpy(new Float64Array([0, 0, 1]), [3])],
    ["not an array", { action: [0, 0, 0, 0, 0, 0, 1] }],
  ])("%s is invalid_model_output", async (_what, answer) => {
    const s = await server((_req, res) => {
      const body = JSON.stringify(answer);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    const e = await failure(
      infer(guardedEngine(`http://odd.example:${s.port}`, fakeDns({ "odd.example": ["127.0.0.1"] }))),
    );
    expect((e as AppError).code).toBe("invalid_model_output");
  });

  it("a proper answer is served", async () => {
    const s = await server(ok);
    const r = await infer(guardedEngine(`http://fine.example:${s.port}`, fakeDns({ "fine.example": ["127.0.0.1"] })));
    expect(r.model).toBe("byom");
    expect(r.action).toEqual([0.1, 0.2, 0.3, 0, 0, 0, 1]);
  });
});

describe("kserve-v2 customer endpoints go through the same guard", () => {
  const kserve = { kind: "kserve-v2", model_name: "openvla" };

  it("a name resolving to a refused address: model_unavailable naming the refusal, no connection", async () => {
    const s = await server(ok);
    const dns = fakeDns({ "triton.example": ["127.0.0.1"] });
    const e = await failure(infer(guardedEngine(`http://triton.example:${s.port}`, dns, kserve, httpNoNetworks)));
    expect((e as AppError).code).toBe("model_unavailable");
    expect((e as AppError).message).toMatch(
      /egress refused: triton\.example does not resolve to public addresses only/,
    );
    expect((e as AppError).message).not.toMatch(/127\.0\.0\.1/); // the customer never learns the address
    expect(dns.calls).toEqual(["triton.example"]);
    expect(s.connections).toBe(0);
  });

  it("a redirect answer is refused, its Location not followed", async () => {
    const target = await server(ok);
    const s = await server((_req, res) => {
      res.writeHead(307, {
        location: `http://127.0.0.1:${target.port}/v2/models/openvla/infer`,
        "content-length": "0",
      });
      res.end();
    });
    const dns = fakeDns({ "triton.example": ["127.0.0.1"] });
    const e = await failure(infer(guardedEngine(`http://triton.example:${s.port}`, dns, kserve)));
    expect((e as AppError).code).toBe("model_unavailable");
    expect((e as AppError).message).toMatch(/redirect \(HTTP 307\), which is never followed/);
    expect(target.connections).toBe(0);
  });
});

describe("closing a customer's model", () => {
  it("ends its calls to an endpoint that never answers: the drain is not held for timeout_ms", async () => {
    // The endpoint reads the request and never answers; the call's own limit is a minute.
    let open = 0;
    const hung = createServer((req) => req.resume());
    hung.on("connection", (socket) => {
      open += 1;
      socket.on("close", () => {
        open -= 1;
      });
    });
    await new Promise<void>((r) => hung.listen(0, "127.0.0.1", r));
    const port = (hung.address() as AddressInfo).port;
    const reg = parseRegistry(
      {
        models: [
          {
            id: "byom",
            backend: {
              kind: "openvla-http",
              endpoints: [`http://hung.example:${port}`],
              retries: 0,
              timeout_ms: 60_000,
            },
            action: { dim: 7, chunk: 1 },
            dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
            default_unnorm_key: "bridge_orig",
          },
          {
            id: "public",
            backend: { kind: "mock" },
            action: { dim: 7, chunk: 1 },
            dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
            default_unnorm_key: "bridge_orig",
          },
        ],
      },
      PROJECT_ROOT,
    );
    const [byom, pub] = reg.models as [ModelDefinition, ModelDefinition];
    const e = new InferenceEngine({ defaultModel: "public", models: [pub] });
    engines.push(e);
    const owner = { customerId: "7c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5", isSuperuser: false };
    const egress = { policy: loopbackAllowed, resolver: fakeDns({ "hung.example": ["127.0.0.1"] }) };
    await e.putCustomerModel(owner.customerId, { ...byom, backend: { ...byom.backend, egress } } as ModelDefinition);
    const request = e.infer({
      model: "byom",
      imageBytes: image,
      instruction: "pick up the block",
      customerId: owner.customerId,
      viewer: owner,
      timeoutMs: 200,
    });
    expect(((await failure(request)) as AppError).code).toBe("inference_timeout");
    expect(open).toBe(1); // the call still waits on its connection
    // Deleting the model (or shutting down) must not wait out the endpoint's minute.
    await e.removeCustomerModel(owner.customerId, "byom");
    await new Promise((r) => setImmediate(r));
    await vi.waitFor(() => expect(open).toBe(0));
    await new Promise<void>((r) => {
      hung.closeAllConnections();
      hung.close(() => r());
    });
  });
});
