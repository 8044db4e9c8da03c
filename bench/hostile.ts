/**
 * Hostile peers against a server with default options: what each attack costs the server in
 * memory, whether the memory comes back, and what an honest client beside it sees
 * (`deno task bench:hostile`, or `deno run -A bench/hostile.ts`).
 *
 * For each server runtime and each attack, a fresh server process (`hostile_server.ts`:
 * `new WebSocketServer({ hostname, port: 0, handler })` and nothing else) and an honest
 * client process of the same runtime (`hostile_honest.ts`: `GET /ping` every 100 ms, a
 * failure if it rejects or takes over 2 s). After a baseline, this process runs the attack
 * from raw TCP WebSockets (`tests/_tcp_peer.ts`, the peers of `tests/hostile_peers_test.ts`)
 * for `--seconds` (silent sockets: at least 12 s, past the 10 s handshake timeout), destroys
 * them, and keeps sampling for 3 s. It reports the server's RSS before, at its peak (from the
 * attack's start to the end), 3 s after and then after a full garbage collection (garbage
 * or held?), the peak sum of `connection.bufferedBytes` (the library's own accounting), the
 * honest client's requests, failures, and p50 and p99 of its successful requests during the
 * attack, the close codes the attackers saw (1006: the socket ended without a close frame
 * they read; `open`: still open when the attack stopped), and the codes the server closed
 * its established connections with (a peer that stops reading never sees its close frame).
 * Every socket comes from 127.0.0.1, the honest client's included, so the per-address
 * limits count them together.
 *
 * Attacks: none, pinning, tiny-frames, window, noop-bomb, ping-unread, ping-flood,
 * unread-responses, metadata-churn, silent-sockets (see {@linkcode ATTACKS}).
 *
 * Options: `--servers deno,bun --seconds 10 --attacks a,b,… --markdown FILE`, and `--smoke`
 * (Deno only, 1 s per attack, small sizes, under a minute). It prints progress on stderr, a
 * Markdown table and `RESULT <json>` on stdout, and exits 1 only if a process crashed or
 * hung, never because of the numbers.
 *
 * @module
 */

import process from "node:process";
import { writeFileSync } from "node:fs";
import { encodeFrames, encodePing, FrameType, type Welcome } from "../protocol/mod.ts";
import { connectTcp, Credit, type TcpPeer } from "../tests/_tcp_peer.ts";
import { dataFrame, message, requestFrame, tinyFrames } from "../tests/_raw_frames.ts";
import { BUN_BIN, DENO_BIN, type LineProcess, spawnLines, withTimeout } from "../tests/_helpers.ts";
import { numberArg, RESULT, scriptArgs, sleep, watchdog } from "./_common.ts";

type Runtime = "deno" | "bun";

const MIB = 1024 * 1024;
const args = scriptArgs();
const SMOKE = args.has("smoke");
const SECONDS = numberArg(args, "seconds", SMOKE ? 1 : 10);
const SERVERS = (args.get("servers") ?? (SMOKE ? "deno" : "deno,bun")).split(",") as Runtime[];
const BASELINE_MS = SMOKE ? 500 : 1_000;
const AFTER_MS = SMOKE ? 1_000 : 3_000;
/** Bounds a wait on a frame or a process: far beyond anything a healthy run takes. */
const GUARD_MS = 30_000;
const MARKDOWN = args.get("markdown");

/** A full-run size, or the smoke run's. */
const size = (full: number, smoke: number): number => SMOKE ? smoke : full;

watchdog((SMOKE ? 3 : 30) * 60_000, "hostile bench");

function log(text: string): void {
  console.error(`[bench:hostile] ${text}`);
}

/**
 * The hostile sockets of one attack and what they saw: each socket's close code is counted
 * when the server ends it, `open` for those still open when the attack stops.
 */
export class Attack {
  /** Close codes (and `open`, `no upgrade`, `handshook`, `error`) with their counts. */
  readonly codes: Record<string, number> = {};
  /** Resolves when the attack is stopped. */
  readonly stopped: Promise<undefined>;
  readonly #live = new Set<TcpPeer>();
  #stop: () => void = () => {};
  #over = false;

  constructor(readonly port: number) {
    this.stopped = new Promise<undefined>((resolve) => {
      this.#stop = () => resolve(undefined);
    });
  }

  /** Whether the attack has been stopped. */
  get over(): boolean {
    return this.#over;
  }

  /** Counts one more socket that ended with `what`. */
  count(what: string | number): void {
    this.codes[what] = (this.codes[what] ?? 0) + 1;
  }

  /** `promise`, or `undefined` as soon as the attack stops. */
  until<T>(promise: Promise<T>): Promise<T | undefined> {
    return Promise.race([promise, this.stopped]);
  }

  /** A raw socket past the upgrade, or `undefined` (counted) if there was none. */
  async connect(): Promise<TcpPeer | undefined> {
    let peer: TcpPeer;
    try {
      peer = await connectTcp(this.port);
    } catch {
      this.count("no upgrade");
      // A refused connect fails at once: do not spin on it.
      await this.until(sleep(10));
      return undefined;
    }
    if (this.#over) {
      peer.destroy();
      return undefined;
    }
    this.#live.add(peer);
    peer.closed.then((code) => {
      if (this.#live.delete(peer)) this.count(code);
    });
    return peer;
  }

  /** HELLO and ACK: the WELCOME, or `undefined` if the server closed first or time is up. */
  async handshake(peer: TcpPeer, metadata: unknown = { name: "hostile" }): Promise<
    Welcome | undefined
  > {
    const welcome = peer.handshake(metadata);
    welcome.catch(() => {});
    return await this.until(Promise.race([welcome, peer.closed.then(() => undefined)]));
  }

  /** Ends a socket from our side, uncounted. */
  drop(peer: TcpPeer): void {
    this.#live.delete(peer);
    peer.destroy();
  }

  /** Stops the attack and destroys its sockets. */
  stop(): void {
    this.#over = true;
    this.#stop();
    for (const peer of [...this.#live]) {
      this.count("open");
      this.drop(peer);
    }
  }
}

/** `count` copies of `task` at once; an unexpected error ends only its copy (counted). */
async function parallel(
  attack: Attack,
  count: number,
  task: () => Promise<void>,
): Promise<void> {
  await Promise.all(Array.from({ length: count }, async () => {
    try {
      await task();
    } catch (error) {
      if (attack.over) return;
      attack.count("error");
      log(`attack error: ${(error as Error).message}`);
    }
  }));
}

/** HEADERS opening `ids`, one message; bodies left open unless `end`. */
function openStreams(
  ids: readonly number[],
  method: string,
  url: string,
  end: boolean,
): Uint8Array {
  return message(...ids.map((id) => requestFrame(id, { method, url, headers: [] }, end)));
}

/** Stream ids `first`, `first + 2`, …: `count` of them. */
const streamIds = (first: number, count: number): number[] =>
  Array.from({ length: count }, (_, i) => first + 2 * i);

/** Handshakes again whenever the server closes, until time is up. */
async function reconnecting(
  attack: Attack,
  session: (peer: TcpPeer, welcome: Welcome) => Promise<void>,
): Promise<void> {
  while (!attack.over) {
    const peer = await attack.connect();
    if (!peer) continue;
    const welcome = await attack.handshake(peer);
    if (!welcome) continue;
    await session(peer, welcome);
  }
}

const PIN_CHUNK = 8 * 1024;
const TINY_PER_MESSAGE = 160_000;

/** Each attack: it runs until `attack.stop()`, then returns soon after. */
export const ATTACKS: Record<string, (attack: Attack) => Promise<void>> = {
  none: async (attack) => {
    await attack.stopped;
  },

  // Each 8 KiB chunk rides in a ~2 MiB message padded with DATA for finished stream 1: kept
  // as a view, each would pin its whole message. Stream by stream, each to its window.
  pinning: (attack) =>
    parallel(attack, size(4, 1), async () => {
      const peer = await attack.connect();
      const welcome = peer && await attack.handshake(peer);
      if (!peer || !welcome) return;
      const credit = new Credit(welcome.settings.connectionWindow, peer, GUARD_MS);
      peer.send(openStreams([1], "GET", "/ping", true));
      const ids = streamIds(3, size(48, 4));
      peer.send(openStreams(ids, "POST", "/hold", false));
      const pad = new Uint8Array(welcome.settings.maxFrameBytes - PIN_CHUNK / 2 - 16);
      const cost = PIN_CHUNK + 2 * pad.byteLength;
      for (const id of ids) {
        const bytes = message(
          dataFrame(id, new Uint8Array(PIN_CHUNK).fill(id & 0xff)),
          dataFrame(1, pad),
          dataFrame(1, pad),
        );
        for (let left = welcome.settings.initialWindow; left >= PIN_CHUNK; left -= PIN_CHUNK) {
          await attack.until(credit.spend(cost));
          if (attack.over) return;
          peer.send(bytes);
        }
      }
      await attack.until(peer.closed);
    }),

  // 5 streams (their windows together exceed the connection's) and 1-byte frames until the
  // connection window is spent; then hold.
  "tiny-frames": (attack) => {
    const ids = streamIds(1, 5);
    const full = tinyFrames(ids, TINY_PER_MESSAGE);
    return parallel(attack, size(4, 1), () =>
      reconnecting(attack, async (peer, welcome) => {
        peer.send(openStreams(ids, "POST", "/hold", false));
        const window = welcome.settings.connectionWindow;
        for (let sent = 0; sent < window; sent += TINY_PER_MESSAGE) {
          const count = Math.min(TINY_PER_MESSAGE, window - sent);
          peer.send(count === TINY_PER_MESSAGE ? full : tinyFrames(ids, count));
        }
        await attack.until(peer.closed);
      }));
  },

  // Every stream the server allows, offered 64 KiB frames in turn (one per message) until
  // the connection window is spent; then hold.
  window: (attack) =>
    parallel(attack, size(10, 2), async () => {
      const peer = await attack.connect();
      const welcome = peer && await attack.handshake(peer);
      if (!peer || !welcome) return;
      const ids = streamIds(1, size(welcome.settings.maxConcurrentStreams, 16));
      peer.send(openStreams(ids, "POST", "/hold", false));
      const frame = new Uint8Array(64 * 1024);
      for (let i = 0, sent = 0; sent < welcome.settings.connectionWindow; i++) {
        peer.send(message(dataFrame(ids[i % ids.length], frame)));
        sent += frame.byteLength;
      }
      await attack.until(peer.closed);
    }),

  // One message of NOOPs before any HELLO, again and again.
  "noop-bomb": (attack) => {
    const bomb = new Uint8Array(size(60, 4) * MIB);
    for (let i = 0; i < bomb.byteLength; i += 10) bomb[i] = FrameType.Noop;
    return parallel(attack, size(4, 1), async () => {
      while (!attack.over) {
        const peer = await attack.connect();
        if (!peer) continue;
        peer.send(bomb);
        await attack.until(peer.closed);
      }
    });
  },

  // Pings with 512 KiB of appData from a peer that reads nothing: each pong waits unsent.
  "ping-unread": (attack) => {
    const ping = message({
      type: FrameType.Ping,
      flags: 0,
      streamId: 0,
      payload: encodePing(1, "x".repeat(512 * 1024)),
    });
    return parallel(attack, size(4, 1), () =>
      reconnecting(attack, async (peer) => {
        peer.pause();
        let open = true;
        peer.closed.then(() => open = false);
        while (open && !attack.over) {
          // The server reads while we do not: our own send buffer stays small unless it stops.
          if (peer.writableLength < 4 * MIB) peer.send(ping);
          // One ping a timer tick, as the test sends them: slower than the ping bucket's burst.
          await sleep(0);
        }
      }));
  },

  // 101 pings in one message: one over the ping bucket's burst.
  "ping-flood": (attack) => {
    const ping = { type: FrameType.Ping, flags: 0, streamId: 0, payload: encodePing(1, "") };
    const flood = encodeFrames(Array.from({ length: 101 }, () => ping));
    return parallel(attack, size(4, 1), () =>
      reconnecting(attack, async (peer) => {
        peer.send(flood);
        await attack.until(peer.closed);
      }));
  },

  // Endless responses to a peer that stopped reading before asking for them; then hold.
  "unread-responses": (attack) =>
    parallel(attack, size(10, 2), async () => {
      const peer = await attack.connect();
      const welcome = peer && await attack.handshake(peer);
      if (!peer || !welcome) return;
      peer.pause();
      const ids = streamIds(1, size(welcome.settings.maxConcurrentStreams, 16));
      peer.send(openStreams(ids, "GET", "/stream", true));
      await attack.until(peer.closed);
    }),

  // Handshakes with ~16 KB of metadata, dropped at once: the server keeps each one's resume
  // token (and metadata) for 30 s.
  "metadata-churn": (attack) => {
    const metadata = "m".repeat(16_000);
    return parallel(attack, 4, async () => {
      while (!attack.over) {
        const peer = await attack.connect();
        if (!peer) continue;
        if (await attack.handshake(peer, metadata)) {
          attack.count("handshook");
          attack.drop(peer);
        }
      }
    });
  },

  // Sockets that upgrade and say nothing, opened 50 at a time; held till the end.
  "silent-sockets": async (attack) => {
    const total = size(2_000, 200);
    let opened = 0;
    await parallel(attack, 50, async () => {
      while (opened < total && !attack.over) {
        opened++;
        await attack.connect();
      }
    });
    await attack.stopped;
  },
};

/** How long an attack runs: silent sockets long enough to meet the 10 s handshake timeout. */
function attackMs(name: string): number {
  return (name === "silent-sockets" && !SMOKE ? Math.max(SECONDS, 12) : SECONDS) * 1000;
}

const children = new Set<LineProcess>();
process.on("exit", () => {
  for (const child of children) child.kill();
});

function start(runtime: Runtime, script: string, extra: string[]): LineProcess {
  const path = new URL(script, import.meta.url).pathname;
  const own = ["--watchdog-seconds", String(Math.ceil(SECONDS + 120)), ...extra];
  const child = runtime === "deno"
    ? spawnLines(DENO_BIN, ["run", "-A", "--quiet", "--v8-flags=--expose-gc", path, ...own], script)
    : spawnLines(BUN_BIN, ["run", path, ...own], script);
  children.add(child);
  return child;
}

/** Closes a child's stdin and waits for it to exit; `false` if it had to be killed. */
async function finish(child: LineProcess): Promise<boolean> {
  child.end();
  const exited = await Promise.race([child.exited.then(() => true), sleep(10_000)]);
  if (!exited) await child.kill();
  children.delete(child);
  return exited === true;
}

interface Sample {
  rss: number;
  buffered: number;
}

/** The server's samples among `lines`. */
function samples(lines: readonly string[]): Sample[] {
  const out: Sample[] = [];
  for (const line of lines) {
    const match = line.match(/^SAMPLE (\d+) (\d+) (\d+)$/);
    if (match) out.push({ rss: Number(match[1]), buffered: Number(match[2]) });
  }
  return out;
}

/** What the honest client saw during the attack. */
interface Honest {
  requests: number;
  failed: number;
  p50: number;
  p99: number;
  closeCodes: Record<string, number>;
}

/** One row of the table. */
export interface Row {
  runtime: Runtime;
  attack: string;
  /** `ok`, or what went wrong with a process (a crash or a hang). */
  status: string;
  rssBefore?: number;
  rssPeak?: number;
  rssAfter?: number;
  rssAfterGc?: number;
  bufferedPeak?: number;
  honest?: Honest;
  attackersSaw?: Record<string, number>;
  serverClosed?: Record<string, number>;
}

async function measure(runtime: Runtime, name: string): Promise<Row> {
  const row: Row = { runtime, attack: name, status: "ok" };
  const server = start(runtime, "./hostile_server.ts", []);
  let honest: LineProcess | undefined;
  let ending = false;
  const crashed = (who: string) => (code: number | null): void => {
    if (!ending) row.status = `${who} exited with ${code}`;
  };
  server.exited.then(crashed("server"));
  try {
    const port = Number((await server.waitFor(/^READY (\d+)$/, GUARD_MS))[1]);
    honest = start(runtime, "./hostile_honest.ts", ["--port", String(port)]);
    honest.exited.then(crashed("honest client"));
    await honest.waitFor(/^CONNECTED$/, GUARD_MS);
    await sleep(BASELINE_MS);
    const from = server.lines.length;
    row.rssBefore = samples(server.lines.slice(0, from)).at(-1)?.rss;
    honest.send("start");
    const attack = new Attack(port);
    const running = ATTACKS[name](attack);
    await Promise.race([sleep(attackMs(name)), running]);
    attack.stop();
    honest.send("stop");
    await withTimeout(running, GUARD_MS, `the ${name} attack to stop`).catch((error) => {
      row.status = `hung: ${(error as Error).message}`;
    });
    row.attackersSaw = attack.codes;
    row.honest = JSON.parse((await honest.waitFor(/^RESULT (.*)$/, GUARD_MS))[1]);
    await sleep(AFTER_MS);
    server.send("codes");
    row.serverClosed = JSON.parse((await server.waitFor(/^CODES (.*)$/, GUARD_MS))[1]);
    const during = samples(server.lines.slice(from));
    row.rssPeak = Math.max(...during.map((s) => s.rss));
    row.bufferedPeak = Math.max(...during.map((s) => s.buffered));
    row.rssAfter = during.at(-1)?.rss;
    // Garbage or held? A full collection tells them apart.
    server.send("gc");
    row.rssAfterGc = Number((await server.waitFor(/^GC (\d+)$/, GUARD_MS))[1]);
  } catch (error) {
    if (row.status === "ok") row.status = `failed: ${(error as Error).message}`;
  } finally {
    ending = true;
    const ended = await Promise.all([honest, server].map((child) => child && finish(child)));
    if (ended.includes(false) && row.status === "ok") row.status = "hung: killed at the end";
  }
  return row;
}

const mib = (bytes: number | undefined, digits = 0): string =>
  bytes === undefined || !Number.isFinite(bytes) ? "–" : (bytes / MIB).toFixed(digits);
const ms = (value: number | undefined): string =>
  value === undefined || value === null || !Number.isFinite(value) ? "–" : value.toFixed(1);
const counts = (record: Record<string, number> | undefined): string => {
  const entries = Object.entries(record ?? {}).sort((a, b) => b[1] - a[1]);
  return entries.length ? entries.map(([what, n]) => `${what} ×${n}`).join(", ") : "–";
};

function table(rows: readonly Row[]): string {
  const lines = [
    `| server | attack | RSS before MiB | peak MiB | ${
      AFTER_MS / 1000
    } s after MiB | then after GC MiB | peak bufferedBytes MiB | honest requests | failed | p50 ms | p99 ms | attackers saw | server closed |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    if (r.status !== "ok" && r.rssPeak === undefined) {
      lines.push(`| ${r.runtime} | ${r.attack} | ${r.status} |||||||||||`);
      continue;
    }
    const h = r.honest;
    lines.push(
      `| ${r.runtime} | ${r.attack}${r.status === "ok" ? "" : ` (${r.status})`} | ${
        mib(r.rssBefore)
      } | ${mib(r.rssPeak)} | ${mib(r.rssAfter)} | ${mib(r.rssAfterGc)} | ${
        mib(r.bufferedPeak, 1)
      } | ${h?.requests ?? "–"} | ${h?.failed ?? "–"} | ${ms(h?.p50)} | ${ms(h?.p99)} | ${
        counts(r.attackersSaw)
      } | ${counts(r.serverClosed)} |`,
    );
  }
  return lines.join("\n");
}

const chosen = (args.get("attacks") ?? Object.keys(ATTACKS).join(",")).split(",");
for (const name of chosen) {
  if (!(name in ATTACKS)) throw new TypeError(`Unknown attack: ${name}`);
}
const rows: Row[] = [];
const started = performance.now();
for (const runtime of SERVERS) {
  for (const name of chosen) {
    log(`${runtime} server: ${name}`);
    const row = await measure(runtime, name);
    if (row.status !== "ok") log(`${runtime} ${name}: ${row.status}`);
    rows.push(row);
  }
}
log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);

const markdown = `${table(rows)}\n`;
console.log(`\n${markdown}`);
if (MARKDOWN) writeFileSync(MARKDOWN, markdown);
console.log(`${RESULT} ${JSON.stringify({ seconds: SECONDS, smoke: SMOKE, rows })}`);
process.exit(rows.every((row) => row.status === "ok") ? 0 : 1);
