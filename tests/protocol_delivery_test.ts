/**
 * Property test: two well-behaved sessions deliver every body intact.
 *
 * The fuzz (fuzz_test.ts) throws hostile bytes at one session; this drives a pair with
 * random but legal traffic — many exchanges at once, bodies of every size sent in random
 * chunks, random message boundaries and window sizes, with and without `splitMessages` —
 * and checks what each end received: every body byte for byte, in order, ended exactly
 * once. It guards the send path's reordering and cutting (round robin, `dataAfterHeaders`,
 * `splitFrames`), which no hostile input exercises.
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { RequestHead, SessionEvent } from "../protocol/mod.ts";
import { caseSeed, Rng } from "./_fuzz.ts";
import { SessionPair, type Side } from "./_session_pair.ts";

const SEED = 0x5eed_da7a;
const CASES = 150;
const SIZES = [0, 1, 100, 1_000, 1_100, 5_000, 70_000, 200_000];

/** One body on its way: what was given to the sender, what the receiver has seen. */
interface Body {
  bytes: Uint8Array;
  sent: number;
  received: number[];
  ended: boolean;
}

interface Exchange {
  id: number;
  request: Body;
  response: Body;
  /** The server has seen the request's HEADERS. */
  seen: boolean;
  /** The server has sent its response HEADERS. */
  answered: boolean;
}

function body(rng: Rng): Body {
  const bytes = rng.bytes(rng.pick(SIZES));
  // A recognisable pattern, so a misplaced chunk shows up as wrong bytes.
  for (let i = 0; i < bytes.byteLength; i += 97) bytes[i] = (i / 97) & 0xff;
  return { bytes, sent: 0, received: [], ended: false };
}

function runCase(rng: Rng): void {
  const window = rng.pick([1024, 65_536, 1_048_576]);
  const pair = new SessionPair({
    client: { splitMessages: rng.chance(0.5), settings: { initialWindow: window } },
    server: { settings: { initialWindow: rng.pick([1024, 65_536, 1_048_576]) } },
  });
  pair.handshake();
  const exchanges = new Map<number, Exchange>();
  const planned = 1 + rng.int(12);
  let opened = 0;

  const sendChunk = (side: Side, exchange: Exchange, part: Body): void => {
    const left = part.bytes.byteLength - part.sent;
    const size = Math.min(left, rng.pick([1, 50, 1_000, 20_000, 100_000, left]));
    const chunk = part.bytes.subarray(part.sent, part.sent + size);
    part.sent += size;
    pair.end(side).sendData(exchange.id, chunk, part.sent === part.bytes.byteLength);
  };

  const receive = (side: Side, event: SessionEvent): void => {
    if (event.type === "request") {
      const exchange = exchanges.get(event.streamId)!;
      exchange.seen = true;
      if (event.end) exchange.request.ended = true;
    } else if (event.type === "response") {
      if (event.end) exchanges.get(event.streamId)!.response.ended = true;
    } else if (event.type === "data") {
      const exchange = exchanges.get(event.streamId)!;
      const part = side === "server" ? exchange.request : exchange.response;
      assert.ok(!part.ended, `stream ${event.streamId}: DATA after END_STREAM`);
      for (const byte of event.chunk) part.received.push(byte);
      if (event.end) part.ended = true;
      pair.end(side).consume(event.streamId, event.chunk.byteLength);
    } else if (event.type === "reset" || event.type === "close") {
      assert.fail(`unexpected ${event.type}: ${JSON.stringify(event)}`);
    }
  };

  const open = (): void => {
    const request = body(rng);
    const head: RequestHead = { method: "POST", url: `/e/${opened}`, headers: [] };
    const id = pair.client.openStream(head, request.bytes.byteLength === 0);
    exchanges.set(id, { id, request, response: body(rng), seen: false, answered: false });
    opened++;
  };
  const collect = (): void => {
    for (const side of ["client", "server"] as const) {
      for (const event of pair.events(side)) receive(side, event);
    }
  };
  const finished = (): boolean =>
    opened === planned &&
    [...exchanges.values()].every((e) => e.request.ended && e.response.ended);

  // Random interleaving first; then, if anything is left, everything goes out step by step.
  for (let step = 0; step < 3_000 && !finished(); step++) {
    const busy = [...exchanges.values()];
    const action = rng.int(6);
    if (action === 0 && opened < planned) {
      open();
    } else if (action === 1) {
      const sending = busy.filter((e) => e.request.sent < e.request.bytes.byteLength);
      if (sending.length > 0) {
        const exchange = rng.pick(sending);
        sendChunk("client", exchange, exchange.request);
      }
    } else if (action === 2) {
      const waiting = busy.filter((e) => e.seen && !e.answered);
      if (waiting.length > 0) {
        const exchange = rng.pick(waiting);
        exchange.answered = true;
        const empty = exchange.response.bytes.byteLength === 0;
        pair.server.sendHeaders(exchange.id, { status: 200, statusText: "", headers: [] }, empty);
      }
    } else if (action === 3) {
      const sending = busy.filter((e) =>
        e.answered && e.response.sent < e.response.bytes.byteLength
      );
      if (sending.length > 0) {
        const exchange = rng.pick(sending);
        sendChunk("server", exchange, exchange.response);
      }
    } else {
      pair.step(action === 4 ? "client" : "server");
    }
    collect();
  }

  for (let round = 0; round < 20_000 && !finished(); round++) {
    for (const exchange of exchanges.values()) {
      if (exchange.request.sent < exchange.request.bytes.byteLength) {
        sendChunk("client", exchange, exchange.request);
      }
      if (exchange.seen && !exchange.answered) {
        exchange.answered = true;
        const empty = exchange.response.bytes.byteLength === 0;
        pair.server.sendHeaders(exchange.id, { status: 200, statusText: "", headers: [] }, empty);
      }
      if (exchange.answered && exchange.response.sent < exchange.response.bytes.byteLength) {
        sendChunk("server", exchange, exchange.response);
      }
    }
    while (opened < planned) open();
    pair.step("client");
    pair.step("server");
    collect();
  }

  for (const exchange of exchanges.values()) {
    for (const [what, part] of [["request", exchange.request], ["response", exchange.response]]) {
      const b = part as Body;
      assert.ok(b.ended, `stream ${exchange.id}: ${what} never ended`);
      assert.equal(b.received.length, b.bytes.byteLength, `stream ${exchange.id}: ${what} size`);
      assert.ok(
        b.received.every((byte, i) => byte === b.bytes[i]),
        `stream ${exchange.id}: ${what} bytes differ`,
      );
    }
  }
  assert.equal(opened, planned, "every planned exchange was opened");
}

describe("Session delivery (random legal traffic between two sessions)", () => {
  it(
    "Session pairs deliver every body intact, in order and ended once",
    { timeout: 120_000 },
    () => {
      for (let n = 0; n < CASES; n++) {
        const seed = caseSeed(SEED, n);
        try {
          runCase(new Rng(seed));
        } catch (error) {
          throw new Error(`case ${n} (seed ${seed}) failed: ${(error as Error).message}`, {
            cause: error,
          });
        }
      }
    },
  );
});
