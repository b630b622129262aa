import { describe, expect, it } from "vitest";
import type { ConsentRow } from "../../platform/db/schema/index.ts";
import type { ConsentRepo } from "./consent.repo.ts";
import { CONSENT_TOPIC, ConsentService } from "./consent.service.ts";

const MIN = 60_000;

function row(over: Partial<ConsentRow> = {}): ConsentRow {
  return {
    id: "00000000-0000-4000-8000-000000000001",
    customerId: "c1",
    version: 1,
    tier: "none",
    storeInstructions: false,
    storeImages: false,
    storeEmbeddings: false,
    useForTraining: false,
    anonymization: "none",
    retentionDays: 30,
    expiresAt: null,
    grantedByUserId: null,
    grantedByApiKeyId: null,
    grantedAt: new Date(0),
    ip: null,
    policyVersion: "p",
    withdrawn: false,
    ...over,
  };
}

function setup(stored: ConsentRow | null) {
  let now = 1_000_000;
  const loads: string[] = [];
  const state = { stored };
  const handlers = new Map<string, (id: string) => void>();
  const repo = {
    async latest(id: string) {
      loads.push(id);
      return state.stored;
    },
  } as unknown as ConsentRepo;
  const service = new ConsentService({
    repo,
    now: () => now,
    defaultTier: "basic",
    cacheFreshMs: 10 * MIN,
    invalidation: {
      on: (topic, h) => handlers.set(topic, h),
      onReset: () => {},
      publish: async () => {},
    },
  });
  return {
    service,
    loads,
    state,
    advance: (ms: number) => {
      now += ms;
    },
    invalidate: (id: string) => handlers.get(CONSENT_TOPIC)?.(id),
  };
}

describe("ConsentService cache (the inference path)", () => {
  it("loads a customer once, then answers synchronously without the database", async () => {
    const s = setup(null);
    const first = s.service.storesInstructions("c1");
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBe(true); // no record: default basic
    for (let i = 0; i < 1000; i++) expect(s.service.storesInstructions("c1")).toBe(true);
    expect(s.loads).toEqual(["c1"]);
  });

  it("an invalidation makes the next request read the new version", async () => {
    const s = setup(null);
    await s.service.storesInstructions("c1");
    s.state.stored = row({ tier: "none" });
    expect(s.service.storesInstructions("c1")).toBe(true); // still cached
    s.invalidate("c1");
    expect(await s.service.storesInstructions("c1")).toBe(false);
    expect(s.loads).toHaveLength(2);
  });

  it("after ten minutes the cached version is refreshed in the background", async () => {
    const s = setup(row({ tier: "basic", storeInstructions: true }));
    expect(await s.service.storesInstructions("c1")).toBe(true);
    s.state.stored = row({ tier: "none", version: 2 });
    s.advance(10 * MIN + 1);
    expect(s.service.storesInstructions("c1")).toBe(true); // stale, served while one reload runs
    await new Promise((r) => setImmediate(r));
    expect(s.service.storesInstructions("c1")).toBe(false);
    expect(s.loads).toHaveLength(2);
  });

  it("a cached version that expires stops applying on time (expiry is judged at each read)", async () => {
    const s = setup(row({ tier: "basic", storeInstructions: true, expiresAt: new Date(1_000_000 + MIN) }));
    expect(await s.service.storesInstructions("c1")).toBe(true);
    s.advance(MIN);
    expect(s.service.storesInstructions("c1")).toBe(false);
    expect(s.loads).toHaveLength(1);
  });

  it("recording(): text and anonymization level from the same cached version; an invalidation applies at once", async () => {
    const s = setup(null);
    expect(await s.service.recording("c1")).toEqual({
      storeInstructions: true,
      storeImages: false,
      storeEmbeddings: false,
      anonymization: "none",
    });
    s.state.stored = row({ tier: "research", storeInstructions: true, storeImages: true, storeEmbeddings: true });
    s.invalidate("c1");
    expect(await s.service.recording("c1")).toEqual({
      storeInstructions: true,
      storeImages: true,
      storeEmbeddings: true,
      anonymization: "none",
    });
    // `full` keeps no content: no image, no embedding, whatever the permissions.
    s.state.stored = row({
      tier: "research",
      storeInstructions: true,
      storeImages: true,
      storeEmbeddings: true,
      anonymization: "full",
    });
    s.invalidate("c1");
    expect(await s.service.recording("c1")).toEqual({
      storeInstructions: false,
      storeImages: false,
      storeEmbeddings: false,
      anonymization: "full",
    });
    expect(s.service.recording("c1")).toEqual({
      storeInstructions: false,
      storeImages: false,
      storeEmbeddings: false,
      anonymization: "full",
    }); // cached
    s.state.stored = row({ tier: "basic", storeInstructions: true, anonymization: "partial", withdrawn: true });
    s.invalidate("c1");
    // A withdrawal keeps its level.
    expect(await s.service.recording("c1")).toEqual({
      storeInstructions: false,
      storeImages: false,
      storeEmbeddings: false,
      anonymization: "partial",
    });
    expect(s.loads).toHaveLength(4);
  });
});
