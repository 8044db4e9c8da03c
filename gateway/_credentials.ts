/**
 * The gateway's credentials file: which agent name goes with which token, by the token's
 * SHA-256.
 *
 * One entry per line, `NAME sha256:HEX`: the agent's name, blanks (spaces or tabs), then
 * `sha256:` and the 64 hex digits of the SHA-256 of the agent's token (its UTF-8 bytes, no
 * trailing newline). `#` starts a comment, to the end of the line; blank lines are ignored.
 * A name appears at most once. Make an entry with `gateway.ts --hash-token NAME` (the token
 * on standard input) or with standard tools:
 *
 * ```sh
 * TOKEN=$(openssl rand -hex 32)
 * printf '%s sha256:%s\n' printer "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" >> agents.credentials
 * ```
 *
 * A plain SHA-256 suffices because tokens are random secrets, not passwords: a 256-bit
 * token cannot be guessed from its hash, and a slow hash would only make every handshake
 * (which a stranger can start) cost the gateway more. Use long random tokens.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { agentNameProblem } from "./_agent_names.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";

/** Bytes in a SHA-256 digest. */
const DIGEST_BYTES = 32;

/**
 * A credentials file could not be read, or a line of it is not an entry. `line` says which
 * (1-based), when the file was read.
 *
 * @example Usage
 * ```ts
 * import { CredentialsFileError, parseCredentials } from "./_credentials.ts";
 *
 * try {
 *   parseCredentials("printer sha256:abc\n", "agents.credentials");
 * } catch (error) {
 *   if (error instanceof CredentialsFileError) console.log(error.line); // 1
 * }
 * ```
 */
export class CredentialsFileError extends Error {
  /** The file (or whatever `source` the text was parsed as). */
  readonly path: string;
  /** The line at fault, 1-based; `undefined` when the file could not be read at all. */
  readonly line: number | undefined;

  /**
   * Creates the error.
   *
   * @param path The file.
   * @param line The line at fault, or `undefined`.
   * @param problem What is wrong.
   * @param options The usual error options, such as `cause`.
   */
  constructor(path: string, line: number | undefined, problem: string, options?: ErrorOptions) {
    super(`${path}${line === undefined ? "" : `, line ${line}`}: ${problem}`, options);
    this.name = "CredentialsFileError";
    this.path = path;
    this.line = line;
  }
}

/** A parsed credentials file: each name's token digest. */
export class CredentialsTable {
  readonly #digests: ReadonlyMap<string, Uint8Array>;

  /**
   * @param digests Each name's SHA-256 token digest.
   */
  constructor(digests: ReadonlyMap<string, Uint8Array>) {
    this.#digests = digests;
  }

  /** How many names it lists. */
  get size(): number {
    return this.#digests.size;
  }

  /**
   * Whether it lists `name`.
   *
   * @param name An agent name.
   * @returns `true` if the file has an entry for it.
   */
  has(name: string): boolean {
    return this.#digests.has(name);
  }

  /**
   * Whether `digest` is the token digest listed for `name` (compared in constant time).
   *
   * @param name An agent name.
   * @param digest The SHA-256 of the token the agent presented.
   * @returns `false` for unlisted names and other tokens.
   */
  verify(name: string, digest: Uint8Array): boolean {
    const expected = this.#digests.get(name);
    return expected !== undefined && timingSafeEqual(digest, expected);
  }
}

/**
 * Parses the text of a credentials file.
 *
 * @example Usage
 * ```ts
 * import { parseCredentials } from "./_credentials.ts";
 *
 * const table = parseCredentials(
 *   "# name  sha256 of the token\nprinter sha256:" + "ab".repeat(32) + "\n",
 *   "agents.credentials",
 * );
 * console.log(table.has("printer")); // true
 * ```
 *
 * @param text The file's text (UTF-8; a byte order mark and CRLF line ends are fine).
 * @param path What errors call the file.
 * @returns The table.
 * @throws {CredentialsFileError} For the first line that is not an entry, a comment or
 *   blank, and for a name listed twice.
 */
export function parseCredentials(text: string, path: string): CredentialsTable {
  const digests = new Map<string, Uint8Array>();
  const lineOf = new Map<string, number>();
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i].replace(/#.*$/, "").trim();
    if (content === "") continue;
    const fields = content.split(/[ \t]+/);
    if (fields.length !== 2) {
      throw new CredentialsFileError(
        path,
        line,
        `expected "NAME sha256:HEX", found ${fields.length} field${fields.length === 1 ? "" : "s"}`,
      );
    }
    const [name, hash] = fields;
    const problem = agentNameProblem(name);
    if (problem) throw new CredentialsFileError(path, line, `invalid name "${name}": ${problem}`);
    const first = lineOf.get(name);
    if (first !== undefined) {
      throw new CredentialsFileError(
        path,
        line,
        `"${name}" is listed twice (first on line ${first})`,
      );
    }
    const hex = hash.match(/^sha256:([0-9a-fA-F]{64})$/)?.[1];
    if (hex === undefined) {
      throw new CredentialsFileError(
        path,
        line,
        hash.toLowerCase().startsWith("sha256:")
          ? `the SHA-256 of "${name}" must be 64 hex digits`
          : `the hash of "${name}" must be "sha256:" and 64 hex digits`,
      );
    }
    digests.set(name, fromHex(hex));
    lineOf.set(name, line);
  }
  return new CredentialsTable(digests);
}

/**
 * Reads and parses a credentials file, synchronously (for startup).
 *
 * @param path The file.
 * @returns The table.
 * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
 */
export function readCredentialsFileSync(path: string): CredentialsTable {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new CredentialsFileError(path, undefined, `cannot read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseCredentials(text, path);
}

/**
 * Reads and parses a credentials file (for reloads).
 *
 * @param path The file.
 * @returns The table.
 * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
 */
export async function readCredentialsFile(path: string): Promise<CredentialsTable> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new CredentialsFileError(path, undefined, `cannot read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseCredentials(text, path);
}

/**
 * The SHA-256 of a token's UTF-8 bytes.
 *
 * @param token The token.
 * @returns Its 32-byte digest.
 */
export async function tokenDigest(token: string): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(token);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/**
 * A credentials file line for `name` and `token`: `NAME sha256:HEX`.
 *
 * @example Usage
 * ```ts
 * import { credentialLine } from "./_credentials.ts";
 *
 * console.log(await credentialLine("printer", "correct horse battery staple"));
 * ```
 *
 * @param name The agent's name.
 * @param token Its token.
 * @returns The line, without a newline.
 * @throws {TypeError} If the name is not a valid agent name or the token is empty.
 */
export async function credentialLine(name: string, token: string): Promise<string> {
  const problem = agentNameProblem(name);
  if (problem) throw new TypeError(`Invalid agent name "${name}": ${problem}`);
  if (token.length === 0) throw new TypeError("Invalid token: must not be empty");
  return `${name} sha256:${toHex(await tokenDigest(token))}`;
}

function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(DIGEST_BYTES);
  for (let i = 0; i < DIGEST_BYTES; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
