// TLS for the NBD server: reads the PEM files a user names (certificate, private key, and the
// CA that client certificates must chain to) into one tls.SecureContext that every STARTTLS
// of the server reuses.
//
// Each file is checked on its own before the context is built, so an error names the file
// and what is wrong with it (missing, unreadable, not PEM, an encrypted key, a key that does
// not belong to the certificate) instead of OpenSSL's "DECODER routines::unsupported".
// Errors carry an errno-style `code` (ENOENT, EACCES, EINVAL): the CLI prints them as one
// line without a stack.
//
// `required` (default true): once a user configures certificates they want the data
// encrypted, so a client must STARTTLS before anything but ABORT (the spec's FORCEDTLS
// mode); `required: false` is the spec's SELECTIVETLS-free "optional" mode (plain and TLS
// clients both served). `verifyClient` asks every client for a certificate and refuses one
// that does not chain to `ca`, which it therefore needs.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';

/** Where the PEM files are and how TLS is offered. */
export interface NbdTlsFiles {
  /** Server certificate (PEM; may carry the intermediate chain after it). */
  readonly cert: string;
  /** The certificate's private key (PEM, not encrypted). */
  readonly key: string;
  /** CA certificate(s) client certificates are checked against (PEM). */
  readonly ca?: string;
  /** Refuse clients that do not STARTTLS (default true). */
  readonly required?: boolean;
  /** Ask for a client certificate and refuse clients without a valid one (needs `ca`). */
  readonly verifyClient?: boolean;
}

/** What the handshake needs (HandshakeContext.tls). */
export interface NbdTlsConfig {
  readonly secureContext: SecureContext;
  readonly required: boolean;
  readonly requestCert: boolean;
}

type TlsFileError = Error & { code: string; path: string };

function fileError(code: string, path: string, message: string): TlsFileError {
  return Object.assign(new Error(message), { code, path });
}

function readPem(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'EIO';
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message;
    throw fileError(code, path, `TLS ${what} ${path}: cannot read: ${why}`);
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text))
    throw fileError('EINVAL', path, `TLS ${what} ${path}: not a PEM file (no "-----BEGIN ...-----" line)`);
  return text;
}

function parseCert(pem: string, path: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw fileError(
      'EINVAL',
      path,
      `TLS ${what} ${path}: not a valid X.509 certificate (${(err as Error).message})`,
    );
  }
}

function parseKey(pem: string, path: string): KeyObject {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem))
    throw fileError(
      'EINVAL',
      path,
      `TLS key ${path}: the private key is encrypted; give an unencrypted key (e.g. openssl pkey -in ${path} -out plain.pem)`,
    );
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw fileError('EINVAL', path, `TLS key ${path}: not a valid private key (${(err as Error).message})`);
  }
}

/** Reads and checks the files; throws an error naming the file at fault. */
export function loadTlsConfig(files: NbdTlsFiles): NbdTlsConfig {
  const verifyClient = files.verifyClient ?? false;
  if (verifyClient && files.ca === undefined)
    throw Object.assign(
      new Error(
        'TLS client verification needs a CA file to check client certificates against (tls ca / --tls-ca)',
      ),
      { code: 'EINVAL' },
    );
  const certPem = readPem(files.cert, 'certificate');
  const cert = parseCert(certPem, files.cert, 'certificate');
  const keyPem = readPem(files.key, 'key');
  const key = parseKey(keyPem, files.key);
  if (!cert.checkPrivateKey(key))
    throw fileError(
      'EINVAL',
      files.key,
      `TLS key ${files.key}: does not belong to the certificate ${files.cert} (subject ${cert.subject.replace(/\n/g, ', ')})`,
    );
  let caPem: string | undefined;
  if (files.ca !== undefined) {
    caPem = readPem(files.ca, 'CA');
    parseCert(caPem, files.ca, 'CA');
  }
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext({
      cert: certPem,
      key: keyPem,
      ...(caPem === undefined ? {} : { ca: caPem }),
    });
  } catch (err) {
    throw Object.assign(new Error(`TLS ${files.cert} / ${files.key}: ${(err as Error).message}`), {
      code: 'EINVAL',
    });
  }
  return { secureContext, required: files.required ?? true, requestCert: verifyClient };
}
