/**
 * Streaming bodies over a real loopback socket: 64 MiB up and down, byte-exact, and
 * incremental delivery (the reader sees a chunk before the writer produces the next).
 */

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Pair, startPair, withTimeout } from "./_helpers.ts";
import {
  checkPattern,
  deferred,
  manualStream,
  patternStream,
  readText,
  streamInit,
} from "./_exchange_helpers.ts";

const MIB = 1024 * 1024;
const BIG = 64 * MIB;
const GUARD = 15_000;
/** Bun's runner stops a test after 5 s unless told otherwise; the machine may be loaded. */
const TEST_OPTIONS = { timeout: 60_000 };

describe("Connection.fetch() with 64 MiB bodies", () => {
  let pair: Pair;
  beforeEach(async () => {
    pair = await startPair();
  });
  afterEach(async () => {
    await pair.close();
  });

  it("Connection.fetch() streams a 64 MiB request body agent→server byte-exact", {
    timeout: 90_000,
  }, async () => {
    pair.serverSide.serve(async (request) => {
      const result = await checkPattern(request.body!);
      return Response.json(result);
    });
    const run = async () => {
      const response = await pair.clientSide.fetch(
        "/upload",
        streamInit(patternStream(BIG), { headers: { "content-type": "application/octet-stream" } }),
      );
      assert.equal(response.status, 200);
      return await response.json() as { bytes: number; firstMismatch: number; chunks: number };
    };
    const result = await withTimeout(run(), 60_000, "64 MiB upload");
    assert.equal(result.bytes, BIG);
    assert.equal(result.firstMismatch, -1);
    assert.ok(result.chunks > 1, "the body arrived in more than one chunk");
    assert.equal(pair.clientSide.inFlight, 0);
  });

  it("Connection.fetch() streams a 64 MiB response body server→agent byte-exact", {
    timeout: 90_000,
  }, async () => {
    pair.clientSide.serve(() =>
      new Response(patternStream(BIG), {
        headers: { "content-type": "application/octet-stream" },
      })
    );
    const run = async () => {
      const response = await pair.serverSide.fetch("/download");
      assert.equal(response.status, 200);
      return await checkPattern(response.body!);
    };
    const result = await withTimeout(run(), 60_000, "64 MiB download");
    assert.equal(result.bytes, BIG);
    assert.equal(result.firstMismatch, -1);
    assert.ok(result.chunks > 1, "the body arrived in more than one chunk");
    assert.equal(pair.serverSide.inFlight, 0);
  });

  it(
    "Connection.fetch() detects a corrupted byte in a streamed body (the check is real)",
    TEST_OPTIONS,
    async () => {
      const size = 3 * MIB + 17;
      pair.clientSide.serve(() => {
        const source = patternStream(size).getReader();
        let offset = 0;
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(controller) {
              const { done, value } = await source.read();
              if (done) return controller.close();
              if (offset <= 2 * MIB + 5 && 2 * MIB + 5 < offset + value.byteLength) {
                value[2 * MIB + 5 - offset] ^= 0xff;
              }
              offset += value.byteLength;
              controller.enqueue(value);
            },
          }),
        );
      });
      const response = await withTimeout(pair.serverSide.fetch("/corrupt"), GUARD, "fetch");
      const result = await withTimeout(checkPattern(response.body!), GUARD, "read");
      assert.equal(result.bytes, size);
      assert.equal(result.firstMismatch, 2 * MIB + 5);
    },
  );
});

describe("Connection.fetch() incremental streaming", () => {
  let pair: Pair;
  beforeEach(async () => {
    pair = await startPair();
  });
  afterEach(async () => {
    await pair.close();
  });

  for (
    const [name, callerOf, calleeOf] of [
      ["server→agent", (p: Pair) => p.serverSide, (p: Pair) => p.clientSide],
      ["agent→server", (p: Pair) => p.clientSide, (p: Pair) => p.serverSide],
    ] as const
  ) {
    it(
      `Connection.fetch() delivers each server-sent event before the handler produces the next (${name})`,
      TEST_OPTIONS,
      async () => {
        const caller = callerOf(pair);
        const callee = calleeOf(pair);
        const gates = [deferred(), deferred()];
        const produced: number[] = [];
        const events = manualStream();
        callee.serve(() => {
          events.enqueue("id: 1\ndata: first\n\n");
          produced.push(1);
          gates[0].promise.then(() => {
            events.enqueue("id: 2\ndata: second\n\n");
            produced.push(2);
            return gates[1].promise;
          }).then(() => {
            events.enqueue("id: 3\ndata: third\n\n");
            produced.push(3);
            events.close();
          });
          return new Response(events.stream, {
            headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
          });
        });
        const response = await withTimeout(caller.fetch("/events"), GUARD, "fetch");
        assert.equal(response.headers.get("content-type"), "text/event-stream");
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();

        assert.equal(
          await withTimeout(readText(reader, decoder), GUARD, "event 1"),
          "id: 1\ndata: first\n\n",
        );
        assert.deepEqual(produced, [1], "event 1 was read before event 2 was produced");
        gates[0].resolve();

        assert.equal(
          await withTimeout(readText(reader, decoder), GUARD, "event 2"),
          "id: 2\ndata: second\n\n",
        );
        assert.deepEqual(produced, [1, 2], "event 2 was read before event 3 was produced");
        gates[1].resolve();

        assert.equal(
          await withTimeout(readText(reader, decoder), GUARD, "event 3"),
          "id: 3\ndata: third\n\n",
        );
        const end = await withTimeout(reader.read(), GUARD, "end of stream");
        assert.equal(end.done, true);
        assert.equal(caller.inFlight, 0);
      },
    );

    it(
      `Connection.fetch() delivers each request body chunk to the handler before the caller enqueues the next (${name})`,
      TEST_OPTIONS,
      async () => {
        const caller = callerOf(pair);
        const callee = calleeOf(pair);
        const seen: string[] = [];
        const sawChunk = [deferred(), deferred()];
        callee.serve(async (request) => {
          const reader = request.body!.getReader();
          const decoder = new TextDecoder();
          for (let i = 0;; i++) {
            const { done, value } = await reader.read();
            if (done) break;
            seen.push(decoder.decode(value, { stream: true }));
            sawChunk[i]?.resolve();
          }
          return new Response(seen.join("+"));
        });
        const body = manualStream();
        const enqueued: string[] = [];
        const send = (text: string) => {
          enqueued.push(text);
          body.enqueue(text);
        };
        send("chunk-1");
        const responsePromise = caller.fetch("/upload", streamInit(body.stream));
        await withTimeout(sawChunk[0].promise, GUARD, "the handler to see chunk 1");
        assert.deepEqual(seen, ["chunk-1"]);
        assert.deepEqual(enqueued, ["chunk-1"], "chunk 2 was not enqueued yet");
        send("chunk-2");
        await withTimeout(sawChunk[1].promise, GUARD, "the handler to see chunk 2");
        assert.deepEqual(seen, ["chunk-1", "chunk-2"]);
        body.close();
        const response = await withTimeout(responsePromise, GUARD, "response");
        assert.equal(await response.text(), "chunk-1+chunk-2");
      },
    );

    it(
      `Connection.fetch() streams a request body and a response body at the same time (${name})`,
      TEST_OPTIONS,
      async () => {
        const caller = callerOf(pair);
        const callee = calleeOf(pair);
        // An echo: every request chunk comes straight back as a response chunk, so the caller
        // only writes chunk n+1 after it has read the echo of chunk n.
        callee.serve((request) => {
          const upper = new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              controller.enqueue(
                new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase()),
              );
            },
          });
          return new Response(request.body!.pipeThrough(upper));
        });
        const body = manualStream();
        body.enqueue("a1");
        const response = await withTimeout(
          caller.fetch("/echo", streamInit(body.stream)),
          GUARD,
          "response head",
        );
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();
        for (let i = 1; i <= 5; i++) {
          assert.equal(await withTimeout(readText(reader, decoder), GUARD, `echo ${i}`), `A${i}`);
          if (i < 5) body.enqueue(`a${i + 1}`);
        }
        body.close();
        assert.equal((await withTimeout(reader.read(), GUARD, "end")).done, true);
      },
    );
  }
});
