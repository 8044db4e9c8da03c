/**
 * The deadline heap (`_deadlines.ts`): deadlines fire in time order, once, on one timer of
 * their clock; moving or cancelling one leaves the others alone. On a fake clock: no sleeping.
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Deadline, Deadlines, deadlinesOf, MAX_TIMER_MS } from "../_deadlines.ts";
import { systemClock } from "../_clock.ts";
import { FakeClock } from "./_fake_clock.ts";

describe("Deadlines", () => {
  it("Deadlines.set() fires deadlines once each, earliest first, on one timer", () => {
    const clock = new FakeClock(1_000);
    const deadlines = new Deadlines(clock);
    const fired: number[] = [];
    const all = [30, 5, 20, 10, 0, 15, 25].map((delay) => {
      const deadline = new Deadline(() => fired.push(delay));
      deadlines.set(deadline, clock.now() + delay);
      return deadline;
    });
    assert.equal(clock.pendingTimers, 1, "one timer for the whole heap");
    clock.advance(12);
    assert.deepEqual(fired, [0, 5, 10]);
    clock.advance(100);
    assert.deepEqual(fired, [0, 5, 10, 15, 20, 25, 30]);
    assert.ok(all.every((deadline) => !deadline.pending));
    assert.equal(clock.pendingTimers, 0, "no timer once the heap is empty");
  });

  it("Deadlines.set() moves and cancels a deadline without touching the others", () => {
    const clock = new FakeClock();
    const deadlines = new Deadlines(clock);
    const fired: string[] = [];
    const a = new Deadline(() => fired.push("a"));
    const b = new Deadline(() => fired.push("b"));
    const c = new Deadline(() => fired.push("c"));
    deadlines.set(a, 5);
    deadlines.set(b, 10);
    deadlines.set(c, 15);
    deadlines.set(a, 25);
    deadlines.set(b, undefined);
    assert.equal(b.pending, false);
    assert.equal(a.pending, true);
    clock.advance(20);
    assert.deepEqual(fired, ["c"]);
    clock.advance(5);
    assert.deepEqual(fired, ["c", "a"]);
  });

  it("Deadlines.set() keeps an earlier timer when the earliest deadline goes or moves later", () => {
    const clock = new FakeClock();
    const deadlines = new Deadlines(clock);
    const fired: string[] = [];
    let timers = 0;
    const setTimer = clock.setTimer.bind(clock);
    clock.setTimer = (callback, ms) => {
      timers++;
      return setTimer(callback, ms);
    };
    const a = new Deadline(() => fired.push("a"));
    const b = new Deadline(() => fired.push("b"));
    deadlines.set(a, 10);
    deadlines.set(b, 30);
    deadlines.set(a, undefined);
    deadlines.set(b, 40);
    assert.equal(timers, 1, "no new timer for a later earliest deadline");
    assert.equal(clock.pendingTimers, 1);
    clock.advance(10);
    assert.deepEqual(fired, [], "the early timer finds nothing due");
    assert.equal(clock.pendingTimers, 1, "and waits for the earliest again");
    clock.advance(30);
    assert.deepEqual(fired, ["b"]);
    assert.equal(clock.pendingTimers, 0, "no timer once the heap is empty");
    deadlines.set(a, 50);
    deadlines.set(a, undefined);
    assert.equal(clock.pendingTimers, 0, "an emptied heap lets its timer go");
  });

  it("Deadlines.set() from a firing callback sets the next deadline", () => {
    const clock = new FakeClock();
    const deadlines = new Deadlines(clock);
    let count = 0;
    const deadline: Deadline = new Deadline(() => {
      if (++count < 3) deadlines.set(deadline, clock.now() + 2);
    });
    deadlines.set(deadline, 0);
    clock.advance(60);
    assert.equal(count, 3);
    assert.equal(deadline.pending, false);
  });

  it("Deadlines keeps the others' timer when a callback throws", () => {
    const clock = new FakeClock();
    const deadlines = new Deadlines(clock);
    const fired: string[] = [];
    deadlines.set(
      new Deadline(() => {
        throw new Error("boom");
      }),
      1,
    );
    deadlines.set(new Deadline(() => fired.push("later")), 10);
    assert.throws(() => clock.advance(5), /boom/);
    clock.advance(10);
    assert.deepEqual(fired, ["later"]);
  });

  it("Deadlines waits for a deadline further away than a runtime timer takes in steps, not at once", () => {
    // Like the runtimes' timers, this clock fires a wait longer than 2^31 − 1 ms after 1 ms.
    const clock = new FakeClock();
    const waits: number[] = [];
    const deadlines = new Deadlines({
      now: () => clock.now(),
      setTimer: (callback, ms) => {
        waits.push(ms);
        return clock.setTimer(callback, ms > MAX_TIMER_MS ? 1 : ms);
      },
      clearTimer: (timer) => clock.clearTimer(timer),
    });
    const day = 86_400_000;
    let fired = false;
    deadlines.set(new Deadline(() => fired = true), 60 * day);
    clock.advance(59 * day);
    assert.equal(fired, false);
    assert.ok(waits.length <= 3, `${waits.length} timers in 59 days`);
    clock.advance(day);
    assert.equal(fired, true);
    assert.ok(waits.every((ms) => ms <= MAX_TIMER_MS), `waits ${waits}`);
  });

  it("deadlinesOf() gives everything on one clock the same heap", () => {
    const clock = new FakeClock();
    assert.equal(deadlinesOf(clock), deadlinesOf(clock));
    assert.notEqual(deadlinesOf(clock), deadlinesOf(new FakeClock()));
    assert.equal(deadlinesOf(), deadlinesOf(systemClock), "the system clock by default");
  });
});
