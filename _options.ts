/**
 * Option handling shared by the server and the client: the options both take for their
 * connections ({@linkcode ConnectionOptions}), and checking them once, at construction.
 *
 * @module
 */

import type { Clock } from "./_clock.ts";
import type { StalledReaders } from "./connection/_stalled_readers.ts";
import type { Connection } from "./connection.ts";
import type { HeartbeatOptions as CoreHeartbeat } from "./protocol/heartbeat.ts";
import { FRAME_HEADER_BYTES } from "./protocol/frame.ts";
import { DEFAULT_SETTINGS, MIN_FRAME_BYTES, type Settings } from "./protocol/handshake.ts";
import type { RateLimitOptions } from "./protocol/rate_limit.ts";
import type {
  Handler,
  HeartbeatOptions,
  Limits,
  Logger,
  PingHandler,
  PongHandler,
  RateLimit,
} from "./types.ts";

/** What a server and a client both take for the connections they make. */
export interface ConnectionOptions {
  /** Run the heartbeat on every connection. Default `true`. */
  keepAlive?: boolean;
  /** Heartbeat timing. Default `{ interval: 10_000, timeout: 30_000 }`. */
  heartbeat?: HeartbeatOptions;
  /** Called on each ping from the peer; may return the data for the pong. Default: echo. */
  onPing?: PingHandler;
  /** Called on each pong, with the measured round-trip time. */
  onPong?: PongHandler;
  /** Data carried by this end's pings. Default `""`. */
  appData?: string;
  /** Where log lines go. Default: nowhere. */
  logger?: Logger;
  /** Limits enforced on every connection; the defaults are safe on the internet. */
  limits?: Limits;
  /** Serves the peer's requests with this handler (a connection's `serve()` overrides it). */
  handler?: Handler;
  /**
   * The clock this end reads: its sessions, connections, deadlines and (on a server) resume
   * tokens all keep time by it. For tests, which pass one they move by hand. Default: the
   * system's (`performance.now()` and `setTimeout`).
   */
  clock?: Clock;
}

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
 * 1 MiB messages, 1.2–2× faster than 256 KiB ones (bench/HISTORY.md, session 6). Clients keep
 * 1 MiB: a larger window cost a slow-reading Bun client 5–9 MiB more RSS.
 */
export const SERVER_INITIAL_WINDOW = 2 * 1024 * 1024;

/**
 * A server's default `maxConcurrentStreams`: 256, as HTTP/2 servers do (nginx 128, Go 250),
 * against a client's 1024. Every open exchange may hold a chunk of its body being read.
 */
export const SERVER_MAX_CONCURRENT_STREAMS = 256;

/** Default `limits.maxBufferedBytes`: a connection's budget. */
export const DEFAULT_BUFFERED_BYTES = 32 * 1024 * 1024;

/** What a connection's session and shell take from the user's `Limits`, checked once. */
export interface ConnectionLimits {
  /** The settings announced to the peer. */
  settings: Partial<Settings>;
  /** The rapid-reset bucket; the session fills missing fields with its defaults. */
  resetRateLimit?: Partial<RateLimitOptions>;
  /** The ping bucket; the session fills missing fields with its defaults. */
  pingRateLimit?: Partial<RateLimitOptions>;
  /** Output bytes waiting at which bodies stop being read (an eighth of the budget). */
  maxQueuedBytes: number;
  /** The stalled-reader watch (`limits.stalledReaderTimeout`), if on. */
  stalledReaders?: StalledReaders;
}

/**
 * The limits of every connection of a server or client, checked here, at construction.
 *
 * @param limits The user's limits.
 * @param defaults Settings this kind of end announces unless told otherwise.
 * @throws {RangeError} If a limit is out of range.
 */
export function connectionLimits(
  limits: Limits,
  defaults: Partial<Settings> = {},
): ConnectionLimits {
  checkLimit(limits, "maxFrameBytes", MIN_FRAME_BYTES);
  checkLimit(limits, "maxMessageBytes", MIN_FRAME_BYTES + FRAME_HEADER_BYTES);
  checkLimit(limits, "maxHeaderBytes", 1024);
  checkLimit(limits, "maxConcurrentStreams", 1);
  checkLimit(limits, "initialWindow", 1024);
  checkLimit(limits, "maxBufferedBytes", 64 * 1024);
  checkLimit(limits, "maxMetadataBytes", 0);
  checkLimit(limits, "maxMetadataValues", 0);
  checkLimit(limits, "handshakeTimeout", 1);
  checkLimit(limits, "maxConnections", 0);
  checkLimit(limits, "maxPendingHandshakes", 0);
  checkLimit(limits, "stalledReaderTimeout", 1);
  const settings: Partial<Settings> = { ...defaults };
  for (const name of SETTINGS_FROM_LIMITS) {
    if (limits[name] !== undefined) settings[name] = limits[name];
  }
  const maxFrameBytes = settings.maxFrameBytes ?? DEFAULT_SETTINGS.maxFrameBytes;
  const maxMessageBytes = settings.maxMessageBytes ?? DEFAULT_SETTINGS.maxMessageBytes;
  if (maxMessageBytes < maxFrameBytes + FRAME_HEADER_BYTES) {
    throw new RangeError(
      `Invalid limits.maxMessageBytes: ${maxMessageBytes} must be at least maxFrameBytes (${maxFrameBytes}) + ${FRAME_HEADER_BYTES}`,
    );
  }
  const budget = limits.maxBufferedBytes ?? DEFAULT_BUFFERED_BYTES;
  settings.connectionWindow = Math.floor(budget / 4);
  return {
    settings,
    resetRateLimit: rateLimit(limits.resetRateLimit, "limits.resetRateLimit", 1),
    pingRateLimit: rateLimit(limits.pingRateLimit, "limits.pingRateLimit", 1),
    maxQueuedBytes: Math.floor(budget / 8),
    ...(limits.stalledReaderTimeout === undefined ? {} : {
      stalledReaders: {
        timeout: limits.stalledReaderTimeout,
        spent: Math.floor(settings.connectionWindow * 3 / 4),
      },
    }),
  };
}

const SETTINGS_FROM_LIMITS = [
  "maxFrameBytes",
  "maxMessageBytes",
  "maxHeaderBytes",
  "maxConcurrentStreams",
  "initialWindow",
] as const;

/**
 * A rate-limit option, checked; missing fields are left for the caller's defaults.
 *
 * @param option The user's option.
 * @param name Its name, for the error.
 * @param minBurst The smallest burst allowed.
 * @throws {RangeError} If it is not an object or a field is out of range.
 */
export function rateLimit(
  option: RateLimit | undefined,
  name: string,
  minBurst = 1,
): Partial<RateLimitOptions> | undefined {
  if (option === undefined) return undefined;
  if (typeof option !== "object" || option === null) {
    throw new RangeError(`Invalid ${name}: must be an object`);
  }
  const { burst, perSecond } = option;
  if (
    burst !== undefined && (!Number.isInteger(burst) || burst < minBurst || burst > 0x7fff_ffff)
  ) {
    throw new RangeError(
      `Invalid ${name}.burst: ${burst} must be an integer from ${minBurst} to 2^31 − 1`,
    );
  }
  if (perSecond !== undefined && !(perSecond >= 0 && perSecond <= 0x7fff_ffff)) {
    throw new RangeError(
      `Invalid ${name}.perSecond: ${perSecond} must be a number from 0 to 2^31 − 1`,
    );
  }
  return option;
}

type NumericLimit = {
  [K in keyof Limits]-?: Required<Limits>[K] extends number ? K : never;
}[keyof Limits];

function checkLimit(limits: Limits, name: NumericLimit, min: number): void {
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
