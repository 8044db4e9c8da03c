/**
 * The gateway closes callers' connections that bring no request head in time (`idleTimeout`):
 * a slow or silent caller (slowloris) holds nothing for long, nor one whose request body keeps
 * coming after its answer, and a request being answered, however slowly, is not cut.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { type Gateway, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import { serverHolds, withTimeout } from "./_helpers.ts";

const TEST_OPTIONS = { timeout: 60_000 };
const IDLE_MS = 400;
/** Guards a wait for the gateway to close a socket: far above IDLE_MS, on a loaded machine. */
const GUARD_MS = 15_000;

/** Opens a socket to the gateway, writes `bytes`, and collects what comes back until close. */
function open(gateway: Gateway, bytes: string): { socket: Socket; closed: Promise<string> } {
  const socket = connect(gateway.addr.port, gateway.addr.hostname);
  let received = "";
  socket.on("data", (chunk: Uint8Array) => received += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(received)));
  socket.write(bytes);
  return { socket, closed };
}

describe("gateway idleTimeout", TEST_OPTIONS, () => {
  it(
    "keeps a kept-alive caller's connection open for its idleTimeout, past Node's 5 s keep-alive",
    { timeout: 60_000 },
    async () => {
      // `node:http` closes a kept-alive socket after its own `keepAliveTimeout` (5 s by
      // default) unless told otherwise: the gateway's `idleTimeout` must be what decides.
      const idleTimeout = 7_000;
      const gateway = await startGateway({ port: 0, idleTimeout });
      try {
        const kept = open(gateway, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
        const started = performance.now();
        const answer = await withTimeout(
          kept.closed,
          GUARD_MS + idleTimeout,
          "kept alive, then cut",
        );
        const open_ms = performance.now() - started;
        assert.match(answer, /^HTTP\/1\.1 200 /);
        // The answer leaves at once; the socket then waits idleTimeout (timers may fire late,
        // never early, bar a clock tick).
        assert.ok(open_ms >= idleTimeout - 50, `closed after ${Math.round(open_ms)} ms`);
      } finally {
        await gateway.close();
      }
    },
  );

  let gateway: Gateway;
  let agent: ReturnType<typeof startAgent>;

  before(async () => {
    gateway = await startGateway({ port: 0, idleTimeout: IDLE_MS });
    agent = startAgent({
      url: gateway.agentsUrl,
      name: "slow",
      handler: async (request) => {
        // Answers after the idle timeout has passed twice: a request is not timed.
        await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 2));
        return new Response(`answered ${new URL(request.url).pathname}`);
      },
    });
    await serverHolds(gateway.server, (await withTimeout(agent.ready, GUARD_MS, "ready")).id);
  });
  after(async () => {
    await agent?.close();
    await gateway?.close();
  });

  it("closes a connection whose request head never completes", TEST_OPTIONS, async () => {
    const { closed } = open(gateway, "GET /agents HTTP/1.1\r\nHost: gw\r\nX-Slow: ");
    assert.equal(await withTimeout(closed, GUARD_MS, "the slow head is cut"), "");
  });

  it(
    "closes a silent connection, and a kept-alive one after its response",
    TEST_OPTIONS,
    async () => {
      const silent = open(gateway, "");
      assert.equal(await withTimeout(silent.closed, GUARD_MS, "the silent one is cut"), "");
      const kept = open(gateway, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
      const answer = await withTimeout(kept.closed, GUARD_MS, "kept alive, then cut");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /\r\n\r\nok\n$/);
    },
  );

  it(
    "does not cut a request that takes longer than the timeout to answer",
    TEST_OPTIONS,
    async () => {
      const { closed } = open(
        gateway,
        "GET /agents/slow/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
      );
      const answer = await withTimeout(closed, GUARD_MS, "the slow answer");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /answered \/x/);
    },
  );

  it(
    "closes a connection whose request body keeps coming after its answer, within the timeout",
    TEST_OPTIONS,
    async () => {
      // Nobody reads a body once the answer is out (here a 404 for no such agent): a caller that
      // goes on sending holds the connection, and the gateway reading, no longer than an idle
      // one, as nginx's lingering close bounds it.
      const { socket, closed } = open(
        gateway,
        "POST /agents/nobody/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
      );
      const chunk = `${(16 * 1024).toString(16)}\r\n${"a".repeat(16 * 1024)}\r\n`;
      let answeredAt = 0;
      socket.on("data", () => answeredAt ||= performance.now());
      const sending = setInterval(() => socket.writable && socket.write(chunk), 10);
      try {
        const answer = await withTimeout(closed, GUARD_MS, "the endless upload to be cut");
        assert.match(answer, /^HTTP\/1\.1 404 /);
        const after = performance.now() - answeredAt;
        assert.ok(after < IDLE_MS + 5_000, `cut ${Math.round(after)} ms after the answer`);
      } finally {
        clearInterval(sending);
        socket.destroy();
      }
    },
  );

  it("refuses a timeout that is not positive (or too long for a timer)", async () => {
    await assert.rejects(startGateway({ port: 0, idleTimeout: 0 }), RangeError);
    await assert.rejects(startGateway({ port: 0, sendTimeout: -1 }), RangeError);
    for (const stalledReaderTimeout of [0, NaN, 2 ** 31]) {
      await assert.rejects(
        startGateway({ port: 0, stalledReaderTimeout }),
        /Invalid stalledReaderTimeout/,
      );
    }
  });
});
