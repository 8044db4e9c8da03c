/**
 * The child processes of the process benchmarks (`bench/cluster.ts`, `bench/gateway.ts`):
 * started with their output kept, awaited on a condition, stopped gracefully, or all killed
 * at once by a watchdog or a signal.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { now, sleep } from "./_common.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/.bin/deno`;
const BUN = `${ROOT}node_modules/.bin/bun`;

/** A child process with its output kept (the last 8 KB of each stream). */
export interface Child {
  name: string;
  process: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
  running(): boolean;
}

const children = new Set<Child>();

/** The children started and not stopped yet. */
export function launched(): Child[] {
  return [...children];
}

/** Starts `command` in the repository root, its output kept. */
export function launch(
  name: string,
  command: string,
  argv: string[],
  env: Record<string, string> = {},
): Child {
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const entry: Child = {
    name,
    process: child,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.on("close", (code) => resolve(code))),
    running: () => child.exitCode === null && child.signalCode === null,
  };
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => entry.stdout = (entry.stdout + chunk).slice(-8192));
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => entry.stderr = (entry.stderr + chunk).slice(-8192));
  child.stdin!.on("error", () => {});
  children.add(entry);
  return entry;
}

/**
 * Runs a script of this repository under `runtime`, with the runtime's own `flags` (such as
 * `--cpu-prof`) and `env` added.
 */
export function launchScript(
  name: string,
  runtime: "deno" | "bun",
  script: string,
  argv: string[],
  options: { env?: Record<string, string>; flags?: string[] } = {},
): Child {
  const flags = options.flags ?? [];
  return runtime === "deno"
    ? launch(name, DENO, ["run", "-A", "--quiet", ...flags, script, ...argv], options.env)
    : launch(name, BUN, [...flags, "run", script, ...argv], options.env);
}

/**
 * The runtime flags that write `name`'s CPU profiles into a sub-directory of `dir` of its own
 * (made here): none without a `dir`. Such a child must be stopped gracefully (by
 * {@linkcode stopChild} with a long grace) for its profile to be written.
 */
export function cpuProfileFlags(dir: string | undefined, name: string): string[] {
  if (dir === undefined) return [];
  const into = join(dir, name.replace(/[^A-Za-z0-9_-]+/g, "-"));
  mkdirSync(into, { recursive: true });
  return ["--cpu-prof", `--cpu-prof-dir=${into}`];
}

/** Waits until `check` is true, failing if `child` exits or `ms` pass. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms: number,
  child?: Child,
): Promise<void> {
  const deadline = now() + ms;
  for (;;) {
    if (await check()) return;
    if (child && !child.running()) {
      throw new Error(`${child.name} exited before ${what}:\n${child.stdout}\n${child.stderr}`);
    }
    if (now() > deadline) {
      const output = child ? `:\n${child.stdout}\n${child.stderr}` : "";
      throw new Error(`no ${what} within ${ms} ms${output}`);
    }
    await sleep(50);
  }
}

/** Stops a child: closes its stdin, sends `signal`, and SIGKILL after `graceMs`. */
export async function stopChild(
  child: Child,
  signal: "SIGTERM" | "SIGINT",
  graceMs: number,
): Promise<void> {
  if (child.running()) {
    child.process.stdin!.end();
    child.process.kill(signal);
    const timer = setTimeout(() => child.process.kill("SIGKILL"), graceMs);
    await child.exited;
    clearTimeout(timer);
  }
  children.delete(child);
}

/** Kills whatever is left at once (the watchdog, a signal, an exit). */
export function killAll(): void {
  for (const child of children) {
    if (child.running()) child.process.kill("SIGKILL");
  }
  children.clear();
}
