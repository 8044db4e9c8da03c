/**
 * Reading the command lines' flags.
 *
 * @module
 */

/** Reads `--name value` (or `--name=value`) from `args`, else `fallback` (an env value). */
export function option(
  args: string[],
  name: string,
  fallback: string | undefined,
): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}` && i + 1 < args.length) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return fallback === "" ? undefined : fallback;
}
