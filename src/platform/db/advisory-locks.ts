/**
 * Every PostgreSQL advisory lock id the service takes, in one place: two jobs that picked the same
 * arbitrary constant would silently block each other (retention and the analytics rollups once
 * did). advisory-locks.test.ts checks the ids are distinct. On PGlite (one connection) the locks
 * are taken too and always granted.
 */
export const ADVISORY_LOCKS = {
  /** Migrations, across instances starting at once (session lock, waited for). */
  migrations: 7_240_001,
  /** Billing job tasks (transaction locks, tried; a busy one skips the tick). */
  billingGrace: 7_301_001,
  billingOutbox: 7_301_002,
  billingOverage: 7_301_003,
  billingAlerts: 7_301_004,
  /** The analytics rollup job (transaction lock, tried). */
  analyticsRollups: 7_401_001,
  /** The retention job (session lock, tried). */
  retention: 7_401_002,
  /** Superuser grants and revokes: serialises the "last superuser" check (transaction lock, waited for). */
  superuserChanges: 7_501_001,
  /** The admin customer list's 30-day request counts refresh (session lock, tried). */
  adminMetrics: 7_501_002,
} as const;
