/**
 * Reading and writing big-endian 32-bit integers in byte arrays, byte by byte: on Bun a
 * `DataView` over a fresh small array, or `.buffer` of a received message, allocates.
 * Internal to the codec and the session's frame loop.
 *
 * @module
 */

/** Writes `n` (0 to 2³² − 1) at `offset`, big-endian. */
export function writeUint32(out: Uint8Array, offset: number, n: number): void {
  out[offset] = n >>> 24;
  out[offset + 1] = (n >>> 16) & 0xff;
  out[offset + 2] = (n >>> 8) & 0xff;
  out[offset + 3] = n & 0xff;
}

/** Reads the big-endian unsigned 32-bit integer at `offset`. */
export function readUint32(bytes: Uint8Array, offset: number): number {
  return bytes[offset] * 0x100_0000 +
    ((bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]);
}
