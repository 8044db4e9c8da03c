/**
 * The server process of the hostile-peers benchmark (`bench/hostile.ts`), under Deno or Bun:
 *
 * ```
 * deno run -A --v8-flags=--expose-gc bench/hostile_server.ts [--watchdog-seconds 120]
 * bun bench/hostile_server.ts [--watchdog-seconds 120]
 * ```
 *
 * A `WebSocketServer` with default options on 127.0.0.1, port 0, serving:
 *
 * - `GET /ping` → `pong` (the honest client's request);
 * - `POST /hold` → nothing until the request's signal aborts, its body never read (so that
 *   whatever a hostile peer uploads stays with the server);
 * - `GET /stream` → an endless body of 16 KiB chunks made on pull (so that a peer that does
 *   not read makes the server hold whatever it lets the producers run ahead).
 *
 * It prints `READY <port>`, then every 200 ms `SAMPLE <rss> <bufferedBytes> <connections>`:
 * its RSS, the sum of `connection.bufferedBytes` over its open connections (the library's
 * own accounting) and how many there are. It answers lines on stdin: `codes` with
 * `CODES <json>`, how many of its connections ended with each close code, 1006 (the peer
 * dropped the socket) left out; `gc` with `GC <rss>` after a full garbage collection (Deno
 * needs `--v8-flags=--expose-gc`), which tells garbage not yet collected from memory held.
 * It exits when stdin closes or its watchdog fires.
 *
 * @module
 */

import process from "node:process";
import { EventType, type Handler, WebSocketServer } from "../mod.ts";
import { countedStream, type StreamCounter } from "../tests/fixtures/_load.ts";
import {
  collectGarbage,
  numberArg,
  readStdinLines,
  READY,
  rss,
  RUNTIME,
  scriptArgs,
  watchdog,
} from "./_common.ts";

const args = scriptArgs();
watchdog(numberArg(args, "watchdog-seconds", 120) * 1000, `hostile server (${RUNTIME})`);

const SAMPLE_MS = 200;
const counter: StreamCounter = { started: 0, produced: [] };

const handler: Handler = (request) => {
  const path = new URL(request.url).pathname;
  if (path === "/ping") return new Response("pong");
  if (path === "/stream") return new Response(countedStream(Infinity, counter));
  if (path === "/hold") {
    return new Promise<Response>((resolve) => {
      const answer = (): void => resolve(new Response("released"));
      if (request.signal.aborted) answer();
      else request.signal.addEventListener("abort", answer, { once: true });
    });
  }
  return new Response("Not Found", { status: 404 });
};

const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, handler });

// A peer that stops reading never sees the close code it was sent: the server's own view.
const codes: Record<string, number> = {};
(async () => {
  for await (const event of server.events()) {
    if (event.type !== EventType.ConnectionReceived) continue;
    event.connection!.closed.then(({ code }) => {
      if (code !== 1006) codes[code] = (codes[code] ?? 0) + 1;
    });
  }
})();

setInterval(() => {
  let buffered = 0;
  const connections = server.connections();
  for (const connection of connections) buffered += connection.bufferedBytes;
  console.log(`SAMPLE ${rss()} ${buffered} ${connections.length}`);
}, SAMPLE_MS);

readStdinLines((line) => {
  if (line === "codes") console.log(`CODES ${JSON.stringify(codes)}`);
  if (line === "gc") {
    collectGarbage();
    collectGarbage();
    console.log(`GC ${rss()}`);
  }
}, () => process.exit(0));

console.log(`${READY} ${server.addr.port}`);
