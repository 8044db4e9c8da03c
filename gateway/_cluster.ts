/**
 * A gateway as one instance of a cluster on Redis: it records which agents it holds (so that
 * the others can find them), keeps those records alive, gives up an agent whose name another
 * instance has taken since, and lists every instance's agents. The records themselves are
 * `cluster/_registry.ts`'s.
 *
 * A request for an agent held by another instance goes there in one streamed HTTP hop,
 * authenticated by the cluster's secret and marked so that it is never forwarded twice.
 *
 * Not here yet: resume tokens shared between instances, and a retry when an owner has just
 * lost its agent.
 *
 * @module
 */

import { ulid } from "ulid";
import { tunnelHandler } from "../agent/_tunnel.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";
import type { Handler, HandlerInfo } from "../connection.ts";
import { isConnectionIdShaped } from "./_agent_names.ts";
import type { Connection } from "../connection.ts";
import type { WebSocketServer } from "../server.ts";
import type { Logger } from "../types.ts";
import { EventType } from "../types.ts";
import { CloseCode } from "../protocol/close_codes.ts";
import { ClusterRegistry, type HeldAgent, type RedisLike } from "../cluster/_registry.ts";
import { type AgentInfo, describeAgent, nameOf } from "./_agent_info.ts";

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
}

/** This instance's part in the cluster. */
export class ClusterMembership {
  readonly registry: ClusterRegistry;
  readonly #server: WebSocketServer;
  readonly #logger: Logger | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #secret: string;
  /** One tunnel per other instance, reused (keep-alive). */
  readonly #tunnels = new Map<string, Handler>();
  #refreshing: Promise<void> | undefined;
  /** A refresh was asked for while one ran: it runs once more, to see what changed since. */
  #again = false;

  /**
   * Joins: records this instance, and its agents as they come and go.
   *
   * @param server The agents' server.
   * @param options The cluster's Redis and this instance's URL.
   * @param logger Where failures are logged.
   */
  constructor(
    server: WebSocketServer,
    options: ClusterOptions,
    url: string,
    logger: Logger | undefined,
  ) {
    const ttl = options.ttl ?? 15_000;
    if (typeof options.secret !== "string" || options.secret.length === 0) {
      throw new TypeError("Invalid cluster.secret: must be a non-empty string");
    }
    this.#server = server;
    this.#logger = logger;
    this.#secret = options.secret;
    this.registry = new ClusterRegistry(options.redis, {
      instance: ulid(),
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
    {
      const connections = this.#server.connections();
      try {
        const lost = await this.registry.refresh(
          connections.map(held),
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
      } catch (error) {
        this.#logger?.warn("cluster refresh failed", error);
      }
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
    const seen = new Set<string>();
    return (await this.registry.agents() as AgentInfo[]).filter((agent) =>
      !seen.has(agent.id) && seen.add(agent.id)
    );
  }

  /**
   * Whether a request came from another instance of this cluster (it bears the secret); such a
   * request is answered here or not at all.
   */
  isPeer(headers: Headers): boolean {
    const given = headers.get(SECRET_HEADER);
    return given !== null && timingSafeEqual(given, this.#secret);
  }

  /**
   * Which instance holds an agent, when it is not this one.
   *
   * @param key The agent's id (ULID-shaped, any case) or name.
   * @returns The owner's URL, or `undefined` if no other instance has it.
   * @throws {Error} If Redis cannot be reached.
   */
  async ownerOf(key: string): Promise<string | undefined> {
    const owner = await this.registry.lookup(
      isConnectionIdShaped(key) ? { id: key.toUpperCase() } : { name: key },
    );
    return owner && owner.instance !== this.registry.instance ? owner.url : undefined;
  }

  /**
   * Forwards a request to the instance at `url`, streaming both ways, exactly as received
   * (method, target, headers, body), with the secret and the hop mark added.
   *
   * @param url The owner's base URL.
   * @param request What to send: the target is the gateway path (`/agents/{key}/…`).
   * @returns The owner's answer, or 502 if it cannot be reached.
   */
  hop(
    url: string,
    request: {
      method: string;
      target: string;
      headers: Headers;
      body: ReadableStream<Uint8Array> | null;
      signal: AbortSignal;
    },
  ): Promise<Response> {
    let tunnel = this.#tunnels.get(url);
    if (!tunnel) {
      tunnel = tunnelHandler(url, { rewrite: false });
      this.#tunnels.set(url, tunnel);
    }
    const headers = new Headers(request.headers);
    headers.set(SECRET_HEADER, this.#secret);
    headers.set(HOP_HEADER, this.registry.instance);
    // The body goes as `info.body`: a `Request` cannot hold a GET's.
    const carrier = new Request("http://hop/", {
      method: request.method,
      headers,
      signal: request.signal,
    });
    // The tunnel reads only these two of a handler's `info`.
    const info = { target: request.target, body: request.body } as unknown as HandlerInfo;
    return Promise.resolve(tunnel(carrier, info));
  }

  /** Leaves the cluster (a clean shutdown): its listing goes at once. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
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
      this.registry.claim(held(connection)).then(
        () => {
          this.#logger?.debug("agent recorded in the cluster", { id: connection.id });
          return this.refresh();
        },
        (error) => this.#logger?.warn("cluster claim failed", error),
      );
      connection.closed.then(() =>
        this.registry.release(held(connection)).then(
          () => this.refresh(),
          (error) => this.#logger?.warn("cluster release failed", error),
        )
      );
    }
  }
}

/** The header that carries the cluster's secret from one instance to another. */
export const SECRET_HEADER = "x-swaggersocket-cluster-secret";
/** The header that marks a request one instance forwarded to another. */
export const HOP_HEADER = "x-swaggersocket-hop";

function held(connection: Connection): HeldAgent {
  return { id: connection.id, name: nameOf(connection.metadata) };
}
