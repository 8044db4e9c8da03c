import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  createStream,
  HALF_TRANSITIONS,
  type HalfEvent,
  type HalfState,
  nextHalfState,
} from "../protocol/mod.ts";

const STATES: HalfState[] = ["idle", "open", "closed"];
const EVENTS: HalfEvent[] = ["headers", "headers_end", "data", "data_end", "reset"];

/** The legal transitions, written out independently of the table under test. */
const LEGAL: Record<string, HalfState> = {
  "idle/headers": "open",
  "idle/headers_end": "closed",
  "idle/reset": "closed",
  "open/data": "open",
  "open/data_end": "closed",
  "open/reset": "closed",
  "closed/reset": "closed",
};

describe("HALF_TRANSITIONS and nextHalfState()", () => {
  it("lists exactly the three states", () => {
    assert.deepEqual(Object.keys(HALF_TRANSITIONS).sort(), [...STATES].sort());
  });

  for (const state of STATES) {
    for (const event of EVENTS) {
      const expected = LEGAL[`${state}/${event}`];
      it(`nextHalfState(${state}, ${event}) is ${expected ?? "illegal (undefined)"}`, () => {
        assert.equal(nextHalfState(state, event), expected);
        assert.equal(HALF_TRANSITIONS[state][event], expected);
      });
    }
  }

  it("never reopens a closed half", () => {
    for (const event of EVENTS) {
      const next = nextHalfState("closed", event);
      assert.ok(next === undefined || next === "closed");
    }
  });

  it("walks a half with a body: idle → open → open → closed", () => {
    let state: HalfState = "idle";
    for (const event of ["headers", "data", "data", "data_end"] as HalfEvent[]) {
      state = nextHalfState(state, event)!;
      assert.notEqual(state, undefined);
    }
    assert.equal(state, "closed");
  });

  it("walks a half without a body: idle → closed in one step", () => {
    assert.equal(nextHalfState("idle", "headers_end"), "closed");
  });
});

describe("createStream()", () => {
  it("makes a record with both halves idle and the given windows", () => {
    assert.deepEqual(createStream(3, true, 1024, 2048), {
      id: 3,
      local: true,
      send: "idle",
      recv: "idle",
      sendWindow: 1024,
      recvWindow: 2048,
      recvConsumed: 0,
      outbox: [],
      outboxBytes: 0,
      outboxEnd: false,
      writableSignalled: true,
      queued: false,
      arriving: undefined,
      head: undefined,
    });
  });

  it("makes independent records", () => {
    const a = createStream(2, false, 1, 1);
    const b = createStream(4, false, 1, 1);
    a.outbox.push(new Uint8Array(1));
    assert.equal(b.outbox.length, 0);
    assert.equal(a.local, false);
  });
});
