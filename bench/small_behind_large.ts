/**
 * How long a small exchange waits behind a large body on the same connection.
 *
 * ```
 * deno run -A bench/server.ts --kind ss            # prints READY <port>
 * deno run -A bench/small_behind_large.ts --port <port> [--mib 256] [--direction down|up]
 * ```
 *
 * Against a running `bench/server.ts --kind ss` (a separate process, as in `bench/main.ts`),
 * one connection streams `--mib` MiB down (`/source`) or up (`/sink`) while the same
 * connection makes sequential 100-byte echo exchanges. It prints the echo's p50 and p99 in
 * ms and the large body's MB/s: the price of the message size and the socket's high-water
 * mark (PROTOCOL.md §7) in latency, and what they buy in throughput.
 *
 * @module
 */

import process from "node:process";
import { WebSocketClient } from "../mod.ts";
import {
  byteStream,
  drain,
  LARGE_CHUNK_BYTES,
  now,
  numberArg,
  printResult,
  quantile,
  scriptArgs,
  watchdog,
} from "./_common.ts";

const args = scriptArgs();
const port = numberArg(args, "port");
const total = numberArg(args, "mib", 256) * 1024 * 1024;
const direction = args.get("direction") ?? "down";
watchdog(120_000, "small_behind_large");

const client = new WebSocketClient({ url: `ws://127.0.0.1:${port}/`, keepAlive: false });
const connection = await client.connect();
const payload = new Uint8Array(100).fill(0x61);
const echo = async (): Promise<number> => {
  const start = now();
  const response = await connection.fetch("/echo", { method: "POST", body: payload });
  if ((await response.arrayBuffer()).byteLength !== payload.byteLength) {
    throw new Error("Bad echo");
  }
  return now() - start;
};
for (let i = 0; i < 200; i++) await echo(); // warm up the path before measuring

const started = now();
const large = direction === "up"
  ? connection.fetch("/sink", {
    method: "POST",
    body: byteStream(total, new Uint8Array(LARGE_CHUNK_BYTES).fill(9)),
    // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
    duplex: "half",
  }).then((response) => response.text()).then((text) => {
    if (Number(text) !== total) throw new Error("Bad upload");
  })
  : connection.fetch(`/source?bytes=${total}`).then(async (response) => {
    if (await drain(response.body) !== total) throw new Error("Bad download");
  });
let done = false;
const finished = large.then(() => {
  done = true;
  return now() - started;
});
const latencies: number[] = [];
while (!done) latencies.push(await echo());
const elapsed = await finished;
printResult({
  direction,
  echoes: latencies.length,
  p50: quantile(latencies, 0.5),
  p99: quantile(latencies, 0.99),
  mbps: total / 1e6 / (elapsed / 1000),
});
client.close();
// Bun and Deno keep running while a socket closes; the result is out, so leave now.
setTimeout(() => process.exit(0), 100);
