import type { EgressGuard } from "../../platform/egress.ts";
import { policyFor, refusedUrlSyntax } from "../../platform/egress.ts";
import type { FieldError } from "../../platform/errors.ts";
import { type ModelDefinition, PROJECT_ROOT, parseModel } from "./registry.ts";

/**
 * A customer's model document (POST /v1/models) -> a ModelDefinition, with the registry's own
 * per-entry validation (registry.ts `parseModel`) plus what a customer may not do that an operator
 * may: only remote backends (`openvla-http`, `kserve-v2`), statistics inline (never a file path),
 * no `metrics_urls` or `access`, and tighter bounds on what costs this service resources.
 * Endpoint URLs pass the SSRF guard's syntax check here; the DNS check is the service's.
 */

/** Upper bounds a customer's document must stay within (docs/models.md, "Bring your own endpoint"). */
export const CUSTOMER_MODEL_LIMITS = {
  endpoints: 8,
  timeoutMs: 60_000,
  retries: 3,
  /**
   * The largest answer read from a customer's endpoint (backend.max_response_bytes; the registry's
   * default): each is parsed on the event loop, up to 1 + retries times per request. The largest
   * legitimate openvla-http answer at the registry's bounds (chunk 256 x dim 64, float64
   * json_numpy) is 174,811 bytes; a kserve-v2 batch's JSON numbers take about 22 bytes each, so
   * 1 MiB holds about 47,000 values (a batch of 64 x 10 steps x 7 dims is 4,480). Parsing and
   * checking 1 MiB of numbers took 5.6 ms on the development machine, 8 MiB 43 ms (x4 attempts).
   */
  maxResponseBytes: 1024 * 1024,
  maxQueue: 1024,
  maxConcurrentBatches: 32,
  maxBatchSize: 64,
  /**
   * The model's image side (image.size, width, height): every request's image is resized to it and
   * held while it waits (up to maxQueue per model); at the registry's 2048, one tiny JPEG would hold
   * 12 MB (16 MB as json_numpy, 800 MB per kserve-v2 batch of 64) on the service's memory.
   */
  imageSide: 512,
} as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/** "backend.endpoints[0]: not ..." -> { path: "/backend/endpoints/0", message: "not ..." }. */
function fieldError(problem: string): FieldError {
  const cut = problem.indexOf(": ");
  if (cut <= 0) return { in: "body", path: "", message: problem };
  const field = problem.slice(0, cut).replace(/^\./, "");
  const path = `/${field
    .replace(/\[(\d+)\]/g, ".$1")
    .split(".")
    .join("/")}`;
  return { in: "body", path, message: problem.slice(cut + 2) };
}

function bound(o: Obj, key: string, max: number, where: string, out: FieldError[], why = ""): void {
  const v = o[key];
  if (typeof v === "number" && v > max) {
    out.push({ in: "body", path: `/${where}/${key}`, message: `must be at most ${max} for a customer model${why}` });
  }
}

/**
 * A stored document whose max_response_bytes is above the cap (registered when the cap was 8 MiB)
 * with the cap instead, and a note saying so; other documents as they are. Lowering it refuses
 * only answers far larger than any action (CUSTOMER_MODEL_LIMITS.maxResponseBytes), so the model
 * keeps being served.
 */
function clampStored(doc: Obj): { doc: Obj; adjusted: string[] } {
  const backend = doc.backend;
  const max = CUSTOMER_MODEL_LIMITS.maxResponseBytes;
  if (!isObj(backend) || typeof backend.max_response_bytes !== "number" || backend.max_response_bytes <= max) {
    return { doc, adjusted: [] };
  }
  return {
    doc: { ...doc, backend: { ...backend, max_response_bytes: max } },
    adjusted: [`backend.max_response_bytes ${backend.max_response_bytes} lowered to ${max}`],
  };
}

export type CustomerModelParse =
  | {
      readonly ok: true;
      readonly def: ModelDefinition;
      /** `stored`: settings above today's caps that were lowered to them (for a warning). */
      readonly adjusted?: readonly string[];
    }
  | { readonly ok: false; readonly errors: readonly FieldError[] };

/**
 * Validates `doc` for `customerId`. The result's definition is private to that customer and its
 * backend connects through `egress` narrowed to that customer (`policyFor`). `endpointErrors` lists URL refusals apart from other errors
 * (the route answers those 422 `endpoint_not_allowed`). `stored`: a document loaded from
 * customer_models rather than sent now, whose `max_response_bytes` above the cap is lowered to it
 * (`adjusted`) instead of refused.
 */
export function parseCustomerModel(
  sent: unknown,
  customerId: string,
  egress: EgressGuard,
  options: { readonly stored?: boolean } = {},
): CustomerModelParse & { readonly endpointErrors?: readonly FieldError[] } {
  if (!isObj(sent)) return { ok: false, errors: [{ in: "body", path: "", message: "expected an object" }] };
  const { doc, adjusted } = options.stored === true ? clampStored(sent) : { doc: sent, adjusted: [] };
  const problems: FieldError[] = [];
  const backend = doc.backend;
  if (isObj(backend)) {
    if (backend.kind !== "openvla-http" && backend.kind !== "kserve-v2") {
      problems.push({ in: "body", path: "/backend/kind", message: 'expected "openvla-http" or "kserve-v2"' });
    }
    if (backend.metrics_urls !== undefined) {
      problems.push({ in: "body", path: "/backend/metrics_urls", message: "not available for customer models" });
    }
    if (Array.isArray(backend.endpoints) && backend.endpoints.length > CUSTOMER_MODEL_LIMITS.endpoints) {
      problems.push({
        in: "body",
        path: "/backend/endpoints",
        message: `at most ${CUSTOMER_MODEL_LIMITS.endpoints} endpoints`,
      });
    }
    bound(backend, "timeout_ms", CUSTOMER_MODEL_LIMITS.timeoutMs, "backend", problems);
    bound(backend, "retries", CUSTOMER_MODEL_LIMITS.retries, "backend", problems);
    bound(
      backend,
      "max_response_bytes",
      CUSTOMER_MODEL_LIMITS.maxResponseBytes,
      "backend",
      problems,
      " (1 MiB: every answer is parsed on the service's CPU, and the largest action answer is far smaller)",
    );
  }
  if (doc.dataset_statistics !== undefined && !isObj(doc.dataset_statistics)) {
    problems.push({
      in: "body",
      path: "/dataset_statistics",
      message: "expected the statistics inline (an object keyed by unnorm key)",
    });
  }
  if (doc.access !== undefined) {
    problems.push({
      in: "body",
      path: "/access",
      message: "not available: a customer model is private to its customer",
    });
  }
  if (isObj(doc.image)) {
    for (const key of ["size", "width", "height"]) {
      bound(doc.image, key, CUSTOMER_MODEL_LIMITS.imageSide, "image", problems);
    }
  }
  if (isObj(doc.batching)) {
    bound(doc.batching, "max_queue", CUSTOMER_MODEL_LIMITS.maxQueue, "batching", problems);
    bound(doc.batching, "max_concurrent_batches", CUSTOMER_MODEL_LIMITS.maxConcurrentBatches, "batching", problems);
    bound(doc.batching, "max_batch_size", CUSTOMER_MODEL_LIMITS.maxBatchSize, "batching", problems);
    bound(doc.batching, "timeout_ms", CUSTOMER_MODEL_LIMITS.timeoutMs, "batching", problems);
  }
  if (problems.length > 0) return { ok: false, errors: problems };

  let parsed: ModelDefinition;
  try {
    // Nothing customer-supplied is a path (checked above); the base directory is never read.
    parsed = parseModel(doc, PROJECT_ROOT);
  } catch (e) {
    return { ok: false, errors: [fieldError(e instanceof Error ? e.message : String(e))] };
  }
  const b = parsed.backend;
  if (b.kind !== "openvla-http" && b.kind !== "kserve-v2") {
    return { ok: false, errors: [{ in: "body", path: "/backend/kind", message: "expected a remote backend" }] };
  }
  // Networks allow-listed for another customer are not this one's to reach.
  const guard: EgressGuard = { ...egress, policy: policyFor(egress.policy, customerId) };
  const endpointErrors: FieldError[] = [];
  b.endpoints.forEach((url, i) => {
    const why = refusedUrlSyntax(url, guard.policy);
    if (why !== undefined) endpointErrors.push({ in: "body", path: `/backend/endpoints/${i}`, message: why });
  });
  if (endpointErrors.length > 0) return { ok: false, errors: endpointErrors, endpointErrors };
  return {
    ok: true,
    def: { ...parsed, backend: { ...b, egress: guard }, accessCustomers: new Set([customerId.toLowerCase()]) },
    ...(adjusted.length > 0 ? { adjusted } : {}),
  };
}
