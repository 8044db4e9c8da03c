/**
 * A `Logger` for tests that keeps every line, and waits for a line by its message and fields.
 */

import type { Logger } from "../mod.ts";
import { withTimeout } from "./_helpers.ts";

const STEP_MS = 20_000;

/** A logged line: its level, message and fields (an error as `error`). */
export type Line = [level: string, message: string, fields: Record<string, unknown>];

/** A logger that keeps each call as a line, and resolves waits for a line as it comes. */
export function recordingLogger(): {
  logger: Logger;
  logged(message: string, where?: (fields: Record<string, unknown>) => boolean): Promise<Line>;
} {
  const lines: Line[] = [];
  const waiters: { match: (line: Line) => boolean; resolve: (line: Line) => void }[] = [];
  const at = (level: string) => (message: unknown, ...rest: unknown[]) => {
    const fields = rest.find((item) =>
      typeof item === "object" && item !== null && !(item instanceof Error)
    ) as Record<string, unknown> | undefined;
    const error = rest.find((item) => item instanceof Error) as Error | undefined;
    const line: Line = [level, String(message), { ...fields, ...(error ? { error } : {}) }];
    lines.push(line);
    for (const waiter of waiters.filter((w) => w.match(line))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  };
  const logger: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
  /** The first line with this message (and fields matching `where`), now or when it comes. */
  function logged(
    message: string,
    where: (fields: Record<string, unknown>) => boolean = () => true,
  ): Promise<Line> {
    const match = ([, m, fields]: Line) => m === message && where(fields);
    const found = lines.find(match);
    if (found) return Promise.resolve(found);
    return withTimeout(
      new Promise<Line>((resolve) => waiters.push({ match, resolve })),
      STEP_MS,
      `a "${message}" line`,
    );
  }
  return { logger, logged };
}
