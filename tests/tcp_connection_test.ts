/**
 * The runtimes' TCP connections (`runtime/_types.ts`'s `TcpConnection`): `Deno.connect` and
 * `Bun.connect` (`RUNTIME.connectTcp`), and `node:net` (`_node_net.ts`), held to one
 * contract against a raw `node:net` server: bytes as written (strings one byte per
 * character), backpressure both ways, the peer's end, a refusal, `destroy()`, and an idle
 * unref'd connection that lets its process exit.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { RUNTIME } from "../runtime/mod.ts";
import { adaptNodeSocket } from "../runtime/_node_net.ts";
import type { TcpConnection, TcpHandlers } from "../runtime/_types.ts";
import { RUNTIME as RUNTIME_NAME, spawnFixture, withTimeout } from "./_helpers.ts";

const GUARD = 10_000;
const TEST = { timeout: 60_000 };
const MIB = 1024 * 1024;

type Connect = (port: number, handlers: TcpHandlers) => TcpConnection;

/** What a connection told its handlers. */
class Heard implements TcpHandlers {
  readonly events: string[] = [];
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  readonly closed: Promise<void>;
  #closed!: () => void;
  #waiting: { bytes: number; resolve: () => void }[] = [];

  constructor() {
    this.closed = new Promise((resolve) => this.#closed = resolve);
  }

  data(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.bytes += chunk.byteLength;
    this.#waiting = this.#waiting.filter((wait) => {
      if (this.bytes < wait.bytes) return true;
      wait.resolve();
      return false;
    });
  }

  end(): void {
    this.events.push("end");
  }

  error(error: Error): void {
    this.events.push(`error ${(error as { code?: string }).code ?? error.name}`);
  }

  close(): void {
    this.events.push("close");
    this.#closed();
  }

  /** Resolves once `bytes` have come in all. */
  received(bytes: number): Promise<void> {
    if (this.bytes >= bytes) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ bytes, resolve }));
  }

  text(): string {
    return this.chunks.map((chunk) => String.fromCharCode(...chunk)).join("");
  }
}

/** A raw server; `onSocket` gets each connection. */
async function server(
  onSocket: (socket: net.Socket) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  return {
    port: (listener.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => listener.close(() => resolve()));
    },
  };
}

/** Resolves once `value()` has not changed for 100 ms: a transfer that can go no further. */
async function settled(value: () => number): Promise<void> {
  let last = value();
  let since = performance.now();
  while (performance.now() - since < 100) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (value() !== last) [last, since] = [value(), performance.now()];
  }
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const { port, close } = await server(() => {});
  await close();
  return port;
}

const kinds: [string, Connect][] = [
  [
    "node:net",
    (port, handlers) => adaptNodeSocket(net.connect({ host: "127.0.0.1", port }), handlers),
  ],
];
if (RUNTIME.connectTcp) {
  const connectTcp = RUNTIME.connectTcp;
  kinds.unshift([
    `the runtime's own (${RUNTIME_NAME})`,
    (port, handlers) => connectTcp("127.0.0.1", port, handlers),
  ]);
}

for (const [kind, connect] of kinds) {
  describe(`TcpConnection: ${kind}`, () => {
    it(
      "writes parts in order, strings one byte per character, before and after it opens",
      TEST,
      async () => {
        let received = "";
        const got = Promise.withResolvers<void>();
        const upstream = await server((socket) =>
          socket.on("data", (chunk: Uint8Array) => {
            received += String.fromCharCode(...chunk);
            if (received.endsWith("!")) got.resolve();
          })
        );
        try {
          const heard = new Heard();
          const connection = connect(upstream.port, heard);
          // Before it opened: these wait for it.
          assert.equal(connection.write("caf\xe9 ", new Uint8Array([0x00, 0xff]), " "), true);
          await connection.drained();
          connection.write("plain ascii ");
          connection.write("\xe9t\xe9");
          connection.write(new Uint8Array([0x21]));
          await withTimeout(got.promise, GUARD, "the bytes");
          assert.equal(received, "caf\xe9 \x00\xff plain ascii \xe9t\xe9!");
          connection.destroy();
          await withTimeout(heard.closed, GUARD, "close");
        } finally {
          await upstream.close();
        }
      },
    );

    it("hears the peer's bytes, each chunk its own, then end and close", TEST, async () => {
      const upstream = await server((socket) => {
        socket.write("first ");
        socket.end("and last");
      });
      try {
        const heard = new Heard();
        connect(upstream.port, heard);
        await withTimeout(heard.closed, GUARD, "close");
        assert.equal(heard.text(), "first and last");
        assert.deepEqual(heard.events, ["end", "close"]);
        const [first] = heard.chunks;
        assert.equal(Object.getPrototypeOf(first), Uint8Array.prototype, "a plain Uint8Array");
      } finally {
        await upstream.close();
      }
    });

    it(
      "hands over chunks that stay as they came while kept (no buffer read into again)",
      TEST,
      async () => {
        const size = 8 * MIB;
        const sent = new Uint8Array(size);
        for (let i = 0; i < size; i++) sent[i] = (i * 7 + (i >> 13)) & 0xff;
        const upstream = await server((socket) => socket.end(sent));
        try {
          const heard = new Heard();
          connect(upstream.port, heard);
          await withTimeout(heard.closed, GUARD, "close");
          const received = new Uint8Array(heard.bytes);
          let at = 0;
          for (const chunk of heard.chunks) {
            received.set(chunk, at);
            at += chunk.byteLength;
          }
          assert.equal(at, size);
          assert.ok(received.every((byte, i) => byte === sent[i]), "every byte as sent");
        } finally {
          await upstream.close();
        }
      },
    );

    it("reports a refusal as an error, then close, once each", TEST, async () => {
      const heard = new Heard();
      const connection = connect(await closedPort(), heard);
      connection.write("lost");
      await withTimeout(heard.closed, GUARD, "close");
      assert.deepEqual(heard.events, ["error ECONNREFUSED", "close"]);
      assert.equal(connection.destroyed, true);
      assert.equal(connection.write("more"), false);
      await connection.drained();
    });

    it("destroy() closes it at once: close, and nothing else is heard", TEST, async () => {
      const peerClosed = Promise.withResolvers<void>();
      const upstream = await server((socket) => {
        socket.on("close", () => peerClosed.resolve());
        socket.write("hello");
      });
      try {
        const heard = new Heard();
        const connection = connect(upstream.port, heard);
        await withTimeout(heard.received(5), GUARD, "hello");
        connection.destroy();
        connection.destroy();
        await withTimeout(heard.closed, GUARD, "close");
        await withTimeout(peerClosed.promise, GUARD, "the peer to see it close");
        assert.deepEqual(heard.events, ["close"]);
        assert.equal(connection.destroyed, true);
      } finally {
        await upstream.close();
      }
    });

    it("destroy() before it opens: close, and the peer sees nothing sent", TEST, async () => {
      let received = 0;
      const peerClosed = Promise.withResolvers<void>();
      const upstream = await server((socket) => {
        socket.on("data", (chunk: Uint8Array) => received += chunk.byteLength);
        socket.on("close", () => peerClosed.resolve());
      });
      try {
        const heard = new Heard();
        const connection = connect(upstream.port, heard);
        connection.write("never");
        connection.destroy();
        await withTimeout(heard.closed, GUARD, "close");
        assert.deepEqual(heard.events, ["close"]);
        assert.equal(received, 0);
      } finally {
        await upstream.close();
      }
    });

    it(
      "write() says when to wait, and drained() resolves once the peer has read it",
      TEST,
      async () => {
        let peer!: net.Socket;
        let received = 0;
        const connected = Promise.withResolvers<void>();
        const all = Promise.withResolvers<void>();
        const size = 64 * MIB;
        const upstream = await server((socket) => {
          peer = socket;
          socket.pause();
          socket.on("data", (chunk: Uint8Array) => {
            received += chunk.byteLength;
            if (received === size) all.resolve();
          });
          connected.resolve();
        });
        try {
          const heard = new Heard();
          const connection = connect(upstream.port, heard);
          await withTimeout(connected.promise, GUARD, "the connection");
          assert.equal(connection.write(new Uint8Array(size)), false, "over the high-water mark");
          // Before the peer reads, more waits than the sockets' buffers hold: not drained.
          let receivedWhenDrained = -1;
          const draining = connection.drained().then(() => receivedWhenDrained = received);
          peer.resume();
          await withTimeout(draining, GUARD, "drained");
          assert.ok(receivedWhenDrained > 0, `drained with ${receivedWhenDrained} bytes read`);
          await withTimeout(all.promise, GUARD, "every byte");
          connection.destroy();
        } finally {
          await upstream.close();
        }
      },
    );

    it("pause() stops reading, so the peer's writes back up; resume() reads on", TEST, async () => {
      const size = 64 * MIB;
      let peer!: net.Socket;
      const connected = Promise.withResolvers<void>();
      const upstream = await server((socket) => {
        peer = socket;
        connected.resolve();
      });
      try {
        const heard = new Heard();
        const connection = connect(upstream.port, heard);
        connection.pause();
        await withTimeout(connected.promise, GUARD, "the connection");
        const flushed = new Promise<void>((resolve) =>
          peer.write(new Uint8Array(size), () => resolve())
        );
        await withTimeout(settled(() => peer.writableLength), GUARD, "the peer's write to stop");
        // What a paused reader takes is at most a read or two (a read may be under way).
        assert.ok(heard.bytes <= 2 * 64 * 1024, `${heard.bytes} bytes read while paused`);
        assert.ok(peer.writableLength > 0, "the peer's write waits");
        connection.resume();
        await withTimeout(heard.received(size), GUARD, "every byte");
        await withTimeout(flushed, GUARD, "the peer's write");
        connection.destroy();
      } finally {
        await upstream.close();
      }
    });

    it(
      "holds at most 8 KiB to read into once reads come short, after a large transfer too",
      TEST,
      async () => {
        const size = MIB + 1000;
        const upstream = await server((socket) => {
          socket.write(new Uint8Array(size));
          socket.once("data", () => socket.write("x"));
        });
        try {
          const heard = new Heard();
          const connection = connect(upstream.port, heard);
          let largest = 0;
          const data = heard.data.bind(heard);
          heard.data = (chunk) => {
            data(chunk);
            largest = Math.max(largest, connection.readBufferBytes);
          };
          await withTimeout(heard.received(size), GUARD, "the transfer");
          connection.write("more");
          await withTimeout(heard.received(size + 1), GUARD, "the last byte");
          assert.ok(
            connection.readBufferBytes <= 8 * 1024,
            `${connection.readBufferBytes} bytes held for the next read`,
          );
          // Where the connection reads into its own buffers, a transfer reads large ones.
          if (largest > 0) assert.ok(largest > 8 * 1024, `reads of ${largest} bytes at most`);
          connection.destroy();
          await withTimeout(heard.closed, GUARD, "close");
          assert.equal(connection.readBufferBytes, 0);
        } finally {
          await upstream.close();
        }
      },
    );

    it("unref() lets its process exit while the connection is open and idle", TEST, async () => {
      const upstream = await server((socket) => socket.on("data", () => socket.write("hi")));
      const child = spawnFixture(RUNTIME_NAME, "tests/fixtures/tcp_idle.ts", [
        String(upstream.port),
        kind === "node:net" ? "node" : "own",
      ]);
      try {
        await child.waitFor(/^idle$/, GUARD);
        assert.equal(await withTimeout(child.exited, GUARD, "the process to exit"), 0);
      } finally {
        await child.kill();
        await upstream.close();
      }
    });
  });
}
