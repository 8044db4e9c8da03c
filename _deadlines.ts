/**
 * Many deadlines on one timer.
 *
 * A server holds thousands of connections that are mostly idle, each with a deadline (its
 * heartbeat) seconds away. A runtime timer per connection costs each of them about 1 KiB
 * on Deno (the timer object, its list, its closures, its native state). Here a deadline
 * is one small entry in a binary heap ordered by time, and one timer of the heap's clock
 * waits for the earliest. Everything on one clock shares one heap ({@linkcode deadlinesOf}).
 *
 * @module
 */

import { type Clock, systemClock } from "./_clock.ts";

/**
 * The longest wait a runtime timer takes (2^31 − 1 ms, ~24.8 days): Deno, Bun and Node fire a
 * longer one after 1 ms. A deadline further away is waited for in steps of this.
 */
export const MAX_TIMER_MS = 0x7fff_ffff;

/** One deadline; at most one pending at a time. */
export class Deadline {
  /** When it is due, in milliseconds on its heap's clock. */
  at = Infinity;
  /** Its place in the heap; -1 while not pending. */
  index = -1;

  /** @param fire Called once when the deadline is due (it may set the next one). */
  constructor(readonly fire: () => void) {}

  /** Whether it is set and has not fired yet. */
  get pending(): boolean {
    return this.index !== -1;
  }
}

/** A heap of deadlines on one clock, and the one timer that waits for the earliest. */
export class Deadlines {
  readonly #clock: Clock;
  readonly #heap: Deadline[] = [];
  #timer: unknown;
  #timerAt = Infinity;
  #running = false;

  /** @param clock The time the deadlines are on, and the timer that wakes them. */
  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The heap's clock. */
  get clock(): Clock {
    return this.#clock;
  }

  /**
   * Sets, moves or (with `undefined`) cancels a deadline.
   *
   * @param deadline The deadline.
   * @param at When it is due, on the heap's clock.
   */
  set(deadline: Deadline, at: number | undefined): void {
    if (deadline.index !== -1) this.#remove(deadline);
    if (at !== undefined) {
      deadline.at = at;
      deadline.index = this.#heap.length;
      this.#heap.push(deadline);
      this.#siftUp(deadline.index);
    }
    if (!this.#running) this.#arm();
  }

  #arm(): void {
    const heap = this.#heap;
    const next = heap.length > 0 ? heap[0].at : Infinity;
    if (next === this.#timerAt) return;
    // A timer due before the earliest deadline stays: it fires, finds nothing due and waits
    // again. Cancelling the earliest deadline (an answer that came in time) or moving it later
    // then costs no runtime timer; only an empty heap lets the timer go.
    if (next !== Infinity && this.#timer !== undefined && this.#timerAt < next) return;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (next !== Infinity) {
      const wait = Math.min(Math.max(0, next - this.#clock.now()), MAX_TIMER_MS);
      this.#timer = this.#clock.setTimer(this.#run, wait);
    }
  }

  #run = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#running = true;
    const heap = this.#heap;
    try {
      const now = this.#clock.now();
      while (heap.length > 0 && heap[0].at <= now) {
        const due = heap[0];
        this.#remove(due);
        due.fire();
      }
    } finally {
      // Even if one callback threw, the others keep their timer.
      this.#running = false;
      this.#arm();
    }
  };

  #remove(deadline: Deadline): void {
    const heap = this.#heap;
    const i = deadline.index;
    const last = heap.pop()!;
    deadline.index = -1;
    if (last === deadline) return;
    heap[i] = last;
    last.index = i;
    this.#siftUp(i);
    this.#siftDown(last.index);
  }

  #siftUp(i: number): void {
    const heap = this.#heap;
    const item = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].at <= item.at) break;
      heap[i] = heap[parent];
      heap[i].index = i;
      i = parent;
    }
    heap[i] = item;
    item.index = i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const item = heap[i];
    for (;;) {
      let child = 2 * i + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && heap[child + 1].at < heap[child].at) child++;
      if (heap[child].at >= item.at) break;
      heap[i] = heap[child];
      heap[i].index = i;
      i = child;
    }
    heap[i] = item;
    item.index = i;
  }
}

const heaps = new WeakMap<Clock, Deadlines>();

/**
 * The deadline heap of `clock`, made on first use: everything on one clock shares one
 * timer, however many deadlines it has.
 */
export function deadlinesOf(clock: Clock = systemClock): Deadlines {
  let deadlines = heaps.get(clock);
  if (deadlines === undefined) heaps.set(clock, deadlines = new Deadlines(clock));
  return deadlines;
}
