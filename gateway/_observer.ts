/**
 * What the gateway tells about itself: each event goes to the log (one line with fields), to
 * the metrics (`GET /metrics`) and to the dashboard's live feed, from this one place.
 *
 * Log lines carry a message and a fields object (`logger.info("agent connected", { name,
 * id, addr })`), which the command line's log writes as `key=value` or JSON, and a console
 * prints as an object.
 *
 * @module
 */

import type { Connection } from "../connection.ts";
import type { Logger } from "../types.ts";
import { EventType } from "../types.ts";
import type { WebSocketServer } from "../server.ts";
import { type AgentInfo, describeAgent } from "./_agent_info.ts";
import { DashboardFeed, type RequestRecord } from "./_dashboard.ts";
import { closeReason, type GatewayRoute, GatewayStats } from "./_stats.ts";

/** One forwarded request, once its response has ended. */
export interface ForwardedRecord extends RequestRecord {
  /** Request body bytes forwarded to the agent. */
  bytesIn: number;
  /** Response body bytes forwarded to the caller. */
  bytesOut: number;
  /** Why it failed, when the gateway answered 502 or 504 or the body broke off. */
  error?: Error;
}

/** The gateway's log, metrics and dashboard feed. */
export class GatewayObserver {
  readonly stats: GatewayStats;
  readonly feed: DashboardFeed;
  readonly #logger: Logger | undefined;

  /**
   * @param server The agents' server (for the gauges and the dashboard's agent list).
   * @param inFlight How many requests are being forwarded now.
   * @param logger Where log lines go, if anywhere.
   */
  constructor(server: WebSocketServer, inFlight: () => number, logger: Logger | undefined) {
    this.#logger = logger;
    this.stats = new GatewayStats({ agents: () => server.connections().length, inFlight });
    this.feed = new DashboardFeed({ agents: () => server.connections().map(describeAgent) });
    void this.#watch(server);
  }

  /** A heartbeat's round trip, in milliseconds. */
  rtt(ms: number | undefined): void {
    if (ms !== undefined) this.stats.rtt(ms);
  }

  /** An agent was refused during its handshake. */
  refused(code: number, reason: string, name: string | null, addr: string): void {
    this.stats.closed(closeReason(code));
    this.#logger?.warn("agent refused", {
      name: name ?? undefined,
      addr,
      code,
      reason,
    });
  }

  /** A request to one of the gateway's own routes was answered. */
  answered(route: GatewayRoute, status: number): void {
    this.stats.answered(route, status);
  }

  /** A forwarded request ended: one access-log line, the metrics, the dashboard. */
  forwarded(record: ForwardedRecord): void {
    const { error, bytesIn, bytesOut, ...shown } = record;
    this.stats.answered("agent", record.status, record.durationMs / 1000);
    this.stats.bytes("in", bytesIn);
    this.stats.bytes("out", bytesOut);
    this.feed.request(shown);
    if (!this.#logger) return;
    const fields = {
      method: record.method,
      path: record.path,
      agent: record.agent,
      status: record.status,
      ms: record.durationMs,
      in: bytesIn,
      out: bytesOut,
    };
    if (error) this.#logger.warn("request failed", fields, error);
    else this.#logger.info("request", fields);
  }

  /** Ends the dashboard's streams (the gateway is closing). */
  close(): void {
    this.feed.close();
  }

  async #watch(server: WebSocketServer): Promise<void> {
    for await (const event of server.events()) {
      if (event.type !== EventType.ConnectionReceived || !event.connection) continue;
      this.#connected(event.connection, event.resumed === true);
    }
  }

  #connected(connection: Connection, resumed: boolean): void {
    const agent = describeAgent(connection);
    this.stats.opened();
    this.feed.agentsChanged();
    this.#logger?.info("agent connected", { ...fieldsOf(agent), resumed: resumed || undefined });
    connection.closed.then(({ code, reason, error }) => {
      this.stats.closed(closeReason(code));
      this.feed.agentsChanged();
      const fields = { ...fieldsOf(agent), code, reason };
      if (error) this.#logger?.warn("agent failed", fields, error);
      else this.#logger?.info("agent closed", fields);
    });
  }
}

function fieldsOf(agent: AgentInfo): Record<string, unknown> {
  return { name: agent.name ?? undefined, id: agent.id, addr: agent.remoteAddr };
}
