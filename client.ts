/**
 * The client: dials a server with the standard `WebSocket`, and reconnects.
 *
 * The client is what an agent runs. After `connect()` the server can call the
 * agent's handler and the agent can call the server's, over the one socket. With
 * `keepAlive` (the default) a lost connection is redialed with exponential backoff
 * and jitter; the handler given to `serve()` keeps serving on the new connection.
 *
 * @module
 */

import { adaptWebSocket, dialFailure, openWebSocket, RUNTIME } from "./runtime/mod.ts";
import { checkCaCerts } from "./_tls.ts";
import { Endpoint } from "./_endpoint.ts";
import type { ConnectionOptions } from "./_options.ts";
import { Backoff, type ReconnectOptions } from "./_backoff.ts";
import type { Connection, ConnectionCloseInfo } from "./connection.ts";
import { HandshakeError } from "./errors.ts";
import { CloseCode, TERMINAL_CLOSE_CODES } from "./protocol/close_codes.ts";
import {
  type ConnectionEvent,
  EventType,
  type Handler,
  type Limits,
  type Logger,
} from "./types.ts";

/** Options for {@linkcode WebSocketClient}. */
export interface WebSocketClientOptions extends ConnectionOptions {
  /**
   * The server's WebSocket URL (`ws://` or `wss://`), or several: the client then dials them
   * in turn, moving to the next whenever one fails (as NATS clients do), so that agents find
   * another gateway of a cluster when theirs is gone. `connect()` tries each once.
   */
  url: string | URL | readonly (string | URL)[];
  /** Heartbeat, and reconnect when the connection is lost. Default `true`. */
  keepAlive?: boolean;
  /** Backoff between reconnection attempts (see {@linkcode ReconnectOptions} for the defaults). */
  reconnect?: ReconnectOptions;
  /**
   * Headers for the upgrade request (an `Authorization` for the server's `authorize`), on Deno
   * and Bun. A browser cannot send them (`connect()` then fails with a non-retryable
   * `HandshakeError`): a page authenticates with a token in its metadata instead
   * (`withMetadata({ name, token })`), which `authorize` reads as `metadata`, and the gateway's
   * `--token` and `--credentials` check.
   */
  headers?: HeadersInit;
  /**
   * CA certificates (PEM text, not file names) to trust for a `wss://` server, besides the
   * runtime's default roots: for a server whose certificate is self-signed or comes from a
   * private CA. Each entry may hold several certificates. Deno and Bun only (on Deno through
   * `Deno.createHttpClient`, on Bun through the `WebSocket`'s `tls.ca`); elsewhere dialing
   * fails. Default: the default roots only.
   *
   * @example Trusting a private CA
   * ```ts ignore
   * const client = new WebSocketClient({
   *   url: "wss://gateway.internal:8443/agents/connect",
   *   caCerts: [await Deno.readTextFile("ca.pem")],
   * });
   * ```
   */
  caCerts?: string[];
  /** Limits enforced on the connection; `handshakeTimeout` also bounds each dial. */
  limits?: Limits;
}

/** How long `close()` waits for the server to answer its close frame. */
const CLOSE_HANDSHAKE_MS = 2_000;

/**
 * Dials a server and keeps a connection to it.
 *
 * @example Usage
 * ```ts ignore
 * import { WebSocketClient } from "@swaggersocket/swaggersocket";
 *
 * const client = new WebSocketClient({ url: "ws://127.0.0.1:8080" }).withMetadata({ name: "agent-7" });
 * const connection = await client.connect();
 * connection.serve((request) => Response.json({ path: new URL(request.url).pathname }));
 * const response = await connection.fetch("/hello");
 * ```
 */
export class WebSocketClient {
  readonly #options: WebSocketClientOptions;
  readonly #endpoint: Endpoint;
  readonly #backoff: Backoff;
  #metadata: unknown = null;
  #handler: Handler | undefined;
  #connection: Connection | undefined;
  /** Where to dial, in turn; `#next` is the one the next dial uses. */
  readonly #urls: string[];
  #next = 0;
  /** The socket of the latest connection (whose close `close()` waits for). */
  #ws: WebSocket | undefined;
  #resumeToken: string | undefined;
  #closed = false;
  #reconnecting: Promise<void> | undefined;
  #connecting: Promise<Connection> | undefined;

  /**
   * Creates a client; nothing is dialed until `connect()`.
   *
   * @param options Where to dial and how.
   * @throws {TypeError} If `url` is not a ws:, wss:, http: or https: URL, or `caCerts` is
   *   not an array of PEM certificates.
   * @throws {RangeError} If a limit or the heartbeat timing is out of range.
   */
  constructor(options: WebSocketClientOptions) {
    const urls = Array.isArray(options.url) ? options.url : [options.url as string | URL];
    if (urls.length === 0) throw new TypeError("Cannot dial: url is an empty list");
    for (const each of urls) {
      const url = new URL(each);
      if (!["ws:", "wss:", "http:", "https:"].includes(url.protocol)) {
        throw new TypeError(`Cannot dial ${url.protocol} URLs: use ws: or wss:`);
      }
    }
    this.#urls = urls.map(String);
    if (options.caCerts !== undefined) checkCaCerts(options.caCerts, "caCerts");
    this.#options = options;
    this.#handler = options.handler;
    this.#endpoint = new Endpoint("client", options);
    this.#backoff = new Backoff(options.reconnect);
  }

  /**
   * Sets the metadata sent in the hello; the server stores it with the connection.
   *
   * @param metadata Any JSON value.
   * @returns This client.
   */
  withMetadata(metadata: unknown): this {
    this.#metadata = metadata ?? null;
    return this;
  }

  get #logger(): Logger {
    return this.#endpoint.logger;
  }

  /** The live connection, if connected. After a reconnect this is the new connection. */
  get connection(): Connection | undefined {
    return this.#connection;
  }

  /**
   * A new subscription to this client's connection events (each connect and
   * reconnect, each close and failure). Ends when the client closes.
   *
   * @returns An async iterable of events.
   */
  events(): AsyncIterableIterator<ConnectionEvent> {
    return this.#endpoint.events.subscribe();
  }

  /**
   * Dials the server and completes the handshake.
   *
   * @returns The connection.
   * @throws {HandshakeError} If the server cannot be reached, refuses the client, or the
   *   handshake fails or times out; `retryable` says whether trying later may help.
   */
  async connect(): Promise<Connection> {
    if (this.#closed) throw new TypeError("Cannot connect: the client is closed");
    if (this.#connection && !this.#connection.isClosed) return this.#connection;
    // Concurrent calls share one dial rather than opening a socket each.
    this.#connecting ??= this.#dialEach().finally(() => this.#connecting = undefined);
    return await this.#connecting;
  }

  /** Dials each URL once, in turn, until one connects; rejects with the last failure. */
  async #dialEach(): Promise<Connection> {
    for (let tried = 1;; tried++) {
      try {
        return await this.#dial();
      } catch (error) {
        const terminal = error instanceof HandshakeError && !error.retryable;
        if (terminal || tried >= this.#urls.length || this.#closed) throw error;
      }
    }
  }

  /**
   * Stops reconnecting and closes the connection gracefully.
   *
   * @returns Resolves when the connection has ended.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#backoff.cancel();
    await this.#connection?.close({ timeout: 1_000 });
    // The connection ends when it sends its close frame; the socket closes when the server's
    // answers it. A process that exits in between (Ctrl-C) shows up as dropped (1006) on the
    // other end, so wait for the handshake, bounded.
    await this.#socketClosed(CLOSE_HANDSHAKE_MS);
    await this.#reconnecting;
    this.#endpoint.events.end();
  }

  /** Resolves when the current socket has closed, or after `ms`. */
  #socketClosed(ms: number): Promise<void> {
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        ws!.removeEventListener("close", done);
        resolve();
      }
      ws.addEventListener("close", done);
    });
  }

  /** Same as {@linkcode close}; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Dials the next URL; a failure moves the turn on to the one after. */
  #dial(): Promise<Connection> {
    const turn = this.#next;
    return this.#dialUrl(turn).catch((error) => {
      // By position, not by URL: a list may name one server twice.
      this.#next = (turn + 1) % this.#urls.length;
      throw error;
    });
  }

  #dialUrl(turn: number): Promise<Connection> {
    const url = this.#urls[turn];
    const options = this.#options;
    const limits = options.limits ?? {};
    const handshakeTimeout = limits.handshakeTimeout ?? 10_000;
    return new Promise<Connection>((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = openWebSocket(url, { headers: options.headers, caCerts: options.caCerts });
      } catch (error) {
        reject(
          new HandshakeError(`Cannot connect: ${(error as Error).message}`, 1006, false, {
            cause: error,
          }),
        );
        return;
      }
      let settled = false;
      const fail = (error: HandshakeError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      };
      // Bounds the TCP and WebSocket opening; the session bounds the handshake after that.
      const timer = setTimeout(() => {
        fail(
          new HandshakeError(
            `Cannot connect: no answer within ${handshakeTimeout} ms`,
            CloseCode.HandshakeTimeout,
            true,
          ),
        );
        ws.close();
      }, handshakeTimeout);
      // The runtime's reason for a failed dial (refused, a certificate it does not trust)
      // comes in the error event; the close event that follows says only 1006.
      let failure = "";
      const onEarlyError = (event: Event): void => {
        failure = (event as ErrorEvent).message ?? "";
      };
      const onEarlyClose = (event: CloseEvent): void => {
        fail(
          new HandshakeError(
            `Cannot connect to ${url}: ${
              describeDialFailure(event.code, event.reason, failure, options.caCerts)
            }`,
            event.code || 1006,
            true,
          ),
        );
      };
      ws.addEventListener("error", onEarlyError);
      ws.addEventListener("close", onEarlyClose);
      ws.addEventListener("open", () => {
        this.#ws = ws;
        ws.removeEventListener("error", onEarlyError);
        ws.removeEventListener("close", onEarlyClose);
        clearTimeout(timer);
        if (settled) {
          ws.close();
          return;
        }
        this.#open(ws, turn, handshakeTimeout, (connection) => {
          settled = true;
          resolve(connection);
        }, (info) => {
          settled = true;
          const terminal = TERMINAL_CLOSE_CODES.has(info.code);
          reject(
            new HandshakeError(
              `Handshake failed: ${describeClose(info.code, info.reason)}`,
              info.code,
              !terminal,
              info.error ? { cause: info.error } : undefined,
            ),
          );
        });
      }, { once: true });
    });
  }

  #open(
    ws: WebSocket,
    turn: number,
    handshakeTimeout: number,
    onOpen: (connection: Connection) => void,
    onFail: (info: ConnectionCloseInfo) => void,
  ): void {
    const endpoint = this.#endpoint;
    let opened = false;
    endpoint.connect(adaptWebSocket(ws, RUNTIME.binaryType), {
      remoteAddr: remoteOf(this.#urls[turn]),
      metadata: this.#metadata,
      handler: this.#handler,
      session: {
        handshakeTimeout,
        splitMessages: RUNTIME.clientDelaysMidSizeMessages,
        noDelay: RUNTIME.clientSetsNoDelay,
      },
      hello: { metadata: this.#metadata, resumeToken: this.#resumeToken },
      hooks: {
        onOpen: (open, welcome) => {
          opened = true;
          if (welcome?.resumeToken) this.#resumeToken = welcome.resumeToken;
          this.#connection = open;
          endpoint.opened(open, welcome?.resumed === true);
          onOpen(open);
          if (this.#closed) open.close({ timeout: 0 });
        },
        onServe: (handler) => {
          this.#handler = handler;
        },
        onEnd: (ended, info) => {
          if (!opened) {
            onFail(info);
            return;
          }
          endpoint.ended(ended, info);
          if (this.#connection === ended && this.#shouldReconnect(info.code)) {
            // Tried next: the one after, as NATS clients do (this one may be frozen or
            // draining; the id comes back anywhere the resume token is known).
            this.#next = (turn + 1) % this.#urls.length;
            this.#reconnecting = this.#reconnect();
          }
        },
      },
    });
  }

  #shouldReconnect(code: number): boolean {
    if (this.#closed || this.#options.keepAlive === false) return false;
    if (TERMINAL_CLOSE_CODES.has(code)) {
      this.#logger.error(
        "swaggersocket: server refused the client; not reconnecting",
        code,
      );
      return false;
    }
    return true;
  }

  async #reconnect(): Promise<void> {
    const backoff = this.#backoff;
    let lastError: unknown;
    let ms = backoff.delay(1);
    for (let attempt = 1; attempt <= backoff.maxAttempts; attempt++) {
      await backoff.wait(attempt, ms);
      if (this.#closed) return;
      try {
        await this.#dial();
        this.#logger.info("swaggersocket: reconnected", { attempts: attempt });
        return;
      } catch (error) {
        lastError = error;
        ms = backoff.delay(attempt + 1);
        this.#logger.warn(
          "swaggersocket: reconnect attempt failed",
          { attempt, retryInMs: attempt < backoff.maxAttempts ? Math.round(ms) : undefined },
          error,
        );
        if (error instanceof HandshakeError && !error.retryable) break;
        if (this.#closed) return;
      }
    }
    this.#endpoint.events.publish({
      type: EventType.ConnectionFailure,
      connectionId: this.#connection?.id ?? "",
      error: new HandshakeError(
        `Gave up reconnecting: ${(lastError as Error | undefined)?.message ?? "no attempts left"}`,
        (lastError as HandshakeError | undefined)?.code ?? 1006,
        false,
        { cause: lastError },
      ),
    });
  }
}

function describeClose(code: number, reason: string): string {
  if (code === 1006 || code === 0) return "connection failed (1006)";
  return reason ? `${code} ${reason}` : String(code);
}

/**
 * Why a dial failed, from its close event and the runtime's error message, with a hint when
 * the server's certificate was not trusted.
 */
function describeDialFailure(
  code: number,
  reason: string,
  message: string,
  caCerts: string[] | undefined,
): string {
  const { detail, untrustedIssuer, firstAttemptHidden } = dialFailure(message);
  if (!detail || (code !== 1006 && code !== 0)) return describeClose(code, reason);
  const hint = firstAttemptHidden
    ? "; that is Deno's retry over HTTP/2, which this server does not speak: the first " +
      "attempt failed, often on a certificate not trusted here (a private CA goes in " +
      "caCerts, agent.ts: --ca FILE)"
    : !untrustedIssuer
    ? ""
    : caCerts?.length
    ? "; the server's certificate is not signed by the given caCerts"
    : "; if the server's certificate is self-signed or from a private CA, pass that CA in " +
      "caCerts (agent.ts: --ca FILE)";
  return `${detail} (1006)${hint}`;
}

function remoteOf(url: string | URL): { hostname: string; port: number } {
  const parsed = new URL(url);
  const secure = parsed.protocol === "wss:" || parsed.protocol === "https:";
  return {
    hostname: parsed.hostname.replace(/^\[|\]$/g, ""),
    port: Number(parsed.port) || (secure ? 443 : 80),
  };
}
