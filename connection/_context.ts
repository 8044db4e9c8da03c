/**
 * What the parts of one connection share: its session, its logger, its output driver,
 * whether it has ended, and the bytes it holds that `Connection.bufferedBytes` counts.
 * The caller's side, the responder's side and the body pumps each get this one object
 * instead of reaching into `Connection`; only `Connection` ends the connection.
 *
 * @module
 */

import type { Logger } from "../_logger.ts";
import type { Session } from "../protocol/session.ts";
import type { Output } from "./_output.ts";

/** The shared state of one connection's parts. */
export class ConnectionContext {
  /** Set once, when the connection ends: no more output, no new exchanges. */
  ended = false;
  /** Responses held back with the first chunks of their bodies (see `Responder`). */
  heldResponses = 0;
  /** Body bytes in held responses. */
  heldBytes = 0;
  /**
   * Messages received from the peer: an exchange that began at another count is answered
   * after later input, not while handling its own message (see `Responder`).
   */
  messagesIn = 0;
  /** `messagesIn` of the last message that brought a request (see `Output`'s "Input"). */
  requestMessage = 0;
  /** What received bodies' waiting chunks are charged (see `InboundBody`). */
  inboundBytes = 0;
  /** The output driver; set right after this context is made (it needs the context). */
  output!: Output;
  /** What bodies charge their waiting chunks to; made with the first body, as idle connections have none. */
  #account: ((delta: number) => void) | undefined;

  /**
   * @param session The protocol state machine.
   * @param logger Where log lines go.
   * @param exchangeEnded Called when an exchange ends either way: a closing connection may be done.
   */
  constructor(
    readonly session: Session,
    readonly logger: Logger,
    readonly exchangeEnded: () => void,
  ) {}

  /** Charges (or, negative, releases) bytes of received body chunks waiting to be read. */
  get account(): (delta: number) => void {
    return this.#account ??= (delta) => {
      this.inboundBytes += delta;
    };
  }

  /** The application read (or dropped) body bytes: the peer gets the credit back. */
  consume(streamId: number, bytes: number): void {
    this.session.consume(streamId, bytes);
    this.output.wake();
  }
}
