/**
 * The runtime layer: detected once, and the same answers as the tests' own detection; a
 * mounted server's upgrade with no runtime server to use is refused with a `TypeError`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { dialFailure, RUNTIME } from "../runtime/mod.ts";
import { IS_BUN } from "./_helpers.ts";

describe("runtime/mod.ts", () => {
  it("RUNTIME names this runtime; only Deno's client delays mid-size messages, only Bun's sets TCP_NODELAY", () => {
    assert.equal(RUNTIME.name, IS_BUN ? "bun" : "deno");
    assert.equal(RUNTIME.clientDelaysMidSizeMessages, !IS_BUN);
    assert.equal(RUNTIME.clientSetsNoDelay, IS_BUN);
  });

  it("RUNTIME.takeBodyInMemory() takes, on Deno, a body made of a string or bytes that nothing has read", async () => {
    const take = RUNTIME.takeBodyInMemory;
    if (IS_BUN) {
      assert.equal(take, undefined);
      return;
    }
    assert.ok(take);
    const text = (taken: Uint8Array | string | undefined): string | undefined =>
      typeof taken === "string" || taken === undefined ? taken : new TextDecoder().decode(taken);
    const cases: [string, () => Response, string | undefined][] = [
      ["text", () => new Response("pong"), "pong"],
      ["text with init", () => new Response("pöng", { status: 201, headers: { a: "1" } }), "pöng"],
      ["JSON", () => Response.json({ a: 1 }), '{"a":1}'],
      ["bytes", () => new Response(new Uint8Array([0x68, 0x69])), "hi"],
      ["a view", () => new Response(new Uint8Array([0x61, 0x68, 0x69]).subarray(1)), "hi"],
      ["ArrayBuffer", () => new Response(new Uint8Array([0x68, 0x69]).buffer), "hi"],
      ["form", () => new Response(new URLSearchParams("a=1")), "a=1"],
      ["no body", () => new Response(null), undefined],
      ["stream", () => new Response(new ReadableStream()), undefined],
      ["Blob", () => new Response(new Blob(["x"])), undefined],
      ["its stream asked for", () => {
        const response = new Response("pong");
        void response.body;
        return response;
      }, undefined],
    ];
    for (const [name, make, expected] of cases) {
      const response = make();
      // The responder reads the headers first.
      void response.headers;
      assert.equal(text(take(response)), expected, name);
      if (expected === undefined) continue;
      // Taken, the body is used, as reading it would leave it.
      assert.equal(response.bodyUsed, true, `${name}: used`);
      assert.equal(take(response), undefined, `${name}: taken once`);
      await assert.rejects(response.arrayBuffer(), TypeError, `${name}: unreadable after`);
    }
    const read = new Response("pong");
    await read.text();
    assert.equal(take(read), undefined, "read already");
    // A clone's body is its own: taking one leaves the other readable.
    const original = new Response("twice");
    void original.headers;
    const clone = original.clone();
    assert.equal(text(take(original)), "twice");
    assert.equal(await clone.text(), "twice");
  });

  it("RUNTIME.abortRequest() aborts, on Deno, the signal of a request made without one", () => {
    const abort = RUNTIME.abortRequest;
    if (IS_BUN) {
      assert.equal(abort, undefined);
      return;
    }
    assert.ok(abort);
    // Asked for before the abort: its listeners hear it, once.
    const early = new Request("http://localhost/", { method: "POST", body: "x" });
    const heard: unknown[] = [];
    early.signal.addEventListener("abort", () => heard.push(early.signal.reason));
    const clone = early.clone();
    const reason = new Error("gone");
    abort(early, reason);
    abort(early, new Error("again"));
    assert.deepEqual(heard, [reason]);
    assert.equal(early.signal.aborted, true);
    assert.equal(clone.signal.reason, reason);
    // Asked for only after it: already aborted, with the reason.
    const late = new Request("http://localhost/");
    abort(late, reason);
    assert.equal(late.signal.aborted, true);
    assert.equal(late.signal.reason, reason);
  });

  it("RUNTIME.script() reads this process's arguments and environment", () => {
    const script = RUNTIME.script();
    assert.ok(Array.isArray(script.args));
    assert.equal(script.env("SWAGGERSOCKET_SURELY_UNSET_VARIABLE"), undefined);
  });

  it("RUNTIME.upgrade() on Bun throws a TypeError: only Bun's server upgrades there", () => {
    if (!IS_BUN) return;
    const request = new Request("http://localhost/", { headers: { upgrade: "websocket" } });
    assert.throws(
      () =>
        RUNTIME.upgrade(request, undefined, {
          keepsRequests: false,
          accept: () => {},
          socketOpened: () => {},
          socketClosed: () => {},
        }),
      TypeError,
    );
  });

  it("dialFailure() strips each runtime's preamble and spots an untrusted issuer", () => {
    assert.deepEqual(
      dialFailure(
        "WebSocket connection to 'wss://x/' failed: unable to verify the first certificate",
      ),
      {
        detail: "unable to verify the first certificate",
        untrustedIssuer: true,
        firstAttemptHidden: false,
      },
    );
    assert.deepEqual(
      dialFailure("NetworkError: failed to connect to WebSocket: tcp connect error"),
      { detail: "tcp connect error", untrustedIssuer: false, firstAttemptHidden: false },
    );
    assert.deepEqual(
      dialFailure(
        "NetworkError: failed to connect to WebSocket: received fatal alert: NoApplicationProtocol",
      ),
      {
        detail: "received fatal alert: NoApplicationProtocol",
        untrustedIssuer: false,
        firstAttemptHidden: true,
      },
    );
  });
});
