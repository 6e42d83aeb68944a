// Interop: tsblk's NBD server with TLS (STARTTLS, X.509) against libnbd 1.14 (nbdinfo, nbdcopy)
// and QEMU 7.2 (qemu-img, qemu-io) on loopback. A throwaway CA, server and client
// certificates come from certtool (test/nbd/certs.ts) in the directory layout both clients
// read (ca-cert.pem, client-cert.pem, client-key.pem).
//
//  - TLS required: nbds:// with the certificates works (nbdinfo says "with TLS"); plain
//    nbd:// is refused (QEMU says TLS negotiation is required); qemu-img/qemu-io with a
//    tls-creds-x509 object read and write; nbdcopy over TLS; a client that trusts another CA
//    refuses the server.
//  - verifyClient: a client with a certificate from the CA gets in, one without is refused.
//
// Under CI=true a missing peer fails; elsewhere the file is skipped with the reason.

import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RamDevice } from '../src/devices/ram.js';
import { makePki, type TestPki } from './nbd/certs.js';
import { MiB, pattern, sha256 } from './nbd/layout.js';
import { assertPeers, checkNbdPeers, describeRun, interopSkip, mustRun, runPeer } from './nbd/peers.js';
import { startTsblkNbd, type RunningNbd } from './nbd/server.js';

const peers = await checkNbdPeers(['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io', 'certtool']);

const SIZE = 16 * MiB;

describe('NBD interop: TLS against tsblk', { skip: interopSkip(peers) }, () => {
  let dir: string;
  let pki: TestPki;
  let otherPki: TestPki;
  let noClientCert: string;
  let dev: RamDevice;
  let vdev: RamDevice;
  let srv: RunningNbd;
  let verifying: RunningNbd;

  before(async () => {
    assertPeers(peers);
    dir = await mkdtemp(join(tmpdir(), 'tsblk-nbd-tls-'));
    pki = await makePki(join(dir, 'pki'));
    otherPki = await makePki(join(dir, 'other-pki'), 'some other CA');
    // A client that trusts our CA but has no certificate of its own.
    noClientCert = join(dir, 'ca-only');
    await mkdir(noClientCert);
    await copyFile(pki.caCert, join(noClientCert, 'ca-cert.pem'));
    dev = new RamDevice({ name: 'nbd-tls', size: SIZE });
    vdev = new RamDevice({ name: 'nbd-tls-verify', size: SIZE });
    srv = await startTsblkNbd([{ name: 'secure', description: 'TLS only', device: dev }], {
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, required: true },
    });
    verifying = await startTsblkNbd([{ name: 'verified', device: vdev }], {
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, required: true, verifyClient: true },
    });
  });

  after(async () => {
    await srv?.close();
    await verifying?.close();
    await dev?.close();
    await vdev?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tlsUri = (s: RunningNbd, name: string, certDir: string) =>
    s.uri(name, { tls: true, query: `tls-certificates=${certDir}` });
  const qemuTls = (certDir: string) => ['--object', `tls-creds-x509,id=tls0,dir=${certDir},endpoint=client`];
  const qemuOpts = (s: RunningNbd, name: string) =>
    `driver=nbd,host=${s.host},port=${s.port},export=${name},tls-creds=tls0`;

  it('nbdinfo over nbds:// with the certificates: TLS negotiated, the export as configured', async () => {
    const r = await mustRun('nbdinfo', ['--json', '--no-content', tlsUri(srv, 'secure', pki.dir)]);
    const info = JSON.parse(r.stdout) as {
      TLS: boolean;
      structured: boolean;
      exports: Record<string, unknown>[];
    };
    assert.equal(info.TLS, true);
    assert.equal(info.structured, true);
    assert.equal(info.exports[0]?.['export-name'], 'secure');
    assert.equal(info.exports[0]?.['export-size'], SIZE);
    const text = await mustRun('nbdinfo', ['--no-content', tlsUri(srv, 'secure', pki.dir)]);
    assert.match(text.stdout, /^protocol: newstyle-fixed with TLS/m);
  });

  it('plain nbd:// is refused: nbdinfo fails, qemu-img says TLS negotiation is required', async () => {
    const plain = await runPeer('nbdinfo', ['--no-content', srv.uri('secure')]);
    assert.notEqual(plain.code, 0, describeRun('nbdinfo without TLS', plain));
    assert.doesNotMatch(plain.stdout, /export-size/);
    // libnbd 1.14 shows NBD_REP_ERR_TLS_REQD only as a failed GO ("Operation not supported")
    assert.match(plain.stderr, /opt_go/, plain.stderr);
    const q = await runPeer('qemu-img', [
      'info',
      '--image-opts',
      `driver=nbd,host=${srv.host},port=${srv.port},export=secure`,
    ]);
    assert.equal(q.code, 1, describeRun('qemu-img info without TLS', q));
    assert.match(q.stderr, /TLS negotiation required/);
  });

  it('qemu-img and qemu-io with tls-creds-x509: size, pattern write and verified read', async () => {
    const info = await mustRun('qemu-img', [
      'info',
      '--output=json',
      ...qemuTls(pki.dir),
      '--image-opts',
      qemuOpts(srv, 'secure'),
    ]);
    assert.equal((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], SIZE);
    const io = await runPeer('qemu-io', [
      ...qemuTls(pki.dir),
      '--image-opts',
      qemuOpts(srv, 'secure'),
      '-c',
      'write -P 0x6c 1M 1M',
      '-c',
      'read -P 0x6c 1M 1M',
      '-c',
      `write -f -P 0x6d ${SIZE - 512} 512`,
    ]);
    assert.equal(io.code, 0, describeRun('qemu-io over TLS', io));
    assert.doesNotMatch(io.stdout, /Pattern verification failed/);
    const b = Buffer.alloc(MiB);
    await dev.read(MiB, b);
    assert.ok(
      b.every((x) => x === 0x6c),
      'the device holds what qemu-io wrote over TLS',
    );
  });

  it('nbdcopy over TLS, both ways: the same sha256', async () => {
    const src = join(dir, 'src.img');
    const image = pattern(SIZE, 99);
    await writeFile(src, image);
    await mustRun('nbdcopy', [src, tlsUri(srv, 'secure', pki.dir)]);
    const got = Buffer.alloc(SIZE);
    await dev.read(0, got);
    assert.equal(sha256(got), sha256(image));
    await mustRun('nbdcopy', [tlsUri(srv, 'secure', pki.dir), join(dir, 'out.img')]);
    assert.equal(sha256(await readFile(join(dir, 'out.img'))), sha256(image));
  });

  it('a client that trusts another CA refuses the server', async () => {
    const r = await runPeer('nbdinfo', ['--no-content', tlsUri(srv, 'secure', otherPki.dir)]);
    assert.notEqual(r.code, 0, describeRun('nbdinfo with the wrong CA', r));
    assert.match(r.stderr, /Error in the certificate verification/, r.stderr);
  });

  it('verifyClient: a client certificate from the CA gets in; a client without one is refused', async () => {
    const good = await mustRun('nbdinfo', ['--json', '--no-content', tlsUri(verifying, 'verified', pki.dir)]);
    assert.equal((JSON.parse(good.stdout) as { TLS: boolean }).TLS, true);
    const bad = await runPeer('nbdinfo', ['--no-content', tlsUri(verifying, 'verified', noClientCert)]);
    assert.notEqual(bad.code, 0, describeRun('nbdinfo without a client certificate', bad));
    const q = await runPeer('qemu-img', [
      'info',
      ...qemuTls(noClientCert),
      '--image-opts',
      qemuOpts(verifying, 'verified'),
    ]);
    assert.notEqual(q.code, 0, describeRun('qemu-img without a client certificate', q));
  });
});
