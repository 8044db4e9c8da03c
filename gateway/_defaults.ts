/**
 * The gateway's defaults, which agents share: where they dial in.
 *
 * @module
 */

/** Default interface the gateway listens on: loopback only. */
export const DEFAULT_GATEWAY_HOSTNAME = "127.0.0.1";
/** Default gateway port. */
export const DEFAULT_GATEWAY_PORT = 8080;
/** Default path where agents dial in. */
export const DEFAULT_AGENTS_PATH = "/agents/connect";
/** Default milliseconds an agent has to send a response head. */
export const DEFAULT_AGENT_TIMEOUT = 30_000;
/** Default milliseconds a caller that stalls an agent's connection is given (`stalledReaderTimeout`). */
export const STALLED_READER_TIMEOUT = 5_000;
