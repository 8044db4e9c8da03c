/**
 * A gateway as one instance of a cluster on Redis: it records which agents it holds (so that
 * the others can find them), keeps those records alive, gives up an agent whose name another
 * instance has taken since, and lists every instance's agents. The records themselves are
 * `cluster/_registry.ts`'s.
 *
 * Not here yet: forwarding a request to the instance that holds its agent, and resume tokens
 * shared between instances.
 *
 * @module
 */

import { ulid } from "ulid";
import type { Connection } from "../connection.ts";
import type { WebSocketServer } from "../server.ts";
import type { Logger } from "../types.ts";
import { EventType } from "../types.ts";
import { CloseCode } from "../protocol/close_codes.ts";
import { ClusterRegistry, type HeldAgent, type RedisLike } from "../cluster/_registry.ts";
import { type AgentInfo, describeAgent } from "./_agent_info.ts";

/** How a gateway joins a cluster. */
export interface ClusterOptions {
  /**
   * A connected Redis (or Valkey) client, e.g. `@redis/client`'s
   * `createClient({ url, disableOfflineQueue: true })` after `connect()`: without an offline
   * queue a call during an outage fails at once instead of waiting.
   */
  redis: RedisLike;
  /** Where the other instances reach this one: its internal HTTP base URL. */
  advertise: string;
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
  constructor(server: WebSocketServer, options: ClusterOptions, logger: Logger | undefined) {
    const ttl = options.ttl ?? 15_000;
    this.#server = server;
    this.#logger = logger;
    this.registry = new ClusterRegistry(options.redis, {
      instance: ulid(),
      url: options.advertise,
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
        () => this.refresh(),
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

function held(connection: Connection): HeldAgent {
  const name = (connection.metadata as { name?: unknown } | null)?.name;
  return { id: connection.id, name: typeof name === "string" ? name : null };
}
