/**
 * The gateway's routing on the request target as the caller sent it.
 *
 * A reverse proxy that resolves `..` before choosing where a request goes lets
 * `/agents/a/../b/admin` reach agent `b`, past any rule in front of it that allows only
 * `/agents/a/`; one that resolves it after choosing sends the upstream a path its owner
 * never saw. So the gateway routes on the raw target, forwards the rest of it untouched,
 * and refuses a rest whose dot segments would climb out of the agent's prefix.
 *
 * @module
 */

/** The scheme and authority at the start of `request.url`. */
const ORIGIN = /^[a-zA-Z][a-zA-Z\d+\-.]*:\/\/[^/?#]*/;
/** `..`, also spelled with `%2e` (a URL parser decodes it before resolving). */
const DOUBLE_DOT = /^(?:\.|%2e){2}$/i;
/** `.`, also as `%2e`. */
const SINGLE_DOT = /^(?:\.|%2e)$/i;
/** Path separators: `\` is one for the URL parser of http(s) URLs, and for many servers. */
const SEPARATOR = /[/\\]/;

/**
 * The request target of `request.url`: what follows the scheme and authority. Deno's
 * server builds `request.url` by joining them to the raw target, so this is the target the
 * caller sent; Bun's server hands over a URL it has already parsed, dot segments resolved.
 *
 * @param url A request's URL.
 * @returns The path and query, `/` when there is no path.
 */
export function rawTarget(url: string): string {
  const origin = ORIGIN.exec(url);
  const target = origin === null ? url : url.slice(origin[0].length);
  return target.startsWith("/") ? target : `/${target}`;
}

/** A request target split at its query. */
export interface SplitTarget {
  /** Up to the first `?`. */
  path: string;
  /** From the first `?` on (`"?"` for an empty query), or `""`. */
  query: string;
}

/**
 * Splits a target at its first `?`.
 *
 * @param target A request target.
 * @returns Its path and its query.
 */
export function splitTarget(target: string): SplitTarget {
  const mark = target.indexOf("?");
  return mark === -1
    ? { path: target, query: "" }
    : { path: target.slice(0, mark), query: target.slice(mark) };
}

/**
 * Whether resolving the dot segments of `path` (as a URL parser would, `%2e` and `\`
 * included) would climb above its start: `/a/../..` does, `/a/../b` does not.
 *
 * @param path A path starting with `/` (or empty).
 * @returns `true` if a `..` would take it above `/`.
 */
export function climbsOut(path: string): boolean {
  // No dot segment without a `.` or a `%2e` (most paths, on every request).
  if (!path.includes(".") && !path.includes("%")) return false;
  let depth = 0;
  const segments = path.split(SEPARATOR);
  // The first segment is what precedes the leading `/`: nothing.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i];
    if (DOUBLE_DOT.test(segment)) {
      if (depth === 0) return true;
      depth--;
    } else if (!SINGLE_DOT.test(segment)) {
      depth++;
    }
  }
  return false;
}

/** Where `/agents/{key}{rest}` goes. */
export interface AgentRoute {
  /** The agent's id or name, percent-decoded. */
  key: string;
  /** The target to forward: the raw rest of the path (`/` if none) and the raw query. */
  target: string;
}

/** Why a target under the agents' prefix cannot be routed. */
export type RouteRefusal = "malformed_key" | "climbs_out";

/**
 * Routes a raw target under `prefix` (`/agents/`): the key is the next segment, the
 * target for the agent everything after it. Dot segments in the rest are forwarded as they
 * are, unless they would climb out of the agent's prefix, and a key that is a dot segment
 * is refused: neither may ever reach another agent.
 *
 * @param target The raw request target.
 * @param prefix The agents' prefix, ending in `/`.
 * @returns The route, a refusal, or `undefined` if the target is not under `prefix`.
 */
export function agentRoute(target: string, prefix: string): AgentRoute | RouteRefusal | undefined {
  const { path, query } = splitTarget(target);
  if (!path.startsWith(prefix)) return undefined;
  const afterPrefix = path.slice(prefix.length);
  // The key ends at `/` only: `/agents/a\..\b` names no agent rather than agent `b`.
  const end = afterPrefix.indexOf("/");
  const rawKey = end === -1 ? afterPrefix : afterPrefix.slice(0, end);
  const rest = end === -1 ? "/" : afterPrefix.slice(end);
  if (rawKey === "") return undefined;
  let key: string;
  try {
    key = decodeURIComponent(rawKey);
  } catch {
    return "malformed_key";
  }
  if (DOUBLE_DOT.test(rawKey) || SINGLE_DOT.test(rawKey) || climbsOut(rest)) return "climbs_out";
  return { key, target: rest + query };
}
