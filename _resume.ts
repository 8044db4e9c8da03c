/**
 * Resume tokens: what lets a reconnecting client get its connection id back.
 *
 * Every WELCOME carries a fresh token `<id>.<secret>`, where the secret is 256 bits
 * from `crypto.getRandomValues` in base64url (43 characters). While the connection is open its token
 * is "live"; when the connection ends, the token and the connection's metadata are
 * kept for the resume window. A HELLO that presents the token within the window
 * redeems it: the token is deleted (single-use) and the caller issues a new one for
 * the new connection. The secret is compared in constant time; the id in front of it
 * only picks the entry (ids are not secret).
 *
 * Ended entries live in one `Map` in the order they ended; every entry gets the same
 * window, so the oldest expire first and a sweep from the front removes them in
 * amortised O(1). The sweep runs on each use and on one deadline, at the oldest entry's
 * expiry, so nothing outlives its window by more than a timer tick even when no client
 * comes back. The map is bounded twice: past {@linkcode MAX_RESUMABLE} entries or
 * {@linkcode MAX_RESUMABLE_BYTES} of estimated memory (each entry's metadata counted as
 * parsed, see `parsedJsonBytes`) the oldest entries are dropped.
 *
 * @module
 */

import { type Clock, systemClock } from "./_clock.ts";
import { Deadline, type Deadlines, deadlinesOf } from "./_deadlines.ts";
import type { Connection } from "./connection.ts";
import { randomBase64url } from "./_random.ts";
import { timingSafeEqual } from "./_timing_safe_equal.ts";

/** Most ended connections kept for resumption at once; the oldest go first. */
export const MAX_RESUMABLE = 65_536;
/** Most memory the ended connections kept for resumption may take, by estimate. */
export const MAX_RESUMABLE_BYTES = 32 * 1024 * 1024;
/** What one entry costs beyond its metadata: the token, the id, the map's slot. */
export const RESUMABLE_ENTRY_BYTES = 256;

const SECRET_BITS = 256;

interface Live {
  secret: string;
  connection: Connection;
  cost: number;
}

interface Ended {
  secret: string;
  metadata: unknown;
  expiresAt: number;
  cost: number;
}

/** A redeemed token: the id to give back, and what was kept with it. */
export interface Redeemed {
  /** The connection id. */
  id: string;
  /** The metadata the connection had. */
  metadata: unknown;
  /** What that metadata takes in memory, by estimate. */
  metadataCost: number;
  /** The connection that still holds the id, if it has not ended yet. */
  previous?: Connection;
}

/** What a {@linkcode SharedResumeTokens} store says of a token. */
export type SharedRedeemed =
  /** Redeemed: what was kept with it. */
  | { metadata: unknown; metadataCost: number }
  /** The store has no token for that id (never had, expired, or lost). */
  | "unknown"
  /** The id's token is another one: a wrong or already used token. */
  | "refused";

/**
 * Resume tokens kept beyond one server, so that a client may resume on another server of a
 * cluster: the gateway's cluster keeps them in Redis (see `cluster/_resume_tokens.ts`).
 * When a server has one, it is asked about every token presented, and its answer decides:
 * a token it refuses is refused even where it was issued (it was used elsewhere); one it
 * does not know, or cannot be asked about, is judged by the server's own store.
 */
export interface SharedResumeTokens {
  /**
   * A token was issued for a live connection; it replaces any earlier token of `id`.
   *
   * @param id The connection id.
   * @param secret The token's secret (after the dot).
   * @param metadata The connection's metadata.
   * @param metadataCost What that metadata takes in memory, by estimate.
   */
  issued(id: string, secret: string, metadata: unknown, metadataCost: number): void;
  /**
   * The connection ended: its token stays redeemable for the resume window.
   *
   * @param id The connection id.
   * @param secret The token's secret.
   */
  ended(id: string, secret: string): void;
  /**
   * Redeems a token, once.
   *
   * @param id The connection id (before the dot).
   * @param secret The secret presented.
   * @returns What was kept with it, `"unknown"` or `"refused"`.
   * @throws {Error} If the store cannot be reached (the server's own store decides).
   */
  redeem(id: string, secret: string): Promise<SharedRedeemed>;
}

/** The server's resume tokens (one store per server). */
export class ResumeStore {
  readonly #window: number;
  readonly #max: number;
  readonly #maxBytes: number;
  readonly #live = new Map<string, Live>();
  readonly #ended = new Map<string, Ended>();
  #endedBytes = 0;
  readonly #clock: Clock;
  readonly #deadlines: Deadlines;
  readonly #sweeper = new Deadline(() => this.#sweep(this.#clock.now()));

  /**
   * @param window Milliseconds an ended connection stays resumable.
   * @param max Most ended connections kept.
   * @param maxBytes Most memory they may take, by estimate.
   * @param clock What the window is measured on: the endpoint's clock.
   */
  constructor(
    window: number,
    max: number = MAX_RESUMABLE,
    maxBytes: number = MAX_RESUMABLE_BYTES,
    clock: Clock = systemClock,
  ) {
    this.#window = window;
    this.#max = max;
    this.#maxBytes = maxBytes;
    this.#clock = clock;
    this.#deadlines = deadlinesOf(this.#clock);
  }

  /** Ended connections currently kept (for tests). */
  get size(): number {
    return this.#ended.size;
  }

  /** Estimated memory of the ended connections kept. */
  get bytes(): number {
    return this.#endedBytes;
  }

  /**
   * Issues the token for a connection about to be welcomed with `id`; any earlier
   * token for that id stops working.
   *
   * @param id The connection id.
   * @param connection The connection.
   * @param metadataCost What its metadata takes in memory, by estimate.
   */
  issue(id: string, connection: Connection, metadataCost = 0): string {
    const secret = randomBase64url(SECRET_BITS);
    this.#delete(id);
    this.#live.set(id, { secret, connection, cost: metadataCost + RESUMABLE_ENTRY_BYTES });
    return `${id}.${secret}`;
  }

  /**
   * Redeems a token presented in a HELLO. Returns `undefined` for a malformed, wrong,
   * already used or expired token; otherwise deletes it and returns what it stood for.
   *
   * @param token The token.
   * @param now The time; the store's clock by default.
   */
  redeem(token: string, now: number = this.#clock.now()): Redeemed | undefined {
    this.#sweep(now);
    const dot = token.lastIndexOf(".");
    if (dot <= 0) return undefined;
    const id = token.slice(0, dot);
    const secret = token.slice(dot + 1);
    const ended = this.#ended.get(id);
    const live = ended ? undefined : this.#live.get(id);
    const entry = ended ?? live;
    if (!entry || !timingSafeEqual(entry.secret, secret)) return undefined;
    this.#delete(id);
    this.#live.delete(id);
    const metadataCost = entry.cost - RESUMABLE_ENTRY_BYTES;
    if (live) {
      return { id, metadata: live.connection.metadata, metadataCost, previous: live.connection };
    }
    return { id, metadata: ended!.metadata, metadataCost };
  }

  /**
   * The open connection that `token` would take over, without redeeming it: for the
   * server's `authorize`, which runs before the token is redeemed. A wrong, used or ended
   * token gives `undefined`.
   */
  resumes(token: string): Connection | undefined {
    const dot = token.lastIndexOf(".");
    if (dot <= 0) return undefined;
    const live = this.#live.get(token.slice(0, dot));
    return live && timingSafeEqual(live.secret, token.slice(dot + 1)) ? live.connection : undefined;
  }

  /**
   * A connection ended: keep its token for the window, if it still holds one.
   *
   * @param connection The connection.
   * @param now The time; the store's clock by default.
   * @returns The secret of the token kept, if any.
   */
  release(connection: Connection, now: number = this.#clock.now()): string | undefined {
    const live = this.#live.get(connection.id);
    if (live?.connection !== connection) return undefined;
    this.#live.delete(connection.id);
    this.#sweep(now);
    this.#ended.set(connection.id, {
      secret: live.secret,
      metadata: connection.metadata,
      expiresAt: now + this.#window,
      cost: live.cost,
    });
    this.#endedBytes += live.cost;
    while (this.#ended.size > this.#max || this.#endedBytes > this.#maxBytes) {
      this.#delete(this.#ended.keys().next().value!);
    }
    this.#arm();
    return live.secret;
  }

  /** Forgets everything (the server closed). */
  clear(): void {
    this.#live.clear();
    this.#ended.clear();
    this.#endedBytes = 0;
    this.#deadlines.set(this.#sweeper, undefined);
  }

  #delete(id: string): void {
    const entry = this.#ended.get(id);
    if (!entry) return;
    this.#ended.delete(id);
    this.#endedBytes -= entry.cost;
  }

  #sweep(now: number): void {
    for (const [id, entry] of this.#ended) {
      if (entry.expiresAt > now) break;
      this.#delete(id);
    }
    this.#arm();
  }

  /** The sweeper waits for the oldest entry to expire. */
  #arm(): void {
    const oldest = this.#ended.values().next().value;
    const at = oldest?.expiresAt;
    if (at === this.#sweeper.at && this.#sweeper.pending) return;
    this.#deadlines.set(this.#sweeper, at);
  }
}
