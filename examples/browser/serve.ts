/**
 * Serves `index.html`, a page that is an agent: it dials the gateway and serves a small API
 * from the browser tab, which anyone can then call through the gateway. The client-only
 * entry (`client/mod.ts`) is bundled for the browser at start.
 *
 * Run (with `npm start` running the gateway on 8080):
 *
 *   node_modules/.bin/deno run -A examples/browser/serve.ts [--port 8092]
 *
 * then open http://127.0.0.1:8092/ (add `?name=kiosk` or `?gateway=ws://…/agents/connect`)
 * and call the tab:
 *
 *   curl http://127.0.0.1:8080/agents/tab/hello
 *   curl http://127.0.0.1:8080/agents/tab/clicks
 *
 * `--port 0` picks a free port (printed); `--exit-after <ms>` stops by itself.
 *
 * @module
 */

function flag(name: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  return at !== -1 && at + 1 < Deno.args.length ? Deno.args[at + 1] : fallback;
}
const port = Number(flag("port", "8092"));
const exitAfter = Number(flag("exit-after", "0"));
const here = new URL(".", import.meta.url);

const out = await Deno.makeTempFile({ suffix: ".js" });
const bundled = await new Deno.Command(Deno.execPath(), {
  args: [
    "bundle",
    "--quiet",
    "--platform",
    "browser",
    "-o",
    out,
    new URL("../../client/mod.ts", import.meta.url).pathname,
  ],
}).output();
if (!bundled.success) {
  console.error(new TextDecoder().decode(bundled.stderr));
  Deno.exit(1);
}
const client = await Deno.readTextFile(out);
await Deno.remove(out);
const page = await Deno.readTextFile(new URL("index.html", here));

let server: Deno.HttpServer;
try {
  server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: (addr) => console.log(`open http://${addr.hostname}:${addr.port}/`),
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/client.js") {
      return new Response(client, { headers: { "content-type": "text/javascript" } });
    }
    if (path === "/") return new Response(page, { headers: { "content-type": "text/html" } });
    return new Response("Not Found", { status: 404 });
  });
} catch (error) {
  if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  console.error(`port ${port} on 127.0.0.1 is in use: pass --port with another (0: any free one)`);
  Deno.exit(1);
}
if (exitAfter > 0) setTimeout(() => server.shutdown(), exitAfter);
