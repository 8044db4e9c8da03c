/**
 * The client-only entry in a real headless Chromium (Debian's `chromium`), bundled for the
 * browser with `deno bundle --platform browser`: a page connects with metadata, serves a handler that the
 * server calls, calls the server, and logs no warning or error of the library's.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventType, WebSocketServer } from "../mod.ts";
import { DENO_BIN, nextEvent, ROOT_DIR, RUNTIME, withTimeout } from "./_helpers.ts";
import process from "node:process";
import { launchBrowser, NO_CHROMIUM } from "./_browser.ts";

const OPTIONS = { timeout: 120_000, skip: NO_CHROMIUM };
const STEP_MS = 30_000;

/** Bundles the client-only entry (`client/mod.ts`) for the browser; resolves with the code. */
function bundle(dir: string): Promise<string> {
  const out = join(dir, "client.js");
  return new Promise((resolve, reject) =>
    execFile(
      DENO_BIN,
      ["bundle", "--quiet", "--platform", "browser", "-o", out, "client/mod.ts"],
      { cwd: ROOT_DIR, timeout: 120_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" } },
      (error, _stdout, stderr) =>
        error ? reject(new Error(stderr || String(error))) : resolve(readFileSync(out, "utf8")),
    )
  );
}

const PAGE = (wsUrl: string) =>
  `<!doctype html><meta charset="utf-8"><title>agent page</title>
<script type="module">
import { WebSocketClient, EventType } from "/client.js";
const client = new WebSocketClient({
  url: ${JSON.stringify(wsUrl)},
  handler: async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/hello") return new Response("hello from the page");
    if (url.pathname === "/echo") return new Response(await request.arrayBuffer());
    return new Response("not here", { status: 404 });
  },
}).withMetadata({ name: "page", kind: "browser" });
const connection = await client.connect();
const time = await (await connection.fetch("/time")).json();
document.title = "connected " + connection.id + " " + time.now;
</script>`;

describe(`the client in a headless Chromium, against a ${RUNTIME} server`, OPTIONS, () => {
  let dir: string;
  let code: string;
  let server: WebSocketServer;
  let site: Server;
  let siteUrl: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ss-browser-"));
    code = await bundle(dir);
    server = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      handler: () => Response.json({ now: "2026-12-06T00:00:00Z" }),
    });
    const wsUrl = `ws://127.0.0.1:${server.addr.port}`;
    site = createServer((req, res) => {
      if (req.url === "/client.js") {
        res.writeHead(200, { "content-type": "text/javascript" });
        res.end(code);
      } else {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(PAGE(wsUrl));
      }
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as { port: number }).port}/`;
  });
  after(async () => {
    await server?.close();
    await new Promise((resolve) => site?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it("connects with metadata, serves the server's calls, calls the server, with a quiet console", async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const console: string[] = [];
      page.on("console", (message) => console.push(`${message.type()}: ${message.text()}`));
      page.on("pageerror", (error) => console.push(`pageerror: ${error}`));
      const received = nextEvent(server.events(), EventType.ConnectionReceived, STEP_MS);
      await page.goto(siteUrl);
      const event = await received;
      const connection = event.connection!;
      assert.deepEqual(connection.metadata, { name: "page", kind: "browser" });
      const hello = await withTimeout(connection.fetch("/hello"), STEP_MS, "GET /hello");
      assert.equal(await hello.text(), "hello from the page");
      const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
      const echoed = await withTimeout(
        connection.fetch("/echo", { method: "POST", body: big }),
        STEP_MS,
        "POST /echo 1 MiB",
      );
      assert.deepEqual(new Uint8Array(await echoed.arrayBuffer()), big);
      await page.waitForFunction(`document.title.startsWith("connected ${connection.id}")`, {
        timeout: STEP_MS,
      });
      assert.deepEqual(console, [], "no warnings or errors in the page's console");
    } finally {
      await browser.close();
    }
  });
});
