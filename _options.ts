/**
 * Option handling shared by the server and the client.
 *
 * @module
 */

import type { Connection } from "./connection.ts";
import type { HeartbeatOptions as CoreHeartbeat } from "./protocol/heartbeat.ts";
import { MIN_FRAME_BYTES, type Settings } from "./protocol/handshake.ts";
import type { RateLimitOptions } from "./protocol/rate_limit.ts";
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
  // Pings come up to 20 % late (jitter); a timeout that short would fail healthy connections.
  if (timeout <= interval * 1.2) {
    throw new RangeError(
      `Heartbeat timeout must exceed 1.2 × interval: timeout ${timeout} ms, interval ${interval} ms`,
    );
  }
  return { interval, timeout };
}

/**
 * A server's default `initialWindow`: 2 MiB, twice a client's 1 MiB. A peer's messages carry
 * at most half the window it was given (PROTOCOL.md §7), so this lets uploads travel in
 * 1 MiB messages, 1.2–2× faster than 256 KiB ones (bench/RESULTS.md, session 6). Clients keep
 * 1 MiB: a larger window cost a slow-reading Bun client 5–9 MiB more RSS.
 */
export const SERVER_INITIAL_WINDOW = 2 * 1024 * 1024;

/** The settings announced to the peer, from the user's limits; checked here, at construction. */
export function sessionSettings(limits: Limits): Partial<Settings> {
  checkLimit(limits, "maxFrameBytes", MIN_FRAME_BYTES);
  checkLimit(limits, "maxHeaderBytes", 1024);
  checkLimit(limits, "maxConcurrentStreams", 1);
  checkLimit(limits, "initialWindow", 1024);
  checkLimit(limits, "maxMetadataBytes", 0);
  checkLimit(limits, "handshakeTimeout", 1);
  checkLimit(limits, "maxConnections", 0);
  const settings: Partial<Settings> = {};
  if (limits.maxFrameBytes !== undefined) settings.maxFrameBytes = limits.maxFrameBytes;
  if (limits.maxHeaderBytes !== undefined) settings.maxHeaderBytes = limits.maxHeaderBytes;
  if (limits.maxConcurrentStreams !== undefined) {
    settings.maxConcurrentStreams = limits.maxConcurrentStreams;
  }
  if (limits.initialWindow !== undefined) settings.initialWindow = limits.initialWindow;
  return settings;
}

/**
 * The session's rapid-reset bucket from `limits.resetRateLimit`, checked; the session fills
 * missing fields with its defaults (a burst of 2 × maxConcurrentStreams, at least 1000; 500/s).
 */
export function resetRateLimit(limits: Limits): Partial<RateLimitOptions> | undefined {
  const option = limits.resetRateLimit;
  if (option === undefined) return undefined;
  if (typeof option !== "object" || option === null) {
    throw new RangeError("Invalid limits.resetRateLimit: must be an object");
  }
  const { burst, perSecond } = option;
  if (burst !== undefined && (!Number.isInteger(burst) || burst < 1 || burst > 0x7fff_ffff)) {
    throw new RangeError(
      `Invalid limits.resetRateLimit.burst: ${burst} must be an integer from 1 to 2^31 − 1`,
    );
  }
  if (perSecond !== undefined && !(perSecond >= 0 && perSecond <= 0x7fff_ffff)) {
    throw new RangeError(
      `Invalid limits.resetRateLimit.perSecond: ${perSecond} must be a number from 0 to 2^31 − 1`,
    );
  }
  return option;
}

function checkLimit(
  limits: Limits,
  name: Exclude<keyof Limits, "resetRateLimit">,
  min: number,
): void {
  const value = limits[name];
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > 0x7fff_ffff) {
    throw new RangeError(
      `Invalid limits.${name}: ${value} must be an integer from ${min} to 2^31 − 1`,
    );
  }
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
