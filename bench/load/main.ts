/**
 * The full-size load benchmark (`deno task bench:load`, or
 * `bun run bench/load/main.ts`): for each pairing of server runtime and agents runtime,
 *
 * 1. **load**: a server process (`bench/load/server.ts`) and 1,000 agents in one separate
 *    process (`tests/fixtures/load_agents.ts`); the server runs 100,000 exchanges to the
 *    agents (seeded 0–4 KiB bodies, every answer verified: echoed bytes or SHA-256, the
 *    answering agent, the sequence number) and reports lost and mismatched exchanges,
 *    p50/p99 latency, exchanges/s, and its RSS per connected agent;
 * 2. **slow readers**: a fresh server and 100 agents that each fetch an endless body from
 *    the server, read one chunk and stop reading; the server reports how much its
 *    producers made and how far its RSS grew while they stayed ready to write, against
 *    the flow-control bound 100 × (window + outbox high-water mark).
 *
 * Options: `--agents 1000 --exchanges 100000 --concurrency 256 --readers 100
 * --observe 3000 --pairs deno:deno,bun:bun,deno:bun` (server:agents). It prints progress
 * on stderr, a Markdown summary and `RESULT <json>` on stdout, and exits 1 if any exchange
 * was lost or mismatched or a bound was exceeded. 1,000 agents need 1,000 descriptors in
 * each process (`ulimit -n`).
 *
 * @module
 */

import process from "node:process";
import { flag, scriptArgs, watchdog } from "../../tests/fixtures/_common.ts";
import { BUN_BIN, DENO_BIN } from "../../tests/_helpers.ts";
import { spawnAgents } from "../../tests/_agents_process.ts";
import { type LineProcess, spawnLines } from "../../tests/_helpers.ts";
import { STREAM_CHUNK_BYTES } from "../../tests/fixtures/_load.ts";
import { OUTBOX_HIGH_WATER } from "../../protocol/session.ts";

type Runtime = "deno" | "bun";

const args = scriptArgs();
watchdog(Number(flag(args, "watchdog", String(60 * 60_000))), "load bench");
const AGENTS = Number(flag(args, "agents", "1000"));
const EXCHANGES = Number(flag(args, "exchanges", "100000"));
const CONCURRENCY = Number(flag(args, "concurrency", "256"));
const READERS = Number(flag(args, "readers", "100"));
const OBSERVE_MS = Number(flag(args, "observe", "3000"));
const SEED = Number(flag(args, "seed", "20171"));
/** The library's default `limits.initialWindow`: the agents' receive window. */
const WINDOW = 1024 * 1024;
const PAIRS = flag(args, "pairs", "deno:deno,bun:bun,deno:bun").split(",").map((pair) =>
  pair.split(":") as [Runtime, Runtime]
);
const STEP_MS = 10 * 60_000;
const MIB = 1024 * 1024;

function log(text: string): void {
  console.error(`[bench:load] ${text}`);
}

function startServer(runtime: Runtime, agents: number, extra: string[] = []): LineProcess {
  const script = new URL("./server.ts", import.meta.url).pathname;
  const own = ["--agents", String(agents), "--watchdog", String(STEP_MS * 2), ...extra];
  return runtime === "deno"
    ? spawnLines(
      DENO_BIN,
      ["run", "-A", "--quiet", "--v8-flags=--expose-gc", script, ...own],
      "load bench server",
    )
    : spawnLines(BUN_BIN, ["run", script, ...own], "load bench server");
}

async function finish(processes: LineProcess[]): Promise<void> {
  for (const child of processes) child.end();
  const timer = setTimeout(() => processes.forEach((child) => child.kill()), 20_000);
  await Promise.all(processes.map((child) => child.exited));
  clearTimeout(timer);
}

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

async function load(serverRuntime: Runtime, agentsRuntime: Runtime): Promise<Json> {
  const server = startServer(serverRuntime, AGENTS);
  let agents: LineProcess | undefined;
  try {
    const port = (await server.waitFor(/^READY (\d+)$/, 60_000))[1];
    agents = spawnAgents(agentsRuntime, `ws://127.0.0.1:${port}`, {
      agents: AGENTS,
      watchdog: STEP_MS * 2,
    });
    const ready = await agents.waitFor(/^(ready|error) (.*)$/, STEP_MS);
    if (ready[1] !== "ready") throw new Error(`agents: ${ready[0]}`);
    const connected = JSON.parse((await server.waitFor(/^CONNECTED (.*)$/, STEP_MS))[1]);
    log(
      `${AGENTS} agents connected; RSS per agent ${(connected.rssPerAgent / 1024).toFixed(1)} KiB`,
    );
    server.send(`run ${EXCHANGES} ${CONCURRENCY} ${SEED}`);
    const result = JSON.parse((await server.waitFor(/^RESULT (.*)$/, STEP_MS))[1]);
    log(`${result.ok}/${EXCHANGES} verified in ${result.seconds.toFixed(1)} s`);
    return { ...connected, ...result, agentsRuntime, serverRuntime };
  } finally {
    await finish(agents ? [agents, server] : [server]);
  }
}

async function slowReaders(serverRuntime: Runtime, agentsRuntime: Runtime): Promise<Json> {
  const server = startServer(serverRuntime, READERS, ["--peer-window", String(WINDOW)]);
  let agents: LineProcess | undefined;
  try {
    const port = (await server.waitFor(/^READY (\d+)$/, 60_000))[1];
    agents = spawnAgents(agentsRuntime, `ws://127.0.0.1:${port}`, {
      agents: READERS,
      watchdog: STEP_MS * 2,
    });
    const ready = await agents.waitFor(/^(ready|error) (.*)$/, STEP_MS);
    if (ready[1] !== "ready") throw new Error(`agents: ${ready[0]}`);
    await server.waitFor(/^CONNECTED /, STEP_MS);
    server.send("mark");
    await server.waitFor(/^MARKED$/, 60_000);
    agents.send("slow /stream");
    const started = Number((await agents.waitFor(/^slow-started (\d+)$/, STEP_MS))[1]);
    server.send(`observe ${OBSERVE_MS} ${READERS}`);
    const result = JSON.parse((await server.waitFor(/^(?:RESULT|ERROR) (.*)$/, STEP_MS))[1]);
    const bound = READERS * (WINDOW + OUTBOX_HIGH_WATER);
    const producedBound = READERS * (WINDOW + OUTBOX_HIGH_WATER + 2 * STREAM_CHUNK_BYTES);
    return { ...result, started, bound, producedBound, agentsRuntime, serverRuntime };
  } finally {
    await finish(agents ? [agents, server] : [server]);
  }
}

const fmt = (n: number, digits = 1) => n.toFixed(digits);
const loads: Json[] = [];
const slows: Json[] = [];
let ok = true;
for (const [serverRuntime, agentsRuntime] of PAIRS) {
  log(`load: ${serverRuntime} server, ${AGENTS} ${agentsRuntime} agents, ${EXCHANGES} exchanges`);
  try {
    const result = await load(serverRuntime, agentsRuntime);
    loads.push(result);
    if (result.lost !== 0 || result.mismatched !== 0 || result.failed !== 0) ok = false;
  } catch (error) {
    ok = false;
    log(`load failed: ${(error as Error).message}`);
    loads.push({ serverRuntime, agentsRuntime, error: (error as Error).message });
  }
  log(`slow readers: ${serverRuntime} server, ${READERS} ${agentsRuntime} agents`);
  try {
    const result = await slowReaders(serverRuntime, agentsRuntime);
    slows.push(result);
    if (!(result.produced <= result.producedBound)) ok = false;
  } catch (error) {
    ok = false;
    log(`slow readers failed: ${(error as Error).message}`);
    slows.push({ serverRuntime, agentsRuntime, error: (error as Error).message });
  }
}

console.log(
  `\n### Load: ${AGENTS} agents in one process, ${EXCHANGES} exchanges (0–4 KiB bodies, verified), ${CONCURRENCY} in flight\n`,
);
console.log(
  "| server | agents | lost | mismatched | failed | p50 ms | p99 ms | exchanges/s | server RSS per agent |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of loads) {
  if (r.error) {
    console.log(`| ${r.serverRuntime} | ${r.agentsRuntime} | error: ${r.error} ||||||||`);
    continue;
  }
  console.log(
    `| ${r.serverRuntime} | ${r.agentsRuntime} | ${r.lost} | ${r.mismatched} | ${r.failed} | ${
      fmt(r.p50, 2)
    } | ${fmt(r.p99, 2)} | ${fmt(r.exchangesPerSecond, 0)} | ${fmt(r.rssPerAgent / 1024)} KiB |`,
  );
}
console.log(
  `\n### Slow readers: ${READERS} agents stop reading an endless body (window ${
    WINDOW / 1024
  } KiB, outbox high water ${OUTBOX_HIGH_WATER / 1024} KiB), observed ${OBSERVE_MS} ms\n`,
);
console.log(
  `| server | agents | produced MiB | max per stream KiB | bound ${READERS} × (window + outbox) MiB | server RSS growth, peak MiB | after GC MiB | live heap + external growth after GC MiB |`,
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of slows) {
  if (r.error) {
    console.log(`| ${r.serverRuntime} | ${r.agentsRuntime} | error: ${r.error} |||||||`);
    continue;
  }
  console.log(
    `| ${r.serverRuntime} | ${r.agentsRuntime} | ${fmt(r.produced / MIB)} | ${
      fmt(r.producedMaxPerStream / 1024, 0)
    } | ${fmt(r.bound / MIB)} | ${fmt(r.rssPeakGrowth / MIB)} | ${
      fmt(r.rssGrowthAfterGc / MIB)
    } | ${fmt(r.liveGrowthAfterGc / MIB)} |`,
  );
}
console.log(`\nRESULT ${JSON.stringify({ loads, slows })}`);
process.exit(ok ? 0 : 1);
