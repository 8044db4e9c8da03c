/**
 * Random strings for connection ids and secrets, from `crypto.getRandomValues`, made with
 * few allocations. Every handshake makes an id and a resume secret; the straightforward
 * ways (`ulid`'s default generator draws a new `Uint8Array` per character, `btoa` and three
 * replaces for base64url) left 6.5 KB of garbage per handshake, about a fifth of all a
 * server allocates to accept a connection, and a burst of handshakes grows the young
 * generation by what survives them (bench/RESULTS.md, "Idle memory").
 *
 * @module
 */

import { ulid } from "ulid";

const pool = new Uint8Array(256);
let taken = pool.length;

/** A number in [0, 1) in steps of 1/256 from a pool of random bytes: `ulid`'s own grain. */
function pooledRandom(): number {
  if (taken === pool.length) {
    crypto.getRandomValues(pool);
    taken = 0;
  }
  return pool[taken++] / 256;
}

/** A new ULID, its random part from `crypto.getRandomValues`. */
export function newId(): string {
  return ulid(undefined, pooledRandom);
}

const BASE64URL = new TextEncoder().encode(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
);
const ascii = new TextDecoder();

/**
 * At least `bits` random bits as base64url characters, six bits each: 256 bits make 43
 * characters, as 32 random bytes in unpadded base64url do.
 */
export function randomBase64url(bits: number): string {
  const chars = crypto.getRandomValues(new Uint8Array(Math.ceil(bits / 6)));
  // 64 divides 256, so the low six bits of a random byte are uniform.
  for (let i = 0; i < chars.length; i++) chars[i] = BASE64URL[chars[i] & 63];
  return ascii.decode(chars);
}
