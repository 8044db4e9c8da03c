/**
 * Hostile peers against a server with default options, over real sockets, on both runtimes.
 *
 * Each attack of the hostile-peers review is here: body bytes pinned in padded messages,
 * 1-byte DATA frames, the stream windows all filled at once, a NOOP bomb before the HELLO,
 * a ping flood with and without reading, responses to a peer that never reads, metadata
 * that swells when parsed, sockets that never say hello, and handshake and resume rates
 * per address. Each asserts the close code it ends with (or that none is needed) and that
 * the server's own accounting of what the hostile connection holds
 * (`connection.bufferedBytes`) stays within the default budget, with an honest agent on the
 * same server still served. The hostile peer is a raw TCP WebSocket (`_tcp_peer.ts`): only
 * it can stop reading or send a 60 MiB message.
 *
 * The same attacks with the server's RSS and an honest client's failures and p99 are in
 * `bench/hostile.ts`.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  type ConnectionEvent,
  EventType,
  type ProtocolError,
  type WebSocketServer,
  type WebSocketServerOptions,
} from "../mod.ts";
import {
  DEFAULT_SETTINGS,
  encodeFrames,
  encodeHello,
  encodePing,
  FLAG_END_STREAM,
  FrameType,
  PROTOCOL_VERSION,
} from "../protocol/mod.ts";
import { eventWhere, IS_BUN, withTimeout } from "./_helpers.ts";
import { dataFrame, message, requestFrame, tinyFrames } from "./_raw_frames.ts";
import { frameMessage } from "./_raw_peer.ts";
import { deferred, Resources, urlOf } from "./_server_helpers.ts";
import { connectTcp, Credit, nextFrames, type TcpPeer } from "./_tcp_peer.ts";
import { countedStream, type StreamCounter } from "./fixtures/_load.ts";
import { ResumeStore } from "../_resume.ts";

const MIB = 1024 * 1024;
/** `limits.maxBufferedBytes` by default. */
const BUDGET = 32 * MIB;
/** A quarter of the budget: the connection window a server announces by default. */
const CONNECTION_WINDOW = 8 * MIB;
const GUARD = 30_000;
const TEST_OPTIONS = { timeout: 120_000 };

const named = (name: string) => (event: ConnectionEvent): boolean =>
  event.type === EventType.ConnectionReceived &&
  (event.connection?.metadata as { name?: string } | null)?.name === name;

/** The code a connection failed with, from its `ConnectionFailure` event. */
async function failureCode(
  events: AsyncIterableIterator<ConnectionEvent>,
  connection: Connection,
): Promise<number | undefined> {
  const failure = await eventWhere(
    events,
    (e) => e.type === EventType.ConnectionFailure && e.connection === connection,
    "the hostile connection to fail",
    GUARD,
  );
  return (failure.error as ProtocolError | undefined)?.code;
}

/**
 * Samples `bufferedBytes` of the given connections at every timer tick while an attack
 * runs, and keeps the largest value: a measurement, not a synchronisation.
 */
function monitor(connections: () => Iterable<Connection>): { stop(): number } {
  let max = 0;
  const sample = (): void => {
    for (const connection of connections()) max = Math.max(max, connection.bufferedBytes);
  };
  const timer = setInterval(sample, 1);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

/** Sends a PING and reads until its PONG: the server has handled everything sent before it. */
async function roundTrip(peer: TcpPeer, credit?: Credit): Promise<void> {
  const sentAt = Math.random() * 1e6;
  peer.send(
    message({ type: FrameType.Ping, flags: 0, streamId: 0, payload: encodePing(sentAt, "") }),
  );
  for (;;) {
    for (const frame of await nextFrames(peer, GUARD)) {
      credit?.see(frame);
      if (frame.type === FrameType.Pong) return;
    }
  }
}

/**
 * Opens stream 1 with a GET and reads until its response has come: the stream is finished,
 * and any DATA on it is ignored (no stream's window pays for it), the padding of an attack.
 */
async function finishStreamOne(peer: TcpPeer): Promise<void> {
  peer.send(message(requestFrame(1, { method: "GET", url: "/done", headers: [] })));
  for (;;) {
    const frames = await nextFrames(peer, GUARD);
    if (frames.some((f) => f.streamId === 1 && (f.flags & FLAG_END_STREAM))) return;
  }
}

describe("Hostile peers against a server with default limits", () => {
  const resources = new Resources();
  const peers: TcpPeer[] = [];
  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.destroy();
    await resources.closeAll();
  });

  /** A server with default limits, and an honest agent connected to it. */
  async function serverWithAgent(
    handler: WebSocketServerOptions["handler"],
    options: WebSocketServerOptions = {},
  ) {
    const server = resources.server({ handler, ...options });
    const events = server.events();
    resources.defer("events.return()", async () => await events.return?.());
    const agent = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ name: "honest" }).connect(),
      GUARD,
      "the honest agent to connect",
    );
    await eventWhere(events, named("honest"), "the honest agent's ConnectionReceived", GUARD);
    const stillServed = async (): Promise<void> => {
      const response = await withTimeout(agent.fetch("/ping"), GUARD, "the honest fetch");
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    };
    return { server, events, agent, stillServed };
  }

  async function hostile(
    server: WebSocketServer,
    events: AsyncIterableIterator<ConnectionEvent>,
    name = "tcp",
  ): Promise<{ peer: TcpPeer; connection: Connection }> {
    const peer = await connectTcp(server.addr.port);
    peers.push(peer);
    await peer.handshake({ name });
    const received = await eventWhere(
      events,
      named(name),
      `${name}'s ConnectionReceived`,
      GUARD,
    );
    return { peer, connection: received.connection! };
  }

  /** A handler that holds uploads unread until `release`, then reads one chunk of each. */
  function holdingHandler() {
    const release = deferred();
    const firstChunks = new Map<string, number[]>();
    const bufferSizes = new Map<string, number>();
    const handler = async (request: Request): Promise<Response> => {
      const path = new URL(request.url).pathname;
      if (!path.startsWith("/hold")) return new Response("ok");
      await release.promise;
      const { value } = await request.body!.getReader().read();
      firstChunks.set(path, [...(value ?? [])]);
      // What the application gets keeps nothing else alive: not the message it came in.
      bufferSizes.set(path, value?.buffer.byteLength ?? 0);
      return new Response("read");
    };
    return { handler, release, firstChunks, bufferSizes };
  }

  it(
    "pinning: 8 KiB body chunks in 2 MiB messages padded with DATA for a finished stream are copied out",
    TEST_OPTIONS,
    async () => {
      const { handler, release, firstChunks, bufferSizes } = holdingHandler();
      const { server, events, stillServed } = await serverWithAgent(handler);
      const { peer, connection } = await hostile(server, events);
      const credit = new Credit(CONNECTION_WINDOW, peer);
      // Stream 1 finishes at once; its id then takes any DATA, ignored, as padding.
      await finishStreamOne(peer);
      const STREAMS = 48;
      const ids = Array.from({ length: STREAMS }, (_, i) => 3 + 2 * i);
      peer.send(
        message(
          ...ids.map((id) =>
            requestFrame(id, { method: "POST", url: `/hold/${id}`, headers: [] }, false)
          ),
        ),
      );
      const CHUNK = 8 * 1024;
      const pad = new Uint8Array(DEFAULT_SETTINGS.maxFrameBytes - CHUNK / 2 - 16);
      for (const id of ids) {
        await credit.spend(CHUNK + 2 * pad.byteLength);
        const chunk = new Uint8Array(CHUNK).fill(id & 0xff);
        peer.send(message(dataFrame(id, chunk), dataFrame(1, pad), dataFrame(1, pad)));
      }
      await roundTrip(peer, credit);
      // A view would keep each chunk's 2 MiB message alive: 96 MiB, three times the budget.
      // Copied, each chunk is charged its own bytes and a chunk's overhead.
      const held = connection.bufferedBytes;
      assert.ok(held <= STREAMS * (CHUNK + 256), `the hostile connection holds ${held} bytes`);
      release.resolve();
      await withTimeout(
        (async () => {
          while (firstChunks.size < STREAMS) await new Promise((r) => setTimeout(r, 10));
        })(),
        GUARD,
        "every handler to read its byte",
      );
      for (const id of ids) {
        assert.deepEqual(firstChunks.get(`/hold/${id}`), Array(CHUNK).fill(id & 0xff));
        assert.equal(bufferSizes.get(`/hold/${id}`), CHUNK, "a chunk of its own, not a view");
      }
      await stillServed();
    },
  );

  it(
    "pinning in small messages: 4 KiB chunks padded to 16 KiB messages wait as copies, at most twice their bytes",
    TEST_OPTIONS,
    async () => {
      const { handler } = holdingHandler();
      const { server, events, stillServed } = await serverWithAgent(handler);
      const { peer, connection } = await hostile(server, events);
      await finishStreamOne(peer);
      const ids = [3, 5, 7, 9];
      peer.send(
        message(
          ...ids.map((id) =>
            requestFrame(id, { method: "POST", url: `/hold/${id}`, headers: [] }, false)
          ),
        ),
      );
      const CHUNK = 4096;
      const pad = new Uint8Array(16 * 1024 - CHUNK - 2 * 10);
      let sent = 0;
      for (let round = 0; sent < MIB; round++) {
        for (const id of ids) {
          peer.send(message(dataFrame(id, new Uint8Array(CHUNK)), dataFrame(1, pad)));
          sent += CHUNK;
        }
      }
      await roundTrip(peer);
      const held = connection.bufferedBytes;
      assert.ok(held >= sent, `holds ${held}`);
      assert.ok(held <= 2 * sent + (sent / CHUNK) * 256, `holds ${held} for ${sent} unread`);
      await stillServed();
    },
  );

  it(
    "1-byte DATA frames filling the connection window cost one chunk per stream per message, and a byte more is 4007",
    TEST_OPTIONS,
    async () => {
      const { handler } = holdingHandler();
      const { server, events, stillServed } = await serverWithAgent(handler);
      const { peer, connection } = await hostile(server, events);
      // Five streams, so that their 2 MiB windows together exceed the connection's 8 MiB.
      const ids = [1, 3, 5, 7, 9];
      peer.send(
        message(
          ...ids.map((id) =>
            requestFrame(id, { method: "POST", url: `/hold/${id}`, headers: [] }, false)
          ),
        ),
      );
      const watch = monitor(() => [connection]);
      // Messages of 160,000 one-byte frames, the streams in turn: 1.76 MB each.
      for (let sent = 0; sent < CONNECTION_WINDOW;) {
        const count = Math.min(160_000, CONNECTION_WINDOW - sent);
        peer.send(tinyFrames(ids, count, sent));
        sent += count;
      }
      await roundTrip(peer);
      const held = connection.bufferedBytes;
      // Unread, every byte: 8 MiB, charged at most twice over (small chunks share blocks).
      assert.ok(held >= CONNECTION_WINDOW, `holds ${held}`);
      assert.ok(held <= 2 * CONNECTION_WINDOW + 64 * 1024, `holds ${held}`);
      peer.send(message(dataFrame(1, new Uint8Array([1]))));
      assert.equal(await failureCode(events, connection), CloseCode.FlowControlError);
      assert.equal(await peer.closed, CloseCode.FlowControlError);
      assert.ok(watch.stop() <= BUDGET);
      await stillServed();
    },
  );

  it(
    "the window attack: every stream's window filled at once is bounded by the 8 MiB connection window, not streams × 2 MiB",
    TEST_OPTIONS,
    async () => {
      const { handler } = holdingHandler();
      const { server, events, stillServed } = await serverWithAgent(handler);
      const { peer, connection } = await hostile(server, events);
      const STREAMS = DEFAULT_SERVER_STREAMS;
      const ids = Array.from({ length: STREAMS }, (_, i) => 1 + 2 * i);
      peer.send(
        message(
          ...ids.map((id) =>
            requestFrame(id, { method: "POST", url: `/hold/${id}`, headers: [] }, false)
          ),
        ),
      );
      // Each stream offers its whole 2 MiB window in 64 KiB frames, one per message, in turns.
      const frame = new Uint8Array(64 * 1024);
      let sent = 0;
      for (let round = 0; sent < CONNECTION_WINDOW; round++) {
        for (const id of ids) {
          if (sent === CONNECTION_WINDOW) break;
          peer.send(message(dataFrame(id, frame)));
          sent += frame.byteLength;
        }
      }
      await roundTrip(peer);
      const held = connection.bufferedBytes;
      assert.ok(held >= CONNECTION_WINDOW, `holds ${held}`);
      assert.ok(held <= CONNECTION_WINDOW * 1.01 + STREAMS * 512, `holds ${held}`);
      peer.send(message(dataFrame(ids[STREAMS - 1], new Uint8Array([1]))));
      assert.equal(await failureCode(events, connection), CloseCode.FlowControlError);
      await stillServed();
    },
  );

  it(
    "a NOOP bomb before HELLO is refused whole: 60 MiB of NOOPs close the socket at once, nothing decoded",
    TEST_OPTIONS,
    async () => {
      const { server, stillServed } = await serverWithAgent(() => new Response("ok"));
      const peer = await connectTcp(server.addr.port);
      peers.push(peer);
      const bomb = new Uint8Array(60 * MIB);
      for (let i = 0; i < bomb.byteLength; i += 10) bomb[i] = FrameType.Noop;
      peer.send(bomb);
      // Bun refuses the message itself (1009, over maxPayloadLength); Deno, which buffers
      // up to 64 MiB with no knob, hands it over and the server closes before decoding it.
      assert.equal(
        await withTimeout(peer.closed, GUARD, "the close"),
        IS_BUN ? 1009 : CloseCode.ProtocolError,
      );
      assert.equal(server.connections().length, 1, "only the honest agent");
      await stillServed();
    },
  );

  it(
    "after the handshake a message within maxMessageBytes of NOOPs is handled and keeps nothing; one over it closes",
    TEST_OPTIONS,
    async () => {
      const { server, events, stillServed } = await serverWithAgent(() => new Response("ok"));
      const { peer, connection } = await hostile(server, events);
      // As many whole NOOPs as fit: 209,715 frames.
      const noops = new Uint8Array(DEFAULT_SETTINGS.maxMessageBytes - 2);
      for (let i = 0; i < noops.byteLength; i += 10) noops[i] = FrameType.Noop;
      peer.send(noops);
      await roundTrip(peer);
      assert.equal(connection.isClosed, false);
      assert.equal(connection.bufferedBytes, 0);
      peer.send(new Uint8Array(DEFAULT_SETTINGS.maxMessageBytes + 1));
      assert.equal(
        await withTimeout(peer.closed, GUARD, "the close"),
        IS_BUN ? 1009 : CloseCode.FrameTooLarge,
      );
      await stillServed();
    },
  );

  it("a ping flood of 101 pings at once closes with 4008", TEST_OPTIONS, async () => {
    const { server, events, stillServed } = await serverWithAgent(() => new Response("ok"));
    const { peer, connection } = await hostile(server, events);
    const ping = { type: FrameType.Ping, flags: 0, streamId: 0, payload: encodePing(1, "") };
    peer.send(encodeFrames(Array.from({ length: 101 }, () => ping)));
    assert.equal(await failureCode(events, connection), CloseCode.RateLimited);
    assert.equal(await peer.closed, CloseCode.RateLimited);
    await stillServed();
  });

  it(
    "a ping flood that does not read its pongs closes with 4013 once the unsent pongs pass the cap, within the budget",
    TEST_OPTIONS,
    async () => {
      const { server, events, stillServed } = await serverWithAgent(() => new Response("ok"));
      const { peer, connection } = await hostile(server, events);
      peer.pause();
      const watch = monitor(() => [connection]);
      const failed = failureCode(events, connection);
      // Each pong echoes its ping's 512 KiB; the kernel's buffers take the first few MiB.
      const big = encodePing(1, "x".repeat(512 * 1024));
      let sent = 0;
      while (!connection.isClosed && sent < 90) {
        peer.send(message({ type: FrameType.Ping, flags: 0, streamId: 0, payload: big }));
        sent++;
        // Let the server take each ping in turn (it reads even while its peer does not).
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      assert.equal(await failed, CloseCode.EnhanceYourCalm);
      const max = watch.stop();
      assert.ok(max <= BUDGET, `held at most ${max}`);
      await stillServed();
    },
  );

  it(
    "responses to 10 peers that never read stay within each connection's budget, and an honest agent is served",
    TEST_OPTIONS,
    async () => {
      const counter: StreamCounter = { started: 0, produced: [] };
      const { server, events, stillServed } = await serverWithAgent((request) =>
        new URL(request.url).pathname === "/stream"
          ? new Response(countedStream(Infinity, counter))
          : new Response("ok")
      );
      const PEERS = 10;
      const hostiles: { peer: TcpPeer; connection: Connection }[] = [];
      for (let i = 0; i < PEERS; i++) hostiles.push(await hostile(server, events, `reader-${i}`));
      const watch = monitor(() => hostiles.map((h) => h.connection));
      const STREAMS = DEFAULT_SERVER_STREAMS;
      for (const { peer } of hostiles) {
        peer.pause();
        const ids = Array.from({ length: STREAMS }, (_, i) => 1 + 2 * i);
        peer.send(
          message(
            ...ids.map((id) => requestFrame(id, { method: "GET", url: "/stream", headers: [] })),
          ),
        );
      }
      await withTimeout(
        (async () => {
          while (counter.started < PEERS * STREAMS) await new Promise((r) => setTimeout(r, 10));
        })(),
        GUARD,
        "every stream to start",
      );
      // An honest agent is served throughout; meanwhile the producers run as far as allowed.
      for (let i = 0; i < 20; i++) await stillServed();
      const max = watch.stop();
      assert.ok(max <= BUDGET, `a hostile connection held ${max}`);
      const produced = counter.produced.reduce((a, b) => a + b, 0);
      // What was read from the application: per connection its queued share and the chunk
      // each stream was reading, beyond what the socket and the kernel took.
      assert.ok(produced < PEERS * BUDGET, `produced ${produced}`);
      for (const { connection } of hostiles) assert.equal(connection.isClosed, false);
    },
  );

  it(
    "metadata that swells when parsed ([[],[],…]) is refused with 4004 before it is parsed",
    TEST_OPTIONS,
    async () => {
      const { server, stillServed } = await serverWithAgent(() => new Response("ok"));
      const peer = await connectTcp(server.addr.port);
      peers.push(peer);
      const metadata = `[${"[],".repeat(5000)}[]]`;
      const text = `{"version":${PROTOCOL_VERSION},"metadata":${metadata},"settings":${
        JSON.stringify(DEFAULT_SETTINGS)
      }}`;
      peer.send(
        message({
          type: FrameType.Hello,
          flags: 0,
          streamId: 0,
          payload: new TextEncoder().encode(text),
        }),
      );
      assert.equal(await peer.closed, CloseCode.InvalidMetadata);
      await stillServed();
    },
  );

  it(
    "sockets that upgrade and never say hello are capped by maxPendingHandshakes (4009)",
    TEST_OPTIONS,
    async () => {
      const { server, stillServed } = await serverWithAgent(() => new Response("ok"), {
        limits: { maxPendingHandshakes: 5 },
      });
      const silent: TcpPeer[] = [];
      for (let i = 0; i < 5; i++) silent.push(await connectTcp(server.addr.port));
      peers.push(...silent);
      const sixth = await connectTcp(server.addr.port);
      peers.push(sixth);
      assert.equal(await sixth.closed, CloseCode.TooManyConnections);
      // A completed handshake frees its place.
      silent[0].send(frameMessage({ type: FrameType.Noop }));
      assert.equal(await silent[0].closed, CloseCode.ProtocolError, "a NOOP is no HELLO");
      const next = await connectTcp(server.addr.port);
      peers.push(next);
      await next.handshake({ name: "late" });
      await stillServed();
    },
  );

  it("handshakes beyond an address's rate are closed with 4008", TEST_OPTIONS, async () => {
    const { server, stillServed } = await serverWithAgent(() => new Response("ok"), {
      limits: { addressRateLimits: { handshakes: { burst: 4, perSecond: 0 } } },
    });
    // The honest agent took one token.
    for (let i = 0; i < 3; i++) {
      const peer = await connectTcp(server.addr.port);
      peers.push(peer);
      await peer.handshake({ name: `ok-${i}` });
    }
    const over = await connectTcp(server.addr.port);
    peers.push(over);
    assert.equal(await over.closed, CloseCode.RateLimited);
    await stillServed();
  });

  it(
    "past an address's rate of failed resumes, its tokens are not looked at: a valid one gets a fresh id",
    TEST_OPTIONS,
    async () => {
      for (const burst of [3, 2]) {
        const server = resources.server({
          handler: () => new Response("ok"),
          limits: { addressRateLimits: { failedResumes: { burst, perSecond: 0 } } },
        });
        const first = await connectTcp(server.addr.port);
        const welcome = await first.handshake();
        first.destroy();
        await withTimeout(first.closed, GUARD, "the first socket to close");
        const hello = (resume: string) =>
          message({
            type: FrameType.Hello,
            flags: 0,
            streamId: 0,
            payload: encodeHello({
              version: PROTOCOL_VERSION,
              metadata: null,
              settings: DEFAULT_SETTINGS,
              resume,
            }),
          });
        for (const wrong of ["nobody.x", `${welcome.id}.wrong`]) {
          const guesser = await connectTcp(server.addr.port);
          peers.push(guesser);
          guesser.send(hello(wrong));
          const [frame] = await nextFrames(guesser);
          assert.equal(frame.type, FrameType.Welcome);
        }
        const owner = await connectTcp(server.addr.port);
        peers.push(owner);
        owner.send(hello(welcome.resumeToken!));
        const [frame] = await nextFrames(owner);
        const resumed = new TextDecoder().decode(frame.payload).includes('"resumed":true');
        // Burst 3: two failures leave a token, and the owner resumes; burst 2: none left.
        assert.equal(resumed, burst === 3, `burst ${burst}`);
      }
    },
  );

  it(
    "ResumeStore is bounded in bytes and swept when its window passes, without being used",
    TEST_OPTIONS,
    async () => {
      const store = new ResumeStore(50, 65_536, 10_000);
      for (let i = 0; i < 100; i++) {
        const connection = { id: `c${i}`, metadata: { i } } as unknown as Connection;
        store.issue(connection.id, connection, 1000);
        store.release(connection, performance.now());
      }
      // 1,256 bytes each by estimate (1,000 for the metadata, 256 for the entry).
      assert.equal(store.size, 7);
      assert.ok(store.bytes <= 10_000);
      await withTimeout(
        (async () => {
          while (store.size > 0) await new Promise((r) => setTimeout(r, 5));
        })(),
        GUARD,
        "the sweep",
      );
      assert.equal(store.bytes, 0);
      store.clear();
    },
  );
});

/** A server's default `maxConcurrentStreams`. */
const DEFAULT_SERVER_STREAMS = 256;
