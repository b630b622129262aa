/**
 * The least of a tar writer (POSIX ustar, as GNU tar and bsdtar read it): regular files only,
 * each a 512-byte header, its bytes, zero padding to a 512-byte boundary; two zero blocks end
 * the archive. Sizes of 8 GiB and more use the base-256 size field GNU tar and bsdtar accept.
 * https://www.gnu.org/software/tar/manual/html_node/Standard.html
 */
export const BLOCK = 512;

function putString(buf: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > length) throw new Error(`tar: "${value}" longer than ${length} bytes`);
  bytes.copy(buf, offset);
}

/** An octal number in `length` bytes: zero-padded digits then NUL. */
function putOctal(buf: Buffer, offset: number, length: number, value: number): void {
  putString(buf, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

export interface TarEntry {
  /** Path inside the archive, at most 100 bytes (no prefix field needed for our names). */
  readonly name: string;
  readonly size: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly mode?: number;
}

export function tarHeader(entry: TarEntry): Buffer {
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new Error(`tar: bad size ${entry.size}`);
  const h = Buffer.alloc(BLOCK);
  putString(h, 0, 100, entry.name);
  putOctal(h, 100, 8, entry.mode ?? 0o600);
  putOctal(h, 108, 8, 0); // uid
  putOctal(h, 116, 8, 0); // gid
  if (entry.size < 8 ** 11) {
    putOctal(h, 124, 12, entry.size);
  } else {
    // base-256: high bit of the first byte set, the number big-endian in the rest.
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(entry.size), 124 + 4);
  }
  putOctal(h, 136, 12, Math.max(0, Math.floor(entry.mtime)));
  h.fill(0x20, 148, 156); // checksum counts as spaces while summing
  h[156] = 0x30; // typeflag '0': regular file
  putString(h, 257, 6, "ustar\0");
  putString(h, 263, 2, "00");
  let sum = 0;
  for (const b of h) sum += b;
  putString(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** Zero bytes that bring `size` bytes of content to the next block boundary. */
export function tarPadding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK);
