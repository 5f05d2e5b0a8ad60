import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** A throwaway CA (the caller removes `dir`), a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "netfence-tls-"));
  const p = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "1", "-subj", "/CN=netfence-test-ca");
  writeFileSync(p("server.ext"), "subjectAltName=IP:127.0.0.1\n");
  for (const who of ["server", "client"]) {
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p(`${who}.key`), "-out", p(`${who}.csr`), "-subj", `/CN=netfence-${who}`);
    const ext = who === "server" ? ["-extfile", p("server.ext")] : [];
    ssl("x509", "-req", "-in", p(`${who}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p(`${who}.pem`), "-days", "1", ...ext);
  }
  return { dir, ca: p("ca.pem"), serverCert: p("server.pem"), serverKey: p("server.key"), clientCert: p("client.pem"), clientKey: p("client.key") };
}

