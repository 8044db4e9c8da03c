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

/** Reconnection backoff. Every field has the default given in {@linkcode RECONNECT_DEFAULTS}. */
export interface ReconnectOptions {
  /** Milliseconds before the first retry, before jitter. Default 250. */
  initialDelay?: number;
  /** Largest delay between retries, milliseconds, before jitter. Default 30 000. */
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
    const defaults = RECONNECT_DEFAULTS;
    this.#initialDelay = options.initialDelay ?? defaults.initialDelay;
    this.#maxDelay = options.maxDelay ?? defaults.maxDelay;
    this.#factor = options.factor ?? defaults.factor;
    this.#jitter = Math.min(Math.max(options.jitter ?? defaults.jitter, 0), 1);
    this.maxAttempts = options.maxAttempts ?? defaults.maxAttempts;
    this.#random = random;
  }

  /**
   * The wait before attempt `attempt` of a retry loop.
   *
   * @param attempt 1 for the first retry.
   * @returns Milliseconds.
   */
  delay(attempt: number): number {
    const cap = Math.min(this.#maxDelay, this.#initialDelay * this.#factor ** (attempt - 1));
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
