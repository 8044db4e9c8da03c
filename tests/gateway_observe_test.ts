/**
 * What the gateway says of itself: readiness, Prometheus metrics (read back by an independent
 * parser), one structured log line per event, and the live dashboard in a real headless
 * Chromium.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
// @ts-types="./_prometheus_parser.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { type Gateway, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import { serverHolds, withTimeout } from "./_helpers.ts";
import { recordingLogger } from "./_recording_logger.ts";
import { artefact, launchBrowser, NO_CHROMIUM } from "./_browser.ts";

const TEST_OPTIONS = { timeout: 90_000 };
const STEP_MS = 20_000;
const API_TOKEN = "observe-secret";

const auth = { authorization: `Bearer ${API_TOKEN}` };

describe("gateway: readiness, metrics and logs", TEST_OPTIONS, () => {
  let gateway: Gateway;
  const { logger, logged } = recordingLogger();

  before(async () => {
    gateway = await startGateway({
      port: 0,
      apiToken: API_TOKEN,
      token: "agents",
      logger,
      timeout: 500,
      heartbeat: { interval: 100, timeout: 5_000 },
    });
  });
  after(() => gateway.close());

  it("answers /healthz and /readyz without the token, /metrics only with it", async () => {
    assert.equal((await fetch(`${gateway.url}/healthz`)).status, 200);
    const ready = await fetch(`${gateway.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), "ready\n");
    const refused = await fetch(`${gateway.url}/metrics`);
    assert.equal(refused.status, 401);
    await refused.body?.cancel();
    const metrics = await fetch(`${gateway.url}/metrics`, { headers: auth });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    await metrics.body?.cancel();
  });

  it("logs agents connecting, refused and leaving, and each forwarded request; /metrics counts them", async () => {
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "metered",
      token: "agents",
      handler: async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/slow") await new Promise((resolve) => setTimeout(resolve, 2_000));
        return new Response(`got ${(await request.text()).length} bytes`);
      },
    });
    const id = (await withTimeout(agent.ready, STEP_MS, "ready")).id;
    await serverHolds(gateway.server, id);
    const [, , connected] = await logged("agent connected", (f) => f.id === id);
    assert.equal(connected.name, "metered");
    assert.match(String(connected.addr), /^127\.0\.0\.1:\d+$/);

    const posted = await fetch(`${gateway.url}/agents/metered/up`, {
      method: "POST",
      body: "x".repeat(1000),
      headers: auth,
    });
    assert.equal(await posted.text(), "got 1000 bytes");
    const [level, , request] = await logged("request", (f) => f.path === "/up");
    assert.equal(level, "info");
    assert.deepEqual(
      { method: request.method, agent: request.agent, status: request.status, in: request.in },
      { method: "POST", agent: "metered", status: 200, in: 1000 },
    );
    assert.equal(request.out, "got 1000 bytes".length);
    assert.equal(typeof request.ms, "number");

    const slow = await fetch(`${gateway.url}/agents/metered/slow`, { headers: auth });
    assert.equal(slow.status, 504);
    await slow.body?.cancel();
    const [warned, , failed] = await logged("request failed", (f) => f.path === "/slow");
    assert.equal(warned, "warn");
    assert.equal(failed.status, 504);
    assert.equal((failed.error as Error).name, "TimeoutError");

    const intruder = startAgent({
      url: gateway.agentsUrl,
      name: "intruder",
      token: "wrong",
      reconnect: { maxAttempts: 1 },
    });
    await assert.rejects(withTimeout(intruder.ready, STEP_MS, "refused"));
    await intruder.close();
    const [, , refused] = await logged("agent refused", (f) => f.name === "intruder");
    assert.equal(refused.code, 4003);

    const text = await (await fetch(`${gateway.url}/metrics`, { headers: auth })).text();
    const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    const value = (name: string, labels: Record<string, string> = {}) =>
      Number(
        families.get(name)?.metrics.find((m) =>
          JSON.stringify(m.labels ?? {}) === JSON.stringify(labels)
        )?.value,
      );
    assert.equal(value("swaggersocket_agents"), 1);
    assert.ok(value("swaggersocket_agent_connections_opened_total") >= 1);
    assert.equal(
      value("swaggersocket_agent_connections_closed_total", { reason: "unauthorized" }),
      1,
    );
    assert.equal(value("swaggersocket_http_requests_total", { route: "agent", status: "2xx" }), 1);
    assert.equal(value("swaggersocket_http_requests_total", { route: "agent", status: "5xx" }), 1);
    assert.ok(value("swaggersocket_http_requests_total", { route: "healthz", status: "2xx" }) >= 1);
    assert.equal(value("swaggersocket_http_request_bytes_total"), 1000);
    const latency = families.get("swaggersocket_http_request_duration_seconds")!.metrics[0];
    assert.equal(latency.count, "2");
    assert.ok(
      Number(families.get("swaggersocket_agent_heartbeat_rtt_seconds")!.metrics[0].count) >= 1,
    );

    await agent.close();
    const [, , closed] = await logged("agent closed", (f) => f.id === id);
    assert.equal(closed.code, 1000);
  });

  it("an agent failing mid-body is one warning line with its cause, not a stack trace", async () => {
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "breaks",
      token: "agents",
      handler: () =>
        new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode("part of it"));
              controller.error(new Error("the disk went away"));
            },
          }),
        ),
    });
    await serverHolds(gateway.server, (await withTimeout(agent.ready, STEP_MS, "ready")).id);
    // The gateway cuts the caller's connection, as a proxy does: the head may not have left yet.
    await assert.rejects(
      fetch(`${gateway.url}/agents/breaks/file`, { headers: auth }).then((r) => r.text()),
      "the caller never sees a complete-looking answer",
    );
    const [level, , fields] = await logged("request failed", (f) => f.path === "/file");
    assert.equal(level, "warn");
    assert.equal(fields.status, 200);
    assert.ok(fields.error instanceof Error);
    await agent.close();
  });

  it("a call to an agent it does not hold is an access line and a 4xx in /metrics too", async () => {
    const response = await fetch(`${gateway.url}/agents/nobody/here`, { headers: auth });
    assert.equal(response.status, 404);
    const body = await response.text();
    const [level, , fields] = await logged("request", (f) => f.agent === "nobody");
    assert.equal(level, "info");
    assert.deepEqual(
      { method: fields.method, path: fields.path, status: fields.status, out: fields.out },
      { method: "GET", path: "/here", status: 404, out: new TextEncoder().encode(body).length },
    );
    const text = await (await fetch(`${gateway.url}/metrics`, { headers: auth })).text();
    const requests = parsePrometheusTextFormat(text)
      .find((family) => family.name === "swaggersocket_http_requests_total")!.metrics;
    const notFound = requests.find((m) =>
      JSON.stringify(m.labels) === JSON.stringify({ route: "agent", status: "4xx" })
    );
    assert.equal(notFound?.value, "1");
  });

  it("says not ready (503) once it starts draining", async () => {
    const draining = await startGateway({ port: 0, closeTimeout: 2_000 });
    let started!: () => void;
    const handling = new Promise<void>((resolve) => started = resolve);
    const agent = startAgent({
      url: draining.agentsUrl,
      name: "busy",
      handler: () => {
        started();
        return new Promise<Response>(() => {});
      },
    });
    await serverHolds(draining.server, (await withTimeout(agent.ready, STEP_MS, "ready")).id);
    const pending = fetch(`${draining.url}/agents/busy/forever`).then((r) => r.status, () => 0);
    // A request in flight keeps the gateway draining (up to closeTimeout), still answering.
    await withTimeout(handling, STEP_MS, "the request to reach the agent");
    const closed = draining.close();
    const readiness = await fetch(`${draining.url}/readyz`);
    assert.equal(readiness.status, 503);
    assert.equal(await readiness.text(), "draining\n");
    await closed;
    await agent.close();
    await pending;
  });
});

describe("gateway dashboard in a headless Chromium", { ...TEST_OPTIONS, skip: NO_CHROMIUM }, () => {
  let gateway: Gateway;

  before(async () => {
    gateway = await startGateway({ port: 0, apiToken: API_TOKEN });
  });
  after(() => gateway.close());

  it("shows agents as they come and go, and requests as they pass, without reloading", async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(String(error)));
      page.on("console", (message) => {
        if (message.type() === "error" || message.type() === "warn") problems.push(message.text());
      });
      // The browser asks for the token as a Basic password: puppeteer answers for it.
      await page.authenticate({ username: "operator", password: API_TOKEN });
      const response = await page.goto(`${gateway.url}/dashboard`);
      assert.equal(response?.status(), 200);
      // Page-side code goes as text: this file is type-checked without the DOM library.
      const inPage = <T>(expression: string): Promise<T> => page.evaluate(expression) as Promise<T>;
      const until = (expression: string) => page.waitForFunction(expression, { timeout: STEP_MS });
      await until(`document.getElementById("status")?.textContent === "live"`);

      const agent = startAgent({
        url: gateway.agentsUrl,
        name: "kiosk",
        metadata: { site: "lobby" },
        handler: () => new Response("hello from the kiosk"),
      });
      const id = (await withTimeout(agent.ready, STEP_MS, "ready")).id;
      const rowOf = `document.querySelector('#agents tr[data-id="${id}"]')`;
      await until(`${rowOf} !== null`);
      const row = await inPage<string[]>(`[...${rowOf}.cells].map((td) => td.textContent)`);
      assert.equal(row[0], "kiosk");
      assert.equal(row[1], id);
      assert.match(row[2] ?? "", /"site":"lobby"/);

      const answer = await fetch(`${gateway.url}/agents/kiosk/hello?x=1`, {
        headers: { authorization: `Bearer ${API_TOKEN}` },
      });
      assert.equal(await answer.text(), "hello from the kiosk");
      await until(
        `[...document.querySelectorAll("#requests td.path")].some((td) => td.textContent === "/hello?x=1")`,
      );
      const request = await inPage<string[]>(
        `[...document.querySelector("#requests tbody tr").cells].map((td) => td.textContent)`,
      );
      assert.deepEqual(request.slice(1, 5), ["kiosk", "GET", "/hello?x=1", "200"]);
      await page.screenshot({ path: artefact("dashboard.png"), fullPage: true });

      await agent.close();
      await until(`${rowOf} === null`);
      assert.deepEqual(problems, [], "no errors or warnings in the page");
    } finally {
      await browser.close();
    }
  });

  it("asks a browser without the token for it (Basic), and shows nothing", async () => {
    const response = await fetch(`${gateway.url}/dashboard`);
    assert.equal(response.status, 401);
    assert.match(response.headers.get("www-authenticate")!, /^Basic realm=/);
    const events = await fetch(`${gateway.url}/dashboard/events`);
    assert.equal(events.status, 401);
    await response.body?.cancel();
    await events.body?.cancel();
  });
});
