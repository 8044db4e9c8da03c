/**
 * `GET /agents` as pages: sorted by id (ULIDs, so in the order they connected), `limit` at a
 * time, the next page named by a `Link: <…>; rel="next"` header (RFC 8288) whose `after` is
 * the last id of this one. A cluster's listing is first made one entry per agent: see
 * {@linkcode newestOnce}.
 *
 * @module
 */

import type { AgentInfo } from "./_agent_info.ts";

/** Agents per page when the caller does not say. */
export const DEFAULT_PAGE = 1_000;
/** Most agents per page. */
export const MAX_PAGE = 10_000;

/** One page of the listing. */
export interface AgentPage {
  /** Its agents, by id. */
  agents: AgentInfo[];
  /** The query of the next page, if there is one. */
  next: string | undefined;
}

/**
 * One page of `agents`, as `?limit=N&after=ID` asks.
 *
 * @param agents Every agent, in any order.
 * @param query The request's query.
 * @returns The page, or a message saying what is wrong with the query.
 */
export function agentPage(agents: AgentInfo[], query: URLSearchParams): AgentPage | string {
  const limitParam = query.get("limit") ?? String(DEFAULT_PAGE);
  const limit = /^\d{1,6}$/.test(limitParam) ? Number(limitParam) : 0;
  if (limit < 1 || limit > MAX_PAGE) {
    return `Invalid limit: ${limitParam} must be a whole number from 1 to ${MAX_PAGE}`;
  }
  const after = query.get("after") ?? "";
  const sorted = agents.filter((agent) => agent.id > after).sort((a, b) =>
    a.id < b.id ? -1 : a.id > b.id ? 1 : 0
  );
  const page = sorted.slice(0, limit);
  const next = sorted.length > limit
    ? `?${new URLSearchParams({ limit: String(limit), after: page[limit - 1].id })}`
    : undefined;
  return { agents: page, next };
}

/**
 * The instances' listings made one entry per agent: where two list the same id, or the same
 * name, the newest connection is the one that holds it now (a dead instance's listing lingers
 * until its record expires; an agent that moved since is listed by both).
 *
 * @param agents The listings, concatenated.
 * @returns Each id once and each name once.
 */
export function newestOnce(agents: AgentInfo[]): AgentInfo[] {
  const newestFirst = [...agents].sort((a, b) =>
    (b.connectedAt ?? "").localeCompare(a.connectedAt ?? "")
  );
  const ids = new Set<string>();
  const names = new Set<string>();
  return newestFirst.filter((agent) => {
    if (ids.has(agent.id) || (agent.name !== null && names.has(agent.name))) return false;
    ids.add(agent.id);
    if (agent.name !== null) names.add(agent.name);
    return true;
  });
}
