/**
 * The runtime-neutral shapes the adapters fill in: an upgraded socket and who takes it, a
 * listener, the TLS options of a client dial, a script's arguments and exit, and a plain TCP
 * connection. Nothing here names a runtime; `_deno.ts`, `_bun.ts`, `_web_socket.ts` and
 * `_node_net.ts` implement them, and `mod.ts` picks the one this process runs on.
 *
 * @module
 */

import type { Socket } from "../_socket.ts";

/** A peer's address. */
export interface RemoteAddr {
  /** The host (an IP address). */
  hostname: string;
  /** The port. */
  port: number;
}

/** A socket upgraded by the runtime's own server, with what the server decides on. */
export interface Upgraded {
  /** The socket, adapted. */
  socket: Socket;
  /** The upgrade request's `Origin`, if it sent one. */
  origin: string | null;
  /** The upgrade request, if the acceptor keeps requests (see {@linkcode SocketAcceptor}). */
  request: Request | undefined;
  /** The client's address. */
  remoteAddr: RemoteAddr;
}

/** Who takes the sockets a runtime upgrades: the server. One per server, made once. */
export interface SocketAcceptor {
  /**
   * Whether {@linkcode accept} needs the upgrade request (for `authorize`). A runtime whose
   * request is unusable once upgraded (Deno's) then keeps a detached copy of it.
   */
  readonly keepsRequests: boolean;
  /** Takes an upgraded socket. */
  accept(upgraded: Upgraded): void;
  /**
   * Called as a socket is upgraded whose runtime's listener would cut it short at shutdown
   * (Deno's `shutdown()` closes upgraded sockets with 1001 at once): the server waits, bounded,
   * until as many {@linkcode socketClosed} calls came before it stops listening.
   */
  socketOpened(): void;
  /** Called once such a socket has closed; called unbound. */
  readonly socketClosed: () => void;
}

/** Where and how a server listens. */
export interface ListenOptions {
  /** The interface. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** PEM certificate (chain) and key: serve `wss`. */
  tls?: { cert: string; key: string };
  /** Answers a request with the runtime's per-request object (the server's `upgrade()`). */
  serve(request: Request, context: object): Response | undefined;
}

/** A listening server. */
export interface Listening {
  /** Where it listens (the real port when asked for 0). */
  addr: RemoteAddr;
  /** Stops listening. */
  stop(): Promise<void>;
}

/** What a client `WebSocket` constructor takes, besides the URL, to trust extra CAs. */
export interface DialTls {
  /** Fields for the runtime's `new WebSocket(url, init)`. */
  init: Record<string, unknown>;
  /** Releases what `init` holds, once the socket has opened or failed. */
  release?: () => void;
}

/** The runtime's script facilities: what the command lines need. */
export interface ScriptRuntime {
  /** The script's arguments (without the runtime and the script path). */
  args: string[];
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /** Calls `listener` on the signal (SIGHUP: Unix only). */
  onSignal(signal: "SIGINT" | "SIGTERM" | "SIGHUP", listener: () => void): void;
  /** Reads standard input to its end, as UTF-8 text. */
  readStdin(): Promise<string>;
  /** Exits the process. */
  exit(code: number): never;
  /** Reads a UTF-8 text file (a certificate, a key). */
  readTextFile(path: string): Promise<string>;
}

/** What a {@linkcode TcpConnection} tells its owner, given when it is opened. */
export interface TcpHandlers {
  /** Bytes arrived; the owner's to keep (a buffer of their own each time). */
  data(chunk: Uint8Array): void;
  /** The peer ended its side; `close` follows. */
  end(): void;
  /** Connecting or the connection failed; `close` follows. */
  error(error: Error): void;
  /** The connection is gone (after `destroy()` too): once, and last. */
  close(): void;
}

/**
 * A plain TCP connection that writes with `TCP_NODELAY` set: the agent's sockets to its
 * upstream, on the runtime's own sockets where it has them (a request loop on them costs over a
 * quarter less CPU than on `node:net`, on Deno and on Bun).
 */
export interface TcpConnection {
  /**
   * Writes `parts` in order, together: a string as one byte per character (latin1, as an
   * HTTP/1.1 head is written). Bytes written before the connection opens wait for it.
   *
   * @returns `false` once what waits to be sent is over the high-water mark: the writer
   *   waits for {@linkcode TcpConnection.drained} before writing more.
   */
  write(...parts: (string | Uint8Array)[]): boolean;
  /** Resolves once nothing waits to be sent, or the connection is gone. */
  drained(): Promise<void>;
  /** Stops reading: the peer's writes meet TCP backpressure. */
  pause(): void;
  /** Reads again. */
  resume(): void;
  /** Keeps the process alive while the connection is open (the default). */
  ref(): void;
  /** Lets the process exit while the connection is open and idle. */
  unref(): void;
  /** Closes the connection at once; nothing but `close` is heard from it after. */
  destroy(): void;
  /** Whether it was destroyed or has closed. */
  readonly destroyed: boolean;
  /**
   * Bytes of its own it holds to read into: what an idle connection keeps (0 where the runtime
   * reads into buffers of its own).
   */
  readonly readBufferBytes: number;
}
