import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "../../src/platform/db/client.ts";
import {
  customerDataConsent,
  customers,
  experiments,
  feedback,
  safetyIncidents,
  shadowResults,
} from "../../src/platform/db/schema/index.ts";
import { insertLogs, randomEntry, rng } from "../analytics/helpers.ts";

export const DAY = 86_400_000;
/** The tests' clock: 2026-12-05T12:00Z. */
export const NOW = Date.UTC(2026, 11, 5, 12);

export async function createCustomer(database: Database, name: string): Promise<string> {
  const [c] = await database.db
    .insert(customers)
    .values({ name, email: `${name}-${randomUUID()}@example.com` })
    .returning();
  return c?.id as string;
}

/** A consent version (tier analytics) with the given retention, granted long before NOW. */
export async function grantRetention(database: Database, customerId: string, retentionDays: number): Promise<void> {
  await database.db.insert(customerDataConsent).values({
    customerId,
    version: 1,
    tier: "analytics",
    storeInstructions: true,
    storeImages: false,
    storeEmbeddings: false,
    useForTraining: false,
    retentionDays,
    grantedAt: new Date(NOW - 2_000 * DAY),
    policyVersion: "2026-12-01",
  });
}

/** One inference log, one incident, one feedback and one shadow row of the customer at each instant. */
export async function insertAt(database: Database, customerId: string, instants: readonly number[]): Promise<void> {
  const r = rng(instants.length);
  const logs = instants.map((at) => randomEntry(r, customerId, at));
  await insertLogs(database, logs);
  const [experiment] = await database.db
    .insert(experiments)
    .values({
      customerId,
      name: "shadow",
      mode: "shadow",
      candidateModel: "demo-vla-tiny",
      sampleRate: 1,
      stoppedAt: new Date(NOW),
    })
    .returning();
  for (const log of logs) {
    await database.db.insert(shadowResults).values({
      experimentId: experiment?.id as string,
      customerId,
      inferenceId: log.id,
      servedModel: log.model,
      candidateModel: "demo-vla-tiny",
      servedAction: [0, 0, 0, 0, 0, 0, 1],
      createdAt: new Date(log.createdAt),
    });
    await database.db.insert(safetyIncidents).values({
      customerId,
      robotId: "arm-1",
      inferenceId: log.id,
      violationType: "workspace",
      severity: "low",
      actionTaken: "clamped",
      at: new Date(log.createdAt),
    });
    await database.db.insert(feedback).values({
      customerId,
      inferenceId: log.id,
      inferenceCreatedAt: new Date(log.createdAt),
      model: log.model,
      source: log.source,
      type: "success",
      createdAt: new Date(log.createdAt),
    });
  }
}

/** Ages in days (relative to NOW) of the customer's rows in each table, sorted. */
export async function ages(database: Database, customerId: string) {
  const age = (d: Date | string) => Math.round((NOW - new Date(d).getTime()) / DAY);
  const q = async (table: string, col: string) => {
    const res = await database.db.execute<{ t: string }>(
      sql`select ${sql.raw(col)} as t from ${sql.raw(table)} where customer_id = ${customerId} order by 1 desc`,
    );
    return (res as unknown as { rows: { t: string }[] }).rows.map((x) => age(x.t));
  };
  return {
    inference_logs: await q("inference_logs", "created_at"),
    safety_incidents: await q("safety_incidents", "at"),
    feedback: await q("feedback", "created_at"),
    shadow_results: await q("shadow_results", "created_at"),
  };
}

/** An instruction_analytics row of the customer for the UTC day `days` before NOW, with text and 5 requests. */
export async function insertInstructionDay(database: Database, customerId: string, days: number): Promise<void> {
  const day = new Date(NOW - days * DAY).toISOString().slice(0, 10);
  await database.db.execute(sql`
    insert into instruction_analytics (customer_id, instruction_key, day, instruction, requests)
    values (${customerId}, ${`k${days}`}, ${day}::date, 'pick up the cup', 5)`);
}

/** The customer's instruction_analytics rows: age in days, text, requests; newest first. */
export async function instructionDays(database: Database, customerId: string) {
  const res = await database.db.execute(sql`
    select day::text as day, instruction, requests::int as requests from instruction_analytics
    where customer_id = ${customerId} order by day desc`);
  return (res as unknown as { rows: { day: string; instruction: string | null; requests: number }[] }).rows.map(
    (r) => ({
      age: Math.floor((NOW - Date.parse(`${r.day}T00:00:00Z`)) / DAY),
      instruction: r.instruction,
      requests: r.requests,
    }),
  );
}
