// Socket.IO 4 baseline client, on Node:
//   node bench/socketio_client.mjs --port N --concurrency 64 --warmup 1000 --duration 5000
// Runs `concurrency` loops of `emitWithAck("echo", <100-character string>)` over the
// websocket transport and prints `RESULT <json>` as bench/client.ts does.
import process from "node:process";
import { io } from "socket.io-client";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const port = arg("port");
const concurrency = arg("concurrency", 64);
const warmup = arg("warmup", 1000);
const duration = arg("duration", 5000);
setTimeout(() => process.exit(3), arg("max-seconds", 600) * 1000).unref();

const payload = "a".repeat(100);
const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"] });
await new Promise((resolve, reject) => {
  socket.once("connect", resolve);
  socket.once("connect_error", reject);
});

const latencies = [];
let measuring = false;
let stopped = false;
let ops = 0;
async function loop() {
  while (!stopped) {
    const start = performance.now();
    const answer = await socket.emitWithAck("echo", payload);
    if (answer.length !== payload.length) throw new Error("Bad echo");
    if (measuring) {
      ops++;
      latencies.push(performance.now() - start);
    }
  }
}
const running = Array.from({ length: concurrency }, loop);
await new Promise((resolve) => setTimeout(resolve, warmup));
measuring = true;
const start = performance.now();
await new Promise((resolve) => setTimeout(resolve, duration));
measuring = false;
const seconds = (performance.now() - start) / 1000;
stopped = true;
await Promise.all(running);
const sorted = Float64Array.from(latencies).sort();
const q = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
console.log(
  `RESULT ${JSON.stringify({ ops, seconds, rate: ops / seconds, p50: q(0.5), p99: q(0.99) })}`,
);
socket.close();
process.exit(0);
