/**
 * Shared by the benchmark's processes: argument parsing, the watchdog, the clock,
 * statistics, memory readings and the wire conventions both ends agree on.
 *
 * Everything here runs under Deno and under Bun; nothing names a runtime except
 * {@linkcode RUNTIME} and {@linkcode collectGarbage}.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** This runtime's name. */
export const RUNTIME: "bun" | "deno" = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
  ? "bun"
  : "deno";

/** Size of one message or DATA-producing chunk in the large-body scenarios: 1 MiB. */
export const LARGE_CHUNK_BYTES = 1024 * 1024;

/** The line a server prints once it listens: `READY <port>`. */
export const READY = "READY";
/** The line a client prints with its result: `RESULT <json>`. */
export const RESULT = "RESULT";

/** Parses `--name value` and `--flag` arguments. */
export function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    if (eq !== -1) {
      args.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      args.set(arg.slice(2), argv[++i]);
    } else {
      args.set(arg.slice(2), "true");
    }
  }
  return args;
}

/** The script's own arguments, on Deno and Bun. */
export function scriptArgs(): Map<string, string> {
  return parseArgs(process.argv.slice(2));
}

/** A numeric argument, not negative; required unless it has a `fallback`. */
export function numberArg(args: Map<string, string>, name: string, fallback?: number): number {
  const value = args.get(name);
  if (value === undefined) {
    if (fallback === undefined) throw new TypeError(`Missing argument: --${name}`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new TypeError(`Bad argument: --${name} ${value}`);
  return n;
}

/**
 * Exits the process after `ms` whatever happens (a bench process must never outlive its
 * run; Bun also spins on a top-level await that never settles, oven-sh/bun#14951), and
 * when the parent closes our stdin.
 */
export function watchdog(ms: number, name: string): void {
  const timer = setTimeout(() => {
    console.error(`${name}: watchdog fired after ${ms} ms; exiting`);
    process.exit(3);
  }, ms);
  (timer as { unref?: () => void }).unref?.();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => process.exit(0));
  }
}

/** Milliseconds since an arbitrary origin. */
export const now = (): number => performance.now();

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves in the next macrotask (after pending I/O callbacks and immediates). */
export function nextMacrotask(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => immediate ? immediate(resolve) : setTimeout(resolve, 0));
}

/** The value at quantile `q` (0–1) of `values`, in the units given. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index];
}

/** The median of `values`. */
export function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** This process's resident set size in bytes. */
export function rss(): number {
  return process.memoryUsage().rss;
}

/**
 * Runs a full garbage collection where the runtime lets us (Bun always; Deno when started
 * with `--v8-flags=--expose-gc`), so that RSS readings compare live memory.
 *
 * On V8 it is the memory-reducing kind ("last-resort"): a plain `gc()` leaves the young
 * generation as large as the last allocation burst grew it (tens of MiB after thousands of
 * handshakes), which RSS would then count as live. V8's memory reducer shrinks it by itself
 * once the process has been idle for some seconds; this does the same at once.
 */
export function collectGarbage(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun) {
    bun.gc(true);
    return;
  }
  (globalThis as { gc?: (options?: object) => void }).gc?.({
    type: "major",
    execution: "sync",
    flavor: "last-resort",
  });
}

/** Prints the result line the orchestrator reads. */
export function printResult(result: Record<string, unknown>): void {
  console.log(`${RESULT} ${JSON.stringify(result)}`);
}

/** Calls `onLine` with each line written to this process's stdin; `onEnd` when it closes. */
export function readStdinLines(onLine: (line: string) => void, onEnd: () => void): void {
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffered += chunk;
    for (let i = buffered.indexOf("\n"); i !== -1; i = buffered.indexOf("\n")) {
      const line = buffered.slice(0, i).trim();
      buffered = buffered.slice(i + 1);
      if (line) onLine(line);
    }
  });
  process.stdin.on("end", onEnd);
  process.stdin.on("close", onEnd);
}

/** A stream of `total` bytes cut into `chunk`-sized views of one buffer, produced on demand. */
export function byteStream(total: number, chunk: Uint8Array): ReadableStream<Uint8Array> {
  let left = total;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) {
        controller.close();
        return;
      }
      const n = Math.min(left, chunk.byteLength);
      left -= n;
      controller.enqueue(n === chunk.byteLength ? chunk : chunk.subarray(0, n));
    },
  }, { highWaterMark: 0 });
}

/** Reads a body to its end and returns the number of bytes. */
export async function drain(body: ReadableStream<Uint8Array> | null): Promise<number> {
  if (!body) return 0;
  let bytes = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return bytes;
    bytes += value.byteLength;
  }
}

/** The repository root: where bench processes run. */
const BENCH_ROOT = new URL("../", import.meta.url).pathname;

/**
 * A bench process whose stdout lines can be awaited (`line`), fed through its stdin (`send`);
 * every bench process exits when its stdin closes (`stop`).
 */
export class Proc {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #exited = false;
  readonly exited: Promise<number | null>;
  #stderr = "";

  constructor(readonly label: string, command: string, argv: string[]) {
    this.child = spawn(command, argv, {
      cwd: BENCH_ROOT,
      env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let buffered = "";
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      for (let i = buffered.indexOf("\n"); i !== -1; i = buffered.indexOf("\n")) {
        this.#lines.push(buffered.slice(0, i).trim());
        buffered = buffered.slice(i + 1);
      }
      this.#wake();
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      this.#stderr = (this.#stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) =>
      this.child.on("close", (code) => {
        this.#exited = true;
        this.#wake();
        resolve(code);
      })
    );
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Waits for (and consumes) the next line starting with `prefix`; returns the rest. */
  async line(prefix: string, timeoutMs: number): Promise<string> {
    const deadline = now() + timeoutMs;
    for (;;) {
      const i = this.#lines.findIndex((line) => line.startsWith(prefix + " "));
      if (i !== -1) return this.#lines.splice(i, 1)[0].slice(prefix.length + 1);
      if (this.#exited) {
        throw new Error(`${this.label} exited before printing ${prefix}:\n${this.#stderr}`);
      }
      const left = deadline - now();
      if (left <= 0) {
        throw new Error(`${this.label}: no ${prefix} within ${timeoutMs} ms:\n${this.#stderr}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** Writes a line to the child's stdin. */
  send(line: string): void {
    this.child.stdin!.write(line + "\n");
  }

  /** Closes stdin (the children exit on it), then kills after a grace period. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Milliseconds for a report: three decimals under 10, one above, `–` for none. */
export function ms(value: number): string {
  return Number.isFinite(value) ? value.toFixed(value < 10 ? 3 : 1) : "–";
}

/** A Markdown table, its columns padded to line up. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
