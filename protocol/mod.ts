/**
 * The swaggersocket wire protocol, without I/O.
 *
 * Everything here is deterministic: functions and small state machines that take
 * bytes, commands and the current time, and return frames to send, events and
 * the next deadline. {@linkcode Session} ties the parts together; the codecs and
 * tables are exported for tests, tools and other implementations. PROTOCOL.md
 * describes the bytes.
 *
 * @example Usage
 * ```ts
 * import { Session } from "@swaggersocket/swaggersocket/protocol";
 *
 * const client = new Session({ role: "client" }, 0);
 * const server = new Session({ role: "server" }, 0);
 * client.hello({ name: "agent-1" });
 * server.handleMessage(client.pollTransmit()!, 0);
 * server.pollEvent(); // { type: "hello", metadata: { name: "agent-1" } }
 * server.accept({ id: "01J0000000000000000000000" });
 * client.handleMessage(server.pollTransmit()!, 0);
 * client.pollEvent(); // { type: "open", id: "01J0000000000000000000000", welcome: … }
 * ```
 *
 * @module
 */

export * from "./close_codes.ts";
export * from "./errors.ts";
export * from "./frame.ts";
export * from "./handshake.ts";
export * from "./heartbeat.ts";
export * from "./payload.ts";
export * from "./rate_limit.ts";
export * from "./session.ts";
export * from "./stream.ts";
