/**
 * Faults over real sockets: an abrupt TCP reset in the middle of a streamed body on each
 * side (the reader errors; a truncated body never looks complete), and a server process
 * killed with SIGKILL and restarted on the same port under 50 agents in another process
 * (all reconnect, spread by jitter; every process then exits by itself).
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { type Connection, ConnectionClosedError } from "../mod.ts";
import { BUN_BIN, DENO_BIN, ROOT_DIR, RUNTIME, withTimeout } from "./_helpers.ts";
import { type ProxiedPair, startProxiedPair } from "./_proxy.ts";
import { patternStream } from "./fixtures/_common.ts";
import { LINGERED_EXIT_CODE } from "./fixtures/_stop.ts";

const GUARD = 20_000;
const T = { timeout: 60_000 };
/** Far more than is read before the reset: the stream must never get to its end. */
const BODY_BYTES = 64 * 1024 * 1024;
/** Bytes read before the network is cut. */
const CUT_AFTER = 512 * 1024;

/**
 * Reads `body` until `CUT_AFTER` bytes have arrived, calls `cut()`, and keeps reading.
 * Resolves with what happened: the bytes read and how the reading ended.
 */
async function readAcrossCut(
  body: ReadableStream<Uint8Array>,
  cut: () => void,
): Promise<{ bytes: number; ended: "done" | "error"; error?: unknown }> {
  const reader = body.getReader();
  let bytes = 0;
  let didCut = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { bytes, ended: "done" };
      bytes += value.byteLength;
      if (!didCut && bytes >= CUT_AFTER) {
        didCut = true;
        cut();
      }
    }
  } catch (error) {
    return { bytes, ended: "error", error };
  }
}

function assertCutShort(
  outcome: { bytes: number; ended: string; error?: unknown },
  what: string,
): void {
  assert.equal(outcome.ended, "error", `${what}: the body must error, not end`);
  assert.ok(outcome.bytes >= CUT_AFTER, `${what}: read ${outcome.bytes} bytes before the cut`);
  assert.ok(outcome.bytes < BODY_BYTES, `${what}: the body cannot be complete`);
  assert.ok(outcome.error instanceof Error, `${what}: error ${outcome.error}`);
}

describe("TCP reset in the middle of a streamed body", () => {
  let pair: ProxiedPair | undefined;

  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  const SIDES = [
    { reader: "the server", requester: (p: ProxiedPair) => p.serverSide },
    { reader: "the agent", requester: (p: ProxiedPair) => p.clientSide },
  ];

  for (const side of SIDES) {
    it(
      `Response body read by ${side.reader} errors when the TCP connection is reset mid-stream`,
      T,
      async () => {
        pair = await startProxiedPair({ keepAlive: false }, { keepAlive: false });
        const requester: Connection = side.requester(pair);
        const responder = requester === pair.serverSide ? pair.clientSide : pair.serverSide;
        const handlerAborted = Promise.withResolvers<unknown>();
        responder.serve((request) => {
          request.signal.addEventListener(
            "abort",
            () => handlerAborted.resolve(request.signal.reason),
          );
          return new Response(patternStream(BODY_BYTES));
        });
        const response = await withTimeout(requester.fetch("/download"), GUARD, "the response");
        assert.equal(response.status, 200);
        const p = pair;
        const outcome = await withTimeout(
          readAcrossCut(response.body!, () => p.proxy.resetAll()),
          GUARD,
          "the body to end after the reset",
        );
        assertCutShort(outcome, `response body read by ${side.reader}`);
        assert.ok(outcome.error instanceof ConnectionClosedError, `error: ${outcome.error}`);
        await withTimeout(handlerAborted.promise, GUARD, "the responder's request.signal to abort");
        await withTimeout(requester.closed, GUARD, "the requester's connection to end");
        await withTimeout(responder.closed, GUARD, "the responder's connection to end");
      },
    );

    it(
      `Request body read by a handler errors when the TCP connection is reset mid-stream (sent by ${side.reader})`,
      T,
      async () => {
        pair = await startProxiedPair({ keepAlive: false }, { keepAlive: false });
        const requester: Connection = side.requester(pair);
        const responder = requester === pair.serverSide ? pair.clientSide : pair.serverSide;
        const p = pair;
        const handlerOutcome = Promise.withResolvers<Awaited<ReturnType<typeof readAcrossCut>>>();
        responder.serve(async (request) => {
          handlerOutcome.resolve(await readAcrossCut(request.body!, () => p.proxy.resetAll()));
          return new Response("the handler must not see a complete body");
        });
        const fetching = Promise.allSettled([
          requester.fetch("/upload", {
            method: "POST",
            body: patternStream(BODY_BYTES),
            duplex: "half",
          } as RequestInit),
        ]);
        const outcome = await withTimeout(
          handlerOutcome.promise,
          GUARD,
          "the handler's body to end after the reset",
        );
        assertCutShort(outcome, "request body read by the handler");
        const [fetched] = await withTimeout(fetching, GUARD, "the upload's fetch to settle");
        assert.equal(fetched.status, "rejected", "the upload cannot succeed");
        assert.ok((fetched as PromiseRejectedResult).reason instanceof ConnectionClosedError);
      },
    );
  }
});

/** A fixture subprocess of this suite's runtime, with line waits and signals. */
interface Proc {
  readonly lines: string[];
  /** Resolves when some line satisfies `test` (looking at the lines printed so far too). */
  until(what: string, test: (lines: string[]) => boolean, ms?: number): Promise<void>;
  /** The first match of `pattern`, waiting for it. */
  match(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  signal(name: "SIGTERM" | "SIGKILL"): void;
}

function run(script: string, args: string[]): Proc {
  const path = new URL(script, new URL("../", import.meta.url)).pathname;
  const command = RUNTIME === "deno" ? DENO_BIN : BUN_BIN;
  const argv = RUNTIME === "deno"
    ? ["run", "-A", "--quiet", path, ...args]
    : ["run", path, ...args];
  const child = spawn(command, argv, {
    cwd: ROOT_DIR,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: string[] = [];
  const checks = new Set<() => void>();
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
    for (const check of [...checks]) check();
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal }))
  );
  let ended = false;
  exited.then(() => {
    ended = true;
    for (const check of [...checks]) check();
  });
  const until = (what: string, test: (lines: string[]) => boolean, ms = GUARD): Promise<void> =>
    withTimeout(
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (test(lines)) {
            checks.delete(check);
            resolve();
          } else if (ended) {
            checks.delete(check);
            reject(new Error(`${script} ended before ${what}`));
          }
        };
        checks.add(check);
        check();
      }),
      ms,
      `${script}: ${what}`,
    );
  return {
    lines,
    until,
    async match(pattern, ms) {
      let found: RegExpMatchArray | null = null;
      await until(String(pattern), (all) => {
        for (const line of all) if ((found = line.match(pattern))) return true;
        return false;
      }, ms);
      return found!;
    },
    exited,
    signal(name) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // Deno's `child.kill("SIGTERM")` makes the child report "killed by SIGTERM" even when it
      // handled the signal and exited 0; signalling the pid directly keeps the real status.
      if (name === "SIGTERM") process.kill(child.pid!, name);
      else child.kill(name);
    },
  };
}

function parsed(lines: string[], kind: string): string[][] {
  return lines.filter((line) => line.startsWith(`${kind} `)).map((line) => line.split(" "));
}

describe("Server killed and restarted with 50 agents connected", () => {
  const procs: Proc[] = [];

  afterEach(async () => {
    for (const proc of procs.splice(0)) {
      proc.signal("SIGKILL");
      await withTimeout(proc.exited, GUARD, "a fixture to die").catch(() => {});
    }
  });

  it(
    "WebSocketClient agents all reconnect to a restarted server, spread by jitter, and every process exits cleanly",
    T,
    async () => {
      const AGENTS = 50;
      const first = run("tests/fixtures/restart_server.ts", []);
      procs.push(first);
      const port = (await first.match(/^listening (\d+)$/))[1];
      const agents = run("tests/fixtures/many_agents.ts", [
        "--url",
        `ws://127.0.0.1:${port}`,
        "--count",
        String(AGENTS),
      ]);
      procs.push(agents);
      await agents.until("all agents connected", (l) => l.includes("all-connected"), 40_000);
      await first.until(`${AGENTS} connections`, (l) => l.includes(`connections ${AGENTS}`));

      first.signal("SIGKILL");
      const killed = await withTimeout(first.exited, GUARD, "the killed server to end");
      assert.equal(killed.signal, "SIGKILL");

      // Let every agent fall a few attempts behind, so that each waits a jittered 400–1000 ms
      // between attempts when the server comes back (the jitter is what spreads them).
      await agents.until("every agent to have failed 3 reconnect attempts", (l) => {
        const attempts = new Map<string, number>();
        for (const [, i, attempt] of parsed(l, "attempt-failed")) {
          attempts.set(i, Math.max(attempts.get(i) ?? 0, Number(attempt)));
        }
        return attempts.size === AGENTS && [...attempts.values()].every((n) => n >= 3);
      }, 40_000);
      const restartedAt = agents.lines.length;
      const second = run("tests/fixtures/restart_server.ts", ["--port", port]);
      procs.push(second);
      await second.match(/^listening (\d+)$/);
      await agents.until(
        `${AGENTS} reconnects`,
        (l) => new Set(parsed(l, "reconnected").map(([, i]) => i)).size === AGENTS,
        40_000,
      );
      await second.until(`${AGENTS} connections`, (l) => l.includes(`connections ${AGENTS}`));

      const reconnects = parsed(agents.lines, "reconnected");
      assert.equal(reconnects.length, AGENTS, "each agent reconnected exactly once");
      assert.ok(agents.lines.indexOf(reconnects[0].join(" ")) >= restartedAt);
      for (const [, , , , resumed] of reconnects) {
        assert.equal(resumed, "false", "a restarted server knows no resume tokens");
      }
      const times = reconnects.map(([, , , t]) => Number(t)).sort((a, b) => a - b);
      const spread = times[times.length - 1] - times[0];
      // The densest 50 ms: with jitter 0 the agents retry in lockstep and all land in one burst.
      let densest = 0;
      for (let a = 0, b = 0; b < times.length; b++) {
        while (times[b] - times[a] > 50) a++;
        densest = Math.max(densest, b - a + 1);
      }
      assert.ok(spread > 250, `reconnects spread over only ${spread} ms`);
      assert.ok(densest <= AGENTS * 0.6, `${densest} of ${AGENTS} reconnects within 50 ms`);

      // Told to stop, each process must end by itself with code 0 (no leaked timer or socket).
      agents.signal("SIGTERM");
      const agentsExit = await withTimeout(agents.exited, GUARD, "the agents process to exit");
      assert.notEqual(agentsExit.code, LINGERED_EXIT_CODE, "the agents process lingered");
      assert.deepEqual(agentsExit, { code: 0, signal: null }, agents.lines.slice(-5).join("\n"));
      assert.ok(agents.lines.includes("stopped"));
      second.signal("SIGTERM");
      const serverExit = await withTimeout(second.exited, GUARD, "the server process to exit");
      assert.notEqual(serverExit.code, LINGERED_EXIT_CODE, "the server process lingered");
      assert.deepEqual(serverExit, { code: 0, signal: null }, second.lines.slice(-5).join("\n"));
      assert.ok(second.lines.includes("stopped"));
    },
  );
});
