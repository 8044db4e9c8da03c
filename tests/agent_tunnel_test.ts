/**
 * The agent's tunnel (`tunnelHandler`), against a real `node:http` server: an abort always
 * settles the exchange, also on a reused keep-alive socket (where Deno's `node:http` emits
 * no `error` after `destroy`).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import { tunnelHandler } from "../agent.ts";
import type { HandlerInfo } from "../mod.ts";
import { withTimeout } from "./_helpers.ts";

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
});
