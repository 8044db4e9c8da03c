/**
 * TLS: `WebSocketServer` and the gateway serving `wss`/`https` themselves, clients and
 * agents trusting a private CA (`caCerts`, `--ca`), and clients that do not trust it being
 * refused with a clear error. Each run makes a fresh CA and a server certificate for
 * 127.0.0.1 and localhost with `/usr/bin/openssl` (the README's two commands), in a
 * temporary directory. The other runtime runs `agent.ts` (and `gateway.ts`) as subprocesses.
 */

import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import {
  type Connection,
  EventType,
  HandshakeError,
  WebSocketClient,
  WebSocketServer,
} from "../mod.ts";
import { type Gateway, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import {
  cleanups,
  IS_BUN,
  nextEvent,
  RUNTIME,
  serverHolds,
  spawnFixture,
  withTimeout,
} from "./_helpers.ts";
import { type Certificates, makeCertificates } from "./_certificates.ts";

const OTHER: "bun" | "deno" = IS_BUN ? "deno" : "bun";
/** Bounds one step: a dial, an exchange, a close. */
const STEP_MS = 15_000;
/** Bounds a subprocess's start (the machine is shared and may be loaded). */
const START_MS = 45_000;
/** The subprocesses' own watchdog (`--exit-after`). */
const WATCHDOG = ["--exit-after", "120000"];
const TEST_OPTIONS = { timeout: 120_000 };

/** What {@linkcode fetchWithCa} read: the whole body, so that nothing stays open. */
interface Fetched {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * `fetch` trusting `ca`: Deno takes it through `Deno.createHttpClient({ caCerts })`, Bun as
 * `tls: { ca }`. Reads the body before returning (Deno's client is closed after).
 */
async function fetchWithCa(url: string, ca: string, init: RequestInit = {}): Promise<Fetched> {
  const deno = (globalThis as {
    Deno?: { createHttpClient(options: { caCerts: string[] }): { close(): void } };
  }).Deno;
  const client = IS_BUN ? undefined : deno!.createHttpClient({ caCerts: [ca] });
  const extra = IS_BUN ? { tls: { ca } } : { client };
  try {
    return await withTimeout(
      (async () => {
        const response = await fetch(url, { ...init, ...extra } as RequestInit);
        return { status: response.status, headers: response.headers, text: await response.text() };
      })(),
      STEP_MS,
      `fetch ${url}`,
    );
  } finally {
    client?.close();
  }
}

describe(`TLS (${RUNTIME})`, () => {
  let certs: Certificates;
  const cleanup = cleanups();
  before(() => {
    certs = makeCertificates();
  });
  afterEach(() => cleanup.run());
  after(() => {
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
  });

  /** A server on 127.0.0.1 with `tls`, serving `answer` to its clients. */
  function tlsServer(): WebSocketServer {
    const server = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      tls: certs.tls,
      handler: (request) =>
        new Response(`server saw ${request.method} ${new URL(request.url).pathname}`),
    });
    cleanup.add(() => server.close());
    return server;
  }

  it("a WebSocketServer with tls and a client with caCerts exchange both ways over wss", async () => {
    const server = tlsServer();
    const events = server.events();
    cleanup.add(async () => await events.return?.());
    for (const scheme of ["wss", "https"]) {
      const client = new WebSocketClient({
        url: `${scheme}://127.0.0.1:${server.addr.port}/`,
        caCerts: [certs.ca],
        handler: (request) => new Response(`client saw ${new URL(request.url).pathname}`),
      }).withMetadata({ name: `tls-${scheme}` });
      cleanup.add(() => client.close());
      const clientSide = await withTimeout(client.connect(), STEP_MS, `connect over ${scheme}`);
      const received = await nextEvent(events, EventType.ConnectionReceived, STEP_MS);
      const serverSide = received.connection as Connection;
      assert.equal(serverSide.id, clientSide.id);
      assert.deepEqual(serverSide.metadata, { name: `tls-${scheme}` });

      const fromServer = await withTimeout(serverSide.fetch("/up"), STEP_MS, "server → client");
      assert.equal(await fromServer.text(), "client saw /up");
      const fromClient = await withTimeout(
        clientSide.fetch("/down", { method: "POST", body: "x".repeat(100_000) }),
        STEP_MS,
        "client → server",
      );
      assert.equal(await fromClient.text(), "server saw POST /down");
      await withTimeout(client.close(), STEP_MS, "client.close()");
    }
  });

  it("a client without the CA, or with another CA, is refused with a certificate error", async () => {
    const server = tlsServer();
    for (const caCerts of [undefined, [certs.otherCa]]) {
      const client = new WebSocketClient({
        url: `wss://127.0.0.1:${server.addr.port}`,
        keepAlive: false,
        ...(caCerts ? { caCerts } : {}),
      });
      cleanup.add(() => client.close());
      const error = await withTimeout(
        client.connect().then(() => undefined, (error: unknown) => error),
        STEP_MS,
        "connect() to fail",
      );
      assert.ok(error instanceof HandshakeError, `expected a HandshakeError, got ${error}`);
      assert.equal(error.code, 1006);
      // Deno: "invalid peer certificate: UnknownIssuer"; Bun: "unable to verify the first
      // certificate" or "self signed certificate in certificate chain".
      assert.match(error.message, /certificate|UnknownIssuer/i);
      assert.match(error.message, caCerts ? /not signed by the given caCerts/ : /pass that CA/);
      assert.equal(server.connections().length, 0);
    }
  });

  it("tls and caCerts are checked: PEM text, not file names; no tls with noServer", async () => {
    assert.throws(
      () => new WebSocketServer({ port: 0, tls: { cert: certs.certFile, key: certs.keyFile } }),
      (error: Error) => error instanceof TypeError && /tls\.cert.*PEM/.test(error.message),
    );
    assert.throws(
      () => new WebSocketServer({ noServer: true, tls: certs.tls }),
      (error: Error) => error instanceof TypeError && /noServer/.test(error.message),
    );
    assert.throws(
      () => new WebSocketClient({ url: "wss://127.0.0.1:1", caCerts: [certs.caFile] }),
      (error: Error) => error instanceof TypeError && /caCerts\[0\].*PEM/.test(error.message),
    );
    await assert.rejects(
      startGateway({ port: 0, tls: { cert: certs.tls.cert, key: "key.pem" } }),
      (error: Error) => error instanceof TypeError && /tls\.key.*PEM/.test(error.message),
    );
  });

  /** A gateway with `tls` on 127.0.0.1, a free port. */
  async function tlsGateway(): Promise<Gateway> {
    const gateway = await startGateway({ hostname: "127.0.0.1", port: 0, tls: certs.tls });
    cleanup.add(() => gateway.close());
    return gateway;
  }

  it("an agent without the CA, dialing the gateway (node:https, no HTTP/2), is told to pass it", async () => {
    const gateway = await tlsGateway();
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "doubter",
      reconnect: { maxAttempts: 1 },
    });
    cleanup.add(() => agent.close());
    const error = await withTimeout(
      agent.ready.then(() => undefined, (error: unknown) => error),
      STEP_MS,
      "agent.ready to fail",
    );
    assert.ok(error instanceof HandshakeError, `expected a HandshakeError, got ${error}`);
    // Deno's client reports its HTTP/2 retry (NoApplicationProtocol), Bun the certificate.
    assert.match(error.message, IS_BUN ? /certificate/i : /NoApplicationProtocol/);
    assert.match(error.message, /caCerts, agent\.ts: --ca FILE|pass that CA in caCerts/);
    assert.equal(gateway.server.connections().length, 0);
  });

  it("a gateway with tls and an agent with caCerts: https through /agents/{name}/…", async () => {
    const gateway = await tlsGateway();
    assert.match(gateway.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(gateway.agentsUrl, `wss://127.0.0.1:${gateway.addr.port}/agents/connect`);
    // The agent dials the https:// base: it becomes wss:// with the default agents path.
    const agent = startAgent({
      url: gateway.url,
      name: "secure",
      caCerts: [certs.ca],
      handler: async (request) =>
        Response.json({
          path: new URL(request.url).pathname,
          proto: request.headers.get("x-forwarded-proto"),
          body: await request.text(),
        }),
    });
    cleanup.add(() => agent.close());
    const connection = await withTimeout(agent.ready, STEP_MS, "agent.ready");
    await serverHolds(gateway.server, connection.id, STEP_MS);

    const listed = await fetchWithCa(`${gateway.url}/agents`, certs.ca);
    assert.equal(listed.status, 200);
    assert.deepEqual(
      (JSON.parse(listed.text) as { name: string }[]).map((agent) => agent.name),
      ["secure"],
    );
    const forwarded = await fetchWithCa(`${gateway.url}/agents/secure/some/path`, certs.ca, {
      method: "POST",
      body: "over tls",
    });
    assert.equal(forwarded.status, 200);
    assert.deepEqual(JSON.parse(forwarded.text), {
      path: "/some/path",
      proto: "https",
      body: "over tls",
    });
  });

  it("through a TLS gateway, curl asking for HTTP/2 gets HTTP/1.1; a streamed upload and a bodyless DELETE arrive as sent", async () => {
    // The gateway offers no HTTP/2 (documented): curl falls back, and a body it streams
    // goes chunked.
    if (!existsSync(CURL)) return;
    const gateway = await tlsGateway();
    const agent = startAgent({
      url: gateway.url,
      name: "h2",
      caCerts: [certs.ca],
      handler: async (request) =>
        Response.json({
          method: request.method,
          hasBody: request.body !== null,
          body: request.body === null ? null : await request.text(),
        }),
    });
    cleanup.add(() => agent.close());
    await serverHolds(
      gateway.server,
      (await withTimeout(agent.ready, STEP_MS, "ready")).id,
      STEP_MS,
    );
    const url = `${gateway.url}/agents/h2/up`;
    const upload = await curlWithInput(
      ["-sS", "--http2", "--cacert", certs.caFile, "-w", "\n%{http_version}", "-T", "-", url],
      "streamed without a length",
    );
    const [json, version] = upload.split("\n");
    assert.equal(version, "1.1");
    assert.deepEqual(JSON.parse(json), {
      method: "PUT",
      hasBody: true,
      body: "streamed without a length",
    });
    const bodyless = await curlWithInput([
      "-sS",
      "--http2",
      "--cacert",
      certs.caFile,
      "-X",
      "DELETE",
      url,
    ], "");
    assert.deepEqual(JSON.parse(bodyless), { method: "DELETE", hasBody: false, body: null });
  });
  it(
    `a ${OTHER} agent.ts with --ca dials the ${RUNTIME} gateway over wss`,
    TEST_OPTIONS,
    async () => {
      const gateway = await tlsGateway();
      const name = `tls-${OTHER}`;
      const fixture = spawnFixture(OTHER, "agent.ts", [
        gateway.url,
        "--name",
        name,
        "--ca",
        certs.caFile,
        ...WATCHDOG,
      ]);
      cleanup.add(() => fixture.kill());
      const [, id] = await fixture.waitFor(/INFO +connected id=(\S+)/, START_MS);
      await serverHolds(gateway.server, id, STEP_MS);
      const hello = await fetchWithCa(`${gateway.url}/agents/${name}/hello`, certs.ca);
      assert.equal(hello.status, 200);
      assert.equal(hello.text, `hello from ${name} (${OTHER})\n`);
    },
  );

  it(
    `a ${OTHER} gateway.ts with --cert and --key serves a ${RUNTIME} agent with caCerts`,
    TEST_OPTIONS,
    async () => {
      const fixture = spawnFixture(OTHER, "gateway.ts", [
        "--hostname",
        "127.0.0.1",
        "--port",
        "0",
        "--cert",
        certs.certFile,
        "--key",
        certs.keyFile,
        ...WATCHDOG,
      ]);
      cleanup.add(() => fixture.kill());
      const [, url, agentsUrl] = await fixture.waitFor(
        /gateway listening url=(\S+) agents=(\S+)$/,
        START_MS,
      );
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(agentsUrl, `${url.replace(/^https:/, "wss:")}/agents/connect`);
      const agent = startAgent({ url: agentsUrl, name: "in-process", caCerts: [certs.ca] });
      cleanup.add(() => agent.close());
      const connection = await withTimeout(agent.ready, STEP_MS, "agent.ready");
      await fixture.waitFor(new RegExp(`agent connected .*\\bid=${connection.id}\\b`), STEP_MS);
      const hello = await fetchWithCa(`${url}/agents/in-process/hello`, certs.ca);
      assert.equal(hello.status, 200);
      assert.equal(hello.text, `hello from in-process (${RUNTIME})\n`);
    },
  );
});

const CURL = "/usr/bin/curl";

/** Runs curl with `input` on its standard input, bounded; resolves with its stdout. */
function curlWithInput(args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(CURL, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill(), STEP_MS);
    child.stdout.on("data", (chunk) => out += chunk);
    child.stderr.on("data", (chunk) => err += chunk);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`curl ${args.join(" ")} exited ${code}: ${err}`));
    });
    child.stdin.end(input);
  });
}
