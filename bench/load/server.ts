/**
 * The load benchmark's server process (`deno run -A --v8-flags=--expose-gc
 * bench/load/server.ts` or `bun run …`), driven by `bench/load/main.ts` over stdin.
 *
 * It listens on 127.0.0.1, serves the load API of `tests/fixtures/_load.ts` (with
 * `GET /stream` counted) and prints `READY <port>`. After a full GC it reads its RSS,
 * waits for `--agents` connections, collects garbage again and prints
 * `CONNECTED <json>` (RSS before and after, per agent). Then it obeys stdin:
 *
 * - `run <exchanges> <concurrency> <seed>`: verified exchanges to the agents, spread
 *   over every connection; prints `RESULT <json>` (counts, p50/p99 latency, exchanges/s);
 * - `mark`: collects garbage, records RSS as the slow-reader baseline, prints `MARKED`;
 * - `observe <ms> <streams>`: waits until `<streams>` streamed bodies have started and
 *   every one is blocked (has produced the peer's window and our outbox), then samples RSS
 *   for `<ms>` while the producers stay ready to write; prints `RESULT <json>` (RSS growth,
 *   and the growth of live memory, heap used + external, which on Deno is the better
 *   measure: its allocator keeps freed ArrayBuffer memory in RSS).
 *
 * Closing stdin (or SIGTERM) closes the server and exits; a watchdog (`--watchdog` ms)
 * ends it regardless.
 *
 * @module
 */

import process from "node:process";
import { type ConnectionEvent, EventType, WebSocketServer } from "../../mod.ts";
import { OUTBOX_HIGH_WATER } from "../../protocol/session.ts";
import { flag, scriptArgs, watchdog } from "../../tests/fixtures/_common.ts";
import {
  collectGarbage,
  loadHandler,
  newProgress,
  percentile,
  rss,
  runLoad,
  type StreamCounter,
} from "../../tests/fixtures/_load.ts";

const args = scriptArgs();
watchdog(Number(flag(args, "watchdog", "600000")), "load bench server");
const agents = Number(flag(args, "agents", "1000"));
/** The agents' receive window: how much a blocked stream may have sent. */
const peerWindow = Number(flag(args, "peer-window", String(1024 * 1024)));
const RUNTIME = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";

const counter: StreamCounter = { started: 0, produced: [] };
const server = new WebSocketServer({
  hostname: "127.0.0.1",
  port: 0,
  handler: loadHandler("server", counter),
  closeTimeout: 2_000,
  // Every agent dials from 127.0.0.1, 1,000 of them at once.
  limits: { addressRateLimits: false, maxPendingHandshakes: 10_000 },
});
const events = server.events();
console.log(`READY ${server.addr.port}`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** GC twice with a turn between, so that finalizers run and the reading settles. */
async function settledRss(): Promise<number> {
  collectGarbage();
  await sleep(50);
  collectGarbage();
  return rss();
}

const rssBefore = await settledRss();
let seen = 0;
for await (const event of events as AsyncIterable<ConnectionEvent>) {
  if (event.type === EventType.ConnectionReceived && ++seen === agents) break;
}
const rssAfter = await settledRss();
console.log(`CONNECTED ${
  JSON.stringify({
    runtime: RUNTIME,
    agents,
    rssBefore,
    rssAfter,
    rssPerAgent: (rssAfter - rssBefore) / agents,
  })
}`);

let baseline = rss();
let liveBaseline = live();

/** Live JavaScript memory: the heap in use plus memory held by ArrayBuffers and the like. */
function live(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}

async function run(total: number, concurrency: number, seed: number): Promise<void> {
  const targets = server.connections().map((connection) => ({
    fetch: connection.fetch,
    name: (connection.metadata as { name: string }).name,
  }));
  const progress = newProgress(total, true);
  const start = performance.now();
  await runLoad(targets, { total, concurrency, seed }, progress);
  const seconds = (performance.now() - start) / 1000;
  const sorted = progress.latencies!.sort((a, b) => a - b);
  console.log(`RESULT ${
    JSON.stringify({
      runtime: RUNTIME,
      connections: targets.length,
      total,
      concurrency,
      settled: progress.settled,
      lost: total - progress.settled,
      ok: progress.ok,
      mismatched: progress.mismatched,
      failed: progress.failed,
      problems: progress.problems,
      seconds,
      exchangesPerSecond: total / seconds,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: sorted[sorted.length - 1],
      rssAfterRun: rss(),
    })
  }`);
}

async function observe(ms: number, streams: number): Promise<void> {
  const blocked = peerWindow + OUTBOX_HIGH_WATER;
  const waitStart = performance.now();
  while (
    counter.started < streams ||
    !counter.produced.every((bytes) => bytes >= blocked)
  ) {
    if (performance.now() - waitStart > 120_000) {
      console.log(`ERROR streams did not block: started ${counter.started}`);
      return;
    }
    await sleep(20);
  }
  const producedAtBlock = counter.produced.reduce((a, b) => a + b, 0);
  let peak = rss();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await sleep(100);
    peak = Math.max(peak, rss());
  }
  const produced = counter.produced.reduce((a, b) => a + b, 0);
  const afterGc = await settledRss();
  console.log(`RESULT ${
    JSON.stringify({
      runtime: RUNTIME,
      streams: counter.started,
      peerWindow,
      outboxHighWater: OUTBOX_HIGH_WATER,
      producedAtBlock,
      produced,
      producedMaxPerStream: Math.max(...counter.produced),
      observeMs: ms,
      rssBaseline: baseline,
      rssPeakGrowth: peak - baseline,
      rssGrowthAfterGc: afterGc - baseline,
      liveGrowthAfterGc: live() - liveBaseline,
    })
  }`);
}

let pending = "";
let queue = Promise.resolve();
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  pending += chunk;
  let newline: number;
  while ((newline = pending.indexOf("\n")) !== -1) {
    const [verb, ...rest] = pending.slice(0, newline).trim().split(/\s+/);
    pending = pending.slice(newline + 1);
    const numbers = rest.map(Number);
    queue = queue.then(async () => {
      if (verb === "run") await run(numbers[0], numbers[1], numbers[2]);
      else if (verb === "mark") {
        baseline = await settledRss();
        liveBaseline = live();
        console.log("MARKED");
      } else if (verb === "observe") await observe(numbers[0], numbers[1]);
    });
  }
});
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
