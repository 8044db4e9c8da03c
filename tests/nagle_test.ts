/**
 * The Nagle trap (PROTOCOL.md §9, "The NOOP nudge"; the "Nagle case" in bench/RESULTS.md):
 * Deno's standard `WebSocket` client leaves Nagle's algorithm on, so a second small message
 * written while the first is still unacknowledged waits for the server's delayed ACK (~40 ms
 * on Linux loopback). The protocol avoids it by having the server send a frame back promptly
 * for every message that carries stream frames (the NOOP nudge), which carries the ACK.
 *
 * The client here is this runtime's standard `WebSocket` (through `WebSocketClient`), so
 * under Deno these tests exercise exactly the trap; under Bun they guard the same latency.
 * The thresholds are regression guards on a loaded machine; the real target is ≤ 1 ms.
 */

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Pair, RUNTIME, startPair, withTimeout } from "./_helpers.ts";

const GUARD = 10_000;
const ROUNDS = 20;
/** Median latency bound in milliseconds: far above the target, far below the ~40 ms trap. */
const MEDIAN_BOUND = 20;
const encoder = new TextEncoder();

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function describeTimes(times: number[]): string {
  return times.map((t) => t.toFixed(2)).join(", ");
}

describe(`Nagle trap (${RUNTIME} WebSocket client)`, () => {
  let pair: Pair;

  beforeEach(async () => {
    pair = await startPair({}, { keepAlive: false });
  });
  afterEach(async () => {
    await pair.close();
  });

  const GAPS = [
    { name: "once A is held", afterA: (seenA: Promise<void>) => seenA },
    {
      name: "one timer tick after A",
      afterA: () => new Promise<void>((resolve) => setTimeout(resolve, 0)),
    },
  ];

  for (const gap of GAPS) {
    it(`Connection.fetch() answers exchange B sent ${gap.name} promptly while the server holds A`, async () => {
      let release: (() => void) | undefined;
      let arrivedA: (() => void) | undefined;
      pair.serverSide.serve(async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/a") {
          const held = new Promise<void>((resolve) => release = resolve);
          arrivedA!();
          await held;
          return new Response("a");
        }
        return new Response("b");
      });

      const times: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const seenA = new Promise<void>((resolve) => arrivedA = resolve);
        const a = pair.clientSide.fetch("/a");
        // A's message has left: the next small write from the client is the one Nagle would
        // hold until the server's (delayed) ACK.
        await withTimeout(gap.afterA(seenA), GUARD, "the gap after A");
        const start = performance.now();
        const b = await withTimeout(pair.clientSide.fetch("/b"), GUARD, "exchange B");
        times.push(performance.now() - start);
        assert.equal(await b.text(), "b");
        await withTimeout(seenA, GUARD, "the server to hold A");
        release!();
        assert.equal(await (await withTimeout(a, GUARD, "exchange A")).text(), "a");
      }
      const m = median(times);
      assert.ok(m < MEDIAN_BOUND, `median ${m.toFixed(2)} ms; times: ${describeTimes(times)}`);
    });
  }

  it("Connection.fetch() streams a request body in small chunks without per-chunk stalls", async () => {
    // A latency guard: with no server → agent traffic Linux ACKs each chunk at once, so this
    // alone does not trip the trap; the next test sets the connection up so that it would.
    const arrivals: ((at: number) => void)[] = [];
    const done = Promise.withResolvers<number>();
    pair.serverSide.serve(async (request) => {
      const reader = request.body!.getReader();
      let chunks = 0;
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        chunks++;
        // One write of ours is one chunk here; tolerate a runtime that merges or splits.
        arrivals.shift()?.(performance.now());
        void value;
      }
      done.resolve(chunks);
      return new Response("ok");
    });

    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    const response = pair.clientSide.fetch("/upload", {
      method: "POST",
      body,
      duplex: "half",
    } as RequestInit);
    const times: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const arrived = new Promise<number>((resolve) => arrivals.push(resolve));
      const start = performance.now();
      controller.enqueue(encoder.encode(`chunk ${i}`));
      const at = await withTimeout(arrived, GUARD, `chunk ${i} to reach the handler`);
      times.push(at - start);
    }
    controller.close();
    assert.equal(await (await withTimeout(response, GUARD, "the response")).text(), "ok");
    assert.equal(await withTimeout(done.promise, GUARD, "the handler"), ROUNDS);
    const m = median(times);
    assert.ok(m < MEDIAN_BOUND, `median ${m.toFixed(2)} ms; times: ${describeTimes(times)}`);
  });

  it("Connection.fetch() body chunks written right after the agent answered the server are not held", async () => {
    // Linux ACKs at once unless the connection looks interactive; a server → agent exchange
    // makes it so, and leaves the agent's response unacknowledged (delayed ACK) when the
    // agent writes its next body chunk: the trap, unless the server answers the response.
    pair.clientSide.serve(() => new Response("agent answer"));
    const arrivals: ((at: number) => void)[] = [];
    pair.serverSide.serve(async (request) => {
      const reader = request.body!.getReader();
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
        arrivals.shift()?.(performance.now());
      }
      return new Response("ok");
    });
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    const response = pair.clientSide.fetch("/upload", {
      method: "POST",
      body,
      duplex: "half",
    } as RequestInit);
    const times: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const answer = await withTimeout(pair.serverSide.fetch("/ask"), GUARD, "server → agent");
      assert.equal(await answer.text(), "agent answer");
      const arrived = new Promise<number>((resolve) => arrivals.push(resolve));
      const start = performance.now();
      controller.enqueue(encoder.encode(`chunk ${i}`));
      const at = await withTimeout(arrived, GUARD, `chunk ${i} to reach the handler`);
      times.push(at - start);
    }
    controller.close();
    assert.equal(await (await withTimeout(response, GUARD, "the response")).text(), "ok");
    const m = median(times);
    assert.ok(m < MEDIAN_BOUND, `median ${m.toFixed(2)} ms; times: ${describeTimes(times)}`);
  });
});

describe(`Nagle trap on close (${RUNTIME} WebSocket client)`, () => {
  let pair: Pair | undefined;

  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  it("Connection.close() on the agent reaches the server promptly (GOAWAY, then the close frame)", async () => {
    // close() sends GOAWAY and, with nothing in flight, the close frame right behind it: the
    // second small write, held by Nagle unless the server answers the GOAWAY.
    const times: number[] = [];
    for (let round = 0; round < 10; round++) {
      pair = await startPair({}, { keepAlive: false });
      pair.serverSide.serve(() => new Response("ok"));
      assert.equal(await (await pair.clientSide.fetch("/warm-up")).text(), "ok");
      const start = performance.now();
      await pair.clientSide.close({ timeout: 1_000 });
      await withTimeout(pair.serverSide.closed, GUARD, "the server to see the close");
      times.push(performance.now() - start);
      await pair.close();
      pair = undefined;
    }
    const m = median(times);
    assert.ok(m < MEDIAN_BOUND, `median ${m.toFixed(2)} ms; times: ${describeTimes(times)}`);
  });
});
