/**
 * Starting a gateway: its options, the HTTP routes, forwarding to agents, and accepting
 * their sockets. `gateway.ts` documents what it does.
 *
 * @module
 */

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Buffer } from "node:buffer";
// @ts-types="@types/ws"
import { WebSocketServer as WsServer } from "ws";
import type { Connection, HandlerInfo } from "../connection.ts";
import type { HeartbeatOptions, Limits, Logger } from "../types.ts";
import { checkTls, type TlsOptions } from "../_tls.ts";
import { withoutHopByHopList } from "../_hop_by_hop.ts";
import { mapResponseListPaths, type PathMap } from "../_path_rewrite.ts";
import { timingSafeEqual } from "../_timing_safe_equal.ts";
import { Deadline, deadlinesOf, MAX_TIMER_MS } from "../_deadlines.ts";
import type { AnswerParts } from "../connection/_answer_parts.ts";
import { CANCEL, Cancel } from "../connection/_cancel.ts";
import { headerList } from "../connection/_header_list.ts";
import {
  type IncomingParts,
  type OutgoingParts,
  partsOfResponse,
  responseOf,
  withParts,
} from "../connection/_parts_handler.ts";
import type { CancellableForward } from "../connection/_request_parts.ts";
import { CallerRequest, headersOf, listenHttp } from "../runtime/_node_http.ts";
import { adaptWsSocket } from "../runtime/_ws.ts";
import { upgradedSockets, WebSocketServer } from "../server.ts";
import { DEFAULT_SETTINGS } from "../protocol/handshake.ts";
import { addressMatcher, forwardedClient } from "./_address_match.ts";
import { agentRequestHeaders, type Hop } from "./_proxy_headers.ts";
import { type AgentRoute, agentRoute, rawTarget, splitTarget } from "./_raw_target.ts";
import { AgentAdmission, type CredentialsReload } from "./_admission.ts";
import { type AgentInfo, describeAgent, nameOf } from "./_agent_info.ts";
import { agentPage } from "./_agent_list.ts";
import { markWhole } from "../connection/_whole.ts";
import { GatewayObserver } from "./_observer.ts";
import {
  CLUSTER_LINK_PATH,
  CLUSTER_REFRESH_PATH,
  clusterLinkLimits,
  ClusterMembership,
  type ClusterOptions,
  MOVED_HEADER,
  SECRET_HEADER,
  sharedResumeTokens,
} from "./_cluster.ts";
import { type Flow, passThrough } from "./_pass_through.ts";
import { dashboardPage } from "./_dashboard.ts";
import type { GatewayRoute } from "./_stats.ts";
import { METRICS_CONTENT_TYPE } from "./_metrics.ts";
import { ClientRefusedError } from "../errors.ts";
import {
  DEFAULT_AGENT_TIMEOUT,
  DEFAULT_AGENTS_PATH,
  DEFAULT_GATEWAY_HOSTNAME,
  DEFAULT_GATEWAY_PORT,
  STALLED_READER_TIMEOUT,
} from "./_defaults.ts";

/** Options for {@linkcode startGateway}. */
export interface GatewayOptions {
  /** Interface to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Port to listen on; 0 picks a free one (see `gateway.addr`). Default 8080. */
  port?: number;
  /** Path where agents dial in with a WebSocket. Default `"/agents/connect"`. */
  path?: string;
  /**
   * Shared secret agents must send as `token` in their metadata. With `credentialsFile`
   * too, it admits only names the file does not list. Default: none required.
   */
  token?: string;
  /**
   * A file binding agent names to their own tokens, one `NAME sha256:HEX` line each (the
   * SHA-256 of the token in hex; `#` comments and blank lines allowed). Listed names need
   * their token; unlisted ones get in only with `token`. Read at start (a bad file throws a
   * `CredentialsFileError` naming the line) and by `gateway.reloadCredentials()`.
   * Default: none.
   */
  credentialsFile?: string;
  /**
   * Secret every HTTP caller must present, as `Authorization: Bearer <apiToken>` or, so that
   * callers keep `Authorization` for the agent's API, `Proxy-Authorization: Bearer
   * <apiToken>`; else 401. `GET /healthz` needs none. The gateway consumes it: it is not
   * forwarded to agents. Default: none required.
   */
  apiToken?: string;
  /**
   * Addresses and CIDR blocks (`10.0.0.0/8`, `::1`) of proxies in front of the gateway whose
   * forwarding headers are believed: from them, `X-Forwarded-For` and `Forwarded` are
   * appended to and `X-Forwarded-Host` and `-Proto` kept (and used for rewriting), and an
   * agent's dial comes from the client its `X-Forwarded-For` names (for the per-address
   * limits, the listing and the log; nginx's `real_ip_recursive`). From anyone else those
   * headers are replaced. Default: none.
   */
  trustedProxies?: string[];
  /**
   * Send agents the caller's `Host` (a tunnel passes it to its upstream), as nginx's
   * `proxy_set_header Host $host`. Default `false`: the tunnel sends its upstream's own host
   * (`X-Forwarded-Host` carries the caller's either way).
   */
  preserveHost?: boolean;
  /**
   * Rewrite what points into the agent's own root, as nginx's `proxy_redirect default` and
   * `proxy_cookie_path` do: a root-relative `Location` (or one on the gateway's own origin)
   * gets the `/agents/{agent}` prefix, and so does each `Set-Cookie` `Path`. Default `true`.
   */
  rewrite?: boolean;
  /**
   * Milliseconds an agent has to send a response head before the caller gets 504, counted
   * from the request's start and again from each piece of the request's body the agent takes
   * (nginx's `proxy_send_timeout` and `proxy_read_timeout`): an upload longer than this is not
   * cut while it moves, and one that stalls ends in 504, or in 408 when it is the caller's body
   * that stopped coming (nginx's `client_body_timeout`). Default 30 000.
   */
  timeout?: number;
  /**
   * Milliseconds a caller's connection may take to send a complete request head, from when
   * it opens or its previous response ends; then it is closed (nginx's
   * `client_header_timeout` and `keepalive_timeout`). Bounds what a slow or silent caller
   * holds. Default 30 000.
   */
  idleTimeout?: number;
  /**
   * Milliseconds a caller may take nothing of an answer that is still streaming before its
   * connection is cut (nginx's `send_timeout`); the agent's exchange is then cancelled, which
   * frees the share of the agent's connection window its unread bytes held. Default 60 000.
   */
  sendTimeout?: number;
  /**
   * Milliseconds a caller may take nothing of a streaming answer while the answers waiting for
   * their callers fill the agent's connection (three quarters of its receive window), before
   * that caller's exchange is cut and its answer ends short; the same on the links between a
   * cluster's instances, each of which carries every caller of the agents behind it. A few
   * callers that stop reading then stall the agent's other callers for this long at most,
   * rather than for the send timeout. `Infinity` cuts none (only the send timeout does).
   * Default 5 000.
   */
  stalledReaderTimeout?: number;
  /** Heartbeat timing on agents' connections. */
  heartbeat?: HeartbeatOptions;
  /**
   * Run as one instance of a cluster on Redis: agents held here are recorded for the other
   * instances, a call for an agent held by another instance goes there in one streamed hop,
   * a name taken on another instance since is given up (4015), resume tokens are shared (an
   * agent keeps its id on any instance), and `GET /agents` lists every instance's agents.
   * Default: a single gateway, no Redis.
   *
   * @example Two instances on one Redis
   * ```ts ignore
   * import { createClient } from "npm:@redis/client@6.4.0";
   * const redis = createClient({ url: "redis://10.0.0.5:6379", disableOfflineQueue: true });
   * await redis.connect();
   * const gateway = await startGateway({
   *   hostname: "0.0.0.0",
   *   cluster: { redis, secret: Deno.env.get("CLUSTER_SECRET")!, advertise: "http://10.0.0.11:8080" },
   * });
   * ```
   */
  cluster?: ClusterOptions;
  /** Milliseconds `close()` lets in-flight exchanges finish. Default 5 000. */
  closeTimeout?: number;
  /** Where log lines go (agents connecting and leaving, failures). Default: nowhere. */
  logger?: Logger;
  /**
   * Serve `https` and `wss` directly with this certificate and key, both PEM text (not file
   * names; the CLI's `--cert` and `--key` read the files), on Deno and on Bun. `gateway.url`
   * then starts with `https://`, `gateway.agentsUrl` with `wss://`, and forwarded requests
   * carry `x-forwarded-proto: https`. Agents whose runtime does not trust the certificate's
   * issuer pass it as `caCerts` (`--ca FILE`). Default: plain `http` and `ws`.
   *
   * @example Usage
   * ```ts ignore
   * const gateway = await startGateway({
   *   port: 8443,
   *   tls: { cert: await Deno.readTextFile("cert.pem"), key: await Deno.readTextFile("key.pem") },
   * });
   * console.log(gateway.agentsUrl); // wss://127.0.0.1:8443/agents/connect
   * ```
   */
  tls?: TlsOptions;
}

/** A running gateway, from {@linkcode startGateway}. */
export interface Gateway {
  /** Where it listens (the real port when `port` was 0). */
  readonly addr: { hostname: string; port: number };
  /** Its HTTP base URL, e.g. `http://127.0.0.1:8080` (`https://` with `tls`). */
  readonly url: string;
  /**
   * The WebSocket URL agents dial, e.g. `ws://127.0.0.1:8080/agents/connect` (`wss://` with
   * `tls`).
   */
  readonly agentsUrl: string;
  /** The swaggersocket server holding the agents' connections (events, lookups). */
  readonly server: WebSocketServer;
  /** The connected agents, as `GET /agents` lists them. */
  agents(): AgentInfo[];
  /**
   * Reads `credentialsFile` again (the script does on SIGHUP). The new table applies at
   * once: connected agents whose entry was removed or changed are closed with 4003 and do
   * not reconnect. If the file cannot be read or parsed, the old table stays in force.
   *
   * @returns How many names the file lists, and how many agents were closed.
   * @throws {TypeError} If the gateway has no `credentialsFile`.
   * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
   */
  reloadCredentials(): Promise<CredentialsReload>;
  /** Stops accepting, lets in-flight exchanges finish (bounded), closes agents and the listener. */
  close(): Promise<void>;
  /** Same as `close()`; for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Methods that web `Request`s refuse (the Fetch standard's forbidden methods). */
const UNCARRIED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/** A request's wait for the head of its answer (see `untilHead`). */
interface HeadWatch {
  /** Aborted at the deadline or when the caller goes away. */
  cancel: Cancel;
  /** The request body's flow, kept by its `passThrough`. */
  flow: Flow;
  /** Whether the deadline came while the caller's body was awaited. */
  callerStalled: boolean;
  /** Notes that a piece of the body went on. */
  moved(): void;
  /** The head is in, or the exchange is over: no deadline any more. */
  settle(): void;
}

/** A JSON error answer: `{ error, message }`. */
function errorResponse(status: number, error: string, message: string): Response {
  return jsonResponse({ error, message }, status);
}

/**
 * Milliseconds an agent that lost its connection may come back and keep its id (the
 * server's default, said here because a cluster's shared tokens live as long).
 */
const RESUME_WINDOW = 30_000;

/** Where the dashboard is, and its event stream. */
const DASHBOARD_PATH = "/dashboard";
const DASHBOARD_EVENTS_PATH = "/dashboard/events";

/** A text answer of the gateway's own, with its length. */
function textResponse(
  status: number,
  text: string,
  type = "text/plain; charset=utf-8",
): Response {
  const bytes = new TextEncoder().encode(text);
  const response = new Response(bytes, {
    status,
    headers: {
      "content-type": type,
      "content-length": `${bytes.length}`,
      "cache-control": "no-store",
    },
  });
  // Its body is in memory: the front writes it with its head in one go.
  markWhole(response, bytes);
  return response;
}

/** A JSON answer of the gateway's own, with its length. */
function jsonResponse(value: unknown, status = 200): Response {
  return textResponse(status, JSON.stringify(value), "application/json");
}

/**
 * Starts a gateway: an HTTP server that accepts agents on a WebSocket path and forwards
 * `/agents/{id-or-name}/…` to them. It serves with `node:http` (`node:https` with `tls`) on
 * Deno and on Bun alike, which hands over what a reverse proxy needs and the runtimes' own
 * servers do not (the raw target, a GET's body, a streamed body's length); agents' sockets
 * are upgraded by the `ws` package. It resolves once listening; `gateway.addr` has the port.
 *
 * @example Usage
 * ```ts ignore
 * import { startGateway } from "@swaggersocket/swaggersocket/gateway";
 *
 * await using gateway = await startGateway({ port: 0 });
 * // An agent dials gateway.agentsUrl with metadata { name: "printer" }, then:
 * const response = await fetch(`${gateway.url}/agents/printer/status`);
 * ```
 *
 * @param options Where to listen, the agents' path, the token and the timeout.
 * @returns The running gateway, once it listens.
 * @throws {TypeError} If an option is invalid or `tls` is not PEM text.
 * @throws {RangeError} If `timeout` is not positive.
 * @throws {CredentialsFileError} If `credentialsFile` cannot be read or a line is not an entry.
 * @throws {Error} If it cannot listen (`EADDRINUSE`, …).
 */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const hostname = options.hostname ?? DEFAULT_GATEWAY_HOSTNAME;
  const port = options.port ?? DEFAULT_GATEWAY_PORT;
  const path = options.path ?? DEFAULT_AGENTS_PATH;
  const timeout = options.timeout ?? DEFAULT_AGENT_TIMEOUT;
  const closeTimeout = options.closeTimeout ?? 5_000;
  const token = options.token;
  const apiToken = options.apiToken;
  const logger = options.logger;
  const isTrustedProxy = addressMatcher(options.trustedProxies ?? []);
  const preserveHost = options.preserveHost ?? false;
  const rewrite = options.rewrite ?? true;
  const tls = options.tls === undefined ? undefined : checkTls(options.tls, "tls");
  /**
   * `"https"` when the gateway serves TLS itself, else `"http"`: the scheme of `gateway.url`
   * (`wss`/`ws` for `agentsUrl`), and what `x-forwarded-proto` says to agents.
   */
  const protocol: "http" | "https" = tls ? "https" : "http";
  if (apiToken !== undefined && apiToken.length === 0) {
    throw new TypeError("Invalid apiToken: must not be empty");
  }
  if (!path.startsWith("/")) throw new TypeError(`Invalid agents path: ${path} must start with /`);
  if (!(timeout > 0)) throw new RangeError(`Invalid timeout: ${timeout} must be positive`);
  const idleTimeout = options.idleTimeout ?? 30_000;
  if (!(idleTimeout > 0)) {
    throw new RangeError(`Invalid idleTimeout: ${idleTimeout} must be positive`);
  }
  const sendTimeout = options.sendTimeout ?? 60_000;
  if (!(sendTimeout > 0)) {
    throw new RangeError(`Invalid sendTimeout: ${sendTimeout} must be positive`);
  }
  const stalledReaderTimeout = options.stalledReaderTimeout ?? STALLED_READER_TIMEOUT;
  if (
    !(stalledReaderTimeout > 0 &&
      (stalledReaderTimeout <= MAX_TIMER_MS || stalledReaderTimeout === Infinity))
  ) {
    throw new RangeError(
      `Invalid stalledReaderTimeout: ${stalledReaderTimeout} must be positive, at most 2^31 − 1 or Infinity`,
    );
  }
  // Many callers share each agent's connection (and a cluster link): a few that stop reading
  // must not stall it.
  const shared: Limits = stalledReaderTimeout === Infinity
    ? {}
    : { stalledReaderTimeout: Math.ceil(stalledReaderTimeout) };
  const linkLimits = clusterLinkLimits(shared);
  const admission = new AgentAdmission<Connection>({
    token,
    credentialsFile: options.credentialsFile,
    logger,
  });

  /** Forwarded exchanges still running: aborted if `close()` outlasts its grace period. */
  const inFlight = new Set<Cancel>();
  // Assigned below: the server's hooks need it, and it needs the server.
  // deno-lint-ignore prefer-const
  let observer!: GatewayObserver;
  // A cluster's instances share the agents' resume tokens.
  const resumeTokens = options.cluster &&
    sharedResumeTokens(options.cluster, RESUME_WINDOW);
  const server = new WebSocketServer({
    noServer: true,
    path,
    resumeWindow: RESUME_WINDOW,
    sharedResume: resumeTokens,
    heartbeat: options.heartbeat,
    limits: shared,
    closeTimeout,
    // The server's own info lines (connection received, closed) are what the observer says
    // with names and reasons: at debug they do not say it twice.
    logger: logger && { ...logger, info: (...args: unknown[]) => logger.debug(...args) },
    // Names, tokens and who holds which name: see `_admission.ts`.
    authorize: async (context) => {
      const refuse = (code: number, reason: string): void =>
        observer.refused(code, reason, nameOf(context.metadata), context.remoteAddr);
      try {
        if (await admission.authorize(context)) return true;
        refuse(4003, "Unauthorized");
        return false;
      } catch (error) {
        if (error instanceof ClientRefusedError) refuse(error.code, error.reason);
        throw error;
      }
    },
    onPong: (_data, rtt) => observer.rtt(rtt),
  });
  observer = new GatewayObserver(server, () => inFlight.size, logger);
  // Joined once listening (its default address is the gateway's own URL).
  let cluster: ClusterMembership | undefined;

  function findAgent(key: string): Connection | undefined {
    // An id-shaped key only by id, any other only by name.
    return admission.find(key, (id) => server.connection(id));
  }

  async function forward(
    request: CallerRequest,
    route: AgentRoute,
    hop: Hop,
    peer: boolean,
  ): Promise<Response | AnswerParts | OutgoingParts> {
    const agentKey = route.key;
    const started = performance.now();
    const time = Date.now();
    let bytesIn = 0;
    let bytesOut = 0;
    let status = 0;
    let durationMs = 0;
    /** Tells the observer once the exchange is over (the response body ended or broke off). */
    const ended = (error?: Error): void =>
      observer.forwarded({
        time,
        agent: agentKey,
        method: request.method,
        path: route.target,
        status,
        durationMs,
        bytesIn,
        bytesOut,
        error,
      });
    /** The head is in: what the access log and the dashboard show of it. */
    const headIn = (response: { status: number }): void => {
      status = response.status;
      durationMs = Math.round((performance.now() - started) * 10) / 10;
    };
    /** The agent's exchange, while it is in flight. */
    let exchange: Cancel | undefined;
    /**
     * Every answer leaves here, the gateway's own errors too: the observer hears of it once
     * its body is written (by the front, to a caller) or relayed (over a link, to a peer).
     */
    const answer = (
      answered: Response | AnswerParts,
      error?: Error,
    ): Response | AnswerParts | OutgoingParts => {
      headIn(answered);
      const over = (bytes: number, failure?: unknown, sentStatus?: number): void => {
        bytesOut = bytes;
        // The front answered otherwise (a 502 for a broken length): the log says what it sent.
        if (sentStatus !== undefined) status = sentStatus;
        if (exchange) inFlight.delete(exchange);
        // A caller that hangs up is no failure of the agent's.
        ended(error ?? (request.hungUp ? undefined : failure as Error | undefined));
      };
      if (!peer) {
        // The front writes the body and says when it is over: no stream between, and none at
        // all for a body that is in memory (the gateway's own answers are, as `partsOfResponse`
        // takes them; reading `body` would make a stream).
        request.sent = over;
        return answered instanceof Response ? partsOfResponse(answered) : answered;
      }
      // To a peer instance, as its link's parts form answers (no `Response` made): a body that
      // came whole goes as it is, one that streams is counted as it goes; an agent's answer
      // without a length stays so through the link.
      const out: OutgoingParts = answered instanceof Response ? partsOfResponse(answered) : {
        ...answered,
        withoutLength: !answered.headers.some(([name]) => name === "content-length"),
      };
      const body = out.body;
      if (!(body instanceof ReadableStream)) {
        over(body?.byteLength ?? 0);
        return out;
      }
      let bytes = 0;
      out.body = passThrough(body, (n) => bytes += n, (failure) => over(bytes, failure));
      return out;
    };
    const agent = findAgent(agentKey);
    if (!agent) {
      if (peer) {
        // The instance that sent it found this one in Redis: the agent has just moved on.
        const moved = errorResponse(
          421,
          "agent_moved",
          `Agent "${agentKey}" is not held by this instance (any more)`,
        );
        moved.headers.set(MOVED_HEADER, "1");
        return answer(moved);
      }
      // Another instance of the cluster may hold it.
      if (cluster) return answer(...await viaCluster(cluster, request, route, hop));
      return answer(
        errorResponse(404, "agent_not_found", `No agent with id or name "${agentKey}"`),
      );
    }
    const headers = agentRequestHeaders(request.fields, hop);
    // The caller hanging up before the head arrives cancels the agent's exchange too.
    // (After the head, cancelling the response body does that.)
    const watch = untilHead(request, "The agent");
    const { cancel, moved } = watch;
    inFlight.add(exchange = cancel);
    // A peer's body may have come whole: nothing then to count as it goes.
    let sentBody: Uint8Array | ReadableStream<Uint8Array> | null = null;
    if (request.body instanceof Uint8Array) {
      sentBody = request.body;
      bytesIn = sentBody.byteLength;
    } else if (request.body) {
      sentBody = passThrough(
        request.body,
        (n) => {
          bytesIn += n;
          moved();
        },
        () => {},
        watch.flow,
      );
    }
    let answered: AnswerParts;
    try {
      const forwarded: CancellableForward = {
        method: request.method,
        target: route.target,
        headers,
        body: sentBody,
        [CANCEL]: cancel,
      };
      answered = await agent.forwardAsParts(forwarded);
    } catch (error) {
      inFlight.delete(cancel);
      exchange = undefined;
      const name = (error as Error | undefined)?.name;
      if (name === "TimeoutError" && cancel.aborted) {
        return answer(
          watch.callerStalled ? bodyTimeout() : errorResponse(
            504,
            "agent_timeout",
            `Agent "${agentKey}" did not answer within ${timeout} ms`,
          ),
          error as Error,
        );
      }
      return answer(
        errorResponse(
          502,
          "agent_unavailable",
          `Agent "${agentKey}" went away before answering: ${(error as Error).message}`,
        ),
        error as Error,
      );
    } finally {
      watch.settle();
    }
    // The agent's answer goes on as parts, with no `Response` made (to a caller and to a peer
    // instance alike): its headers less hop-by-hop ones and, in a cluster, the one only an
    // instance sends.
    let out = withoutHopByHopList(answered.headers);
    if (cluster) out = out.filter(([name]) => name !== MOVED_HEADER);
    // The map costs a URL parse: made only for an answer that has a path to map.
    if (rewrite && out.some(([name]) => name === "location" || name === "set-cookie")) {
      mapResponseListPaths(out, gatewayPaths(request, hop));
    }
    return answer({ ...answered, headers: out });
  }

  /**
   * Finds the instance that holds an agent and sends the request on there. An owner that has
   * lost the agent since (421 with {@linkcode MOVED_HEADER}) is asked about once more, and a
   * bodiless request retried once; a body already sent cannot be, so its caller gets 503 with
   * `Retry-After`.
   *
   * @returns The answer, and the error behind it if it is a failure.
   */
  async function viaCluster(
    cluster: ClusterMembership,
    request: CallerRequest,
    route: AgentRoute,
    hop: Hop,
  ): Promise<[Response | AnswerParts, Error?]> {
    for (let attempt = 0;; attempt++) {
      let owner: string | null | undefined = attempt === 0
        ? cluster.knownOwner(route.key)
        : undefined;
      try {
        // Not remembered, or looked for again after a move: Redis says.
        owner ??= await cluster.ownerOf(route.key);
      } catch (error) {
        return [
          errorResponse(
            502,
            "cluster_unavailable",
            `Cannot find agent "${route.key}" in the cluster: ${(error as Error).message}`,
          ),
          error as Error,
        ];
      }
      if (owner === undefined) {
        return [errorResponse(404, "agent_not_found", `No agent with id or name "${route.key}"`)];
      }
      if (owner === null) {
        const response = errorResponse(
          502,
          "agent_unavailable",
          `Agent "${route.key}" was held by a gateway instance that has stopped: it should reconnect to another shortly`,
        );
        response.headers.set("retry-after", "1");
        return [response];
      }
      const answered = await hopTo(owner, request, route, hop);
      if (answered.status >= 500) cluster.forget(route.key);
      const isMoved = answered instanceof Response
        ? answered.headers.has(MOVED_HEADER)
        : answered.headers.some(([name]) => name === MOVED_HEADER);
      if (!isMoved) return [answered];
      cluster.forget(route.key);
      if (answered.body instanceof ReadableStream) await answered.body.cancel();
      if (attempt > 0 || request.body !== null) {
        const moved = errorResponse(
          503,
          "agent_moved",
          `Agent "${route.key}" is moving between gateway instances: try again`,
        );
        moved.headers.set("retry-after", "1");
        return [moved];
      }
    }
  }

  /** Sends a request on to the instance that holds its agent, within the agent timeout. */
  async function hopTo(
    owner: string,
    request: CallerRequest,
    route: AgentRoute,
    hop: Hop,
  ): Promise<Response | AnswerParts> {
    const watch = untilHead(request, "The owning instance");
    const cancel = watch.cancel;
    const body = request.body instanceof ReadableStream
      ? passThrough(request.body, watch.moved, () => {}, watch.flow)
      : request.body;
    try {
      // The owner sees the caller as this instance would have: it trusts a peer's forwarding
      // headers, and gets no API token (checked here).
      return await cluster!.hop(owner, {
        method: request.method,
        target: `${hop.prefix}${route.target}`,
        headers: agentRequestHeaders(request.fields, { ...hop, preserveHost: false }),
        body,
        [CANCEL]: cancel,
      });
    } catch (error) {
      const timedOut = (error as Error).name === "TimeoutError" && cancel.aborted;
      if (timedOut && watch.callerStalled) return bodyTimeout();
      return errorResponse(
        timedOut ? 504 : 502,
        timedOut ? "agent_timeout" : "agent_unavailable",
        `The instance holding agent "${route.key}" ${
          timedOut ? `did not answer within ${timeout} ms` : `failed: ${(error as Error).message}`
        }`,
      );
    } finally {
      watch.settle();
    }
  }

  /** The heap of the agents' answer deadlines (the system clock's). */
  const deadlines = deadlinesOf();

  /**
   * Aborts when `who` has not answered within `timeout` (a `TimeoutError`) or the caller goes
   * away, until `settle()` (called once the response head is in). The time counts from the
   * request's start and again from each piece of its body that `who` takes (`moved()`), as
   * nginx's `proxy_send_timeout` and `proxy_read_timeout` do: an upload that takes longer than
   * the timeout is not cut while it moves. When it runs out while `who` waits for more of the
   * body (`flow.starved`, kept by the body's `passThrough`), the caller is the one that
   * stalled (`callerStalled`). The front says that the caller went away through
   * `request.gone`: a listener on its signal costs more, per request.
   */
  function untilHead(request: CallerRequest, who: string): HeadWatch {
    const cancel = new Cancel();
    const flow: Flow = { starved: false };
    if (request.hungUp) {
      cancel.abort(request.reason);
      return { cancel, flow, callerStalled: false, moved() {}, settle() {} };
    }
    const clock = deadlines.clock;
    let movedAt = -Infinity;
    // On the deadline heap, not a runtime timer per request (Deno's is a Node `Timeout` here);
    // a piece of the body only notes the time, and the deadline moves when it comes due.
    const deadline = new Deadline(() => {
      const due = movedAt + timeout;
      if (due > clock.now()) return deadlines.set(deadline, due);
      watch.callerStalled = flow.starved;
      cancel.abort(
        new DOMException(
          flow.starved
            ? `The caller sent no more of the body within ${timeout} ms`
            : `${who} did not answer within ${timeout} ms`,
          "TimeoutError",
        ),
      );
    });
    deadlines.set(deadline, clock.now() + timeout);
    request.gone = (reason) => cancel.abort(reason);
    const watch: HeadWatch = {
      cancel,
      flow,
      callerStalled: false,
      moved() {
        movedAt = clock.now();
      },
      settle() {
        deadlines.set(deadline, undefined);
        request.gone = undefined;
      },
    };
    return watch;
  }

  /**
   * The answer to a caller whose body stopped arriving (nginx's `client_body_timeout`): the
   * connection closes after it, as the rest of the body will not come.
   */
  function bodyTimeout(): Response {
    const response = errorResponse(
      408,
      "request_timeout",
      `The request's body stopped arriving: nothing came for ${timeout} ms`,
    );
    response.headers.set("connection", "close");
    return response;
  }

  /** Where a response's root-relative paths go: under the agent's prefix on the gateway. */
  function gatewayPaths(request: CallerRequest, hop: Hop): PathMap {
    const host = (hop.trusted && request.field("x-forwarded-host")) || hop.host;
    const proto = (hop.trusted && request.field("x-forwarded-proto")) || hop.proto;
    let origin = "null";
    try {
      origin = new URL(`${proto}://${host}`).origin;
    } catch {
      // A Host no URL can have: only root-relative paths are mapped.
    }
    return { origin, from: "/", to: `${hop.prefix}/` };
  }

  /**
   * Whether the caller presented the API token: the name of the header that carried it
   * (which is not forwarded, so that it never reaches an agent), `""` when none is needed,
   * or `undefined` when the caller did not.
   */
  function credential(request: CallerRequest): string | undefined {
    if (apiToken === undefined) return "";
    for (const name of ["proxy-authorization", "authorization"]) {
      const value = request.field(name);
      if (value !== null && timingSafeEqual(presented(value) ?? "", apiToken)) return name;
    }
    return undefined;
  }

  /** The token in `Bearer <token>`, or the password in `Basic base64(user:token)`. */
  function presented(value: string): string | undefined {
    if (/^bearer /i.test(value)) return value.slice(7).trim();
    if (!/^basic /i.test(value)) return undefined;
    try {
      const decoded = new TextDecoder().decode(
        Uint8Array.from(atob(value.slice(6).trim()), (c) => c.charCodeAt(0)),
      );
      return decoded.slice(decoded.indexOf(":") + 1);
    } catch {
      return undefined;
    }
  }

  /** The gateway's own routes, by raw path. */
  const OWN_ROUTES: Record<string, GatewayRoute> = {
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/agents": "agents",
    "/agents/": "agents",
    [DASHBOARD_PATH]: "dashboard",
    [DASHBOARD_EVENTS_PATH]: "dashboard",
    "/": "root",
  };

  /**
   * Answers a caller's request, or (`peer`) one that another instance of the cluster sent
   * over its link: that one has had its API token checked there, its forwarding headers are
   * trusted, and it is answered here or not at all.
   */
  async function handle(
    request: CallerRequest,
    peer = false,
  ): Promise<Response | AnswerParts | OutgoingParts> {
    // Routed on the target as the caller sent it: see _raw_target.ts.
    const target = rawTarget(request.target);
    const rawPath = splitTarget(target).path;
    if (peer && rawPath === CLUSTER_REFRESH_PATH && request.method === "POST") {
      await cluster?.refresh();
      return new Response(null, { status: 204 });
    }
    const own = OWN_ROUTES[rawPath];
    if (own === undefined) return await toAgent(request, target, rawPath, peer);
    const response = await ownRoute(own, request, rawPath, splitTarget(target).query);
    observer.answered(own, response.status);
    return response;
  }

  /** Answers the gateway's own routes: health, readiness, metrics, the list, the dashboard. */
  function ownRoute(
    own: GatewayRoute,
    request: CallerRequest,
    rawPath: string,
    query: string,
  ): Response | Promise<Response> {
    if (own === "healthz") return textResponse(200, "ok\n");
    if (own === "readyz") {
      return closing ? textResponse(503, "draining\n") : textResponse(200, "ready\n");
    }
    if (credential(request) === undefined) return unauthorized(own === "dashboard");
    if (request.method !== "GET" && request.method !== "HEAD") {
      return errorResponse(405, "method_not_allowed", `Use GET ${rawPath}`);
    }
    switch (own) {
      case "metrics":
        return textResponse(200, observer.stats.render(), METRICS_CONTENT_TYPE);
      case "agents":
        return cluster
          ? cluster.agents().then(
            (agents) => listing(agents, rawPath, query),
            (error: Error) =>
              errorResponse(
                503,
                "cluster_unavailable",
                `Cannot list the cluster: ${error.message}`,
              ),
          )
          : listing(server.connections().map(describeAgent), rawPath, query);
      case "dashboard":
        return rawPath === DASHBOARD_PATH
          ? dashboardPage(DASHBOARD_EVENTS_PATH)
          : observer.feed.stream(request.signal);
      default: {
        const host = request.field("host") ?? gateway.addr.hostname;
        return jsonResponse({
          agents: `${protocol}://${host}/agents`,
          forward: `${protocol}://${host}/agents/{id-or-name}/{path}`,
          connect: `${tls ? "wss" : "ws"}://${host}${path}`,
          dashboard: `${protocol}://${host}${DASHBOARD_PATH}`,
        });
      }
    }
  }

  /** A page of `GET /agents`, with a `Link` to the next. */
  function listing(agents: AgentInfo[], rawPath: string, query: string): Response {
    const page = agentPage(agents, new URLSearchParams(query));
    if (typeof page === "string") return errorResponse(400, "bad_request", page);
    const response = jsonResponse(page.agents);
    if (page.next) response.headers.set("link", `<${rawPath}${page.next}>; rel="next"`);
    return response;
  }

  /** 401: a browser (the dashboard) is asked for the token as a Basic password. */
  function unauthorized(browser: boolean): Response {
    const response = errorResponse(
      401,
      "unauthorized",
      "This gateway needs its API token: Authorization: Bearer <token>",
    );
    response.headers.set(
      "www-authenticate",
      browser ? 'Basic realm="swaggersocket gateway"' : 'Bearer realm="swaggersocket gateway"',
    );
    return response;
  }

  /** Routes everything but the gateway's own paths: an agent's, or 404. */
  async function toAgent(
    request: CallerRequest,
    target: string,
    rawPath: string,
    peer: boolean,
  ): Promise<Response | AnswerParts | OutgoingParts> {
    const consumed = peer ? "" : credential(request);
    if (consumed === undefined) return unauthorized(false);
    const agent = agentRoute(target, "/agents/");
    if (agent === "malformed_key") {
      return errorResponse(400, "bad_request", `Malformed agent id or name in ${rawPath}`);
    }
    if (agent === "climbs_out") {
      return errorResponse(
        400,
        "bad_request",
        `The path ${rawPath} climbs out of its agent's prefix with dot segments`,
      );
    }
    if (agent) {
      if (UNCARRIED_METHODS.has(request.method.toUpperCase())) {
        // `Request` refuses these on both ends: say so, rather than blame the agent with a 502.
        return errorResponse(
          501,
          "method_not_supported",
          `The gateway cannot carry ${request.method} requests to agents`,
        );
      }
      const hop: Hop = {
        clientAddr: request.clientAddr,
        host: request.field("host") ?? "",
        proto: protocol,
        prefix: `/agents/${encodeURIComponent(agent.key)}`,
        trusted: peer || isTrustedProxy(request.clientAddr),
        preserveHost,
        credentialHeader: consumed,
      };
      return await forward(request, agent, hop, peer);
    }
    const response = errorResponse(404, "not_found", `No route for ${request.method} ${rawPath}`);
    observer.answered("other", response.status);
    return response;
  }

  const sockets = new WsServer({
    noServer: true,
    // `ws` refuses a larger message itself (1009) before buffering it whole.
    maxPayload: DEFAULT_SETTINGS.maxMessageBytes,
  });

  /**
   * The other instances' links to this one (a cluster's): each is a connection over which an
   * instance sends the requests for agents held here, many at once, with the caller's method,
   * raw target, headers and body. This instance answers them as a peer's (`handle(…, true)`):
   * its forwarding headers trusted, no API token asked, never forwarded again.
   */
  /**
   * A peer instance's request as its link's responder hands it over, answered in parts: on
   * this side of the link no `Request` or `Response` is made of a forwarded exchange.
   */
  const fromPeer = async (incoming: IncomingParts): Promise<OutgoingParts> => {
    const caller = new CallerRequest(
      incoming.method,
      incoming.target,
      incoming.headers.flat(),
      incoming.body,
      incoming.remoteAddr ?? "",
    );
    incoming.cancel.listen((reason) => caller.hangUp(reason));
    const answered = await handle(caller, true);
    // To a peer, forward() answers in parts (see its `answer`); the own routes with a `Response`.
    return answered instanceof Response ? partsOfResponse(answered) : answered as OutgoingParts;
  };

  const links = options.cluster && new WebSocketServer({
    noServer: true,
    path: CLUSTER_LINK_PATH,
    closeTimeout,
    resumeWindow: 0,
    limits: linkLimits,
    logger: logger && { ...logger, info: (...args: unknown[]) => logger.debug(...args) },
    handler: withParts(async (request: Request, info: HandlerInfo): Promise<Response> => {
      const caller = new CallerRequest(
        request.method,
        info.target,
        headerList(request.headers).flat(),
        request.body ?? info.body,
        info.remoteAddr.hostname,
      );
      // The instance that sent it cancels the exchange when its caller hangs up.
      const signal = request.signal;
      signal.addEventListener("abort", () => caller.hangUp(signal.reason), { once: true });
      const answered = await handle(caller, true);
      return answered instanceof Response ? answered : responseOf(answered as OutgoingParts);
    }, fromPeer),
  });

  /** Takes an agent's dial, or a cluster peer's; any other upgrade request is answered as an ordinary one. */
  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const target = rawTarget(req.url ?? "/");
    const upgradePath = splitTarget(target).path;
    const link = upgradePath === CLUSTER_LINK_PATH && links;
    if (upgradePath !== path && !link) return false;
    if (req.headers.upgrade?.toLowerCase() !== "websocket") return false;
    const headers = headersOf(req.rawHeaders);
    if (link && !cluster!.isPeer(headers.get(SECRET_HEADER))) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return true;
    }
    const to = link || server;
    // What `authorize` sees: the dial's headers and URL (it has no body).
    const request = new Request(new URL(target, gateway.url), { headers });
    const refusal = upgradedSockets.check(to, request);
    if (refusal) {
      socket.end(`HTTP/1.1 ${refusal.status} ${refusal.statusText}\r\nConnection: close\r\n\r\n`);
      return true;
    }
    const peer = req.socket;
    let remoteAddr = { hostname: peer.remoteAddress ?? "", port: peer.remotePort ?? 0 };
    // An agent behind our own proxy is the client it dialed for (its port unknown): its
    // address is what the per-address limits count, the listing shows and the log says.
    if (!link && isTrustedProxy(remoteAddr.hostname)) {
      const client = forwardedClient(headers.get("x-forwarded-for"), isTrustedProxy);
      if (client !== undefined) remoteAddr = { hostname: client, port: 0 };
    }
    sockets.handleUpgrade(req, socket, head, (ws) => {
      upgradedSockets.accept(to, adaptWsSocket(ws), request, remoteAddr);
    });
    return true;
  }

  /** What answers a request that `node:http` could not parse. */
  function unparsable(method: string | undefined): Response {
    return method === undefined
      ? errorResponse(400, "bad_request", "The request could not be parsed")
      : errorResponse(
        501,
        "method_not_supported",
        `The gateway cannot carry ${method} requests to agents`,
      );
  }

  const front = await listenHttp({
    hostname,
    port,
    tls,
    handler: handle,
    onUpgrade,
    unparsable,
    idleTimeout,
    sendTimeout,
  });
  const addr = front.addr;

  /** Closes the agents' sockets: lets their close frames go out (bounded), then cuts them. */
  async function closeSockets(): Promise<void> {
    const open = [...sockets.clients].filter((ws) => ws.readyState !== ws.CLOSED);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(open.map((ws) => new Promise((resolve) => ws.once("close", resolve)))),
      new Promise((resolve) => timer = setTimeout(resolve, 1_000)),
    ]);
    clearTimeout(timer);
    for (const ws of sockets.clients) ws.terminate();
  }

  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `${protocol}://${host}:${addr.port}`;
  if (options.cluster) {
    try {
      cluster = new ClusterMembership(
        server,
        options.cluster,
        url,
        resumeTokens!,
        linkLimits,
        logger,
      );
    } catch (error) {
      await front.stop();
      await server.close();
      await links?.close();
      throw error;
    }
  }
  let closing: Promise<void> | undefined;
  const gateway: Gateway = {
    addr,
    url,
    agentsUrl: `${tls ? "wss" : "ws"}://${host}:${addr.port}${path}`,
    server,
    agents: () => server.connections().map(describeAgent),
    reloadCredentials: () => admission.reloadCredentials(),
    close: () => {
      closing ??= (async () => {
        observer.close();
        await cluster?.leave();
        await server.close();
        await links?.close();
        // Whatever still streams (an endless event stream) is cut now.
        for (const cancel of inFlight) cancel.abort();
        inFlight.clear();
        await closeSockets();
        await front.stop();
      })();
      return closing;
    },
    [Symbol.asyncDispose]: () => gateway.close(),
  };
  return gateway;
}
