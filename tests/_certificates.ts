/**
 * A fresh private CA and a server certificate for 127.0.0.1 and localhost, made with
 * `/usr/bin/openssl` (the README's two commands) in a temporary directory.
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TlsOptions } from "../mod.ts";

const OPENSSL = "/usr/bin/openssl";

export interface Certificates {
  dir: string;
  /** The CA that signed the server's certificate, PEM, and its file. */
  ca: string;
  caFile: string;
  /** Another CA, which signed nothing here. */
  otherCa: string;
  /** The server's certificate and key, PEM, and their files. */
  tls: TlsOptions;
  certFile: string;
  keyFile: string;
}

/** A fresh CA and a server certificate for 127.0.0.1 and localhost, in a temporary directory. */
export function makeCertificates(): Certificates {
  const dir = mkdtempSync(join(tmpdir(), "swaggersocket-tls-"));
  const file = (name: string): string => join(dir, name);
  const openssl = (args: string[]): void => {
    execFileSync(OPENSSL, args, { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
  for (const name of ["ca", "other-ca"]) {
    openssl([
      "req",
      "-x509",
      ...ec,
      "-subj",
      `/CN=swaggersocket test ${name}`,
      "-keyout",
      file(`${name}.key`),
      "-out",
      file(`${name}.pem`),
    ]);
  }
  openssl([
    "req",
    "-x509",
    ...ec,
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-keyout",
    file("key.pem"),
    "-out",
    file("cert.pem"),
  ]);
  const read = (name: string): string => readFileSync(file(name), "utf8");
  return {
    dir,
    ca: read("ca.pem"),
    caFile: file("ca.pem"),
    otherCa: read("other-ca.pem"),
    tls: { cert: read("cert.pem"), key: read("key.pem") },
    certFile: file("cert.pem"),
    keyFile: file("key.pem"),
  };
}
