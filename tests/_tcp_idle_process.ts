/**
 * A process whose only open handle is an idle, unref'd `TcpConnection` to the port given:
 * it prints `idle` once the peer has answered, then should exit on its own. With `node`
 * as the second argument the connection is `node:net`'s, else the runtime's own.
 */

import net from "node:net";
import { RUNTIME } from "../runtime/mod.ts";
import { adaptNodeSocket } from "../runtime/_node_net.ts";
import type { TcpConnection, TcpHandlers } from "../runtime/_types.ts";

const [port, kind] = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
  (globalThis as unknown as { process: { argv: string[] } }).process.argv.slice(2);
const handlers: TcpHandlers = {
  data() {
    connection.unref();
    console.log("idle");
  },
  end() {},
  error(error) {
    console.log(`error ${error.message}`);
  },
  close() {},
};
const connection: TcpConnection = kind === "node"
  ? adaptNodeSocket(net.connect({ host: "127.0.0.1", port: Number(port) }), handlers)
  : RUNTIME.connectTcp!("127.0.0.1", Number(port), handlers);
connection.write("hello");
