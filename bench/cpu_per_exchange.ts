/**
 * CPU time per small exchange, client and server in one process.
 *
 * ```
 * deno run -A bench/cpu_per_exchange.ts [--concurrency 64] [--duration 1000] [--runs 5]
 * bun bench/cpu_per_exchange.ts --concurrency 1
 * ```
 *
 * The two-process benchmarks (`bench/main.ts`) measure what a user sees, but on a
 * shared two-core machine their throughput swings with everything else running. The
 * process's own CPU time per exchange (user + system, both ends, 100 B each way) moves
 * far less with load; the minimum of several runs is what the A/B comparisons in
 * HISTORY.md ("What each change bought") use. Prints one line per run and the minimum.
 *
 * @module
 */

import process from "node:process";
import { WebSocketClient, WebSocketServer } from "../mod.ts";
import { numberArg, RUNTIME, scriptArgs, watchdog } from "./_common.ts";

const args = scriptArgs();
const concurrency = numberArg(args, "concurrency", 64);
const duration = numberArg(args, "duration", 1000);
const runs = numberArg(args, "runs", 5);
watchdog((runs * (duration + 500) + 30_000) * 2, "cpu_per_exchange");

const PAYLOAD = new Uint8Array(100).fill(0x61);

/** One run: warm up, then count exchanges and CPU microseconds for `duration` ms. */
async function run(): Promise<{ perSecond: number; cpuMicros: number }> {
  const server = new WebSocketServer({
    hostname: "127.0.0.1",
    port: 0,
    handler: async (request) => new Response(await request.arrayBuffer()),
  });
  const client = new WebSocketClient({
    url: `ws://127.0.0.1:${server.addr.port}/`,
    keepAlive: false,
  });
  const connection = await client.connect();
  let count = 0;
  let stopped = false;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const response = await connection.fetch("/echo", { method: "POST", body: PAYLOAD });
      await response.arrayBuffer();
      count++;
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  await new Promise((resolve) => setTimeout(resolve, 500));
  count = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, duration));
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const done = count;
  stopped = true;
  await Promise.all(loops);
  await connection.close({ timeout: 0 });
  await server.close();
  return { perSecond: (done / elapsed) * 1000, cpuMicros: (used.user + used.system) / done };
}

const results = [];
for (let i = 0; i < runs; i++) {
  const result = await run();
  results.push(result);
  console.log(
    `${RUNTIME} concurrency ${concurrency}: ${Math.round(result.perSecond)} exchanges/s, ` +
      `${result.cpuMicros.toFixed(1)} µs CPU per exchange`,
  );
}
const best = Math.min(...results.map((r) => r.cpuMicros));
console.log(`${RUNTIME} concurrency ${concurrency}: min ${best.toFixed(1)} µs CPU per exchange`);
process.exit(0);
