/**
 * The instruction tokenizer of ONNX model directories whose config names
 * `"tokenizer": {"kind": "hash-words", "vocab_size": V, "max_length": L}`: lower-case, split on
 * anything that is not a-z or 0-9, each word -> 1 + (FNV-1a-32(word) mod (V - 1)), truncated or
 * padded with 0 to L ids. Id 0 is padding. Deterministic and dependency-free, which is all
 * the demo policy needs; a real checkpoint would ship its own tokenizer.
 */
export interface HashWordsTokenizer {
  readonly kind: "hash-words";
  readonly vocabSize: number;
  readonly maxLength: number;
}

export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(s)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function tokenize(text: string, t: HashWordsTokenizer): BigInt64Array {
  const out = new BigInt64Array(t.maxLength);
  const words = text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
  for (let i = 0; i < Math.min(words.length, t.maxLength); i++) {
    out[i] = BigInt(1 + (fnv1a32(words[i] as string) % (t.vocabSize - 1)));
  }
  return out;
}
