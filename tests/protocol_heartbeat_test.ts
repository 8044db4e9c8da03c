import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heartbeat, TokenBucket } from "../protocol/mod.ts";

const ALMOST_ONE = 0.999_999;

/** A random source that returns the given values in turn, then repeats the last. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

describe("Heartbeat", () => {
  it("Heartbeat constructor throws RangeError for a non-positive interval or timeout", () => {
    const random = () => 0.5;
    for (
      const options of [
        { interval: 0, timeout: 1000 },
        { interval: -1, timeout: 1000 },
        { interval: NaN, timeout: 1000 },
        { interval: 1000, timeout: 0 },
        { interval: 1000, timeout: NaN },
      ]
    ) {
      assert.throws(() => new Heartbeat(options, 0, random), RangeError);
    }
  });

  it("Heartbeat.pollTimeout() is the first ping at interval when random is 0.5", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000 }, 500, () => 0.5);
    assert.equal(heartbeat.pollTimeout(), 1500);
  });

  it("Heartbeat jitter moves the ping to interval × (1 − jitter) with random 0", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 5000, jitter: 0.2 }, 0, () => 0);
    assert.equal(heartbeat.pollTimeout(), 800);
  });

  it("Heartbeat jitter keeps the ping below interval × (1 + jitter) with random ~1", () => {
    const heartbeat = new Heartbeat(
      { interval: 1000, timeout: 5000, jitter: 0.2 },
      0,
      () => ALMOST_ONE,
    );
    const at = heartbeat.pollTimeout();
    assert.ok(at < 1200, `${at}`);
    assert.ok(at > 1199.99, `${at}`);
  });

  it("Heartbeat jitter defaults to 0.2", () => {
    assert.equal(new Heartbeat({ interval: 1000, timeout: 5000 }, 0, () => 0).pollTimeout(), 800);
  });

  it("Heartbeat jitter 0 pings at exactly the interval whatever the random source", () => {
    for (const r of [0, 0.3, ALMOST_ONE]) {
      const heartbeat = new Heartbeat({ interval: 1000, timeout: 5000, jitter: 0 }, 0, () => r);
      assert.equal(heartbeat.pollTimeout(), 1000);
    }
  });

  it("Heartbeat jitter is clamped to 0–1", () => {
    const over = new Heartbeat({ interval: 1000, timeout: 5000, jitter: 5 }, 0, () => 0);
    assert.equal(over.pollTimeout(), 0);
    const under = new Heartbeat({ interval: 1000, timeout: 5000, jitter: -1 }, 0, () => 0);
    assert.equal(under.pollTimeout(), 1000);
  });

  it("Heartbeat keeps every scheduled ping within the jitter bounds", () => {
    let seed = 1;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 1e9, jitter: 0.3 }, 0, random);
    let now = 0;
    for (let i = 0; i < 200; i++) {
      const next = heartbeat.pollTimeout();
      assert.ok(next >= now + 700 && next < now + 1300, `ping ${i} at ${next - now}`);
      now = next;
      assert.equal(heartbeat.handleTimeout(now), "ping");
    }
  });

  it("Heartbeat.handleTimeout() before any deadline is a no-op", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000, jitter: 0 }, 0, () => 0.5);
    assert.equal(heartbeat.handleTimeout(0), undefined);
    assert.equal(heartbeat.handleTimeout(999), undefined);
    assert.equal(heartbeat.pollTimeout(), 1000);
    assert.equal(heartbeat.handleTimeout(1000), "ping");
  });

  it("Heartbeat.handleTimeout() asks for a ping when due and schedules the next from now", () => {
    const heartbeat = new Heartbeat(
      { interval: 1000, timeout: 10_000, jitter: 0.5 },
      0,
      sequence(0.5, 0, ALMOST_ONE),
    );
    assert.equal(heartbeat.pollTimeout(), 1000);
    assert.equal(heartbeat.handleTimeout(1003), "ping");
    assert.equal(heartbeat.pollTimeout(), 1503); // random 0: 1003 + 1000 − 500
    assert.equal(heartbeat.handleTimeout(1502), undefined);
    assert.equal(heartbeat.handleTimeout(1503), "ping");
    const next = heartbeat.pollTimeout();
    assert.ok(next > 1503 + 1499 && next < 1503 + 1500);
  });

  it("Heartbeat.handleTimeout() asks for one ping per deadline, not one per call", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 10_000, jitter: 0 }, 0, () => 0);
    assert.equal(heartbeat.handleTimeout(1000), "ping");
    assert.equal(heartbeat.handleTimeout(1000), undefined);
    assert.equal(heartbeat.handleTimeout(1999), undefined);
  });

  it("Heartbeat.pollTimeout() is the idle deadline when it comes before the ping", () => {
    const heartbeat = new Heartbeat({ interval: 5000, timeout: 2000 }, 100, () => 0.5);
    assert.equal(heartbeat.pollTimeout(), 2100);
  });

  it("Heartbeat.handleTimeout() reports dead once silence reaches the timeout", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 2500, jitter: 0 }, 0, () => 0);
    assert.equal(heartbeat.handleTimeout(1000), "ping");
    assert.equal(heartbeat.handleTimeout(2000), "ping");
    assert.equal(heartbeat.pollTimeout(), 2500);
    assert.equal(heartbeat.handleTimeout(2499), undefined);
    assert.equal(heartbeat.handleTimeout(2500), "dead");
    assert.equal(heartbeat.handleTimeout(99_999), "dead");
  });

  it("Heartbeat.handleTimeout() prefers dead over a ping that is also due", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 1000, jitter: 0 }, 0, () => 0);
    assert.equal(heartbeat.handleTimeout(1000), "dead");
  });

  it("Heartbeat.handleReceive() pushes the idle deadline back", () => {
    const heartbeat = new Heartbeat({ interval: 10_000, timeout: 3000 }, 0, () => 0.5);
    assert.equal(heartbeat.pollTimeout(), 3000);
    heartbeat.handleReceive(2000);
    assert.equal(heartbeat.pollTimeout(), 5000);
    assert.equal(heartbeat.handleTimeout(3000), undefined);
    assert.equal(heartbeat.handleTimeout(4999), undefined);
    assert.equal(heartbeat.handleTimeout(5000), "dead");
  });

  it("Heartbeat.handleReceive() does not move the ping deadline", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000, jitter: 0 }, 0, () => 0);
    heartbeat.handleReceive(900);
    assert.equal(heartbeat.pollTimeout(), 1000);
    assert.equal(heartbeat.handleTimeout(1000), "ping");
  });

  it("Heartbeat.handlePong() measures the round trip as now − sentAt", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000 }, 0, () => 0.5);
    assert.equal(heartbeat.rtt, undefined);
    assert.equal(heartbeat.handlePong(1000, 1042), 42);
    assert.equal(heartbeat.rtt, 42);
    assert.equal(heartbeat.handlePong(2000, 2000), 0);
    assert.equal(heartbeat.rtt, 0);
  });

  it("Heartbeat.handlePong() ignores a sentAt in the future or not finite", () => {
    const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000 }, 0, () => 0.5);
    heartbeat.handlePong(10, 17);
    for (const sentAt of [18, NaN, Infinity, -Infinity]) {
      assert.equal(heartbeat.handlePong(sentAt, 17), undefined);
      assert.equal(heartbeat.rtt, 7);
    }
  });

  it("Heartbeat.handlePong() does not count as hearing from the peer by itself", () => {
    const heartbeat = new Heartbeat({ interval: 10_000, timeout: 3000 }, 0, () => 0.5);
    heartbeat.handlePong(0, 2000);
    assert.equal(heartbeat.pollTimeout(), 3000);
  });
});

describe("TokenBucket", () => {
  it("TokenBucket constructor throws RangeError for negative or NaN options", () => {
    for (
      const options of [
        { burst: -1, perSecond: 1 },
        { burst: 1, perSecond: -1 },
        { burst: NaN, perSecond: 1 },
        { burst: 1, perSecond: NaN },
      ]
    ) {
      assert.throws(() => new TokenBucket(options, 0), RangeError);
    }
  });

  it("TokenBucket.take() allows a burst, then refuses", () => {
    const bucket = new TokenBucket({ burst: 3, perSecond: 1 }, 0);
    assert.deepEqual([0, 0, 0, 0].map((t) => bucket.take(t)), [true, true, true, false]);
  });

  it("TokenBucket.take() refills at perSecond", () => {
    const bucket = new TokenBucket({ burst: 2, perSecond: 1 }, 0);
    bucket.take(0);
    bucket.take(0);
    assert.equal(bucket.take(999), false);
    assert.equal(bucket.take(1000), true);
    assert.equal(bucket.take(1000), false);
    assert.equal(bucket.take(1500), false);
    assert.equal(bucket.take(2000), true);
  });

  it("TokenBucket.take() refills half tokens over small steps", () => {
    const bucket = new TokenBucket({ burst: 1, perSecond: 10 }, 0);
    assert.equal(bucket.take(0), true);
    let granted = 0;
    for (let t = 50; t <= 1000; t += 50) if (bucket.take(t)) granted++;
    assert.equal(granted, 10);
  });

  it("TokenBucket.take() never holds more than burst tokens", () => {
    const bucket = new TokenBucket({ burst: 2, perSecond: 100 }, 0);
    const results = [1e6, 1e6, 1e6].map((t) => bucket.take(t));
    assert.deepEqual(results, [true, true, false]);
  });

  it("TokenBucket.take() ignores a clock that goes backwards", () => {
    const bucket = new TokenBucket({ burst: 1, perSecond: 1 }, 1000);
    assert.equal(bucket.take(1000), true);
    assert.equal(bucket.take(0), false);
    assert.equal(bucket.take(1999), false);
    assert.equal(bucket.take(2000), true);
  });

  it("TokenBucket with burst 0 and rate 0 refuses everything", () => {
    const bucket = new TokenBucket({ burst: 0, perSecond: 0 }, 0);
    assert.equal(bucket.take(0), false);
    assert.equal(bucket.take(1e9), false);
  });

  it("TokenBucket with rate 0 never refills", () => {
    const bucket = new TokenBucket({ burst: 1, perSecond: 0 }, 0);
    assert.equal(bucket.take(0), true);
    assert.equal(bucket.take(1e9), false);
  });
});
