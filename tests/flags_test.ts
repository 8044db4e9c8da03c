/**
 * The command lines' flag table: strict parsing, precedence, checks and `--help`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type FlagTable, helpText, parseFlags, UsageError } from "../cli/_flags.ts";

const TABLE: FlagTable = {
  help: { type: "boolean", short: "h", description: "Prints this help" },
  port: { type: "string", kind: "port", default: "8080", env: "X_PORT", description: "Port" },
  name: { type: "string", env: "X_NAME", description: "The agent's name" },
  url: { type: "string", kind: "url", env: "X_URL", description: "Where to dial" },
  timeout: { type: "string", kind: "ms", default: "30000", description: "Answer timeout" },
  proxies: { type: "string", kind: "list", env: "X_PROXIES", description: "Trusted proxies" },
  demo: { type: "boolean", env: "X_DEMO", description: "Starts a demo agent" },
};

const env = (values: Record<string, string>) => (name: string) => values[name];

describe("parseFlags", () => {
  it("gives flags, then the environment, then the config file, then the default", () => {
    const config = { name: "from-config", port: 7070, proxies: ["10.0.0.0/8", "::1"] };
    assert.deepEqual(
      parseFlags(TABLE, ["--port", "9090"], { env: env({ X_PORT: "1", X_NAME: "envy" }), config })
        .values,
      {
        help: false,
        port: "9090",
        name: "envy",
        timeout: "30000",
        proxies: ["10.0.0.0/8", "::1"],
        demo: false,
      },
    );
    assert.equal(parseFlags(TABLE, [], { config }).values.port, "7070");
    assert.equal(parseFlags(TABLE, ["--demo"]).values.demo, true);
    assert.equal(parseFlags(TABLE, [], { env: env({ X_DEMO: "yes" }) }).values.demo, true);
    assert.deepEqual(parseFlags(TABLE, ["--proxies=a, b,,c"]).values.proxies, ["a", "b", "c"]);
    assert.deepEqual(parseFlags(TABLE, ["ws://h:1", "--name=x"]).positionals, ["ws://h:1"]);
  });

  it("refuses unknown flags, missing values and a flag taken for a value", () => {
    for (
      const args of [
        ["--nmae", "x"],
        ["--prot", "1"],
        ["--name"],
        ["--name", "--timeout", "2500"],
        ["--demo=yes"],
      ]
    ) {
      assert.throws(() => parseFlags(TABLE, args), UsageError, args.join(" "));
    }
  });

  it("checks URLs, ports, durations and config settings, naming the flag", () => {
    const cases: [string[], RegExp][] = [
      [["--url", "ftp://h/x"], /--url: ftp:\/\/h\/x must start with ws:\/\//],
      [["--url", "127.0.0.1:8080"], /--url/],
      [["--url", "nope"], /--url: nope is not a URL/],
      [["--port", "70000"], /--port: 70000 is not a port/],
      [["--port", "eighty"], /--port/],
      [["--timeout", "0"], /--timeout: 0 is not a positive number/],
      [["--name", ""], /--name: empty/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseFlags(TABLE, args), message, args.join(" "));
    }
    assert.throws(
      () => parseFlags(TABLE, [], { config: { nmae: "x" } }),
      /Unknown setting in the config file: nmae/,
    );
    assert.throws(() => parseFlags(TABLE, [], { env: env({ X_DEMO: "maybe" }) }), /X_DEMO/);
    assert.equal(
      parseFlags(TABLE, ["--url", "wss://gw.example/agents"]).values.url,
      "wss://gw.example/agents",
    );
  });
});

describe("helpText", () => {
  it("describes every flag with its value, default and environment variable", () => {
    const text = helpText("tool [flags]", "Does things.", TABLE);
    assert.match(text, /^usage: tool \[flags\]\n\nDoes things\.\n\n/);
    assert.match(text, / {2}-h, --help +Prints this help\n/);
    assert.match(text, / {2}--port PORT +Port \(default 8080; env X_PORT\)\n/);
    assert.match(text, / {2}--proxies A,B,… +Trusted proxies \(env X_PROXIES\)\n/);
    for (const name of Object.keys(TABLE)) assert.match(text, new RegExp(`--${name}\\b`));
  });
});
