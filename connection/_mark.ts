/**
 * A mark the library puts on an object it made (a response, a header list) so as to know it
 * again further on. A symbol property, not a `WeakSet` entry: on V8 a `WeakSet.add` per
 * response cost 5 % of a small exchange's CPU, and its entries are ephemerons the garbage
 * collector works through (bench/RESULTS.md, "Where the time goes").
 *
 * @module
 */

/** One kind of mark. */
export class Mark<T extends object> {
  readonly #symbol: symbol;

  /** @param name What the mark says, as its symbol's description. */
  constructor(name: string) {
    this.#symbol = Symbol(`swaggersocket.${name}`);
  }

  /** Marks `target`; returns it. */
  set(target: T): T {
    (target as Record<symbol, unknown>)[this.#symbol] = true;
    return target;
  }

  /** Whether `target` bears this mark. */
  has(target: unknown): target is T {
    return (target as Record<symbol, unknown> | null | undefined)?.[this.#symbol] === true;
  }
}
