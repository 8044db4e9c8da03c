/**
 * Option handling shared by the server and the client.
 *
 * @module
 */

import type { Connection } from "./connection.ts";
import type { HeartbeatOptions as CoreHeartbeat } from "./protocol/heartbeat.ts";
import type { Settings } from "./protocol/handshake.ts";
import type { HeartbeatOptions, Limits, Logger, PingHandler } from "./types.ts";

const noop = (): void => {};

/** The default logger: says nothing. */
export const QUIET_LOGGER: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** Default heartbeat interval, milliseconds. */
export const DEFAULT_HEARTBEAT_INTERVAL = 10_000;
/** Default heartbeat timeout, milliseconds. */
export const DEFAULT_HEARTBEAT_TIMEOUT = 30_000;

/** The session's heartbeat from `keepAlive` and `heartbeat` options. */
export function resolveHeartbeat(
  keepAlive: boolean | undefined,
  heartbeat: HeartbeatOptions | undefined,
): CoreHeartbeat | false {
  if (keepAlive === false) return false;
  const interval = heartbeat?.interval ?? DEFAULT_HEARTBEAT_INTERVAL;
  const timeout = heartbeat?.timeout ?? Math.max(DEFAULT_HEARTBEAT_TIMEOUT, interval * 3);
  if (!(interval > 0) || !(timeout > 0)) {
    throw new RangeError("Heartbeat interval and timeout must be positive numbers of milliseconds");
  }
  return { interval, timeout };
}

/** The settings announced to the peer, from the user's limits. */
export function sessionSettings(limits: Limits): Partial<Settings> {
  const settings: Partial<Settings> = {};
  if (limits.maxFrameBytes !== undefined) settings.maxFrameBytes = limits.maxFrameBytes;
  if (limits.maxHeaderBytes !== undefined) settings.maxHeaderBytes = limits.maxHeaderBytes;
  if (limits.maxConcurrentStreams !== undefined) {
    settings.maxConcurrentStreams = limits.maxConcurrentStreams;
  }
  if (limits.initialWindow !== undefined) settings.initialWindow = limits.initialWindow;
  return settings;
}

/** Runs the user's ping hook inside the session's pong answer; a throwing hook falls back to echo. */
export function answerPing(
  hook: PingHandler | undefined,
  data: string,
  connection: Connection,
  logger: Logger,
): string {
  if (!hook) return data;
  try {
    const answer = hook(data, connection);
    return typeof answer === "string" ? answer : data;
  } catch (error) {
    logger.error("swaggersocket: onPing hook failed", error);
    return data;
  }
}
