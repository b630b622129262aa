import { hash } from "node:crypto";

/**
 * The form instructions are grouped by in analytics: trimmed, case-folded, runs of whitespace
 * collapsed to one space ("Pick up  the Cup " and "pick up the cup" are one instruction).
 */
export function normalizeInstruction(s: string): string {
  return s.trim().toLowerCase().replace(/\s+/gu, " ");
}

/** SHA-256 (hex) of the normalized instruction: inference_logs.instruction_key. */
export function instructionKey(s: string): string {
  return hash("sha256", normalizeInstruction(s), "hex");
}
