/**
 * The clock: where the library reads the time and sets its timers.
 *
 * Everything of one endpoint that keeps time (its sessions, its connections' deadlines and
 * output timers, its resume tokens) reads one `Clock`, so their deadlines agree, and a test
 * can hand them a fake one and move time on without sleeping.
 *
 * @module
 */

/** A time source with timers on the same time line. */
export interface Clock {
  /** Milliseconds since an arbitrary origin; never goes back. */
  now(): number;
  /**
   * Calls `callback` once, `ms` milliseconds from now (or a little later).
   *
   * @returns A handle for {@linkcode Clock.clearTimer}.
   */
  setTimer(callback: () => void, ms: number): unknown;
  /** Cancels a timer that has not fired; a fired or cancelled one is ignored. */
  clearTimer(timer: unknown): void;
}

/** The runtime's clock: `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};
