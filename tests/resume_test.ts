/**
 * Resumption: a client that reconnects within `resumeWindow` with the token from its last
 * WELCOME gets its connection id (and metadata) back; a wrong, used or expired token gets a
 * fresh id; tokens are single-use; a resumer replaces a still-open socket with 4012.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  type ConnectionEvent,
  EventType,
  WebSocketClient,
  WebSocketServer,
  type WebSocketServerOptions,
} from "../mod.ts";
import {
  decodeFrames,
  DEFAULT_SETTINGS,
  encodeHello,
  FrameType,
  PROTOCOL_VERSION,
  type Welcome,
} from "../protocol/mod.ts";
import { decodeWelcome } from "../protocol/handshake.ts";
import {
  MAX_RESUMABLE,
  MAX_RESUMABLE_BYTES,
  ResumeStore,
  type SharedRedeemed,
  type SharedResumeTokens,
} from "../_resume.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";
import { FakeClock } from "./_fake_clock.ts";
import { withTimeout } from "./_helpers.ts";
import { startProxy, type TcpProxy } from "./_proxy.ts";
import { connectRaw, frameMessage, type RawPeer } from "./_raw_peer.ts";

const GUARD = 10_000;
const T = { timeout: 60_000 };

/** A raw peer that completed the handshake with a HELLO carrying `resume`. */
interface Handshaken {
  peer: RawPeer;
  welcome: Welcome;
}

async function rawHandshake(
  url: string,
  metadata: unknown,
  resume?: string,
): Promise<Handshaken> {
  const peer = connectRaw(url);
  await withTimeout(peer.opened, GUARD, "the raw socket to open");
  peer.ws.send(frameMessage({
    type: FrameType.Hello,
    payload: encodeHello({
      version: PROTOCOL_VERSION,
      metadata,
      settings: { ...DEFAULT_SETTINGS },
      ...(resume !== undefined ? { resume } : {}),
    }),
  }));
  const message = await peer.nextMessage(GUARD);
  assert.ok(message instanceof Uint8Array, "expected a binary WELCOME");
  const [frame] = decodeFrames(message, 1 << 20);
  assert.equal(frame?.type, FrameType.Welcome);
  peer.ws.send(frameMessage({ type: FrameType.Ack }));
  return { peer, welcome: decodeWelcome(frame.payload) };
}

/**
 * Records every event of a subscription, so that several waits can look at the same stream
 * (two readers of one subscription would take each other's events).
 */
class Recorder {
  readonly seen: ConnectionEvent[] = [];
  readonly #events: AsyncIterableIterator<ConnectionEvent>;
  #waiters: { match: (e: ConnectionEvent) => boolean; resolve: (e: ConnectionEvent) => void }[] =
    [];

  constructor(events: AsyncIterableIterator<ConnectionEvent>) {
    this.#events = events;
    (async () => {
      for await (const event of events) {
        this.seen.push(event);
        for (const waiter of [...this.#waiters]) {
          if (waiter.match(event)) {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
            waiter.resolve(event);
          }
        }
      }
    })();
  }

  /** The first event of `type` (about `id`) among those from index `after` on. */
  wait(type: EventType, id?: string, after = 0): Promise<ConnectionEvent> {
    const match = (e: ConnectionEvent) =>
      e.type === type && (id === undefined || e.connectionId === id);
    const found = this.seen.slice(after).find(match);
    if (found) return Promise.resolve(found);
    return withTimeout(
      new Promise<ConnectionEvent>((resolve) => this.#waiters.push({ match, resolve })),
      GUARD,
      `waiting for ${type}${id ? ` of ${id}` : ""}`,
    );
  }

  /** The next event of `type` (about `id`) from now on. */
  next(type: EventType, id?: string): Promise<ConnectionEvent> {
    return this.wait(type, id, this.seen.length);
  }

  async stop(): Promise<void> {
    await this.#events.return?.();
  }
}

describe("WebSocketServer resumption with a raw peer", () => {
  let server: WebSocketServer | undefined;
  const peers: RawPeer[] = [];
  let events: Recorder | undefined;

  function start(options: WebSocketServerOptions = {}): string {
    server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, ...options });
    events = new Recorder(server.events());
    return `ws://127.0.0.1:${server.addr.port}`;
  }

  /** Handshakes a raw peer and waits until the server has the connection open. */
  async function handshake(url: string, metadata: unknown, resume?: string): Promise<Welcome> {
    const after = events!.seen.length;
    const { peer, welcome } = await rawHandshake(url, metadata, resume);
    peers.push(peer);
    await events!.wait(EventType.ConnectionReceived, welcome.id, after);
    return welcome;
  }

  /** Closes the raw peer that holds `id` and waits until the server has ended it. */
  async function drop(id: string): Promise<void> {
    const connection = server!.connection(id);
    assert.ok(connection, `connection ${id} should be open`);
    const ended = events!.next(EventType.ConnectionClosed, id);
    await Promise.all(peers.splice(0).map((peer) => peer.close()));
    await ended;
  }

  afterEach(async () => {
    await Promise.all(peers.splice(0).map((peer) => peer.close()));
    await events?.stop();
    await withTimeout(server?.close() ?? Promise.resolve(), 15_000, "server.close()");
    server = events = undefined;
  });

  it("WebSocketServer issues an unguessable resume token in every WELCOME", T, async () => {
    const url = start();
    const first = await handshake(url, { name: "a" });
    const second = await handshake(url, { name: "b" });
    for (const welcome of [first, second]) {
      assert.equal(typeof welcome.resumeToken, "string");
      const [id, secret] = welcome.resumeToken!.split(".");
      assert.equal(id, welcome.id, "the token is bound to the connection id");
      assert.match(secret, /^[A-Za-z0-9_-]{43}$/, "256 bits in base64url");
      assert.equal(welcome.resumed, undefined);
    }
    assert.notEqual(first.resumeToken, second.resumeToken);
  });

  it("WebSocketServer gives a resumed connection its id back, with resumed: true", T, async () => {
    const url = start();
    const first = await handshake(url, { name: "agent-1", n: 1 });
    await drop(first.id);
    const received = events!.next(EventType.ConnectionReceived);
    const second = await handshake(url, { name: "agent-1", n: 1 }, first.resumeToken);
    assert.equal(second.id, first.id);
    assert.equal(second.resumed, true);
    assert.ok(second.resumeToken, "a new token is issued on resumption");
    assert.notEqual(second.resumeToken, first.resumeToken);
    const event = await received;
    assert.equal(event.connectionId, first.id);
    assert.equal(event.resumed, true);
    assert.deepEqual(server!.metadata(first.id), { name: "agent-1", n: 1 });

    // And again with the new token: resumption chains.
    await drop(first.id);
    const third = await handshake(url, { name: "agent-1", n: 1 }, second.resumeToken);
    assert.equal(third.id, first.id);
    assert.equal(third.resumed, true);
  });

  it(
    "WebSocketServer refuses to resume with a reused token: a fresh id, resumed: false",
    T,
    async () => {
      const url = start();
      const first = await handshake(url, { name: "a" });
      await drop(first.id);
      const resumed = await handshake(url, { name: "a" }, first.resumeToken);
      assert.equal(resumed.id, first.id);
      await drop(first.id);
      const received = events!.next(EventType.ConnectionReceived);
      const reused = await handshake(url, { name: "a" }, first.resumeToken);
      assert.notEqual(reused.id, first.id, "a token works once");
      assert.equal(reused.resumed, undefined);
      assert.equal((await received).resumed, false);
      // The id is not free for the taking either: the second token still resumes it.
      const owner = await handshake(url, { name: "a" }, resumed.resumeToken);
      assert.equal(owner.id, first.id);
      assert.equal(owner.resumed, true);
    },
  );

  it("WebSocketServer gives a fresh id for a wrong or malformed token", T, async () => {
    const url = start();
    const victim = await handshake(url, { name: "victim" });
    const attacker = await handshake(url, { name: "attacker" });
    await drop(victim.id);
    const [, victimSecret] = victim.resumeToken!.split(".");
    const [, attackerSecret] = attacker.resumeToken!.split(".");
    const flipped = (victimSecret[0] === "A" ? "B" : "A") + victimSecret.slice(1);
    const tries = [
      `${victim.id}.${attackerSecret}`, // the attacker's own secret on the victim's id
      `${victim.id}.${flipped}`, // one character off
      `${victim.id}.`, // no secret
      `${victim.id}.${victimSecret}x`, // too long
      victim.id, // no dot
      "",
      "x".repeat(512),
    ];
    for (const token of tries) {
      const received = events!.next(EventType.ConnectionReceived);
      const welcome = await handshake(url, { name: "attacker" }, token);
      assert.notEqual(welcome.id, victim.id, `token ${JSON.stringify(token)} took the id`);
      assert.equal(welcome.resumed, undefined);
      assert.equal((await received).resumed, false);
    }
    // None of the attempts used up the victim's token.
    const back = await handshake(url, { name: "victim" }, victim.resumeToken);
    assert.equal(back.id, victim.id);
    assert.equal(back.resumed, true);
  });

  it("WebSocketServer gives a fresh id once resumeWindow has passed", T, async () => {
    // The server's clock moves only when told: the token expires without any sleeping.
    const clock = new FakeClock(1_000);
    const url = start({ resumeWindow: 20, clock });
    const first = await handshake(url, { name: "late" });
    await drop(first.id);
    clock.advance(40);
    const received = events!.next(EventType.ConnectionReceived);
    const late = await handshake(url, { name: "late" }, first.resumeToken);
    assert.notEqual(late.id, first.id);
    assert.equal(late.resumed, undefined);
    assert.equal((await received).resumed, false);
  });

  it("WebSocketServer with resumeWindow 0 issues no tokens and ignores resume", T, async () => {
    const url = start({ resumeWindow: 0 });
    const first = await handshake(url, { name: "a" });
    assert.equal(first.resumeToken, undefined);
    await drop(first.id);
    const second = await handshake(url, { name: "a" }, `${first.id}.${"A".repeat(43)}`);
    assert.notEqual(second.id, first.id);
    assert.equal(second.resumed, undefined);
  });

  it(
    "WebSocketServer closes a still-open connection with 4012 when its id is resumed",
    T,
    async () => {
      const url = start();
      const first = await handshake(url, { name: "twice" });
      const old = peers[0];
      const oldConnection = server!.connection(first.id);
      assert.ok(oldConnection);
      const closedOld = events!.next(EventType.ConnectionClosed, first.id);
      const received = events!.next(EventType.ConnectionReceived);
      const second = await handshake(url, { name: "twice" }, first.resumeToken);
      assert.equal(second.id, first.id);
      assert.equal(second.resumed, true);
      const oldClose = await withTimeout(old.closed, GUARD, "the old socket to close");
      assert.equal(oldClose.code, CloseCode.Replaced);
      assert.equal((await closedOld).connection, oldConnection);
      const event = await received;
      assert.equal(event.resumed, true);
      assert.notEqual(event.connection, oldConnection);
      assert.equal(server!.connection(first.id), event.connection);
      assert.equal(server!.connections().length, 1);
    },
  );

  it(
    "WebSocketServer keeps the stored metadata when the resuming HELLO's metadata is null, else takes the new",
    T,
    async () => {
      const url = start();
      const first = await handshake(url, { name: "m", version: 1 });
      await drop(first.id);
      const restored = await handshake(url, null, first.resumeToken);
      assert.equal(restored.id, first.id);
      assert.deepEqual(server!.metadata(first.id), { name: "m", version: 1 });
      await drop(first.id);
      const updated = await handshake(url, { name: "m", version: 2 }, restored.resumeToken);
      assert.equal(updated.id, first.id);
      assert.deepEqual(server!.metadata(first.id), { name: "m", version: 2 });
    },
  );

  it("WebSocketServer rejects a negative or non-finite resumeWindow with RangeError", T, () => {
    for (const resumeWindow of [-1, NaN, Infinity]) {
      assert.throws(() => new WebSocketServer({ noServer: true, resumeWindow }), RangeError);
    }
  });
});

/** Resume tokens shared in memory: what the gateway's cluster keeps in Redis. */
class MemorySharedTokens implements SharedResumeTokens {
  readonly tokens = new Map<string, { secret: string; metadata: unknown; cost: number }>();
  down = false;
  issued(id: string, secret: string, metadata: unknown, metadataCost: number): void {
    this.tokens.set(id, { secret, metadata, cost: metadataCost });
  }
  ended(): void {}
  redeem(id: string, secret: string): Promise<SharedRedeemed> {
    if (this.down) return Promise.reject(new Error("the shared store is down"));
    const token = this.tokens.get(id);
    if (!token) return Promise.resolve("unknown");
    if (token.secret !== secret) return Promise.resolve("refused");
    this.tokens.delete(id);
    return Promise.resolve({ metadata: token.metadata, metadataCost: token.cost });
  }
}

describe("WebSocketServer resumption with shared tokens (sharedResume)", () => {
  const servers: WebSocketServer[] = [];
  const peers: RawPeer[] = [];

  function start(shared: SharedResumeTokens): { url: string; server: WebSocketServer } {
    const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, sharedResume: shared });
    servers.push(server);
    return { url: `ws://127.0.0.1:${server.addr.port}`, server };
  }

  async function handshake(url: string, metadata: unknown, resume?: string): Promise<Welcome> {
    const { peer, welcome } = await rawHandshake(url, metadata, resume);
    peers.push(peer);
    return welcome;
  }

  afterEach(async () => {
    await Promise.all(peers.splice(0).map((peer) => peer.close()));
    for (const server of servers.splice(0)) {
      await withTimeout(server.close(), 15_000, "server.close()");
    }
  });

  it(
    "a token issued by one server resumes on another, once, and is then refused on both",
    T,
    async () => {
      const shared = new MemorySharedTokens();
      const one = start(shared);
      const two = start(shared);
      const first = await handshake(one.url, { name: "mover" });
      assert.equal(shared.tokens.get(first.id)?.secret, first.resumeToken!.split(".")[1]);
      // On the other server, with no metadata: the id and the metadata come back.
      const events = new Recorder(two.server.events());
      const moved = await handshake(two.url, null, first.resumeToken);
      assert.equal(moved.id, first.id);
      assert.equal(moved.resumed, true);
      await withTimeout(events.wait(EventType.ConnectionReceived, first.id), GUARD, "opened");
      await events.stop();
      assert.deepEqual(two.server.metadata(first.id), { name: "mover" });
      // Back on the first server, whose own store still has the token: the shared store has
      // the newer one, so the used token gets a fresh id.
      const again = await handshake(one.url, { name: "mover" }, first.resumeToken);
      assert.notEqual(again.id, first.id);
      assert.equal(again.resumed, undefined);
    },
  );

  it("with the shared store down, the server's own tokens still resume", T, async () => {
    const shared = new MemorySharedTokens();
    const { url, server } = start(shared);
    const events = new Recorder(server.events());
    const first = await handshake(url, { name: "local" });
    await peers.splice(0)[0].close();
    await withTimeout(
      events.wait(EventType.ConnectionClosed, first.id),
      GUARD,
      "the server to see the peer go",
    );
    await events.stop();
    shared.down = true;
    const resumed = await handshake(url, { name: "local" }, first.resumeToken);
    assert.equal(resumed.id, first.id);
    assert.equal(resumed.resumed, true);
  });
});

describe("WebSocketClient resumption after a dropped TCP connection", () => {
  let server: WebSocketServer | undefined;
  let proxy: TcpProxy | undefined;
  let client: WebSocketClient | undefined;

  afterEach(async () => {
    await withTimeout(client?.close() ?? Promise.resolve(), GUARD, "client.close()");
    await proxy?.close();
    await withTimeout(server?.close() ?? Promise.resolve(), 15_000, "server.close()");
    server = proxy = client = undefined;
  });

  it(
    "WebSocketClient reconnects with its resume token and gets the same id; the handler still serves",
    T,
    async () => {
      server = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
      proxy = await startProxy(server.addr.port);
      const serverEvents = new Recorder(server.events());
      client = new WebSocketClient({
        url: `ws://127.0.0.1:${proxy.port}`,
        reconnect: { initialDelay: 10, maxDelay: 100 },
      }).withMetadata({ name: "resumer" });
      const clientEvents = new Recorder(client.events());
      try {
        const first = await withTimeout(client.connect(), GUARD, "client.connect()");
        first.serve((request) => new Response(`agent ${new URL(request.url).pathname}`));
        const firstEvent = await clientEvents.wait(EventType.ConnectionReceived);
        assert.equal(firstEvent.resumed, false);
        assert.equal((await serverEvents.wait(EventType.ConnectionReceived)).resumed, false);
        const id = first.id;

        for (let round = 1; round <= 2; round++) {
          const serverClosed = serverEvents.next(EventType.ConnectionClosed, id);
          const serverReceived = serverEvents.next(EventType.ConnectionReceived, id);
          const clientReceived = clientEvents.next(EventType.ConnectionReceived);
          proxy.resetAll();
          await serverClosed;
          const onServer = await serverReceived;
          const onClient = await clientReceived;
          assert.equal(onServer.resumed, true, `round ${round}: server event`);
          assert.equal(onClient.resumed, true, `round ${round}: client event`);
          assert.equal(onClient.connectionId, id);
          assert.equal(client.connection?.id, id);
          assert.notEqual(client.connection, first);
          assert.deepEqual(server.metadata(id), { name: "resumer" });
          const served = await onServer.connection!.fetch("/after-resume");
          assert.equal(await served.text(), "agent /after-resume");
        }
      } finally {
        await serverEvents.stop();
        await clientEvents.stop();
      }
    },
  );

  it(
    "WebSocketClient gets a fresh id from a server that restarted (its token is unknown there)",
    T,
    async () => {
      server = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
      proxy = await startProxy(server.addr.port);
      client = new WebSocketClient({
        url: `ws://127.0.0.1:${proxy.port}`,
        reconnect: { initialDelay: 10, maxDelay: 100 },
      });
      const clientEvents = new Recorder(client.events());
      try {
        const first: Connection = await withTimeout(client.connect(), GUARD, "client.connect()");
        await clientEvents.wait(EventType.ConnectionReceived);
        const restarted = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
        const old = server;
        server = restarted;
        proxy.target = restarted.addr.port;
        const received = clientEvents.next(EventType.ConnectionReceived);
        await withTimeout(old.close(), 15_000, "the old server's close()");
        const event = await received;
        assert.equal(event.resumed, false);
        assert.notEqual(event.connectionId, first.id);
      } finally {
        await clientEvents.stop();
      }
    },
  );
});

describe("ResumeStore", () => {
  const fake = (id: string, metadata: unknown = null) => ({ id, metadata }) as Connection;

  it(
    "ResumeStore.redeem() honours the window with an injected clock, and tokens are single-use",
    T,
    () => {
      const store = new ResumeStore(1_000);
      const a = fake("A", { n: 1 });
      const token = store.issue("A", a);
      store.release(a, 5_000);
      assert.equal(store.redeem(token, 6_000), undefined, "expired exactly at the window's end");
      const b = fake("B", { n: 2 });
      const tokenB = store.issue("B", b);
      store.release(b, 7_000);
      assert.deepEqual(store.redeem(tokenB, 7_999), {
        id: "B",
        metadata: { n: 2 },
        metadataCost: 0,
      });
      assert.equal(store.redeem(tokenB, 7_999), undefined, "single-use");
    },
  );

  it("ResumeStore sweeps expired entries lazily and keeps at most MAX_RESUMABLE", T, () => {
    const store = new ResumeStore(100, 3);
    for (let i = 0; i < 5; i++) {
      const c = fake(`C${i}`);
      store.issue(c.id, c);
      store.release(c, i);
    }
    assert.equal(store.size, 3, "bounded");
    store.redeem("nothing", 10_000);
    assert.equal(store.size, 0, "swept on use");
    assert.ok(MAX_RESUMABLE >= 10_000);
  });

  it("ResumeStore forgets an ended entry when its window passes on the store's clock", T, () => {
    const clock = new FakeClock(10_000);
    const store = new ResumeStore(1_000, MAX_RESUMABLE, MAX_RESUMABLE_BYTES, clock);
    const a = fake("A");
    const token = store.issue("A", a);
    store.release(a);
    assert.equal(store.size, 1);
    clock.advance(999);
    assert.equal(store.size, 1, "kept within the window");
    clock.advance(1);
    assert.equal(store.size, 0, "swept by its deadline, with no client coming back");
    assert.equal(store.redeem(token), undefined);
    assert.equal(clock.pendingTimers, 0, "no timer left once nothing is kept");
  });

  it("ResumeStore.redeem() returns the still-open connection that holds the id", T, () => {
    const store = new ResumeStore(1_000);
    const live = fake("L", { live: true });
    const token = store.issue("L", live);
    const redeemed = store.redeem(token, 0);
    assert.equal(redeemed?.previous, live);
    assert.equal(redeemed?.id, "L");
    store.release(live, 1);
    assert.equal(store.size, 0, "a replaced connection leaves nothing to resume");
  });

  it("timingSafeEqual() compares strings of any length", T, () => {
    assert.equal(timingSafeEqual("abc", "abc"), true);
    assert.equal(timingSafeEqual("abc", "abd"), false);
    assert.equal(timingSafeEqual("abc", "ab"), false);
    assert.equal(timingSafeEqual("", ""), true);
    assert.equal(timingSafeEqual("a", ""), false);
  });
});
