/**
 * An agent's answer whose body does not have the length its `Content-Length` says never runs
 * into the next answer on the caller's kept-alive connection: a whole one is refused with 502
 * before anything is sent, a streamed one ends at the declared bytes (too long) or has its
 * connection cut when it ends short, as nginx does with an upstream's.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { type Gateway, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import { serverHolds, withTimeout } from "./_helpers.ts";
import { recordingLogger } from "./_recording_logger.ts";

const TEST_OPTIONS = { timeout: 60_000 };
const GUARD_MS = 15_000;
/** Content-Length values that are not one length; each path's answer carries them. */
const INVALID_LENGTHS: Record<string, string[]> = {
  "/letters": ["ten"],
  "/negative": ["-10"],
  "/signed": ["+10"],
  "/exponent": ["1e1"],
  "/two-lengths": ["10", "57"],
  "/two-same": ["10", "10"],
};
const SMUGGLED = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

/** A body that streams in three parts, a macrotask apart, so that it is not held whole. */
function streamed(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  const third = Math.ceil(bytes.byteLength / 3);
  let at = 0;
  return new ReadableStream({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(at, at += third));
    },
  });
}

/** Sends two requests on one connection and collects what comes back until it closes. */
function twoRequests(gateway: Gateway, first: string): Promise<string> {
  const socket = connect(gateway.addr.port, gateway.addr.hostname);
  let received = "";
  socket.on("data", (chunk: Uint8Array) => received += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  socket.write(
    `GET /agents/liar${first} HTTP/1.1\r\nHost: gw\r\n\r\n` +
      "GET /agents/liar/ok HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
  );
  return withTimeout(
    new Promise<string>((resolve) => socket.on("close", () => resolve(received))),
    GUARD_MS,
    `the answers to ${first}`,
  );
}

describe("gateway: an answer is held to its Content-Length", TEST_OPTIONS, () => {
  let gateway: Gateway;
  let agent: ReturnType<typeof startAgent>;
  const { logger, logged } = recordingLogger();

  /** The access line of a refused answer says what the caller got: 502, and why. */
  async function loggedAs502(path: string): Promise<void> {
    const [level, , fields] = await logged("request failed", (f) => f.path === path);
    assert.equal(level, "warn");
    assert.equal(fields.status, 502);
    assert.match(String(fields.error), /Content-Length/);
  }

  before(async () => {
    gateway = await startGateway({ port: 0, logger });
    agent = startAgent({
      url: gateway.agentsUrl,
      name: "liar",
      handler: (request) => {
        const path = new URL(request.url).pathname;
        const lying = { headers: { "content-length": "10" } };
        if (path === "/whole-long") return new Response(`0123456789${SMUGGLED}`, lying);
        if (path === "/whole-short") return new Response("abc", lying);
        if (path === "/streamed-long") {
          return new Response(streamed(`0123456789${SMUGGLED}`), lying);
        }
        if (path === "/streamed-short") return new Response(streamed("abc"), lying);
        const invalid = INVALID_LENGTHS[path];
        if (invalid !== undefined) {
          const headers = new Headers();
          for (const value of invalid) headers.append("content-length", value);
          return new Response(streamed(`0123456789${SMUGGLED}`), { headers });
        }
        return new Response("fine");
      },
    });
    await serverHolds(gateway.server, (await withTimeout(agent.ready, GUARD_MS, "ready")).id);
  });
  after(async () => {
    await agent?.close();
    await gateway?.close();
  });

  for (const path of ["/whole-long", "/whole-short"]) {
    it(`answers ${path} with 502, and the next request as it should be`, async () => {
      const received = await twoRequests(gateway, path);
      assert.match(received, /^HTTP\/1\.1 502 /);
      assert.ok(!received.includes("smuggled"), received);
      assert.match(received, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nfine$/);
      await loggedAs502(path);
    });
  }

  for (const path of Object.keys(INVALID_LENGTHS)) {
    it(`answers ${path} (an invalid Content-Length) with 502, as nginx does`, async () => {
      const received = await twoRequests(gateway, path);
      assert.match(received, /^HTTP\/1\.1 502 /);
      assert.ok(!received.includes("smuggled") && !received.includes("0123"), received);
      assert.match(received, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nfine$/);
      await loggedAs502(path);
    });
  }

  it("ends a streamed answer longer than its length at the declared bytes", async () => {
    const received = await twoRequests(gateway, "/streamed-long");
    assert.match(received, /^HTTP\/1\.1 200 /);
    assert.ok(!received.includes("smuggled"), received);
    const [first, second] = received.split(/(?=HTTP\/1\.1 )/);
    assert.equal(first.slice(first.indexOf("\r\n\r\n") + 4), "0123456789");
    assert.match(second, /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nfine$/, "the next answer is the next");
  });

  it("cuts a streamed answer that ends short of its length", async () => {
    const received = await twoRequests(gateway, "/streamed-short");
    assert.match(received, /^HTTP\/1\.1 200 /);
    assert.equal(received.slice(received.indexOf("\r\n\r\n") + 4), "abc");
    assert.equal((received.match(/HTTP\/1\.1 /g) ?? []).length, 1, "the connection ends there");
  });
});
