/**
 * One end, server or client, as it makes its connections: the options checked once, a
 * {@linkcode Session} and a {@linkcode Connection} built the same way for every socket, and
 * the events that say when each opens and ends. The server and the client differ only in
 * what they do around this: accepting and admitting, or dialing and reconnecting.
 *
 * @module
 */

import type { Socket } from "./_socket.ts";
import { type Clock, systemClock } from "./_clock.ts";
import { EventStream } from "./_event_stream.ts";
import {
  answerPing,
  type ConnectionLimits,
  connectionLimits,
  type ConnectionOptions,
  QUIET_LOGGER,
  resolveHeartbeat,
} from "./_options.ts";
import { Connection, type ConnectionCloseInfo, type HandshakeHooks } from "./connection.ts";
import { RUNTIME } from "./runtime/mod.ts";
import type { Settings } from "./protocol/handshake.ts";
import type { HeartbeatOptions as HeartbeatTiming } from "./protocol/heartbeat.ts";
import { Session, type SessionOptions } from "./protocol/session.ts";
import { ConnectionType, EventType, type Handler, type Logger } from "./types.ts";

/** What one connection adds to its end's options. */
export interface ConnectionSetup {
  /** The peer's address. */
  remoteAddr: { hostname: string; port: number };
  /** The client's metadata (a server learns it from the hello). */
  metadata?: unknown;
  /** The handler to serve from the start, if any. */
  handler: Handler | undefined;
  /** The handshake's wiring. */
  hooks: HandshakeHooks;
  /** What this end's session takes besides what every session gets from the options. */
  session?: Partial<SessionOptions>;
  /** A client's hello: sent as soon as the socket is. */
  hello?: { metadata: unknown; resumeToken: string | undefined };
}

/** The connections of one server or client. */
export class Endpoint {
  /** Where log lines go. */
  readonly logger: Logger;
  /** The limits, checked. */
  readonly limits: ConnectionLimits;
  /** The heartbeat, or `false` without `keepAlive`. */
  readonly heartbeat: HeartbeatTiming | false;
  /** This end's connection events. */
  readonly events: EventStream = new EventStream();
  /** The clock every session, connection and resume store of this end reads. */
  readonly clock: Clock;
  readonly #options: ConnectionOptions;
  readonly #role: "server" | "client";

  /**
   * Checks the options.
   *
   * @param role Which end this is.
   * @param options The user's options.
   * @param defaults Settings this kind of end announces unless told otherwise.
   * @throws {RangeError} If a limit or the heartbeat timing is out of range.
   */
  constructor(
    role: "server" | "client",
    options: ConnectionOptions,
    defaults: Partial<Settings> = {},
  ) {
    this.#role = role;
    this.#options = options;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? QUIET_LOGGER;
    this.limits = connectionLimits(options.limits ?? {}, defaults);
    this.heartbeat = resolveHeartbeat(options.keepAlive, options.heartbeat);
  }

  /**
   * A connection over `socket`, its session configured from the options.
   *
   * @param socket The socket, adapted.
   * @param setup What this connection adds.
   * @returns The connection, handshaking.
   */
  connect(socket: Socket, setup: ConnectionSetup): Connection {
    const options = this.#options;
    const limits = this.limits;
    // Assigned once below; the session's ping answer needs it before then.
    // deno-lint-ignore prefer-const
    let connection!: Connection;
    const session = new Session({
      role: this.#role,
      settings: limits.settings,
      heartbeat: this.heartbeat,
      appData: options.appData ?? "",
      // Without a hook the session echoes, and the connection keeps no closure for it.
      answerPing: options.onPing &&
        ((data) => answerPing(options.onPing, data, connection, this.logger)),
      resetRateLimit: limits.resetRateLimit,
      pingRateLimit: limits.pingRateLimit,
      // A small body rides on its head's event: the connection then answers without a pump.
      bodyWithHead: true,
      ...setup.session,
    }, this.clock.now());
    if (setup.hello) session.hello(setup.hello.metadata, setup.hello.resumeToken);
    connection = new Connection({
      socket,
      session,
      type: this.#role === "server" ? ConnectionType.ServerSide : ConnectionType.ClientSide,
      ...(setup.metadata !== undefined ? { metadata: setup.metadata } : {}),
      remoteAddr: setup.remoteAddr,
      logger: this.logger,
      onPong: options.onPong,
      handler: setup.handler,
      maxQueuedBytes: limits.maxQueuedBytes,
      stalledReaders: limits.stalledReaders,
      hooks: setup.hooks,
      clock: this.clock,
      takeBodyInMemory: RUNTIME.takeBodyInMemory,
      abortRequest: RUNTIME.abortRequest,
    });
    return connection;
  }

  /** Milliseconds on this end's clock. */
  now(): number {
    return this.clock.now();
  }

  /**
   * Says that a connection opened.
   *
   * @param connection The connection.
   * @param resumed Whether it took a previous connection's id.
   */
  opened(connection: Connection, resumed: boolean): void {
    this.events.publish({
      type: EventType.ConnectionReceived,
      connectionId: connection.id,
      connection,
      resumed,
    });
  }

  /**
   * Says that an open connection ended: `ConnectionFailure` first if it failed, then
   * `ConnectionClosed`.
   *
   * @param connection The connection.
   * @param info How it ended.
   */
  ended(connection: Connection, info: ConnectionCloseInfo): void {
    const base = { connectionId: connection.id, connection };
    if (info.error) {
      this.events.publish({ type: EventType.ConnectionFailure, ...base, error: info.error });
    }
    this.events.publish({
      type: EventType.ConnectionClosed,
      ...base,
      ...(info.error ? { error: info.error } : {}),
    });
  }
}
