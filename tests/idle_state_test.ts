/**
 * What a connection makes only when asked for, and the helpers that keep a handshake's
 * garbage small (bench/RESULTS.md, "Idle memory"): the values must not change for it. Over
 * real loopback sockets, and the scheduler and random helpers directly.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CloseCode, type HandlerInfo } from "../mod.ts";
import { nextTask } from "../connection/_schedule.ts";
import { newId, randomBase64url } from "../_random.ts";
import { spawnFixture, startPair, withTimeout } from "./_helpers.ts";

const GUARD = 10_000;
/** Crockford base32, 26 characters: a ULID. */
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

describe("An idle connection's state, made when first asked for", () => {
  it("connectedAt is one Date, of the handshake's time, on both ends", async () => {
    const before = Date.now();
    const pair = await startPair();
    try {
      for (const connection of [pair.serverSide, pair.clientSide]) {
        const at = connection.connectedAt!;
        assert.ok(at instanceof Date);
        assert.ok(at.getTime() >= before && at.getTime() <= Date.now(), "the handshake's time");
        assert.equal(connection.connectedAt, at, "the same Date each time");
      }
    } finally {
      await pair.close();
    }
  });

  it("fetch is one bound function that works detached, on both ends", async () => {
    const pair = await startPair();
    try {
      // Each end serves what the other fetches: the client is the agent.
      pair.clientSide.serve(() => new Response("agent"));
      pair.serverSide.serve(() => new Response("server"));
      const { fetch: toAgent } = pair.serverSide;
      assert.equal(pair.serverSide.fetch, toAgent, "the same function each time");
      assert.equal(await (await withTimeout(toAgent("/x"), GUARD, "fetch")).text(), "agent");
      const toServer = pair.clientSide.fetch;
      assert.equal(await (await withTimeout(toServer("/y"), GUARD, "fetch")).text(), "server");
    } finally {
      await pair.close();
    }
  });

  it("closed resolves with how the connection ended, asked for before or after the end", async () => {
    const pair = await startPair();
    const early = pair.serverSide.closed;
    assert.equal(pair.serverSide.closed, early, "the same promise each time");
    await withTimeout(
      pair.clientSide.close({ code: CloseCode.Normal, reason: "bye" }),
      GUARD,
      "close",
    );
    const info = await withTimeout(early, GUARD, "closed, asked for before the end");
    assert.equal(info.code, CloseCode.Normal);
    assert.equal(info.reason, "bye");
    const late = await withTimeout(
      pair.clientSide.closed,
      GUARD,
      "closed, asked for after the end",
    );
    assert.equal(late.code, CloseCode.Normal);
    assert.equal(late.reason, "bye");
    assert.equal(pair.clientSide.closed, pair.clientSide.closed);
    await pair.close();
  });

  it("a handler's info.remoteAddr is the peer's address, the same frozen object each time", async () => {
    const pair = await startPair();
    try {
      const seen: HandlerInfo["remoteAddr"][] = [];
      pair.serverSide.serve((_request, info) => {
        seen.push(info.remoteAddr);
        return new Response(null, { status: 204 });
      });
      for (let i = 0; i < 2; i++) await withTimeout(pair.clientSide.fetch("/"), GUARD, "fetch");
      const [first, second] = seen;
      assert.deepEqual({ ...first }, {
        transport: "tcp",
        hostname: "127.0.0.1",
        port: Number(pair.serverSide.remoteAddr.split(":").at(-1)),
      });
      assert.equal(second, first);
      assert.ok(Object.isFrozen(first), "a handler cannot change the connection's address");
    } finally {
      await pair.close();
    }
  });
});

describe("nextTask(): every connection's flush in one macrotask", () => {
  it("runs tasks in order, after the microtasks queued before them, in one macrotask", async () => {
    const order: string[] = [];
    let laterTurn = false;
    const done = new Promise<void>((resolve) => {
      nextTask(() => order.push("a"));
      queueMicrotask(() => order.push("microtask"));
      nextTask(() => {
        order.push("b");
        // Scheduled while the queue runs: the next macrotask, after this one's microtasks.
        nextTask(() => {
          order.push(laterTurn ? "c, a later turn" : "c, the same turn");
          resolve();
        });
        queueMicrotask(() => laterTurn = true);
      });
    });
    await withTimeout(done, GUARD, "the tasks");
    assert.deepEqual(order, ["microtask", "a", "b", "c, a later turn"]);
  });

  for (const runtime of ["deno", "bun"] as const) {
    it(`a task that throws leaves the others of its turn to run, and its error is uncaught (${runtime})`, async () => {
      const fixture = spawnFixture(runtime, "tests/fixtures/throwing_task.ts");
      try {
        await fixture.waitFor(/^RAN a,c$/, GUARD);
        await fixture.waitFor(/^UNCAUGHT boom$/, GUARD);
      } finally {
        await fixture.kill();
      }
    });
  }
});

describe("Random ids and secrets", () => {
  it("newId() makes distinct ULIDs that sort by time", () => {
    const ids = Array.from({ length: 2000 }, () => newId());
    for (const id of ids) assert.match(id, ULID);
    assert.equal(new Set(ids).size, ids.length);
    const time = Date.now();
    assert.ok(Math.abs(decodeTime(ids[0]) - time) < 60_000, "the first 10 characters are the time");
  });

  it("randomBase64url() makes at least the bits asked for, each character of 64 in use", () => {
    const secret = randomBase64url(256);
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(randomBase64url(6).length, 1);
    assert.equal(randomBase64url(7).length, 2);
    const seen = new Set(Array.from({ length: 200 }, () => randomBase64url(256)).join(""));
    assert.equal(seen.size, 64, "8,600 characters use every one of the 64");
  });
});

function decodeTime(id: string): number {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  let time = 0;
  for (const char of id.slice(0, 10)) time = time * 32 + alphabet.indexOf(char);
  return time;
}
