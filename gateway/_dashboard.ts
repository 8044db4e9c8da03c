/**
 * The gateway's live dashboard: one HTML page (plain HTML, CSS and a little JavaScript, no
 * build step) and a server-sent event stream that keeps it current — the connected agents and
 * the most recent requests through the gateway, as ngrok's inspector shows its users.
 *
 * The stream sends `snapshot` (agents and recent requests) first, then `agents` whenever an
 * agent comes or goes and every few seconds (for RTT and in-flight counts), and `request` for
 * each request answered. A reader that falls behind is cut; its `EventSource` reconnects and
 * starts again from a snapshot, so no reader makes the gateway hold much.
 *
 * @module
 */

/** One request through the gateway, as the dashboard lists it. */
export interface RequestRecord {
  /**
   * When it arrived, in milliseconds since the epoch (`Date.now()`): the event stream sends it
   * as ISO 8601, formatted only when a reader is there to see it.
   */
  time: number;
  /** The agent's id or name as the caller wrote it. */
  agent: string;
  method: string;
  /** The target as forwarded to the agent (path and query). */
  path: string;
  status: number;
  /** Milliseconds until the response head. */
  durationMs: number;
}

/** What the dashboard shows, read when needed. */
export interface DashboardSource {
  /** The connected agents, as `GET /agents` lists them. */
  agents(): unknown[];
}

/** How many recent requests are kept. */
export const RECENT_REQUESTS = 100;
/** Milliseconds between `agents` refreshes on an open stream. */
const REFRESH_MS = 2_000;
/** Bytes a stream may have queued for a slow reader before it is cut. */
const MAX_QUEUED = 256 * 1024;

const encoder = new TextEncoder();

/** The recent requests and the open streams: what the gateway tells as things happen. */
export class DashboardFeed {
  readonly #source: DashboardSource;
  readonly #recent: RequestRecord[] = [];
  readonly #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @param source Where the agents are read from. */
  constructor(source: DashboardSource) {
    this.#source = source;
  }

  /** The most recent requests, oldest first. */
  recent(): RequestRecord[] {
    return [...this.#recent];
  }

  /** Open event streams now. */
  get readers(): number {
    return this.#streams.size;
  }

  /** Records a request and tells every open stream. */
  request(record: RequestRecord): void {
    this.#recent.push(record);
    if (this.#recent.length > RECENT_REQUESTS) this.#recent.shift();
    if (this.#streams.size > 0) this.#broadcast(event("request", shown(record)));
  }

  /** Tells every open stream that the agents changed. */
  agentsChanged(): void {
    if (this.#streams.size > 0) this.#broadcast(event("agents", this.#source.agents()));
  }

  /**
   * A new event stream, starting with a snapshot.
   *
   * @param signal Ends the stream (the caller went away, the gateway closes).
   * @returns The `text/event-stream` response.
   */
  stream(signal: AbortSignal): Response {
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const end = (): void => {
      if (!self || !this.#streams.delete(self)) return;
      try {
        self.close();
      } catch {
        // Already errored or cancelled.
      }
      if (this.#streams.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#streams.add(controller);
        controller.enqueue(
          event("snapshot", { agents: this.#source.agents(), requests: this.#recent.map(shown) }),
        );
        this.#timer ??= setInterval(() => this.agentsChanged(), REFRESH_MS);
        signal.addEventListener("abort", end, { once: true });
      },
      cancel: end,
    }, { highWaterMark: MAX_QUEUED, size: (chunk) => chunk.byteLength });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** Ends every stream (the gateway is closing). */
  close(): void {
    for (const controller of [...this.#streams]) {
      this.#streams.delete(controller);
      try {
        controller.close();
      } catch {
        // Already gone.
      }
    }
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #broadcast(bytes: Uint8Array): void {
    for (const controller of [...this.#streams]) {
      if ((controller.desiredSize ?? 0) < 0) {
        // Behind by more than MAX_QUEUED: cut it; its EventSource reconnects to a snapshot.
        this.#streams.delete(controller);
        controller.error(new Error("The dashboard reader fell behind"));
        continue;
      }
      controller.enqueue(bytes);
    }
  }
}

/** A request as the event stream sends it: its time in ISO 8601. */
function shown(record: RequestRecord): Omit<RequestRecord, "time"> & { time: string } {
  return { ...record, time: new Date(record.time).toISOString() };
}

function event(name: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * The dashboard's page.
 *
 * @param eventsPath Where its event stream is.
 * @returns The HTML response.
 */
export function dashboardPage(eventsPath: string): Response {
  const bytes = encoder.encode(PAGE.replace("__EVENTS__", JSON.stringify(eventsPath)));
  return new Response(bytes, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-length": `${bytes.length}`,
      "cache-control": "no-store",
      "content-security-policy":
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      "x-content-type-options": "nosniff",
    },
  });
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>swaggersocket gateway</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232b; background: #f7f8fa; }
  h1 { font-size: 1.2rem; margin: 0 0 1rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
  #status { font-size: .85rem; color: #5b6573; margin-left: .5rem; }
  #status.live::before { content: "\\25CF "; color: #1a7f37; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ea; }
  th { font-weight: 600; background: #eef0f3; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font: 12px ui-monospace, monospace; }
  .s2 { color: #1a7f37; } .s3 { color: #0969da; } .s4 { color: #9a6700; } .s5 { color: #cf222e; }
  .empty td { color: #5b6573; font-style: italic; }
</style>
</head>
<body>
<h1>swaggersocket gateway <span id="status">connecting…</span></h1>
<h2>Agents (<span id="agent-count">0</span>)</h2>
<table id="agents">
  <thead><tr><th>Name</th><th>Id</th><th>Metadata</th><th>Address</th><th>Connected since</th><th>RTT ms</th><th>In flight</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Recent requests</h2>
<table id="requests">
  <thead><tr><th>Time</th><th>Agent</th><th>Method</th><th>Path</th><th>Status</th><th>ms</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const MAX_ROWS = ${RECENT_REQUESTS};
const status = document.getElementById("status");
function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}
function empty(body, columns, text) {
  const row = body.insertRow();
  row.className = "empty";
  const td = row.insertCell();
  td.colSpan = columns;
  td.textContent = text;
}
function showAgents(agents) {
  const body = document.querySelector("#agents tbody");
  body.replaceChildren();
  document.getElementById("agent-count").textContent = agents.length;
  if (agents.length === 0) empty(body, 7, "No agent is connected.");
  for (const a of agents) {
    const row = body.insertRow();
    row.dataset.id = a.id;
    cell(row, a.name ?? "");
    cell(row, a.id).classList.add("id");
    cell(row, JSON.stringify(a.metadata ?? null));
    cell(row, a.remoteAddr);
    cell(row, a.connectedAt ? new Date(a.connectedAt).toLocaleString() : "");
    cell(row, a.rtt == null ? "" : a.rtt, "num");
    cell(row, a.inFlight, "num");
  }
}
function addRequest(r) {
  const body = document.querySelector("#requests tbody");
  body.querySelector("tr.empty")?.remove();
  const row = body.insertRow(0);
  cell(row, new Date(r.time).toLocaleTimeString());
  cell(row, r.agent);
  cell(row, r.method);
  cell(row, r.path).classList.add("path");
  cell(row, r.status, "s" + String(r.status)[0]);
  cell(row, r.durationMs, "num");
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}
const events = new EventSource(__EVENTS__);
events.addEventListener("open", () => { status.textContent = "live"; status.className = "live"; });
events.addEventListener("error", () => { status.textContent = "reconnecting…"; status.className = ""; });
events.addEventListener("snapshot", (e) => {
  const { agents, requests } = JSON.parse(e.data);
  showAgents(agents);
  const body = document.querySelector("#requests tbody");
  body.replaceChildren();
  if (requests.length === 0) empty(body, 6, "No request yet.");
  for (const r of requests) addRequest(r);
});
events.addEventListener("agents", (e) => showAgents(JSON.parse(e.data)));
events.addEventListener("request", (e) => addRequest(JSON.parse(e.data)));
</script>
</body>
</html>
`;
