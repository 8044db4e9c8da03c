#!/usr/bin/env node
// A cluster of gateways on one machine in one command (`npm run cluster`): starts Debian's
// redis-server on a unix socket of its own, three gateway.ts instances on it (ports 8081, 8082
// and 8083) and one demo agent on the first, then prints curl lines that reach the agent
// through every instance. Ctrl-C stops everything. Needs `redis-server` (apt-get install
// redis-server). `--exit-after MS` stops by itself (for tests).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const deno = join(root, "node_modules", ".bin", "deno");
const REDIS = "/usr/bin/redis-server";
const PORTS = [8081, 8082, 8083];
const exitAt = process.argv.indexOf("--exit-after");
const exitAfter = exitAt === -1 ? 0 : Number(process.argv[exitAt + 1]);

if (!existsSync(REDIS)) {
  console.error(`cluster: ${REDIS} is missing (apt-get install redis-server)`);
  process.exit(1);
}
if (!existsSync(deno)) {
  console.error("cluster: run npm ci first (it installs the pinned Deno and Bun)");
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), "swaggersocket-cluster-"));
const socket = join(dir, "redis.sock");
const children = [];
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1" };

/** Starts a process; resolves with it once a line of its output matches `ready`. */
function start(command, args, ready, name) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    let buffered = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      buffered += chunk;
      if (ready.test(buffered)) resolve(child);
      // Keep the cluster's logs visible, prefixed by who said them.
      for (const line of chunk.split("\n").filter((l) => l.trim() !== "")) {
        process.stdout.write(`[${name}] ${line}\n`);
      }
    });
    child.on("exit", (code) => reject(new Error(`${name} exited (${code}) before it was ready`)));
  });
}

function stop() {
  for (const child of children) child.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
if (exitAfter > 0) setTimeout(stop, exitAfter);

try {
  await start(
    REDIS,
    ["--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no", "--dir", dir],
    /ready to accept connections/i,
    "redis",
  );
  for (const port of PORTS) {
    await start(
      deno,
      [
        "run",
        "-A",
        "gateway.ts",
        "--port",
        String(port),
        "--redis",
        `unix://${socket}`,
        "--cluster-secret",
        "demo-cluster-secret",
        "--log-level",
        "debug",
        ...(port === PORTS[0] ? ["--demo"] : []),
      ],
      port === PORTS[0] ? /Ctrl-C stops/ : /gateway listening/,
      `gateway:${port}`,
    );
  }
  console.log("\nThe demo agent is on the first instance; every instance reaches it:");
  for (const port of PORTS) console.log(`  curl http://127.0.0.1:${port}/agents/demo/hello`);
  console.log(`  curl http://127.0.0.1:${PORTS[2]}/agents   # every instance's agents`);
  console.log("\nCtrl-C stops the cluster.");
  console.log("cluster ready");
} catch (error) {
  console.error(`cluster: ${error.message}`);
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}
