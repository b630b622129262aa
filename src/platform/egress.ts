import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net, { type LookupFunction } from "node:net";

/**
 * Outbound connections to addresses a customer chose (bring-your-own model endpoints,
 * docs/models.md): the SSRF guard. A URL is checked when it is registered (scheme, credentials,
 * literal and resolved addresses) and again on every new connection: the agents' `lookup`
 * resolves the name, refuses it when ANY address is not public (unless inside an operator
 * allow-listed network) and hands the checked address to the socket, so a name that rebinds
 * to a private address between registration and use is refused before any socket opens and
 * nothing resolves the name a second time. Literal IP hosts skip `lookup` in node:net, so the
 * agents check those in `createConnection`. node:http never follows redirects.
 */

export interface Cidr {
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

/** An operator allow-listed network; with `owner`, only connections made for that owner may use it. */
export interface AllowedNetwork extends Cidr {
  /** A customer id (lower case): the network is that customer's alone (its peered VPC, say). */
  readonly owner?: string;
}

export interface EgressPolicy {
  /** Plain http endpoints (default false: https only). */
  readonly allowHttp: boolean;
  /**
   * Operator allow-listed networks: addresses inside are accepted even when not public. Entries
   * with an `owner` are dropped by `policyFor` for everyone else.
   */
  readonly allowedNetworks: readonly AllowedNetwork[];
}

/**
 * The policy for connections made for `owner`: the networks allow-listed for everyone and those
 * allow-listed for it. A network peered for one customer must never be reachable by another's URL.
 */
export function policyFor(policy: EgressPolicy, owner: string): EgressPolicy {
  const who = owner.toLowerCase();
  return {
    ...policy,
    allowedNetworks: policy.allowedNetworks.filter((n) => n.owner === undefined || n.owner === who),
  };
}

const OWNER = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** "10.20.0.0/16" (everyone's) or "<customer id>=10.20.0.0/16" (that customer's alone). */
export function parseAllowedNetwork(text: string): AllowedNetwork {
  const eq = text.indexOf("=");
  if (eq < 0) return parseCidr(text);
  const owner = text.slice(0, eq).trim();
  if (!OWNER.test(owner)) {
    throw new Error(`not a customer id (a UUID) before "=": ${JSON.stringify(text)}`);
  }
  return { ...parseCidr(text.slice(eq + 1)), owner: owner.toLowerCase() };
}

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** What a customer-registered model's backend connects with (RemoteSettings.egress). */
export interface EgressGuard {
  readonly policy: EgressPolicy;
  readonly resolver: Resolver;
}

/** Resolves a host name to every address (injectable: tests never touch real DNS). */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/**
 * A resolver on c-ares (dns.Resolver: the DNS servers of /etc/resolv.conf, or `servers`), asking A
 * and AAAA with a timeout. Never dns.lookup: getaddrinfo holds one of the libuv threadpool's few
 * threads (shared with fs, crypto and zlib) for as long as the name's DNS servers take to answer,
 * and for these names the customer chooses those servers. /etc/hosts is not read.
 */
export function dnsResolver(options: { timeoutMs?: number; tries?: number; servers?: string[] } = {}): Resolver {
  const r = new dns.promises.Resolver({ timeout: options.timeoutMs ?? 2_000, tries: options.tries ?? 2 });
  if (options.servers !== undefined) r.setServers(options.servers);
  return async (hostname) => {
    const [v4, v6] = await Promise.allSettled([r.resolve4(hostname), r.resolve6(hostname)]);
    const out: ResolvedAddress[] = [
      ...(v4.status === "fulfilled" ? v4.value.map((address) => ({ address, family: 4 as const })) : []),
      ...(v6.status === "fulfilled" ? v6.value.map((address) => ({ address, family: 6 as const })) : []),
    ];
    if (out.length > 0) return out;
    if (v4.status === "rejected") throw v4.reason;
    if (v6.status === "rejected") throw v6.reason;
    throw Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" });
  };
}

export const systemResolver: Resolver = dnsResolver();

/**
 * A refused destination; `code` lets callers tell it from network errors. The message reaches the
 * customer (model_unavailable names it), so for a host name it never holds what the name resolved
 * to: the service's own resolver may answer names from its private DNS (split horizon, cluster
 * service names), and echoing those addresses would map the operator's network. `detail`, for the
 * operator's logs only, does.
 */
export class EgressRefusedError extends Error {
  readonly code = "EGRESS_REFUSED";
  readonly detail: string | undefined;
  constructor(message: string, options: { detail?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "EgressRefusedError";
    this.detail = options.detail;
  }
}

/**
 * The one refusal a host name gets, whether it resolves to a refused address or not at all: two
 * different answers would tell a customer which internal names exist (see EgressRefusedError).
 */
export function unresolvedReason(host: string): string {
  return `${host} does not resolve to public addresses only`;
}

function parseV4(text: string): Uint8Array | undefined {
  if (!net.isIPv4(text)) return undefined;
  return Uint8Array.from(text.split(".").map(Number));
}

function parseV6(text: string): Uint8Array | undefined {
  if (!net.isIPv6(text) || text.includes("%")) return undefined;
  let head = text;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = parseV4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [(v4[0] as number) * 256 + (v4[1] as number), (v4[2] as number) * 256 + (v4[3] as number)];
    head = text.slice(0, lastColon + 1);
    if (!head.endsWith("::")) head = head.slice(0, -1);
  }
  const [left, right] = head.includes("::") ? head.split("::") : [head, undefined];
  const groups = (s: string | undefined) =>
    s === undefined || s === "" ? [] : s.split(":").map((g) => parseInt(g, 16));
  const l = groups(left);
  const r = groups(right);
  const fill = 8 - tail.length - l.length - r.length;
  const words = right === undefined ? [...l, ...tail] : [...l, ...new Array<number>(fill).fill(0), ...r, ...tail];
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return undefined;
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** 4 bytes for IPv4, 16 for IPv6; undefined for anything else (including zone ids). */
export function parseIp(text: string): Uint8Array | undefined {
  const t = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  return parseV4(t) ?? parseV6(t);
}

/** "10.0.0.0/8", "fd00::/8", or a single address (a /32 or /128). */
export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = text.trim().split("/");
  const bytes = parseIp(addr ?? "");
  const max = bytes?.length === 4 ? 32 : 128;
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : Number.NaN;
  if (bytes === undefined || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
    throw new Error(`not a network in CIDR notation (such as 10.0.0.0/8 or fd00::/8): ${JSON.stringify(text)}`);
  }
  return { text: text.trim(), bytes, prefix };
}

function inCidr(bytes: Uint8Array, c: Cidr): boolean {
  if (bytes.length !== c.bytes.length) return false;
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((bytes[i] as number) & mask) !== ((c.bytes[i] as number) & mask)) return false;
  }
  return true;
}

const net4 = (text: string, why: string) => ({ cidr: parseCidr(text), why });

/** IPv4 ranges that are not the public internet (RFC 6890 special-purpose registry and friends). */
const RESERVED_V4 = [
  net4("0.0.0.0/8", "this network"),
  net4("10.0.0.0/8", "private network"),
  net4("100.64.0.0/10", "carrier-grade NAT"),
  net4("127.0.0.0/8", "loopback"),
  net4("169.254.0.0/16", "link-local (cloud metadata)"),
  net4("172.16.0.0/12", "private network"),
  net4("192.0.0.0/24", "IETF protocol assignments"),
  net4("192.0.2.0/24", "documentation"),
  net4("192.88.99.0/24", "6to4 relay anycast"),
  net4("192.168.0.0/16", "private network"),
  net4("198.18.0.0/15", "benchmarking"),
  net4("198.51.100.0/24", "documentation"),
  net4("203.0.113.0/24", "documentation"),
  net4("224.0.0.0/4", "multicast"),
  net4("240.0.0.0/4", "reserved"),
  net4("255.255.255.255/32", "broadcast"),
];

/** IPv6 ranges that are not the public internet; the embedding ones are handled before these. */
const RESERVED_V6 = [
  net4("::/128", "unspecified"),
  net4("::1/128", "loopback"),
  net4("::/96", "IPv4-compatible (deprecated)"),
  net4("64:ff9b:1::/48", "local-use NAT64"),
  net4("100::/64", "discard-only"),
  net4("2001::/32", "Teredo"),
  net4("2001:db8::/32", "documentation"),
  net4("fc00::/7", "unique local (private)"),
  net4("fe80::/10", "link-local"),
  net4("fec0::/10", "site-local (deprecated)"),
  net4("ff00::/8", "multicast"),
  net4("2001:2::/48", "benchmarking"),
  net4("2001:10::/28", "ORCHID"),
  net4("2001:20::/28", "ORCHIDv2"),
  net4("3fff::/20", "documentation"),
];

/** IANA's global unicast space: an IPv6 address outside it is never a public internet host. */
const GLOBAL_UNICAST = parseCidr("2000::/3");

const MAPPED = parseCidr("::ffff:0:0/96");
const NAT64 = parseCidr("64:ff9b::/96");
const SIX_TO_FOUR = parseCidr("2002::/16");

/** The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), with how; undefined for none. */
function embeddedV4(b: Uint8Array): { v4: Uint8Array; how: string } | undefined {
  if (inCidr(b, MAPPED)) return { v4: b.slice(12, 16), how: "IPv4-mapped" };
  if (inCidr(b, NAT64)) return { v4: b.slice(12, 16), how: "NAT64" };
  if (inCidr(b, SIX_TO_FOUR)) return { v4: b.slice(2, 6), how: "6to4" };
  return undefined;
}

/**
 * Why the address is not public (e.g. "loopback", "IPv4-mapped private network"), or undefined
 * for a public unicast address. Unparseable input is never public.
 */
export function nonPublicReason(address: string): string | undefined {
  const b = parseIp(address);
  if (b === undefined) return "not an IP address";
  if (b.length === 4) return RESERVED_V4.find((r) => inCidr(b, r.cidr))?.why;
  const inner = embeddedV4(b);
  if (inner !== undefined) {
    const why = nonPublicReason(inner.v4.join("."));
    return why === undefined ? undefined : `${inner.how} ${why}`;
  }
  const reserved = RESERVED_V6.find((r) => inCidr(b, r.cidr))?.why;
  if (reserved !== undefined) return reserved;
  // ::ffff:0:a.b.c.d (SIIT), unassigned space and whatever else is not allocated as global unicast.
  return inCidr(b, GLOBAL_UNICAST) ? undefined : "not global unicast (outside 2000::/3)";
}

/**
 * Undefined when the policy lets a connection go to `address`: public, or inside an allow-listed
 * network (an IPv4-mapped address is matched as its IPv4 address). Otherwise the reason.
 */
export function refusedAddress(address: string, policy: Pick<EgressPolicy, "allowedNetworks">): string | undefined {
  const why = nonPublicReason(address);
  if (why === undefined) return undefined;
  const b = parseIp(address);
  if (b !== undefined) {
    const candidates = [b];
    if (b.length === 16 && inCidr(b, MAPPED)) candidates.push(b.slice(12, 16));
    if (candidates.some((c) => policy.allowedNetworks.some((n) => inCidr(c, n)))) return undefined;
  }
  return `${address} is not a public address (${why})`;
}

/** The URL's host without IPv6 brackets. */
function hostOf(u: URL): string {
  return u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
}

/**
 * The checks that need no DNS: scheme (https; http only when the operator allows it), no
 * credentials, no query or fragment, a literal IP host must pass `refusedAddress`. Returns the
 * reason for a refusal or undefined.
 */
export function refusedUrlSyntax(url: string, policy: EgressPolicy): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "not a URL";
  }
  if (u.protocol !== "https:" && !(u.protocol === "http:" && policy.allowHttp)) {
    return policy.allowHttp ? "must be an http or https URL" : "must be an https URL (plain http is not allowed here)";
  }
  if (u.username !== "" || u.password !== "") return "must not hold credentials (user:password@)";
  if (u.search !== "" || u.hash !== "") return "must not hold a query or fragment";
  const host = hostOf(u);
  if (net.isIP(host) !== 0) return refusedAddress(host, policy);
  return undefined;
}

/**
 * Registration-time check: `refusedUrlSyntax`, then the host name resolved with `resolver`;
 * refused when it does not resolve or ANY address is refused, with one reason for both that names
 * no address (`unresolvedReason`). Returns the reason or undefined.
 */
export async function refusedUrl(url: string, policy: EgressPolicy, resolver: Resolver): Promise<string | undefined> {
  const syntax = refusedUrlSyntax(url, policy);
  if (syntax !== undefined) return syntax;
  const host = hostOf(new URL(url));
  if (net.isIP(host) !== 0) return undefined;
  let addresses: readonly ResolvedAddress[];
  try {
    addresses = await resolver(host);
  } catch {
    return unresolvedReason(host);
  }
  if (addresses.length === 0) return unresolvedReason(host);
  return addresses.some((a) => refusedAddress(a.address, policy) !== undefined) ? unresolvedReason(host) : undefined;
}

/**
 * A `lookup` for node:net that resolves with `resolver` and fails with EgressRefusedError when
 * any address is refused or the name does not resolve, before the socket connects anywhere (the
 * message names no address, `detail` does). Honours `options.all` (happy eyeballs asks for every
 * address) and `options.family`.
 */
export function guardedLookup(policy: EgressPolicy, resolver: Resolver): LookupFunction {
  return (hostname, options, callback) => {
    const refuse = (detail: string, cause?: unknown) =>
      callback(
        new EgressRefusedError(`egress refused: ${unresolvedReason(hostname)}`, {
          detail: `${hostname}: ${detail}`,
          cause,
        }),
        "",
        0,
      );
    resolver(hostname).then(
      (resolved) => {
        const family =
          options.family === 4 || options.family === "IPv4"
            ? 4
            : options.family === 6 || options.family === "IPv6"
              ? 6
              : 0;
        const list = resolved.filter((a) => family === 0 || a.family === family);
        if (list.length === 0) {
          refuse("no address of the family asked for");
          return;
        }
        for (const a of list) {
          const why = refusedAddress(a.address, policy);
          if (why !== undefined) {
            refuse(why);
            return;
          }
        }
        if (options.all === true)
          callback(
            null,
            list.map((a) => ({ address: a.address, family: a.family })),
          );
        else callback(null, (list[0] as ResolvedAddress).address, (list[0] as ResolvedAddress).family);
      },
      (e: unknown) => refuse(`does not resolve (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e),
    );
  };
}

type CreateConnection = http.Agent["createConnection"];

/** Wraps an agent's createConnection so literal IP hosts (which skip `lookup`) are checked too. */
function guardLiterals<A extends http.Agent>(agent: A, policy: EgressPolicy): A {
  const original = agent.createConnection.bind(agent) as CreateConnection;
  const guarded: CreateConnection = (options, callback) => {
    const raw = options.host ?? options.hostname ?? "";
    const host = raw.startsWith("[") ? raw.slice(1, -1) : raw;
    if (net.isIP(host) !== 0) {
      const why = refusedAddress(host, policy);
      if (why !== undefined) {
        const err = new EgressRefusedError(`egress refused: ${why}`);
        if (callback === undefined) throw err;
        // Asynchronously, as a failed socket would: the agent's request sees an 'error'.
        process.nextTick(() => (callback as (e: Error | null, s?: unknown) => void)(err));
        return undefined;
      }
    }
    return original(options, callback);
  };
  agent.createConnection = guarded;
  return agent;
}

export interface GuardedAgents {
  readonly http: http.Agent;
  readonly https: https.Agent;
  close(): void;
}

/** Keep-alive agents whose every new connection passes the guard (see the file comment). */
export function createGuardedAgents(policy: EgressPolicy, resolver: Resolver = systemResolver): GuardedAgents {
  const lookup = guardedLookup(policy, resolver);
  const base = { keepAlive: true, keepAliveMsecs: 1000, scheduling: "lifo" as const, lookup };
  const agents: GuardedAgents = {
    http: guardLiterals(new http.Agent(base), policy),
    https: guardLiterals(new https.Agent(base), policy),
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
  return agents;
}
