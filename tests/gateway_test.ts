/**
 * The gateway (`gateway.ts`) in process on port 0, with agents (`agent.ts`) under Deno and
 * under Bun as subprocesses: routing by id and by name, `GET /agents`, 20 MiB each way
 * through the gateway and a reverse tunnel to an upstream served here, server-sent events
 * streamed through, an agent killed mid-request, the token, hop-by-hop headers, 404/504.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { type AgentInfo, type Gateway, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import { EventType } from "../mod.ts";
import {
  type Fixture,
  IS_BUN,
  nextEvent,
  serverHolds,
  spawnFixture,
  withTimeout,
} from "./_helpers.ts";
import { patternStream, verifyPattern } from "./fixtures/_common.ts";
import { unanswered } from "./_exchange_helpers.ts";

const RUNTIMES = ["deno", "bun"] as const;
const TOKEN = "test-token";
/** Bounds a subprocess's start (the machine is shared and may be loaded). */
const START_MS = 45_000;
/** Bounds one step. */
const STEP_MS = 30_000;
/** Subprocesses stop by themselves after this long, should the test die without killing them. */
const WATCHDOG = ["--exit-after", "240000"];
const TEST_OPTIONS = { timeout: 120_000 };
const BIG = 20 * 1024 * 1024;

// ---- an upstream HTTP server for the tunnel agents (the runtime's own server) ----------

interface Upstream {
  port: number;
  close(): Promise<void>;
}

interface DenoServe {
  serve(
    options: { hostname: string; port: number; onListen?: () => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}

interface BunServe {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout?: number;
    fetch: (request: Request) => Response | Promise<Response>;
  }): { port: number; stop(closeActiveConnections?: boolean): unknown };
}

function serveUpstream(handler: (request: Request) => Response | Promise<Response>): Upstream {
  if (IS_BUN) {
    const server = (globalThis as unknown as { Bun: BunServe }).Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: handler,
    });
    return {
      port: server.port,
      close: async () => {
        await server.stop(true);
      },
    };
  }
  const server = (globalThis as unknown as { Deno: DenoServe }).Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    handler,
  );
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** What the upstream saw of the last `GET /headers`. */
let seenHeaders: Headers | undefined;
/** Gates of the event streams in progress: `GET /events?gate=<key>` waits on its gate. */
const gates = new Map<string, () => void>();

const encoder = new TextEncoder();
const GZIP_TEXT = "compressible ".repeat(2_000);

async function upstreamHandler(request: Request): Promise<Response> {
  const url = new URL(request.url);
  switch (`${request.method} ${url.pathname}`) {
    case "POST /upload":
      return Response.json(await verifyPattern(request.body));
    case "GET /download":
      return new Response(patternStream(Number(url.searchParams.get("n"))), {
        headers: { "content-type": "application/octet-stream" },
      });
    case "GET /gzip":
      // Encoded whatever the request asked for: the tunnel must pass it on untouched.
      return new Response(
        new Blob([GZIP_TEXT]).stream().pipeThrough(new CompressionStream("gzip")),
        { headers: { "content-type": "text/plain", "content-encoding": "gzip" } },
      );
    case "GET /headers":
      seenHeaders = new Headers(request.headers);
      return Response.json({ ok: true }, {
        status: 203,
        headers: { "x-upstream": "yes", "proxy-authenticate": "Basic realm=upstream" },
      });
    case "GET /events": {
      const key = url.searchParams.get("gate") ?? "";
      let opened!: () => void;
      const gate = new Promise<void>((resolve) => opened = resolve);
      gates.set(key, opened);
      let step = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          step++;
          if (step === 1) {
            controller.enqueue(encoder.encode("event: tick\ndata: first\n\n"));
          } else if (step === 2) {
            // The second event waits until the caller has read the first one.
            await gate;
            controller.enqueue(encoder.encode("event: tick\ndata: second\n\n"));
          } else {
            controller.close();
          }
        },
      }, { highWaterMark: 0 });
      return new Response(body, {
        headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      });
    }
  }
  return new Response("no such upstream route", { status: 404 });
}

// ---- helpers -----------------------------------------------------------------

/**
 * Starts `agent.ts` under `runtime` and waits until the gateway holds its connection. (The
 * agent's `connected` line can come first: the handshake completes on the client when the
 * welcome arrives, on the server when the client's acknowledgement does.)
 */
async function spawnAgent(
  runtime: "deno" | "bun",
  gateway: Gateway,
  args: string[],
): Promise<{ fixture: Fixture; id: string }> {
  const events = gateway.server.events();
  const fixture = spawnFixture(runtime, "agent.ts", [gateway.agentsUrl, ...args, ...WATCHDOG]);
  try {
    const [, id] = await fixture.waitFor(/INFO +connected id=(\S+)/, START_MS);
    if (!gateway.server.connection(id)) {
      await withTimeout(
        (async () => {
          for await (const event of events) {
            if (event.type === EventType.ConnectionReceived && event.connectionId === id) return;
          }
        })(),
        START_MS,
        `the gateway to register ${id}`,
      );
    }
    return { fixture, id };
  } catch (error) {
    await fixture.kill();
    throw error;
  } finally {
    await events.return?.();
  }
}

/** The JSON bodies seen here: error bodies, and the demo API's answers. */
interface JsonBody {
  error?: string;
  message?: string;
  connectionId?: string;
  [key: string]: unknown;
}

async function getJson<T = JsonBody>(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: T }> {
  const response = await withTimeout(fetch(url, init), STEP_MS, `${init?.method ?? "GET"} ${url}`);
  return { status: response.status, body: await response.json() };
}

/** One raw HTTP/1.1 exchange (so that any header can be sent); returns the response head. */
function rawRequest(port: number, head: string): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.write(head));
      let received = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        received += chunk;
        const end = received.indexOf("\r\n\r\n");
        if (end !== -1) {
          socket.destroy();
          resolve(received.slice(0, end));
        }
      });
      socket.on("error", reject);
      socket.on(
        "close",
        () => reject(new Error(`Connection closed before a response: ${received}`)),
      );
    }),
    STEP_MS,
    "raw HTTP request",
  );
}

// ---- the tests -----------------------------------------------------------------

describe("gateway with Deno and Bun agents", () => {
  let gateway: Gateway;
  let upstream: Upstream;
  const fixtures: Fixture[] = [];
  /** Demo agents (`<runtime>-agent`) and tunnel agents (`tunnel-<runtime>`) by name: their ids. */
  const ids = new Map<string, string>();

  before(async () => {
    gateway = await startGateway({ port: 0, token: TOKEN });
    upstream = serveUpstream(upstreamHandler);
    const started = await Promise.all(
      RUNTIMES.flatMap((runtime) => [
        spawnAgent(runtime, gateway, ["--name", `${runtime}-agent`, "--token", TOKEN])
          .then((agent) => ({ name: `${runtime}-agent`, ...agent })),
        spawnAgent(runtime, gateway, [
          "--name",
          `tunnel-${runtime}`,
          "--token",
          TOKEN,
          "--quiet",
          "--upstream",
          `http://127.0.0.1:${upstream.port}`,
        ]).then((agent) => ({ name: `tunnel-${runtime}`, ...agent })),
      ]).map((promise) =>
        promise.then((agent) => {
          fixtures.push(agent.fixture);
          return agent;
        })
      ),
    );
    for (const agent of started) ids.set(agent.name, agent.id);
  }, { timeout: 120_000 });

  after(async () => {
    await Promise.all(fixtures.map((fixture) => fixture.kill()));
    await withTimeout(gateway?.close() ?? Promise.resolve(), 20_000, "gateway.close()").catch(
      (error) => console.error(error),
    );
    await upstream?.close();
  }, { timeout: 60_000 });

  it(
    "GET /agents lists every agent with id, metadata, address, connectedAt, rtt, inFlight",
    TEST_OPTIONS,
    async () => {
      const { status, body: agents } = await getJson<AgentInfo[]>(`${gateway.url}/agents`);
      assert.equal(status, 200);
      for (const runtime of RUNTIMES) {
        const name = `${runtime}-agent`;
        const agent = agents.find((entry) => entry.name === name);
        assert.ok(agent, `${name} is listed: ${JSON.stringify(agents)}`);
        assert.equal(agent.id, ids.get(name));
        // The token is never listed.
        assert.deepEqual(agent.metadata, { runtime, name });
        assert.match(agent.remoteAddr, /^127\.0\.0\.1:\d+$/);
        assert.ok(agent.connectedAt !== null && !Number.isNaN(Date.parse(agent.connectedAt)));
        assert.ok(agent.rtt === null || typeof agent.rtt === "number");
        assert.equal(typeof agent.inFlight, "number");
      }
      assert.deepEqual(
        new Set(agents.map((agent) => agent.id)),
        new Set(ids.values()),
        "exactly the agents started here",
      );
    },
  );

  it("GET /agents pages by id with ?limit and a Link to the next page", TEST_OPTIONS, async () => {
    const sorted = [...ids.values()].sort();
    const pages: string[][] = [];
    let next: string | null = `${gateway.url}/agents?limit=1`;
    while (next !== null) {
      const response: Response = await fetch(next);
      assert.equal(response.status, 200);
      pages.push((await response.json() as AgentInfo[]).map((agent) => agent.id));
      const link = response.headers.get("link");
      next = link === null
        ? null
        : new URL(link.match(/^<([^>]+)>; rel="next"$/)![1], gateway.url).href;
      assert.ok(pages.length <= sorted.length, `no endless pages: ${link}`);
    }
    assert.deepEqual(pages, sorted.map((id) => [id]), "one agent per page, in id order");
    for (const limit of ["0", "10001", "x", "-1", "1.5"]) {
      const response = await fetch(`${gateway.url}/agents?limit=${limit}`);
      assert.equal(response.status, 400, `limit=${limit}`);
      assert.equal((await response.json()).error, "bad_request");
    }
  });

  for (const runtime of RUNTIMES) {
    it(
      `ANY /agents/{name}/… and /agents/{id}/… reach the ${runtime} agent`,
      TEST_OPTIONS,
      async () => {
        const name = `${runtime}-agent`;
        const id = ids.get(name)!;
        for (const key of [name, id]) {
          const { status, body } = await getJson(`${gateway.url}/agents/${key}/whoami`);
          assert.equal(status, 200);
          assert.deepEqual(body, { name, runtime, connectionId: id });
        }
        // Query string kept, response streamed.
        const response = await fetch(`${gateway.url}/agents/${name}/bytes?n=100001`);
        assert.equal(response.status, 200);
        const bytes = new Uint8Array(await response.arrayBuffer());
        assert.equal(bytes.length, 100_001);
        assert.ok(bytes.every((byte, i) => byte === (i & 0xff)));
        // A request body streams to the agent and back.
        const echoed = await fetch(`${gateway.url}/agents/${name}/echo`, {
          method: "POST",
          headers: { "content-type": "text/plain" },
          body: "round trip",
        });
        assert.equal(echoed.headers.get("content-type"), "text/plain");
        assert.equal(await echoed.text(), "round trip");
        // The agent's own status and JSON body come through.
        const missing = await getJson(`${gateway.url}/agents/${name}/no-such-route`);
        assert.equal(missing.status, 404);
        assert.equal(missing.body.error, "not_found");
      },
    );

    it(
      `20 MiB up and 20 MiB down through the gateway and the ${runtime} tunnel, byte-exact`,
      TEST_OPTIONS,
      async () => {
        const base = `${gateway.url}/agents/tunnel-${runtime}`;
        const upload = await getJson(`${base}/upload`, {
          method: "POST",
          headers: { "content-type": "application/octet-stream" },
          body: patternStream(BIG),
          // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
          duplex: "half",
        });
        assert.equal(upload.status, 200);
        assert.deepEqual(upload.body, { bytes: BIG, firstMismatch: -1 });

        const download = await withTimeout(
          fetch(`${base}/download?n=${BIG}`),
          STEP_MS,
          "GET /download",
        );
        assert.equal(download.status, 200);
        assert.deepEqual(
          await withTimeout(verifyPattern(download.body), STEP_MS, "download body"),
          { bytes: BIG, firstMismatch: -1 },
        );
      },
    );

    it(
      `a gzip-encoded body comes through the ${runtime} tunnel untouched`,
      TEST_OPTIONS,
      async () => {
        const response = await withTimeout(
          fetch(`${gateway.url}/agents/tunnel-${runtime}/gzip`),
          STEP_MS,
          "GET /gzip",
        );
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("content-encoding"), "gzip");
        // The caller's fetch decodes it, once.
        assert.equal(await response.text(), GZIP_TEXT);
      },
    );

    it(
      `server-sent events stream through the gateway and the ${runtime} tunnel as sent`,
      TEST_OPTIONS,
      async () => {
        const key = `sse-${runtime}`;
        const response = await withTimeout(
          fetch(`${gateway.url}/agents/tunnel-${runtime}/events?gate=${key}`),
          STEP_MS,
          "GET /events",
        );
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("content-type"), "text/event-stream");
        const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        // The upstream sends the second event only once the gate opens, so the first one
        // must arrive through gateway and tunnel on its own.
        while (!text.includes("data: first\n\n")) {
          const { value, done } = await withTimeout(reader.read(), STEP_MS, "first event");
          assert.equal(done, false, `stream ended early: ${JSON.stringify(text)}`);
          text += value;
        }
        assert.equal(text.includes("second"), false);
        gates.get(key)!();
        for (;;) {
          const { value, done } = await withTimeout(reader.read(), STEP_MS, "second event");
          if (done) break;
          text += value;
        }
        assert.equal(text, "event: tick\ndata: first\n\nevent: tick\ndata: second\n\n");
      },
    );

    it(
      `an agent killed mid-request gives 502 and the gateway keeps serving (${runtime})`,
      TEST_OPTIONS,
      async () => {
        const name = `victim-${runtime}`;
        const { fixture, id } = await spawnAgent(runtime, gateway, [
          "--name",
          name,
          "--token",
          TOKEN,
        ]);
        try {
          const pending = withTimeout(
            fetch(`${gateway.url}/agents/${name}/delay?ms=600000`),
            STEP_MS,
            "request to the killed agent",
          );
          await fixture.waitFor(/INFO +request method=GET path="?\/delay\?ms=600000"?$/, STEP_MS);
          await fixture.kill();
          const response = await pending;
          assert.equal(response.status, 502);
          const body = await response.json();
          assert.equal(body.error, "agent_unavailable");
          assert.equal(typeof body.message, "string");

          const { body: agents } = await getJson<AgentInfo[]>(`${gateway.url}/agents`);
          assert.equal(agents.some((agent) => agent.id === id), false);
          for (const other of RUNTIMES) {
            const hello = await fetch(`${gateway.url}/agents/${other}-agent/hello`);
            assert.equal(hello.status, 200);
            assert.equal(await hello.text(), `hello from ${other}-agent (${other})\n`);
          }
        } finally {
          await fixture.kill();
        }
      },
    );

    it(
      `the token: a ${runtime} agent without it or with a wrong one is refused, with it accepted`,
      TEST_OPTIONS,
      async () => {
        for (const args of [[], ["--token", "wrong"]]) {
          const fixture = spawnFixture(runtime, "agent.ts", [
            gateway.agentsUrl,
            "--name",
            `intruder-${runtime}`,
            ...args,
            ...WATCHDOG,
          ]);
          try {
            const [line] = await fixture.waitFor(/ERROR refused by the gateway .*$/, START_MS);
            assert.match(line, /4003/);
            assert.equal(await withTimeout(fixture.exited, STEP_MS, "refused agent to exit"), 1);
            assert.equal(fixture.lines.some((l) => / connected id=/.test(l)), false);
          } finally {
            await fixture.kill();
          }
        }
        const { body: agents } = await getJson<AgentInfo[]>(`${gateway.url}/agents`);
        assert.equal(
          agents.some((agent) => agent.name?.startsWith("intruder")),
          false,
        );
        const welcome = await spawnAgent(runtime, gateway, [
          "--name",
          `welcome-${runtime}`,
          "--token",
          TOKEN,
        ]);
        try {
          const { status, body } = await getJson(`${gateway.url}/agents/welcome-${runtime}/whoami`);
          assert.equal(status, 200);
          assert.equal(body.connectionId, welcome.id);
        } finally {
          await welcome.fixture.kill();
        }
      },
    );
  }

  it(
    "TRACE, TRACK, CONNECT and unknown methods get a 501 JSON error naming the method, not a 502",
    TEST_OPTIONS,
    async () => {
      for (const method of ["TRACE", "TRACK", "CONNECT", "FOO"]) {
        const head = await rawRequest(
          gateway.addr.port,
          `${method} /agents/nobody/hello HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`,
        );
        assert.match(head, /^HTTP\/1\.1 501/, head);
      }
      // fetch() cannot send these; the handler can be called with what a runtime would hand it.
      const response = await withTimeout(
        fetch(`${gateway.url}/agents/nobody/hello`, { method: "PATCH" }),
        STEP_MS,
        "PATCH",
      );
      assert.equal(response.status, 404, "other methods are routed as usual");
      await response.body?.cancel();
    },
  );

  it("an unknown agent or route gives 404 with a JSON error body", TEST_OPTIONS, async () => {
    for (const key of ["nobody", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]) {
      const { status, body } = await getJson(`${gateway.url}/agents/${key}/hello`);
      assert.equal(status, 404);
      assert.equal(body.error, "agent_not_found");
      assert.match(body.message ?? "", new RegExp(key));
    }
    const { status, body } = await getJson(`${gateway.url}/nowhere`);
    assert.equal(status, 404);
    assert.equal(body.error, "not_found");
  });

  for (const runtime of RUNTIMES) {
    it(
      `a ${runtime} agent's whole answer goes to the caller with its Content-Length, not chunked`,
      TEST_OPTIONS,
      async () => {
        const head = await rawRequest(
          gateway.addr.port,
          `GET /agents/${runtime}-agent/whoami HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`,
        );
        assert.match(head, /^HTTP\/1\.1 200/, head);
        assert.match(head, /\r\ncontent-length: \d+/i, head);
        assert.doesNotMatch(head, /transfer-encoding/i, head);
      },
    );
  }

  for (const runtime of RUNTIMES) {
    it(
      `hop-by-hop headers are dropped both ways through the ${runtime} tunnel; end-to-end ones kept`,
      TEST_OPTIONS,
      async () => {
        seenHeaders = undefined;
        const port = gateway.addr.port;
        const head = await rawRequest(
          port,
          [
            `GET /agents/tunnel-${runtime}/headers?x=1 HTTP/1.1`,
            `Host: 127.0.0.1:${port}`,
            "Connection: close, x-drop-me",
            "X-Drop-Me: 1",
            "Keep-Alive: timeout=5",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "Proxy-Connection: keep-alive",
            "TE: trailers",
            "Trailer: x-checksum",
            "X-Keep-Me: yes",
            "",
            "",
          ].join("\r\n"),
        );
        assert.match(head, /^HTTP\/1\.1 203 /);
        const responseHeaders = head.toLowerCase();
        assert.match(responseHeaders, /\r\nx-upstream: yes/);
        assert.equal(responseHeaders.includes("proxy-authenticate"), false);

        // (Read through a cast: TypeScript keeps the `undefined` assigned above across the await.)
        const seen = seenHeaders as Headers | undefined;
        assert.ok(seen, "the upstream saw the request");
        assert.equal(seen.get("x-forwarded-host"), `127.0.0.1:${port}`);
        assert.equal(seen.get("x-keep-me"), "yes");
        assert.equal(seen.get("x-forwarded-prefix"), `/agents/tunnel-${runtime}`);
        assert.equal(seen.get("x-forwarded-for"), "127.0.0.1");
        for (
          const name of [
            "x-drop-me",
            "keep-alive",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
          ]
        ) {
          assert.equal(seen.has(name), false, `${name} was dropped`);
        }
      },
    );
  }
});

describe("gateway timeout", () => {
  it(
    "a caller that hangs up before the answer's head cancels the agent's exchange",
    TEST_OPTIONS,
    async () => {
      const gateway = await startGateway({ port: 0 });
      const { handler, arrived, aborted } = unanswered();
      const agent = startAgent({ url: gateway.agentsUrl, name: "waits", handler });
      try {
        const { id } = await withTimeout(agent.ready, STEP_MS, "agent.ready");
        await serverHolds(gateway.server, id, STEP_MS);
        const caller = new AbortController();
        const pending = fetch(`${gateway.url}/agents/waits/x`, { signal: caller.signal })
          .catch(() => {});
        await withTimeout(arrived, STEP_MS, "the request at the agent");
        caller.abort();
        await pending;
        const reason = await withTimeout(aborted, STEP_MS, "the agent's request aborted");
        assert.equal((reason as Error).name, "AbortError");
      } finally {
        await withTimeout(agent.close(), 20_000, "agent.close()");
        await withTimeout(gateway.close(), 20_000, "gateway.close()");
      }
    },
  );

  it(
    "an agent that does not answer in time gives 504 with a JSON error body",
    TEST_OPTIONS,
    async () => {
      const gateway = await startGateway({ port: 0, timeout: 300 });
      const events = gateway.server.events();
      const agent = startAgent({ url: gateway.agentsUrl, name: "slow" });
      try {
        // The gateway's end of the handshake completes a moment after the agent's.
        await nextEvent(events, EventType.ConnectionReceived, STEP_MS);
        await events.return?.();
        await withTimeout(agent.ready, STEP_MS, "agent.ready");
        const { status, body } = await getJson(`${gateway.url}/agents/slow/delay?ms=600000`);
        assert.equal(status, 504);
        assert.equal(body.error, "agent_timeout");
        // The agent's exchange was cancelled, not left running.
        const fast = await getJson(`${gateway.url}/agents/slow/delay?ms=0`);
        assert.equal(fast.status, 200);
      } finally {
        await withTimeout(agent.close(), 20_000, "agent.close()");
        await withTimeout(gateway.close(), 20_000, "gateway.close()");
      }
    },
  );
});

describe("gateway apiToken", () => {
  it(
    "every route but /healthz needs the API token, as Authorization or Proxy-Authorization, and it is not forwarded",
    TEST_OPTIONS,
    async () => {
      const API_TOKEN = "caller-secret";
      const gateway = await startGateway({ port: 0, apiToken: API_TOKEN });
      const events = gateway.server.events();
      const agent = startAgent({
        url: gateway.agentsUrl,
        name: "echo",
        handler: (request) => Response.json(Object.fromEntries(request.headers)),
      });
      try {
        await nextEvent(events, EventType.ConnectionReceived, STEP_MS);
        await events.return?.();
        await withTimeout(agent.ready, STEP_MS, "agent.ready");

        const health = await withTimeout(fetch(`${gateway.url}/healthz`), STEP_MS, "healthz");
        assert.equal(health.status, 200);
        assert.equal(await health.text(), "ok\n");

        for (const authorization of [undefined, "Bearer wrong", `Basic ${API_TOKEN}`, API_TOKEN]) {
          const headers: Record<string, string> = authorization ? { authorization } : {};
          for (const path of ["/agents", "/agents/echo/x", "/", "/nowhere"]) {
            const response = await withTimeout(
              fetch(`${gateway.url}${path}`, { headers }),
              STEP_MS,
              path,
            );
            assert.equal(response.status, 401, `${path} with ${authorization}`);
            assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer /);
            const body = await response.json() as JsonBody;
            assert.equal(body.error, "unauthorized");
            assert.equal(JSON.stringify(body).includes(API_TOKEN), false, "never echoed");
          }
        }

        const listed = await getJson<AgentInfo[]>(`${gateway.url}/agents`, {
          headers: { authorization: `Bearer ${API_TOKEN}` },
        });
        assert.equal(listed.status, 200);
        assert.deepEqual(listed.body.map((a) => a.name), ["echo"]);

        // As Authorization: consumed. As Proxy-Authorization: consumed, and the caller's own
        // Authorization goes on to the agent's API.
        const viaAuthorization = await getJson<Record<string, string>>(
          `${gateway.url}/agents/echo/headers`,
          { headers: { authorization: `bearer ${API_TOKEN}` } },
        );
        assert.equal(viaAuthorization.status, 200);
        assert.equal(viaAuthorization.body.authorization, undefined);
        const viaProxy = await getJson<Record<string, string>>(
          `${gateway.url}/agents/echo/headers`,
          {
            headers: {
              "proxy-authorization": `Bearer ${API_TOKEN}`,
              authorization: "Basic dXNlcjpwYXNz",
            },
          },
        );
        assert.equal(viaProxy.status, 200);
        assert.equal(viaProxy.body.authorization, "Basic dXNlcjpwYXNz");
        assert.equal(viaProxy.body["proxy-authorization"], undefined);
      } finally {
        await withTimeout(agent.close(), 20_000, "agent.close()");
        await withTimeout(gateway.close(), 20_000, "gateway.close()");
      }
    },
  );

  it("an empty apiToken is refused at once", async () => {
    await assert.rejects(startGateway({ port: 0, apiToken: "" }), TypeError);
  });
});
