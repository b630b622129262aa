import { Counter, Gauge, type Registry } from "prom-client";
import type { Database } from "./client.ts";
import type { ReadTarget } from "./replica.ts";

/**
 * The read replica's series (docs/operations.md "Read replica"), read from its router at scrape
 * time; none without DATABASE_READ_URL.
 */
export function registerReplicaMetrics(registry: Registry, database: Database): void {
  const router = database.replica;
  if (router === undefined) return;
  new Gauge({
    name: "vla_db_replica_usable",
    help: "1 while heavy reads go to the read replica (last check succeeded, lag within DATABASE_READ_MAX_LAG_MS), else 0.",
    registers: [registry],
    collect() {
      this.set(router.state().usable ? 1 : 0);
    },
  });
  new Gauge({
    name: "vla_db_replica_lag_seconds",
    help: "Replay lag of the read replica at its last successful check (0 when caught up).",
    registers: [registry],
    collect() {
      const lag = router.state().lagSeconds;
      if (lag !== null) this.set(lag);
    },
  });
  new Counter({
    name: "vla_db_reads_total",
    help: "Queries through the read handle, by target: replica, primary (replica not usable), fallback (failed on the replica, retried on the primary).",
    labelNames: ["target"] as const,
    registers: [registry],
    collect() {
      const reads = router.state().reads;
      this.reset();
      for (const target of ["replica", "primary", "fallback"] as ReadTarget[]) this.inc({ target }, reads[target]);
    },
  });
}
