/**
 * The session's boundary with the layer above: refusals come as typed errors the caller
 * tells apart by class (never by message), a body that arrives whole with its head comes
 * on the head's event (`bodyWithHead`), stream events say which end opened the stream, and
 * the session's randomness is injected (so a seeded session is reproducible).
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  GoingAwayError,
  HeaderSizeError,
  type RequestHead,
  type ResponseHead,
  type SessionEvent,
  StreamLimitError,
} from "../protocol/mod.ts";
import { mulberry32 } from "./_fuzz.ts";
import { GET, type PairOptions, SessionPair } from "./_session_pair.ts";

const POST: RequestHead = { method: "POST", url: "/echo", headers: [] };
const OK: ResponseHead = { status: 200, statusText: "", headers: [] };
const WHOLE: PairOptions = { client: { bodyWithHead: true }, server: { bodyWithHead: true } };

function opened(options: PairOptions = {}): SessionPair {
  const pair = new SessionPair(options);
  pair.handshake();
  return pair;
}

function big(bytes: number): RequestHead {
  return { method: "GET", url: "/", headers: [["x-big", "a".repeat(bytes)]] };
}

function summary(events: SessionEvent[]): unknown[] {
  return events.map((event) => {
    switch (event.type) {
      case "request":
      case "response":
        return [event.type, event.end, event.body && [...event.body]];
      case "data":
        return [event.type, event.local, [...event.chunk], event.end];
      case "finished":
      case "reset":
        return [event.type, event.local];
      default:
        return [event.type];
    }
  });
}

describe("Session refusals are typed", () => {
  it("Session.openStream() throws StreamLimitError, a RangeError, at the peer's limit", () => {
    const pair = opened({ server: { settings: { maxConcurrentStreams: 2 } } });
    pair.client.openStream(GET, true);
    pair.client.openStream(GET, true);
    assert.throws(() => pair.client.openStream(GET, true), (error: unknown) => {
      assert.ok(error instanceof StreamLimitError && error instanceof RangeError);
      assert.equal(error.limit, 2);
      assert.equal(error.name, "StreamLimitError");
      return true;
    });
  });

  it("Session.openStream() and sendHeaders() throw HeaderSizeError for a head too large", () => {
    const pair = opened({ server: { settings: { maxHeaderBytes: 1024 } } });
    assert.throws(() => pair.client.openStream(big(2048), true), (error: unknown) => {
      assert.ok(error instanceof HeaderSizeError && error instanceof RangeError);
      assert.equal(error.limit, 1024);
      assert.ok(error.size > 2048);
      return true;
    });
    const small = opened({ client: { settings: { maxHeaderBytes: 1024 } } });
    const id = small.client.openStream(GET, true);
    small.step("client");
    small.events("server");
    const head: ResponseHead = { ...OK, headers: [["x-big", "a".repeat(2048)]] };
    assert.throws(() => small.server.sendHeaders(id, head, true), HeaderSizeError);
  });

  it("Session.openStream() throws GoingAwayError, a TypeError, once a GOAWAY went", () => {
    const pair = opened();
    pair.client.goAway(CloseCode.GoingAway, "bye");
    assert.throws(() => pair.client.openStream(GET, true), GoingAwayError);
    pair.step("client");
    assert.throws(() => pair.server.openStream(GET, true), (error: unknown) => {
      return error instanceof GoingAwayError && error instanceof TypeError;
    });
  });

  it("Session.openStream() still throws a plain TypeError before the handshake", () => {
    const pair = new SessionPair();
    assert.throws(
      () => pair.client.openStream(GET, true),
      (error: unknown) => error instanceof TypeError && !(error instanceof GoingAwayError),
    );
  });
});

describe("Session with bodyWithHead", () => {
  it("hands a request body that came whole with its head on the request event", () => {
    const pair = opened(WHOLE);
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, new Uint8Array([1, 2, 3]), true);
    pair.step("client");
    const events = pair.events("server");
    assert.deepEqual(summary(events), [["request", false, [1, 2, 3]]], "no data event");
    // The body counts as received data: consuming it gives the credit back.
    pair.server.consume(id, 3);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, new Uint8Array([4]), true);
    pair.step("server");
    assert.deepEqual(summary(pair.events("client")), [
      ["response", false, [4]],
      ["finished", true],
    ]);
  });

  it("streams a body that does not end in its head's message as data events", () => {
    const pair = opened(WHOLE);
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, new Uint8Array([1]), false);
    pair.step("client");
    pair.client.sendData(id, new Uint8Array([2]), true);
    pair.step("client");
    assert.deepEqual(summary(pair.events("server")), [
      ["request", false, undefined],
      ["data", false, [1], false],
      ["data", false, [2], true],
    ]);
  });

  it("is off by default: a whole body still comes as a data event", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, new Uint8Array([7]), true);
    pair.step("client");
    assert.deepEqual(summary(pair.events("server")), [
      ["request", false, undefined],
      ["data", false, [7], true],
    ]);
    assert.equal(id, 1);
  });
});

describe("Session stream events say which end opened the stream", () => {
  it("data, finished and reset events carry local", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, new Uint8Array([1]), true);
    pair.step("client");
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, new Uint8Array([2]), true);
    assert.deepEqual(summary(pair.events("server")), [
      ["request", false, undefined],
      ["data", false, [1], true],
    ]);
    pair.step("server");
    assert.deepEqual(summary(pair.events("server")), [["finished", false]]);
    assert.deepEqual(summary(pair.events("client")), [
      ["response", false, undefined],
      ["data", true, [2], true],
      ["finished", true],
    ]);
    const other = pair.client.openStream(POST, false);
    pair.step("client");
    pair.events("server");
    pair.server.reset(other, 8, "no");
    pair.step("server");
    assert.deepEqual(summary(pair.events("client")), [["reset", true]]);
  });
});

describe("Session randomness", () => {
  it("Session draws only from its random option: the same seed, the same heartbeat", () => {
    const pingTimes = (seed: number): number[] => {
      const next = mulberry32(seed);
      const random = (): number => next() / 2 ** 32;
      const heartbeat = { interval: 1_000, timeout: 3_000 };
      const pair = opened({ server: { heartbeat, random } });
      const seen: number[] = [];
      for (let i = 0; i < 5; i++) seen.push(pair.advance()!);
      return seen;
    };
    assert.deepEqual(pingTimes(42), pingTimes(42));
    assert.notDeepEqual(pingTimes(42), pingTimes(43));
  });
});
