/**
 * The command lines' structured log: one line per event, pretty or JSON.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createLog } from "../cli/_log.ts";

const AT = new Date("2026-12-06T21:00:00.000Z");

function capture(options: Parameters<typeof createLog>[0] = {}) {
  const lines: string[] = [];
  const log = createLog({ now: () => AT, write: (line) => lines.push(line), ...options });
  return { log, lines };
}

describe("createLog", () => {
  it("writes one pretty line with a timestamp, the level and key=value fields", () => {
    const { log, lines } = capture();
    log.info("agent connected", { name: "printer", id: "01ABC", addr: "127.0.0.1:5000" });
    log.warn("agent left", { name: "a b", code: 1006, reason: "" });
    assert.deepEqual(lines, [
      "2026-12-06T21:00:00.000Z INFO  agent connected name=printer id=01ABC addr=127.0.0.1:5000",
      '2026-12-06T21:00:00.000Z WARN  agent left name="a b" code=1006 reason=""',
    ]);
  });

  it("writes JSON lines that parse, with time, level, msg and the fields", () => {
    const { log, lines } = capture({ format: "json" });
    log.error("request failed", { status: 502 }, new TypeError("socket hang up"));
    assert.deepEqual(JSON.parse(lines[0]), {
      time: "2026-12-06T21:00:00.000Z",
      level: "error",
      msg: "request failed",
      status: 502,
      error: "TypeError: socket hang up",
    });
  });

  it("drops what is below its level, and gives an error one line (a stack only at debug)", () => {
    const { log, lines } = capture({ level: "warn" });
    log.debug("noise");
    log.info("noise");
    log.warn("lost mid-stream", new Error("reset"));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].split("\n").length, 1);
    assert.match(lines[0], /error="Error: reset"$/);
    const verbose = capture({ level: "debug", format: "json" });
    verbose.log.debug("details", new Error("boom"));
    assert.match(JSON.parse(verbose.lines[0]).stack, /boom/);
  });

  it("joins other values into the message, as console.log would", () => {
    const { log, lines } = capture();
    log.info("swaggersocket:", "handler failed", 42, ["x"]);
    assert.equal(lines[0], '2026-12-06T21:00:00.000Z INFO  swaggersocket: handler failed 42 ["x"]');
  });
});
