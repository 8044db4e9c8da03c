/**
 * Resume tokens shared by a cluster's instances in Redis, so that an agent that lands on
 * another instance after a failover gets its connection id back.
 *
 * | key | value | expires |
 * |---|---|---|
 * | `{prefix}resume:{id}` | `{sha256 of the secret} {metadata cost} {metadata JSON}` | `ttl + window` while the connection lives (each refresh extends it), `window` once it ended |
 *
 * Only a digest of the secret is kept: whoever reads Redis cannot resume anyone. Redeeming
 * compares and deletes in one script, so a token is redeemed once across the cluster. The
 * instance that issued a token keeps it in memory too, and its refresh re-creates the keys
 * Redis lost.
 *
 * @module
 */

import type { SharedRedeemed, SharedResumeTokens } from "../_resume.ts";
import type { RedisLike } from "./_registry.ts";

/** Tokens per refresh script. */
const REFRESH_BATCH = 1_000;

// KEYS: the token key. ARGV: digest. 'unknown', 'refused', or the kept cost and metadata.
const REDEEM = `
local value = redis.call('GET', KEYS[1])
if not value then return 'unknown' end
local space = string.find(value, ' ', 1, true)
if string.sub(value, 1, space - 1) ~= ARGV[1] then return 'refused' end
redis.call('DEL', KEYS[1])
return string.sub(value, space + 1)
`;

// KEYS: the token key. ARGV: digest, window. Shortens it to the window if it is still this token.
const ENDED = `
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`;

// KEYS: token keys. ARGV: lifetime, then per key its digest. Extends those still holding this
// instance's token; returns the indexes (1-based) of the missing ones.
const REFRESH = `
local missing = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value then
    missing[#missing + 1] = i
  elseif string.sub(value, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. ' ' then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return missing
`;

/** Options for {@linkcode RedisResumeTokens}. */
export interface RedisResumeTokensOptions {
  /** Key prefix. Default `"swaggersocket:"`. */
  prefix?: string;
  /** Milliseconds between the instance's refreshes, at most: how long a record outlives it. */
  ttl: number;
  /** The server's resume window in milliseconds. */
  window: number;
}

/** The resume tokens this instance issued, kept in Redis for the whole cluster. */
export class RedisResumeTokens implements SharedResumeTokens {
  readonly #redis: RedisLike;
  readonly #prefix: string;
  readonly #ttl: number;
  readonly #window: number;
  /** The live connections' records, by id: what a refresh re-creates. */
  readonly #live = new Map<string, Promise<string>>();

  /**
   * @param redis A connected client without an offline queue.
   * @param options The key prefix, the record lifetime and the resume window.
   */
  constructor(redis: RedisLike, options: RedisResumeTokensOptions) {
    this.#redis = redis;
    this.#prefix = options.prefix ?? "swaggersocket:";
    this.#ttl = options.ttl;
    this.#window = options.window;
  }

  /** Records a token just issued; a failure is repaired by the next refresh. */
  issued(id: string, secret: string, metadata: unknown, metadataCost: number): void {
    const record = digest(secret).then((hash) =>
      `${hash} ${metadataCost} ${JSON.stringify(metadata)}`
    );
    this.#live.set(id, record);
    record.then((value) => this.#set(id, value)).catch(() => {});
  }

  /** The connection ended: its token stays redeemable for the window, if it is still current. */
  ended(id: string, secret: string): void {
    this.#live.delete(id);
    digest(secret).then((hash) =>
      this.#redis.eval(ENDED, {
        keys: [this.#key(id)],
        arguments: [hash, String(this.#window)],
      })
    ).catch(() => {});
  }

  /** Redeems a token once, across the cluster. */
  async redeem(id: string, secret: string): Promise<SharedRedeemed> {
    const found = await this.#redis.eval(REDEEM, {
      keys: [this.#key(id)],
      arguments: [await digest(secret)],
    }) as string;
    if (found === "unknown" || found === "refused") return found;
    const space = found.indexOf(" ");
    return {
      metadataCost: Number(found.slice(0, space)),
      metadata: JSON.parse(found.slice(space + 1)),
    };
  }

  /**
   * Extends the live connections' records and re-creates those Redis lost.
   *
   * @throws {Error} If Redis cannot be reached.
   */
  async refresh(): Promise<void> {
    const live = [...this.#live];
    for (let start = 0; start < live.length; start += REFRESH_BATCH) {
      const batch = await Promise.all(
        live.slice(start, start + REFRESH_BATCH).map(async ([id, record]) =>
          [id, await record] as const
        ),
      );
      const missing = await this.#redis.eval(REFRESH, {
        keys: batch.map(([id]) => this.#key(id)),
        arguments: [
          String(this.#ttl + this.#window),
          ...batch.map(([, value]) => value.slice(0, value.indexOf(" "))),
        ],
      }) as number[];
      await Promise.all(missing.map((index) => {
        const [id, value] = batch[index - 1];
        // Still live: it may have ended while the script ran.
        return this.#live.has(id) ? this.#set(id, value) : undefined;
      }));
    }
  }

  async #set(id: string, value: string): Promise<void> {
    await this.#redis.eval("return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])", {
      keys: [this.#key(id)],
      arguments: [value, String(this.#ttl + this.#window)],
    });
  }

  #key(id: string): string {
    return `${this.#prefix}resume:${id}`;
  }
}

async function digest(secret: string): Promise<string> {
  const bytes = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret)),
  );
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
