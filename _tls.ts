/**
 * TLS options: the certificate and key a server listens with, and the extra CA
 * certificates a client trusts. Only checks live here; how each runtime takes them is in
 * the runtime adapters (`runtime/`) and the gateway's `node:http` front.
 *
 * @module
 */

/**
 * A certificate and its private key, both PEM text (not file names), to serve `https` and
 * `wss` directly.
 *
 * @example Usage
 * ```ts ignore
 * import { WebSocketServer } from "@swaggersocket/swaggersocket";
 *
 * const server = new WebSocketServer({
 *   port: 8443,
 *   tls: {
 *     cert: await Deno.readTextFile("cert.pem"),
 *     key: await Deno.readTextFile("key.pem"),
 *   },
 * });
 * // clients dial wss://host:8443
 * ```
 */
export interface TlsOptions {
  /**
   * The server's certificate, PEM (`-----BEGIN CERTIFICATE-----`). It may be a chain: the
   * server's certificate first, then the intermediates.
   */
  cert: string;
  /** The certificate's private key, PEM (`-----BEGIN PRIVATE KEY-----` or similar). */
  key: string;
}

const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----/;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/;

/**
 * Checks a server's `tls` option: both fields PEM text, not file names.
 *
 * @param tls The option.
 * @param name What error messages call it (`"tls"`).
 * @returns The option.
 * @throws {TypeError} If `cert` or `key` is missing or not PEM text.
 */
export function checkTls(tls: TlsOptions, name: string): TlsOptions {
  if (typeof tls !== "object" || tls === null) {
    throw new TypeError(`Invalid ${name}: must be { cert, key }, both PEM text`);
  }
  for (const field of ["cert", "key"] as const) {
    const value = tls[field];
    const pattern = field === "cert" ? PEM_CERTIFICATE : PEM_BLOCK;
    if (typeof value !== "string" || !pattern.test(value)) {
      throw new TypeError(
        `Invalid ${name}.${field}: must be PEM text (${
          field === "cert" ? "-----BEGIN CERTIFICATE-----" : "-----BEGIN PRIVATE KEY-----"
        }…), not a file name: read the file first`,
      );
    }
  }
  return tls;
}

/**
 * Checks a client's `caCerts` option: each entry PEM text with at least one certificate.
 *
 * @param caCerts The option.
 * @param name What error messages call it (`"caCerts"`).
 * @returns The option.
 * @throws {TypeError} If it is not an array of PEM certificates.
 */
export function checkCaCerts(caCerts: string[], name: string): string[] {
  if (!Array.isArray(caCerts)) {
    throw new TypeError(`Invalid ${name}: must be an array of PEM certificates`);
  }
  for (const [i, pem] of caCerts.entries()) {
    if (typeof pem !== "string" || !PEM_CERTIFICATE.test(pem)) {
      throw new TypeError(
        `Invalid ${name}[${i}]: must be PEM text (-----BEGIN CERTIFICATE-----…), ` +
          "not a file name: read the file first",
      );
    }
  }
  return caCerts;
}
