/**
 * A handler's parts form (`connection/_parts_handler.ts`, what the agent's tunnel serves
 * with): over a real loopback pair, the responder calls it instead of the `Request` form,
 * with the request as the peer sent it, and its answer reaches the caller as a `Response`
 * would, length, bodiless answers and cancellation included.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Connection } from "../mod.ts";
import type { Cancel } from "../connection/_cancel.ts";
import { type IncomingParts, type OutgoingParts, withParts } from "../connection/_parts_handler.ts";
import { type Pair, startPair, withTimeout } from "./_helpers.ts";
import { checkPattern, deferred, manualStream, patternStream } from "./_exchange_helpers.ts";

const TEST_OPTIONS = { timeout: 60_000 };
const GUARD = 15_000;
const text = new TextEncoder();

/** What the parts form was given, the body read. */
interface Seen {
  method: string;
  target: string;
  headers: (readonly [string, string])[];
  /** "bytes" if it came whole, "stream" if it streamed in. */
  bodyKind: "bytes" | "stream" | "none";
  body: string;
}

async function readParts(body: IncomingParts["body"]): Promise<string> {
  if (body === null) return "";
  if (body instanceof Uint8Array) return new TextDecoder().decode(body);
  return await new Response(body).text();
}

function json(status: number, value: unknown, extra: [string, string][] = []): OutgoingParts {
  return {
    status,
    statusText: "Fine",
    headers: [["content-type", "application/json"], ...extra],
    body: text.encode(JSON.stringify(value)),
    withoutLength: false,
  };
}

describe("a handler's parts form", () => {
  let pair: Pair;
  let caller: Connection;
  /** What the next request is answered with; by default, what it was. */
  let answer: (request: IncomingParts) => Promise<OutgoingParts>;
  const see = async (request: IncomingParts): Promise<OutgoingParts> => {
    const seen: Seen = {
      method: request.method,
      target: request.target,
      headers: [...request.headers],
      bodyKind: request.body === null
        ? "none"
        : request.body instanceof Uint8Array
        ? "bytes"
        : "stream",
      body: await readParts(request.body),
    };
    return json(200, seen);
  };

  before(async () => {
    pair = await startPair();
    caller = pair.serverSide;
    pair.clientSide.serve(withParts(() => {
      throw new Error("the Request form must not be called");
    }, (request) => answer(request)));
  });
  after(() => pair.close());

  it(
    "gets the request as sent: method, target, header list, whole body",
    TEST_OPTIONS,
    async () => {
      answer = see;
      const response = await withTimeout(
        caller.forward({
          method: "POST",
          target: "/a/../b//c?x=%20",
          headers: [["X-One", "1"], ["x-one", "2"], ["content-length", "3"]],
          body: text.encode("abc"),
        }),
        GUARD,
        "forward",
      );
      assert.equal(response.status, 200);
      assert.equal(response.statusText, "Fine");
      const seen = await response.json() as Seen;
      assert.equal(seen.method, "POST");
      assert.equal(seen.target, "/a/../b//c?x=%20");
      assert.deepEqual(seen.headers, [["content-length", "3"], ["x-one", "1, 2"]]);
      assert.equal(seen.bodyKind, "bytes");
      assert.equal(seen.body, "abc");
      // A whole answer goes with its length.
      assert.equal(
        response.headers.get("content-length"),
        String(text.encode(JSON.stringify(seen)).byteLength),
      );
    },
  );

  it("gets a GET's body and a streamed upload", TEST_OPTIONS, async () => {
    answer = see;
    const get = await withTimeout(
      caller.forward({ method: "GET", target: "/g", body: text.encode("in a GET") }),
      GUARD,
      "forward GET",
    );
    const seenGet = await get.json() as Seen;
    assert.equal(seenGet.method, "GET");
    assert.equal(seenGet.body, "in a GET");

    const size = 3 * 1024 * 1024;
    answer = async (request) => {
      assert.ok(request.body instanceof ReadableStream);
      const { bytes, firstMismatch } = await checkPattern(request.body);
      return json(200, { bytes, firstMismatch });
    };
    const upload = await withTimeout(
      caller.fetch(
        "/up",
        { method: "PUT", body: patternStream(size), duplex: "half" } as RequestInit,
      ),
      GUARD,
      "upload",
    );
    assert.deepEqual(await upload.json(), { bytes: size, firstMismatch: -1 });
  });

  it("answers with a streamed body, with or without a length", TEST_OPTIONS, async () => {
    for (const withoutLength of [false, true]) {
      answer = () =>
        Promise.resolve({
          status: 201,
          statusText: "",
          headers: [["x-kind", "streamed"]],
          body: new Response("streamed body").body,
          withoutLength,
        });
      const response = await withTimeout(caller.fetch("/s"), GUARD, "fetch");
      assert.equal(response.status, 201);
      assert.equal(response.headers.get("x-kind"), "streamed");
      assert.equal(await response.text(), "streamed body");
      assert.equal(response.headers.get("content-length"), withoutLength ? null : "13");
    }
  });

  it("sends no body for HEAD or 204, and cancels the one it was given", TEST_OPTIONS, async () => {
    for (const [method, status] of [["HEAD", 200], ["GET", 204]] as const) {
      const body = manualStream();
      body.enqueue("never sent");
      answer = () =>
        Promise.resolve({
          status,
          statusText: "",
          headers: [["x-head", "1"]],
          body: body.stream,
          withoutLength: false,
        });
      const response = await withTimeout(caller.fetch("/h", { method }), GUARD, method);
      assert.equal(response.status, status);
      assert.equal(response.headers.get("x-head"), "1");
      assert.equal(await response.text(), "");
      await withTimeout(body.cancelled, GUARD, `${method}: the body cancelled`);
    }
  });

  it(
    "is cancelled when the caller gives up, and its late answer goes nowhere",
    TEST_OPTIONS,
    async () => {
      const arrived = deferred<Cancel>();
      const late = deferred<OutgoingParts>();
      answer = (request) => {
        arrived.resolve(request.cancel);
        return late.promise;
      };
      const controller = new AbortController();
      const pending = caller.fetch("/wait", { signal: controller.signal });
      const cancel = await withTimeout(arrived.promise, GUARD, "the request to arrive");
      assert.equal(cancel.aborted, false);
      const heard = new Promise<unknown>((resolve) => cancel.listen(resolve));
      controller.abort(new Error("caller gave up"));
      await assert.rejects(pending);
      await withTimeout(heard, GUARD, "the cancel");
      assert.equal(cancel.aborted, true);
      const body = manualStream();
      late.resolve({
        status: 200,
        statusText: "",
        headers: [],
        body: body.stream,
        withoutLength: false,
      });
      await withTimeout(body.cancelled, GUARD, "the late answer's body cancelled");
      // The connection still serves.
      answer = see;
      const next = await withTimeout(caller.fetch("/after"), GUARD, "the next request");
      assert.equal((await next.json() as Seen).target, "/after");
    },
  );

  it("answers 500 when the parts form fails", TEST_OPTIONS, async () => {
    answer = () => Promise.reject(new Error("broken"));
    const response = await withTimeout(caller.fetch("/fail"), GUARD, "fetch");
    assert.equal(response.status, 500);
    await response.body?.cancel();
  });
});
