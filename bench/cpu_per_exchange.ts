/**
 * CPU time per small exchange, client and server in one process.
 *
 * ```
 * deno run -A bench/cpu_per_exchange.ts [--concurrency 64] [--duration 1000] [--runs 5]
 * bun bench/cpu_per_exchange.ts --concurrency 1
 * deno run -A bench/cpu_per_exchange.ts --concurrency 1 --kind ss,web   # and the floor
 * deno run -A bench/cpu_per_exchange.ts --smoke     # both kinds, 0.1 s each (CI: it still runs)
 * ```
 *
 * The two-process benchmarks (`bench/main.ts`) measure what a user sees, but on a
 * shared two-core machine their throughput swings with everything else running. The
 * process's own CPU time per exchange (user + system, both ends, 100 B each way) moves
 * far less with load; the minimum of several runs is what the A/B comparisons in
 * HISTORY.md ("What each change bought") use. Prints one line per run and the minimum.
 *
 * `--kind` (`ss`, `web` or both, comma-separated; default `ss`): `ss` is a swaggersocket
 * client calling a swaggersocket server's handler; `web` is the floor of `bench/server.ts`
 * (the runtime's own WebSocket server and client carrying the `Request` and `Response` a
 * handler and a caller are owed, with no protocol: `bench/_raw_server.ts`). With both, the
 * runs alternate and the last line is the ratio of the minimums, swaggersocket's CPU over
 * the floor's in the same run: what the protocol and the library cost on top of the web
 * objects, on one core, with the machine's noise shared by both.
 *
 * @module
 */

import process from "node:process";
import { WebSocketClient, WebSocketServer } from "../mod.ts";
import { numberArg, RUNTIME, scriptArgs, watchdog } from "./_common.ts";
import { dialRaw, listenRaw, webSession } from "./_raw_server.ts";

const args = scriptArgs();
const smoke = args.has("smoke");
const concurrency = numberArg(args, "concurrency", smoke ? 4 : 64);
const duration = numberArg(args, "duration", smoke ? 100 : 1000);
const warmup = smoke ? 50 : 500;
const runs = numberArg(args, "runs", smoke ? 1 : 5);
const kinds = (args.get("kind") ?? (smoke ? "ss,web" : "ss")).split(",");
for (const kind of kinds) {
  if (kind !== "ss" && kind !== "web") throw new TypeError(`--kind ss|web, not ${kind}`);
}
watchdog((kinds.length * runs * (duration + warmup) + 30_000) * 2, "cpu_per_exchange");

const PAYLOAD = new Uint8Array(100).fill(0x61);
const handler = async (request: Request): Promise<Response> =>
  new Response(await request.arrayBuffer());

/** One end-to-end setup: `exchange` does one exchange, `close` ends both ends. */
interface Setup {
  exchange(): Promise<void>;
  close(): Promise<void>;
}

async function swaggersocket(): Promise<Setup> {
  const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, handler });
  const client = new WebSocketClient({
    url: `ws://127.0.0.1:${server.addr.port}/`,
    keepAlive: false,
  });
  const connection = await client.connect();
  return {
    async exchange() {
      const response = await connection.fetch("/echo", { method: "POST", body: PAYLOAD });
      await response.arrayBuffer();
    },
    async close() {
      await connection.close({ timeout: 0 });
      await server.close();
    },
  };
}

/** The floor: `bench/client.ts`'s `web` exchange against `webSession`, one at a time per loop. */
async function floor(): Promise<Setup> {
  const server = listenRaw(webSession(handler));
  const { ws, next } = await dialRaw(server.port);
  return {
    async exchange() {
      const answer = next();
      ws.send(PAYLOAD);
      await new Response(await answer).arrayBuffer();
    },
    async close() {
      const closed = new Promise((resolve) => ws.addEventListener("close", resolve));
      ws.close();
      await closed;
      await server.close();
    },
  };
}

/** One run: warm up, then count exchanges and CPU microseconds for `duration` ms. */
async function run(kind: string): Promise<{ perSecond: number; cpuMicros: number }> {
  const setup = kind === "ss" ? await swaggersocket() : await floor();
  let count = 0;
  let stopped = false;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      await setup.exchange();
      count++;
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  await new Promise((resolve) => setTimeout(resolve, warmup));
  count = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, duration));
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const done = count;
  stopped = true;
  await Promise.all(loops);
  await setup.close();
  return { perSecond: (done / elapsed) * 1000, cpuMicros: (used.user + used.system) / done };
}

const best = new Map<string, number>();
for (let i = 0; i < runs; i++) {
  for (const kind of kinds) {
    const result = await run(kind);
    best.set(kind, Math.min(best.get(kind) ?? Infinity, result.cpuMicros));
    console.log(
      `${RUNTIME} ${kind} concurrency ${concurrency}: ${Math.round(result.perSecond)} ` +
        `exchanges/s, ${result.cpuMicros.toFixed(1)} µs CPU per exchange`,
    );
  }
}
for (const kind of kinds) {
  console.log(
    `${RUNTIME} ${kind} concurrency ${concurrency}: min ${
      best.get(kind)!.toFixed(1)
    } µs CPU per exchange`,
  );
}
if (best.has("ss") && best.has("web")) {
  console.log(
    `${RUNTIME} concurrency ${concurrency}: ss / web ${
      (best.get("ss")! / best.get("web")!).toFixed(2)
    }`,
  );
}
process.exit(0);
