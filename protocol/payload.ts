/**
 * Payload codecs: the bytes inside HEADERS, RESET, WINDOW_UPDATE, PING, PONG and
 * GOAWAY frames.
 *
 * A header block is a list of strings, each a LEB128 length and UTF-8 bytes:
 * `method, url, name, value, …` for a request and `status, statusText, name,
 * value, …` for a response. Header names travel as given; the receiver
 * lower-cases them the way `Headers` does.
 *
 * @module
 */

import { writeUint32 } from "./_bytes.ts";
import { smallBytes, writeAscii } from "./_small_bytes.ts";
import { CloseCode } from "./close_codes.ts";
import { ProtocolError } from "./errors.ts";

/** A request as it travels: method, URL (a path or absolute), header pairs. */
export interface RequestHead {
  /** The HTTP method, such as `GET`. */
  method: string;
  /** The request target: a path with query (`/pets?limit=2`) or an absolute URL. */
  url: string;
  /** Header name/value pairs in order. */
  headers: [string, string][];
}

/** A response as it travels: status, status text, header pairs. */
export interface ResponseHead {
  /** The HTTP status, 200–599. */
  status: number;
  /** The status text; may be empty. */
  statusText: string;
  /** Header name/value pairs in order. */
  headers: [string, string][];
}

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string, not a marker to drop.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

// Most heads are ASCII: then UTF-16 lengths are byte lengths and the buffer is sized exactly,
// carved from a slab (`_small_bytes.ts`).
function encodeStrings(strings: readonly string[]): Uint8Array {
  let size = varintSize(strings.length);
  for (const s of strings) size += varintSize(s.length) + s.length;
  const out = smallBytes(size);
  let offset = writeVarint(out, 0, strings.length);
  for (const s of strings) {
    offset = writeVarint(out, offset, s.length);
    if (writeAscii(out, offset, s) === undefined) return encodeUtf8Strings(strings);
    offset += s.length;
  }
  return out;
}

// One buffer per header block, filled with `encodeInto`: a UTF-16 code unit takes at most 3
// UTF-8 bytes, so each string gets room for that and a length prefix sized for it.
function encodeUtf8Strings(strings: readonly string[]): Uint8Array {
  let bound = varintSize(strings.length);
  for (const s of strings) bound += varintSize(3 * s.length) + 3 * s.length;
  const out = smallBytes(bound);
  let offset = writeVarint(out, 0, strings.length);
  for (const s of strings) {
    const reserved = varintSize(3 * s.length);
    const written = writeAscii(out, offset + reserved, s) ??
      encoder.encodeInto(s, out.subarray(offset + reserved)).written;
    const prefix = varintSize(written);
    // The reservation was for the worst case; close the gap if the prefix came out shorter.
    if (prefix < reserved) {
      out.copyWithin(offset + prefix, offset + reserved, offset + reserved + written);
    }
    offset = writeVarint(out, offset, written) + written;
  }
  return out.subarray(0, offset);
}

/** `first` followed by each name and value (what `[...first, ...headers.flat()]` makes, without the copies). */
function withHeaders(first: string[], headers: readonly (readonly [string, string])[]): string[] {
  for (const [name, value] of headers) first.push(name, value);
  return first;
}

/** Strings up to this many bytes are read char by char when ASCII: cheaper than a decoder call. */
const SHORT_STRING = 64;

/**
 * Strings decoded lately, by a hash of their bytes. Heads repeat the same methods, paths,
 * statuses, header names and values; comparing bytes with a string seen before allocates
 * nothing, where building it again allocates a string per character. A slot holds the last
 * string that hashed there, so a collision costs a miss, never a wrong string.
 */
const recent: (string | undefined)[] = new Array(256);

/** An all-ASCII run of bytes as a string; `undefined` if any byte is not ASCII. */
function readAscii(bytes: Uint8Array, offset: number, length: number): string | undefined {
  const end = offset + length;
  let hash = length;
  for (let i = offset; i < end; i++) {
    const code = bytes[i];
    if (code >= 0x80) return undefined;
    hash = (hash * 31 + code) | 0;
  }
  const slot = hash & 0xff;
  const seen = recent[slot];
  if (seen !== undefined && seen.length === length) {
    let i = 0;
    while (i < length && seen.charCodeAt(i) === bytes[offset + i]) i++;
    if (i === length) return seen;
  }
  let s = "";
  for (let i = offset; i < end; i++) s += String.fromCharCode(bytes[i]);
  recent[slot] = s;
  return s;
}

function writeVarint(out: Uint8Array, offset: number, n: number): number {
  while (n >= 0x80) {
    out[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[offset++] = n;
  return offset;
}

function decodeStrings(bytes: Uint8Array, what: string): string[] {
  let offset = 0;
  const readVarint = (): number => {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 5; i++) {
      if (offset >= bytes.byteLength) {
        throw new ProtocolError(`Cannot decode ${what}: truncated length`, CloseCode.ProtocolError);
      }
      const b = bytes[offset++];
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 0x80;
    }
    throw new ProtocolError(`Cannot decode ${what}: length too long`, CloseCode.ProtocolError);
  };
  const count = readVarint();
  // Each string takes at least one byte, so a count beyond the bytes left is a lie.
  if (count > bytes.byteLength - offset) {
    throw new ProtocolError(
      `Cannot decode ${what}: ${count} strings in ${bytes.byteLength} bytes`,
      CloseCode.ProtocolError,
    );
  }
  const strings: string[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const length = readVarint();
    if (length > bytes.byteLength - offset) {
      throw new ProtocolError(
        `Cannot decode ${what}: string length ${length} exceeds the ${
          bytes.byteLength - offset
        } bytes left`,
        CloseCode.ProtocolError,
      );
    }
    try {
      strings[i] = (length <= SHORT_STRING ? readAscii(bytes, offset, length) : undefined) ??
        decoder.decode(bytes.subarray(offset, offset + length));
    } catch (cause) {
      throw new ProtocolError(`Cannot decode ${what}: invalid UTF-8`, CloseCode.ProtocolError, {
        cause,
      });
    }
    offset += length;
  }
  if (offset !== bytes.byteLength) {
    throw new ProtocolError(
      `Cannot decode ${what}: ${bytes.byteLength - offset} trailing bytes`,
      CloseCode.ProtocolError,
    );
  }
  return strings;
}

function pairs(strings: string[], from: number, what: string): [string, string][] {
  if ((strings.length - from) % 2 !== 0) {
    throw new ProtocolError(
      `Cannot decode ${what}: header without a value`,
      CloseCode.ProtocolError,
    );
  }
  const out: [string, string][] = [];
  for (let i = from; i < strings.length; i += 2) out.push([strings[i], strings[i + 1]]);
  return out;
}

/** HTTP's token (RFC 9110 §5.6.2), as `_http_token.ts` has it: `protocol/` imports nothing outside. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Encodes a request head.
 *
 * @example Usage
 * ```ts
 * import { decodeRequestHead, encodeRequestHead } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeRequestHead({ method: "GET", url: "/pets", headers: [["accept", "*\/*"]] });
 * decodeRequestHead(bytes).url; // "/pets"
 * ```
 *
 * @param head The request head.
 * @returns The header block.
 */
export function encodeRequestHead(head: RequestHead): Uint8Array {
  return encodeStrings(withHeaders([head.method, head.url], head.headers));
}

/**
 * Decodes a request head.
 *
 * @param bytes A header block.
 * @returns The request head.
 * @throws {ProtocolError} If the block is malformed or the method is not a token.
 */
export function decodeRequestHead(bytes: Uint8Array): RequestHead {
  const strings = decodeStrings(bytes, "request head");
  if (strings.length < 2) {
    throw new ProtocolError(
      "Cannot decode request head: no method and URL",
      CloseCode.ProtocolError,
    );
  }
  const [method, url] = strings;
  if (!TOKEN.test(method)) {
    throw new ProtocolError("Cannot decode request head: invalid method", CloseCode.ProtocolError);
  }
  if (url.length === 0) {
    throw new ProtocolError("Cannot decode request head: empty URL", CloseCode.ProtocolError);
  }
  return { method, url, headers: pairs(strings, 2, "request head") };
}

/**
 * Encodes a response head.
 *
 * @example Usage
 * ```ts
 * import { decodeResponseHead, encodeResponseHead } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeResponseHead({ status: 404, statusText: "", headers: [] });
 * decodeResponseHead(bytes).status; // 404
 * ```
 *
 * @param head The response head.
 * @returns The header block.
 */
export function encodeResponseHead(head: ResponseHead): Uint8Array {
  return encodeStrings(withHeaders([String(head.status), head.statusText], head.headers));
}

/**
 * Decodes a response head.
 *
 * @param bytes A header block.
 * @returns The response head.
 * @throws {ProtocolError} If the block is malformed or the status is not 200–599.
 */
export function decodeResponseHead(bytes: Uint8Array): ResponseHead {
  const strings = decodeStrings(bytes, "response head");
  if (strings.length < 2) {
    throw new ProtocolError("Cannot decode response head: no status", CloseCode.ProtocolError);
  }
  const status = Number(strings[0]);
  if (!/^[2-5][0-9][0-9]$/.test(strings[0]) || status < 200 || status > 599) {
    throw new ProtocolError(
      `Cannot decode response head: invalid status ${JSON.stringify(strings[0].slice(0, 16))}`,
      CloseCode.ProtocolError,
    );
  }
  return { status, statusText: strings[1], headers: pairs(strings, 2, "response head") };
}

/**
 * Encodes a RESET payload: a u32 reset code and a UTF-8 reason.
 *
 * @param code The reset code.
 * @param reason Why, for people.
 * @returns The payload.
 */
export function encodeReset(code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason);
  const out = new Uint8Array(4 + text.byteLength);
  new DataView(out.buffer).setUint32(0, code);
  out.set(text, 4);
  return out;
}

/**
 * Decodes a RESET payload.
 *
 * @param bytes The payload (at least 4 bytes, checked by the frame codec).
 * @returns The code and reason.
 */
export function decodeReset(bytes: Uint8Array): { code: number; reason: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { code: view.getUint32(0), reason: lenientText(bytes.subarray(4)) };
}

/**
 * Encodes a WINDOW_UPDATE payload.
 *
 * @param increment Bytes of credit granted, 1 to 2^31 − 1.
 * @returns The payload.
 */
export function encodeWindowUpdate(increment: number): Uint8Array {
  const out = smallBytes(4);
  writeUint32(out, 0, increment);
  return out;
}

/**
 * Decodes a WINDOW_UPDATE payload.
 *
 * @param bytes The payload (exactly 4 bytes, checked by the frame codec).
 * @returns The increment.
 */
export function decodeWindowUpdate(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
}

/**
 * Encodes a PING or PONG payload: the ping's send time as f64 milliseconds, then application data.
 *
 * @param sentAt The ping's send time, echoed unchanged by the pong.
 * @param data Application data (UTF-8).
 * @returns The payload.
 */
export function encodePing(sentAt: number, data: string): Uint8Array {
  const text = encoder.encode(data);
  const out = new Uint8Array(8 + text.byteLength);
  new DataView(out.buffer).setFloat64(0, sentAt);
  out.set(text, 8);
  return out;
}

/**
 * Decodes a PING or PONG payload.
 *
 * @param bytes The payload (at least 8 bytes, checked by the frame codec).
 * @returns The send time and application data.
 */
export function decodePing(bytes: Uint8Array): { sentAt: number; data: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { sentAt: view.getFloat64(0), data: lenientText(bytes.subarray(8)) };
}

/**
 * Encodes a GOAWAY payload: the last stream id the sender will still serve, a close code, a reason.
 *
 * @param lastStreamId The highest peer-started stream id that will still be served.
 * @param code Why (a close code).
 * @param reason Why, for people.
 * @returns The payload.
 */
export function encodeGoAway(lastStreamId: number, code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason);
  const out = new Uint8Array(8 + text.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, lastStreamId);
  view.setUint32(4, code);
  out.set(text, 8);
  return out;
}

/**
 * Decodes a GOAWAY payload.
 *
 * @param bytes The payload (at least 8 bytes, checked by the frame codec).
 * @returns The last stream id, code and reason.
 */
export function decodeGoAway(
  bytes: Uint8Array,
): { lastStreamId: number; code: number; reason: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    lastStreamId: view.getUint32(0),
    code: view.getUint32(4),
    reason: lenientText(bytes.subarray(8)),
  };
}

/**
 * Encodes a JSON value as UTF-8 (handshake payloads).
 *
 * @param value Any JSON value.
 * @returns The bytes.
 */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/**
 * Decodes a UTF-8 JSON payload.
 *
 * @param bytes The bytes.
 * @param what What is being decoded, for the error message.
 * @returns The value.
 * @throws {ProtocolError} If the bytes are not UTF-8 JSON.
 */
export function decodeJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (cause) {
    throw new ProtocolError(`Cannot decode ${what}: not UTF-8 JSON`, CloseCode.ProtocolError, {
      cause,
    });
  }
}

const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
function lenientText(bytes: Uint8Array): string {
  return bytes.byteLength === 0 ? "" : lenient.decode(bytes);
}
