/**
 * Bodies nobody reads, over real sockets: with a window for the whole connection, a body
 * left unread would keep the connection's credit for good, and once 8 MiB of them piled
 * up every later upload or download on the connection would stall. A request body its
 * handler never started reading is drained once the response is out; a response body its
 * caller cancels gives its credit back at once, and one its caller drops unread when the
 * response is garbage-collected (as undici does: a safety net, not a promise of when).
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { IS_BUN, type Pair, startPair, withTimeout } from "./_helpers.ts";
import { collectGarbage } from "./fixtures/_load.ts";

const MIB = 1024 * 1024;
const GUARD = 15_000;
const TEST_OPTIONS = { timeout: 60_000 };

/** A body streamed in 1 MiB chunks, so that it is never sent whole with its head. */
function streamed(chunks: number): ReadableStream<Uint8Array> {
  let left = chunks;
  return new ReadableStream({
    pull(controller) {
      if (left-- === 0) controller.close();
      else controller.enqueue(new Uint8Array(MIB));
    },
  });
}

const upload = (body: ReadableStream<Uint8Array>): RequestInit =>
  ({ method: "POST", body, duplex: "half" }) as RequestInit;

/** Waits (polling; the guard bounds it) until `condition()` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  await withTimeout(
    (async () => {
      while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
    })(),
    GUARD,
    what,
  );
}

/** Whether this runtime lets a test run the garbage collector (Deno needs `--expose-gc`). */
const CAN_COLLECT = IS_BUN || typeof (globalThis as { gc?: unknown }).gc === "function";

describe("Bodies nobody reads", () => {
  let pair: Pair | undefined;
  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  it(
    "a request body its handler never reads is drained once the response is out: 24 such uploads of 2 MiB, then an echo, on one connection",
    TEST_OPTIONS,
    async () => {
      pair = await startPair({
        handler: async (request) =>
          new URL(request.url).pathname === "/echo"
            ? new Response(await request.arrayBuffer())
            : new Response("ignored"),
      });
      for (let i = 0; i < 24; i++) {
        const response: Response = await withTimeout(
          pair.clientSide.fetch("/ignore", upload(streamed(2))),
          GUARD,
          `ignored upload ${i}`,
        );
        assert.equal(await response.text(), "ignored");
      }
      const echo = await withTimeout(
        pair.clientSide.fetch("/echo", upload(streamed(3))),
        GUARD,
        "an upload that is read",
      );
      assert.equal((await echo.arrayBuffer()).byteLength, 3 * MIB);
      assert.equal(pair.serverSide.bufferedBytes, 0);
    },
  );

  it(
    "a request body the handler reads after its response is out fails with an AbortError, not a hang",
    TEST_OPTIONS,
    async () => {
      let late: Promise<unknown> | undefined;
      pair = await startPair({
        handler: (request) => {
          late = (async () => {
            await new Promise((resolve) => setTimeout(resolve, 50));
            return await request.arrayBuffer();
          })();
          return new Response("early");
        },
      });
      const response = await pair.clientSide.fetch("/late", upload(streamed(1)));
      assert.equal(await response.text(), "early");
      await withTimeout(
        assert.rejects(late!, (error: unknown) => (error as Error).name === "AbortError"),
        GUARD,
        "the late read to fail",
      );
    },
  );

  it(
    "a request body the handler is reading when its response is out is left to it",
    TEST_OPTIONS,
    async () => {
      let read: Promise<number> | undefined;
      pair = await startPair({
        handler: (request) => {
          const reader = request.body!.getReader();
          read = (async () => {
            let bytes = 0;
            for (;;) {
              const { done, value } = await reader.read();
              if (done) return bytes;
              bytes += value.byteLength;
            }
          })();
          return new Response("accepted", { status: 202 });
        },
      });
      const response = await pair.clientSide.fetch("/background", upload(streamed(3)));
      assert.equal(response.status, 202);
      await response.arrayBuffer();
      assert.equal(await withTimeout(read!, GUARD, "the background read"), 3 * MIB);
    },
  );

  it(
    "response bodies left unread hold their windows until cancelled, then give the connection's credit back at once",
    TEST_OPTIONS,
    async () => {
      pair = await startPair({ handler: () => new Response(streamed(4)) });
      // Each holds its stream's 1 MiB window unread; eight fill the 8 MiB connection window.
      const unread: Response[] = [];
      for (let i = 0; i < 8; i++) {
        unread.push(await withTimeout(pair.clientSide.fetch("/big"), GUARD, "fetch"));
      }
      await until(() => pair!.clientSide.bufferedBytes >= 8 * MIB, "the bodies to arrive and wait");
      for (const response of unread) await response.body!.cancel();
      // What waited is dropped at once; the RESETs telling the server leave on the next turn.
      assert.ok(pair.clientSide.bufferedBytes < 1024, `${pair.clientSide.bufferedBytes} held`);
      const read = await withTimeout(pair.clientSide.fetch("/big"), GUARD, "a read fetch");
      assert.equal((await read.arrayBuffer()).byteLength, 4 * MIB);
    },
  );

  it(
    "a caller that reads the last of five large responses first gets it, while the other four wait unread",
    TEST_OPTIONS,
    async () => {
      // The four unread bodies fill their windows and the server's share of queued output;
      // the fifth must still be produced, or the caller and the server wait on each other.
      pair = await startPair({ handler: () => new Response(streamed(8)) });
      const responses: Response[] = [];
      for (let i = 0; i < 5; i++) {
        responses.push(await withTimeout(pair.clientSide.fetch("/big"), GUARD, "fetch"));
      }
      await until(
        () => pair!.serverSide.bufferedBytes >= 4 * MIB,
        "the server's queued output to fill",
      );
      const last = await withTimeout(responses[4].arrayBuffer(), GUARD, "the fifth body");
      assert.equal(last.byteLength, 8 * MIB);
      for (const response of responses.slice(0, 4)) {
        assert.equal((await response.arrayBuffer()).byteLength, 8 * MIB);
      }
    },
  );

  it(
    "response bodies dropped unread give the connection's credit back once their responses are collected",
    {
      ...TEST_OPTIONS,
      // JavaScriptCore scans the stack conservatively: in our runs Bun kept a dropped
      // Response reachable for longer than any guard.
      skip: IS_BUN || !CAN_COLLECT ? "the runtime cannot be made to collect promptly" : false,
    },
    async () => {
      pair = await startPair({ handler: () => new Response(streamed(4)) });
      let kept: Response[] = [];
      for (let i = 0; i < 6; i++) {
        kept.push(await withTimeout(pair.clientSide.fetch("/big"), GUARD, "fetch"));
      }
      const held = (): number => pair!.clientSide.bufferedBytes;
      await until(() => held() >= 6 * MIB, "the bodies to arrive and wait");
      assert.equal(kept.length, 6);
      kept = [];
      await until(() => {
        collectGarbage();
        return held() === 0;
      }, "the dropped responses to be collected and their bodies given up");
      const read = await withTimeout(pair.clientSide.fetch("/big"), GUARD, "a read fetch");
      assert.equal((await read.arrayBuffer()).byteLength, 4 * MIB);
    },
  );

  it(
    "a body still held is never given up, however often the collector runs while it streams",
    TEST_OPTIONS,
    async () => {
      // What holds each body: the caller's Response, the handler's Request, a Request a
      // proxying handler made of it, a clone; each read a chunk at a time with a collection
      // (where the runtime allows one) between reads.
      const readCollecting = async (body: ReadableStream<Uint8Array> | null): Promise<number> => {
        const reader = body!.getReader();
        let bytes = 0;
        for (;;) {
          collectGarbage();
          await new Promise((resolve) => setTimeout(resolve, 0));
          const { done, value } = await reader.read();
          if (done) return bytes;
          bytes += value.byteLength;
        }
      };
      pair = await startPair({
        handler: async (request) => {
          const url = new URL(request.url);
          if (url.pathname === "/proxied") {
            const copy = new Request("http://localhost/copy", request);
            return new Response(String(await readCollecting(copy.body)));
          }
          if (url.pathname === "/cloned") {
            const clone = request.clone();
            return new Response(String(await readCollecting(clone.body)));
          }
          if (url.pathname === "/upload") {
            return new Response(String(await readCollecting(request.body)));
          }
          return new Response(streamed(4));
        },
      });
      const download = await withTimeout(pair.clientSide.fetch("/big"), GUARD, "download");
      assert.equal(await withTimeout(readCollecting(download.body), GUARD, "download"), 4 * MIB);
      for (const target of ["/upload", "/proxied", "/cloned"]) {
        const answer: Response = await withTimeout(
          pair.clientSide.fetch(target, upload(streamed(3))),
          GUARD,
          target,
        );
        assert.equal(await withTimeout(answer.text(), GUARD, target), String(3 * MIB), target);
      }
    },
  );
});
