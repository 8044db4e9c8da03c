/**
 * The seeded fuzz test: random and mutated frames through the frame codec, the payload
 * decoders and client/server `Session`s at every stage (see tests/_fuzz.ts for what is
 * checked). The seed is in each test's name; `FUZZ_SEED=<n>` runs another one, and
 * `deno task fuzz [iterations] [seed]` runs millions of cases.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  CloseCode,
  decodeFrames,
  decodeHello,
  decodePing,
  DEFAULT_SETTINGS,
  encodePing,
  FrameType,
  MAX_HELLO_DEPTH,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../protocol/mod.ts";
import { caseSeed, decodeCase, FuzzFailure, Rng, sessionCase } from "./_fuzz.ts";
import { SessionPair } from "./_session_pair.ts";

const SEED = process.env.FUZZ_SEED !== undefined
  ? Number(process.env.FUZZ_SEED) >>> 0
  : 0x5eed_f022;
const TEST_OPTIONS = { timeout: 60_000 };
const DECODE_CASES = 100_000;
const SESSION_MESSAGES = 100_000;

/** Runs cases until `enough` says so, naming the failing case (and the seed) on a failure. */
function run(
  what: string,
  offset: number,
  one: (rng: Rng) => number,
  enough: (total: number) => boolean,
): { cases: number; total: number } {
  let total = 0;
  let cases = 0;
  // Most cases end in a ProtocolError; their stack traces cost more than the rest of the case.
  const errors = Error as { stackTraceLimit?: number };
  const stackTraceLimit = errors.stackTraceLimit;
  errors.stackTraceLimit = 0;
  try {
    for (; !enough(total); cases++) {
      if (cases > 10 * DECODE_CASES) assert.fail(`${what}: too many cases`);
      const n = offset + cases;
      try {
        total += one(new Rng(caseSeed(SEED, n)));
      } catch (error) {
        const detail = error instanceof FuzzFailure ? error.message : `${error}`;
        assert.fail(`${what}: seed ${SEED}, case ${n}: ${detail}`);
      }
    }
  } finally {
    errors.stackTraceLimit = stackTraceLimit;
  }
  return { cases, total };
}

describe(`Fuzzing (seed ${SEED})`, () => {
  it(
    `decodeFrames() and the payload decoders throw only ProtocolError on ${DECODE_CASES} random and mutated messages (seed ${SEED})`,
    TEST_OPTIONS,
    () => {
      const { cases, total } = run(
        "decode",
        0,
        (rng) => {
          decodeCase(rng);
          return 1;
        },
        (n) => n >= DECODE_CASES,
      );
      assert.equal(cases, DECODE_CASES);
      assert.equal(total, DECODE_CASES);
    },
  );

  it(
    `Session.handleMessage() never throws and stays bounded on ${SESSION_MESSAGES} random and mutated messages, client and server, at every stage (seed ${SEED})`,
    TEST_OPTIONS,
    () => {
      const rssBefore = process.memoryUsage().rss;
      let closed = 0;
      const { cases, total } = run(
        "session",
        1 << 24,
        (rng) => {
          const stats = sessionCase(rng);
          if (stats.closed) closed++;
          return stats.messages;
        },
        (n) => n >= SESSION_MESSAGES,
      );
      assert.ok(total >= SESSION_MESSAGES);
      // Both outcomes are exercised: sessions that broke off and sessions that lived on.
      assert.ok(closed > cases / 10 && closed < cases, `${closed} of ${cases} closed`);
      // Nothing outlives its case: memory does not grow with the number of cases.
      const grown = process.memoryUsage().rss - rssBefore;
      assert.ok(grown < 256 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(0)} MiB`);
    },
  );
});

describe("Regressions found by fuzzing", () => {
  it(
    "Session answers a PING larger than the peer's maxFrameBytes with a PONG cut to fit",
    TEST_OPTIONS,
    () => {
      const pair = new SessionPair({ client: { settings: { maxFrameBytes: 16 * 1024 } } });
      pair.handshake();
      // The client's own limit is 16 KiB, the server's 1 MiB: the server takes this ping,
      // and an echo of it would be a frame the client must refuse (4010).
      const data = "é".repeat(12_000); // 24 000 bytes: the cut falls inside a character
      pair.inject("server", [{
        type: FrameType.Ping,
        flags: 0,
        streamId: 0,
        payload: encodePing(1234, data),
      }]);
      const out = pair.server.pollTransmit()!;
      const [pong] = decodeFrames(out, 16 * 1024);
      assert.equal(pong.type, FrameType.Pong);
      assert.ok(pong.payload.byteLength <= 16 * 1024);
      const echoed = decodePing(pong.payload);
      assert.equal(echoed.sentAt, 1234);
      assert.ok(data.startsWith(echoed.data), "the data is a prefix, cut between characters");
      assert.ok(echoed.data.length > 8000);
      pair.client.handleMessage(out, pair.now);
      assert.equal(pair.client.phase, "open");
    },
  );

  it(
    "Session cuts its own PING appData to the peer's maxFrameBytes",
    TEST_OPTIONS,
    () => {
      const pair = new SessionPair({
        client: { settings: { maxFrameBytes: 16 * 1024 } },
        server: { heartbeat: { interval: 1_000, timeout: 5_000 }, appData: "a".repeat(40_000) },
      });
      pair.handshake();
      pair.advance("server");
      const out = pair.server.pollTransmit()!;
      const frames = decodeFrames(out, 16 * 1024);
      assert.ok(frames.some((frame) => frame.type === FrameType.Ping));
    },
  );

  it(
    "decodeHello() refuses metadata nested deeper than MAX_HELLO_DEPTH with 4004 before parsing it",
    TEST_OPTIONS,
    () => {
      const hello = (metadata: string): Uint8Array =>
        new TextEncoder().encode(
          `{"version":${PROTOCOL_VERSION},"metadata":${metadata},"settings":${
            JSON.stringify(DEFAULT_SETTINGS)
          }}`,
        );
      const nested = (depth: number): string => "[".repeat(depth) + "]".repeat(depth);
      // The HELLO object is one level, so metadata may nest MAX_HELLO_DEPTH − 1 deep.
      assert.equal(MAX_HELLO_DEPTH, 64);
      assert.ok(decodeHello(hello(nested(MAX_HELLO_DEPTH - 1)), 16 * 1024));
      // Brackets inside strings are text, not nesting.
      const text = JSON.stringify("[{".repeat(1000) + '\\"[');
      assert.equal((decodeHello(hello(text), 16 * 1024).metadata as string).length, 2003);
      for (const depth of [MAX_HELLO_DEPTH, 100_000, 500_000]) {
        assert.throws(
          () => decodeHello(hello(nested(depth)), 16 * 1024 * 1024),
          (error: unknown) =>
            error instanceof ProtocolError && error.code === CloseCode.InvalidMetadata &&
            /nested deeper than 64/.test(error.message),
        );
      }
    },
  );
});
