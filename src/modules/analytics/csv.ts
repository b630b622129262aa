/**
 * CSV (RFC 4180) for the analytics routes. Cells that a spreadsheet would run as a formula
 * (starting with =, +, -, @, tab or CR; instruction text is caller input) are prefixed with a
 * single quote (OWASP "CSV injection"); numbers are written as numbers.
 */
export type Cell = string | number | null | undefined;

function cell(v: Cell): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "";
  let s = v;
  if (/^[=+\-@\t\r]/u.test(s)) s = `'${s}`;
  return /[",\r\n]/u.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function toCsv(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  return [header, ...rows].map((r) => `${r.map(cell).join(",")}\r\n`).join("");
}

/**
 * Whether the client asked for CSV: `text/csv` in Accept, preferred over (listed with a q no
 * lower than, and before) application/json.
 */
export function wantsCsv(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let csv: { q: number; i: number } | undefined;
  let json: { q: number; i: number } | undefined;
  accept.split(",").forEach((part, i) => {
    const [type = "", ...params] = part.trim().toLowerCase().split(";");
    const qp = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const q = qp === undefined ? 1 : Number(qp.slice(2));
    const quality = Number.isFinite(q) ? q : 0;
    if (type.trim() === "text/csv" && csv === undefined) csv = { q: quality, i };
    if (type.trim() === "application/json" && json === undefined) json = { q: quality, i };
  });
  if (csv === undefined || csv.q <= 0) return false;
  if (json === undefined) return true;
  return csv.q > json.q || (csv.q === json.q && csv.i < json.i);
}
