/**
 * What an idle connection keeps on a Deno server's heap, by constructor (issue 23): a V8
 * heap snapshot of the server with a few connections open, another after `--count` more,
 * and the difference per connection.
 *
 * ```
 * deno task bench:idle-heap                           # swaggersocket's server, 500 connections
 * deno run -A bench/idle_heap.ts --kind ws            # the raw WebSocket echo, to compare
 * deno run -A bench/idle_heap.ts --count 1000 --top 80 --keep /tmp/snapshots
 * ```
 *
 * The server is `bench/server.ts --kind ss|ws` under Deno with `--expose-gc`; the
 * connections come from `bench/client.ts --scenario idle` processes (Deno, up to 500 each).
 * Once `--base` connections (default 20) are open and the server has been left alone for
 * `--settle` ms (default 2,000), the server reads its memory after an ordinary full GC
 * (`mem`) and writes a snapshot (`snapshot <file>`); then `--count` more connections
 * (default 500) are opened and both are done again. The base connections keep one-time
 * costs (the accept path's first run, module state) out of the difference.
 *
 * Printed: the server's live heap (`heapUsed`) and `external` memory per connection between
 * the two points (not RSS or `heapTotal`: writing the first snapshot grows them; the idle
 * scenario of `bench/main.ts` reads those), then the snapshots' difference in node count
 * and self size per connection, grouped by type and name, the `--top` largest (default 40).
 * An object is named by its constructor, a closure by its function and where that is
 * defined (a line of the JavaScript V8 runs: for TypeScript, the code Deno emitted, whose
 * lines are not the source's), a context (`system / Context`) by the variables it holds;
 * strings and compiled code are one group each. Snapshots go to a temporary directory
 * removed at the end, unless `--keep DIR`. Every process has a watchdog (`--max-seconds`,
 * default 600).
 *
 * @module
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { numberArg, Proc, scriptArgs, sleep, watchdog } from "./_common.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/.bin/deno`;
const PER_CLIENT = 500;

const args = scriptArgs();
const kind = args.get("kind") ?? "ss";
if (kind !== "ss" && kind !== "ws") throw new TypeError(`--kind ss|ws, not ${kind}`);
const count = numberArg(args, "count", 500);
const base = numberArg(args, "base", 20);
const top = numberArg(args, "top", 40);
const settleMs = numberArg(args, "settle", 2000);
const maxSeconds = numberArg(args, "max-seconds", 600);
const keep = args.get("keep");
watchdog(maxSeconds * 1000, "bench idle_heap");

const children: Proc[] = [];
const dir = keep ?? mkdtempSync(join(tmpdir(), "idle-heap-"));
if (keep) mkdirSync(keep, { recursive: true });
process.on("exit", () => {
  for (const child of children) child.child.kill("SIGKILL");
  if (!keep) rmSync(dir, { recursive: true, force: true });
});
function startChild(label: string, argv: string[]): Proc {
  const child = new Proc(label, DENO, argv);
  children.push(child);
  return child;
}

/** Opens `n` idle connections to `port` from client processes; resolves once all are open. */
async function openIdle(port: number, n: number): Promise<void> {
  const opening: Promise<string>[] = [];
  for (let opened = 0; opened < n; opened += PER_CLIENT) {
    const batch = Math.min(PER_CLIENT, n - opened);
    const client = startChild(`client (${batch})`, [
      "run",
      "-A",
      "bench/client.ts",
      "--kind",
      kind,
      "--scenario",
      "idle",
      "--port",
      String(port),
      "--count",
      String(batch),
      "--max-seconds",
      String(maxSeconds),
    ]);
    opening.push(client.line("OPEN", 120_000));
  }
  await Promise.all(opening);
}

/** The server's `mem` answer: bytes after an ordinary full GC. */
interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  connections: number;
}

async function memoryOf(server: Proc): Promise<Memory> {
  server.send("mem");
  return JSON.parse(await server.line("MEM", 30_000));
}

async function snapshot(server: Proc, file: string): Promise<void> {
  server.send(`snapshot ${file}`);
  await server.line("SNAPSHOT", 120_000);
}

// ---- the snapshots ----------------------------------------------------------

/** The parts of a `.heapsnapshot` file read here. */
interface HeapSnapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
      location_fields: string[];
    };
  };
  nodes: number[];
  edges: number[];
  locations: number[];
  strings: string[];
}

/** One group's node count and self size in bytes. */
type Group = { count: number; bytes: number };

/** Groups a snapshot's nodes by type and name (see the module's documentation). */
function groups(file: string): Map<string, Group> {
  const snap: HeapSnapshot = JSON.parse(readFileSync(file, "utf8"));
  const meta = snap.snapshot.meta;
  const { nodes, edges, strings } = snap;
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const width = meta.node_fields.length;
  const edgeWidth = meta.edge_fields.length;
  const field = (name: string): number => meta.node_fields.indexOf(name);
  const [TYPE, NAME, SIZE, EDGES] = [
    field("type"),
    field("name"),
    field("self_size"),
    field(
      "edge_count",
    ),
  ];
  const [EDGE_TYPE, EDGE_NAME] = [
    meta.edge_fields.indexOf("type"),
    meta.edge_fields.indexOf("name_or_index"),
  ];

  // Where each closure is defined: node index → "file:line".
  const defined = new Map<number, string>();
  const lw = meta.location_fields.length;
  const [OBJECT, SCRIPT, LINE] = ["object_index", "script_object_index", "line"].map((f) =>
    meta.location_fields.indexOf(f)
  );
  for (let i = 0; i < snap.locations.length; i += lw) {
    const script = strings[nodes[snap.locations[i + SCRIPT] + NAME]]
      .replace(/^system \/ Script \/ /, "")
      .replace(`file://${ROOT}`, "");
    defined.set(snap.locations[i + OBJECT], `${script}:${snap.locations[i + LINE] + 1}`);
  }

  const result = new Map<string, Group>();
  let edge = 0;
  for (let i = 0; i < nodes.length; i += width) {
    const type = nodeTypes[nodes[i + TYPE]];
    const name = strings[nodes[i + NAME]];
    const edgeCount = nodes[i + EDGES];
    let key: string;
    if (type === "string" || type === "concatenated string" || type === "sliced string") {
      key = "string\t(strings)";
    } else if (type === "code") {
      key = "code\t(compiled code)";
    } else if (type === "closure") {
      const where = defined.get(i);
      key = `closure\t${name || "(anonymous)"}${where ? ` (${where})` : ""}`;
    } else if (name.startsWith("system / Context")) {
      const held: string[] = [];
      for (let e = edge; e < edge + edgeCount; e++) {
        if (edgeTypes[edges[e * edgeWidth + EDGE_TYPE]] === "context") {
          held.push(strings[edges[e * edgeWidth + EDGE_NAME]]);
        }
      }
      key = held.length === 0
        ? "context\t(no variables)"
        : `context\t(${held.slice(0, 4).join(", ")}${held.length > 4 ? ", …" : ""})`;
    } else {
      key = `${type}\t${
        name.replace(/ @\d+$/, "") || `(${type === "array" ? "internal" : "no name"})`
      }`;
    }
    const group = result.get(key) ?? { count: 0, bytes: 0 };
    group.count++;
    group.bytes += nodes[i + SIZE];
    result.set(key, group);
    edge += edgeCount;
  }
  return result;
}

// ---- main -------------------------------------------------------------------

const files = [join(dir, `${kind}-base.heapsnapshot`), join(dir, `${kind}-after.heapsnapshot`)];
let readings: [Memory, Memory];
try {
  const server = startChild(`server (${kind})`, [
    "run",
    "-A",
    "--v8-flags=--expose-gc",
    "bench/server.ts",
    "--kind",
    kind,
    "--max-seconds",
    String(maxSeconds),
  ]);
  const port = Number(await server.line("READY", 30_000));
  const reading = async (file: string, expected: number): Promise<Memory> => {
    await sleep(settleMs);
    const memory = await memoryOf(server);
    if (memory.connections !== expected) {
      throw new Error(`${memory.connections} connections open, expected ${expected}`);
    }
    await snapshot(server, file);
    return memory;
  };
  await openIdle(port, base);
  const before = await reading(files[0], base);
  await openIdle(port, count);
  readings = [before, await reading(files[1], base + count)];
} finally {
  await Promise.all(children.map((child) => child.stop()));
}

const [before, after] = [groups(files[0]), groups(files[1])];

const perConnection = [...after].map(([key, group]) => {
  const old = before.get(key) ?? { count: 0, bytes: 0 };
  return {
    key,
    count: (group.count - old.count) / count,
    bytes: (group.bytes - old.bytes) / count,
  };
});
for (const [key, old] of before) {
  if (!after.has(key)) {
    perConnection.push({ key, count: -old.count / count, bytes: -old.bytes / count });
  }
}
perConnection.sort((a, b) => b.bytes - a.bytes);
const total = perConnection.reduce(
  (sum, row) => ({ count: sum.count + row.count, bytes: sum.bytes + row.bytes }),
  { count: 0, bytes: 0 },
);

const kib = (figure: keyof Memory): string =>
  ((readings[1][figure] - readings[0][figure]) / count / 1024).toFixed(1);
console.log(
  `${kind === "ss" ? "swaggersocket" : "raw WebSocket echo"} server (Deno), ${count} idle ` +
    `connections opened on top of ${base}${keep ? `; snapshots kept in ${keep}` : ""}`,
);
console.log(
  `per connection after an ordinary GC: heapUsed ${kib("heapUsed")} KiB, external ${
    kib("external")
  } KiB (for RSS and heapTotal: deno task bench --scenarios idle)`,
);
console.log(
  `heap snapshot per connection: ${Math.round(total.bytes)} B in ${
    total.count.toFixed(1)
  } nodes (self sizes); the ${top} largest groups:`,
);
console.log(
  "(a closure's file:line is in the JavaScript V8 runs: Deno's emitted code for TypeScript)",
);
console.log("");
console.log(`${"B/conn".padStart(8)} ${"n/conn".padStart(7)}  ${"type".padEnd(10)} name`);
for (const row of perConnection.slice(0, top)) {
  const [type, name] = row.key.split("\t");
  console.log(
    `${row.bytes.toFixed(0).padStart(8)} ${row.count.toFixed(2).padStart(7)}  ${
      type.padEnd(10)
    } ${name}`,
  );
}
process.exit(0);
