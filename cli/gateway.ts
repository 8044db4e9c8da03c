/**
 * The gateway's command line: `deno run -A gateway.ts …` and `bun gateway.ts …` hand over
 * to {@linkcode runGateway} (see `gateway.ts` for the flags).
 *
 * @module
 */

import { EventType } from "../types.ts";
import { RUNTIME } from "../runtime/mod.ts";
import { startGateway } from "../gateway/_start_gateway.ts";
import { redacted } from "../gateway/_agent_info.ts";
import { credentialLine } from "../gateway/_credentials.ts";
import { startAgent } from "../agent/_start_agent.ts";
import { option } from "./_args.ts";

async function main(): Promise<void> {
  const runtime = RUNTIME.script();
  const { args } = runtime;
  const from = (name: string): string | undefined =>
    option(
      args,
      name,
      runtime.env(`SWAGGERSOCKET_GATEWAY_${name.toUpperCase().replaceAll("-", "_")}`),
    );
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "usage: gateway.ts [--hostname 127.0.0.1] [--port 8080] [--path /agents/connect]\n" +
        "                  [--token SECRET] [--api-token SECRET] [--timeout MS] [--demo]\n" +
        "                  [--exit-after MS] [--cert FILE --key FILE] [--ca FILE]\n" +
        "                  [--credentials FILE] [--trusted-proxies CIDR,...]\n" +
        "                  [--preserve-host] [--no-rewrite]\n" +
        "       gateway.ts --hash-token NAME < token   (prints NAME's credentials line)\n" +
        "env: SWAGGERSOCKET_GATEWAY_{HOSTNAME,PORT,PATH,TOKEN,API_TOKEN,TIMEOUT,CERT,KEY,CA,\n" +
        "                            CREDENTIALS,TRUSTED_PROXIES}\n" +
        "--credentials: per-agent tokens, one 'NAME sha256:HEX' line each; SIGHUP reloads it\n" +
        "--cert/--key: serve https and wss with this PEM certificate (chain) and key\n" +
        "--trusted-proxies: addresses/CIDR blocks whose X-Forwarded-* and Forwarded are kept\n" +
        "--preserve-host: agents get the caller's Host; --no-rewrite: leave Location and\n" +
        "      Set-Cookie paths as the agent sent them\n" +
        "--ca: with --demo, the CA the demo agent and the printed curl lines trust\n" +
        "      (default: the --cert file itself)",
    );
    return;
  }
  if (args.includes("--hash-token")) {
    const name = option(args, "hash-token", undefined);
    if (name === undefined || name.startsWith("--")) {
      throw new TypeError("--hash-token needs the agent's name; the token comes on standard input");
    }
    // One trailing newline (from `echo`, or a file) is not part of the token.
    const token = (await runtime.readStdin()).replace(/\r?\n$/, "");
    console.log(await credentialLine(name, token));
    return;
  }
  const portText = from("port");
  const timeoutText = from("timeout");
  const credentialsFile = from("credentials");
  const certFile = from("cert");
  const keyFile = from("key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new TypeError("--cert and --key go together: give both PEM files, or neither");
  }
  const readPem = async (flag: string, file: string): Promise<string> => {
    try {
      return await runtime.readTextFile(file);
    } catch (error) {
      throw new TypeError(`Cannot read --${flag} ${file}: ${(error as Error).message}`);
    }
  };
  const tls = certFile !== undefined && keyFile !== undefined
    ? { cert: await readPem("cert", certFile), key: await readPem("key", keyFile) }
    : undefined;
  const gateway = await startGateway({
    tls,
    hostname: from("hostname"),
    port: portText === undefined ? undefined : Number(portText),
    path: from("path"),
    token: from("token"),
    credentialsFile,
    apiToken: from("api-token"),
    timeout: timeoutText === undefined ? undefined : Number(timeoutText),
    trustedProxies: from("trusted-proxies")?.split(",").map((entry) => entry.trim())
      .filter((entry) => entry !== ""),
    preserveHost: args.includes("--preserve-host"),
    rewrite: !args.includes("--no-rewrite"),
  });
  if (credentialsFile !== undefined) {
    // Only with a file: otherwise SIGHUP keeps its default (ending the process).
    const reload = (): void => {
      gateway.reloadCredentials().then(
        ({ names, revoked }) =>
          console.log(`credentials reloaded: ${names} names, ${revoked} agents revoked`),
        (error: Error) =>
          console.error(`gateway: credentials not reloaded, the old ones stay: ${error.message}`),
      );
    };
    try {
      runtime.onSignal("SIGHUP", reload);
    } catch (error) {
      // Windows has no SIGHUP (Deno refuses the listener): embedders call reloadCredentials().
      console.error(`gateway: no SIGHUP reload here: ${(error as Error).message}`);
    }
  }
  console.log(`gateway listening on ${gateway.url}`);
  console.log(`agents dial ${gateway.agentsUrl}`);
  (async () => {
    for await (const event of gateway.server.events()) {
      if (event.type === EventType.ConnectionReceived) {
        const metadata = redacted(event.connection?.metadata);
        console.log(`agent connected ${event.connectionId} ${JSON.stringify(metadata)}`);
      } else if (event.type === EventType.ConnectionClosed) {
        console.log(`agent disconnected ${event.connectionId}`);
      }
    }
  })();

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.race([gateway.close(), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    runtime.exit(0);
  };
  runtime.onSignal("SIGINT", stop);
  runtime.onSignal("SIGTERM", stop);
  const exitAfter = Number(option(args, "exit-after", undefined) ?? 0);
  if (exitAfter > 0) setTimeout(stop, exitAfter);

  if (args.includes("--demo")) {
    // Subscribed first: the agent's end of the handshake completes a moment before the
    // gateway's, and the curl lines must work once printed.
    const events = gateway.server.events();
    // Over TLS the demo agent trusts --ca, else the gateway's own certificate file.
    const demoCaFile = tls ? from("ca") ?? certFile : undefined;
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "demo",
      token: from("token"),
      ...(demoCaFile ? { caCerts: [await readPem("ca", demoCaFile)] } : {}),
      // A demo agent that cannot connect (a CA that does not fit) says why instead of hanging.
      logger: { debug() {}, info() {}, warn: console.warn, error: console.error },
    });
    const connection = await agent.ready;
    if (!gateway.server.connection(connection.id)) {
      for await (const event of events) {
        if (event.type === EventType.ConnectionReceived && event.connectionId === connection.id) {
          break;
        }
      }
    }
    await events.return?.();
    // The API token is a secret: the lines name it by its variable, never print it.
    const apiToken = from("api-token");
    const curl = [
      "curl",
      ...(demoCaFile ? [`--cacert ${demoCaFile}`] : []),
      ...(apiToken === undefined
        ? []
        : ['-H "Authorization: Bearer $SWAGGERSOCKET_GATEWAY_API_TOKEN"']),
    ].join(" ");
    const base = gateway.url;
    console.log(`demo agent connected ${connection.id}`);
    console.log("");
    console.log("Try:");
    if (apiToken !== undefined) {
      console.log("  (with SWAGGERSOCKET_GATEWAY_API_TOKEN set to the API token in your shell)");
    }
    for (
      const line of [
        `${curl} ${base}/agents`,
        `${curl} ${base}/agents/demo/hello`,
        `${curl} ${base}/agents/demo/time`,
        `${curl} -X POST --data-binary 'hello, agent' ${base}/agents/demo/echo`,
        `${curl} -N ${base}/agents/demo/events`,
        `${curl} -s '${base}/agents/demo/bytes?n=1048576' | wc -c`,
        `${curl} ${base}/agents/${connection.id}/hello`,
      ]
    ) {
      console.log(`  ${line}`);
    }
    console.log("");
    console.log("Ctrl-C stops.");
  }
}

/** Runs the gateway's command line; a failure to start is one line on stderr, and exit 1. */
export function runGateway(): void {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    console.error(`gateway: ${(error as Error).message}`);
    RUNTIME.script().exit(1);
  });
}

if (import.meta.main) runGateway();
