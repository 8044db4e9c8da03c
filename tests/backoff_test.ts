/**
 * The one backoff of the client and the agent: exponential, capped, with full jitter by
 * default, computed from an injected random source (no timers).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Backoff, RECONNECT_DEFAULTS } from "../_backoff.ts";

describe("Backoff", () => {
  it("Backoff.delay() doubles from initialDelay up to maxDelay, before jitter", () => {
    const backoff = new Backoff({ initialDelay: 100, maxDelay: 1_000, jitter: 0 });
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((attempt) => backoff.delay(attempt)),
      [100, 200, 400, 800, 1_000, 1_000],
    );
  });

  it("Backoff.delay() takes full jitter by default: anywhere from 0 to the capped delay", () => {
    const low = new Backoff({}, () => 0.999_999);
    const high = new Backoff({}, () => 0);
    assert.ok(low.delay(1) < 0.001);
    assert.equal(high.delay(1), RECONNECT_DEFAULTS.initialDelay);
    assert.equal(high.delay(100), RECONNECT_DEFAULTS.maxDelay);
  });

  it("Backoff.delay() keeps (1 - jitter) of the delay at least, jitter clamped to 0..1", () => {
    assert.equal(new Backoff({ initialDelay: 1_000, jitter: 0.5 }, () => 1).delay(1), 500);
    assert.equal(new Backoff({ initialDelay: 1_000, jitter: 7 }, () => 1).delay(1), 0);
    assert.equal(new Backoff({ initialDelay: 1_000, jitter: -1 }, () => 1).delay(1), 1_000);
  });

  it("new Backoff() takes the documented defaults for missing fields", () => {
    assert.deepEqual(RECONNECT_DEFAULTS, {
      initialDelay: 250,
      maxDelay: 30_000,
      factor: 2,
      jitter: 1,
      maxAttempts: Infinity,
    });
    const backoff = new Backoff({ initialDelay: undefined, factor: 3 }, () => 0);
    assert.equal(backoff.maxAttempts, Infinity);
    assert.equal(backoff.delay(3), 250 * 9);
  });

  it("new Backoff() refuses delays, a factor and attempts that would make no sensible wait", () => {
    for (
      const options of [
        { initialDelay: -1 },
        { initialDelay: NaN },
        { initialDelay: Infinity },
        { maxDelay: -5 },
        { factor: 0.5 },
        { factor: NaN },
        { jitter: NaN },
        { maxAttempts: 1.5 },
        { maxAttempts: -1 },
      ]
    ) {
      const [name] = Object.keys(options);
      assert.throws(() => new Backoff(options), {
        name: "RangeError",
        message: new RegExp(`^Invalid reconnect\\.${name}: `),
      });
    }
  });

  it("Backoff.delay() is at most a runtime timer's longest wait (2^31 − 1 ms), even with no cap", () => {
    const backoff = new Backoff({ maxDelay: Infinity, jitter: 0 });
    assert.equal(backoff.delay(1), 250);
    assert.equal(backoff.delay(100), 0x7fff_ffff);
  });

  it("Backoff.cancel() ends the current wait at once", async () => {
    const backoff = new Backoff({ initialDelay: 60_000, jitter: 0 });
    const waiting = backoff.wait(1);
    backoff.cancel();
    await waiting;
  });
});
