import type { Db } from "./db/client.ts";

/**
 * GDPR erasure: every feature that stores personal or customer data registers a hook here, and
 * account deletion runs them all inside one database transaction (all or nothing), before the
 * user (and, when they were its only member, the customer) rows go.
 *
 * A hook returns how many rows it removed per table; those counts, never the content, go into
 * the audit log. Plug in from your module's plugin:
 *
 *     platform.deletion.register({
 *       name: "api-keys",
 *       async deleteCustomer({ tx, customerId }) {
 *         const rows = await tx.delete(apiKeys).where(eq(apiKeys.customerId, customerId)).returning({ id: apiKeys.id });
 *         return { api_keys: rows.length };
 *       },
 *     });
 *
 * `deleteUser` runs for every deleted user (rows that belong to the person: sessions, consents
 * they gave); `deleteCustomer` runs only when the whole customer goes (keys, logs, usage, robots).
 * Foreign keys with ON DELETE CASCADE would remove rows silently; a hook makes the deletion
 * explicit, counted and testable, so prefer one even where a cascade exists.
 */
export interface DeletionContext {
  /** The open transaction; use it for every statement so the erasure is atomic. */
  readonly tx: Db;
  readonly userId: string;
  readonly customerId: string;
}

export type DeletionCounts = Readonly<Record<string, number>>;

export interface DeletionHook {
  readonly name: string;
  deleteUser?(ctx: DeletionContext): Promise<DeletionCounts>;
  deleteCustomer?(ctx: Omit<DeletionContext, "userId">): Promise<DeletionCounts>;
  /**
   * After the transaction committed: drop caches that may still hold deleted rows (e.g. API
   * keys cached in every instance). Failures are logged by the caller, never undo the erasure.
   */
  afterCommit?(ctx: {
    readonly userId: string;
    readonly customerId: string;
    readonly wholeCustomer: boolean;
  }): Promise<void>;
}

export class DeletionRegistry {
  private readonly hooks: DeletionHook[] = [];

  register(hook: DeletionHook): void {
    if (this.hooks.some((h) => h.name === hook.name)) throw new Error(`deletion hook "${hook.name}" registered twice`);
    this.hooks.push(hook);
  }

  /** Runs every hook's afterCommit; returns the failures so the caller can log them. */
  async afterCommit(ctx: { userId: string; customerId: string; wholeCustomer: boolean }): Promise<unknown[]> {
    const failures: unknown[] = [];
    for (const h of this.hooks) {
      try {
        await h.afterCommit?.(ctx);
      } catch (e) {
        failures.push(e);
      }
    }
    return failures;
  }

  get names(): readonly string[] {
    return this.hooks.map((h) => h.name);
  }

  /**
   * Runs the hooks, user scope first, then customer scope when `wholeCustomer`. Later hooks run
   * first (reverse registration order) so modules registered after others, which may reference
   * their tables, delete their rows before them.
   */
  async run(ctx: DeletionContext, wholeCustomer: boolean): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    const add = (c: DeletionCounts) => {
      for (const [table, n] of Object.entries(c)) counts[table] = (counts[table] ?? 0) + n;
    };
    const ordered = [...this.hooks].reverse();
    for (const h of ordered) if (h.deleteUser !== undefined) add(await h.deleteUser(ctx));
    if (wholeCustomer) {
      for (const h of ordered) {
        if (h.deleteCustomer !== undefined) add(await h.deleteCustomer({ tx: ctx.tx, customerId: ctx.customerId }));
      }
    }
    return counts;
  }
}
