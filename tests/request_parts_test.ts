/**
 * `requestParts()` sends exactly what `new Request(url, init)` would, with or without its
 * fast path (no `Request` object for a string or URL with a string or bytes body).
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { handlerUrl, PLACEHOLDER_BASE, requestParts } from "../connection/_request_parts.ts";

async function bytesOf(body: Uint8Array | ReadableStream<Uint8Array> | null): Promise<number[]> {
  if (body === null) return [];
  if (body instanceof Uint8Array) return [...body];
  return [...new Uint8Array(await new Response(body).arrayBuffer())];
}

/** Targets on and off the URL shortcuts: plain ones, and what the parser rewrites or resolves. */
const TARGETS = [
  "/",
  "/pets",
  "/pets/1?limit=2&sort=-name",
  "/a_b-c.d~e/!$&'()*+,;=:@%41/",
  "/x?q=a:b/c?d@e%zz",
  "/weird%zz/path",
  "/a/../b",
  "/a/./b",
  "/a/%2e%2E/b",
  "/a/.well-known/x",
  "/a b",
  "/a?b c",
  "/a?x='y'",
  "/a#frag",
  "/a?b#frag",
  "/ä/ö?ü",
  "/a\\b",
  "/a{b}`c^d|e",
  "/a\tb",
  '/x?"y"<z>',
  "//host/x",
  "/\\host/x",
  "/..",
  "/.",
  "/a/..",
];

const CASES: [string, RequestInit | undefined][] = [
  ["no init", undefined],
  ["GET with headers", { headers: { "X-B": "2", "x-a": "1", accept: "application/json" } }],
  ["a string body with its own content-type", {
    method: "PUT",
    body: "{}",
    headers: { "content-type": "application/json" },
  }],
  ["a Uint8Array body", { method: "POST", body: new Uint8Array([1, 2, 3]) }],
  ["an ArrayBuffer body", { method: "POST", body: new Uint8Array([4, 5]).buffer }],
  ["a DataView body", { method: "POST", body: new DataView(new Uint8Array([9, 8, 7]).buffer, 1) }],
  ["a URLSearchParams body (standard path)", { method: "POST", body: new URLSearchParams("a=1") }],
  ["headers as pairs with a repeat", { headers: [["x-r", "1"], ["x-r", "2"]] }],
];

describe("requestParts()", () => {
  for (const [name, init] of CASES) {
    it(`requestParts() matches new Request() for ${name}`, async () => {
      const fast = requestParts("http://agent/pets?limit=2", init);
      const standard = requestParts(new Request("http://agent/pets?limit=2", init));
      assert.deepEqual(fast.head, standard.head);
      assert.deepEqual(await bytesOf(fast.body), await bytesOf(standard.body));
    });
  }

  // Bun's own Request upper-cases PATCH and adds no default content-type; the fast path
  // follows the Fetch standard (and Deno), so these are spelled out.
  it("requestParts() normalizes only the standard methods and types a string body", async () => {
    const post = requestParts("/x", { method: "post", body: "héllo" });
    assert.equal(post.head.method, "POST");
    assert.deepEqual(post.head.headers, [["content-type", "text/plain;charset=UTF-8"]]);
    assert.deepEqual(await bytesOf(post.body), [...new TextEncoder().encode("héllo")]);
    assert.equal(requestParts("/x", { method: "patch", body: "x" }).head.method, "patch");
    const empty = requestParts("/x", { method: "POST", body: "" });
    assert.deepEqual(empty.head.headers, [["content-type", "text/plain;charset=UTF-8"]]);
    assert.deepEqual(await bytesOf(empty.body), []);
  });

  it("requestParts() sends each relative target as new URL() would make it", () => {
    for (const target of TARGETS) {
      const url = new URL(target, PLACEHOLDER_BASE);
      assert.equal(requestParts(target).head.url, url.pathname + url.search, target);
      const body = { method: "POST", body: "x" };
      assert.equal(requestParts(target, body).head.url, url.pathname + url.search, target);
    }
  });

  it("handlerUrl() gives the handler the URL new URL() would resolve, even for odd wire targets", () => {
    for (const target of [...TARGETS, "http://agent/p?q", "*", "a/b"]) {
      // A path target is joined to the base, as Deno.serve does: `//host` stays a path.
      const expected = target.startsWith("/")
        ? new URL(PLACEHOLDER_BASE + target).href
        : new URL(target, PLACEHOLDER_BASE).href;
      assert.equal(new Request(handlerUrl(target)).url, expected, target);
    }
  });

  it("handlerUrl() keeps `//host/x` and `/\\host/x` paths, never reading them as an authority", () => {
    assert.equal(
      new Request(handlerUrl("//evil.example/admin")).url,
      `${PLACEHOLDER_BASE}//evil.example/admin`,
    );
    assert.equal(
      new Request(handlerUrl("/\\evil.example/admin")).url,
      `${PLACEHOLDER_BASE}//evil.example/admin`,
    );
  });

  it("requestParts() sends a relative URL as path and query", () => {
    assert.equal(requestParts("/pets/1?x=a b").head.url, "/pets/1?x=a%20b");
    assert.equal(requestParts(new URL("http://agent/p")).head.url, "http://agent/p");
  });

  it("requestParts() copies byte bodies, as Request does", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const parts = requestParts("/x", { method: "POST", body: bytes });
    bytes[0] = 9;
    assert.deepEqual([...(parts.body as Uint8Array)], [1, 2, 3]);
  });

  it("requestParts() throws TypeError where Request does", () => {
    assert.throws(() => requestParts("/x", { body: "no body on GET" }), TypeError);
    assert.throws(() => requestParts("/x", { method: "HEAD", body: new Uint8Array(1) }), TypeError);
    assert.throws(() => requestParts("/x", { method: "CONNECT" }), TypeError);
    assert.throws(() => requestParts("/x", { method: "bad method" }), TypeError);
    assert.throws(() => requestParts("/x", { headers: { "bad name": "v" } }), TypeError);
  });

  it("requestParts() passes the caller's signal", () => {
    const controller = new AbortController();
    assert.equal(requestParts("/x", { signal: controller.signal }).signal, controller.signal);
  });
});

describe("requestParts() copies a body given as bytes", () => {
  it("sends what the buffer held when it was called, as Request does", async () => {
    for (const size of [3, 100, 256, 257, 4096]) {
      const expected = Array.from({ length: size }, (_, i) => i % 251);
      const view = new Uint8Array(expected);
      const buffer = new Uint8Array(expected).buffer;
      const fromView = requestParts("/up", { method: "POST", body: view });
      const fromBuffer = requestParts("/up", { method: "POST", body: buffer });
      view.fill(0xff);
      new Uint8Array(buffer).fill(0xff);
      assert.deepEqual(await bytesOf(fromView.body), expected, `a view of ${size} bytes`);
      assert.deepEqual(await bytesOf(fromBuffer.body), expected, `an ArrayBuffer of ${size} bytes`);
    }
  });
});
