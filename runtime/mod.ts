/**
 * The runtime this process runs on: the one place that asks which it is.
 *
 * Everything above this folder talks to a {@linkcode Socket} (`_socket.ts`) and to the
 * functions here; each runtime's differences live in its own adapter beside this file:
 *
 * | File | What |
 * |---|---|
 * | `_web_socket.ts` | the standard `WebSocket` (every client, Deno's server sockets) |
 * | `_deno.ts` | `Deno.serve`, `Deno.upgradeWebSocket`, `Deno.createHttpClient`, `Deno.connect`, `Deno.args` … |
 * | `_bun.ts` | Bun's `ServerWebSocket` and `websocket` handlers, `Bun.serve`, `tls.ca`, `Bun.connect`, `Bun.argv` … |
 * | `_ws.ts`, `_node_http.ts` | the `ws` package and `node:http`, the same on both (the gateway) |
 * | `_node_net.ts` | `node:net` and `node:tls` sockets (the agent's upstream over TLS, and elsewhere) |
 *
 * To add a runtime: describe its globals structurally in a file of its own (as `_bun.ts`
 * does), give it a {@linkcode Runtime} in `detect()` below, and run the suite on it.
 *
 * Internal: not an entry point of the package.
 *
 * @module
 */

import type { Socket } from "../_socket.ts";
import {
  type BunGlobal,
  type BunServerLike,
  type BunWebSocketHandlers,
  connectTcpOnBun,
  dialTlsOnBun,
  isBunServer,
  listenOnBun,
  type ProcessGlobal,
  scriptOnBun,
  upgradeOnBunServer,
} from "./_bun.ts";
import {
  abortRequestOnDeno,
  cannotTrust,
  connectTcpOnDeno,
  type DenoGlobal,
  type DenoServeHandlerInfo,
  dialTlsOnDeno,
  listenOnDeno,
  scriptOnDeno,
  takeBodyOnDeno,
  upgradeOnDeno,
} from "./_deno.ts";
import { type BinaryType, openWebSocketWith } from "./_web_socket.ts";
import type {
  DialTls,
  Listening,
  ListenOptions,
  ScriptRuntime,
  SocketAcceptor,
  TcpConnection,
  TcpHandlers,
} from "./_types.ts";

export { adaptWebSocket, dialFailure } from "./_web_socket.ts";
export { bunWebSocketHandlers } from "./_bun.ts";
export type { BunServerLike, BunServerWebSocket, BunSocket, BunWebSocketHandlers } from "./_bun.ts";
export type { DenoServeHandlerInfo } from "./_deno.ts";
export type {
  Listening,
  ListenOptions,
  RemoteAddr,
  ScriptRuntime,
  SocketAcceptor,
  TcpConnection,
  TcpHandlers,
  Upgraded,
} from "./_types.ts";
export type { Socket };

/** What differs between runtimes, for the rest of the library. */
export interface Runtime {
  /** `"deno"`, `"bun"`, or `"other"` (a browser, Node: a client only). */
  readonly name: "deno" | "bun" | "other";
  /**
   * Whether this runtime's `WebSocket` client makes a message of 1–64 KiB wait ~40 ms for the
   * peer's delayed ACK. Deno's leaves Nagle on and writes such a message as header, then
   * payload; a client session there cuts its output into messages of at most 1 KiB
   * (`splitMessages`, PROTOCOL.md §9). Bun's client sets TCP_NODELAY and writes whole messages.
   */
  readonly clientDelaysMidSizeMessages: boolean;
  /**
   * Whether this runtime's `WebSocket` client sets `TCP_NODELAY` (Bun's does): its small
   * writes never wait for the peer's ACK, so a client here tells the server that it needs no
   * nudge (PROTOCOL.md §9). Unknown elsewhere (a browser, Node), so `false` there.
   */
  readonly clientSetsNoDelay: boolean;
  /** How this runtime's `WebSocket` client should hand over binary messages. */
  readonly binaryType: BinaryType;
  /**
   * Listens with the runtime's own server.
   *
   * @throws {TypeError} Where there is none.
   */
  listen(options: ListenOptions, websocket: BunWebSocketHandlers): Listening;
  /**
   * Upgrades with the runtime's own upgrade function (Deno's), when the app hands over no
   * server of its own (Bun's).
   *
   * @throws {TypeError} Where there is none.
   */
  upgrade(request: Request, context: unknown, acceptor: SocketAcceptor): Response;
  /**
   * What the runtime's `WebSocket` constructor takes to trust `caCerts` besides its roots.
   *
   * @throws {TypeError} Where it takes none.
   */
  dialTls(caCerts: string[]): DialTls;
  /**
   * Arguments, environment, signals and exit, for the command lines.
   *
   * @throws {TypeError} Where there are none.
   */
  script(): ScriptRuntime;
  /**
   * Takes a `Response`'s body if it is all in memory, unread and with no stream made of it:
   * its bytes or text, the body then used (Deno's: see `takeBodyOnDeno`); `undefined` where
   * that cannot be told, and every body streams.
   */
  readonly takeBodyInMemory: ((response: Response) => Uint8Array | string | undefined) | undefined;
  /**
   * Aborts the `signal` of a `Request` made without `init.signal`, as its controller would
   * (Deno's: see `abortRequestOnDeno`); `undefined` where that cannot be done, and a handler's
   * request gets an `AbortController`'s signal.
   */
  readonly abortRequest: ((request: Request, reason: unknown) => void) | undefined;
  /**
   * Opens a plain TCP connection on the runtime's own sockets (`Deno.connect`,
   * `Bun.connect`); `undefined` where the library knows none, and `node:net` serves
   * (`_node_net.ts`).
   */
  readonly connectTcp:
    | ((hostname: string, port: number, handlers: TcpHandlers) => TcpConnection)
    | undefined;
}

interface Globals {
  Bun?: BunGlobal;
  Deno?: DenoGlobal;
  process?: ProcessGlobal;
}

function detect(): Runtime {
  const g = globalThis as Globals;
  const { Bun: bun, Deno: deno, process } = g;
  const noServer = (): never => {
    throw new TypeError("Cannot listen: neither Deno.serve nor Bun.serve exists; use noServer");
  };
  const noUpgrade = (): never => {
    throw new TypeError("Cannot upgrade: pass Bun's server as the context, or run on Deno");
  };
  const noScript = (): never => {
    throw new TypeError("Cannot run as a script: neither Deno nor Bun");
  };
  if (bun) {
    return {
      name: "bun",
      clientDelaysMidSizeMessages: false,
      clientSetsNoDelay: true,
      binaryType: "nodebuffer",
      listen: (options, websocket) => listenOnBun(bun, options, websocket),
      upgrade: noUpgrade,
      dialTls: (caCerts) => dialTlsOnBun(process, caCerts),
      script: () => process ? scriptOnBun(bun, process) : noScript(),
      takeBodyInMemory: undefined,
      abortRequest: undefined,
      connectTcp: (hostname, port, handlers) => connectTcpOnBun(bun, hostname, port, handlers),
    };
  }
  if (deno) {
    return {
      name: "deno",
      binaryType: "arraybuffer",
      clientDelaysMidSizeMessages: true,
      clientSetsNoDelay: false,
      listen: (options) => listenOnDeno(deno, options),
      upgrade: typeof deno.upgradeWebSocket === "function"
        ? (request, context, acceptor) =>
          upgradeOnDeno(deno, request, context as DenoServeHandlerInfo | undefined, acceptor)
        : noUpgrade,
      dialTls: (caCerts) => dialTlsOnDeno(deno, caCerts),
      script: () => scriptOnDeno(deno),
      takeBodyInMemory: takeBodyOnDeno(),
      abortRequest: abortRequestOnDeno(),
      connectTcp: (hostname, port, handlers) => connectTcpOnDeno(deno, hostname, port, handlers),
    };
  }
  return {
    name: "other",
    binaryType: "arraybuffer",
    clientDelaysMidSizeMessages: false,
    clientSetsNoDelay: false,
    listen: noServer,
    upgrade: noUpgrade,
    dialTls: () => {
      throw cannotTrust();
    },
    script: noScript,
    takeBodyInMemory: undefined,
    abortRequest: undefined,
    connectTcp: undefined,
  };
}

/** The runtime this process runs on, detected once. */
export const RUNTIME: Runtime = detect();

/**
 * Upgrades a request for a server mounted on an app (or listening itself): with Bun's
 * server when the app hands it over, else with the runtime's own upgrade function.
 *
 * @param request The upgrade request.
 * @param context Deno's `ServeHandlerInfo`, or Bun's `Server`.
 * @param acceptor Who takes the socket.
 * @returns The response for the app's handler: the 101 on Deno, `undefined` on Bun once
 *   upgraded.
 * @throws {TypeError} If there is no way to upgrade here.
 */
export function upgradeWebSocket(
  request: Request,
  context: DenoServeHandlerInfo | BunServerLike | undefined,
  acceptor: SocketAcceptor,
): Response | undefined {
  return isBunServer(context)
    ? upgradeOnBunServer(context, request)
    : RUNTIME.upgrade(request, context, acceptor);
}

/** What {@linkcode openWebSocket} needs besides the URL. */
export interface OpenWebSocketOptions {
  /** Headers for the upgrade request (Deno and Bun). */
  headers?: HeadersInit;
  /** PEM certificates trusted for `wss:`, besides the runtime's default roots. */
  caCerts?: string[];
}

/**
 * Opens a client `WebSocket`: the one place that knows how each runtime takes the upgrade's
 * headers (Deno's and Bun's constructors take `{ headers }`) and extra CA certificates (see
 * {@linkcode Runtime.dialTls}). Elsewhere, `caCerts` throws a `TypeError` (headers are passed
 * on, as ever).
 *
 * @param url The `ws:`, `wss:`, `http:` or `https:` URL.
 * @param options Upgrade headers and extra CA certificates.
 * @returns The socket, connecting.
 * @throws {TypeError} From the constructor, or if `caCerts` cannot be honoured here.
 */
export function openWebSocket(url: string | URL, options: OpenWebSocketOptions = {}): WebSocket {
  const { headers, caCerts } = options;
  const trust = caCerts !== undefined && caCerts.length > 0;
  if (headers === undefined && !trust) return new WebSocket(url);
  return openWebSocketWith(url, headers, trust ? RUNTIME.dialTls(caCerts) : undefined);
}
