/**
 * The benchmark suite: every scenario side by side with its baselines, in one run.
 *
 * ```
 * deno task bench                          # everything: 3 runs, 1 s warm-up + 5 s each (~20 min)
 * deno task bench --smoke                  # every scenario for 0.2 s on tiny sizes (CI)
 * deno run -A bench/main.ts --pairs deno-deno --scenarios exchange,concurrent --runs 1
 * bun bench/main.ts --pairs bun-bun        # the orchestrator runs under Bun as well
 * ```
 *
 * Clients and servers are separate processes (`bench/client.ts`, `bench/server.ts`, and
 * Socket.IO: on Node at 64 in flight, in the pair's runtimes one at a time) on loopback;
 * each prints a ready line with its port.
 * Options: `--runs N` (medians of N runs), `--warmup MS`, `--duration MS`, `--pairs`
 * (`deno-deno,bun-bun,deno-bun`: server runtime, then client runtime), `--scenarios`
 * (`exchange,concurrent,large,nagle,idle,slow`), `--markdown FILE` (write the tables),
 * `--json FILE` (raw results), `--profile DIR` (CPU profiles of every bench process),
 * `--spin` (keep every CPU busy at the lowest priority: see `startSpinners`), `--pin` (servers
 * on the first CPU, clients on the last: see `pinned`).
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import process from "node:process";
import { median, now, parseArgs, Proc, RUNTIME, sleep } from "./_common.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/.bin/deno`;
const BUN = `${ROOT}node_modules/.bin/bun`;
const args = parseArgs(process.argv.slice(2));
const smoke = args.has("smoke");
const runs = Number(args.get("runs") ?? (smoke ? 1 : 3));
const warmup = Number(args.get("warmup") ?? (smoke ? 100 : 1000));
const duration = Number(args.get("duration") ?? (smoke ? 200 : 5000));
const profileDir = args.get("profile");
const LARGE_BYTES = smoke ? 1024 * 1024 : 64 * 1024 * 1024;
const IDLE_COUNTS = smoke ? [10, 30] : [1000, 5000];
const IDLE_PER_PROCESS = smoke ? 15 : 500;
/** Idle connections opened before reading (a)'s base and kept open (see `runIdle`). */
const IDLE_WARMUP = smoke ? 5 : 200;
const SLOW_BYTES = smoke ? 4 * 1024 * 1024 : 1024 * 1024 * 1024;
const SLOW_RATE = smoke ? 40e6 : 10e6;
const SETTLE_MS = smoke ? 200 : 2000;
/** The whole run's bound: a hang fails the run instead of stalling it. */
const RUN_BOUND_MS = Number(args.get("max-minutes") ?? (smoke ? 3 : 60)) * 60_000;

type Runtime = "deno" | "bun";
interface Pair {
  key: string;
  name: string;
  server: Runtime;
  client: Runtime;
}
const ALL_PAIRS: Pair[] = [
  { key: "deno-deno", name: "Deno ↔ Deno", server: "deno", client: "deno" },
  { key: "bun-bun", name: "Bun ↔ Bun", server: "bun", client: "bun" },
  { key: "deno-bun", name: "Deno server ↔ Bun agent", server: "deno", client: "bun" },
];
const ALL_SCENARIOS = ["exchange", "concurrent", "large", "nagle", "idle", "slow"];
const pairs = ALL_PAIRS.filter((p) =>
  (args.get("pairs") ?? ALL_PAIRS.map((q) => q.key).join(",")).split(",").includes(p.key)
);
const scenarios = (args.get("scenarios") ?? ALL_SCENARIOS.join(",")).split(",");
const want = (scenario: string): boolean => scenarios.includes(scenario);

// ---- processes --------------------------------------------------------------

const live = new Set<Proc>();

/**
 * `--spin`: one busy loop per CPU at the lowest priority (nice 19), for the whole run.
 *
 * On a virtual machine a vCPU that idles longer than the hypervisor polls for it is
 * descheduled, and waking it takes hundreds of microseconds. A ping-pong pays that on the
 * round trips where a side waits long enough: the raw echo rarely, swaggersocket and the
 * floor often, and how often drifts with the host's load, so one-at-a-time figures swing
 * 2× from run to run. With the vCPUs kept busy, the benchmark's processes preempt the loops
 * at once and the figures measure the code. For A/B comparisons; the default run measures
 * the machine as it is. Each loop also ends by itself when the run's bound is up.
 */
function startSpinners(): ChildProcess[] {
  const loop = `const end = Date.now() + ${RUN_BOUND_MS}; while (Date.now() < end);`;
  return cpus().map(() => spawn("nice", ["-n", "19", DENO, "eval", loop], { stdio: "ignore" }));
}
const spinners = args.has("spin") ? startSpinners() : [];
const stopSpinners = (): void => {
  for (const spinner of spinners) spinner.kill("SIGKILL");
};

/**
 * `--pin`: a server runs on the first CPU and a client on the last (`taskset`, util-linux).
 *
 * Left to the scheduler, the two ends of a large transfer sometimes share a CPU and
 * sometimes not, and on this VM the same 64 MiB transfer then reads anywhere from 750 to
 * 3,700 MB/s. Pinned, most cells' runs stay within about 25 % of each other (bench/RESULTS.md,
 * session 6). For A/B comparisons of throughput, like `--spin` for one-at-a-time latency.
 */
function pinned(script: string, command: string, argv: string[]): [string, string[]] {
  if (!args.has("pin")) return [command, argv];
  const cpu = script.includes("server") ? 0 : cpus().length - 1;
  return ["taskset", ["-c", String(cpu), command, ...argv]];
}

function start(runtime: Runtime | "node", script: string, argv: string[]): Proc {
  const label = `${runtime} ${script} ${argv.join(" ")}`;
  const prof = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  const [command, commandArgs] = runtime === "deno"
    ? [DENO, ["run", "-A", "--v8-flags=--expose-gc", ...prof, script, ...argv]]
    : runtime === "bun"
    ? [BUN, [...prof, script, ...argv]]
    : [process.env.NODE ?? "node", [script, ...argv]];
  const proc = new Proc(label, ...pinned(script, command, commandArgs));
  live.add(proc);
  proc.exited.then(() => live.delete(proc));
  return proc;
}

async function startServer(
  runtime: Runtime | "node",
  kind: string,
): Promise<Proc & { port: number }> {
  const proc = kind === "socketio"
    ? start(runtime, "bench/socketio_server.mjs", [])
    : start(runtime, "bench/server.ts", ["--kind", kind]);
  const port = Number(await proc.line("READY", 30_000));
  return Object.assign(proc, { port });
}

async function rssOf(server: Proc): Promise<{ rss: number; connections: number }> {
  server.send("rss");
  const [rss, connections] = (await server.line("RSS", 30_000)).split(" ").map(Number);
  return { rss, connections };
}

/** Runs one client to its result. */
async function client(
  runtime: Runtime | "node",
  port: number,
  kind: string,
  scenario: string,
  extra: string[] = [],
): Promise<Record<string, number>> {
  const common = [
    "--port",
    String(port),
    "--warmup",
    String(warmup),
    "--duration",
    String(duration),
  ];
  const proc = kind === "socketio"
    ? start(runtime, "bench/socketio_client.mjs", [...common, ...extra])
    : start(runtime, "bench/client.ts", [
      "--kind",
      kind,
      "--scenario",
      scenario,
      ...common,
      ...extra,
    ]);
  try {
    const bound = scenario === "slow" ? 600_000 : scenario === "large" ? 300_000 : 60_000;
    return JSON.parse(await proc.line("RESULT", bound + warmup + duration));
  } finally {
    await proc.stop();
  }
}

// ---- results ----------------------------------------------------------------

/** results[pair key][metric] = one value per run. */
const results: Record<string, Record<string, number[]>> = {};
function record(pair: string, metric: string, value: number): void {
  ((results[pair] ??= {})[metric] ??= []).push(value);
  if (!smoke) console.error(`  ${pair} ${metric} = ${round(value)}`);
}
function value(pair: string, metric: string): number {
  return median(results[pair]?.[metric] ?? []);
}
/**
 * `a / b` for each run, both measured back to back in that run: on a machine whose speed drifts
 * between runs, their spread says more than the ratio of the two medians alone.
 */
function ratiosPerRun(pairA: string, metricA: string, pairB: string, metricB: string): string {
  const a = results[pairA]?.[metricA] ?? [];
  const b = results[pairB]?.[metricB] ?? [];
  const n = Math.min(a.length, b.length);
  if (n < 2) return "–";
  return Array.from({ length: n }, (_, i) => (a[i] / b[i]).toFixed(2)).join(", ");
}
function round(n: number): string {
  if (!Number.isFinite(n)) return "–";
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString("en-US");
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

// ---- scenarios --------------------------------------------------------------

async function runRepeated(run: number): Promise<void> {
  if (want("concurrent")) {
    const sio = await startServer("node", "socketio");
    try {
      const r = await client("node", sio.port, "socketio", "exchange", ["--concurrency", "64"]);
      record("node", "concurrent.socketio.rate", r.rate);
      record("node", "concurrent.socketio.p50", r.p50);
    } finally {
      await sio.stop();
    }
  }
  for (const pair of pairs) {
    console.error(`run ${run + 1}/${runs}: ${pair.name}`);
    const servers: Record<string, Proc & { port: number }> = {};
    const needs = [
      want("exchange") || want("concurrent") || want("large") || want("nagle") ? ["ss", "ws"] : [],
      want("exchange") || want("concurrent") ? ["web", "http"] : [],
      want("exchange") ? ["socketio"] : [],
    ].flat();
    try {
      for (const kind of needs) servers[kind] = await startServer(pair.server, kind);
      const run = (kind: string, scenario: string, extra: string[] = []) =>
        client(pair.client, servers[kind].port, kind, scenario, extra);
      if (want("exchange")) {
        for (const kind of ["ss", "ws", "web", "http", "socketio"]) {
          const r = await run(kind, "exchange", ["--concurrency", "1"]);
          record(pair.key, `exchange.${kind}.rate`, r.rate);
          record(pair.key, `exchange.${kind}.p50`, r.p50);
          record(pair.key, `exchange.${kind}.p99`, r.p99);
        }
      }
      if (want("concurrent")) {
        for (const kind of ["ss", "ws", "web", "http"]) {
          const r = await run(kind, "exchange", ["--concurrency", "64"]);
          record(pair.key, `concurrent.${kind}.rate`, r.rate);
          record(pair.key, `concurrent.${kind}.p50`, r.p50);
          record(pair.key, `concurrent.${kind}.p99`, r.p99);
        }
      }
      if (want("large")) {
        for (const kind of ["ss", "ws"]) {
          const r = await run(kind, "large", ["--size", String(LARGE_BYTES)]);
          record(pair.key, `large.${kind}.up`, r.up);
          record(pair.key, `large.${kind}.down`, r.down);
        }
      }
      if (want("nagle")) {
        for (const kind of ["ss", "ws"]) {
          const r = await run(kind, "nagle");
          record(pair.key, `nagle.${kind}.p50`, r.p50);
          record(pair.key, `nagle.${kind}.p99`, r.p99);
        }
      }
    } finally {
      await Promise.all(Object.values(servers).map((server) => server.stop()));
    }
  }
}

/** What `bench/server.ts` answers to `mem`: bytes after an ordinary full GC. */
interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Deno only: V8's young and old generations (see `bench/server.ts`). */
  newSpace?: number;
  oldSpace?: number;
  connections: number;
}

async function memoryOf(server: Proc): Promise<Memory> {
  server.send("mem");
  return JSON.parse(await server.line("MEM", 30_000));
}

/** The figures of issue 23's idle reading (b), per connection. */
const IDLE_MEMORY = ["rss", "heapUsed", "heapTotal", "external", "newSpace", "oldSpace"] as const;

/**
 * Opens idle connections to a new `kind` server of `pair`: `warm` connections first, which
 * stay open and are not counted, then `IDLE_COUNTS` more by steps. `read` takes the base
 * reading once the warm ones are open (or, with none, before any connection is) and one
 * reading at each count; `measured` gets each of those with the base.
 */
async function openIdle<R extends { connections: number }>(
  pair: Pair,
  kind: string,
  warm: number,
  read: (server: Proc) => Promise<R>,
  measured: (count: number, reading: R, base: R) => void,
): Promise<void> {
  const server = await startServer(pair.server, kind);
  const clients: Proc[] = [];
  const idleClient = (n: number): Proc =>
    start(pair.client, "bench/client.ts", [
      "--kind",
      kind,
      "--scenario",
      "idle",
      "--port",
      String(server.port),
      "--count",
      String(n),
    ]);
  try {
    if (warm > 0) {
      const proc = idleClient(warm);
      clients.push(proc);
      await proc.line("OPEN", 120_000);
    }
    await sleep(SETTLE_MS);
    const base = await read(server);
    let open = 0;
    for (const count of IDLE_COUNTS) {
      const starting: Promise<string>[] = [];
      while (open < count) {
        const n = Math.min(IDLE_PER_PROCESS, count - open);
        const proc = idleClient(n);
        clients.push(proc);
        starting.push(proc.line("OPEN", 120_000));
        open += n;
      }
      await Promise.all(starting);
      await sleep(SETTLE_MS);
      const reading = await read(server);
      if (reading.connections !== warm + count) {
        throw new Error(
          `Idle ${kind}: ${reading.connections} connections, expected ${warm + count}`,
        );
      }
      measured(count, reading, base);
    }
  } finally {
    await Promise.all(clients.map((proc) => proc.stop()));
    await server.stop();
  }
}

/**
 * Server memory per idle connection, ss and raw, read two ways, each on its own server:
 *
 * (a) RSS after `collectGarbage` (on V8 the memory-reducing GC), the base taken with
 * `IDLE_WARMUP` connections already open and the counts opened on top of them. One-time
 * costs (compiling the accept path, allocator and heap growth) are then not counted per
 * connection. (Closing the warm connections instead would not do: Deno keeps a closed socket,
 * and what its listeners reach, for some seconds.)
 *
 * (b) issue 23's, the way a user's monitoring sees it: the base read before any connection
 * is open, and every reading after an ordinary full GC (`gc()` on Deno, `Bun.gc(true)` on
 * Bun), which leaves the heap as large as the handshakes grew it; RSS, and the runtime's
 * heap and external figures (`bench/server.ts`'s `mem`).
 */
async function runIdle(pair: Pair): Promise<void> {
  for (const kind of ["ss", "ws"]) {
    await openIdle(pair, kind, IDLE_WARMUP, async (server) => {
      await rssOf(server);
      return await rssOf(server);
    }, (count, reading, base) => {
      record(pair.key, `idle.${kind}.${count}`, (reading.rss - base.rss) / count / 1024);
    });
    await openIdle(pair, kind, 0, memoryOf, (count, reading, base) => {
      for (const figure of IDLE_MEMORY) {
        record(
          pair.key,
          `idle.issue23.${kind}.${figure}.${count}`,
          ((reading[figure] ?? NaN) - (base[figure] ?? NaN)) / count / 1024,
        );
      }
    });
  }
}

async function runSlow(pair: Pair): Promise<void> {
  const server = await startServer(pair.server, "ss");
  let reader: Proc | undefined;
  try {
    await rssOf(server);
    const base = (await rssOf(server)).rss;
    let peak = base;
    reader = start(pair.client, "bench/client.ts", [
      "--kind",
      "ss",
      "--scenario",
      "slow",
      "--port",
      String(server.port),
      "--size",
      String(SLOW_BYTES),
      "--rate",
      String(SLOW_RATE),
    ]);
    const result = reader.line("RESULT", 600_000);
    let done = false;
    result.finally(() => done = true).catch(() => {});
    while (!done) {
      await Promise.race([result.catch(() => {}), sleep(smoke ? 50 : 1000)]);
      if (done) break;
      server.send("rssnow");
      peak = Math.max(peak, Number((await server.line("RSS", 10_000)).split(" ")[0]));
    }
    const r = JSON.parse(await result);
    record(pair.key, "slow.rate", r.rate);
    record(pair.key, "slow.client", r.growth / 1024 / 1024);
    record(pair.key, "slow.server", (peak - base) / 1024 / 1024);
  } finally {
    await reader?.stop();
    await server.stop();
  }
}

// ---- report -----------------------------------------------------------------

function machine(): string[] {
  const version = (command: string, flag = "--version"): string =>
    spawnSync(command, [flag], { encoding: "utf8" }).stdout?.split("\n")[0]?.trim() ?? "?";
  const cpuList = cpus();
  const os = existsSync("/etc/os-release")
    ? readFileSync("/etc/os-release", "utf8").match(/PRETTY_NAME="([^"]*)"/)?.[1] ?? "Linux"
    : process.platform;
  const fdLimit = spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim();
  return [
    `${cpuList.length} × ${cpuList[0]?.model ?? "?"}, ${
      Math.round(totalmem() / 2 ** 30)
    } GiB RAM, ${os}`,
    `${version(DENO)}, Bun ${version(BUN)}, Node ${version(process.env.NODE ?? "node")}, ` +
    `socket.io ${packageVersion("socket.io")}; orchestrator on ${RUNTIME}; ulimit -n ${fdLimit}`,
    ...(args.has("pin") ? ["servers pinned to the first CPU, clients to the last (`--pin`)"] : []),
    ...(spinners.length > 0
      ? [`${spinners.length} busy loops at nice 19 kept every CPU awake (\`--spin\`)`]
      : []),
  ];
}

function packageVersion(name: string): string {
  try {
    return JSON.parse(readFileSync(`${ROOT}node_modules/${name}/package.json`, "utf8")).version;
  } catch {
    return "?";
  }
}

function verdict(ok: boolean): string {
  return ok ? "**met**" : "not met";
}

function report(command: string, seconds: number): string {
  const out: string[] = [];
  out.push(
    `Command: \`${command}\` (${runs} run${runs === 1 ? "" : "s"}, medians; ` +
      `${warmup / 1000} s warm-up + ${duration / 1000} s measured per scenario; took ${
        Math.round(seconds)
      } s)`,
  );
  out.push("");
  for (const line of machine()) out.push(`- ${line}`);
  out.push("");
  const header = (...cells: string[]): void => {
    out.push(`| ${cells.join(" | ")} |`);
    out.push(`|${cells.map(() => "---").join("|")}|`);
  };
  if (want("exchange")) {
    out.push(
      "**1. Small exchange (100 B each way), one at a time** — exchanges/s (p50 / p99 ms); " +
        "every baseline in the pair's runtimes",
    );
    out.push("");
    header(
      "pair",
      "swaggersocket",
      "own fetch → own server",
      "÷ fetch (per run)",
      "≥ 1.5×",
      "Socket.IO acks",
      "÷ Socket.IO (per run)",
      "≥ 1.0×",
      "raw WS echo",
      "÷ raw (per run)",
      "moonshot 0.8×",
      "floor: web objects, no protocol",
      "floor ÷ raw",
    );
    const rate = (key: string, kind: string): string =>
      `${round(value(key, `exchange.${kind}.rate`))} (${
        round(value(key, `exchange.${kind}.p50`))
      } / ${round(value(key, `exchange.${kind}.p99`))})`;
    const against = (key: string, kind: string): string => {
      const ratio = value(key, "exchange.ss.rate") / value(key, `exchange.${kind}.rate`);
      return `${ratio.toFixed(2)}× (${
        ratiosPerRun(key, "exchange.ss.rate", key, `exchange.${kind}.rate`)
      })`;
    };
    for (const p of pairs) {
      const ss = value(p.key, "exchange.ss.rate");
      const met = (kind: string, target: number): string =>
        verdict(ss >= target * value(p.key, `exchange.${kind}.rate`));
      const web = value(p.key, "exchange.web.rate");
      const ws = value(p.key, "exchange.ws.rate");
      out.push(
        `| ${p.name} | ${rate(p.key, "ss")} | ${rate(p.key, "http")} | ${
          against(p.key, "http")
        } | ${met("http", 1.5)} | ${rate(p.key, "socketio")} | ${against(p.key, "socketio")} | ${
          met("socketio", 1.0)
        } | ${rate(p.key, "ws")} | ${against(p.key, "ws")} | ${met("ws", 0.8)} | ${round(web)} | ${
          (web / ws).toFixed(2)
        }× |`,
      );
    }
    out.push("");
  }
  if (want("concurrent")) {
    const sio = value("node", "concurrent.socketio.rate");
    out.push("**2. Small exchange, 64 in flight** — exchanges/s (p50 ms)");
    out.push("");
    header(
      "pair",
      "swaggersocket",
      "raw WS pipelined",
      "own fetch → own server",
      "Socket.IO acks (Node)",
      "vs fetch (≥ 1.5×)",
      "per run",
      "vs Socket.IO (≥ 1.0×)",
      "per run",
      "floor: web objects, no protocol",
      "floor vs fetch, vs Socket.IO",
      "ss ÷ floor (per run)",
    );
    for (const p of pairs) {
      const ss = value(p.key, "concurrent.ss.rate");
      const http = value(p.key, "concurrent.http.rate");
      const web = value(p.key, "concurrent.web.rate");
      out.push(
        `| ${p.name} | ${round(ss)} (${round(value(p.key, "concurrent.ss.p50"))}) | ${
          round(value(p.key, "concurrent.ws.rate"))
        } | ${round(http)} (${round(value(p.key, "concurrent.http.p50"))}) | ${round(sio)} (${
          round(value("node", "concurrent.socketio.p50"))
        }) | ${(ss / http).toFixed(2)}× ${verdict(ss >= 1.5 * http)} | ${
          ratiosPerRun(p.key, "concurrent.ss.rate", p.key, "concurrent.http.rate")
        } | ${(ss / sio).toFixed(2)}× ${verdict(ss >= sio)} | ${
          ratiosPerRun(p.key, "concurrent.ss.rate", "node", "concurrent.socketio.rate")
        } | ${round(web)} (${round(value(p.key, "concurrent.web.p50"))}) | ${
          (web / http).toFixed(2)
        }×, ${(web / sio).toFixed(2)}× | ${(ss / web).toFixed(2)}× (${
          ratiosPerRun(p.key, "concurrent.ss.rate", p.key, "concurrent.web.rate")
        }) |`,
      );
    }
    out.push("");
  }
  if (want("large")) {
    out.push(
      `**3. Large bodies (${
        LARGE_BYTES / 2 ** 20
      } MiB streamed each way)** — MB/s, vs raw WS 1 MiB binary messages`,
    );
    out.push("");
    header(
      "pair",
      "ss up",
      "raw up",
      "ratio (per run)",
      "ss down",
      "raw down",
      "ratio (per run)",
      "target ≥ 0.8×",
    );
    for (const p of pairs) {
      const up = value(p.key, "large.ss.up") / value(p.key, "large.ws.up");
      const down = value(p.key, "large.ss.down") / value(p.key, "large.ws.down");
      out.push(
        `| ${p.name} | ${round(value(p.key, "large.ss.up"))} | ${
          round(value(p.key, "large.ws.up"))
        } | ${up.toFixed(2)}× (${ratiosPerRun(p.key, "large.ss.up", p.key, "large.ws.up")}) | ${
          round(value(p.key, "large.ss.down"))
        } | ${round(value(p.key, "large.ws.down"))} | ${down.toFixed(2)}× (${
          ratiosPerRun(p.key, "large.ss.down", p.key, "large.ws.down")
        }) | ${verdict(up >= 0.8 && down >= 0.8)} |`,
      );
    }
    out.push("");
  }
  if (want("nagle")) {
    out.push(
      "**4. Nagle case: exchange B sent one macrotask after A while the server holds A** — latency of B, ms",
    );
    out.push("");
    header(
      "pair",
      "swaggersocket p50 / p99",
      "raw WS, naive pattern p50 / p99",
      "target p50 ≤ 1 ms",
    );
    for (const p of pairs) {
      const p50 = value(p.key, "nagle.ss.p50");
      out.push(
        `| ${p.name} | ${round(p50)} / ${round(value(p.key, "nagle.ss.p99"))} | ${
          round(value(p.key, "nagle.ws.p50"))
        } / ${round(value(p.key, "nagle.ws.p99"))} | ${verdict(p50 <= 1)} |`,
      );
    }
    out.push("");
  }
  if (want("idle")) {
    const [a, b] = IDLE_COUNTS;
    out.push(
      `**5a. Idle connections** — server memory per connection, KiB (one run), swaggersocket ` +
        `against the raw WebSocket echo. (a) RSS, the counts opened on top of ${IDLE_WARMUP} ` +
        "open connections, memory-reducing GC before each reading. (b) issue 23's reading: the " +
        "base read before any connection is open, an ordinary full GC (`gc()` on Deno, " +
        "`Bun.gc(true)` on Bun) before each reading; RSS, then the heap (`heapUsed`, " +
        "`heapTotal`; on Bun JavaScriptCore's `heapSize` and `heapCapacity`), `external` and, on a " +
        "Deno server, V8's young and old generations (`newSpace`, which a GC empties and does not " +
        "shrink, and `oldSpace`). " +
        "The target is judged on each reading's RSS; issue 23's is (b).",
    );
    out.push("");
    header(
      "pair",
      "reading",
      `ss @ ${a}`,
      `raw @ ${a}`,
      "ss − raw",
      `ss @ ${b}`,
      `raw @ ${b}`,
      "ss − raw",
      "target ≤ raw + 8 KiB",
    );
    const signed = (n: number): string => (n >= 0 ? "+" : "") + round(n);
    for (const p of pairs) {
      type Row = [label: string, metric: (kind: string, count: number) => string, judged: boolean];
      const rows: Row[] = [
        ["(a) RSS", (kind, count) => `idle.${kind}.${count}`, true],
        ...IDLE_MEMORY.map((figure): Row => [
          `(b) ${figure === "rss" ? "RSS" : figure}`,
          (kind, count) => `idle.issue23.${kind}.${figure}.${count}`,
          figure === "rss",
        ]),
      ];
      const at = (metric: Row[1], kind: string, count: number): number =>
        value(p.key, metric(kind, count));
      // V8's spaces are read on a Deno server only.
      const shown = rows.filter(([, metric]) => !Number.isNaN(at(metric, "ss", a)));
      shown.forEach(([label, metric, judged], i) => {
        const cells = [a, b].flatMap((count) => {
          const ss = at(metric, "ss", count);
          const ws = at(metric, "ws", count);
          return [round(ss), round(ws), signed(ss - ws)];
        });
        const met = [a, b].every((count) => at(metric, "ss", count) <= at(metric, "ws", count) + 8);
        out.push(
          `| ${i === 0 ? p.name : ""} | ${label} | ${cells.join(" | ")} | ${
            judged ? verdict(met) : "–"
          } |`,
        );
      });
    }
    out.push("");
  }
  if (want("slow")) {
    out.push(
      `**5b. Slow reader: ${SLOW_BYTES / 2 ** 20} MiB response read at ${
        SLOW_RATE / 1e6
      } MB/s** — peak RSS growth, MiB (one run)`,
    );
    out.push("");
    header("pair", "achieved MB/s", "server growth", "client growth", "target ≤ 32 MiB each");
    for (const p of pairs) {
      const server = value(p.key, "slow.server");
      const client = value(p.key, "slow.client");
      out.push(
        `| ${p.name} | ${round(value(p.key, "slow.rate"))} | ${round(server)} | ${
          round(client)
        } | ${verdict(server <= 32 && client <= 32)} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}

// ---- main -------------------------------------------------------------------

const bound = setTimeout(() => {
  console.error(`bench: run exceeded ${RUN_BOUND_MS / 60_000} min; stopping`);
  for (const proc of live) proc.child.kill("SIGKILL");
  stopSpinners();
  process.exit(2);
}, RUN_BOUND_MS);
const started = now();
let failed = false;
try {
  for (let run = 0; run < runs; run++) await runRepeated(run);
  for (const pair of pairs) {
    if (want("idle")) {
      console.error(`idle connections: ${pair.name}`);
      await runIdle(pair);
    }
  }
  for (const pair of pairs) {
    if (want("slow")) {
      console.error(`slow reader: ${pair.name}`);
      await runSlow(pair);
    }
  }
} catch (error) {
  failed = true;
  console.error("bench: failed:", error);
} finally {
  await Promise.all([...live].map((proc) => proc.stop()));
  stopSpinners();
  clearTimeout(bound);
}

const command = `${RUNTIME === "deno" ? "deno run -A" : "bun"} bench/main.ts ${
  process.argv.slice(2).join(" ")
}`.trim();
const markdown = report(command, (now() - started) / 1000);
console.log(markdown);
if (args.get("markdown")) writeFileSync(args.get("markdown")!, markdown + "\n");
if (args.get("json")) writeFileSync(args.get("json")!, JSON.stringify(results, null, 2) + "\n");
if (smoke) console.log(failed ? "bench-smoke: failed" : "bench-smoke: every scenario ran");
process.exit(failed ? 1 : 0);
