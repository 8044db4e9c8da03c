/**
 * The gateway's HTTP side on its own (`runtime/_node_http.ts`'s `listenHttp`), over real
 * sockets on both runtimes: a handler that fails still gets its caller an answer, an answer
 * in parts is written as it is or refused with a clear 502 when its length is not one, and a
 * request's header lines reach the handler as they came.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type CallerRequest,
  type HttpFront,
  listenHttp,
  type PartsAnswer,
} from "../runtime/_node_http.ts";
import { headerValues, rawHttp, requestHead } from "./_raw_http.ts";

const TEST_OPTIONS = { timeout: 60_000 };

describe("listenHttp()", () => {
  const fronts: HttpFront[] = [];
  afterEach(async () => {
    for (const front of fronts.splice(0)) await front.stop();
  });

  async function front(
    handler: (request: CallerRequest) => Promise<Response | PartsAnswer>,
  ): Promise<HttpFront> {
    const started = await listenHttp({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 30_000,
      sendTimeout: 60_000,
      handler,
      onUpgrade: () => false,
      unparsable: () => new Response(null, { status: 400 }),
    });
    fronts.push(started);
    return started;
  }

  const get = (at: HttpFront) =>
    rawHttp(at.addr.port, requestHead("GET /x HTTP/1.1", [["Host", "front"]]), {
      timeoutMs: 15_000,
    });

  it(
    "answers 500 when the handler throws, synchronously or not, and goes on serving",
    TEST_OPTIONS,
    async () => {
      let calls = 0;
      const at = await front(
        ((): Promise<Response> => {
          calls++;
          if (calls === 1) throw new Error("thrown before any promise");
          if (calls === 2) return Promise.reject(new Error("rejected"));
          return Promise.resolve(new Response("fine"));
        }) as (request: CallerRequest) => Promise<Response>,
      );
      assert.equal((await get(at)).status, 500);
      assert.equal((await get(at)).status, 500);
      const third = await get(at);
      assert.equal(third.status, 200);
      assert.equal(new TextDecoder().decode(third.body), "fine");
    },
  );

  it(
    "writes an answer in parts as it is: repeated lines apart, the body whole",
    TEST_OPTIONS,
    async () => {
      const body = new TextEncoder().encode("parts!");
      const at = await front(() =>
        Promise.resolve({
          status: 201,
          statusText: "Made",
          headers: [["x-a", "1"], ["content-length", "6"], ["x-a", "2"]],
          body,
        })
      );
      const response = await get(at);
      assert.equal(response.statusLine, "HTTP/1.1 201 Made");
      assert.deepEqual(headerValues(response.headers, "x-a"), ["1", "2"]);
      assert.deepEqual(headerValues(response.headers, "content-length"), ["6"]);
      assert.equal(new TextDecoder().decode(response.body), "parts!");
    },
  );

  it(
    "refuses with 502 an answer in parts whose Content-Length is two lengths or not its body's",
    TEST_OPTIONS,
    async () => {
      const answers: PartsAnswer[] = [
        {
          status: 200,
          statusText: "",
          headers: [["content-length", "3"], ["content-length", "3"]],
          body: new Uint8Array(3),
        },
        {
          status: 200,
          statusText: "",
          headers: [["content-length", "5"]],
          body: new Uint8Array(3),
        },
      ];
      const sent: (number | undefined)[] = [];
      const at = await front((request) => {
        request.sent = (_bytes, _error, status) => sent.push(status);
        return Promise.resolve(answers.shift()!);
      });
      assert.equal((await get(at)).status, 502);
      assert.equal((await get(at)).status, 502);
      assert.deepEqual(sent, [502, 502]);
    },
  );

  it(
    "hands over the header lines as they came: a field's value as Headers.get gives it, and a body only when they announce one",
    TEST_OPTIONS,
    async () => {
      const seen: { fields: readonly string[]; field: (string | null)[]; body: string }[] = [];
      const at = await front(async (request) => {
        seen.push({
          fields: [...request.fields],
          field: ["x-a", "host", "x-none"].map((name) => request.field(name)),
          body: request.body === null
            ? "none"
            : await new Response(request.body as BodyInit).text(),
        });
        return new Response("ok");
      });
      const head = (extra: [string, string][]) =>
        requestHead("POST /x HTTP/1.1", [["Host", "front"], ["X-A", "1"], ["x-a", "2"], ...extra]);
      await rawHttp(at.addr.port, head([["Content-Length", "0"]]), { timeoutMs: 15_000 });
      await rawHttp(at.addr.port, head([["Content-Length", "3"]]), {
        timeoutMs: 15_000,
        body: "abc",
      });
      assert.deepEqual(seen, [
        {
          fields: ["Host", "front", "X-A", "1", "x-a", "2", "Content-Length", "0"],
          field: ["1, 2", "front", null],
          body: "none",
        },
        {
          fields: ["Host", "front", "X-A", "1", "x-a", "2", "Content-Length", "3"],
          field: ["1, 2", "front", null],
          body: "abc",
        },
      ]);
    },
  );
});
