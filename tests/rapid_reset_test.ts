/**
 * The HTTP/2 "Rapid Reset" attack (CVE-2023-44487) against a real server: a raw peer opens
 * streams and resets them in a tight loop. The server's per-connection token bucket
 * (PROTOCOL.md §11) must close it with 4008, the work the server did for it must stay
 * bounded by the bucket (burst + rate × elapsed handler calls), memory must stay bounded,
 * and a well-behaved agent on the same server must keep working throughout.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { CloseCode, EventType } from "../mod.ts";
import { type Frame, ResetCode } from "../protocol/mod.ts";
import { nextEvent, RUNTIME, withTimeout } from "./_helpers.ts";
import { connectRaw, type RawPeer } from "./_raw_peer.ts";
import { message, requestFrame, resetFrame } from "./_raw_frames.ts";
import { Resources, urlOf } from "./_server_helpers.ts";

const GUARD = 20_000;
const TEST_OPTIONS = { timeout: 60_000 };
/**
 * The default bucket (PROTOCOL.md §11) of a server: twice its maxConcurrentStreams (256), but
 * at least 1000.
 */
const BURST = 1000;
const PER_SECOND = 500;
/** Streams the attacker opens per message; it resets them in the next message. */
const BATCH = 32;

/** Yields to the event loop (a macrotask), so the server in this process gets to run. */
function yieldTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

describe("Rapid Reset (CVE-2023-44487)", () => {
  const resources = new Resources();
  const raws: RawPeer[] = [];
  afterEach(async () => {
    for (const raw of raws.splice(0)) await raw.close();
    await resources.closeAll();
  });

  it(
    "WebSocketServer closes a peer that opens and resets streams in a tight loop with 4008, bounded, while another agent keeps working",
    TEST_OPTIONS,
    async () => {
      let attackCalls = 0;
      let agentCalls = 0;
      const work = new Uint8Array(16 * 1024).fill(7);
      const server = resources.server({
        // Real work per request: hash 16 KiB, then answer unless the caller went away.
        handler: async (request) => {
          const path = new URL(request.url).pathname;
          if (path === "/agent") agentCalls++;
          else attackCalls++;
          const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", work));
          return new Response(digest);
        },
      });
      const events = server.events();

      // The well-behaved agent: exchanges both ways in a loop until the attack is over.
      const agentClient = resources.client(urlOf(server));
      agentClient.withMetadata({ name: "good-agent" });
      const agent = await withTimeout(agentClient.connect(), GUARD, "agent connect()");
      agent.serve(() => new Response("agent ok"));
      const agentServerSide = (await nextEvent(events, EventType.ConnectionReceived)).connection!;
      let attackOver = false;
      let agentExchanges = 0;
      const agentLoop = (async () => {
        while (!attackOver || agentExchanges < 4) {
          const up = await agent.fetch("/agent");
          assert.equal((await up.arrayBuffer()).byteLength, 32);
          const down = await agentServerSide.fetch("/status");
          assert.equal(await down.text(), "agent ok");
          agentExchanges += 2;
        }
      })();

      const peer = connectRaw(urlOf(server));
      raws.push(peer);
      await peer.handshake({ name: "attacker" });
      const attackerId = (await nextEvent(events, EventType.ConnectionReceived)).connectionId;
      let closedAt: number | undefined;
      const closed = peer.closed.then((info) => {
        closedAt = performance.now();
        return info;
      });

      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const get = { method: "GET", url: "/attack", headers: [] as [string, string][] };
      let nextId = 1;
      let opened = 0;
      const startedAt = performance.now();
      // Far more than the bucket allows; the loop ends when the server closes the socket.
      const cap = 50 * BURST;
      while (closedAt === undefined && opened < cap && performance.now() - startedAt < GUARD) {
        const ids: number[] = [];
        const open: Frame[] = [];
        for (let i = 0; i < BATCH; i++, nextId += 2) {
          ids.push(nextId);
          open.push(requestFrame(nextId, get));
        }
        if (peer.ws.readyState !== WebSocket.OPEN) break;
        peer.ws.send(message(...open));
        peer.ws.send(message(...ids.map((id) => resetFrame(id, ResetCode.Cancel))));
        opened += BATCH;
        await yieldTask();
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }
      await withTimeout(closed, GUARD, "the server to close the attacker");
      const elapsed = ((closedAt ?? performance.now()) - startedAt) / 1000;
      attackOver = true;
      await withTimeout(agentLoop, GUARD, "the agent's exchanges");

      // The server closed it for the rate limit. (The attacker usually reads the 4008 close
      // frame too, but a socket closed while its peer still floods it may be reset, TCP RST,
      // before that frame is read: the attacker's own close code is not asserted.)
      const failure = await nextEvent(events, EventType.ConnectionFailure, GUARD);
      assert.equal(failure.connectionId, attackerId);
      const code = (failure.error as { code?: number } | undefined)?.code;
      assert.equal(code, CloseCode.RateLimited, `closed with ${code}: ${failure.error}`);
      assert.ok(opened < cap, `the attacker was not stopped after ${opened} streams`);
      // Work done for the attacker is bounded by the bucket: one token per RESET received,
      // so at most burst + rate × elapsed streams reached the handler, plus the batch in
      // flight when the bucket ran dry.
      const bound = BURST + PER_SECOND * elapsed + BATCH;
      assert.ok(
        attackCalls <= bound,
        `${attackCalls} handler calls for the attacker > ${bound.toFixed(0)} ` +
          `(elapsed ${elapsed.toFixed(2)} s, ${opened} streams opened)`,
      );
      assert.ok(attackCalls >= 1, "the attacker's requests reached the handler");
      // Memory: a stream the server has forgotten costs nothing, so at most `bound` streams
      // ever cost anything. Each costs a Request, an AbortController, a pending digest and its
      // share of the messages: ~10 KiB measured on Bun, less on Deno. 16 KiB each plus 16 MiB
      // for whenever the runtime's collector happens to run is ~50 MiB; a server that kept
      // working for every stream the attacker opens (up to 100 000 here) would blow it 20×.
      const grown = rssPeak - rssBefore;
      const memoryBound = bound * 16 * 1024 + 16 * 1024 * 1024;
      assert.ok(
        grown < memoryBound,
        `RSS grew by ${(grown / 1048576).toFixed(1)} MiB > ${
          (memoryBound / 1048576).toFixed(1)
        } MiB on ${RUNTIME}`,
      );

      // The agent kept working throughout, and still does.
      assert.ok(agentExchanges >= 4, `${agentExchanges} agent exchanges`);
      assert.equal(agent.isClosed, false);
      const after = await withTimeout(agent.fetch("/agent"), GUARD, "agent fetch after");
      assert.equal((await after.arrayBuffer()).byteLength, 32);
      assert.equal(server.connections().length, 1);
      assert.ok(agentCalls >= 3);
      await events.return?.();
    },
  );
});
