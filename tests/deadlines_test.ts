/**
 * The shared deadline timer (`_deadlines.ts`): deadlines fire in time order, once, on one
 * timer; moving or cancelling one leaves the others alone.
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Deadline, setDeadline } from "../_deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("setDeadline()", () => {
  it("setDeadline() fires deadlines once each, earliest first", async () => {
    const fired: number[] = [];
    const now = performance.now();
    const deadlines = [30, 5, 20, 10, 0, 15, 25].map((delay) => {
      const deadline = new Deadline(() => fired.push(delay));
      setDeadline(deadline, now + delay);
      return deadline;
    });
    await sleep(80);
    assert.deepEqual(fired, [0, 5, 10, 15, 20, 25, 30]);
    assert.ok(deadlines.every((deadline) => !deadline.pending));
  });

  it("setDeadline() moves and cancels a deadline without touching the others", async () => {
    const fired: string[] = [];
    const now = performance.now();
    const a = new Deadline(() => fired.push("a"));
    const b = new Deadline(() => fired.push("b"));
    const c = new Deadline(() => fired.push("c"));
    setDeadline(a, now + 5);
    setDeadline(b, now + 10);
    setDeadline(c, now + 15);
    setDeadline(a, now + 25);
    setDeadline(b, undefined);
    assert.equal(b.pending, false);
    assert.equal(a.pending, true);
    await sleep(60);
    assert.deepEqual(fired, ["c", "a"]);
  });

  it("setDeadline() from a firing callback sets the next deadline", async () => {
    let count = 0;
    const deadline: Deadline = new Deadline(() => {
      if (++count < 3) setDeadline(deadline, performance.now() + 2);
    });
    setDeadline(deadline, performance.now());
    await sleep(60);
    assert.equal(count, 3);
    assert.equal(deadline.pending, false);
  });
});
