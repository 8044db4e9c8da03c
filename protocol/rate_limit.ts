/**
 * A token bucket for stream resets and refusals.
 *
 * HTTP/2's "Rapid Reset" (CVE-2023-44487) opened and cancelled streams in a tight
 * loop so that the server did work for requests nobody waited for. Each reset or
 * refusal takes a token here; a peer that runs the bucket dry is closed.
 *
 * @module
 */

/** Bucket size and refill rate. */
export interface RateLimitOptions {
  /** Tokens available at once. */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
}

/**
 * Checks a bucket's options, as {@linkcode TokenBucket} does when it is made: for a caller
 * that makes its bucket later, and wants misuse to throw now.
 *
 * @example Usage
 * ```ts
 * import { checkRateLimit } from "@swaggersocket/swaggersocket/protocol";
 * checkRateLimit({ burst: 10, perSecond: 5 }); // fine
 * ```
 *
 * @param options Burst and rate.
 * @throws {RangeError} If burst or rate is negative.
 */
export function checkRateLimit(options: RateLimitOptions): void {
  if (!(options.burst >= 0) || !(options.perSecond >= 0)) {
    throw new RangeError("Rate limit burst and perSecond must be non-negative numbers");
  }
}

/**
 * A token bucket driven by the caller's clock.
 *
 * @example Usage
 * ```ts
 * import { TokenBucket } from "@swaggersocket/swaggersocket/protocol";
 * const bucket = new TokenBucket({ burst: 2, perSecond: 1 }, 0);
 * bucket.take(0); // true
 * bucket.take(0); // true
 * bucket.take(0); // false
 * bucket.take(1000); // true
 * ```
 */
export class TokenBucket {
  #burst: number;
  #perMs: number;
  #tokens: number;
  #at: number;

  /**
   * Creates a full bucket.
   *
   * @param options Burst and rate.
   * @param now The current time in milliseconds.
   * @throws {RangeError} If burst or rate is negative.
   */
  constructor(options: RateLimitOptions, now: number) {
    checkRateLimit(options);
    this.#burst = options.burst;
    this.#perMs = options.perSecond / 1000;
    this.#tokens = options.burst;
    this.#at = now;
  }

  /**
   * Takes one token.
   *
   * @param now The current time in milliseconds.
   * @returns Whether a token was available.
   */
  take(now: number): boolean {
    if (!this.peek(now)) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Whether a token is available, without taking it.
   *
   * @param now The current time in milliseconds.
   * @returns Whether `take(now)` would succeed.
   */
  peek(now: number): boolean {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs);
      this.#at = now;
    }
    return this.#tokens >= 1;
  }
}
