/**
 * Cancellation over a real loopback socket, both ways: the caller aborting (before,
 * during the wait for the head, while reading the body, by timeout) and the serving
 * side failing its body mid-way.
 */

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Connection, ExchangeResetError, type HandlerInfo } from "../mod.ts";
import { type Pair, startPair, withTimeout } from "./_helpers.ts";
import {
  deferred,
  isDomError,
  manualStream,
  readText,
  streamInit,
  whenAborted,
} from "./_exchange_helpers.ts";

const GUARD = 15_000;
/** Bun's runner stops a test after 5 s unless told otherwise; the machine may be loaded. */
const TEST_OPTIONS = { timeout: 60_000 };

/** Settles with the rejection reason; fails if `promise` resolves. */
async function rejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  return await withTimeout(
    promise.then(
      (value) => assert.fail(`${what} should have rejected, got ${value}`),
      (error: unknown) => error,
    ),
    GUARD,
    what,
  );
}

const DIRECTIONS = [
  ["server→agent", (p: Pair) => p.serverSide, (p: Pair) => p.clientSide],
  ["agent→server", (p: Pair) => p.clientSide, (p: Pair) => p.serverSide],
] as const;

for (const [name, callerOf, calleeOf] of DIRECTIONS) {
  describe(`Connection.fetch() cancellation ${name}`, () => {
    let pair: Pair;
    let caller: Connection;
    let callee: Connection;
    beforeEach(async () => {
      pair = await startPair();
      caller = callerOf(pair);
      callee = calleeOf(pair);
    });
    afterEach(async () => {
      await pair.close();
    });

    /**
     * Serves a handler that never answers on its own: `aborted` settles with what `watch`
     * settles with, by default its request's abort reason.
     */
    function serveHanging<T = unknown>(
      watch: (request: Request, info: HandlerInfo) => Promise<T> = (request) =>
        whenAborted(request.signal) as Promise<T>,
    ) {
      const started = deferred<Request>();
      const aborted = deferred<T>();
      callee.serve(async (request, info) => {
        started.resolve(request);
        aborted.resolve(await watch(request, info));
        return new Response("too late");
      });
      return { started: started.promise, aborted: aborted.promise };
    }

    /** Calls `/slow` with a signal and aborts it once the handler has started. */
    async function abortOnceStarted(started: Promise<unknown>): Promise<void> {
      const controller = new AbortController();
      const pending = caller.fetch("/slow", { signal: controller.signal });
      await withTimeout(started, GUARD, "the handler to start");
      controller.abort();
      await rejection(pending, "fetch");
    }

    it(
      "Connection.fetch() rejects with AbortError and aborts the handler's request.signal",
      TEST_OPTIONS,
      async () => {
        const handler = serveHanging();
        const controller = new AbortController();
        const pending = caller.fetch("/slow", { signal: controller.signal });
        const request = await withTimeout(handler.started, GUARD, "the handler to start");
        assert.equal(request.signal.aborted, false);
        controller.abort();
        const error = await rejection(pending, "fetch");
        assert.ok(isDomError(error, "AbortError"), `got ${error}`);
        await withTimeout(handler.aborted, GUARD, "the handler's request.signal to abort");
        assert.equal(request.signal.aborted, true);
        assert.equal(caller.inFlight, 0);
        // The connection still serves.
        callee.serve(() => new Response("fine"));
        assert.equal(await (await withTimeout(caller.fetch("/"), GUARD, "next")).text(), "fine");
      },
    );

    it(
      "a handler that asks for request.signal only after its caller gave up finds it aborted",
      TEST_OPTIONS,
      async () => {
        const handler = serveHanging(async (request, info) => {
          await info.completed;
          return request.signal;
        });
        await abortOnceStarted(handler.started);
        const signal = await withTimeout(handler.aborted, GUARD, "the handler to look");
        assert.equal(signal.aborted, true);
        assert.ok(isDomError(signal.reason, "AbortError"), `got ${signal.reason}`);
      },
    );

    it(
      "a Request made from the handler's (as a proxying handler makes one) aborts with it",
      TEST_OPTIONS,
      async () => {
        const handler = serveHanging((request) =>
          whenAborted(new Request("http://upstream.invalid/slow", request).signal)
        );
        await abortOnceStarted(handler.started);
        const reason = await withTimeout(handler.aborted, GUARD, "the upstream request to abort");
        assert.ok(isDomError(reason, "AbortError"), `got ${reason}`);
      },
    );

    it(
      "Connection.fetch() rejects with the abort reason given to AbortController.abort()",
      TEST_OPTIONS,
      async () => {
        const handler = serveHanging();
        const controller = new AbortController();
        const pending = caller.fetch("/slow", { signal: controller.signal });
        await withTimeout(handler.started, GUARD, "the handler to start");
        const reason = new Error("user navigated away");
        controller.abort(reason);
        assert.equal(await rejection(pending, "fetch"), reason);
        await withTimeout(handler.aborted, GUARD, "the handler's request.signal to abort");
      },
    );

    it("Connection.fetch() honours the signal of a Request object", TEST_OPTIONS, async () => {
      const handler = serveHanging();
      const controller = new AbortController();
      const pending = caller.fetch(new Request("http://agent/slow", { signal: controller.signal }));
      await withTimeout(handler.started, GUARD, "the handler to start");
      controller.abort();
      assert.ok(isDomError(await rejection(pending, "fetch"), "AbortError"));
      await withTimeout(handler.aborted, GUARD, "the handler's request.signal to abort");
    });

    it(
      "Connection.fetch() errors the body reader with AbortError when aborted mid-body",
      TEST_OPTIONS,
      async () => {
        const started = deferred<Request>();
        const aborted = deferred<unknown>();
        const body = manualStream();
        callee.serve((request) => {
          started.resolve(request);
          whenAborted(request.signal).then(aborted.resolve);
          body.enqueue("first chunk");
          return new Response(body.stream);
        });
        const controller = new AbortController();
        const response = await withTimeout(
          caller.fetch("/stream", { signal: controller.signal }),
          GUARD,
          "fetch",
        );
        const reader = response.body!.getReader();
        assert.equal(await withTimeout(readText(reader), GUARD, "chunk 1"), "first chunk");
        const next = reader.read();
        controller.abort();
        const error = await rejection(next, "reader.read()");
        assert.ok(isDomError(error, "AbortError"), `got ${error}`);
        await withTimeout(aborted.promise, GUARD, "the handler's request.signal to abort");
        await withTimeout(body.cancelled, GUARD, "the handler's body stream to be cancelled");
        assert.equal(caller.inFlight, 0);
      },
    );

    it(
      "Connection.fetch() aborted while streaming a request body aborts the handler's body read",
      TEST_OPTIONS,
      async () => {
        const started = deferred<Request>();
        const bodyError = deferred<unknown>();
        callee.serve(async (request) => {
          started.resolve(request);
          const reader = request.body!.getReader();
          try {
            for (;;) if ((await reader.read()).done) break;
          } catch (error) {
            bodyError.resolve(error);
          }
          return new Response("done");
        });
        const upload = manualStream();
        upload.enqueue("part 1");
        const controller = new AbortController();
        const pending = caller.fetch(
          "/upload",
          streamInit(upload.stream, { signal: controller.signal }),
        );
        const request = await withTimeout(started.promise, GUARD, "the handler to start");
        controller.abort();
        assert.ok(isDomError(await rejection(pending, "fetch"), "AbortError"));
        assert.ok(await withTimeout(bodyError.promise, GUARD, "the handler's body read to fail"));
        await withTimeout(whenAborted(request.signal), GUARD, "request.signal");
        await withTimeout(upload.cancelled, GUARD, "the caller's body stream to be cancelled");
      },
    );

    it(
      "Connection.fetch() rejects with TimeoutError on AbortSignal.timeout() when the handler never answers",
      TEST_OPTIONS,
      async () => {
        const handler = serveHanging();
        const error = await rejection(
          caller.fetch("/never", { signal: AbortSignal.timeout(50) }),
          "fetch",
        );
        assert.ok(isDomError(error, "TimeoutError"), `got ${error}`);
        const reason = await withTimeout(handler.aborted, GUARD, "the handler's request.signal");
        assert.ok(reason !== undefined);
        assert.equal(caller.inFlight, 0);
      },
    );

    it(
      "Connection.fetch() rejects at once on an already-aborted signal and sends nothing",
      TEST_OPTIONS,
      async () => {
        let calls = 0;
        callee.serve(() => {
          calls++;
          return new Response("served");
        });
        const controller = new AbortController();
        controller.abort();
        const pending = caller.fetch("/x", { signal: controller.signal });
        assert.equal(caller.inFlight, 0, "no exchange was started");
        assert.ok(isDomError(await rejection(pending, "fetch"), "AbortError"));
        const custom = new Error("custom");
        assert.equal(
          await rejection(caller.fetch("/x", { signal: AbortSignal.abort(custom) }), "fetch"),
          custom,
        );
        // The next exchange is the first the handler sees.
        assert.equal(await (await withTimeout(caller.fetch("/y"), GUARD, "next")).text(), "served");
        assert.equal(calls, 1);
      },
    );

    it(
      "Connection.fetch() errors the body reader with ExchangeResetError when the handler's body fails mid-way",
      TEST_OPTIONS,
      async () => {
        const body = manualStream();
        const secret = "disk-gone-7c1e";
        callee.serve(() => {
          body.enqueue("part 1");
          return new Response(body.stream);
        });
        const response = await withTimeout(caller.fetch("/fails"), GUARD, "fetch");
        assert.equal(response.status, 200);
        const reader = response.body!.getReader();
        assert.equal(await withTimeout(readText(reader), GUARD, "chunk 1"), "part 1");
        const next = reader.read();
        body.error(new Error(secret));
        const error = await rejection(next, "reader.read()");
        assert.ok(error instanceof ExchangeResetError, `got ${error}`);
        assert.ok(!error.message.includes(secret), "the peer's error detail leaks");
        assert.equal(caller.inFlight, 0);
        // The connection still serves.
        callee.serve(() => new Response("fine"));
        assert.equal(await (await withTimeout(caller.fetch("/"), GUARD, "next")).text(), "fine");
      },
    );

    it(
      "Connection.fetch() makes response.text() reject, not truncate, when the handler's body fails",
      TEST_OPTIONS,
      async () => {
        callee.serve(() => {
          let sent = 0;
          return new Response(
            new ReadableStream<Uint8Array>({
              pull(controller) {
                if (sent++ < 3) controller.enqueue(new Uint8Array(1000).fill(65));
                else controller.error(new Error("generator failed"));
              },
            }),
          );
        });
        const response = await withTimeout(caller.fetch("/fails"), GUARD, "fetch");
        const error = await rejection(response.text(), "response.text()");
        assert.ok(error instanceof ExchangeResetError, `got ${error}`);
      },
    );

    it(
      "Connection.fetch() cancelling the response body cancels the handler's body stream",
      TEST_OPTIONS,
      async () => {
        const body = manualStream();
        const request = deferred<Request>();
        callee.serve((req) => {
          request.resolve(req);
          body.enqueue("part 1");
          return new Response(body.stream);
        });
        const response = await withTimeout(caller.fetch("/cancel"), GUARD, "fetch");
        const reader = response.body!.getReader();
        assert.equal(await withTimeout(readText(reader), GUARD, "chunk 1"), "part 1");
        await reader.cancel("no longer interested");
        await withTimeout(body.cancelled, GUARD, "the handler's body stream to be cancelled");
        assert.equal(caller.inFlight, 0);
        callee.serve(() => new Response("fine"));
        assert.equal(await (await withTimeout(caller.fetch("/"), GUARD, "next")).text(), "fine");
      },
    );
  });
}
