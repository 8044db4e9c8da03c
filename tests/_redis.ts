/**
 * A real `redis-server` (Debian's, which `.ci/run` installs when missing) for one test: on a
 * unix socket in a fresh directory, no persistence, stopped by the test. Started with
 * `node:child_process`, so it runs under Deno and Bun.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@redis/client";
import { withTimeout } from "./_helpers.ts";

const REDIS_SERVER = "/usr/bin/redis-server";
const START_MS = 15_000;

/** Why Redis tests skip here, or `false` when `redis-server` is present. */
export const NO_REDIS: string | false = existsSync(REDIS_SERVER)
  ? false
  : `no ${REDIS_SERVER} (apt-get install redis-server)`;

/** A running Redis. */
export interface RedisServer {
  /** Its unix socket. */
  socket: string;
  /** Stops it (SIGKILL: nothing to save) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same socket, empty. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

/**
 * Starts `redis-server` on a unix socket and waits until it accepts connections.
 *
 * @returns The running server.
 */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "ss-redis-"));
  const socket = join(dir, "redis.sock");
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    // Through a shell that kills it once this process's end of its stdin closes: on `stop()`,
    // and also when a test process dies without stopping it (Redis itself never reads stdin).
    const process = spawn("/bin/sh", [
      "-c",
      // (A job started with `&` reads /dev/null unless told otherwise: the watch reads fd 3.)
      'exec 3<&0; "$0" "$@" & redis=$!; (cat <&3 >/dev/null; kill -9 $redis) & wait $redis',
      REDIS_SERVER,
      "--port",
      "0",
      "--unixsocket",
      socket,
      "--unixsocketperm",
      "700",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ], { stdio: ["pipe", "pipe", "pipe"] });
    child = process;
    let output = "";
    const ready = new Promise<void>((resolve, reject) => {
      process.stdout!.on("data", (chunk: Uint8Array) => {
        output += new TextDecoder().decode(chunk);
        if (/ready to accept connections/i.test(output)) resolve();
      });
      process.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    });
    await withTimeout(ready, START_MS, "redis-server start");
  }

  async function stop(): Promise<void> {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.stdin!.end();
    await withTimeout(exited, START_MS, "redis-server stop");
  }

  await start();
  return {
    socket,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `@redis/client` client as the gateway makes one: no offline queue. */
function redisClient(socket: string) {
  return createClient({ socket: { path: socket, tls: false }, disableOfflineQueue: true });
}

/** A connection to a test's Redis. */
export type RedisClient = ReturnType<typeof redisClient>;

/**
 * Connects a client to `redis` (errors while it reconnects are the test's to observe, not
 * to print).
 *
 * @param redis The running server.
 * @returns The connected client; `destroy()` it when done.
 */
export async function connectRedis(redis: RedisServer): Promise<RedisClient> {
  const client = redisClient(redis.socket);
  client.on("error", () => {});
  await client.connect();
  return client;
}
