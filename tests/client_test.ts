/**
 * WebSocketClient over real loopback sockets: metadata, connect(), the connection it
 * returns, close(), refusals (at connect and later, without hammering the server), bad
 * URLs, unreachable servers, handshake timeouts on both ends, and client events.
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
  WebSocketClient,
} from "../mod.ts";
import { nextEvent, withTimeout } from "./_helpers.ts";
import {
  closeRawWebSocket,
  openRawWebSocket,
  Resources,
  startSilentWebSocketServer,
  urlOf,
} from "./_server_helpers.ts";

const GUARD = 10_000;
/** Crockford base32, 26 characters: a ULID. */
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe("WebSocketClient", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  it("WebSocketClient.withMetadata() chains and the metadata reaches the server", async () => {
    const server = resources.server();
    const events = server.events();
    const client = resources.client(urlOf(server));
    const metadata = { name: "agent-7", labels: { site: "lab", rack: 2 }, caps: ["print", "scan"] };
    assert.equal(client.withMetadata({ name: "replaced" }), client);
    assert.equal(client.withMetadata("also replaced").withMetadata(metadata), client);

    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.deepEqual(received.connection!.metadata, metadata);
    assert.deepEqual(server.metadata(connection.id), metadata);
    assert.deepEqual(connection.metadata, metadata);
    assert.equal(server.connectionFromMetadata(metadata)?.id, connection.id);
    await events.return?.();
  });

  it("WebSocketClient.withMetadata() is optional: the server stores null", async () => {
    const server = resources.server();
    const events = server.events();
    const connection = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "connect()",
    );
    await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(server.metadata(connection.id), null);
    await events.return?.();
  });

  it("WebSocketClient.connect() returns the Connection, with the same ULID id on both ends", async () => {
    const server = resources.server();
    const events = server.events();
    const client = resources.client(urlOf(server));
    assert.equal(client.connection, undefined, "no connection before connect()");

    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    assert.ok(connection instanceof Connection);
    assert.match(connection.id, ULID);
    assert.equal(connection.type, ConnectionType.ClientSide);
    assert.equal(connection.type, "ClientSide");
    assert.equal(connection.isClosed, false);
    assert.equal(client.connection, connection);

    const received = await nextEvent(events, EventType.ConnectionReceived);
    const serverSide = received.connection!;
    assert.equal(serverSide.type, ConnectionType.ServerSide);
    assert.equal(serverSide.type, "ServerSide");
    assert.equal(serverSide.id, connection.id);
    assert.equal(received.connectionId, connection.id);
    assert.equal(server.connection(connection.id), serverSide);

    // Connected already: connect() again gives the same connection, no new socket.
    assert.equal(await withTimeout(client.connect(), GUARD, "connect() again"), connection);
    assert.equal(server.connections().length, 1);

    // Both ends work: a round trip each way.
    serverSide.serve(() => new Response("from the server"));
    connection.serve(() => new Response("from the agent"));
    const [up, down] = await withTimeout(
      Promise.all([connection.fetch("/up"), serverSide.fetch("/down")]),
      GUARD,
      "fetch() both ways",
    );
    assert.equal(await up.text(), "from the server");
    assert.equal(await down.text(), "from the agent");
    await events.return?.();
  });

  it("WebSocketClient.close() ends the connection and stops reconnecting", async () => {
    let authorizations = 0;
    const server = resources.server({
      authorize: () => {
        authorizations++;
        return true;
      },
    });
    const events = server.events();
    const client = resources.client(urlOf(server), {
      reconnect: { initialDelay: 1, jitter: 0 },
    });
    const clientEvents = client.events();
    const connection = await withTimeout(client.connect(), GUARD, "connect()");
    await nextEvent(events, EventType.ConnectionReceived);

    await withTimeout(client.close(), GUARD, "client.close()");
    assert.equal(connection.isClosed, true);
    const info = await withTimeout(connection.closed, GUARD, "connection.closed");
    assert.equal(info.code, CloseCode.Normal);

    const closed = await nextEvent(events, EventType.ConnectionClosed);
    assert.equal(closed.connectionId, connection.id);
    assert.deepEqual(server.connections(), []);

    // The client's own stream reports the close, then ends (nothing more will happen).
    const rest: ConnectionEvent[] = [];
    await withTimeout(
      (async () => {
        for await (const event of clientEvents) rest.push(event);
      })(),
      GUARD,
      "client.events() to end",
    );
    assert.deepEqual(rest.map((event) => event.type), [
      EventType.ConnectionReceived,
      EventType.ConnectionClosed,
    ]);

    // A reconnect 1 ms after the close would race this probe; none comes, and a
    // closed client refuses to dial again.
    const probe = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "probe connect()",
    );
    const next = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(next.connectionId, probe.id);
    assert.equal(authorizations, 2, "the original connect and the probe, no reconnect");
    await assert.rejects(client.connect(), TypeError);
    assert.equal(client.connection, connection, "the ended connection is not replaced");
    await withTimeout(client.close(), GUARD, "a second client.close()");
    await events.return?.();
  });

  it("WebSocketClient.connect() rejects with HandshakeError 4003, not retryable, when authorize refuses", async () => {
    const contexts: AuthorizeContext[] = [];
    const server = resources.server({
      authorize: (context) => {
        contexts.push(context);
        return (context.metadata as { name?: string }).name !== "intruder";
      },
    });
    const events = server.events();
    const client = resources.client(urlOf(server)).withMetadata({ name: "intruder" });
    const error = await withTimeout(
      client.connect().then(
        () => assert.fail("connect() resolved"),
        (error: unknown) => error,
      ),
      GUARD,
      "connect() to be refused",
    );
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.name, "HandshakeError");
    assert.equal(error.code, CloseCode.Unauthorized);
    assert.equal(error.code, 4003);
    assert.equal(error.retryable, false);
    assert.equal(contexts.length, 1);
    assert.deepEqual(contexts[0].metadata, { name: "intruder" });
    assert.deepEqual(server.connections(), []);
    assert.equal(client.connection, undefined);

    // connect() did not retry on its own, and the server never announced the refused
    // client: the next event is the next (allowed) client.
    assert.equal(contexts.length, 1);
    const allowed = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ name: "friend" }).connect(),
      GUARD,
      "connect() as a friend",
    );
    const first = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(first.connectionId, allowed.id);
    assert.equal(contexts.length, 2);
    await events.return?.();
  });

  it("WebSocketClient with keepAlive does not hammer a server that starts refusing it", async () => {
    let refusing = false;
    let authorizations = 0;
    let refusals = 0;
    const server = resources.server({
      authorize: () => {
        authorizations++;
        if (refusing) refusals++;
        return !refusing;
      },
    });
    const events = server.events();
    const client = resources.client(urlOf(server), {
      keepAlive: true,
      reconnect: { initialDelay: 10, maxDelay: 20, jitter: 0 },
    });
    const clientEvents = client.events();
    const first = await withTimeout(client.connect(), GUARD, "connect()");
    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(
      (await nextEvent(clientEvents, EventType.ConnectionReceived)).connectionId,
      first.id,
    );
    assert.equal(authorizations, 1);

    // The server starts refusing, then the connection drops (a restart, say).
    refusing = true;
    await withTimeout(
      received.connection!.close({ timeout: 0, code: CloseCode.GoingAway, reason: "restart" }),
      GUARD,
      "server-side close()",
    );
    const lost = await nextEvent(clientEvents, EventType.ConnectionClosed);
    assert.equal(lost.connectionId, first.id);

    // The client redials once, is refused, and gives up: a terminal ConnectionFailure.
    const failure = await nextEvent(clientEvents, EventType.ConnectionFailure);
    assert.ok(failure.error instanceof HandshakeError, String(failure.error));
    assert.equal(failure.error.code, CloseCode.Unauthorized);
    assert.equal(failure.error.retryable, false);
    assert.equal(refusals, 1, "exactly one attempt after the refusal began");
    assert.equal(authorizations, 2);
    assert.equal(server.connections().length, 0);

    // Nothing else is in flight: a probe that the server lets in is the next to arrive.
    refusing = false;
    const probe = await withTimeout(
      resources.client(urlOf(server), { keepAlive: false }).connect(),
      GUARD,
      "probe connect()",
    );
    const next = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(next.connectionId, probe.id);
    assert.equal(authorizations, 3);
    assert.equal(refusals, 1);
    await Promise.all([events.return?.(), clientEvents.return?.()]);
  });

  it("WebSocketClient constructor throws TypeError for a URL it cannot dial", () => {
    assert.throws(() => new WebSocketClient({ url: "ftp://x" }), TypeError);
    assert.throws(() => new WebSocketClient({ url: "file:///tmp/socket" }), TypeError);
    assert.throws(() => new WebSocketClient({ url: "not a url" }), TypeError);
    // The schemes it accepts construct without dialing.
    for (const url of ["ws://127.0.0.1:1/", "wss://example.test/", "http://127.0.0.1:1/"]) {
      assert.ok(new WebSocketClient({ url }) instanceof WebSocketClient, url);
    }
  });

  it("WebSocketClient.connect() rejects with a retryable HandshakeError when nothing listens", async () => {
    // A port that was just free: start a server, note its port, close it.
    const gone = resources.server();
    const url = urlOf(gone);
    await withTimeout(gone.close(), GUARD, "server.close()");

    const client = resources.client(url, { keepAlive: false });
    const error = await withTimeout(
      client.connect().then(
        () => assert.fail("connect() resolved"),
        (error: unknown) => error,
      ),
      GUARD,
      "connect() to a closed port",
    );
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.retryable, true);
    assert.equal(error.code, 1006);
    assert.equal(client.connection, undefined);
  });

  it("WebSocketClient with several URLs dials them in turn: past a dead one, and on to another when its server goes", async () => {
    // Port 1: nothing listens there, and no test server can be given it (a closed server's
    // port could be, and the "dead" URL would then reach a live one).
    const deadUrl = "ws://127.0.0.1:1/";
    const first = resources.server();
    const second = resources.server();
    const client = new WebSocketClient({
      // The first server named twice: turns go by position, so a lost connection still moves on.
      url: [deadUrl, urlOf(first), urlOf(first), urlOf(second)],
      reconnect: { initialDelay: 10, maxDelay: 50 },
    });
    resources.defer("client.close()", () => client.close());
    const onFirst = nextEvent(first.events(), EventType.ConnectionReceived, GUARD);
    const connection = await withTimeout(client.connect(), GUARD, "connect() past the dead URL");
    assert.equal((await onFirst).connectionId, connection.id, "the second URL took it");
    // Its server goes: the client moves on, past the first server named again, to the last URL.
    const onSecond = nextEvent(second.events(), EventType.ConnectionReceived, GUARD);
    await withTimeout(first.close(), GUARD, "first.close()");
    const moved = await onSecond;
    assert.ok(moved.connection);
    assert.equal(client.connection?.id, moved.connectionId);
  });

  it("WebSocketClient with several URLs dials the next one first when a connection is lost", async () => {
    const first = resources.server();
    const second = resources.server();
    const client = new WebSocketClient({
      url: [urlOf(first), urlOf(second)],
      reconnect: { initialDelay: 10, maxDelay: 50 },
    });
    resources.defer("client.close()", () => client.close());
    const onFirst = nextEvent(first.events(), EventType.ConnectionReceived, GUARD);
    await withTimeout(client.connect(), GUARD, "connect()");
    const held = (await onFirst).connection!;
    // The first server is still up, but the client goes to the second: a server that lost
    // a connection may be frozen or draining.
    const onSecond = nextEvent(second.events(), EventType.ConnectionReceived, GUARD);
    await held.close({
      timeout: 0,
      code: CloseCode.GoingAway,
      reason: "draining",
    });
    const moved = await onSecond;
    assert.ok(moved.connection);
    assert.equal(client.connection?.id, moved.connectionId);
  });

  it("WebSocketClient refuses an empty list of URLs", () => {
    assert.throws(() => new WebSocketClient({ url: [] }), TypeError);
  });

  it("WebSocketClient.connect() rejects with HandshakeError within limits.handshakeTimeout when the server never answers", async () => {
    const silent = startSilentWebSocketServer();
    resources.defer("silent server close()", () => silent.close());
    const handshakeTimeout = 300;
    const client = resources.client(`ws://127.0.0.1:${silent.port}/`, {
      keepAlive: false,
      limits: { handshakeTimeout },
    });
    const started = performance.now();
    const error = await withTimeout(
      client.connect().then(
        () => assert.fail("connect() resolved"),
        (error: unknown) => error,
      ),
      handshakeTimeout + 5_000,
      "connect() to time out",
    );
    const elapsed = performance.now() - started;
    await withTimeout(silent.upgraded, GUARD, "the silent server's upgrade");
    assert.ok(error instanceof HandshakeError, String(error));
    assert.equal(error.code, CloseCode.HandshakeTimeout);
    assert.equal(error.retryable, true);
    // Not before the deadline (a small allowance for timer granularity).
    assert.ok(elapsed >= handshakeTimeout - 20, `gave up after ${elapsed} ms`);
    assert.equal(client.connection, undefined);
  });

  it("WebSocketServer closes a peer that never says hello after limits.handshakeTimeout with 4002", async () => {
    const handshakeTimeout = 300;
    const server = resources.server({ limits: { handshakeTimeout } });
    const events = server.events();
    const started = performance.now();
    const raw = openRawWebSocket(urlOf(server));
    resources.defer("raw socket close", () => closeRawWebSocket(raw.socket));
    const closed = await withTimeout(raw.closed, handshakeTimeout + 5_000, "the server to close");
    const elapsed = performance.now() - started;
    assert.equal(closed.code, CloseCode.HandshakeTimeout);
    assert.equal(closed.code, 4002);
    assert.ok(elapsed >= handshakeTimeout - 20, `closed after ${elapsed} ms`);
    assert.deepEqual(server.connections(), []);

    // The server is still fine, and never announced the silent peer.
    const connection = await withTimeout(
      resources.client(urlOf(server)).connect(),
      GUARD,
      "connect()",
    );
    const first = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(first.connectionId, connection.id);
    await events.return?.();
  });

  it("WebSocketClient.events() reports ConnectionReceived on connect", async () => {
    const server = resources.server();
    const client = resources.client(urlOf(server)).withMetadata({ name: "evented" });
    const events = client.events();
    const other = client.events();
    const connection = await withTimeout(client.connect(), GUARD, "connect()");

    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(received.connectionId, connection.id);
    assert.equal(received.connection, connection);
    assert.equal(received.resumed, false);
    assert.equal(received.error, undefined);
    // Each call is its own subscription.
    assert.equal((await nextEvent(other, EventType.ConnectionReceived)).connection, connection);
    await Promise.all([events.return?.(), other.return?.()]);
  });
});
