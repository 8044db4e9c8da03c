/**
 * The gateway's pure parts, without sockets: routing on the raw target, the headers that
 * cross it, path rewriting, trusted-proxy matching and response collection.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { agentRoute, climbsOut, rawTarget } from "../gateway/_raw_target.ts";
import { addressMatcher, forwardedClient } from "../gateway/_address_match.ts";
import { agentRequestHeaders, type Hop } from "../gateway/_proxy_headers.ts";
import {
  mapCookiePath,
  mapLocation,
  mapResponseListPaths,
  type PathMap,
} from "../_path_rewrite.ts";
import { announcesBody } from "../runtime/_framing.ts";
import { forwardParts } from "../connection/_request_parts.ts";
import { withoutHopByHop, withoutHopByHopList } from "../_hop_by_hop.ts";

describe("rawTarget() and agentRoute()", () => {
  it("take the target after the origin, as sent", () => {
    assert.equal(rawTarget("http://gw:8080/agents/a/../b?x"), "/agents/a/../b?x");
    assert.equal(rawTarget("http://gw//x"), "//x");
    assert.equal(rawTarget("https://gw"), "/");
    assert.equal(rawTarget("http://gw?q"), "/?q");
  });

  it("route the rest untouched when it stays under the agent", () => {
    const cases: [string, string, string][] = [
      ["/agents/d", "d", "/"],
      ["/agents/d?x=1", "d", "/?x=1"],
      ["/agents/d/", "d", "/"],
      ["/agents/d/a/../b/./c/%2e%2e/d", "d", "/a/../b/./c/%2e%2e/d"],
      ["/agents/d//evil.example/admin", "d", "//evil.example/admin"],
      ["/agents/d/a\\b", "d", "/a\\b"],
      ["/agents/d/x?", "d", "/x?"],
      ["/agents/d/x?../../..", "d", "/x?../../.."],
      ["/agents/my%20agent/p", "my agent", "/p"],
      ["/agents/d/caf\u00e9\"<>'", "d", "/caf\u00e9\"<>'"],
    ];
    for (const [target, key, rest] of cases) {
      assert.deepEqual(agentRoute(target, "/agents/"), { key, target: rest }, target);
    }
  });

  it("refuse a rest that climbs out of the agent's prefix, however spelled", () => {
    for (
      const target of [
        "/agents/d/..",
        "/agents/d/../b/headers",
        "/agents/d/x/../../b/y",
        "/agents/d/%2e%2e/b",
        "/agents/d/%2E%2e/b",
        "/agents/d/.%2E/b",
        "/agents/d/..\\b",
        "/agents/d/a\\..\\..\\b",
        "/agents/../healthz",
        "/agents/%2e%2e/x",
        "/agents/./d/x",
      ]
    ) {
      assert.equal(agentRoute(target, "/agents/"), "climbs_out", target);
    }
  });

  it("leave what is not under the prefix, and refuse a malformed key", () => {
    assert.equal(agentRoute("/agent/x", "/agents/"), undefined);
    assert.equal(agentRoute("/agents/", "/agents/"), undefined);
    assert.equal(agentRoute("/agents/%zz/x", "/agents/"), "malformed_key");
    // `\` does not end the key: this names no agent rather than agent `b`.
    assert.deepEqual(agentRoute("/agents/a\\..\\b", "/agents/"), { key: "a\\..\\b", target: "/" });
  });

  it("climbsOut() resolves as a URL parser would", () => {
    assert.equal(climbsOut("/a/.."), false);
    assert.equal(climbsOut("/a/../.."), true);
    assert.equal(climbsOut("//.."), false); // an empty segment is a segment
    assert.equal(climbsOut("/./.."), true);
    assert.equal(climbsOut(""), false);
  });
});

describe("addressMatcher()", () => {
  it("matches addresses and CIDR blocks, IPv4-mapped IPv6 as IPv4", () => {
    const trusted = addressMatcher(["10.0.0.0/8", "192.168.1.7", "::1", "fd00::/8"]);
    assert.equal(trusted("10.255.0.1"), true);
    assert.equal(trusted("::ffff:10.1.2.3"), true);
    assert.equal(trusted("11.0.0.1"), false);
    assert.equal(trusted("192.168.1.7"), true);
    assert.equal(trusted("192.168.1.8"), false);
    assert.equal(trusted("::1"), true);
    assert.equal(trusted("[::1]"), true);
    assert.equal(trusted("0:0:0:0:0:0:0:1"), true);
    assert.equal(trusted("fd12:3456::1"), true);
    assert.equal(trusted("fe80::1%eth0"), false);
    assert.equal(trusted(""), false);
    assert.equal(trusted("not an address"), false);
  });

  it("refuses entries that are not addresses or blocks", () => {
    for (const entry of ["10.0.0.0/33", "::/129", "10.0.0", "example.com", "1:2:3:4:5:6:7:8:9"]) {
      assert.throws(() => addressMatcher([entry]), TypeError, entry);
    }
  });
});

describe("forwardedClient()", () => {
  const trusted = addressMatcher(["10.0.0.0/8", "::1"]);

  it("is the last address that is not a trusted proxy, walking from the right", () => {
    assert.equal(forwardedClient("203.0.113.7", trusted), "203.0.113.7");
    assert.equal(forwardedClient("198.51.100.1, 203.0.113.7", trusted), "203.0.113.7");
    assert.equal(forwardedClient("203.0.113.7, 10.0.0.2,10.1.1.1", trusted), "203.0.113.7");
    assert.equal(forwardedClient(" 2001:db8::7 , ::1", trusted), "2001:db8::7");
    assert.equal(forwardedClient("[2001:db8::7]", trusted), "2001:db8::7");
  });

  it("stops at what is not an address: a spoofed prefix goes no further than our proxies", () => {
    assert.equal(forwardedClient("unknown, 203.0.113.7", trusted), "203.0.113.7");
    assert.equal(forwardedClient("203.0.113.7, 10.0.0.2, evil", trusted), undefined);
    assert.equal(forwardedClient("203.0.113.7:4711", trusted), undefined, "no port");
    assert.equal(forwardedClient("junk, 10.0.0.2", trusted), "10.0.0.2", "all trusted");
    assert.equal(forwardedClient("", trusted), undefined);
    assert.equal(forwardedClient(null, trusted), undefined);
  });
});

describe("agentRequestHeaders()", () => {
  const hop: Hop = {
    clientAddr: "127.0.0.1",
    host: "gw.example:8080",
    proto: "http",
    prefix: "/agents/d",
    trusted: false,
    preserveHost: false,
    credentialHeader: "",
  };
  /** The caller's lines as `node:http`'s `rawHeaders` has them: case and order as sent. */
  const caller = (): string[] =>
    [
      ["Host", "gw.example:8080"],
      ["X-Hop", "1"],
      ["Connection", "keep-alive, X-Hop"],
      ["Keep-Alive", "timeout=5"],
      ["Accept", "text/html"],
      ["Expect", "100-continue"],
      ["Transfer-Encoding", "chunked"],
      ["X-Forwarded-For", "6.6.6.6"],
      ["X-Forwarded-Host", "evil.example"],
      ["X-Forwarded-Proto", "https"],
      ["X-Forwarded-For", "7.7.7.7"],
      ["Forwarded", "for=6.6.6.6"],
      ["Via", "1.0 front"],
      ["X-Multi", "1"],
      ["Content-Length", "3"],
      ["X-Multi", "2"],
    ].flat();

  it("replaces a caller's forwarding headers and adds its own, nothing else, in the caller's order", () => {
    // Spread: the list carries the mark that makes it the wire's (next test).
    assert.deepEqual([...agentRequestHeaders(caller(), hop)], [
      ["accept", "text/html"],
      ["x-multi", "1"],
      ["content-length", "3"],
      ["x-multi", "2"],
      ["x-forwarded-for", "127.0.0.1"],
      ["x-forwarded-host", "gw.example:8080"],
      ["x-forwarded-proto", "http"],
      ["x-forwarded-prefix", "/agents/d"],
      ["forwarded", 'for=127.0.0.1;host="gw.example:8080";proto=http'],
      ["via", "1.0 front, 1.1 swaggersocket"],
    ]);
  });

  it("is the wire's list: forwardParts() sends it as it is, another list through a Headers", () => {
    const list = agentRequestHeaders(caller(), hop);
    assert.equal(forwardParts({ method: "GET", target: "/", headers: list }).head.headers, list);
    const plain: [string, string][] = [["X-Mixed-Case", " padded "]];
    assert.deepEqual(forwardParts({ method: "GET", target: "/", headers: plain }).head.headers, [
      ["x-mixed-case", "padded"],
    ]);
  });

  it("extends a trusted proxy's headers (repeated lines joined), keeps Host with preserveHost, drops the credential", () => {
    const fields = [
      ...caller(),
      ...["Proxy-Authorization", "Bearer s3", "Authorization", "Bearer for-the-agent"],
    ];
    const out = new Headers(agentRequestHeaders(fields, {
      ...hop,
      clientAddr: "::1",
      trusted: true,
      preserveHost: true,
      credentialHeader: "proxy-authorization",
    }));
    assert.equal(out.get("x-forwarded-for"), "6.6.6.6, 7.7.7.7, ::1");
    assert.equal(out.get("x-forwarded-host"), "evil.example");
    assert.equal(out.get("x-forwarded-proto"), "https");
    assert.equal(
      out.get("forwarded"),
      'for=6.6.6.6, for="[::1]";host="gw.example:8080";proto=http',
    );
    assert.equal(out.get("host"), "gw.example:8080");
    assert.equal(out.get("proxy-authorization"), null);
    assert.equal(out.get("authorization"), "Bearer for-the-agent");
  });

  it("gives what it gave through a Headers, less the order and joins a Headers makes", () => {
    const viaHeaders = (fields: string[]): [string, string][] => {
      const headers = new Headers();
      for (let i = 0; i < fields.length; i += 2) headers.append(fields[i], fields[i + 1]);
      const joined: string[] = [];
      headers.forEach((value, name) => joined.push(name, value));
      return agentRequestHeaders(joined, hop);
    };
    const sorted = (list: [string, string][]) => [...new Headers(list)];
    assert.deepEqual(sorted(agentRequestHeaders(caller(), hop)), sorted(viaHeaders(caller())));
  });
});

describe("path rewriting", () => {
  const gateway: PathMap = { origin: "http://gw:8080", from: "/", to: "/agents/d/" };
  const tunnel: PathMap = { origin: "http://10.0.0.5:3000", from: "/app/", to: "/" };

  it("mapLocation() moves root-relative and same-origin URLs, leaves the rest", () => {
    assert.equal(mapLocation("/x?y#z", gateway), "/agents/d/x?y#z");
    assert.equal(mapLocation("/", gateway), "/agents/d/");
    assert.equal(mapLocation("http://gw:8080/get", gateway), "/agents/d/get");
    assert.equal(mapLocation("http://gw:8080", gateway), "/agents/d/");
    assert.equal(mapLocation("x/y", gateway), "x/y");
    assert.equal(mapLocation("?q", gateway), "?q");
    assert.equal(mapLocation("https://other.example/", gateway), "https://other.example/");
    assert.equal(mapLocation("//other.example/x", gateway), "//other.example/x");
    assert.equal(mapLocation("http://10.0.0.5:3000/app/x?q", tunnel), "/x?q");
    assert.equal(mapLocation("http://10.0.0.5:3000/app", tunnel), "/");
    assert.equal(mapLocation("/app/login", tunnel), "/login");
    assert.equal(mapLocation("/elsewhere", tunnel), "/elsewhere");
    assert.equal(
      mapLocation("http://10.0.0.5:3000/elsewhere", tunnel),
      "http://10.0.0.5:3000/elsewhere",
    );
  });

  it("mapCookiePath() scopes Path, leaves a cookie without one", () => {
    assert.equal(mapCookiePath("a=1; Path=/", gateway), "a=1; Path=/agents/d/");
    assert.equal(
      mapCookiePath("a=1; path=/sub; HttpOnly", gateway),
      "a=1; path=/agents/d/sub; HttpOnly",
    );
    assert.equal(mapCookiePath("a=1; Secure", gateway), "a=1; Secure");
    assert.equal(mapCookiePath("a=1; Path=/app/x", tunnel), "a=1; Path=/x");
  });

  it("mapResponseListPaths() maps Location and each Set-Cookie line apart, in place", () => {
    const headers: [string, string][] = [
      ["location", "/next"],
      ["set-cookie", "a=1; Path=/"],
      ["content-type", "text/plain"],
      ["set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/b"],
    ];
    mapResponseListPaths(headers, gateway);
    assert.deepEqual(headers, [
      ["location", "/agents/d/next"],
      ["set-cookie", "a=1; Path=/agents/d/"],
      ["content-type", "text/plain"],
      ["set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/agents/d/b"],
    ]);
  });
});

describe("announcesBody", () => {
  it("reads the framing headers from the lines as they came, in any case", () => {
    assert.equal(announcesBody(["Host", "a", "Content-Length", "0"]), false);
    assert.equal(announcesBody(["content-length", " 0 "]), false);
    assert.equal(announcesBody(["Content-Length", "3"]), true);
    assert.equal(announcesBody(["TRANSFER-ENCODING", "chunked"]), true);
    assert.equal(announcesBody(["Content-Type", "text/plain", "X-Content-Length", "3"]), false);
    assert.equal(announcesBody([]), false);
  });
});

describe("withoutHopByHopList()", () => {
  it("drops what withoutHopByHop() leaves out of a Headers, and keeps the rest in order", () => {
    const list: [string, string][] = [
      ["connection", "close, X-Trace"],
      ["x-trace", "1"],
      ["keep-alive", "timeout=5"],
      ["proxy-authenticate", "Basic"],
      ["set-cookie", "a=1"],
      ["transfer-encoding", "chunked"],
      ["content-type", "text/plain"],
      ["set-cookie", "b=2"],
      ["te", "trailers"],
      ["connection", "x-other"],
      ["x-other", "2"],
    ];
    const kept = withoutHopByHopList(list);
    assert.deepEqual(kept, [
      ["set-cookie", "a=1"],
      ["content-type", "text/plain"],
      ["set-cookie", "b=2"],
    ]);
    assert.deepEqual(
      [...new Headers(kept)],
      [...withoutHopByHop(new Headers(list))],
      "the same as through a Headers",
    );
  });

  it("gives back the list itself when it holds none of them", () => {
    const list: [string, string][] = [["content-length", "2"], ["etag", '"x"']];
    assert.equal(withoutHopByHopList(list), list);
  });
});
