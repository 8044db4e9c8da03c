/**
 * Agent identity at the gateway: the name rules, the credentials file (parse, verify,
 * reload, SIGHUP), who holds which name (no silent takeover: the same credential replaces
 * with 4015, anything else is refused with 4014, of simultaneous claims exactly one wins),
 * and ids and names as separate namespaces. Pure parts first, then a real gateway and real
 * agents over loopback sockets, then the gateway script under Deno and under Bun.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ulid } from "ulid";
import {
  CredentialsFileError,
  type Gateway,
  type GatewayOptions,
  startGateway,
} from "../gateway.ts";
import { type Agent, startAgent } from "../agent.ts";
import {
  CloseCode,
  type Connection,
  ConnectionClosedError,
  EventType,
  type Handler,
  HandshakeError,
  type Logger,
  WebSocketClient,
} from "../mod.ts";
import {
  AGENT_NAME_PATTERN,
  agentNameProblem,
  isConnectionIdShaped,
  NameRegistry,
} from "../gateway/_agent_names.ts";
import { credentialLine, parseCredentials, tokenDigest } from "../gateway/_credentials.ts";
import { type AdmittedConnection, AgentAdmission } from "../gateway/_admission.ts";
import { BUN_BIN, DENO_BIN, eventWhere, ROOT_DIR, serverHolds, withTimeout } from "./_helpers.ts";
import { deferred, Resources } from "./_server_helpers.ts";
import { connectRaw } from "./_raw_peer.ts";
import { decodeFrames, FrameType } from "../protocol/mod.ts";

const RUNTIMES = ["deno", "bun"] as const;
/** Bounds one step. */
const STEP_MS = 15_000;
/** Bounds a subprocess's start (the machine is shared and may be loaded). */
const START_MS = 45_000;
const TEST_OPTIONS = { timeout: 60_000 };
const SUBPROCESS_OPTIONS = { timeout: 180_000 };
/** Agents retry quickly here: a refusal they retry is seen at once. */
const FAST_RETRY = { initialDelay: 20, maxDelay: 100 };

// ---- helpers ------------------------------------------------------------------

/** A temporary directory for credentials files, removed after each test. */
function tempDir(resources: Resources): string {
  const dir = mkdtempSync(join(tmpdir(), "swaggersocket-agents-"));
  resources.defer("remove the temporary directory", () => {
    rmSync(dir, { recursive: true, force: true });
    return Promise.resolve();
  });
  return dir;
}

/** Writes a credentials file for `[name, token]` pairs (plus a comment and a blank line). */
async function writeCredentials(path: string, entries: [string, string][]): Promise<void> {
  const lines = ["# agent credentials", ""];
  for (const [name, token] of entries) lines.push(await credentialLine(name, token));
  writeFileSync(path, lines.join("\n") + "\n");
}

/** A logger that keeps every line, so a test can wait for one. */
class RecordingLogger implements Logger {
  readonly lines: { level: string; args: unknown[] }[] = [];
  #waiters: { test: (args: unknown[]) => boolean; resolve: (args: unknown[]) => void }[] = [];

  debug(...args: unknown[]): void {
    this.#record("debug", args);
  }
  info(...args: unknown[]): void {
    this.#record("info", args);
  }
  warn(...args: unknown[]): void {
    this.#record("warn", args);
  }
  error(...args: unknown[]): void {
    this.#record("error", args);
  }

  /** Resolves with the first line (past or future) whose text matches `pattern`. */
  waitFor(pattern: RegExp, what: string): Promise<unknown[]> {
    // A fields object is read as its JSON, as the command line's log writes it.
    const text = (arg: unknown): string =>
      typeof arg === "object" && arg !== null && !(arg instanceof Error)
        ? JSON.stringify(arg)
        : String(arg);
    const test = (args: unknown[]): boolean => pattern.test(args.map(text).join(" "));
    const seen = this.lines.find((line) => test(line.args));
    if (seen) return Promise.resolve(seen.args);
    const { promise, resolve } = deferred<unknown[]>();
    this.#waiters.push({ test, resolve });
    return withTimeout(promise, STEP_MS, what);
  }

  #record(level: string, args: unknown[]): void {
    this.lines.push({ level, args });
    for (const waiter of [...this.#waiters]) {
      if (waiter.test(args)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(args);
      }
    }
  }
}

/** Starts a gateway on a free port, closed after the test. */
async function gatewayFor(resources: Resources, options: GatewayOptions): Promise<Gateway> {
  const gateway = await startGateway({ port: 0, ...options });
  resources.defer("gateway.close()", () => gateway.close());
  return gateway;
}

/** Starts an agent serving the demo API, closed after the test. */
function agentFor(
  resources: Resources,
  gateway: Gateway,
  name: string,
  token?: string,
  logger?: Logger,
): Agent {
  const agent = startAgent({
    url: gateway.agentsUrl,
    name,
    ...(token === undefined ? {} : { token }),
    reconnect: FAST_RETRY,
    ...(logger ? { logger } : {}),
  });
  resources.defer(`agent ${name}.close()`, () => agent.close());
  return agent;
}

/** An agent's first connection, once the gateway holds it too. */
async function ready(gateway: Gateway, agent: Agent): Promise<Connection> {
  const connection = await withTimeout(agent.ready, STEP_MS, "agent.ready");
  await serverHolds(gateway.server, connection.id, STEP_MS);
  return connection;
}

/** Answers any request with the id of the connection it came over (as the demo's `/whoami`). */
const whoamiHandler: Handler = (_request, info) =>
  Response.json({ connectionId: info.connection.id });

/** Dials once with `metadata` (no retries, no reconnects); closed after the test. */
function dial(resources: Resources, gateway: Gateway, metadata: unknown): Promise<Connection> {
  const client = new WebSocketClient({
    url: gateway.agentsUrl,
    keepAlive: false,
    handler: whoamiHandler,
  })
    .withMetadata(metadata);
  resources.defer("client.close()", () => client.close());
  return withTimeout(client.connect(), STEP_MS, `dial ${JSON.stringify(metadata)}`);
}

/** The `HandshakeError` that `promise` rejects with. */
async function refusal(promise: Promise<unknown>, what: string): Promise<HandshakeError> {
  const error = await withTimeout(
    promise.then(() => assert.fail(`${what}: connected`), (error: unknown) => error),
    STEP_MS,
    what,
  );
  assert.ok(error instanceof HandshakeError, `${what}: ${error}`);
  return error;
}

/** `GET /agents/{key}/whoami`: the status and, for 200, the answering connection's id. */
async function whoami(gateway: Gateway, key: string): Promise<{ status: number; id?: string }> {
  const response = await withTimeout(
    fetch(`${gateway.url}/agents/${encodeURIComponent(key)}/whoami`),
    STEP_MS,
    `GET /agents/${key}/whoami`,
  );
  const body = await response.json();
  return response.status === 200
    ? { status: 200, id: body.connectionId }
    : { status: response.status };
}

/** What an agent stopped with: it must stop by itself, with an error carrying `code`. */
async function stoppedWith(agent: Agent, code: number, what: string): Promise<Error> {
  const error = await withTimeout(agent.stopped, STEP_MS, `${what} to stop`);
  assert.ok(error, `${what} stopped without an error`);
  assert.equal((error as { code?: number }).code, code, `${what}: ${error}`);
  return error;
}

// ---- pure parts ----------------------------------------------------------------

describe("agent names", () => {
  it("a name is a safe path segment of 1-128 characters that is not shaped like a ULID", () => {
    for (
      const name of [
        "a",
        "0",
        "demo",
        "connect",
        "deno-agent",
        "tunnel-bun",
        "A.b_c~d-e",
        "x".repeat(128),
        // 26 characters but not Crockford base32 (U, I, L, O are not in it), or 25 or 27 long.
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
      ]
    ) {
      assert.equal(agentNameProblem(name), undefined, name);
      assert.match(name, AGENT_NAME_PATTERN);
    }
    for (
      const name of [
        "",
        "-a",
        ".a",
        "_a",
        "~a",
        "a b",
        "a/b",
        "a%2Fb",
        "a?b",
        "a#b",
        "ä",
        "a\n",
        "x".repeat(129),
      ]
    ) {
      assert.match(agentNameProblem(name) ?? "", /1-128 letters/, JSON.stringify(name));
    }
    for (const name of [ulid(), ulid().toLowerCase(), "01ARZ3NDEKTSV4RRFFQ69G5FAV"]) {
      assert.match(agentNameProblem(name) ?? "", /connection id/, name);
    }
  });

  it("connection ids are ULID-shaped in any case; nothing else is", () => {
    const id = ulid();
    assert.equal(isConnectionIdShaped(id), true);
    assert.equal(isConnectionIdShaped(id.toLowerCase()), true);
    assert.equal(isConnectionIdShaped(`${id}0`), false);
    assert.equal(isConnectionIdShaped(id.slice(1)), false);
    assert.equal(isConnectionIdShaped("01ARZ3NDEKTSV4RRFFQ69G5FAU"), false);
  });

  it("NameRegistry: one holder per name; a takeover only when the caller's rule allows it", () => {
    const names = new NameRegistry<string>();
    const key = new Uint8Array([1, 2, 3]);
    assert.deepEqual(names.claim("printer", "first", key, () => false), { claimed: true });
    assert.deepEqual(names.claim("printer", "first", key, () => false), { claimed: true });
    assert.deepEqual(names.claim("printer", "second", undefined, () => false), {
      claimed: false,
      holder: "first",
    });
    let asked: unknown;
    assert.deepEqual(
      names.claim("printer", "third", key, (current) => {
        asked = current;
        return true;
      }),
      { claimed: true, replaced: "first" },
    );
    assert.deepEqual(asked, { name: "printer", holder: "first", credential: key });
    assert.equal(names.release("printer", "first"), false, "a replaced holder releases nothing");
    assert.equal(names.holder("printer"), "third");
    const snapshot = names.entries();
    assert.equal(names.release("printer", "third"), true);
    assert.equal(names.holder("printer"), undefined);
    assert.equal(names.size, 0);
    assert.deepEqual(snapshot, [{ name: "printer", holder: "third", credential: key }]);
  });
});

describe("credentials file", () => {
  const HEX = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; // SHA-256("abc")

  it("credentialLine() is what `printf %s TOKEN | sha256sum` gives", async () => {
    assert.equal(await credentialLine("printer", "abc"), `printer sha256:${HEX}`);
    await assert.rejects(credentialLine("bad name", "abc"), TypeError);
    await assert.rejects(credentialLine(ulid(), "abc"), TypeError);
    await assert.rejects(credentialLine("printer", ""), TypeError);
  });

  it("parses entries, comments, blank lines, tabs, CRLF, a BOM and upper-case hex", async () => {
    const table = parseCredentials(
      "\uFEFF# the agents\r\n\r\nprinter sha256:" + HEX + "  # the office printer\r\n" +
        "\tscanner\t\tsha256:" + HEX.toUpperCase() + "\n   \n# end",
      "agents.credentials",
    );
    assert.equal(table.size, 2);
    assert.equal(table.has("printer"), true);
    assert.equal(table.has("scanner"), true);
    assert.equal(table.has("# the agents"), false);
    const abc = await tokenDigest("abc");
    assert.equal(table.verify("printer", abc), true);
    assert.equal(table.verify("scanner", abc), true);
    assert.equal(table.verify("printer", await tokenDigest("abd")), false);
    assert.equal(table.verify("nobody", abc), false);
    assert.equal(parseCredentials("", "empty").size, 0);
  });

  it("a malformed line is an error naming the file and the line", () => {
    const good = `printer sha256:${HEX}`;
    const cases: [string, number, RegExp][] = [
      [`${good}\nscanner\n`, 2, /expected "NAME sha256:HEX", found 1 field$/],
      [`# c\n\n${good} extra\n`, 3, /found 3 fields/],
      [`bad/name sha256:${HEX}`, 1, /invalid name "bad\/name"/],
      [`${ulid()} sha256:${HEX}`, 1, /connection id/],
      [`${good}\n${good}\n`, 2, /"printer" is listed twice \(first on line 1\)/],
      [`printer md5:0123456789abcdef0123456789abcdef`, 1, /must be "sha256:" and 64 hex digits/],
      [`printer sha256:${HEX.slice(2)}`, 1, /SHA-256 of "printer" must be 64 hex digits/],
      [`printer ${HEX}`, 1, /must be "sha256:"/],
    ];
    for (const [text, line, problem] of cases) {
      assert.throws(
        () => parseCredentials(text, "/etc/agents.credentials"),
        (error: unknown) => {
          assert.ok(error instanceof CredentialsFileError, String(error));
          assert.equal(error.name, "CredentialsFileError");
          assert.equal(error.line, line, error.message);
          assert.equal(error.path, "/etc/agents.credentials");
          assert.ok(error.message.startsWith(`/etc/agents.credentials, line ${line}: `));
          assert.match(error.message, problem);
          return true;
        },
        text,
      );
    }
  });
});

/** A connection as the admission sees it, without a socket. */
class FakeConnection implements AdmittedConnection {
  id = "";
  isClosed = false;
  closedWith: { code: number; reason: string } | undefined;
  readonly closed: Promise<unknown>;
  #end!: () => void;

  constructor() {
    this.closed = new Promise<void>((resolve) => this.#end = resolve);
  }

  open(): this {
    this.id = ulid();
    return this;
  }

  close(options: { code: number; reason: string }): Promise<void> {
    if (!this.isClosed) {
      this.isClosed = true;
      this.closedWith = { code: options.code, reason: options.reason };
      this.#end();
    }
    return Promise.resolve();
  }
}

describe("AgentAdmission without sockets", () => {
  /** What `authorize` did: `true`, or the refusal's close code. */
  async function decide(
    admission: AgentAdmission<FakeConnection>,
    metadata: unknown,
    connection = new FakeConnection(),
  ): Promise<true | number> {
    try {
      return await admission.authorize({ metadata, connection });
    } catch (error) {
      return (error as { code: number }).code;
    }
  }

  it("of simultaneous claims on one name exactly one wins (open, shared-token modes)", async () => {
    for (const token of [undefined, "shared"]) {
      const admission = new AgentAdmission<FakeConnection>({ token });
      const results = await Promise.all(
        Array.from({ length: 16 }, () => decide(admission, { name: "printer", token })),
      );
      assert.equal(results.filter((result) => result === true).length, 1, String(results));
      assert.deepEqual(
        results.filter((result) => result !== true),
        Array(15).fill(CloseCode.NameInUse),
      );
    }
  });

  it("simultaneous claims with one per-agent credential: each replaces the last, one remains", async () => {
    const dir = mkdtempSync(join(tmpdir(), "swaggersocket-agents-"));
    try {
      const file = join(dir, "credentials");
      await writeCredentials(file, [["printer", "p-token"]]);
      const admission = new AgentAdmission<FakeConnection>({ credentialsFile: file });
      const connections = Array.from({ length: 8 }, () => new FakeConnection());
      const results = await Promise.all(
        connections.map((connection) =>
          decide(admission, { name: "printer", token: "p-token" }, connection)
        ),
      );
      assert.deepEqual(results, Array(8).fill(true));
      const open = connections.filter((connection) => !connection.isClosed);
      assert.equal(open.length, 1);
      for (const connection of connections) {
        if (connection === open[0]) continue;
        assert.deepEqual(connection.closedWith, {
          code: CloseCode.Superseded,
          reason: "Replaced by a newer connection with the same credentials",
        });
      }
      open[0].open();
      assert.equal(
        admission.find("printer", (id) => id === open[0].id ? open[0] : undefined),
        open[0],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("find(): an id-shaped key only by id (any case), a name only by name, never a handshaking holder", async () => {
    const admission = new AgentAdmission<FakeConnection>({});
    const pending = new FakeConnection();
    assert.equal(await decide(admission, { name: "printer" }, pending), true);
    const open = new Map<string, FakeConnection>();
    const lookup = (id: string): FakeConnection | undefined => open.get(id);
    assert.equal(admission.find("printer", lookup), undefined, "still in its handshake");
    pending.open();
    open.set(pending.id, pending);
    assert.equal(admission.find("printer", lookup), pending);
    assert.equal(admission.find(pending.id, lookup), pending);
    assert.equal(admission.find(pending.id.toLowerCase(), lookup), pending);
    assert.equal(admission.find(ulid(), lookup), undefined);
    assert.equal(admission.find("scanner", lookup), undefined);
    // It ends: the name is free, and neither key finds it.
    open.delete(pending.id);
    await pending.close({ code: 1000, reason: "" });
    assert.equal(admission.find("printer", lookup), undefined);
    assert.equal(admission.find(pending.id, lookup), undefined);
    assert.equal(await decide(admission, { name: "printer" }), true);
  });

  it("names that break the rule, or are not strings, are refused with 4004; no name is fine", async () => {
    const admission = new AgentAdmission<FakeConnection>({});
    for (
      const name of [ulid(), ulid().toLowerCase(), "", "a b", "-x", "x".repeat(129), 42, {}, []]
    ) {
      assert.equal(await decide(admission, { name }), CloseCode.InvalidMetadata, String(name));
    }
    for (const metadata of [null, {}, { name: null }, "text", [1, 2]]) {
      assert.equal(await decide(admission, metadata), true, JSON.stringify(metadata));
    }
  });

  it("credentials and the shared token: a listed name needs its own token, the shared one admits the rest", async () => {
    const dir = mkdtempSync(join(tmpdir(), "swaggersocket-agents-"));
    try {
      const file = join(dir, "credentials");
      await writeCredentials(file, [["printer", "p-token"], ["scanner", "s-token"]]);
      const only = new AgentAdmission<FakeConnection>({ credentialsFile: file });
      const both = new AgentAdmission<FakeConnection>({ credentialsFile: file, token: "shared" });
      const cases: [unknown, true | number, true | number][] = [
        // metadata, credentials only, credentials and shared token
        [{ name: "printer", token: "p-token" }, true, true],
        [{ name: "scanner", token: "p-token" }, 4003, 4003],
        [{ name: "printer", token: "shared" }, 4003, 4003],
        [{ name: "printer" }, 4003, 4003],
        [{ name: "fax", token: "shared" }, 4003, true],
        [{ name: "fax", token: "p-token" }, 4003, 4003],
        [{ token: "shared" }, 4003, true],
        [{ name: "copier", token: 7 }, 4003, 4003],
      ];
      for (const [metadata, alone, together] of cases) {
        assert.equal(
          await decide(only, metadata),
          alone,
          `credentials: ${JSON.stringify(metadata)}`,
        );
        assert.equal(await decide(both, metadata), together, `both: ${JSON.stringify(metadata)}`);
      }
      await assert.rejects(
        new AgentAdmission<FakeConnection>({ token: "x" }).reloadCredentials(),
        TypeError,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- a real gateway and real agents -------------------------------------------

describe("gateway agent identity", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  it(
    "an agent dialing through a trusted proxy is its X-Forwarded-For client; through anyone else, the socket's peer",
    TEST_OPTIONS,
    async () => {
      const behindProxy = await gatewayFor(resources, {
        trustedProxies: ["127.0.0.0/8", "::1"],
      });
      const direct = await gatewayFor(resources, {});
      const cases = [
        [behindProxy, "203.0.113.7", "203.0.113.7:0"],
        [behindProxy, "198.51.100.9, 127.0.0.1", "198.51.100.9:0"],
        [direct, "203.0.113.8", /^127\.0\.0\.1:\d+$/],
      ] as const;
      for (const [gateway, forwardedFor, expected] of cases) {
        const client = new WebSocketClient({
          url: gateway.agentsUrl,
          keepAlive: false,
          headers: { "x-forwarded-for": forwardedFor },
        }).withMetadata({ name: "proxied" });
        resources.defer("client.close()", () => client.close());
        const connection = await withTimeout(client.connect(), STEP_MS, forwardedFor);
        await serverHolds(gateway.server, connection.id, STEP_MS);
        const listed = gateway.agents().find((agent) => agent.id === connection.id);
        if (typeof expected === "string") assert.equal(listed?.remoteAddr, expected);
        else assert.match(String(listed?.remoteAddr), expected);
        await client.close();
      }
    },
  );

  it(
    "credentials: the listed agent gets in; a wrong token, an unknown name or another agent's name is refused with 4003 and stops",
    TEST_OPTIONS,
    async () => {
      const file = join(tempDir(resources), "agents.credentials");
      await writeCredentials(file, [["alpha", "alpha-token"], ["beta", "beta-token"]]);
      const gateway = await gatewayFor(resources, { credentialsFile: file });

      const alpha = agentFor(resources, gateway, "alpha", "alpha-token");
      const connection = await ready(gateway, alpha);
      assert.deepEqual(await whoami(gateway, "alpha"), { status: 200, id: connection.id });

      for (
        const [name, token, what] of [
          ["beta", "wrong", "a wrong token"],
          ["beta", undefined, "no token"],
          ["gamma", "gamma-token", "an unknown name"],
          ["beta", "alpha-token", "another agent's name with its own token"],
        ] as const
      ) {
        const logger = new RecordingLogger();
        const intruder = agentFor(resources, gateway, name, token, logger);
        const error = await refusal(intruder.ready, what);
        assert.equal(error.code, CloseCode.Unauthorized, what);
        assert.equal(error.retryable, false, what);
        // It stopped at the first refusal rather than retrying.
        assert.equal(await withTimeout(intruder.stopped, STEP_MS, "stopped"), error);
        assert.equal(logger.lines.some((line) => /retrying/.test(String(line.args[0]))), false);
      }
      assert.deepEqual(gateway.agents().map((agent) => agent.name), ["alpha"]);
      assert.deepEqual(await whoami(gateway, "alpha"), { status: 200, id: connection.id });
    },
  );

  it(
    "the same credentials again replace the holder: it gets 4015 and does not reconnect; requests go to the new one",
    TEST_OPTIONS,
    async () => {
      const file = join(tempDir(resources), "agents.credentials");
      await writeCredentials(file, [["alpha", "alpha-token"]]);
      const gateway = await gatewayFor(resources, { credentialsFile: file });

      const oldLogger = new RecordingLogger();
      const old = agentFor(resources, gateway, "alpha", "alpha-token", oldLogger);
      const oldConnection = await ready(gateway, old);
      const fresh = agentFor(resources, gateway, "alpha", "alpha-token");
      const freshConnection = await ready(gateway, fresh);
      assert.notEqual(freshConnection.id, oldConnection.id);

      const error = await stoppedWith(old, CloseCode.Superseded, "the replaced agent");
      assert.ok(error instanceof ConnectionClosedError, String(error));
      // The client decided not to redial: terminal code.
      const [, code] = await oldLogger.waitFor(/not reconnecting/, "the old agent to give up");
      assert.equal(code, CloseCode.Superseded);
      assert.equal(old.client.connection?.id, oldConnection.id, "no new connection");
      assert.equal(old.client.connection?.isClosed, true);

      assert.deepEqual(await whoami(gateway, "alpha"), { status: 200, id: freshConnection.id });
      assert.deepEqual(gateway.agents().map((agent) => agent.id), [freshConnection.id]);
    },
  );

  it(
    "shared token: a second agent for a held name is refused with 4014 (retryable) and gets in once the holder leaves",
    TEST_OPTIONS,
    async () => {
      const gateway = await gatewayFor(resources, { token: "shared" });
      const holder = agentFor(resources, gateway, "printer", "shared");
      const held = await ready(gateway, holder);

      const taken = await refusal(
        dial(resources, gateway, { name: "printer", token: "shared" }),
        "a second connection for the name",
      );
      assert.equal(taken.code, CloseCode.NameInUse);
      assert.equal(taken.retryable, true);
      assert.match(taken.message, /4014 Agent name in use/);

      const logger = new RecordingLogger();
      const waiting = agentFor(resources, gateway, "printer", "shared", logger);
      await logger.waitFor(/cannot connect yet.*4014/, "the waiting agent to be refused and retry");
      assert.deepEqual(await whoami(gateway, "printer"), { status: 200, id: held.id });

      await withTimeout(holder.close(), STEP_MS, "holder.close()");
      const connection = await ready(gateway, waiting);
      assert.deepEqual(await whoami(gateway, "printer"), { status: 200, id: connection.id });
    },
  );

  it(
    "an agent resuming while the gateway still holds its old socket gets its name back at once: 4012 to the old socket, neither 4014 nor 4015",
    TEST_OPTIONS,
    async () => {
      const file = join(tempDir(resources), "agents.credentials");
      await writeCredentials(file, [["listed", "listed-token"]]);
      const gateway = await gatewayFor(resources, { token: "shared", credentialsFile: file });
      for (
        const metadata of [{ name: "nat", token: "shared" }, {
          name: "listed",
          token: "listed-token",
        }]
      ) {
        // The old socket stays open, as a half-open one behind a NAT that lost its mapping does.
        const old = connectRaw(gateway.agentsUrl);
        resources.defer("old raw socket", () => old.close());
        const first = await old.handshake(metadata);
        await serverHolds(gateway.server, first.id, STEP_MS);
        const fresh = connectRaw(gateway.agentsUrl);
        resources.defer("resuming raw socket", () => fresh.close());
        const resumed = await fresh.handshake(metadata, true, first.resumeToken);
        assert.equal(resumed.resumed, true, metadata.name);
        assert.equal(resumed.id, first.id, metadata.name);
        const closed = await withTimeout(old.closed, STEP_MS, "the old socket to close");
        assert.equal(closed.code, CloseCode.Replaced, metadata.name);
        await serverHolds(gateway.server, first.id, STEP_MS);
        // Requests for the name reach the resumed socket (a raw peer: it never answers).
        const controller = new AbortController();
        const url = `${gateway.url}/agents/${metadata.name}/x`;
        const pending = fetch(url, { signal: controller.signal }).catch(() => {});
        // (A NOOP may come first: see PROTOCOL.md §9.)
        let types: number[] = [];
        while (!types.includes(FrameType.Headers)) {
          const message = await fresh.nextMessage(STEP_MS);
          assert.ok(message instanceof Uint8Array, metadata.name);
          types = decodeFrames(message, 1 << 20).map((frame) => frame.type);
        }
        controller.abort();
        await pending;
      }
    },
  );

  it(
    "without any token a held name is refused with 4014 too: no silent takeover",
    TEST_OPTIONS,
    async () => {
      const gateway = await gatewayFor(resources, {});
      const holder = agentFor(resources, gateway, "printer");
      const held = await ready(gateway, holder);
      const taken = await refusal(dial(resources, gateway, { name: "printer" }), "takeover");
      assert.equal(taken.code, CloseCode.NameInUse);
      assert.deepEqual(await whoami(gateway, "printer"), { status: 200, id: held.id });
    },
  );

  it(
    "simultaneous claims over sockets: shared token, exactly one gets in; one credential, exactly one remains",
    TEST_OPTIONS,
    async () => {
      const file = join(tempDir(resources), "agents.credentials");
      await writeCredentials(file, [["alpha", "alpha-token"]]);
      const gateway = await gatewayFor(resources, { credentialsFile: file, token: "shared" });
      const N = 8;

      const shared = await Promise.allSettled(
        Array.from(
          { length: N },
          () => dial(resources, gateway, { name: "printer", token: "shared" }),
        ),
      );
      const winners = shared.filter((result) => result.status === "fulfilled");
      assert.equal(winners.length, 1, "exactly one gets the name");
      for (const result of shared) {
        if (result.status === "fulfilled") continue;
        assert.ok(result.reason instanceof HandshakeError, String(result.reason));
        assert.equal(result.reason.code, CloseCode.NameInUse);
      }
      const winner = (winners[0] as PromiseFulfilledResult<Connection>).value;
      await serverHolds(gateway.server, winner.id, STEP_MS);
      assert.deepEqual(await whoami(gateway, "printer"), { status: 200, id: winner.id });

      const same = await Promise.allSettled(
        Array.from(
          { length: N },
          () => dial(resources, gateway, { name: "alpha", token: "alpha-token" }),
        ),
      );
      // Each newcomer replaced the one before: those closed with 4015, during their handshake
      // (connect() rejected, not retryable) or after it. One remains, and it has the name.
      const open: Connection[] = [];
      for (const result of same) {
        if (result.status === "rejected") {
          assert.ok(result.reason instanceof HandshakeError, String(result.reason));
          assert.equal(result.reason.code, CloseCode.Superseded);
          assert.equal(result.reason.retryable, false);
        } else {
          open.push(result.value);
        }
      }
      assert.ok(open.length >= 1, "the last claim is never replaced");
      // All claims have been decided (each connect() settled after its own): every replaced
      // connection has had its close sent. Wait for all but one to close.
      await withTimeout(
        new Promise<void>((resolve) => {
          let closed = 0;
          if (open.length === 1) {
            resolve();
          }
          for (const connection of open) {
            connection.closed.then(() => {
              if (++closed === open.length - 1) resolve();
            });
          }
        }),
        STEP_MS,
        "the replaced connections to close",
      );
      const holders = open.filter((connection) => !connection.isClosed);
      assert.equal(holders.length, 1, "exactly one remains");
      for (const connection of open) {
        if (connection === holders[0]) continue;
        assert.equal((await connection.closed).code, CloseCode.Superseded);
      }
      await serverHolds(gateway.server, holders[0].id, STEP_MS);
      assert.deepEqual(await whoami(gateway, "alpha"), { status: 200, id: holders[0].id });
    },
  );

  it(
    "ULID-shaped and malformed names are refused with 4004, terminally",
    TEST_OPTIONS,
    async () => {
      const gateway = await gatewayFor(resources, {});
      for (
        const name of [
          ulid(),
          ulid().toLowerCase(),
          "",
          "has space",
          "-x",
          "a/b",
          "x".repeat(129),
          42,
        ]
      ) {
        const error = await refusal(
          dial(resources, gateway, { name }),
          `name ${JSON.stringify(name)}`,
        );
        assert.equal(error.code, CloseCode.InvalidMetadata, String(name));
        assert.equal(error.retryable, false);
      }
      const agent = agentFor(resources, gateway, ulid());
      const error = await refusal(agent.ready, "an agent named like an id");
      assert.equal(error.code, CloseCode.InvalidMetadata);
      assert.equal(await withTimeout(agent.stopped, STEP_MS, "stopped"), error);
      assert.deepEqual(gateway.agents(), []);
    },
  );

  it(
    "ids and names are separate: an id reaches only that connection, a name only its holder",
    TEST_OPTIONS,
    async () => {
      const gateway = await gatewayFor(resources, {});
      const alpha = agentFor(resources, gateway, "alpha");
      const alphaConnection = await ready(gateway, alpha);
      // An agent without a name is reached by its id only.
      const anonymous = new WebSocketClient({
        url: gateway.agentsUrl,
        keepAlive: false,
        handler: whoamiHandler,
      });
      resources.defer("anonymous.close()", () => anonymous.close());
      const anonymousConnection = await withTimeout(anonymous.connect(), STEP_MS, "anonymous");
      await serverHolds(gateway.server, anonymousConnection.id, STEP_MS);

      const id = alphaConnection.id;
      assert.deepEqual(await whoami(gateway, "alpha"), { status: 200, id });
      assert.deepEqual(await whoami(gateway, id), { status: 200, id });
      assert.deepEqual(await whoami(gateway, id.toLowerCase()), { status: 200, id });
      assert.deepEqual(await whoami(gateway, anonymousConnection.id), {
        status: 200,
        id: anonymousConnection.id,
      });
      assert.deepEqual(await whoami(gateway, ulid()), { status: 404 });

      // Once alpha has left, neither its id nor its name reaches anyone, even with another
      // agent connected.
      const events = gateway.server.events();
      await withTimeout(alpha.close(), STEP_MS, "alpha.close()");
      await eventWhere(
        events,
        (event) => event.type === EventType.ConnectionClosed && event.connectionId === id,
        "alpha's connection to end at the gateway",
        STEP_MS,
      );
      await events.return?.();
      assert.deepEqual(await whoami(gateway, id), { status: 404 });
      assert.deepEqual(await whoami(gateway, "alpha"), { status: 404 });
    },
  );

  it(
    "reloadCredentials(): removed or changed entries close their agents with 4003; a bad file keeps the old table",
    TEST_OPTIONS,
    async () => {
      const file = join(tempDir(resources), "agents.credentials");
      await writeCredentials(file, [["alpha", "alpha-token"], ["beta", "beta-token"], [
        "keep",
        "keep-token",
      ]]);
      const gateway = await gatewayFor(resources, { credentialsFile: file, token: "shared" });
      const alpha = agentFor(resources, gateway, "alpha", "alpha-token");
      const beta = agentFor(resources, gateway, "beta", "beta-token");
      const keep = agentFor(resources, gateway, "keep", "keep-token");
      const other = agentFor(resources, gateway, "other", "shared");
      const unlisted = agentFor(resources, gateway, "unlisted", "shared");
      for (const agent of [alpha, beta, keep, other, unlisted]) await ready(gateway, agent);

      // alpha removed, beta's token changed, gamma added, and "other" (admitted by the shared
      // token) now listed: only "keep" and "unlisted" may stay.
      await writeCredentials(file, [
        ["beta", "new-beta-token"],
        ["keep", "keep-token"],
        ["gamma", "gamma-token"],
        ["other", "other-token"],
      ]);
      assert.deepEqual(await withTimeout(gateway.reloadCredentials(), STEP_MS, "reload"), {
        names: 4,
        revoked: 3,
      });
      for (const [agent, what] of [[alpha, "alpha"], [beta, "beta"], [other, "other"]] as const) {
        const error = await stoppedWith(agent, CloseCode.Unauthorized, what);
        assert.ok(error instanceof ConnectionClosedError, String(error));
      }
      const gamma = await ready(gateway, agentFor(resources, gateway, "gamma", "gamma-token"));
      const betaAgain = await ready(
        gateway,
        agentFor(resources, gateway, "beta", "new-beta-token"),
      );
      assert.deepEqual(
        gateway.agents().map((agent) => agent.name).sort(),
        ["beta", "gamma", "keep", "unlisted"],
      );
      assert.deepEqual(await whoami(gateway, "beta"), { status: 200, id: betaAgain.id });

      // A file that does not parse: the reload fails naming the line, and the old table stays.
      writeFileSync(file, `keep ${"x"}\n`);
      await assert.rejects(gateway.reloadCredentials(), (error: unknown) => {
        assert.ok(error instanceof CredentialsFileError, String(error));
        assert.equal(error.line, 1);
        return true;
      });
      rmSync(file);
      await assert.rejects(gateway.reloadCredentials(), (error: unknown) => {
        assert.ok(error instanceof CredentialsFileError, String(error));
        assert.equal(error.line, undefined);
        assert.match(error.message, /cannot read/);
        return true;
      });
      assert.deepEqual(await whoami(gateway, "gamma"), { status: 200, id: gamma.id });
      const refused = await refusal(
        dial(resources, gateway, { name: "alpha", token: "alpha-token" }),
        "alpha after the failed reloads",
      );
      assert.equal(refused.code, CloseCode.Unauthorized);
    },
  );

  it("a malformed or missing credentials file stops startGateway() with an error naming the line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "swaggersocket-agents-"));
    try {
      const file = join(dir, "agents.credentials");
      writeFileSync(file, "# agents\nalpha sha256:" + "0".repeat(64) + "\nbeta sha256:00\n");
      await assert.rejects(startGateway({ port: 0, credentialsFile: file }), (error: unknown) => {
        assert.ok(error instanceof CredentialsFileError, String(error));
        assert.equal(error.line, 3);
        assert.equal(error.message, `${file}, line 3: the SHA-256 of "beta" must be 64 hex digits`);
        return true;
      });
      await assert.rejects(
        startGateway({ port: 0, credentialsFile: join(dir, "missing") }),
        (error: unknown) => error instanceof CredentialsFileError && error.line === undefined,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- the gateway script, under Deno and under Bun ------------------------------

/** A child process whose stdout and stderr lines can be waited for. */
interface Script {
  stdout: string[];
  stderr: string[];
  /** Resolves with the first line (past or future) of `stream` matching `pattern`. */
  waitFor(stream: "stdout" | "stderr", pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  signal(name: "SIGHUP" | "SIGTERM"): void;
  exited: Promise<number | null>;
  kill(): Promise<void>;
}

function runScript(runtime: "deno" | "bun", args: string[], stdin?: string): Script {
  const script = join(ROOT_DIR, "gateway.ts");
  const argv = runtime === "deno"
    ? ["run", "-A", "--quiet", script, ...args]
    : ["run", script, ...args];
  const child = spawn(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, {
    cwd: ROOT_DIR,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin!.on("error", () => {});
  if (stdin !== undefined) child.stdin!.end(stdin);
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const waiters: { stream: string; pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  for (const stream of ["stdout", "stderr"] as const) {
    let buffered = "";
    child[stream]!.setEncoding("utf8");
    child[stream]!.on("data", (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        lines[stream].push(line);
        for (const waiter of [...waiters]) {
          const match = waiter.stream === stream ? line.match(waiter.pattern) : null;
          if (match) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(match);
          }
        }
      }
    });
  }
  let ended = false;
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      ended = true;
      resolve(code);
    })
  );
  // Not `child.kill()` nor `signalCode`: Deno's `node:child_process` marks a child killed by
  // its first signal and sends no other (a second SIGHUP would never arrive).
  const running = (): boolean => !ended && child.exitCode === null;
  return {
    ...lines,
    waitFor(stream, pattern, ms = STEP_MS) {
      for (const line of lines[stream]) {
        const match = line.match(pattern);
        if (match) return Promise.resolve(match);
      }
      const { promise, resolve } = deferred<RegExpMatchArray>();
      waiters.push({ stream, pattern, resolve });
      return withTimeout(
        Promise.race([
          promise,
          exited.then((code) => {
            throw new Error(
              `gateway.ts exited with ${code} before printing ${pattern} on ${stream}: ` +
                JSON.stringify(lines),
            );
          }),
        ]),
        ms,
        `gateway.ts to print ${pattern} on ${stream}`,
      ).catch((error: Error) => {
        throw new Error(`${error.message}; it printed ${JSON.stringify(lines)}`);
      });
    },
    signal(name) {
      if (running()) process.kill(child.pid!, name);
    },
    exited,
    async kill() {
      if (running()) process.kill(child.pid!, "SIGKILL");
      await exited;
    },
  };
}

describe("gateway script: credentials", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  for (const runtime of RUNTIMES) {
    it(
      `under ${runtime}: --hash-token, a bad file at start, and SIGHUP reloads (a failed reload keeps the old table)`,
      SUBPROCESS_OPTIONS,
      async () => {
        const dir = tempDir(resources);
        const file = join(dir, "agents.credentials");

        // --hash-token prints the line for a token on stdin (one trailing newline dropped).
        const hasher = runScript(runtime, ["--hash-token", "alpha"], "alpha-token\n");
        resources.defer("hasher.kill()", () => hasher.kill());
        const [line] = await hasher.waitFor("stdout", /^alpha sha256:.*$/, START_MS);
        assert.equal(line, await credentialLine("alpha", "alpha-token"));
        assert.equal(await withTimeout(hasher.exited, STEP_MS, "--hash-token to exit"), 0);

        // A bad file stops it at start, naming the line.
        writeFileSync(file, "alpha sha256:nothex\n");
        const failing = runScript(runtime, ["--port", "0", "--credentials", file]);
        resources.defer("failing.kill()", () => failing.kill());
        await failing.waitFor(
          "stderr",
          /^gateway: .*agents\.credentials, line 1: .*64 hex digits/,
          START_MS,
        );
        assert.equal(await withTimeout(failing.exited, STEP_MS, "the failing gateway to exit"), 1);

        await writeCredentials(file, [["alpha", "alpha-token"]]);
        const script = runScript(runtime, [
          "--port",
          "0",
          "--credentials",
          file,
          "--exit-after",
          "150000",
        ]);
        resources.defer("gateway.ts kill()", () => script.kill());
        const [, url] = await script.waitFor(
          "stdout",
          /INFO +gateway listening url=(\S+) agents=\S+$/,
          START_MS,
        );
        const [, agentsUrl] = await script.waitFor("stdout", /gateway listening .* agents=(\S+)$/);
        const start = (name: string, token: string): Agent => {
          const agent = startAgent({ url: agentsUrl, name, token, reconnect: FAST_RETRY });
          resources.defer(`agent ${name}.close()`, () => agent.close());
          return agent;
        };
        const hello = async (name: string): Promise<number> => {
          const response = await withTimeout(fetch(`${url}/agents/${name}/hello`), STEP_MS, name);
          await response.body?.cancel();
          return response.status;
        };

        const alpha = start("alpha", "alpha-token");
        const alphaConnection = await withTimeout(alpha.ready, STEP_MS, "alpha.ready");
        await script.waitFor(
          "stdout",
          new RegExp(`agent connected .*\\bid=${alphaConnection.id}\\b`),
        );
        assert.equal(await hello("alpha"), 200);

        // alpha removed, beta added: SIGHUP applies it, and alpha is closed with 4003.
        await writeCredentials(file, [["beta", "beta-token"]]);
        script.signal("SIGHUP");
        await script.waitFor("stdout", /INFO +credentials reloaded names=1 revoked=1$/);
        await stoppedWith(alpha, CloseCode.Unauthorized, "alpha");
        const beta = start("beta", "beta-token");
        const betaConnection = await withTimeout(beta.ready, STEP_MS, "beta.ready");
        await script.waitFor(
          "stdout",
          new RegExp(`agent connected .*\\bid=${betaConnection.id}\\b`),
        );
        assert.equal(await hello("beta"), 200);

        // A file that does not parse: logged with its line, and the old table stays.
        writeFileSync(file, `# oops\nbeta\n`);
        script.signal("SIGHUP");
        await script.waitFor(
          "stdout",
          /ERROR credentials not reloaded, the old ones stay error=".*line 2/,
        );
        assert.equal(await hello("beta"), 200);
        const again = await refusal(
          new WebSocketClient({ url: agentsUrl, keepAlive: false })
            .withMetadata({ name: "alpha", token: "alpha-token" })
            .connect(),
          "alpha after the failed reload",
        );
        assert.equal(again.code, CloseCode.Unauthorized);

        script.signal("SIGTERM");
        assert.equal(await withTimeout(script.exited, STEP_MS, "gateway.ts to stop"), 0);
      },
    );
  }
});
