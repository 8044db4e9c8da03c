/**
 * The heartbeat over real loopback sockets: RTT, appData and the ping/pong hooks, and a
 * silent network partition (a blackholed proxy) detected by the heartbeat and healed by
 * the client's reconnection.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  ConnectionClosedError,
  EventType,
  type HandlerInfo,
} from "../mod.ts";
import { eventFor, nextEvent, type Pair, startPair, withTimeout } from "./_helpers.ts";
import { type ProxiedPair, startProxiedPair } from "./_proxy.ts";

const GUARD = 10_000;
const FAST = { interval: 50, timeout: 1_000 };

/** A pong as the onPong hook saw it. */
interface PongSeen {
  data: string;
  rtt: number | undefined;
  connection: Connection;
}

/** A ping as the onPing hook saw it. */
interface PingSeen {
  data: string;
  connection: Connection;
}

describe("heartbeat", () => {
  let pair: Pair | undefined;

  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  it("Connection.rtt becomes a number on both ends once a pong arrives", async () => {
    const serverPong = Promise.withResolvers<PongSeen>();
    const clientPong = Promise.withResolvers<PongSeen>();
    pair = await startPair(
      {
        heartbeat: FAST,
        onPong: (data, rtt, connection) => serverPong.resolve({ data, rtt, connection }),
      },
      {
        heartbeat: FAST,
        onPong: (data, rtt, connection) => clientPong.resolve({ data, rtt, connection }),
      },
    );
    const [onServer, onClient] = await withTimeout(
      Promise.all([serverPong.promise, clientPong.promise]),
      GUARD,
      "a pong on each end",
    );
    const ends: [PongSeen, Connection][] = [[onServer, pair.serverSide], [
      onClient,
      pair.clientSide,
    ]];
    for (const [seen, connection] of ends) {
      assert.equal(seen.connection, connection);
      assert.equal(typeof seen.rtt, "number");
      assert.ok(seen.rtt! >= 0 && seen.rtt! < GUARD, `rtt ${seen.rtt}`);
      assert.equal(typeof connection.rtt, "number");
      assert.ok(connection.rtt! >= 0, `connection.rtt ${connection.rtt}`);
    }
  });

  it("appData reaches the peer's onPing hook and comes back in the default pong", async () => {
    const serverPing = Promise.withResolvers<PingSeen>();
    const clientPing = Promise.withResolvers<PingSeen>();
    const serverPong = Promise.withResolvers<string>();
    const clientPong = Promise.withResolvers<string>();
    pair = await startPair(
      {
        heartbeat: FAST,
        appData: "from-server ✓",
        // Returns nothing: the pong carries the ping's own data.
        onPing: (data, connection) => void serverPing.resolve({ data, connection }),
        onPong: (data) => serverPong.resolve(data),
      },
      {
        heartbeat: FAST,
        appData: "from-agent ✓",
        onPing: (data, connection) => void clientPing.resolve({ data, connection }),
        onPong: (data) => clientPong.resolve(data),
      },
    );
    const [onServer, onClient] = await withTimeout(
      Promise.all([serverPing.promise, clientPing.promise]),
      GUARD,
      "a ping on each end",
    );
    assert.equal(onServer.data, "from-agent ✓");
    assert.equal(onServer.connection, pair.serverSide);
    assert.equal(onClient.data, "from-server ✓");
    assert.equal(onClient.connection, pair.clientSide);
    assert.equal(await withTimeout(serverPong.promise, GUARD, "server pong"), "from-server ✓");
    assert.equal(await withTimeout(clientPong.promise, GUARD, "client pong"), "from-agent ✓");
  });

  it("onPing returning a string changes the data of the pong the other end's onPong sees", async () => {
    const serverPong = Promise.withResolvers<string>();
    const clientPong = Promise.withResolvers<string>();
    pair = await startPair(
      {
        heartbeat: FAST,
        appData: "server-ping",
        onPing: (data, connection) => `server answers ${data} on ${connection.id}`,
        onPong: (data) => serverPong.resolve(data),
      },
      {
        heartbeat: FAST,
        appData: "agent-ping",
        onPing: (data) => `agent answers ${data}`,
        onPong: (data) => clientPong.resolve(data),
      },
    );
    const id = pair.serverSide.id;
    assert.equal(
      await withTimeout(clientPong.promise, GUARD, "the agent's onPong"),
      `server answers agent-ping on ${id}`,
    );
    assert.equal(
      await withTimeout(serverPong.promise, GUARD, "the server's onPong"),
      "agent answers server-ping",
    );
  });
});

describe("heartbeat failure through a blackholed proxy", () => {
  let pair: ProxiedPair | undefined;

  afterEach(async () => {
    pair?.proxy.heal();
    await pair?.close();
    pair = undefined;
  });

  it("both ends detect a black-holed network within the heartbeat timeout, and WebSocketClient reconnects once healed", async () => {
    const heartbeat = { interval: 50, timeout: 600 };
    pair = await startProxiedPair(
      { heartbeat, handler: () => new Response("server here") },
      { heartbeat, reconnect: { initialDelay: 20, maxDelay: 200 } },
    );
    const { server, client, proxy } = pair;
    const first = client.connection!;
    first.serve((request: Request, info: HandlerInfo) =>
      new Response(`agent on ${info.connection.id} saw ${new URL(request.url).pathname}`)
    );
    assert.equal(
      await (await pair.serverSide.fetch("/before")).text(),
      `agent on ${first.id} saw /before`,
    );
    const serverEvents = server.events();
    const clientEvents = client.events();
    try {
      const start = performance.now();
      proxy.blackhole();
      const failure = await eventFor(serverEvents, EventType.ConnectionFailure, first.id);
      const elapsed = performance.now() - start;
      assert.ok(failure.error instanceof ConnectionClosedError, `error: ${failure.error}`);
      assert.equal((failure.error as ConnectionClosedError).code, CloseCode.HeartbeatTimeout);
      // 600 ms of silence, give or take a ping interval; the bound leaves room for a loaded machine.
      assert.ok(elapsed < 5_000, `failed after ${elapsed} ms`);
      await eventFor(serverEvents, EventType.ConnectionClosed, first.id);
      assert.equal(server.connection(first.id), undefined);
      // The client's own heartbeat sees the silence too: nothing from the server reaches it
      // while the network is black-holed, so this is not the server's close frame.
      const clientFailure = await eventFor(clientEvents, EventType.ConnectionFailure, first.id);
      const clientElapsed = performance.now() - start;
      assert.equal((clientFailure.error as ConnectionClosedError).code, CloseCode.HeartbeatTimeout);
      assert.ok(clientElapsed < 5_000, `client failed after ${clientElapsed} ms`);

      proxy.heal();
      const received = await nextEvent(clientEvents, EventType.ConnectionReceived, GUARD);
      const second = client.connection!;
      assert.equal(received.connection, second);
      assert.notEqual(second, first);
      // Back within the server's resumeWindow with its resume token: the same id.
      assert.equal(second.id, first.id);
      assert.equal(received.resumed, true);
      assert.ok(first.isClosed);

      const serverSide = (await eventFor(serverEvents, EventType.ConnectionReceived, second.id))
        .connection!;
      assert.deepEqual(serverSide.metadata, { name: "proxied-agent" });
      const down = await withTimeout(serverSide.fetch("/after"), GUARD, "server → agent");
      assert.equal(await down.text(), `agent on ${second.id} saw /after`);
      const up = await withTimeout(client.connection!.fetch("/up"), GUARD, "agent → server");
      assert.equal(await up.text(), "server here");
    } finally {
      await serverEvents.return?.();
      await clientEvents.return?.();
    }
  });
});
