import { gunzipSync } from "node:zlib";

/** Reads a .tar.gz into { name: text } (regular files; the archive format tar.ts writes). */
export function untar(gz: Buffer): Map<string, string> {
  const tar = gunzipSync(gz);
  const files = new Map<string, string>();
  let off = 0;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    const size = Number.parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, ""), 8);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] as number);
    const stored = Number.parseInt(
      header
        .subarray(148, 156)
        .toString("utf8")
        .replace(/[\0 ].*$/s, ""),
      8,
    );
    if (sum !== stored) throw new Error(`tar: bad checksum for ${name}`);
    off += 512;
    files.set(name, tar.subarray(off, off + size).toString("utf8"));
    off += Math.ceil(size / 512) * 512;
  }
  return files;
}

export function ndjson(text: string | undefined): Record<string, unknown>[] {
  if (text === undefined) throw new Error("missing file");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Reads a .tar.gz into { name: bytes } (binary files, e.g. stored images). */
export function untarBuffers(gz: Buffer): Map<string, Buffer> {
  const tar = gunzipSync(gz);
  const files = new Map<string, Buffer>();
  let off = 0;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    const size = Number.parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, ""), 8);
    off += 512;
    files.set(name, Buffer.from(tar.subarray(off, off + size)));
    off += Math.ceil(size / 512) * 512;
  }
  return files;
}
