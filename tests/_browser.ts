/**
 * A real headless Chromium for tests (Debian's `chromium`, which `.ci/run` installs when
 * missing), driven through `puppeteer-core`. Each test launches its own and closes it.
 */

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";

/** Where Debian puts Chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why browser tests skip here, or `false` when Chromium is present. */
export const NO_CHROMIUM: string | false = existsSync(CHROMIUM)
  ? false
  : `no ${CHROMIUM} (apt-get install chromium)`;

/** Where tests keep what they want a person to look at afterwards (screenshots). */
export const ARTEFACTS: string = join(import.meta.dirname ?? ".", "..", "test-artefacts");

/**
 * Launches a headless Chromium; close it with `browser.close()`.
 *
 * @returns The browser.
 */
export function launchBrowser(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Containers run as root, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    timeout: 30_000,
    protocolTimeout: 30_000,
  });
}

/**
 * A path for an artefact file, its folder made.
 *
 * @param name The file's name.
 * @returns Its path under `test-artefacts/`.
 */
export function artefact(name: string): string {
  mkdirSync(ARTEFACTS, { recursive: true });
  return join(ARTEFACTS, name);
}
