/**
 * The demo API an agent serves when it is given neither an upstream nor a handler.
 *
 * @module
 */

import type { Handler } from "../types.ts";
import { RUNTIME as THIS_RUNTIME } from "../runtime/mod.ts";

/** Which runtime answers, as the demo says it. */
const RUNTIME: string = THIS_RUNTIME.name;
const encoder = new TextEncoder();

/**
 * The demo API an agent serves by default.
 *
 * | Route | Answer |
 * |---|---|
 * | `GET /` | the list of routes |
 * | `GET /hello` | `hello from {name} ({runtime})` |
 * | `GET /time` | `{ now, runtime }` as JSON |
 * | `POST /echo` | the request body, streamed back, with its content type |
 * | `GET /events?count=5&interval=1000` | server-sent events `tick` 1…count |
 * | `GET /bytes?n=1024` | n bytes streamed in 64 KiB chunks; byte i is `i % 256` |
 * | `GET /delay?ms=1000` | `{ delayed }` after ms milliseconds (cancelled with the request) |
 * | `GET /whoami` | `{ name, runtime, connectionId }` |
 *
 * @example Usage
 * ```ts
 * import { demoHandler } from "./_demo_api.ts";
 *
 * const handler = demoHandler("demo");
 * const response = await handler(new Request("http://agent/hello"), {} as never);
 * console.log(await response.text()); // "hello from demo (deno)\n"
 * ```
 *
 * @param name The agent's name, used in answers.
 * @returns A handler for `connection.serve()`.
 */
export function demoHandler(name: string): Handler {
  return async (request, info) => {
    const url = new URL(request.url);
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case "GET /":
        return new Response(
          [
            `${name}: a swaggersocket demo agent (${RUNTIME})`,
            "GET  /hello",
            "GET  /time",
            "POST /echo                 streams the body back",
            "GET  /events?count=5&interval=1000   server-sent events",
            "GET  /bytes?n=1024         streams n bytes (byte i = i % 256)",
            "GET  /delay?ms=1000",
            "GET  /whoami",
            "",
          ].join("\n"),
          { headers: { "content-type": "text/plain; charset=utf-8" } },
        );
      case "GET /hello":
        return new Response(`hello from ${name} (${RUNTIME})\n`, {
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
      case "GET /time":
        return Response.json({ now: new Date().toISOString(), runtime: RUNTIME });
      case "GET /whoami":
        return Response.json({
          name,
          runtime: RUNTIME,
          connectionId: info?.connection?.id ?? null,
        });
      case "POST /echo":
        return new Response(request.body, {
          headers: {
            "content-type": request.headers.get("content-type") ?? "application/octet-stream",
          },
        });
      case "GET /events":
        return eventStream(
          intParam(url, "count", 5, 0, 10_000),
          intParam(url, "interval", 1000, 0, 3_600_000),
          request.signal,
        );
      case "GET /bytes":
        return byteStream(intParam(url, "n", 1024, 0, 2 ** 40));
      case "GET /delay": {
        const ms = intParam(url, "ms", 1000, 0, 3_600_000);
        await delay(ms, request.signal);
        return Response.json({ delayed: ms });
      }
    }
    return Response.json(
      { error: "not_found", message: `No route for ${route}; GET / lists them` },
      { status: 404 },
    );
  };
}

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  const value = text === null ? fallback : Number(text);
  return Number.isFinite(value) ? Math.min(Math.max(Math.floor(value), min), max) : fallback;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function eventStream(count: number, interval: number, signal: AbortSignal): Response {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent >= count) {
        controller.close();
        return;
      }
      if (sent > 0) {
        try {
          await delay(interval, signal);
        } catch {
          controller.close();
          return;
        }
      }
      sent++;
      const data = JSON.stringify({ tick: sent, of: count, at: new Date().toISOString() });
      controller.enqueue(encoder.encode(`id: ${sent}\nevent: tick\ndata: ${data}\n\n`));
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}

function byteStream(total: number): Response {
  const CHUNK = 64 * 1024;
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= total) {
        controller.close();
        return;
      }
      const chunk = new Uint8Array(Math.min(CHUNK, total - offset));
      for (let i = 0; i < chunk.length; i++) chunk[i] = (offset + i) & 0xff;
      offset += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "application/octet-stream", "content-length": String(total) },
  });
}
