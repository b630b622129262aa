import helmet, { type HelmetOptions } from "helmet";

/**
 * The response headers helmet would set for `options`, computed once at startup by running its
 * middleware against a recording response. Every response then gets the same object through
 * `reply.headers`; a route that needs another value (the /docs CSP) overrides it.
 */
export function securityHeadersOf(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failure: unknown;
  helmet(options)({} as never, recorder as never, (e?: unknown) => {
    failure = e;
  });
  if (failure !== undefined) throw failure;
  return headers;
}
