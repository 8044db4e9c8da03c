/**
 * The output driver: the one way a connection's output leaves, and when.
 *
 * The session queues frames; this module decides when they are encoded and handed to the
 * socket, and keeps the connection's one deadline. Everything that queues output calls
 * {@linkcode Output.wake} with an {@linkcode Urgency}; these are the rules, all of them:
 *
 * - **Flush** (the default): output leaves at the *macrotask flush*, once per macrotask
 *   after every pending microtask, so that what a handler produces in one go leaves as one
 *   WebSocket message. The flush also fires due session timers, releases held responses
 *   (a body that did not end within the macrotask streams; see `Responder`), and re-arms
 *   the deadline.
 * - **Soon**: a request or response was queued *whole*: it leaves once the current
 *   microtasks have run, ahead of the flush, which it does not need. A lone exchange then
 *   skips a trip through the event loop on each end (about 5 % of a sequential exchange);
 *   exchanges that complete in the same microtasks still share one message. Those that
 *   come one per callback of other sockets (requests `forward()`ed from an HTTP front, a
 *   tunnel's answers from its upstream) ask for the flush instead while others are in
 *   flight: Bun runs each callback's microtasks before the next, so each would leave alone,
 *   and a socket write per exchange was most of a busy gateway's CPU there.
 * - **Input**: a message from the peer was handled: the flush is scheduled only if that left
 *   something to send, a response held, or a deadline to move. Scheduling a macrotask costs
 *   a few µs (2.6 µs on Deno), and most messages (a response whose caller runs next) need none.
 *   A deadline due at once after a message that brought a request (the server's nudge:
 *   `Session`) is first watched for `WATCH_HOPS` microtask turns: a handler's answer usually
 *   comes within them (3 turns for an `async` handler, 8 for a Hono app with a middleware)
 *   and carries the nudge, so the flush is not scheduled at all. On Deno that also lets the
 *   answer out sooner: a socket's send only queues the write, which runs once the event
 *   loop's turn ends, after any macrotask already due in it.
 * - **Batches**: whatever the urgency, once `BATCH_FRAMES` frames are ready they leave at
 *   once. With many exchanges in flight a whole batch would otherwise leave as one message
 *   and the two ends would take turns, each idle while the other works; sent in parts, they
 *   overlap.
 * - **Backpressure**: above `SOCKET_HIGH_WATER` buffered bytes the socket gets nothing more
 *   until it drains: a socket that signals draining wakes the flush (`Socket.onDrain`);
 *   another is polled, on macrotasks for the first `DRAIN_POLL_MS` of a stall (a fast link
 *   drains in about a millisecond, less than a timer tick), then on a 1 ms timer until the
 *   link proves fast again.
 * - **Deadlines**: the session's next deadline (handshake, heartbeat, nudge) and the close
 *   timeout are one entry in the clock's deadline heap (`_deadlines.ts`); when it comes, the
 *   flush runs.
 * - **The end**: closing sends one last message with the queued control frames (a GOAWAY,
 *   a RESET) and nothing after; body data beyond it would only be cut off by the close.
 *
 * @module
 */

import type { Clock } from "../_clock.ts";
import { Deadline, type Deadlines, deadlinesOf } from "../_deadlines.ts";
import type { Socket } from "../_socket.ts";
import type { Session } from "../protocol/session.ts";
import { nextTask } from "./_schedule.ts";

/** How soon queued output must leave (see the module doc). */
export const Urgency = {
  /** At the macrotask flush, with whatever else this macrotask queues. */
  Flush: 0,
  /** A request or response was queued whole: once the current microtasks have run. */
  Soon: 1,
  /** A peer's message was handled: flush only if it left work for the flush. */
  Input: 2,
} as const;

/** A value of {@linkcode Urgency}. */
export type Urgency = typeof Urgency[keyof typeof Urgency];

/** What the driver reads of the connection's state (its `ConnectionContext`). */
export interface OutputState {
  /** The connection has ended. */
  readonly ended: boolean;
  /** The session whose output this drives. */
  readonly session: Session;
  /** Responses held back for the flush to release. */
  readonly heldResponses: number;
  /** Messages received from the peer. */
  readonly messagesIn: number;
  /** `messagesIn` of the last message that brought a request to answer. */
  readonly requestMessage: number;
}

/**
 * What the driver calls back into, with the owner it was given: one such object serves
 * every connection, so that an idle connection keeps no closures for it.
 */
export interface OutputHost<O> {
  /** Hands the session's events to the connection (sending a stream's last frame finishes it). */
  processEvents(owner: O): void;
  /** The flush came: held responses go now, their bodies streaming. */
  releaseHeld(owner: O): void;
  /** Output went out or was dropped: pumps waiting for room look again. */
  outputMoved(owner: O): void;
  /** The socket threw on send: the connection is lost. */
  sendFailed(owner: O, error: Error): void;
  /** `close()`'s timeout passed with exchanges still running. */
  closeTimedOut(owner: O): void;
}

/** Frames ready at once that leave without waiting for the flush. */
const BATCH_FRAMES = 32;
/** Microtask turns a deadline due at once is watched before the flush is scheduled for it. */
const WATCH_HOPS = 16;
/** Above this many buffered bytes the socket gets no more until it drains. */
const SOCKET_HIGH_WATER = 1024 * 1024;
/** Milliseconds a full socket is polled on macrotasks before falling back to a 1 ms timer. */
const DRAIN_POLL_MS = 2;
/**
 * Where outgoing messages are encoded, shared by every connection in the process: each
 * message is handed to `Socket.send`, which copies it before returning (see `_socket.ts`),
 * so one buffer serves them all in turn and a large body makes no garbage per message.
 * It starts at `FIRST_SCRATCH_BYTES`, what handshakes, heartbeats and small exchanges need;
 * the first message that does not fit (it gets a buffer of its own) makes it
 * `SEND_SCRATCH_BYTES`, big enough for a full message (1 MiB of DATA plus the chunk that
 * crosses the bound). Bun makes a new buffer resident whole, so a process that only ever
 * sends small messages does not keep 2 MiB for them.
 */
let sendScratch: Uint8Array | undefined;
const FIRST_SCRATCH_BYTES = 64 * 1024;
const SEND_SCRATCH_BYTES = 2 * 1024 * 1024;

/** One connection's output driver. */
export class Output<O = unknown> {
  readonly #context: OutputState;
  readonly #socket: Socket;
  readonly #clock: Clock;
  readonly #deadlines: Deadlines;
  readonly #host: OutputHost<O>;
  readonly #owner: O;
  readonly #deadline: Deadline;
  /** The time `#deadline` stands for. */
  #timerAt: number | undefined;
  /** When `close()` gives up waiting for exchanges. */
  #closeBy: number | undefined;
  #flushScheduled = false;
  /** Microtask turns left to watch a due deadline (see `WATCH_HOPS`); 0 when not watching. */
  #watchHops = 0;
  /** What the watch queues (made the first time, as an idle connection never watches). */
  #watch: (() => void) | undefined;
  #sendSoonScheduled = false;
  /** What `wake(Urgency.Soon)` queues (made the first time, as an idle connection never does). */
  #sendSoon: (() => void) | undefined;
  #drainTimer: unknown;
  /** What a full socket's polls call (made the first time the socket fills, as most never do). */
  #drainPoll: (() => void) | undefined;
  #drainTimed: (() => void) | undefined;
  /** A macrotask poll of a full socket is pending. */
  #drainPolling = false;
  /** When the socket last filled up, while polling it on macrotasks. */
  #drainStalledAt: number | undefined;
  /** The last stall outlasted DRAIN_POLL_MS: poll on a timer until the link proves fast. */
  #slowDrain = false;

  /**
   * @param context The connection's state.
   * @param socket Where messages go.
   * @param clock The endpoint's clock.
   * @param host What the driver calls back into.
   * @param owner What `host` is called with.
   */
  constructor(context: OutputState, socket: Socket, clock: Clock, host: OutputHost<O>, owner: O) {
    this.#context = context;
    this.#socket = socket;
    this.#clock = clock;
    this.#deadlines = deadlinesOf(clock);
    this.#host = host;
    this.#owner = owner;
    this.#deadline = new Deadline(this.#flush);
  }

  /**
   * Output was queued (or may have been): see that it leaves in time.
   *
   * @param urgency How soon; see the module doc.
   */
  wake(urgency: Urgency = Urgency.Flush): void {
    const context = this.#context;
    if (context.ended) return;
    const session = context.session;
    if (urgency === Urgency.Input && session.readyFrames === 0 && context.heldResponses === 0) {
      const at = this.#nextDeadline();
      if (at === this.#timerAt || this.#watchHops > 0) return;
      if (
        !this.#flushScheduled && context.requestMessage === context.messagesIn &&
        at !== undefined && at <= this.#clock.now()
      ) {
        this.#watchHops = WATCH_HOPS;
        queueMicrotask(this.#watch ??= () => this.#watchDue());
        return;
      }
    }
    if (session.readyFrames >= BATCH_FRAMES) this.#transmit();
    if (urgency === Urgency.Soon) {
      if (this.#sendSoonScheduled) return;
      this.#sendSoonScheduled = true;
      queueMicrotask(this.#sendSoon ??= () => this.#sendQueued());
      return;
    }
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    nextTask(this.#flush);
  }

  /**
   * Gives exchanges until `timeout` milliseconds from now; then `OutputHost.closeTimedOut`.
   *
   * @param timeout Milliseconds.
   */
  closeAfter(timeout: number): void {
    this.#closeBy = this.#clock.now() + timeout;
    this.#armTimer();
  }

  /** Sends one last message with what is queued (before the socket closes). */
  sendLast(): void {
    try {
      const message = this.#context.session.pollTransmit();
      if (message) this.#socket.send(message);
    } catch {
      // The socket is already gone; the close that follows still ends the connection.
    }
  }

  /** The connection ended: no timer of its own stays set. */
  stop(): void {
    this.#deadlines.set(this.#deadline, undefined);
    if (this.#drainTimer !== undefined) this.#clock.clearTimer(this.#drainTimer);
    this.#drainTimer = undefined;
  }

  #nextDeadline(): number | undefined {
    const at = this.#context.session.pollTimeout();
    const closeBy = this.#closeBy;
    if (closeBy === undefined) return at;
    return at === undefined ? closeBy : Math.min(at, closeBy);
  }

  /** One turn of watching a due deadline: done once output went; the flush when turns run out. */
  #watchDue(): void {
    if (this.#context.ended || this.#flushScheduled || this.#nextDeadline() === this.#timerAt) {
      this.#watchHops = 0;
    } else if (--this.#watchHops > 0) {
      queueMicrotask(this.#watch!);
    } else {
      this.#flushScheduled = true;
      nextTask(this.#flush);
    }
  }

  #sendQueued(): void {
    this.#sendSoonScheduled = false;
    if (this.#context.ended) return;
    this.#transmit();
    this.#host.processEvents(this.#owner);
  }

  #flush = (): void => {
    this.#flushScheduled = false;
    const context = this.#context;
    if (context.ended) return;
    const session = context.session;
    const now = this.#clock.now();
    if (this.#closeBy !== undefined && this.#closeBy <= now) {
      this.#host.closeTimedOut(this.#owner);
      return;
    }
    const deadline = session.pollTimeout();
    if (deadline !== undefined && deadline <= now) session.handleTimeout(now);
    if (context.heldResponses > 0) this.#host.releaseHeld(this.#owner);
    this.#transmit();
    this.#host.processEvents(this.#owner);
    this.#armTimer();
  };

  #transmit(): void {
    if (this.#drainTimer !== undefined || this.#drainPolling) return;
    const socket = this.#socket;
    const session = this.#context.session;
    const buffered = socket.bufferedAmount;
    if (buffered < SOCKET_HIGH_WATER) {
      // A stall ended: one that ended while polling, or a timer that found the socket empty,
      // says the link is fast again.
      if (this.#drainStalledAt !== undefined || buffered === 0) this.#slowDrain = false;
      this.#drainStalledAt = undefined;
    }
    while (socket.bufferedAmount < SOCKET_HIGH_WATER) {
      const scratch = sendScratch ??= new Uint8Array(FIRST_SCRATCH_BYTES);
      const message = session.pollTransmit(scratch);
      if (!message) {
        this.#host.outputMoved(this.#owner);
        return;
      }
      // It did not fit: from now on every connection encodes into the full-size scratch.
      if (message.byteLength > scratch.byteLength && scratch.byteLength < SEND_SCRATCH_BYTES) {
        sendScratch = new Uint8Array(SEND_SCRATCH_BYTES);
      }
      try {
        socket.send(message);
      } catch (error) {
        this.#host.sendFailed(
          this.#owner,
          error instanceof Error ? error : new Error(String(error)),
        );
        return;
      }
    }
    this.#host.outputMoved(this.#owner);
    // The socket is full: wait for it to drain before handing it more.
    if (!socket.signalsDrain) {
      const now = this.#clock.now();
      this.#drainStalledAt ??= now;
      if (!this.#slowDrain && now - this.#drainStalledAt < DRAIN_POLL_MS) {
        this.#drainPolling = true;
        nextTask(
          this.#drainPoll ??= () => {
            this.#drainPolling = false;
            this.#flush();
          },
        );
        return;
      }
      this.#slowDrain = true;
      this.#drainStalledAt = undefined;
      this.#drainTimer = this.#clock.setTimer(
        this.#drainTimed ??= () => {
          this.#drainTimer = undefined;
          this.#flush();
        },
        1,
      );
    }
  }

  #armTimer(): void {
    if (this.#context.ended) return;
    const at = this.#nextDeadline();
    if (at === this.#timerAt && (at === undefined || this.#deadline.pending)) return;
    this.#timerAt = at;
    this.#deadlines.set(this.#deadline, at);
  }
}
