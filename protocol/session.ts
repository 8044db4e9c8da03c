/**
 * The session: one connection's whole protocol state, without I/O.
 *
 * A `Session` is what h11's `Connection` or quinn-proto's `Connection` is: a
 * deterministic machine. The layer above feeds it what happened — a WebSocket
 * message (`handleMessage`), the clock reaching a deadline (`handleTimeout`) —
 * and gives it commands (`openStream`, `sendHeaders`, `sendData`, `reset`,
 * `consume`, `goAway`). It never sends anything itself: the layer above drains
 * `pollTransmit()` (one WebSocket message holding every frame ready now, so
 * frames queued in the same tick cost one message), `pollEvent()` (what to tell
 * the application) and `pollTimeout()` (when to call `handleTimeout` next). Time
 * is always an argument.
 *
 * The phases are `handshake` → `open` → `draining` (a GOAWAY went either way:
 * no new streams, in-flight ones finish) → `closed`. A peer that breaks the rules
 * produces a `close` event carrying a `ProtocolError` and its close code; after
 * that the session ignores input. Local misuse (sending on a stream that is not
 * ours to send on) throws `TypeError` or `RangeError` at once.
 *
 * **What a peer can make this end hold is bounded.** Until the handshake has made the
 * peer known, its first message must be one lone HELLO (or WELCOME) of bounded size,
 * checked before anything in it is decoded. After that every message is checked against
 * `maxMessageBytes` before its frames are, and every frame header before any frame is
 * acted on. Body bytes are bounded by two windows, each stream's and the connection's
 * (HTTP/2's model): the peer may send only what this end granted, and this end grants
 * again only as the application reads. What a received body chunk keeps alive is known:
 * each message hands each stream one chunk, the payload of its only DATA frame when that
 * is most of the message (a view keeps the whole message alive), else a copy; the
 * `data` event says how many bytes the chunk retains. Replies the peer causes but does
 * not read (PONG, RESET refusals) are capped, and pings and resets are rate limited.
 *
 * Two details exist for the wire, not for the model. Body bytes go out fairly: each
 * message gives every stream with bytes to send one DATA frame at most, small sends
 * first, then the large ones share what room is left (so a large body leaves as one frame
 * per message, which the receiver keeps without copying it, and never starves a small
 * exchange). And an end configured with `nudge` (the server)
 * answers every message that carried stream frames with at least one frame,
 * because Deno's `WebSocket` client leaves Nagle's algorithm on: its second small
 * write would otherwise wait ~40 ms for our delayed ACK. The nudge is a deadline
 * at "now", so a response produced in the same tick goes out instead of it. A client
 * whose socket sets `TCP_NODELAY` (Bun's) says `noDelay` in its HELLO and is not nudged:
 * the NOOP would cost both ends a write and a wake-up per exchange for nothing.
 * The same client writes a message longer than 1 KiB as two writes (WebSocket
 * header, then payload), and the payload waits for the ACK of the header: ~40 ms
 * again, since the peer cannot answer half a message. An end configured with
 * `splitMessages` (a client on Deno) therefore never sends a message between 1 KiB
 * and 64 KiB: it cuts such output into messages of at most 1 KiB, splitting DATA
 * frames where needed; the peer's nudge answers the first, which releases the rest.
 * Every message also carries a body that starts and ends in it right behind its
 * HEADERS, so the receiver can hand a small body over whole.
 *
 * @module
 */

import { readUint32 } from "./_bytes.ts";
import { CloseCode, fitCloseReason, ResetCode } from "./close_codes.ts";
import { GoingAwayError, HeaderSizeError, ProtocolError, StreamLimitError } from "./errors.ts";
import {
  checkFrames,
  encodeFrames,
  FLAG_END_STREAM,
  type Frame,
  FRAME_HEADER_BYTES,
  frameAt,
  FrameType,
  MAX_STREAM_ID,
  type OutgoingFrame,
  payloadLength,
} from "./frame.ts";
import {
  decodeHello,
  decodeWelcome,
  DEFAULT_SETTINGS,
  encodeHello,
  encodeWelcome,
  type HandshakeEvent,
  type HandshakeState,
  MAX_METADATA_VALUES,
  nextHandshakeState,
  parsedJsonBytes,
  PROTOCOL_VERSION,
  type Settings,
  type Welcome,
} from "./handshake.ts";
import { Heartbeat, type HeartbeatOptions } from "./heartbeat.ts";
import { dataAfterHeaders } from "./_message_order.ts";
import {
  decodeGoAway,
  decodePing,
  decodeRequestHead,
  decodeReset,
  decodeResponseHead,
  decodeWindowUpdate,
  encodeGoAway,
  encodePing,
  encodeRequestHead,
  encodeReset,
  encodeResponseHead,
  encodeWindowUpdate,
  type RequestHead,
  type ResponseHead,
} from "./payload.ts";
import { checkRateLimit, type RateLimitOptions, TokenBucket } from "./rate_limit.ts";
import { createStream, type HalfEvent, nextHalfState, type StreamRecord } from "./stream.ts";

/** Every session of an endpoint is given the same settings: one complete copy serves them all. */
const completed = new WeakMap<Partial<Settings>, Readonly<Settings>>();

function completeSettings(settings: Partial<Settings> | undefined): Readonly<Settings> {
  if (!settings) return DEFAULT_SETTINGS;
  let complete = completed.get(settings);
  if (!complete) {
    complete = Object.freeze({ ...DEFAULT_SETTINGS, ...settings });
    completed.set(settings, complete);
  }
  return complete;
}

const SETTINGS_KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[];
/** Peer settings learnt lately, by their values: see {@linkcode sharedSettings}. */
const learntSettings = new Map<string, Readonly<Settings>>();
/** How many different settings {@linkcode learntSettings} keeps before it starts again. */
const LEARNT_SETTINGS = 8;

/**
 * A peer's settings as one frozen object shared by every session whose peer sent the same:
 * a server's clients mostly send identical settings, and each idle connection would
 * otherwise keep its own copy.
 */
function sharedSettings(settings: Settings): Readonly<Settings> {
  const key = SETTINGS_KEYS.map((name) => settings[name]).join();
  const known = learntSettings.get(key);
  if (known) return known;
  // Peers that each send different settings only cost what each kept before.
  if (learntSettings.size >= LEARNT_SETTINGS) learntSettings.clear();
  const shared = Object.freeze({ ...settings });
  learntSettings.set(key, shared);
  return shared;
}

/** Which end of the WebSocket this session is. */
export type Role = "client" | "server";

/** The session's phase. */
export type SessionPhase = "handshake" | "open" | "draining" | "closed";

/** Options for {@linkcode Session}. */
export interface SessionOptions {
  /** Which end this is. Clients start odd stream ids and send HELLO; servers start even ids. */
  role: Role;
  /** What this end accepts; missing fields take {@linkcode DEFAULT_SETTINGS}. */
  settings?: Partial<Settings>;
  /** Milliseconds from creation until the handshake must be complete. Default 10 000. */
  handshakeTimeout?: number;
  /** Heartbeat timing, or `false` for none. Default none. */
  heartbeat?: HeartbeatOptions | false;
  /** Application data carried by this end's pings. Default `""`. */
  appData?: string;
  /** Chooses the data of the pong that answers a ping. Default: the ping's own data. */
  answerPing?: (data: string) => string;
  /** Resets and refusals the peer may cause. Default: 2 × maxConcurrentStreams (at least 1000) at once, 500 per second. */
  resetRateLimit?: Partial<RateLimitOptions>;
  /** Pings the peer may send. Default: {@linkcode PING_RATE_LIMIT}. */
  pingRateLimit?: Partial<RateLimitOptions>;
  /**
   * A bucket that the peer's pings also take from, shared with other sessions: a server
   * gives every connection from one address the same one.
   */
  sharedPingLimit?: TokenBucket;
  /**
   * Most bytes of replies the peer has caused (PONG, RESET refusals) that may wait unsent
   * because the peer is not reading; past it the session closes with `EnhanceYourCalm`.
   * Default: twice `maxFrameBytes`, at least {@linkcode MIN_UNREAD_REPLY_BYTES}.
   */
  maxUnreadReplyBytes?: number;
  /** Largest client metadata accepted (servers), as JSON bytes. Default 16 KiB. */
  maxMetadataBytes?: number;
  /** Most JSON values in client metadata (servers). Default {@linkcode MAX_METADATA_VALUES}. */
  maxMetadataValues?: number;
  /**
   * Answer every message carrying stream frames with a frame (see the module doc). Default:
   * servers, unless the client's HELLO says `noDelay`.
   */
  nudge?: boolean;
  /**
   * Say in HELLO (clients) that this end's small writes leave at once (its socket sets
   * `TCP_NODELAY`), so that the server need not nudge it (see the module doc). Default `false`.
   */
  noDelay?: boolean;
  /**
   * Bound on the DATA in one transmitted message, in bytes. Default: half the peer's
   * `initialWindow`, at least 256 KiB and at most 1 MiB.
   */
  messageDataBytes?: number;
  /** Send no message between 1 KiB and 64 KiB: cut them into 1 KiB ones (see the module doc). Default `false`. */
  splitMessages?: boolean;
  /**
   * Source of numbers in [0, 1): all the session draws (heartbeat jitter, nothing else).
   * A seeded generator makes a session's timing reproducible. Default `Math.random`.
   */
  random?: () => number;
  /**
   * Hand a body that arrives whole in the same message as its head on the head's event
   * (its `body`), with no `data` event for it: the layer above can then give the
   * application bytes instead of a stream. Default `false` (every body comes as `data`).
   */
  bodyWithHead?: boolean;
}

/** What the session tells the layer above. */
export type SessionEvent =
  | { type: "hello"; metadata: unknown; resume?: string; metadataCost: number }
  | { type: "open"; id: string; welcome?: Welcome }
  | {
    type: "request";
    streamId: number;
    head: RequestHead;
    /** Whether the request has no body. */
    end: boolean;
    /** With `bodyWithHead`: the whole body, if it came with the head (to be consumed as `data`). */
    body?: Uint8Array;
  }
  | {
    type: "response";
    streamId: number;
    head: ResponseHead;
    /** Whether the response has no body. */
    end: boolean;
    /** With `bodyWithHead`: the whole body, if it came with the head (to be consumed as `data`). */
    body?: Uint8Array;
  }
  | {
    type: "data";
    streamId: number;
    /** Whether this end opened the stream: the chunk is of a response, not a request. */
    local: boolean;
    chunk: Uint8Array;
    end: boolean;
    /** Bytes the chunk keeps alive: its message's length if it is a view into it, else its own. */
    retained: number;
  }
  | {
    type: "reset";
    streamId: number;
    /** Whether this end opened the stream (its request was refused or cancelled). */
    local: boolean;
    code: number;
    reason: string;
    byPeer: boolean;
  }
  | { type: "writable"; streamId: number }
  | {
    type: "finished";
    streamId: number;
    /** Whether this end opened the stream (sent its request). */
    local: boolean;
  }
  | { type: "ping"; data: string }
  | { type: "pong"; data: string; rtt: number | undefined }
  | { type: "goaway"; lastStreamId: number; code: number; reason: string }
  | { type: "close"; code: number; reason: string; error?: ProtocolError };

/** A `request` or `response` event. */
type HeadEvent = Extract<SessionEvent, { type: "request" | "response" }>;

/**
 * A stream that has this much or less to send in a message sends it first, in one frame
 * (a small body, or the tail of a large one); streams with more share the room left.
 */
export const SMALL_DATA_BYTES = 64 * 1024;

/**
 * A stream's outbox size at which `sendData` asks the caller to wait for `writable`: the
 * smallest message's worth, so a body read in small chunks (a file stream's 16–64 KiB) still
 * fills messages instead of sending one chunk per turn. An outbox of 1 MiB, to fill the
 * largest messages too, bought nothing there (bench/RESULTS.md, session 6).
 */
export const OUTBOX_HIGH_WATER = 256 * 1024;

/**
 * The least connection credit granted early, while unread bytes hold more than half the
 * window (see `consume`): 16 KiB, or an eighth of a smaller window.
 */
const MIN_GRANT_BYTES = 16 * 1024;

/** Pings a peer may send by default: 100 at once, 50 per second (a heartbeat every 20 ms). */
export const PING_RATE_LIMIT: Readonly<RateLimitOptions> = { burst: 100, perSecond: 50 };

/** The least `maxUnreadReplyBytes` by default. */
export const MIN_UNREAD_REPLY_BYTES = 256 * 1024;

/** A DATA payload of a message this small is handed on as a view, whatever its share. */
export const SMALL_VIEW_MESSAGE_BYTES = 16 * 1024;

/** Room around the metadata in a HELLO: the version, the settings, a resume token. */
export const HELLO_OVERHEAD_BYTES = 4096;

/** Largest WELCOME message a client accepts as the server's first message. */
export const MAX_WELCOME_BYTES = 64 * 1024;

/**
 * Fewer, larger messages cost fewer sends per byte (bench/RESULTS.md, session 6), but a
 * message that spends a stream's whole window stalls it until the reader has the message
 * and grants more; so by default a message holds at most half the peer's window.
 */
const MAX_MESSAGE_DATA = 1024 * 1024;
const MIN_MESSAGE_DATA = 256 * 1024;
/** Largest message Deno's `WebSocket` client writes in one piece (fastwebsockets' writev threshold). */
const SMALL_MESSAGE_BYTES = 1024;
/** Smallest message whose payload write fills a loopback TCP segment, so Nagle does not hold it. */
const LARGE_MESSAGE_BYTES = 64 * 1024;
const MAX_WINDOW = 0x7fff_ffff;
const EMPTY = new Uint8Array(0);
/** A PING's data, answered as it came. */
const echo = (data: string): string => data;
/** Every session's streams until its first opens: never written (see `#openStream`). */
const NO_STREAMS: ReadonlyMap<number, StreamRecord> = new Map();
/** Payloads up to this size are copied byte by byte, with no view made for them. */
const SMALL_COPY_BYTES = 32;

/**
 * One connection's protocol state machine. See the module doc for the model.
 *
 * @example Usage
 * ```ts
 * import { Session } from "@swaggersocket/swaggersocket/protocol";
 * const client = new Session({ role: "client" }, 0);
 * const server = new Session({ role: "server" }, 0);
 * client.hello({ name: "agent-1" });
 * server.handleMessage(client.pollTransmit()!, 1);
 * server.pollEvent(); // { type: "hello", metadata: { name: "agent-1" }, metadataCost: … }
 * ```
 */
export class Session {
  readonly #role: Role;
  readonly #local: Readonly<Settings>;
  #peer: Readonly<Settings> = DEFAULT_SETTINGS;
  #phase: SessionPhase = "handshake";
  #handshake: HandshakeState = "start";
  readonly #handshakeDeadline: number;
  readonly #heartbeatOptions: HeartbeatOptions | false;
  #heartbeat: Heartbeat | undefined;
  readonly #appData: string;
  readonly #answerPing: (data: string) => string;
  readonly #resets: TokenBucket;
  /** Made at the first ping (full then, as it would have been since creation). */
  #pings: TokenBucket | undefined;
  readonly #pingRate: RateLimitOptions;
  readonly #sharedPings: TokenBucket | undefined;
  readonly #maxUnreadReplyBytes: number;
  readonly #maxMetadataBytes: number;
  readonly #maxMetadataValues: number;
  /** Cleared by a HELLO that says `noDelay`: that client needs no nudge. */
  #nudge: boolean;
  readonly #noDelay: boolean;
  #nudgeAt: number | undefined;
  readonly #messageDataBytes: number | undefined;
  readonly #splitMessages: boolean;
  /** Messages already cut (by `splitMessages` or the peer's `maxMessageBytes`), sent first. */
  #pending: Uint8Array[] = [];
  readonly #random: () => number;
  readonly #bodyWithHead: boolean;
  /** Streams whose head event came in the message being handled (see `StreamRecord.head`). */
  #heads: StreamRecord[] = [];
  #id: string | undefined;
  #rtt: number | undefined;

  /** Open streams by id: the shared empty map until the first one opens (idle connections). */
  #streams: Map<number, StreamRecord> = NO_STREAMS as Map<number, StreamRecord>;
  #nextLocalId: number;
  #lastPeerId = 0;
  #localOpen = 0;
  #peerOpen = 0;
  #peerGoAwayLastId: number | undefined;

  /** Connection credit this end may still spend on DATA. */
  #connSendWindow: number;
  /** Connection credit the peer still has. */
  #connRecvWindow: number;
  /** Body bytes received on open streams that the application has not consumed yet. */
  #connUnread = 0;
  /** Body bytes consumed (or ignored) and not yet granted back to the peer. */
  #connConsumed = 0;
  /** Streams with bytes to send that wait for connection credit. */
  #connBlocked: StreamRecord[] = [];
  /** Streams that received DATA in the message being handled. */
  #arrivals: StreamRecord[] = [];
  /** The length of the message being handled. */
  #messageBytes = 0;

  #control: OutgoingFrame[] = [];
  /** Encoded bytes of `#control`. */
  #controlBytes = 0;
  /** Encoded bytes of the replies in `#control` (see `maxUnreadReplyBytes`). */
  #replyBytes = 0;
  /** Body bytes in every stream's outbox. */
  #outboxBytes = 0;
  /** Streams with something to send; `stream.queued` says which, without scanning it. */
  #sendQueue: StreamRecord[] = [];
  #events: (SessionEvent | undefined)[] = [];
  /** Where the events not yet polled begin: a queue that `shift()` would copy on each poll. */
  #eventsHead = 0;

  /**
   * Creates a session at the start of its handshake.
   *
   * @param options Role, settings and timing.
   * @param now The current time in milliseconds.
   */
  constructor(options: SessionOptions, now: number) {
    this.#role = options.role;
    this.#local = completeSettings(options.settings);
    this.#handshakeDeadline = now + (options.handshakeTimeout ?? 10_000);
    this.#heartbeatOptions = options.heartbeat ?? false;
    this.#appData = options.appData ?? "";
    this.#answerPing = options.answerPing ?? echo;
    // The burst covers aborting every stream the peer may have open at once, twice over.
    const burst = Math.max(1000, 2 * this.#local.maxConcurrentStreams);
    this.#resets = new TokenBucket({
      burst: options.resetRateLimit?.burst ?? burst,
      perSecond: options.resetRateLimit?.perSecond ?? 500,
    }, now);
    this.#pingRate = options.pingRateLimit
      ? { ...PING_RATE_LIMIT, ...options.pingRateLimit }
      : PING_RATE_LIMIT;
    checkRateLimit(this.#pingRate);
    this.#sharedPings = options.sharedPingLimit;
    this.#maxUnreadReplyBytes = options.maxUnreadReplyBytes ??
      Math.max(MIN_UNREAD_REPLY_BYTES, 2 * this.#local.maxFrameBytes);
    this.#maxMetadataBytes = options.maxMetadataBytes ?? 16 * 1024;
    this.#maxMetadataValues = options.maxMetadataValues ?? MAX_METADATA_VALUES;
    this.#nudge = options.nudge ?? options.role === "server";
    this.#noDelay = options.noDelay ?? false;
    this.#messageDataBytes = options.messageDataBytes;
    this.#splitMessages = options.splitMessages ?? false;
    this.#random = options.random ?? Math.random;
    this.#bodyWithHead = options.bodyWithHead ?? false;
    this.#nextLocalId = options.role === "client" ? 1 : 2;
    this.#connSendWindow = this.#peer.connectionWindow;
    this.#connRecvWindow = this.#local.connectionWindow;
  }

  /** The current phase. */
  get phase(): SessionPhase {
    return this.#phase;
  }

  /** The connection id, once the handshake has produced one. */
  get id(): string | undefined {
    return this.#id;
  }

  /** The last measured round-trip time in milliseconds. */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  /** This end's settings. */
  get localSettings(): Readonly<Settings> {
    return this.#local;
  }

  /** The peer's settings (defaults until the handshake has told us). */
  get peerSettings(): Readonly<Settings> {
    return this.#peer;
  }

  /** Streams this end started that are still open. */
  get localStreamCount(): number {
    return this.#localOpen;
  }

  /** Streams the peer started that are still open. */
  get peerStreamCount(): number {
    return this.#peerOpen;
  }

  /** Whether `openStream` would succeed now. */
  get canOpenStream(): boolean {
    return this.#phase === "open" && this.#localOpen < this.#peer.maxConcurrentStreams &&
      this.#nextLocalId <= MAX_STREAM_ID;
  }

  /**
   * Bytes waiting to be sent: body bytes in the streams' outboxes, queued control frames,
   * and messages already cut. What the layer above has taken is no longer counted.
   */
  get bufferedBytes(): number {
    let bytes = this.#outboxBytes + this.#controlBytes;
    for (const message of this.#pending) bytes += message.byteLength;
    return bytes;
  }

  /** Body bytes received and not yet consumed by the application, on every stream. */
  get unreadBytes(): number {
    return this.#connUnread;
  }

  // ---- handshake commands -------------------------------------------------

  /**
   * Sends HELLO (clients).
   *
   * @param metadata Any JSON value describing this client.
   * @param resume A resume token from an earlier welcome.
   * @throws {TypeError} If this is not a client at the start of the handshake.
   */
  hello(metadata: unknown, resume?: string): void {
    if (this.#role !== "client") throw new TypeError("Cannot send hello: only clients do");
    this.#handshakeStep("send_hello");
    this.#queue(
      FrameType.Hello,
      0,
      0,
      encodeHello({
        version: PROTOCOL_VERSION,
        metadata: metadata ?? null,
        settings: this.#local,
        ...(resume !== undefined ? { resume } : {}),
        ...(this.#noDelay ? { noDelay: true } : {}),
      }),
    );
  }

  /**
   * Accepts a client after its HELLO (servers): sends WELCOME with the connection id.
   *
   * @param welcome The id and optional resumption details; settings and heartbeat are filled in.
   * @throws {TypeError} If no HELLO is waiting for an answer.
   */
  accept(welcome: Omit<Welcome, "settings" | "heartbeat">): void {
    this.#handshakeStep("send_welcome");
    this.#id = welcome.id;
    const heartbeat = this.#heartbeatOptions
      ? { interval: this.#heartbeatOptions.interval, timeout: this.#heartbeatOptions.timeout }
      : undefined;
    this.#queue(
      FrameType.Welcome,
      0,
      0,
      encodeWelcome({ ...welcome, settings: this.#local, ...(heartbeat ? { heartbeat } : {}) }),
    );
  }

  /**
   * Refuses the connection (servers): the session closes with the given code.
   *
   * @param code The close code, such as `CloseCode.Unauthorized`.
   * @param reason Why, for people.
   */
  refuse(code: CloseCode, reason: string): void {
    this.#close(code, reason);
  }

  // ---- stream commands ----------------------------------------------------

  /**
   * Opens a stream with a request head.
   *
   * @param head The request head.
   * @param end Whether the request has no body.
   * @returns The new stream id.
   * @throws {GoingAwayError} If a GOAWAY went either way (a `TypeError`).
   * @throws {TypeError} If the session is not open otherwise.
   * @throws {StreamLimitError} If the peer's concurrency limit is reached (a `RangeError`).
   * @throws {HeaderSizeError} If the head exceeds the peer's limit (a `RangeError`).
   * @throws {RangeError} If the stream ids are exhausted.
   */
  openStream(head: RequestHead, end: boolean): number {
    if (this.#phase !== "open") {
      if (this.#phase === "draining") throw new GoingAwayError();
      throw new TypeError(`Cannot open stream: session is ${this.#phase}`);
    }
    if (this.#localOpen >= this.#peer.maxConcurrentStreams) {
      throw new StreamLimitError(this.#peer.maxConcurrentStreams);
    }
    if (this.#nextLocalId > MAX_STREAM_ID) {
      throw new RangeError("Cannot open stream: ids exhausted");
    }
    const payload = this.#checkHeaderSize(encodeRequestHead(head));
    const id = this.#nextLocalId;
    this.#nextLocalId += 2;
    const stream = createStream(id, true, this.#peer.initialWindow, this.#local.initialWindow);
    this.#openStream(id, stream);
    this.#localOpen++;
    stream.send = nextHalfState(stream.send, end ? "headers_end" : "headers")!;
    this.#queue(FrameType.Headers, end ? FLAG_END_STREAM : 0, id, payload);
    return id;
  }

  /**
   * Answers a peer's stream with a response head.
   *
   * @param streamId The stream.
   * @param head The response head.
   * @param end Whether the response has no body.
   * @throws {TypeError} If the stream is unknown or its response has started.
   * @throws {HeaderSizeError} If the head exceeds the peer's `maxHeaderBytes` (a `RangeError`).
   */
  sendHeaders(streamId: number, head: ResponseHead, end: boolean): void {
    const stream = this.#stream(streamId, "send headers");
    const payload = this.#checkHeaderSize(encodeResponseHead(head));
    this.#sendTransition(stream, end ? "headers_end" : "headers");
    this.#queue(FrameType.Headers, end ? FLAG_END_STREAM : 0, streamId, payload);
    this.#maybeFinish(stream);
  }

  /**
   * Queues body bytes on a stream. They go out as the peer's windows and fairness allow.
   *
   * @param streamId The stream.
   * @param chunk The bytes (kept, not copied, until transmitted).
   * @param end Whether this ends this end's half.
   * @returns Whether the stream can take more now; if not, wait for a `writable` event.
   * @throws {TypeError} If the stream is unknown or this end's half is not open.
   */
  sendData(streamId: number, chunk: Uint8Array, end: boolean): boolean {
    const stream = this.#stream(streamId, "send data");
    if (stream.send !== "open" || stream.outboxEnd) {
      throw new TypeError(`Cannot send data: stream ${streamId} is not open for sending`);
    }
    if (chunk.byteLength > 0) {
      stream.outbox.push(chunk);
      stream.outboxBytes += chunk.byteLength;
      this.#outboxBytes += chunk.byteLength;
    }
    if (end) stream.outboxEnd = true;
    this.#enqueue(stream);
    const more = stream.outboxBytes < OUTBOX_HIGH_WATER;
    if (!more) stream.writableSignalled = false;
    return more;
  }

  /**
   * Ends a stream early: queues RESET and forgets the stream.
   *
   * @param streamId The stream; unknown or finished streams are ignored.
   * @param code A {@linkcode ResetCode}.
   * @param reason Why, for people.
   */
  reset(streamId: number, code: number, reason: string): void {
    const stream = this.#streams.get(streamId);
    if (!stream || this.#phase === "closed") return;
    this.#queue(FrameType.Reset, 0, streamId, encodeReset(code, fitCloseReason(reason)));
    this.#forget(stream);
  }

  /**
   * Tells the session that the application consumed (read, or dropped) body bytes of a
   * stream, so that the peer can be granted more. Every body byte a `data` event carried
   * must be consumed once, even after its stream finished or was reset: the connection's
   * window only opens again for bytes consumed.
   *
   * @param streamId The stream.
   * @param bytes How many bytes were consumed.
   * @throws {RangeError} If that is more than was received and not yet consumed: granting
   *   credit for bytes that never came would let the peer overrun the window.
   */
  consume(streamId: number, bytes: number): void {
    if (bytes <= 0) return;
    const stream = this.#streams.get(streamId);
    const open = stream?.recv === "open";
    if (open) {
      const unconsumed = this.#local.initialWindow - stream.recvWindow - stream.recvConsumed;
      if (bytes > unconsumed) {
        throw new RangeError(
          `Cannot consume ${bytes} bytes on stream ${streamId}: ${unconsumed} received and not yet consumed`,
        );
      }
    }
    if (bytes > this.#connUnread) {
      throw new RangeError(
        `Cannot consume ${bytes} bytes: ${this.#connUnread} received and not yet consumed`,
      );
    }
    if (open) {
      stream.recvConsumed += bytes;
      // Granting in halves keeps WINDOW_UPDATE frames rare without ever stalling a fast reader.
      if (stream.recvConsumed >= this.#local.initialWindow / 2) {
        const increment = stream.recvConsumed;
        stream.recvConsumed = 0;
        stream.recvWindow += increment;
        this.#queue(FrameType.WindowUpdate, 0, streamId, encodeWindowUpdate(increment));
      }
    }
    this.#connUnread -= bytes;
    this.#grantConnection(bytes);
  }

  /**
   * Starts a graceful close: the peer may open no new streams; open ones finish.
   *
   * @param code Why, as a close code (usually `CloseCode.GoingAway` or `Normal`).
   * @param reason Why, for people.
   */
  goAway(code: number, reason: string): void {
    if (this.#phase === "closed" || this.#phase === "handshake") return;
    this.#phase = "draining";
    this.#queue(
      FrameType.GoAway,
      0,
      0,
      encodeGoAway(this.#lastPeerId, code, fitCloseReason(reason)),
    );
  }

  /**
   * Marks the session closed (the socket is gone or being closed). Further input is ignored.
   */
  close(): void {
    this.#phase = "closed";
    this.#control = [];
    this.#controlBytes = 0;
    this.#replyBytes = 0;
    for (const stream of this.#sendQueue) stream.queued = false;
    this.#sendQueue = [];
    this.#connBlocked = [];
    for (const stream of this.#arrivals) stream.arriving = undefined;
    this.#arrivals = [];
    this.#pending = [];
  }

  // ---- inputs -------------------------------------------------------------

  /**
   * Handles one WebSocket message from the peer.
   *
   * The message must own its buffer (not be a view into a larger one, as no runtime's
   * message is): a DATA payload that is most of the message is handed on as a view of it,
   * and the `data` event charges it for the whole message.
   *
   * @param bytes The message.
   * @param now The current time.
   */
  handleMessage(bytes: Uint8Array, now: number): void {
    if (this.#phase === "closed") return;
    // Heads of the last message were polled since: their bodies come as `data` now.
    if (this.#heads.length > 0) this.#forgetHeads();
    this.#heartbeat?.handleReceive(now);
    try {
      if (this.#handshake === "start" || this.#handshake === "hello_sent") {
        this.#handleFirstMessage(bytes, now);
        return;
      }
      if (this.#handshake === "hello_received") {
        throw new ProtocolError(
          "Unexpected message while the hello is being answered",
          CloseCode.ProtocolError,
        );
      }
      if (bytes.byteLength > this.#local.maxMessageBytes) {
        throw new ProtocolError(
          `Message of ${bytes.byteLength} bytes exceeds limit ${this.#local.maxMessageBytes}`,
          CloseCode.FrameTooLarge,
        );
      }
      checkFrames(bytes, this.#local.maxFrameBytes);
      this.#messageBytes = bytes.byteLength;
      for (let offset = 0; offset < bytes.byteLength;) {
        const start = offset + FRAME_HEADER_BYTES;
        const length = readUint32(bytes, offset + 6);
        // DATA, the frame a peer can send most of, is handled without a frame object.
        if (bytes[offset] === FrameType.Data && this.#phase !== "handshake") {
          if (this.#nudge) this.#nudgeAt = now;
          this.#handleData(bytes, start, length, bytes[offset + 1], readUint32(bytes, offset + 2));
        } else {
          this.#handleFrame(frameAt(bytes, offset), now);
        }
        if ((this.#phase as SessionPhase) === "closed") return;
        offset = start + length;
      }
      this.#handArrivals();
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.#close(error.code, error.message, error);
    }
  }

  /**
   * Acts on the clock: handshake timeout, heartbeat, nudge. Early calls are no-ops.
   *
   * @param now The current time.
   */
  handleTimeout(now: number): void {
    if (this.#phase === "closed") return;
    if (this.#phase === "handshake") {
      if (now >= this.#handshakeDeadline) {
        this.#close(CloseCode.HandshakeTimeout, "Handshake timed out");
      }
      return;
    }
    if (this.#nudgeAt !== undefined && now >= this.#nudgeAt) {
      this.#nudgeAt = undefined;
      // Anything already queued carries the ACK just as well; data blocked on a window does not.
      const sendable = this.#sendQueue.some((s) =>
        s.outboxBytes > 0 ? s.sendWindow > 0 && this.#connSendWindow > 0 : s.outboxEnd &&
          s.send === "open"
      );
      if (this.#control.length === 0 && !sendable) {
        this.#queue(FrameType.Noop, 0, 0, EMPTY);
      }
    }
    const action = this.#heartbeat?.handleTimeout(now);
    if (action === "dead") {
      this.#close(CloseCode.HeartbeatTimeout, "Heartbeat timed out");
    } else if (action === "ping") {
      this.#queue(FrameType.Ping, 0, 0, this.#pingPayload(now, this.#appData));
    }
  }

  // ---- outputs ------------------------------------------------------------

  /**
   * The next message to send: every queued control frame and as much body data as
   * windows and the message bound allow.
   *
   * @param scratch A buffer to encode into (see `encodeFrames`): the message is then a view
   *   of it, valid until the next call with the same buffer. Without it, a fresh buffer.
   * @returns The message, or `undefined` if there is nothing to send.
   */
  pollTransmit(scratch?: Uint8Array): Uint8Array | undefined {
    if (this.#phase === "closed") return undefined;
    if (this.#pending.length > 0) return this.#pending.shift();
    const frames = this.#control;
    let size = this.#controlBytes;
    this.#control = [];
    this.#controlBytes = 0;
    this.#replyBytes = 0;
    const maxMessage = this.#peer.maxMessageBytes;
    const dataBound = this.#messageDataBytes ??
      Math.min(MAX_MESSAGE_DATA, Math.max(MIN_MESSAGE_DATA, this.#peer.initialWindow / 2));
    this.#takeData(frames, dataBound, maxMessage - size);
    if (frames.length === 0) return undefined;
    this.#nudgeAt = undefined;
    // Bodies right behind their heads: the receiver then sees a small body whole at once.
    const ordered = dataAfterHeaders(frames);
    size = 0;
    for (const frame of frames) size += FRAME_HEADER_BYTES + payloadLength(frame.payload);
    const split = this.#splitMessages && size > SMALL_MESSAGE_BYTES && size < LARGE_MESSAGE_BYTES
      ? SMALL_MESSAGE_BYTES
      : size > maxMessage
      ? maxMessage
      : undefined;
    if (split !== undefined) {
      // Pending pieces are kept until later calls: each gets its own buffer, not the scratch.
      this.#pending = splitFrames(ordered, split).map((part) => encodeFrames(part));
      return this.#pending.shift();
    }
    return encodeFrames(ordered, scratch);
  }

  /**
   * About how many frames `pollTransmit()` would send now: queued control frames plus one
   * for each stream with body bytes waiting. Lets the caller send a large batch early.
   */
  get readyFrames(): number {
    return this.#control.length + this.#sendQueue.length;
  }

  /**
   * The next event for the application.
   *
   * @returns The event, or `undefined` if none is waiting.
   */
  pollEvent(): SessionEvent | undefined {
    const events = this.#events;
    if (this.#eventsHead === events.length) return undefined;
    const event = events[this.#eventsHead];
    events[this.#eventsHead++] = undefined;
    if (this.#eventsHead === events.length) {
      events.length = 0;
      this.#eventsHead = 0;
    }
    return event;
  }

  /**
   * An event still waiting, without taking it: lets the caller see that a body's
   * DATA arrived in the same message as its HEADERS and hand it over whole (the
   * `bodyWithHead` option does that for the caller, with no peeking).
   *
   * @param index 0 for the event `pollEvent()` would return next, 1 for the one after, …
   * @returns The event, or `undefined` if fewer are waiting.
   */
  peekEvent(index = 0): SessionEvent | undefined {
    return this.#events[this.#eventsHead + index];
  }

  /**
   * When `handleTimeout` should next be called.
   *
   * @returns A time in milliseconds, or `undefined` if no deadline is set.
   */
  pollTimeout(): number | undefined {
    if (this.#phase === "closed") return undefined;
    if (this.#phase === "handshake") return this.#handshakeDeadline;
    const heartbeat = this.#heartbeat?.pollTimeout();
    if (this.#nudgeAt === undefined) return heartbeat;
    return heartbeat === undefined ? this.#nudgeAt : Math.min(heartbeat, this.#nudgeAt);
  }

  /**
   * Whether a stream is still open in any direction.
   *
   * @param streamId The stream.
   * @returns `false` once the stream finished or was reset.
   */
  hasStream(streamId: number): boolean {
    return this.#streams.has(streamId);
  }

  /**
   * Bytes queued on a stream and not yet transmitted.
   *
   * @param streamId The stream.
   * @returns The count; 0 for unknown streams.
   */
  queuedBytes(streamId: number): number {
    return this.#streams.get(streamId)?.outboxBytes ?? 0;
  }

  /** The last stream id the peer said it will serve, if it sent GOAWAY. */
  get peerGoAwayLastId(): number | undefined {
    return this.#peerGoAwayLastId;
  }

  // ---- internals: sending -------------------------------------------------

  #enqueue(stream: StreamRecord): void {
    if (stream.queued) return;
    stream.queued = true;
    this.#sendQueue.push(stream);
  }

  #queue(type: FrameType, flags: number, streamId: number, payload: Uint8Array): void {
    this.#control.push({ type, flags, streamId, payload });
    this.#controlBytes += FRAME_HEADER_BYTES + payload.byteLength;
  }

  /**
   * Queues a reply the peer's frame calls for. The peer reads replies or stops causing
   * them: those waiting unsent beyond `maxUnreadReplyBytes` close the connection.
   */
  #reply(type: FrameType, streamId: number, payload: Uint8Array): void {
    this.#replyBytes += FRAME_HEADER_BYTES + payload.byteLength;
    if (this.#replyBytes > this.#maxUnreadReplyBytes) {
      throw new ProtocolError(
        `Peer is not reading: ${this.#replyBytes} bytes of replies unsent, limit ${this.#maxUnreadReplyBytes}`,
        CloseCode.EnhanceYourCalm,
      );
    }
    this.#queue(type, 0, streamId, payload);
  }

  /**
   * Adds DATA frames to `frames`, one per stream at most: `room` payload bytes (the bound
   * counts payload only, so that a frame of half the peer's window is exactly the half its
   * reader grants back at) within `bytes` bytes of message, headers included. Streams with
   * {@linkcode SMALL_DATA_BYTES} or less to send go first and send it all; the others then
   * take the room left in queue order, each as one frame (a receiver keeps a frame that is
   * most of its message without copying it). Streams that sent go to the back of the queue,
   * those that did not stay in front; streams out of credit leave it until a WINDOW_UPDATE
   * brings them back.
   */
  #takeData(frames: OutgoingFrame[], room: number, bytes: number): void {
    const queue = this.#sendQueue;
    if (queue.length === 0) return;
    const maxFrame = this.#peer.maxFrameBytes;
    if (queue.length === 1) {
      // One stream (a lone exchange, a single transfer): it takes what room there is. It is
      // out of the queue meanwhile, so that finishing it does not search the queue for it.
      const stream = queue[0];
      queue.length = 0;
      stream.queued = false;
      const sendable = this.#sendable(stream, maxFrame);
      if (sendable === undefined) return;
      const n = Math.max(0, Math.min(sendable, room, bytes - FRAME_HEADER_BYTES));
      if (n > 0 || sendable === 0) frames.push(this.#dataFrame(stream, n));
      if (this.#stillSending(stream)) {
        stream.queued = true;
        queue.push(stream);
      }
      return;
    }
    this.#sendQueue = [];
    let left = room;
    // Each frame costs a header too: keep the message within the peer's limit.
    let bytesLeft = bytes - FRAME_HEADER_BYTES;
    const waiting: StreamRecord[] = [];
    const sent: StreamRecord[] = [];
    const large: StreamRecord[] = [];
    for (const stream of queue) {
      const sendable = this.#sendable(stream, maxFrame);
      if (sendable === undefined) continue;
      if (sendable > SMALL_DATA_BYTES) large.push(stream);
      else if ((sendable <= left && sendable <= bytesLeft) || sendable === 0) {
        frames.push(this.#dataFrame(stream, sendable));
        left -= sendable;
        bytesLeft -= sendable + FRAME_HEADER_BYTES;
        sent.push(stream);
      } else waiting.push(stream);
    }
    for (const stream of large) {
      if (left <= 0 || bytesLeft <= 0) {
        waiting.push(stream);
        continue;
      }
      // Earlier frames may have spent the connection's credit: then it leaves the queue.
      const sendable = this.#sendable(stream, maxFrame);
      if (sendable === undefined) continue;
      const n = Math.min(sendable, left, bytesLeft);
      frames.push(this.#dataFrame(stream, n));
      left -= n;
      bytesLeft -= n + FRAME_HEADER_BYTES;
      sent.push(stream);
    }
    for (const stream of waiting) this.#requeue(stream);
    for (const stream of sent) this.#requeue(stream);
  }

  /**
   * How many body bytes a stream can send now (0: only END_STREAM), or `undefined` if it
   * cannot send at all; then it leaves the send queue, to wait for credit if it needs it.
   */
  #sendable(stream: StreamRecord, maxFrame: number): number | undefined {
    if (stream.outboxBytes === 0) {
      if (stream.outboxEnd && stream.send === "open") return 0;
      stream.queued = false;
      return undefined;
    }
    if (stream.sendWindow <= 0) {
      // Back when the stream's WINDOW_UPDATE arrives.
      stream.queued = false;
      return undefined;
    }
    if (this.#connSendWindow <= 0) {
      stream.queued = false;
      this.#connBlocked.push(stream);
      return undefined;
    }
    return Math.min(stream.outboxBytes, stream.sendWindow, this.#connSendWindow, maxFrame);
  }

  #requeue(stream: StreamRecord): void {
    if (this.#stillSending(stream)) this.#sendQueue.push(stream);
  }

  /** Whether a stream that sent has more to send (else it leaves the send queue). */
  #stillSending(stream: StreamRecord): boolean {
    if (
      this.#streams.get(stream.id) === stream &&
      (stream.outboxBytes > 0 || (stream.outboxEnd && stream.send === "open"))
    ) {
      return true;
    }
    stream.queued = false;
    return false;
  }

  /** Takes `n` bytes off a stream's outbox as one DATA frame (its payload in parts if need be). */
  #dataFrame(stream: StreamRecord, n: number): OutgoingFrame {
    const outbox = stream.outbox;
    let payload: Uint8Array | Uint8Array[] = EMPTY;
    if (n > 0 && outbox[0].byteLength >= n) {
      // The common case: one chunk covers the frame.
      const first = outbox[0];
      if (first.byteLength === n) {
        payload = first;
        outbox.shift();
      } else {
        payload = first.subarray(0, n);
        outbox[0] = first.subarray(n);
      }
    } else if (n > 0) {
      const parts: Uint8Array[] = [];
      for (let left = n; left > 0;) {
        const first = outbox[0];
        if (first.byteLength <= left) {
          parts.push(first);
          outbox.shift();
          left -= first.byteLength;
        } else {
          parts.push(first.subarray(0, left));
          outbox[0] = first.subarray(left);
          left = 0;
        }
      }
      payload = parts;
    }
    stream.outboxBytes -= n;
    this.#outboxBytes -= n;
    stream.sendWindow -= n;
    this.#connSendWindow -= n;
    const end = stream.outboxBytes === 0 && stream.outboxEnd;
    if (end) stream.send = "closed";
    if (!stream.writableSignalled && stream.outboxBytes < OUTBOX_HIGH_WATER && !stream.outboxEnd) {
      stream.writableSignalled = true;
      this.#events.push({ type: "writable", streamId: stream.id });
    }
    if (end) this.#maybeFinish(stream);
    return { type: FrameType.Data, flags: end ? FLAG_END_STREAM : 0, streamId: stream.id, payload };
  }

  // ---- internals: receiving -----------------------------------------------

  /**
   * A stranger's first message: one HELLO (to a server) or one WELCOME (to a client), of
   * bounded size, and nothing else; judged by its length and first header before any of it
   * is decoded.
   */
  #handleFirstMessage(bytes: Uint8Array, now: number): void {
    const server = this.#role === "server";
    const expected = server ? FrameType.Hello : FrameType.Welcome;
    const limit = server ? this.#maxMetadataBytes + HELLO_OVERHEAD_BYTES : MAX_WELCOME_BYTES;
    const name = server ? "hello" : "welcome";
    if (bytes.byteLength > limit) {
      // An oversized HELLO is metadata that is too large: the terminal 4004, so the client
      // does not retry.
      throw new ProtocolError(
        `${
          server && bytes[0] === expected ? "Invalid metadata" : "Invalid first message"
        }: ${bytes.byteLength} bytes exceeds the ${name} limit ${limit}`,
        server && bytes[0] === expected ? CloseCode.InvalidMetadata : CloseCode.ProtocolError,
      );
    }
    if (checkFrames(bytes, limit) !== 1 || bytes[0] !== expected) {
      throw new ProtocolError(
        `Invalid first message: must be a lone ${name.toUpperCase()}`,
        CloseCode.ProtocolError,
      );
    }
    this.#handleFrame(frameAt(bytes, 0), now);
  }

  #handleFrame(frame: Frame, now: number): void {
    switch (frame.type) {
      case FrameType.Hello: {
        if (this.#role !== "server") {
          throw new ProtocolError(
            "Unexpected hello: only clients send it",
            CloseCode.ProtocolError,
          );
        }
        this.#handshakeStep("recv_hello");
        const hello = decodeHello(frame.payload, this.#maxMetadataBytes, this.#maxMetadataValues);
        this.#learnPeer(hello.settings);
        if (hello.noDelay) this.#nudge = false;
        this.#events.push({
          type: "hello",
          metadata: hello.metadata,
          ...(hello.resume !== undefined ? { resume: hello.resume } : {}),
          metadataCost: parsedJsonBytes(hello.metadataBytes, hello.metadataValues),
        });
        return;
      }
      case FrameType.Welcome: {
        if (this.#role !== "client") {
          throw new ProtocolError(
            "Unexpected welcome: only servers send it",
            CloseCode.ProtocolError,
          );
        }
        this.#handshakeStep("recv_welcome");
        const welcome = decodeWelcome(frame.payload);
        this.#learnPeer(welcome.settings);
        this.#id = welcome.id;
        this.#handshakeStep("send_ack");
        this.#queue(FrameType.Ack, 0, 0, EMPTY);
        this.#opened(now);
        this.#events.push({ type: "open", id: welcome.id, welcome });
        return;
      }
      case FrameType.Ack:
        if (this.#role !== "server") {
          throw new ProtocolError("Unexpected ack: only clients send it", CloseCode.ProtocolError);
        }
        this.#handshakeStep("recv_ack");
        this.#opened(now);
        // The ack is the client's second small write; answer it, or its first request
        // waits for our delayed ACK (Nagle, see the module doc).
        if (this.#nudge) this.#nudgeAt = now;
        this.#events.push({ type: "open", id: this.#id! });
        return;
      case FrameType.Noop:
        return;
    }
    if (this.#phase === "handshake") {
      throw new ProtocolError(
        `Unexpected frame 0x${frame.type.toString(16)} before the handshake completed`,
        CloseCode.ProtocolError,
      );
    }
    // Every stream frame is answered (see the module doc): a RESET or WINDOW_UPDATE too.
    if (this.#nudge && (frame.streamId !== 0 || frame.type === FrameType.WindowUpdate)) {
      this.#nudgeAt = now;
    }
    switch (frame.type) {
      case FrameType.Headers:
        return this.#handleHeaders(frame, now);
      case FrameType.Reset:
        return this.#handleReset(frame, now);
      case FrameType.WindowUpdate:
        return this.#handleWindowUpdate(frame);
      case FrameType.Ping: {
        // The peer's own bucket first: a flood from one connection does not drain the shared one.
        this.#pings ??= new TokenBucket(this.#pingRate, now);
        if (!this.#pings.take(now) || this.#sharedPings?.take(now) === false) {
          throw new ProtocolError("Too many pings", CloseCode.RateLimited);
        }
        const { sentAt, data } = decodePing(frame.payload);
        this.#reply(FrameType.Pong, 0, this.#pingPayload(sentAt, this.#answerPing(data)));
        this.#events.push({ type: "ping", data });
        return;
      }
      case FrameType.Pong: {
        const { sentAt, data } = decodePing(frame.payload);
        const rtt = this.#heartbeat?.handlePong(sentAt, now);
        if (rtt !== undefined) this.#rtt = rtt;
        this.#events.push({ type: "pong", data, rtt });
        return;
      }
      case FrameType.GoAway:
        // A closing peer writes its close frame right behind GOAWAY: answer it, or Nagle
        // holds that close frame for our delayed ACK (~40 ms, see the module doc).
        if (this.#nudge) this.#nudgeAt = now;
        return this.#handleGoAway(frame);
    }
  }

  #learnPeer(settings: Settings): void {
    this.#peer = sharedSettings(settings);
    this.#connSendWindow = settings.connectionWindow;
  }

  #handleHeaders(frame: Frame, now: number): void {
    const end = (frame.flags & FLAG_END_STREAM) !== 0;
    const id = frame.streamId;
    const existing = this.#streams.get(id);
    if (existing) {
      if (!existing.local) {
        throw new ProtocolError(
          `Unexpected headers on stream ${id}: request already received`,
          CloseCode.ProtocolError,
        );
      }
      if (frame.payload.byteLength > this.#local.maxHeaderBytes) {
        this.reset(id, ResetCode.TooLarge, "Response headers too large");
        this.#events.push({
          type: "reset",
          streamId: id,
          local: true,
          code: ResetCode.TooLarge,
          reason:
            `Response headers: ${frame.payload.byteLength} bytes exceeds limit ${this.#local.maxHeaderBytes}`,
          byPeer: false,
        });
        return;
      }
      const head = decodeResponseHead(frame.payload);
      this.#recvTransition(existing, end ? "headers_end" : "headers");
      this.#pushHead(existing, { type: "response", streamId: id, head, end });
      this.#maybeFinish(existing);
      return;
    }
    if (!this.#isPeerId(id)) {
      if (id < this.#nextLocalId) return; // a response to a stream this end already reset
      throw new ProtocolError(
        `Unexpected headers on stream ${id}: not opened by this end`,
        CloseCode.ProtocolError,
      );
    }
    if (id <= this.#lastPeerId) {
      throw new ProtocolError(
        `Unexpected headers on stream ${id}: id reused or out of order`,
        CloseCode.ProtocolError,
      );
    }
    this.#lastPeerId = id;
    if (this.#phase !== "open") {
      return this.#refuse(id, ResetCode.Refused, "Going away", now);
    }
    if (this.#peerOpen >= this.#local.maxConcurrentStreams) {
      return this.#refuse(
        id,
        ResetCode.Refused,
        `Too many concurrent streams: limit ${this.#local.maxConcurrentStreams}`,
        now,
      );
    }
    if (frame.payload.byteLength > this.#local.maxHeaderBytes) {
      return this.#refuse(
        id,
        ResetCode.TooLarge,
        `Request headers: ${frame.payload.byteLength} bytes exceeds limit ${this.#local.maxHeaderBytes}`,
        now,
      );
    }
    const head = decodeRequestHead(frame.payload);
    const stream = createStream(id, false, this.#peer.initialWindow, this.#local.initialWindow);
    stream.recv = nextHalfState("idle", end ? "headers_end" : "headers")!;
    this.#openStream(id, stream);
    this.#peerOpen++;
    this.#pushHead(stream, { type: "request", streamId: id, head, end });
  }

  /**
   * DATA is gathered per stream until the message ends (or the body does), so that each
   * message hands each stream one chunk whatever the peer's framing: a thousand 1-byte
   * frames cost one copy, not a thousand chunks. Its payload is `bytes[start…start+length)`.
   */
  #handleData(
    bytes: Uint8Array,
    start: number,
    length: number,
    flags: number,
    streamId: number,
  ): void {
    const end = (flags & FLAG_END_STREAM) !== 0;
    if (length > this.#connRecvWindow) {
      throw new ProtocolError(
        `Flow control: ${length} bytes exceeds the connection window ${this.#connRecvWindow}`,
        CloseCode.FlowControlError,
      );
    }
    const stream = this.#streams.get(streamId);
    if (!stream) {
      if (this.#wasClosed(streamId)) {
        // Late DATA still spends connection credit (as in HTTP/2); nobody reads it, so it
        // is granted straight back.
        this.#connRecvWindow -= length;
        this.#grantConnection(length);
        return;
      }
      throw new ProtocolError(
        `Unexpected data on stream ${streamId}: never opened`,
        CloseCode.ProtocolError,
      );
    }
    if (length > stream.recvWindow) {
      throw new ProtocolError(
        `Flow control: ${length} bytes on stream ${stream.id} exceeds window ${stream.recvWindow}`,
        CloseCode.FlowControlError,
      );
    }
    this.#recvTransition(stream, end ? "data_end" : "data");
    stream.recvWindow -= length;
    this.#connRecvWindow -= length;
    this.#connUnread += length;
    if (this.#connConsumed > 0 && this.#connUnread > this.#local.connectionWindow / 2) {
      this.#maybeGrantConnection();
    }
    if (end) {
      // A body that ends here: its chunk goes on now, before the stream's finished event.
      if (stream.arriving === undefined) {
        this.#handOnPayload(stream, bytes.subarray(start, start + length), true);
      } else {
        if (length > 0) this.#gather(stream, bytes, start, length);
        this.#handOn(stream, true);
      }
      this.#maybeFinish(stream);
    } else if (length > 0) {
      this.#gather(stream, bytes, start, length);
    }
  }

  /** Adds `bytes[start…start+length)` to what the stream received in this message. */
  #gather(stream: StreamRecord, bytes: Uint8Array, start: number, length: number): void {
    const arriving = stream.arriving;
    if (arriving === undefined) {
      stream.arriving = {
        first: bytes.subarray(start, start + length),
        copy: undefined,
        bytes: length,
      };
      this.#arrivals.push(stream);
      return;
    }
    const total = arriving.bytes + length;
    let copy = arriving.copy;
    if (copy === undefined || copy.byteLength < total) {
      const grown = new Uint8Array(Math.max(total, 2 * (copy?.byteLength ?? 0), 256));
      grown.set(copy === undefined ? arriving.first : copy.subarray(0, arriving.bytes));
      copy = arriving.copy = grown;
    }
    if (length <= SMALL_COPY_BYTES) {
      // A tiny payload (the 1-byte frame flood) is cheaper copied by hand than by a view.
      for (let i = 0; i < length; i++) copy[arriving.bytes + i] = bytes[start + i];
    } else {
      copy.set(bytes.subarray(start, start + length), arriving.bytes);
    }
    arriving.bytes = total;
  }

  /** The message is handled: each stream's gathered DATA goes on as one chunk. */
  #handArrivals(): void {
    const arrivals = this.#arrivals;
    if (arrivals.length === 0) return;
    for (const stream of arrivals) {
      if (stream.arriving !== undefined) this.#handOn(stream, false);
    }
    arrivals.length = 0;
  }

  /**
   * Emits a stream's gathered DATA as one `data` event. A lone payload that is at least
   * half of its message, or that came in a small message, stays a view (charged for the
   * whole message); anything else is copied out, so that it does not keep a large message
   * alive. A copy of each small body in a batch would cost more than the body (an
   * allocation outside the heap on V8: +10–30 % CPU per exchange at 64 in flight), and a
   * view keeps at most {@linkcode SMALL_VIEW_MESSAGE_BYTES} alive.
   */
  #handOn(stream: StreamRecord, end: boolean): void {
    const arriving = stream.arriving!;
    stream.arriving = undefined;
    if (arriving.copy === undefined) return this.#handOnPayload(stream, arriving.first, end);
    const chunk = arriving.copy.subarray(0, arriving.bytes);
    if (end && stream.head !== undefined) return this.#bodyArrived(stream, chunk);
    this.#events.push({
      type: "data",
      streamId: stream.id,
      local: stream.local,
      chunk,
      end,
      retained: arriving.copy.byteLength,
    });
  }

  /** Emits one payload of the message being handled: a view, or a copy (see `#handOn`). */
  #handOnPayload(stream: StreamRecord, payload: Uint8Array, end: boolean): void {
    const messageBytes = this.#messageBytes;
    const view = 2 * payload.byteLength >= messageBytes ||
      messageBytes <= SMALL_VIEW_MESSAGE_BYTES || payload.byteLength === 0;
    // Not `slice()`: on a Node `Buffer` (Bun's messages) that is a view, not a copy.
    const chunk = view ? payload : new Uint8Array(payload);
    if (end && stream.head !== undefined) return this.#bodyArrived(stream, chunk);
    this.#events.push({
      type: "data",
      streamId: stream.id,
      local: stream.local,
      chunk,
      end,
      retained: view ? (payload.byteLength === 0 ? 0 : messageBytes) : chunk.byteLength,
    });
  }

  /** Keeps a new stream; the first one gives this session a map of its own. */
  #openStream(id: number, stream: StreamRecord): void {
    if (this.#streams === NO_STREAMS) this.#streams = new Map();
    this.#streams.set(id, stream);
  }

  /** Emits a `request` or `response` event, which a body may join (see `bodyWithHead`). */
  #pushHead(stream: StreamRecord, event: HeadEvent): void {
    this.#events.push(event);
    if (event.end || !this.#bodyWithHead) return;
    stream.head = event;
    this.#heads.push(stream);
  }

  /** The whole body came in the message of its head: it goes on the head's event. */
  #bodyArrived(stream: StreamRecord, chunk: Uint8Array): void {
    stream.head!.body = chunk;
    stream.head = undefined;
  }

  #forgetHeads(): void {
    for (const stream of this.#heads) stream.head = undefined;
    this.#heads.length = 0;
  }

  #handleReset(frame: Frame, now: number): void {
    this.#countReset(now);
    const stream = this.#streams.get(frame.streamId);
    if (!stream) {
      if (this.#wasClosed(frame.streamId)) return;
      throw new ProtocolError(
        `Unexpected reset on stream ${frame.streamId}: never opened`,
        CloseCode.ProtocolError,
      );
    }
    const { code, reason } = decodeReset(frame.payload);
    this.#forget(stream);
    this.#events.push({
      type: "reset",
      streamId: stream.id,
      local: stream.local,
      code,
      reason,
      byPeer: true,
    });
  }

  #handleWindowUpdate(frame: Frame): void {
    const increment = decodeWindowUpdate(frame.payload);
    if (frame.streamId === 0) {
      if (increment === 0 || this.#connSendWindow + increment > MAX_WINDOW) {
        throw new ProtocolError(
          `Flow control: bad connection window increment ${increment}`,
          CloseCode.FlowControlError,
        );
      }
      const wasBlocked = this.#connSendWindow <= 0;
      this.#connSendWindow += increment;
      if (wasBlocked) {
        const blocked = this.#connBlocked;
        this.#connBlocked = [];
        for (const stream of blocked) {
          if (this.#streams.get(stream.id) === stream && stream.outboxBytes > 0) {
            this.#enqueue(stream);
          }
        }
      }
      return;
    }
    const stream = this.#streams.get(frame.streamId);
    if (!stream) {
      if (this.#wasClosed(frame.streamId)) return;
      throw new ProtocolError(
        `Unexpected window update on stream ${frame.streamId}: never opened`,
        CloseCode.ProtocolError,
      );
    }
    if (increment === 0 || stream.sendWindow + increment > MAX_WINDOW) {
      throw new ProtocolError(
        `Flow control: bad window increment ${increment}`,
        CloseCode.FlowControlError,
      );
    }
    const wasBlocked = stream.sendWindow <= 0;
    stream.sendWindow += increment;
    if (wasBlocked && stream.outboxBytes > 0) this.#enqueue(stream);
  }

  #handleGoAway(frame: Frame): void {
    const { lastStreamId, code, reason } = decodeGoAway(frame.payload);
    this.#peerGoAwayLastId = lastStreamId;
    if (this.#phase === "open") this.#phase = "draining";
    // Streams this end started past the peer's last id were never seen there: safe to retry.
    for (const stream of [...this.#streams.values()]) {
      if (stream.local && stream.id > lastStreamId) {
        this.#forget(stream);
        this.#events.push({
          type: "reset",
          streamId: stream.id,
          local: true,
          code: ResetCode.Refused,
          reason: "Peer is going away",
          byPeer: true,
        });
      }
    }
    this.#events.push({ type: "goaway", lastStreamId, code, reason });
  }

  /** Body bytes no longer held: granted back when it is time to (`#maybeGrantConnection`). */
  #grantConnection(bytes: number): void {
    this.#connConsumed += bytes;
    this.#maybeGrantConnection();
  }

  /** Grants the consumed connection credit back if it is time to. */
  #maybeGrantConnection(): void {
    // Granting in halves keeps WINDOW_UPDATE frames rare. But once unread bytes hold more than
    // half the window (streams whose readers have stopped), what the other readers give back
    // can never reach half, and the peer would be left with no credit for any stream: then
    // grant as soon as what waits to be granted is at least what the peer has left (as Go's
    // HTTP/2 does), and not in crumbs (`MIN_GRANT_BYTES`): looked at as bytes are consumed,
    // and as they arrive (credit consumed earlier may be all the peer could have).
    const consumed = this.#connConsumed;
    const window = this.#local.connectionWindow;
    if (
      consumed >= window / 2 ||
      (this.#connUnread > window / 2 && consumed >= this.#connRecvWindow &&
        consumed >= Math.min(window / 8, MIN_GRANT_BYTES))
    ) {
      this.#connConsumed = 0;
      this.#connRecvWindow += consumed;
      this.#queue(FrameType.WindowUpdate, 0, 0, encodeWindowUpdate(consumed));
    }
  }

  // ---- internals: state -----------------------------------------------------

  #close(code: number, reason: string, error?: ProtocolError): void {
    if (this.#phase === "closed") return;
    this.close();
    // The reason goes into a WebSocket close frame, which holds 123 bytes; the error keeps it all.
    const fitted = fitCloseReason(reason);
    this.#events.push({ type: "close", code, reason: fitted, ...(error ? { error } : {}) });
  }

  #handshakeStep(event: HandshakeEvent): void {
    const next = nextHandshakeState(this.#handshake, event);
    if (next === undefined) {
      if (event.startsWith("recv_")) {
        throw new ProtocolError(
          `Unexpected ${event.slice(5)} during handshake state ${this.#handshake}`,
          CloseCode.ProtocolError,
        );
      }
      throw new TypeError(
        `Cannot ${event.replace("_", " ")} in handshake state ${this.#handshake}`,
      );
    }
    this.#handshake = next;
  }

  #opened(now: number): void {
    this.#phase = "open";
    if (this.#heartbeatOptions) {
      this.#heartbeat = new Heartbeat(this.#heartbeatOptions, now, this.#random);
    }
  }

  /**
   * A PING or PONG payload within the peer's `maxFrameBytes`: application data (an echoed
   * ping's included, since our limit may exceed the peer's) is cut at a character boundary.
   */
  #pingPayload(sentAt: number, data: string): Uint8Array {
    const payload = encodePing(sentAt, data);
    const limit = this.#peer.maxFrameBytes;
    if (payload.byteLength <= limit) return payload;
    let cut = limit;
    while (cut > 8 && (payload[cut] & 0xc0) === 0x80) cut--;
    return payload.subarray(0, cut);
  }

  #checkHeaderSize(payload: Uint8Array): Uint8Array {
    // A header block travels in one frame, so the peer's frame limit bounds it too.
    const limit = Math.min(this.#peer.maxHeaderBytes, this.#peer.maxFrameBytes);
    if (payload.byteLength > limit) throw new HeaderSizeError(payload.byteLength, limit);
    return payload;
  }

  #stream(streamId: number, what: string): StreamRecord {
    const stream = this.#streams.get(streamId);
    if (!stream) throw new TypeError(`Cannot ${what}: stream ${streamId} is not open`);
    return stream;
  }

  #sendTransition(stream: StreamRecord, event: HalfEvent): void {
    const next = nextHalfState(stream.send, event);
    if (next === undefined) {
      throw new TypeError(
        `Cannot ${event.replace("_", " ")} on stream ${stream.id} in state ${stream.send}`,
      );
    }
    stream.send = next;
  }

  #recvTransition(stream: StreamRecord, event: HalfEvent): void {
    const next = nextHalfState(stream.recv, event);
    if (next === undefined) {
      throw new ProtocolError(
        `Unexpected ${event.split("_")[0]} on stream ${stream.id} in state ${stream.recv}`,
        CloseCode.ProtocolError,
      );
    }
    stream.recv = next;
  }

  #maybeFinish(stream: StreamRecord): void {
    if (stream.send === "closed" && stream.recv === "closed" && stream.outboxBytes === 0) {
      if (this.#forget(stream)) {
        this.#events.push({ type: "finished", streamId: stream.id, local: stream.local });
      }
    }
  }

  /**
   * Drops a stream. DATA it gathered from the message being handled never reaches the
   * application, so its connection credit comes straight back.
   */
  #forget(stream: StreamRecord): boolean {
    if (!this.#streams.delete(stream.id)) return false;
    if (stream.local) this.#localOpen--;
    else this.#peerOpen--;
    if (stream.outbox.length > 0) stream.outbox = [];
    this.#outboxBytes -= stream.outboxBytes;
    stream.outboxBytes = 0;
    if (stream.queued) {
      stream.queued = false;
      const i = this.#sendQueue.indexOf(stream);
      if (i !== -1) this.#sendQueue.splice(i, 1);
    }
    const arriving = stream.arriving;
    if (arriving !== undefined) {
      stream.arriving = undefined;
      this.#connUnread -= arriving.bytes;
      this.#grantConnection(arriving.bytes);
    }
    return true;
  }

  #isPeerId(id: number): boolean {
    return (id % 2 === 1) === (this.#role === "server");
  }

  /** Whether an id that has no record belonged to a stream that existed and is finished. */
  #wasClosed(id: number): boolean {
    return this.#isPeerId(id) ? id <= this.#lastPeerId : id < this.#nextLocalId;
  }

  #refuse(streamId: number, code: number, reason: string, now: number): void {
    this.#reply(FrameType.Reset, streamId, encodeReset(code, reason));
    this.#countReset(now);
  }

  #countReset(now: number): void {
    if (!this.#resets.take(now)) {
      throw new ProtocolError("Too many stream resets and refusals", CloseCode.RateLimited);
    }
  }
}

/**
 * Groups frames into messages of at most `limit` bytes, in order, cutting DATA payloads
 * where they cross a boundary (only the last piece keeps END_STREAM). Other frames are
 * never cut: one longer than `limit` travels in a message of its own.
 */
function splitFrames(frames: readonly OutgoingFrame[], limit: number): OutgoingFrame[][] {
  const messages: OutgoingFrame[][] = [];
  let current: OutgoingFrame[] = [];
  let size = 0;
  const flush = (): void => {
    if (current.length > 0) messages.push(current);
    current = [];
    size = 0;
  };
  for (let i = 0; i < frames.length; i++) {
    let frame = frames[i];
    if (frame.type === FrameType.Headers) {
      // A head and the body right behind it travel together when they fit in one message:
      // the receiver then has the whole request at once (see Connection's arrived bodies).
      const group = groupSize(frames, i);
      if (group <= limit && size + group > limit) flush();
    }
    for (;;) {
      const room = limit - size - FRAME_HEADER_BYTES;
      const length = payloadLength(frame.payload);
      if (length <= room) {
        current.push(frame);
        size += FRAME_HEADER_BYTES + length;
        break;
      }
      if (frame.type === FrameType.Data && room > 0) {
        const payload = wholePayload(frame.payload);
        current.push({
          ...frame,
          flags: frame.flags & ~FLAG_END_STREAM,
          payload: payload.subarray(0, room),
        });
        frame = { ...frame, payload: payload.subarray(room) };
      } else if (current.length === 0) {
        current.push(frame);
        flush();
        break;
      }
      flush();
    }
  }
  flush();
  return messages;
}

/** A payload given in parts, as one array (a copy): only for cutting it. */
function wholePayload(payload: Uint8Array | readonly Uint8Array[]): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  const whole = new Uint8Array(payloadLength(payload));
  let offset = 0;
  for (const part of payload) {
    whole.set(part, offset);
    offset += part.byteLength;
  }
  return whole;
}

/** Bytes of `frames[start]` and the DATA frames of its stream directly behind it. */
function groupSize(frames: readonly OutgoingFrame[], start: number): number {
  const streamId = frames[start].streamId;
  let size = FRAME_HEADER_BYTES + payloadLength(frames[start].payload);
  for (let i = start + 1; i < frames.length; i++) {
    const frame = frames[i];
    if (frame.type !== FrameType.Data || frame.streamId !== streamId) break;
    size += FRAME_HEADER_BYTES + payloadLength(frame.payload);
  }
  return size;
}
