/**
 * A TCP proxy on 127.0.0.1:0 for fault injection (`node:net`, so it runs under Deno and Bun).
 *
 * Each accepted connection is paired with a new connection to the target port, and bytes
 * are copied both ways. `blackhole()` models a silent network partition: the proxy keeps
 * every socket open but holds back everything (data and closes) in both directions, also
 * on connections accepted meanwhile; `heal()` lets the held bytes through in order, as TCP
 * retransmission would. `resetAll()` destroys every connection at once (the peers see the
 * TCP connection drop without a WebSocket close frame).
 *
 * @module
 */

import net from "node:net";
import {
  type Connection,
  EventType,
  WebSocketClient,
  type WebSocketClientOptions,
  WebSocketServer,
  type WebSocketServerOptions,
} from "../mod.ts";
import { nextEvent, withTimeout } from "./_helpers.ts";

/** A running proxy. */
export interface TcpProxy {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections currently open. */
  readonly open: number;
  /** Where new connections go; change it to "restart" a server behind a stable port. */
  target: number;
  /** Resolves once `accepted` reaches `count`. */
  waitAccepted(count: number, ms?: number): Promise<void>;
  /** Stops forwarding in both directions; sockets stay open and bytes are held. */
  blackhole(): void;
  /** Forwards again, held bytes and closes first. */
  heal(): void;
  /** Destroys every proxied connection abruptly. */
  resetAll(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

interface Side {
  socket: net.Socket;
  /** Bytes read from this side, held while blackholed, to write to the other side. */
  held: Uint8Array[];
  /** This side ended or closed while blackholed; tell the other side on heal. */
  closedWhileHeld: boolean;
}

interface Link {
  down: Side;
  up: Side;
}

/**
 * Starts a proxy to `127.0.0.1:targetPort`.
 *
 * @param targetPort Where to forward.
 * @returns The proxy, listening.
 */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let blackholed = false;
  let accepted = 0;
  let target = targetPort;
  const acceptWaiters: { count: number; resolve: () => void }[] = [];

  const destroy = (link: Link): void => {
    links.delete(link);
    link.down.socket.destroy();
    link.up.socket.destroy();
  };

  const wire = (link: Link, from: Side, to: Side): void => {
    from.socket.on("data", (chunk: Uint8Array) => {
      if (blackholed) from.held.push(chunk);
      else to.socket.write(chunk);
    });
    from.socket.on("close", () => {
      if (!links.has(link)) return;
      if (blackholed) from.closedWhileHeld = true;
      else destroy(link);
    });
    // Errors (ECONNREFUSED, ECONNRESET) end the link; "close" follows.
    from.socket.on("error", () => {});
  };

  const server = net.createServer((socket) => {
    accepted++;
    for (const waiter of [...acceptWaiters]) {
      if (accepted >= waiter.count) {
        acceptWaiters.splice(acceptWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
    const upstream = net.connect({ host: "127.0.0.1", port: target });
    const link: Link = {
      down: { socket, held: [], closedWhileHeld: false },
      up: { socket: upstream, held: [], closedWhileHeld: false },
    };
    links.add(link);
    socket.setNoDelay(true);
    upstream.setNoDelay(true);
    wire(link, link.down, link.up);
    wire(link, link.up, link.down);
  });
  server.on("error", () => {});

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return links.size;
    },
    get target() {
      return target;
    },
    set target(value: number) {
      target = value;
    },
    waitAccepted(count, ms = 10_000) {
      if (accepted >= count) return Promise.resolve();
      return withTimeout(
        new Promise<void>((resolve) => acceptWaiters.push({ count, resolve })),
        ms,
        `the proxy to accept ${count} connections`,
      );
    },
    blackhole() {
      blackholed = true;
    },
    heal() {
      blackholed = false;
      for (const link of [...links]) {
        for (const [from, to] of [[link.down, link.up], [link.up, link.down]] as const) {
          for (const chunk of from.held.splice(0)) to.socket.write(chunk);
        }
        if (link.down.closedWhileHeld || link.up.closedWhileHeld) {
          // Let the held bytes go out before the other side learns of the close.
          link.down.socket.end();
          link.up.socket.end();
        }
      }
    },
    resetAll() {
      for (const link of [...links]) destroy(link);
    },
    close() {
      for (const link of [...links]) destroy(link);
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A server, a proxy in front of it, and a client connected through the proxy. */
export interface ProxiedPair {
  server: WebSocketServer;
  proxy: TcpProxy;
  client: WebSocketClient;
  /** The server's end of the connection. */
  serverSide: Connection;
  /** The client's end of the connection. */
  clientSide: Connection;
  /** Closes client, proxy and server. */
  close(): Promise<void>;
}

/**
 * Starts a server on 127.0.0.1:0, a proxy in front of it, and connects a client
 * through the proxy.
 */
export async function startProxiedPair(
  serverOptions: WebSocketServerOptions = {},
  clientOptions: Partial<WebSocketClientOptions> = {},
  metadata: unknown = { name: "proxied-agent" },
): Promise<ProxiedPair> {
  const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, ...serverOptions });
  const proxy = await startProxy(server.addr.port);
  const events = server.events();
  const client = new WebSocketClient({ url: `ws://127.0.0.1:${proxy.port}`, ...clientOptions })
    .withMetadata(metadata);
  const clientSide = await withTimeout(client.connect(), 10_000, "client.connect()");
  const received = await nextEvent(events, EventType.ConnectionReceived);
  await events.return?.();
  return {
    server,
    proxy,
    client,
    serverSide: received.connection!,
    clientSide,
    close: async () => {
      await withTimeout(client.close(), 10_000, "client.close()").catch(() => {});
      await proxy.close();
      await withTimeout(server.close(), 15_000, "server.close()");
    },
  };
}
