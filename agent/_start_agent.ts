/**
 * Starting an agent: dialing the gateway, retrying until it is up, and serving over the
 * socket. `agent.ts` documents what it does.
 *
 * @module
 */

import type { Connection } from "../connection.ts";
import { ConnectionClosedError, HandshakeError } from "../errors.ts";
import { EventType, type Handler, type HeartbeatOptions, type Logger } from "../types.ts";
import { WebSocketClient } from "../client.ts";
import { Backoff, type ReconnectOptions } from "../_backoff.ts";
import { TERMINAL_CLOSE_CODES } from "../protocol/close_codes.ts";
import { DEFAULT_AGENTS_PATH } from "../gateway/_defaults.ts";
import { tunnelHandler } from "./_tunnel.ts";
import { demoHandler } from "./_demo_api.ts";

/** Options for {@linkcode startAgent}. */
export interface AgentOptions {
  /**
   * The gateway's agents URL, e.g. `ws://127.0.0.1:8080/agents/connect`, or several (the
   * gateways of a cluster): the agent dials them in turn, moving on when one fails. An
   * `http(s)://` or `ws(s)://` URL without a path gets the default agents path.
   */
  url: string | URL | readonly (string | URL)[];
  /**
   * The agent's name: callers reach it at `/agents/{name}/…`. 1–128 letters, digits, `.`,
   * `_`, `~` or `-`, starting with a letter or digit, and not shaped like a connection id
   * (the gateway refuses other names with 4004).
   */
  name: string;
  /** The gateway's shared token, if it requires one. */
  token?: string;
  /** More metadata to send (merged under `name` and `token`). */
  metadata?: Record<string, unknown>;
  /** Forward every request to this local HTTP server instead of serving the demo API. */
  upstream?: string | URL;
  /**
   * With `upstream`: make a `Location` or cookie `Path` under the upstream's base URL
   * relative to it (see {@linkcode tunnelHandler}), so its address never leaks. Default `true`.
   */
  rewrite?: boolean;
  /** Serve this handler instead (overrides `upstream` and the demo API). */
  handler?: Handler;
  /**
   * Reconnection backoff; also paces retries of the first connect, with the same defaults
   * (see {@linkcode ReconnectOptions}).
   */
  reconnect?: ReconnectOptions;
  /** Heartbeat timing. */
  heartbeat?: HeartbeatOptions;
  /**
   * Called with each request before it is served (for logging). A tunnel (`upstream`)
   * otherwise makes no `Request` of what it forwards; with this it serves through one.
   */
  onRequest?: (request: Request) => void;
  /** Where the client's log lines go. Default: nowhere. */
  logger?: Logger;
  /**
   * CA certificates (PEM text, not file names) to trust for a `wss://` (or `https://`)
   * gateway, besides the runtime's default roots: for a gateway whose certificate is
   * self-signed or comes from a private CA. The CLI's `--ca FILE` reads one file into it.
   * Deno and Bun (see `WebSocketClientOptions.caCerts`). Default: the default roots only.
   *
   * @example Usage
   * ```ts ignore
   * const agent = startAgent({
   *   url: "wss://gateway.internal:8443",
   *   name: "printer",
   *   caCerts: [await Deno.readTextFile("ca.pem")],
   * });
   * ```
   */
  caCerts?: string[];
}

/** A running agent, from {@linkcode startAgent}. */
export interface Agent {
  /** The underlying client (events, the live connection). */
  readonly client: WebSocketClient;
  /** Resolves with the first connection; rejects if refused or closed before connecting. */
  readonly ready: Promise<Connection>;
  /**
   * Resolves when the agent has stopped for good: with `undefined` after `close()`, or with
   * the error when the gateway refused it or reconnecting gave up, or with a
   * `ConnectionClosedError` when the gateway closed it with a terminal code (4003: its
   * credential was revoked; 4015: a newer connection with the same credential took its name).
   */
  readonly stopped: Promise<Error | undefined>;
  /** Stops reconnecting and closes the connection. */
  close(): Promise<void>;
  /** Same as `close()`; for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Resolves the URL agents dial: `ws(s)://`, with the default path when there is none. */
function agentsUrl(input: string | URL): URL {
  const url = new URL(input);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = DEFAULT_AGENTS_PATH;
  return url;
}

/**
 * Starts an agent: dials the gateway (retrying until it is up), serves the demo API, a
 * tunnel to `upstream`, or `handler`, and reconnects with backoff when the connection is
 * lost. A refusal by the gateway (a missing or wrong token) stops it: `ready` rejects, or
 * `stopped` resolves with the error.
 *
 * @example Usage
 * ```ts ignore
 * import { startAgent } from "@swaggersocket/swaggersocket/agent";
 *
 * await using agent = startAgent({ url: "ws://127.0.0.1:8080/agents/connect", name: "demo" });
 * await agent.ready; // now http://127.0.0.1:8080/agents/demo/hello answers
 * ```
 *
 * @param options Where to dial, the name and token, and what to serve.
 * @returns The running agent.
 * @throws {TypeError} If the URL or `upstream` is not a valid URL of the right kind.
 */
export function startAgent(options: AgentOptions): Agent {
  const urls = (Array.isArray(options.url) ? options.url : [options.url as string | URL])
    .map(agentsUrl);
  const served = options.handler ??
    (options.upstream !== undefined
      ? tunnelHandler(options.upstream, { rewrite: options.rewrite })
      : demoHandler(options.name));
  const onRequest = options.onRequest;
  const handler: Handler = onRequest
    ? (request, info) => {
      onRequest(request);
      return served(request, info);
    }
    : served;
  const metadata: Record<string, unknown> = {
    ...options.metadata,
    name: options.name,
    ...(options.token !== undefined ? { token: options.token } : {}),
  };
  const client = new WebSocketClient({
    url: urls,
    handler,
    reconnect: options.reconnect,
    heartbeat: options.heartbeat,
    logger: options.logger,
    caCerts: options.caCerts,
  }).withMetadata(metadata);

  let closed = false;
  const backoff = new Backoff(options.reconnect);
  let resolveStopped!: (error: Error | undefined) => void;
  const stopped = new Promise<Error | undefined>((resolve) => resolveStopped = resolve);

  // The client's own reconnection gives up (non-retryably) on a refusal: that is the end.
  // So is a terminal close of an open connection (the gateway revoked the agent's
  // credential, or a newer connection with the same one took its name): the client does
  // not reconnect after it.
  const events = client.events();
  (async () => {
    for await (const event of events) {
      if (event.type !== EventType.ConnectionFailure) continue;
      const error = event.error;
      if (
        error instanceof HandshakeError ||
        (error instanceof ConnectionClosedError && TERMINAL_CLOSE_CODES.has(error.code))
      ) {
        resolveStopped(error);
        return;
      }
    }
  })();

  // The first connect is retried too, with the same backoff, until the gateway is up.
  const ready = (async (): Promise<Connection> => {
    for (let attempt = 1;; attempt++) {
      if (closed) throw new DOMException("The agent was closed", "AbortError");
      try {
        return await client.connect();
      } catch (error) {
        const fatal = !(error instanceof HandshakeError) || !error.retryable ||
          attempt >= backoff.maxAttempts;
        if (fatal || closed) {
          resolveStopped(error as Error);
          throw error;
        }
        const ms = backoff.delay(attempt);
        options.logger?.warn("cannot connect yet", {
          url: urls.map((url) => url.href).join(" "),
          attempt,
          retryInMs: Math.round(ms),
          cause: (error as Error).message,
        });
        await backoff.wait(attempt, ms);
      }
    }
  })();
  // `ready` is also observed through `stopped`: no unhandled rejection when nobody awaits it.
  ready.catch(() => {});

  const agent: Agent = {
    client,
    ready,
    stopped,
    close: async () => {
      closed = true;
      backoff.cancel();
      await client.close();
      await events.return?.();
      resolveStopped(undefined);
    },
    [Symbol.asyncDispose]: () => agent.close(),
  };
  return agent;
}
