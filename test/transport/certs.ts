// Certificates for the mTLS tests, made by the openssl CLI in a temp dir: CAs
// (ECDSA P-256) and sidecar certificates signed by them, usable as server and
// client, with the names a test asks for (the address SANs, and the URI SAN or
// CN that binds a node id, see src/transport/peer-identity.ts).
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { MtlsFiles } from "../../src/transport/tls.js";

export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const openssl = (dir: string, ...args: string[]): void => {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
};

/** A CA and its key in `dir` (`name`.crt, `name`.key). */
export function makeCa(dir: string, name: string): void {
  openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name}`);
}

let serial = 0;

/**
 * A certificate signed by `ca`, for server and client use. `san` is its
 * subjectAltName (default: 127.0.0.1 and localhost, plus `URI:pgraft://c1/node/<node>`
 * when `node` is given); `cn` its subject CN (default: `name`).
 */
export function makeCert(dir: string, ca: string, name: string, o: { node?: number; san?: string; cn?: string } = {}): MtlsFiles {
  const san = o.san ?? `IP:127.0.0.1,DNS:localhost${o.node === undefined ? "" : `,URI:pgraft://c1/node/${o.node}`}`;
  writeFileSync(
    join(dir, `${name}.ext`),
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
  );
  openssl(dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${o.cn ?? name}`);
  const sn = String(Date.now() * 100 + (serial++ % 100));
  openssl(dir, "x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-set_serial", sn, "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`);
  return { caFile: join(dir, `${ca}.crt`), certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}
