/**
 * The `Socket` contract over a server-side WebSocket of the `ws` package: what a server on
 * `node:http` (the gateway's front, on Deno and on Bun) upgrades its agents' dials into.
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/ws"
import type { WebSocket as WsWebSocket } from "ws";
import { type Socket, SocketEvents } from "../_socket.ts";
import { plainBytes } from "./_plain_bytes.ts";

const noop = (): void => {};
const utf8 = new TextDecoder();

class WsSocket extends SocketEvents implements Socket {
  readonly signalsDrain = false;
  readonly #ws: WsWebSocket;

  constructor(ws: WsWebSocket) {
    super();
    this.#ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("message", (data, isBinary) => {
      // With "nodebuffer", `ws` hands over a Buffer (see `plainBytes`).
      const bytes = data as Uint8Array;
      this.deliverMessage(isBinary ? plainBytes(bytes) : utf8.decode(bytes));
    });
    ws.on("close", (code, reason) => {
      // 1005 is "no code given"; the session reads a missing code the same way.
      this.deliverClose(code, reason.toString());
    });
    // A peer's protocol error (a bad frame, a message over `maxPayload`): `ws` closes the
    // socket with the matching code and reports it here first; unheard, it would throw.
    ws.on("error", noop);
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: Uint8Array): void {
    // `ws` writes the caller's bytes as they are when the network is slower than the
    // sender; the contract lets the caller reuse its buffer at once, so they are copied: into
    // a `Buffer` (which `ws` takes as it is), from Node's pool when small: 0.17 µs for 200 B
    // on Deno, against 0.86 for a `slice()` that `ws` then wraps in a `Buffer` (Bun 0.07, 0.42).
    const copy = Buffer.allocUnsafe(data.byteLength);
    copy.set(data);
    this.#ws.send(copy, { binary: true });
  }

  close(code: number, reason: string): void {
    try {
      this.#ws.close(code, reason);
    } catch {
      this.#ws.close();
    }
  }
}

/**
 * Adapts a `ws` server-side socket (`WebSocketServer#handleUpgrade`'s) to the `Socket`
 * contract.
 *
 * @param ws The upgraded socket, already open.
 * @returns The adapter.
 */
export function adaptWsSocket(ws: WsWebSocket): Socket {
  return new WsSocket(ws);
}
