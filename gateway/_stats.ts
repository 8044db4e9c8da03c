/**
 * What the gateway counts, as Prometheus metrics (`GET /metrics`): agents connected, their
 * connections opened and closed by reason, requests by route and status class, a latency
 * histogram, bytes each way, exchanges in flight and the agents' heartbeat round trips.
 *
 * Label values come from fixed sets only (routes, status classes, close reasons), never from
 * agent names or paths: a fleet of ten thousand agents is still a few dozen series.
 *
 * @module
 */

import { CloseCode } from "../protocol/close_codes.ts";
import { MetricsRegistry } from "./_metrics.ts";

/** The gateway's routes, as the `route` label names them. */
export type GatewayRoute =
  | "agent"
  | "agents"
  | "healthz"
  | "readyz"
  | "metrics"
  | "dashboard"
  | "root"
  | "other";

/** Why an agent's connection ended, as the `reason` label names it. */
export type CloseReason = (typeof CLOSE_REASONS)[keyof typeof CLOSE_REASONS] | "other";

/** Close codes to reasons; any other code is `"other"`. */
const CLOSE_REASONS = {
  [CloseCode.Normal]: "normal",
  1001: "going_away",
  [CloseCode.GoingAway]: "going_away",
  1006: "failure",
  [CloseCode.HeartbeatTimeout]: "heartbeat_timeout",
  [CloseCode.Unauthorized]: "unauthorized",
  [CloseCode.InvalidMetadata]: "invalid_metadata",
  [CloseCode.OriginNotAllowed]: "origin_not_allowed",
  [CloseCode.RateLimited]: "rate_limited",
  [CloseCode.TooManyConnections]: "rate_limited",
  [CloseCode.EnhanceYourCalm]: "rate_limited",
  [CloseCode.ProtocolError]: "protocol_error",
  [CloseCode.UnsupportedVersion]: "protocol_error",
  [CloseCode.HandshakeTimeout]: "protocol_error",
  [CloseCode.FlowControlError]: "protocol_error",
  [CloseCode.FrameTooLarge]: "protocol_error",
  [CloseCode.Replaced]: "replaced",
  [CloseCode.NameInUse]: "name_in_use",
  [CloseCode.Superseded]: "superseded",
} as const;

/** What the gauges read at each scrape. */
export interface StatsSource {
  /** Agents connected now. */
  agents(): number;
  /** Forwarded exchanges running now. */
  inFlight(): number;
}

/** Latency buckets, seconds: 1 ms to 30 s (the default agent timeout). */
const LATENCY_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];
/** Heartbeat round-trip buckets, seconds. */
const RTT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The gateway's metrics. */
export class GatewayStats {
  readonly registry: MetricsRegistry = new MetricsRegistry();
  readonly #opened;
  readonly #closed;
  readonly #requests;
  /** The forwarded requests' series by status class (`[2]` is 2xx): counted on each. */
  readonly #agentRequests: { inc(): void }[];
  readonly #latency;
  readonly #bytesIn;
  readonly #bytesOut;
  readonly #rtt;

  /** @param source What the gauges read. */
  constructor(source: StatsSource) {
    const r = this.registry;
    r.gauge("swaggersocket_agents", "Agents connected now.", () => source.agents());
    this.#opened = r.counter(
      "swaggersocket_agent_connections_opened_total",
      "Agent connections that completed their handshake.",
    );
    this.#closed = r.counter(
      "swaggersocket_agent_connections_closed_total",
      "Agent connections that ended or were refused, by reason.",
    );
    r.gauge(
      "swaggersocket_in_flight_requests",
      "Requests being forwarded to agents now.",
      () => source.inFlight(),
    );
    this.#requests = r.counter(
      "swaggersocket_http_requests_total",
      "HTTP requests answered, by route and status class.",
    );
    this.#agentRequests = [1, 2, 3, 4, 5].map((digit) =>
      this.#requests.series({ route: "agent", status: `${digit}xx` })
    );
    this.#latency = r.histogram(
      "swaggersocket_http_request_duration_seconds",
      "Time from a forwarded request's arrival to its response head.",
      LATENCY_BUCKETS,
    );
    this.#bytesIn = r.counter(
      "swaggersocket_http_request_bytes_total",
      "Request body bytes forwarded to agents.",
    );
    this.#bytesOut = r.counter(
      "swaggersocket_http_response_bytes_total",
      "Response body bytes forwarded from agents to callers.",
    );
    this.#rtt = r.histogram(
      "swaggersocket_agent_heartbeat_rtt_seconds",
      "Round trips of the agents' heartbeats.",
      RTT_BUCKETS,
    );
  }

  /** An agent completed its handshake. */
  opened(): void {
    this.#opened.inc();
  }

  /** An agent's connection ended, or an agent was refused. */
  closed(reason: CloseReason): void {
    this.#closed.inc({ reason });
  }

  /** A request was answered (its head sent). */
  answered(route: GatewayRoute, status: number, seconds?: number): void {
    const digit = Math.floor(status / 100);
    if (route === "agent" && digit >= 1 && digit <= 5) this.#agentRequests[digit - 1].inc();
    else this.#requests.inc({ route, status: `${digit}xx` });
    if (seconds !== undefined) this.#latency.observe(seconds);
  }

  /** Body bytes forwarded: `in` from callers to agents, `out` back. */
  bytes(direction: "in" | "out", count: number): void {
    (direction === "in" ? this.#bytesIn : this.#bytesOut).inc(undefined, count);
  }

  /** A heartbeat round trip, in milliseconds. */
  rtt(ms: number): void {
    this.#rtt.observe(ms / 1000);
  }

  /** The scrape's body. */
  render(): string {
    return this.registry.render();
  }
}

/**
 * The `reason` label for a close code.
 *
 * @param code The WebSocket close code an agent's connection ended (or was refused) with.
 * @returns Its reason.
 */
export function closeReason(code: number): CloseReason {
  return (CLOSE_REASONS as Record<number, CloseReason>)[code] ?? "other";
}
