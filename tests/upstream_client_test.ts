/**
 * The tunnel's own HTTP/1.1 client (`agent/_upstream_client.ts`), through `tunnelHandler`'s
 * parts form, against a raw TCP upstream that answers as each test scripts it: which
 * sockets it keeps alive and which it does not, a kept-alive socket closed as a request goes
 * out (sent again when that is safe), interim answers, answers it cannot read one way only,
 * a body cut short, and an answer that comes before the upload is over. And an `https:`
 * upstream: its certificate checked against what the runtime trusts.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createServer as createHttpsServer } from "node:https";
import { rmSync } from "node:fs";
import { tunnelHandler } from "../agent.ts";
import { Cancel } from "../connection/_cancel.ts";
import { type IncomingParts, type OutgoingParts, partsOf } from "../connection/_parts_handler.ts";
import { BUN_BIN, DENO_BIN, RUNTIME, spawnLines, withTimeout } from "./_helpers.ts";
import { makeCertificates } from "./_certificates.ts";
import { deferred } from "./_exchange_helpers.ts";

const GUARD = 10_000;
const TEST = { timeout: 30_000 };

/** A request as the raw upstream read it: its head, and the socket it came on. */
interface Seen {
  head: string;
  /** Which of the upstream's sockets (from 0), and which request on it (from 0). */
  socket: number;
  nth: number;
}

/**
 * A raw HTTP upstream: `answer` is called with each request head (bodies of a
 * `Content-Length` are read past; a chunked one is not read) and writes what it likes.
 */
async function rawUpstream(
  answer: (seen: Seen, socket: net.Socket) => void,
): Promise<{ url: string; seen: Seen[]; raw: string[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  /** Everything each socket received, each byte one latin1 character. */
  const raw: string[] = [];
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const index = count++;
    let nth = 0;
    let buffered = "";
    let skip = 0;
    raw[index] = "";
    socket.on("data", (chunk: Uint8Array) => {
      const text = String.fromCharCode(...chunk);
      raw[index] += text;
      buffered += text;
      for (;;) {
        if (skip > 0) {
          const taken = Math.min(skip, buffered.length);
          buffered = buffered.slice(taken);
          skip -= taken;
          if (skip > 0) return;
        }
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        skip = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        const one = { head, socket: index, nth: nth++ };
        seen.push(one);
        answer(one, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    raw,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The tunnel's parts form, to `url`, with a bounded call. */
function tunnelTo(url: string): (request: Partial<IncomingParts>) => Promise<OutgoingParts> {
  const parts = partsOf(tunnelHandler(url, { rewrite: false }))!;
  return (request) =>
    withTimeout(
      parts({
        method: "GET",
        target: "/",
        headers: [],
        body: null,
        cancel: new Cancel(),
        ...request,
      }),
      GUARD,
      `${request.method ?? "GET"} ${request.target ?? "/"}`,
    );
}

async function text(body: OutgoingParts["body"]): Promise<string> {
  return await new Response(body as BodyInit | null).text();
}

const OK = (body: string, extra = ""): string =>
  `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;

describe("the tunnel's HTTP/1.1 client", () => {
  it(
    "keeps a socket alive between requests, and writes no header it was not given",
    TEST,
    async () => {
      const upstream = await rawUpstream((_, socket) => socket.write(OK("hi")));
      const ask = tunnelTo(upstream.url);
      try {
        for (let i = 0; i < 3; i++) assert.equal(await text((await ask({})).body), "hi");
        assert.deepEqual(upstream.seen.map((one) => [one.socket, one.nth]), [[0, 0], [0, 1], [
          0,
          2,
        ]]);
        const port = new URL(upstream.url).port;
        assert.equal(upstream.seen[0].head, `GET / HTTP/1.1\r\nhost: 127.0.0.1:${port}`);
      } finally {
        await upstream.close();
      }
    },
  );

  it(
    "writes a whole body without a length chunked, an empty one as the last chunk alone, and a value's bytes as they are",
    TEST,
    async () => {
      const upstream = await rawUpstream((_, socket) =>
        socket.write(OK("ok", "connection: close\r\n"))
      );
      const ask = tunnelTo(upstream.url);
      try {
        const encoder = new TextEncoder();
        for (const body of ["hello", ""]) {
          const answer = await ask({ method: "POST", body: encoder.encode(body) });
          assert.equal(await text(answer.body), "ok");
        }
        // A byte beyond ASCII in a value (obs-text) goes as that one byte, not as UTF-8.
        await ask({ headers: [["x-name", "caf\xe9"]] });
        const port = new URL(upstream.url).port;
        assert.deepEqual(upstream.raw, [
          `POST / HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ntransfer-encoding: chunked\r\n\r\n` +
          "5\r\nhello\r\n0\r\n\r\n",
          `POST / HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
          `GET / HTTP/1.1\r\nx-name: caf\xe9\r\nhost: 127.0.0.1:${port}\r\n\r\n`,
        ]);
      } finally {
        await upstream.close();
      }
    },
  );

  it("does not reuse a socket after Connection: close or an HTTP/1.0 answer", TEST, async () => {
    const upstream = await rawUpstream((seen, socket) => {
      if (seen.head.startsWith("GET /close")) socket.write(OK("c", "connection: close\r\n"));
      else if (seen.head.startsWith("GET /old")) socket.write(OK("o").replace("1.1", "1.0"));
      else socket.write(OK("k"));
    });
    const ask = tunnelTo(upstream.url);
    try {
      for (const target of ["/close", "/again", "/old", "/again"]) {
        await text((await ask({ target })).body);
      }
      // Each answer that said it would close is followed by a new socket; none was closed.
      assert.deepEqual(upstream.seen.map((one) => one.socket), [0, 1, 1, 2]);
    } finally {
      await upstream.close();
    }
  });

  it(
    "sends a GET again on a new socket when a kept-alive one closes as it goes out; not a POST",
    TEST,
    async () => {
      // The second request on every socket finds it closed, unanswered: the race a
      // kept-alive socket loses when the upstream times it out as a request is written.
      const upstream = await rawUpstream((seen, socket) => {
        if (seen.nth === 0) socket.write(OK(`socket ${seen.socket}`));
        else socket.destroy();
      });
      const ask = tunnelTo(upstream.url);
      try {
        assert.equal(await text((await ask({})).body), "socket 0");
        assert.equal(await text((await ask({ target: "/again" })).body), "socket 1");
        assert.deepEqual(upstream.seen.map((one) => one.head.split(" ", 2)[1]), [
          "/",
          "/again",
          "/again",
        ]);
        const post = await ask({
          method: "POST",
          target: "/post",
          headers: [["content-length", "2"]],
          body: new TextEncoder().encode("hi"),
        });
        assert.equal(post.status, 502);
        const error = JSON.parse(await text(post.body)) as { error: string; message: string };
        assert.equal(error.error, "upstream_unavailable");
        assert.equal(upstream.seen.filter((one) => one.head.startsWith("POST")).length, 1);
      } finally {
        await upstream.close();
      }
    },
  );

  it("skips interim 100 and 103 answers", TEST, async () => {
    const upstream = await rawUpstream((_, socket) =>
      socket.write(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" +
          OK("final"),
      )
    );
    const ask = tunnelTo(upstream.url);
    try {
      const answer = await ask({});
      assert.equal(answer.status, 200);
      assert.deepEqual(answer.headers, [["content-length", "5"]]);
      assert.equal(await text(answer.body), "final");
    } finally {
      await upstream.close();
    }
  });

  it(
    "answers 502 for an answer it cannot read one way only, and drops the socket",
    TEST,
    async () => {
      const upstream = await rawUpstream((seen, socket) => {
        if (seen.nth === 0 && seen.socket === 0) {
          socket.write(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
          );
        } else socket.write(OK("clean"));
      });
      const ask = tunnelTo(upstream.url);
      try {
        const smuggled = await ask({});
        assert.equal(smuggled.status, 502);
        const error = JSON.parse(await text(smuggled.body)) as { message: string };
        assert.match(error.message, /Both Transfer-Encoding and Content-Length/);
        assert.equal(await text((await ask({})).body), "clean");
        assert.deepEqual(upstream.seen.map((one) => one.socket), [0, 1]);
      } finally {
        await upstream.close();
      }
    },
  );

  it("errors the body of an answer the upstream cuts short", TEST, async () => {
    const upstream = await rawUpstream((_, socket) => {
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
      // After the head and the first bytes are through: the tunnel has answered by then.
      setImmediate(() => socket.destroy());
    });
    const ask = tunnelTo(upstream.url);
    try {
      const answer = await ask({});
      assert.equal(answer.status, 200);
      assert.ok(answer.body instanceof ReadableStream, "a body still arriving streams");
      await assert.rejects(withTimeout(text(answer.body), GUARD, "the body"), /closed/);
    } finally {
      await upstream.close();
    }
  });

  it(
    "takes an answer that comes before the upload is over, and stops uploading",
    TEST,
    async () => {
      const upstream = await rawUpstream((seen, socket) => {
        if (seen.head.startsWith("PUT")) {
          socket.write("HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n");
        } else socket.write(OK("next"));
      });
      const cancelled = deferred<unknown>();
      const upload = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("first part"));
        },
        cancel: (reason) => cancelled.resolve(reason),
      });
      const ask = tunnelTo(upstream.url);
      try {
        const answer = await ask({ method: "PUT", target: "/big", body: upload });
        assert.equal(answer.status, 413);
        await withTimeout(cancelled.promise, GUARD, "the upload to be cancelled");
        assert.match(upstream.seen[0].head, /\r\ntransfer-encoding: chunked$/);
        // The socket was mid-upload: the next request takes a new one.
        assert.equal(await text((await ask({})).body), "next");
        assert.deepEqual(upstream.seen.map((one) => one.socket), [0, 1]);
      } finally {
        await upstream.close();
      }
    },
  );

  it(
    "answers 502 when nothing listens at the upstream, and reaches it once it does",
    TEST,
    async () => {
      // A port that was free a moment ago; the upstream then listens on it.
      const probe = net.createServer();
      await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      const ask = tunnelTo(`http://127.0.0.1:${port}`);
      const down = await ask({});
      assert.equal(down.status, 502);
      const error = JSON.parse(await text(down.body));
      assert.equal(error.error, "upstream_unavailable");
      assert.match(error.message, new RegExp(`^Cannot reach http://127\\.0\\.0\\.1:${port}: `));
      const upstream = net.createServer((socket) =>
        socket.on("data", () => socket.end(OK("up", "connection: close\r\n")))
      );
      await new Promise<void>((resolve) => upstream.listen(port, "127.0.0.1", resolve));
      try {
        assert.equal(await text((await ask({})).body), "up");
      } finally {
        await new Promise<void>((resolve) => upstream.close(() => resolve()));
      }
    },
  );

  it("rejects with the cancel's reason, before the head and after", TEST, async () => {
    const arrived = deferred<void>();
    const upstream = await rawUpstream((seen, socket) => {
      if (seen.head.startsWith("GET /slow-body")) {
        socket.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab");
      } else arrived.resolve();
    });
    const ask = tunnelTo(upstream.url);
    try {
      const reason = new DOMException("gone", "AbortError");
      const beforeHead = new Cancel();
      const pending = ask({ target: "/no-answer", cancel: beforeHead });
      await withTimeout(arrived.promise, GUARD, "the request to arrive");
      beforeHead.abort(reason);
      await assert.rejects(pending, reason);
      const afterHead = new Cancel();
      const answer = await ask({ target: "/slow-body", cancel: afterHead });
      assert.ok(answer.body instanceof ReadableStream);
      const reader = answer.body.getReader();
      assert.equal(new TextDecoder().decode((await reader.read()).value), "ab");
      afterHead.abort(reason);
      await assert.rejects(withTimeout(reader.read(), GUARD, "the body's end"), reason);
    } finally {
      await upstream.close();
    }
  });

  it(
    "speaks TLS to an https: upstream, checking its certificate against what the runtime trusts",
    { timeout: 60_000 },
    async () => {
      const certificates = makeCertificates();
      const server = createHttpsServer(
        { cert: certificates.tls.cert, key: certificates.tls.key },
        (request, response) => response.end(`secure ${request.headers.host}`),
      );
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as net.AddressInfo;
      const url = `https://localhost:${port}`;
      try {
        const untrusted = await tunnelTo(url)({});
        assert.equal(untrusted.status, 502);
        const error = JSON.parse(await text(untrusted.body)) as { message: string };
        assert.match(error.message, /certificate/);
        // Told to trust the private CA, the runtime's TLS takes it, with the name it was given.
        const child = spawnLines(
          RUNTIME === "deno" ? DENO_BIN : BUN_BIN,
          RUNTIME === "deno"
            ? ["run", "-A", "--quiet", "tests/fixtures/tunnel_once.ts", url]
            : ["run", "tests/fixtures/tunnel_once.ts", url],
          "tunnel_once.ts",
          RUNTIME === "deno"
            ? { DENO_CERT: certificates.caFile }
            : { NODE_EXTRA_CA_CERTS: certificates.caFile },
        );
        try {
          const [line] = await child.waitFor(/^ANSWER .*/, 45_000);
          assert.equal(line, `ANSWER 200 secure localhost:${port}`);
        } finally {
          await child.kill();
        }
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        rmSync(certificates.dir, { recursive: true, force: true });
      }
    },
  );
});
