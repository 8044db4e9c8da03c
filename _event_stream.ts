/**
 * A broadcast of connection events to any number of async-iterator subscribers.
 *
 * Publishing never waits: each subscriber has its own bounded buffer, and a reader
 * that falls behind loses its oldest events rather than slowing the server.
 *
 * @module
 */

import type { ConnectionEvent } from "./types.ts";

const MAX_BUFFERED = 1024;

interface Subscriber {
  buffer: ConnectionEvent[];
  wake: (() => void) | undefined;
}

/** Fans events out to subscribers. */
export class EventStream {
  #subscribers = new Set<Subscriber>();
  #ended = false;

  /** Publishes an event to every current subscriber. */
  publish(event: ConnectionEvent): void {
    for (const subscriber of this.#subscribers) {
      if (subscriber.buffer.length >= MAX_BUFFERED) subscriber.buffer.shift();
      subscriber.buffer.push(event);
      subscriber.wake?.();
    }
  }

  /** Ends every subscription: iterators finish once their buffers are read. */
  end(): void {
    this.#ended = true;
    for (const subscriber of this.#subscribers) subscriber.wake?.();
  }

  /** A new subscription, starting now. */
  subscribe(): AsyncIterableIterator<ConnectionEvent> {
    const subscriber: Subscriber = { buffer: [], wake: undefined };
    if (!this.#ended) this.#subscribers.add(subscriber);
    const stop = (): IteratorReturnResult<undefined> => {
      this.#subscribers.delete(subscriber);
      subscriber.buffer = [];
      subscriber.wake?.();
      return { done: true, value: undefined };
    };
    const iterator: AsyncIterableIterator<ConnectionEvent> = {
      next: async (): Promise<IteratorResult<ConnectionEvent>> => {
        while (subscriber.buffer.length === 0) {
          if (this.#ended || !this.#subscribers.has(subscriber)) return stop();
          await new Promise<void>((resolve) => subscriber.wake = resolve);
          subscriber.wake = undefined;
        }
        return { done: false, value: subscriber.buffer.shift()! };
      },
      return: () => Promise.resolve(stop()),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
