/**
 * Slow readers, scaled down for the suite: 100 agents (one subprocess, same runtime)
 * each fetch a 10 MiB streamed body from this process's server, read one chunk and stop
 * reading. With the agents' `limits.initialWindow` (their receive window) at 64 KiB the
 * server may produce per stream at
 * most the window, the outbox high-water mark (64 KiB) and a few chunks of read-ahead;
 * the producers would make 1 GiB in all if nothing held them back. The test asserts
 * what the producers made (exact) and how far the server's RSS grew (a coarse bound,
 * far below 1 GiB) while the streams stay blocked.
 * The full-size measurement (default window) is `deno task bench:load`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type ConnectionEvent, EventType, WebSocketServer } from "../mod.ts";
import { OUTBOX_HIGH_WATER } from "../protocol/session.ts";
import { RUNTIME, withTimeout } from "./_helpers.ts";
import { spawnAgents } from "./_agents_process.ts";
import {
  collectGarbage,
  loadHandler,
  rss,
  STREAM_CHUNK_BYTES,
  type StreamCounter,
} from "./fixtures/_load.ts";

const READERS = 100;
const WINDOW = 64 * 1024;
const BODY_BYTES = 10 * 1024 * 1024;
const MIB = 1024 * 1024;
/**
 * Most a blocked stream may make the producer produce: the peer's window (plus one
 * window update, which a reader that took one chunk may have earned), the outbox up to
 * its high-water mark plus the chunk that crossed it, and the body stream's read-ahead.
 */
const PER_STREAM_BOUND = 2 * WINDOW + OUTBOX_HIGH_WATER + 4 * STREAM_CHUNK_BYTES;
/** RSS growth allowed: the bound for 100 streams (25 MiB) plus generous slack for the heap. */
const RSS_GROWTH_BOUND = 160 * MIB;
/** How long the producers keep trying while the readers do not read (a measurement window). */
const OBSERVE_MS = 1_500;
const START_MS = 60_000;

/** Waits (polling; the guard bounds it) until `condition()` holds. */
async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  await withTimeout(
    (async () => {
      while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
    })(),
    ms,
    what,
  );
}

async function received(
  events: AsyncIterableIterator<ConnectionEvent>,
  count: number,
): Promise<void> {
  let seen = 0;
  while (seen < count) {
    const { value, done } = await events.next();
    if (done) throw new Error(`Event stream ended after ${seen} connections`);
    if (value.type === EventType.ConnectionReceived) seen++;
  }
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

describe("Slow readers", () => {
  it(
    `WebSocketServer memory stays bounded by the flow-control windows with ${READERS} readers that stop reading`,
    { timeout: 120_000 },
    async () => {
      const counter: StreamCounter = { started: 0, produced: [] };
      const server = new WebSocketServer({
        hostname: "127.0.0.1",
        port: 0,
        handler: loadHandler("server", counter),
        closeTimeout: 1_000,
      });
      const events = server.events();
      const url = `ws://127.0.0.1:${server.addr.port}`;
      const agents = spawnAgents(RUNTIME, url, {
        agents: READERS,
        watchdog: 110_000,
        window: WINDOW,
      });
      try {
        const ready = await agents.waitFor(/^(ready|error) (.*)$/, START_MS);
        assert.equal(ready[0], `ready ${READERS}`);
        await withTimeout(received(events, READERS), START_MS, `${READERS} connections`);
        await events.return?.();

        collectGarbage();
        const before = rss();
        agents.send(`slow /stream?bytes=${BODY_BYTES}`);
        const started = await agents.waitFor(/^slow-started (\d+)$/, START_MS);
        assert.equal(Number(started[1]), READERS, agents.lines.join("\n"));
        assert.equal(counter.started, READERS);
        // Every producer has filled the window and the outbox: each stream is blocked.
        await until(
          () => counter.produced.every((bytes) => bytes >= WINDOW + OUTBOX_HIGH_WATER),
          START_MS,
          "every stream to fill its window and outbox",
        );

        // The producers stay ready to write for a while; nothing may move.
        const atBlock = sum(counter.produced);
        let peak = rss();
        const end = performance.now() + OBSERVE_MS;
        while (performance.now() < end) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          peak = Math.max(peak, rss());
        }
        const produced = sum(counter.produced);
        const growth = peak - before;
        const detail = `produced ${(produced / MIB).toFixed(1)} MiB (${
          (atBlock / MIB).toFixed(1)
        } when blocked), RSS +${(growth / MIB).toFixed(1)} MiB`;
        for (const [i, bytes] of counter.produced.entries()) {
          assert.ok(bytes <= PER_STREAM_BOUND, `stream ${i} produced ${bytes} bytes; ${detail}`);
        }
        assert.ok(produced <= READERS * PER_STREAM_BOUND, detail);
        assert.ok(produced < (READERS * BODY_BYTES) / 20, detail);
        assert.ok(growth < RSS_GROWTH_BOUND, detail);
        assert.deepEqual(agents.lines.filter((line) => line.startsWith("error")), []);

        agents.end();
        assert.equal(await withTimeout(agents.exited, 30_000, "agents to exit"), 0);
      } finally {
        await agents.kill();
        await withTimeout(server.close(), 15_000, "server.close()");
      }
    },
  );
});
