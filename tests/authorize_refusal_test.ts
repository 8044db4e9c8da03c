/**
 * `authorize` refusing with a close code of its choice (`ClientRefusedError`), what the
 * client makes of each (retryable or not, reconnecting or not), and `context.connection`:
 * the connection being decided on, whose `closed` resolves even when it never opens.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type AuthorizeContext,
  ClientRefusedError,
  CloseCode,
  type Connection,
  EventType,
  HandshakeError,
} from "../mod.ts";
import { TERMINAL_CLOSE_CODES } from "../protocol/mod.ts";
import { nextEvent, withTimeout } from "./_helpers.ts";
import { deferred, Resources, urlOf } from "./_server_helpers.ts";

const GUARD = 10_000;

/** The rejection of `promise`, which must reject. */
async function rejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  return await withTimeout(
    promise.then(() => assert.fail(`${what} resolved`), (error: unknown) => error),
    GUARD,
    what,
  );
}

describe("ClientRefusedError", () => {
  it("carries an application close code, the reason and whether the client retries", () => {
    const taken = new ClientRefusedError(CloseCode.NameInUse, "Agent name in use");
    assert.ok(taken instanceof Error);
    assert.equal(taken.name, "ClientRefusedError");
    assert.equal(taken.code, 4014);
    assert.equal(taken.reason, "Agent name in use");
    assert.equal(taken.retryable, true);
    assert.equal(taken.message, "Refused: 4014 Agent name in use");
    for (const code of TERMINAL_CLOSE_CODES) {
      assert.equal(new ClientRefusedError(code, "").retryable, false, String(code));
    }
    assert.equal(new ClientRefusedError(4999, "custom").retryable, true);
  });

  it("refuses codes outside 4000–4999", () => {
    for (const code of [1000, 1008, 3999, 5000, 4000.5, Number.NaN]) {
      assert.throws(() => new ClientRefusedError(code, "x"), RangeError, String(code));
    }
  });
});

describe("authorize refusing with a close code", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  for (
    const [code, retryable] of [
      [CloseCode.NameInUse, true],
      [CloseCode.Superseded, false],
      [CloseCode.InvalidMetadata, false],
      [4321, true],
    ] as const
  ) {
    it(`a ClientRefusedError(${code}) reaches connect() as HandshakeError ${code}, retryable ${retryable}`, async () => {
      const server = resources.server({
        authorize: () => {
          throw new ClientRefusedError(code, `refused with ${code}`);
        },
      });
      const client = resources.client(urlOf(server), { keepAlive: false });
      const error = await rejection(client.connect(), "connect()");
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.code, code);
      assert.equal(error.retryable, retryable);
      assert.match(error.message, new RegExp(`${code} refused with ${code}`));
      assert.deepEqual(server.connections(), []);
    });
  }

  it("other throws and false still refuse with 4003 (not retryable)", async () => {
    for (
      const authorize of [() => false, () => Promise.resolve(false), () => {
        throw new Error("bug");
      }]
    ) {
      const server = resources.server({ authorize });
      const error = await rejection(
        resources.client(urlOf(server), { keepAlive: false }).connect(),
        "connect()",
      );
      assert.ok(error instanceof HandshakeError, String(error));
      assert.equal(error.code, CloseCode.Unauthorized);
      assert.equal(error.retryable, false);
    }
  });

  it("context.connection is the connection that opens, and its closed resolves for a refused one", async () => {
    const seen: Connection[] = [];
    let refuse = false;
    const server = resources.server({
      authorize: (context: AuthorizeContext) => {
        seen.push(context.connection);
        assert.equal(context.connection.id, "", "no id before the handshake completes");
        assert.equal(context.connection.metadata, context.metadata);
        if (refuse) throw new ClientRefusedError(CloseCode.NameInUse, "busy");
        return true;
      },
    });
    const events = server.events();
    const connection = await withTimeout(
      resources.client(urlOf(server)).withMetadata({ name: "a" }).connect(),
      GUARD,
      "connect()",
    );
    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(received.connection, seen[0]);
    assert.equal(server.connection(connection.id), seen[0]);

    refuse = true;
    await rejection(
      resources.client(urlOf(server), { keepAlive: false }).withMetadata({ name: "b" }).connect(),
      "refused connect()",
    );
    assert.equal(seen.length, 2);
    const info = await withTimeout(seen[1].closed, GUARD, "the refused connection's closed");
    assert.equal(info.code, CloseCode.NameInUse);
    assert.equal(seen[1].isClosed, true);
    await events.return?.();
  });

  it("a client retries after a retryable refusal and gets in; a terminal close of an open connection stops it", async () => {
    let refusals = 1;
    const server = resources.server({
      authorize: () => {
        if (refusals > 0) {
          refusals--;
          throw new ClientRefusedError(CloseCode.NameInUse, "busy");
        }
        return true;
      },
    });
    const events = server.events();
    const warned = deferred<unknown[]>();
    const stopped = deferred<unknown[]>();
    const client = resources.client(urlOf(server), {
      reconnect: { initialDelay: 10, maxDelay: 20, jitter: 0 },
      logger: {
        debug() {},
        info() {},
        warn: (...args: unknown[]) => warned.resolve(args),
        error: (...args: unknown[]) => stopped.resolve(args),
      },
    });
    const clientEvents = client.events();
    // The first connect is refused, retryably; nothing retries a first connect but its caller.
    const first = await rejection(client.connect(), "first connect()");
    assert.ok(first instanceof HandshakeError && first.retryable, String(first));
    const connection = await withTimeout(client.connect(), GUARD, "second connect()");
    const received = await nextEvent(events, EventType.ConnectionReceived);
    assert.equal(received.connectionId, connection.id);
    await nextEvent(clientEvents, EventType.ConnectionReceived);

    // Lost with a retryable code: the client reconnects; the first redial is refused (4014)
    // and retried.
    refusals = 1;
    await received.connection!.close({ timeout: 0, code: CloseCode.GoingAway, reason: "restart" });
    const [, , refusal] = await withTimeout(warned.promise, GUARD, "the refused redial");
    assert.ok(refusal instanceof HandshakeError && refusal.code === CloseCode.NameInUse);
    const again = await nextEvent(events, EventType.ConnectionReceived);
    const reconnected = await nextEvent(clientEvents, EventType.ConnectionReceived);
    assert.equal(reconnected.connectionId, again.connectionId);

    // Closed with a terminal code once open: the client says so and does not redial.
    await again.connection!.close({ timeout: 0, code: CloseCode.Superseded, reason: "newer" });
    const failure = await nextEvent(clientEvents, EventType.ConnectionFailure);
    assert.equal((failure.error as { code?: number }).code, CloseCode.Superseded);
    const [message, code] = await withTimeout(stopped.promise, GUARD, "not reconnecting");
    assert.match(String(message), /not reconnecting/);
    assert.equal(code, CloseCode.Superseded);
    assert.equal(client.connection?.isClosed, true, "the ended connection was not replaced");
    await events.return?.();
    await clientEvents.return?.();
  });
});
