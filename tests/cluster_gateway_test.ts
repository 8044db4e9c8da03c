/**
 * Gateways as a cluster on a real `redis-server`: each lists the others' agents, a call
 * through any reaches an agent on another, a name claimed on two ends with exactly one
 * holder, an owner that lost its agent makes the caller's instance look again, and an agent
 * that moves to another instance keeps its id.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type AgentInfo, type Gateway, type RedisLike, startGateway } from "../gateway.ts";
import { startAgent } from "../agent.ts";
import {
  CloseCode,
  type Connection,
  type ConnectionEvent,
  EventType,
  HandshakeError,
  type Logger,
  type TlsOptions,
  WebSocketClient,
} from "../mod.ts";
import { join } from "node:path";
import {
  BUN_BIN,
  DENO_BIN,
  ROOT_DIR,
  RUNTIME,
  serverHolds,
  spawnLines,
  withTimeout,
} from "./_helpers.ts";
import { connectRedis, NO_REDIS, type RedisServer, startRedis } from "./_redis.ts";
import { recordingLogger } from "./_recording_logger.ts";
import { makeCertificates } from "./_certificates.ts";
import { unanswered } from "./_exchange_helpers.ts";
import { rmSync } from "node:fs";

const OPTIONS = { timeout: 60_000, skip: NO_REDIS };
const STEP_MS = 20_000;
const SECRET = "cluster-secret";

describe("gateways as a cluster on redis-server", OPTIONS, () => {
  let redis: RedisServer;
  const clients: { destroy(): void }[] = [];
  const gateways: Gateway[] = [];
  const agents: { close(): Promise<void> }[] = [];

  /** A gateway in the cluster, with a Redis client of its own. */
  async function instance(
    ttl = 1_500,
    options: { logger?: Logger; tls?: TlsOptions; caCerts?: string[] } = {},
  ): Promise<Gateway> {
    const client = await connectRedis(redis);
    clients.push(client);
    const { caCerts, ...rest } = options;
    const gateway = await startGateway({
      port: 0,
      ...rest,
      // Advertised as its own URL: every instance of one machine reaches the others there.
      cluster: { redis: client as unknown as RedisLike, secret: SECRET, ttl, caCerts },
    });
    gateways.push(gateway);
    return gateway;
  }

  /** Waits until `via` finds `name` held by `holder` (a lookup sees it as Redis has it). */
  async function claimed(via: Gateway, name: string, holder: Gateway): Promise<void> {
    const deadline = Date.now() + STEP_MS;
    while (true) {
      const names = (await list(holder)).map((agent) => agent.name);
      const seen = (await list(via)).filter((agent) => agent.name === name).length;
      if (names.includes(name) && seen === 1) return;
      assert.ok(Date.now() < deadline, `${name} never recorded: ${names}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function list(gateway: Gateway): Promise<AgentInfo[]> {
    const response = await withTimeout(fetch(`${gateway.url}/agents`), STEP_MS, "GET /agents");
    assert.equal(response.status, 200);
    return await response.json() as AgentInfo[];
  }

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const agent of agents) await agent.close();
    for (const gateway of gateways) await gateway.close();
    for (const client of clients) client.destroy();
    await redis?.close();
  });

  it("lists every instance's agents, each once, on any instance", async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = startAgent({ url: a.agentsUrl, name: "on-a" });
    const onB = startAgent({ url: b.agentsUrl, name: "on-b" });
    agents.push(onA, onB);
    await serverHolds(a.server, (await withTimeout(onA.ready, STEP_MS, "on-a")).id);
    const onBId = (await withTimeout(onB.ready, STEP_MS, "on-b")).id;
    await serverHolds(b.server, onBId);
    for (const gateway of [a, b]) {
      const names = (await list(gateway)).map((agent) => agent.name).sort();
      assert.deepEqual(names, ["on-a", "on-b"]);
    }
    const gone = b.server.connection(onBId)!.closed;
    await onB.close();
    await withTimeout(gone, STEP_MS, "b to see on-b leave");
    // A listing refreshes its own instance's record first: B's now says that on-b is gone,
    // and A reads it so.
    assert.deepEqual((await list(b)).map((agent) => agent.name), ["on-a"]);
    assert.deepEqual((await list(a)).map((agent) => agent.name), ["on-a"]);
  });

  it("a call through any instance reaches an agent on another, streaming, with the caller's headers", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const far = startAgent({
      url: b.agentsUrl,
      name: "far",
      handler: async (request, info) =>
        Response.json({
          method: request.method,
          target: info.target,
          body: await request.text(),
          xff: request.headers.get("x-forwarded-for"),
          secret: request.headers.get("x-swaggersocket-cluster-secret"),
          custom: request.headers.get("x-custom"),
        }),
    });
    agents.push(far);
    await serverHolds(b.server, (await withTimeout(far.ready, STEP_MS, "far")).id);
    // Held by B is not yet recorded in Redis: A would answer 404 until it is.
    await claimed(a, "far", b);
    const response = await withTimeout(
      fetch(`${a.url}/agents/far/x/../y?q=1`, {
        method: "POST",
        body: "through a",
        headers: { "x-custom": "kept" },
      }),
      STEP_MS,
      "POST through instance a",
    );
    assert.equal(response.status, 200);
    const seen = await response.json();
    assert.equal(seen.method, "POST");
    assert.equal(seen.body, "through a");
    assert.equal(seen.custom, "kept");
    assert.equal(seen.secret, null, "the secret never reaches an agent");
    // The caller, then instance A as B saw it: B trusts a peer's chain and adds its hop.
    assert.match(seen.xff, /^127\.0\.0\.1, (::ffff:)?127\.0\.0\.1$/);
    // What comes over a link is never sent on: B says that it does not hold the agent (it
    // has moved on, since A found it there), for A to look again.
    const linkUrl = `${b.url.replace(/^http/, "ws")}/cluster/connect`;
    const link = new WebSocketClient({
      url: linkUrl,
      headers: { "x-swaggersocket-cluster-secret": SECRET },
      reconnect: { maxAttempts: 0 },
    });
    try {
      const connection = await withTimeout(link.connect(), STEP_MS, "a link to b");
      const unknown = await connection.fetch("http://b/agents/nobody/x");
      assert.equal(unknown.status, 421);
      assert.equal(unknown.headers.get("x-swaggersocket-moved"), "1");
      assert.equal((await unknown.json()).error, "agent_moved");
    } finally {
      await link.close();
    }
    // Without the secret there is no link.
    const forged = new WebSocketClient({
      url: linkUrl,
      headers: { "x-swaggersocket-cluster-secret": "guess" },
      reconnect: { maxAttempts: 0 },
    });
    await assert.rejects(withTimeout(forged.connect(), STEP_MS, "a forged link"), HandshakeError);
    await forged.close();
  });

  it("a caller that hangs up before the head cancels the agent's exchange on the other instance", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const { handler, arrived, aborted } = unanswered();
    const waits = startAgent({ url: b.agentsUrl, name: "waits", handler });
    agents.push(waits);
    await serverHolds(b.server, (await withTimeout(waits.ready, STEP_MS, "waits")).id);
    await claimed(a, "waits", b);
    const caller = new AbortController();
    const pending = fetch(`${a.url}/agents/waits/x`, { signal: caller.signal }).catch(() => {});
    await withTimeout(arrived, STEP_MS, "the request at the agent");
    caller.abort();
    await pending;
    const reason = await withTimeout(aborted, STEP_MS, "the agent's request aborted");
    assert.equal((reason as Error).name, "AbortError");
  });

  it("a large body streams both ways through the hop, byte for byte", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const echo = startAgent({
      url: b.agentsUrl,
      name: "echo-far",
      handler: (request) => new Response(request.body),
    });
    agents.push(echo);
    await claimed(a, "echo-far", b);
    const size = 8 * 1024 * 1024;
    const sent = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
    const response = await withTimeout(
      fetch(`${a.url}/agents/echo-far/echo`, { method: "POST", body: sent }),
      STEP_MS,
      "8 MiB through instance a",
    );
    assert.equal(response.status, 200);
    const received = new Uint8Array(
      await withTimeout(response.arrayBuffer(), STEP_MS, "the echo"),
    );
    assert.equal(received.length, size);
    assert.ok(received.every((byte, i) => byte === sent[i]), "the same bytes");
  });

  it("the instance a call came through logs it and counts it, whole, streamed or not found", async () => {
    const near = recordingLogger();
    const far = recordingLogger();
    const [a, b] = [
      await instance(1_500, { logger: near.logger }),
      await instance(1_500, { logger: far.logger }),
    ];
    const agent = startAgent({
      url: b.agentsUrl,
      name: "logged-far",
      handler: (request) => {
        if (new URL(request.url).pathname !== "/streamed") return new Response("whole answer");
        const parts = ["streamed ", "in ", "parts"].map((part) => new TextEncoder().encode(part));
        return new Response(
          new ReadableStream({
            async pull(controller) {
              // A macrotask apart: the answer does not come whole with its head.
              await new Promise((resolve) => setTimeout(resolve, 1));
              const part = parts.shift();
              if (part) controller.enqueue(part);
              else controller.close();
            },
          }),
        );
      },
    });
    agents.push(agent);
    await claimed(a, "logged-far", b);
    for (const [path, text] of [["/whole", "whole answer"], ["/streamed", "streamed in parts"]]) {
      const response = await fetch(`${a.url}/agents/logged-far${path}`);
      assert.equal(await response.text(), text);
      for (const { logged } of [near, far]) {
        const [level, , fields] = await logged("request", (f) => f.path === path);
        assert.equal(level, "info");
        assert.deepEqual(
          { agent: fields.agent, status: fields.status, out: fields.out },
          { agent: "logged-far", status: 200, out: text.length },
        );
      }
    }
    const missing = await fetch(`${a.url}/agents/nowhere/at-all`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const [, , fields] = await near.logged("request", (f) => f.agent === "nowhere");
    assert.equal(fields.status, 404);
  });

  it("a name claimed on two instances at once ends with exactly one holder", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const first = startAgent({ url: a.agentsUrl, name: "twice", reconnect: { maxAttempts: 1 } });
    const second = startAgent({ url: b.agentsUrl, name: "twice", reconnect: { maxAttempts: 1 } });
    agents.push(first, second);
    const [one, two] = await Promise.all([
      withTimeout(first.ready, STEP_MS, "first"),
      withTimeout(second.ready, STEP_MS, "second"),
    ]);
    const onA: Connection = a.server.connection(one.id) ??
      await serverHolds(a.server, one.id).then(() => a.server.connection(one.id)!);
    const onB: Connection = b.server.connection(two.id) ??
      await serverHolds(b.server, two.id).then(() => b.server.connection(two.id)!);
    // The refresh after each claim gives the name up where it was taken later.
    const loser = await withTimeout(
      Promise.race([onA.closed.then(() => "a"), onB.closed.then(() => "b")]),
      STEP_MS,
      "one of them to give the name up",
    );
    const winner = loser === "a" ? onB : onA;
    assert.equal(winner.isClosed, false, "the other keeps it");
    const listed = (await list(a)).filter((agent) => agent.name === "twice");
    assert.equal(listed.length, 1);
    assert.equal(listed[0].id, winner.id);
  });

  it("an instance whose agent's name is taken on another is told at once, and closes it with 4015", async () => {
    // Refreshes every 40 s: only being told can close the older connection within the guard.
    const [slowA, slowB] = [await instance(120_000), await instance(120_000)];
    const older = startAgent({
      url: slowA.agentsUrl,
      name: "taken",
      reconnect: { maxAttempts: 1 },
    });
    agents.push(older);
    const olderId = (await withTimeout(older.ready, STEP_MS, "the older on a")).id;
    await claimed(slowB, "taken", slowA);
    const olderClosed = slowA.server.connection(olderId)!.closed;
    const newer = startAgent({ url: slowB.agentsUrl, name: "taken" });
    agents.push(newer);
    await withTimeout(newer.ready, STEP_MS, "the newer on b");
    const info = await withTimeout(olderClosed, STEP_MS, "the older to be closed");
    assert.equal(info.code, CloseCode.Superseded);
    const stopped = await withTimeout(older.stopped, STEP_MS, "the older agent to stop");
    assert.ok(stopped instanceof Error, "4015 is terminal for the agent");
  });

  it("an instance that lost the agent since makes the caller's look again and retry once", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const c = await instance();
    const whoami = (_request: Request, info: { connection: Connection }): Response =>
      new Response(info.connection.id);
    const first = startAgent({ url: b.agentsUrl, name: "mover", handler: whoami });
    agents.push(first);
    const firstId = (await withTimeout(first.ready, STEP_MS, "mover on b")).id;
    await claimed(a, "mover", b);
    // A looks the owner up and remembers it (for a second).
    const before = await fetch(`${a.url}/agents/mover/x`);
    assert.equal(await before.text(), firstId);
    // The agent moves to C: B's records go, C's come.
    const gone = b.server.connection(firstId)!.closed;
    await first.close();
    await withTimeout(gone, STEP_MS, "b to see mover leave");
    const second = startAgent({ url: c.agentsUrl, name: "mover", handler: whoami });
    agents.push(second);
    const secondId = (await withTimeout(second.ready, STEP_MS, "mover on c")).id;
    await claimed(a, "mover", c);
    // A still remembers B: B answers "moved", A asks Redis again and goes to C.
    const after = await withTimeout(fetch(`${a.url}/agents/mover/x`), STEP_MS, "GET via a");
    assert.equal(after.status, 200);
    assert.equal(await after.text(), secondId);
  });

  it("an agent that lands on another instance keeps its connection id (resume tokens in Redis)", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const c = await instance();
    // It dials C first, and B when C is gone.
    const agent = startAgent({
      url: [c.agentsUrl, b.agentsUrl],
      name: "resumer",
      reconnect: { initialDelay: 50, maxDelay: 200 },
    });
    agents.push(agent);
    const { id } = await withTimeout(agent.ready, STEP_MS, "resumer on c");
    const events = agent.client.events();
    await c.close();
    let resumed: ConnectionEvent | undefined;
    for await (const event of events) {
      if (event.type === EventType.ConnectionReceived) {
        resumed = event;
        break;
      }
    }
    assert.equal(resumed?.connectionId, id, "the same id on another instance");
    assert.equal(resumed?.resumed, true);
    await claimed(a, "resumer", b);
    const response = await withTimeout(fetch(`${a.url}/agents/${id}/hello`), STEP_MS, "by id");
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });

  it("an instance dials another's https URL trusting cluster.caCerts; one without them gets a clear 502", async () => {
    const certs = makeCertificates();
    try {
      const secure = await instance(1_500, { tls: certs.tls });
      const trusting = await instance(1_500, { caCerts: [certs.ca] });
      const doubting = gateways[0];
      assert.match(secure.url, /^https:/);
      const agent = startAgent({ url: secure.agentsUrl, name: "behind-tls", caCerts: [certs.ca] });
      agents.push(agent);
      await serverHolds(secure.server, (await withTimeout(agent.ready, STEP_MS, "on tls")).id);
      await claimed(trusting, "behind-tls", trusting);
      const response = await withTimeout(
        fetch(`${trusting.url}/agents/behind-tls/hello`),
        STEP_MS,
        "through the trusting instance",
      );
      assert.equal(response.status, 200);
      await response.body?.cancel();
      const refused = await withTimeout(
        fetch(`${doubting.url}/agents/behind-tls/hello`),
        STEP_MS,
        "through an instance without the CA",
      );
      assert.equal(refused.status, 502);
      const { error, message } = await refused.json();
      assert.equal(error, "agent_unavailable");
      // Bun's client names the certificate; Deno's reports its HTTP/2 retry, with the hint.
      assert.match(message, /wss:\/\/127\.0\.0\.1:\d+\/cluster\/connect: .*certificate/i);
    } finally {
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });

  it("refuses cluster.caCerts that are not PEM certificates when it starts", async () => {
    await assert.rejects(instance(1_500, { caCerts: ["ca.pem"] }), /Invalid cluster\.caCerts\[0\]/);
  });

  it("with Redis down, local calls still work and forwarded ones fail fast with a clear error", async () => {
    const [a, b] = [gateways[0], gateways[1]];
    const local = startAgent({ url: a.agentsUrl, name: "local-during-outage" });
    const remote = startAgent({ url: b.agentsUrl, name: "remote-during-outage" });
    agents.push(local, remote);
    await serverHolds(a.server, (await withTimeout(local.ready, STEP_MS, "local")).id);
    await serverHolds(b.server, (await withTimeout(remote.ready, STEP_MS, "remote")).id);
    await redis.stop();
    const here = await withTimeout(
      fetch(`${a.url}/agents/local-during-outage/hello`),
      STEP_MS,
      "a local call during the outage",
    );
    assert.equal(here.status, 200);
    await here.body?.cancel();
    // Fast: well within the guard, which is shorter than the 30 s the gateway would wait
    // for an agent.
    const there = await withTimeout(
      fetch(`${a.url}/agents/remote-during-outage/hello`),
      STEP_MS,
      "a forwarded call during the outage",
    );
    assert.equal(there.status, 502);
    assert.equal((await there.json()).error, "cluster_unavailable");
  });
});

for (const runtime of ["deno", "bun"] as const) {
  describe(`gateway.ts --redis: two processes as a cluster (${runtime})`, OPTIONS, () => {
    it("an agent on one instance answers a call through the other, over https with --ca", async () => {
      const redis = await startRedis();
      // The agent's instance serves https with a private CA's certificate; the other trusts
      // that CA (--ca) when it dials it.
      const certs = makeCertificates();
      const tls = [
        ["--ca", certs.caFile],
        ["--cert", certs.certFile, "--key", certs.keyFile],
      ];
      const script = join(ROOT_DIR, "gateway.ts");
      const bin = runtime === "deno" ? DENO_BIN : BUN_BIN;
      const processes: ReturnType<typeof spawnLines>[] = [];
      const agentsToClose: { close(): Promise<void> }[] = [];
      try {
        const urls: string[][] = [];
        for (let i = 0; i < 2; i++) {
          const args = [
            script,
            "--port",
            "0",
            "--redis",
            `unix://${redis.socket}`,
            "--log-level",
            "debug",
            ...tls[i],
          ];
          const gateway = spawnLines(
            bin,
            runtime === "deno" ? ["run", "-A", "--quiet", ...args] : ["run", ...args],
            "gateway.ts",
            { SWAGGERSOCKET_GATEWAY_CLUSTER_SECRET: SECRET },
          );
          processes.push(gateway);
          const [, url, agentsUrl] = await gateway.waitFor(
            /gateway listening url=(\S+) agents=(\S+)$/,
            STEP_MS,
          );
          urls.push([url, agentsUrl]);
        }
        assert.match(urls[1][1], /^wss:/);
        const agent = startAgent({ url: urls[1][1], name: "across", caCerts: [certs.ca] });
        agentsToClose.push(agent);
        const { id } = await withTimeout(agent.ready, STEP_MS, "the agent on the second instance");
        // Reachable from the other instances once its record is in Redis.
        await processes[1].waitFor(new RegExp(`agent recorded in the cluster id=${id}`), STEP_MS);
        const response = await withTimeout(
          fetch(`${urls[0][0]}/agents/across/hello`),
          STEP_MS,
          "a call through the first instance",
        );
        assert.equal(response.status, 200, await response.clone().text());
        assert.equal(await response.text(), `hello from across (${RUNTIME})\n`);
      } finally {
        for (const agent of agentsToClose) await agent.close();
        for (const process of processes) await process.kill();
        await redis.close();
        rmSync(certs.dir, { recursive: true, force: true });
      }
    });
  });
}
