/**
 * The one backoff between reconnection attempts, for the client and the agent alike:
 * exponential, with full jitter, as Deno std's `async/retry` computes it. Attempt n (from 1)
 * waits a random time in `[(1 − jitter) × d, d]`, where
 * `d = min(maxDelay, initialDelay × factor^(n − 1))`; with the default `jitter` of 1 that is
 * anywhere from 0 to `d` ("full jitter"), which spreads a crowd of agents best when a server
 * they all lost comes back.
 *
 * @module
 */

import { MAX_TIMER_MS } from "./_deadlines.ts";

/** Reconnection backoff. Every field has the default given in {@linkcode RECONNECT_DEFAULTS}. */
export interface ReconnectOptions {
  /** Milliseconds before the first retry, before jitter. Default 250. */
  initialDelay?: number;
  /**
   * Largest delay between retries, milliseconds, before jitter (a runtime timer's longest,
   * 2^31 − 1, at most). Default 30 000.
   */
  maxDelay?: number;
  /** Growth of the delay per failed attempt. Default 2. */
  factor?: number;
  /**
   * Fraction of each delay chosen at random (0–1), so that agents do not reconnect in step:
   * a delay `d` becomes a random time from `(1 − jitter) × d` to `d`. Default 1 (full jitter).
   */
  jitter?: number;
  /** Attempts before giving up (a `ConnectionFailure` event says so). Default unlimited. */
  maxAttempts?: number;
}

/** The defaults of {@linkcode ReconnectOptions}, for the client and the agent alike. */
export const RECONNECT_DEFAULTS: Readonly<Required<ReconnectOptions>> = Object.freeze({
  initialDelay: 250,
  maxDelay: 30_000,
  factor: 2,
  jitter: 1,
  maxAttempts: Infinity,
});

/** The waits between the attempts of one retry loop; `cancel()` ends the current wait. */
export class Backoff {
  /** Attempts before giving up. */
  readonly maxAttempts: number;
  readonly #initialDelay: number;
  readonly #maxDelay: number;
  readonly #factor: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #cancel: (() => void) | undefined;

  /**
   * @param options The user's options; missing fields take {@linkcode RECONNECT_DEFAULTS}.
   * @param random Uniform in [0, 1); `Math.random` by default.
   */
  constructor(options: ReconnectOptions = {}, random: () => number = Math.random) {
    // A delay that is not a number would be a 1 ms timer: a retry storm against the server.
    const finite = "a finite number ≥ 0";
    this.#initialDelay = check(options, "initialDelay", finite, (n) => n >= 0 && n < Infinity);
    this.#maxDelay = check(options, "maxDelay", "≥ 0", (n) => n >= 0);
    this.#factor = check(options, "factor", "a finite number ≥ 1", (n) => n >= 1 && n < Infinity);
    this.#jitter = Math.min(Math.max(check(options, "jitter", "a number", (n) => n === n), 0), 1);
    this.maxAttempts = check(
      options,
      "maxAttempts",
      "an integer ≥ 0 or Infinity",
      (n) => n >= 0 && (Number.isInteger(n) || n === Infinity),
    );
    this.#random = random;
  }

  /**
   * The wait before attempt `attempt` of a retry loop.
   *
   * @param attempt 1 for the first retry.
   * @returns Milliseconds.
   */
  delay(attempt: number): number {
    const cap = Math.min(
      this.#maxDelay,
      this.#initialDelay * this.#factor ** (attempt - 1),
      MAX_TIMER_MS,
    );
    return cap * (1 - this.#jitter * this.#random());
  }

  /**
   * Waits {@linkcode delay}`(attempt)` (or `ms`, a delay drawn before, to be logged), or until
   * {@linkcode cancel}.
   *
   * @param attempt 1 for the first retry.
   * @param ms The wait, if drawn already.
   * @returns Resolves when the wait is over.
   */
  wait(attempt: number, ms: number = this.delay(attempt)): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#cancel = done;
    });
  }

  /** Ends the current wait at once (the loop then sees why it should stop). */
  cancel(): void {
    this.#cancel?.();
  }
}

/** The option `name`, or its default; a value that `valid` refuses (not `what`) is a `RangeError`. */
function check(
  options: ReconnectOptions,
  name: keyof ReconnectOptions,
  what: string,
  valid: (value: number) => boolean,
): number {
  const value = options[name] ?? RECONNECT_DEFAULTS[name];
  if (typeof value !== "number" || !valid(value)) {
    throw new RangeError(`Invalid reconnect.${name}: ${value} must be ${what}`);
  }
  return value;
}
