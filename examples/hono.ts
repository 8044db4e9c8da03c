/**
 * An agent that serves a Hono app: `app.fetch` goes to the connection unchanged, as
 * it would to `Deno.serve` or `Bun.serve`. Runs on Deno and on Bun.
 *
 * Run (with examples/deno_server.ts running):
 *
 *   node_modules/.bin/deno run -A examples/hono.ts [ws://127.0.0.1:8090] [--name hono-1] [--exit-after <ms>]
 *   node_modules/.bin/bun examples/hono.ts [ws://127.0.0.1:8090]
 *
 * @module
 */

import process from "node:process";
import { Hono } from "hono";
import { HandshakeError, WebSocketClient } from "../mod.ts";

const args = process.argv.slice(2);
function flag(name: string, fallback: string): string {
  const at = args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < args.length ? args[at + 1] : fallback;
}
const url = args.find((arg) => /^wss?:\/\//.test(arg)) ?? "ws://127.0.0.1:8090";
const name = flag("name", `hono-agent-${process.pid}`);
const exitAfter = Number(flag("exit-after", "0"));
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";

// An ordinary Hono app.
const app = new Hono();
app.get("/info", (c) => c.json({ name, runtime, framework: "hono" }));
app.get("/hello/:name", (c) => c.json({ greeting: `Hello, ${c.req.param("name")}!` }));
app.post("/echo", async (c) => c.json({ received: await c.req.json() }));

const client = new WebSocketClient({
  url,
  handler: app.fetch, // unchanged; it keeps serving after every reconnect
  reconnect: { initialDelay: 250, maxDelay: 5_000 },
}).withMetadata({ name, runtime, framework: "hono" });

async function shutdown(): Promise<void> {
  await client.close();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
if (exitAfter > 0) setTimeout(shutdown, exitAfter);

// The first dial: retry until the server is up (later reconnects are automatic).
for (let delay = 250;; delay = Math.min(delay * 2, 5_000)) {
  try {
    const connection = await client.connect();
    console.log(`connected as ${connection.id}, serving the Hono app`);
    break;
  } catch (error) {
    if (error instanceof HandshakeError && !error.retryable) throw error;
    console.log(`cannot reach ${url} (${(error as Error).message}); retrying in ${delay} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
