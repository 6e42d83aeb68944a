// The NVMe host commands end to end, in-process, against an in-process tsblk target on
// 127.0.0.1 (I/O and discovery listeners on port 0): discover, connect, id-ctrl, id-ns, and
// dev info / copy on nvme-tcp:// devices, with data checked on the target's own devices.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../block/device.js';
import { defaultHostNqn } from '../host/host-nqn.js';
import { parseConfig } from '../server/config.js';
import { Server } from '../server/serve.js';
import { runCli } from './test-io.js';

const MiB = 1024 * 1024;
const NQN = 'nqn.2026-11.io.tsblk:cli-host';
const HOSTNQN = 'nqn.2026-11.io.tsblk:cli-host-test';

/** A TCP port nothing listens on (taken and released again). */
async function closedPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  s.close();
  await once(s, 'close');
  return port;
}

async function read(dev: BlockDevice, offset: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  await dev.read(offset, b);
  return b;
}

interface CopyJson {
  ok: boolean;
  offloaded: number;
  emulated: number;
  ranges: Array<{ path?: string; completed: number }>;
}

describe('tsblk NVMe host commands against a tsblk target', () => {
  let server: Server;
  let io: number;
  let disc: number;
  let url: string;
  let nsA: BlockDevice;
  let nsB: BlockDevice;
  let dir: string;

  before(async () => {
    server = await Server.start({
      config: parseConfig({
        subsystems: {
          [NQN]: {
            serial: 'CLIHOST01',
            model: 'tsblk cli test',
            namespaces: [{ device: 'ram:16M,name=a' }, { device: 'ram:16M,name=b' }],
          },
        },
      }),
      listen: [{ address: '127.0.0.1', port: 0 }],
      discoveryListen: [{ address: '127.0.0.1', port: 0 }],
    });
    io = server.listeners.find((l) => l.kind === 'io')!.port;
    disc = server.listeners.find((l) => l.kind === 'discovery')!.port;
    url = `nvme-tcp://127.0.0.1:${io}/${NQN}`;
    // Named specs are shared within the server's DeviceSet: these are the namespaces' devices.
    nsA = await server.devices.open('ram:16M,name=a');
    nsB = await server.devices.open('ram:16M,name=b');
    dir = await mkdtemp(join(tmpdir(), 'tsblk-nvme-host-'));
  });

  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Every command disconnects what it connected: the target has no controller left. */
  async function assertNoControllers(): Promise<void> {
    for (let i = 0; i < 100 && server.target.controllers.length > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(
      server.target.controllers.map((c) => c.toString()),
      [],
      'controllers left on the target',
    );
  }

  it('discover: one block per record, as nvme discover', async () => {
    const r = await runCli(['discover', `127.0.0.1:${disc}`, '--hostnqn', HOSTNQN]);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      [
        '',
        'Discovery Log Number of Records 1',
        '=====Discovery Log Entry 0======',
        'trtype:  tcp',
        'adrfam:  ipv4',
        'subtype: nvme subsystem',
        'treq:    not specified',
        'portid:  1',
        `trsvcid: ${io}`,
        `subnqn:  ${NQN}`,
        'traddr:  127.0.0.1',
        'eflags:  none',
        'sectype: none',
        '',
      ].join('\n'),
    );
    const j = await runCli(['discover', `127.0.0.1:${disc}`, '--json']);
    assert.equal(j.code, 0);
    const out = JSON.parse(j.stdout) as { address: string; records: Array<Record<string, unknown>> };
    assert.equal(out.address, `127.0.0.1:${disc}`);
    assert.equal(out.records.length, 1);
    assert.equal(out.records[0]!.subnqn, NQN);
    assert.equal(out.records[0]!.trsvcid, String(io));
    assert.equal(out.records[0]!.subtype, 'nvme subsystem');
    await assertNoControllers();
  });

  it('connect: the controller and one line per namespace, then disconnects', async () => {
    const r = await runCli(['connect', `127.0.0.1:${io}`, '--nqn', NQN, '--hostnqn', HOSTNQN, '-i', '2']);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], `connected to ${NQN} at 127.0.0.1:${io} (host NQN ${HOSTNQN})`);
    assert.match(r.stdout, /^ {2}model {9}tsblk cli test$/m);
    assert.match(r.stdout, /^ {2}serial {8}CLIHOST01$/m);
    assert.match(r.stdout, /^ {2}I\/O queues {4}[12] granted \(2 asked\), \d+ entries each$/m);
    assert.match(r.stdout, /^ {2}max transfer {2}\d+ \(\d+ \w+\) \(MDTS \d+\)$/m);
    assert.match(r.stdout, /^ {2}keep-alive {4}KATO 5000 ms, controller granularity \d+ ms$/m);
    assert.match(
      r.stdout,
      /^ {2}copy {10}NVMe Copy; formats offered 0,1,2,3 \(OCFS 0xf\), used 0,1,2,3 \(cross-namespace copy enabled\)$/m,
    );
    assert.match(r.stdout, /^namespaces \(2\)\n {2}nsid {2}size {15}block size {2}copy limits$/m);
    for (const nsid of [1, 2])
      assert.match(
        r.stdout,
        new RegExp(
          `^ {2}${nsid} {5}16777216 \\(16 MiB\\) {2}512 {9}range [^,]+, copy [^,]+, \\d+ ranges \\(MSSRL \\d+, MCL \\d+, MSRC \\d+\\)$`,
          'm',
        ),
      );
    assert.ok(r.stdout.endsWith('disconnected\n'));
    await assertNoControllers();

    const j = await runCli(['connect', `127.0.0.1:${io}`, '--nqn', NQN, '--json']);
    assert.equal(j.code, 0);
    const s = JSON.parse(j.stdout) as {
      subnqn: string;
      hostnqn: string;
      serial: string;
      cntlid: number;
      copy: { supported: boolean; formatsUsable: number[] };
      namespaces: Array<{ nsid: number; size: number; logicalBlockSize: number; copy: unknown }>;
    };
    assert.equal(s.subnqn, NQN);
    assert.equal(s.hostnqn, defaultHostNqn());
    assert.equal(s.serial, 'CLIHOST01');
    assert.ok(s.cntlid >= 1);
    assert.deepEqual(s.copy.formatsUsable, [0, 1, 2, 3]);
    assert.deepEqual(
      s.namespaces.map((n) => [n.nsid, n.size, n.logicalBlockSize, n.copy === null]),
      [
        [1, 16 * MiB, 512, false],
        [2, 16 * MiB, 512, false],
      ],
    );
    await assertNoControllers();
  });

  it('id-ctrl: nvme-cli form and JSON, from a URL, an address with --nqn, or a controller URL', async () => {
    const r = await runCli(['id-ctrl', `${url}/1`]);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.ok(r.stdout.startsWith('NVME Identify Controller:\nvid       : '));
    for (const line of [
      'sn        : CLIHOST01',
      'mn        : tsblk cli test',
      `subnqn    : ${NQN}`,
      'ocfs      : 0xf',
    ])
      assert.ok(r.stdout.includes(`\n${line}\n`), line);
    assert.match(r.stdout, /^oncs {6}: 0x1[0-9a-f]{2}$/m, 'ONCS with the Copy bit (0x100)');
    const byAddress = await runCli(['id-ctrl', `127.0.0.1:${io}`, '--nqn', NQN]);
    assert.equal(byAddress.code, 0);
    const byController = await runCli(['id-ctrl', url]);
    assert.equal(byController.code, 0, byController.stderr);
    // The same controller data apart from CNTLID (each command gets a new controller).
    const noCntlid = (s: string) => s.replace(/^cntlid .*$/m, '');
    assert.equal(noCntlid(byAddress.stdout), noCntlid(r.stdout));
    assert.equal(noCntlid(byController.stdout), noCntlid(r.stdout));

    const j = await runCli(['id-ctrl', `${url}/1`, '--json']);
    assert.equal(j.code, 0);
    const id = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.equal(id.sn, 'CLIHOST01');
    assert.equal(id.subnqn, NQN);
    assert.equal(id.ocfs, 0xf);
    assert.equal(typeof id.tnvmcap, 'string');
    assert.ok(Array.isArray(id.psds));
    await assertNoControllers();
  });

  it('id-ns: nvme-cli form and JSON; an inactive NSID names the active ones', async () => {
    const r = await runCli(['id-ns', `${url}/2`]);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.ok(r.stdout.startsWith('NVME Identify Namespace 2:\nnsze    : 0x8000\nncap    : 0x8000\n'));
    assert.match(r.stdout, /^lbaf {2}0 : ms:0 {3}lbads:9 {2}rp:0 \(in use\)$/m);
    assert.match(r.stdout, /^mssrl {3}: [1-9]\d*$/m);
    const j = await runCli(['id-ns', `127.0.0.1:${io}`, '--nqn', NQN, '--nsid', '1', '--json']);
    assert.equal(j.code, 0);
    const id = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.equal(id.nsid, 1);
    assert.equal(id.nsze, '32768');
    assert.equal(typeof id.mssrl, 'number');
    assert.ok((id.mssrl as number) > 0, 'the target advertises copy limits');
    assert.deepEqual(id.lbafs, [{ ms: 0, ds: 9, rp: 0 }]);

    const bad = await runCli(['id-ns', `${url}/9`]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout, '');
    assert.equal(bad.stderr, `tsblk: ENODEV: ${NQN}@127.0.0.1:${io}: no active namespace 9 (active: 1, 2)\n`);
    const none = await runCli(['id-ns', `127.0.0.1:${io}`, '--nqn', NQN]);
    assert.equal(none.code, 2);
    assert.equal(none.stderr, 'tsblk: id-ns: which namespace? end the URL with /NSID or give --nsid NSID\n');
    await assertNoControllers();
  });

  it('dev info on a remote namespace', async () => {
    const r = await runCli(['dev', 'info', `${url}/1`, '--json']);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const info = JSON.parse(r.stdout) as {
      name: string;
      kind: string;
      size: number;
      copyPath: { path: string };
      details: { nsid: number; subnqn: string };
    };
    assert.equal(info.kind, 'nvme');
    assert.equal(info.name, `${NQN}@127.0.0.1:${io}/n1`);
    assert.equal(info.size, 16 * MiB);
    assert.equal(info.copyPath.path, 'offload');
    assert.equal(info.details.nsid, 1);
    assert.equal(info.details.subnqn, NQN);
    const named = await runCli(['dev', 'info', `${url}/2?name=remote2`]);
    assert.equal(named.code, 0);
    assert.match(named.stdout, /^device {8}remote2 \(nvme\)$/m);
    assert.match(named.stdout, /^copy path {5}offload \(device copy\)$/m);
    assert.match(named.stdout, /^ {2}nsid {18}2$/m);
    await assertNoControllers();
  });

  it('copy within a namespace and across two namespaces of one controller is offloaded', async () => {
    const data = randomBytes(MiB);
    await nsA.write(0, data);
    // Into the last MiB of namespace 1.
    const within = await runCli(['copy', `${url}/1`, '-r', '0:15M:1M', '--json']);
    assert.equal(within.stderr, '');
    assert.equal(within.code, 0);
    const w = JSON.parse(within.stdout) as CopyJson;
    assert.deepEqual([w.ok, w.offloaded, w.emulated, w.ranges[0]!.path], [true, MiB, 0, 'offload']);
    assert.deepEqual(await read(nsA, 15 * MiB, MiB), data);

    // Cross-namespace (Copy format 2 with SNSID): one association serves both devices.
    const cross = await runCli(['copy', `${url}/1`, `${url}/2?name=second`, '-r', '15M:15M:1M', '--json']);
    assert.equal(cross.stderr, '');
    assert.equal(cross.code, 0);
    const c = JSON.parse(cross.stdout) as CopyJson;
    assert.deepEqual([c.offloaded, c.emulated, c.ranges[0]!.path], [MiB, 0, 'offload']);
    assert.deepEqual(await read(nsB, 15 * MiB, MiB), data);
    assert.match(
      (await runCli(['copy', `${url}/2`, '-r', '15M:0:64k'])).stdout,
      /^ {2}offloaded {4}65536 \(64 KiB\)$/m,
    );
    await assertNoControllers();
  });

  it('copy between a remote and a local device, or on a device without copy, is emulated', async () => {
    const noCopy = await runCli(['copy', 'ram:16M,copy=off', '-r', '0:8M:64k', '--json']);
    assert.equal(noCopy.code, 0, noCopy.stderr);
    const n = JSON.parse(noCopy.stdout) as CopyJson;
    assert.deepEqual([n.offloaded, n.emulated, n.ranges[0]!.path], [0, 65536, 'emulate']);

    // A local file → namespace 2, checked on the target's device (its last 512 KiB).
    const data = randomBytes(512 * 1024);
    const img = join(dir, 'local.img');
    await writeFile(img, Buffer.concat([Buffer.alloc(MiB), data]));
    const toRemote = await runCli([
      'copy',
      `file:${img}`,
      `${url}/2`,
      '-r',
      `1M:${16 * MiB - 512 * 1024}:512k`,
      '--json',
    ]);
    assert.equal(toRemote.stderr, '');
    assert.equal(toRemote.code, 0);
    const t = JSON.parse(toRemote.stdout) as CopyJson;
    assert.deepEqual([t.offloaded, t.emulated, t.ranges[0]!.path], [0, 512 * 1024, 'emulate']);
    assert.deepEqual(await read(nsB, 16 * MiB - 512 * 1024, 512 * 1024), data);

    // Namespace 2 → a local file.
    const back = join(dir, 'back.img');
    const fromRemote = await runCli([
      'copy',
      `${url}/2`,
      `file:${back},size=1M,create`,
      '-r',
      `${16 * MiB - 512 * 1024}:0:512k`,
    ]);
    assert.equal(fromRemote.code, 0, fromRemote.stderr);
    assert.match(fromRemote.stdout, /^ {2}emulated {5}524288 \(512 KiB\)$/m);
    const fh = await open(back, 'r');
    const got = Buffer.alloc(512 * 1024);
    await fh.read(got, 0, got.length, 0);
    await fh.close();
    assert.deepEqual(got, data);

    // A remote namespace and a local RAM disk never copy together.
    const toRam = await runCli(['copy', `${url}/1`, 'ram:16M', '-r', '0:0:1M', '--json']);
    assert.equal(toRam.code, 0, toRam.stderr);
    assert.equal((JSON.parse(toRam.stdout) as CopyJson).emulated, MiB);
    await assertNoControllers();
  });

  it('nvme-tcp config devices share one association and offload across namespaces', async () => {
    const config = join(dir, 'remote.json');
    const dev = (nsid: number) => ({ type: 'nvme-tcp', address: `127.0.0.1:${io}`, subnqn: NQN, nsid });
    await writeFile(config, JSON.stringify({ devices: { r1: dev(1), r2: dev(2) } }));
    const r = await runCli(['copy', 'r1', 'r2', '--config', config, '-r', '0:4M:128k', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as CopyJson).offloaded, 128 * 1024);
    assert.deepEqual(await read(nsB, 4 * MiB, 128 * 1024), await read(nsA, 0, 128 * 1024));
    const id = await runCli(['id-ctrl', 'r2', '--config', config, '--json']);
    assert.equal(id.code, 0, id.stderr);
    assert.equal((JSON.parse(id.stdout) as { sn: string }).sn, 'CLIHOST01');
    const wrongKind = await runCli(['id-ns', 'ram:1M']);
    assert.equal(wrongKind.code, 2);
    assert.match(
      wrongKind.stderr,
      /^tsblk: id-ns: "ram:1M" is a ram device, not an NVMe\/TCP controller; give /,
    );
    await assertNoControllers();
  });

  it('conflicting association options on two specs are an error naming both', async () => {
    const r = await runCli(['copy', `${url}/1?hdgst`, `${url}/2?hdgst=off`, '-r', '0:0:4k']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `tsblk: device spec "${url}/2?hdgst=off": header digest (hdgst) false conflicts with device spec "${url}/1?hdgst", ` +
        `which opened the association to ${NQN} at 127.0.0.1:${io} (host NQN ${defaultHostNqn()}) with true; ` +
        'namespaces of one controller share one association, so give the same options (or leave them out)\n',
    );
    await assertNoControllers();
  });

  it('a bad address, an unknown NQN and a missing --nqn: one line on stderr and the exit code', async () => {
    const port = await closedPort();
    const refused = await runCli(['connect', `127.0.0.1:${port}`, '--nqn', NQN, '--hostnqn', HOSTNQN]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.equal(
      refused.stderr,
      `tsblk: cannot connect to ${NQN} at 127.0.0.1:${port} (host NQN ${HOSTNQN}): connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
    const unknown = await runCli([
      'dev',
      'info',
      `nvme-tcp://127.0.0.1:${io}/nqn.2026-11.io.tsblk:nope/1?hostnqn=${HOSTNQN}`,
    ]);
    assert.equal(unknown.code, 1);
    assert.equal(
      unknown.stderr,
      `tsblk: cannot connect to nqn.2026-11.io.tsblk:nope at 127.0.0.1:${io} (host NQN ${HOSTNQN}): ` +
        'Connect (queue 0) refused: 0x182 CONNECT_INVALID_PARAM DNR (invalid subnqn in the Connect data)\n',
    );
    const disco = await runCli(['discover', `127.0.0.1:${port}`, '-q', HOSTNQN]);
    assert.equal(disco.code, 1);
    assert.equal(
      disco.stderr,
      `tsblk: cannot discover at 127.0.0.1:${port} (host NQN ${HOSTNQN}): connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
    const copy = await runCli(['copy', `nvme-tcp://127.0.0.1:${port}/${NQN}/1`, '-r', '0:0:4k']);
    assert.equal(copy.code, 1);
    assert.match(copy.stderr, /^tsblk: cannot connect to .* connect ECONNREFUSED .*\n$/);
    assert.doesNotMatch(copy.stderr, /\n {4}at /, 'no stack trace');
    const usage = await runCli(['connect', `127.0.0.1:${io}`]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^tsblk: connect: which subsystem\? give --nqn SUBNQN with an address/);
    const badUrl = await runCli(['dev', 'info', `nvme-tcp://127.0.0.1:${io}/${NQN}/0`]);
    assert.equal(badUrl.code, 1);
    assert.equal(
      badUrl.stderr,
      `tsblk: device spec "nvme-tcp://127.0.0.1:${io}/${NQN}/0": invalid namespace ID "0": expected 1..4294967294\n`,
    );
    await assertNoControllers();
  });
});
