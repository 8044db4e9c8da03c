/**
 * The HTTP caller of the process benchmarks (`bench/cluster.ts`, `bench/gateway.ts`): one
 * request at a time for latency, many at once for throughput, each answer checked, with the
 * CPU time the named processes spent meanwhile (Linux: `/proc/{pid}/stat`).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { now, quantile } from "./_common.ts";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface LatencyResult {
  n: number;
  errors: number;
  p50: number;
  p99: number;
}
export interface ThroughputResult extends LatencyResult {
  rps: number;
  /** CPU µs per request of each process (Linux: `/proc/{pid}/stat`), when readable. */
  cpu: Record<string, number>;
  /** The kernel's share (0–1) of each process's CPU time over the phase. */
  sys: Record<string, number>;
  /** CPUs busy on average over the phase, all those processes together. */
  busy: number;
}

/** Clock ticks per second of `/proc/{pid}/stat` (`getconf CLK_TCK`; 100 on Linux), read once. */
let clockTicks: number | undefined;

/** A process's CPU time so far, ms, in all and in the kernel (`NaN` where `/proc` cannot tell). */
export function cpuSplit(pid: number | undefined): { total: number; sys: number } {
  if (pid === undefined) return { total: NaN, sys: NaN };
  if (clockTicks === undefined) {
    const ticks = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout);
    clockTicks = ticks > 0 ? ticks : 100;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After "pid (comm) ": state is field 3, utime 14 and stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const sys = Number(fields[12]) * 1000 / clockTicks;
    return { total: Number(fields[11]) * 1000 / clockTicks + sys, sys };
  } catch {
    return { total: NaN, sys: NaN };
  }
}

let firstError: string | undefined;

/** The first failure noted since the last call, and forgets it. */
export function takeFirstError(): string | undefined {
  const error = firstError;
  firstError = undefined;
  return error;
}

/** Notes a failed request (the first one is reported). */
export function noteError(error: unknown): void {
  firstError ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** One request; resolves with its milliseconds, head to the end of the body. */
export async function once(url: string, body: string): Promise<number> {
  const started = now();
  let response: Response;
  let text: string;
  try {
    response = await fetch(url);
    text = await response.text();
  } catch (error) {
    // The URL says which scenario failed (a port each).
    const { name, message } = error as Error;
    throw new Error(`GET ${url}: ${name}: ${message}`, { cause: error });
  }
  const ms = now() - started;
  if (response.status !== 200 || text !== body) {
    throw new Error(`GET ${url}: ${response.status} ${text.slice(0, 200)}`);
  }
  return ms;
}

/** Fails if `work` outlasts `ms` (a hang reports itself instead of waiting for the watchdog). */
export function guarded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Calls `url` one request after another until `end`, keeping latencies; returns the failures. */
async function callUntil(
  url: string,
  body: string,
  end: number,
  latencies: number[],
): Promise<number> {
  let errors = 0;
  while (now() < end) {
    try {
      latencies.push(await once(url, body));
    } catch (error) {
      errors++;
      noteError(error);
    }
  }
  return errors;
}

export async function sequential(url: string, body: string, ms: number): Promise<LatencyResult> {
  const latencies: number[] = [];
  const errors = await callUntil(url, body, now() + ms, latencies);
  return {
    n: latencies.length,
    errors,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  };
}

export async function concurrent(
  url: string,
  body: string,
  ms: number,
  callers: number,
  pids: Record<string, number | undefined>,
): Promise<ThroughputResult> {
  const latencies: number[] = [];
  const cpuBefore = Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => [name, cpuSplit(pid)]),
  );
  const started = now();
  const end = started + ms;
  const failures = await Promise.all(
    Array.from({ length: callers }, () => callUntil(url, body, end, latencies)),
  );
  const errors = failures.reduce((sum, n) => sum + n, 0);
  const elapsed = now() - started;
  const cpu: Record<string, number> = {};
  const sys: Record<string, number> = {};
  let busyMs = 0;
  for (const [name, pid] of Object.entries(pids)) {
    const after = cpuSplit(pid);
    const used = after.total - cpuBefore[name].total;
    cpu[name] = used * 1000 / Math.max(1, latencies.length);
    sys[name] = (after.sys - cpuBefore[name].sys) / used;
    busyMs += used;
  }
  return {
    n: latencies.length,
    errors,
    rps: latencies.length / (elapsed / 1000),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    cpu,
    sys,
    busy: busyMs / elapsed,
  };
}
