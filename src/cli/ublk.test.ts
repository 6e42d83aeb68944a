// `tsblk ublk` on any host: argument checks, the one-line error of a machine without ublk, and
// the parts of `list` that do not need the kernel. The real device is tested in the guest
// (test/interop-ublk.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { UBLK_CONTROL_PATH } from '../export/ublk/control.js';
import { ublkUnavailable } from '../export/ublk/device.js';
import { runCli } from './test-io.js';
import {
  checkUblkAddOptions,
  plainRamSize,
  recoverableRamPath,
  formatUblkList,
  parseCount,
  processRunning,
  stateName,
  ublkDeviceIds,
  UBLK_MAX_DEV_ID,
  type UblkDeviceEntry,
} from './ublk.js';

const MAIN = new URL('./main.ts', import.meta.url).pathname;

test('ublk --help lists add, recover, list and del', async () => {
  const r = await runCli(['ublk', '--help']);
  assert.equal(r.code, 0);
  for (const cmd of ['add', 'recover', 'list', 'del']) assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\b`));
});

test('usage errors exit 2 with one tsblk: line, before ublk is looked for', async () => {
  const missing = await runCli(['ublk', 'add']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^tsblk: missing required argument 'device'/);
  const cases: [string[], RegExp][] = [
    [
      ['ublk', 'add', 'ram:1M', '--queues', '0'],
      /^tsblk: --queues "0": expected a whole number from 1 to 4096\n$/,
    ],
    [
      ['ublk', 'add', 'ram:1M', '--depth', '4097'],
      /^tsblk: --depth "4097": expected a whole number from 1 to 4096\n$/,
    ],
    [['ublk', 'add', 'ram:1M', '--queues', '2x'], /^tsblk: --queues "2x"/],
    [
      ['ublk', 'add', 'ram:1M', '--id', '1048576'],
      /^tsblk: --id "1048576": expected a whole number from 0 to 1048575\n$/,
    ],
    [['ublk', 'del', 'abc'], /^tsblk: device id "abc": expected a whole number from 0 to 1048575\n$/],
    [['ublk', 'del', '0', '--timeout', '-1'], /^tsblk: --timeout "-1"/],
    [['ublk', 'recover', 'x', 'file:/tmp/a.img'], /^tsblk: device id "x": expected a whole number/],
    [['ublk', 'recover', '0', 'file:/tmp/a.img', '--timeout', 'soon'], /^tsblk: --timeout "soon"/],
    [
      ['ublk', 'add', 'ram:1G,lbs=4096', '--recoverable'],
      /^tsblk: --recoverable takes ram:SIZE without options/,
    ],
  ];
  for (const [argv, msg] of cases) {
    const r = await runCli(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.match(r.stderr, msg, argv.join(' '));
    assert.equal(r.stdout, '');
  }
  const noId = await runCli(['ublk', 'del']);
  assert.equal(noId.code, 2);
  assert.match(noId.stderr, /^tsblk: missing required argument 'id'/);
});

test('parseCount and checkUblkAddOptions: bounds inclusive, defaults 1 queue x 64 tags', () => {
  assert.equal(parseCount('4096', '--depth', 1, 4096), 4096);
  assert.equal(parseCount(' 1 ', '--depth', 1, 4096), 1);
  for (const bad of ['', '0x10', '1.5', '1e3', '-0', '4097'])
    assert.throws(() => parseCount(bad, '--depth', 1, 4096), { name: 'UsageError' }, bad);
  assert.deepEqual(checkUblkAddOptions({}), { queues: 1, depth: 64 });
  assert.deepEqual(checkUblkAddOptions({ recoverable: true }), { queues: 1, depth: 64, recoverable: true });
  assert.deepEqual(checkUblkAddOptions({ queues: '2', depth: '128', id: String(UBLK_MAX_DEV_ID) }), {
    queues: 2,
    depth: 128,
    devId: UBLK_MAX_DEV_ID,
  });
});

test('list on this host: the reason ublk is missing (exit 1), or the devices (exit 0)', async () => {
  const why = ublkUnavailable();
  const r = await runCli(['ublk', 'list']);
  if (why !== undefined) {
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `tsblk: ENOTSUP: ublk is not available here: ${why}\n`);
    if (!existsSync(UBLK_CONTROL_PATH) && !why.startsWith('native addon'))
      assert.match(r.stderr, /modprobe ublk_drv/);
    const add = await runCli(['ublk', 'add', 'ram:1M']);
    assert.equal(add.code, 1);
    assert.equal(add.stderr, r.stderr);
    assert.equal(add.stdout, '');
  } else if (r.code === 0) {
    assert.match(r.stdout, /^(no ublk devices|ID +STATE +QUEUES +DEPTH +SIZE +PID +BLOCK)\n/);
  } else {
    // present but not ours to use (not root)
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^tsblk: EACCES: ublk needs read-write access to \/dev\/ublk-control/);
  }
});

test('without the addon (TSBLK_NO_NATIVE=1), list and add fail with one line, exit 1, no crash', async () => {
  const run = promisify(execFile);
  const env = { ...process.env, TSBLK_NO_NATIVE: '1' };
  const one = async (args: string[]) => {
    try {
      await run(process.execPath, ['--import', 'tsx', MAIN, ...args], { env });
      assert.fail(`${args.join(' ')} succeeded`);
    } catch (err) {
      return err as { code: number; stdout: string; stderr: string };
    }
  };
  const [list, add] = await Promise.all([one(['ublk', 'list', '--json']), one(['ublk', 'add', 'ram:1M'])]);
  for (const r of [list, add]) {
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'tsblk: ENOTSUP: ublk is not available here: native addon not loaded: disabled by TSBLK_NO_NATIVE=1\n',
    );
    assert.equal(r.stdout, '');
  }
});

test('ublkDeviceIds: ublkcN from sysfs and /dev together, sorted; nothing when neither exists', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsblk-ublk-'));
  try {
    const sys = join(dir, 'sys');
    const dev = join(dir, 'dev');
    mkdirSync(sys);
    mkdirSync(dev);
    for (const n of ['ublkc3', 'ublkc0']) mkdirSync(join(sys, n));
    for (const n of ['ublkc3', 'ublkb3', 'ublk-control', 'ublkc12', 'ublkcx'])
      writeFileSync(join(dev, n), '');
    assert.deepEqual(ublkDeviceIds(sys, dev), [0, 3, 12]);
    assert.deepEqual(ublkDeviceIds(join(dir, 'none'), dev), [3, 12]);
    assert.deepEqual(ublkDeviceIds(join(dir, 'none'), join(dir, 'none2')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('processRunning: this process yes; an exited child, 0 and -1 no', () => {
  assert.equal(processRunning(process.pid), true);
  const child = spawnSync('true');
  assert.equal(child.status, 0);
  assert.equal(processRunning(child.pid), false);
  assert.equal(processRunning(0), false);
  assert.equal(processRunning(-1), false);
});

test('stateName and formatUblkList: states by name, unknown size and gone servers shown', () => {
  assert.equal(stateName(0), 'dead');
  assert.equal(stateName(1), 'live');
  assert.equal(stateName(3), 'fail_io');
  assert.equal(stateName(9), 'state 9');
  assert.equal(formatUblkList([]), 'no ublk devices\n');
  const base: UblkDeviceEntry = {
    id: 0,
    state: 'live',
    queues: 2,
    depth: 64,
    maxIoBufBytes: 1 << 20,
    size: 256 * 1024 * 1024,
    pid: 4242,
    serverRunning: true,
    flags: ['USER_COPY'],
    blockDevice: '/dev/ublkb0',
    charDevice: '/dev/ublkc0',
  };
  const text = formatUblkList([
    base,
    {
      ...base,
      id: 7,
      state: 'dead',
      size: null,
      serverRunning: false,
      blockDevice: null,
      charDevice: '/dev/ublkc7',
    },
    { ...base, id: 8, pid: null },
  ]);
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^ID +STATE +QUEUES +DEPTH +SIZE +PID +BLOCK$/);
  assert.match(lines[1]!, /^0 +live +2 +64 +256 MiB +4242 +\/dev\/ublkb0$/);
  assert.match(lines[2]!, /^7 +dead +2 +64 +- +4242 \(gone\) +-$/);
  assert.match(lines[3]!, /^8 +live +2 +64 +256 MiB +- +\/dev\/ublkb0$/);
});

test('recoverable RAM: ram:SIZE only, kept in a file named after the device id', () => {
  assert.equal(plainRamSize('ram:1G'), '1G');
  assert.equal(plainRamSize('ram:512M'), '512M');
  assert.equal(plainRamSize('ram:1G,lbs=4096'), undefined);
  assert.equal(plainRamSize('file:/x'), undefined);
  assert.equal(recoverableRamPath(3, '/dev/shm'), '/dev/shm/tsblk-ublk-3.img');
});
