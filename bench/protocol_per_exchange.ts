/**
 * The protocol's own cost per small exchange: two `Session`s back to back, no sockets.
 *
 * ```
 * deno run -A bench/protocol_per_exchange.ts [--batch 64] [--rounds 2000] [--runs 5]
 * bun bench/protocol_per_exchange.ts --batch 1
 * ```
 *
 * Each round the client opens `--batch` streams (a POST with one header and 100 B of
 * body), the server answers each with one header and 100 B, and both ends hand each
 * other their output as messages, the way `Connection` does (one copy of each message,
 * as a socket would make). It is a hot loop in one process, so it moves far less from
 * run to run than the two-process benchmarks: use it to compare two versions of
 * `protocol/`. Prints the best of `--runs` in µs per exchange, both sessions together.
 *
 * @module
 */

import { type RequestHead, type ResponseHead, Session } from "../protocol/mod.ts";
import { numberArg, RUNTIME, scriptArgs } from "./_common.ts";

const args = scriptArgs();
const batch = numberArg(args, "batch", 64);
const rounds = numberArg(args, "rounds", 2000);
const runs = numberArg(args, "runs", 5);

const BODY = new Uint8Array(100).fill(0x61);
const REQUEST: RequestHead = {
  method: "POST",
  url: "/echo",
  headers: [["content-type", "application/octet-stream"]],
};
const RESPONSE: ResponseHead = {
  status: 200,
  statusText: "",
  headers: [["content-type", "application/octet-stream"]],
};
const scratch = new Uint8Array(512 * 1024);

/** Hands everything `from` has to send to `to`, one copied message at a time. */
function deliver(from: Session, to: Session): void {
  for (let message = from.pollTransmit(scratch); message; message = from.pollTransmit(scratch)) {
    to.handleMessage(message.slice(), 0);
  }
}

function openPair(): { client: Session; server: Session } {
  const client = new Session({ role: "client" }, 0);
  const server = new Session({ role: "server" }, 0);
  client.hello(null);
  deliver(client, server);
  for (let event = server.pollEvent(); event; event = server.pollEvent()) {
    if (event.type === "hello") server.accept({ id: "01J0000000000000000000000" });
  }
  deliver(server, client);
  deliver(client, server);
  while (client.pollEvent());
  while (server.pollEvent());
  if (client.phase !== "open" || server.phase !== "open") throw new Error("Handshake failed");
  return { client, server };
}

function round(client: Session, server: Session): void {
  for (let i = 0; i < batch; i++) client.sendData(client.openStream(REQUEST, false), BODY, true);
  deliver(client, server);
  for (let event = server.pollEvent(); event; event = server.pollEvent()) {
    if (event.type === "request") {
      server.sendHeaders(event.streamId, RESPONSE, false);
    } else if (event.type === "data") {
      server.consume(event.streamId, event.chunk.byteLength);
      if (event.end) server.sendData(event.streamId, BODY, true);
    }
  }
  deliver(server, client);
  let answered = 0;
  for (let event = client.pollEvent(); event; event = client.pollEvent()) {
    if (event.type !== "data") continue;
    client.consume(event.streamId, event.chunk.byteLength);
    if (event.end) answered++;
  }
  if (answered !== batch) throw new Error(`Expected ${batch} answers, got ${answered}`);
  deliver(client, server);
  deliver(server, client);
  while (server.pollEvent());
  while (client.pollEvent());
}

const { client, server } = openPair();
for (let i = 0; i < rounds; i++) round(client, server); // warm-up
let best = Infinity;
for (let run = 0; run < runs; run++) {
  const start = performance.now();
  for (let i = 0; i < rounds; i++) round(client, server);
  const micros = (performance.now() - start) * 1000 / (rounds * batch);
  best = Math.min(best, micros);
  console.log(`${RUNTIME} batch ${batch}: ${micros.toFixed(2)} µs per exchange`);
}
console.log(`${RUNTIME} batch ${batch}: best ${best.toFixed(2)} µs per exchange (both sessions)`);
