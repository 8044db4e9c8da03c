/** `GET /agents`'s pages and a cluster's listing made one entry per agent, tested directly. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { agentPage, DEFAULT_PAGE, newestOnce } from "../gateway/_agent_list.ts";
import type { AgentInfo } from "../gateway/_agent_info.ts";

function agent(id: string, name: string | null, connectedAt: string): AgentInfo {
  return {
    id,
    name,
    metadata: null,
    remoteAddr: "127.0.0.1:1",
    connectedAt,
    rtt: null,
    inFlight: 0,
  };
}

describe("the agents listing", () => {
  it("keeps the newest connection of each id and of each name", () => {
    const listed = newestOnce([
      agent("01A", "printer", "2026-01-01T00:00:01.000Z"), // a dead instance's stale entry
      agent("01B", "scanner", "2026-01-01T00:00:01.000Z"),
      agent("01C", "printer", "2026-01-01T00:00:02.000Z"), // the printer, moved since
      agent("01B", "scanner", "2026-01-01T00:00:03.000Z"), // resumed on another instance
      agent("01D", null, "2026-01-01T00:00:01.000Z"),
      agent("01E", null, "2026-01-01T00:00:01.000Z"), // nameless agents are never merged
    ]);
    assert.deepEqual(
      listed.map((entry) => [entry.id, entry.connectedAt!.slice(17, 19)]).sort(),
      [["01B", "03"], ["01C", "02"], ["01D", "01"], ["01E", "01"]],
    );
  });

  it("pages by id, after the last id of the page before", () => {
    const all = Array.from(
      { length: 2_500 },
      (_, i) => agent(`01${String(2_499 - i).padStart(5, "0")}`, null, "2026-01-01T00:00:00.000Z"),
    );
    const first = agentPage(all, new URLSearchParams());
    assert.ok(typeof first !== "string");
    assert.equal(first.agents.length, DEFAULT_PAGE);
    assert.equal(first.agents[0].id, "0100000");
    assert.equal(first.next, "?limit=1000&after=0100999");
    const last = agentPage(all, new URLSearchParams("limit=1000&after=0101999"));
    assert.ok(typeof last !== "string");
    assert.equal(last.agents.length, 500);
    assert.equal(last.next, undefined);
    assert.equal(typeof agentPage(all, new URLSearchParams("limit=99999999")), "string");
  });
});
