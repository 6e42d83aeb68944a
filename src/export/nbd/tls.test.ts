// loadTlsConfig: a good certificate and key load into a SecureContext; each way a file can be
// wrong gives an error naming that file, with an errno-style code.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTlsConfig } from './tls.js';

let dir: string;
const p = (name: string) => join(dir, name);

function selfSigned(name: string): void {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p(`${name}-key.pem`),
      '-out',
      p(`${name}-cert.pem`),
      '-subj',
      `/CN=${name}`,
      '-days',
      '1',
    ],
    { stdio: 'ignore' },
  );
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsblk-nbd-tls-unit-'));
  selfSigned('server');
  selfSigned('other');
  execFileSync('openssl', [
    'pkey',
    '-in',
    p('server-key.pem'),
    '-aes256',
    '-passout',
    'pass:x',
    '-out',
    p('enc-key.pem'),
  ]);
  await writeFile(p('garbage.pem'), 'hello\n');
  await writeFile(p('broken.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
});
after(() => rm(dir, { recursive: true, force: true }));

test('a certificate with its key (and a CA) loads; required defaults to true', () => {
  const t = loadTlsConfig({ cert: p('server-cert.pem'), key: p('server-key.pem'), ca: p('other-cert.pem') });
  assert.ok(t.secureContext.context, 'a SecureContext');
  assert.equal(t.required, true);
  assert.equal(t.requestCert, false);
  const v = loadTlsConfig({
    cert: p('server-cert.pem'),
    key: p('server-key.pem'),
    ca: p('other-cert.pem'),
    required: false,
    verifyClient: true,
  });
  assert.equal(v.required, false);
  assert.equal(v.requestCert, true);
});

const cases: Array<[string, () => Parameters<typeof loadTlsConfig>[0], string, RegExp]> = [
  [
    'missing certificate',
    () => ({ cert: p('nope.pem'), key: p('server-key.pem') }),
    'ENOENT',
    /^TLS certificate \S+nope\.pem: cannot read: no such file$/,
  ],
  [
    'certificate not PEM',
    () => ({ cert: p('garbage.pem'), key: p('server-key.pem') }),
    'EINVAL',
    /^TLS certificate \S+garbage\.pem: not a PEM file/,
  ],
  [
    'certificate PEM but not X.509',
    () => ({ cert: p('broken.pem'), key: p('server-key.pem') }),
    'EINVAL',
    /^TLS certificate \S+broken\.pem: not a valid X\.509 certificate/,
  ],
  [
    'missing key',
    () => ({ cert: p('server-cert.pem'), key: p('nokey.pem') }),
    'ENOENT',
    /^TLS key \S+nokey\.pem: cannot read: no such file$/,
  ],
  [
    'key is a certificate',
    () => ({ cert: p('server-cert.pem'), key: p('server-cert.pem') }),
    'EINVAL',
    /^TLS key \S+server-cert\.pem: not a valid private key/,
  ],
  [
    'encrypted key',
    () => ({ cert: p('server-cert.pem'), key: p('enc-key.pem') }),
    'EINVAL',
    /^TLS key \S+enc-key\.pem: the private key is encrypted/,
  ],
  [
    'key of another certificate',
    () => ({ cert: p('server-cert.pem'), key: p('other-key.pem') }),
    'EINVAL',
    /^TLS key \S+other-key\.pem: does not belong to the certificate \S+server-cert\.pem \(subject CN=server\)$/,
  ],
  [
    'missing CA',
    () => ({ cert: p('server-cert.pem'), key: p('server-key.pem'), ca: p('noca.pem') }),
    'ENOENT',
    /^TLS CA \S+noca\.pem: cannot read: no such file$/,
  ],
  [
    'CA not a certificate',
    () => ({ cert: p('server-cert.pem'), key: p('server-key.pem'), ca: p('garbage.pem') }),
    'EINVAL',
    /^TLS CA \S+garbage\.pem: not a PEM file/,
  ],
  [
    'verifyClient without a CA',
    () => ({ cert: p('server-cert.pem'), key: p('server-key.pem'), verifyClient: true }),
    'EINVAL',
    /^TLS client verification needs a CA file/,
  ],
  [
    'a directory',
    () => ({ cert: dir, key: p('server-key.pem') }),
    'EISDIR',
    /^TLS certificate \S+: cannot read: is a directory$/,
  ],
];

for (const [name, files, code, message] of cases) {
  test(`error: ${name}`, () => {
    assert.throws(
      () => loadTlsConfig(files()),
      (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
      },
    );
  });
}
