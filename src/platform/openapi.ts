import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import type { Config } from "../config.ts";

export const TAGS = [
  { name: "health", description: "Liveness, readiness and Prometheus metrics." },
  {
    name: "auth",
    description: "Accounts, sign-in (OAuth2 password grant), sessions, password reset and email verification.",
  },
  { name: "meta", description: "The API's own description: OpenAPI document and error types." },
  {
    name: "models",
    description: "The policies this server runs: action spec, statistics keys, status and live stats.",
  },
  {
    name: "api-keys",
    description: "Create, list, rename, rotate and revoke API keys (account owner or `admin` keys).",
  },
  {
    name: "inference",
    description:
      "Run a policy: `POST /v1/inference` (JSON, multipart or json_numpy image), inference history, and the OpenVLA-compatible `POST /act`.",
  },
  {
    name: "safety",
    description: "Per-robot safety profiles, emergency stops, and the incident log with summaries (docs/safety.md).",
  },
  {
    name: "feedback",
    description:
      "Ground truth on inferences: success and safety ratings, corrected actions, failure reports, their list and statistics (docs/feedback.md).",
  },
  {
    name: "experiments",
    description:
      "Model experiments: split traffic between models (sticky per robot), compare variants with significance tests, and shadow a candidate model on live requests without serving it (docs/experiments.md).",
  },
  {
    name: "privacy",
    description:
      "Data consent: what the service may keep of your inferences (tiers, permissions, expiry), its versions, and superuser administration (docs/privacy.md).",
  },
  { name: "usage", description: "Rate limits and quotas: current usage, limits and reset times." },
  {
    name: "analytics",
    description:
      "Usage, latency, safety, robot and instruction analytics over any range, from rollups (docs/analytics.md); JSON or `Accept: text/csv`.",
  },
  {
    name: "billing",
    description:
      "Stripe subscriptions: checkout, billing portal, subscription state, invoices, overage settings, and Stripe's webhook. 503 billing_disabled when the server has no Stripe key.",
  },
  {
    name: "admin",
    description:
      "The service operators' surface (superusers only; a customer's `admin` key gets 403): customers, tiers and limits (docs/admin.md).",
  },
  {
    name: "audit",
    description:
      "The append-only audit log: superuser reads of customer data and changes of keys, profiles, tiers, billing settings and consent (docs/privacy.md).",
  },
  {
    name: "admin",
    description:
      "The service operator's routes (superusers only; a customer's admin key gets 403): customers, tiers and limits, suspension, superuser grants, platform statistics, revenue, safety incidents and emergency stops across customers, deep health (docs/admin.md).",
  },
  {
    name: "account",
    description:
      "The account's data: request an export of everything stored about it (GDPR Art. 15/20), follow its progress, download the archive (docs/privacy.md).",
  },
  {
    name: "streaming",
    description:
      "Real-time WebSocket endpoints: the native `/v1/stream` and the openpi-compatible `/v1/openpi` (docs/streaming.md).",
  },
] as const;

interface OpenApiLike {
  paths?: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>>;
}

/** Moves every response whose schema is the Problem schema to `application/problem+json`. */
function problemMediaType<T extends OpenApiLike>(doc: T): T {
  for (const operations of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(operations)) {
      for (const response of Object.values(op.responses ?? {})) {
        const content = response.content ?? {};
        // Whatever media types the route produces (JSON, text, msgpack), its errors are problem+json.
        for (const [type, media] of Object.entries(content)) {
          const ref = (media as { schema?: { $ref?: unknown } }).schema?.$ref;
          if (type === "application/problem+json" || typeof ref !== "string" || !/(^|\/)Problem#?$/.test(ref)) continue;
          delete content[type];
          content["application/problem+json"] ??= media;
        }
      }
    }
  }
  return doc;
}

/**
 * OpenAPI 3.1 generated from the route schemas. Every route must declare its responses;
 * the 4XX/5XX problem responses are added here to any route that did not list its own.
 */
export async function registerOpenApi(app: FastifyInstance, config: Config): Promise<void> {
  app.addHook("onRoute", (route) => {
    if (route.schema === undefined || route.schema.hide === true) return;
    const response = (route.schema.response ?? {}) as Record<string, unknown>;
    const ref = { $ref: "Problem#" };
    if (!Object.keys(response).some((k) => k.startsWith("4"))) response["4XX"] = ref;
    if (!Object.keys(response).some((k) => k.startsWith("5"))) response["5XX"] = ref;
    route.schema.response = response;
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "VLA Inference API",
        version: config.version,
        description:
          "Serve Vision-Language-Action robot policies with auth, rate limits, safety checks and logging. " +
          "Every error is RFC 9457 problem+json with a stable `code`; see `/problems/{code}`.",
      },
      servers: [{ url: config.http.publicBaseUrl }],
      tags: [...TAGS],
      components: {
        securitySchemes: {
          bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT or vla_ API key" },
          apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key" },
          // Lets the docs page's "Authorize" button sign in with email and password.
          oauth2Password: {
            type: "oauth2",
            description: "Email as username; the access token is then sent as a Bearer token.",
            flows: { password: { tokenUrl: `${config.http.publicBaseUrl}/auth/token`, scopes: {} } },
          },
        },
      },
    },
    // Route schemas declare problem responses as `{ $ref: "Problem#" }`, which the generator files
    // under application/json; the server sends them as application/problem+json (RFC 9457).
    transformObject: (d) =>
      "openapiObject" in d
        ? problemMediaType(d.openapiObject as OpenApiLike & typeof d.openapiObject)
        : d.swaggerObject,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === "string" ? json.$id : `def-${i}`),
    },
  });
  await app.register(swaggerUi, {
    routePrefix: "/docs",
    staticCSP: true,
    uiConfig: { deepLinking: true, displayRequestDuration: true, tryItOutEnabled: true },
  });

  app.get("/openapi.json", { schema: { hide: true } }, async (_request, reply) =>
    reply.type("application/json").send(app.swagger()),
  );
}
