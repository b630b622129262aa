import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import { createDatabase } from "../../src/platform/db/client.ts";
import { runCli } from "../helpers/cli.ts";
import { createCustomer, DAY, grantRetention, insertAt } from "./helpers.ts";

function cli(args: string[], dir: string) {
  return runCli(args, { dataDir: dir });
}

describe("cli retention", () => {
  it("--dry-run prints what it would delete and deletes nothing; without it, deletes", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "vla-cli-retention-"));
    try {
      let db = await createDatabase({ dataDir: dir });
      await db.migrate();
      await new InferenceLogsRepo(db.db).ensurePartitions(new Date(Date.UTC(2020, 0, 10)), 0);
      const c = await createCustomer(db, "c");
      await grantRetention(db, c, 30);
      const now = Date.now();
      await insertAt(db, c, [Date.UTC(2020, 0, 20), now - 400 * DAY, now - 45 * DAY, now - 2 * DAY]);
      await db.close();

      const dry = await cli(["retention", "--dry-run"], dir);
      expect(dry.stderr).toContain("counting: 1/1 customers (100 %)");
      expect(dry.stdout).toContain("retention (dry run): 1 customers");
      expect(dry.stdout).toContain("inference_logs: would delete 2 rows");
      expect(dry.stdout).toContain("safety_incidents: would delete 3 rows");
      expect(dry.stdout).toContain("feedback: would delete 3 rows");
      expect(dry.stdout).toContain("instruction_analytics: would clear the instruction text of 0 rows");
      expect(dry.stdout).toContain("inference_logs: would drop partition inference_logs_y2020m01");
      expect(dry.status).toBe(0);

      const run = await cli(["retention"], dir);
      expect(run.stderr).toContain("deleting: 1/1 customers (100 %)");
      expect(run.stdout).toContain("inference_logs: deleted 2 rows");
      expect(run.stdout).toContain("feedback: deleted 3 rows");
      expect(run.stdout).toContain("inference_logs: dropped partition inference_logs_y2020m01");
      expect(run.status).toBe(0);

      db = await createDatabase({ dataDir: dir });
      const left = await db.db.execute("select count(*)::int as n from inference_logs");
      expect((left as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(1);
      expect(await new InferenceLogsRepo(db.db).partitionNames()).not.toContain("inference_logs_y2020m01");
      await db.close();

      const again = await cli(["retention"], dir);
      expect(again.stdout).toContain("inference_logs: deleted 0 rows");
      expect(again.stdout).not.toContain("partition");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
