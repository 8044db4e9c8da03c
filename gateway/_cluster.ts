/**
 * A gateway as one instance of a cluster on Redis: it records which agents it holds (so that
 * the others can find them), keeps those records alive, gives up an agent whose name another
 * instance has taken since, and lists every instance's agents. The records themselves are
 * `cluster/_registry.ts`'s.
 *
 * A request for an agent held by another instance goes there over this instance's link to
 * it: a swaggersocket connection to its `/cluster/connect`, authenticated once by the
 * cluster's secret, carrying many requests at once, streamed both ways. What arrives over a
 * link is never forwarded again.
 *
 * Resume tokens are shared too (`cluster/_resume_tokens.ts`): an agent that lands on another
 * instance after a failover keeps its connection id.
 *
 * An instance that has lost the agent since answers 421 with {@linkcode MOVED_HEADER}; the
 * first instance then looks again and retries once.
 *
 * @module
 */

import type { AnswerParts } from "../connection/_answer_parts.ts";
import { CANCEL, type Cancel } from "../connection/_cancel.ts";
import type { CancellableForward } from "../connection/_request_parts.ts";
import { WebSocketClient } from "../client.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";
import { checkCaCerts } from "../_tls.ts";
import { newId } from "../_random.ts";
import { isConnectionIdShaped } from "./_agent_names.ts";
import type { Connection } from "../connection.ts";
import type { WebSocketServer } from "../server.ts";
import type { Limits, Logger } from "../types.ts";
import { EventType } from "../types.ts";
import { CloseCode } from "../protocol/close_codes.ts";
import { ClusterRegistry, type HeldAgent, type RedisLike } from "../cluster/_registry.ts";
import { RedisResumeTokens } from "../cluster/_resume_tokens.ts";
import { type AgentInfo, describeAgent, nameOf } from "./_agent_info.ts";
import { newestOnce } from "./_agent_list.ts";

/** How a gateway joins a cluster. */
export interface ClusterOptions {
  /**
   * A connected Redis (or Valkey) client, e.g. `@redis/client`'s
   * `createClient({ url, disableOfflineQueue: true })` after `connect()`: without an offline
   * queue a call during an outage fails at once instead of waiting.
   */
  redis: RedisLike;
  /** Where the other instances reach this one: its internal HTTP base URL. Default: its URL. */
  advertise?: string;
  /** The secret the instances present to each other when one forwards to another. */
  secret: string;
  /** Milliseconds a record lives without a refresh (refreshed every third of it). Default 15 000. */
  ttl?: number;
  /** Key prefix, to share one Redis between clusters. Default `"swaggersocket:"`. */
  prefix?: string;
  /**
   * CA certificates (PEM text) to trust, besides the default roots, when this instance dials
   * another's `https` URL: for a cluster whose certificates come from a private CA. Default:
   * the default roots only.
   */
  caCerts?: string[];
}

/** This instance's part in the cluster. */
export class ClusterMembership {
  readonly registry: ClusterRegistry;
  readonly #server: WebSocketServer;
  readonly #logger: Logger | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #secret: string;
  readonly #caCerts: string[] | undefined;
  readonly #linkLimits: Limits;
  readonly #tokens: RedisResumeTokens;
  /** Agents connected here and not yet recorded in Redis. */
  readonly #unclaimed = new Set<Connection>();
  /** Agents recorded in Redis as held here. */
  readonly #claimed = new Set<Connection>();
  /** Owners looked up lately, oldest first: see {@linkcode ownerOf}. */
  readonly #owners = new Map<string, { url: string; until: number }>();
  /** This instance's links to the others, by base URL. */
  readonly #links = new Map<string, WebSocketClient>();
  #refreshing: Promise<void> | undefined;
  /** A refresh was asked for while one ran: it runs once more, to see what changed since. */
  #again = false;

  /**
   * Joins: records this instance, and its agents as they come and go.
   *
   * @param server The agents' server.
   * @param options The cluster's Redis and this instance's URL.
   * @param url The gateway's URL.
   * @param tokens The server's shared resume tokens (see {@linkcode sharedResumeTokens}).
   * @param linkLimits The limits of the links this instance dials (see {@linkcode clusterLinkLimits}).
   * @param logger Where failures are logged.
   */
  constructor(
    server: WebSocketServer,
    options: ClusterOptions,
    url: string,
    tokens: RedisResumeTokens,
    linkLimits: Limits,
    logger: Logger | undefined,
  ) {
    const ttl = options.ttl ?? DEFAULT_TTL;
    if (typeof options.secret !== "string" || options.secret.length === 0) {
      throw new TypeError("Invalid cluster.secret: must be a non-empty string");
    }
    this.#server = server;
    this.#logger = logger;
    this.#secret = options.secret;
    // Checked here, not at the first hop: a bad certificate is a startup error.
    this.#caCerts = options.caCerts && checkCaCerts(options.caCerts, "cluster.caCerts");
    this.#tokens = tokens;
    this.#linkLimits = linkLimits;
    this.registry = new ClusterRegistry(options.redis, {
      instance: newId(),
      url: options.advertise ?? url,
      ttl,
      prefix: options.prefix,
    });
    this.#timer = setInterval(() => void this.refresh(), ttl / 3);
    // The records come back at the next refresh; the timer must not keep a process alive.
    (this.#timer as { unref?: () => void }).unref?.();
    void this.#watch();
  }

  /**
   * Extends this instance's records (re-creating what Redis lost) and closes the agents whose
   * name or id another instance holds now (with 4015 `Superseded`: the newer one won).
   *
   * @returns Resolves when done; a Redis failure is logged, not thrown.
   */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false;
        await this.#refreshOnce();
      } while (this.#again);
    })().finally(() => this.#refreshing = undefined);
    return this.#refreshing;
  }

  async #refreshOnce(): Promise<void> {
    // Claimed first, so that a refresh never finds a new agent's name still held by the
    // connection it replaces. A claim that fails (Redis away) is tried again next time.
    const claims = await Promise.allSettled(
      [...this.#unclaimed].map(async (connection) => {
        const previous = await this.registry.claim(held(connection));
        if (previous && previous.instance !== this.registry.instance) {
          void this.#tellSuperseded(previous.instance);
        }
        if (!this.#unclaimed.delete(connection)) {
          // It closed while being claimed.
          return await this.registry.release(held(connection));
        }
        this.#claimed.add(connection);
        this.#logger?.debug("agent recorded in the cluster", { id: connection.id });
      }),
    );
    const failed = claims.filter((claim) => claim.status === "rejected");
    if (failed.length > 0) {
      this.#logger?.warn("cluster claims failed", {
        agents: failed.length,
        error: (failed[0] as PromiseRejectedResult).reason,
      });
    }
    const connections = this.#server.connections();
    try {
      const lost = await this.registry.refresh(
        connections.filter((connection) => this.#claimed.has(connection)).map(held),
        connections.map(describeAgent),
      );
      for (const id of lost) {
        this.#logger?.warn("agent taken by another instance", { id });
        void this.#server.connection(id)?.close({
          timeout: 0,
          code: CloseCode.Superseded,
          reason: "Another gateway instance holds this agent",
        });
      }
      await this.#tokens.refresh();
    } catch (error) {
      this.#logger?.warn("cluster refresh failed", error);
    }
  }

  /**
   * Asks the instance that held a name before this one to refresh now, rather than at its
   * next turn: it then finds the name taken and closes its connection with 4015. A failure is
   * no matter: its own refresh comes within a third of the TTL.
   */
  async #tellSuperseded(instance: string): Promise<void> {
    try {
      const url = await this.registry.urlOf(instance);
      if (url === undefined) return;
      const link = await this.#link(url);
      const response = await link.fetch(`http://peer${CLUSTER_REFRESH_PATH}`, { method: "POST" });
      await response.body?.cancel();
    } catch (error) {
      this.#logger?.debug("cluster: could not tell an instance to refresh", error);
    }
  }

  /**
   * Every live instance's agents, each once.
   *
   * @returns The cluster's agents.
   * @throws {Error} If Redis cannot be reached.
   */
  async agents(): Promise<AgentInfo[]> {
    await this.refresh();
    return newestOnce(await this.registry.agents() as AgentInfo[]);
  }

  /**
   * Whether a link's dial comes from another instance of this cluster: it bears the secret.
   *
   * @param given The dial's {@linkcode SECRET_HEADER}.
   */
  isPeer(given: string | null): boolean {
    return given !== null && timingSafeEqual(given, this.#secret);
  }

  /**
   * Asks Redis which instance holds an agent, when it is not this one. An owner found is
   * remembered for a second ({@linkcode knownOwner}: a burst of calls to one agent costs one
   * lookup); a hop that fails forgets it.
   *
   * @param key The agent's id (ULID-shaped, any case) or name.
   * @returns The owner's URL; `null` if the agent is recorded on an instance that has
   *   stopped refreshing its records (dead or frozen: the agent is on its way elsewhere);
   *   `undefined` if no other instance has it.
   * @throws {Error} If Redis cannot be reached.
   */
  async ownerOf(key: string): Promise<string | null | undefined> {
    const now = performance.now();
    const owner = await this.registry.lookup(
      isConnectionIdShaped(key) ? { id: key.toUpperCase() } : { name: key },
    );
    this.#owners.delete(key);
    if (!owner || owner.instance === this.registry.instance) return undefined;
    const url = owner.url;
    if (url === undefined) return null;
    this.#owners.set(key, { url, until: now + OWNER_CACHE_MS });
    if (this.#owners.size > OWNER_CACHE_SIZE) {
      this.#owners.delete(this.#owners.keys().next().value!);
    }
    return url;
  }

  /**
   * Where an agent was found lately ({@linkcode ownerOf}'s memory), without asking Redis: a
   * request for an agent held elsewhere then goes on with no wait.
   *
   * @param key The agent's id or name.
   * @returns The owner's URL, or `undefined` if none is remembered.
   */
  knownOwner(key: string): string | undefined {
    const cached = this.#owners.get(key);
    return cached && cached.until > performance.now() ? cached.url : undefined;
  }

  /**
   * Forgets where an agent was: its owner failed or said it has it no longer.
   *
   * @param key The agent's id or name, as given to {@linkcode ownerOf}.
   */
  forget(key: string): void {
    this.#owners.delete(key);
  }

  /**
   * Forwards a request to the instance at `url` over this instance's link to it (one
   * connection, dialed on first use and again after it is lost, carrying many requests at
   * once), streaming both ways, exactly as received (method, raw target, headers, body).
   * What comes over a link is answered there or not at all: never forwarded twice.
   *
   * @param url The owner's base URL.
   * @param request What to send: the target is the gateway path (`/agents/{key}/…`).
   * @returns The owner's answer, in parts (no `Response` made: the front writes them).
   * @throws {Error} If the owner cannot be reached, or the request is cancelled first.
   */
  hop(
    url: string,
    request: CancellableForward & { [CANCEL]: Cancel },
  ): Promise<AnswerParts> {
    // An open link needs no wait that the caller's abort could cut short, nor a promise more.
    return this.#openLink(url)?.forwardAsParts(request) ?? this.#dialAndForward(url, request);
  }

  async #dialAndForward(
    url: string,
    request: CancellableForward & { [CANCEL]: Cancel },
  ): Promise<AnswerParts> {
    const connection = await untilCancelled(this.#link(url), request[CANCEL]);
    return await connection.forwardAsParts(request);
  }

  /** The link to the instance at `url`, if it is open. */
  #openLink(url: string): Connection | undefined {
    const open = this.#links.get(url)?.connection;
    return open && !open.isClosed ? open : undefined;
  }

  /** The open link to the instance at `url`, dialing it if there is none. */
  #link(url: string): Promise<Connection> {
    const open = this.#openLink(url);
    if (open) return Promise.resolve(open);
    let link = this.#links.get(url);
    if (!link) {
      const base = new URL(url);
      base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
      base.pathname = CLUSTER_LINK_PATH;
      link = new WebSocketClient({
        url: base,
        headers: { [SECRET_HEADER]: this.#secret },
        caCerts: this.#caCerts,
        // A lost link is dialed again by the next request for that instance, not in the
        // background: a dead instance's URL may never answer again.
        reconnect: { maxAttempts: 0 },
        limits: this.#linkLimits,
        logger: this.#logger && {
          ...this.#logger,
          info: (...args: unknown[]) => this.#logger!.debug(...args),
        },
      });
      this.#links.set(url, link);
    }
    return link.connect();
  }

  /** Leaves the cluster (a clean shutdown): its listing goes at once. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#links.values()].map((link) => link.close()));
    this.#links.clear();
    try {
      await this.registry.leave();
    } catch (error) {
      this.#logger?.warn("cluster leave failed", error);
    }
  }

  async #watch(): Promise<void> {
    for await (const event of this.#server.events()) {
      if (event.type !== EventType.ConnectionReceived || !event.connection) continue;
      const connection = event.connection;
      this.#unclaimed.add(connection);
      void this.refresh();
      connection.closed.then(() => {
        this.#unclaimed.delete(connection);
        // Never claimed: nothing in Redis to release.
        if (!this.#claimed.delete(connection)) return;
        this.registry.release(held(connection)).then(
          () => this.refresh(),
          (error) => this.#logger?.warn("cluster release failed", error),
        );
      });
    }
  }
}

/** Default milliseconds a record lives without a refresh. */
const DEFAULT_TTL = 15_000;

/**
 * The resume tokens a cluster's instances share, for the agents' server: an agent that
 * lands on another instance keeps its connection id.
 *
 * @param options The cluster.
 * @param window The server's resume window in milliseconds.
 * @returns The store, to give both the server and the {@linkcode ClusterMembership}.
 */
export function sharedResumeTokens(options: ClusterOptions, window: number): RedisResumeTokens {
  return new RedisResumeTokens(options.redis, {
    prefix: options.prefix,
    ttl: options.ttl ?? DEFAULT_TTL,
    window,
  });
}

/** How long an owner looked up is trusted without asking Redis again, in milliseconds. */
const OWNER_CACHE_MS = 1_000;
/** Most owners remembered at once. */
const OWNER_CACHE_SIZE = 10_000;

/** Where an instance takes the other instances' links (see {@linkcode ClusterMembership.hop}). */
export const CLUSTER_LINK_PATH = "/cluster/connect";
/**
 * Where an instance, over its link, asks another to refresh now (a `POST`): it has taken a
 * name that the other held.
 */
export const CLUSTER_REFRESH_PATH = "/cluster/refresh";
/** Requests one link carries at once, each way. */
export const CLUSTER_LINK_STREAMS = 4_096;

/**
 * A link's limits, both ends: many exchanges at once, since one link carries every caller of
 * the instance's agents, and the gateway's `shared` ones (its stalled-reader timeout).
 */
export function clusterLinkLimits(shared: Limits): Limits {
  return { ...shared, maxConcurrentStreams: CLUSTER_LINK_STREAMS };
}

/** Rejects with the abort's reason if `cancel` aborts before `promise` settles. */
function untilCancelled<T>(promise: Promise<T>, cancel: Cancel): Promise<T> {
  if (cancel.aborted) return Promise.reject(cancel.reason);
  return new Promise<T>((resolve, reject) => {
    cancel.listen(reject);
    // Let go of it before settling: whoever is waiting next listens once this has settled.
    promise.then(
      (value) => {
        cancel.listen(undefined);
        resolve(value);
      },
      (error) => {
        cancel.listen(undefined);
        reject(error);
      },
    );
  });
}

/** The header that carries the cluster's secret when one instance dials its link to another. */
export const SECRET_HEADER = "x-swaggersocket-cluster-secret";
/**
 * The header on an instance's answer to a forwarded request for an agent it does not hold
 * (421 `agent_moved`): the forwarding instance looks again and retries once. Removed from
 * agents' responses, so that none can fake it.
 */
export const MOVED_HEADER = "x-swaggersocket-moved";

function held(connection: Connection): HeldAgent {
  return { id: connection.id, name: nameOf(connection.metadata) };
}
