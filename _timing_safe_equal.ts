/**
 * Comparing secrets (resume tokens, agent tokens, API tokens, token digests) in time that
 * does not depend on where they differ, as Deno std's `crypto/timingSafeEqual` does.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Whether `a` and `b` are equal, in time that depends only on their lengths. Strings are
 * compared as their UTF-8 bytes.
 *
 * @example Usage
 * ```ts
 * import { timingSafeEqual } from "./_timing_safe_equal.ts";
 *
 * timingSafeEqual("s3cret", "s3cret"); // true
 * timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])); // false
 * ```
 *
 * @param a A secret.
 * @param b The other.
 * @returns `true` if they are byte for byte the same.
 */
export function timingSafeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const x = typeof a === "string" ? encoder.encode(a) : a;
  const y = typeof b === "string" ? encoder.encode(b) : b;
  const length = Math.max(x.length, y.length);
  let diff = x.length ^ y.length;
  for (let i = 0; i < length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
