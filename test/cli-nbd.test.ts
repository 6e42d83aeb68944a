// `tsblk nbd` and the NBD side of `tsblk serve` as processes: the printed URI carries the real
// bound port, nbdinfo reads the size through it, SIGTERM flushes and exits 0. Usage errors
// exit 2 with one line, listen errors exit 1 naming the address.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCli } from '../src/cli/test-io.js';
import { TestNbdClient } from '../src/export/nbd/testing/client.js';
import { isSuccess } from '../src/nvme/status.js';
import { TcpHostController } from '../src/target/tcp/testing/host.js';
import { checkNbdPeers, interopSkip, mustRun } from './nbd/peers.js';

const ROOT = resolve(import.meta.dirname, '..');
const MiB = 1024 * 1024;
const peers = await checkNbdPeers(['nbdinfo']);

interface Daemon {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts `tsblk ARGS` and waits for its "stop with" line. */
async function start(args: string[]): Promise<Daemon> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exit = once(child, 'exit').then(([code]) => {
    children.delete(child);
    return code as number | null;
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('stop with')) {
    if (child.exitCode !== null) throw new Error(`tsblk ${args.join(' ')} exited ${child.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`tsblk did not start: ${out}${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, stdout: () => out, stderr: () => err, exit };
}

function firstUri(out: string): { uri: string; port: number } {
  const m = /^nbd:\/\/127\.0\.0\.1:(\d+)\/(\S*)$/m.exec(out.split('\n')[0]!);
  assert.ok(m, `the first line is the URI:\n${out}`);
  return { uri: m[0], port: Number(m[1]) };
}

describe('tsblk nbd', () => {
  it('prints the URI with the bound port and the size; serves under the name and as ""; SIGTERM exits 0', async () => {
    const d = await start([
      'nbd',
      'ram:64M,name=disk',
      '--listen',
      '127.0.0.1:0',
      '--description',
      'scratch',
    ]);
    const { uri, port } = firstUri(d.stdout());
    assert.equal(uri, `nbd://127.0.0.1:${port}/disk`);
    assert.match(d.stdout(), /size 67108864 bytes \(64 MiB\)/);
    assert.match(d.stdout(), new RegExp(`also the default export: nbd://127\\.0\\.0\\.1:${port}\\n`));
    const named = await TestNbdClient.open({ host: '127.0.0.1', port }, 'disk');
    const dflt = await TestNbdClient.open({ host: '127.0.0.1', port }, '');
    assert.equal(named.size, 64 * MiB);
    assert.equal(dflt.size, 64 * MiB);
    const data = randomBytes(4096);
    assert.equal(await named.write(64 * MiB - 4096, data), 0);
    assert.deepEqual((await dflt.read(64 * MiB - 4096, 4096)).data, data, 'one device behind both names');
    await Promise.all([named.disconnect(), dflt.disconnect()]);
    d.child.kill('SIGTERM');
    assert.equal(await d.exit, 0, d.stderr());
    assert.match(d.stdout(), /SIGTERM: shutting down\n {2}flushed disk\n/);
    assert.equal(d.stderr(), '');
  });

  it('nbdinfo --json reads the size through the printed URI', { skip: interopSkip(peers) }, async () => {
    const d = await start(['nbd', 'ram:64M', '--listen', '127.0.0.1:0', '--read-only']);
    try {
      const { uri } = firstUri(d.stdout());
      const r = await mustRun('nbdinfo', ['--json', uri]);
      const info = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>> };
      assert.equal(info.exports[0]!['export-size'], 64 * MiB);
      assert.equal(info.exports[0]!['is_read_only'], true);
      assert.equal(info.exports[0]!['can_multi_conn'], true);
      d.child.kill('SIGINT');
      assert.equal(await d.exit, 0);
    } finally {
      d.child.kill('SIGKILL');
    }
  });

  it('a unix socket: nbd+unix URI', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tsblk-cli-nbd-'));
    try {
      const sock = join(dir, 'n.sock');
      const d = await start(['nbd', 'ram:1M', '--socket', sock, '--name', 'u', '--no-multi-conn']);
      assert.equal(d.stdout().split('\n')[0], `nbd+unix:///u?socket=${sock}`);
      const c = await TestNbdClient.open({ path: sock }, 'u');
      assert.equal(c.size, MiB);
      assert.equal(c.flags & (1 << 8), 0, 'no CAN_MULTI_CONN');
      await c.disconnect();
      d.child.kill('SIGTERM');
      assert.equal(await d.exit, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('usage errors exit 2 with one line', async () => {
    for (const [args, msg] of [
      [
        ['--listen', 'localhost:1'],
        'tsblk: --listen localhost:1: "localhost" is not an IPv4 or IPv6 address; expected ADDRESS:PORT, e.g. 127.0.0.1:4420 or [::1]:4420\n',
      ],
      [
        ['--listen', '127.0.0.1:0', '--socket', '/tmp/x'],
        'tsblk: --listen and --socket contradict each other; give one\n',
      ],
      [['--tls-cert', 'c.pem'], 'tsblk: TLS needs both --tls-cert FILE and --tls-key FILE\n'],
      [
        ['--tls-cert', 'c', '--tls-key', 'k', '--tls', 'maybe'],
        'tsblk: --tls maybe: expected required or optional\n',
      ],
      [
        ['--tls-cert', 'c', '--tls-key', 'k', '--tls-verify-client'],
        'tsblk: --tls-verify-client needs --tls-ca FILE to check client certificates against\n',
      ],
    ] as const) {
      const r = await runCli(['nbd', 'ram:1M', ...args]);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr, msg);
      assert.equal(r.stdout, '');
    }
  });

  it('a port in use and a missing TLS file exit 1 naming the address / file', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await runCli(['nbd', 'ram:1M', '--listen', `127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `tsblk: cannot listen on 127.0.0.1:${port}: address already in use\n`);
    } finally {
      blocker.close();
    }
    const t = await runCli([
      'nbd',
      'ram:1M',
      '--tls-cert',
      '/nonexistent/c.pem',
      '--tls-key',
      '/nonexistent/k.pem',
    ]);
    assert.equal(t.code, 1);
    assert.equal(t.stderr, 'tsblk: TLS certificate /nonexistent/c.pem: cannot read: no such file\n');
  });
});

describe('tsblk serve: NBD beside the target', () => {
  it('the default serve answers on NBD with the same device the NVMe namespace has', async () => {
    const d = await start([
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--no-discovery',
      '--nbd-listen',
      '127.0.0.1:0',
    ]);
    try {
      const out = d.stdout();
      assert.match(out, /NVMe\/TCP target and NBD server running/);
      assert.match(out, /NBD export "ram0" \(default\): ram0 \(ram, 1 GiB\)/);
      const nbdPort = Number(/listening on 127\.0\.0\.1:(\d+): NBD\n/.exec(out)![1]);
      const ioPort = Number(/listening on 127\.0\.0\.1:(\d+): I\/O/.exec(out)![1]);
      assert.match(
        out,
        new RegExp(`\\n  nbd://127\\.0\\.0\\.1:${nbdPort}\\n  nbd://127\\.0\\.0\\.1:${nbdPort}/ram0\\n`),
      );
      const c = await TestNbdClient.open({ host: '127.0.0.1', port: nbdPort }, 'ram0');
      const data = randomBytes(512);
      assert.equal(await c.write(2 ** 30 - 512, data), 0, 'the last block over NBD');
      await c.disconnect();
      const nvme = await TcpHostController.connect(
        { host: '127.0.0.1', port: ioPort },
        { subnqn: 'nqn.2026-11.io.tsblk:default' },
      );
      const r = await nvme.read(1, 2 ** 21 - 1, 1);
      assert.ok(isSuccess(r.cqe.status));
      assert.deepEqual(r.data, data, 'and read back over NVMe/TCP: one store, two protocols');
      await nvme.close();
      d.child.kill('SIGTERM');
      assert.equal(await d.exit, 0, d.stderr());
      assert.match(d.stdout(), /flushed ram0/);
    } finally {
      d.child.kill('SIGKILL');
    }
  });

  it('--no-nbd with --nbd-listen is a usage error', async () => {
    const r = await runCli(['serve', '--no-nbd', '--nbd-listen', '127.0.0.1:0']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'tsblk: --no-nbd and --nbd-listen contradict each other\n');
  });
});
