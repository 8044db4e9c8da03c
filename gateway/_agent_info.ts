/**
 * How the gateway describes a connected agent (`GET /agents`, its log lines): never with its
 * token.
 *
 * @module
 */

import type { Connection } from "../connection.ts";

/** One connected agent, as `GET /agents` lists it. */
export interface AgentInfo {
  /** The connection id (a ULID). */
  id: string;
  /** The `name` from its metadata, if it sent one. */
  name: string | null;
  /** The metadata it sent, with any `token` removed. */
  metadata: unknown;
  /** Its address as `"host:port"`. */
  remoteAddr: string;
  /** When it connected, ISO 8601. */
  connectedAt: string | null;
  /** The last heartbeat round trip in milliseconds, if measured yet. */
  rtt: number | null;
  /** Exchanges running over its connection now, both directions. */
  inFlight: number;
}

/** The `name` string in an agent's metadata, or `null`. */
export function nameOf(metadata: unknown): string | null {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) return null;
  const name = (metadata as { name?: unknown }).name;
  return typeof name === "string" ? name : null;
}

/** The metadata without its `token`. */
export function redacted(metadata: unknown): unknown {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    return metadata;
  }
  if (!Object.hasOwn(metadata, "token")) return metadata;
  const { token: _token, ...rest } = metadata as Record<string, unknown>;
  return rest;
}

/** An agent's entry in `GET /agents`. */
export function describeAgent(connection: Connection): AgentInfo {
  const rtt = connection.rtt;
  return {
    id: connection.id,
    name: nameOf(connection.metadata),
    metadata: redacted(connection.metadata),
    remoteAddr: connection.remoteAddr,
    connectedAt: connection.connectedAt?.toISOString() ?? null,
    rtt: rtt === undefined ? null : Math.round(rtt * 1000) / 1000,
    inFlight: connection.inFlight,
  };
}
