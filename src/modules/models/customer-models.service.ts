import { hash } from "node:crypto";
import type { CustomerModelRow } from "../../platform/db/schema/index.ts";
import { type EgressGuard, refusedUrl } from "../../platform/egress.ts";
import { AppError, errors, type FieldError } from "../../platform/errors.ts";
import type { InferenceEngine, ModelInfo, ModelViewer } from "../inference/inference.service.ts";
import { parseCustomerModel } from "./customer-model-definition.ts";
import type { CustomerModelsRepo } from "./customer-models.repo.ts";
import type { ModelDefinition } from "./registry.ts";

/** What a probe of one of a customer's own models found (POST /v1/models/{id}/probe). */
export type ProbeReport =
  | {
      readonly ok: true;
      readonly latency_ms: number;
      readonly unnorm_key: string;
      readonly action: number[];
      readonly action_chunk: number[][] | null;
      readonly timing: { readonly preprocess_ms: number; readonly queue_ms: number; readonly model_ms: number };
    }
  | {
      readonly ok: false;
      readonly latency_ms: number;
      readonly error: { readonly code: string; readonly status: number; readonly detail: string };
    };

/** The probe's frame: mid-grey, so no pixel of any customer is ever sent by the service itself. */
const PROBE_GREY = 128;

/** Who registers: a principal (its customer's tier decides). */
export interface ModelOwner extends ModelViewer {
  readonly tier: "free" | "pro" | "enterprise";
}

interface Logger {
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface CustomerModelsDeps {
  readonly repo: CustomerModelsRepo;
  readonly engine: Pick<
    InferenceEngine,
    "putCustomerModel" | "removeCustomerModel" | "customerModelIds" | "modelIds" | "describe" | "infer"
  >;
  readonly egress: EgressGuard;
  readonly maxModelsPerCustomer: number;
  /** Tells every instance (this one included) that a customer's model changed (InvalidationBus). */
  readonly publish: (customerId: string, id: string) => Promise<void>;
  /** Tells every instance (this one included) that all of a customer's models changed (its erasure). */
  readonly publishCustomer: (customerId: string) => Promise<void>;
  readonly log: Logger;
}

const keyOf = (customerId: string, id: string) => `${customerId}/${id}`;
const versionOf = (row: CustomerModelRow) => hash("sha256", JSON.stringify(row.definition));

/**
 * Bring-your-own model endpoints (docs/models.md): registration (enterprise plan, the registry's
 * validation, the SSRF guard's URL and DNS checks, a per-customer limit), deletion, and keeping
 * this instance's engine in step with customer_models: every row is loaded at startup, and a
 * change anywhere is broadcast (`sync`) so each instance reloads that one row.
 */
export class CustomerModelsService {
  private readonly d: CustomerModelsDeps;
  /**
   * What this instance serves: key -> the document it was loaded from (`versionOf`). Not the row's
   * updated_at: read back as a Date it has milliseconds only, and two changes within one would look
   * the same (the second document never served).
   */
  private readonly loaded = new Map<string, string>();
  /**
   * Changes to one model are applied one after another (a delete racing a replace, a broadcast
   * racing a reload of every row): each reads its row when its turn comes.
   */
  private readonly pending = new Map<string, Promise<void>>();
  /** When the newest read of a model's row began (performance.now()): what loadAll's older snapshot must not undo. */
  private readonly readAt = new Map<string, number>();
  private loading = 0;

  constructor(deps: CustomerModelsDeps) {
    this.d = deps;
  }

  async register(owner: ModelOwner, doc: unknown): Promise<ModelInfo> {
    const def = await this.check(owner, doc);
    // A registry model the caller may use keeps its id (a restricted one it cannot see is not revealed).
    if (this.d.engine.modelIds(owner).includes(def.id)) throw errors.modelIdTaken(def.id);
    const outcome = await this.d.repo.insert(
      owner.customerId,
      def.id,
      doc as Record<string, unknown>,
      this.d.maxModelsPerCustomer,
    );
    if (outcome.kind === "limit") throw errors.modelLimitReached(this.d.maxModelsPerCustomer);
    if (outcome.kind === "taken") throw errors.modelIdTaken(def.id);
    await this.sync(owner.customerId, def.id);
    await this.d.publish(owner.customerId, def.id);
    return this.d.engine.describe(def.id, owner);
  }

  /** Replaces the caller's own model `id` (the document's id must be `id`); 404 for any other. */
  async replace(owner: ModelOwner, id: string, doc: unknown): Promise<ModelInfo> {
    const def = await this.check(owner, doc);
    if (def.id !== id) {
      throw errors.validation([{ in: "body", path: "/id", message: `must be "${id}", the id in the path` }]);
    }
    const row = await this.d.repo.replace(owner.customerId, id, doc as Record<string, unknown>);
    if (row === undefined) throw this.unknown(owner, id);
    await this.sync(owner.customerId, id);
    await this.d.publish(owner.customerId, id);
    return this.d.engine.describe(id, owner);
  }

  /** The plan, the document and every endpoint's URL and DNS answers (SSRF rules). */
  private async check(owner: ModelOwner, doc: unknown): Promise<ModelDefinition> {
    if (owner.tier !== "enterprise") throw errors.enterpriseRequired("Registering your own model endpoints");
    const parsed = parseCustomerModel(doc, owner.customerId, this.d.egress);
    if (!parsed.ok) {
      if (parsed.endpointErrors !== undefined) throw errors.endpointNotAllowed(parsed.endpointErrors);
      throw errors.validation(parsed.errors, "The model document failed validation.");
    }
    const def = parsed.def;
    if (def.backend.kind === "openvla-http" || def.backend.kind === "kserve-v2") {
      // The customer's own guard (parseCustomerModel): the networks allow-listed for it or everyone.
      const guard = def.backend.egress ?? this.d.egress;
      const refused: FieldError[] = [];
      await Promise.all(
        def.backend.endpoints.map(async (url, i) => {
          const why = await refusedUrl(url, guard.policy, guard.resolver);
          if (why !== undefined) refused.push({ in: "body", path: `/backend/endpoints/${i}`, message: why });
        }),
      );
      if (refused.length > 0) throw errors.endpointNotAllowed(refused.sort((a, b) => a.path.localeCompare(b.path)));
    }
    return def;
  }

  /** 404 unknown_model listing what the viewer may use, as the engine answers. */
  private unknown(viewer: ModelViewer, id: string) {
    return errors.unknownModel(id, [
      ...new Set([...this.d.engine.modelIds(viewer), ...this.d.engine.customerModelIds(viewer.customerId)]),
    ]);
  }

  /**
   * Sends one synthetic frame (mid-grey, the model's input size) and an instruction to one of the
   * caller's own models through the engine, as a request naming it would go (its queue, endpoints,
   * retries, timeouts, answer checks and statistics), and reports what came back. Not an
   * inference of a robot: no safety gate, no log row. A failure of the endpoint (5xx problems:
   * unreachable, timeout, a 3xx, an invalid answer) is the report's `error`; a mistake in the
   * probe request itself (an unknown unnorm_key) is thrown. Any other id is 404 unknown_model.
   */
  async probe(
    viewer: ModelViewer,
    id: string,
    input: { readonly instruction?: string | undefined; readonly unnormKey?: string | undefined },
  ): Promise<ProbeReport> {
    if (!this.d.engine.customerModelIds(viewer.customerId).includes(id)) throw this.unknown(viewer, id);
    const { width, height } = this.d.engine.describe(id, viewer).input.image;
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    try {
      const r = await this.d.engine.infer({
        model: id,
        imageArray: {
          dtype: "|u1",
          shape: [height, width, 3],
          data: new Uint8Array(width * height * 3).fill(PROBE_GREY),
        },
        instruction: input.instruction ?? "pick up the block",
        unnormKey: input.unnormKey,
        customerId: viewer.customerId,
        viewer,
      });
      return {
        ok: true,
        latency_ms: elapsed(),
        unnorm_key: r.unnormKey,
        action: r.action,
        action_chunk: r.actionChunk ?? null,
        timing: r.timing,
      };
    } catch (e) {
      if (!(e instanceof AppError) || e.status < 500 || e.code === "shutting_down") throw e;
      return {
        ok: false,
        latency_ms: elapsed(),
        error: { code: e.code, status: e.status, detail: e.detail ?? e.message },
      };
    }
  }

  /** Deletes the caller's own model: 404 unknown_model for any other id (a registry one included). */
  async remove(viewer: ModelViewer, id: string): Promise<void> {
    const deleted = await this.d.repo.delete(viewer.customerId, id);
    if (!deleted) throw this.unknown(viewer, id);
    await this.sync(viewer.customerId, id);
    await this.d.publish(viewer.customerId, id);
  }

  /** Runs `task` for one model after every change queued for it before. */
  private enqueue(customerId: string, id: string, task: () => Promise<void>): Promise<void> {
    const key = keyOf(customerId, id);
    const next = (this.pending.get(key) ?? Promise.resolve()).then(task, task);
    this.pending.set(key, next);
    const clear = () => {
      if (this.pending.get(key) === next) this.pending.delete(key);
    };
    next.then(clear, clear);
    return next;
  }

  /** Serves (or stops serving) `row`, the model's row or undefined when there is none. */
  private async apply(customerId: string, id: string, row: CustomerModelRow | undefined): Promise<void> {
    if (row === undefined) await this.uninstall(customerId, id);
    else if (this.loaded.get(keyOf(customerId, id)) !== versionOf(row)) await this.install(row);
  }

  /** Makes this instance serve what customer_models holds for one model (a change here, a broadcast). */
  sync(customerId: string, id: string): Promise<void> {
    return this.enqueue(customerId, id, async () => {
      this.readAt.set(keyOf(customerId, id), performance.now());
      await this.apply(customerId, id, await this.d.repo.get(customerId, id));
    });
  }

  /**
   * Loads every row (startup; after a reconnect that may have missed broadcasts) and drops the rest.
   * Each model's part waits its turn behind the changes queued for it, and is skipped when one of
   * them read the row after this snapshot was taken (a model deleted meanwhile is not brought back).
   */
  async loadAll(): Promise<void> {
    const takenAt = performance.now();
    this.loading += 1;
    try {
      const rows = new Map((await this.d.repo.all()).map((r) => [keyOf(r.customerId, r.id), r]));
      const keys = new Set([...this.loaded.keys(), ...rows.keys()]);
      for (const key of keys) {
        const [customerId, id] = key.split("/") as [string, string];
        await this.enqueue(customerId, id, async () => {
          if ((this.readAt.get(key) ?? Number.NEGATIVE_INFINITY) > takenAt) return;
          await this.apply(customerId, id, rows.get(key));
        });
      }
    } finally {
      this.loading -= 1;
      // Reads older than this snapshot matter to no loadAll any more (none older is running).
      if (this.loading === 0) for (const [key, at] of this.readAt) if (at <= takenAt) this.readAt.delete(key);
    }
  }

  /**
   * Makes this instance serve what customer_models holds for every model of one customer: those it
   * has loaded and those it has rows for (a customer's erasure, broadcast with `publishCustomer`).
   */
  async syncCustomer(customerId: string): Promise<void> {
    const prefix = `${customerId}/`;
    const ids = new Set([
      ...this.d.engine.customerModelIds(customerId),
      ...[...this.loaded.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)),
      ...(await this.d.repo.list(customerId)).map((r) => r.id),
    ]);
    await Promise.all([...ids].map((id) => this.sync(customerId, id)));
  }

  /**
   * After a customer's erasure: stop serving its models here and everywhere. One message names the
   * customer, not each model: another instance may serve a model this one never loaded (a broadcast
   * not yet received here, a document this instance's settings refuse).
   */
  async forgetCustomer(customerId: string): Promise<void> {
    await this.syncCustomer(customerId);
    await this.d.publishCustomer(customerId);
  }

  /**
   * Validated again on every load: a row that the operator's current rules refuse (say
   * BYOM_ALLOW_HTTP was turned off) is not served, and a warning names it. A max_response_bytes
   * stored above today's cap is served with the cap, and a warning says so.
   */
  private async install(row: CustomerModelRow): Promise<void> {
    const parsed = parseCustomerModel(row.definition, row.customerId, this.d.egress, { stored: true });
    if (parsed.ok && parsed.adjusted !== undefined) {
      this.d.log.warn(
        { customerId: row.customerId, model: row.id, adjusted: parsed.adjusted },
        "customer model served with settings lowered to the current limits",
      );
    }
    if (!parsed.ok) {
      this.d.log.warn(
        { customerId: row.customerId, model: row.id, problems: parsed.errors },
        "customer model not served: it no longer passes validation",
      );
      await this.uninstall(row.customerId, row.id);
      return;
    }
    await this.d.engine.putCustomerModel(row.customerId, parsed.def);
    this.loaded.set(keyOf(row.customerId, row.id), versionOf(row));
  }

  private async uninstall(customerId: string, id: string): Promise<void> {
    this.loaded.delete(keyOf(customerId, id));
    await this.d.engine.removeCustomerModel(customerId, id);
  }
}
