/**
 * The CPU profiles of the process benchmarks (`bench/gateway.ts`, `bench/cluster.ts` with
 * `--profile DIR`): each child's `.cpuprofile` files in a sub-directory of its own, summarized
 * as the shares of non-idle samples by category (GC, socket writes, the runtime's web APIs,
 * the `node:` polyfill, npm packages, our files), by file, by function, and by the nearest
 * function of ours on the stack.
 *
 * @module
 */

import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { table } from "./_common.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** `--profile DIR`: made if new; refused unless empty, so that no old profile is summarized. */
export function newProfileDir(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new Error(`--profile ${dir}: the directory must be new or empty`);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
}

/** Natives that write to a socket synchronously (Deno's `node:net` binding, Bun's sockets). */
const SOCKET_WRITES =
  /^(writev|writeLatin1String|writeUtf8String|writeBuffer|writeAsciiString|writeBuffered|cork|send|sendWebSocketFrame|write)$/;

/**
 * Where a frame belongs: GC, natives, the runtime's web APIs, the `node:` polyfill, npm
 * packages, or our files (by file).
 */
function category(functionName: string, url: string): string {
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(program)") return "(program): native, unattributed";
  if (functionName === "(idle)" || functionName === "(root)") return "idle";
  if (!url) {
    if (SOCKET_WRITES.test(functionName)) return "socket writes (native, synchronous)";
    if (functionName.startsWith("op_")) return "Deno ops (native)";
    return "builtins (V8/JSC, no URL)";
  }
  const file = url.replace(/^file:\/\//, "");
  if (/^(ext:deno_node\/|node:|internal:)/.test(url)) {
    const name = url.replace(/^ext:deno_node\/|^node:|^internal:/, "");
    const kind = /timers/.test(name)
      ? "timers"
      : /stream_wrap|stream_base|^net|tcp|_tls|internal_binding/.test(name)
      ? "net"
      : /http/.test(name)
      ? "http"
      : /stream/.test(name)
      ? "streams"
      : /events/.test(name)
      ? "events"
      : "other";
    return `node: polyfill (${kind})`;
  }
  if (url === "ext:deno_fetch/20_headers.js") return "Headers (ext:deno_fetch/20_headers.js)";
  if (url.startsWith("ext:deno_webidl/")) return "WebIDL conversions (ext:deno_webidl)";
  if (url.startsWith("ext:")) return `runtime JS (${url.slice(4).split("/")[0]})`;
  const npm = /\/node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?(@[^/]+\/[^/]+|[^/]+)\//.exec(
    file,
  );
  if (npm) return `npm ${npm[1]}`;
  if (file.startsWith(ROOT)) return `ours: ${file.slice(ROOT.length)}`;
  return `other: ${url}`;
}

/** Whether a frame is in our code (not npm, not the runtime). */
function ours(url: string): boolean {
  return url.startsWith(`file://${ROOT}`) && !url.includes("/node_modules/");
}

/**
 * Samples (each the same time: counting works for V8's profiles, whose idle time is sampled
 * as `(idle)`, and for JSC's, which take no samples while idle) by category, by file, by
 * function, and by the nearest frame of ours on the stack (what our code caused, whatever
 * runtime or polyfill code it ran in), of every profile in `dir`.
 */
function aggregate(dir: string): {
  files: number;
  total: number;
  byCategory: Map<string, number>;
  byUrl: Map<string, number>;
  byFunction: Map<string, number>;
  byCaller: Map<string, number>;
} {
  const byCategory = new Map<string, number>();
  const byUrl = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const byCaller = new Map<string, number>();
  let total = 0;
  let files = 0;
  const add = (map: Map<string, number>, key: string, value: number) =>
    map.set(key, (map.get(key) ?? 0) + value);
  const name = (frame: ProfileNode["callFrame"]) =>
    `${frame.functionName || "(anonymous)"}${
      frame.url ? ` ${frame.url.replace(`file://${ROOT}`, "")}:${frame.lineNumber + 1}` : ""
    }`;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
    files++;
    const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) {
      for (const child of node.children ?? []) parent.set(child, node.id);
    }
    const hits = new Map<number, number>();
    if (profile.samples && profile.samples.length > 0) {
      for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
    } else {
      for (const node of profile.nodes) hits.set(node.id, node.hitCount ?? 0);
    }
    for (const [id, count] of hits) {
      const frame = nodes.get(id)!.callFrame;
      const kind = category(frame.functionName, frame.url);
      if (kind === "idle") continue;
      total += count;
      add(byCategory, kind, count);
      add(byUrl, frame.url || "(no URL)", count);
      add(byFunction, `${name(frame)}\t${kind}`, count);
      let at: number | undefined = id;
      while (at !== undefined && !ours(nodes.get(at)!.callFrame.url)) at = parent.get(at);
      add(byCaller, at === undefined ? `(none: ${kind})` : name(nodes.get(at)!.callFrame), count);
    }
  }
  return { files, total, byCategory, byUrl, byFunction, byCaller };
}

/**
 * Markdown tables of where each profiled process's time went (shares of non-idle samples):
 * one section per sub-directory of `dir`, with its CPU time from `cpuAtStop` when known.
 */
export function summarizeProfiles(
  dir: string,
  cpuAtStop: ReadonlyMap<string, { total: number; sys: number }> = new Map(),
  top = 12,
): string {
  const out: string[] = [];
  const dirs = readdirSync(dir).filter((d) => statSync(join(dir, d)).isDirectory()).sort();
  for (const sub of dirs.length > 0 ? dirs : ["."]) {
    const { files, total, byCategory, byUrl, byFunction, byCaller } = aggregate(join(dir, sub));
    if (files === 0) continue;
    const pct = (value: number) => `${(value * 100 / total).toFixed(1)} %`;
    const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
    const cpu = cpuAtStop.get(sub);
    out.push(
      `### ${sub}: ${files} profile(s), ${total} non-idle samples` +
        (cpu === undefined
          ? ""
          : `; ${(cpu.total / 1000).toFixed(1)} s of CPU in all, ${
            (cpu.sys * 100 / cpu.total).toFixed(0)
          } % of it in the kernel (/proc)`) +
        "\n",
      table(["category", "self"], sorted(byCategory).map(([k, v]) => [k, pct(v)])),
      "",
      table(
        ["file (URL)", "self"],
        sorted(byUrl).slice(0, top).map(([k, v]) => [k.replace(`file://${ROOT}`, ""), pct(v)]),
      ),
      "",
      table(
        ["function", "category", "self"],
        sorted(byFunction).slice(0, top).map(([k, v]) => [...k.split("\t"), pct(v)]),
      ),
      "",
      table(
        ["nearest function of ours on the stack", "self time below it"],
        sorted(byCaller).slice(0, top).map(([k, v]) => [k, pct(v)]),
      ),
      "",
    );
  }
  return out.join("\n");
}
