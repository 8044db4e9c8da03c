/**
 * `connection.forward()`: a request sent exactly as given, for proxies, and `info.target`,
 * where the peer's handler finds the target as it was sent. Over a real loopback socket,
 * both directions.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Connection, HandlerInfo } from "../mod.ts";
import { type Pair, startPair, withTimeout } from "./_helpers.ts";
import { deferred } from "./_exchange_helpers.ts";

const TEST_OPTIONS = { timeout: 60_000 };
const GUARD = 15_000;

/** What the handler saw of one request. */
interface Seen {
  method: string;
  url: string;
  target: string;
  headers: [string, string][];
  body: string | null;
  /** `info.body`, read. */
  infoBody: string | null;
}

async function see(request: Request, info: HandlerInfo): Promise<Response> {
  const seen: Seen = {
    method: request.method,
    url: request.url,
    target: info.target,
    headers: [...request.headers],
    body: request.body === null ? null : await request.text(),
    infoBody: info.body === null ? null : await new Response(info.body).text(),
  };
  return Response.json(seen);
}

for (
  const [name, caller, callee] of [
    ["server→agent", (p: Pair) => p.serverSide, (p: Pair) => p.clientSide],
    ["agent→server", (p: Pair) => p.clientSide, (p: Pair) => p.serverSide],
  ] as const
) {
  describe(`Connection.forward() ${name}`, () => {
    let pair: Pair;
    let from: Connection;

    before(async () => {
      pair = await startPair();
      from = caller(pair);
      callee(pair).serve(see);
    });
    after(() => pair.close());

    async function forward(
      target: string,
      init: {
        method?: string;
        headers?: HeadersInit;
        body?: Uint8Array | ReadableStream<Uint8Array>;
      } = {},
    ): Promise<Seen> {
      const response = await withTimeout(
        from.forward({
          method: init.method ?? "GET",
          target,
          headers: init.headers,
          body: init.body,
        }),
        GUARD,
        `forward ${target}`,
      );
      assert.equal(response.status, 200);
      return await response.json() as Seen;
    }

    it(
      "sends the target untouched: dot segments, `//`, `\\`, encodings, an empty query",
      TEST_OPTIONS,
      async () => {
        for (
          const target of [
            "/a/../b/./c/%2e%2e/d",
            "//evil.example/admin",
            "/a\\b",
            "/x?",
            "/caf\u00e9\"<>'`{}|",
            "/%2F..%2Fb?q=%20&r",
            "/..",
          ]
        ) {
          const seen = await forward(target);
          assert.equal(seen.target, target);
        }
      },
    );

    it(
      "gives the handler a Request whose path keeps `//` (never read as a host)",
      TEST_OPTIONS,
      async () => {
        const seen = await forward("//evil.example/admin?x=1");
        assert.equal(seen.url, "http://localhost//evil.example/admin?x=1");
        const url = new URL(seen.url);
        assert.equal(url.host, "localhost");
        assert.equal(url.pathname, "//evil.example/admin");
      },
    );

    it("sends headers as given, host and content-length included", TEST_OPTIONS, async () => {
      const seen = await forward("/h", {
        method: "POST",
        headers: [["Host", "upstream:3000"], ["content-length", "3"], ["x-a", "1"], ["X-A", "2"]],
        body: new TextEncoder().encode("abc"),
      });
      assert.deepEqual(seen.headers, [
        ["content-length", "3"],
        ["host", "upstream:3000"],
        ["x-a", "1, 2"],
      ]);
      assert.equal(seen.body, "abc");
    });

    it(
      "carries bodies on DELETE and OPTIONS, and no body when none is given",
      TEST_OPTIONS,
      async () => {
        for (const method of ["DELETE", "OPTIONS", "PROPFIND"]) {
          const seen = await forward("/b", { method, body: new TextEncoder().encode(method) });
          assert.equal(seen.method, method);
          assert.equal(seen.body, method);
        }
        const bodyless = await forward("/b", { method: "DELETE" });
        assert.equal(bodyless.body, null);
        assert.deepEqual(bodyless.headers, []);
      },
    );

    it("carries a GET or HEAD body to the handler's info.body", TEST_OPTIONS, async () => {
      const bytes = new TextEncoder().encode('{"query":{"match_all":{}}}');
      const seen = await forward("/_search", { body: bytes });
      assert.equal(seen.method, "GET");
      assert.equal(seen.body, null, "a GET Request cannot hold it");
      assert.equal(seen.infoBody, '{"query":{"match_all":{}}}');
      const streamed = await forward("/q", {
        method: "get",
        body: new Blob(["streamed"]).stream(),
      });
      assert.equal(streamed.infoBody, "streamed");
      const head = await withTimeout(
        from.forward({ method: "HEAD", target: "/h", body: bytes }),
        GUARD,
        "HEAD",
      );
      assert.equal(head.status, 200);
      // Other requests keep their body in `request.body`.
      const put = await forward("/p", { method: "PUT", body: bytes });
      assert.equal(put.infoBody, null);
      assert.equal(put.body, '{"query":{"match_all":{}}}');
    });

    it("streams a body", TEST_OPTIONS, async () => {
      const chunks = ["one ", "two ", "three"];
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = chunks.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(new TextEncoder().encode(next));
        },
      });
      const seen = await forward("/s", { method: "PUT", body });
      assert.equal(seen.body, "one two three");
    });

    it(
      "refuses what no request line or Request can carry, before sending",
      TEST_OPTIONS,
      async () => {
        for (const target of ["", "a/b", "/a b", "/a\r\nx: y", "/a\u0000"]) {
          await assert.rejects(
            from.forward({ method: "GET", target }),
            TypeError,
            JSON.stringify(target),
          );
        }
        for (const method of ["TRACE", "CONNECT", "TRACK", "G T", ""]) {
          await assert.rejects(from.forward({ method, target: "/" }), TypeError, method);
        }
        // The connection is still fine.
        assert.equal((await forward("/after")).target, "/after");
      },
    );

    it(
      "aborts like fetch: the caller's promise rejects and the handler's signal fires",
      TEST_OPTIONS,
      async () => {
        const aborted = deferred<unknown>();
        const started = deferred<void>();
        callee(pair).serve((request) => {
          request.signal.addEventListener("abort", () => aborted.resolve(request.signal.reason));
          started.resolve();
          return new Promise<Response>(() => {});
        });
        try {
          const controller = new AbortController();
          const pending = from.forward({
            method: "GET",
            target: "/wait",
            signal: controller.signal,
          });
          await withTimeout(started.promise, GUARD, "handler started");
          controller.abort();
          await assert.rejects(pending, (error: Error) => error.name === "AbortError");
          await withTimeout(aborted.promise, GUARD, "handler's signal");
        } finally {
          callee(pair).serve(see);
        }
      },
    );

    it(
      "answers with a response whose url is the target resolved as the handler saw it",
      TEST_OPTIONS,
      async () => {
        const response = await from.forward({ method: "GET", target: "//x/y" });
        assert.equal(response.url, "http://localhost//x/y");
        await response.body?.cancel();
      },
    );
  });
}

describe("info.target on fetch()", () => {
  it("is the path and query fetch() sent", TEST_OPTIONS, async () => {
    const pair = await startPair();
    try {
      pair.clientSide.serve(see);
      const response = await pair.serverSide.fetch("/a/../b?x=1");
      const seen = await response.json() as Seen;
      // fetch() resolves the URL before sending, as a browser's fetch does.
      assert.equal(seen.target, "/b?x=1");
    } finally {
      await pair.close();
    }
  });
});

describe("a handler answering with a Response from its peer (a relay)", () => {
  let pair: Pair;

  before(async () => {
    pair = await startPair();
    // The server is the origin; the agent relays what it is asked back to the server.
    pair.serverSide.serve((request) => {
      const path = new URL(request.url).pathname;
      if (path.startsWith("/origin/text")) {
        return new Response("hello", { headers: { "x-origin": "1" } });
      }
      if (path === "/origin/empty") return new Response("");
      if (path === "/origin/none") return new Response(null, { status: 204 });
      let parts = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            // A macrotask apart: this body does not come whole with its head.
            await new Promise((resolve) => setTimeout(resolve, 1));
            controller.enqueue(new TextEncoder().encode("part "));
            if (++parts === 3) controller.close();
          },
        }),
      );
    });
    pair.clientSide.serve(async (request, info) => {
      const path = new URL(request.url).pathname.replace("/relay", "/origin");
      const answer = await info.connection.fetch(path, { method: request.method });
      // A body read already: nothing is left to send.
      if (path.endsWith("-used")) await answer.text();
      return answer;
    });
  });
  after(() => pair.close());

  async function relayed(path: string, method = "GET"): Promise<Response> {
    return await withTimeout(
      pair.serverSide.fetch(`/relay/${path}`, { method }),
      GUARD,
      `${method} /relay/${path}`,
    );
  }

  it("sends it on with its head, its body and its length", TEST_OPTIONS, async () => {
    const text = await relayed("text");
    assert.equal(text.status, 200);
    assert.equal(text.headers.get("x-origin"), "1");
    assert.equal(text.headers.get("content-length"), "5");
    assert.equal(await text.text(), "hello");
    const empty = await relayed("empty");
    assert.equal(empty.headers.get("content-length"), "0");
    assert.equal(await empty.text(), "");
    const none = await relayed("none");
    assert.equal(none.status, 204);
    assert.equal(none.body, null);
    const head = await relayed("text", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
    assert.equal(await relayed("streamed").then((r) => r.text()), "part part part ");
  });

  it("resets the exchange when the body was read already", TEST_OPTIONS, async () => {
    for (const path of ["text-used", "streamed-used"]) {
      // A streamed one may have sent its head already: then its body fails.
      await assert.rejects(
        relayed(path).then((response) => response.text()),
        (error: Error) => error.name === "ExchangeResetError",
        path,
      );
    }
    // The connection goes on.
    assert.equal(await (await relayed("text")).text(), "hello");
  });
});
