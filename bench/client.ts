/**
 * The benchmark's client process, under Deno or Bun:
 *
 * ```
 * deno run -A bench/client.ts --kind ss|ws|web|http --scenario NAME --port N [options]
 * bun bench/client.ts --kind ss|ws|web|http --scenario NAME --port N [options]
 * ```
 *
 * It runs one scenario against a `bench/server.ts` of the same kind and prints
 * `RESULT <json>`. Scenarios: `exchange` (100 B each way, `--concurrency` loops; the raw
 * WebSocket pipelines that many messages), `large` (`--size` bytes up, then down, as
 * often as fits in `--duration`), `nagle` (exchange B sent one macrotask after A, which
 * the server holds), `idle` (open `--count` connections, print `OPEN <n>`, wait for stdin
 * to close) and `slow` (read a `--size` response at `--rate` bytes/s, sampling RSS).
 * Times are milliseconds: `--warmup` (not measured) then `--duration`.
 *
 * @module
 */

import process from "node:process";
import { type Connection, WebSocketClient } from "../mod.ts";
import {
  byteStream,
  collectGarbage,
  drain,
  LARGE_CHUNK_BYTES,
  nextMacrotask,
  now,
  numberArg,
  printResult,
  quantile,
  readStdinLines,
  rss,
  RUNTIME,
  scriptArgs,
  sleep,
  watchdog,
} from "./_common.ts";
import { dialRaw } from "./_raw_server.ts";

const args = scriptArgs();
const kind = args.get("kind") ?? "ss";
const scenario = args.get("scenario") ?? "exchange";
const port = numberArg(args, "port");
const warmup = numberArg(args, "warmup", 1000);
const duration = numberArg(args, "duration", 5000);
const concurrency = numberArg(args, "concurrency", 1);
const size = numberArg(args, "size", 100);
watchdog(numberArg(args, "max-seconds", 600) * 1000, `bench client (${RUNTIME} ${kind})`);

const PAYLOAD = new Uint8Array(100).fill(0x61);
const BIG = new Uint8Array(LARGE_CHUNK_BYTES).fill(9);

/** One operation per call; the three kinds of peer implement the same few. */
interface Peer {
  exchange(): Promise<void>;
  upload(bytes: number): Promise<void>;
  download(bytes: number): Promise<void>;
  /** Sends A (held by the server), then B one macrotask later; returns B's latency. */
  nagle(): Promise<number>;
  close(): void;
}

async function swaggersocketPeer(): Promise<Peer & { connection: Connection }> {
  const client = new WebSocketClient({ url: `ws://127.0.0.1:${port}/`, keepAlive: false });
  const connection = await client.connect();
  const fetch = connection.fetch;
  return {
    connection,
    async exchange() {
      const response = await fetch("/echo", { method: "POST", body: PAYLOAD });
      const body = await response.arrayBuffer();
      if (body.byteLength !== PAYLOAD.byteLength) throw new Error("Bad echo");
    },
    async upload(bytes) {
      const response = await fetch("/sink", {
        method: "POST",
        body: byteStream(bytes, BIG),
        // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
        duplex: "half",
      });
      if (Number(await response.text()) !== bytes) throw new Error("Bad upload");
    },
    async download(bytes) {
      const response = await fetch(`/source?bytes=${bytes}`);
      if (await drain(response.body) !== bytes) throw new Error("Bad download");
    },
    async nagle() {
      const a = fetch("/hold");
      await nextMacrotask(); // A's message has left; B is the client's next small write.
      const start = now();
      const b = await fetch("/fast");
      await b.arrayBuffer();
      const latency = now() - start;
      await (await a).arrayBuffer();
      return latency;
    },
    close: () => void client.close(),
  };
}

/**
 * A raw WebSocket peer. With `web`, each answer becomes a `Response` whose body is read, as
 * a caller of the API is owed (the floor that `bench/server.ts` describes).
 */
async function rawPeer(web = false): Promise<Peer> {
  const raw = await dialRaw(port);
  const { ws, next } = raw;
  const held = new Uint8Array(100).fill(0x61);
  held[0] = 1;
  return {
    async exchange() {
      const answer = next();
      ws.send(PAYLOAD);
      const data = await answer as ArrayBuffer;
      const body = web ? await new Response(data).arrayBuffer() : data;
      if (body.byteLength !== PAYLOAD.byteLength) {
        throw new Error("Bad echo");
      }
    },
    async upload(bytes) {
      const done = next();
      ws.send(`sink:${bytes}`);
      for (let left = bytes; left > 0; left -= LARGE_CHUNK_BYTES) {
        ws.send(left >= LARGE_CHUNK_BYTES ? BIG : BIG.subarray(0, left));
      }
      if (await done !== `done:${bytes}`) throw new Error("Bad upload");
    },
    async download(bytes) {
      let received = 0;
      await new Promise<void>((resolve) => {
        raw.onBinary = (data) => {
          received += data.byteLength;
          if (received >= bytes) resolve();
        };
        ws.send(`source:${bytes}`);
      });
      raw.onBinary = undefined;
    },
    async nagle() {
      const a = next();
      ws.send(held);
      await nextMacrotask();
      const start = now();
      const b = next();
      ws.send(PAYLOAD);
      await b;
      const latency = now() - start;
      await a;
      return latency;
    },
    close: () => ws.close(),
  };
}

function httpPeer(): Peer {
  const base = `http://127.0.0.1:${port}`;
  const unsupported = (): never => {
    throw new TypeError("Not measured over plain HTTP");
  };
  return {
    async exchange() {
      const response = await fetch(`${base}/echo`, { method: "POST", body: PAYLOAD });
      const body = await response.arrayBuffer();
      if (body.byteLength !== PAYLOAD.byteLength) throw new Error("Bad echo");
    },
    upload: unsupported,
    download: unsupported,
    nagle: unsupported,
    close: () => {},
  };
}

/** Runs `op` in `loops` concurrent loops: `warmup` ms unmeasured, then `duration` ms measured. */
async function measure(
  op: () => Promise<number | void>,
  loops: number,
): Promise<Record<string, number>> {
  const latencies: number[] = [];
  let measuring = false;
  let stopped = false;
  let ops = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const start = now();
      const own = await op();
      const latency = typeof own === "number" ? own : now() - start;
      if (measuring) {
        ops++;
        latencies.push(latency);
      }
    }
  };
  const running = Array.from({ length: loops }, loop);
  await sleep(warmup);
  measuring = true;
  const start = now();
  await sleep(duration);
  measuring = false;
  const seconds = (now() - start) / 1000;
  stopped = true;
  await Promise.all(running);
  return {
    ops,
    seconds,
    rate: ops / seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  };
}

/** Repeats whole transfers of `bytes` for `warmup`, then for at least `duration`. */
async function throughput(op: (bytes: number) => Promise<void>, bytes: number): Promise<number> {
  for (const start = now(); now() - start < warmup;) await op(bytes);
  let moved = 0;
  const start = now();
  while (now() - start < duration || moved === 0) {
    await op(bytes);
    moved += bytes;
  }
  return moved / ((now() - start) / 1000) / 1e6;
}

async function openMany(count: number): Promise<Peer[]> {
  const peers: Peer[] = [];
  // Batches: a burst of thousands of SYNs overflows the listen backlog.
  for (let opened = 0; opened < count;) {
    const batch = Math.min(50, count - opened);
    const next = await Promise.all(
      Array.from({ length: batch }, () => kind === "ss" ? swaggersocketPeer() : rawPeer()),
    );
    peers.push(...next);
    opened += batch;
  }
  return peers;
}

async function slowReader(peer: Peer & { connection: Connection }): Promise<void> {
  const rate = numberArg(args, "rate");
  collectGarbage();
  await sleep(200);
  const base = rss();
  let peak = base;
  const sampler = setInterval(() => peak = Math.max(peak, rss()), 100);
  const start = now();
  const response = await peer.connection.fetch(`/source?bytes=${size}`);
  const reader = response.body!.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    const ahead = (bytes / rate) * 1000 - (now() - start);
    if (ahead > 1) await sleep(ahead);
  }
  clearInterval(sampler);
  peak = Math.max(peak, rss());
  const seconds = (now() - start) / 1000;
  printResult({ bytes, seconds, rate: bytes / seconds / 1e6, base, peak, growth: peak - base });
}

const peer: Peer = scenario === "idle"
  ? undefined!
  : kind === "ss"
  ? await swaggersocketPeer()
  : kind === "ws" || kind === "web"
  ? await rawPeer(kind === "web")
  : httpPeer();

switch (scenario) {
  case "exchange":
    printResult(await measure(() => peer.exchange(), concurrency));
    break;
  case "large": {
    const up = await throughput((bytes) => peer.upload(bytes), size);
    const down = await throughput((bytes) => peer.download(bytes), size);
    printResult({ up, down });
    break;
  }
  case "nagle":
    printResult(await measure(() => peer.nagle(), 1));
    break;
  case "slow":
    await slowReader(peer as Peer & { connection: Connection });
    break;
  case "idle": {
    const peers = await openMany(numberArg(args, "count"));
    console.log(`OPEN ${peers.length}`);
    await new Promise<void>((resolve) => readStdinLines(() => {}, resolve));
    for (const open of peers) open.close();
    process.exit(0);
    break;
  }
  default:
    throw new TypeError(`Unknown scenario: ${scenario}`);
}
peer?.close();
// Bun and Deno keep running while a socket closes; the result is out, so leave now.
setTimeout(() => process.exit(0), 100);
