/**
 * Matching a peer's IP address against a list of addresses and CIDR blocks (the gateway's
 * `trustedProxies`), and finding the client behind trusted proxies.
 *
 * @module
 */

/** An address as a number and its width in bits (32 or 128). */
interface Address {
  value: bigint;
  bits: 32 | 128;
}

/** A block: the address with its host bits cleared, and the prefix length. */
interface Block extends Address {
  prefix: number;
}

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseIPv6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): bigint[] | undefined => {
    if (half === "") return [];
    const out: bigint[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (i === parts.length - 1 && part.includes(".")) {
        // An IPv4 tail (`::ffff:127.0.0.1`) is two groups.
        const v4 = parseIPv4(part);
        if (v4 === undefined) return undefined;
        out.push(v4 >> 16n, v4 & 0xffffn);
      } else if (/^[\da-f]{1,4}$/i.test(part)) {
        out.push(BigInt(`0x${part}`));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  let value = 0n;
  for (const group of [...head, ...Array<bigint>(missing).fill(0n), ...tail]) {
    value = (value << 16n) | group;
  }
  return value;
}

const MAPPED_V4 = 0xffffn << 32n;

/**
 * Parses an IPv4 or IPv6 address (brackets and a zone id allowed). An IPv4-mapped IPv6
 * address (`::ffff:127.0.0.1`, as a dual-stack listener reports IPv4 peers) is its IPv4 one.
 */
function parseAddress(text: string): Address | undefined {
  let clean = text.trim();
  if (clean.startsWith("[") && clean.endsWith("]")) clean = clean.slice(1, -1);
  const zone = clean.indexOf("%");
  if (zone !== -1) clean = clean.slice(0, zone);
  const v4 = parseIPv4(clean);
  if (v4 !== undefined) return { value: v4, bits: 32 };
  const v6 = parseIPv6(clean);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === MAPPED_V4 >> 32n) return { value: v6 & 0xffffffffn, bits: 32 };
  return { value: v6, bits: 128 };
}

function parseBlock(text: string): Block {
  const slash = text.indexOf("/");
  const address = parseAddress(slash === -1 ? text : text.slice(0, slash));
  const prefixText = slash === -1 ? undefined : text.slice(slash + 1);
  if (address === undefined || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) {
    throw new TypeError(`Invalid address or CIDR block: ${JSON.stringify(text)}`);
  }
  const prefix = prefixText === undefined ? address.bits : Number(prefixText);
  if (prefix > address.bits) {
    throw new TypeError(
      `Invalid CIDR block: ${JSON.stringify(text)} (prefix over ${address.bits})`,
    );
  }
  const shift = BigInt(address.bits - prefix);
  return { value: (address.value >> shift) << shift, bits: address.bits, prefix };
}

/**
 * The client a trusted proxy speaks for, from its `X-Forwarded-For`: walking the list from
 * the right (the entry the proxy nearest us appended), the first address that is not itself
 * a trusted proxy, as nginx's `real_ip_recursive on` does. An entry that is not an address
 * ends the walk: the client is then the last trusted address before it, or none.
 *
 * @param forwardedFor The header's value (`null` without one).
 * @param isTrustedProxy The gateway's `trustedProxies` matcher.
 * @returns The client's address, or `undefined` if the header names none.
 */
export function forwardedClient(
  forwardedFor: string | null,
  isTrustedProxy: (address: string) => boolean,
): string | undefined {
  if (forwardedFor === null) return undefined;
  const chain = forwardedFor.split(",");
  let client: string | undefined;
  for (let i = chain.length - 1; i >= 0; i--) {
    const address = chain[i].trim();
    if (parseAddress(address) === undefined) return client;
    client = address.replace(/^\[(.*)\]$/, "$1");
    if (!isTrustedProxy(address)) return client;
  }
  return client;
}

/**
 * A predicate telling whether an address is in any of `entries`.
 *
 * @example Usage
 * ```ts
 * import { addressMatcher } from "./_address_match.ts";
 *
 * const trusted = addressMatcher(["10.0.0.0/8", "::1"]);
 * trusted("10.1.2.3"); // true
 * trusted("::ffff:10.1.2.3"); // true (IPv4-mapped)
 * trusted("192.168.0.1"); // false
 * ```
 *
 * @param entries Addresses (`10.0.0.1`, `::1`) and CIDR blocks (`10.0.0.0/8`, `fd00::/8`).
 * @returns The predicate; an address that does not parse matches nothing.
 * @throws {TypeError} If an entry is not an address or a block.
 */
export function addressMatcher(entries: readonly string[]): (address: string) => boolean {
  const blocks = entries.map(parseBlock);
  // No list (the default): no address to parse on every request.
  if (blocks.length === 0) return () => false;
  return (text) => {
    const address = parseAddress(text);
    if (address === undefined) return false;
    return blocks.some((block) => {
      if (block.bits !== address.bits) return false;
      const shift = BigInt(block.bits - block.prefix);
      return (address.value >> shift) << shift === block.value;
    });
  };
}
