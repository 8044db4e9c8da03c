/**
 * Mounting on an existing `Deno.serve` app (`noServer: true`): agents dial
 * `ws://host:port/agents`; every other path is the app — here a small gateway that
 * lists agents and forwards `/api/agents/<id>/<path>` to that agent's API.
 *
 * Run:
 *
 *   node_modules/.bin/deno run -A examples/mount_deno.ts [--port 8000] [--hostname 127.0.0.1]
 *
 * then, with an agent connected (`node_modules/.bin/bun examples/bun_agent.ts ws://127.0.0.1:8000/agents`):
 *
 *   curl http://127.0.0.1:8000/api/agents
 *   curl http://127.0.0.1:8000/api/agents/<id>/pets
 *
 * `--port 0` picks a free port (printed); `--exit-after <ms>` stops by itself.
 *
 * @module
 */

import { EventType, WebSocketServer } from "../mod.ts";

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}
const hostname = flag("hostname", "127.0.0.1");
const port = Number(flag("port", "8000"));
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
    // (Not `signal: request.signal`: Deno.serve aborts it as soon as the response head
    // is returned, which would cut the agent's response body short.)
    return await agent.fetch(route[2] + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
  }
  return new Response("Not Found", { status: 404 });
}

let server: Deno.HttpServer;
try {
  server = Deno.serve({
    hostname,
    port,
    onListen: (addr) => console.log(`listening on http://${addr.hostname}:${addr.port}`),
  }, (request, info) => {
    if (new URL(request.url).pathname === "/agents") {
      return agents.upgrade(request, info) ?? new Response("Upgrade failed", { status: 500 });
    }
    return app(request);
  });
} catch (error) {
  if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  console.error(
    `port ${port} on ${hostname} is in use: pass --port with another (0: any free one)`,
  );
  Deno.exit(1);
}

async function shutdown(): Promise<void> {
  await agents.close();
  await server.shutdown();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", shutdown);
Deno.addSignalListener("SIGTERM", shutdown);
if (exitAfter > 0) setTimeout(shutdown, exitAfter);
