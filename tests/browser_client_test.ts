/**
 * The client-only entry in a real headless Chromium (Debian's `chromium`), bundled for the
 * browser with `deno bundle --platform browser`, against a server in this runtime: a page
 * connects with metadata and serves a handler; the server calls it (small, 1 MiB, a streamed
 * response) and the page calls the server; aborts go both ways; after a server restart the
 * page reconnects with its handler still serving; through the gateway, curl reaches the page
 * by name; and the page's console stays empty throughout.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { Browser, Page } from "puppeteer-core";
import { type Connection, EventType, WebSocketServer } from "../mod.ts";
import { startGateway } from "../gateway.ts";
import { DENO_BIN, nextEvent, ROOT_DIR, RUNTIME, withTimeout } from "./_helpers.ts";
import { deferred } from "./_deferred.ts";
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

/**
 * The page: dials `?ws=` as `?name=`, serves a small API, and offers `window.page` to the
 * test (calls to the server, and what its handler saw aborted).
 */
const PAGE = `<!doctype html><meta charset="utf-8"><title>agent page</title>
<script type="module">
import { WebSocketClient } from "/client.js";
const params = new URLSearchParams(location.search);
const aborted = [];
const client = new WebSocketClient({
  url: params.get("ws"),
  reconnect: { initialDelay: 50, maxDelay: 500 },
  handler: async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/hello") return new Response("hello from the page");
    if (url.pathname === "/echo") return new Response(await request.arrayBuffer());
    if (url.pathname === "/stream") {
      let n = 0;
      return new Response(new ReadableStream({
        pull(controller) {
          if (n === 5) return controller.close();
          controller.enqueue(new TextEncoder().encode("chunk " + n++ + "\\n"));
        },
      }));
    }
    if (url.pathname === "/forever") {
      request.signal.addEventListener("abort", () => aborted.push(url.pathname));
      return new Promise(() => {});
    }
    return new Response("not here", { status: 404 });
  },
}).withMetadata({ name: params.get("name"), kind: "browser" });
let connection;
try {
  connection = await client.connect();
} catch (error) {
  document.title = "refused " + error.code;
  throw error;
}
window.page = {
  aborted,
  async headersBothWays() {
    const headers = { cookie: "a=1", "x-ok": "1" };
    const byInit = await (await client.connection.fetch("/headers", { headers })).json();
    const byRequest = await (await client.connection.fetch(
      new Request(new URL("/headers", location.href), { headers }),
    )).json();
    return JSON.stringify([byInit, byRequest]);
  },
  async call(path, abortAfterMs) {
    const signal = abortAfterMs === undefined ? undefined : AbortSignal.timeout(abortAfterMs);
    try {
      const response = await client.connection.fetch(path, { signal });
      return await response.text();
    } catch (error) {
      return error.name;
    }
  },
};
document.title = "connected " + connection.id;
</script>`;

describe(`the client in a headless Chromium, against a ${RUNTIME} server`, OPTIONS, () => {
  let dir: string;
  let code: string;
  let site: Server;
  let siteUrl: string;
  let browser: Browser;
  const problems: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "ss-browser-"));
    code = await bundle(dir);
    site = createServer((req, res) => {
      const js = req.url === "/client.js";
      res.writeHead(200, { "content-type": js ? "text/javascript" : "text/html" });
      res.end(js ? code : PAGE);
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as { port: number }).port}/`;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => site?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(problems, [], "no warnings or errors in the pages' consoles");
  });

  /** Opens the page, dialing `ws` as `name`; it records any console warning or error. */
  async function openPage(ws: string, name: string): Promise<Page> {
    const page = await browser.newPage();
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warn") {
        problems.push(`${message.type()}: ${message.text()}`);
      }
    });
    page.on("pageerror", (error) => problems.push(`pageerror: ${error}`));
    await page.goto(`${siteUrl}?ws=${encodeURIComponent(ws)}&name=${name}`);
    return page;
  }

  const call = (page: Page, path: string, abortAfterMs?: number): Promise<string> =>
    page.evaluate(`window.page.call(${JSON.stringify(path)}, ${abortAfterMs})`) as Promise<string>;

  it("connects with metadata; each end calls the other; aborts go both ways", async () => {
    const serverSawAbort = deferred<void>();
    const server = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      handler: (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/time") return Response.json({ now: "2026-12-06T00:00:00Z" });
        if (path === "/headers") return Response.json(Object.fromEntries(request.headers));
        request.signal.addEventListener("abort", () => serverSawAbort.resolve());
        return new Promise<Response>(() => {});
      },
    });
    try {
      const received = nextEvent(server.events(), EventType.ConnectionReceived, STEP_MS);
      const page = await openPage(`ws://127.0.0.1:${server.addr.port}`, "page");
      const connection: Connection = (await received).connection!;
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
      // A streamed request body, chunk by chunk, echoed back whole.
      const parts = ["one ", "two ", "three"];
      const upload = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = parts.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(new TextEncoder().encode(next));
        },
      });
      const uploaded = await withTimeout(
        connection.fetch("/echo", { method: "POST", body: upload }),
        STEP_MS,
        "POST /echo streamed",
      );
      assert.equal(await uploaded.text(), "one two three");
      const streamed = await withTimeout(connection.fetch("/stream"), STEP_MS, "GET /stream");
      assert.equal(await streamed.text(), "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");

      assert.equal(await call(page, "/time"), '{"now":"2026-12-06T00:00:00Z"}');
      // A page's two ways to send headers send the same: the browser's forbidden ones dropped.
      const sent = JSON.parse(
        await page.evaluate(`window.page.headersBothWays()`) as string,
      ) as Record<string, string>[];
      assert.deepEqual(sent[0], sent[1]);
      assert.equal(sent[0]["x-ok"], "1");
      assert.equal(sent[0].cookie, undefined);

      // The server gives up on the page: the page's handler sees its request aborted.
      await assert.rejects(
        connection.fetch("/forever", { signal: AbortSignal.timeout(100) }),
        { name: "TimeoutError" },
      );
      await page.waitForFunction(`window.page.aborted.includes("/forever")`, { timeout: STEP_MS });
      // The page gives up on the server: the server's handler sees it.
      assert.equal(await call(page, "/never", 100), "TimeoutError");
      await withTimeout(serverSawAbort.promise, STEP_MS, "the server's handler to see the abort");
      await page.close();
    } finally {
      await server.close();
    }
  });

  it("is refused by authorize without a word in the console", async () => {
    const server = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      authorize: ({ metadata }) => (metadata as { name?: string }).name === "invited",
    });
    try {
      const page = await browser.newPage();
      const seen: string[] = [];
      page.on("console", (message) => seen.push(`${message.type()}: ${message.text()}`));
      await page.goto(
        `${siteUrl}?ws=${encodeURIComponent(`ws://127.0.0.1:${server.addr.port}`)}&name=stranger`,
      );
      await page.waitForFunction(`document.title === "refused 4003"`, { timeout: STEP_MS });
      assert.deepEqual(seen.filter((line) => /^(error|warn)/.test(line)), []);
      await page.close();
    } finally {
      await server.close();
    }
  });

  it("reconnects after a server restart, its handler still serving", async () => {
    const first = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
    const port = first.addr.port;
    const received = nextEvent(first.events(), EventType.ConnectionReceived, STEP_MS);
    const page = await openPage(`ws://127.0.0.1:${port}`, "survivor");
    await received;
    await first.close();
    const second = new WebSocketServer({ hostname: "127.0.0.1", port });
    try {
      const again = await nextEvent(second.events(), EventType.ConnectionReceived, STEP_MS);
      assert.equal((again.connection!.metadata as { name: string }).name, "survivor");
      const hello = await withTimeout(again.connection!.fetch("/hello"), STEP_MS, "after restart");
      assert.equal(await hello.text(), "hello from the page");
      await page.close();
    } finally {
      await second.close();
    }
  });

  it("through the gateway, curl reaches the page's handler by its name", async () => {
    const gateway = await startGateway({ port: 0 });
    try {
      const received = nextEvent(gateway.server.events(), EventType.ConnectionReceived, STEP_MS);
      const page = await openPage(gateway.agentsUrl, "kiosk");
      await received;
      const body = await new Promise<string>((resolve, reject) =>
        execFile(
          "curl",
          ["-sS", "--max-time", "20", `${gateway.url}/agents/kiosk/hello`],
          (error, stdout) => error ? reject(error) : resolve(stdout),
        )
      );
      assert.equal(body, "hello from the page");
      await page.close();
    } finally {
      await gateway.close();
    }
  });
});
