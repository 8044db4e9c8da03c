/**
 * The gateway between a slow end and a fast one, directly and through a cluster peer's link:
 *
 * - One end that stops reading holds the other back: a caller that stops reading a large
 *   answer holds back the tunnelling agent's upstream (a raw `node:net` server writing as
 *   fast as its socket takes bytes), and an upstream that stops reading a large upload holds
 *   back the caller, each to what the buffers between hold. Other callers are served
 *   meanwhile, and the agent lets go of the upstream's socket when the exchange ends.
 * - The agent's answer timeout counts from the last byte of the request body that moved, as
 *   nginx's `proxy_send_timeout` and `proxy_read_timeout` do: an upload that takes longer
 *   than the timeout is answered, one the agent stops taking gets 504, and a caller whose body
 *   stops arriving gets 408 and its connection closed.
 * - A body the agent no longer wants (after a 504, or an answer that came before the upstream
 *   read it) is read and dropped, and the caller's connection carries its next request.
 * - A caller that takes nothing for the send timeout is cut; callers that stall together,
 *   filling their agent connection's window, are cut sooner, so that the agent's other
 *   callers are answered again.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { type Gateway, type GatewayOptions, type RedisLike, startGateway } from "../gateway.ts";
import { STALLED_READER_TIMEOUT } from "../gateway/_defaults.ts";
import { startAgent } from "../agent.ts";
import { cleanups, held, withTimeout } from "./_helpers.ts";
import { connectRedis, NO_REDIS, type RedisServer, startRedis } from "./_redis.ts";

const GUARD = 30_000;
/** The gateways' agent timeout: short, so that a stalled exchange ends within the test. */
const TIMEOUT = 2_000;
/** The gateways' send timeout: longer than a hold takes to measure, short for the test. */
const SEND_TIMEOUT = 4_000;
const MIB = 1024 * 1024;
/** A transfer's size: what an end with nothing to hold it back would send in ~1 s. */
const BODY = 512 * MIB;
const CHUNK = new Uint8Array(64 * 1024).fill(0x61);
/**
 * Most one end may send while the other reads nothing. Between them: the caller's and the
 * upstream's sockets' kernel buffers (this host's `tcp_rmem` lets a loopback receive buffer
 * grow to 32 MiB, the send side to 4 MiB), the stream's flow-control window (2 MiB by
 * default; the cluster's link adds its own) and a few chunks of read-ahead at each end.
 * Without a hold the sender sends all of `BODY`.
 */
const BOUND = 128 * MIB;

/** What the upstream does with a request, by its request line. */
type Upstream = {
  url: string;
  /** Bytes of `/file` written so far. */
  written(): number;
  /** Resolves when a socket that carried `/file` or `/sink` has closed. */
  closed: Promise<void>;
  /**
   * Reads `/sink` sockets again. (A socket that is not read learns of no close: the runtimes
   * do not watch a paused socket.)
   */
  resume(): void;
  close(): Promise<void>;
};

/**
 * An upstream that answers `GET /file` with `BODY` bytes, written as fast as they go, takes
 * the head of `PUT /sink` and then reads no more, answers `PUT /count` with the length of
 * the body once it has all of it and `PUT /early` with `early` before it reads the body (and
 * then reads it), `GET /late` with `late` a moment later, and anything else with `ok` and
 * its path.
 */
async function upstreamServer(): Promise<Upstream> {
  let written = 0;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => markClosed = resolve);
  const sockets = new Set<net.Socket>();
  const answer = (socket: net.Socket, body: string): void =>
    void socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => sockets.delete(socket));
    // Bytes of a `/count` or `/early` body still to come; a chunk starts a request head when
    // none are.
    let counting = 0;
    let length = 0;
    let early = false;
    socket.on("data", (chunk: Uint8Array) => {
      if (counting > 0) {
        counting -= chunk.byteLength;
        if (counting <= 0 && !early) answer(socket, `${length}`);
        return;
      }
      const text = new TextDecoder("latin1").decode(chunk);
      const headEnd = text.indexOf("\r\n\r\n") + 4;
      if (text.startsWith("PUT /count ") || text.startsWith("PUT /early ")) {
        early = text.startsWith("PUT /early ");
        if (early) answer(socket, "early");
        length = Number(/content-length: *(\d+)/i.exec(text)![1]);
        counting = length - (chunk.byteLength - headEnd);
        if (counting <= 0 && !early) answer(socket, `${length}`);
        return;
      }
      if (text.startsWith("GET /late ")) {
        // A slow upstream: the pace of one, not a wait for anything.
        return void setTimeout(() => answer(socket, "late"), TIMEOUT / 8);
      }
      if (!text.startsWith("GET /file ") && !text.startsWith("PUT /sink ")) {
        return answer(socket, `ok ${text.slice(4, text.indexOf(" ", 4))}`);
      }
      socket.once("close", markClosed);
      if (text.startsWith("PUT")) return void socket.pause();
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${BODY}\r\n\r\n`);
      const pump = (): void => {
        while (written < BODY && !socket.destroyed) {
          written += CHUNK.byteLength;
          if (!socket.write(CHUNK)) return void socket.once("drain", pump);
        }
      };
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    written: () => written,
    closed,
    resume: () => {
      for (const socket of sockets) socket.resume();
    },
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

/** A gateway's timeouts for callers that stop reading; the send timeout is `SEND_TIMEOUT` if not given. */
type Timeouts = Pick<GatewayOptions, "sendTimeout" | "stalledReaderTimeout">;

/** What a caller reaches the agent through; every step is stopped by `cleanup`. */
type Route = (
  upstream: string,
  cleanup: ReturnType<typeof cleanups>,
  timeouts?: Timeouts,
) => Promise<string>;

/** A gateway whose agent tunnels to `upstream`; the caller calls that gateway. */
const direct: Route = async (upstream, cleanup, timeouts = {}) => {
  const gateway = await startGateway({
    hostname: "127.0.0.1",
    port: 0,
    timeout: TIMEOUT,
    sendTimeout: SEND_TIMEOUT,
    ...timeouts,
  });
  cleanup.add(() => gateway.close());
  await agentOn(gateway, upstream, cleanup);
  return gateway.url;
};

/** Two gateways in a cluster on `redis-server`: the agent on one, the caller at the other. */
const throughPeer: Route = async (upstream, cleanup, timeouts = {}) => {
  const redis = await startRedis();
  cleanup.add(() => redis.close());
  const [near, far] = [
    await clustered(redis, cleanup, timeouts),
    await clustered(redis, cleanup, timeouts),
  ];
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
  timeouts: Timeouts,
): Promise<Gateway> {
  const client = await connectRedis(redis);
  cleanup.add(() => Promise.resolve(client.destroy()));
  const gateway = await startGateway({
    hostname: "127.0.0.1",
    port: 0,
    timeout: TIMEOUT,
    sendTimeout: SEND_TIMEOUT,
    ...timeouts,
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

describe("the gateway between a slow end and a fast one", () => {
  for (
    const [via, route, skip] of [
      ["a gateway", direct, false],
      ["a cluster instance whose peer holds the agent", throughPeer, NO_REDIS],
    ] as const
  ) {
    const options = { timeout: 120_000, skip };
    it(
      `through ${via}: a caller that stops reading a large answer holds back the tunnelling agent's upstream`,
      options,
      () => oneEndStops(route, "download"),
    );
    it(
      `through ${via}: an upstream that stops reading a large upload holds back the caller, who gets 504 once nothing has moved for the timeout, and its connection serves on`,
      options,
      () => oneEndStops(route, "upload"),
    );
    it(
      `through ${via}: an upload that takes longer than the timeout, moving all the while, is answered`,
      options,
      () => slowUpload(route),
    );
    it(
      `through ${via}: an upstream that answers before it reads a large upload: the caller gets the answer, and its connection serves on`,
      options,
      () => earlyAnswer(route),
    );
    it(
      `through ${via}: a caller that takes nothing of a streaming answer for the send timeout is cut, and the upstream let go`,
      options,
      () => sendTimeout(route),
    );
    it(
      `through ${via}: callers that stall an agent's connection are cut, and the agent's other callers are answered again`,
      options,
      () => stalledAgent(route, {}),
    );
    it(
      `through ${via}: stalledReaderTimeout sets how soon such callers are cut; with Infinity only the send timeout cuts them`,
      options,
      async () => {
        // Sooner than the default would cut them.
        await stalledAgent(route, { stalledReaderTimeout: 500 }, STALLED_READER_TIMEOUT / 2);
        // Later than the default would.
        const sendTimeout = STALLED_READER_TIMEOUT + 3_000;
        await stalledAgent(route, { stalledReaderTimeout: Infinity, sendTimeout });
      },
    );
    it(
      `through ${via}: pipelined requests whose first answer is slow are answered in order`,
      options,
      () => pipelined(route),
    );
    it(
      `through ${via}: a caller whose body stops arriving gets 408 once nothing has come for the timeout, its connection is closed and the upstream let go`,
      options,
      () => bodyStops(route),
    );
  }
});

/** A raw caller on its own connection to the gateway. */
class Caller {
  readonly socket: net.Socket;
  /** What came back so far, as text. */
  received = "";
  /** Bytes of the body being poured so far. */
  poured = 0;
  #waiter: { done(): boolean; resolve(): void } | undefined;

  constructor(gateway: string, cleanup: ReturnType<typeof cleanups>) {
    this.socket = net.connect(Number(new URL(gateway).port), "127.0.0.1");
    cleanup.add(() => Promise.resolve(this.socket.destroy()));
    this.socket.on("error", () => {});
    this.socket.on("data", (chunk: Uint8Array) => {
      this.received += new TextDecoder().decode(chunk);
      if (this.#waiter?.done()) this.#waiter.resolve();
    });
  }

  /** Resolves once what came back ends with `text`. */
  answered(text: string): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) =>
        this.#waiter = { done: () => this.received.endsWith(text), resolve }
      ),
      GUARD,
      `an answer ending ${JSON.stringify(text)}`,
    );
  }

  /** Resolves once `bytes` have come back; the socket then reads no more until resumed. */
  stopAfter(bytes: number): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (this.received.length < bytes) return;
          this.socket.off("data", check);
          this.socket.pause();
          resolve();
        };
        this.socket.on("data", check);
      }),
      GUARD,
      `the first ${bytes} bytes of the answer`,
    );
  }

  /** Writes `head`, then `bytes` of body as fast as the socket takes them; resolves when all are. */
  pour(head: string, bytes: number): Promise<void> {
    this.socket.write(head);
    return new Promise<void>((resolve) => {
      const pump = (): void => {
        while (this.poured < bytes && !this.socket.destroyed) {
          this.poured += CHUNK.byteLength;
          if (!this.socket.write(CHUNK)) return void this.socket.once("drain", pump);
        }
        resolve();
      };
      pump();
    });
  }
}

/** A gateway reached by `route`, its agent's upstream, and a raw caller. */
async function rig(
  route: Route,
  cleanup: ReturnType<typeof cleanups>,
  timeouts?: Timeouts,
): Promise<{ upstream: Upstream; gateway: string; caller: Caller }> {
  const upstream = await upstreamServer();
  cleanup.add(() => upstream.close());
  const gateway = await route(upstream.url, cleanup, timeouts);
  return { upstream, gateway, caller: new Caller(gateway, cleanup) };
}

/**
 * One large transfer whose receiving end stops reading: the sending end must stop within
 * `BOUND`, another caller is served meanwhile, and the upstream is let go once the exchange
 * ends (the caller going away; a caller whose upload stalled is answered 504 first, and its
 * connection then serves on).
 */
async function oneEndStops(route: Route, direction: "download" | "upload"): Promise<void> {
  const cleanup = cleanups();
  try {
    const { upstream, gateway, caller } = await rig(route, cleanup);
    let sent: () => number;
    let answered: Promise<void> | undefined;
    let pouredAll: Promise<void> | undefined;
    if (direction === "download") {
      // The caller reads the head and a first piece of the body, then stops.
      const firstBytes = caller.stopAfter(MIB);
      caller.socket.write("GET /agents/big/file HTTP/1.1\r\nhost: gw\r\n\r\n");
      await firstBytes;
      sent = upstream.written;
    } else {
      // The caller writes as fast as its socket takes bytes; the upstream reads the head only.
      answered = caller.answered(`within ${TIMEOUT} ms"}`);
      pouredAll = caller.pour(
        `PUT /agents/big/sink HTTP/1.1\r\nhost: gw\r\ncontent-length: ${BODY}\r\n\r\n`,
        BODY,
      );
      sent = () => caller.poured;
    }

    const moved = await withTimeout(settled(sent, 500), GUARD, "the sending end to stop");
    assert.ok(moved <= BOUND, `${(moved / MIB).toFixed(1)} MiB went before the hold`);

    // The held exchange harms no one else: a second caller is answered meanwhile.
    const other = await withTimeout(fetch(`${gateway}/agents/big/other`), GUARD, "another answer");
    assert.deepEqual([other.status, await other.text()], [200, "ok /other"]);

    if (direction === "upload") {
      // Nothing moves: the agent has not answered within the timeout of the last byte it took.
      await answered;
      assert.match(caller.received, /^HTTP\/1\.1 504 /);
      // The exchange is over: the agent has closed its socket, as the upstream finds.
      upstream.resume();
      // The gateway reads the rest and drops it (as nginx and Node do; its cancelled body
      // stream then takes no more: Bun threw on the request's end here), and the connection
      // carries the caller's next request.
      await withTimeout(pouredAll!, GUARD, "the rest of the upload to be taken");
      const next = caller.answered("\r\n\r\nok /other");
      caller.socket.write("GET /agents/big/other HTTP/1.1\r\nhost: gw\r\n\r\n");
      await next;
      assert.match(caller.received, /^HTTP\/1\.1 504 [^]*"}HTTP\/1\.1 200 /);
    } else {
      caller.socket.destroy();
    }
    await withTimeout(upstream.closed, GUARD, "the upstream's socket to be let go");
  } finally {
    await cleanup.run();
  }
}

/**
 * An upload in pieces `TIMEOUT / 4` apart, taking twice `TIMEOUT` in all: the agent's
 * upstream answers once it has the whole body, and the caller gets that answer.
 */
async function slowUpload(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const { caller } = await rig(route, cleanup);
    const pieces = 8;
    const length = pieces * CHUNK.byteLength;
    const answered = caller.answered(`\r\n\r\n${length}`);
    caller.socket.write(
      `PUT /agents/big/count HTTP/1.1\r\nhost: gw\r\ncontent-length: ${length}\r\n\r\n`,
    );
    for (let i = 0; i < pieces; i++) {
      // The pace of a slow network, not a wait for anything.
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT / 4));
      caller.socket.write(CHUNK);
    }
    await answered;
    assert.match(caller.received, /^HTTP\/1\.1 200 /);
  } finally {
    await cleanup.run();
  }
}

/**
 * An upload answered before the upstream has read it (as a 401 or 413 often is): the caller
 * gets the answer while it is still sending, the gateway passes the rest on, and the same
 * connection then carries the next request.
 */
async function earlyAnswer(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const { caller } = await rig(route, cleanup);
    const length = 64 * MIB;
    const early = caller.answered("\r\n\r\nearly");
    const pouredAll = caller.pour(
      `PUT /agents/big/early HTTP/1.1\r\nhost: gw\r\ncontent-length: ${length}\r\n\r\n`,
      length,
    );
    await early;
    assert.match(caller.received, /^HTTP\/1\.1 200 /);
    await withTimeout(pouredAll, GUARD, "the rest of the upload to be taken");
    const next = caller.answered("\r\n\r\nok /other");
    caller.socket.write("GET /agents/big/other HTTP/1.1\r\nhost: gw\r\n\r\n");
    await next;
  } finally {
    await cleanup.run();
  }
}

/**
 * A caller that sends a head and part of its body, then nothing (a slowloris on the body):
 * once nothing has come for the timeout it gets 408 (nginx's `client_body_timeout`), not a 504
 * that would blame the agent; its connection is closed, and the upstream is let go.
 */
async function bodyStops(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const { upstream, caller } = await rig(route, cleanup);
    const closed = new Promise<void>((resolve) => caller.socket.once("close", () => resolve()));
    caller.socket.write(
      `PUT /agents/big/sink HTTP/1.1\r\nhost: gw\r\ncontent-length: ${BODY}\r\n\r\n`,
    );
    caller.socket.write(CHUNK);
    await withTimeout(closed, GUARD, "the caller's connection to be closed");
    assert.match(caller.received, /^HTTP\/1\.1 408 [^]*"request_timeout"/);
    upstream.resume();
    await withTimeout(upstream.closed, GUARD, "the upstream's socket to be let go");
  } finally {
    await cleanup.run();
  }
}

/** Three requests in one write, the first answered late: the answers come back in order. */
async function pipelined(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const { caller } = await rig(route, cleanup);
    const answered = caller.answered("\r\n\r\nok /three");
    caller.socket.write(
      ["late", "two", "three"].map((path) => `GET /agents/big/${path} HTTP/1.1\r\nhost: gw\r\n\r\n`)
        .join(""),
    );
    await answered;
    const bodies = caller.received.split("HTTP/1.1 ").slice(1).map((answer) =>
      answer.slice(answer.indexOf("\r\n\r\n") + 4)
    );
    assert.deepEqual(bodies, ["late", "ok /two", "ok /three"]);
  } finally {
    await cleanup.run();
  }
}

/**
 * A caller that reads the head and a first piece of a large answer and then nothing: the
 * gateway cuts its connection once it has taken nothing for the send timeout (nginx's
 * `send_timeout`), which cancels the agent's exchange and lets the upstream go.
 */
async function sendTimeout(route: Route): Promise<void> {
  const cleanup = cleanups();
  try {
    const { upstream, caller } = await rig(route, cleanup);
    const cut = new Promise<void>((resolve) => caller.socket.once("close", () => resolve()));
    const firstBytes = caller.stopAfter(MIB);
    caller.socket.write("GET /agents/big/file HTTP/1.1\r\nhost: gw\r\n\r\n");
    await firstBytes;
    const paused = performance.now();
    await withTimeout(upstream.closed, GUARD, "the upstream's socket to be let go");
    // Timers fire late, never early: the cut comes no sooner than the send timeout after the
    // front's writes began to wait, which is after the caller paused.
    const after = performance.now() - paused;
    assert.ok(after >= SEND_TIMEOUT - 1_000, `let go ${Math.round(after)} ms after the pause`);
    // The caller's connection was cut: read on, it ends short of the answer's length. (A
    // paused socket hears of no close.)
    caller.socket.resume();
    await withTimeout(cut, GUARD, "the caller's connection to end");
    assert.ok(caller.received.length < BODY, `${caller.received.length} bytes came`);
  } finally {
    await cleanup.run();
  }
}

/**
 * Eight callers start large answers from one agent and stop reading: their unread bytes fill
 * the agent connection's window (each holds up to its exchange window), which stalls the
 * agent's other callers until the gateway cuts the stalled readers (`stalledReaderTimeout`,
 * 5 s by default, on agents' connections and cluster links; the send timeout here is a minute
 * unless `timeouts` gives one). Then another caller of the same agent is answered, within
 * `within` of the window filling; with the stalled-reader timeout off, no sooner than the send
 * timeout after the callers stopped reading.
 */
async function stalledAgent(
  route: Route,
  timeouts: Timeouts,
  within = 4 * STALLED_READER_TIMEOUT,
): Promise<void> {
  const cleanup = cleanups();
  try {
    const { upstream, gateway } = await rig(route, cleanup, { sendTimeout: 60_000, ...timeouts });
    const stalled = Array.from({ length: 8 }, () => new Caller(gateway, cleanup));
    const started = performance.now();
    for (const caller of stalled) {
      void caller.stopAfter(64 * 1024).catch(() => {});
      caller.socket.write("GET /agents/big/file HTTP/1.1\r\nhost: gw\r\n\r\n");
    }
    // The window is full once the upstream writes no more.
    await withTimeout(settled(upstream.written, 500), GUARD, "the agent's window to fill");
    const other = await withTimeout(
      fetch(`${gateway}/agents/big/other`),
      timeouts.stalledReaderTimeout === Infinity ? GUARD : within,
      "the agent's next caller to be answered",
    );
    assert.deepEqual([other.status, await other.text()], [200, "ok /other"]);
    if (timeouts.stalledReaderTimeout === Infinity) {
      // Timers fire late, never early: the stalled callers' send timeouts began after they
      // started.
      const after = performance.now() - started;
      assert.ok(after >= timeouts.sendTimeout!, `answered ${Math.round(after)} ms after the stall`);
    }
  } finally {
    await cleanup.run();
  }
}
