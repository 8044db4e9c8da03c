/**
 * A Deno server for agents: it lists agents as they come and go, calls each agent's
 * API as it connects, and serves its own small API to the agents.
 *
 * Run:
 *
 *   node_modules/.bin/deno run -A examples/deno_server.ts [--port 8090] [--hostname 127.0.0.1]
 *
 * then start one or more agents, for example
 *
 *   node_modules/.bin/bun examples/bun_agent.ts ws://127.0.0.1:8090
 *   node_modules/.bin/deno run -A examples/hono.ts ws://127.0.0.1:8090
 *
 * (8090, so that it runs beside `npm start`'s gateway on 8080.)
 *
 * Pass `--hostname 0.0.0.0` to accept agents from other machines, `--port 0` to pick
 * a free port (printed), and `--exit-after <ms>` to stop by itself (for demos and tests).
 *
 * @module
 */

import { type Connection, EventType, type Handler, WebSocketServer } from "../mod.ts";

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}

const hostname = flag("hostname", "127.0.0.1");
const port = Number(flag("port", "8090"));
const exitAfter = Number(flag("exit-after", "0"));

/** Describes an agent for listings. */
function describe(connection: Connection) {
  return {
    id: connection.id,
    metadata: connection.metadata,
    remoteAddr: connection.remoteAddr,
    connectedAt: connection.connectedAt?.toISOString(),
    rtt: connection.rtt,
  };
}

// The server's own API, served to every agent over its socket.
const api: Handler = async (request, { connection }) => {
  const url = new URL(request.url);
  if (request.method === "GET" && url.pathname === "/time") {
    return Response.json({ now: new Date().toISOString() });
  }
  if (request.method === "GET" && url.pathname === "/agents") {
    return Response.json(server.connections().map(describe));
  }
  if (request.method === "POST" && url.pathname === "/log") {
    console.log(`log from ${connection.id}: ${await request.text()}`);
    return new Response(null, { status: 204 });
  }
  return new Response("Not Found", { status: 404 });
};

let server: WebSocketServer;
try {
  server = new WebSocketServer({ hostname, port, handler: api });
} catch (error) {
  if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  console.error(
    `port ${port} on ${hostname} is in use: pass --port with another (0: any free one)`,
  );
  Deno.exit(1);
}
console.log(`listening on ws://${server.addr.hostname}:${server.addr.port}`);

// Watch agents come and go; call each one's API as it connects. Not awaited: the loop
// runs until the server closes.
(async () => {
  for await (const event of server.events()) {
    switch (event.type) {
      case EventType.ConnectionReceived: {
        const agent = event.connection!;
        console.log(
          `agent connected: ${agent.id} ${JSON.stringify(agent.metadata)} from ${agent.remoteAddr}`,
        );
        try {
          const response = await agent.fetch("/info", { signal: AbortSignal.timeout(10_000) });
          console.log(`agent ${agent.id} info: ${await response.text()}`);
        } catch (error) {
          console.log(`agent ${agent.id} did not answer /info: ${(error as Error).message}`);
        }
        console.log(`agents online: ${server.connections().length}`);
        break;
      }
      case EventType.ConnectionFailure:
        console.log(`agent failed: ${event.connectionId}: ${event.error?.message}`);
        break;
      case EventType.ConnectionClosed:
        console.log(`agent disconnected: ${event.connectionId}`);
        console.log(`agents online: ${server.connections().length}`);
        break;
    }
  }
})();

async function shutdown(): Promise<void> {
  console.log("shutting down");
  await server.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", shutdown);
Deno.addSignalListener("SIGTERM", shutdown);
if (exitAfter > 0) setTimeout(shutdown, exitAfter);
