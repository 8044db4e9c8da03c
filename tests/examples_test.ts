/**
 * The examples run: each is started as a subprocess under the runtime it is written
 * for, on loopback and a free port, and driven until it has shown what it is for.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Connection, EventType, WebSocketClient, WebSocketServer } from "../mod.ts";
import { startGateway } from "../gateway.ts";
import { launchBrowser, NO_CHROMIUM } from "./_browser.ts";
import { patternStream, verifyPattern } from "./fixtures/_common.ts";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import process from "node:process";
import {
  DENO_BIN,
  type Fixture,
  nextEvent,
  ROOT_DIR,
  RUNTIME,
  spawnFixture,
  withTimeout,
} from "./_helpers.ts";

/** Bytes of the streamed body sent through the mounted gateway. */
const BIG = 1024 * 1024 + 7;
/** Bounds a subprocess's start and each step (the machine is shared and may be loaded). */
const STEP_MS = 30_000;
/** Examples stop by themselves after this long, should a test die without killing them. */
const EXIT_AFTER = ["--exit-after", "60000"];

describe("examples", () => {
  let steps: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    const pending = steps.reverse();
    steps = [];
    for (const step of pending) {
      await withTimeout(step(), 20_000, "cleanup").catch((error) => {
        console.error("cleanup failed:", error);
      });
    }
  });

  function spawn(runtime: "deno" | "bun", script: string, args: string[]): Fixture {
    const fixture = spawnFixture(runtime, script, [...args, ...EXIT_AFTER]);
    steps.push(() => fixture.kill());
    return fixture;
  }

  it("deno_server.ts (Deno) and bun_agent.ts (Bun) call each other, and the agent reconnects", async () => {
    const server = spawn("deno", "examples/deno_server.ts", [
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
    ]);
    const [, port] = await server.waitFor(/^listening on ws:\/\/127\.0\.0\.1:(\d+)$/, STEP_MS);
    const agent = spawn("bun", "examples/bun_agent.ts", [
      `ws://127.0.0.1:${port}`,
      "--name",
      "examples-test",
    ]);

    // The agent called the server's API…
    const [, id] = await agent.waitFor(/^connected #1 as (\S+)$/, STEP_MS);
    const [, time] = await agent.waitFor(/^server time: (.*)$/, STEP_MS);
    assert.ok(!Number.isNaN(Date.parse(time)), time);
    await agent.waitFor(/^agents online: 1$/, STEP_MS);

    // …and the server called the agent's.
    const [, info] = await server.waitFor(new RegExp(`^agent ${id} info: (.*)$`), STEP_MS);
    assert.deepEqual(
      { ...JSON.parse(info), version: undefined, pid: undefined, uptime: undefined },
      {
        name: "examples-test",
        runtime: "bun",
        version: undefined,
        pid: undefined,
        uptime: undefined,
      },
    );
    await server.waitFor(new RegExp(`^agent connected: ${id} \\{"name":"examples-test"`), STEP_MS);

    // keepAlive: the server goes away and comes back on the same port; the agent redials.
    await server.kill();
    await agent.waitFor(/^disconnected from /, STEP_MS);
    const restarted = spawn("deno", "examples/deno_server.ts", [
      "--hostname",
      "127.0.0.1",
      "--port",
      port,
    ]);
    await restarted.waitFor(/^listening on /, STEP_MS);
    const [, id2] = await agent.waitFor(/^connected #2 as (\S+)$/, STEP_MS);
    await restarted.waitFor(new RegExp(`^agent ${id2} info: .*"runtime":"bun"`), STEP_MS);
  });

  it(`hono.ts (${RUNTIME}) serves a Hono app's fetch over the connection`, async () => {
    const server = new WebSocketServer({ hostname: "127.0.0.1", port: 0 });
    steps.push(() => server.close());
    const events = server.events();
    steps.push(async () => await events.return?.());
    spawn(RUNTIME, "examples/hono.ts", [`ws://127.0.0.1:${server.addr.port}`, "--name", "h1"]);
    const agent = (await nextEvent(events, EventType.ConnectionReceived, STEP_MS)).connection!;
    assert.deepEqual(agent.metadata, { name: "h1", runtime: RUNTIME, framework: "hono" });

    const hello = await agent.fetch("/hello/world");
    assert.equal(hello.status, 200);
    assert.deepEqual(await hello.json(), { greeting: "Hello, world!" });
    const echo = await agent.fetch("/echo", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ a: [1, 2] }),
    });
    assert.deepEqual(await echo.json(), { received: { a: [1, 2] } });
    assert.equal((await agent.fetch("/nope")).status, 404);
  });

  for (const [runtime, script] of [["deno", "mount_deno.ts"], ["bun", "mount_bun.ts"]] as const) {
    it(`${script} (${runtime}) mounts agents on /agents and serves the app on the rest`, async () => {
      const app = spawn(runtime, `examples/${script}`, ["--hostname", "127.0.0.1", "--port", "0"]);
      const [, port] = await app.waitFor(/^listening on http:\/\/127\.0\.0\.1:(\d+)$/, STEP_MS);
      const base = `http://127.0.0.1:${port}`;

      const home = await withTimeout(fetch(`${base}/`), STEP_MS, "GET /");
      assert.equal(home.status, 200);
      assert.match(await home.text(), /gateway/);

      // An agent in this process dials /agents and serves an API.
      const client = new WebSocketClient({
        url: `ws://127.0.0.1:${port}/agents`,
        keepAlive: false,
        handler: async (request) =>
          new URL(request.url).pathname === "/big"
            ? new Response(patternStream(BIG))
            : Response.json({
              method: request.method,
              path: new URL(request.url).pathname,
              search: new URL(request.url).search,
              body: await request.text(),
            }),
      }).withMetadata({ name: "mounted" });
      steps.push(() => client.close());
      const connection: Connection = await withTimeout(client.connect(), STEP_MS, "connect");

      // The server side registers the agent when the handshake's last leg arrives.
      await app.waitFor(new RegExp(`^agent connected: ${connection.id} `), STEP_MS);
      const list = await withTimeout(fetch(`${base}/api/agents`), STEP_MS, "GET /api/agents");
      assert.deepEqual(await list.json(), [{ id: connection.id, metadata: { name: "mounted" } }]);

      // The app forwards to the agent over its socket.
      const forwarded = await withTimeout(
        fetch(`${base}/api/agents/${connection.id}/pets/7?x=1`, { method: "POST", body: "hi" }),
        STEP_MS,
        "a forwarded POST",
      );
      assert.equal(forwarded.status, 200);
      assert.deepEqual(await forwarded.json(), {
        method: "POST",
        path: "/pets/7",
        search: "?x=1",
        body: "hi",
      });
      // A streamed response body comes through the app whole.
      const big = await withTimeout(
        fetch(`${base}/api/agents/${connection.id}/big`),
        STEP_MS,
        "big",
      );
      assert.deepEqual(await withTimeout(verifyPattern(big.body), STEP_MS, "big body"), {
        bytes: BIG,
        firstMismatch: -1,
      });
      const missing = await withTimeout(fetch(`${base}/api/agents/nobody/x`), STEP_MS, "404");
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
    });

    it(`${script} (${runtime}) and bun_agent.ts work together as the headers say`, async () => {
      const app = spawn(runtime, `examples/${script}`, ["--hostname", "127.0.0.1", "--port", "0"]);
      const [, port] = await app.waitFor(/^listening on http:\/\/127\.0\.0\.1:(\d+)$/, STEP_MS);
      const agent = spawn("bun", "examples/bun_agent.ts", [`ws://127.0.0.1:${port}/agents`]);
      const [, id] = await agent.waitFor(/^connected #1 as (\S+)$/, STEP_MS);
      // This app serves no API to its agents: the agent says so instead of failing to parse.
      await agent.waitFor(/^the server has no API to call: 501 /, STEP_MS);
      const pets = await withTimeout(
        fetch(`http://127.0.0.1:${port}/api/agents/${id}/pets`),
        STEP_MS,
        "the agent's pets through the app",
      );
      assert.deepEqual(await pets.json(), [{ id: 1, name: "Rex" }, { id: 2, name: "Tom" }]);
      assert.equal(
        agent.lines.some((line) => /failed|error/i.test(line)),
        false,
        agent.lines.join("\n"),
      );
    });
  }

  it("browser/serve.ts: the page in Chromium is an agent that curl reaches through the gateway", {
    skip: NO_CHROMIUM,
  }, async () => {
    const site = spawn("deno", "examples/browser/serve.ts", ["--port", "0"]);
    const [, url] = await site.waitFor(/^open (http:\/\/127\.0\.0\.1:\d+\/)$/, 60_000);
    const gateway = await startGateway({ port: 0 });
    steps.push(() => gateway.close());
    const browser = await launchBrowser();
    steps.push(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warn") problems.push(message.text());
    });
    page.on("pageerror", (error) => problems.push(String(error)));
    const received = nextEvent(gateway.server.events(), EventType.ConnectionReceived, STEP_MS);
    await page.goto(`${url}?gateway=${encodeURIComponent(gateway.agentsUrl)}&name=tab`);
    await received;
    await page.waitForFunction(
      `document.getElementById("status").textContent === "connected as tab"`,
      { timeout: STEP_MS },
    );
    await page.click("#click");
    const hello = await new Promise<string>((resolve, reject) =>
      execFile(
        "curl",
        ["-sS", "--max-time", "20", `${gateway.url}/agents/tab/hello`],
        (error, stdout) => error ? reject(error) : resolve(stdout),
      )
    );
    assert.equal(hello, "hello from the browser tab\n");
    const clicks = await withTimeout(fetch(`${gateway.url}/agents/tab/clicks`), STEP_MS, "clicks");
    assert.deepEqual(await clicks.json(), { clicks: 1 });
    assert.deepEqual(problems, []);
  });

  it("the servers' default ports differ from each other and from npm start's 8080", () => {
    const defaults = new Map<string, string>();
    for (
      const script of ["deno_server.ts", "mount_deno.ts", "mount_bun.ts", "openapi/deno_server.ts"]
    ) {
      const source = readFileSync(join(ROOT_DIR, "examples", script), "utf8");
      defaults.set(script, /flag\("port", "(\d+)"\)/.exec(source)![1]);
    }
    const ports = [...defaults.values()];
    assert.equal(new Set([...ports, "8080"]).size, ports.length + 1, JSON.stringify([...defaults]));
  });

  it("deno_server.ts names the port when it is in use, and exits 1", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const { port } = holder.address() as { port: number };
    steps.push(() => new Promise((resolve) => holder.close(resolve)));
    const script = join(ROOT_DIR, "examples", "deno_server.ts");
    const { code, stderr } = await new Promise<{ code: unknown; stderr: string }>((resolve) =>
      execFile(
        DENO_BIN,
        ["run", "-A", "--quiet", script, "--port", String(port)],
        { timeout: STEP_MS, env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } },
        (error, _stdout, stderr) => resolve({ code: error ? error.code : 0, stderr }),
      )
    );
    assert.equal(code, 1);
    assert.equal(
      stderr.trim(),
      `port ${port} on 127.0.0.1 is in use: pass --port with another (0: any free one)`,
    );
  });
});
