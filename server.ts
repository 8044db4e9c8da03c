/**
 * The server: accepts agents' WebSockets and keeps track of their connections.
 *
 * It listens by itself (`Deno.serve` on Deno, `Bun.serve` on Bun; `wss` with `tls`) or, with
 * `noServer: true`, is mounted on an app the user already runs: `upgrade()` takes
 * the upgrade request and the runtime's per-request object, and on Bun the
 * `websocket` handlers go into `Bun.serve`.
 *
 * @module
 */

import {
  type BunServerLike,
  type BunWebSocketHandlers,
  bunWebSocketHandlers,
  type DenoServeHandlerInfo,
  RUNTIME,
  type Socket,
  type SocketAcceptor,
  type Upgraded,
  upgradeWebSocket,
} from "./runtime/mod.ts";
import { Endpoint } from "./_endpoint.ts";
import { newId } from "./_random.ts";
import { ADDRESS_RATES, AddressLimits, type AddressRates } from "./_address_limits.ts";
import {
  MAX_RESUMABLE,
  MAX_RESUMABLE_BYTES,
  type Redeemed,
  ResumeStore,
  type SharedRedeemed,
  type SharedResumeTokens,
} from "./_resume.ts";
import { checkTls, type TlsOptions } from "./_tls.ts";
import type { Connection, ConnectionCloseInfo } from "./connection.ts";
import { ClientRefusedError } from "./errors.ts";
import { CloseCode } from "./protocol/close_codes.ts";
import { DEFAULT_SETTINGS } from "./protocol/handshake.ts";
import type { AddressRateLimits, ConnectionEvent, Logger } from "./types.ts";
import {
  type ConnectionOptions,
  rateLimit,
  SERVER_INITIAL_WINDOW,
  SERVER_MAX_CONCURRENT_STREAMS,
} from "./_options.ts";

/** Default `limits.maxConnections`. */
const MAX_CONNECTIONS = 10_000;
/** Default `limits.maxPendingHandshakes`. */
const MAX_PENDING_HANDSHAKES = 1024;

/** What `authorize` gets to decide with. */
export interface AuthorizeContext {
  /** The HTTP upgrade request (headers such as `Authorization`, the URL, …). */
  request: Request;
  /** The metadata the client sent in its hello (any JSON value). */
  metadata: unknown;
  /** The client's address as `"host:port"`. */
  remoteAddr: string;
  /**
   * The connection being decided on. It is not open yet (its `id` is `""` until the
   * handshake completes, and `fetch` fails), but it is the object that `connections()` and
   * events will hold once it opens, and its `closed` resolves when it ends, opened or not:
   * tie whatever `authorize` reserves for it (a name, a slot) to that.
   */
  connection: Connection;
  /**
   * The open connection this client resumes with a valid token, if any: once admitted, the
   * client takes its id and that connection is closed with 4012 `Replaced` (a half-open
   * socket the server had not noticed). Whatever the old connection held (a name, a slot)
   * may pass to the new one rather than count against it.
   */
  resumes?: Connection;
}

/** Options for {@linkcode WebSocketServer}. */
export interface WebSocketServerOptions extends ConnectionOptions {
  /** Interface to listen on. Default `"0.0.0.0"`, as `Deno.serve` and `Bun.serve`. */
  hostname?: string;
  /** Port to listen on; 0 picks a free port (see `server.addr`). Default 0. */
  port?: number;
  /** Only upgrade requests for this path (others get 404). Default: any path. */
  path?: string;
  /**
   * Decides whether a client may connect, after its hello. Return `false` (or throw) to
   * refuse: the client gets close code 4003 and a `HandshakeError`, and does not retry.
   * Throw a {@linkcode ClientRefusedError} to refuse with another close code and reason
   * (the client retries unless that code is terminal).
   */
  authorize?: (context: AuthorizeContext) => boolean | Promise<boolean>;
  /** Origins allowed to connect (browsers send `Origin`). Default: any, including none. */
  allowedOrigins?: string[];
  /** Milliseconds `close()` lets in-flight exchanges finish. Default 10 000. */
  closeTimeout?: number;
  /**
   * Milliseconds after a connection ends during which its client may resume it: a HELLO
   * presenting the resume token from its last WELCOME gets the same connection id back
   * (and `resumed: true` on the `ConnectionReceived` event). The resumed connection has
   * the new HELLO's metadata, or the stored metadata if the new HELLO's is `null`.
   * Tokens are single-use; a wrong, used or expired one just gets a fresh id.
   * `0` disables resumption (no tokens are issued). Default 30 000.
   */
  resumeWindow?: number;
  /**
   * Resume tokens shared with the other servers of a cluster, so that a client may resume
   * on any of them (the gateway's cluster keeps them in Redis). Needs `resumeWindow`.
   */
  sharedResume?: SharedResumeTokens;
  /** Do not listen: mount on an existing `Deno.serve` / `Bun.serve` app with `upgrade()`. */
  noServer?: boolean;
  /**
   * Serve `wss` (and `https`) directly with this certificate and key, both PEM text (not file
   * names), on Deno and on Bun. Clients then dial `wss://`; one whose runtime does not trust
   * the certificate's issuer gives it as `caCerts`. Not with `noServer` (there the app that
   * listens serves TLS). Default: plain `ws`.
   *
   * @example Usage
   * ```ts ignore
   * const server = new WebSocketServer({
   *   port: 8443,
   *   tls: { cert: await Deno.readTextFile("cert.pem"), key: await Deno.readTextFile("key.pem") },
   * });
   * ```
   */
  tls?: TlsOptions;
}

/** Where the server listens. */
export interface ServerAddr {
  /** The interface. */
  hostname: string;
  /** The port. */
  port: number;
}

/**
 * For a server in front that upgrades sockets itself (the gateway's `node:http` front):
 * `check` answers an upgrade request as `upgrade()` would refuse it (404, 426, 503) or
 * `undefined`; `accept` takes the socket once upgraded. Not exported from `mod.ts`.
 */
export const upgradedSockets: {
  check(server: WebSocketServer, request: Request): Response | undefined;
  accept(
    server: WebSocketServer,
    socket: Socket,
    request: Request,
    remoteAddr: { hostname: string; port: number },
  ): void;
} = {
  check: () => undefined,
  accept: () => {},
};

/**
 * Accepts WebSocket clients and serves HTTP over each connection both ways.
 *
 * @example Usage
 * ```ts ignore
 * import { EventType, WebSocketServer } from "@swaggersocket/swaggersocket";
 *
 * const server = new WebSocketServer({ port: 8080 });
 * for await (const event of server.events()) {
 *   if (event.type === EventType.ConnectionReceived) {
 *     const response = await event.connection!.fetch("/status");
 *     console.log(event.connectionId, await response.text());
 *   }
 * }
 * ```
 */
export class WebSocketServer {
  static {
    upgradedSockets.check = (server, request) => server.#checkUpgrade(request);
    upgradedSockets.accept = (server, socket, request, remoteAddr) =>
      server.#accept({ socket, origin: request.headers.get("origin"), request, remoteAddr });
  }

  readonly #options: WebSocketServerOptions;
  readonly #endpoint: Endpoint;
  readonly #addressLimits: AddressLimits | undefined;
  readonly #connections = new Map<string, Connection>();
  readonly #handshaking = new Set<Connection>();
  /**
   * Sockets whose close handshake has not finished yet, of those the runtime's listener
   * would cut short at shutdown (see `#shutdown`).
   */
  #openSockets = 0;
  #allSocketsClosed: (() => void) | undefined;
  /** Takes the sockets the runtime upgrades: one for every socket, made once. */
  readonly #acceptor: SocketAcceptor;
  #addr: ServerAddr | undefined;
  #stopListening: (() => Promise<void>) | undefined;
  #closing: Promise<void> | undefined;
  readonly #resume: ResumeStore | undefined;

  /**
   * Creates the server and, unless `noServer` is set, starts listening at once.
   *
   * @param options Where to listen and how to treat connections.
   * @throws {TypeError} If it must listen and neither `Deno.serve` nor `Bun.serve` exists, or
   *   `tls` is not PEM text or comes with `noServer`.
   * @throws {RangeError} If a limit, the heartbeat timing or `resumeWindow` is out of range.
   */
  constructor(options: WebSocketServerOptions = {}) {
    this.#options = options;
    const limits = options.limits ?? {};
    this.#endpoint = new Endpoint("server", options, {
      initialWindow: SERVER_INITIAL_WINDOW,
      maxConcurrentStreams: SERVER_MAX_CONCURRENT_STREAMS,
    });
    this.#addressLimits = limits.addressRateLimits === false
      ? undefined
      : new AddressLimits(addressRates(limits.addressRateLimits ?? {}));
    const maxMessageBytes = this.#endpoint.limits.settings.maxMessageBytes ??
      DEFAULT_SETTINGS.maxMessageBytes;
    this.#acceptor = {
      keepsRequests: options.authorize !== undefined,
      accept: (upgraded) => this.#accept(upgraded),
      socketOpened: () => {
        this.#openSockets++;
      },
      // One listener for every socket: a promise per socket would cost each idle connection.
      socketClosed: () => {
        if (--this.#openSockets === 0) this.#allSocketsClosed?.();
      },
    };
    this.websocket = bunWebSocketHandlers(this.#acceptor, maxMessageBytes);
    const resumeWindow = options.resumeWindow ?? 30_000;
    if (!(resumeWindow >= 0) || !Number.isFinite(resumeWindow)) {
      throw new RangeError(
        `Invalid resumeWindow: ${resumeWindow} must be a non-negative number of milliseconds`,
      );
    }
    this.#resume = resumeWindow > 0
      ? new ResumeStore(
        resumeWindow,
        MAX_RESUMABLE,
        MAX_RESUMABLE_BYTES,
        this.#endpoint.clock,
      )
      : undefined;
    if (options.tls !== undefined) {
      if (options.noServer) {
        throw new TypeError("Cannot use tls with noServer: the app that listens serves TLS");
      }
      checkTls(options.tls, "tls");
    }
    if (!options.noServer) this.#listen();
  }

  get #logger(): Logger {
    return this.#endpoint.logger;
  }

  /** Where the server listens. */
  get addr(): ServerAddr {
    if (!this.#addr) {
      throw new TypeError("Cannot read addr: the server was created with noServer");
    }
    return this.#addr;
  }

  /**
   * Bun's `websocket` handlers: pass them to `Bun.serve` when mounting with `noServer`.
   *
   * @example Usage
   * ```ts ignore
   * const sockets = new WebSocketServer({ noServer: true });
   * Bun.serve({
   *   fetch: (request, server) =>
   *     new URL(request.url).pathname === "/agents" ? sockets.upgrade(request, server) : app.fetch(request),
   *   websocket: sockets.websocket,
   * });
   * ```
   */
  readonly websocket: BunWebSocketHandlers;

  /**
   * Upgrades an HTTP request to a swaggersocket connection. Use it to mount the server
   * on an existing app (`noServer: true`): on Deno pass the handler's `info`, on Bun
   * the `server` (and give `Bun.serve` this server's {@linkcode websocket} handlers).
   *
   * @example Usage
   * ```ts ignore
   * const sockets = new WebSocketServer({ noServer: true });
   * Deno.serve((request, info) =>
   *   new URL(request.url).pathname === "/agents" ? sockets.upgrade(request, info) : app.fetch(request)
   * );
   * ```
   *
   * @param request The upgrade request.
   * @param context Deno's `ServeHandlerInfo`, or Bun's `Server`.
   * @returns The response to return from the handler: the 101 on Deno, `undefined` on Bun
   *   once upgraded, or an error response (404, 426, 503).
   */
  upgrade(request: Request, context?: DenoServeHandlerInfo | BunServerLike): Response | undefined {
    const refusal = this.#checkUpgrade(request);
    if (refusal) return refusal;
    return upgradeWebSocket(request, context, this.#acceptor);
  }

  /**
   * A new subscription to connection events. Each call is independent; a slow or
   * absent reader never blocks the server (it loses its oldest events past 1024).
   *
   * @returns An async iterable that ends when the server closes.
   */
  events(): AsyncIterableIterator<ConnectionEvent> {
    return this.#endpoint.events.subscribe();
  }

  /** The connections that completed their handshake and are still open. */
  connections(): Connection[] {
    return [...this.#connections.values()];
  }

  /**
   * Looks up a connection by id.
   *
   * @param id The connection id.
   * @returns The connection, if open.
   */
  connection(id: string): Connection | undefined {
    return this.#connections.get(id);
  }

  /**
   * Finds the first connection for which the predicate returns true (pass a JSON value
   * instead to match metadata by structural equality).
   *
   * @example Usage
   * ```ts ignore
   * const byRole = server.connectionFromMetadata((m) => (m as { role?: string })?.role === "printer");
   * ```
   *
   * @param predicate Called with each connection's metadata and the connection.
   * @returns The first connection for which `predicate` returns true, if any.
   */
  connectionFromMetadata(
    predicate: (metadata: unknown, connection: Connection) => boolean,
  ): Connection | undefined;
  /**
   * Finds the first connection whose metadata equals `value` (JSON structural equality:
   * key order does not matter, array order does).
   *
   * @example Usage
   * ```ts ignore
   * const agent = server.connectionFromMetadata({ name: "agent-7" });
   * ```
   *
   * @param value A JSON value.
   * @returns The connection, if any.
   */
  connectionFromMetadata(value: unknown): Connection | undefined;
  // An overload per form: `unknown | ((…) => boolean)` collapses to `unknown`, which
  // would leave a predicate's parameters untyped (implicit any) at the call site.
  connectionFromMetadata(valueOrPredicate: unknown): Connection | undefined {
    const matches = typeof valueOrPredicate === "function"
      ? valueOrPredicate as (metadata: unknown, connection: Connection) => boolean
      : (metadata: unknown) => jsonEqual(metadata, valueOrPredicate);
    for (const connection of this.#connections.values()) {
      if (matches(connection.metadata, connection)) return connection;
    }
    return undefined;
  }

  /**
   * The metadata a connection's client sent.
   *
   * @param id The connection id.
   * @returns The metadata, or `undefined` for unknown ids.
   */
  metadata(id: string): unknown {
    return this.#connections.get(id)?.metadata;
  }

  /**
   * The client's address.
   *
   * @param id The connection id.
   * @returns `"host:port"`, or `undefined` for unknown ids.
   */
  remoteAddr(id: string): string | undefined {
    return this.#connections.get(id)?.remoteAddr;
  }

  /**
   * Shuts down gracefully: stops accepting, sends every connection a go-away, lets
   * in-flight exchanges finish (up to `closeTimeout`), then closes everything.
   *
   * @returns Resolves when everything is closed.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /** Same as {@linkcode close}; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutdown(): Promise<void> {
    const timeout = this.#options.closeTimeout ?? 10_000;
    const all = [...this.#handshaking, ...this.#connections.values()];
    // Stop listening only once the connections have drained: a runtime's listener may close
    // upgraded WebSockets at once (Deno's, with 1001), which would cut in-flight exchanges short.
    // Meanwhile new upgrades get 503 (`#checkUpgrade`), so nothing new is accepted.
    await Promise.all(
      all.map((connection) =>
        connection.close({ timeout, code: CloseCode.GoingAway, reason: "Server is shutting down" })
      ),
    );
    // A connection ends when it starts closing its socket; let the close frames go out
    // (bounded) so that the listener's shutdown does not overtake them with its own 1001.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.#allSocketsClosed = resolve;
        if (this.#openSockets === 0) resolve();
      }),
      new Promise((resolve) => timer = setTimeout(resolve, 1_000)),
    ]);
    clearTimeout(timer);
    await this.#stopListening?.();
    this.#resume?.clear();
    this.#endpoint.events.end();
  }

  #listen(): void {
    const tls = this.#options.tls;
    const listening = RUNTIME.listen({
      hostname: this.#options.hostname ?? "0.0.0.0",
      port: this.#options.port ?? 0,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
      serve: (request, context) =>
        this.upgrade(request, context as DenoServeHandlerInfo | BunServerLike),
    }, this.websocket);
    this.#addr = listening.addr;
    this.#stopListening = listening.stop;
  }

  #checkUpgrade(request: Request): Response | undefined {
    const url = new URL(request.url);
    if (this.#options.path !== undefined && url.pathname !== this.#options.path) {
      return new Response("Not Found", { status: 404 });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Upgrade Required: this endpoint speaks WebSocket", {
        status: 426,
        headers: { upgrade: "websocket" },
      });
    }
    if (this.#closing) return new Response("Service Unavailable: shutting down", { status: 503 });
    return undefined;
  }

  /** One for every connection: an open connection keeps nothing of its accept path. */
  readonly #connectionEnded = (ended: Connection, info: ConnectionCloseInfo): void => {
    const endpoint = this.#endpoint;
    const secret = this.#resume?.release(ended, endpoint.now());
    if (secret !== undefined) this.#options.sharedResume?.ended(ended.id, secret);
    this.#handshaking.delete(ended);
    if (this.#connections.get(ended.id) !== ended) return;
    this.#connections.delete(ended.id);
    endpoint.logger.info("swaggersocket: connection closed", ended.id, info.code, info.reason);
    endpoint.ended(ended, info);
  };

  /** `request` is for `authorize` only, which reads it once: an open connection does not keep it. */
  #accept({ socket, origin, request, remoteAddr }: Upgraded): void {
    const options = this.#options;
    let upgradeRequest = request;
    const limits = options.limits ?? {};
    const address = remoteAddr.hostname;
    const addressLimits = this.#addressLimits;
    const endpoint = this.#endpoint;
    const logger = endpoint.logger;
    let resumed = false;
    let metadataCost = 0;
    const now = endpoint.now();
    const connection = endpoint.connect(socket, {
      remoteAddr,
      handler: options.handler,
      session: {
        handshakeTimeout: limits.handshakeTimeout,
        maxMetadataBytes: limits.maxMetadataBytes,
        maxMetadataValues: limits.maxMetadataValues,
        sharedPingLimit: addressLimits?.pings(address, now),
      },
      hooks: {
        onHello: ({ metadata, resume, metadataCost: cost }, answer) => {
          metadataCost = cost;
          const resumes = resume === undefined ||
              addressLimits?.mayResume(address, endpoint.now()) === false
            ? undefined
            : this.#resume?.resumes(resume);
          const authorizing = this.#authorize(upgradeRequest, metadata, connection, resumes);
          upgradeRequest = undefined;
          authorizing.then(async (refusal) => {
            if (refusal) return answer.refuse(refusal.code as CloseCode, refusal.reason);
            const store = this.#resume;
            const now = endpoint.now();
            // Past its rate of failures, an address's tokens are not looked at: guessing
            // costs the guesser, and a wrong token only ever meant a fresh id.
            const redeemed = resume !== undefined && store && !connection.isClosed &&
                addressLimits?.mayResume(address, now) !== false
              ? await this.#redeem(store, resume, now)
              : undefined;
            if (resume !== undefined && store && !redeemed) {
              addressLimits?.failedResume(address, now);
            }
            if (redeemed?.previous && !redeemed.previous.isClosed) {
              // A half-open socket the server has not noticed yet: the resumer owns the id now.
              await redeemed.previous.close({
                timeout: 0,
                code: CloseCode.Replaced,
                reason: "Replaced by a resumed connection",
              });
            }
            if (connection.isClosed) return;
            const id = redeemed?.id ?? newId();
            if (redeemed && metadata === null) {
              (connection as { metadata: unknown }).metadata = redeemed.metadata;
              metadataCost = redeemed.metadataCost;
            }
            resumed = redeemed !== undefined;
            const resumeToken = store?.issue(id, connection, metadataCost);
            if (resumeToken) {
              const secret = resumeToken.slice(id.length + 1);
              options.sharedResume?.issued(id, secret, connection.metadata, metadataCost);
            }
            answer.accept({
              id,
              ...(resumeToken ? { resumeToken } : {}),
              ...(resumed ? { resumed } : {}),
            });
          });
        },
        onOpen: (opened) => {
          this.#handshaking.delete(opened);
          this.#connections.set(opened.id, opened);
          logger.info("swaggersocket: connection received", opened.id, opened.remoteAddr);
          endpoint.opened(opened, resumed);
        },
        onEnd: this.#connectionEnded,
      },
    });
    const allowed = options.allowedOrigins;
    // Refused after the upgrade, with a close code, so the client learns why; an HTTP 403
    // would look like a network failure to a WebSocket client.
    const refusal = allowed && origin !== null && !allowed.includes(origin)
      ? { code: CloseCode.OriginNotAllowed, reason: "Origin not allowed" }
      : this.#closing
      ? { code: CloseCode.GoingAway, reason: "Server is shutting down" }
      : addressLimits?.handshake(address, now) === false
      ? { code: CloseCode.RateLimited, reason: "Too many handshakes from this address" }
      : this.#connections.size + this.#handshaking.size >=
          (limits.maxConnections ?? MAX_CONNECTIONS)
      ? { code: CloseCode.TooManyConnections, reason: "Too many connections" }
      : this.#handshaking.size >= (limits.maxPendingHandshakes ?? MAX_PENDING_HANDSHAKES)
      ? { code: CloseCode.TooManyConnections, reason: "Too many handshakes in progress" }
      : undefined;
    if (refusal) {
      connection.close({ timeout: 0, ...refusal });
      return;
    }
    this.#handshaking.add(connection);
  }

  /**
   * Redeems a resume token in this server's store and, if there is one, the cluster's, whose
   * answer decides (see {@linkcode SharedResumeTokens}).
   */
  async #redeem(store: ResumeStore, token: string, now: number): Promise<Redeemed | undefined> {
    const local = store.redeem(token, now);
    const shared = this.#options.sharedResume;
    const dot = token.lastIndexOf(".");
    if (!shared || dot <= 0) return local;
    const id = token.slice(0, dot);
    let answer: SharedRedeemed;
    try {
      answer = await shared.redeem(id, token.slice(dot + 1));
    } catch (error) {
      this.#endpoint.logger.warn("swaggersocket: shared resume tokens unavailable", error);
      return local;
    }
    if (answer === "unknown") return local;
    if (answer === "refused") return undefined;
    return local ?? { id, ...answer };
  }

  /** `undefined` to accept the client, else the close code and reason that refuse it. */
  async #authorize(
    request: Request | undefined,
    metadata: unknown,
    connection: Connection,
    resumes: Connection | undefined,
  ): Promise<{ code: number; reason: string } | undefined> {
    const authorize = this.#options.authorize;
    if (!authorize) return undefined;
    const unauthorized = { code: CloseCode.Unauthorized, reason: "Unauthorized" };
    try {
      // `upgrade()` keeps the request whenever there is an `authorize`.
      const remoteAddr = connection.remoteAddr;
      const context = { request: request!, metadata, remoteAddr, connection, resumes };
      return (await authorize(context)) === true ? undefined : unauthorized;
    } catch (error) {
      if (error instanceof ClientRefusedError) {
        this.#logger.debug(
          "swaggersocket: authorize refused a client",
          error.code,
          error.reason,
        );
        return { code: error.code, reason: error.reason };
      }
      this.#logger.warn("swaggersocket: authorize threw; refusing", error);
      return unauthorized;
    }
  }
}

/** `limits.addressRateLimits` with its defaults filled in, checked. */
function addressRates(option: AddressRateLimits): AddressRates {
  if (typeof option !== "object" || option === null) {
    throw new RangeError("Invalid limits.addressRateLimits: must be an object or false");
  }
  const rates = { ...ADDRESS_RATES };
  for (const name of ["handshakes", "failedResumes", "pings"] as const) {
    const given = rateLimit(option[name], `limits.addressRateLimits.${name}`);
    if (given) rates[name] = { ...rates[name], ...given };
  }
  return rates;
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((item, i) => jsonEqual(item, bb[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((key) =>
    Object.hasOwn(b as object, key) &&
    jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])
  );
}
