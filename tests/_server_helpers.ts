/**
 * Helpers for the server and client tests: a registry that closes everything a test
 * started, deferred promises, a raw WebSocket endpoint that upgrades and then says
 * nothing, and an existing app (`Deno.serve` / `Bun.serve`) with a server mounted on it.
 *
 * The runtime's globals are described structurally here, so the tests need no
 * `Deno`/`Bun` type declarations.
 *
 * @module
 */

import {
  type BunServerLike,
  type BunWebSocketHandlers,
  type DenoServeHandlerInfo,
  WebSocketClient,
  type WebSocketClientOptions,
  WebSocketServer,
  type WebSocketServerOptions,
} from "../mod.ts";
import type { Socket } from "../_socket.ts";
import { adaptWebSocket } from "../runtime/mod.ts";
import { adaptBunSocket, type BunServerWebSocket, type BunSocket } from "../runtime/_bun.ts";
import { IS_BUN, withTimeout } from "./_helpers.ts";

/** How long closing one resource may take before the test fails. */
const CLOSE_GUARD = 15_000;

import { deferred } from "./_deferred.ts";

export { type Deferred, deferred } from "./_deferred.ts";

/**
 * Everything one test started, closed in reverse order by {@linkcode Resources.closeAll}
 * (call it from `afterEach`): clients before the servers they dialed.
 */
export class Resources {
  #closers: { what: string; close: () => Promise<unknown> }[] = [];

  /** Registers a closer. */
  defer(what: string, close: () => Promise<unknown>): void {
    this.#closers.push({ what, close });
  }

  /** Starts a listening server on 127.0.0.1, port 0. */
  server(options: WebSocketServerOptions = {}): WebSocketServer {
    const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, ...options });
    this.defer("server.close()", () => server.close());
    return server;
  }

  /** Makes a client (not connected yet). */
  client(url: string, options: Partial<WebSocketClientOptions> = {}): WebSocketClient {
    const client = new WebSocketClient({ url, ...options });
    this.defer("client.close()", () => client.close());
    return client;
  }

  /** Closes everything, newest first; throws the first failure after trying them all. */
  async closeAll(): Promise<void> {
    const closers = this.#closers.splice(0).reverse();
    const failures: unknown[] = [];
    for (const { what, close } of closers) {
      try {
        await withTimeout(close(), CLOSE_GUARD, what);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}

/** The `ws://` URL of a listening server. */
export function urlOf(server: WebSocketServer, path = ""): string {
  return `ws://127.0.0.1:${server.addr.port}${path}`;
}

// ---- the runtimes, described structurally -------------------------------------

interface DenoServer {
  addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}

interface DenoGlobal {
  serve(
    options: { hostname: string; port: number; onListen?: (addr: unknown) => void },
    handler: (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>,
  ): DenoServer;
  upgradeWebSocket(request: Request): { socket: WebSocket; response: Response };
}

interface BunServerWebSocketLike {
  close(code?: number, reason?: string): void;
}

interface BunServer extends BunServerLike {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}

interface BunGlobal {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (request: Request, server: BunServer) => Response | undefined;
    websocket: Partial<BunWebSocketHandlers> & {
      open?(ws: BunServerWebSocketLike): void;
      message(ws: BunServerWebSocketLike, message: string | Uint8Array): void;
    };
  }): BunServer;
}

function denoGlobal(): DenoGlobal {
  return (globalThis as unknown as { Deno: DenoGlobal }).Deno;
}

function bunGlobal(): BunGlobal {
  return (globalThis as unknown as { Bun: BunGlobal }).Bun;
}

/** A running HTTP server made directly with the runtime's API. */
export interface AppServer {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Stops it (and drops its sockets). */
  close(): Promise<void>;
}

/**
 * A WebSocket endpoint that accepts every upgrade and then never sends a byte: a
 * peer that never answers the hello.
 *
 * @returns The endpoint; `upgraded` resolves when the first socket is accepted.
 */
export function startSilentWebSocketServer(): AppServer & { upgraded: Promise<void> } {
  const upgraded = deferred();
  // An adapted socket whose owner never sends: the same endpoint as the library's sockets.
  const server = startAdaptedSocketServer(() => upgraded.resolve());
  return { port: server.port, close: () => server.close(), upgraded: upgraded.promise };
}

/**
 * A WebSocket endpoint whose server sockets go through this runtime's adapter
 * (`adaptBunSocket` on Bun, `adaptWebSocket` over `Deno.upgradeWebSocket` on Deno), as
 * the library's server uses them.
 *
 * @param onSocket Called with each accepted socket once it is open.
 * @returns The endpoint.
 */
export function startAdaptedSocketServer(onSocket: (socket: Socket) => void): AppServer {
  if (IS_BUN) {
    const adapted = new Map<BunServerWebSocket, BunSocket>();
    const server = bunGlobal().serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request, srv) =>
        srv.upgrade(request) ? undefined : new Response("Upgrade failed", { status: 400 }),
      websocket: {
        open(ws) {
          const socket = adaptBunSocket(ws as BunServerWebSocket);
          adapted.set(ws as BunServerWebSocket, socket);
          onSocket(socket);
        },
        message: (ws, message) => adapted.get(ws as BunServerWebSocket)?.dispatchMessage(message),
        close: (ws, code, reason) =>
          adapted.get(ws as BunServerWebSocket)?.dispatchClose(code, reason),
        drain: (ws) => adapted.get(ws as BunServerWebSocket)?.dispatchDrain(),
        maxPayloadLength: 64 * 1024 * 1024,
      },
    });
    return {
      port: server.port,
      async close() {
        for (const ws of adapted.keys()) ws.close();
        await server.stop(true);
      },
    };
  }
  const deno = denoGlobal();
  const sockets: WebSocket[] = [];
  const server = deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      const { socket, response } = deno.upgradeWebSocket(request);
      sockets.push(socket);
      const adapted = adaptWebSocket(socket);
      socket.addEventListener("open", () => onSocket(adapted), { once: true });
      return response;
    },
  );
  return {
    port: server.addr.port,
    async close() {
      await Promise.all(sockets.map((socket) => closeWebSocket(socket)));
      await server.shutdown();
    },
  };
}

/**
 * An existing app on 127.0.0.1:0 with `sockets` (a `noServer` server) mounted at `/ws`;
 * every other path answers `app <path>`. Deno: `Deno.serve` + `sockets.upgrade(request,
 * info)`; Bun: `Bun.serve` + `sockets.upgrade(request, server)` + `sockets.websocket`.
 */
export function startMountedApp(sockets: WebSocketServer): AppServer {
  const appText = (request: Request): Response =>
    new Response(`app ${new URL(request.url).pathname}`);
  if (IS_BUN) {
    const server = bunGlobal().serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request, srv) =>
        new URL(request.url).pathname === "/ws" ? sockets.upgrade(request, srv) : appText(request),
      websocket: sockets.websocket,
    });
    return {
      port: server.port,
      async close() {
        await server.stop(true);
      },
    };
  }
  const server = denoGlobal().serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) =>
      new URL(request.url).pathname === "/ws" ? sockets.upgrade(request, info)! : appText(request),
  );
  return {
    port: server.addr.port,
    close: () => server.shutdown(),
  };
}

/** What a raw WebSocket's close event said. */
export interface RawClose {
  code: number;
  reason: string;
}

/**
 * Opens a plain WebSocket that never sends anything.
 *
 * @returns The socket, and a promise of its close event.
 */
export function openRawWebSocket(url: string): { socket: WebSocket; closed: Promise<RawClose> } {
  const socket = new WebSocket(url);
  const closed = new Promise<RawClose>((resolve) => {
    socket.addEventListener(
      "close",
      (event) => resolve({ code: event.code, reason: event.reason }),
    );
  });
  return { socket, closed };
}

/** Closes a standard WebSocket and waits for its close event (bounded). */
async function closeWebSocket(socket: WebSocket): Promise<void> {
  if (socket.readyState === WebSocket.CLOSED) return;
  const closed = new Promise<void>((resolve) => {
    socket.addEventListener("close", () => resolve(), { once: true });
  });
  try {
    socket.close();
  } catch {
    return;
  }
  await withTimeout(closed, 5_000, "raw socket close").catch(() => {});
}

/** Closes a raw socket from {@linkcode openRawWebSocket}; for cleanup. */
export function closeRawWebSocket(socket: WebSocket): Promise<void> {
  return closeWebSocket(socket);
}
