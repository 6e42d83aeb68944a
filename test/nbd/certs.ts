// A throwaway PKI for the NBD TLS tests, made with certtool (gnutls-bin) in a temporary
// directory, in the layout both clients read from one directory: libnbd's
// tls-certificates=DIR and QEMU's tls-creds-x509 dir=DIR want ca-cert.pem, client-cert.pem
// and client-key.pem; the server gets server-cert.pem / server-key.pem / ca-cert.pem by path.
// ECDSA P-256 keys: generated in milliseconds, where RSA-3072 takes a noticeable while.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mustRun } from './peers.js';

export interface TestPki {
  /** Everything: CA, server and client certificates and keys (what a client dir needs). */
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
}

async function key(path: string): Promise<void> {
  await mustRun('certtool', ['--generate-privkey', '--key-type=ecdsa', '--no-text', '--outfile', path]);
}

/** Makes a CA, a server certificate for localhost / 127.0.0.1 and a client certificate in `dir`. */
export async function makePki(dir: string, cn = 'tsblk test CA'): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  await key(p('ca-key.pem'));
  await writeFile(p('ca.info'), `cn = "${cn}"\nca\ncert_signing_key\nexpiration_days = 2\n`);
  await mustRun('certtool', [
    '--generate-self-signed',
    '--load-privkey',
    p('ca-key.pem'),
    '--template',
    p('ca.info'),
    '--no-text',
    '--outfile',
    p('ca-cert.pem'),
  ]);
  const issue = async (who: string, template: string) => {
    await key(p(`${who}-key.pem`));
    await writeFile(p(`${who}.info`), template);
    await mustRun('certtool', [
      '--generate-certificate',
      '--load-ca-certificate',
      p('ca-cert.pem'),
      '--load-ca-privkey',
      p('ca-key.pem'),
      '--load-privkey',
      p(`${who}-key.pem`),
      '--template',
      p(`${who}.info`),
      '--no-text',
      '--outfile',
      p(`${who}-cert.pem`),
    ]);
  };
  // Both clients check the name they connected to against the certificate: 127.0.0.1 here.
  await issue(
    'server',
    'organization = "tsblk"\ncn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\n' +
      'tls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n',
  );
  await issue(
    'client',
    'cn = "tsblk test client"\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n',
  );
  return { dir, caCert: p('ca-cert.pem'), serverCert: p('server-cert.pem'), serverKey: p('server-key.pem') };
}
