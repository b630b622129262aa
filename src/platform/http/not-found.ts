import type { FastifyInstance } from "fastify";
import FindMyWay, { type HTTPMethod } from "find-my-way";
import { errors } from "../errors.ts";
import { sendProblem } from "./error-handler.ts";
import { WindowCounter } from "./window-counter.ts";

const METHODS: readonly HTTPMethod[] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/**
 * Unknown routes answer 404 `route_not_found`; a known path with the wrong method answers
 * 405 with `Allow`. Both are rate limited per client IP, so scanning the API is cheap for us
 * and slow for the scanner.
 */
export function installNotFound(app: FastifyInstance, opts: { baseUrl: string; perMinute: number }): void {
  // A shadow router that only knows which methods exist per path.
  const shadow = FindMyWay({ ignoreTrailingSlash: true });
  const seen = new Set<string>();
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) {
      const key = `${m} ${route.url}`;
      if (seen.has(key) || !METHODS.includes(m as HTTPMethod)) continue;
      seen.add(key);
      try {
        shadow.on(m as HTTPMethod, route.url, () => {});
      } catch {
        // Constraint-only duplicates are fine to ignore here.
      }
    }
  });

  const counter = new WindowCounter(60_000);
  app.addHook("onClose", async () => counter.close());

  app.setNotFoundHandler((request, reply) => {
    const hit = counter.hit(request.ip);
    if (hit.count > opts.perMinute) {
      return sendProblem(reply, request, errors.rateLimited(hit.resetInMs / 1000), opts.baseUrl);
    }
    const path = request.url.split("?")[0] ?? "/";
    const allowed = METHODS.filter((m) => shadow.find(m, path) !== null);
    if (allowed.length > 0) {
      return sendProblem(reply, request, errors.methodNotAllowed(request.method, allowed), opts.baseUrl);
    }
    return sendProblem(reply, request, errors.routeNotFound(request.method, path), opts.baseUrl);
  });
}
