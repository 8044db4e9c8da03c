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
/**
 * Milliseconds a caller may take nothing of an answer while the answers waiting for their
 * callers fill the agent connection's receive window (or a cluster link's), before its
 * exchange is cut (`limits.stalledReaderTimeout`): a few callers that stop reading do not
 * stall the agent's other callers for longer.
 */
export const STALLED_READER_TIMEOUT = 5_000;
