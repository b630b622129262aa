import dgram from "node:dgram";
import dns, { type LookupAddress } from "node:dns";
import { describe, expect, it, vi } from "vitest";
import {
  dnsResolver,
  type EgressPolicy,
  EgressRefusedError,
  guardedLookup,
  nonPublicReason,
  parseAllowedNetwork,
  parseCidr,
  parseIp,
  policyFor,
  type Resolver,
  refusedAddress,
  refusedUrl,
  refusedUrlSyntax,
} from "./egress.ts";

const strict: EgressPolicy = { allowHttp: false, allowedNetworks: [] };

describe("nonPublicReason", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.0.0.1", "private network"],
    ["172.16.5.4", "private network"],
    ["172.31.255.255", "private network"],
    ["192.168.1.1", "private network"],
    ["169.254.169.254", "link-local (cloud metadata)"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["0.0.0.0", "this network"],
    ["192.0.0.8", "IETF protocol assignments"],
    ["198.18.0.1", "benchmarking"],
    ["224.0.0.1", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["fd12:3456::1", "unique local (private)"],
    ["fc00::1", "unique local (private)"],
    ["fe80::1", "link-local"],
    ["ff02::1", "multicast"],
    ["::ffff:10.0.0.1", "IPv4-mapped private network"],
    ["::ffff:7f00:1", "IPv4-mapped loopback"],
    ["::ffff:127.0.0.1", "IPv4-mapped loopback"],
    ["::ffff:a9fe:a9fe", "IPv4-mapped link-local (cloud metadata)"],
    ["64:ff9b::10.0.0.1", "NAT64 private network"],
    ["64:ff9b::7f00:1", "NAT64 loopback"],
    ["2002:c0a8:0101::1", "6to4 private network"],
    ["2002:7f00:1::", "6to4 loopback"],
    ["::127.0.0.1", "IPv4-compatible (deprecated)"],
    ["2001:db8::1", "documentation"],
    ["2001:2::1", "benchmarking"],
    ["2001:10::1", "ORCHID"],
    ["3fff::1", "documentation"],
    // Outside 2000::/3: an IPv4-translated (SIIT) loopback, unassigned space.
    ["::ffff:0:7f00:1", "not global unicast (outside 2000::/3)"],
    ["::ffff:0:a00:1", "not global unicast (outside 2000::/3)"],
    ["4000::1", "not global unicast (outside 2000::/3)"],
    ["e000::1", "not global unicast (outside 2000::/3)"],
    ["not-an-ip", "not an IP address"],
    ["fe80::1%eth0", "not an IP address"],
  ])("%s is not public (%s)", (ip, why) => {
    expect(nonPublicReason(ip)).toBe(why);
  });

  it.each([
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",
  ])("%s is public", (ip) => {
    expect(nonPublicReason(ip)).toBeUndefined();
  });
});

describe("parseIp and parseCidr", () => {
  it("parses IPv6 forms into 16 bytes", () => {
    expect([...(parseIp("::ffff:7f00:1") ?? [])].slice(10)).toEqual([0xff, 0xff, 127, 0, 0, 1]);
    expect([...(parseIp("[::1]") ?? [])].at(-1)).toBe(1);
    expect(parseIp("1:2:3:4:5:6:7:8")?.length).toBe(16);
  });
  it("refuses what is not a network", () => {
    for (const bad of ["10.0.0.0/33", "10.0.0.0/8/1", "example.com/8", "fd00::/129", "10.0.0/8", ""]) {
      expect(() => parseCidr(bad), bad).toThrow(/CIDR/);
    }
    expect(parseCidr("10.0.0.0/8").prefix).toBe(8);
    expect(parseCidr("fd00::1").prefix).toBe(128);
  });
});

describe("refusedAddress with an operator allow-list", () => {
  const policy = { allowedNetworks: [parseCidr("10.20.0.0/16"), parseCidr("127.0.0.0/8"), parseCidr("fd00::/8")] };
  it("accepts non-public addresses inside an allow-listed network, mapped ones as their IPv4 address", () => {
    expect(refusedAddress("10.20.3.4", policy)).toBeUndefined();
    expect(refusedAddress("127.0.0.1", policy)).toBeUndefined();
    expect(refusedAddress("::ffff:127.0.0.1", policy)).toBeUndefined();
    expect(refusedAddress("fd00::5", policy)).toBeUndefined();
  });
  it("still refuses the rest", () => {
    expect(refusedAddress("10.21.0.1", policy)).toBe("10.21.0.1 is not a public address (private network)");
    expect(refusedAddress("169.254.169.254", policy)).toMatch(/link-local/);
    expect(refusedAddress("::1", policy)).toMatch(/loopback/);
  });
});

describe("policyFor: a network allow-listed for one owner", () => {
  it("stays in that owner's policy only; unowned ones are everyone's", () => {
    const owner = "0b5e2c3d-4f6a-4b7c-8d9e-0f1a2b3c4d5e";
    const policy: EgressPolicy = {
      allowHttp: false,
      allowedNetworks: [parseAllowedNetwork(`${owner}=10.20.0.0/16`), parseAllowedNetwork("10.30.0.0/16")],
    };
    expect(refusedAddress("10.20.0.5", policyFor(policy, owner.toUpperCase()))).toBeUndefined();
    expect(refusedAddress("10.20.0.5", policyFor(policy, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))).toMatch(
      /not a public address/,
    );
    expect(refusedAddress("10.30.0.5", policyFor(policy, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))).toBeUndefined();
    expect(() => parseAllowedNetwork("acme=10.0.0.0/8")).toThrow(/customer id/);
  });
});

describe("refusedUrlSyntax", () => {
  it("https only unless the operator allows http", () => {
    expect(refusedUrlSyntax("http://models.example.com", strict)).toMatch(/https/);
    expect(refusedUrlSyntax("http://models.example.com", { ...strict, allowHttp: true })).toBeUndefined();
    expect(refusedUrlSyntax("ftp://models.example.com", { ...strict, allowHttp: true })).toMatch(/http/);
    expect(refusedUrlSyntax("https://models.example.com:8443/v1", strict)).toBeUndefined();
  });
  it("no credentials, query or fragment", () => {
    expect(refusedUrlSyntax("https://u:p@models.example.com", strict)).toMatch(/credentials/);
    expect(refusedUrlSyntax("https://models.example.com?x=1", strict)).toMatch(/query/);
    expect(refusedUrlSyntax("not a url", strict)).toBe("not a URL");
  });
  it("checks literal IP hosts, in every spelling", () => {
    for (const url of [
      "https://127.0.0.1",
      "https://10.1.2.3:8000",
      "https://169.254.169.254/latest",
      "https://[::1]:8443",
      "https://[::ffff:10.0.0.1]",
      "https://[::ffff:7f00:1]",
      "https://[::ffff:0:7f00:1]",
      "https://0x7f.1",
      "https://2130706433",
      "https://017700000001",
    ]) {
      expect(refusedUrlSyntax(url, strict), url).toMatch(/not a public address/);
    }
    expect(refusedUrlSyntax("https://8.8.8.8", strict)).toBeUndefined();
  });
});

const resolverOf = (map: Record<string, string[]>): Resolver & { calls: string[] } => {
  const calls: string[] = [];
  const fn = async (host: string) => {
    calls.push(host);
    const list = map[host];
    if (list === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    return list.map((address) => ({ address, family: address.includes(":") ? (6 as const) : (4 as const) }));
  };
  return Object.assign(fn, { calls });
};

describe("refusedUrl (registration)", () => {
  it("refuses a name when any of its addresses is not public", async () => {
    const resolver = resolverOf({ "mixed.example": ["93.184.216.34", "10.0.0.7"], "ok.example": ["93.184.216.34"] });
    expect(await refusedUrl("https://mixed.example", strict, resolver)).toBe(
      "mixed.example does not resolve to public addresses only",
    );
    expect(await refusedUrl("https://ok.example", strict, resolver)).toBeUndefined();
    expect(resolver.calls).toEqual(["mixed.example", "ok.example"]);
  });
  it("names no resolved address, and answers a private name like one that does not exist", async () => {
    // The service's resolver may see private DNS (cluster service names): no internal address or
    // existence may be read off a refusal.
    const resolver = resolverOf({ "postgres.default.svc.cluster.local": ["10.96.12.4"] });
    const internal = await refusedUrl("https://postgres.default.svc.cluster.local", strict, resolver);
    const missing = await refusedUrl("https://nothing.default.svc.cluster.local", strict, resolver);
    expect(internal).not.toMatch(/10\.96|private/);
    expect(internal?.replace("postgres", "nothing")).toBe(missing);
  });
  it("does not resolve a literal IP host", async () => {
    const resolver = resolverOf({});
    expect(await refusedUrl("https://8.8.8.8", strict, resolver)).toBeUndefined();
    expect(resolver.calls).toEqual([]);
  });
});

type LookupResult = { err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number };
const lookup = (fn: ReturnType<typeof guardedLookup>, host: string, options: Parameters<typeof fn>[1]) =>
  new Promise<LookupResult>((resolve) => {
    fn(host, options, (err, address, family) => resolve({ err, address, family }));
  });

describe("guardedLookup (every connection)", () => {
  it("a name resolving to 10.x is refused: the callback gets an EgressRefusedError and no address", async () => {
    const resolver = vi.fn(resolverOf({ "internal.example": ["10.0.0.1"] }));
    const fn = guardedLookup(strict, resolver);
    for (const options of [{}, { all: true }, { family: 4 }]) {
      const r = await lookup(fn, "internal.example", options);
      expect(r.err).toBeInstanceOf(EgressRefusedError);
      // The message reaches the customer: no address; the operator's `detail` has it.
      expect(r.err?.message).toBe("egress refused: internal.example does not resolve to public addresses only");
      expect((r.err as EgressRefusedError).detail).toBe(
        "internal.example: 10.0.0.1 is not a public address (private network)",
      );
      expect(r.address).toBe("");
    }
    expect(resolver).toHaveBeenCalledTimes(3);
  });
  it("a name that does not resolve fails with the same message as a refused one", async () => {
    const fn = guardedLookup(strict, resolverOf({ "internal.example": ["10.0.0.1"] }));
    const refused = await lookup(fn, "internal.example", {});
    const missing = await lookup(fn, "missing.example", {});
    expect(missing.err).toBeInstanceOf(EgressRefusedError);
    expect(missing.err?.message.replace("missing", "internal")).toBe(refused.err?.message);
  });
  it("an IPv4-mapped loopback AAAA record is refused too", async () => {
    const fn = guardedLookup(strict, resolverOf({ "v6.example": ["2606:4700::1111", "::ffff:7f00:1"] }));
    expect((await lookup(fn, "v6.example", { all: true })).err).toBeInstanceOf(EgressRefusedError);
  });
  it("hands over the checked addresses: one, or all for happy eyeballs, filtered by family", async () => {
    const fn = guardedLookup(strict, resolverOf({ "ok.example": ["93.184.216.34", "2606:4700::1111"] }));
    expect(await lookup(fn, "ok.example", {})).toEqual({ err: null, address: "93.184.216.34", family: 4 });
    expect(await lookup(fn, "ok.example", { all: true })).toEqual({
      err: null,
      address: [
        { address: "93.184.216.34", family: 4 },
        { address: "2606:4700::1111", family: 6 },
      ],
      family: undefined,
    });
    expect(await lookup(fn, "ok.example", { family: 6 })).toEqual({ err: null, address: "2606:4700::1111", family: 6 });
  });
  it("an allow-listed network passes", async () => {
    const fn = guardedLookup(
      { allowHttp: true, allowedNetworks: [parseCidr("10.0.0.0/8")] },
      resolverOf({ "internal.example": ["10.0.0.1"] }),
    );
    expect(await lookup(fn, "internal.example", {})).toEqual({ err: null, address: "10.0.0.1", family: 4 });
  });
});

/** A DNS server on loopback UDP: A queries get `v4`, AAAA ones no record; counts the queries. */
async function fakeDnsServer(v4: [number, number, number, number]) {
  const socket = dgram.createSocket("udp4");
  const queries: number[] = [];
  socket.on("message", (msg, from) => {
    // Header (12 bytes), then the question: labels up to a zero byte, QTYPE, QCLASS.
    let end = 12;
    while ((msg[end] as number) !== 0) end += (msg[end] as number) + 1;
    const qtype = msg.readUInt16BE(end + 1);
    queries.push(qtype);
    const question = msg.subarray(12, end + 5);
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // the query's id
    header.writeUInt16BE(0x8180, 2); // a response, recursion available, NOERROR
    header.writeUInt16BE(1, 4); // one question
    header.writeUInt16BE(qtype === 1 ? 1 : 0, 6); // one answer for A
    const answer = qtype === 1 ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...v4]) : Buffer.alloc(0);
    socket.send(Buffer.concat([header, question, answer]), from.port, from.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  return { server: `127.0.0.1:${socket.address().port}`, queries, close: () => socket.close() };
}

describe("dnsResolver (the production resolver)", () => {
  it("asks DNS (A and AAAA) through c-ares, never getaddrinfo, which would hold a threadpool thread", async () => {
    const lookup = vi.spyOn(dns, "lookup");
    const promisesLookup = vi.spyOn(dns.promises, "lookup");
    const fake = await fakeDnsServer([93, 184, 216, 34]);
    try {
      const resolve = dnsResolver({ servers: [fake.server], timeoutMs: 1_000, tries: 1 });
      expect(await resolve("models.customer.example")).toEqual([{ address: "93.184.216.34", family: 4 }]);
      expect([...fake.queries].sort()).toEqual([1, 28]);
      expect(lookup).not.toHaveBeenCalled();
      expect(promisesLookup).not.toHaveBeenCalled();
    } finally {
      fake.close();
      lookup.mockRestore();
      promisesLookup.mockRestore();
    }
  });
});
