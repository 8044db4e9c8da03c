/**
 * Graceful shutdown: `server.close()` with 200 exchanges in flight lets them finish,
 * refuses new exchanges and new connections with clear errors, resolves within
 * `closeTimeout`, and clients see a go-away (4006), not a failure.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  ConnectionClosedError,
  type ConnectionEvent,
  EventType,
  ExchangeRefusedError,
  HandshakeError,
  WebSocketClient,
  WebSocketServer,
} from "../mod.ts";
import { withTimeout } from "./_helpers.ts";

const GUARD = 20_000;
const T = { timeout: 60_000 };
const CLIENTS = 4;
const PER_CLIENT = 50;

/** A subscription's events, collected as they come. */
interface Collected {
  seen: ConnectionEvent[];
  /** Resolves once an event of `type` about `id` has been collected. */
  until(type: EventType, id: string): Promise<void>;
}

function collect(events: AsyncIterableIterator<ConnectionEvent>): Collected {
  const seen: ConnectionEvent[] = [];
  const waiters = new Set<() => void>();
  (async () => {
    for await (const event of events) {
      seen.push(event);
      for (const wake of [...waiters]) wake();
    }
  })();
  return {
    seen,
    until(type, id) {
      const found = () => seen.some((e) => e.type === type && e.connectionId === id);
      if (found()) return Promise.resolve();
      return withTimeout(
        new Promise<void>((resolve) => {
          const wake = () => {
            if (!found()) return;
            waiters.delete(wake);
            resolve();
          };
          waiters.add(wake);
        }),
        GUARD,
        `a ${type} event for ${id}`,
      );
    },
  };
}

describe("WebSocketServer.close() with exchanges in flight", () => {
  let server: WebSocketServer | undefined;
  const clients: WebSocketClient[] = [];

  afterEach(async () => {
    await Promise.all(
      clients.splice(0).map((c) => withTimeout(c.close(), GUARD, "client.close()")),
    );
    await withTimeout(server?.close() ?? Promise.resolve(), GUARD, "server.close()");
    server = undefined;
  });

  it(
    "WebSocketServer.close() lets 200 in-flight exchanges finish, refuses new ones and resolves within closeTimeout",
    T,
    async () => {
      const TOTAL = CLIENTS * PER_CLIENT;
      const closeTimeout = 30_000;
      const release = Promise.withResolvers<void>();
      const allArrived = Promise.withResolvers<void>();
      let arrived = 0;
      server = new WebSocketServer({
        hostname: "127.0.0.1",
        port: 0,
        closeTimeout,
        handler: async (request) => {
          if (++arrived === TOTAL) allArrived.resolve();
          await release.promise;
          return new Response(`done ${new URL(request.url).searchParams.get("i")}`);
        },
      });
      const serverEvents = collect(server.events());
      const url = `ws://127.0.0.1:${server.addr.port}`;
      const connections: Connection[] = [];
      const clientEvents: Collected[] = [];
      for (let c = 0; c < CLIENTS; c++) {
        const client = new WebSocketClient({ url, reconnect: { initialDelay: 50, maxDelay: 200 } })
          .withMetadata({ agent: c });
        clients.push(client);
        clientEvents.push(collect(client.events()));
        connections.push(await withTimeout(client.connect(), GUARD, "client.connect()"));
      }

      const exchanges = connections.flatMap((connection, c) =>
        Array.from({ length: PER_CLIENT }, async (_, k) => {
          const i = c * PER_CLIENT + k;
          const response = await connection.fetch(`/work?i=${i}`);
          return { i, status: response.status, text: await response.text() };
        })
      );
      const outcomes = Promise.allSettled(exchanges);
      await withTimeout(allArrived.promise, GUARD, `all ${TOTAL} handlers to start`);
      assert.equal(server.connections().length, CLIENTS);

      const closedOnClients = connections.map((connection) => connection.closed);
      const startedAt = performance.now();
      const closing = server.close();
      let closed = false;
      closing.then(() => closed = true);

      // New exchanges are refused with a clear error, whether or not the GOAWAY got there first.
      for (const connection of connections) {
        await assert.rejects(connection.fetch("/late"), (error: unknown) => {
          assert.ok(error instanceof ExchangeRefusedError, `late fetch: ${error}`);
          assert.match(error.message, /going away/i);
          return true;
        });
      }
      // So are new connections (503 before the upgrade, or 4006 right after it).
      const newcomer = new WebSocketClient({ url, keepAlive: false });
      await assert.rejects(withTimeout(newcomer.connect(), GUARD, "a new connect()"), (error) => {
        assert.ok(error instanceof HandshakeError, `new connection: ${error}`);
        assert.equal(error.retryable, true);
        return true;
      });
      await newcomer.close();
      assert.equal(closed, false, "close() waits for the in-flight exchanges");

      release.resolve();
      const results = await withTimeout(outcomes, GUARD, "the in-flight exchanges to settle");
      for (const [i, outcome] of results.entries()) {
        assert.equal(
          outcome.status,
          "fulfilled",
          `exchange ${i}: ${(outcome as { reason?: unknown }).reason}`,
        );
        const value =
          (outcome as PromiseFulfilledResult<{ i: number; status: number; text: string }>)
            .value;
        assert.deepEqual(value, { i, status: 200, text: `done ${i}` });
      }
      await withTimeout(closing, closeTimeout, "server.close() within closeTimeout");
      const elapsed = performance.now() - startedAt;
      assert.ok(elapsed < closeTimeout, `close() took ${elapsed} ms`);

      for (const [c, info] of (await Promise.all(closedOnClients)).entries()) {
        assert.equal(info.code, CloseCode.GoingAway, `client ${c} close code`);
        assert.equal(info.error, undefined, `client ${c} has no error`);
      }
      // Each client saw its connection received and closed, and no failure.
      for (const [c, collected] of clientEvents.entries()) {
        await collected.until(EventType.ConnectionClosed, connections[c].id);
        const seen = collected.seen;
        const types = seen.filter((e) => e.connectionId === connections[c].id).map((e) => e.type);
        assert.deepEqual(types, [EventType.ConnectionReceived, EventType.ConnectionClosed]);
        assert.ok(!seen.some((e) => e.type === EventType.ConnectionFailure), `client ${c} failed`);
      }
      for (const connection of connections) {
        await serverEvents.until(EventType.ConnectionClosed, connection.id);
      }
      assert.ok(!serverEvents.seen.some((e) => e.type === EventType.ConnectionFailure));
      assert.equal(server.connections().length, 0);
    },
  );

  it(
    "WebSocketServer.close() resolves within closeTimeout when handlers never finish",
    T,
    async () => {
      const closeTimeout = 300;
      const started = Promise.withResolvers<void>();
      server = new WebSocketServer({
        hostname: "127.0.0.1",
        port: 0,
        closeTimeout,
        handler: (request) => {
          started.resolve();
          return new Promise<Response>((_, reject) =>
            request.signal.addEventListener("abort", () => reject(request.signal.reason))
          );
        },
      });
      const client = new WebSocketClient({ url: `ws://127.0.0.1:${server.addr.port}` });
      clients.push(client);
      const events = collect(client.events());
      const connection = await withTimeout(client.connect(), GUARD, "client.connect()");
      const pending = Promise.allSettled([connection.fetch("/forever")]);
      await withTimeout(started.promise, GUARD, "the handler to start");
      const startedAt = performance.now();
      await withTimeout(server.close(), GUARD, "server.close()");
      const elapsed = performance.now() - startedAt;
      assert.ok(elapsed >= closeTimeout - 5, `close() returned after ${elapsed} ms`);
      assert.ok(elapsed < closeTimeout + 5_000, `close() took ${elapsed} ms`);
      const [outcome] = await withTimeout(pending, GUARD, "the pending fetch");
      assert.equal(outcome.status, "rejected");
      assert.ok((outcome as PromiseRejectedResult).reason instanceof ConnectionClosedError);
      const info = await connection.closed;
      assert.equal(info.code, CloseCode.GoingAway);
      await events.until(EventType.ConnectionClosed, connection.id);
      assert.deepEqual(
        events.seen.filter((e) => e.connectionId === connection.id).map((e) => [e.type, e.error]),
        [[EventType.ConnectionReceived, undefined], [EventType.ConnectionClosed, undefined]],
      );
    },
  );
});
