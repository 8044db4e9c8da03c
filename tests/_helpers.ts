/**
 * Shared test helpers: runtime facts, bounded waits, a connected server/client pair,
 * and subprocess fixtures for cross-runtime tests.
 *
 * @module
 */

import { spawn } from "node:child_process";
import {
  type Connection,
  type ConnectionEvent,
  EventType,
  WebSocketClient,
  type WebSocketClientOptions,
  WebSocketServer,
  type WebSocketServerOptions,
} from "../mod.ts";

/** Whether the suite runs under Bun (otherwise Deno). */
export const IS_BUN: boolean = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
/** Whether the suite runs under Deno. */
export const IS_DENO: boolean = !IS_BUN &&
  typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
/** This runtime's name. */
export const RUNTIME: "bun" | "deno" = IS_BUN ? "bun" : "deno";

const ROOT = new URL("../", import.meta.url);
/** Path of the pinned Deno binary. */
export const DENO_BIN: string = new URL("node_modules/.bin/deno", ROOT).pathname;
/** Path of the pinned Bun binary. */
export const BUN_BIN: string = new URL("node_modules/.bin/bun", ROOT).pathname;
/** The repository root as a path. */
export const ROOT_DIR: string = ROOT.pathname;

/**
 * Waits for `promise`, failing with a clear message after `ms` (a guard, not a sleep).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Waits for the next event of `type` from an event subscription. */
export async function nextEvent(
  events: AsyncIterableIterator<ConnectionEvent>,
  type: EventType,
  ms = 10_000,
): Promise<ConnectionEvent> {
  return await withTimeout(
    (async () => {
      for (;;) {
        const { value, done } = await events.next();
        if (done) throw new Error(`Event stream ended before ${type}`);
        if (value.type === type) return value;
      }
    })(),
    ms,
    `waiting for ${type}`,
  );
}

/** Waits for the first event that matches `predicate`, failing after `ms` (a guard). */
export async function eventWhere(
  events: AsyncIterableIterator<ConnectionEvent>,
  predicate: (event: ConnectionEvent) => boolean,
  what: string,
  ms = 15_000,
): Promise<ConnectionEvent> {
  return await withTimeout(
    (async () => {
      for (;;) {
        const { value, done } = await events.next();
        if (done) throw new Error(`Event stream ended before ${what}`);
        if (predicate(value)) return value;
      }
    })(),
    ms,
    what,
  );
}

/**
 * Resolves once `server` holds connection `id` open. A client's end of the handshake
 * completes first, so `events` must have been subscribed before the client could finish.
 */
export async function held(
  server: WebSocketServer,
  id: string,
  events: AsyncIterableIterator<ConnectionEvent>,
  ms = 30_000,
): Promise<void> {
  if (server.connection(id)) return;
  await eventWhere(
    events,
    (event) => event.type === EventType.ConnectionReceived && event.connectionId === id,
    `the server to hold ${id}`,
    ms,
  );
}

/** {@linkcode held}, subscribing now: for a client that is known to be connected already. */
export async function serverHolds(server: WebSocketServer, id: string, ms = 30_000): Promise<void> {
  const events = server.events();
  try {
    await held(server, id, events, ms);
  } finally {
    await events.return?.();
  }
}

/** Cleanups, run in reverse order by `run()`, each bounded, none skipped. */
export function cleanups(): { add(step: () => Promise<unknown>): void; run(): Promise<void> } {
  let steps: (() => Promise<unknown>)[] = [];
  return {
    add(step) {
      steps.push(step);
    },
    async run() {
      const pending = steps.reverse();
      steps = [];
      for (const step of pending) {
        await withTimeout(step(), 20_000, "cleanup").catch((error) => {
          console.error("cleanup failed:", error);
        });
      }
    },
  };
}

/** Waits for the next event of `type` about connection `id`, skipping events about others. */
export async function eventFor(
  events: AsyncIterableIterator<ConnectionEvent>,
  type: EventType,
  id: string,
  ms = 10_000,
): Promise<ConnectionEvent> {
  const deadline = Date.now() + ms;
  for (;;) {
    const event = await nextEvent(events, type, Math.max(1, deadline - Date.now()));
    if (event.connectionId === id) return event;
  }
}

/** A server and a connected client, with both ends' connections. */
export interface Pair {
  server: WebSocketServer;
  client: WebSocketClient;
  /** The server's end of the connection. */
  serverSide: Connection;
  /** The client's end of the connection. */
  clientSide: Connection;
  /** The server's `ws://` URL. */
  url: string;
  /** Closes client and server. */
  close(): Promise<void>;
}

/**
 * Starts a server on 127.0.0.1:0 and connects one client to it.
 */
export async function startPair(
  serverOptions: WebSocketServerOptions = {},
  clientOptions: Partial<WebSocketClientOptions> = {},
  metadata: unknown = { name: "test-agent" },
): Promise<Pair> {
  const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0, ...serverOptions });
  const events = server.events();
  const url = `ws://127.0.0.1:${server.addr.port}`;
  const client = new WebSocketClient({ url, ...clientOptions }).withMetadata(metadata);
  const clientSide = await withTimeout(client.connect(), 10_000, "client.connect()");
  const received = await nextEvent(events, EventType.ConnectionReceived);
  await events.return?.();
  return {
    server,
    client,
    serverSide: received.connection!,
    clientSide,
    url,
    close: async () => {
      await withTimeout(client.close(), 10_000, "client.close()");
      await withTimeout(server.close(), 15_000, "server.close()");
    },
  };
}

/** A child process that prints lines on stdout and takes line commands on stdin. */
export interface LineProcess {
  /** Lines printed on stdout so far. */
  lines: string[];
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** Writes one command line to its stdin. */
  send(line: string): void;
  /** Sends the process a signal, if it is still running. */
  signal(signal: "SIGTERM" | "SIGINT" | "SIGHUP"): void;
  /** Closes its stdin. */
  end(): void;
  /** Resolves with the exit code when the process has ended. */
  exited: Promise<number | null>;
  /** Kills the process (SIGKILL) if it still runs, and waits for it to end. */
  kill(): Promise<void>;
}

/** A subprocess started by {@linkcode spawnFixture}. */
export type Fixture = LineProcess;

/**
 * Runs a script under Deno or Bun as a child process (cross-runtime tests).
 * Deno runs with `-A` and the repository's deno.json.
 */
export function spawnFixture(
  runtime: "deno" | "bun",
  script: string,
  args: string[] = [],
): Fixture {
  const path = new URL(script, ROOT).pathname;
  const argv = runtime === "deno"
    ? ["run", "-A", "--quiet", path, ...args]
    : ["run", path, ...args];
  return spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, script);
}

/**
 * Starts `command` with `argv`; stdin is a pipe for line commands, stderr is inherited.
 *
 * @param command The executable.
 * @param argv Its arguments.
 * @param name What error messages call it.
 * @param env Environment variables to add.
 * @returns The running process.
 */
export function spawnLines(
  command: string,
  argv: string[],
  name: string,
  env: Record<string, string> = {},
): LineProcess {
  const child = spawn(command, argv, {
    cwd: ROOT_DIR,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (match: RegExpMatchArray) => void }[] = [];
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) !== -1) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      lines.push(line);
      for (const waiter of [...waiters]) {
        const match = line.match(waiter.pattern);
        if (match) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
    }
  });
  // A write to a child that has gone must not crash the test process.
  child.stdin!.on("error", () => {});
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(code))
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    lines,
    waitFor(pattern, ms = 30_000) {
      for (const line of lines) {
        const match = line.match(pattern);
        if (match) return Promise.resolve(match);
      }
      return withTimeout(
        Promise.race([
          new Promise<RegExpMatchArray>((resolve) => waiters.push({ pattern, resolve })),
          exited.then((code) => {
            throw new Error(`${name} exited with ${code} before printing ${pattern}`);
          }),
        ]),
        ms,
        `${name} to print ${pattern}`,
      );
    },
    send(line) {
      if (running()) child.stdin!.write(`${line}\n`);
    },
    signal(signal) {
      // Not child.kill(): Deno then reports the exit as by that signal (code null), even
      // when the child handles it and exits with a code of its own.
      if (running()) process.kill(child.pid!, signal);
    },
    end() {
      if (running()) child.stdin!.end();
    },
    exited,
    async kill() {
      if (running()) child.kill("SIGKILL");
      await exited;
    },
  };
}
