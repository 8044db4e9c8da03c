/**
 * The {@linkcode TcpConnection} contract over a `node:net` or `node:tls` socket: for TLS,
 * and where the runtime has no sockets of its own that the library knows.
 *
 * Internal: imported by the agent's upstream client only, so that `node:net` stays out of
 * what a browser loads.
 *
 * @module
 */

import type net from "node:net";
import { drained } from "./_drained.ts";
import type { TcpConnection, TcpHandlers } from "./_types.ts";

class NodeTcp implements TcpConnection {
  readonly #socket: net.Socket;
  /** The runtime allocates each read's buffer as the bytes arrive. */
  readonly readBufferBytes = 0;

  constructor(socket: net.Socket, handlers: TcpHandlers) {
    this.#socket = socket;
    socket.setNoDelay(true);
    // After `destroy()` only `close` is heard (Bun's `node:net` may still say `end`).
    socket.on("data", (chunk: Uint8Array) => {
      // A plain view, not the runtime's `Buffer`: the owner passes it on as a body chunk.
      if (!socket.destroyed) {
        handlers.data(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      }
    });
    socket.on("end", () => {
      if (!socket.destroyed) handlers.end();
    });
    socket.on("error", (error: Error) => handlers.error(error));
    socket.on("close", () => handlers.close());
  }

  get destroyed(): boolean {
    return this.#socket.destroyed;
  }

  write(...parts: (string | Uint8Array)[]): boolean {
    const socket = this.#socket;
    if (parts.length === 1) return write(socket, parts[0]);
    // One `writev`.
    socket.cork();
    let below = true;
    for (const part of parts) below = write(socket, part);
    socket.uncork();
    return below;
  }

  drained(): Promise<void> {
    const socket = this.#socket;
    return socket.writableNeedDrain && !socket.destroyed ? drained(socket) : Promise.resolve();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  ref(): void {
    this.#socket.ref();
  }

  unref(): void {
    this.#socket.unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

function write(socket: net.Socket, part: string | Uint8Array): boolean {
  return typeof part === "string" ? socket.write(part, "latin1") : socket.write(part);
}

/**
 * Adapts a `node:net` or `node:tls` socket, setting `TCP_NODELAY`.
 *
 * @param socket The socket, connecting or connected.
 * @param handlers What hears of it.
 * @returns The connection.
 */
export function adaptNodeSocket(socket: net.Socket, handlers: TcpHandlers): TcpConnection {
  return new NodeTcp(socket, handlers);
}
