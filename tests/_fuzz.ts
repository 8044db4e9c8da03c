/**
 * A seeded fuzzer for the protocol core: random and mutated frames through the frame
 * codec, the payload decoders and `Session` (client and server, before, during and after
 * the handshake, with streams open and data queued).
 *
 * What it checks:
 * - decoding throws nothing but `ProtocolError`, and what it returns is consistent;
 * - `Session.handleMessage`, `handleTimeout` and `pollTransmit` never throw; local commands
 *   throw nothing but `TypeError`/`RangeError` (local misuse);
 * - every message a session transmits decodes, within the peer's `maxFrameBytes` as the
 *   session knows it;
 * - the events and output one input produces are bounded by that input (no growth that the
 *   caller cannot drain), and a closed session stays silent.
 *
 * Every case gets its own generator seeded from (seed, case number), so a failure names
 * the case to replay. `tests/fuzz_test.ts` runs it in the suite; `deno task fuzz
 * [iterations] [seed]` runs it long (this file's main).
 *
 * @module
 */

import {
  decodeFrames,
  decodeGoAway,
  decodeHello,
  decodePing,
  decodeRequestHead,
  decodeReset,
  decodeResponseHead,
  decodeWelcome,
  decodeWindowUpdate,
  DEFAULT_SETTINGS,
  encodeFrames,
  encodeGoAway,
  encodeHello,
  encodePing,
  encodeRequestHead,
  encodeReset,
  encodeResponseHead,
  encodeWelcome,
  encodeWindowUpdate,
  FLAG_END_STREAM,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameType,
  ProtocolError,
  type Session,
  type SessionOptions,
  type Settings,
} from "../protocol/mod.ts";
import { GET, SessionPair } from "./_session_pair.ts";

// ---- the generator ------------------------------------------------------------

/** mulberry32: a small, fast, seedable 32-bit generator. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Random choices for one case. */
export class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** A uint32. */
  u32(): number {
    return this.#next();
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : this.#next() % n;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.#next() / 0x1_0000_0000 < p;
  }

  /** One of the items. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** n random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    // Past 32 bytes the content matters less than the size: repeat the first 32.
    for (let i = 0; i < Math.min(n, 32); i++) out[i] = this.#next() & 0xff;
    for (let i = 32; i < n; i *= 2) out.copyWithin(i, 0, Math.min(i, n - i));
    return out;
  }

  /** A short string, mostly ASCII, sometimes not. */
  text(max: number): string {
    const n = this.int(max + 1);
    let s = "";
    for (let i = 0; i < n; i++) {
      s += this.chance(0.9)
        ? String.fromCharCode(0x20 + this.int(0x5f))
        : this.pick(["é", "€", "😀", "\u0000", "\ufeff", "\r\n", "\ud800"]);
    }
    return s;
  }
}

/** Mixes a seed and a case number into the seed of that case. */
export function caseSeed(seed: number, n: number): number {
  let h = (seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ---- valid frames -------------------------------------------------------------

const STREAM_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 101, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff];
const INTERESTING_U32 = [
  0,
  1,
  2,
  3,
  4,
  8,
  9,
  10,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x3fff,
  0x4000,
  0x4001,
  0xffff,
  0x1_0000,
  0x10_0000,
  0x10_0001,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
];

function randomSettings(rng: Rng): Settings {
  const maxFrameBytes = rng.pick([16 * 1024, 64 * 1024, 1024 * 1024]);
  return {
    maxFrameBytes,
    maxHeaderBytes: rng.pick([1024, 4096, 64 * 1024]),
    maxConcurrentStreams: rng.pick([1, 2, 4, 1024]),
    initialWindow: rng.pick([1024, 4096, 65_535, 1024 * 1024]),
    connectionWindow: rng.pick([1024, 4096, 65_535, 8 * 1024 * 1024]),
    maxMessageBytes: maxFrameBytes + rng.pick([10, 4096, 1024 * 1024]),
  };
}

function randomJson(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 4 : 6)) {
    case 0:
      return null;
    case 1:
      return rng.pick([0, -1, 1.5, 1e308, -0, 2 ** 53]);
    case 2:
      return rng.text(12);
    case 3:
      return rng.chance(0.5);
    case 4:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--) out[rng.text(6)] = randomJson(rng, depth + 1);
      return out;
    }
  }
}

function streamId(rng: Rng, live: readonly number[]): number {
  if (live.length > 0 && rng.chance(0.6)) return rng.pick(live);
  return rng.chance(0.8) ? rng.pick(STREAM_IDS) : rng.u32();
}

function headerPairs(rng: Rng): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = rng.int(4); i > 0; i--) {
    pairs.push([
      rng.pick(["accept", "x-a", "Content-Type", "", "bad name", rng.text(8)]),
      rng.text(20),
    ]);
  }
  if (rng.chance(0.004)) pairs.push(["x-big", "b".repeat(rng.pick([1000, 5000, 70_000]))]);
  return pairs;
}

const SETTINGS_JSON = JSON.stringify(DEFAULT_SETTINGS);

/** Hand-made HELLO payloads: wrong types, missing fields, deep nesting, not JSON at all. */
const ODD_HELLOS: readonly ((rng: Rng) => string)[] = [
  (rng) => {
    const depth = rng.pick([10, 63, 64, 65, 1000, 100_000]);
    return `{"version":1,"metadata":${"[".repeat(depth)}${
      "]".repeat(depth)
    },"settings":${SETTINGS_JSON}}`;
  },
  () => `{"version":1,"metadata":"[[[[\\"[[[[","settings":${SETTINGS_JSON}}`,
  () => `{"version":"1","metadata":null,"settings":{}}`,
  () => `{"version":1,"settings":{"maxFrameBytes":1e400,"maxHeaderBytes":-1}}`,
  () => `{"version":1,"metadata":{},"settings":${SETTINGS_JSON},"resume":7}`,
  () => `[1,2,3]`,
  () => `null`,
  () => `{"__proto__":{"version":1},"version":1,"settings":${SETTINGS_JSON}}`,
  (rng) => rng.text(30),
];

const ODD_WELCOMES: readonly ((rng: Rng) => string)[] = [
  () => `{"id":"","settings":${SETTINGS_JSON}}`,
  () => `{"id":"x","settings":${SETTINGS_JSON},"heartbeat":{"interval":-1}}`,
  () => `{"id":"x","settings":${SETTINGS_JSON},"heartbeat":{"interval":1e-300,"timeout":1e300}}`,
  () => `{"id":${JSON.stringify("i".repeat(200))},"settings":{}}`,
  () => `{}`,
  (rng) => rng.text(30),
];

const utf8 = new TextEncoder();

function hello(rng: Rng): Uint8Array {
  if (rng.chance(0.15)) return utf8.encode(rng.pick(ODD_HELLOS)(rng));
  return encodeHello({
    version: rng.chance(0.95) ? 1 : rng.int(4),
    metadata: rng.chance(0.05) ? "m".repeat(20_000) : randomJson(rng),
    settings: randomSettings(rng),
    ...(rng.chance(0.2) ? { resume: rng.text(rng.chance(0.1) ? 600 : 20) } : {}),
  });
}

function welcome(rng: Rng): Uint8Array {
  if (rng.chance(0.15)) return utf8.encode(rng.pick(ODD_WELCOMES)(rng));
  return encodeWelcome({
    id: rng.chance(0.9) ? "01J0000000000000000000000" : rng.text(20),
    settings: randomSettings(rng),
    ...(rng.chance(0.3)
      ? { heartbeat: { interval: 1 + rng.int(5000), timeout: 1 + rng.int(20_000) } }
      : {}),
    ...(rng.chance(0.3) ? { resumeToken: rng.text(30) } : {}),
    ...(rng.chance(0.1) ? { resumed: true } : {}),
  });
}

/** A random frame of a valid shape (the session may still find it illegal in context). */
export function validFrame(rng: Rng, live: readonly number[] = []): Frame {
  const end = rng.chance(0.4) ? FLAG_END_STREAM : 0;
  switch (rng.int(12)) {
    case 0:
      return { type: FrameType.Hello, flags: 0, streamId: 0, payload: hello(rng) };
    case 1:
      return { type: FrameType.Welcome, flags: 0, streamId: 0, payload: welcome(rng) };
    case 2:
      return { type: FrameType.Ack, flags: 0, streamId: 0, payload: new Uint8Array(0) };
    case 3:
    case 4: {
      const payload = rng.chance(0.5)
        ? encodeRequestHead({
          method: rng.pick(["GET", "POST", "HEAD", "DELETE", "", "G T", rng.text(6)]),
          url: rng.pick(["/", "/pets?x=1", "http://h/x", "", "//evil", rng.text(20)]),
          headers: headerPairs(rng),
        })
        : encodeResponseHead({
          status: rng.pick([200, 204, 304, 404, 500, 599, 199, 600, 0, 101]),
          statusText: rng.text(10),
          headers: headerPairs(rng),
        });
      return { type: FrameType.Headers, flags: end, streamId: streamId(rng, live), payload };
    }
    case 5:
    case 6:
      return {
        type: FrameType.Data,
        flags: end,
        streamId: streamId(rng, live),
        payload: rng.bytes(rng.chance(0.05) ? rng.int(70_000) : rng.int(1500)),
      };
    case 7:
      return {
        type: FrameType.Reset,
        flags: 0,
        streamId: streamId(rng, live),
        payload: encodeReset(rng.chance(0.8) ? 1 + rng.int(5) : rng.u32(), rng.text(30)),
      };
    case 8:
      return {
        type: FrameType.WindowUpdate,
        flags: 0,
        streamId: streamId(rng, live),
        payload: encodeWindowUpdate(
          rng.chance(0.7) ? 1 + rng.int(70_000) : rng.pick(INTERESTING_U32),
        ),
      };
    case 9: {
      const sentAt = rng.pick([0, 1, 1e3, -1, NaN, Infinity, -Infinity, 1e300, 5e-324]);
      return {
        type: rng.chance(0.5) ? FrameType.Ping : FrameType.Pong,
        flags: 0,
        streamId: 0,
        payload: encodePing(sentAt, rng.chance(0.05) ? "p".repeat(rng.int(40_000)) : rng.text(20)),
      };
    }
    case 10:
      return {
        type: FrameType.GoAway,
        flags: 0,
        streamId: 0,
        payload: encodeGoAway(rng.pick(STREAM_IDS.concat([0])), rng.u32() & 0xffff, rng.text(40)),
      };
    default:
      return { type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array(0) };
  }
}

/** One message of 1–4 valid frames. */
export function validMessage(rng: Rng, live: readonly number[] = []): Uint8Array {
  const frames: Frame[] = [];
  for (let i = 1 + (rng.chance(0.3) ? rng.int(4) : 0); i > 0; i--) {
    frames.push(validFrame(rng, live));
  }
  return encodeFrames(frames);
}

/** What a session case knows about the victim, to aim frames at it. */
export interface Target {
  /** Streams that may be open. */
  live: number[];
  /** The next id the peer may open a stream with (the victim's peer parity). */
  nextPeerId: number;
}

/** A frame that makes sense for an open session: new streams, data, credit, resets, pings. */
export function contextFrame(rng: Rng, target: Target): Frame {
  const live = target.live;
  const id = live.length > 0 ? rng.pick(live) : target.nextPeerId;
  const end = rng.chance(0.3) ? FLAG_END_STREAM : 0;
  switch (rng.int(9)) {
    case 0:
    case 1: {
      const streamId = target.nextPeerId;
      target.nextPeerId += 2;
      live.push(streamId);
      return {
        type: FrameType.Headers,
        flags: end,
        streamId,
        payload: encodeRequestHead({ method: "POST", url: "/x", headers: headerPairs(rng) }),
      };
    }
    case 2:
      return {
        type: FrameType.Headers,
        flags: end,
        streamId: id,
        payload: encodeResponseHead({ status: 200, statusText: "", headers: headerPairs(rng) }),
      };
    case 3:
    case 4:
      return { type: FrameType.Data, flags: end, streamId: id, payload: rng.bytes(rng.int(1200)) };
    case 5:
      return {
        type: FrameType.WindowUpdate,
        flags: 0,
        streamId: id,
        payload: encodeWindowUpdate(1 + rng.int(100_000)),
      };
    case 6:
      return { type: FrameType.Reset, flags: 0, streamId: id, payload: encodeReset(1, "") };
    case 7: {
      const big = rng.chance(0.04);
      return {
        type: rng.chance(0.7) ? FrameType.Ping : FrameType.Pong,
        flags: 0,
        streamId: 0,
        payload: encodePing(rng.int(10_000), big ? "p".repeat(rng.int(60_000)) : rng.text(20)),
      };
    }
    default:
      return rng.chance(0.9)
        ? { type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array(0) }
        : { type: FrameType.GoAway, flags: 0, streamId: 0, payload: encodeGoAway(id, 4006, "") };
  }
}

/** A message for a session case: aimed frames (sometimes mutated once) or a fuzz message. */
export function sessionMessage(rng: Rng, target: Target): Uint8Array {
  if (rng.chance(0.25)) return fuzzMessage(rng, target.live);
  const frames: Frame[] = [];
  for (let i = 1 + rng.int(4); i > 0; i--) frames.push(contextFrame(rng, target));
  const bytes = encodeFrames(frames);
  return rng.chance(0.2) ? mutate(rng, bytes, () => validMessage(rng, target.live)) : bytes;
}

// ---- mutations ----------------------------------------------------------------

/** Offsets of the frame headers in a message, as far as they can be walked. */
function frameOffsets(bytes: Uint8Array): number[] {
  const offsets: number[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset + FRAME_HEADER_BYTES <= bytes.byteLength && offsets.length < 64) {
    offsets.push(offset);
    offset += FRAME_HEADER_BYTES + view.getUint32(offset + 6);
  }
  return offsets.length > 0 ? offsets : [0];
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** Applies one random mutation. `other` is a second message, for splicing. */
export function mutate(rng: Rng, input: Uint8Array, other: () => Uint8Array): Uint8Array {
  const bytes = input.slice();
  const n = bytes.byteLength;
  const at = frameOffsets(bytes);
  const header = rng.pick(at);
  const view = new DataView(bytes.buffer);
  const fits = (offset: number, size: number) => offset + size <= n;
  switch (rng.int(11)) {
    case 0: // bit flips
      for (let i = 1 + rng.int(8); i > 0 && n > 0; i--) bytes[rng.int(n)] ^= 1 << rng.int(8);
      return bytes;
    case 1: // interesting bytes
      for (let i = 1 + rng.int(4); i > 0 && n > 0; i--) {
        bytes[rng.int(n)] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, 0xc0, 0x10]);
      }
      return bytes;
    case 2: // truncation
      return bytes.subarray(0, rng.int(n + 1));
    case 3: // extension
      return concat(bytes, rng.bytes(1 + rng.int(rng.chance(0.5) ? 12 : 300)));
    case 4: // length field
      if (fits(header + 6, 4)) {
        const length = view.getUint32(header + 6);
        view.setUint32(
          header + 6,
          rng.chance(0.5)
            ? (length + rng.pick([-1, 1, -4, 4, 1 << 16, -(1 << 16)])) >>> 0
            : rng.pick(INTERESTING_U32),
        );
      }
      return bytes;
    case 5: // type
      if (fits(header, 1)) {
        bytes[header] = rng.chance(0.8)
          ? rng.pick(Object.values(FrameType) as number[])
          : rng.int(256);
      }
      return bytes;
    case 6: // flags
      if (fits(header + 1, 1)) bytes[header + 1] = rng.pick([0, 1, 2, 0x80, 0xff, rng.int(256)]);
      return bytes;
    case 7: // stream id
      if (fits(header + 2, 4)) {
        view.setUint32(header + 2, rng.chance(0.7) ? rng.pick(STREAM_IDS.concat([0])) : rng.u32());
      }
      return bytes;
    case 8: { // splice: a prefix of this one and a suffix of another
      const b = other();
      return concat(bytes.subarray(0, rng.int(n + 1)), b.subarray(rng.int(b.byteLength + 1)));
    }
    case 9: { // frames of both, back to back
      const b = other();
      return rng.chance(0.5) ? concat(bytes, b) : concat(b, bytes);
    }
    default: // a frame repeated
      return concat(bytes, bytes.subarray(header));
  }
}

/** A fuzz input: a valid message with 0–3 mutations, or (sometimes) noise. */
export function fuzzMessage(rng: Rng, live: readonly number[] = []): Uint8Array {
  if (rng.chance(0.03)) return rng.bytes(rng.int(64));
  let bytes = validMessage(rng, live);
  const mutations = rng.chance(0.25) ? 0 : 1 + rng.int(3);
  for (let i = 0; i < mutations; i++) bytes = mutate(rng, bytes, () => validMessage(rng, live));
  return bytes;
}

// ---- checks -------------------------------------------------------------------

/** A property the fuzzer found broken. */
export class FuzzFailure extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FuzzFailure";
  }
}

function hex(bytes: Uint8Array, max = 96): string {
  const shown = [...bytes.subarray(0, max)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return bytes.byteLength > max ? `${shown}… (${bytes.byteLength} bytes)` : shown;
}

function onlyProtocolErrors(what: string, bytes: Uint8Array, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (error) {
    if (error instanceof ProtocolError) return false;
    throw new FuzzFailure(`${what} threw ${(error as Error)?.name}: ${error} on ${hex(bytes)}`, {
      cause: error,
    });
  }
}

/**
 * One decode case: the frame codec and, for each frame, the payload decoders.
 * Returns whether the message decoded.
 */
export function decodeCase(rng: Rng): boolean {
  const bytes = fuzzMessage(rng);
  const limit = rng.pick([16 * 1024, 1024 * 1024, Infinity]);
  let frames: Frame[] = [];
  const ok = onlyProtocolErrors("decodeFrames", bytes, () => frames = decodeFrames(bytes, limit));
  if (!ok) return false;
  let total = 0;
  for (const frame of frames) {
    total += FRAME_HEADER_BYTES + frame.payload.byteLength;
    if (frame.payload.byteLength > limit) {
      throw new FuzzFailure(`decodeFrames let a ${frame.payload.byteLength}-byte payload through`);
    }
    if (frame.payload.byteLength > 0 && frame.payload.buffer !== bytes.buffer) {
      throw new FuzzFailure("decodeFrames copied a payload");
    }
    const p = frame.payload;
    switch (frame.type) {
      case FrameType.Hello:
        onlyProtocolErrors("decodeHello", p, () => decodeHello(p, 16 * 1024));
        break;
      case FrameType.Welcome:
        onlyProtocolErrors("decodeWelcome", p, () => decodeWelcome(p));
        break;
      case FrameType.Headers:
        onlyProtocolErrors("decodeRequestHead", p, () => decodeRequestHead(p));
        onlyProtocolErrors("decodeResponseHead", p, () => decodeResponseHead(p));
        break;
      case FrameType.Reset:
        onlyProtocolErrors("decodeReset", p, () => decodeReset(p));
        break;
      case FrameType.WindowUpdate:
        onlyProtocolErrors("decodeWindowUpdate", p, () => decodeWindowUpdate(p));
        break;
      case FrameType.Ping:
      case FrameType.Pong:
        onlyProtocolErrors("decodePing", p, () => decodePing(p));
        break;
      case FrameType.GoAway:
        onlyProtocolErrors("decodeGoAway", p, () => decodeGoAway(p));
        break;
    }
  }
  if (total !== bytes.byteLength) {
    throw new FuzzFailure(`decodeFrames accounted for ${total} of ${bytes.byteLength} bytes`);
  }
  return true;
}

/** What a session case did, for the test's totals. */
export interface SessionCaseStats {
  /** Messages given to the victim's `handleMessage`. */
  messages: number;
  /** Whether the victim ended closed. */
  closed: boolean;
  /** The most events one step produced. */
  maxEvents: number;
}

type Stage = "fresh" | "hello" | "open" | "streams" | "draining";
const STAGES: readonly Stage[] = ["fresh", "hello", "open", "streams", "streams", "draining"];

function sessionOptions(rng: Rng): Omit<SessionOptions, "role"> {
  return {
    settings: randomSettings(rng),
    handshakeTimeout: rng.pick([100, 10_000]),
    heartbeat: rng.chance(0.3) ? { interval: 1_000, timeout: 5_000 } : false,
    ...(rng.chance(0.3) ? { resetRateLimit: { burst: rng.pick([1, 5, 50]), perSecond: 1 } } : {}),
    maxMetadataBytes: rng.pick([0, 64, 16 * 1024]),
    splitMessages: rng.chance(0.3),
    messageDataBytes: rng.pick([4096, 256 * 1024]),
    random: () => 0.5,
  };
}

/**
 * One session case: a pair brought to a random stage, then a run of steps against one end
 * (the victim): fuzz messages, clock ticks, local commands, and carrying output across.
 */
export function sessionCase(rng: Rng): SessionCaseStats {
  const pair = new SessionPair({ client: sessionOptions(rng), server: sessionOptions(rng) });
  const side = rng.chance(0.5) ? "server" : "client";
  const victim = pair.end(side);
  const partner = pair.end(side === "server" ? "client" : "server");
  const stage = rng.pick(STAGES);
  const live: number[] = [];
  // The peer's streams take the other parity: odd ids towards a server, even towards a client.
  const target: Target = { live, nextPeerId: side === "server" ? 1001 : 1002 };
  const stats: SessionCaseStats = { messages: 0, closed: false, maxEvents: 0 };
  let queued = 0;
  // The setup is legitimate traffic; a failure in it is a failure too.
  const setup = (): void => {
    if (stage === "fresh") return;
    if (stage === "hello") {
      pair.client.hello({ name: "fuzz" });
      if (rng.chance(0.5)) pair.step("client");
      return;
    }
    pair.handshake();
    if (stage === "open") return;
    for (let i = 1 + rng.int(3); i > 0; i--) {
      for (const [opener, answerer] of [[pair.client, pair.server], [pair.server, pair.client]]) {
        if (!opener.canOpenStream) continue;
        const id = opener.openStream(GET, rng.chance(0.5));
        live.push(id);
        if (rng.chance(0.5) && opener.hasStream(id)) {
          try {
            opener.sendData(id, new Uint8Array(rng.int(3000)), rng.chance(0.5));
          } catch { /* the request may have ended with its headers */ }
        }
        pair.flush();
        if (rng.chance(0.6) && answerer.hasStream(id)) {
          answerer.sendHeaders(id, { status: 200, statusText: "", headers: [] }, rng.chance(0.3));
          pair.flush();
        }
      }
    }
    if (stage === "draining") (rng.chance(0.5) ? victim : partner).goAway(4006, "bye");
    pair.flush();
  };
  setup();
  // Body bytes the victim holds for the peer: they may leave in any later step.
  let unsent = 0;
  for (const id of live) unsent += victim.queuedBytes(id);
  pair.collect();
  pair.events("client");
  pair.events("server");

  const steps = 1 + rng.int(24);
  let stepsClosed = 0;
  for (let step = 0; step < steps; step++) {
    const wasClosed = victim.phase === "closed";
    // One step after the close shows that a closed session stays silent; more show nothing.
    if (wasClosed && stepsClosed++ > 0) break;
    const streamsBefore = victim.localStreamCount + victim.peerStreamCount;
    const action = rng.int(10);
    let inputBytes = 0;
    if (action < 7) {
      const bytes = sessionMessage(rng, target);
      inputBytes = bytes.byteLength;
      stats.messages++;
      try {
        victim.handleMessage(bytes, pair.now);
      } catch (error) {
        throw new FuzzFailure(
          `Session.handleMessage (${side}, ${stage}) threw ${(error as Error)?.name}: ${error} on ${
            hex(bytes)
          }`,
          { cause: error },
        );
      }
    } else if (action === 7) {
      pair.now += rng.pick([0, 1, 50, 1_000, 6_000]);
      guard(`handleTimeout (${side}, ${stage})`, () => victim.handleTimeout(pair.now));
    } else if (action === 8) {
      queued += localCommand(rng, victim, live);
    } else {
      // Carry the victim's output to its partner, and the partner's answers back.
      guard(`carrying output (${side}, ${stage})`, () => {
        for (let i = 0; i < 8; i++) {
          const out = victim.pollTransmit();
          if (out === undefined) break;
          unsent -= checkOutput(victim, out, side, stage);
          partner.handleMessage(out, pair.now);
          for (let back = partner.pollTransmit(); back; back = partner.pollTransmit()) {
            inputBytes += back.byteLength;
            victim.handleMessage(back, pair.now);
          }
          while (partner.pollEvent()) { /* drained */ }
        }
      });
    }
    // Drain the victim and check that what one step produced is bounded by that step.
    let events = 0;
    for (let event = victim.pollEvent(); event; event = victim.pollEvent()) {
      events++;
      if (event.type === "request" && !live.includes(event.streamId)) live.push(event.streamId);
      if (event.type === "close" && wasClosed) {
        throw new FuzzFailure("A closed session closed again");
      }
      if (events > 10_000) throw new FuzzFailure("Session.pollEvent() does not run dry");
    }
    const eventBound = inputBytes / FRAME_HEADER_BYTES + streamsBefore + 8;
    if (events > eventBound) {
      throw new FuzzFailure(`One step produced ${events} events (bound ${eventBound})`);
    }
    stats.maxEvents = Math.max(stats.maxEvents, events);
    let outBytes = 0;
    let dataBytes = 0;
    for (let i = 0;; i++) {
      if (i > 100_000) throw new FuzzFailure("Session.pollTransmit() does not run dry");
      let out: Uint8Array | undefined;
      guard(`pollTransmit (${side}, ${stage})`, () => out = victim.pollTransmit());
      if (out === undefined) break;
      const data = checkOutput(victim, out, side, stage);
      dataBytes += data;
      outBytes += out.byteLength - data;
    }
    // Pongs echo pings, refusals answer HEADERS (a few times their size)…
    const outBound = 8 * inputBytes + 4096;
    if (outBytes > outBound) {
      throw new FuzzFailure(`One step transmitted ${outBytes} bytes (bound ${outBound})`);
    }
    // …and body bytes are only ever the ones this end was given to send.
    unsent += queued - dataBytes;
    if (unsent < 0) {
      throw new FuzzFailure(`The ${side} sent ${-unsent} more body bytes than it was given`);
    }
    queued = 0;
    if (wasClosed && outBytes > 0) throw new FuzzFailure("A closed session transmitted");
    if (victim.phase === "closed" && victim.pollTimeout() !== undefined) {
      throw new FuzzFailure("A closed session still has a deadline");
    }
  }
  stats.closed = victim.phase === "closed";
  return stats;
}

function guard(what: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (error instanceof FuzzFailure) throw error;
    throw new FuzzFailure(`${what} threw ${(error as Error)?.name}: ${error}`, { cause: error });
  }
}

/** Checks one transmitted message; returns the DATA payload bytes in it. */
function checkOutput(session: Session, out: Uint8Array, side: string, stage: string): number {
  const limit = session.peerSettings.maxFrameBytes;
  try {
    let data = 0;
    for (const frame of decodeFrames(out, limit)) {
      if (frame.type === FrameType.Data) data += frame.payload.byteLength;
    }
    return data;
  } catch (error) {
    throw new FuzzFailure(
      `The ${side} (${stage}) transmitted a message the peer cannot decode within its ` +
        `maxFrameBytes ${limit}: ${error}`,
      { cause: error },
    );
  }
}

/** A random local command; local misuse may throw TypeError/RangeError. Returns bytes queued. */
function localCommand(rng: Rng, session: Session, live: number[]): number {
  const id = live.length > 0 && rng.chance(0.8) ? rng.pick(live) : rng.pick(STREAM_IDS);
  let queued = 0;
  try {
    switch (rng.int(8)) {
      case 6:
        session.hello(randomJson(rng));
        break;
      case 7:
        session.accept({ id: "01J0000000000000000000000" });
        break;
      case 0:
        if (session.canOpenStream) live.push(session.openStream(GET, rng.chance(0.5)));
        break;
      case 1:
        session.sendHeaders(id, { status: 200, statusText: "OK", headers: [] }, rng.chance(0.5));
        break;
      case 2: {
        const chunk = new Uint8Array(rng.pick([0, 10, 5000, 70_000]));
        session.sendData(id, chunk, rng.chance(0.3));
        queued = chunk.byteLength;
        break;
      }
      case 3:
        session.reset(id, 1 + rng.int(5), rng.text(200));
        break;
      case 4:
        session.consume(id, rng.pick([1, 512, 4096, 1 << 20]));
        break;
      default:
        session.goAway(rng.pick([1000, 4006]), rng.text(200));
    }
  } catch (error) {
    if (!(error instanceof TypeError) && !(error instanceof RangeError)) {
      throw new FuzzFailure(`A local command threw ${(error as Error)?.name}: ${error}`, {
        cause: error,
      });
    }
  }
  return queued;
}

// ---- the long run (`deno task fuzz [iterations] [seed]`) -----------------------------

if (import.meta.main) {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? [];
  const iterations = Number(args[0] ?? 5_000_000);
  const seed = args[1] !== undefined ? Number(args[1]) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`fuzz: ${iterations} iterations, seed ${seed}`);
  // Most cases end in a ProtocolError; skip their stack traces (the message names the case).
  (Error as { stackTraceLimit?: number }).stackTraceLimit = 0;
  const started = performance.now();
  let decoded = 0;
  let messages = 0;
  for (let i = 0; i < iterations; i++) {
    const rng = new Rng(caseSeed(seed, i));
    try {
      if (i % 2 === 0) decoded += decodeCase(rng) ? 1 : 0;
      else messages += sessionCase(rng).messages;
    } catch (error) {
      console.error(`fuzz: FAILED at case ${i} (seed ${seed}): ${error}`);
      throw error;
    }
    if ((i + 1) % 100_000 === 0) {
      const rss = (globalThis as { process?: { memoryUsage(): { rss: number } } }).process
        ?.memoryUsage().rss;
      console.log(
        `fuzz: ${i + 1} cases, ${decoded} decoded, ${messages} session messages, ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s` +
          (rss ? `, rss ${(rss / 1048576).toFixed(0)} MiB` : ""),
      );
    }
  }
  console.log(`fuzz: done, seed ${seed}: no failures`);
}
