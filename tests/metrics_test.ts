/**
 * The metrics registry's text output, read back by an independent Prometheus text parser.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
// @ts-types="./_prometheus_parser.d.ts"
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { METRICS_CONTENT_TYPE, MetricsRegistry } from "../gateway/_metrics.ts";
import { closeReason, GatewayStats } from "../gateway/_stats.ts";

describe("MetricsRegistry", () => {
  it("renders counters, gauges and histograms that a Prometheus parser reads back", () => {
    const registry = new MetricsRegistry();
    const requests = registry.counter("app_requests_total", "Requests answered.");
    requests.inc({ route: "agent", status: "2xx" });
    requests.inc({ status: "2xx", route: "agent" }, 2);
    requests.inc({ route: "agent", status: "5xx" });
    registry.gauge("app_agents", "Agents connected now.", () => 3);
    registry.gauge("app_by_kind", "Per kind.", () => [[{ kind: 'a"b\\c\nd' }, 1.5]]);
    const latency = registry.histogram("app_seconds", "Latency.", [0.01, 0.1, 1]);
    latency.observe(0.005);
    latency.observe(0.05);
    latency.observe(5);
    const text = registry.render();
    const families = parsePrometheusTextFormat(text);
    const byName = new Map(families.map((f) => [f.name, f]));

    const counter = byName.get("app_requests_total")!;
    assert.equal(counter.type, "COUNTER");
    assert.equal(counter.help, "Requests answered.");
    assert.deepEqual(
      counter.metrics.map((m) => [m.labels, m.value]),
      [[{ route: "agent", status: "2xx" }, "3"], [{ route: "agent", status: "5xx" }, "1"]],
    );
    assert.equal(byName.get("app_agents")!.metrics[0].value, "3");
    assert.deepEqual(byName.get("app_by_kind")!.metrics[0].labels, { kind: 'a"b\\c\nd' });

    const histogram = byName.get("app_seconds")!;
    assert.equal(histogram.type, "HISTOGRAM");
    const [series] = histogram.metrics;
    assert.deepEqual(series.buckets, { "0.01": "1", "0.1": "2", "1": "2", "+Inf": "3" });
    assert.equal(series.count, "3");
    assert.equal(Number(series.sum), 5.055);
    assert.match(METRICS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
  });

  it("keeps label sets apart that a plain join of their names and values would not", () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter("app_total", "Things.");
    counter.inc({ a: "1", b: "2" });
    counter.inc({ a: "1\u0000b\u00002" });
    counter.inc({ a: "1\u00001\u0000b", b: "2" });
    counter.inc({});
    const [family] = parsePrometheusTextFormat(registry.render());
    assert.equal(family.metrics.length, 4);
    assert.ok(family.metrics.every((m) => m.value === "1"));
  });

  it("counts a bound series as the same one `inc` with its labels counts, shown once added to", () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter("app_total", "Things.");
    const bound = counter.series({ route: "agent", status: "2xx" });
    const unused = counter.series({ route: "agent", status: "5xx" });
    assert.equal(parsePrometheusTextFormat(registry.render())[0].metrics.length, 0);
    counter.inc({ status: "2xx", route: "agent" });
    bound.inc();
    bound.inc(3);
    counter.inc({ route: "other", status: "4xx" });
    const [family] = parsePrometheusTextFormat(registry.render());
    assert.deepEqual(
      family.metrics.map((m) => [m.labels, m.value]),
      [[{ route: "agent", status: "2xx" }, "5"], [{ route: "other", status: "4xx" }, "1"]],
    );
    unused.inc(0);
    assert.equal(parsePrometheusTextFormat(registry.render())[0].metrics.length, 3);
  });

  it("refuses a second family with the same name", () => {
    const registry = new MetricsRegistry();
    registry.counter("x_total", "x");
    assert.throws(() => registry.gauge("x_total", "x", () => 1), TypeError);
  });
});

describe("GatewayStats", () => {
  it("exposes the gateway's families with bounded labels, parsed back", () => {
    let agents = 2;
    const stats = new GatewayStats({ agents: () => agents, inFlight: () => 1 });
    stats.opened();
    stats.opened();
    stats.closed(closeReason(1006));
    stats.closed(closeReason(4014));
    stats.closed(closeReason(4999));
    stats.answered("agent", 200, 0.004);
    stats.answered("agent", 502, 0.2);
    stats.answered("healthz", 200);
    stats.bytes("in", 10);
    stats.bytes("out", 1234);
    stats.rtt(0.8);
    agents = 1;
    const families = new Map(parsePrometheusTextFormat(stats.render()).map((f) => [f.name, f]));
    const value = (name: string, labels: Record<string, string> = {}) =>
      families.get(name)!.metrics.find((m) =>
        JSON.stringify(m.labels ?? {}) === JSON.stringify(labels)
      )?.value;
    assert.equal(value("swaggersocket_agents"), "1");
    assert.equal(value("swaggersocket_agent_connections_opened_total"), "2");
    assert.equal(value("swaggersocket_agent_connections_closed_total", { reason: "failure" }), "1");
    assert.equal(
      value("swaggersocket_agent_connections_closed_total", { reason: "name_in_use" }),
      "1",
    );
    assert.equal(value("swaggersocket_agent_connections_closed_total", { reason: "other" }), "1");
    assert.equal(value("swaggersocket_in_flight_requests"), "1");
    assert.equal(
      value("swaggersocket_http_requests_total", { route: "agent", status: "2xx" }),
      "1",
    );
    assert.equal(
      value("swaggersocket_http_requests_total", { route: "agent", status: "5xx" }),
      "1",
    );
    assert.equal(
      value("swaggersocket_http_requests_total", { route: "healthz", status: "2xx" }),
      "1",
    );
    const latency = families.get("swaggersocket_http_request_duration_seconds")!.metrics[0];
    assert.equal(latency.count, "2", "only timed requests are observed");
    assert.equal(latency.buckets!["0.005"], "1");
    assert.equal(value("swaggersocket_http_request_bytes_total"), "10");
    assert.equal(value("swaggersocket_http_response_bytes_total"), "1234");
    const rtt = families.get("swaggersocket_agent_heartbeat_rtt_seconds")!.metrics[0];
    assert.equal(rtt.buckets!["0.001"], "1");
  });
});
