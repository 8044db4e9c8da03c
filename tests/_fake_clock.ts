/**
 * A clock whose time moves only when a test says so: timers fire, in time order, as
 * `advance()` passes them. What keeps time in the library takes a `Clock`; handed this
 * one, its deadline tests run without sleeping.
 *
 * @module
 */

import type { Clock } from "../_clock.ts";

interface Timer {
  at: number;
  seq: number;
  callback: () => void;
}

/** A `Clock` driven by the test. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Set<Timer>();

  /** @param start The time it starts at. */
  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(callback: () => void, ms: number): unknown {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, callback };
    this.#timers.add(timer);
    return timer;
  }

  clearTimer(timer: unknown): void {
    this.#timers.delete(timer as Timer);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing every timer due on the way, earliest (then oldest) first. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const timer of this.#timers) {
        if (timer.at > until) continue;
        if (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq)) {
          next = timer;
        }
      }
      if (!next) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = until;
  }
}
