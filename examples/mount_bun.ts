/**
 * Mounting on an existing `Bun.serve` app (`noServer: true`): agents dial
 * `ws://host:port/agents` and Bun gets the server's `websocket` handlers; every other
 * path is the app — here a small gateway that lists agents and forwards
 * `/api/agents/<id>/<path>` to that agent's API.
 *
 * Run:
 *
 *   node_modules/.bin/bun examples/mount_bun.ts [--port 8001] [--hostname 127.0.0.1]
 *
 * then, with an agent connected (`node_modules/.bin/bun examples/bun_agent.ts ws://127.0.0.1:8001/agents`):
 *
 *   curl http://127.0.0.1:8001/api/agents
 *   curl http://127.0.0.1:8001/api/agents/<id>/pets
 *
 * (8001, so that it runs beside mount_deno.ts on 8000.)
 *
 * `--port 0` picks a free port (printed); `--exit-after <ms>` stops by itself.
 *
 * @module
 */

import process from "node:process";
import {
  type BunServerLike,
  type BunWebSocketHandlers,
  EventType,
  WebSocketServer,
} from "../mod.ts";

/** The part of the `Bun` global used here (described structurally, so `deno check` passes). */
interface BunLike {
  argv: string[];
  serve(options: {
    hostname: string;
    port: number;
    fetch: (
      request: Request,
      server: BunServerLike,
    ) => Response | undefined | Promise<Response | undefined>;
    websocket: BunWebSocketHandlers;
  }): { hostname: string; port: number; stop(closeActiveConnections?: boolean): unknown };
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;

const args = Bun.argv.slice(2);
function flag(name: string, fallback: string): string {
  const at = args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < args.length ? args[at + 1] : fallback;
}
const hostname = flag("hostname", "127.0.0.1");
const port = Number(flag("port", "8001"));
const exitAfter = Number(flag("exit-after", "0"));

// Does not listen by itself: `upgrade()` below hands it the agents' upgrade requests.
const agents = new WebSocketServer({ noServer: true });

// Log agents as they come and go. Not awaited: runs until the server closes.
(async () => {
  for await (const event of agents.events()) {
    if (event.type === EventType.ConnectionReceived) {
      console.log(
        `agent connected: ${event.connectionId} ${JSON.stringify(event.connection!.metadata)}`,
      );
    } else if (event.type === EventType.ConnectionClosed) {
      console.log(`agent disconnected: ${event.connectionId}`);
    }
  }
})();

/** The app that was there before: plain `(request) => Response`. */
async function app(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/") return new Response("gateway: see /api/agents\n");
  if (url.pathname === "/api/agents") {
    return Response.json(
      agents.connections().map((agent) => ({ id: agent.id, metadata: agent.metadata })),
    );
  }
  const route = url.pathname.match(/^\/api\/agents\/([^/]+)(\/.*)$/);
  if (route) {
    const agent = agents.connection(route[1]);
    if (!agent) return Response.json({ error: "no such agent" }, { status: 404 });
    // Forward the request to the agent over its socket; the body streams both ways.
    return await agent.fetch(route[2] + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal: request.signal,
    });
  }
  return new Response("Not Found", { status: 404 });
}

let server: ReturnType<BunLike["serve"]>;
try {
  server = Bun.serve({
    hostname,
    port,
    // `upgrade()` returns undefined once Bun has upgraded the request.
    fetch: (request, bunServer) =>
      new URL(request.url).pathname === "/agents"
        ? agents.upgrade(request, bunServer)
        : app(request),
    websocket: agents.websocket,
  });
} catch (error) {
  if ((error as { code?: string }).code !== "EADDRINUSE") throw error;
  console.error(
    `port ${port} on ${hostname} is in use: pass --port with another (0: any free one)`,
  );
  process.exit(1);
}
console.log(`listening on http://${server.hostname}:${server.port}`);

async function shutdown(): Promise<void> {
  await agents.close();
  await server.stop();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
if (exitAfter > 0) setTimeout(shutdown, exitAfter);
