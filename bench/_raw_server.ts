/**
 * The runtime's own WebSocket server with no protocol on it (`Deno.upgradeWebSocket`,
 * `Bun.serve`'s `websocket`), the floor's exchange on it, and a client of it: the baselines
 * that `bench/server.ts` and `bench/client.ts` (`--kind ws|web`) and
 * `bench/cpu_per_exchange.ts` (`--kind web`) measure swaggersocket against.
 *
 * @module
 */

import { LARGE_CHUNK_BYTES } from "./_common.ts";

/** What a raw socket needs from either runtime. */
export interface RawSocket {
  /** Sends a message; `false` once the caller should wait for `whenDrained`. */
  send(data: Uint8Array | string): boolean;
  /** Resolves once the socket has room again. */
  whenDrained(): Promise<void>;
}

/** What each socket's messages go to: made per socket by a session factory. */
export type RawSession = (socket: RawSocket) => (data: Uint8Array | string) => void;

/** A listening raw server. */
export interface RawServer {
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** Sockets open now. */
  connections(): number;
  /** Stops listening; resolves once the open sockets have closed (Deno) or are closed (Bun). */
  close(): Promise<void>;
}

interface DenoLike {
  serve(
    options: { hostname: string; port: number; onListen?: () => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
  upgradeWebSocket(request: Request): { socket: WebSocket; response: Response };
}
interface BunServerWebSocketLike {
  send(data: Uint8Array | string): number;
  data: { onMessage?: (data: Uint8Array | string) => void; drained?: () => void };
}
interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (
      request: Request,
      server: { upgrade(request: Request, options: { data: unknown }): boolean },
    ) => Response | Promise<Response> | undefined;
    websocket: {
      open(ws: BunServerWebSocketLike): void;
      message(ws: BunServerWebSocketLike, data: string | Uint8Array): void;
      close(ws: BunServerWebSocketLike): void;
      drain(ws: BunServerWebSocketLike): void;
      maxPayloadLength: number;
      backpressureLimit: number;
    };
  }): { port: number; stop(closeActive: boolean): Promise<void> };
}
const bun = (globalThis as { Bun?: BunLike }).Bun;
const deno = (globalThis as { Deno?: DenoLike }).Deno;

/**
 * Listens on 127.0.0.1, a free port, and hands each socket's messages to `session`: binary
 * messages as `Uint8Array`s, text as strings.
 *
 * @param session Makes each socket's message handler.
 * @returns The server.
 */
export function listenRaw(session: RawSession): RawServer {
  let connections = 0;
  if (bun) {
    const server = bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request, server) =>
        server.upgrade(request, { data: {} })
          ? undefined
          : new Response("Upgrade Required", { status: 426 }),
      websocket: {
        open(ws) {
          connections++;
          let waiting: (() => void) | undefined;
          ws.data.drained = () => {
            const wake = waiting;
            waiting = undefined;
            wake?.();
          };
          ws.data.onMessage = session({
            // -1: queued behind backpressure (wait for drain); 0: dropped (never past the limit).
            send: (data) => ws.send(data) > 0,
            whenDrained: () => new Promise((resolve) => waiting = resolve),
          });
        },
        message: (ws, data) => ws.data.onMessage?.(data),
        close() {
          connections--;
        },
        drain: (ws) => ws.data.drained?.(),
        maxPayloadLength: 64 * 1024 * 1024,
        backpressureLimit: 64 * 1024 * 1024,
      },
    });
    return {
      port: server.port,
      connections: () => connections,
      close: () => server.stop(true),
    };
  }
  const server = deno!.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = deno!.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    const onMessage = session({
      send(data) {
        socket.send(data);
        return socket.bufferedAmount < 16 * LARGE_CHUNK_BYTES;
      },
      async whenDrained() {
        while (socket.bufferedAmount >= 16 * LARGE_CHUNK_BYTES) {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      },
    });
    socket.addEventListener("open", () => connections++);
    socket.addEventListener("close", () => connections--);
    socket.addEventListener("message", (event) => {
      const data = event.data;
      onMessage(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
    });
    return response;
  });
  return {
    port: server.addr.port,
    connections: () => connections,
    close: () => server.shutdown(),
  };
}

/** The URL of the floor's request (its path is what `handler` routes on). */
const WEB_ECHO_URL = "http://localhost/echo";

/**
 * The floor's exchange, no protocol (`bench/server.ts`'s `web` kind): each binary message is
 * the body of a `POST /echo`; the `Request` a handler is owed (with a `signal`) is built,
 * `handler` called, its `Response` read with `arrayBuffer()` and the bytes sent back.
 *
 * @param handler What serves the requests.
 * @returns A session factory for `listenRaw`.
 */
export function webSession(handler: (request: Request) => Promise<Response>): RawSession {
  return (socket) => async (data) => {
    const controller = new AbortController();
    const response = await handler(
      new Request(WEB_ECHO_URL, {
        method: "POST",
        body: data as BodyInit,
        signal: controller.signal,
      }),
    );
    socket.send(new Uint8Array(await response.arrayBuffer()));
  };
}

/** A standard `WebSocket` client of a raw server, whose answers come in order. */
export interface RawClient {
  readonly ws: WebSocket;
  /** The next answer: answers go to waiters first come, first served. */
  next(): Promise<ArrayBuffer | string>;
  /** While set, binary messages go here instead of to a waiter (a download). */
  onBinary: ((data: ArrayBuffer) => void) | undefined;
}

/**
 * Dials a raw server on 127.0.0.1.
 *
 * @param port Its port.
 * @returns The open client.
 */
export async function dialRaw(port: number): Promise<RawClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  ws.binaryType = "arraybuffer";
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error("Cannot connect")), { once: true });
  });
  const waiters: ((data: ArrayBuffer | string) => void)[] = [];
  let waiterHead = 0;
  const client: RawClient = {
    ws,
    next: () => new Promise((resolve) => waiters.push(resolve)),
    onBinary: undefined,
  };
  ws.addEventListener("message", (event: MessageEvent) => {
    if (client.onBinary && typeof event.data !== "string") return client.onBinary(event.data);
    const waiter = waiters[waiterHead];
    waiters[waiterHead++] = undefined!;
    if (waiterHead > 1024) {
      waiters.splice(0, waiterHead);
      waiterHead = 0;
    }
    waiter?.(event.data);
  });
  return client;
}
