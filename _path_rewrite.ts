/**
 * Rewriting the paths in `Location` and `Set-Cookie` as a response crosses a proxy that
 * mounts the server under another path, as nginx's `proxy_redirect default` and
 * `proxy_cookie_path` do. The gateway maps `/` to `/agents/{agent}/`; an agent tunnelling
 * to `http://host/base/` maps that origin and `/base/` to `/`.
 *
 * @module
 */

/** One mapping: URLs under `from` (on `origin`, or root-relative) move under `to`. */
export interface PathMap {
  /**
   * The origin absolute URLs must have to be mapped (`http://127.0.0.1:3000`); root-relative
   * ones are mapped whatever it is.
   */
  origin: string;
  /** The path prefix mapped from, ending in `/`. */
  from: string;
  /** The path prefix mapped to, ending in `/`. */
  to: string;
}

const HAS_SCHEME = /^[a-zA-Z][a-zA-Z\d+\-.]*:/;

/** `path` moved from `map.from` to `map.to`, or `undefined` if it is not under `map.from`. */
function movePath(path: string, map: PathMap): string | undefined {
  if (path.startsWith(map.from)) return map.to + path.slice(map.from.length);
  // `/base` (no slash) is the mount point itself.
  if (path === map.from.slice(0, -1) || path.startsWith(`${map.from.slice(0, -1)}?`)) {
    return map.to + path.slice(map.from.length - 1);
  }
  return undefined;
}

/**
 * A `Location` value with its path mapped: root-relative (`/x`) and absolute URLs on
 * `map.origin` under `map.from` move under `map.to` (an absolute one becomes root-relative,
 * so the caller never learns the upstream's address). Relative references (`x/y`, `?q`) and
 * URLs elsewhere are left as they are.
 *
 * @param location The header's value.
 * @param map The mapping.
 * @returns The new value.
 */
export function mapLocation(location: string, map: PathMap): string {
  let path: string;
  if (location.startsWith("/") && !location.startsWith("//")) {
    path = location;
  } else if (HAS_SCHEME.test(location) || location.startsWith("//")) {
    let url: URL;
    try {
      url = new URL(location, map.origin);
    } catch {
      return location;
    }
    if (url.origin !== map.origin) return location;
    // The rest as the upstream wrote it, not as the parser re-encodes it.
    const afterAuthority = location.replace(/^([a-zA-Z][a-zA-Z\d+\-.]*:)?\/\/[^/?#]*/, "");
    path = afterAuthority === "" || !afterAuthority.startsWith("/")
      ? `/${afterAuthority}`
      : afterAuthority;
  } else {
    return location;
  }
  return movePath(path, map) ?? location;
}

/**
 * A `Set-Cookie` value with its `Path` attribute mapped as {@linkcode mapLocation} maps
 * paths (`Path=/` becomes `Path=/agents/{agent}/`). A cookie without `Path` is left alone:
 * its default path is already the request's, under the mount point.
 *
 * @param cookie One `Set-Cookie` value.
 * @param map The mapping.
 * @returns The new value.
 */
export function mapCookiePath(cookie: string, map: PathMap): string {
  const parts = cookie.split(";");
  for (let i = 1; i < parts.length; i++) {
    const match = /^(\s*path\s*=\s*)(.*?)(\s*)$/i.exec(parts[i]);
    if (!match || !match[2].startsWith("/")) continue;
    const moved = movePath(match[2], map);
    if (moved !== undefined) parts[i] = match[1] + moved + match[3];
  }
  return parts.join(";");
}

/**
 * A response header list with `Location` and every `Set-Cookie` path mapped; names are
 * expected in lower case.
 *
 * @param headers The response's `[name, value]` list (changed in place).
 * @param map The mapping.
 */
export function mapResponseListPaths(headers: [string, string][], map: PathMap): void {
  for (const entry of headers) {
    if (entry[0] === "location") entry[1] = mapLocation(entry[1], map);
    else if (entry[0] === "set-cookie") entry[1] = mapCookiePath(entry[1], map);
  }
}
