import type { PGlite, Transaction } from "@electric-sql/pglite";

/**
 * Lone UTF-16 surrogates in query parameters, made safe for PGlite.
 *
 * A JS string may hold a lone surrogate (a JSON escape such as `"\udc09"` decodes to one), which
 * has no UTF-8 form. node-postgres writes it as U+FFFD, so PostgreSQL stores U+FFFD. PGlite
 * (0.5.x) sizes a text parameter with its own UTF-8 byte counter, which skips the code unit
 * before every low surrogate (assumed to be its high half): a lone low surrogate after another
 * non-ASCII code unit is under-counted, TextEncoder writes more bytes than were reserved, and
 * the next field overwrites the tail. The value then arrives silently truncated, as invalid
 * UTF-8 (22021) or, inside an array parameter, as a malformed array literal (22P02) that
 * fails a whole `unnest` insert. Replacing lone surrogates with U+FFFD before PGlite sees a
 * parameter stores exactly what PostgreSQL stores.
 */

/** `v` with every lone surrogate in a string, or in a string of a (nested) array, replaced by U+FFFD; `v` itself when there is none. */
export function wellFormedParam(v: unknown): unknown {
  if (typeof v === "string") return v.isWellFormed() ? v : v.toWellFormed();
  if (!Array.isArray(v)) return v;
  let out: unknown[] | undefined;
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    const y = wellFormedParam(x);
    if (y !== x) {
      out ??= v.slice();
      out[i] = y;
    }
  }
  return out ?? v;
}

function wellFormedParams(params: unknown[] | undefined): unknown[] | undefined {
  if (params === undefined) return undefined;
  let out: unknown[] | undefined;
  for (let i = 0; i < params.length; i++) {
    const x = params[i];
    const y = wellFormedParam(x);
    if (y !== x) {
      out ??= params.slice();
      out[i] = y;
    }
  }
  return out ?? params;
}

type Queryable = Pick<Transaction, "query">;

function guard<T extends Queryable>(target: T): T {
  return new Proxy(target, {
    get(t, prop) {
      if (prop === "query") {
        const query: Transaction["query"] = (q, params, options) => t.query(q, wellFormedParams(params), options);
        return query;
      }
      if (prop === "transaction") {
        const transaction: PGlite["transaction"] = (fn) => (t as unknown as PGlite).transaction((tx) => fn(guard(tx)));
        return transaction;
      }
      // PGlite keeps its state in private fields: its methods must run on the client itself.
      const v: unknown = Reflect.get(t, prop, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

/**
 * The client (for Drizzle) whose `query`, and `query` of its transactions, replace lone
 * surrogates in parameters by U+FFFD before PGlite encodes them.
 */
export function withWellFormedParams(client: PGlite): PGlite {
  return guard(client);
}
