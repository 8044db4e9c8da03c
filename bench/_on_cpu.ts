/**
 * On-CPU profiles of the gateway benchmark's servers (`bench/gateway.ts --perf DIR`): Linux
 * `perf record -e cpu-clock` on each process while it is under load, split into the kernel's work
 * by system call, the runtime's own binary (its native code, and the engine's builtins,
 * interpreter and garbage collector, which live there too), JIT-compiled JavaScript, and other
 * libraries.
 *
 * Why beside `--profile`: the JavaScript profilers sample on a wall clock, so a sample that lands
 * while the process is inside a system call, or preempted there by the process it has just woken,
 * counts as that call's; on a busy 2-CPU machine socket writes read two to three times what they
 * cost in CPU there. `cpu-clock` counts only time on a CPU.
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";

/** Whether `perf` can be run here (installed, and allowed to sample other processes). */
export function perfAvailable(): boolean {
  return spawnSync("perf", ["--version"], { encoding: "utf8" }).status === 0;
}

/**
 * Samples a process's on-CPU stacks for `seconds`, into `file`.
 *
 * @returns The `perf` process; it exits when the time is up.
 */
export function recordOnCpu(file: string, pid: number, seconds: number): ChildProcess {
  return spawn(
    "perf",
    [
      "record",
      "-e",
      "cpu-clock",
      "-F",
      "999",
      "-g",
      "-o",
      file,
      "-p",
      `${pid}`,
      "--",
      "sleep",
      `${seconds}`,
    ],
    { stdio: "ignore" },
  );
}

/** What one sample's stack (leaf first, as `perf script` prints it) was doing. */
function category(frames: string[]): string {
  const leaf = frames[0];
  if (leaf.includes("[kernel.kallsyms]")) {
    const entry = frames.find((frame) => /__x64_sys_\w+/.test(frame));
    if (entry) return `kernel: ${/__x64_sys_(\w+)/.exec(entry)![1]}`;
    if (frames.some((frame) => frame.includes("exc_page_fault"))) return "kernel: page faults";
    if (frames.some((frame) => frame.includes("entry_SYSCALL"))) {
      // Without the syscall's own frame, the C library's wrapper names it (Deno's writev).
      const wrapper = frames.find((frame) => !frame.includes("[kernel.kallsyms]"));
      const name = wrapper && /^\S+ (\S+) \(.*libc/.exec(wrapper)?.[1];
      return `kernel: ${name ? name.replace(/^(__GI_)?_*(libc_)?/, "") : "other system calls"}`;
    }
    return "kernel: interrupts, scheduling";
  }
  const dso = /\(([^)]*)\)$/.exec(leaf)?.[1] ?? "?";
  if (/perf-\d+\.map|\[JIT\]/.test(dso)) return "JIT-compiled JavaScript";
  if (/\/(deno|bun(\.exe)?)$/.test(dso)) return "the runtime's binary";
  return dso.replace(/.*\//, "");
}

/**
 * The share of on-CPU samples in each category, over every file.
 *
 * @param files `perf record` outputs of one process (or of one role, over rounds).
 * @returns The samples counted and the shares, largest first.
 */
export function onCpuSplit(files: string[]): { samples: number; shares: [string, number][] } {
  const counts = new Map<string, number>();
  let samples = 0;
  for (const file of files) {
    const script = spawnSync("perf", ["script", "-i", file, "-F", "ip,sym,dso"], {
      encoding: "utf8",
      maxBuffer: 1024 * 1024 * 1024,
    });
    for (const block of script.stdout.split("\n\n")) {
      const frames = block.split("\n").map((line) => line.trim()).filter((line) => line);
      if (frames.length === 0) continue;
      samples++;
      const key = category(frames);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  const shares = [...counts].map(([key, n]): [string, number] => [key, n / samples]);
  return { samples, shares: shares.sort((a, b) => b[1] - a[1]) };
}
