/**
 * A caller that stops reading a large answer through the gateway holds the whole chain back:
 * caller ← gateway's front ← the WebSocket's flow control ← the tunnelling agent ← its
 * upstream, and through a cluster peer's link too. The upstream (a raw `node:net` server
 * writing as fast as its socket takes bytes) gets to write no more than the buffers between
 * hold, other callers are served meanwhile, and when the caller goes away the agent lets go
 * of the upstream's socket.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { type Gateway, type RedisLike, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import { cleanups, held, withTimeout } from "./_helpers.ts";
import { connectRedis, NO_REDIS, type RedisServer, startRedis } from "./_redis.ts";

const GUARD = 30_000;
const MIB = 1024 * 1024;
/** The answer's size: what an upstream with nothing to hold it back would write in ~1 s. */
const BODY = 512 * MIB;
const CHUNK = new Uint8Array(64 * 1024).fill(0x61);
/**
 * Most the upstream may write while the caller reads nothing. Between them: three sockets'
 * kernel buffers (this host's `tcp_rmem` lets a loopback receive buffer grow to 32 MiB, the
 * send side to 4 MiB), the stream's flow-control window (2 MiB by default) and a few chunks
 * of read-ahead at each end. Without the hold the upstream writes all of `BODY`.
 */
const BOUND = 128 * MIB;

/**
 * An upstream that answers `GET /file` with `BODY` bytes, written as fast as they go, and
 * anything else with `ok`.
 */
async function floodingUpstream(): Promise<{
  url: string;
  written(): number;
  /** Resolves when a socket it wrote an answer on has closed. */
  closed: Promise<void>;
  close(): Promise<void>;
}> {
  let written = 0;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => markClosed = resolve);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("data", (head: Uint8Array) => {
      if (!new TextDecoder().decode(head).startsWith("GET /file ")) {
        return void socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      }
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BODY}\r\n\r\n`);
      const pump = (): void => {
        while (written < BODY && !socket.destroyed) {
          written += CHUNK.byteLength;
          if (!socket.write(CHUNK)) return void socket.once("drain", pump);
        }
      };
      pump();
      socket.once("close", () => {
        sockets.delete(socket);
        markClosed();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    written: () => written,
    closed,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves once `value()` has not changed for `still` ms (sampled every 50 ms). */
async function settled(value: () => number, still: number): Promise<number> {
  let last = value();
  let since = performance.now();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = value();
    if (now !== last) [last, since] = [now, performance.now()];
    else if (performance.now() - since >= still) return now;
  }
}

/** What a caller reaches the agent through; every step is stopped by `cleanup`. */
type Route = (
  upstream: string,
  cleanup: ReturnType<typeof cleanups>,
) => Promise<string>;

/** A gateway whose agent tunnels to `upstream`; the caller calls that gateway. */
const direct: Route = async (upstream, cleanup) => {
  const gateway = await startGateway({ hostname: "127.0.0.1", port: 0 });
  cleanup.add(() => gateway.close());
  await agentOn(gateway, upstream, cleanup);
  return gateway.url;
};

/** Two gateways in a cluster on `redis-server`: the agent on one, the caller at the other. */
const throughPeer: Route = async (upstream, cleanup) => {
  const redis = await startRedis();
  cleanup.add(() => redis.close());
  const [near, far] = [await clustered(redis, cleanup), await clustered(redis, cleanup)];
  await agentOn(far, upstream, cleanup);
  // The near instance finds the agent in Redis once the far one has written its claim.
  await withTimeout(
    (async () => {
      for (;;) {
        const answer = await fetch(`${near.url}/agents/big/other`);
        await answer.body?.cancel();
        if (answer.status === 200) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(),
    GUARD,
    "the near instance to find the agent",
  );
  return near.url;
};

async function clustered(
  redis: RedisServer,
  cleanup: ReturnType<typeof cleanups>,
): Promise<Gateway> {
  const client = await connectRedis(redis);
  cleanup.add(() => Promise.resolve(client.destroy()));
  const gateway = await startGateway({
    hostname: "127.0.0.1",
    port: 0,
    cluster: { redis: client as unknown as RedisLike, secret: "slow-caller" },
  });
  cleanup.add(() => gateway.close());
  return gateway;
}

async function agentOn(
  gateway: Gateway,
  upstream: string,
  cleanup: ReturnType<typeof cleanups>,
): Promise<void> {
  const events = gateway.server.events();
  try {
    const agent = startAgent({ url: gateway.agentsUrl, name: "big", upstream });
    cleanup.add(() => agent.close());
    const connection = await withTimeout(agent.ready, GUARD, "the agent to connect");
    await held(gateway.server, connection.id, events, GUARD);
  } finally {
    await events.return?.();
  }
}

describe("a caller that stops reading a large answer", () => {
  for (
    const [name, route, skip] of [
      ["from a gateway", direct, false],
      ["from a cluster instance whose peer holds the agent", throughPeer, NO_REDIS],
    ] as const
  ) {
    it(
      `${name}: holds back the tunnelling agent's upstream; others are served, and its going away lets the upstream go`,
      { timeout: 120_000, skip },
      () => holdsBack(route),
    );
  }
});

async function holdsBack(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const upstream = await floodingUpstream();
    cleanup.add(() => upstream.close());
    const gateway = await route(upstream.url, cleanup);

    // A raw caller that reads the head and a first piece of the body, then stops.
    const caller = net.connect(Number(new URL(gateway).port), "127.0.0.1");
    cleanup.add(() => Promise.resolve(caller.destroy()));
    let read = 0;
    const firstBytes = new Promise<void>((resolve) => {
      caller.on("data", (chunk: Uint8Array) => {
        read += chunk.byteLength;
        if (read >= MIB) {
          caller.pause();
          resolve();
        }
      });
    });
    caller.write("GET /agents/big/file HTTP/1.1\r\nhost: gw\r\n\r\n");
    await withTimeout(firstBytes, GUARD, "the first MiB of the answer");

    const written = await withTimeout(settled(upstream.written, 1_000), GUARD, "a hold");
    assert.ok(
      written <= BOUND,
      `the upstream wrote ${(written / MIB).toFixed(1)} MiB while the caller read ${
        (read / MIB).toFixed(1)
      }`,
    );

    // The held exchange harms no one else: a second caller is answered meanwhile.
    const other = await withTimeout(fetch(`${gateway}/agents/big/other`), GUARD, "another answer");
    assert.deepEqual([other.status, await other.text()], [200, "ok"]);

    caller.destroy();
    await withTimeout(upstream.closed, GUARD, "the upstream's socket to be let go");
  } finally {
    await cleanup.run();
  }
}
