/**
 * Messages as plain `Uint8Array`s, whatever buffer type the runtime hands over.
 *
 * @module
 */

/** Messages up to this size are copied rather than viewed (see `plainBytes`). */
const COPY_MESSAGES_UP_TO = 4096;

/**
 * A message as a plain `Uint8Array` that owns its buffer, not Bun's (or `node:http`'s)
 * `Buffer`: a Buffer's `slice()` is a view, not a copy, so a chunk "copied" out of a Buffer
 * message would keep the whole message alive (2 GiB held against 8 MiB counted, in the
 * pinning attack), and body chunks should look the same to handlers on every runtime. Bun's
 * `.buffer` costs 1.5 µs (it makes the ArrayBuffer); copying a small message costs less
 * (0.3 µs for 100 B, the same at 4 KiB), a view of a large one far less (16 µs against 184
 * for 1 MiB).
 *
 * @param data The message.
 * @returns A plain `Uint8Array` with the same bytes.
 */
export function plainBytes(data: Uint8Array): Uint8Array {
  return data.byteLength <= COPY_MESSAGES_UP_TO
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
