/**
 * Debian's `python3-httpbin` under `gunicorn` on a free loopback port: a real, independent
 * HTTP server to compare the gateway against (redirects, cookies, gzip, streams). Started
 * with `node:child_process`, so it runs under Deno and Bun.
 *
 * CI installs it (`.ci/run`); elsewhere the tests that need it skip, saying why
 * ({@linkcode httpbinMissing}).
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import process from "node:process";
import { withTimeout } from "./_helpers.ts";

const GUNICORN = "/usr/bin/gunicorn";
const PYTHON = "/usr/bin/python3";
/** Bounds gunicorn's start: booting a worker imports Flask. */
const START_MS = 20_000;

/** A running httpbin. */
export interface Httpbin {
  /** Its origin, e.g. `http://127.0.0.1:40123`. */
  url: string;
  port: number;
  /** Stops gunicorn (and its workers) and waits for it to exit. */
  close(): Promise<void>;
}

let missing: string | false | undefined;

/**
 * Why httpbin cannot run here, or `false` when it can: the reason for a test's `skip`.
 *
 * @returns The reason, or `false`.
 */
export function httpbinMissing(): string | false {
  if (missing !== undefined) return missing;
  if (!existsSync(GUNICORN)) {
    missing = `${GUNICORN} is missing (apt-get install gunicorn python3-httpbin)`;
  } else if (spawnSync(PYTHON, ["-c", "import httpbin"], { stdio: "ignore" }).status !== 0) {
    missing = `${PYTHON} cannot import httpbin (apt-get install python3-httpbin)`;
  } else {
    missing = false;
  }
  return missing;
}

/** A port that was free a moment ago (gunicorn binds it itself; a race is retried). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `GET /get` until it answers 200, gunicorn exits, or `deadline` passes. */
async function waitReady(url: string, exited: Promise<unknown>, deadline: number): Promise<void> {
  let gone = false;
  exited.then(() => gone = true);
  while (!gone) {
    try {
      const response = await fetch(`${url}/get`, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // Not listening yet, or the worker is still booting.
    }
    if (Date.now() > deadline) throw new Error(`httpbin did not answer at ${url} in time`);
    // Paces the poll; readiness itself is the answer above.
    await Promise.race([new Promise((resolve) => setTimeout(resolve, 100)), exited]);
  }
  throw new Error(`gunicorn exited before httpbin answered at ${url}`);
}

async function startOnce(): Promise<Httpbin> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(GUNICORN, [
    "--bind",
    `127.0.0.1:${port}`,
    // Threads: the gateway's agent and the test may hold connections at the same time.
    "--threads",
    "8",
    "--log-level",
    "warning",
    "httpbin:app",
  ], {
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr += text;
    // gunicorn retries a taken port for 5 s; the caller retries sooner with another port.
    if (stderr.includes("Connection in use")) child.kill("SIGKILL");
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const close = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // SIGINT is gunicorn's quick shutdown: it does not wait for keep-alive connections.
    child.kill("SIGINT");
    await withTimeout(exited, 5_000, "gunicorn to stop").catch(() => {
      child.kill("SIGKILL");
      return exited;
    });
  };
  try {
    await waitReady(url, exited, Date.now() + START_MS);
  } catch (error) {
    await close();
    throw new Error(`${(error as Error).message}\n${stderr}`);
  }
  return { url, port, close };
}

/**
 * Starts httpbin on 127.0.0.1 at a free port and waits until it answers.
 *
 * @returns The running httpbin.
 * @throws {Error} If it does not answer within 20 s (twice, on two ports).
 */
export async function startHttpbin(): Promise<Httpbin> {
  try {
    return await startOnce();
  } catch {
    return await startOnce();
  }
}
