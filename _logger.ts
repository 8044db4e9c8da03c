/**
 * Where the library's log lines go.
 *
 * @module
 */

/** Where log lines go. `console` fits; the default is quiet. */
export interface Logger {
  /** Chatty detail. */
  debug(...args: unknown[]): void;
  /** Normal events. */
  info(...args: unknown[]): void;
  /** Something unexpected that was handled. */
  warn(...args: unknown[]): void;
  /** Something failed. */
  error(...args: unknown[]): void;
}
