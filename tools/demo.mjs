#!/usr/bin/env node
// The main job in one command (`npm start`): installs the pinned Deno and Bun if they are
// missing, then runs the gateway under Deno with one embedded demo agent (`gateway.ts --demo`),
// which prints the `curl` lines to try once the agent is connected. Extra arguments go to
// the gateway, e.g. `npm start -- --port 9090` or `npm start -- --token s3cret`.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const deno = join(root, "node_modules", ".bin", "deno");

if (!existsSync(deno)) {
  console.log("Installing the pinned Deno and Bun (npm ci)…");
  const ci = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (ci.status !== 0) process.exit(ci.status ?? 1);
}

const child = spawn(deno, [
  "run",
  "-A",
  "--unstable-no-legacy-abort",
  "gateway.ts",
  "--demo",
  ...process.argv.slice(2),
], {
  cwd: root,
  env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" },
  stdio: "inherit",
});
// Ctrl-C reaches the gateway too (same process group); forward what does not.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("close", (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
