/**
 * `Limits` over real loopback sockets, for the limits the other suites do not cover:
 * `maxFrameBytes` both ways, `maxHeaderBytes` enforced by the receiver against a peer that
 * ignores it, `maxMetadataBytes` (and no reconnect storm after it), `initialWindow` (a small
 * window still moves a large body) and `resetRateLimit`. `handshakeTimeout`,
 * `maxConnections` and `allowedOrigins` are in client_test.ts and server_test.ts;
 * `maxConcurrentStreams` and the sender's side of `maxHeaderBytes` in exchange_test.ts.
 *
 * The raw-peer tests speak the protocol by hand, with the protocol's encoders, so that
 * only the part under test is wrong.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  EventType,
  ExchangeTooLargeError,
  HandshakeError,
  ProtocolError,
  WebSocketClient,
  WebSocketServer,
} from "../mod.ts";
import {
  decodeReset,
  decodeResponseHead,
  decodeWindowUpdate,
  DEFAULT_SETTINGS,
  FLAG_END_STREAM,
  type Frame,
  FrameType,
  ResetCode,
} from "../protocol/mod.ts";
import { eventWhere, nextEvent, startPair, withTimeout } from "./_helpers.ts";
import { checkPattern, patternByte, patternStream, streamInit } from "./_exchange_helpers.ts";
import { connectRaw, type RawPeer } from "./_raw_peer.ts";
import { dataFrame, FrameReader, message, requestFrame, resetFrame } from "./_raw_frames.ts";
import { startProxy, type TcpProxy } from "./_proxy.ts";
import { Resources, urlOf } from "./_server_helpers.ts";

const GUARD = 15_000;
/** Bun's runner stops a test after 5 s unless told otherwise; the machine may be loaded. */
const TEST_OPTIONS = { timeout: 60_000 };

const isStream = (type: number, streamId: number) => (frame: Frame): boolean =>
  frame.type === type && frame.streamId === streamId;

describe("Limits", () => {
  const resources = new Resources();
  const raws: RawPeer[] = [];
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    for (const raw of raws.splice(0)) await raw.close();
    for (const proxy of proxies.splice(0)) await proxy.close();
    await resources.closeAll();
  });

  function raw(server: WebSocketServer): RawPeer {
    const peer = connectRaw(urlOf(server));
    raws.push(peer);
    return peer;
  }

  it(
    "limits.maxFrameBytes: a frame at the server's limit is accepted, one byte over closes the raw peer with 4010",
    TEST_OPTIONS,
    async () => {
      const maxFrameBytes = 16 * 1024;
      let received = 0;
      const server = resources.server({
        limits: { maxFrameBytes },
        handler: async (request) => {
          received = (await request.arrayBuffer()).byteLength;
          return new Response("done");
        },
      });
      const events = server.events();
      // A well-behaved agent on the same server, to show that only the offender is closed.
      const agent = await withTimeout(
        resources.client(urlOf(server)).connect(),
        GUARD,
        "agent connect()",
      );
      await nextEvent(events, EventType.ConnectionReceived);

      const peer = raw(server);
      const welcome = await peer.handshake();
      assert.equal(welcome.settings.maxFrameBytes, maxFrameBytes);
      const reader = new FrameReader(peer);
      peer.ws.send(message(requestFrame(1, { method: "POST", url: "/up", headers: [] }, false)));
      peer.ws.send(message(dataFrame(1, new Uint8Array(maxFrameBytes))));
      // The server answers every stream frame (the nudge), so the frame was taken if it says
      // anything back without closing.
      await reader.next(() => true);
      assert.equal(peer.ws.readyState, WebSocket.OPEN);
      peer.ws.send(message(dataFrame(1, new Uint8Array(maxFrameBytes + 1), true)));
      const closed = await withTimeout(peer.closed, GUARD, "the server to close the raw peer");
      assert.equal(closed.code, CloseCode.FrameTooLarge);
      assert.equal(closed.code, 4010);
      assert.match(closed.reason, /exceeds limit 16384/);
      const failure = await nextEvent(events, EventType.ConnectionFailure);
      assert.ok(failure.error instanceof ProtocolError, `got ${failure.error}`);
      assert.equal((failure.error as ProtocolError).code, 4010);
      assert.equal(received, 0, "the half-sent body must not look complete");

      assert.equal(agent.isClosed, false);
      const response = await withTimeout(agent.fetch("/after", { method: "POST" }), GUARD, "fetch");
      assert.equal(await response.text(), "done");
      await events.return?.();
    },
  );

  it(
    "limits.maxFrameBytes: big bodies and big headers never exceed the peer's maxFrameBytes, both ways",
    TEST_OPTIONS,
    async () => {
      const maxFrameBytes = 16 * 1024;
      const pair = await startPair(
        { limits: { maxFrameBytes } },
        { limits: { maxFrameBytes } },
      );
      try {
        assert.equal(pair.clientSide.isClosed, false);
        // Each end echoes the body and answers with a header block just under the frame limit.
        const big = "h".repeat(maxFrameBytes - 1024);
        const handler = async (request: Request): Promise<Response> => {
          assert.equal(request.headers.get("x-big"), big);
          const result = await checkPattern(request.body!);
          return new Response(patternStream(result.bytes, 256 * 1024), {
            headers: {
              "x-big": big,
              "x-received": String(result.bytes),
              "x-mismatch": String(result.firstMismatch),
            },
          });
        };
        pair.serverSide.serve(handler);
        pair.clientSide.serve(handler);
        const size = 1024 * 1024 + 17;
        for (const caller of [pair.clientSide, pair.serverSide]) {
          const response = await withTimeout(
            caller.fetch(
              "/echo",
              streamInit(patternStream(size, 256 * 1024), { headers: { "x-big": big } }),
            ),
            GUARD,
            "a big exchange",
          );
          assert.equal(response.status, 200);
          assert.equal(response.headers.get("x-big"), big);
          assert.equal(response.headers.get("x-received"), String(size));
          assert.equal(response.headers.get("x-mismatch"), "-1");
          const back = await withTimeout(checkPattern(response.body!), GUARD, "the body back");
          assert.deepEqual([back.bytes, back.firstMismatch], [size, -1]);
        }

        // A head bigger than the peer's frame limit (though under its maxHeaderBytes) is never
        // sent: that exchange fails with a "do not retry" error and the connection stays up.
        const error = await withTimeout(
          pair.clientSide.fetch("/echo", { headers: { "x-big": "h".repeat(maxFrameBytes) } })
            .then(() => assert.fail("fetch should have rejected"), (error: unknown) => error),
          GUARD,
          "an oversized head",
        );
        assert.ok(error instanceof ExchangeTooLargeError, `got ${error}`);
        assert.equal(error.retryable, false);
        // The peer would have closed with 4010 on any frame over its limit.
        assert.equal(pair.clientSide.isClosed, false);
        assert.equal(pair.serverSide.isClosed, false);
        const after = await withTimeout(
          pair.serverSide.fetch("/echo", { method: "POST", body: "x", headers: { "x-big": big } }),
          GUARD,
          "fetch after",
        );
        assert.equal(after.headers.get("x-received"), "1");
        await after.body?.cancel();
      } finally {
        await pair.close();
      }
    },
  );

  it(
    "limits.maxHeaderBytes: a raw peer's oversized HEADERS gets RESET TooLarge and the connection stays up",
    TEST_OPTIONS,
    async () => {
      let calls = 0;
      const server = resources.server({
        limits: { maxHeaderBytes: 4096 },
        handler: (request) => {
          calls++;
          return new Response(`hello ${new URL(request.url).pathname}`);
        },
      });
      const peer = raw(server);
      const welcome = await peer.handshake();
      assert.equal(welcome.settings.maxHeaderBytes, 4096);
      const reader = new FrameReader(peer);
      // The raw peer ignores the announced limit, as a buggy or hostile one would.
      peer.ws.send(message(requestFrame(1, {
        method: "GET",
        url: "/big",
        headers: [["x-big", "a".repeat(8192)]],
      })));
      const reset = await reader.next(isStream(FrameType.Reset, 1));
      const { code, reason } = decodeReset(reset.payload);
      assert.equal(code, ResetCode.TooLarge);
      assert.match(reason, /exceeds limit 4096/);
      assert.equal(calls, 0, "the handler must not see a refused request");

      peer.ws.send(message(requestFrame(3, { method: "GET", url: "/small", headers: [] })));
      const head = await reader.next(isStream(FrameType.Headers, 3));
      assert.equal(decodeResponseHead(head.payload).status, 200);
      let body = "";
      for (;;) {
        const data = await reader.next(isStream(FrameType.Data, 3));
        body += new TextDecoder().decode(data.payload);
        if (data.flags & FLAG_END_STREAM) break;
      }
      assert.equal(body, "hello /small");
      assert.equal(calls, 1);
      assert.equal(peer.ws.readyState, WebSocket.OPEN);
      assert.equal(server.connections().length, 1);
    },
  );

  it(
    "limits.maxMetadataBytes: connect() rejects with a non-retryable HandshakeError 4004 and a keepAlive client does not retry",
    TEST_OPTIONS,
    async () => {
      const maxMetadataBytes = 64;
      const server = resources.server({ limits: { maxMetadataBytes } });
      const proxy = await startProxy(server.addr.port);
      proxies.push(proxy);
      const url = `ws://127.0.0.1:${proxy.port}`;
      const reconnect = { initialDelay: 5, maxDelay: 20 };

      // Exactly at the limit (measured as compact JSON) is let in.
      const atLimit = { n: "x".repeat(maxMetadataBytes - '{"n":""}'.length) };
      assert.equal(JSON.stringify(atLimit).length, maxMetadataBytes);
      const fits = resources.client(url, { reconnect }).withMetadata(atLimit);
      const serverEvents = server.events();
      const connection = await withTimeout(fits.connect(), GUARD, "connect() at the limit");
      await nextEvent(serverEvents, EventType.ConnectionReceived);
      await serverEvents.return?.();
      assert.deepEqual(server.metadata(connection.id), atLimit);

      // One byte over: refused, terminal, and the client (keepAlive by default) does not retry.
      const over = { n: "x".repeat(maxMetadataBytes - '{"n":""}'.length + 1) };
      const tooBig = resources.client(url, { reconnect }).withMetadata(over);
      const error = await withTimeout(
        tooBig.connect().then(() => assert.fail("connect() should have rejected"), (e) => e),
        GUARD,
        "connect() over the limit",
      );
      assert.ok(error instanceof HandshakeError, `got ${error}`);
      assert.equal(error.code, CloseCode.InvalidMetadata);
      assert.equal(error.code, 4004);
      assert.equal(error.retryable, false);
      assert.match(error.message, /exceeds limit 64/);
      assert.equal(proxy.accepted, 2);

      // A connected client whose metadata grows over the limit reconnects once, is refused
      // with 4004, and gives up instead of hammering the server.
      const events = fits.events();
      fits.withMetadata(over);
      proxy.resetAll();
      const gaveUp = await eventWhere(
        events,
        (event) =>
          event.type === EventType.ConnectionFailure && event.error instanceof HandshakeError,
        "the client to give up reconnecting",
      );
      const cause = gaveUp.error as HandshakeError;
      assert.equal(cause.code, 4004);
      assert.equal(cause.retryable, false);
      assert.equal(proxy.accepted, 3, "one reconnect attempt, then none");
      assert.deepEqual(server.connections(), []);
      await events.return?.();
    },
  );

  it(
    "limits: a server announces a 2 MiB initialWindow (uploads in 1 MiB messages), 256 streams and an 8 MiB connection window by default",
    TEST_OPTIONS,
    async () => {
      const server = resources.server({ handler: () => new Response("ok") });
      const welcome = await raw(server).handshake();
      assert.equal(welcome.settings.initialWindow, 2 * 1024 * 1024);
      assert.equal(welcome.settings.maxConcurrentStreams, 256);
      // A quarter of the default 32 MiB budget (limits.maxBufferedBytes).
      assert.equal(welcome.settings.connectionWindow, 8 * 1024 * 1024);
      // The other settings keep the protocol's defaults, as a client's do.
      assert.deepEqual(
        {
          ...welcome.settings,
          initialWindow: DEFAULT_SETTINGS.initialWindow,
          maxConcurrentStreams: DEFAULT_SETTINGS.maxConcurrentStreams,
        },
        DEFAULT_SETTINGS,
      );
    },
  );

  it(
    "limits.initialWindow: a raw peer moves a large body through a 1 KiB window by WINDOW_UPDATEs, and overrunning it is 4007",
    TEST_OPTIONS,
    async () => {
      const initialWindow = 1024;
      const server = resources.server({
        limits: { initialWindow },
        handler: async (request) => {
          const result = await checkPattern(request.body!);
          return new Response(`${result.bytes} ${result.firstMismatch}`);
        },
      });
      const peer = raw(server);
      const welcome = await peer.handshake();
      assert.equal(welcome.settings.initialWindow, initialWindow);
      const reader = new FrameReader(peer);
      const total = 64 * 1024;
      peer.ws.send(message(requestFrame(1, { method: "POST", url: "/up", headers: [] }, false)));
      let credit = initialWindow;
      let sent = 0;
      let updates = 0;
      const body = new Uint8Array(total);
      for (let i = 0; i < total; i++) body[i] = patternByte(i);
      while (sent < total) {
        if (credit === 0) {
          const update = await reader.next(isStream(FrameType.WindowUpdate, 1));
          credit += decodeWindowUpdate(update.payload);
          updates++;
          continue;
        }
        const n = Math.min(credit, total - sent, 700);
        peer.ws.send(message(dataFrame(1, body.subarray(sent, sent + n), sent + n === total)));
        sent += n;
        credit -= n;
      }
      const head = await reader.next(isStream(FrameType.Headers, 1));
      assert.equal(decodeResponseHead(head.payload).status, 200);
      const data = await reader.next(isStream(FrameType.Data, 1));
      assert.equal(new TextDecoder().decode(data.payload), `${total} -1`);
      assert.ok(updates >= total / initialWindow - 1, `${updates} window updates`);
      // Every credit granted was earned: the server never grants more than it was sent.
      const granted = reader.seen
        .filter(isStream(FrameType.WindowUpdate, 1))
        .reduce((sum, frame) => sum + decodeWindowUpdate(frame.payload), 0);
      assert.ok(granted <= total, `granted ${granted}`);

      // A peer that sends past its window is closed with 4007.
      const rude = raw(server);
      await rude.handshake();
      rude.ws.send(message(
        requestFrame(1, { method: "POST", url: "/up", headers: [] }, false),
        dataFrame(1, new Uint8Array(initialWindow)),
        dataFrame(1, new Uint8Array(1), true),
      ));
      const closed = await withTimeout(rude.closed, GUARD, "the server to close the rude peer");
      assert.equal(closed.code, CloseCode.FlowControlError);
      assert.equal(peer.ws.readyState, WebSocket.OPEN);
    },
  );

  it(
    "limits.initialWindow: a 1 KiB window on both ends still moves a large body both ways",
    TEST_OPTIONS,
    async () => {
      const limits = { initialWindow: 1024 };
      const pair = await startPair({ limits }, { limits });
      try {
        const echo = async (request: Request): Promise<Response> => {
          const result = await checkPattern(request.body!);
          return new Response(patternStream(result.bytes), {
            headers: { "x-mismatch": String(result.firstMismatch) },
          });
        };
        pair.serverSide.serve(echo);
        pair.clientSide.serve(echo);
        const size = 256 * 1024 + 3;
        for (const caller of [pair.clientSide, pair.serverSide]) {
          const response = await withTimeout(
            caller.fetch("/echo", streamInit(patternStream(size))),
            GUARD,
            "a large exchange through a small window",
          );
          assert.equal(response.headers.get("x-mismatch"), "-1");
          const back = await withTimeout(checkPattern(response.body!), GUARD, "the body back");
          assert.deepEqual([back.bytes, back.firstMismatch], [size, -1]);
        }
      } finally {
        await pair.close();
      }
    },
  );

  it(
    "limits.resetRateLimit: the server closes a peer that resets more than burst streams with 4008",
    TEST_OPTIONS,
    async () => {
      let calls = 0;
      const server = resources.server({
        limits: { resetRateLimit: { burst: 20, perSecond: 1 } },
        handler: () => {
          calls++;
          return new Response("ok");
        },
      });
      const peer = raw(server);
      await peer.handshake();
      const reader = new FrameReader(peer);
      const get = { method: "GET", url: "/", headers: [] as [string, string][] };
      let id = 1;
      // Within the burst: the connection stays up and serves.
      const within: Frame[] = [];
      for (let i = 0; i < 10; i++, id += 2) {
        within.push(requestFrame(id, get), resetFrame(id, ResetCode.Cancel));
      }
      peer.ws.send(message(...within));
      peer.ws.send(message(requestFrame(id, get)));
      const head = await reader.next(isStream(FrameType.Headers, id));
      assert.equal(decodeResponseHead(head.payload).status, 200);
      id += 2;
      // Well past it (refill is 1 per second): closed with 4008.
      const past: Frame[] = [];
      for (let i = 0; i < 100; i++, id += 2) {
        past.push(requestFrame(id, get), resetFrame(id, ResetCode.Cancel));
      }
      peer.ws.send(message(...past));
      const closed = await withTimeout(peer.closed, GUARD, "the server to close the peer");
      assert.equal(closed.code, CloseCode.RateLimited);
      assert.equal(closed.code, 4008);
      assert.ok(calls <= 10 + 1 + 20, `${calls} handler calls`);
    },
  );

  it(
    "limits.resetRateLimit: the client closes a server that resets its exchanges more than burst times with 4008",
    TEST_OPTIONS,
    async () => {
      const server = resources.server({
        // The response body fails at once: the server resets the stream (ResetCode.Internal).
        handler: () =>
          new Response(new ReadableStream({ pull: (c) => c.error(new Error("boom")) })),
      });
      const client = resources.client(urlOf(server), {
        keepAlive: false,
        limits: { resetRateLimit: { burst: 3, perSecond: 0 } },
      });
      const events = client.events();
      const connection = await withTimeout(client.connect(), GUARD, "connect()");
      for (let i = 0; i < 3; i++) {
        const response = await withTimeout(connection.fetch("/fail"), GUARD, "fetch");
        await assert.rejects(response.arrayBuffer());
      }
      assert.equal(connection.isClosed, false);
      const last = await withTimeout(connection.fetch("/fail"), GUARD, "fetch").then(
        (response) => response.arrayBuffer(),
      ).then(() => undefined, (error: unknown) => error);
      assert.ok(last instanceof Error);
      const failure = await nextEvent(events, EventType.ConnectionFailure);
      assert.ok(failure.error instanceof ProtocolError, `got ${failure.error}`);
      assert.equal((failure.error as ProtocolError).code, CloseCode.RateLimited);
      await events.return?.();
    },
  );

  it("limits.resetRateLimit is validated at construction", TEST_OPTIONS, () => {
    const bad = [{ burst: 0 }, { burst: 1.5 }, { perSecond: -1 }, { perSecond: NaN }];
    for (const resetRateLimit of bad) {
      assert.throws(
        () => new WebSocketServer({ noServer: true, limits: { resetRateLimit } }),
        RangeError,
      );
      assert.throws(
        () => new WebSocketClient({ url: "ws://127.0.0.1:1", limits: { resetRateLimit } }),
        RangeError,
      );
    }
    const ok = new WebSocketServer({
      noServer: true,
      limits: { resetRateLimit: { burst: 1, perSecond: 0 } },
    });
    void ok.close();
  });
});
