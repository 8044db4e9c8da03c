/**
 * Load, scaled down for the suite: one server in this process, 100 agents in one
 * subprocess (`tests/fixtures/load_agents.ts`, same runtime), 10,000 exchanges from the
 * server to the agents and 2,000 from the agents to the server at the same time. Every
 * body is distinct (seeded, 0–4 KiB) and every answer is verified (echoed bytes or a
 * SHA-256, the answering peer, the sequence number): nothing may be lost or mismatched.
 * The full-size run (1,000 agents, 100,000 exchanges) is `deno task bench:load`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type ConnectionEvent, EventType, WebSocketServer } from "../mod.ts";
import { RUNTIME, withTimeout } from "./_helpers.ts";
import { spawnAgents } from "./_agents_process.ts";
import { loadHandler, type LoadProgress, newProgress, runLoad } from "./fixtures/_load.ts";

const AGENTS = 100;
const EXCHANGES = 10_000;
const CONCURRENCY = 200;
const REVERSE_EXCHANGES = 2_000;
const REVERSE_CONCURRENCY = 50;
const SEED = 0x5eed;
/** Guards only: a loaded machine may be slow, a hang must still end the test. */
const START_MS = 60_000;
const RUN_MS = 90_000;

/** Waits for `count` ConnectionReceived events. */
async function received(
  events: AsyncIterableIterator<ConnectionEvent>,
  count: number,
): Promise<void> {
  let seen = 0;
  while (seen < count) {
    const { value, done } = await events.next();
    if (done) throw new Error(`Event stream ended after ${seen} connections`);
    if (value.type === EventType.ConnectionReceived) seen++;
  }
}

function summary(progress: LoadProgress): string {
  const { total, settled, ok, mismatched, failed, problems } = progress;
  return `${JSON.stringify({ total, settled, ok, mismatched, failed })} ${problems.join("; ")}`;
}

describe("Load", () => {
  it(
    `WebSocketServer exchanges verified bodies with ${AGENTS} agents both ways, none lost or mismatched`,
    { timeout: 120_000 },
    async () => {
      const server = new WebSocketServer({
        hostname: "127.0.0.1",
        port: 0,
        handler: loadHandler("server"),
        closeTimeout: 2_000,
      });
      const events = server.events();
      const url = `ws://127.0.0.1:${server.addr.port}`;
      const agents = spawnAgents(RUNTIME, url, { agents: AGENTS, watchdog: 110_000 });
      try {
        const ready = await agents.waitFor(/^(ready|error) (.*)$/, START_MS);
        assert.equal(ready[0], `ready ${AGENTS}`);
        await withTimeout(received(events, AGENTS), START_MS, `${AGENTS} connections`);
        await events.return?.();
        const connections = server.connections();
        assert.equal(connections.length, AGENTS);
        const targets = connections.map((connection) => ({
          fetch: connection.fetch,
          name: (connection.metadata as { name: string }).name,
        }));
        assert.equal(new Set(targets.map((target) => target.name)).size, AGENTS);

        // Both directions at once: the agents start calling, then the server does.
        const reverseLine = agents.waitFor(/^reverse (.*)$/, RUN_MS);
        agents.send(`go ${REVERSE_EXCHANGES} ${REVERSE_CONCURRENCY} ${SEED + 1}`);
        const progress = newProgress(EXCHANGES);
        const run = runLoad(
          targets,
          { total: EXCHANGES, concurrency: CONCURRENCY, seed: SEED },
          progress,
        );
        await withTimeout(run, RUN_MS, `${EXCHANGES} exchanges`).catch(() => {});
        assert.equal(progress.settled, EXCHANGES, `lost exchanges: ${summary(progress)}`);
        assert.equal(progress.mismatched, 0, summary(progress));
        assert.equal(progress.failed, 0, summary(progress));
        assert.equal(progress.ok, EXCHANGES);

        const reverse = JSON.parse((await reverseLine)[1]) as LoadProgress;
        assert.equal(
          reverse.settled,
          REVERSE_EXCHANGES,
          `agents lost exchanges: ${summary(reverse)}`,
        );
        assert.equal(reverse.mismatched, 0, summary(reverse));
        assert.equal(reverse.failed, 0, summary(reverse));
        assert.equal(reverse.ok, REVERSE_EXCHANGES);
        assert.deepEqual(agents.lines.filter((line) => line.startsWith("error")), []);

        // Told to stop (stdin closed), the agents close their clients and exit cleanly.
        agents.end();
        assert.equal(await withTimeout(agents.exited, 30_000, "agents to exit"), 0);
      } finally {
        await agents.kill();
        await withTimeout(server.close(), 15_000, "server.close()");
      }
    },
  );
});
