import { and, count, desc, eq, gt, gte, inArray, lt, or, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { isStorableInstant } from "../../platform/db/instants.ts";
import { customers, robotProfiles, safetyIncidents } from "../../platform/db/schema/index.ts";
import type { IncidentRow } from "./incidents.ts";

export interface RobotRecord {
  readonly robotId: string;
  readonly profile: Record<string, unknown> | null;
  readonly lastSeenAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface IncidentFilter {
  readonly robotId?: string | undefined;
  readonly severity?: readonly string[] | undefined;
  readonly type?: readonly string[] | undefined;
  /** Inclusive lower bound. */
  readonly from?: Date | undefined;
  /** Exclusive upper bound. */
  readonly to?: Date | undefined;
}

export interface StoredIncident {
  readonly id: string;
  readonly customerId: string;
  readonly robotId: string;
  readonly inferenceId: string | null;
  readonly violationType: string;
  readonly severity: string;
  readonly actionTaken: string;
  readonly measured: number | null;
  readonly limit: number | null;
  readonly step: number;
  readonly message: string | null;
  readonly at: Date;
}

export interface IncidentPage {
  readonly items: readonly StoredIncident[];
  /** Pass back as `cursor` for the next (older) page; null at the end. */
  readonly nextCursor: string | null;
}

export interface SafetySummary {
  readonly total: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly bySeverity: Readonly<Record<string, number>>;
  readonly byRobot: Readonly<Record<string, number>>;
}

export class InvalidCursorError extends Error {
  constructor() {
    super("invalid cursor");
    this.name = "InvalidCursorError";
  }
}

/** Opaque cursor: base64url of "<at ISO>|<id>", the last item of a page (newest first). */
export function encodeCursor(at: Date, id: string): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString("base64url");
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  const raw = Buffer.from(cursor, "base64url").toString("utf8");
  const sep = raw.indexOf("|");
  const at = new Date(raw.slice(0, sep));
  const id = raw.slice(sep + 1);
  if (sep < 0 || !isStorableInstant(at.getTime()) || !/^[0-9a-f-]{36}$/i.test(id)) throw new InvalidCursorError();
  return { at, id };
}

/**
 * Robots and their profiles, safety incidents. Every method takes the customer id and filters on
 * it: nothing crosses tenants.
 */
export class SafetyRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async upsertProfile(customerId: string, robotId: string, profile: Record<string, unknown>): Promise<RobotRecord> {
    const [row] = await this.db
      .insert(robotProfiles)
      .values({ customerId, robotId, profile })
      .onConflictDoUpdate({
        target: [robotProfiles.customerId, robotProfiles.robotId],
        set: { profile, updatedAt: sql`now()` },
      })
      .returning();
    if (row === undefined) throw new Error("upsert returned no row");
    return toRecord(row);
  }

  async getRobot(customerId: string, robotId: string): Promise<RobotRecord | undefined> {
    const rows = await this.db
      .select()
      .from(robotProfiles)
      .where(and(eq(robotProfiles.customerId, customerId), eq(robotProfiles.robotId, robotId)))
      .limit(1);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** The stored profile (API form), or undefined when none is set (defaults apply). */
  async getProfile(customerId: string, robotId: string): Promise<Record<string, unknown> | undefined> {
    return (await this.getRobot(customerId, robotId))?.profile ?? undefined;
  }

  /** Removes the profile (the robot falls back to defaults) but keeps the robot in the list. True if one was set. */
  async deleteProfile(customerId: string, robotId: string): Promise<boolean> {
    const rows = await this.db
      .update(robotProfiles)
      .set({ profile: null, updatedAt: sql`now()` })
      .where(
        and(
          eq(robotProfiles.customerId, customerId),
          eq(robotProfiles.robotId, robotId),
          sql`${robotProfiles.profile} is not null`,
        ),
      )
      .returning({ robotId: robotProfiles.robotId });
    return rows.length > 0;
  }

  /** Record activity of robots (one statement for a batch; forward-only). */
  async touchLastSeen(seen: readonly { customerId: string; robotId: string; at: Date | string }[]): Promise<void> {
    if (seen.length === 0) return;
    // One row per robot (a statement may not update a row twice), latest time wins; deleted customers dropped.
    const latest = new Map<string, { customerId: string; robotId: string; at: Date }>();
    for (const s of seen) {
      const at = new Date(s.at);
      const k = `${s.customerId}\u0000${s.robotId}`;
      const prev = latest.get(k);
      if (prev === undefined || prev.at < at) latest.set(k, { customerId: s.customerId, robotId: s.robotId, at });
    }
    const ids = [...new Set(seen.map((s) => s.customerId))];
    const alive = new Set(
      (await this.db.select({ id: customers.id }).from(customers).where(inArray(customers.id, ids))).map((r) => r.id),
    );
    const values = [...latest.values()].filter((v) => alive.has(v.customerId));
    if (values.length === 0) return;
    await this.db
      .insert(robotProfiles)
      .values(values.map((s) => ({ customerId: s.customerId, robotId: s.robotId, lastSeenAt: s.at })))
      .onConflictDoUpdate({
        target: [robotProfiles.customerId, robotProfiles.robotId],
        set: {
          lastSeenAt: sql`greatest(${robotProfiles.lastSeenAt}, excluded.last_seen_at)`,
        },
      });
  }

  /** Ordered by robot id; `after` = the last robot id of the previous page. */
  async listRobots(customerId: string, limit = 1000, after?: string): Promise<RobotRecord[]> {
    const conds = [eq(robotProfiles.customerId, customerId)];
    if (after !== undefined) conds.push(gt(robotProfiles.robotId, after));
    const rows = await this.db
      .select()
      .from(robotProfiles)
      .where(and(...conds))
      .orderBy(robotProfiles.robotId)
      .limit(limit);
    return rows.map(toRecord);
  }

  /** One multi-row INSERT for a batch (the sink of platform.batchWriter). */
  async insertIncidents(batch: readonly IncidentRow[]): Promise<void> {
    if (batch.length === 0) return;
    // Rows of a customer deleted while they were buffered would fail the foreign key and, with it,
    // the whole batch on every retry: drop them (the customer's data is gone by design).
    const ids = [...new Set(batch.map((i) => i.customerId))];
    const alive = new Set(
      (await this.db.select({ id: customers.id }).from(customers).where(inArray(customers.id, ids))).map((r) => r.id),
    );
    const rows = batch.filter((i) => alive.has(i.customerId));
    if (rows.length === 0) return;
    await this.db.insert(safetyIncidents).values(
      rows.map((i) => ({
        customerId: i.customerId,
        robotId: i.robotId,
        inferenceId: i.inferenceId,
        violationType: i.violationType,
        severity: i.severity,
        actionTaken: i.actionTaken,
        measured: i.measured,
        limitValue: i.limit,
        step: i.step,
        message: i.message,
        // Journal replays bring the time back as a string.
        at: new Date(i.at),
      })),
    );
  }

  /** `customerId` null: every customer's (operators only; the admin routes). */
  private where(customerId: string | null, f: IncidentFilter) {
    const conds = customerId === null ? [] : [eq(safetyIncidents.customerId, customerId)];
    if (f.robotId !== undefined) conds.push(eq(safetyIncidents.robotId, f.robotId));
    if (f.severity !== undefined && f.severity.length > 0)
      conds.push(inArray(safetyIncidents.severity, [...f.severity]));
    if (f.type !== undefined && f.type.length > 0) conds.push(inArray(safetyIncidents.violationType, [...f.type]));
    if (f.from !== undefined) conds.push(gte(safetyIncidents.at, f.from));
    if (f.to !== undefined) conds.push(lt(safetyIncidents.at, f.to));
    return conds;
  }

  /**
   * Newest first; `cursor` from the previous page. Throws InvalidCursorError on a malformed cursor.
   * `customerId` null lists every customer's (operators only: `GET /admin/safety/incidents`).
   */
  async listIncidents(
    customerId: string | null,
    filter: IncidentFilter = {},
    page: { readonly limit?: number; readonly cursor?: string | undefined } = {},
  ): Promise<IncidentPage> {
    const limit = Math.min(Math.max(page.limit ?? 50, 1), 500);
    const conds = this.where(customerId, filter);
    if (page.cursor !== undefined) {
      const c = decodeCursor(page.cursor);
      const older = or(lt(safetyIncidents.at, c.at), and(eq(safetyIncidents.at, c.at), lt(safetyIncidents.id, c.id)));
      if (older !== undefined) conds.push(older);
    }
    const rows = await this.db
      .select()
      .from(safetyIncidents)
      .where(and(...conds))
      .orderBy(desc(safetyIncidents.at), desc(safetyIncidents.id))
      .limit(limit + 1);
    const items = rows.slice(0, limit).map((r) => ({
      id: r.id,
      customerId: r.customerId,
      robotId: r.robotId,
      inferenceId: r.inferenceId,
      violationType: r.violationType,
      severity: r.severity,
      actionTaken: r.actionTaken,
      measured: r.measured,
      limit: r.limitValue,
      step: r.step,
      message: r.message,
      at: r.at,
    }));
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.at, last.id) : null };
  }

  /** Counts by type, severity and robot over [from, to). `customerId` null: every customer's (operators). */
  async summary(customerId: string | null, filter: IncidentFilter = {}): Promise<SafetySummary> {
    const where = and(...this.where(customerId, filter));
    const group = async (key: "violationType" | "severity" | "robotId") => {
      const col = sql<string>`${safetyIncidents[key]}`;
      const rows = await this.db.select({ k: col, n: count() }).from(safetyIncidents).where(where).groupBy(col);
      return Object.fromEntries(rows.map((r) => [r.k, Number(r.n)]));
    };
    const [byType, bySeverity, byRobot] = await Promise.all([
      group("violationType"),
      group("severity"),
      group("robotId"),
    ]);
    const total = Object.values(byType).reduce((a, b) => a + b, 0);
    return { total, byType, bySeverity, byRobot };
  }

  /** For the account-deletion hook: removes the customer's robots and incidents, returns row counts. */
  async deleteCustomer(tx: Db, customerId: string): Promise<Record<string, number>> {
    const inc = await tx
      .delete(safetyIncidents)
      .where(eq(safetyIncidents.customerId, customerId))
      .returning({ id: safetyIncidents.id });
    const rob = await tx
      .delete(robotProfiles)
      .where(eq(robotProfiles.customerId, customerId))
      .returning({ id: robotProfiles.robotId });
    return { safety_incidents: inc.length, robot_profiles: rob.length };
  }
}

function toRecord(r: typeof robotProfiles.$inferSelect): RobotRecord {
  return {
    robotId: r.robotId,
    profile: r.profile ?? null,
    lastSeenAt: r.lastSeenAt,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}
