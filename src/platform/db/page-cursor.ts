import { type AnyColumn, type SQL, sql } from "drizzle-orm";
import { errors } from "../errors.ts";
import { isStorableInstant } from "./instants.ts";

/**
 * Keyset pagination over (created_at, id), newest first: the cursor of the listings that page by
 * creation time (inference history, feedback, experiments and their shadow records). Opaque to
 * clients: base64url of `[created_at, id]`.
 */
export interface PageCursor {
  readonly createdAt: string;
  readonly id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodePageCursor(c: PageCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id]), "utf8").toString("base64url");
}

/** 400 invalid_request (`/cursor`) for anything this API did not issue. */
export function decodePageCursor(s: string): PageCursor {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string") {
      const [createdAt, id] = v as [string, string];
      if (UUID.test(id) && isStorableInstant(Date.parse(createdAt))) return { createdAt, id };
    }
  } catch {
    // fall through
  }
  throw errors.invalidRequest([{ in: "query", path: "/cursor", message: "is not a cursor from this API" }]);
}

/** The rows after the cursor in newest-first order: `(created_at, id) < (cursor)`. */
export function beforeCursor(createdAt: AnyColumn, id: AnyColumn, cursor: PageCursor): SQL {
  return sql`(${createdAt}, ${id}) < (${cursor.createdAt}::timestamptz, ${cursor.id}::uuid)`;
}

/**
 * A page from `limit + 1` rows fetched newest first: the first `limit`, and the cursor of the
 * next page when the extra row shows there is one.
 */
export function pageOf<R extends { readonly createdAt: Date; readonly id: string }>(
  rows: readonly R[],
  limit: number,
): { readonly page: R[]; readonly nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    page,
    nextCursor:
      rows.length > limit && last !== undefined
        ? encodePageCursor({ createdAt: last.createdAt.toISOString(), id: last.id })
        : null,
  };
}
