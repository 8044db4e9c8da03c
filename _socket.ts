/**
 * The one socket shape everything above the runtime adapters talks to.
 *
 * Each runtime hands us a different WebSocket: the standard `WebSocket` (Deno's
 * `Deno.upgradeWebSocket`, and every client), Bun's `ServerWebSocket`, whose events arrive
 * as callbacks on the server, or the `ws` package's (the gateway's). An adapter in
 * `runtime/` turns each into a {@linkcode Socket}; nothing above the adapters asks which
 * runtime it runs on.
 *
 * @module
 */

/**
 * Where a socket's events go: one object for every socket of its kind, called with the owner
 * each socket was given, so that a server's thousands of idle sockets hold no closures.
 */
export interface SocketHost<O> {
  /** A message: bytes for a binary one, a string for a text one. */
  message(owner: O, data: Uint8Array | string): void;
  /** The socket has closed, for whatever reason; called once. */
  closed(owner: O, code: number, reason: string): void;
  /** A full send buffer has drained (only if `signalsDrain`). */
  drained(owner: O): void;
}

/** What a connection needs from a WebSocket. */
export interface Socket {
  /**
   * Sends one binary message. The bytes are copied before this returns (Deno's `WebSocket`,
   * Bun's client and `ServerWebSocket` all do), so the caller may reuse the buffer at once.
   */
  send(data: Uint8Array): void;
  /** Closes with a code and a reason (at most 123 UTF-8 bytes). */
  close(code: number, reason: string): void;
  /** Bytes accepted by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Whether `SocketHost.drained` is called when the buffer empties; if not, the caller polls `bufferedAmount`. */
  readonly signalsDrain: boolean;
  /** Sends this socket's events to `host`, with `owner`; until then they go nowhere. */
  listen<O>(host: SocketHost<O>, owner: O): void;
}

const UNHEARD: SocketHost<unknown> = {
  message(): void {},
  closed(): void {},
  drained(): void {},
};

/**
 * What every adapter does with its socket's events: hands them to the host it was given
 * (nowhere before `listen`), the close once only, whichever way the runtime reports it.
 */
export abstract class SocketEvents {
  #host: SocketHost<unknown> = UNHEARD;
  #owner: unknown;
  #closed = false;

  /** See {@linkcode Socket.listen}. */
  listen<O>(host: SocketHost<O>, owner: O): void {
    this.#host = host as SocketHost<unknown>;
    this.#owner = owner;
  }

  /** A message arrived. */
  protected deliverMessage(data: Uint8Array | string): void {
    this.#host.message(this.#owner, data);
  }

  /** The socket closed; later reports of it are dropped. */
  protected deliverClose(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#host.closed(this.#owner, code, reason);
  }

  /** A full send buffer drained. */
  protected deliverDrain(): void {
    this.#host.drained(this.#owner);
  }
}
