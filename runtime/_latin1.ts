/**
 * Bytes of text written one byte per character (latin1), as an HTTP/1.1 head is: the
 * runtimes' own sockets take bytes, or strings only as UTF-8.
 *
 * @module
 */

const encoder = new TextEncoder();
/** A character beyond ASCII (a surrogate of one beyond the BMP included). */
const BEYOND_ASCII = /[\u0080-\uffff]/;

/** Whether `text` is all ASCII, which UTF-8 writes one byte per character too. */
export function isAscii(text: string): boolean {
  return !BEYOND_ASCII.test(text);
}

/**
 * `parts` in order as one buffer: each string one byte per character (its characters are
 * at most U+00FF), each `Uint8Array` as it is.
 *
 * @param parts Strings and bytes.
 * @returns One part's bytes as they are (a string's encoded), or a new buffer of them all.
 */
export function latin1Bytes(parts: readonly (string | Uint8Array)[]): Uint8Array {
  if (parts.length === 1 && typeof parts[0] !== "string") return parts[0];
  let length = 0;
  for (const part of parts) length += typeof part === "string" ? part.length : part.byteLength;
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    if (typeof part !== "string") {
      bytes.set(part, at);
      at += part.byteLength;
    } else if (isAscii(part)) {
      at += encoder.encodeInto(part, bytes.subarray(at)).written;
    } else {
      for (let i = 0; i < part.length; i++) bytes[at++] = part.charCodeAt(i);
    }
  }
  return bytes;
}
