/**
 * The dashboard's event stream: a snapshot first, then agents and requests as they happen;
 * a bounded history; a reader that falls behind is cut, not buffered for.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DashboardFeed,
  dashboardPage,
  RECENT_REQUESTS,
  type RequestRecord,
} from "../gateway/_dashboard.ts";

/** Reads server-sent events off a body, one at a time. */
function eventsOf(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<{ event: string; data: unknown }> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)![1];
          const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]);
          return { event, data };
        }
        const { done, value } = await reader.read();
        if (done) throw new Error("the stream ended");
        buffer += value;
      }
    },
    cancel: () => reader.cancel(),
  };
}

function record(n: number): RequestRecord {
  return {
    time: n * 1000,
    agent: "a",
    method: "GET",
    path: `/r${n}`,
    status: 200,
    durationMs: 1,
  };
}

describe("DashboardFeed", () => {
  it("starts with a snapshot, then sends agents and requests as they happen", async () => {
    let agents: unknown[] = [{ id: "01A", name: "one" }];
    const feed = new DashboardFeed({ agents: () => agents });
    feed.request(record(0));
    const controller = new AbortController();
    const response = feed.stream(controller.signal);
    assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const events = eventsOf(response.body!);
    assert.deepEqual(await events.next(), {
      event: "snapshot",
      data: { agents, requests: [{ ...record(0), time: "1970-01-01T00:00:00.000Z" }] },
    });
    agents = [];
    feed.agentsChanged();
    assert.deepEqual(await events.next(), { event: "agents", data: [] });
    feed.request(record(1));
    assert.deepEqual(await events.next(), {
      event: "request",
      data: { ...record(1), time: "1970-01-01T00:00:01.000Z" },
    });
    assert.equal(feed.readers, 1);
    controller.abort();
    assert.equal(feed.readers, 0);
    feed.close();
  });

  it("keeps only the most recent requests", () => {
    const feed = new DashboardFeed({ agents: () => [] });
    for (let n = 0; n < RECENT_REQUESTS + 5; n++) feed.request(record(n));
    const recent = feed.recent();
    assert.equal(recent.length, RECENT_REQUESTS);
    assert.equal(recent[0].path, "/r5");
  });

  it("cuts a reader that falls behind instead of queueing for it", async () => {
    const feed = new DashboardFeed({ agents: () => [] });
    const response = feed.stream(new AbortController().signal);
    const big = { ...record(0), path: "/" + "x".repeat(64 * 1024) };
    for (let n = 0; n < 8 && feed.readers > 0; n++) feed.request(big);
    assert.equal(feed.readers, 0, "cut after about 256 KiB unread");
    await assert.rejects(new Response(response.body).arrayBuffer());
    feed.close();
  });

  it("serves a page that reads its events path and allows nothing from elsewhere", async () => {
    const response = dashboardPage("/dashboard/events");
    const html = await response.text();
    assert.match(html, /new EventSource\("\/dashboard\/events"\)/);
    assert.equal(
      Number(response.headers.get("content-length")),
      new TextEncoder().encode(html).length,
    );
    assert.match(response.headers.get("content-security-policy")!, /default-src 'none'/);
  });
});
