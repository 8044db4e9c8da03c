/**
 * The gateway's and the agent's command lines under Deno and under Bun: strict flags (exit 2
 * with the usage), a `--help` that describes every flag, environment variables and a config
 * file, a port in use named in one line (exit 1), JSON logs, a drain on SIGTERM that exits 0,
 * and an agent that says why it cannot connect and when it tries next.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { BUN_BIN, DENO_BIN, ROOT_DIR, serverHolds, spawnLines, withTimeout } from "./_helpers.ts";
import { startGateway } from "../gateway.ts";
import { startEchoUpstream } from "./_echo_upstream.ts";
import { GATEWAY_FLAGS } from "../cli/gateway.ts";
import { AGENT_FLAGS } from "../cli/agent.ts";
import type { FlagTable } from "../cli/_flags.ts";

const OPTIONS = { timeout: 120_000 };
const RUN_MS = 30_000;

/** Runs `gateway.ts` (or `agent.ts`) to its end: its exit code and output. */
function run(
  runtime: "deno" | "bun",
  args: string[],
  env: Record<string, string> = {},
  file = "gateway.ts",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = join(ROOT_DIR, file);
  const [bin, argv] = runtime === "deno"
    ? [DENO_BIN, ["run", "-A", "--quiet", script, ...args]]
    : [BUN_BIN, ["run", script, ...args]];
  return new Promise((resolve) => {
    execFile(bin, argv, {
      cwd: ROOT_DIR,
      env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
      timeout: RUN_MS,
    }, (error, stdout, stderr) => {
      const code = error ? (error as { code?: unknown }).code : 0;
      resolve({ code: typeof code === "number" ? code : -1, stdout, stderr });
    });
  });
}

/** Asserts that a `--help` text has a line for every flag, with its default and variable. */
function describesEvery(help: string, table: FlagTable): void {
  for (const [name, spec] of Object.entries(table)) {
    const line = help.split("\n").find((l) => new RegExp(`^ +(-\\w, )?--${name}\\b`).test(l));
    assert.ok(line, `--${name} is described`);
    if (spec.default !== undefined) assert.match(line, new RegExp(`default ${spec.default}`));
    if (spec.env) assert.match(line, new RegExp(`env ${spec.env}`));
  }
}

for (const runtime of ["deno", "bun"] as const) {
  describe(`gateway.ts command line (${runtime})`, OPTIONS, () => {
    it("refuses unknown flags, missing values and bad values with the usage and exit code 2", async () => {
      const cases: [string[], RegExp][] = [
        [["--prot", "8081"], /--prot/],
        [["--port"], /--port/],
        [["--token", "--port", "0"], /--token/],
        [["--port", "80808"], /--port: 80808 is not a port/],
        [["--timeout", "soon"], /--timeout/],
        [["--exit-after", "3000000000"], /--exit-after: 3000000000 is not a positive number/],
        [["--log-format", "xml"], /--log-format: xml/],
        [["stray"], /Unexpected argument: stray/],
      ];
      for (const [args, message] of cases) {
        const { code, stderr, stdout } = await run(runtime, args);
        assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
        assert.match(stderr, message, args.join(" "));
        assert.match(stderr, /usage: gateway\.ts/);
        assert.equal(stdout, "", "nothing started");
      }
    });

    it("--help describes every flag with its default and environment variable", async () => {
      const { code, stdout } = await run(runtime, ["--help"]);
      assert.equal(code, 0);
      describesEvery(stdout, GATEWAY_FLAGS);
    });

    it("takes flags from the environment and a config file, logs JSON, and drains on SIGTERM with exit 0", async () => {
      const dir = mkdtempSync(join(tmpdir(), "ss-cli-"));
      try {
        const config = join(dir, "gateway.json");
        writeFileSync(config, JSON.stringify({ "trusted-proxies": ["10.0.0.0/8"], port: 0 }));
        const script = join(ROOT_DIR, "gateway.ts");
        const argv = runtime === "deno" ? ["run", "-A", "--quiet", script] : ["run", script];
        const gateway = spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, "gateway.ts", {
          SWAGGERSOCKET_GATEWAY_CONFIG: config,
          SWAGGERSOCKET_GATEWAY_LOG_FORMAT: "json",
          SWAGGERSOCKET_GATEWAY_API_TOKEN: "from-env",
        });
        try {
          const [line] = await gateway.waitFor(/^\{.*"msg":"gateway listening".*\}$/, RUN_MS);
          const listening = JSON.parse(line);
          assert.equal(listening.level, "info");
          assert.match(listening.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
          const refused = await fetch(`${listening.url}/agents`);
          assert.equal(refused.status, 401, "the API token came from the environment");
          await refused.body?.cancel();
          gateway.signal("SIGTERM");
          await gateway.waitFor(/"msg":"gateway draining","signal":"SIGTERM"/, RUN_MS);
          assert.equal(await withTimeout(gateway.exited, RUN_MS, "exit"), 0);
        } finally {
          await gateway.kill();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("names the address in one line and exits 1 when the port is in use", async () => {
      const holder = createServer();
      await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
      const { port } = holder.address() as { port: number };
      try {
        const { code, stderr } = await run(runtime, ["--port", String(port)]);
        assert.equal(code, 1);
        assert.equal(
          stderr.trim(),
          `gateway: Cannot listen on 127.0.0.1:${port}: the address is in use`,
        );
      } finally {
        holder.close();
      }
    });
  });
}

for (const runtime of ["deno", "bun"] as const) {
  describe(`agent.ts command line (${runtime})`, OPTIONS, () => {
    const agent = (args: string[], env: Record<string, string> = {}) =>
      run(runtime, args, env, "agent.ts");

    it("refuses unknown flags, a missing value, a flag taken for a name and bad URLs, exit 2", async () => {
      const cases: [string[], RegExp][] = [
        [["--nmae", "x"], /--nmae/],
        [["--name"], /--name/],
        [["--name", "--exit-after", "2500"], /--name/],
        [
          ["ftp://gw.example/agents/connect"],
          /--url: ftp:\/\/gw\.example\/agents\/connect must start/,
        ],
        [["127.0.0.1:8080"], /--url/],
        [["--upstream", "localhost:3000"], /--upstream: localhost:3000 must start with http:\/\//],
        [["--upstream", "ws://x"], /--upstream/],
        [["ws://a", "ftp://b"], /--url: ftp:\/\/b must start/],
      ];
      for (const [args, message] of cases) {
        const { code, stderr, stdout } = await agent(args);
        assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
        assert.match(stderr, message, args.join(" "));
        assert.match(stderr, /usage: agent\.ts/);
        assert.equal(stdout, "", "nothing started");
        assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
      }
    });

    it("--help describes every flag with its default and environment variable", async () => {
      const { code, stdout } = await agent(["--help"]);
      assert.equal(code, 0);
      describesEvery(stdout, AGENT_FLAGS);
    });

    it("takes several gateway URLs and moves past one that is down", async () => {
      const holder = createServer();
      await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
      const { port } = holder.address() as { port: number };
      await new Promise<void>((resolve) => holder.close(() => resolve()));
      const gateway = await startGateway({ port: 0 });
      try {
        const script = join(ROOT_DIR, "agent.ts");
        const urls = [`ws://127.0.0.1:${port}/agents/connect`, gateway.agentsUrl];
        const argv = runtime === "deno"
          ? ["run", "-A", "--quiet", script, ...urls, "--name", `two-${runtime}`]
          : ["run", script, ...urls, "--name", `two-${runtime}`];
        const agent = spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, "agent.ts");
        try {
          const [, id] = await agent.waitFor(/INFO +connected id=(\S+)/, RUN_MS);
          await serverHolds(gateway.server, id);
        } finally {
          await agent.kill();
        }
      } finally {
        await gateway.close();
      }
    });

    it("logs each request it tunnels, method and target as sent, and answers it", async () => {
      const upstream = await startEchoUpstream();
      const gateway = await startGateway({ port: 0 });
      const name = `logged-${runtime}`;
      try {
        const script = join(ROOT_DIR, "agent.ts");
        const args = [gateway.agentsUrl, "--name", name, "--upstream", upstream.url];
        const argv = runtime === "deno"
          ? ["run", "-A", "--quiet", script, ...args]
          : ["run", script, ...args];
        const agent = spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, "agent.ts", {
          SWAGGERSOCKET_AGENT_LOG_FORMAT: "json",
        });
        try {
          const [line] = await agent.waitFor(/^{.*"msg":"connected".*}$/, RUN_MS);
          await serverHolds(gateway.server, JSON.parse(line).id);
          const response = await withTimeout(
            fetch(`${gateway.url}/agents/${name}/a//b?x=%41`, { method: "PUT", body: "hi" }),
            RUN_MS,
            "the request through the gateway",
          );
          assert.equal(response.status, 200);
          const echoed = await response.json() as { method: string; target: string };
          assert.equal(echoed.method, "PUT");
          assert.equal(echoed.target, "/a//b?x=%41");
          const [logged] = await agent.waitFor(/^{.*"msg":"request".*}$/, RUN_MS);
          const entry = JSON.parse(logged);
          assert.equal(entry.level, "info");
          assert.equal(entry.method, "PUT");
          assert.equal(entry.path, "/a//b?x=%41");
        } finally {
          await agent.kill();
        }
      } finally {
        await gateway.close();
        await upstream.close();
      }
    });

    it("says why it cannot connect and when it tries next", async () => {
      const holder = createServer();
      await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
      const { port } = holder.address() as { port: number };
      // Nothing listens there once the holder is gone.
      await new Promise<void>((resolve) => holder.close(() => resolve()));
      const { code, stdout } = await agent(
        [`ws://127.0.0.1:${port}/agents/connect`, "--exit-after", "1500"],
        { SWAGGERSOCKET_AGENT_LOG_FORMAT: "json" },
      );
      assert.equal(code, 0, "exit-after ends it");
      const lines = stdout.trim().split("\n").map((line) => JSON.parse(line));
      const failed = lines.filter((line) => line.msg === "cannot connect yet");
      assert.ok(failed.length >= 2, stdout);
      assert.equal(failed[0].level, "warn");
      assert.equal(failed[0].attempt, 1);
      assert.equal(failed[1].attempt, 2);
      assert.equal(typeof failed[0].retryInMs, "number");
      assert.match(failed[0].cause, new RegExp(`127\\.0\\.0\\.1:${port}`));
    });
  });
}

for (const runtime of ["deno", "bun"] as const) {
  describe(`agent.ts stopped with a signal (${runtime})`, OPTIONS, () => {
    it("closes cleanly: the gateway sees code 1000, not a dropped socket", async () => {
      const gateway = await startGateway({ port: 0 });
      const script = join(ROOT_DIR, "agent.ts");
      const argv = runtime === "deno"
        ? ["run", "-A", "--quiet", script, gateway.agentsUrl, "--name", `ctrl-c-${runtime}`]
        : ["run", script, gateway.agentsUrl, "--name", `ctrl-c-${runtime}`];
      const agent = spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, "agent.ts");
      try {
        const [, id] = await agent.waitFor(/INFO +connected id=(\S+)/, RUN_MS);
        await serverHolds(gateway.server, id);
        const closed = gateway.server.connection(id)!.closed;
        agent.signal("SIGINT");
        assert.equal(await withTimeout(agent.exited, RUN_MS, "the agent to exit"), 0);
        const { code, error } = await withTimeout(closed, RUN_MS, "the gateway to see it close");
        assert.equal(code, 1000);
        assert.equal(error, undefined);
      } finally {
        await agent.kill();
        await gateway.close();
      }
    });
  });
}
