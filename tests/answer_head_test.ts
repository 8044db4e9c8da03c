/**
 * A peer's answer whose head no `Response` can carry (a header name that is not a token, a
 * value with a line break or a character beyond a byte): `connection.fetch()` rejects at once
 * with `ExchangeResetError`, whether the body came with the head or streams after it (then the
 * peer gets a RESET); the connection goes on. Through a gateway, the caller gets a 502 at once,
 * not a 504 when the agent timeout runs out. The peer is a raw WebSocket, on both runtimes.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Connection, EventType, ExchangeResetError } from "../mod.ts";
import { startGateway } from "../gateway.ts";
import { encodeResponseHead, type Frame, FrameType, ResetCode } from "../protocol/mod.ts";
import { nextEvent, serverHolds, withTimeout } from "./_helpers.ts";
import { connectRaw, type RawPeer } from "./_raw_peer.ts";
import { dataFrame, FrameReader, message } from "./_raw_frames.ts";
import { Resources, urlOf } from "./_server_helpers.ts";
import { checkedHeaders } from "../connection/_answer_parts.ts";

const GUARD = 15_000;
const TEST_OPTIONS = { timeout: 60_000 };

const INVALID: readonly { name: string; headers: [string, string][] }[] = [
  { name: "a header name that is not a token", headers: [["bad name", "x"]] },
  { name: "a value with CR LF", headers: [["x-split", "a\r\nset-cookie: owned=1"]] },
  { name: "a value with a NUL", headers: [["x-nul", "a\0b"]] },
  { name: "a value beyond a byte", headers: [["x-wide", "snow \u2603"]] },
];

describe("A peer's answer with a head no Response can carry", () => {
  const resources = new Resources();
  const raws: RawPeer[] = [];
  afterEach(async () => {
    for (const raw of raws.splice(0)) await raw.close();
    await resources.closeAll();
  });

  /** A server, a raw client handshaken with it, and the server's side of that connection. */
  async function rawClient(): Promise<{ peer: RawPeer; reader: FrameReader; conn: Connection }> {
    const server = resources.server({ handler: () => new Response("server") });
    const events = server.events();
    const peer = connectRaw(urlOf(server));
    raws.push(peer);
    await withTimeout(peer.handshake({ name: "raw" }), GUARD, "the handshake");
    const received = await nextEvent(events, EventType.ConnectionReceived);
    await events.return?.();
    return { peer, reader: new FrameReader(peer), conn: received.connection! };
  }

  const isHeaders = (frame: Frame): boolean => frame.type === FrameType.Headers;

  for (const streamed of [false, true]) {
    for (const c of INVALID) {
      it(
        `connection.fetch() rejects with ExchangeResetError on ${c.name} (body ${
          streamed ? "streamed" : "whole"
        })`,
        TEST_OPTIONS,
        async () => {
          const { peer, reader, conn } = await rawClient();
          const answer = conn.fetch("/x");
          const request = await reader.next(isHeaders, GUARD);
          const head = encodeResponseHead({ status: 200, statusText: "", headers: c.headers });
          peer.ws.send(message({
            type: FrameType.Headers,
            flags: streamed ? 0 : 1,
            streamId: request.streamId,
            payload: head,
          }));
          const error = await withTimeout(
            answer.then(() => undefined, (error: unknown) => error),
            GUARD,
            "fetch() to settle",
          );
          assert.ok(error instanceof ExchangeResetError, `rejected with ${error}`);
          assert.match(error.message, /Invalid response head/);
          if (streamed) {
            // The peer's side of the stream is still open: it is told to stop sending.
            const reset = await reader.next(
              (frame) => frame.type === FrameType.Reset && frame.streamId === request.streamId,
              GUARD,
            );
            const code = new DataView(reset.payload.buffer, reset.payload.byteOffset).getUint32(0);
            assert.equal(code, ResetCode.StreamError);
            peer.ws.send(message(dataFrame(request.streamId, new Uint8Array(3), true)));
          }
          // The connection goes on: the next exchange is answered.
          const next = conn.fetch("/y");
          const second = await reader.next(isHeaders, GUARD);
          peer.ws.send(message({
            type: FrameType.Headers,
            flags: 1,
            streamId: second.streamId,
            payload: encodeResponseHead({ status: 204, statusText: "", headers: [["x-ok", "1"]] }),
          }));
          const ok = await withTimeout(next, GUARD, "the next fetch()");
          assert.equal(ok.status, 204);
          assert.equal(ok.headers.get("x-ok"), "1");
        },
      );
    }
  }

  for (const c of INVALID) {
    it(
      `a gateway answers 502 at once for an agent that answers with ${c.name}`,
      TEST_OPTIONS,
      async () => {
        // An agent timeout far beyond the guard: a 504 would mean the exchange hung.
        const gateway = await startGateway({ port: 0, timeout: 120_000 });
        resources.defer("gateway.close()", () => gateway.close());
        const agent = connectRaw(gateway.agentsUrl);
        raws.push(agent);
        const welcome = await withTimeout(agent.handshake({ name: "raw" }), GUARD, "the handshake");
        await serverHolds(gateway.server, welcome.id, GUARD);
        const reader = new FrameReader(agent);
        const answer = fetch(`${gateway.url}/agents/raw/x`);
        const request = await reader.next(isHeaders, GUARD);
        agent.ws.send(message({
          type: FrameType.Headers,
          flags: 1,
          streamId: request.streamId,
          payload: encodeResponseHead({
            status: 200,
            statusText: "",
            headers: [["x-fine", "1"], ...c.headers],
          }),
        }));
        const response = await withTimeout(answer, GUARD, "the gateway's answer");
        const body = await response.json() as { error: string; message: string };
        assert.equal(response.status, 502);
        assert.equal(body.error, "agent_unavailable");
        assert.match(body.message, /Invalid response head/);
        assert.equal(response.headers.get("x-fine"), null);
      },
    );
  }
});

describe("checkedHeaders()", () => {
  const NAMES = [
    "x-a",
    "X-Mixed",
    "content-type",
    "a!#$%&'*+-.^_`|~9",
    "",
    "bad name",
    "x:y",
    "é",
    "x\u0000",
  ];
  const VALUES = [
    "plain",
    "",
    "  padded\t",
    "\tinner\ttab ",
    "a\u00a0",
    "\u00a0nbsp-edge\u00a0",
    "latin1 \u00ff",
    "wide \u0100",
    "a\rb",
    "a\nb",
    "a\u0000b",
    " \r\n",
    "\u000bvt",
  ];

  it("keeps, refuses and trims exactly as a Headers does, entry by entry", () => {
    for (const name of NAMES) {
      for (const value of VALUES) {
        let expected: [string, string][] | "refused";
        try {
          const headers = new Headers();
          headers.append(name, value);
          expected = [...headers];
        } catch {
          expected = "refused";
        }
        let actual: [string, string][] | "refused";
        try {
          actual = checkedHeaders([[name, value]]);
        } catch (error) {
          assert.ok(error instanceof TypeError, String(error));
          actual = "refused";
        }
        assert.deepEqual(actual, expected, `${JSON.stringify(name)}: ${JSON.stringify(value)}`);
      }
    }
  });

  it("keeps repeated names apart and in order (a Headers joins them)", () => {
    assert.deepEqual(checkedHeaders([["X-Dup", "1"], ["set-cookie", "a=1"], ["x-dup", "2"]]), [
      ["x-dup", "1"],
      ["set-cookie", "a=1"],
      ["x-dup", "2"],
    ]);
  });
});
