/**
 * Redis connection strings without ioredis (config validates them, createRedis uses them).
 * Cluster mode is `REDIS_CLUSTER_NODES=host:port,host:port` or
 * `REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...]` (`rediss+cluster://` for TLS).
 */

/** The seed nodes and credentials of `redis+cluster://[user:password@]host:port[,host:port...]`. */
export interface ClusterTarget {
  readonly nodes: { host: string; port: number }[];
  readonly tls: boolean;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/;

export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:/.test(url);
}

/** host:port (IPv6 as [addr]:port); throws with the offending entry. */
export function parseNode(entry: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(entry.trim());
  const port = Number(m?.[2]);
  if (m === null || !(port >= 1 && port <= 65_535)) throw new Error(`"${entry}" is not host:port`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ""), port };
}

/** Parses a comma list of host:port (REDIS_CLUSTER_NODES); throws on a bad entry or an empty list. */
export function parseNodes(list: string): { host: string; port: number }[] {
  const entries = list.split(",").filter((e) => e.trim() !== "");
  if (entries.length === 0) throw new Error("no host:port given");
  return entries.map(parseNode);
}

/** Parses `redis+cluster://` / `rediss+cluster://` URLs; throws when malformed. */
export function parseClusterUrl(url: string): ClusterTarget {
  const m = CLUSTER_URL.exec(url);
  if (m === null) throw new Error("expected redis+cluster://[user:password@]host:port[,host:port...]");
  const [, scheme, auth, hosts] = m;
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined && auth !== "") {
    const colon = auth.indexOf(":");
    username = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decodeURIComponent(auth.slice(colon + 1)) || undefined;
  }
  return { nodes: parseNodes(hosts as string), tls: scheme === "rediss", username, password };
}
