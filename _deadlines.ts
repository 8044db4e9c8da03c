/**
 * Every connection's deadline on one runtime timer.
 *
 * A server holds thousands of connections that are mostly idle, each with a deadline (its
 * heartbeat) seconds away. A runtime timer per connection costs each of them about 1 KiB
 * on Deno (the timer object, its list, its closures, its native state). Here a deadline
 * is one small entry in a binary heap ordered by time, and one timer waits for the earliest.
 *
 * @module
 */

/** One connection's deadline; at most one pending at a time. */
export class Deadline {
  /** When it is due, in milliseconds on `performance.now()`'s clock. */
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

const heap: Deadline[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
let timerAt = Infinity;
let running = false;

/**
 * Sets, moves or (with `undefined`) cancels a deadline.
 *
 * @param deadline The deadline.
 * @param at When it is due, on `performance.now()`'s clock.
 */
export function setDeadline(deadline: Deadline, at: number | undefined): void {
  if (deadline.index !== -1) remove(deadline);
  if (at !== undefined) {
    deadline.at = at;
    deadline.index = heap.length;
    heap.push(deadline);
    siftUp(deadline.index);
  }
  if (!running) arm();
}

function arm(): void {
  const next = heap.length > 0 ? heap[0].at : Infinity;
  if (next === timerAt) return;
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  timerAt = next;
  if (next !== Infinity) timer = setTimeout(run, Math.max(0, next - performance.now()));
}

function run(): void {
  timer = undefined;
  timerAt = Infinity;
  running = true;
  try {
    const now = performance.now();
    while (heap.length > 0 && heap[0].at <= now) {
      const due = heap[0];
      remove(due);
      due.fire();
    }
  } finally {
    // Even if one callback threw, the others keep their timer.
    running = false;
    arm();
  }
}

function remove(deadline: Deadline): void {
  const i = deadline.index;
  const last = heap.pop()!;
  deadline.index = -1;
  if (last === deadline) return;
  heap[i] = last;
  last.index = i;
  siftUp(i);
  siftDown(last.index);
}

function siftUp(i: number): void {
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

function siftDown(i: number): void {
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
