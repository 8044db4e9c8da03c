/**
 * A cluster of gateway.ts processes (Deno and Bun) on a real `redis-server`, under failure:
 * three instances with agents spread over them, then an instance killed (`kill -9`) while it
 * holds 50 agents, an instance frozen (`SIGSTOP`), and Redis flushed or restarted under
 * running gateways. The agents run in this process (so they are of the runtime running the
 * test); each test starts its own Redis and gateways and stops them all at the end.
 *
 * Every wait is bounded: on a log line, a promise, or a condition polled over HTTP until a
 * deadline. `SWAGGERSOCKET_TEST_TIMINGS=1` prints what each failover took.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { join } from "node:path";
import { type Agent, type AgentOptions, startAgent } from "../agent.ts";
import type { AgentInfo } from "../gateway.ts";
import type { ConnectionEvent } from "../mod.ts";
import {
  BUN_BIN,
  DENO_BIN,
  type LineProcess,
  ROOT_DIR,
  RUNTIME,
  spawnLines,
  withTimeout,
} from "./_helpers.ts";
import { connectRedis, NO_REDIS, type RedisServer, startRedis } from "./_redis.ts";

const OPTIONS = { timeout: 60_000, skip: NO_REDIS };
const SECRET = "failover-secret";
/** Guard on one step that takes a moment: a start, a connect, a log line. */
const STEP_MS = 20_000;
/** Guard on one HTTP call: past it, the call hung. */
const CALL_MS = 10_000;
/** An answer "within a few seconds", generous for a loaded machine. */
const FAST_MS = 5_000;
/** Between two rounds of polling a condition. */
const POLL_MS = 100;
/** What the machine may add to a bound that the cluster's timers set. */
const MARGIN_MS = 4_000;
/** The longest wait of `@redis/client`'s default reconnect strategy: 2 s and 0–200 ms jitter. */
const REDIS_RETRY_MS = 2_200;
/** How long an agent's dial may wait for a WebSocket handshake (`limits.handshakeTimeout`). */
const DIAL_TIMEOUT_MS = 10_000;
/** Fast reconnects, for agents that must move quickly. */
const RECONNECT = { initialDelay: 100, maxDelay: 1_000 };
const LISTENING = /gateway listening url=(\S+) agents=(\S+)$/;
const TIMINGS = process.env.SWAGGERSOCKET_TEST_TIMINGS === "1";
/** How many of each instance's last log lines a failure prints. */
const DUMP_LINES = 40;

type Runtime = "deno" | "bun";

/** One gateway.ts process of the cluster. */
interface Instance {
  label: string;
  process: LineProcess;
  url: string;
  agentsUrl: string;
  port: number;
}

/** A Redis, gateways on it, and the agents started against them. */
interface Cluster {
  redis: RedisServer;
  instances: Instance[];
  agents: Agent[];
  /** Freezes (SIGSTOP) or thaws (SIGCONT) an instance. */
  freeze(instance: Instance, frozen: boolean): void;
  /** Prints the last lines each instance logged (on a failure). */
  dump(error: unknown): void;
  /** Closes the agents, kills the gateways, stops Redis; each step bounded. */
  close(): Promise<void>;
}

/** An agent and what it was when it first connected. */
interface Placed {
  name: string;
  agent: Agent;
  /** Its first connection id. */
  id: string;
}

/** What a call answered, and how long it took. */
interface Answer {
  url: string;
  status: number;
  body: string;
  ms: number;
}

/**
 * Starts Redis and one gateway.ts per runtime given, in parallel, each with
 * `--log-level debug` (it logs each agent recorded in the cluster) and `flags`.
 */
async function startCluster(runtimes: Runtime[], flags: string[]): Promise<Cluster> {
  const redis = await startRedis();
  const processes: LineProcess[] = [];
  const frozen = new Set<LineProcess>();
  const signal = (child: LineProcess, name: "SIGSTOP" | "SIGCONT"): void =>
    // LineProcess.signal hands any name to process.kill; its type lists what gateways handle.
    (child.signal as (signal: string) => void)(name);
  const cluster: Cluster = {
    redis,
    instances: [],
    agents: [],
    freeze(instance, stop) {
      signal(instance.process, stop ? "SIGSTOP" : "SIGCONT");
      if (stop) frozen.add(instance.process);
      else frozen.delete(instance.process);
    },
    dump(error) {
      for (const instance of cluster.instances) {
        console.error(`--- gateway ${instance.label} ${instance.url}, last lines:`);
        console.error(instance.process.lines.slice(-DUMP_LINES).join("\n"));
      }
      console.error(`--- failed: ${(error as Error)?.message}`);
    },
    async close() {
      await Promise.all(
        cluster.agents.map((agent) =>
          withTimeout(agent.close(), STEP_MS, "agent.close()").catch((error) =>
            console.error("cleanup:", error)
          )
        ),
      );
      for (const child of frozen) signal(child, "SIGCONT");
      await Promise.all(
        processes.map((child) =>
          withTimeout(child.kill(), STEP_MS, "gateway kill").catch((error) =>
            console.error("cleanup:", error)
          )
        ),
      );
      await redis.close();
    },
  };
  try {
    const script = join(ROOT_DIR, "gateway.ts");
    runtimes.forEach((runtime, index) => {
      const args = [
        script,
        "--port",
        "0",
        "--redis",
        `unix://${redis.socket}`,
        "--log-level",
        "debug",
        ...flags,
      ];
      processes.push(spawnLines(
        runtime === "deno" ? DENO_BIN : BUN_BIN,
        runtime === "deno" ? ["run", "-A", "--quiet", ...args] : ["run", ...args],
        `gateway.ts #${index} (${runtime})`,
        { SWAGGERSOCKET_GATEWAY_CLUSTER_SECRET: SECRET },
      ));
    });
    cluster.instances = await Promise.all(processes.map(async (child, index) => {
      const [, url, agentsUrl] = await child.waitFor(LISTENING, STEP_MS);
      return {
        label: `#${index} (${runtimes[index]})`,
        process: child,
        url,
        agentsUrl,
        port: Number(new URL(url).port),
      };
    }));
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}

/**
 * Starts an agent that dials `instances` in turn (the first holds it), and waits until that
 * instance has recorded it in the cluster.
 */
async function place(
  cluster: Cluster,
  name: string,
  instances: Instance[],
  options: Partial<AgentOptions> = {},
): Promise<Placed> {
  const agent = startAgent({ url: instances.map((each) => each.agentsUrl), name, ...options });
  cluster.agents.push(agent);
  const connection = await withTimeout(agent.ready, STEP_MS, `agent ${name} to connect`);
  assert.equal(connection.remoteAddr, `127.0.0.1:${instances[0].port}`, `${name} dialed first`);
  await instances[0].process.waitFor(
    new RegExp(`agent recorded in the cluster id=${connection.id}(\\s|$)`),
    STEP_MS,
  );
  return { name, agent, id: connection.id };
}

/** GET `url`: the status and body, or a clear failure when no answer comes within `ms`. */
async function get(url: string, ms = CALL_MS): Promise<Answer> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  const started = performance.now();
  try {
    const response = await fetch(url, { signal: controller.signal });
    const body = await response.text();
    return { url, status: response.status, body, ms: Math.round(performance.now() - started) };
  } catch (error) {
    if (controller.signal.aborted) throw new Error(`GET ${url}: no answer within ${ms} ms`);
    throw new Error(`GET ${url}: ${(error as Error).message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/** The demo API's answer to `GET /hello`. */
function hello(name: string): string {
  return `hello from ${name} (${RUNTIME})\n`;
}

/** The agent a call went to: the name in `…/agents/{name}/…`. */
function nameIn(url: string): string {
  return url.split("/agents/")[1].split("/")[0];
}

function show(answer: Answer): string {
  return `GET ${answer.url} → ${answer.status} in ${answer.ms} ms: ${answer.body.trim()}`;
}

/**
 * Polls `check` until it reports no problem, failing with its last problem once `deadline`
 * (a `performance.now()` time) has passed.
 *
 * @returns When the condition held (`performance.now()`).
 */
async function until(
  what: string,
  deadline: number,
  check: () => Promise<string | undefined>,
): Promise<number> {
  for (;;) {
    const left = Math.max(0, deadline - performance.now());
    const problem = await withTimeout(check(), left + CALL_MS, what);
    if (problem === undefined) return performance.now();
    if (performance.now() >= deadline) {
      throw new Error(`${what}: still not so at the deadline; last: ${problem}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * What is wrong with `instance`'s `GET /agents`, given the agents that must be listed (each
 * once, with its current connection id, and no other), or `undefined` if nothing.
 */
async function listingProblem(
  instance: Instance,
  expected: Map<string, string>,
): Promise<string | undefined> {
  const answer = await get(`${instance.url}/agents`);
  if (answer.status !== 200) return `${instance.label}: ${show(answer)}`;
  const byName = new Map<string, AgentInfo[]>();
  for (const agent of JSON.parse(answer.body) as AgentInfo[]) {
    const name = String(agent.name);
    byName.set(name, [...byName.get(name) ?? [], agent]);
  }
  const problems: string[] = [];
  for (const [name, id] of expected) {
    const listed = byName.get(name) ?? [];
    if (listed.length !== 1) {
      problems.push(`${name} listed ${listed.length}× (ids ${listed.map((a) => a.id).join(", ")})`);
    } else if (listed[0].id !== id) {
      problems.push(`${name} listed with id ${listed[0].id}, its connection is ${id}`);
    }
  }
  for (const name of byName.keys()) {
    if (!expected.has(name)) problems.push(`${name} listed, not expected`);
  }
  if (problems.length === 0) return undefined;
  return `${instance.label} GET /agents: ${problems.length} problems: ${
    problems.slice(0, 6).join("; ")
  }${problems.length > 6 ? "; …" : ""}`;
}

/** Each agent's name and current connection id. */
function current(placed: Placed[]): Map<string, string> {
  return new Map(placed.map(({ name, agent }) => [name, agent.client.connection?.id ?? "none"]));
}

/** Records an agent's connection events (connects, failures, closes) from now on. */
function watch(agent: Agent): { seen: ConnectionEvent[]; stop(): Promise<void> } {
  const events = agent.client.events();
  const seen: ConnectionEvent[] = [];
  const done = (async () => {
    for await (const event of events) seen.push(event);
  })();
  return {
    seen,
    stop: async () => {
      await events.return?.();
      await withTimeout(done, STEP_MS, "the event watch to end");
    },
  };
}

function note(what: string, fields: Record<string, unknown>): void {
  if (!TIMINGS) return;
  const text = Object.entries(fields).map(([key, value]) => `${key}=${value}`).join(" ");
  console.log(`[cluster_failover ${RUNTIME}] ${what}: ${text}`);
}

/** Every agent through every instance: `GET /hello` answers 200 from the agent. */
async function everyCallWorks(instances: Instance[], placed: Placed[]): Promise<void> {
  const answers = await Promise.all(
    instances.flatMap((instance) =>
      placed.map(({ name }) => get(`${instance.url}/agents/${name}/hello`))
    ),
  );
  for (const answer of answers) {
    assert.equal(answer.status, 200, show(answer));
    assert.equal(answer.body, hello(nameIn(answer.url)), show(answer));
  }
}

/** Polls until every agent answers through every instance; returns a problem or nothing. */
async function unreachable(instances: Instance[], placed: Placed[]): Promise<string | undefined> {
  const answers = await Promise.all(
    instances.flatMap((instance) =>
      placed.map(({ name }) => get(`${instance.url}/agents/${name}/hello`))
    ),
  );
  const failing = answers.filter((answer) => answer.status !== 200);
  return failing.length === 0
    ? undefined
    : `${failing.length} calls fail, e.g. ${failing.slice(0, 3).map(show).join(" | ")}`;
}

describe("a cluster of gateway.ts processes under failure", OPTIONS, () => {
  it(
    "three instances (deno, bun, deno): a call through any reaches any agent, each lists all once",
    OPTIONS,
    async () => {
      const cluster = await startCluster(["deno", "bun", "deno"], ["--cluster-ttl", "1500"]);
      try {
        const { instances } = cluster;
        const placed = await Promise.all(
          instances.flatMap((instance, i) =>
            [0, 1].map((j) => place(cluster, `spread-${i}-${j}`, [instance]))
          ),
        );
        await everyCallWorks(instances, placed);
        // By connection id too, through every instance.
        const byId = await Promise.all(
          instances.flatMap((instance) =>
            placed.map(async ({ name, id }) => ({
              name,
              answer: await get(`${instance.url}/agents/${id.toLowerCase()}/hello`),
            }))
          ),
        );
        for (const { name, answer } of byId) {
          assert.equal(answer.status, 200, show(answer));
          assert.equal(answer.body, hello(name));
        }
        // An instance publishes its listing just after it logs the record: poll, briefly.
        const expected = current(placed);
        for (const instance of instances) {
          await until(
            `${instance.label} to list all agents once`,
            performance.now() + STEP_MS,
            () => listingProblem(instance, expected),
          );
        }
      } catch (error) {
        cluster.dump(error);
        throw error;
      } finally {
        await cluster.close();
      }
    },
  );

  it(
    "kill -9 of an instance holding 50 agents: fast 502s, all back through the survivors, listed once",
    OPTIONS,
    async () => {
      // Records live 3 s: an instance's records outlive it by 2–3 s, which covers the agents'
      // move (so that callers meanwhile get 502, not 404), and the listing heals soon after.
      const ttl = 3_000;
      const reconnectBound = 20_000;
      const cluster = await startCluster(["deno", "bun", "deno"], ["--cluster-ttl", String(ttl)]);
      try {
        const [victim, ...survivors] = cluster.instances;
        const placed = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            place(
              cluster,
              `fifty-${i}`,
              // Half of them try one survivor first, half the other.
              [victim, ...(i % 2 === 0 ? survivors : [...survivors].reverse())],
              { reconnect: RECONNECT },
            )),
        );
        for (const survivor of survivors) {
          await until(
            `${survivor.label} to list the 50`,
            performance.now() + STEP_MS,
            () => listingProblem(survivor, current(placed)),
          );
        }
        // Every survivor has called the victim already (it keeps that connection alive).
        await everyCallWorks(survivors, placed);
        const watches = placed.map(({ agent }) => watch(agent));

        const killedAt = performance.now();
        await withTimeout(victim.process.kill(), STEP_MS, "kill -9 of the victim");
        const exitedMs = Math.round(performance.now() - killedAt);

        // Right after the kill, and until each agent answers through each survivor: every call
        // answers 502 (its instance is gone) or 200 (it has moved), within a few seconds.
        const pending = new Set(
          survivors.flatMap((survivor) =>
            placed.map(({ name }) => `${survivor.url}/agents/${name}/hello`)
          ),
        );
        const statuses = new Map<number, number>();
        let firstRound: string | undefined;
        let slowest = 0;
        const reachedAt = await until(
          `the 50 agents to answer through both survivors within ${reconnectBound} ms of the kill`,
          killedAt + reconnectBound,
          async () => {
            const answers = await Promise.all([...pending].map((url) => get(url)));
            for (const answer of answers) {
              statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
              slowest = Math.max(slowest, answer.ms);
              assert.ok(
                answer.status === 200 || answer.status === 502,
                `after the kill only 502 (not moved yet) or 200 (moved) may come: ${show(answer)}`,
              );
              assert.ok(answer.ms < FAST_MS, `not fast (${FAST_MS} ms): ${show(answer)}`);
              if (answer.status === 502) {
                assert.equal(typeof JSON.parse(answer.body).error, "string", show(answer));
              } else {
                assert.equal(answer.body, hello(nameIn(answer.url)), show(answer));
                pending.delete(answer.url);
              }
            }
            const unmoved = answers.filter((answer) => answer.status === 502).length;
            const after = Math.round(performance.now() - killedAt);
            firstRound ??=
              `${unmoved} of ${answers.length} answered 502, ${after} ms after the kill`;
            return pending.size === 0 ? undefined : `${pending.size} calls not answered 200 yet`;
          },
        );
        const survivorAddrs = survivors.map((survivor) => `127.0.0.1:${survivor.port}`);
        for (const { name, agent } of placed) {
          const connection = agent.client.connection;
          assert.ok(connection && !connection.isClosed, `${name} is connected`);
          assert.ok(survivorAddrs.includes(connection.remoteAddr), `${name} on a survivor`);
        }

        // Once the victim's records have expired (its ttl after its last refresh, before the
        // kill) and the survivors have published theirs, each lists each agent once, as its
        // connection now is.
        const listBound = Math.max(killedAt + ttl, reachedAt + ttl / 3) + MARGIN_MS;
        for (const survivor of survivors) {
          await until(
            `${survivor.label} to list each of the 50 once`,
            listBound,
            () => listingProblem(survivor, current(placed)),
          );
        }
        const listedAt = performance.now();
        await Promise.all(watches.map((each) => each.stop()));
        note("kill -9 of 50 agents' instance", {
          exitedMs,
          firstRound: JSON.stringify(firstRound),
          allReachableMs: Math.round(reachedAt - killedAt),
          listedOnceMs: Math.round(listedAt - killedAt),
          statuses: JSON.stringify(Object.fromEntries(statuses)),
          slowestCallMs: slowest,
          perSurvivor: survivorAddrs.map((addr) =>
            placed.filter(({ agent }) => agent.client.connection?.remoteAddr === addr).length
          ).join("/"),
        });

        // An agent keeps its connection id when it moves (its resume token is good on every
        // instance of the cluster).
        const changed = placed.filter(({ agent, id }) => agent.client.connection?.id !== id);
        assert.equal(
          changed.length,
          0,
          `${changed.length} of 50 agents came back with a new connection id, e.g. ${
            changed.slice(0, 3).map(({ name, id, agent }, i) =>
              `${name} ${id} → ${agent.client.connection?.id} (resumed: ${
                watches[placed.indexOf(changed[i])].seen
                  .filter((event) => event.type === "ConnectionReceived")
                  .map((event) => event.resumed === true).join(",")
              })`
            ).join("; ")
          }`,
        );
      } catch (error) {
        cluster.dump(error);
        throw error;
      } finally {
        await cluster.close();
      }
    },
  );

  it(
    "SIGSTOP of an instance: callers elsewhere get 504/502 within the hop timeout, the agent moves",
    OPTIONS,
    async () => {
      const hopTimeout = 2_000;
      // Records outlive the frozen instance long enough for the first calls to find it.
      const ttl = 6_000;
      // Silence for 2.5 s fails the agent's connection: after the first calls have been made.
      const heartbeat = { interval: 500, timeout: 2_500 };
      // A Bun instance frozen, callers through a Deno and a Bun one.
      const cluster = await startCluster(["deno", "bun", "bun"], [
        "--cluster-ttl",
        String(ttl),
        "--timeout",
        String(hopTimeout),
      ]);
      try {
        const [a, frozen, c] = cluster.instances;
        const others = [a, c];
        const placed = await place(cluster, "sleepy", [frozen, c, a], {
          heartbeat,
          reconnect: RECONNECT,
        });
        await everyCallWorks(others, [placed]);
        const watching = watch(placed.agent);

        const stoppedAt = performance.now();
        cluster.freeze(frozen, true);
        // Each caller's instance, with what it answered (or why not), to say which failed.
        const during = await Promise.all(others.map(async (other) => {
          try {
            const answer = await get(`${other.url}/agents/sleepy/hello`);
            const good = (answer.status === 504 || answer.status === 502) &&
              answer.ms < hopTimeout + MARGIN_MS;
            return { good, answer, text: `${other.label}: ${show(answer)}` };
          } catch (error) {
            return { good: false, answer: undefined, text: `${other.label}: ${error}` };
          }
        }));
        assert.ok(
          during.every(({ good }) => good),
          `through each other instance, a call to the agent on the frozen one answers 504 or ` +
            `502 within the hop timeout (${hopTimeout} ms) and a margin: ` +
            during.map(({ text }) => text).join(" | "),
        );

        // The heartbeat fails, the agent dials the frozen instance first (which takes the TCP
        // connection but never answers: the dial's handshake timeout), then the next one.
        const moveBound = heartbeat.timeout + DIAL_TIMEOUT_MS + RECONNECT.maxDelay + 2 * MARGIN_MS;
        let slowest = 0;
        const movedAt = await until(
          `the agent to answer through both other instances within ${moveBound} ms`,
          stoppedAt + moveBound,
          async () => {
            const answers = await Promise.all(
              others.map((other) => get(`${other.url}/agents/sleepy/hello`)),
            );
            for (const answer of answers) {
              slowest = Math.max(slowest, answer.ms);
              assert.ok(answer.ms < hopTimeout + MARGIN_MS, `no hang: ${show(answer)}`);
            }
            const failing = answers.filter((answer) => answer.status !== 200);
            return failing.length === 0 ? undefined : failing.map(show).join(" | ");
          },
        );
        const moved = placed.agent.client.connection!;
        assert.ok(!moved.isClosed, "the agent is connected");
        assert.ok(
          others.some((other) => moved.remoteAddr === `127.0.0.1:${other.port}`),
          `the agent moved to another instance (it is on ${moved.remoteAddr})`,
        );

        // Thawed, the instance gives up its stale connection: calls through it work too, and
        // the moved agent is left alone.
        cluster.freeze(frozen, false);
        const thawedAt = performance.now();
        const healedAt = await until(
          "the thawed instance to reach the agent where it is now",
          thawedAt + ttl / 3 + 2 * MARGIN_MS,
          async () => {
            const answer = await get(`${frozen.url}/agents/sleepy/hello`);
            assert.ok(answer.ms < hopTimeout + MARGIN_MS, `no hang: ${show(answer)}`);
            return answer.status === 200 ? undefined : show(answer);
          },
        );
        await everyCallWorks(cluster.instances, [placed]);
        assert.equal(placed.agent.client.connection, moved, "the thawed instance left it alone");
        assert.ok(!moved.isClosed);
        await watching.stop();
        note("SIGSTOP", {
          firstCalls: during.map(({ answer }) => `${answer?.status}/${answer?.ms}ms`).join(","),
          movedMs: Math.round(movedAt - stoppedAt),
          slowestCallMs: slowest,
          healedAfterThawMs: Math.round(healedAt - thawedAt),
        });

        // It kept its connection id.
        assert.equal(
          moved.id,
          placed.id,
          `the agent came back with a new connection id (${placed.id} → ${moved.id}; resumed: ${
            watching.seen.filter((event) => event.type === "ConnectionReceived")
              .map((event) => event.resumed === true).join(",")
          })`,
        );
      } catch (error) {
        cluster.dump(error);
        throw error;
      } finally {
        await cluster.close();
      }
    },
  );

  for (const disruption of ["flushed (FLUSHALL)", "restarted empty"] as const) {
    it(
      `Redis ${disruption} under running gateways: ownership rebuilt within a refresh, no agent disturbed`,
      OPTIONS,
      async () => {
        const ttl = 1_500;
        const cluster = await startCluster(["deno", "bun", "deno"], ["--cluster-ttl", String(ttl)]);
        try {
          const { instances, redis } = cluster;
          // Two agents per instance: the steady ones are called through every instance now,
          // the cold ones not before the outage (so that no instance remembers their owner).
          const steady = await Promise.all(
            instances.map((instance, i) => place(cluster, `steady-${i}`, [instance])),
          );
          const cold = await Promise.all(
            instances.map((instance, i) => place(cluster, `cold-${i}`, [instance])),
          );
          const placed = [...steady, ...cold];
          await everyCallWorks(instances, steady);
          for (const instance of instances) {
            await until(
              `${instance.label} to list all agents`,
              performance.now() + STEP_MS,
              () => listingProblem(instance, current(placed)),
            );
          }
          const connections = placed.map(({ agent }) => agent.client.connection!);
          const watches = placed.map(({ agent }) => watch(agent));

          let disruptedAt: number;
          let bound: number;
          const outage: Record<string, unknown> = {};
          if (disruption === "flushed (FLUSHALL)") {
            const client = await withTimeout(connectRedis(redis), STEP_MS, "a Redis client");
            try {
              assert.equal(await client.sendCommand(["FLUSHALL"]), "OK");
            } finally {
              client.destroy();
            }
            disruptedAt = performance.now();
            bound = ttl / 3 + MARGIN_MS;
          } else {
            await redis.stop();
            // During the outage: calls to the agents here work; one to an agent elsewhere whose
            // owner this instance has not looked up lately fails fast with a clear error (the
            // gateways would wait 30 s for an agent); one to an agent looked up a moment ago
            // may still go through (200) or fail so; the list is 503.
            const statuses: string[] = [];
            let slowest = 0;
            for (const [i, instance] of instances.entries()) {
              const through = (name: string) => get(`${instance.url}/agents/${name}/hello`);
              for (const name of [`steady-${i}`, `cold-${i}`]) {
                const here = await through(name);
                assert.equal(here.status, 200, show(here));
                assert.equal(here.body, hello(name));
              }
              const elsewhere = placed.filter(({ name }) => !name.endsWith(`-${i}`));
              const answers = await Promise.all(elsewhere.map(({ name }) => through(name)));
              answers.forEach((answer, j) => {
                const known = elsewhere[j].name.startsWith("steady-");
                slowest = Math.max(slowest, answer.ms);
                statuses.push(`${elsewhere[j].name}@${i}:${answer.status}`);
                assert.ok(answer.ms < FAST_MS, `fast: ${show(answer)}`);
                if (known && answer.status === 200) {
                  assert.equal(answer.body, hello(elsewhere[j].name));
                  return;
                }
                assert.equal(answer.status, 502, show(answer));
                assert.equal(JSON.parse(answer.body).error, "cluster_unavailable", show(answer));
              });
              const list = await get(`${instance.url}/agents`);
              assert.equal(list.status, 503, show(list));
              assert.equal(JSON.parse(list.body).error, "cluster_unavailable", show(list));
            }
            outage.forwardedDuringOutage = statuses.join(",");
            outage.slowestForwardMs = slowest;
            await redis.restart();
            disruptedAt = performance.now();
            // The gateways' clients reconnect within their backoff, then refresh.
            bound = REDIS_RETRY_MS + ttl / 3 + MARGIN_MS;
          }

          // Rebuilt by each instance's own refresh: calls through every instance to every agent
          // first (they do not refresh the owner's records), then the lists.
          const rebuiltAt = await until(
            `every agent reachable through every instance within ${bound} ms`,
            disruptedAt + bound,
            () => unreachable(instances, placed),
          );
          for (const instance of instances) {
            await until(
              `${instance.label} to list every agent once`,
              disruptedAt + bound,
              () => listingProblem(instance, current(placed)),
            );
          }
          const listedAt = performance.now();
          await Promise.all(watches.map((each) => each.stop()));
          note(`Redis ${disruption}`, {
            rebuiltMs: Math.round(rebuiltAt - disruptedAt),
            listedMs: Math.round(listedAt - disruptedAt),
            boundMs: bound,
            ...outage,
          });

          // No agent noticed: same connections, open, not one event.
          placed.forEach(({ name, agent, id }, i) => {
            assert.equal(agent.client.connection, connections[i], `${name} kept its connection`);
            assert.equal(agent.client.connection!.id, id);
            assert.ok(!connections[i].isClosed, `${name} is still connected`);
            assert.deepEqual(
              watches[i].seen.map((event) => `${event.type} ${event.connectionId}`),
              [],
              `${name} saw no disconnect`,
            );
          });
          for (const instance of instances) {
            const taken = instance.process.lines.filter((line) => /taken by another/.test(line));
            assert.deepEqual(taken, [], `${instance.label} closed no agent`);
          }
        } catch (error) {
          cluster.dump(error);
          throw error;
        } finally {
          await cluster.close();
        }
      },
    );
  }
});
