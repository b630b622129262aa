import { parseArgs } from "node:util";
import type { Config } from "../../config.ts";
import { SYSTEM_ACTOR } from "../../platform/audit.ts";
import type { Database } from "../../platform/db/client.ts";
import { isAppError } from "../../platform/errors.ts";
import { InvalidationBus } from "../../platform/invalidation.ts";
import { createRedis } from "../../platform/redis.ts";
import { SuspensionRepo } from "./suspension.repo.ts";
import { MAX_REASON_CHARS } from "./suspension.schemas.ts";
import { SuspensionService, type SuspensionView } from "./suspension.service.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface SuspensionArgs {
  readonly action: "suspend" | "unsuspend";
  readonly customerId: string;
  readonly reason: string | undefined;
  readonly json: boolean;
}

interface Out {
  write(s: string): unknown;
}

/** Parses `customers suspend <id> --reason <r> [--json]` / `customers unsuspend <id> [--reason <r>] [--json]`. */
export function parseSuspensionArgs(action: "suspend" | "unsuspend", args: string[]): SuspensionArgs | string {
  let values: { reason?: string | undefined; json?: boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { reason: { type: "string" }, json: { type: "boolean" } },
      allowPositionals: true,
    }));
  } catch (e) {
    return (e as Error).message;
  }
  const [customerId, ...extra] = positionals;
  if (customerId === undefined || !UUID.test(customerId) || extra.length > 0) {
    return "<customer id (uuid)> is required, once";
  }
  const reason = values.reason?.trim();
  if (action === "suspend" && (reason === undefined || reason === "")) return "--reason <text> is required";
  if (reason !== undefined && (reason === "" || reason.length > MAX_REASON_CHARS)) {
    return `--reason must be 1..${MAX_REASON_CHARS} characters`;
  }
  return { action, customerId, reason, json: values.json === true };
}

function table(v: SuspensionView): string {
  const rows: [string, string][] = [
    ["customer", v.customer_id],
    ["name", v.name],
    ["email", v.email],
    ["status", v.status],
    ["suspended_at", v.suspended_at ?? "-"],
    ["reason", v.suspended_reason ?? "-"],
    ["members", String(v.members)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join("\n")}\n`;
}

/**
 * Runs the change through the same service as the API (one transaction with its audit entry,
 * actor none, `details.source: "cli"`), then tells running servers over Redis (REDIS_URL) so
 * their cached keys and sessions and the customer's streams follow at once. Returns the exit code.
 */
export async function runSuspension(
  config: Config,
  database: Database,
  a: SuspensionArgs,
  out: Out,
  err: Out,
): Promise<number> {
  const redis = createRedis({ ...config.redis });
  const invalidation = new InvalidationBus(redis);
  try {
    for (let i = 0; i < 150 && redis.client !== null && redis.client.status !== "ready"; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const service = new SuspensionService({ repo: new SuspensionRepo(database.db), invalidation, now: Date.now });
    const actor = { ...SYSTEM_ACTOR, source: "cli" as const };
    let view: SuspensionView;
    try {
      view =
        a.action === "suspend"
          ? await service.suspend(actor, a.customerId, a.reason as string)
          : await service.unsuspend(actor, a.customerId, a.reason);
    } catch (e) {
      if (!isAppError(e)) throw e;
      err.write(`customers ${a.action}: ${e.code}: ${e.detail ?? e.title}\n`);
      return 1;
    }
    out.write(a.json ? `${JSON.stringify(view)}\n` : table(view));
    if (redis.client === null) {
      if (config.db.url !== undefined) {
        err.write(
          "note: no REDIS_URL, so running servers were not told: their cached keys expire within API_KEY_CACHE_FRESH_MS and open streams stay open\n",
        );
      }
    } else if (redis.client.status !== "ready") {
      err.write(
        "warning: Redis unreachable, running servers were not told: their cached keys expire within API_KEY_CACHE_FRESH_MS and open streams stay open\n",
      );
    }
    return 0;
  } finally {
    await redis.close();
  }
}
