import type { ApiKeysRepo } from "./api-keys.repo.ts";

/**
 * `last_used_at` at minute resolution, written in batches (never per request): uses are
 * collected in memory and flushed with one forward-only UPDATE per distinct minute.
 */
export class LastUsedTracker {
  private pending = new Map<string, number>();
  private readonly repo: ApiKeysRepo;
  private flushing: Promise<void> | undefined;

  constructor(repo: ApiKeysRepo) {
    this.repo = repo;
  }

  mark(keyId: string, minute: number): void {
    const cur = this.pending.get(keyId);
    if (cur === undefined || cur < minute) this.pending.set(keyId, minute);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const byMinute = new Map<number, string[]>();
    for (const [id, minute] of batch) {
      const ids = byMinute.get(minute) ?? [];
      ids.push(id);
      byMinute.set(minute, ids);
    }
    try {
      for (const [minute, ids] of byMinute) await this.repo.touchLastUsed(ids, new Date(minute));
    } catch (e) {
      for (const [id, minute] of batch) this.mark(id, minute);
      throw e;
    }
  }
}
