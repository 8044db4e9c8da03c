#!/usr/bin/env node
// The whole test suite in one command (`npm test`): installs the pinned Deno and Bun
// if they are missing, runs the static checks, then the suite under Deno and under Bun.
// Prints one closing line: "tests: N passed, M failed".
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
const only = process.argv.slice(2); // e.g. `npm test -- deno` or `-- bun` or `-- checks`
const want = (step) => only.length === 0 || only.includes(step);
// Each runner gets a hard bound so that a hang fails the run instead of stalling CI.
const RUNNER_TIMEOUT_MS = 8 * 60_000;

if (!existsSync(bin("deno")) || !existsSync(bin("bun"))) {
  console.log("Installing the pinned Deno and Bun (npm ci)…");
  const ci = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (ci.status !== 0) process.exit(ci.status ?? 1);
}

function run(label, command, args, { capture = false, timeout = RUNNER_TIMEOUT_MS } = {}) {
  return new Promise((resolve) => {
    console.log(
      `\n=== ${label}: ${[command, ...args].map((a) => a.replace(root + "/", "")).join(" ")}`,
    );
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const timer = setTimeout(() => {
      console.log(`\n${label}: timed out after ${timeout / 1000} s; killing`);
      child.kill("SIGKILL");
    }, timeout);
    const forward = (stream, sink) =>
      stream.on("data", (chunk) => {
        sink.write(chunk);
        if (capture) output += chunk;
      });
    forward(child.stdout, process.stdout);
    forward(child.stderr, process.stderr);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, code: code ?? 1, signal, output });
    });
  });
}

let passed = 0;
let failed = 0;
const failures = [];

if (want("checks")) {
  const deno = bin("deno");
  const checks = [
    ["fmt", deno, ["fmt", "--check"]],
    ["lint", deno, ["lint"]],
    ["check", deno, [
      "check",
      "mod.ts",
      "protocol/mod.ts",
      "client/mod.ts",
      "gateway.ts",
      "agent.ts",
      "cli/",
      "tests/",
      "examples/",
      "bench/",
    ]],
    // What runs in a page type-checks against the DOM's libraries too.
    ["check-dom", deno, ["check", "--config", "tools/deno.dom.json", "client/mod.ts", "mod.ts"]],
    ["doc-lint", deno, [
      "doc",
      "--lint",
      "mod.ts",
      "protocol/mod.ts",
      "client/mod.ts",
      "gateway.ts",
      "agent.ts",
    ]],
    ["publish-dry-run", deno, ["publish", "--dry-run", "--allow-dirty"]],
  ];
  for (const [label, command, args] of checks) {
    const result = await run(label, command, args);
    if (result.ok) passed++;
    else {
      failed++;
      failures.push(label);
    }
  }
}

function count(output, patterns) {
  for (const [re, p, f] of patterns) {
    const m = output.match(re);
    if (m) return { passed: Number(m[p]), failed: Number(m[f]) };
  }
  return undefined;
}

if (want("deno")) {
  // --expose-gc: tests/unread_bodies_test.ts asks for a collection.
  const result = await run("deno test", bin("deno"), [
    "test",
    "-A",
    "--no-check",
    "--v8-flags=--expose-gc",
    "tests/",
  ], {
    capture: true,
  });
  const counts = count(result.output, [[/\|\s*(\d+) passed[^|]*\|\s*(\d+) failed/, 1, 2]]);
  passed += counts?.passed ?? 0;
  failed += counts?.failed ?? 0;
  if (!result.ok || !counts) {
    failures.push("deno test");
    if (!counts || counts.failed === 0) failed++;
  }
}

if (want("bun")) {
  const result = await run("bun test", bin("bun"), ["test", "--timeout", "60000", "./tests/"], {
    capture: true,
  });
  const p = result.output.match(/^\s*(\d+) pass\s*$/m);
  const f = result.output.match(/^\s*(\d+) fail\s*$/m);
  const counts = p && f ? { passed: Number(p[1]), failed: Number(f[1]) } : undefined;
  passed += counts?.passed ?? 0;
  failed += counts?.failed ?? 0;
  if (!result.ok || !counts) {
    failures.push("bun test");
    if (!counts || counts.failed === 0) failed++;
  }
}

// Every benchmark scenario for 0.2 s on tiny sizes, every hostile-peer attack for 1 s, the
// CPU instrument and its floor on each runtime, and the gateway's and the cluster's benchmarks
// for two short rounds with servers on each runtime: proves the commands bench/RESULTS.md
// names still run (not timed, and no figure is judged).
if (want("bench")) {
  for (
    const [label, runtime, script, ...args] of [
      ["bench-smoke", "deno", "bench/main.ts"],
      ["bench-hostile-smoke", "deno", "bench/hostile.ts"],
      ["bench-cpu-smoke", "deno", "bench/cpu_per_exchange.ts"],
      ["bench-cpu-smoke-bun", "bun", "bench/cpu_per_exchange.ts"],
      ["bench-gateway-smoke", "deno", "bench/gateway.ts"],
      ["bench-gateway-smoke-bun", "deno", "bench/gateway.ts", "--runtime", "bun"],
      ["bench-cluster-smoke", "deno", "bench/cluster.ts"],
      ["bench-cluster-smoke-bun", "deno", "bench/cluster.ts", "--runtime", "bun"],
    ]
  ) {
    const command = runtime === "deno"
      ? ["run", "-A", script, "--smoke", ...args]
      : [script, "--smoke", ...args];
    const result = await run(label, bin(runtime), command, {
      timeout: 3 * 60_000,
    });
    if (result.ok) passed++;
    else {
      failed++;
      failures.push(label);
    }
  }
}

console.log(`\n${failures.length ? `failing: ${failures.join(", ")}\n` : ""}`);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && failures.length === 0 ? 0 : 1);
