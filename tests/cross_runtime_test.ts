/**
 * Cross-runtime tests: this runtime against the other one, both pairings.
 *
 * Run under Deno, the other runtime is Bun, and the reverse under Bun; the suite runs
 * under both, so Deno server + Bun agent, Bun server + Deno agent and each's reverse
 * are all covered. The other runtime runs `tests/fixtures/server.ts` or
 * `tests/fixtures/agent.ts` as a subprocess; both ends serve the API of
 * `tests/fixtures/_common.ts` and run the same checks against each other.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  ConnectionClosedError,
  type ConnectionEvent,
  EventType,
  WebSocketClient,
  WebSocketServer,
} from "../mod.ts";
import {
  cleanups,
  type Fixture,
  IS_BUN,
  nextEvent,
  RUNTIME,
  spawnFixture,
  withTimeout,
} from "./_helpers.ts";
import {
  BATCH_SIZE,
  BIG_BODY_BYTES,
  checkBatch,
  checkDownload,
  checkEcho,
  makeHandler,
  type WhoAmI,
  whoami,
} from "./fixtures/_common.ts";

const OTHER: "bun" | "deno" = IS_BUN ? "deno" : "bun";
/** Bounds a subprocess's start (the machine is shared and may be loaded). */
const START_MS = 30_000;
/** Bounds one check (a few MiB each way, or a batch). */
const CHECK_MS = 30_000;

/** Waits for the fixture's line for check `name` and asserts it passed. */
async function expectCheck(fixture: Fixture, prefix: string, name: string): Promise<void> {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const match = await fixture.waitFor(
    new RegExp(`^${escaped} ${name} (ok|FAIL) (.*)$`),
    CHECK_MS,
  );
  assert.equal(match[1], "ok", `${OTHER} ${prefix} ${name}: ${match[2]}`);
}

describe(`cross-runtime: ${OTHER} server subprocess, ${RUNTIME} client in process`, () => {
  const cleanup = cleanups();
  afterEach(() => cleanup.run());

  /** Starts the other runtime's server fixture and connects an in-process client to it. */
  async function connect(
    serverArgs: string[] = [],
  ): Promise<{ fixture: Fixture; client: WebSocketClient; connection: Connection }> {
    const fixture = spawnFixture(OTHER, "tests/fixtures/server.ts", serverArgs);
    cleanup.add(() => fixture.kill());
    const [, port] = await fixture.waitFor(/^listening (\d+)$/, START_MS);
    const client = new WebSocketClient({
      url: `ws://127.0.0.1:${port}`,
      keepAlive: false,
      handler: makeHandler("agent"),
    }).withMetadata({ name: "in-process", runtime: RUNTIME });
    // Registered before the fixture: cleanups run in reverse, so the client closes first.
    cleanup.add(() => client.close());
    const connection = await withTimeout(client.connect(), START_MS, "client.connect()");
    return { fixture, client, connection };
  }

  it("WebSocketClient and the other runtime's server each call the other's handler", async () => {
    const { fixture, connection } = await connect();

    const server = await withTimeout(whoami(connection.fetch), CHECK_MS, "GET /whoami");
    assert.deepEqual(
      server,
      {
        runtime: OTHER,
        role: "server",
        connectionId: connection.id,
        metadata: { name: "in-process", runtime: RUNTIME },
      } satisfies WhoAmI,
    );

    const [, json] = await fixture.waitFor(new RegExp(`^whoami ${connection.id} (.*)$`), CHECK_MS);
    assert.deepEqual(
      JSON.parse(json),
      {
        runtime: RUNTIME,
        role: "agent",
        connectionId: connection.id,
        metadata: { name: "in-process", runtime: RUNTIME },
      } satisfies WhoAmI,
    );
  });

  it("Connection.fetch() streams a few MiB byte-exact both ways", async () => {
    const { fixture, connection } = await connect(["--checks"]);
    assert.equal(
      await withTimeout(checkEcho(connection.fetch), CHECK_MS, "echo"),
      BIG_BODY_BYTES,
    );
    assert.equal(
      await withTimeout(checkDownload(connection.fetch), CHECK_MS, "download"),
      BIG_BODY_BYTES,
    );
    // The other runtime's server did the same against this runtime's handler.
    await expectCheck(fixture, `check ${connection.id}`, "echo");
    await expectCheck(fixture, `check ${connection.id}`, "download");
  });

  it(`Connection.fetch() runs ${BATCH_SIZE} concurrent exchanges both ways`, async () => {
    const { fixture, connection } = await connect(["--checks"]);
    assert.equal(await withTimeout(checkBatch(connection.fetch), CHECK_MS, "batch"), BATCH_SIZE);
    await expectCheck(fixture, `check ${connection.id}`, "batch");
  });

  it("WebSocketClient.close() ends the connection on the other runtime's server", async () => {
    const { fixture, client, connection } = await connect();
    await fixture.waitFor(new RegExp(`^whoami ${connection.id} `), CHECK_MS);
    await withTimeout(client.close(), CHECK_MS, "client.close()");
    await fixture.waitFor(new RegExp(`^closed ${connection.id}$`), CHECK_MS);
  });

  it("a killed server process rejects pending fetches and closes with 1006", async () => {
    const { fixture, client, connection } = await connect();
    const events = client.events();
    cleanup.add(async () => await events.return?.());
    const pending = connection.fetch("/hang");
    pending.catch(() => {});
    await fixture.waitFor(/^arrived \/hang$/, CHECK_MS);
    await fixture.kill();
    await assert.rejects(withTimeout(pending, CHECK_MS, "pending fetch"), (error: unknown) => {
      assert.ok(error instanceof ConnectionClosedError, String(error));
      assert.equal(error.code, 1006);
      return true;
    });
    const info = await withTimeout(connection.closed, CHECK_MS, "connection.closed");
    assert.equal(info.code, 1006);
    const failure = await nextEvent(events, EventType.ConnectionFailure, CHECK_MS);
    assert.equal(failure.connectionId, connection.id);
  });

  it("the heartbeat measures a round trip to the other runtime", async () => {
    const fixture = spawnFixture(OTHER, "tests/fixtures/server.ts");
    cleanup.add(() => fixture.kill());
    const [, port] = await fixture.waitFor(/^listening (\d+)$/, START_MS);
    let pong!: (rtt: number | undefined) => void;
    const ponged = new Promise<number | undefined>((resolve) => pong = resolve);
    const client = new WebSocketClient({
      url: `ws://127.0.0.1:${port}`,
      heartbeat: { interval: 50 },
      reconnect: { maxAttempts: 0 },
      appData: "from-" + RUNTIME,
      onPong: (data, rtt) => {
        if (data === "from-" + RUNTIME) pong(rtt);
      },
    });
    cleanup.add(() => client.close());
    const connection = await withTimeout(client.connect(), START_MS, "client.connect()");
    const rtt = await withTimeout(ponged, CHECK_MS, "a pong");
    assert.equal(typeof rtt, "number");
    assert.ok(rtt! >= 0, `rtt ${rtt}`);
    assert.equal(connection.rtt, rtt);
  });
});

describe(`cross-runtime: ${RUNTIME} server in process, ${OTHER} agent subprocess`, () => {
  const cleanup = cleanups();
  afterEach(() => cleanup.run());

  /** Starts an in-process server and the other runtime's agent fixture dialing it. */
  async function accept(
    agentArgs: string[] = [],
    name = `${OTHER}-agent`,
  ): Promise<{ server: WebSocketServer; fixture: Fixture; connection: Connection }> {
    const server = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      handler: makeHandler("server"),
      closeTimeout: 2_000,
    });
    cleanup.add(() => server.close());
    const events: AsyncIterableIterator<ConnectionEvent> = server.events();
    cleanup.add(async () => await events.return?.());
    const url = `ws://127.0.0.1:${server.addr.port}`;
    const fixture = spawnFixture(OTHER, "tests/fixtures/agent.ts", [
      url,
      "--name",
      name,
      ...agentArgs,
    ]);
    cleanup.add(() => fixture.kill());
    const event = await nextEvent(events, EventType.ConnectionReceived, START_MS);
    return { server, fixture, connection: event.connection! };
  }

  it("WebSocketServer and the other runtime's agent each call the other's handler", async () => {
    const { server, fixture, connection } = await accept([], "agent-7");
    assert.deepEqual(connection.metadata, { name: "agent-7", runtime: OTHER });
    assert.equal(server.connectionFromMetadata({ name: "agent-7", runtime: OTHER }), connection);

    const agent = await withTimeout(whoami(connection.fetch), CHECK_MS, "GET /whoami");
    assert.deepEqual(
      agent,
      {
        runtime: OTHER,
        role: "agent",
        connectionId: connection.id,
        metadata: { name: "agent-7", runtime: OTHER },
      } satisfies WhoAmI,
    );

    const [, json] = await fixture.waitFor(/^server-whoami (.*)$/, CHECK_MS);
    assert.deepEqual(
      JSON.parse(json),
      {
        runtime: RUNTIME,
        role: "server",
        connectionId: connection.id,
        metadata: { name: "agent-7", runtime: OTHER },
      } satisfies WhoAmI,
    );
  });

  it("Connection.fetch() streams a few MiB byte-exact both ways", async () => {
    const { fixture, connection } = await accept(["--checks"]);
    // The agent runs its checks against this server at the same time.
    assert.equal(
      await withTimeout(checkEcho(connection.fetch), CHECK_MS, "echo"),
      BIG_BODY_BYTES,
    );
    assert.equal(
      await withTimeout(checkDownload(connection.fetch), CHECK_MS, "download"),
      BIG_BODY_BYTES,
    );
    await expectCheck(fixture, "check", "echo");
    await expectCheck(fixture, "check", "download");
  });

  it(`Connection.fetch() runs ${BATCH_SIZE} concurrent exchanges both ways`, async () => {
    const { fixture, connection } = await accept(["--checks"]);
    assert.equal(await withTimeout(checkBatch(connection.fetch), CHECK_MS, "batch"), BATCH_SIZE);
    await expectCheck(fixture, "check", "batch");
  });

  it("a killed agent process rejects pending fetches and fails the connection", async () => {
    const { server, fixture, connection } = await accept();
    const events = server.events();
    cleanup.add(async () => await events.return?.());
    const pending = connection.fetch("/hang");
    pending.catch(() => {});
    await fixture.waitFor(/^arrived \/hang$/, CHECK_MS);
    await fixture.kill();
    await assert.rejects(withTimeout(pending, CHECK_MS, "pending fetch"), (error: unknown) => {
      assert.ok(error instanceof ConnectionClosedError, String(error));
      return true;
    });
    const failure = await nextEvent(events, EventType.ConnectionFailure, CHECK_MS);
    assert.equal(failure.connectionId, connection.id);
    const closed = await nextEvent(events, EventType.ConnectionClosed, CHECK_MS);
    assert.equal(closed.connectionId, connection.id);
    assert.equal(server.connection(connection.id), undefined);
  });

  it("WebSocketServer.close() lets in-flight exchanges finish, then the agent ends", async () => {
    const { server, fixture, connection } = await accept();
    await fixture.waitFor(/^server-whoami /, CHECK_MS);
    const slow = connection.fetch("/slow?ms=300").then((response) => response.text());
    slow.catch(() => {});
    await fixture.waitFor(/^arrived \/slow$/, CHECK_MS);
    await withTimeout(server.close(), CHECK_MS, "server.close()");
    assert.equal(await withTimeout(slow, CHECK_MS, "the in-flight exchange"), "slow done");
    const [, code] = await fixture.waitFor(/^closed (\d+)$/, CHECK_MS);
    assert.equal(Number(code), CloseCode.GoingAway);
    assert.equal(await withTimeout(fixture.exited, CHECK_MS, "agent exit"), 0);
  });
});
