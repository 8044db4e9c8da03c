/**
 * Rate limits per remote address, shared by every connection from that address.
 *
 * A connection's own limits cannot see a peer that opens many connections: handshakes,
 * failed resume attempts and pings are also counted per address, in token buckets kept in
 * one bounded map (the addresses seen least recently are forgotten first, so a flood of
 * addresses costs at most {@linkcode MAX_ADDRESSES} entries).
 *
 * @module
 */

import { type RateLimitOptions, TokenBucket } from "./protocol/rate_limit.ts";

/** Addresses tracked at once; past it the least recently seen is forgotten. */
export const MAX_ADDRESSES = 16_384;

/** The rates, each with its defaults filled in. */
export interface AddressRates {
  /** New sockets. */
  handshakes: RateLimitOptions;
  /** Resume tokens that did not redeem. */
  failedResumes: RateLimitOptions;
  /** Pings, all connections together. */
  pings: RateLimitOptions;
}

/** Defaults of `limits.addressRateLimits`. */
export const ADDRESS_RATES: Readonly<AddressRates> = {
  handshakes: { burst: 128, perSecond: 32 },
  failedResumes: { burst: 32, perSecond: 1 },
  pings: { burst: 1000, perSecond: 500 },
};

interface Entry {
  handshakes: TokenBucket;
  failedResumes: TokenBucket | undefined;
  pings: TokenBucket | undefined;
}

/** The per-address buckets of one server. */
export class AddressLimits {
  readonly #rates: AddressRates;
  readonly #entries = new Map<string, Entry>();

  /** @param rates The rates per address. */
  constructor(rates: AddressRates) {
    this.#rates = rates;
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Counts a new socket from `address`; `false` if the address is over its rate. */
  handshake(address: string, now: number): boolean {
    return this.#entry(address, now).handshakes.take(now);
  }

  /** Whether a resume token from `address` may be looked at now. */
  mayResume(address: string, now: number): boolean {
    const entry = this.#entry(address, now);
    entry.failedResumes ??= new TokenBucket(this.#rates.failedResumes, now);
    return entry.failedResumes.peek(now);
  }

  /** Counts a resume token from `address` that did not redeem. */
  failedResume(address: string, now: number): void {
    const entry = this.#entry(address, now);
    entry.failedResumes ??= new TokenBucket(this.#rates.failedResumes, now);
    entry.failedResumes.take(now);
  }

  /** The bucket that every connection from `address` takes its pings from. */
  pings(address: string, now: number): TokenBucket {
    const entry = this.#entry(address, now);
    return entry.pings ??= new TokenBucket(this.#rates.pings, now);
  }

  #entry(address: string, now: number): Entry {
    const entries = this.#entries;
    let entry = entries.get(address);
    if (entry) {
      // Most recently seen last: the map's order is the order to forget in.
      entries.delete(address);
    } else {
      entry = {
        handshakes: new TokenBucket(this.#rates.handshakes, now),
        failedResumes: undefined,
        pings: undefined,
      };
      if (entries.size >= MAX_ADDRESSES) entries.delete(entries.keys().next().value!);
    }
    entries.set(address, entry);
    return entry;
  }
}
