/**
 * The cluster benchmark (`deno task bench:cluster`): what the hop between two gateway instances
 * costs, and what a registry refresh of 10,000 agents costs, on loopback with a `redis-server`
 * of its own.
 *
 * ```
 * deno task bench:cluster                  # Deno gateways, 5 rounds × 4 phases of 3 s (~75 s)
 * deno task bench:cluster --runtime bun    # Bun gateways and agent; the caller stays on Deno
 * deno task bench:cluster --smoke          # every part, tiny (~10 s)
 * bun bench/cluster.ts --runtime bun       # the caller and the refresh part under Bun too
 * deno run -A bench/cluster.ts --parts refresh --agents 10000 --refreshes 10
 * ```
 *
 * 1. **The hop** (`--parts hop`). It starts `/usr/bin/redis-server` on a unix socket in a temp
 *    directory (`--save "" --appendonly no`), two `gateway.ts` processes A and B on it
 *    (`--redis unix://… --cluster-secret …`, `--runtime deno|bun`), and one agent process (this
 *    file with `--role agent`: `startAgent` with a handler answering a 64-byte body) connected
 *    to A. "Local" is `GET A/agents/bench/ping`; "forwarded" is the same request to B, which
 *    looks the agent up in Redis and hops to A (over B's link to A: one swaggersocket
 *    connection, kept open). The caller is this process, with `fetch` (connections kept
 *    alive), checking every answer's status and body. Each round measures, in alternating
 *    order (local first in even rounds, forwarded first in odd ones), **latency**: sequential
 *    requests, one at a time, for `--duration` ms, p50 and p99 of each; then **throughput**:
 *    `--callers` concurrent callers for `--duration` ms, requests/s, and (Linux, from
 *    `/proc/{pid}/stat`) the CPU µs per request of each process (A, B, agent, redis, caller)
 *    and how many CPUs they kept busy together: where the machine has few CPUs, B's work
 *    shares them with A's, and the throughput ratio is about the ratio of CPU per request.
 *    Reported: the medians over rounds, the median of the per-round differences (forwarded p50 −
 *    local p50) and ratios (forwarded / local requests/s on this machine; and **per instance**, a
 *    local request's CPU µs in A over a forwarded one's in the busier of A and B: the share of its
 *    local rate that an instance with CPUs of its own keeps), and whether the targets are
 *    met: the hop adds ≤ 0.5 ms at p50 and keeps ≥ 0.8× the local throughput per instance (in a
 *    cluster each instance has its own CPUs; on one machine every process shares them, and a
 *    forwarded request, which crosses two gateways, costs them all more). A missed target is
 *    reported, not an error.
 *    The gateways run with `--log-level warn` (`--gateway-log-level`): at `info` each instance
 *    writes one access line per request, and a forwarded request is logged twice.
 * 2. **Refresh cost** (`--parts refresh`). `ClusterRegistry.refresh(held, listing)` from
 *    `cluster/_registry.ts`, called directly with an `@redis/client` client on the same Redis,
 *    for `--agents` (10,000) held agents (ULID ids, names) and a listing of as many entries
 *    shaped like the live `GET /agents` answer of part 1. One cold refresh (creating every key),
 *    then `--refreshes` warm ones: milliseconds per refresh (median, client side); and on the
 *    Redis side, from `INFO commandstats` and `SLOWLOG` (threshold 1 ms), the EVAL time per
 *    refresh and the longest single script: a refresh runs one script per 1,000 agents, and
 *    the longest is how long Redis is blocked at a time.
 *
 * Options: `--runtime deno|bun` (gateways and agent), `--duration MS` (per phase, 3000),
 * `--rounds N` (5), `--warmup MS` (2000, per path), `--callers N` (32), `--parts hop,refresh`,
 * `--agents N` (10000), `--refreshes N` (10), `--gateway-log-level LEVEL` (warn), `--json FILE`
 * (the raw results), `--max-seconds S` (the watchdog; by default the planned time plus 90 s),
 * `--profile DIR` (the gateways and the agent under `--cpu-prof`, a sub-directory each, stopped
 * gracefully so that the profiles are written, then summarized as `bench/gateway.ts --profile`
 * does), `--spin` (one nice-19 busy loop per CPU, as `bench/main.ts --spin`: steadier one-at-a-time
 * latency on a VM), `--smoke` (`--duration 500 --rounds 2 --warmup 300 --refreshes 3`, ~10 s).
 * Output: progress on stderr; tables (Markdown) and `RESULT <json>` on stdout. Exit status 1
 * if any request failed or a part could not run; 3 if the watchdog fired.
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { createClient } from "@redis/client";
import { ulid } from "ulid";
import { startAgent } from "../agent.ts";
import { ClusterRegistry, type HeldAgent, type RedisLike } from "../cluster/_registry.ts";
import { RedisResumeTokens } from "../cluster/_resume_tokens.ts";
import {
  median,
  ms,
  now,
  numberArg,
  parseArgs,
  printResult,
  readStdinLines,
  RUNTIME,
  sleep,
  table,
} from "./_common.ts";
import {
  type Child,
  cpuProfileFlags,
  killAll,
  launch,
  launchScript,
  stopChild,
  until,
} from "./_children.ts";
import { newProfileDir, summarizeProfiles } from "./_profiles.ts";
import {
  concurrent,
  freePort,
  guarded,
  type LatencyResult,
  noteError,
  once,
  sequential,
  takeFirstError,
  type ThroughputResult,
} from "./_http_load.ts";

type Runtime = "deno" | "bun";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/.bin/deno`;
const REDIS_SERVER = "/usr/bin/redis-server";
const SECRET = "bench-cluster-secret";
const AGENT_NAME = "bench";
/** What the agent answers: 64 bytes. */
const BODY = "swaggersocket cluster bench: a small body of sixty-four bytes..\n";
const START_MS = 20_000;
/** SLOWLOG's threshold while refreshes are timed, µs. */
const SLOWLOG_THRESHOLD_US = 1_000;
/** Agents per refresh script: `REFRESH_BATCH` in cluster/_registry.ts (not exported). */
const REFRESH_BATCH = 1_000;

const args = parseArgs(process.argv.slice(2));
const smoke = args.has("smoke");
/** `--profile DIR`: the gateways and the agent run under `--cpu-prof`, a sub-directory each. */
let profileDir: string | undefined;

// ---- the agent process (--role agent) -------------------------------------------------------

/** Connects one agent answering {@linkcode BODY}; prints `READY <id>`; exits when stdin closes. */
async function runAgent(): Promise<void> {
  const bound = setTimeout(() => {
    console.error("bench/cluster.ts agent: watchdog fired; exiting");
    process.exit(3);
  }, numberArg(args, "exit-after", 600_000));
  (bound as { unref?: () => void }).unref?.();
  const agent = startAgent({
    url: args.get("url")!,
    name: args.get("name") ?? AGENT_NAME,
    handler: () => new Response(BODY, { headers: { "content-type": "text/plain" } }),
  });
  const stop = async () => {
    await Promise.race([agent.close(), sleep(2_000)]);
    process.exit(0);
  };
  readStdinLines(() => {}, () => void stop());
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void stop());
  const connection = await agent.ready;
  console.log(`READY ${connection.id}`);
  const error = await agent.stopped;
  if (error) {
    console.error(`bench/cluster.ts agent stopped: ${error.message}`);
    process.exit(1);
  }
}

// ---- processes --------------------------------------------------------------------------------

let tempDir: string | undefined;

/** Kills every child and removes the temporary directory (the watchdog, a signal, an exit). */
function cleanUp(): void {
  killAll();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

/** `redis-server` on a unix socket in `dir`, without persistence; resolves once it is ready. */
async function startRedis(dir: string): Promise<{ child: Child; socket: string }> {
  const socket = join(dir, "redis.sock");
  const child = launch("redis-server", REDIS_SERVER, [
    "--port",
    "0",
    "--unixsocket",
    socket,
    "--unixsocketperm",
    "700",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
  ]);
  await until(
    "redis-server ready",
    () => /ready to accept connections/i.test(child.stdout),
    START_MS,
    child,
  );
  return { child, socket };
}

// ---- part 1: the hop --------------------------------------------------------------------------

type Path = "local" | "forwarded";

interface HopRound {
  order: Path[];
  latency: Record<Path, LatencyResult>;
  throughput: Record<Path, ThroughputResult>;
}

/** One path's medians over rounds. */
interface PathSummary {
  p50: number;
  p99: number;
  rps: number;
  /** CPU µs per request of each process, under load. */
  cpu: Record<string, number>;
  /** CPUs busy under load. */
  busy: number;
}

interface HopResult {
  runtime: Runtime;
  callerRuntime: Runtime;
  callers: number;
  durationMs: number;
  rounds: HopRound[];
  local: PathSummary;
  forwarded: PathSummary;
  /** Median over rounds of (forwarded p50 − local p50), ms. */
  p50Added: number;
  /** Median over rounds of (forwarded p99 − local p99), ms. */
  p99Added: number;
  /** Median over rounds of forwarded / local requests/s, every process on this machine's CPUs. */
  throughputRatio: number;
  /** Median over rounds of {@linkcode perInstance}; `NaN` without CPU figures. */
  perInstanceRatio: number;
  errors: number;
  /** A live `GET /agents` entry, the template of part 2's listing. */
  listed: Record<string, unknown> | undefined;
}

/**
 * What an instance with CPUs of its own keeps of its local rate when its requests are
 * forwarded: a local request's CPU µs in A over a forwarded one's in the busier of A (the
 * owner) and B (the instance the caller asked).
 */
function perInstance(round: HopRound): number {
  const { local, forwarded } = round.throughput;
  return (local.cpu.A ?? NaN) / Math.max(forwarded.cpu.A ?? NaN, forwarded.cpu.B ?? NaN);
}

async function runHop(
  redis: { child: Child; socket: string },
  runtime: Runtime,
  options: { duration: number; rounds: number; warmup: number; callers: number; bound: number },
): Promise<HopResult> {
  const logLevel = args.get("gateway-log-level") ?? "warn";
  const gateway = ROOT + "gateway.ts";
  const start = async (name: string): Promise<{ child: Child; url: string }> => {
    const port = await freePort();
    const child = launchScript(name, runtime, gateway, [
      "--hostname",
      "127.0.0.1",
      "--port",
      String(port),
      "--redis",
      `unix://${redis.socket}`,
      "--log-level",
      logLevel,
      "--exit-after",
      String(options.bound + 10_000),
    ], {
      env: { SWAGGERSOCKET_GATEWAY_CLUSTER_SECRET: SECRET },
      flags: cpuProfileFlags(profileDir, name),
    });
    const url = `http://127.0.0.1:${port}`;
    await until(
      `${name} to answer GET /agents`,
      async () => {
        try {
          const response = await fetch(`${url}/agents`);
          await response.body?.cancel();
          return response.status === 200;
        } catch {
          return false;
        }
      },
      START_MS,
      child,
    );
    return { child, url };
  };
  progress(`starting gateways A and B (${runtime}) on redis ${redis.socket}`);
  const [a, b] = [await start("gateway A"), await start("gateway B")];
  progress(`A ${a.url}, B ${b.url}; starting the agent (${runtime})`);
  const self = new URL(import.meta.url).pathname;
  const agent = launchScript("agent", runtime, self, [
    "--role",
    "agent",
    "--url",
    `${a.url.replace("http:", "ws:")}/agents/connect`,
    "--name",
    AGENT_NAME,
    "--exit-after",
    String(options.bound + 10_000),
  ], { flags: cpuProfileFlags(profileDir, "agent") });
  await until("the agent's READY line", () => /READY \S+/.test(agent.stdout), START_MS, agent);
  const target = (base: string) => `${base}/agents/${AGENT_NAME}/ping`;
  const urls: Record<Path, string> = { local: target(a.url), forwarded: target(b.url) };
  // B finds the agent once A's claim is in Redis.
  await until(
    "B to reach the agent through A",
    async () => {
      try {
        await once(urls.forwarded, BODY);
        return true;
      } catch {
        return false;
      }
    },
    START_MS,
    b.child,
  );
  const listing = await (await fetch(`${a.url}/agents`)).json() as Record<string, unknown>[];
  const listed = listing.find((entry) => entry.name === AGENT_NAME);

  const phaseBound = options.duration + 30_000;
  const pids = {
    A: a.child.process.pid,
    B: b.child.process.pid,
    agent: agent.process.pid,
    redis: redis.child.process.pid,
    caller: process.pid,
  };
  progress(`warm-up: ${options.warmup} ms sequential and concurrent per path`);
  for (const path of ["local", "forwarded"] as const) {
    await guarded(sequential(urls[path], BODY, options.warmup / 2), phaseBound, "warm-up");
    await guarded(
      concurrent(urls[path], BODY, options.warmup / 2, options.callers, {}),
      phaseBound,
      "warm-up",
    );
  }
  const warmupErrors = takeFirstError();
  if (warmupErrors) progress(`warm-up had failed requests: ${warmupErrors}`);

  const rounds: HopRound[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const order: Path[] = round % 2 === 0 ? ["local", "forwarded"] : ["forwarded", "local"];
    const latency = {} as Record<Path, LatencyResult>;
    const throughput = {} as Record<Path, ThroughputResult>;
    for (const path of order) {
      latency[path] = await guarded(
        sequential(urls[path], BODY, options.duration),
        phaseBound,
        `${path} latency`,
      );
    }
    for (const path of order) {
      throughput[path] = await guarded(
        concurrent(urls[path], BODY, options.duration, options.callers, pids),
        phaseBound,
        `${path} throughput`,
      );
    }
    rounds.push({ order, latency, throughput });
    progress(
      `round ${round + 1}/${options.rounds}: p50 local ${ms(latency.local.p50)} forwarded ${
        ms(latency.forwarded.p50)
      } ms; req/s local ${throughput.local.rps.toFixed(0)} forwarded ${
        throughput.forwarded.rps.toFixed(0)
      }`,
    );
  }

  // Gracefully, so that profiles get written.
  const grace = profileDir ? 15_000 : 0;
  await stopChild(agent, "SIGTERM", 3_000 + grace);
  await Promise.all([
    stopChild(a.child, "SIGTERM", 8_000 + grace),
    stopChild(b.child, "SIGTERM", 8_000 + grace),
  ]);
  for (const child of [a.child, b.child]) {
    const warnings = child.stdout.split("\n").filter((line) => /\b(WARN|ERROR)\b/i.test(line));
    if (warnings.length > 0) {
      progress(`${child.name} logged ${warnings.length} warning/error lines, the last:`);
      for (const line of warnings.slice(-5)) progress(`  ${line}`);
    }
  }

  const summary = (path: Path): PathSummary => ({
    p50: median(rounds.map((r) => r.latency[path].p50)),
    p99: median(rounds.map((r) => r.latency[path].p99)),
    rps: median(rounds.map((r) => r.throughput[path].rps)),
    cpu: Object.fromEntries(
      Object.keys(pids).map((name) => [
        name,
        median(rounds.map((r) => r.throughput[path].cpu[name] ?? NaN)),
      ]),
    ),
    busy: median(rounds.map((r) => r.throughput[path].busy)),
  });
  return {
    runtime,
    callerRuntime: RUNTIME,
    callers: options.callers,
    durationMs: options.duration,
    rounds,
    local: summary("local"),
    forwarded: summary("forwarded"),
    p50Added: median(rounds.map((r) => r.latency.forwarded.p50 - r.latency.local.p50)),
    p99Added: median(rounds.map((r) => r.latency.forwarded.p99 - r.latency.local.p99)),
    throughputRatio: median(
      rounds.map((r) => r.throughput.forwarded.rps / r.throughput.local.rps),
    ),
    perInstanceRatio: median(rounds.map(perInstance)),
    errors: rounds.reduce(
      (sum, r) =>
        sum + r.latency.local.errors + r.latency.forwarded.errors + r.throughput.local.errors +
        r.throughput.forwarded.errors,
      0,
    ),
    listed,
  };
}

// ---- part 2: refresh cost ---------------------------------------------------------------------

interface RefreshResult {
  runtime: Runtime;
  agents: number;
  refreshes: number;
  listingBytes: number;
  stringifyMs: number;
  coldMs: number;
  /** Client-side milliseconds of each warm refresh. */
  warmMs: number[];
  medianMs: number;
  /** EVAL calls and their total µs over the warm refreshes (`INFO commandstats`). */
  evalCalls: number;
  evalUsec: number;
  /** Redis-side ms per warm refresh (EVAL time). */
  redisMsPerRefresh: number;
  /** The longest single EVAL over the warm refreshes (`SLOWLOG`), ms. */
  longestScriptMs: number;
  /** The median EVAL (`SLOWLOG`), ms. */
  medianScriptMs: number;
  /** The longest of each refresh's first script (which also writes the listing), ms. */
  longestFirstBatchMs: number;
  /** The longest and the median of the other scripts (agents' records only), ms. */
  longestOtherBatchMs: number;
  medianOtherBatchMs: number;
  scriptsLogged: number;
  /** Connections the refreshes reported lost (should be none). */
  lost: number;
  redisMemoryBytes: number;
  /** The shared resume tokens' refresh for as many agents: the first (creating them), ms. */
  tokensColdMs: number;
  /** And the median of the warm ones, ms. */
  tokensMedianMs: number;
}

async function runRefresh(
  socket: string,
  agents: number,
  refreshes: number,
  template: Record<string, unknown> | undefined,
): Promise<RefreshResult> {
  const client = createClient({ socket: { path: socket, tls: false }, disableOfflineQueue: true });
  client.on("error", (error: Error) => noteError(error));
  await client.connect();
  const command = (argv: string[]) => client.sendCommand(argv) as Promise<unknown>;
  try {
    const registry = new ClusterRegistry(client as unknown as RedisLike, {
      instance: ulid(),
      url: "http://127.0.0.1:8080",
      prefix: "bench-refresh:",
    });
    const shape = template ?? {
      id: "",
      name: "",
      metadata: { name: "" },
      remoteAddr: "127.0.0.1:40000",
      connectedAt: new Date().toISOString(),
      rtt: 0.312,
      inFlight: 0,
    };
    const held: HeldAgent[] = [];
    const listing: Record<string, unknown>[] = [];
    const connectedAt = Date.now();
    for (let i = 0; i < agents; i++) {
      const agent = { id: ulid(), name: `agent-${String(i).padStart(5, "0")}` };
      held.push(agent);
      listing.push({
        ...shape,
        id: agent.id,
        name: agent.name,
        metadata: { ...(shape.metadata as object | null), name: agent.name },
        remoteAddr: `10.0.${(i >> 8) & 255}.${i & 255}:${40000 + (i % 20000)}`,
        connectedAt: new Date(connectedAt - i * 1000).toISOString(),
        rtt: Math.round((0.2 + (i % 97) / 100) * 1000) / 1000,
        inFlight: i % 3,
      });
    }
    const stringifyStarted = now();
    const json = JSON.stringify(listing);
    const stringifyMs = now() - stringifyStarted;
    const memoryBefore = usedMemory(String(await command(["INFO", "memory"])));

    progress(`refresh: ${agents} agents, listing ${(json.length / 1024).toFixed(0)} KiB`);
    let started = now();
    let lost = (await registry.refresh(held, listing)).length;
    const coldMs = now() - started;
    const memoryAfter = usedMemory(String(await command(["INFO", "memory"])));

    // Redis 7 also logs each command a script runs: a threshold of 1 ms keeps the EVALs (a
    // batch of 1,000 agents takes milliseconds) and leaves out the µs-long GETs and SETs.
    await command(["CONFIG", "SET", "slowlog-log-slower-than", String(SLOWLOG_THRESHOLD_US)]);
    await command(["CONFIG", "SET", "slowlog-max-len", "10000"]);
    await command(["SLOWLOG", "RESET"]);
    await command(["CONFIG", "RESETSTAT"]);
    const warmMs: number[] = [];
    for (let i = 0; i < refreshes; i++) {
      started = now();
      lost += (await registry.refresh(held, listing)).length;
      warmMs.push(now() - started);
    }
    const stats = String(await command(["INFO", "commandstats"]));
    const log = await command(["SLOWLOG", "GET", "-1"]) as unknown[];
    await command(["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    // The shared resume tokens' refresh, which the gateway runs after this one: one token
    // per agent (the first refresh creates them all).
    const tokens = new RedisResumeTokens(client as unknown as RedisLike, {
      prefix: "bench-refresh:",
      ttl: 15_000,
      window: 30_000,
    });
    for (const agent of held) tokens.issued(agent.id, ulid(), { name: agent.name }, 64);
    started = now();
    await tokens.refresh();
    const tokensColdMs = now() - started;
    const tokensWarmMs: number[] = [];
    for (let i = 0; i < refreshes; i++) {
      started = now();
      await tokens.refresh();
      tokensWarmMs.push(now() - started);
    }
    const evalLine = /cmdstat_eval:calls=(\d+),usec=(\d+)/.exec(stats);
    const evalCalls = evalLine ? Number(evalLine[1]) : NaN;
    const evalUsec = evalLine ? Number(evalLine[2]) : NaN;
    // [id, time, µs, argv, …], newest first: put them in the order they ran.
    const evals = log.filter((entry): entry is unknown[] =>
      Array.isArray(entry) && Array.isArray(entry[3]) &&
      String((entry[3] as unknown[])[0]).toUpperCase() === "EVAL"
    ).sort((x, y) => Number(x[0]) - Number(y[0]));
    const scripts = evals.map((entry) => Number(entry[2]) / 1000);
    // With every script logged, each refresh's first (the one that also SETs the listing) is
    // every `batches`-th.
    const batches = Math.max(1, Math.ceil(agents / REFRESH_BATCH));
    const complete = scripts.length === evalCalls && scripts.length === refreshes * batches;
    const firstBatches = complete ? scripts.filter((_, i) => i % batches === 0) : [];
    const otherBatches = complete ? scripts.filter((_, i) => i % batches !== 0) : [];
    return {
      runtime: RUNTIME,
      agents,
      refreshes,
      listingBytes: new TextEncoder().encode(json).byteLength,
      stringifyMs,
      coldMs,
      warmMs,
      medianMs: median(warmMs),
      evalCalls,
      evalUsec,
      redisMsPerRefresh: evalUsec / 1000 / refreshes,
      longestScriptMs: scripts.length ? Math.max(...scripts) : NaN,
      medianScriptMs: median(scripts),
      longestFirstBatchMs: firstBatches.length ? Math.max(...firstBatches) : NaN,
      longestOtherBatchMs: otherBatches.length ? Math.max(...otherBatches) : NaN,
      medianOtherBatchMs: median(otherBatches),
      scriptsLogged: scripts.length,
      lost,
      redisMemoryBytes: memoryAfter - memoryBefore,
      tokensColdMs,
      tokensMedianMs: median(tokensWarmMs),
    };
  } finally {
    client.destroy();
  }
}

function usedMemory(info: string): number {
  const match = /used_memory:(\d+)/.exec(info);
  return match ? Number(match[1]) : NaN;
}

// ---- report -----------------------------------------------------------------------------------

function progress(text: string): void {
  console.error(`[bench:cluster] ${text}`);
}

function reportHop(hop: HopResult): string {
  const names = Object.keys(hop.local.cpu);
  const row = (path: Path, s: PathSummary) => [
    hop.runtime,
    path,
    ms(s.p50),
    ms(s.p99),
    s.rps.toFixed(0),
    names.map((name) => Number.isFinite(s.cpu[name]) ? s.cpu[name].toFixed(0) : "–").join(" / "),
    Number.isFinite(s.busy) ? s.busy.toFixed(2) : "–",
  ];
  const latencyMet = hop.p50Added <= 0.5;
  const throughputMet = hop.perInstanceRatio >= 0.8;
  return [
    `Gateways and agent on ${hop.runtime}, caller on ${hop.callerRuntime}; ${hop.rounds.length} ` +
    `rounds of ${hop.durationMs} ms per phase, medians over rounds; throughput with ` +
    `${hop.callers} concurrent callers.`,
    "",
    table([
      "gateways",
      "path",
      "p50 ms",
      "p99 ms",
      `req/s (${hop.callers} callers)`,
      `CPU µs/req under load (${names.join(" / ")})`,
      "CPUs busy",
    ], [
      row("local", hop.local),
      row("forwarded", hop.forwarded),
    ]),
    "",
    `- hop adds ${ms(hop.p50Added)} ms at p50 (${ms(hop.p99Added)} ms at p99), per-round ` +
    `differences ${
      hop.rounds.map((r) => ms(r.latency.forwarded.p50 - r.latency.local.p50))
        .join(", ")
    }: target ≤ 0.5 ms ${latencyMet ? "MET" : "NOT MET"}`,
    `- forwarded throughput per instance ${hop.perInstanceRatio.toFixed(2)}× local (a local ` +
    `request's ${hop.local.cpu.A?.toFixed(0)} µs in A against a forwarded one's ` +
    `${Math.max(hop.forwarded.cpu.A, hop.forwarded.cpu.B).toFixed(0)} in the busier of A ` +
    `and B), per round ${hop.rounds.map((r) => perInstance(r).toFixed(2)).join(", ")}: ` +
    `target ≥ 0.8× ${throughputMet ? "MET" : "NOT MET"}`,
    `- on this machine, where every process shares its CPUs: forwarded throughput ` +
    `${hop.throughputRatio.toFixed(2)}× local, per round ${
      hop.rounds.map((r) => (r.throughput.forwarded.rps / r.throughput.local.rps).toFixed(2))
        .join(", ")
    }`,
    `- failed requests: ${hop.errors}`,
  ].join("\n");
}

function reportRefresh(refresh: RefreshResult): string {
  return [
    `ClusterRegistry.refresh() of ${refresh.agents} agents from ${refresh.runtime}, ` +
    `${refresh.refreshes} warm refreshes (after one cold one), listing ` +
    `${(refresh.listingBytes / 1024).toFixed(0)} KiB of JSON.`,
    "",
    table(
      [
        "agents",
        "cold ms",
        "warm ms (median)",
        "warm ms (min–max)",
        "Redis EVAL ms per refresh",
        "longest script ms",
        "longest first script ms",
        "other scripts ms (median, max)",
      ],
      [[
        String(refresh.agents),
        ms(refresh.coldMs),
        ms(refresh.medianMs),
        `${ms(Math.min(...refresh.warmMs))}–${ms(Math.max(...refresh.warmMs))}`,
        ms(refresh.redisMsPerRefresh),
        ms(refresh.longestScriptMs),
        ms(refresh.longestFirstBatchMs),
        `${ms(refresh.medianOtherBatchMs)}, ${ms(refresh.longestOtherBatchMs)}`,
      ]],
    ),
    "",
    `- A refresh runs one script per ${REFRESH_BATCH} agents; its first also writes the ` +
    `listing. ${refresh.evalCalls} EVAL calls for ${refresh.refreshes} refreshes ` +
    `(${refresh.scriptsLogged} of them over SLOWLOG's ${
      SLOWLOG_THRESHOLD_US / 1000
    } ms); JSON.stringify of the listing ` +
    `${ms(refresh.stringifyMs)} ms; Redis memory for the records +` +
    `${(refresh.redisMemoryBytes / 1024 / 1024).toFixed(1)} MiB; lost: ${refresh.lost}`,
    `- The shared resume tokens' refresh (RedisResumeTokens.refresh(), one token per agent, ` +
    `run after the registry's): ${ms(refresh.tokensColdMs)} ms the first time (creating them), ` +
    `${ms(refresh.tokensMedianMs)} ms warm (median; not in the EVAL figures above).`,
  ].join("\n");
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const runtime = (args.get("runtime") ?? "deno") as Runtime;
  if (runtime !== "deno" && runtime !== "bun") {
    throw new TypeError(`Bad option: --runtime ${runtime} (deno or bun)`);
  }
  const duration = numberArg(args, "duration", smoke ? 500 : 3000);
  const rounds = Math.max(1, Math.round(numberArg(args, "rounds", smoke ? 2 : 5)));
  const warmup = numberArg(args, "warmup", smoke ? 300 : 2000);
  const callers = Math.max(1, Math.round(numberArg(args, "callers", 32)));
  const agents = Math.round(numberArg(args, "agents", 10_000));
  const refreshes = Math.max(1, Math.round(numberArg(args, "refreshes", smoke ? 3 : 10)));
  const parts = (args.get("parts") ?? "hop,refresh").split(",");
  profileDir = newProfileDir(args.get("profile"));
  const planned = parts.includes("hop") ? rounds * 4 * duration + 2 * warmup : 0;
  const bound = numberArg(args, "max-seconds", (planned + 90_000) / 1000) * 1000;

  const timer = setTimeout(() => {
    console.error(`[bench:cluster] watchdog fired after ${bound} ms; killing everything`);
    cleanUp();
    process.exit(3);
  }, bound);
  (timer as { unref?: () => void }).unref?.();

  if (args.has("spin")) {
    // As bench/main.ts's --spin: one nice-19 busy loop per CPU keeps the vCPUs awake, so that
    // one-at-a-time latency measures the code rather than the hypervisor's wake-ups.
    const loop = `const end = Date.now() + ${bound}; while (Date.now() < end);`;
    for (const _ of cpus()) launch("spinner", "nice", ["-n", "19", DENO, "eval", loop]);
  }
  tempDir = mkdtempSync(join(tmpdir(), "ss-bench-cluster-"));
  const redis = await startRedis(tempDir);
  const version = (await new Promise<string>((resolve) => {
    const probe = spawn(REDIS_SERVER, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    probe.stdout!.on("data", (chunk: Uint8Array) => out += new TextDecoder().decode(chunk));
    probe.on("close", () => resolve(out.trim()));
  })).replace(/^Redis server v=(\S+).*$/s, "$1");
  const git = (argv: string[]) =>
    spawnSync("git", argv, { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
  const commit = `${git(["rev-parse", "--short", "HEAD"]) || "?"}${
    git(["status", "--porcelain", "--untracked-files=no"]) ? " + uncommitted changes" : ""
  }`;
  const machine = `commit ${commit}; ${cpus().length} × ${cpus()[0]?.model ?? "?"}, load average ` +
    `${loadavg().map((l) => l.toFixed(2)).join(" ")} at the start, redis-server ${version}` +
    (args.has("spin") ? ", --spin" : "");
  progress(machine);

  let hop: HopResult | undefined;
  let refresh: RefreshResult | undefined;
  let failed = false;
  try {
    if (parts.includes("hop")) {
      hop = await runHop(redis, runtime, { duration, rounds, warmup, callers, bound });
    }
    if (parts.includes("refresh")) {
      refresh = await runRefresh(redis.socket, agents, refreshes, hop?.listed);
    }
  } catch (error) {
    failed = true;
    console.error(`[bench:cluster] failed: ${(error as Error).stack ?? error}`);
  } finally {
    await stopChild(redis.child, "SIGTERM", 3_000);
    cleanUp();
  }

  console.log(`\n## Cluster\n\n${machine}\n`);
  if (hop) console.log(reportHop(hop) + "\n");
  if (refresh) console.log(reportRefresh(refresh) + "\n");
  if (hop && profileDir) {
    console.log(`## Profiles (${profileDir})\n\n${summarizeProfiles(profileDir)}`);
  }
  const failure = takeFirstError();
  if (failure) console.log(`First failure: ${failure}\n`);
  const result = { machine, hop: hop && { ...hop, listed: undefined }, refresh };
  printResult(result);
  const jsonFile = args.get("json");
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify(result, null, 2));
  return failed || (hop?.errors ?? 0) > 0 ? 1 : 0;
}

if (args.get("role") === "agent") {
  await runAgent();
} else {
  process.on("exit", cleanUp);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      cleanUp();
      process.exit(130);
    });
  }
  process.exit(await main());
}
