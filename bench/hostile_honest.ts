/**
 * The honest client of the hostile-peers benchmark (`bench/hostile.ts`), under Deno or Bun:
 *
 * ```
 * deno run -A bench/hostile_honest.ts --port P [--watchdog-seconds 120]
 * bun bench/hostile_honest.ts --port P
 * ```
 *
 * A `WebSocketClient` with default options (so it reconnects by itself) fetches `GET /ping`
 * every 100 ms whatever the last fetch is doing, as a user's requests would keep coming.
 * A fetch fails if it rejects, if the client has no open connection at that moment, or if it
 * takes more than 2 s. It prints `CONNECTED` once connected, then obeys lines on stdin:
 * `start` begins counting, `stop` ends it, waits for the fetches still out and prints
 * `RESULT <json>` (requests, failed, p50/p99 ms of the successful ones, and the codes its
 * connection closed with meanwhile). It exits when stdin closes or its watchdog fires.
 *
 * @module
 */

import process from "node:process";
import { EventType, WebSocketClient } from "../mod.ts";
import {
  now,
  numberArg,
  printResult,
  quantile,
  readStdinLines,
  RUNTIME,
  scriptArgs,
  watchdog,
} from "./_common.ts";

const args = scriptArgs();
watchdog(numberArg(args, "watchdog-seconds", 120) * 1000, `hostile honest client (${RUNTIME})`);
const port = numberArg(args, "port");

const INTERVAL_MS = 100;
const TIMEOUT_MS = 2_000;

const client = new WebSocketClient({ url: `ws://127.0.0.1:${port}` }).withMetadata({
  name: "honest",
});
await client.connect();

let counting = false;
let requests = 0;
let failed = 0;
const latencies: number[] = [];
const closeCodes: Record<string, number> = {};
const pending = new Set<Promise<void>>();

(async () => {
  for await (const event of client.events()) {
    if (!counting || event.type !== EventType.ConnectionClosed) continue;
    const code = (event.error as { code?: number } | undefined)?.code ?? "closed";
    closeCodes[code] = (closeCodes[code] ?? 0) + 1;
  }
})();

async function fetchOnce(counted: boolean): Promise<void> {
  const started = now();
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ok = false;
  try {
    // A real caller has no connection to use while the client reconnects: that is a failure,
    // and dialing here as well would add handshakes of our own to the attacker's.
    const connection = client.connection;
    if (!connection || connection.isClosed) throw new Error("not connected");
    const attempt = (async (): Promise<void> => {
      const response = await connection.fetch("/ping", { signal: abort.signal });
      if ((await response.text()) !== "pong") throw new Error(`status ${response.status}`);
    })();
    attempt.catch(() => {});
    await Promise.race([
      attempt,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timed out")), TIMEOUT_MS);
      }),
    ]);
    ok = true;
  } catch {
    abort.abort();
  } finally {
    clearTimeout(timer);
  }
  if (!counted) return;
  requests++;
  if (ok) latencies.push(now() - started);
  else failed++;
}

setInterval(() => {
  const done = fetchOnce(counting);
  pending.add(done);
  done.finally(() => pending.delete(done));
}, INTERVAL_MS);

readStdinLines(async (line) => {
  if (line === "start") {
    counting = true;
  } else if (line === "stop") {
    counting = false;
    // Fetches started while counting are counted when they settle, within TIMEOUT_MS.
    await Promise.all([...pending]);
    printResult({
      requests,
      failed,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      closeCodes,
    });
  }
}, () => process.exit(0));

console.log("CONNECTED");
