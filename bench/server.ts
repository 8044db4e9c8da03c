/**
 * The benchmark's server process, under Deno or Bun:
 *
 * ```
 * deno run -A --v8-flags=--expose-gc bench/server.ts --kind ss|ws|web|http
 * bun bench/server.ts --kind ss|ws|web|http
 * ```
 *
 * `ss` is a swaggersocket `WebSocketServer`; `ws` is a raw WebSocket server of the same
 * runtime (`Deno.upgradeWebSocket` / `Bun.serve`'s `websocket`); `web` is that raw server
 * with the web objects the API promises and no protocol (the floor: see below); `http` is
 * the runtime's own HTTP server (`Deno.serve` / `Bun.serve`). It listens on 127.0.0.1,
 * port 0, prints `READY <port>`, and answers lines on stdin: `rss` with
 * `RSS <bytes> <connections>` after the memory-reducing collection of `collectGarbage`
 * (`rssnow`: without one); `mem` with `MEM <json>` (`rss`, `heapUsed`, `heapTotal`,
 * `external`, `connections`) after an ordinary full collection, the kind a user's `gc()`
 * runs (issue 23's reading: see `ordinaryGarbageCollection`); `snapshot <file>` with
 * `SNAPSHOT <file>` once a V8 heap snapshot is written there (Deno; `bench/idle_heap.ts`).
 * It exits when stdin closes or its watchdog fires.
 *
 * Routes (ss, http): `POST /echo` answers the request body; `POST /sink` reads the body and
 * answers its size; `GET /source?bytes=N` streams N bytes; `GET /hold` is answered only
 * after the next `GET /fast` (the Nagle scenario).
 *
 * Raw WebSocket messages (ws): a binary message is echoed, except that one whose first
 * byte is 1 is held until the next message has been echoed (the Nagle scenario); the text
 * `sink:N` makes the next N bytes of binary messages count towards one `done` answer; the
 * text `source:N` makes the server send N bytes as 1 MiB binary messages.
 *
 * Web objects, no protocol (web): each binary message is the body of a `POST /echo`. The
 * server builds the `Request` a handler is owed (with a `signal`), calls the same handler,
 * reads the `Response` with `arrayBuffer()` and sends its bytes back; the client builds a
 * `Response` from each answer and reads it. No framing, ids, headers or status travel, and
 * nothing streams (`arrayBuffer()` is cheaper than the reader a streaming implementation
 * needs): an implementation of the API cannot do an exchange for less, so this is a floor
 * under swaggersocket, measured on the same sockets.
 *
 * @module
 */

import process from "node:process";
import { WebSocketServer } from "../mod.ts";
import {
  byteStream,
  collectGarbage,
  drain,
  LARGE_CHUNK_BYTES,
  numberArg,
  readStdinLines,
  READY,
  rss,
  RUNTIME,
  scriptArgs,
  watchdog,
} from "./_common.ts";
import { listenRaw, type RawSession, webSession } from "./_raw_server.ts";

const args = scriptArgs();
const kind = args.get("kind") ?? "ss";
watchdog(numberArg(args, "max-seconds", 1800) * 1000, `bench server (${RUNTIME} ${kind})`);

const BIG = new Uint8Array(LARGE_CHUNK_BYTES).fill(7);
let release: (() => void) | undefined;

/** The HTTP handler that `ss` and `http` serve. */
async function handler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/echo":
      return new Response(await request.arrayBuffer());
    case "/sink":
      return new Response(String(await drain(request.body)));
    case "/source":
      return new Response(byteStream(Number(url.searchParams.get("bytes")), BIG));
    case "/hold": {
      await new Promise<void>((resolve) => release = resolve);
      return new Response("a");
    }
    case "/fast": {
      const held = release;
      release = undefined;
      if (held) setTimeout(held, 0);
      return new Response("b");
    }
  }
  return new Response("Not Found", { status: 404 });
}

/** Per-socket state of the raw WebSocket protocol above. */
const rawSession: RawSession = (socket) => {
  let sinkLeft = 0;
  let sinkTotal = 0;
  let held: Uint8Array | undefined;
  const source = async (total: number): Promise<void> => {
    for (let left = total; left > 0; left -= LARGE_CHUNK_BYTES) {
      const n = Math.min(left, LARGE_CHUNK_BYTES);
      if (!socket.send(n === LARGE_CHUNK_BYTES ? BIG : BIG.subarray(0, n))) {
        await socket.whenDrained();
      }
    }
  };
  return (data) => {
    if (typeof data === "string") {
      const [command, value] = data.split(":");
      if (command === "sink") {
        sinkLeft = sinkTotal = Number(value);
      } else if (command === "source") {
        source(Number(value));
      }
      return;
    }
    if (sinkLeft > 0) {
      sinkLeft -= data.byteLength;
      if (sinkLeft <= 0) socket.send(`done:${sinkTotal}`);
      return;
    }
    if (data[0] === 1 && held === undefined) {
      held = data.slice();
      return;
    }
    socket.send(data);
    if (held) {
      const answer = held;
      held = undefined;
      setTimeout(() => socket.send(answer), 0);
    }
  };
};

let countConnections = (): number => 0;
let port: number;

interface DenoLike {
  serve(
    options: { hostname: string; port: number; onListen?: () => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number } };
}
interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (request: Request) => Response | Promise<Response>;
  }): { port: number };
  gc(force: boolean): void;
}
const bun = (globalThis as { Bun?: BunLike }).Bun;
const deno = (globalThis as { Deno?: DenoLike }).Deno;

if (kind === "ss") {
  const server = new WebSocketServer({
    hostname: "127.0.0.1",
    port: 0,
    handler,
    // Every client of the benchmark dials from 127.0.0.1, up to 1,000 at once (idle).
    limits: { addressRateLimits: false, maxPendingHandshakes: 10_000 },
  });
  port = server.addr.port;
  countConnections = () => server.connections().length;
} else if (kind === "http") {
  if (bun) {
    port = bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler }).port;
  } else {
    port = deno!.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler).addr.port;
  }
} else if (kind === "ws" || kind === "web") {
  const server = listenRaw(kind === "ws" ? rawSession : webSession(handler));
  port = server.port;
  countConnections = () => server.connections();
} else {
  throw new TypeError(`Unknown server kind: ${kind}`);
}

/**
 * An ordinary full garbage collection, twice (the second takes what the first's finalizers
 * let go): on V8 a plain `gc()` (`--expose-gc`), a major collection that, unlike
 * `collectGarbage`'s memory-reducing one, leaves the young generation and the heap's pages as
 * large as the process grew them; on Bun `Bun.gc(true)`, JavaScriptCore's synchronous full
 * collection (the same as `collectGarbage` there).
 */
function ordinaryGarbageCollection(): void {
  for (let i = 0; i < 2; i++) {
    if (bun) bun.gc(true);
    else (globalThis as { gc?: () => void }).gc?.();
  }
}

/**
 * JavaScriptCore's heap figures (Bun), whose `heapCapacity` stands for `heapTotal`: Bun's
 * `process.memoryUsage().heapTotal` counts only some of the heap's blocks and can read below
 * `heapUsed`.
 */
const jsc = bun ? await import("bun:jsc") as { heapStats(): { heapCapacity: number } } : undefined;

/** V8's heap by space (Deno): what its `heapTotal` is made of. */
const v8 = bun ? undefined : await import("node:v8");

/**
 * The `MEM` answer: bytes after an ordinary collection, and the open connections; on Deno
 * also the sizes of V8's young generation (`newSpace`, which an ordinary collection empties
 * but does not shrink) and old generation (`oldSpace`).
 */
function memory(): Record<string, number> {
  ordinaryGarbageCollection();
  const usage = process.memoryUsage();
  const space = (name: string): number | undefined =>
    v8?.getHeapSpaceStatistics().find((s) => s.space_name === name)?.space_size;
  return {
    rss: usage.rss,
    heapUsed: usage.heapUsed,
    heapTotal: jsc ? jsc.heapStats().heapCapacity : usage.heapTotal,
    external: usage.external,
    ...(v8 ? { newSpace: space("new_space")!, oldSpace: space("old_space")! } : {}),
    connections: countConnections(),
  };
}

async function writeSnapshot(file: string): Promise<void> {
  const v8 = await import("node:v8");
  ordinaryGarbageCollection();
  v8.writeHeapSnapshot(file);
  console.log(`SNAPSHOT ${file}`);
}

readStdinLines((line) => {
  if (line === "rss") {
    collectGarbage();
    collectGarbage();
    console.log(`RSS ${rss()} ${countConnections()}`);
  } else if (line === "rssnow") {
    console.log(`RSS ${rss()} ${countConnections()}`);
  } else if (line === "mem") {
    console.log(`MEM ${JSON.stringify(memory())}`);
  } else if (line.startsWith("snapshot ")) {
    writeSnapshot(line.slice("snapshot ".length)).catch((error) => {
      console.error("bench server: heap snapshot failed:", error);
      process.exit(1);
    });
  }
}, () => process.exit(0));

console.log(`${READY} ${port}`);
