/**
 * Header lists between `Headers` objects and the wire's `[name, value][]`.
 *
 * Deno's webidl conversion makes `[...headers]` and `new Response(body, { headers: pairs })`
 * cost microseconds per exchange; `forEach` and `append` on a fresh object do the same
 * work several times faster (measured in bench/RESULTS.md). Both keep the standard's
 * order and its separate `set-cookie` entries.
 *
 * @module
 */

import { Mark } from "./_mark.ts";

/** The wire's header list of `headers`: as `[...headers]`, without the iterator. */
export function headerList(headers: Headers): [string, string][] {
  const list: [string, string][] = [];
  headers.forEach((value, name) => {
    list.push([name, value]);
  });
  return list;
}

/** Appends a wire header list, as `RequestInit.headers` / `ResponseInit.headers` would fill it. */
export function appendHeaders(
  headers: Headers,
  list: readonly (readonly [string, string])[],
): void {
  for (let i = 0; i < list.length; i++) headers.append(list[i][0], list[i][1]);
}

const wire = new Mark<[string, string][]>("wireList");

/**
 * Marks a header list as the wire's already: names lower-case and values as a `Headers`
 * holds them (taken from one). `connection.forward()` sends such a list as it is, with no
 * `Headers` made of it and taken apart again; any other `headers` it is given go through one.
 *
 * @param list The list, made by the library from a `Headers`.
 * @returns The same list.
 */
export function wireList(list: [string, string][]): [string, string][] {
  return wire.set(list);
}

/** Whether `headers` is a list marked with {@linkcode wireList}. */
export function isWireList(headers: unknown): headers is [string, string][] {
  return wire.has(headers);
}
