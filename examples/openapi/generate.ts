/**
 * Regenerates the committed OpenAPI documents and the types generated from them:
 * dumps each app's document to JSON (`pets.openapi.json`, `inventory.openapi.json`)
 * and runs `openapi-typescript` on it (`pets.d.ts`, `inventory.d.ts`).
 *
 * Run (from the repository root, after `npm install`):
 *
 *   npm run openapi:generate
 *   node_modules/.bin/deno run -A examples/openapi/generate.ts [out-dir]
 *   node_modules/.bin/bun examples/openapi/generate.ts [out-dir]
 *
 * `out-dir` defaults to this directory; the tests generate into a temporary one and
 * compare, so a change to an app without regenerating fails the suite.
 *
 * @module
 */

import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { inventoryDocument } from "./inventory_app.ts";
import { petsDocument } from "./pets_app.ts";

/** This directory, where the committed files live. */
export const OPENAPI_DIR: string = fileURLToPath(new URL(".", import.meta.url));

const OPENAPI_TYPESCRIPT = fileURLToPath(
  new URL("../../node_modules/.bin/openapi-typescript", import.meta.url),
);

/** The generated files, by app: the document and the types generated from it. */
export const GENERATED: Record<string, () => unknown> = {
  pets: petsDocument,
  inventory: inventoryDocument,
};

/**
 * Writes `<name>.openapi.json` and `<name>.d.ts` for every app into `outDir`.
 *
 * @param outDir Where to write.
 * @returns The paths written.
 */
export async function generate(outDir: string = OPENAPI_DIR): Promise<string[]> {
  const written: string[] = [];
  for (const [name, document] of Object.entries(GENERATED)) {
    const json = join(outDir, `${name}.openapi.json`);
    const types = join(outDir, `${name}.d.ts`);
    await writeFile(json, JSON.stringify(document(), null, 2) + "\n");
    await run(OPENAPI_TYPESCRIPT, [json, "--output", types]);
    written.push(json, types);
  }
  return written;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 60_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${stderr || error.message}`));
      else resolve();
    });
  });
}

if (import.meta.main) {
  for (const path of await generate(process.argv[2] ?? OPENAPI_DIR)) console.log(`wrote ${path}`);
}
