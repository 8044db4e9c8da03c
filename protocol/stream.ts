/**
 * Stream state: one exchange, seen as two halves.
 *
 * An exchange is a stream with two independent halves, one per direction: the
 * requester's half carries the request (HEADERS, then DATA) and the responder's
 * half carries the response. Each half moves through the same three states, so
 * the table below does not depend on who started the stream or which end we are:
 *
 * ```
 *            headers            end (HEADERS or DATA with END_STREAM, or RESET)
 *   idle ─────────────▶ open ──────────────────────────────────▶ closed
 *     └──────────── headers+end / reset ───────────────────────────▲
 * ```
 *
 * DATA is legal only on an open half; HEADERS only on an idle one. A stream is
 * finished when both halves are closed. Flow control is per stream and per
 * direction, inside a window for the whole connection: the receiver grants credit
 * and the sender spends it on DATA payload bytes.
 *
 * @module
 */

/** The state of one half (one direction) of a stream. */
export type HalfState = "idle" | "open" | "closed";

/** What can happen to a half. */
export type HalfEvent = "headers" | "headers_end" | "data" | "data_end" | "reset";

/** The transition table. A missing entry is an illegal event in that state. */
export const HALF_TRANSITIONS: Readonly<
  Record<HalfState, Readonly<Partial<Record<HalfEvent, HalfState>>>>
> = {
  idle: { headers: "open", headers_end: "closed", reset: "closed" },
  open: { data: "open", data_end: "closed", reset: "closed" },
  closed: { reset: "closed" },
};

/**
 * Looks up the next state of a half.
 *
 * @example Usage
 * ```ts
 * import { nextHalfState } from "@swaggersocket/swaggersocket/protocol";
 * nextHalfState("idle", "headers"); // "open"
 * nextHalfState("closed", "data"); // undefined: illegal
 * ```
 *
 * @param state The current state.
 * @param event What happened.
 * @returns The next state, or `undefined` if the event is illegal in this state.
 */
export function nextHalfState(state: HalfState, event: HalfEvent): HalfState | undefined {
  return HALF_TRANSITIONS[state][event];
}

/** One stream's bookkeeping inside a session. */
export interface StreamRecord {
  /** The stream id. */
  readonly id: number;
  /** Whether this end started the stream (sent the request). */
  readonly local: boolean;
  /** The half this end sends on. */
  send: HalfState;
  /** The half the peer sends on. */
  recv: HalfState;
  /** Bytes this end may still send before the peer grants more. */
  sendWindow: number;
  /** Bytes the peer may still send before this end grants more. */
  recvWindow: number;
  /** Bytes the application has consumed and this end has not yet granted back. */
  recvConsumed: number;
  /** Body chunks waiting for credit or for the transmit turn. */
  outbox: Uint8Array[];
  /** Total bytes in `outbox`. */
  outboxBytes: number;
  /** Whether the send half ends once `outbox` is empty. */
  outboxEnd: boolean;
  /** Whether the session has told the application this stream can take more. */
  writableSignalled: boolean;
  /** Whether the stream waits in the session's send queue. */
  queued: boolean;
  /** DATA received for this stream in the message being handled, not yet handed on. */
  arriving: Arrival | undefined;
  /**
   * The `request` or `response` event of a head that came in the message being handled,
   * not yet polled: a body that ends in the same message goes on it (`bodyWithHead`).
   */
  head: { body?: Uint8Array } | undefined;
}

/**
 * A stream's body bytes from one message, gathered so that the message hands each stream
 * one chunk: the payload of its only DATA frame, or a copy of several.
 */
export interface Arrival {
  /** The first payload (a view into the message). */
  first: Uint8Array;
  /** Once a second payload arrives: a buffer holding every payload so far. */
  copy: Uint8Array | undefined;
  /** Payload bytes gathered. */
  bytes: number;
}

/**
 * Makes a fresh stream record with both halves idle.
 *
 * @param id The stream id.
 * @param local Whether this end started it.
 * @param sendWindow The peer's initial window.
 * @param recvWindow This end's initial window.
 * @returns The record.
 */
export function createStream(
  id: number,
  local: boolean,
  sendWindow: number,
  recvWindow: number,
): StreamRecord {
  return {
    id,
    local,
    send: "idle",
    recv: "idle",
    sendWindow,
    recvWindow,
    recvConsumed: 0,
    outbox: [],
    outboxBytes: 0,
    outboxEnd: false,
    writableSignalled: true,
    queued: false,
    arriving: undefined,
    head: undefined,
  };
}
