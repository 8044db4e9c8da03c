/**
 * The agent's tunnel (`tunnelHandler`), against a real `node:http` server: an abort always
 * settles the exchange, also on a reused keep-alive socket. And against a raw echo upstream: called as a `Request`
 * handler and served on a connection (where its parts form answers), it sends the same
 * request and answers the same; a body that came with its head is answered whole, one still
 * arriving streams.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import { tunnelHandler } from "../agent.ts";
import { Cancel } from "../connection/_cancel.ts";
import { partsOf } from "../connection/_parts_handler.ts";
import type { HandlerInfo } from "../mod.ts";
import { startPair, withTimeout } from "./_helpers.ts";
import { deferred } from "./_exchange_helpers.ts";
import { echoedBody, type EchoedRequest, startEchoUpstream } from "./_echo_upstream.ts";

const GUARD = 10_000;

describe("tunnelHandler", () => {
  it(
    "an abort settles a request on a reused keep-alive socket at once",
    { timeout: 30_000 },
    async () => {
      const arrived: ((request: IncomingMessage) => void)[] = [];
      // Answers the first request, then takes requests and never answers them.
      let served = 0;
      const server = createServer((request, response) => {
        if (served++ === 0) response.end("first\n");
        arrived.shift()?.(request);
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as { port: number };
      const tunnel = tunnelHandler(`http://127.0.0.1:${port}`, { rewrite: false });
      const call = (signal?: AbortSignal) =>
        Promise.resolve(
          tunnel(
            new Request("http://agent/", { signal }),
            { target: "/x", body: null } as unknown as HandlerInfo,
          ),
        );
      try {
        const first = await withTimeout(call(), GUARD, "the first request");
        assert.equal(await first.text(), "first\n");
        for (const round of [1, 2]) {
          const controller = new AbortController();
          const reached = new Promise<IncomingMessage>((resolve) => arrived.push(resolve));
          const pending = call(controller.signal);
          await withTimeout(reached, GUARD, `request ${round} to reach the server`);
          const reason = new DOMException("no answer in time", "TimeoutError");
          controller.abort(reason);
          await assert.rejects(withTimeout(pending, GUARD, `request ${round} to settle`), reason);
        }
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  );

  it(
    "sends and answers the same as a Request handler and on a connection",
    { timeout: 30_000 },
    async () => {
      const echo = await startEchoUpstream({
        headers: (origin) => [
          ["Location", `${origin}/base/next?x=1`],
          ["Set-Cookie", "a=1; Path=/base/x"],
          ["Set-Cookie", "b=2; Path=/"],
          ["X-Up", "1"],
        ],
      });
      const pair = await startPair();
      try {
        const tunnel = tunnelHandler(`${echo.url}/base`);
        pair.clientSide.serve(tunnel);
        const headers: [string, string][] = [
          ["x-b", "2"],
          ["content-type", "text/plain"],
          ["x-a", "1"],
          ["x-b", "3"],
          ["connection", "x-drop"],
          ["x-drop", "gone"],
          ["keep-alive", "timeout=5"],
          ["expect", "100-continue"],
          ["content-length", "2"],
        ];
        const onConnection = await withTimeout(
          pair.serverSide.forward({
            method: "POST",
            target: "/p?q=1",
            headers,
            body: new TextEncoder().encode("hi"),
          }),
          GUARD,
          "the request over the connection",
        );
        const direct = await withTimeout(
          Promise.resolve(tunnel(
            new Request("http://agent/p?q=1", { method: "POST", headers, body: "hi" }),
            { target: "/p?q=1", body: null } as unknown as HandlerInfo,
          )),
          GUARD,
          "the direct call",
        );
        const seen: EchoedRequest[] = [];
        for (const response of [onConnection, direct]) {
          assert.equal(response.status, 200);
          assert.equal(response.headers.get("location"), "/next?x=1");
          assert.deepEqual(response.headers.getSetCookie(), ["a=1; Path=/x", "b=2; Path=/"]);
          assert.equal(response.headers.get("x-up"), "1");
          seen.push(await response.json() as EchoedRequest);
        }
        assert.equal(echo.requests.length, 2);
        const [first, second] = echo.requests;
        assert.deepEqual(seen, [first, second].map((request) => ({ ...request })));
        assert.deepEqual(first.headers, second.headers);
        assert.equal(first.target, "/base/p?q=1");
        assert.equal(first.framing, "content-length");
        assert.equal(new TextDecoder().decode(echoedBody(first)), "hi");
        const value = (name: string) => first.headers.find(([n]) => n.toLowerCase() === name)?.[1];
        // The caller's `Connection` is its hop's: none goes on (HTTP/1.1 keeps the socket alive).
        assert.equal(value("connection"), undefined);
        const names = first.headers.map(([name]) => name.toLowerCase()).sort();
        assert.deepEqual(names, ["content-length", "content-type", "host", "x-a", "x-b"]);
        assert.equal(value("x-b"), "2, 3");
        assert.equal(value("host"), `127.0.0.1:${echo.port}`);
        assert.equal(first.expectContinue, false);
      } finally {
        await pair.close();
        await echo.close();
      }
    },
  );

  it(
    "sends the headers in the order they came, names lower-cased, repeats joined where the first came, past a few names too",
    { timeout: 30_000 },
    async () => {
      const echo = await startEchoUpstream();
      try {
        const parts = partsOf(tunnelHandler(echo.url))!;
        // Twenty names, mixed case, with repeats among the first few and past the sixteenth.
        const headers: [string, string][] = [];
        for (let i = 0; i < 20; i++) headers.push([i % 2 ? `X-H${i}` : `x-h${i}`, `${i}`]);
        headers.push(["x-h2", "again"], ["X-H18", "again"], ["Host", "kept.example"]);
        headers.push(["x-h0", "third"], ["x-h19", "again"], ["Keep-Alive", "timeout=5"]);
        const answer = await withTimeout(
          parts({ method: "GET", target: "/h", headers, body: null, cancel: new Cancel() }),
          GUARD,
          "the request",
        );
        assert.equal(answer.status, 200);
        const expected: [string, string][] = [];
        for (let i = 0; i < 20; i++) expected.push([`x-h${i}`, `${i}`]);
        expected[0][1] = "0, third";
        expected[2][1] = "2, again";
        expected[18][1] = "18, again";
        expected[19][1] = "19, again";
        expected.push(["host", "kept.example"]);
        assert.deepEqual(echo.requests[0].headers, expected);
      } finally {
        await echo.close();
      }
    },
  );

  it(
    "answers 502 for an upstream status no Response can carry, in either form",
    { timeout: 30_000 },
    async () => {
      const echo = await startEchoUpstream({ status: 999 });
      const pair = await startPair();
      try {
        const tunnel = tunnelHandler(echo.url);
        pair.clientSide.serve(tunnel);
        const responses = [
          await withTimeout(pair.serverSide.fetch("/odd"), GUARD, "over the connection"),
          await withTimeout(
            Promise.resolve(tunnel(
              new Request("http://agent/odd"),
              { target: "/odd", body: null } as unknown as HandlerInfo,
            )),
            GUARD,
            "the direct call",
          ),
        ];
        for (const response of responses) {
          assert.equal(response.status, 502);
          assert.equal(response.headers.get("content-type"), "application/json");
          const body = await response.json() as { error: string };
          assert.equal(body.error, "upstream_unavailable");
        }
      } finally {
        await pair.close();
        await echo.close();
      }
    },
  );

  it(
    "answers a body that came with its head whole, and streams one still arriving",
    { timeout: 30_000 },
    async () => {
      const rest = deferred<void>();
      const server = createServer((request, response) => {
        if (request.url === "/small") {
          response.end("small body");
          return;
        }
        response.writeHead(200, { "content-length": "4" });
        response.write("ab");
        rest.promise.then(() => response.end("cd"));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as { port: number };
      const parts = partsOf(tunnelHandler(`http://127.0.0.1:${port}`))!;
      const ask = (target: string) =>
        withTimeout(
          parts({ method: "GET", target, headers: [], body: null, cancel: new Cancel() }),
          GUARD,
          target,
        );
      try {
        const small = await ask("/small");
        assert.ok(small.body instanceof Uint8Array, "a body that came with its head is whole");
        assert.equal(new TextDecoder().decode(small.body), "small body");
        assert.equal(small.withoutLength, false);
        // The head comes before the rest of the body is sent.
        const trickling = await ask("/trickling");
        assert.ok(trickling.body instanceof ReadableStream, "a body still arriving streams");
        const reader = trickling.body.getReader();
        const first = await withTimeout(reader.read(), GUARD, "the first bytes");
        assert.equal(new TextDecoder().decode(first.value), "ab");
        rest.resolve();
        const second = await withTimeout(reader.read(), GUARD, "the rest");
        assert.equal(new TextDecoder().decode(second.value), "cd");
        assert.equal((await withTimeout(reader.read(), GUARD, "the end")).done, true);
      } finally {
        rest.resolve();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  );
});
