/**
 * The heartbeat: two deadlines, no timers.
 *
 * Keep-alive sends a PING every `interval` (± jitter) carrying the send time, so the
 * PONG that echoes it gives the round-trip time as `now − sentAt`. Idle watches the
 * other way: any message from the peer counts as life, and silence for `timeout`
 * fails the connection. Application-level pings are needed because the standard
 * `WebSocket` client has no ping API.
 *
 * @module
 */

/** Heartbeat timing in milliseconds. */
export interface HeartbeatOptions {
  /** Time between pings. */
  interval: number;
  /** Silence after which the connection counts as dead. */
  timeout: number;
  /** Fraction of `interval` by which each ping is moved at random, both ways (0–1). Default 0.2. */
  jitter?: number;
}

/** What a heartbeat deadline asks for. */
export type HeartbeatAction = "ping" | "dead" | undefined;

/**
 * The heartbeat's two deadlines for one connection.
 *
 * @example Usage
 * ```ts
 * import { Heartbeat } from "@swaggersocket/swaggersocket/protocol";
 * const heartbeat = new Heartbeat({ interval: 1000, timeout: 3000 }, 0, () => 0.5);
 * heartbeat.pollTimeout(); // 1000
 * heartbeat.handleTimeout(1000); // "ping"
 * ```
 */
export class Heartbeat {
  #interval: number;
  #timeout: number;
  #jitter: number;
  #random: () => number;
  #nextPingAt: number;
  #lastHeardAt: number;
  #rtt: number | undefined;

  /**
   * Starts the heartbeat's clock.
   *
   * @param options Interval, timeout and jitter.
   * @param now The current time in milliseconds.
   * @param random A source of numbers in [0, 1) for jitter.
   * @throws {RangeError} If `interval` or `timeout` is not a positive number.
   */
  constructor(options: HeartbeatOptions, now: number, random: () => number) {
    if (!(options.interval > 0) || !(options.timeout > 0)) {
      throw new RangeError(
        "Heartbeat interval and timeout must be positive numbers of milliseconds",
      );
    }
    this.#interval = options.interval;
    this.#timeout = options.timeout;
    this.#jitter = Math.min(Math.max(options.jitter ?? 0.2, 0), 1);
    this.#random = random;
    this.#lastHeardAt = now;
    this.#nextPingAt = this.#schedule(now);
  }

  /** The last measured round-trip time in milliseconds, if any. */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  #schedule(now: number): number {
    const spread = this.#interval * this.#jitter;
    return now + this.#interval - spread + 2 * spread * this.#random();
  }

  /** Records that a message arrived from the peer. */
  handleReceive(now: number): void {
    this.#lastHeardAt = now;
  }

  /**
   * Records a PONG and measures the round trip.
   *
   * @param sentAt The send time the PONG echoes.
   * @param now The current time.
   * @returns The round-trip time, or `undefined` if `sentAt` is not a time this end could have sent.
   */
  handlePong(sentAt: number, now: number): number | undefined {
    if (!Number.isFinite(sentAt) || sentAt > now) return undefined;
    this.#rtt = now - sentAt;
    return this.#rtt;
  }

  /** The next deadline: the earlier of the next ping and the idle timeout. */
  pollTimeout(): number {
    return Math.min(this.#nextPingAt, this.#lastHeardAt + this.#timeout);
  }

  /**
   * Acts on the time. A call before any deadline is a no-op.
   *
   * @param now The current time.
   * @returns `"dead"` past the idle timeout, `"ping"` when a ping is due, otherwise `undefined`.
   */
  handleTimeout(now: number): HeartbeatAction {
    if (now >= this.#lastHeardAt + this.#timeout) return "dead";
    if (now >= this.#nextPingAt) {
      this.#nextPingAt = this.#schedule(now);
      return "ping";
    }
    return undefined;
  }
}
