// Socket.IO 4 baseline server, on Node: `node bench/socketio_server.mjs`.
// Answers every "echo" event with its payload through the acknowledgement callback,
// prints `READY <port>`, and exits when stdin closes (or after --max-seconds).
import { createServer } from "node:http";
import process from "node:process";
import { Server } from "socket.io";

const maxSeconds = Number(process.argv[process.argv.indexOf("--max-seconds") + 1]) || 1800;
setTimeout(() => process.exit(3), maxSeconds * 1000).unref();

const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => {
  socket.on("echo", (payload, ack) => ack(payload));
});
http.listen(0, "127.0.0.1", () => console.log(`READY ${http.address().port}`));
process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
