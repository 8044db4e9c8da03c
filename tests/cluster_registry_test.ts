/**
 * The cluster's ownership records, on a real `redis-server` (a unix socket of the test's own).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ClusterRegistry, type RedisLike } from "../cluster/_registry.ts";
import { RedisResumeTokens } from "../cluster/_resume_tokens.ts";
import {
  connectRedis,
  NO_REDIS,
  type RedisClient,
  type RedisServer,
  startRedis,
} from "./_redis.ts";

const OPTIONS = { timeout: 60_000, skip: NO_REDIS };

describe("ClusterRegistry (redis-server)", OPTIONS, () => {
  let redis: RedisServer;
  let client: RedisClient;
  let a: ClusterRegistry;
  let b: ClusterRegistry;

  before(async () => {
    redis = await startRedis();
    client = await connectRedis(redis);
    const like = client as unknown as RedisLike;
    a = new ClusterRegistry(like, { instance: "A", url: "http://a.internal", ttl: 5_000 });
    b = new ClusterRegistry(like, { instance: "B", url: "http://b.internal", ttl: 5_000 });
    await a.refresh([], []);
    await b.refresh([], []);
  });
  after(async () => {
    client.destroy();
    await redis?.close();
  });

  it("finds a claimed agent by name and by id, with its instance's URL", async () => {
    assert.equal(await a.claim({ id: "C1", name: "printer" }), undefined);
    assert.deepEqual(await b.lookup({ name: "printer" }), {
      instance: "A",
      connection: "C1",
      url: "http://a.internal",
    });
    assert.deepEqual(await b.lookup({ id: "C1" }), {
      instance: "A",
      connection: "C1",
      url: "http://a.internal",
    });
    assert.equal(await b.lookup({ name: "nobody" }), undefined);
  });

  it("a claim by an instance that has not refreshed yet finds it with its URL (no stopped owner)", async () => {
    const fresh = new ClusterRegistry(client as unknown as RedisLike, {
      instance: "F",
      url: "http://f.internal",
      ttl: 5_000,
    });
    await fresh.claim({ id: "C9", name: "newborn" });
    assert.deepEqual(await b.lookup({ name: "newborn" }), {
      instance: "F",
      connection: "C9",
      url: "http://f.internal",
    });
    await fresh.release({ id: "C9", name: "newborn" });
  });

  it("a newer claim on another instance takes the name and names the one to close", async () => {
    await a.claim({ id: "C2", name: "kiosk" });
    assert.deepEqual(await b.claim({ id: "C3", name: "kiosk" }), {
      instance: "A",
      connection: "C2",
    });
    assert.equal((await a.lookup({ name: "kiosk" }))?.instance, "B");
    // A's refresh finds the name gone to B: C2 is to be closed, and A does not take it back.
    assert.deepEqual(await a.refresh([{ id: "C2", name: "kiosk" }]), ["C2"]);
    assert.equal((await a.lookup({ name: "kiosk" }))?.connection, "C3");
    // A's release of C2 deletes nothing of B's.
    await a.release({ id: "C2", name: "kiosk" });
    assert.equal((await b.lookup({ name: "kiosk" }))?.connection, "C3");
    await b.release({ id: "C3", name: "kiosk" });
    assert.equal(await b.lookup({ name: "kiosk" }), undefined);
    assert.equal(await b.lookup({ id: "C3" }), undefined);
  });

  it("of two claims at once, exactly one holds the name after the refreshes", async () => {
    const [fromA, fromB] = await Promise.all([
      a.claim({ id: "C4", name: "twice" }),
      b.claim({ id: "C5", name: "twice" }),
    ]);
    // One of them saw the other as the previous holder.
    assert.equal([fromA, fromB].filter((p) => p !== undefined).length, 1);
    const lostA = await a.refresh([{ id: "C4", name: "twice" }]);
    const lostB = await b.refresh([{ id: "C5", name: "twice" }]);
    assert.equal(lostA.length + lostB.length, 1);
    const owner = await a.lookup({ name: "twice" });
    assert.equal(owner?.connection, lostA.length === 1 ? "C5" : "C4");
  });

  it("lists each live instance's agents once, and forgets an instance that leaves", async () => {
    await a.refresh([{ id: "C1", name: "printer" }], [{ id: "C1", name: "printer" }]);
    await b.refresh([], [{ id: "C9", name: null }]);
    const listed = await a.agents() as { id: string }[];
    assert.deepEqual(listed.map((agent) => agent.id).sort(), ["C1", "C9"]);
    await b.leave();
    assert.deepEqual((await a.agents() as { id: string }[]).map((agent) => agent.id), ["C1"]);
    assert.equal(await a.lookup({ id: "C9" }), undefined);
    await b.refresh([], []);
  });

  it("a refresh rebuilds everything after Redis lost it (a flush)", async () => {
    await a.claim({ id: "C6", name: "survivor" });
    await client.flushAll();
    assert.equal(await b.lookup({ name: "survivor" }), undefined);
    assert.deepEqual(await a.refresh([{ id: "C6", name: "survivor" }], [{ id: "C6" }]), []);
    assert.deepEqual(await b.lookup({ name: "survivor" }), {
      instance: "A",
      connection: "C6",
      url: "http://a.internal",
    });
    assert.deepEqual((await b.agents() as { id: string }[]).map((agent) => agent.id), ["C6"]);
  });

  it("refreshes thousands of agents in batches", async () => {
    const held = Array.from({ length: 2_500 }, (_, i) => ({ id: `K${i}`, name: `n${i}` }));
    assert.deepEqual(await a.refresh(held), []);
    assert.equal((await b.lookup({ name: "n2499" }))?.connection, "K2499");
    assert.equal((await b.lookup({ id: "K1000" }))?.instance, "A");
  });

  it("checks its options", () => {
    const like = client as unknown as RedisLike;
    assert.throws(
      () => new ClusterRegistry(like, { instance: "A", url: "x", ttl: 10 }),
      RangeError,
    );
    assert.throws(() => new ClusterRegistry(like, { instance: "a b", url: "x" }), TypeError);
  });
});

describe("RedisResumeTokens (redis-server)", OPTIONS, () => {
  let redis: RedisServer;
  let client: RedisClient;

  before(async () => {
    redis = await startRedis();
    client = await connectRedis(redis);
  });
  after(async () => {
    client.destroy();
    await redis?.close();
  });

  /** Resolves once `id`'s record is in Redis (a token is recorded without being awaited). */
  async function recorded(id: string): Promise<string> {
    for (let tries = 0; tries < 1_000; tries++) {
      const value = await client.get(`swaggersocket:resume:${id}`);
      if (value !== null) return value;
    }
    throw new Error(`${id} never recorded`);
  }

  it("redeems a token once, on any instance, and keeps only a digest of its secret", async () => {
    const like = client as unknown as RedisLike;
    const issuer = new RedisResumeTokens(like, { ttl: 5_000, window: 30_000 });
    const other = new RedisResumeTokens(like, { ttl: 5_000, window: 30_000 });
    issuer.issued("ID1", "the-secret", { name: "printer" }, 123);
    const value = await recorded("ID1");
    assert.doesNotMatch(value, /the-secret/);
    const ttl = await client.pTTL("swaggersocket:resume:ID1");
    assert.ok(ttl > 30_000 && ttl <= 35_000, `live: ttl + window, was ${ttl}`);
    assert.equal(await other.redeem("ID1", "a-guess"), "refused");
    assert.deepEqual(await other.redeem("ID1", "the-secret"), {
      metadata: { name: "printer" },
      metadataCost: 123,
    });
    assert.equal(await issuer.redeem("ID1", "the-secret"), "unknown", "single-use");
  });

  it("an ended connection's token lives for the window; a refresh re-creates lost live ones", async () => {
    const like = client as unknown as RedisLike;
    const tokens = new RedisResumeTokens(like, { ttl: 5_000, window: 2_000 });
    tokens.issued("ID2", "two", null, 0);
    tokens.issued("ID3", "three", null, 0);
    await recorded("ID2");
    await recorded("ID3");
    tokens.ended("ID2", "two");
    for (let tries = 0; (await client.pTTL("swaggersocket:resume:ID2")) > 2_000; tries++) {
      assert.ok(tries < 1_000, "the window applied");
    }
    await client.flushAll();
    await tokens.refresh();
    assert.equal(await client.get("swaggersocket:resume:ID2"), null, "ended: not re-created");
    assert.notEqual(await client.get("swaggersocket:resume:ID3"), null, "live: re-created");
    // A token another instance issued since for the same id is left alone.
    await client.set("swaggersocket:resume:ID3", "other 0 null");
    await tokens.refresh();
    assert.equal(await client.get("swaggersocket:resume:ID3"), "other 0 null");
  });
});
