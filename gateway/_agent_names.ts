/**
 * Agent names at the gateway: what a name may look like, and who holds which name.
 *
 * Names and connection ids are separate namespaces. A name is a safe single path segment
 * (`^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$`, case-sensitive) that does not have the shape of
 * a connection id (26 Crockford base32 characters, any case), so that `/agents/{key}` is
 * never ambiguous: an id-shaped key is looked up only as an id, any other only as a name.
 *
 * {@linkcode NameRegistry} records, for each name, the one connection that holds it and the
 * per-agent credential it proved (if any). A claim is checked and recorded in one
 * synchronous step, so of two agents claiming a name at the same moment exactly one holds
 * it afterwards; whether a claim may take a held name over is the caller's rule.
 *
 * @module
 */

/** What an agent name must match: 1–128 characters, a safe single path segment. */
export const AGENT_NAME_PATTERN: RegExp = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;

/**
 * The shape of a connection id: a ULID, 26 characters of Crockford's base32 (digits and
 * letters but I, L, O and U), in any case.
 */
export const CONNECTION_ID_PATTERN: RegExp = /^[0-9A-HJKMNP-TV-Z]{26}$/i;

/**
 * Whether `key` has the shape of a connection id (and so is never an agent name).
 *
 * @param key A name or an id, as it appears in `/agents/{key}`.
 * @returns Whether it is 26 characters of Crockford base32, in any case.
 */
export function isConnectionIdShaped(key: string): boolean {
  return CONNECTION_ID_PATTERN.test(key);
}

/**
 * What is wrong with an agent name, if anything.
 *
 * @param name The name an agent claims (or a credentials file lists).
 * @returns A short description of the problem, or `undefined` when the name is valid.
 */
export function agentNameProblem(name: string): string | undefined {
  if (!AGENT_NAME_PATTERN.test(name)) {
    return "a name is 1-128 letters, digits, '.', '_', '~' or '-', starting with a letter or digit";
  }
  if (isConnectionIdShaped(name)) return "a name must not look like a connection id (a ULID)";
  return undefined;
}

/** One name's holder, as {@linkcode NameRegistry.entries} lists it. */
export interface NameEntry<T> {
  /** The name. */
  name: string;
  /** Whatever holds it (at the gateway, a `Connection`, open or still handshaking). */
  holder: T;
  /** The digest of the per-agent credential it proved, or `undefined` if it proved none. */
  credential: Uint8Array | undefined;
}

/** The outcome of {@linkcode NameRegistry.claim}. */
export type ClaimResult<T> =
  /** The name is the claimant's now; `replaced` is the holder it took over from, if any. */
  | { claimed: true; replaced?: T }
  /** The name stays with `holder`. */
  | { claimed: false; holder: T };

/**
 * Who holds which name. A name has at most one holder; a claim on a held name takes it over
 * only if the caller's rule says so (at the gateway: both proved the same per-agent
 * credential, so it is the same agent, restarted or reconnected).
 *
 * @example Usage
 * ```ts
 * import { NameRegistry } from "./_agent_names.ts";
 *
 * const names = new NameRegistry<object>();
 * const first = {};
 * names.claim("printer", first, undefined, () => false); // { claimed: true }
 * names.claim("printer", {}, undefined, () => false); // { claimed: false, holder: first }
 * ```
 */
export class NameRegistry<T> {
  readonly #held = new Map<string, { holder: T; credential: Uint8Array | undefined }>();

  /**
   * Claims `name` for `holder`: checked and recorded in one synchronous step.
   *
   * @param name A valid agent name (see {@linkcode agentNameProblem}).
   * @param holder What will hold it.
   * @param credential The digest of the per-agent credential the claimant proved, if any.
   * @param mayReplace Called when another holds the name: whether the claimant takes it over.
   * @returns Whether the claim succeeded, and whom it replaced or who keeps the name.
   */
  claim(
    name: string,
    holder: T,
    credential: Uint8Array | undefined,
    mayReplace: (current: NameEntry<T>) => boolean,
  ): ClaimResult<T> {
    const current = this.#held.get(name);
    const other = current !== undefined && current.holder !== holder;
    if (other && !mayReplace({ name, ...current })) {
      return { claimed: false, holder: current.holder };
    }
    this.#held.set(name, { holder, credential });
    return other ? { claimed: true, replaced: current.holder } : { claimed: true };
  }

  /**
   * Gives `name` up, if `holder` still holds it (a holder that was replaced gives up nothing).
   *
   * @param name The name.
   * @param holder Its holder.
   * @returns Whether the name was released.
   */
  release(name: string, holder: T): boolean {
    if (this.#held.get(name)?.holder !== holder) return false;
    this.#held.delete(name);
    return true;
  }

  /**
   * Who holds `name`.
   *
   * @param name The name.
   * @returns Its holder, if any.
   */
  holder(name: string): T | undefined {
    return this.#held.get(name)?.holder;
  }

  /**
   * Every held name.
   *
   * @returns A snapshot: changing the registry does not change it.
   */
  entries(): NameEntry<T>[] {
    return [...this.#held].map(([name, { holder, credential }]) => ({ name, holder, credential }));
  }

  /** How many names are held. */
  get size(): number {
    return this.#held.size;
  }
}
