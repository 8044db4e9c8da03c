/**
 * Which agents the gateway lets in, under which name, and how it finds them again.
 *
 * The rules, applied in the gateway's `authorize` hook:
 *
 * - A `name` in the metadata must be a valid agent name (see `_agent_names.ts`), else 4004
 *   `InvalidMetadata` (terminal). An agent may also send no name; it is then reached by id.
 * - With a credentials file, a name listed there needs its own token (4003 otherwise). The
 *   shared `token`, if set too, admits any name the file does not list; without it, only
 *   listed names get in. Without a file, the shared `token` (if set) admits any name.
 * - A name is held by one connection at a time. A claim on a held name takes it over only
 *   when both proved the same per-agent credential (the same agent, restarted or
 *   reconnected): the holder is closed at once with 4015 `Superseded`, after which its client
 *   does not reconnect. Any other claim is refused with 4014 `NameInUse`, which clients retry
 *   (the holder may be a half-open connection that the heartbeat is about to end).
 * - The token is hashed (which awaits) before anything is checked; the check and the claim
 *   then happen in one synchronous step, so of two simultaneous claims exactly one wins.
 * - A reload of the credentials file swaps the table and closes, with 4003 (terminal), every
 *   holder whose entry went away or changed (and, with a shared token, every holder admitted
 *   by it whose name the file now lists).
 *
 * @module
 */

import type { Logger } from "../types.ts";
import { ClientRefusedError } from "../errors.ts";
import { CloseCode } from "../protocol/close_codes.ts";
import { agentNameProblem, isConnectionIdShaped, NameRegistry } from "./_agent_names.ts";
import {
  type CredentialsTable,
  readCredentialsFile,
  readCredentialsFileSync,
  tokenDigest,
} from "./_credentials.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";

/** What the admission needs of a connection (a `Connection` fits). */
export interface AdmittedConnection {
  /** The connection id; `""` until the handshake completes. */
  readonly id: string;
  /** Whether it has ended. */
  readonly isClosed: boolean;
  /** Resolves when the connection has ended, opened or not. */
  readonly closed: Promise<unknown>;
  /** Closes the connection. */
  close(options: { timeout: number; code: number; reason: string }): Promise<void>;
}

/** Options for {@linkcode AgentAdmission}. */
export interface AgentAdmissionOptions {
  /** The shared token, if agents may present one. */
  token?: string;
  /** The credentials file, if there is one. */
  credentialsFile?: string;
  /** Where takeovers and revocations are logged. */
  logger?: Logger;
}

/** What {@linkcode AgentAdmission.reloadCredentials} did. */
export interface CredentialsReload {
  /** How many names the file lists now. */
  names: number;
  /** How many connected agents were closed (4003) because their entry went away or changed. */
  revoked: number;
}

/** How an agent proved itself. */
type Proof = "credential" | "shared" | "open";

/**
 * The gateway's admission of agents: checks names and tokens, records who holds which
 * name, finds agents by id or name, and reloads the credentials file.
 *
 * @example Usage
 * ```ts ignore
 * const admission = new AgentAdmission<Connection>({ credentialsFile: "agents.credentials" });
 * const server = new WebSocketServer({ authorize: (context) => admission.authorize(context) });
 * const agent = admission.find("printer", (id) => server.connection(id));
 * ```
 */
export class AgentAdmission<C extends AdmittedConnection> {
  readonly #names = new NameRegistry<C>();
  readonly #file: string | undefined;
  readonly #shared: Promise<Uint8Array> | undefined;
  readonly #logger: Logger | undefined;
  #table: CredentialsTable | undefined;
  #reloading: Promise<unknown> = Promise.resolve();

  /**
   * Reads the credentials file, if there is one.
   *
   * @param options The shared token, the credentials file and the logger.
   * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
   */
  constructor(options: AgentAdmissionOptions) {
    this.#file = options.credentialsFile;
    this.#table = this.#file === undefined ? undefined : readCredentialsFileSync(this.#file);
    this.#shared = options.token === undefined ? undefined : tokenDigest(options.token);
    this.#logger = options.logger;
  }

  /**
   * Decides on an agent's hello, as the server's `authorize` hook: refuses by throwing, or
   * claims the agent's name for `connection` (released when it ends).
   *
   * @param context The hello's metadata and the connection being decided on.
   * @returns `true` when the agent is let in.
   * @throws {ClientRefusedError} 4004 for an invalid name, 4003 for a missing or wrong token,
   *   4014 when the name is held by another connection.
   */
  async authorize(context: { metadata: unknown; connection: C; resumes?: C }): Promise<true> {
    const { metadata, connection, resumes } = context;
    const name = claimedName(metadata);
    const token = tokenOf(metadata);
    const digest = token === undefined ? undefined : await tokenDigest(token);
    const shared = await this.#shared;
    // Nothing awaits from here on: the table is read and the name claimed in one step.
    const proof = this.#prove(name, digest, shared);
    if (proof === undefined) throw new ClientRefusedError(CloseCode.Unauthorized, "Unauthorized");
    // A client that hung up while its token was hashed claims nothing (the server drops it).
    if (name === undefined || connection.isClosed) return true;
    const credential = proof === "credential" ? digest : undefined;
    const claim = this.#names.claim(
      name,
      connection,
      credential,
      // A client resuming the holder's connection is that agent, back on a new socket.
      (current) =>
        current.holder === resumes ||
        (current.credential !== undefined && credential !== undefined &&
          timingSafeEqual(current.credential, credential)),
    );
    if (!claim.claimed) throw new ClientRefusedError(CloseCode.NameInUse, "Agent name in use");
    connection.closed.then(() => this.#names.release(name, connection));
    // The server closes a resumed connection itself (4012), and its client is this one.
    if (claim.replaced && claim.replaced !== resumes) {
      const old = claim.replaced;
      this.#logger?.info("gateway: agent replaced by a newer connection", name, old.id);
      old.close({
        timeout: 0,
        code: CloseCode.Superseded,
        reason: "Replaced by a newer connection with the same credentials",
      });
    }
    return true;
  }

  /**
   * Finds a connected agent: an id-shaped key (any case) only by id, any other key only by
   * name. An agent still in its handshake is not found.
   *
   * @param key The `{id-or-name}` of `/agents/{id-or-name}/…`.
   * @param lookup The server's lookup of open connections by id.
   * @returns The agent's connection, if it is open.
   */
  find(key: string, lookup: (id: string) => C | undefined): C | undefined {
    if (isConnectionIdShaped(key)) return lookup(key.toUpperCase());
    const holder = this.#names.holder(key);
    if (holder === undefined || holder.id === "" || lookup(holder.id) !== holder) return undefined;
    return holder;
  }

  /**
   * Reads the credentials file again. On success the new table applies at once, and agents
   * it no longer admits under their name are closed with 4003 `Unauthorized`; on failure
   * the old table stays. Reloads run one at a time.
   *
   * @returns How many names the file lists, and how many agents were closed.
   * @throws {TypeError} If there is no credentials file.
   * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
   */
  reloadCredentials(): Promise<CredentialsReload> {
    const file = this.#file;
    if (file === undefined) {
      return Promise.reject(
        new TypeError("Cannot reload credentials: the gateway has no credentials file"),
      );
    }
    const reload = this.#reloading.then(async () => {
      const table = await readCredentialsFile(file);
      // Nothing awaits from here on: the new table and the revocations take effect together.
      this.#table = table;
      let revoked = 0;
      for (const { name, holder, credential } of this.#names.entries()) {
        const admitted = credential !== undefined
          ? table.verify(name, credential)
          : !table.has(name);
        if (admitted) continue;
        this.#names.release(name, holder);
        revoked++;
        this.#logger?.info("gateway: agent's credentials revoked", name, holder.id);
        holder.close({ timeout: 0, code: CloseCode.Unauthorized, reason: "Credentials revoked" });
      }
      return { names: table.size, revoked };
    });
    this.#reloading = reload.catch(() => {});
    return reload;
  }

  #prove(
    name: string | undefined,
    digest: Uint8Array | undefined,
    shared: Uint8Array | undefined,
  ): Proof | undefined {
    const table = this.#table;
    if (table !== undefined && name !== undefined && table.has(name)) {
      return digest !== undefined && table.verify(name, digest) ? "credential" : undefined;
    }
    if (shared !== undefined) {
      return digest !== undefined && timingSafeEqual(digest, shared) ? "shared" : undefined;
    }
    return table === undefined ? "open" : undefined;
  }
}

/** The `name` in an agent's metadata: `undefined` when there is none; refused when invalid. */
function claimedName(metadata: unknown): string | undefined {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    return undefined;
  }
  const name = (metadata as { name?: unknown }).name;
  if (name === undefined || name === null) return undefined;
  if (typeof name !== "string") {
    throw new ClientRefusedError(CloseCode.InvalidMetadata, "Invalid agent name: not a string");
  }
  const problem = agentNameProblem(name);
  if (problem) {
    throw new ClientRefusedError(CloseCode.InvalidMetadata, `Invalid agent name: ${problem}`);
  }
  return name;
}

/** The `token` in an agent's metadata, if it is a string. */
function tokenOf(metadata: unknown): string | undefined {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    return undefined;
  }
  const token = (metadata as { token?: unknown }).token;
  return typeof token === "string" ? token : undefined;
}
