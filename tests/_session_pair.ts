/**
 * A client `Session` and a server `Session` wired back to back, for tests.
 *
 * Like h11's `ConnectionPair` and quinn-proto's `Pair`: the helper carries each
 * end's `pollTransmit()` output to the other end's `handleMessage()`, collects
 * both ends' events, and owns a fake clock that it can move to the next deadline
 * either end reports through `pollTimeout()`. Nothing here waits on real time.
 *
 * @module
 */

import {
  decodeFrames,
  encodeFrames,
  type Frame,
  type RequestHead,
  Session,
  type SessionEvent,
  type SessionOptions,
} from "../protocol/mod.ts";

/** Which end. */
export type Side = "client" | "server";

/** Options for each end; the role is set by the pair. */
export interface PairOptions {
  /** Client session options. */
  client?: Omit<SessionOptions, "role">;
  /** Server session options. */
  server?: Omit<SessionOptions, "role">;
  /** The clock's start. Default 0. */
  now?: number;
}

/** One message that went over the wire. */
export interface Sent {
  /** The end that sent it. */
  from: Side;
  /** The clock when it was delivered. */
  at: number;
  /** The raw message. */
  bytes: Uint8Array;
  /** Its frames, decoded. */
  frames: Frame[];
}

/** The test connection id the server hands out by default. */
export const TEST_ID = "01J0000000000000000000000";

/** A plain GET request head. */
export const GET: RequestHead = { method: "GET", url: "/pets", headers: [] };

/** A client and a server session, a wire between them and a fake clock. */
export class SessionPair {
  /** The fake clock, in milliseconds. */
  now: number;
  /** The client end. */
  readonly client: Session;
  /** The server end. */
  readonly server: Session;
  /** Every message carried so far, in order. */
  readonly log: Sent[] = [];
  readonly #events: Record<Side, SessionEvent[]> = { client: [], server: [] };

  constructor(options: PairOptions = {}) {
    this.now = options.now ?? 0;
    this.client = new Session({ ...options.client, role: "client" }, this.now);
    this.server = new Session({ ...options.server, role: "server" }, this.now);
  }

  /** The session for a side. */
  end(side: Side): Session {
    return side === "client" ? this.client : this.server;
  }

  /** Moves every event either end has produced into the pair's lists. */
  collect(): void {
    for (const side of ["client", "server"] as const) {
      const session = this.end(side);
      for (let event = session.pollEvent(); event; event = session.pollEvent()) {
        this.#events[side].push(event);
      }
    }
  }

  /** Takes (and clears) the events a side has produced so far. */
  events(side: Side): SessionEvent[] {
    this.collect();
    const events = this.#events[side];
    this.#events[side] = [];
    return events;
  }

  /** Takes one message from `from` without delivering it (a message lost or held back). */
  take(from: Side): Sent | undefined {
    const bytes = this.end(from).pollTransmit();
    if (bytes === undefined) return undefined;
    return { from, at: this.now, bytes, frames: decodeFrames(bytes, Infinity) };
  }

  /** Delivers a message taken earlier to the other end. */
  deliver(sent: Sent): void {
    this.log.push({ ...sent, at: this.now });
    this.end(sent.from === "client" ? "server" : "client").handleMessage(sent.bytes, this.now);
    this.collect();
  }

  /** Carries one message from `from` to the other end; returns it, or `undefined` if none. */
  step(from: Side): Sent | undefined {
    const sent = this.take(from);
    if (sent) this.deliver(sent);
    return sent;
  }

  /** Carries messages both ways until neither end has anything to send; returns them. */
  flush(): Sent[] {
    const carried: Sent[] = [];
    for (let i = 0; i < 10_000; i++) {
      const a = this.step("client");
      const b = this.step("server");
      if (a) carried.push(a);
      if (b) carried.push(b);
      if (!a && !b) return carried;
    }
    throw new Error("SessionPair.flush() did not settle");
  }

  /** Delivers hand-made frames to a side, as if the other end had sent them. */
  inject(to: Side, frames: Frame[]): void {
    this.injectBytes(to, encodeFrames(frames));
  }

  /** Delivers raw bytes to a side. */
  injectBytes(to: Side, bytes: Uint8Array): void {
    this.end(to).handleMessage(bytes, this.now);
    this.collect();
  }

  /** Calls `handleTimeout(now)` on both ends (a timer firing now, due or not). */
  tick(): void {
    this.client.handleTimeout(this.now);
    this.server.handleTimeout(this.now);
    this.collect();
  }

  /** The earliest deadline of either end (or of one side). */
  nextTimeout(side?: Side): number | undefined {
    const times = (side ? [side] : ["client", "server"] as const)
      .map((s) => this.end(s).pollTimeout())
      .filter((t): t is number => t !== undefined);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /**
   * Moves the clock to the next deadline (of either end, or of one side) and fires the timers
   * there. Returns the new time, or `undefined` if no deadline is set.
   */
  advance(side?: Side): number | undefined {
    const next = this.nextTimeout(side);
    if (next === undefined) return undefined;
    this.now = Math.max(this.now, next);
    if (side) this.end(side).handleTimeout(this.now);
    else this.tick();
    this.collect();
    return this.now;
  }

  /** Moves the clock to `time` without firing anything. */
  setTime(time: number): void {
    this.now = time;
  }

  /**
   * Runs the 3-way handshake (HELLO, WELCOME, ACK), then fires the timers due now and carries
   * what they produce (the server's nudge answering the ACK), so that both ends are quiet.
   * Returns the events of both ends.
   */
  handshake(
    metadata: unknown = { name: "agent-1" },
    id: string = TEST_ID,
  ): { client: SessionEvent[]; server: SessionEvent[] } {
    this.client.hello(metadata);
    this.step("client");
    const hello = this.events("server");
    this.server.accept({ id });
    this.flush();
    this.tick();
    this.flush();
    return { client: this.events("client"), server: [...hello, ...this.events("server")] };
  }

  /** The frames of every logged message a side sent, flattened. */
  framesFrom(side: Side): Frame[] {
    return this.log.filter((s) => s.from === side).flatMap((s) => s.frames);
  }
}
