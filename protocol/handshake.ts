/**
 * The 3-way handshake: HELLO → WELCOME → ACK.
 *
 * The client says which protocol version it speaks, who it is (metadata, any JSON
 * value) and what it accepts (its settings). The server answers with the
 * connection id and its own settings; the client acknowledges. Each end learns the
 * other's limits before the first exchange. The state table is the same for both
 * roles: an end that sends HELLO walks the left path, one that receives it the right.
 *
 * ```
 *   start ──send_hello──▶ hello_sent ──recv_welcome──▶ welcome_received ──send_ack──▶ open
 *   start ──recv_hello──▶ hello_received ──send_welcome──▶ welcome_sent ──recv_ack──▶ open
 * ```
 *
 * @module
 */

import { CloseCode } from "./close_codes.ts";
import { ProtocolError } from "./errors.ts";
import { FRAME_HEADER_BYTES } from "./frame.ts";
import { decodeJson, encodeJson } from "./payload.ts";

/**
 * The protocol version this implementation speaks. Version 2 added the connection window
 * (`connectionWindow`, WINDOW_UPDATE on stream 0), `maxMessageBytes`, and the rule that a
 * stranger's first message is a lone HELLO.
 */
export const PROTOCOL_VERSION = 2;

/** What each end tells the other it accepts. */
export interface Settings {
  /** Largest frame payload this end accepts, in bytes. */
  maxFrameBytes: number;
  /** Largest request or response header block this end accepts, in bytes. */
  maxHeaderBytes: number;
  /** Streams the peer may have open towards this end at once. */
  maxConcurrentStreams: number;
  /** Body bytes the peer may send on a stream before this end grants more. */
  initialWindow: number;
  /** Body bytes the peer may send on all streams together before this end grants more. */
  connectionWindow: number;
  /** Largest WebSocket message this end accepts, in bytes; at least `maxFrameBytes` + 10. */
  maxMessageBytes: number;
}

/** Defaults for {@linkcode Settings}. */
export const DEFAULT_SETTINGS: Readonly<Settings> = {
  maxFrameBytes: 1024 * 1024,
  maxHeaderBytes: 64 * 1024,
  maxConcurrentStreams: 1024,
  initialWindow: 1024 * 1024,
  connectionWindow: 8 * 1024 * 1024,
  maxMessageBytes: 2 * 1024 * 1024,
};

/** The smallest `maxFrameBytes` an end may announce: a frame must carry a useful header block. */
export const MIN_FRAME_BYTES = 16 * 1024;

/**
 * Deepest nesting of objects and arrays accepted in a HELLO payload, the HELLO object
 * included. Only metadata can nest; parsing and measuring a deeper one costs seconds of CPU
 * on some runtimes (Bun's JSON.stringify recovers slowly from a stack overflow).
 */
export const MAX_HELLO_DEPTH = 64;

/**
 * Most JSON values a HELLO may hold beyond its metadata's: the envelope (version, settings,
 * resume) and room for fields a later version adds.
 */
export const HELLO_ENVELOPE_VALUES = 64;

/** Default for the most JSON values in a client's metadata. */
export const MAX_METADATA_VALUES = 1024;

/** How a JSON text is shaped: how deep it nests and how many values it holds. */
export interface JsonShape {
  /** Deepest nesting of objects and arrays. */
  depth: number;
  /** Values: objects, arrays, strings (object keys included), numbers, `true`, `false`, `null`. */
  values: number;
}

/**
 * Measures the shape of UTF-8 JSON in one pass, without parsing it, so that a HELLO whose
 * metadata would cost far more parsed than its bytes (`[[],[],…]`) is refused before
 * `JSON.parse` builds it. Malformed JSON gets a shape too; parsing rejects it later.
 *
 * @example Usage
 * ```ts
 * import { jsonShape } from "@swaggersocket/swaggersocket/protocol";
 * jsonShape(new TextEncoder().encode('{"a":[1,2]}')); // { depth: 2, values: 5 }
 * ```
 *
 * @param bytes UTF-8 JSON.
 * @returns Its depth and number of values.
 */
export function jsonShape(bytes: Uint8Array): JsonShape {
  let depth = 0;
  let deepest = 0;
  let values = 0;
  let inString = false;
  // A number or literal starts a value only where a value may start: not inside another one.
  let valueMayStart = true;
  for (let i = 0; i < bytes.byteLength; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === 0x5c) i++; // a backslash escapes the next byte
      else if (b === 0x22) inString = false;
      continue;
    }
    switch (b) {
      case 0x22: // "
        inString = true;
        values++;
        valueMayStart = false;
        break;
      case 0x5b: // [
      case 0x7b: // {
        values++;
        if (++depth > deepest) deepest = depth;
        valueMayStart = true;
        break;
      case 0x5d: // ]
      case 0x7d: // }
        depth--;
        valueMayStart = false;
        break;
      case 0x2c: // ,
      case 0x3a: // :
        valueMayStart = true;
        break;
      case 0x20:
      case 0x09:
      case 0x0a:
      case 0x0d:
        break;
      default:
        if (valueMayStart) values++;
        valueMayStart = false;
    }
  }
  return { depth: deepest, values };
}

/**
 * About how many bytes a parsed JSON value of this size and shape holds: two per byte of
 * text (strings are UTF-16) and 64 per value (each object, array, string or number has a
 * header). What a server keeps per connection for resumption is bounded by this estimate.
 *
 * @param jsonBytes The value's size as compact UTF-8 JSON.
 * @param values Its number of values.
 * @returns The estimate in bytes.
 */
export function parsedJsonBytes(jsonBytes: number, values: number): number {
  return 2 * jsonBytes + 64 * values;
}

/** The client's first message. */
export interface Hello {
  /** Protocol version. */
  version: number;
  /** Client metadata, any JSON value. */
  metadata: unknown;
  /** The client's settings. */
  settings: Settings;
  /** A resume token from an earlier WELCOME, to get the same connection id back. */
  resume?: string;
  /**
   * The client's small writes leave at once (its socket sets `TCP_NODELAY`): the server need
   * not answer each message with a NOOP (PROTOCOL.md §9). Only `true` counts.
   */
  noDelay?: boolean;
}

/** A HELLO as the server received it, with what its metadata costs to keep. */
export interface ReceivedHello extends Hello {
  /** The metadata's size as compact UTF-8 JSON. */
  metadataBytes: number;
  /** The metadata's number of JSON values, at most: counted in the whole HELLO, before parsing. */
  metadataValues: number;
}

/** The server's answer. */
export interface Welcome {
  /** The connection id (a ULID). */
  id: string;
  /** The server's settings. */
  settings: Settings;
  /** The server's heartbeat, so the client can tell a quiet server from a dead one. */
  heartbeat?: { interval: number; timeout: number };
  /** A token the client may present in a later HELLO to resume this connection id. */
  resumeToken?: string;
  /** Whether this connection resumed an earlier one. */
  resumed?: boolean;
}

/** The state of the handshake. */
export type HandshakeState =
  | "start"
  | "hello_sent"
  | "hello_received"
  | "welcome_sent"
  | "welcome_received"
  | "open";

/** What can happen during the handshake. */
export type HandshakeEvent =
  | "send_hello"
  | "recv_hello"
  | "send_welcome"
  | "recv_welcome"
  | "send_ack"
  | "recv_ack";

/** The transition table. A missing entry is illegal in that state. */
export const HANDSHAKE_TRANSITIONS: Readonly<
  Record<HandshakeState, Readonly<Partial<Record<HandshakeEvent, HandshakeState>>>>
> = {
  start: { send_hello: "hello_sent", recv_hello: "hello_received" },
  hello_sent: { recv_welcome: "welcome_received" },
  hello_received: { send_welcome: "welcome_sent" },
  welcome_received: { send_ack: "open" },
  welcome_sent: { recv_ack: "open" },
  open: {},
};

/**
 * Looks up the next handshake state.
 *
 * @example Usage
 * ```ts
 * import { nextHandshakeState } from "@swaggersocket/swaggersocket/protocol";
 * nextHandshakeState("start", "recv_hello"); // "hello_received"
 * nextHandshakeState("start", "recv_ack"); // undefined: illegal
 * ```
 *
 * @param state The current state.
 * @param event What happened.
 * @returns The next state, or `undefined` if the event is illegal.
 */
export function nextHandshakeState(
  state: HandshakeState,
  event: HandshakeEvent,
): HandshakeState | undefined {
  return HANDSHAKE_TRANSITIONS[state][event];
}

/**
 * Checks settings and fills in nothing: every field must be present and sane.
 *
 * @param value A decoded JSON value.
 * @param what Where it came from, for the error message.
 * @returns The settings.
 * @throws {ProtocolError} If a field is missing or out of range.
 */
export function parseSettings(value: unknown, what: string): Settings {
  const v = value as Record<string, unknown> | null;
  if (typeof v !== "object" || v === null) {
    throw new ProtocolError(`Invalid ${what}: settings missing`, CloseCode.ProtocolError);
  }
  const field = (name: keyof Settings, min: number): number => {
    const n = v[name];
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > 0x7fff_ffff) {
      throw new ProtocolError(
        `Invalid ${what}: settings.${name} must be an integer ≥ ${min}`,
        CloseCode.ProtocolError,
      );
    }
    return n;
  };
  const settings: Settings = {
    maxFrameBytes: field("maxFrameBytes", MIN_FRAME_BYTES),
    maxHeaderBytes: field("maxHeaderBytes", 1024),
    maxConcurrentStreams: field("maxConcurrentStreams", 1),
    initialWindow: field("initialWindow", 1024),
    connectionWindow: field("connectionWindow", 1024),
    maxMessageBytes: field("maxMessageBytes", MIN_FRAME_BYTES + FRAME_HEADER_BYTES),
  };
  // A frame never spans two messages, so a message must hold the largest frame.
  if (settings.maxMessageBytes < settings.maxFrameBytes + FRAME_HEADER_BYTES) {
    throw new ProtocolError(
      `Invalid ${what}: settings.maxMessageBytes must be at least maxFrameBytes + ${FRAME_HEADER_BYTES}`,
      CloseCode.ProtocolError,
    );
  }
  return settings;
}

/**
 * Encodes a HELLO payload.
 *
 * @param hello The hello.
 * @returns The payload.
 */
export function encodeHello(hello: Hello): Uint8Array {
  return encodeJson(hello);
}

/**
 * Decodes and checks a HELLO payload.
 *
 * @example Usage
 * ```ts
 * import { DEFAULT_SETTINGS, decodeHello, encodeHello, PROTOCOL_VERSION } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeHello({ version: PROTOCOL_VERSION, metadata: { name: "a" }, settings: { ...DEFAULT_SETTINGS } });
 * decodeHello(bytes, 1024).metadata; // { name: "a" }
 * ```
 *
 * @param bytes The payload.
 * @param maxMetadataBytes The largest metadata accepted, measured as compact JSON.
 * @param maxMetadataValues The most JSON values the metadata may hold.
 * @returns The hello, with its metadata's size and number of values.
 * @throws {ProtocolError} With `UnsupportedVersion`, `InvalidMetadata` or `ProtocolError` codes.
 */
export function decodeHello(
  bytes: Uint8Array,
  maxMetadataBytes: number,
  maxMetadataValues: number = MAX_METADATA_VALUES,
): ReceivedHello {
  // Measured before parsing: the parsed shape itself is the cost (see jsonShape).
  const shape = jsonShape(bytes);
  if (shape.depth > MAX_HELLO_DEPTH) {
    throw new ProtocolError(
      `Invalid metadata: nested deeper than ${MAX_HELLO_DEPTH} levels`,
      CloseCode.InvalidMetadata,
    );
  }
  if (shape.values > maxMetadataValues + HELLO_ENVELOPE_VALUES) {
    throw new ProtocolError(
      `Invalid metadata: more than ${maxMetadataValues} JSON values`,
      CloseCode.InvalidMetadata,
    );
  }
  const value = decodeJson(bytes, "hello") as Record<string, unknown> | null;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("Invalid hello: not an object", CloseCode.ProtocolError);
  }
  if (value.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `Unsupported protocol version: ${
        JSON.stringify(value.version)
      }, server speaks ${PROTOCOL_VERSION}`,
      CloseCode.UnsupportedVersion,
    );
  }
  const metadata = value.metadata ?? null;
  // Re-encoding measures the value, not the sender's whitespace.
  let metadataBytes: number;
  try {
    metadataBytes = new TextEncoder().encode(JSON.stringify(metadata)).byteLength;
  } catch (cause) {
    // Nesting deeper than the stack (Bun's JSON.parse accepts more than its stringify) is hostile.
    throw new ProtocolError("Invalid metadata: nested too deeply", CloseCode.InvalidMetadata, {
      cause,
    });
  }
  if (metadataBytes > maxMetadataBytes) {
    throw new ProtocolError(
      `Invalid metadata: ${metadataBytes} bytes exceeds limit ${maxMetadataBytes}`,
      CloseCode.InvalidMetadata,
    );
  }
  if (
    value.resume !== undefined && (typeof value.resume !== "string" || value.resume.length > 512)
  ) {
    throw new ProtocolError(
      "Invalid hello: resume must be a short string",
      CloseCode.ProtocolError,
    );
  }
  return {
    version: PROTOCOL_VERSION,
    metadata,
    settings: parseSettings(value.settings, "hello"),
    ...(value.resume !== undefined ? { resume: value.resume as string } : {}),
    ...(value.noDelay === true ? { noDelay: true } : {}),
    metadataBytes,
    metadataValues: shape.values,
  };
}

/**
 * Encodes a WELCOME payload.
 *
 * @param welcome The welcome.
 * @returns The payload.
 */
export function encodeWelcome(welcome: Welcome): Uint8Array {
  return encodeJson(welcome);
}

/**
 * Decodes and checks a WELCOME payload.
 *
 * @param bytes The payload.
 * @returns The welcome.
 * @throws {ProtocolError} If it is malformed.
 */
export function decodeWelcome(bytes: Uint8Array): Welcome {
  const value = decodeJson(bytes, "welcome") as Record<string, unknown> | null;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("Invalid welcome: not an object", CloseCode.ProtocolError);
  }
  if (typeof value.id !== "string" || value.id.length === 0 || value.id.length > 128) {
    throw new ProtocolError(
      "Invalid welcome: id must be a non-empty string",
      CloseCode.ProtocolError,
    );
  }
  const welcome: Welcome = { id: value.id, settings: parseSettings(value.settings, "welcome") };
  const hb = value.heartbeat as Record<string, unknown> | undefined;
  if (hb !== undefined) {
    if (
      typeof hb !== "object" || hb === null || typeof hb.interval !== "number" ||
      typeof hb.timeout !== "number" || !(hb.interval > 0) || !(hb.timeout > 0)
    ) {
      throw new ProtocolError("Invalid welcome: heartbeat", CloseCode.ProtocolError);
    }
    welcome.heartbeat = { interval: hb.interval, timeout: hb.timeout };
  }
  if (typeof value.resumeToken === "string") welcome.resumeToken = value.resumeToken;
  if (value.resumed === true) welcome.resumed = true;
  return welcome;
}
