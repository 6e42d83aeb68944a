// `tsblk serve` as a process: it prints the nvme-cli lines, serves a host, and on SIGTERM or
// SIGINT flushes its file namespace and exits 0. Config and usage errors exit 1 and 2.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isSuccess } from '../src/nvme/status.js';
import { TcpHostController } from '../src/target/tcp/testing/host.js';
import { runCli } from '../src/cli/test-io.js';

const ROOT = resolve(import.meta.dirname, '..');
const NQN = 'nqn.2026-11.io.tsblk:serve-test';

interface Daemon {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `node --import tsx src/cli/main.ts serve ARGS` and waits for its "stop with" line. */
async function startServe(args: string[]): Promise<Daemon> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  const deadline = Date.now() + 30_000;
  while (!out.includes('stop with')) {
    if (child.exitCode !== null) throw new Error(`tsblk serve exited ${child.exitCode}: ${err}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`tsblk serve did not start: ${out}${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, stdout: () => out, stderr: () => err, exit };
}

function listenerPort(out: string, kind: 'I/O' | 'discovery'): number {
  const m = new RegExp(`listening on 127\\.0\\.0\\.1:(\\d+): ${kind}`).exec(out);
  assert.ok(m, `no ${kind} listener in:\n${out}`);
  return Number(m[1]);
}

describe('tsblk serve with a config (file namespace, non-default port)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsblk-serve-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: flushes the file namespace and exits 0`, async () => {
      const config = join(dir, `site-${signal}.json`);
      await writeFile(
        config,
        JSON.stringify({
          devices: { disk0: { type: 'file', path: `disk-${signal}.img`, size: '16M', create: true } },
          subsystems: { [NQN]: { serial: 'SERVE0001', namespaces: [{ device: 'disk0' }] } },
          ports: [
            { address: '127.0.0.1', port: 0 },
            { address: '127.0.0.1', port: 0, discovery: true },
          ],
        }),
      );
      const d = await startServe([config]);
      try {
        const port = listenerPort(d.stdout(), 'I/O');
        const disc = listenerPort(d.stdout(), 'discovery');
        assert.match(
          d.stdout(),
          new RegExp(`nvme connect -t tcp -a 127\\.0\\.0\\.1 -s ${port} -n ${NQN}\\n`),
        );
        assert.match(d.stdout(), new RegExp(`nvme discover -t tcp -a 127\\.0\\.0\\.1 -s ${disc}\\n`));
        assert.match(d.stdout(), /namespace 1: disk0 \(file, 16 MiB, 512-byte blocks\), copy offload/);

        const c = await TcpHostController.connect({ host: '127.0.0.1', port }, { subnqn: NQN });
        assert.equal(c.idCtrl!.sn.trim(), 'SERVE0001');
        const data = randomBytes(128 * 1024);
        const slba = (16 * 1024 * 1024) / 512 - 256; // the last 128 KiB
        assert.ok(isSuccess((await c.write(1, slba, data)).cqe.status));
        // No Flush from the host: the shutdown must make it durable.
        d.child.kill(signal);
        assert.equal(await d.exit, 0, d.stderr());
        await c.admin.closed;
        assert.match(
          d.stdout(),
          new RegExp(`${signal}: shutting down\\n  flushed disk0\\ntsblk serve: stopped\\n`),
        );
        const file = await readFile(join(dir, `disk-${signal}.img`));
        assert.deepEqual(file.subarray(file.length - data.length), data);
      } finally {
        d.child.kill('SIGKILL');
      }
    });
  }
});

it('tsblk serve with no config serves the default namespace on the --listen address', async () => {
  const d = await startServe(['--listen', '127.0.0.1:0', '--no-discovery', '--no-nbd']);
  try {
    const port = listenerPort(d.stdout(), 'I/O');
    assert.doesNotMatch(d.stdout(), /discover/);
    const nqn = 'nqn.2026-11.io.tsblk:default';
    assert.match(d.stdout(), new RegExp(`nvme connect -t tcp -a 127\\.0\\.0\\.1 -s ${port} -n ${nqn}`));
    const c = await TcpHostController.connect({ host: '127.0.0.1', port }, { subnqn: nqn });
    assert.equal((await c.read(1, 2 ** 21 - 1, 1)).data!.length, 512, 'the last block of 1 GiB');
    await c.close();
    d.child.kill('SIGTERM');
    assert.equal(await d.exit, 0);
    assert.match(d.stdout(), /flushed ram0/);
  } finally {
    d.child.kill('SIGKILL');
  }
});

describe('tsblk serve errors (in-process)', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'tsblk-serve-err-'))));
  after(() => rm(dir, { recursive: true, force: true }));

  it('a config error exits 1 naming the file and the value', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ subsystems: { [NQN]: { namespaces: [{ device: 'disk9' }] } } }));
    const r = await runCli(['serve', file]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `tsblk: ${file}: subsystems["${NQN}"].namespaces[0].device: unknown device "disk9"; the config defines no devices\n`,
    );
  });

  it('a missing config file exits 1', async () => {
    const r = await runCli(['serve', join(dir, 'nope.json')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nope\.json: cannot read config: no such file/);
  });

  it('a bad --listen is a usage error (exit 2)', async () => {
    for (const [arg, msg] of [
      ['localhost:4420', /"localhost" is not an IPv4 or IPv6 address/],
      ['127.0.0.1', /not an address and port/],
      ['::1:4420', /not an address and port/],
      ['127.0.0.1:99999', /port 99999 is not 0\.\.65535/],
    ] as const) {
      const r = await runCli(['serve', '--listen', arg]);
      assert.equal(r.code, 2, arg);
      assert.match(r.stderr, msg);
    }
  });
});
