/**
 * Download throughput of a body produced in small chunks, client and server in one process.
 *
 * ```
 * deno run -A bench/stream_chunks.ts [--chunk 65536] [--mib 64] [--runs 4]
 * bun bench/stream_chunks.ts --chunk 16384
 * ```
 *
 * The large-body scenario of `bench/main.ts` streams 1 MiB chunks; a file stream gives
 * 16–64 KiB ones, which exercise how far a stream's outbox runs ahead of the socket
 * (`OUTBOX_HIGH_WATER`). The handler answers with a `ReadableStream` that yields one
 * `--chunk`-byte chunk per pull (after a microtask, as an I/O source would); the client
 * reads it all. Prints MB/s per run and the best.
 *
 * @module
 */

import process from "node:process";
import { WebSocketClient, WebSocketServer } from "../mod.ts";
import { numberArg, RUNTIME, scriptArgs, watchdog } from "./_common.ts";

const args = scriptArgs();
const chunkBytes = numberArg(args, "chunk", 64 * 1024);
const total = numberArg(args, "mib", 64) * 1024 * 1024;
const runs = numberArg(args, "runs", 4);
watchdog(runs * 60_000, "stream_chunks");

const chunk = new Uint8Array(chunkBytes).fill(7);
const server = new WebSocketServer({
  hostname: "127.0.0.1",
  port: 0,
  handler: () => {
    let sent = 0;
    return new Response(
      new ReadableStream({
        async pull(controller) {
          await Promise.resolve();
          if (sent >= total) return controller.close();
          controller.enqueue(chunk.slice());
          sent += chunkBytes;
        },
      }, { highWaterMark: 0 }),
    );
  },
});
const client = new WebSocketClient({
  url: `ws://127.0.0.1:${server.addr.port}/`,
  keepAlive: false,
});
const connection = await client.connect();

const rates: number[] = [];
for (let i = 0; i < runs; i++) {
  const start = performance.now();
  const response = await connection.fetch("/file");
  let received = 0;
  for await (const part of response.body!) received += part.byteLength;
  if (received < total) throw new Error(`Got ${received} of ${total} bytes`);
  rates.push(received / (performance.now() - start) / 1000);
}
console.log(
  `${RUNTIME} ${chunkBytes} B chunks: ${rates.map((r) => r.toFixed(0)).join(", ")} MB/s; ` +
    `best ${Math.max(...rates).toFixed(0)} MB/s`,
);
await connection.close({ timeout: 0 });
await server.close();
process.exit(0);
