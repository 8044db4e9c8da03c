/**
 * Cutting readers that stall a connection (`limits.stalledReaderTimeout`).
 *
 * A receiver gives the peer credit back only for body bytes its readers take, so bytes
 * waiting for a reader that has stopped keep their share of the connection's receive window.
 * Once the waiting bytes of a few such readers fill it, the peer can send nothing on any
 * exchange: on a proxy's connection, a few callers that stop reading stall every other
 * caller. With the watch on, a connection whose window is spent looks again after the
 * timeout, and cuts each body that still has bytes waiting and has handed its reader nothing
 * since: its exchange ends, and its bytes go back to the peer.
 *
 * @module
 */

import { Deadline, type Deadlines, deadlinesOf } from "../_deadlines.ts";
import type { Clock } from "../_clock.ts";
import { ExchangeResetError } from "../errors.ts";
import { ResetCode } from "../protocol/close_codes.ts";
import type { InboundBody } from "./_inbound_body.ts";

/** When a connection cuts readers that hold its receive window (see `Limits`). */
export interface StalledReaders {
  /** Milliseconds a reader may take nothing while its bytes wait. */
  timeout: number;
  /** Unread bytes at which the receive window counts as spent. */
  spent: number;
}

/** What the watch reads of its connection. */
export interface StalledReaderHost {
  /** Body bytes received and not yet read, on every exchange. */
  readonly unreadBytes: number;
  /** The bodies arriving now. */
  bodies(): Iterable<InboundBody>;
}

/** One connection's watch. */
export class StalledReaderWatch {
  readonly #settings: StalledReaders;
  readonly #host: StalledReaderHost;
  readonly #deadlines: Deadlines;
  readonly #deadline: Deadline;

  /**
   * @param settings The timeout, and the unread bytes at which the window counts as spent.
   * @param clock The connection's clock.
   * @param host What the watch reads.
   */
  constructor(settings: StalledReaders, clock: Clock, host: StalledReaderHost) {
    this.#settings = settings;
    this.#host = host;
    this.#deadlines = deadlinesOf(clock);
    this.#deadline = new Deadline(() => this.#look());
  }

  /** After input: a spent window starts the watch, which marks what each body has handed. */
  check(): void {
    if (this.#deadline.pending || this.#host.unreadBytes < this.#settings.spent) return;
    this.#mark();
  }

  /** The connection has ended. */
  stop(): void {
    this.#deadlines.set(this.#deadline, undefined);
  }

  #mark(): void {
    for (const body of this.#host.bodies()) body.mark = body.handed;
    this.#deadlines.set(this.#deadline, this.#deadlines.clock.now() + this.#settings.timeout);
  }

  #look(): void {
    if (this.#host.unreadBytes < this.#settings.spent) return;
    const timeout = this.#settings.timeout;
    for (const body of [...this.#host.bodies()]) {
      if (body.waiting && body.mark === body.handed) {
        body.cut(
          new ExchangeResetError(
            `The reader took nothing for ${timeout} ms while its unread bytes held the connection`,
            ResetCode.Cancel,
          ),
        );
      }
    }
    // Still spent (readers that took a little): look again after another timeout.
    if (this.#host.unreadBytes >= this.#settings.spent) this.#mark();
  }
}
