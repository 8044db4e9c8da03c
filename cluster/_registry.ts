/**
 * Who holds which agent, across a cluster of gateways, in Redis (or Valkey; standalone, not
 * Redis Cluster). Each gateway instance has a fresh id per start and an internal URL. What it
 * writes:
 *
 * | key | value | expires |
 * |---|---|---|
 * | `{prefix}instances` | sorted set: instance id → expiry (Redis time, ms) | pruned by each refresh |
 * | `{prefix}instance:{instance}` | the instance's internal URL | `ttl` |
 * | `{prefix}agents:{instance}` | JSON array of its agents as `GET /agents` lists them | `ttl` |
 * | `{prefix}id:{connection}` | the instance holding that connection | `ttl` |
 * | `{prefix}name:{name}` | `{instance} {connection}` holding that name | `ttl` |
 *
 * Every write is made by the holder and is rebuilt by its next {@linkcode ClusterRegistry.refresh}
 * (so a Redis restart or flush loses nothing for long); releases compare before they delete, so
 * an instance never deletes what another wrote. Each operation is one script (atomic) or one
 * command; none scans the keyspace.
 *
 * @module
 */

/** The few commands of a Redis client used here (`@redis/client`'s `createClient()` fits). */
export interface RedisLike {
  /** Runs a Lua script (`EVAL`) with these keys and arguments; resolves with its reply. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** Where an agent is held. */
export interface AgentOwner {
  /** The instance holding it. */
  instance: string;
  /** Its connection id. */
  connection: string;
  /** The instance's internal URL, if the instance is alive. */
  url: string | undefined;
}

/** One agent an instance holds, for {@linkcode ClusterRegistry.refresh}. */
export interface HeldAgent {
  /** The connection id. */
  id: string;
  /** The name it claimed, if any. */
  name: string | null;
}

/** Options for {@linkcode ClusterRegistry}. */
export interface ClusterRegistryOptions {
  /** This instance's id (a fresh ULID per start). */
  instance: string;
  /** Where other instances reach this one (its internal HTTP base URL). */
  url: string;
  /** Key prefix. Default `"swaggersocket:"`. */
  prefix?: string;
  /** Milliseconds an entry lives without a refresh. Default 15 000. */
  ttl?: number;
}

/** Agents per refresh script: bounds how long one script blocks Redis. */
const REFRESH_BATCH = 1_000;

// KEYS: instance key, id key, [name key]. ARGV: instance, connection, ttl, url. Returns the
// name's previous holder. The instance's URL is written with its first agent, so that no
// lookup finds an agent on an instance that has not refreshed yet and takes it for stopped.
const CLAIM = `
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
if #KEYS < 3 then return false end
local previous = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return previous
`;

// KEYS: id key, [name key]. ARGV: instance, connection. Deletes only what is still this holder's.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if #KEYS > 1 and redis.call('GET', KEYS[2]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return 1
`;

// KEYS: instances, instance key, agents key, then per agent: id key, name key (or the id key
// again when it has none). ARGV: instance, url, ttl, agents JSON (or '' to leave it), then per
// agent: connection, has name (1/0). Extends what is still this instance's, re-creates what
// Redis lost, and returns the connections whose name or id another instance now holds.
const REFRESH = `
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
redis.call('ZADD', KEYS[1], ms + ttl, ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl) else redis.call('PEXPIRE', KEYS[3], ttl) end
local lost = {}
for i = 4, #KEYS, 2 do
  local n = (i - 4) / 2
  local connection = ARGV[5 + 2 * n]
  local held = true
  local id = redis.call('GET', KEYS[i])
  if id and id ~= ARGV[1] then held = false end
  if held and ARGV[6 + 2 * n] == '1' then
    local mine = ARGV[1] .. ' ' .. connection
    local name = redis.call('GET', KEYS[i + 1])
    if name and name ~= mine then held = false else redis.call('SET', KEYS[i + 1], mine, 'PX', ttl) end
  end
  if held then redis.call('SET', KEYS[i], ARGV[1], 'PX', ttl) else lost[#lost + 1] = connection end
end
return lost
`;

// KEYS: the name or id key. ARGV: the instance key prefix. Returns value and the owner's URL.
const LOOKUP = `
local value = redis.call('GET', KEYS[1])
if not value then return false end
local instance = string.match(value, '^(%S+)')
return { value, redis.call('GET', ARGV[1] .. instance) or '' }
`;

// KEYS: instances. ARGV: agents key prefix. Returns each live instance's agents JSON.
const LIST = `
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local out = {}
for _, instance in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ms, '+inf')) do
  local agents = redis.call('GET', ARGV[1] .. instance)
  if agents then out[#out + 1] = agents end
end
return out
`;

// KEYS: instances, instance key, agents key. ARGV: instance.
const LEAVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
`;

/** This instance's view of the cluster's ownership records. */
export class ClusterRegistry {
  readonly #redis: RedisLike;
  readonly #instance: string;
  readonly #url: string;
  readonly #prefix: string;
  readonly #ttl: number;

  /**
   * @param redis A connected client. Give it no offline queue (`disableOfflineQueue`), so that
   *   a call during an outage fails at once rather than waiting for Redis.
   * @param options This instance's id and URL, the key prefix and the entries' lifetime.
   */
  constructor(redis: RedisLike, options: ClusterRegistryOptions) {
    this.#redis = redis;
    this.#instance = options.instance;
    this.#url = options.url;
    this.#prefix = options.prefix ?? "swaggersocket:";
    this.#ttl = options.ttl ?? 15_000;
    if (!(this.#ttl >= 1_000) || !Number.isFinite(this.#ttl)) {
      throw new RangeError(`Invalid ttl: ${this.#ttl} must be at least 1000 ms`);
    }
    if (/\s/.test(this.#instance) || this.#instance === "") {
      throw new TypeError(`Invalid instance id: ${JSON.stringify(this.#instance)}`);
    }
  }

  /** This instance's id. */
  get instance(): string {
    return this.#instance;
  }

  /**
   * Records that this instance holds a connection and, if it has one, its name; the name's
   * previous holder (on any instance) is returned so that it can be told to close.
   *
   * @param agent The connection id and name.
   * @returns The previous holder of the name, or `undefined`.
   */
  async claim(agent: HeldAgent): Promise<{ instance: string; connection: string } | undefined> {
    const previous = await this.#redis.eval(CLAIM, {
      keys: [`${this.#prefix}instance:${this.#instance}`, ...this.#agentKeys(agent)],
      arguments: [this.#instance, agent.id, String(this.#ttl), this.#url],
    });
    return typeof previous === "string" ? parseHolder(previous) : undefined;
  }

  /**
   * Forgets a connection this instance held, unless another has taken its name or id since.
   *
   * @param agent The connection id and name.
   */
  async release(agent: HeldAgent): Promise<void> {
    await this.#redis.eval(RELEASE, {
      keys: this.#agentKeys(agent),
      arguments: [this.#instance, agent.id],
    });
  }

  /**
   * Extends this instance's records, re-creates any that Redis lost, and publishes its agents'
   * listing. Run it well within `ttl` (a third of it, say).
   *
   * @param held Every connection this instance holds now.
   * @param listing Its agents as `GET /agents` lists them, or `undefined` to keep the last.
   * @returns The connections whose name or id another instance holds now: close them.
   */
  async refresh(held: HeldAgent[], listing?: unknown[]): Promise<string[]> {
    const lost: string[] = [];
    const json = listing === undefined ? "" : JSON.stringify(listing);
    for (let start = 0; start === 0 || start < held.length; start += REFRESH_BATCH) {
      const batch = held.slice(start, start + REFRESH_BATCH);
      const keys = [
        `${this.#prefix}instances`,
        `${this.#prefix}instance:${this.#instance}`,
        `${this.#prefix}agents:${this.#instance}`,
      ];
      const args = [this.#instance, this.#url, String(this.#ttl), start === 0 ? json : ""];
      for (const agent of batch) {
        const [idKey, nameKey] = this.#agentKeys(agent);
        keys.push(idKey, nameKey ?? idKey);
        args.push(agent.id, nameKey ? "1" : "0");
      }
      const result = await this.#redis.eval(REFRESH, { keys, arguments: args });
      lost.push(...(result as string[]));
    }
    return lost;
  }

  /**
   * Where an agent is held: by name, or by connection id.
   *
   * @param key `{ name }` or `{ id }`.
   * @returns Its holder, or `undefined` if none is recorded.
   */
  async lookup(key: { name: string } | { id: string }): Promise<AgentOwner | undefined> {
    const redisKey = "name" in key
      ? `${this.#prefix}name:${key.name}`
      : `${this.#prefix}id:${key.id}`;
    const found = await this.#redis.eval(LOOKUP, {
      keys: [redisKey],
      arguments: [`${this.#prefix}instance:`],
    }) as [string, string] | null;
    if (!found) return undefined;
    const [value, url] = found;
    const holder = "name" in key ? parseHolder(value) : { instance: value, connection: key.id };
    return { ...holder, url: url === "" ? undefined : url };
  }

  /**
   * Where an instance is reached, while it is alive.
   *
   * @param instance Its id.
   * @returns Its internal URL, or `undefined` once its record has lapsed.
   */
  async urlOf(instance: string): Promise<string | undefined> {
    const url = await this.#redis.eval("return redis.call('GET', KEYS[1])", {
      keys: [`${this.#prefix}instance:${instance}`],
      arguments: [],
    });
    return typeof url === "string" ? url : undefined;
  }

  /**
   * Every live instance's agents, as each last published them.
   *
   * @returns The listings, concatenated.
   */
  async agents(): Promise<unknown[]> {
    const lists = await this.#redis.eval(LIST, {
      keys: [`${this.#prefix}instances`],
      arguments: [`${this.#prefix}agents:`],
    }) as string[];
    return lists.flatMap((json) => JSON.parse(json) as unknown[]);
  }

  /** Removes this instance from the live set and its listing (a clean shutdown). */
  async leave(): Promise<void> {
    await this.#redis.eval(LEAVE, {
      keys: [
        `${this.#prefix}instances`,
        `${this.#prefix}instance:${this.#instance}`,
        `${this.#prefix}agents:${this.#instance}`,
      ],
      arguments: [this.#instance],
    });
  }

  #agentKeys(agent: HeldAgent): string[] {
    const keys = [`${this.#prefix}id:${agent.id}`];
    if (agent.name !== null) keys.push(`${this.#prefix}name:${agent.name}`);
    return keys;
  }
}

function parseHolder(value: string): { instance: string; connection: string } {
  const space = value.indexOf(" ");
  return { instance: value.slice(0, space), connection: value.slice(space + 1) };
}
