/**
 * WebSocketServer over real loopback sockets: listening, paths, event subscriptions,
 * connection lookups, graceful close, the handler / authorize / limits / origin
 * options, and mounting on an existing `Deno.serve` or `Bun.serve` app.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type AuthorizeContext,
  CloseCode,
  Connection,
  type ConnectionEvent,
  ConnectionType,
  EventType,
  HandshakeError,
  WebSocketServer,
} from "../mod.ts";
import { IS_BUN, IS_DENO, nextEvent, withTimeout } from "./_helpers.ts";
import { type AppServer, deferred, Resources, startMountedApp, urlOf } from "./_server_helpers.ts";

const GUARD = 10_000;

/** Reads a subscription to its end, bounded; returns what was left in it. */
async function drain(events: AsyncIterableIterator<ConnectionEvent>): Promise<ConnectionEvent[]> {
  return await withTimeout(
    (async () => {
      const rest: ConnectionEvent[] = [];
      for await (const event of events) rest.push(event);
      return rest;
    })(),
    GUARD,
    "the event stream to end",
  );
}

describe("WebSocketServer", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  it("WebSocketServer listens at once and server.addr has the port right away", async () => {
    const server = resources.server();
    assert.equal(server.addr.hostname, "127.0.0.1");
    assert.equal(typeof server.addr.port, "number");
    assert.ok(server.addr.port > 0 && server.addr.port < 65_536, `port ${server.addr.port}`);
    // Listening already: a plain HTTP request is answered (426, not a refused connection).
    const response = await withTimeout(
      fetch(`http://127.0.0.1:${server.addr.port}/`),
      GUARD,
      "fetch()",
    );
    await response.body?.cancel();
    assert.equal(response.status, 426);
    const connection = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "connect()",
    );
    assert.ok(connection.id);
  });

  it("WebSocketServer path option answers 404 elsewhere and 426 to a plain GET", async () => {
    const server = resources.server({ path: "/agents" });
    const base = `http://127.0.0.1:${server.addr.port}`;

    const elsewhere = await withTimeout(fetch(`${base}/other`), GUARD, "fetch(/other)");
    await elsewhere.body?.cancel();
    assert.equal(elsewhere.status, 404);

    const plain = await withTimeout(fetch(`${base}/agents`), GUARD, "fetch(/agents)");
    await plain.text();
    assert.equal(plain.status, 426);
    assert.equal(plain.headers.get("upgrade")?.toLowerCase(), "websocket");

    // A WebSocket to another path is refused; one to the path connects.
    await assert.rejects(
      withTimeout(resources.client(urlOf(server, "/other")).connect(), GUARD, "connect(/other)"),
      HandshakeError,
    );
    const connection = await withTimeout(
      resources.client(urlOf(server, "/agents")).connect(),
      GUARD,
      "connect(/agents)",
    );
    assert.equal(connection.type, ConnectionType.ClientSide);
  });

  it("WebSocketServer.events() gives each call its own subscription; an idle one blocks nobody", async () => {
    const server = resources.server();
    const first = server.events();
    const second = server.events();
    const idle = server.events(); // never read until the end

    const client = resources.client(urlOf(server));
    const connection = await withTimeout(client.connect(), GUARD, "connect()");

    const a = await nextEvent(first, EventType.ConnectionReceived);
    const b = await nextEvent(second, EventType.ConnectionReceived);
    assert.equal(a.connectionId, connection.id);
    assert.equal(b.connectionId, connection.id);
    assert.ok(a.connection instanceof Connection);
    assert.equal(a.connection, b.connection);
    assert.equal(a.connection!.type, ConnectionType.ServerSide);

    await withTimeout(client.close(), GUARD, "client.close()");
    const aClosed = await nextEvent(first, EventType.ConnectionClosed);
    const bClosed = await nextEvent(second, EventType.ConnectionClosed);
    assert.equal(aClosed.connectionId, connection.id);
    assert.equal(bClosed.connectionId, connection.id);

    // The idle subscription kept its own copy of everything.
    const kept = await withTimeout(idle.next(), GUARD, "idle.next()");
    assert.equal(kept.done, false);
    assert.equal(kept.value?.type, EventType.ConnectionReceived);
    assert.equal(kept.value?.connectionId, connection.id);

    // A subscription made now starts now: it sees the next connection, not the old ones.
    const late = server.events();
    const again = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "second connect()",
    );
    const seen = await nextEvent(late, EventType.ConnectionReceived);
    assert.equal(seen.connectionId, again.id);
    await Promise.all([first.return?.(), second.return?.(), idle.return?.(), late.return?.()]);
  });

  it("WebSocketServer.connections(), connection(id), metadata(id) and remoteAddr(id) describe live connections", async () => {
    const server = resources.server();
    const events = server.events();
    assert.deepEqual(server.connections(), []);

    const metaA = { name: "agent-a", tags: { region: "eu", rack: 3 }, roles: ["x", "y"] };
    const metaB = { name: "agent-b", tags: { region: "us", rack: 3 }, roles: ["x"] };
    const clientA = await withTimeout(
      resources.client(urlOf(server)).withMetadata(metaA).connect(),
      GUARD,
      "connect() a",
    );
    const clientB = await withTimeout(
      resources.client(urlOf(server)).withMetadata(metaB).connect(),
      GUARD,
      "connect() b",
    );
    const received = new Set([
      (await nextEvent(events, EventType.ConnectionReceived)).connectionId,
      (await nextEvent(events, EventType.ConnectionReceived)).connectionId,
    ]);
    assert.deepEqual(received, new Set([clientA.id, clientB.id]));

    const ids = server.connections().map((connection) => connection.id).sort();
    assert.deepEqual(ids, [clientA.id, clientB.id].sort());
    for (const connection of server.connections()) {
      assert.ok(connection instanceof Connection);
      assert.equal(connection.type, ConnectionType.ServerSide);
    }

    const serverA = server.connection(clientA.id);
    assert.ok(serverA);
    assert.equal(serverA.id, clientA.id);
    assert.deepEqual(serverA.metadata, metaA);
    assert.equal(server.connection("01ARZ3NDEKTSV4RRFFQ69G5FAV"), undefined);

    assert.deepEqual(server.metadata(clientA.id), metaA);
    assert.deepEqual(server.metadata(clientB.id), metaB);
    assert.equal(server.metadata("no-such-id"), undefined);

    const addrA = server.remoteAddr(clientA.id);
    const addrB = server.remoteAddr(clientB.id);
    assert.match(addrA ?? "", /^127\.0\.0\.1:\d+$/);
    assert.match(addrB ?? "", /^127\.0\.0\.1:\d+$/);
    assert.notEqual(addrA, addrB, "two sockets have two source ports");
    assert.notEqual(Number(addrA!.split(":")[1]), 0);
    assert.notEqual(Number(addrA!.split(":")[1]), server.addr.port);
    assert.equal(server.remoteAddr("no-such-id"), undefined);
    await events.return?.();
  });

  it("WebSocketServer.connectionFromMetadata() matches JSON structurally", async () => {
    const server = resources.server();
    const events = server.events();
    const metaA = { name: "agent-a", tags: { region: "eu", rack: 3 }, roles: ["x", "y"] };
    const metaB = { name: "agent-b", tags: { region: "us", rack: 3, spare: null }, roles: [] };
    const clientA = await withTimeout(
      resources.client(urlOf(server)).withMetadata(metaA).connect(),
      GUARD,
      "connect() a",
    );
    const clientB = await withTimeout(
      resources.client(urlOf(server)).withMetadata(metaB).connect(),
      GUARD,
      "connect() b",
    );
    await nextEvent(events, EventType.ConnectionReceived);
    await nextEvent(events, EventType.ConnectionReceived);

    // Fresh objects, keys in another order at every level.
    assert.equal(
      server.connectionFromMetadata({
        roles: ["x", "y"],
        tags: { rack: 3, region: "eu" },
        name: "agent-a",
      })
        ?.id,
      clientA.id,
    );
    assert.equal(
      server.connectionFromMetadata({
        tags: { spare: null, rack: 3, region: "us" },
        roles: [],
        name: "agent-b",
      })
        ?.id,
      clientB.id,
    );
    // Near misses match nothing: array order, a missing key, an extra key, a type change.
    assert.equal(
      server.connectionFromMetadata({
        name: "agent-a",
        tags: { region: "eu", rack: 3 },
        roles: ["y", "x"],
      }),
      undefined,
    );
    assert.equal(
      server.connectionFromMetadata({ name: "agent-a", tags: { region: "eu" }, roles: ["x", "y"] }),
      undefined,
    );
    assert.equal(
      server.connectionFromMetadata({ ...metaA, extra: true }),
      undefined,
    );
    assert.equal(
      server.connectionFromMetadata({
        name: "agent-a",
        tags: { region: "eu", rack: "3" },
        roles: ["x", "y"],
      }),
      undefined,
    );
    assert.equal(
      server.connectionFromMetadata({
        name: "agent-b",
        tags: { region: "us", rack: 3 },
        roles: [],
      }),
      undefined,
      "a null-valued key is still a key",
    );
    assert.equal(server.connectionFromMetadata("agent-a"), undefined);
    await events.return?.();
  });

  it("WebSocketServer.connectionFromMetadata() accepts a predicate", async () => {
    const server = resources.server();
    const events = server.events();
    const clientA = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ role: "printer", floor: 2 }).connect(),
      GUARD,
      "connect() a",
    );
    const clientB = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ role: "scanner", floor: 2 }).connect(),
      GUARD,
      "connect() b",
    );
    await nextEvent(events, EventType.ConnectionReceived);
    await nextEvent(events, EventType.ConnectionReceived);

    const seen: unknown[] = [];
    const scanner = server.connectionFromMetadata((metadata, connection) => {
      seen.push(metadata);
      assert.ok(connection instanceof Connection);
      return (metadata as { role?: string }).role === "scanner";
    });
    assert.equal(scanner?.id, clientB.id);
    assert.ok(seen.length >= 1);
    assert.equal(
      server.connectionFromMetadata((_metadata, connection) => connection.id === clientA.id)?.id,
      clientA.id,
    );
    assert.equal(
      server.connectionFromMetadata((metadata) => (metadata as { floor?: number }).floor === 9),
      undefined,
    );
    await events.return?.();
  });

  it("WebSocketServer emits ConnectionClosed and forgets a connection when its client closes", async () => {
    const server = resources.server();
    const events = server.events();
    const client = resources.client(urlOf(server)).withMetadata({ name: "leaving" });
    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(server.connections().length, 1);

    await withTimeout(client.close(), GUARD, "client.close()");
    const closed = await nextEvent(events, EventType.ConnectionClosed);
    assert.equal(closed.connectionId, connection.id);
    assert.equal(closed.connection, received.connection);
    assert.equal(closed.error, undefined, "an orderly close carries no error");
    assert.deepEqual(server.connections(), []);
    assert.equal(server.connection(connection.id), undefined);
    assert.equal(server.metadata(connection.id), undefined);
    assert.equal(server.remoteAddr(connection.id), undefined);
    assert.equal(server.connectionFromMetadata({ name: "leaving" }), undefined);
    assert.equal((await withTimeout(received.connection!.closed, GUARD, "closed")).code, 1000);
    await events.return?.();
  });

  it("WebSocketServer.close() lets an in-flight exchange finish, then ends every events() iterator", async () => {
    const started = deferred();
    const release = deferred();
    let finishedAfterClose = false;
    let closeCalled = false;
    const server = resources.server({
      handler: async () => {
        started.resolve();
        await release.promise;
        finishedAfterClose = closeCalled;
        return new Response("finished during close");
      },
    });
    const first = server.events();
    const second = server.events();
    const client = resources.client(urlOf(server), { keepAlive: false });
    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    await nextEvent(first, EventType.ConnectionReceived);

    const pending = connection.fetch("/slow");
    await withTimeout(started.promise, GUARD, "the handler to start");
    const closing = server.close();
    closeCalled = true;
    release.resolve();

    const response = await withTimeout(pending, GUARD, "the in-flight fetch");
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "finished during close");
    assert.equal(finishedAfterClose, true);
    await withTimeout(closing, GUARD, "server.close()");

    // Both iterators end; what was left in them ends with the ConnectionClosed.
    const restFirst = await drain(first);
    const restSecond = await drain(second);
    assert.equal(restFirst.at(-1)?.type, EventType.ConnectionClosed);
    assert.equal(restSecond.at(-1)?.type, EventType.ConnectionClosed);
    assert.deepEqual(await first.next(), { done: true, value: undefined });
    // A subscription made after close() is already over.
    assert.deepEqual(await drain(server.events()), []);
    assert.deepEqual(server.connections(), []);
    const info = await withTimeout(connection.closed, GUARD, "client side closed");
    assert.equal(info.code, CloseCode.GoingAway);
    // Closing twice is fine.
    await withTimeout(server.close(), GUARD, "second server.close()");
  });

  it("WebSocketServer[Symbol.asyncDispose]() closes the server and its connections", async () => {
    const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
    resources.defer("server.close()", () => server.close());
    const events = server.events();
    const client = resources.client(urlOf(server), { keepAlive: false });
    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    await nextEvent(events, EventType.ConnectionReceived);

    assert.equal(typeof server[Symbol.asyncDispose], "function");
    await withTimeout(server[Symbol.asyncDispose](), GUARD, "server[Symbol.asyncDispose]()");
    await withTimeout(connection.closed, GUARD, "the client's connection to end");
    const rest = await drain(events);
    assert.equal(rest.at(-1)?.type, EventType.ConnectionClosed);
    // No longer listening: a new client cannot connect.
    await assert.rejects(
      withTimeout(
        resources.client(urlOf(server), { keepAlive: false }).connect(),
        GUARD,
        "connect() after dispose",
      ),
      HandshakeError,
    );
  });

  it("WebSocketServer handler option serves every connection", async () => {
    const server = resources.server({
      handler: (request, info) =>
        Response.json({
          path: new URL(request.url).pathname,
          metadata: info.connection.metadata,
          type: info.connection.type,
        }),
    });
    const one = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ name: "one" }).connect(),
      GUARD,
      "connect() one",
    );
    const two = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ name: "two" }).connect(),
      GUARD,
      "connect() two",
    );
    const [a, b] = await withTimeout(
      Promise.all([one.fetch("/pets/1"), two.fetch("/pets/2")]),
      GUARD,
      "fetch() on both",
    );
    assert.deepEqual(await a.json(), {
      path: "/pets/1",
      metadata: { name: "one" },
      type: ConnectionType.ServerSide,
    });
    assert.deepEqual(await b.json(), {
      path: "/pets/2",
      metadata: { name: "two" },
      type: ConnectionType.ServerSide,
    });
  });

  it("WebSocketServer authorize option sees the upgrade request's headers, the metadata and the address", async () => {
    const contexts: AuthorizeContext[] = [];
    const server = resources.server({
      authorize: (context) => {
        contexts.push(context);
        return context.request.headers.get("authorization") === "Bearer s3cret";
      },
    });
    const events = server.events();
    const connection = await withTimeout(
      resources.client(urlOf(server, "/agents?fleet=7"), {
        headers: { authorization: "Bearer s3cret", "x-agent-version": "1.2.3" },
      }).withMetadata({ name: "agent-7", labels: ["a", "b"] }).connect(),
      GUARD,
      "connect()",
    );
    await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(contexts.length, 1);
    const [context] = contexts;
    assert.ok(context.request instanceof Request);
    assert.equal(context.request.headers.get("authorization"), "Bearer s3cret");
    assert.equal(context.request.headers.get("x-agent-version"), "1.2.3");
    const url = new URL(context.request.url);
    assert.equal(url.pathname, "/agents");
    assert.equal(url.searchParams.get("fleet"), "7");
    assert.deepEqual(context.metadata, { name: "agent-7", labels: ["a", "b"] });
    assert.match(context.remoteAddr, /^127\.0\.0\.1:\d+$/);
    assert.equal(context.remoteAddr, server.remoteAddr(connection.id));

    // Without the header the same server refuses.
    await assert.rejects(
      withTimeout(resources.client(urlOf(server)).connect(), GUARD, "connect() without token"),
      (error: unknown) =>
        error instanceof HandshakeError && error.code === CloseCode.Unauthorized &&
        error.retryable === false,
    );
    assert.equal(contexts.length, 2);
    await events.return?.();
  });

  it("WebSocketServer limits.maxConnections refuses the extra client with 4009", async () => {
    const server = resources.server({ limits: { maxConnections: 1 } });
    const events = server.events();
    const first = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "first connect()",
    );
    await nextEvent(events, EventType.ConnectionReceived);
    await assert.rejects(
      withTimeout(
        resources.client(urlOf(server), { keepAlive: false }).connect(),
        GUARD,
        "second connect()",
      ),
      (error: unknown) =>
        error instanceof HandshakeError && error.code === CloseCode.TooManyConnections &&
        error.code === 4009,
    );
    // The first connection is untouched.
    assert.deepEqual(server.connections().map((c) => c.id), [first.id]);
    assert.equal(first.isClosed, false);
  });

  it("WebSocketServer allowedOrigins refuses a client whose Origin is not listed", async () => {
    const server = resources.server({ allowedOrigins: ["https://app.example"] });
    const events = server.events();
    // Refused after the upgrade with 4011, so the client knows not to retry.
    await assert.rejects(
      withTimeout(
        resources.client(urlOf(server), {
          keepAlive: false,
          headers: { origin: "https://evil.example" },
        }).connect(),
        GUARD,
        "connect() from a foreign origin",
      ),
      (error: unknown) =>
        error instanceof HandshakeError && error.code === CloseCode.OriginNotAllowed &&
        error.retryable === false,
    );
    assert.deepEqual(server.connections(), []);

    // A listed origin, and no origin at all (non-browser agents), are let in.
    const allowed = await withTimeout(
      resources.client(urlOf(server), { headers: { origin: "https://app.example" } }).connect(),
      GUARD,
      "connect() from the listed origin",
    );
    const noOrigin = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "connect() without an origin",
    );
    const ids = new Set([
      (await nextEvent(events, EventType.ConnectionReceived)).connectionId,
      (await nextEvent(events, EventType.ConnectionReceived)).connectionId,
    ]);
    assert.deepEqual(ids, new Set([allowed.id, noOrigin.id]));

    await events.return?.();
  });

  describe("noServer: true, mounted on an existing app", () => {
    const mountedTest = async (): Promise<void> => {
      const sockets = new WebSocketServer({
        noServer: true,
        handler: (request) => new Response(`socket ${new URL(request.url).pathname}`),
      });
      assert.throws(() => sockets.addr, TypeError);
      const app: AppServer = startMountedApp(sockets);
      // Closed in reverse: the mounted connections first, then the app.
      resources.defer("app.close()", () => app.close());
      resources.defer("sockets.close()", () => sockets.close());
      const events = sockets.events();

      const page = await withTimeout(
        fetch(`http://127.0.0.1:${app.port}/index.html`),
        GUARD,
        "fetch() the app route",
      );
      assert.equal(page.status, 200);
      assert.equal(await page.text(), "app /index.html");

      const client = resources.client(`ws://127.0.0.1:${app.port}/ws`)
        .withMetadata({ name: "mounted" });
      const connection = await withTimeout(client.connect(), GUARD, "connect() to /ws");
      const received = await nextEvent(events, EventType.ConnectionReceived);
      assert.equal(received.connectionId, connection.id);
      assert.deepEqual(sockets.metadata(connection.id), { name: "mounted" });
      assert.match(sockets.remoteAddr(connection.id) ?? "", /^127\.0\.0\.1:\d+$/);

      // Agent → server over the mounted socket.
      const response = await withTimeout(connection.fetch("/pets"), GUARD, "agent fetch()");
      assert.equal(await response.text(), "socket /pets");
      // Server → agent over the same socket.
      connection.serve((request) => new Response(`agent ${new URL(request.url).pathname}`));
      const back = await withTimeout(
        received.connection!.fetch("/status"),
        GUARD,
        "server fetch()",
      );
      assert.equal(await back.text(), "agent /status");

      await withTimeout(client.close(), GUARD, "client.close()");
      await nextEvent(events, EventType.ConnectionClosed);
      await events.return?.();
    };

    if (IS_DENO) {
      it("WebSocketServer.upgrade() mounts on Deno.serve next to the app's routes", mountedTest);
    }
    if (IS_BUN) {
      it(
        "WebSocketServer.upgrade() and .websocket mount on Bun.serve next to the app's routes",
        mountedTest,
      );
    }
  });
});
