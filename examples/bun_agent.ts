/**
 * A Bun agent: dials the server with metadata, serves a small REST API with a plain
 * handler, calls the server's API, and reconnects whenever the connection is lost.
 *
 * Run (with examples/deno_server.ts running, or a mount example: pass its `/agents` URL):
 *
 *   node_modules/.bin/bun examples/bun_agent.ts [ws://127.0.0.1:8090] [--name agent-1] [--exit-after <ms>]
 *
 * The agent needs no open port: it dials out, and the server calls its API over that
 * socket. Stop it with Ctrl-C.
 *
 * @module
 */

import process from "node:process";
import { EventType, type Handler, HandshakeError, WebSocketClient } from "../mod.ts";

/** The part of the `Bun` global used here (described structurally, so `deno check` passes). */
interface BunLike {
  version: string;
  argv: string[];
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;

const args = Bun.argv.slice(2);
function flag(name: string, fallback: string): string {
  const at = args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < args.length ? args[at + 1] : fallback;
}
const url = args.find((arg) => /^wss?:\/\//.test(arg)) ?? "ws://127.0.0.1:8090";
const name = flag("name", `bun-agent-${process.pid}`);
const exitAfter = Number(flag("exit-after", "0"));
const startedAt = Date.now();

// The agent's REST API: a plain `(request) => Response` handler, as for `Bun.serve`.
interface Pet {
  id: number;
  name: string;
}
const pets = new Map<number, Pet>([[1, { id: 1, name: "Rex" }], [2, { id: 2, name: "Tom" }]]);

const api: Handler = async (request) => {
  const url = new URL(request.url);
  const petId = url.pathname.match(/^\/pets\/(\d+)$/);
  if (request.method === "GET" && url.pathname === "/info") {
    return Response.json({
      name,
      runtime: "bun",
      version: Bun.version,
      pid: process.pid,
      uptime: Math.round((Date.now() - startedAt) / 1000),
    });
  }
  if (request.method === "GET" && url.pathname === "/pets") {
    return Response.json([...pets.values()]);
  }
  if (request.method === "POST" && url.pathname === "/pets") {
    const body = await request.json() as { name?: unknown };
    if (typeof body.name !== "string") {
      return Response.json({ error: "name required" }, { status: 400 });
    }
    const pet = { id: Math.max(0, ...pets.keys()) + 1, name: body.name };
    pets.set(pet.id, pet);
    return Response.json(pet, { status: 201 });
  }
  if (request.method === "GET" && petId) {
    const pet = pets.get(Number(petId[1]));
    return pet ? Response.json(pet) : Response.json({ error: "no such pet" }, { status: 404 });
  }
  return Response.json({ error: "not found" }, { status: 404 });
};

const client = new WebSocketClient({
  url,
  handler: api,
  keepAlive: true, // heartbeat, and reconnect with backoff when the connection is lost
  reconnect: { initialDelay: 250, maxDelay: 5_000 },
}).withMetadata({ name, runtime: "bun", version: Bun.version });

// On every (re)connection, call the server's API. Not awaited: runs until the client closes.
let connections = 0;
let stopping = false;
(async () => {
  for await (const event of client.events()) {
    if (event.type === EventType.ConnectionClosed) {
      if (!stopping) console.log(`disconnected from ${url}; reconnecting`);
      continue;
    }
    if (event.type !== EventType.ConnectionReceived) continue;
    const connection = event.connection!;
    console.log(`connected #${++connections} as ${connection.id}`);
    try {
      // A server that serves no API of its own (the mount examples) answers 501.
      const timeResponse = await connection.fetch("/time");
      if (!timeResponse.ok) {
        console.log(
          `the server has no API to call: ${timeResponse.status} ${await timeResponse.text()}`,
        );
        continue;
      }
      const time = await timeResponse.json() as { now: string };
      console.log(`server time: ${time.now}`);
      const agents = await (await connection.fetch("/agents")).json() as unknown[];
      console.log(`agents online: ${agents.length}`);
    } catch (error) {
      console.log(`calling the server failed: ${(error as Error).message}`);
    }
  }
})();

async function shutdown(): Promise<void> {
  stopping = true;
  await client.close();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
if (exitAfter > 0) setTimeout(shutdown, exitAfter);

// The first dial: retry until the server is up (later reconnects are automatic).
for (let delay = 250;; delay = Math.min(delay * 2, 5_000)) {
  try {
    await client.connect();
    break;
  } catch (error) {
    if (error instanceof HandshakeError && !error.retryable) throw error;
    console.log(`cannot reach ${url} (${(error as Error).message}); retrying in ${delay} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
