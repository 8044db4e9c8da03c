/**
 * Small byte arrays carved from shared slabs, for bytes on their way out: header blocks,
 * window updates, the bytes of a small request body.
 *
 * On Deno every `new Uint8Array(n)`, however small, allocates a backing store outside the
 * heap (~1.3 µs), and the collector sweeps each one again: making the two header blocks and
 * the body copy of an exchange this way was 12 % of its CPU one at a time and 18 % at 64 in
 * flight (bench/RESULTS.md, session 18). A view into a slab costs ~0.03 µs, on Bun as on
 * Deno. Each slab is used once, front to back, and left to the collector: there is nothing
 * to free. A view keeps its whole slab alive, so slabs are small: an array still queued
 * (a peer that reads nothing) keeps at most `SLAB_BYTES`, against the few hundred bytes an
 * array of its own costs, and anything larger than `SMALL_BYTES` gets one.
 *
 * Internal to the codec and the connection's request path.
 *
 * @module
 */

const encoder = new TextEncoder();
/** The size of each slab. */
const SLAB_BYTES = 1024;
/** The largest array carved from a slab. */
export const SMALL_BYTES = 256;

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/**
 * A zeroed byte array of `size`: a view into the current slab if it is small, else its own.
 *
 * @param size Bytes.
 * @returns The array, written by no one else.
 */
export function smallBytes(size: number): Uint8Array {
  if (size > SMALL_BYTES) return new Uint8Array(size);
  if (used + size > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const out = new Uint8Array(slab, used, size);
  used += size;
  return out;
}

/**
 * A copy of `bytes`, carved from a slab when small.
 *
 * @param bytes What to copy.
 * @returns The copy.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength > SMALL_BYTES) return bytes.slice();
  const out = smallBytes(bytes.byteLength);
  out.set(bytes);
  return out;
}

/**
 * The UTF-8 bytes of `text`, carved from a slab when it is short and ASCII.
 *
 * @param text The text.
 * @returns Its bytes.
 */
export function textBytes(text: string): Uint8Array {
  if (text.length <= SMALL_BYTES) {
    const out = smallBytes(text.length);
    if (writeAscii(out, 0, text) !== undefined) return out;
  }
  return encoder.encode(text);
}

/**
 * Copies an all-ASCII string byte for byte (most heads are).
 *
 * @param out Where to.
 * @param offset Where in `out`.
 * @param text The string.
 * @returns Its length, or `undefined` if it is not ASCII (then `out` holds a part of it).
 */
export function writeAscii(out: Uint8Array, offset: number, text: string): number | undefined {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return undefined;
    out[offset + i] = code;
  }
  return text.length;
}
