import { describe, expect, it } from "vitest";
import { type EgressGuard, parseAllowedNetwork, refusedUrl } from "../../platform/egress.ts";
import { parseCustomerModel } from "./customer-model-definition.ts";
import { customerModelExample } from "./models.schemas.ts";

const A = "0b5e2c3d-4f6a-4b7c-8d9e-0f1a2b3c4d5e";
const B = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

/** 10.20.0.0/16 peered for customer A alone; 10.30.0.0/16 for everyone. */
const egress: EgressGuard = {
  policy: {
    allowHttp: false,
    allowedNetworks: [parseAllowedNetwork(`${A.toUpperCase()}=10.20.0.0/16`), parseAllowedNetwork("10.30.0.0/16")],
  },
  resolver: async (host) => [{ address: host === "gpu.a.example" ? "10.20.0.5" : "93.184.216.34", family: 4 }],
};

const doc = (endpoint: string) => ({
  ...customerModelExample,
  id: "m",
  backend: { kind: "openvla-http", endpoints: [endpoint] },
});

describe("parseCustomerModel: networks allow-listed for one customer", () => {
  it("are that customer's alone: literal addresses", () => {
    expect(parseCustomerModel(doc("https://10.20.0.5"), A, egress).ok).toBe(true);
    const other = parseCustomerModel(doc("https://10.20.0.5"), B, egress);
    expect(other.ok).toBe(false);
    expect(other.endpointErrors?.[0]?.message).toMatch(/not a public address/);
    // A network allow-listed for everyone is everyone's.
    expect(parseCustomerModel(doc("https://10.30.0.5"), B, egress).ok).toBe(true);
  });

  it("are that customer's alone: names, at registration and on every connection (the model's guard)", async () => {
    const guardOf = (customerId: string) => {
      const parsed = parseCustomerModel(doc("https://gpu.a.example"), customerId, egress);
      if (!parsed.ok || parsed.def.backend.kind !== "openvla-http") throw new Error("expected a parsed model");
      return parsed.def.backend.egress as EgressGuard;
    };
    const a = guardOf(A);
    const b = guardOf(B);
    expect(await refusedUrl("https://gpu.a.example", a.policy, a.resolver)).toBeUndefined();
    expect(await refusedUrl("https://gpu.a.example", b.policy, b.resolver)).toMatch(/does not resolve to public/);
    expect(b.policy.allowedNetworks.map((n) => n.text)).toEqual(["10.30.0.0/16"]);
  });
});
