/**
 * The gateway benchmark (`deno task bench:gateway`): what the gateway costs against a plain
 * reverse proxy, and against a bare server, on loopback.
 *
 * ```
 * deno task bench:gateway                  # Deno servers: 30 s warm-up, then 5 rounds × 5 scenarios × 2 phases of 3 s (~5.5 min)
 * deno task bench:gateway --runtime bun    # Bun servers; the caller stays on Deno
 * deno task bench:gateway --smoke          # every scenario, tiny (~10 s)
 * bun bench/gateway.ts --runtime bun       # the caller under Bun too
 * deno run -A bench/gateway.ts --scenarios tunnel --phases throughput --rounds 1 \
 *   --duration 15000 --profile /tmp/gw-prof  # CPU profiles of the servers under load, summarized
 * deno run -A bench/gateway.ts --summarize /tmp/gw-prof   # summarize profiles taken before
 * deno run -A bench/gateway.ts --runtime bun --scenarios proxy,tunnel --phases throughput \
 *   --perf /tmp/gw-perf                     # where each server's CPU goes (Linux `perf`)
 * ```
 *
 * Every server runs in its own process under `--runtime deno|bun`:
 *
 * - an **upstream** (this file with `--role static`: `Deno.serve` or `Bun.serve` answering a
 *   fixed 64-byte body to any path);
 * - **proxy**: a plain reverse proxy in a few lines (`--role proxy`: `Deno.serve`/`Bun.serve`
 *   whose handler returns `fetch(upstream + path)` with the caller's method, headers less
 *   `Host`, and body) in front of the upstream;
 * - **front**: the gateway's HTTP side and the agent's upstream client in one process, with no
 *   WebSocket between them (`--role front`: `runtime/_node_http.ts`'s `listenHttp`, each
 *   request handed to `agent/_tunnel.ts`'s `tunnelHandler` in the parts form a connection
 *   serves it in): what a faithful proxy built of these two parts costs, so that tunnel −
 *   front is the hop;
 * - **tunnel**: `gateway.ts` and `agent.ts --upstream <the same upstream> --name up` (its
 *   tunnel, `agent/_tunnel.ts`, on its own HTTP/1.1 client); requests go to `GATEWAY/agents/up/…`;
 * - **bare**: `--role static` answering what the demo agent's `/hello` answers
 *   (`hello from demo (RUNTIME)\n`);
 * - **inproc**: `gateway.ts --demo`, whose demo agent runs in the gateway's own process
 *   (dialing it over loopback); requests go to `GATEWAY/agents/demo/hello`.
 *
 * The gateways run with `--log-level warn` (`--gateway-log-level`): at `info` each request
 * writes an access line. The agent runs with `--quiet --log-level warn`.
 *
 * The caller is this process, with `fetch` (connections kept alive), checking every answer's
 * status and body. Each round measures every scenario, in an order rotated by one each round:
 * **latency**, sequential requests one at a time for `--duration` ms (p50, p99), then
 * **throughput**, `--callers` (32) concurrent callers for `--duration` ms (requests/s, and on
 * Linux each process's CPU µs per request from `/proc/{pid}/stat`, the kernel's share of it,
 * and how many CPUs they kept busy together). Reported: medians over rounds, the medians of per-round ratios (tunnel /
 * proxy and inproc / bare requests/s) and differences (p50), and the issue's targets, met or
 * not: gateway + tunnel ≥ 0.7× the plain proxy's throughput; the in-process agent ≥ 0.3× the
 * bare server's. A missed target is reported, not an error.
 *
 * Options: `--runtime deno|bun`, `--duration MS` (per phase, 3000), `--rounds N` (5),
 * `--warmup MS` (30000 per scenario: half concurrent, reported in 5 s slices, then half sequential), `--callers N` (32), `--scenarios proxy,front,tunnel,bare,inproc`,
 * `--phases latency,throughput`, `--gateway-log-level LEVEL` (warn), `--json FILE`,
 * `--max-seconds S` (the watchdog; by default the planned time plus 90 s), `--smoke`
 * (`--duration 400 --rounds 2 --warmup 200`), `--profile DIR` (each server process under
 * `--cpu-prof`, one sub-directory per process, stopped gracefully so that the profiles are
 * written, then summarized), `--summarize DIR` (only summarize), `--perf DIR` (Linux `perf`
 * samples each server on-CPU through most of each throughput phase; then, per scenario and role,
 * the shares of the kernel by system call, the runtime's binary, JIT-compiled JavaScript and
 * other libraries: see `_on_cpu.ts` for why this differs from `--profile`). A summary gives, for each
 * sub-directory's `.cpuprofile` files, the shares of non-idle samples by category (GC, socket
 * writes, natives, the `node:` polyfill by kind, `Headers`/WebIDL, other runtime JS, npm
 * packages, our files), by file, by function, and by the nearest function of ours on the stack.
 * Output: progress on stderr; tables (Markdown) and `RESULT <json>` on stdout. Exit status 1
 * if any request failed or a scenario could not run; 3 if the watchdog fired.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import process from "node:process";
import { listenHttp } from "../runtime/_node_http.ts";
import { tunnelHandler } from "../agent/_tunnel.ts";
import { Cancel } from "../connection/_cancel.ts";
import { partsOf, responseOf } from "../connection/_parts_handler.ts";
import {
  median,
  ms,
  numberArg,
  parseArgs,
  printResult,
  readStdinLines,
  RUNTIME,
  table,
} from "./_common.ts";
import {
  type Child,
  cpuProfileFlags,
  killAll,
  launched,
  launchScript,
  stopChild,
  until,
} from "./_children.ts";
import { newProfileDir, summarizeProfiles } from "./_profiles.ts";
import { onCpuSplit, perfAvailable, recordOnCpu } from "./_on_cpu.ts";
import {
  concurrent,
  cpuSplit,
  freePort,
  guarded,
  type LatencyResult,
  once,
  sequential,
  takeFirstError,
  type ThroughputResult,
} from "./_http_load.ts";

type Runtime = "deno" | "bun";
type Scenario = "proxy" | "front" | "tunnel" | "bare" | "inproc";
const SCENARIOS: Scenario[] = ["proxy", "front", "tunnel", "bare", "inproc"];
const DESCRIBED: Record<Scenario, string> = {
  proxy: "plain proxy → upstream",
  front: "gateway's HTTP front + agent's tunnel, one process → upstream",
  tunnel: "gateway → tunnelling agent → upstream",
  bare: "bare server",
  inproc: "gateway with in-process agent",
};

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/.bin/deno`;
const BUN = `${ROOT}node_modules/.bin/bun`;
/** What the upstream answers: 64 bytes. */
const UPSTREAM_BODY = "swaggersocket gateway bench: a small body of sixty-four bytes..\n";
const START_MS = 20_000;
/**
 * The warm-up's concurrent half is measured in slices this long. On this project's 2-vCPU
 * host fresh gateways and agents forwarded at 0.5–0.75× of their later rate in their first 5 s
 * under load, and reached it after 10–30 s (the engines compiling their code in their top
 * tiers, on the CPUs the load keeps busy): a warm-up of 2 s measured servers still being
 * compiled (bench/HISTORY.md, session 26).
 */
const WARMUP_SLICE_MS = 5_000;

const args = parseArgs(process.argv.slice(2));
const smoke = args.has("smoke");

// ---- the server processes (--role static|proxy) ---------------------------------------------

interface BunServeLike {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (request: Request) => Response | Promise<Response>;
  }): { port: number };
}

/** Serves `handler` on 127.0.0.1 with the runtime's own server; returns the port. */
function serveNative(handler: (request: Request) => Response | Promise<Response>): number {
  const bun = (globalThis as { Bun?: BunServeLike }).Bun;
  if (bun) return bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler }).port;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return server.addr.port;
}

/**
 * `--role front --upstream URL`: the gateway's `node:http` front handing each request to the
 * agent's tunnel in the same process, in the parts form a connection serves it in (the
 * request's header list, a `Cancel`; the answer's list made a `Response` again, as a
 * gateway's caller side makes one). Returns the port.
 */
async function serveFront(upstream: string): Promise<number> {
  const tunnel = partsOf(tunnelHandler(upstream))!;
  const front = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 30_000,
    sendTimeout: 60_000,
    onUpgrade: () => false,
    unparsable: () => new Response("Bad Request\n", { status: 400 }),
    handler: async (caller) => {
      const cancel = new Cancel();
      caller.gone = (reason) => cancel.abort(reason);
      // The caller's lines, names lower-case, as a connection carries them.
      const headers: [string, string][] = [];
      const fields = caller.fields;
      for (let i = 0; i < fields.length; i += 2) {
        headers.push([fields[i].toLowerCase(), fields[i + 1]]);
      }
      return responseOf(
        await tunnel({
          method: caller.method,
          target: caller.target,
          headers,
          body: caller.body,
          cancel,
        }),
      );
    },
  });
  return front.addr.port;
}

/**
 * `--role static --body TEXT`, `--role proxy --upstream URL` or `--role front --upstream URL`:
 * prints `READY <port>`.
 */
async function runRole(role: string): Promise<void> {
  const bound = setTimeout(() => {
    console.error(`bench/gateway.ts ${role}: watchdog fired; exiting`);
    process.exit(3);
  }, numberArg(args, "exit-after", 600_000));
  (bound as { unref?: () => void }).unref?.();
  let handler: ((request: Request) => Response | Promise<Response>) | undefined;
  if (role === "static") {
    const body = args.get("body") ?? UPSTREAM_BODY;
    handler = () => new Response(body, { headers: { "content-type": "text/plain" } });
  } else if (role === "proxy") {
    // The plain reverse proxy: the caller's method, headers (less Host) and body, to the
    // upstream's same path; its response as it comes.
    const upstream = args.get("upstream")!.replace(/\/$/, "");
    handler = (request) => {
      const url = new URL(request.url);
      const headers = new Headers(request.headers);
      headers.delete("host");
      return fetch(upstream + url.pathname + url.search, {
        method: request.method,
        headers,
        body: request.body,
        redirect: "manual",
      });
    };
  } else if (role !== "front") {
    throw new TypeError(`Bad option: --role ${role} (static, proxy or front)`);
  }
  const port = role === "front"
    ? await serveFront(args.get("upstream")!.replace(/\/$/, ""))
    : serveNative(handler!);
  const stop = () => process.exit(0);
  readStdinLines(() => {}, stop);
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, stop);
  console.log(`READY ${port}`);
}

// ---- processes (as bench/cluster.ts) ----------------------------------------------------------

let profileDir: string | undefined;
/** With `--perf`: where each server's on-CPU samples go, by scenario and role. */
let perfDir: string | undefined;
const perfFiles = new Map<string, string[]>();

/**
 * Samples the servers of a scenario (not the caller) on-CPU for most of its throughput phase.
 *
 * @returns When each sampler has exited.
 */
function onCpu(
  scenario: Scenario,
  round: number,
  pids: Record<string, number | undefined>,
  duration: number,
): Promise<void>[] {
  const seconds = Math.max(0.5, duration * 0.8 / 1000);
  return Object.entries(pids).flatMap(([role, pid]) => {
    if (role === "caller" || pid === undefined) return [];
    const file = `${perfDir}/${scenario}-${role}-${round}.data`;
    const key = `${scenario}: ${role}`;
    perfFiles.set(key, [...perfFiles.get(key) ?? [], file]);
    const perf = recordOnCpu(file, pid, seconds);
    return [new Promise<void>((resolve) => perf.once("exit", () => resolve()))];
  });
}

/** The on-CPU split of each scenario's servers, over all rounds. */
function onCpuReport(): string {
  return [...perfFiles].map(([key, files]) => {
    const { samples, shares } = onCpuSplit(files);
    const rows = shares.slice(0, 12).map((
      [what, share],
    ) => [what, `${(share * 100).toFixed(1)} %`]);
    return `### ${key}: ${samples} on-CPU samples\n\n${table(["where", "share"], rows)}`;
  }).join("\n\n");
}
/** With `--profile`: each child's CPU ms in all, read just before it was stopped. */
const cpuAtStop = new Map<string, { total: number; sys: number }>();

/** Runs a script of this repository under `runtime` (under `--cpu-prof` with `--profile`). */
function launchProfiled(name: string, runtime: Runtime, script: string, argv: string[]): Child {
  return launchScript(name, runtime, script, argv, { flags: cpuProfileFlags(profileDir, name) });
}

// ---- the scenarios ----------------------------------------------------------------------------

/** A scenario's target: the URL, the body it must answer, and the processes doing the work. */
interface Target {
  url: string;
  body: string;
  pids: Record<string, number | undefined>;
}

interface Round {
  order: Scenario[];
  latency: Partial<Record<Scenario, LatencyResult>>;
  throughput: Partial<Record<Scenario, ThroughputResult>>;
}

/** One scenario's medians over rounds. */
interface Summary {
  p50: number;
  p99: number;
  rps: number;
  /** p50 and p99 under load, ms. */
  loadedP50: number;
  loadedP99: number;
  /** CPU µs per request of each process, under load. */
  cpu: Record<string, number>;
  /** The kernel's share of each process's CPU time, under load. */
  sys: Record<string, number>;
  busy: number;
}

interface BenchResult {
  runtime: Runtime;
  callerRuntime: Runtime;
  callers: number;
  durationMs: number;
  scenarios: Scenario[];
  rounds: Round[];
  summary: Partial<Record<Scenario, Summary>>;
  /** Medians of per-round ratios of requests/s. */
  tunnelRatio: number;
  inprocRatio: number;
  /** front ÷ proxy requests/s: the cost of the two `node:http` ends without the hop. */
  frontRatio: number;
  /** tunnel ÷ front requests/s: what the WebSocket hop keeps. */
  hopRatio: number;
  /** Medians of per-round p50 differences, ms. */
  tunnelP50Added: number;
  inprocP50Added: number;
  /**
   * Each scenario's requests/s through the concurrent half of its warm-up, in slices of
   * {@linkcode WARMUP_SLICE_MS}: from a server's first seconds under load to its steady state.
   */
  warmup: Partial<Record<Scenario, number[]>>;
  /** How long each of those slices was. */
  warmupSliceMs: number;
  errors: number;
}

async function httpReady(child: Child, what: string, url: string, body: string): Promise<void> {
  await until(
    what,
    async () => {
      try {
        await once(url, body);
        return true;
      } catch {
        return false;
      }
    },
    START_MS,
    child,
  );
}

async function startStatic(name: string, runtime: Runtime, body: string, exitAfter: number) {
  const self = new URL(import.meta.url).pathname;
  const child = launchProfiled(name, runtime, self, [
    "--role",
    "static",
    "--body",
    body,
    "--exit-after",
    String(exitAfter),
  ]);
  await until(`${name}'s READY line`, () => /READY \d+/.test(child.stdout), START_MS, child);
  return { child, url: `http://127.0.0.1:${/READY (\d+)/.exec(child.stdout)![1]}` };
}

async function startGateway(name: string, runtime: Runtime, extra: string[], exitAfter: number) {
  const port = await freePort();
  const child = launchProfiled(name, runtime, ROOT + "gateway.ts", [
    "--hostname",
    "127.0.0.1",
    "--port",
    String(port),
    "--log-level",
    args.get("gateway-log-level") ?? "warn",
    "--exit-after",
    String(exitAfter),
    ...extra,
  ]);
  return { child, url: `http://127.0.0.1:${port}` };
}

async function runBench(
  runtime: Runtime,
  scenarios: Scenario[],
  phases: string[],
  options: { duration: number; rounds: number; warmup: number; callers: number; bound: number },
): Promise<BenchResult> {
  const exitAfter = options.bound + 10_000;
  const targets = {} as Record<Scenario, Target>;
  const caller = process.pid;
  const needUpstream = ["proxy", "front", "tunnel"].some((s) => scenarios.includes(s as Scenario));
  const upstream = needUpstream
    ? await startStatic("upstream", runtime, UPSTREAM_BODY, exitAfter)
    : undefined;
  if (upstream) {
    await httpReady(
      upstream.child,
      "the upstream to answer",
      `${upstream.url}/ping`,
      UPSTREAM_BODY,
    );
  }
  for (const role of ["proxy", "front"] as const) {
    if (!scenarios.includes(role)) continue;
    const self = new URL(import.meta.url).pathname;
    const proxy = launchProfiled(role, runtime, self, [
      "--role",
      role,
      "--upstream",
      upstream!.url,
      "--exit-after",
      String(exitAfter),
    ]);
    await until(`the ${role}'s READY line`, () => /READY \d+/.test(proxy.stdout), START_MS, proxy);
    const url = `http://127.0.0.1:${/READY (\d+)/.exec(proxy.stdout)![1]}/ping`;
    await httpReady(proxy, `the ${role} to answer`, url, UPSTREAM_BODY);
    targets[role] = {
      url,
      body: UPSTREAM_BODY,
      pids: { [role]: proxy.process.pid, upstream: upstream!.child.process.pid, caller },
    };
  }
  if (scenarios.includes("tunnel")) {
    const gateway = await startGateway("gateway", runtime, [], exitAfter);
    const agent = launchProfiled("agent", runtime, ROOT + "agent.ts", [
      `${gateway.url.replace("http:", "ws:")}/agents/connect`,
      "--name",
      "up",
      "--upstream",
      upstream!.url,
      "--quiet",
      "--log-level",
      "warn",
      "--exit-after",
      String(exitAfter),
    ]);
    const url = `${gateway.url}/agents/up/ping`;
    await httpReady(agent, "the gateway to reach the agent's upstream", url, UPSTREAM_BODY);
    targets.tunnel = {
      url,
      body: UPSTREAM_BODY,
      pids: {
        gateway: gateway.child.process.pid,
        agent: agent.process.pid,
        upstream: upstream!.child.process.pid,
        caller,
      },
    };
  }
  // What the demo agent's /hello answers (agent/_demo_api.ts).
  const hello = `hello from demo (${runtime})\n`;
  if (scenarios.includes("bare")) {
    const bare = await startStatic("bare", runtime, hello, exitAfter);
    const url = `${bare.url}/hello`;
    await httpReady(bare.child, "the bare server to answer", url, hello);
    targets.bare = { url, body: hello, pids: { bare: bare.child.process.pid, caller } };
  }
  if (scenarios.includes("inproc")) {
    const gateway = await startGateway("gateway-demo", runtime, ["--demo"], exitAfter);
    const url = `${gateway.url}/agents/demo/hello`;
    await httpReady(gateway.child, "the gateway's demo agent to answer", url, hello);
    targets.inproc = { url, body: hello, pids: { gateway: gateway.child.process.pid, caller } };
  }

  const phaseBound = options.duration + 30_000;
  // A failure names its URL: these say whose it is.
  progress(
    `targets: ${scenarios.map((scenario) => `${scenario} ${targets[scenario].url}`).join(", ")}`,
  );
  progress(`warm-up: ${options.warmup} ms per scenario (half concurrent, half sequential)`);
  const warmup: BenchResult["warmup"] = {};
  for (const scenario of scenarios) {
    const { url, body, pids } = targets[scenario];
    // Concurrent first, in slices: the first is a fresh server's first seconds under load.
    const slices: number[] = [];
    for (let left = options.warmup / 2; left > 0; left -= WARMUP_SLICE_MS) {
      const slice = await guarded(
        concurrent(url, body, Math.min(left, WARMUP_SLICE_MS), options.callers, pids),
        phaseBound,
        "warm-up",
      );
      slices.push(slice.rps);
    }
    warmup[scenario] = slices;
    progress(`warmed ${scenario}: ${slices.map((rps) => rps.toFixed(0)).join(", ")} req/s`);
    await guarded(sequential(url, body, options.warmup / 2), phaseBound, "warm-up");
  }
  const warmupError = takeFirstError();
  if (warmupError) progress(`warm-up had failed requests: ${warmupError}`);

  const rounds: Round[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const shift = round % scenarios.length;
    const order = [...scenarios.slice(shift), ...scenarios.slice(0, shift)];
    const latency: Round["latency"] = {};
    const throughput: Round["throughput"] = {};
    if (phases.includes("latency")) {
      for (const scenario of order) {
        const { url, body } = targets[scenario];
        latency[scenario] = await guarded(
          sequential(url, body, options.duration),
          phaseBound,
          `${scenario} latency`,
        );
      }
    }
    if (phases.includes("throughput")) {
      for (const scenario of order) {
        const { url, body, pids } = targets[scenario];
        const sampled = perfDir ? onCpu(scenario, round, pids, options.duration) : [];
        throughput[scenario] = await guarded(
          concurrent(url, body, options.duration, options.callers, pids),
          phaseBound,
          `${scenario} throughput`,
        );
        await Promise.all(sampled);
      }
    }
    rounds.push({ order, latency, throughput });
    progress(
      `round ${round + 1}/${options.rounds} (${order.join(", ")}): ` +
        order.map((s) =>
          `${s} p50 ${ms(latency[s]?.p50 ?? NaN)} ms ${
            (throughput[s]?.rps ?? NaN).toFixed(0)
          } req/s`
        ).join("; "),
    );
  }

  // Gracefully, so that profiles get written.
  for (const child of launched()) {
    cpuAtStop.set(child.name.replace(/[^A-Za-z0-9_-]+/g, "-"), cpuSplit(child.process.pid));
  }
  const grace = profileDir ? 15_000 : 5_000;
  await Promise.all(launched().map((child) => stopChild(child, "SIGTERM", grace)));

  const summary: BenchResult["summary"] = {};
  for (const scenario of scenarios) {
    const lat = rounds.map((r) => r.latency[scenario]);
    const thr = rounds.map((r) => r.throughput[scenario]);
    summary[scenario] = {
      p50: median(lat.map((r) => r?.p50 ?? NaN)),
      p99: median(lat.map((r) => r?.p99 ?? NaN)),
      rps: median(thr.map((r) => r?.rps ?? NaN)),
      loadedP50: median(thr.map((r) => r?.p50 ?? NaN)),
      loadedP99: median(thr.map((r) => r?.p99 ?? NaN)),
      cpu: Object.fromEntries(
        Object.keys(targets[scenario].pids).map((name) => [
          name,
          median(thr.map((r) => r?.cpu[name] ?? NaN)),
        ]),
      ),
      sys: Object.fromEntries(
        Object.keys(targets[scenario].pids).map((name) => [
          name,
          median(thr.map((r) => r?.sys[name] ?? NaN)),
        ]),
      ),
      busy: median(thr.map((r) => r?.busy ?? NaN)),
    };
  }
  const ratio = (a: Scenario, b: Scenario) =>
    median(rounds.map((r) => (r.throughput[a]?.rps ?? NaN) / (r.throughput[b]?.rps ?? NaN)));
  const added = (a: Scenario, b: Scenario) =>
    median(rounds.map((r) => (r.latency[a]?.p50 ?? NaN) - (r.latency[b]?.p50 ?? NaN)));
  let errors = 0;
  for (const r of rounds) {
    for (const s of scenarios) {
      errors += (r.latency[s]?.errors ?? 0) + (r.throughput[s]?.errors ?? 0);
    }
  }
  return {
    runtime,
    callerRuntime: RUNTIME,
    callers: options.callers,
    durationMs: options.duration,
    scenarios,
    rounds,
    summary,
    tunnelRatio: ratio("tunnel", "proxy"),
    inprocRatio: ratio("inproc", "bare"),
    frontRatio: ratio("front", "proxy"),
    hopRatio: ratio("tunnel", "front"),
    tunnelP50Added: added("tunnel", "proxy"),
    inprocP50Added: added("inproc", "bare"),
    warmup,
    warmupSliceMs: Math.min(WARMUP_SLICE_MS, options.warmup / 2),
    errors,
  };
}

// ---- report -----------------------------------------------------------------------------------

function progress(text: string): void {
  console.error(`[bench:gateway] ${text}`);
}

function report(result: BenchResult): string {
  const cpu = (s: Summary) => {
    const entries = Object.entries(s.cpu);
    const total = entries.reduce((sum, [, v]) => sum + (Number.isFinite(v) ? v : 0), 0);
    return `${
      entries.map(([k, v]) => `${k} ${Number.isFinite(v) ? v.toFixed(0) : "–"}`).join(" / ")
    } ` +
      `(${total.toFixed(0)})`;
  };
  const rows = result.scenarios.map((scenario) => {
    const s = result.summary[scenario]!;
    return [
      scenario,
      DESCRIBED[scenario],
      ms(s.p50),
      ms(s.p99),
      s.rps.toFixed(0),
      `${ms(s.loadedP50)} / ${ms(s.loadedP99)}`,
      cpu(s),
      Number.isFinite(s.busy) ? s.busy.toFixed(2) : "–",
    ];
  });
  const lines = [
    `Servers on ${result.runtime}, caller on ${result.callerRuntime}; ${result.rounds.length} ` +
    `rounds of ${result.durationMs} ms per phase, medians over rounds; throughput with ` +
    `${result.callers} concurrent callers.`,
    "",
    table([
      "scenario",
      "path",
      "p50 ms",
      "p99 ms",
      `req/s (${result.callers} callers)`,
      "p50 / p99 ms under load",
      "CPU µs/req under load, by process (sum)",
      "CPUs busy",
    ], rows),
    "",
  ];
  const perRound = (a: Scenario, b: Scenario) =>
    result.rounds.map((r) =>
      ((r.throughput[a]?.rps ?? NaN) / (r.throughput[b]?.rps ?? NaN)).toFixed(2)
    ).join(", ");
  if (result.summary.tunnel && result.summary.proxy) {
    lines.push(
      `- gateway + tunnelling agent: ${result.tunnelRatio.toFixed(2)}× the plain proxy's ` +
        `throughput (per round ${perRound("tunnel", "proxy")}): target ≥ 0.7× ` +
        `${result.tunnelRatio >= 0.7 ? "MET" : "NOT MET"}; p50 +${ms(result.tunnelP50Added)} ms`,
    );
  }
  if (result.summary.front && result.summary.proxy) {
    lines.push(
      `- where the tunnel's time goes: the gateway's HTTP front and the agent's upstream ` +
        `client in one process make ${result.frontRatio.toFixed(2)}× the plain proxy's ` +
        `throughput (per round ${perRound("front", "proxy")})` +
        (result.summary.tunnel
          ? `; the WebSocket hop between them keeps ${result.hopRatio.toFixed(2)}× of that ` +
            `(tunnel ÷ front, per round ${perRound("tunnel", "front")})`
          : ""),
    );
  }
  const warm = result.warmup;
  if (warm.tunnel?.length && warm.proxy?.length) {
    const first = warm.tunnel[0] / warm.proxy[0];
    lines.push(
      `- warming up (req/s in each ${result.warmupSliceMs / 1000} s of the concurrent warm-up, ` +
        `fresh servers first): tunnel ${warm.tunnel.map((r) => r.toFixed(0)).join(", ")}; ` +
        `proxy ${warm.proxy.map((r) => r.toFixed(0)).join(", ")}: in the first ` +
        `${result.warmupSliceMs / 1000} s the tunnel made ${first.toFixed(2)}× the proxy's`,
    );
  }
  if (result.summary.inproc && result.summary.bare) {
    lines.push(
      `- gateway with an in-process agent: ${result.inprocRatio.toFixed(2)}× the bare ` +
        `server's throughput (per round ${perRound("inproc", "bare")}): target ≥ 0.3× ` +
        `${result.inprocRatio >= 0.3 ? "MET" : "NOT MET"}; p50 +${ms(result.inprocP50Added)} ms`,
    );
  }
  lines.push(
    `- the kernel's share of each process's CPU under load: ${
      result.scenarios.map((scenario) =>
        `${scenario} ${
          Object.entries(result.summary[scenario]!.sys).map(([name, share]) =>
            `${name} ${Number.isFinite(share) ? (share * 100).toFixed(0) : "–"} %`
          ).join(", ")
        }`
      ).join("; ")
    }`,
    `- failed requests: ${result.errors}`,
  );
  return lines.join("\n");
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const summarize = args.get("summarize");
  if (summarize) {
    console.log(summarizeProfiles(summarize, cpuAtStop));
    return 0;
  }
  const runtime = (args.get("runtime") ?? "deno") as Runtime;
  if (runtime !== "deno" && runtime !== "bun") {
    throw new TypeError(`Bad option: --runtime ${runtime} (deno or bun)`);
  }
  const duration = numberArg(args, "duration", smoke ? 400 : 3000);
  const rounds = Math.max(1, Math.round(numberArg(args, "rounds", smoke ? 2 : 5)));
  const warmup = numberArg(args, "warmup", smoke ? 200 : 30_000);
  const callers = Math.max(1, Math.round(numberArg(args, "callers", 32)));
  const scenarios = (args.get("scenarios") ?? SCENARIOS.join(",")).split(",") as Scenario[];
  for (const s of scenarios) {
    if (!SCENARIOS.includes(s)) throw new TypeError(`Bad scenario: ${s} (${SCENARIOS.join(", ")})`);
  }
  const phases = (args.get("phases") ?? "latency,throughput").split(",");
  const planned = rounds * scenarios.length * phases.length * duration +
    scenarios.length * warmup;
  const bound = numberArg(args, "max-seconds", (planned + 90_000) / 1000) * 1000;
  profileDir = newProfileDir(args.get("profile"));
  perfDir = newProfileDir(args.get("perf"));
  if (perfDir && !perfAvailable()) {
    throw new Error("--perf needs Linux `perf` (apt-get install linux-perf)");
  }

  const timer = setTimeout(() => {
    console.error(`[bench:gateway] watchdog fired after ${bound} ms; killing everything`);
    killAll();
    process.exit(3);
  }, bound);
  (timer as { unref?: () => void }).unref?.();

  const git = (argv: string[]) =>
    spawnSync("git", argv, { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
  const commit = `${git(["rev-parse", "--short", "HEAD"]) || "?"}${
    git(["status", "--porcelain", "--untracked-files=no"]) ? " + uncommitted changes" : ""
  }`;
  const version = (command: string, argv: string[]) =>
    spawnSync(command, argv, { encoding: "utf8" }).stdout?.split("\n")[0]?.trim() ?? "?";
  const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
  const machine = `commit ${commit}; ${cpus().length} × ${cpus()[0]?.model ?? "?"}; ` +
    `${runtime} ${
      version(runtime === "deno" ? DENO : BUN, ["--version"]).replace(/^deno /, "")
    }; load average ${load()} ` +
    `at the start`;
  progress(machine);

  let result: BenchResult | undefined;
  let failed = false;
  try {
    result = await runBench(runtime, scenarios, phases, {
      duration,
      rounds,
      warmup,
      callers,
      bound,
    });
  } catch (error) {
    failed = true;
    console.error(`[bench:gateway] failed: ${(error as Error).stack ?? error}`);
  } finally {
    killAll();
  }
  const end = `load average ${load()} at the end`;
  console.log(`\n## Gateway against a plain reverse proxy\n\n${machine}, ${end}\n`);
  if (result) console.log(report(result) + "\n");
  const failure = takeFirstError();
  if (failure) console.log(`First failure: ${failure}\n`);
  if (profileDir) {
    console.log(`## Profiles (${profileDir})\n\n${summarizeProfiles(profileDir, cpuAtStop)}`);
  }
  if (perfDir) console.log(`## On-CPU (perf, ${perfDir})\n\n${onCpuReport()}\n`);
  printResult({ machine, end, result });
  const jsonFile = args.get("json");
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ machine, end, result }, null, 2));
  return failed || (result?.errors ?? 0) > 0 ? 1 : 0;
}

const role = args.get("role");
if (role) {
  await runRole(role);
} else {
  process.on("exit", killAll);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      killAll();
      process.exit(130);
    });
  }
  process.exit(await main());
}
