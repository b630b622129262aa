import { parseArgs } from "node:util";
import type { Config } from "../../config.ts";
import { recordAudit, SYSTEM_ACTOR } from "../../platform/audit.ts";
import { ALL_SCOPES, type Scope, type Tier } from "../../platform/auth.ts";
import type { Database, Db } from "../../platform/db/client.ts";
import { InvalidationBus } from "../../platform/invalidation.ts";
import { createRedis } from "../../platform/redis.ts";
import { ApiKeysRepo } from "../api-keys/api-keys.repo.ts";
import { generateKey } from "../api-keys/key-format.ts";
import { CUSTOMER_TOPIC } from "../rate-limit/rate-limits.ts";
import {
  AdminCustomersRepo,
  type CustomerSort,
  type CustomerSummary,
  InvalidCustomerCursorError,
  type SortOrder,
} from "./customers.repo.ts";
import { customerDetail, summaryJson } from "./customers.routes.ts";
import { AdminCustomersService } from "./customers.service.ts";

/**
 * `customers list|show|tier` and `keys create` for src/cli.ts: the admin routes' reads and
 * changes for an operator at a shell. Changes are audited with `details.source = "cli"` (no user
 * acts) and, with REDIS_URL set, reach running instances through the invalidation bus.
 */
export interface CliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TIERS: readonly Tier[] = ["free", "pro", "enterprise"];
const SORTS: readonly CustomerSort[] = ["created_at", "requests_30d", "mrr"];

/** Left-aligned columns, two spaces apart. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join("\n")}\n`;
}

/** Runs `fn` with a bus that reaches the running servers when Redis is configured. */
async function withBus<T>(config: Config, fn: (bus: InvalidationBus) => Promise<T>): Promise<T> {
  const quiet = { info() {}, warn() {}, error() {} };
  const redis = createRedis({ ...config.redis, log: quiet });
  if (redis.client !== null) await redis.ping(config.redis.commandTimeoutMs).catch(() => {});
  try {
    return await fn(new InvalidationBus(redis));
  } finally {
    await redis.close();
  }
}

export async function customersCommand(rest: string[], config: Config, database: Database, io: CliIo): Promise<number> {
  const [sub, ...args] = rest;
  const repo = new AdminCustomersRepo(database.db);
  switch (sub) {
    case "list": {
      const { values } = parseArgs({
        args,
        options: {
          q: { type: "string" },
          tier: { type: "string" },
          status: { type: "string" },
          sort: { type: "string" },
          order: { type: "string" },
          limit: { type: "string" },
          cursor: { type: "string" },
          all: { type: "boolean" },
          json: { type: "boolean" },
        },
      });
      const tier = values.tier as Tier | undefined;
      if (tier !== undefined && !TIERS.includes(tier)) {
        io.err(`customers list: --tier must be one of ${TIERS.join(", ")}\n`);
        return 2;
      }
      const status = values.status as "active" | "suspended" | undefined;
      if (status !== undefined && status !== "active" && status !== "suspended") {
        io.err("customers list: --status must be active or suspended\n");
        return 2;
      }
      const sort = (values.sort ?? "created_at") as CustomerSort;
      if (!SORTS.includes(sort)) {
        io.err(`customers list: --sort must be one of ${SORTS.join(", ")}\n`);
        return 2;
      }
      const order = (values.order ?? "desc") as SortOrder;
      if (order !== "asc" && order !== "desc") {
        io.err("customers list: --order must be asc or desc\n");
        return 2;
      }
      const limit = values.limit === undefined ? 50 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        io.err("customers list: --limit must be a whole number from 1 to 1000\n");
        return 2;
      }
      // The route's keyset pages (repo.list); --all follows next_cursor until the last page.
      const summaries: CustomerSummary[] = [];
      let cursor = values.cursor;
      const now = new Date();
      try {
        do {
          const page = await repo.list({ q: values.q, tier, status }, { sort, order, limit, cursor }, now);
          summaries.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (values.all === true && cursor !== undefined);
      } catch (e) {
        if (!(e instanceof InvalidCustomerCursorError)) throw e;
        io.err("customers list: --cursor is not a cursor of this list with this --sort and --order\n");
        return 2;
      }
      const items = summaries.map(summaryJson);
      const nextCursor = cursor ?? null;
      if (values.json === true) {
        io.out(`${JSON.stringify({ data: items, more: nextCursor !== null, next_cursor: nextCursor })}\n`);
        return 0;
      }
      io.out(
        table(
          ["ID", "EMAIL", "NAME", "TIER", "STATUS", "MEMBERS", "KEYS", "REQ_MONTH", "REQ_30D", "MRR", "CREATED"],
          items.map((c) => [
            c.id,
            c.email,
            c.name,
            c.tier,
            c.status,
            String(c.members),
            String(c.active_keys),
            String(c.requests_this_month),
            String(c.requests_30d),
            c.currency === null ? String(c.mrr) : `${c.mrr} ${c.currency}`,
            c.created_at.slice(0, 10),
          ]),
        ),
      );
      if (nextCursor !== null) {
        io.out(`(more: add --cursor ${nextCursor} for the next ${limit}, or --all for every page)\n`);
      }
      return 0;
    }
    case "show": {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { json: { type: "boolean" } },
      });
      const id = positionals[0];
      if (id === undefined || !UUID_RE.test(id)) {
        io.err("customers show: <customer_id> (a UUID) is required\n");
        return 2;
      }
      const detail = await customerDetail(repo, { now: Date.now }, id);
      if (detail === undefined) {
        io.err(`customers show: no customer ${id}\n`);
        return 1;
      }
      if (values.json === true) {
        io.out(`${JSON.stringify(detail)}\n`);
        return 0;
      }
      const c = detail.customer;
      const l = detail.limits.effective;
      const fmt = (v: number | null) => (v === null ? "unlimited" : String(v));
      io.out(
        table(
          ["FIELD", "VALUE"],
          [
            ["id", c.id],
            ["name", c.name],
            ["email", c.email],
            ["company", c.company ?? ""],
            ["tier", c.tier],
            ["status", c.suspended === null ? "active" : `suspended (${c.suspended.reason ?? ""})`],
            ["subscription", detail.subscription.status ?? "none"],
            ["mrr", `${detail.subscription.mrr} ${detail.subscription.currency ?? ""}`.trim()],
            [
              "limits",
              `${fmt(l.rate_limit_per_minute)}/min ${fmt(l.quota_per_day)}/day ${fmt(l.quota_per_month)}/month`,
            ],
            ["requests today", String(detail.usage.today.requests)],
            ["requests this month", String(detail.usage.month.requests)],
            ["members", detail.members.map((m) => `${m.email} (${m.role})`).join(", ")],
            ["keys", detail.keys.map((k) => `${k.prefix} ${k.name} (${k.status})`).join(", ")],
            [
              "incidents",
              Object.entries(detail.incidents_by_severity)
                .map(([k, v]) => `${k} ${v}`)
                .join(", "),
            ],
            ["created", c.created_at],
          ],
        ),
      );
      return 0;
    }
    case "tier": {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { reason: { type: "string" }, json: { type: "boolean" } },
      });
      const [id, tier] = positionals as [string | undefined, string | undefined];
      if (id === undefined || !UUID_RE.test(id) || tier === undefined || !TIERS.includes(tier as Tier)) {
        io.err(`customers tier: <customer_id> <${TIERS.join("|")}> --reason <text> are required\n`);
        return 2;
      }
      const reason = values.reason?.trim();
      if (reason === undefined || reason === "" || reason.length > 500) {
        io.err("customers tier: --reason <text> (1 to 500 characters) is required; it goes to the audit log\n");
        return 2;
      }
      const result = await withBus(config, (bus) =>
        new AdminCustomersService({
          repo,
          customerChanged: (cid) => bus.publish(CUSTOMER_TOPIC, cid),
        }).changeTier(SYSTEM_ACTOR, id, tier as Tier, reason, "cli"),
      );
      if (result === undefined) {
        io.err(`customers tier: no customer ${id}\n`);
        return 1;
      }
      if (values.json === true) {
        io.out(`${JSON.stringify({ customer_id: id, from: result.before.tier, tier: result.after.tier })}\n`);
      } else {
        io.out(`customer ${id}: tier ${result.before.tier} -> ${result.after.tier} (audited)\n`);
      }
      return 0;
    }
    default:
      io.err(`customers: unknown subcommand ${sub ?? "(none)"} (list, show, tier)\n`);
      return 2;
  }
}

export async function keysCommand(rest: string[], config: Config, database: Database, io: CliIo): Promise<number> {
  const [sub, ...args] = rest;
  if (sub !== "create") {
    io.err(`keys: unknown subcommand ${sub ?? "(none)"} (create)\n`);
    return 2;
  }
  const { values } = parseArgs({
    args,
    options: {
      customer: { type: "string" },
      name: { type: "string" },
      scopes: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const customerId = values.customer;
  if (customerId === undefined || !UUID_RE.test(customerId)) {
    io.err("keys create: --customer <customer_id> (a UUID) is required\n");
    return 2;
  }
  const name = values.name?.trim();
  if (name === undefined || name === "" || name.length > 100) {
    io.err("keys create: --name <text> (1 to 100 characters) is required\n");
    return 2;
  }
  const scopes = [...new Set((values.scopes ?? "inference").split(",").map((s) => s.trim()))] as Scope[];
  const bad = scopes.filter((s) => !ALL_SCOPES.includes(s));
  if (bad.length > 0 || scopes.length === 0) {
    io.err(`keys create: --scopes takes a comma-separated list of ${ALL_SCOPES.join(", ")}\n`);
    return 2;
  }
  if (!(await new AdminCustomersRepo(database.db).exists(customerId))) {
    io.err(`keys create: no customer ${customerId}\n`);
    return 1;
  }
  const usable = await new ApiKeysRepo(database.db).countUsable(customerId, new Date());
  if (usable >= config.apiKeys.maxKeysPerCustomer) {
    io.err(`keys create: the customer holds ${usable} keys, the most allowed; revoke one first\n`);
    return 1;
  }
  const generated = generateKey("live");
  const row = await database.db.transaction(async (txRaw) => {
    const tx = txRaw as unknown as Db;
    const created = await new ApiKeysRepo(tx).insert({
      customerId,
      name,
      keyHash: generated.hash,
      displayPrefix: generated.displayPrefix,
      scopes,
      expiresAt: null,
      createdByUserId: null,
    });
    await recordAudit(tx, {
      ...SYSTEM_ACTOR,
      action: "api_key.create",
      targetType: "api_key",
      targetId: created.id,
      customerId,
      details: { scopes: created.scopes, fields: ["name", "scopes"], source: "cli" },
    });
    return created;
  });
  if (values.json === true) {
    io.out(
      `${JSON.stringify({ id: row.id, customer_id: customerId, name, scopes: row.scopes, key: generated.key })}\n`,
    );
  } else {
    io.out(
      `created key ${row.id} (${row.displayPrefix}..., scopes ${row.scopes.join(",")}) for customer ${customerId}\n` +
        `key: ${generated.key}\n` +
        "Store it now: it is shown this once and cannot be recovered.\n",
    );
  }
  return 0;
}
