/**
 * Shutdown hooks: modules register what must happen before the process exits (flush log
 * buffers, close WebSockets, drain queues). They run in registration order after the server
 * stops accepting connections and in-flight requests finish, and before pools are closed.
 */
export class Lifecycle {
  private readonly flushHooks: { name: string; fn: () => Promise<void> | void }[] = [];
  private readonly closeHooks: { name: string; fn: () => Promise<void> | void }[] = [];
  private shuttingDown = false;

  /** Runs on shutdown before infrastructure closes; the database and Redis are still usable. */
  onFlush(name: string, fn: () => Promise<void> | void): void {
    this.flushHooks.push({ name, fn });
  }

  /** Closes infrastructure (pools, clients); runs after every flush hook, in reverse order. */
  onClose(name: string, fn: () => Promise<void> | void): void {
    this.closeHooks.push({ name, fn });
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  markShuttingDown(): void {
    this.shuttingDown = true;
  }

  /** Runs every hook even when some fail; returns the failures for the log. */
  async run(): Promise<{ name: string; error: unknown }[]> {
    this.shuttingDown = true;
    const failures: { name: string; error: unknown }[] = [];
    for (const h of this.flushHooks) {
      try {
        await h.fn();
      } catch (error) {
        failures.push({ name: h.name, error });
      }
    }
    for (const h of [...this.closeHooks].reverse()) {
      try {
        await h.fn();
      } catch (error) {
        failures.push({ name: h.name, error });
      }
    }
    return failures;
  }
}
