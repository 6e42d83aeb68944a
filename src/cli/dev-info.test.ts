import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RamDevice } from '../devices/ram.js';
import { ZonedDevice } from '../devices/zoned.js';
import { devInfo, renderDevInfo, type DevInfo } from './dev-info.js';
import { runCli } from './test-io.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-devinfo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function line(out: string, key: string): string {
  const l = out.split('\n').find((x) => x.startsWith(`${key}  `));
  assert.ok(l, `no "${key}" line in:\n${out}`);
  return l.slice(key.length).trim();
}

test('dev info ram: size, block sizes, limits, copy path', async () => {
  const r = await runCli(['dev', 'info', 'ram:1G,name=r0']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(line(r.stdout, 'device'), 'r0 (ram)');
  assert.equal(line(r.stdout, 'size'), '1073741824 (1 GiB)');
  assert.equal(line(r.stdout, 'block size'), 'logical 512, physical 4096');
  assert.equal(line(r.stdout, 'max transfer'), '33554432 (32 MiB)');
  assert.equal(line(r.stdout, 'read-only'), 'no');
  assert.equal(line(r.stdout, 'copy path'), 'offload (device copy)');
  assert.equal(
    line(r.stdout, 'copy limits'),
    'maxBytes 128 MiB, maxHwBytes 128 MiB, maxRanges 256, maxRangeBytes 128 MiB',
  );
  assert.equal(line(r.stdout, 'discard'), 'granularity 512 B, max 1 GiB, reads zeroes after');
  assert.equal(line(r.stdout, 'write zeroes'), 'max 1 GiB, unmaps');
  assert.equal(line(r.stdout, 'zoned'), 'no');
  assert.match(r.stdout, /\ndetails:\n {2}allocatedBytes\s+0\n/);
});

test('dev info says when only emulation is available, and why', async () => {
  const off = await runCli(['dev', 'info', 'ram:64M,lbs=4096,copy=off,ro']);
  assert.equal(off.code, 0);
  assert.equal(line(off.stdout, 'copy path'), 'emulation only (the device has no copy offload)');
  assert.equal(line(off.stdout, 'copy limits'), 'none (no copy offload)');
  assert.equal(line(off.stdout, 'read-only'), 'yes');
  assert.equal(line(off.stdout, 'block size'), 'logical 4096, physical 4096');
  const zero = await runCli(['dev', 'info', 'null:1T,copy-max=0']);
  assert.equal(line(zero.stdout, 'copy path'), 'emulation only (offload disabled: copy.maxBytes is 0)');
  assert.equal(
    line(zero.stdout, 'copy limits'),
    'maxBytes 0 B, maxHwBytes 128 MiB, maxRanges 256, maxRangeBytes 128 MiB',
  );
});

test('dev info --json has the documented shape', async () => {
  const r = await runCli(['dev', 'info', 'ram:1G,copy-max=1M', '--json']);
  assert.equal(r.code, 0);
  const info = JSON.parse(r.stdout) as DevInfo;
  assert.equal(info.kind, 'ram');
  assert.equal(info.size, 2 ** 30);
  assert.equal(info.logicalBlockSize, 512);
  assert.equal(info.physicalBlockSize, 4096);
  assert.equal(info.readOnly, false);
  assert.deepEqual(info.copy, {
    maxBytes: 1 << 20,
    maxHwBytes: 128 << 20,
    maxRanges: 256,
    maxRangeBytes: 128 << 20,
  });
  assert.deepEqual(info.copyPath, { path: 'offload', description: 'offload (device copy)' });
  assert.equal(info.zoned, null);
  assert.equal(info.zones, undefined);
  assert.equal(typeof info.details.allocatedBytes, 'number');
});

test('dev info file: names the copy engine', async (t) => {
  const dir = await tempDir(t);
  const img = join(dir, 'disk.img');
  const r = await runCli(['dev', 'info', `file:${img},size=16M,create`, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as DevInfo;
  assert.equal(info.kind, 'file');
  assert.equal(info.details.path, img);
  const engine = info.details.copyEngine;
  assert.equal(typeof engine, 'string');
  assert.match(String(engine), /^(copy_file_range|emulated \(.+\))$/);
  assert.deepEqual(info.copyPath, {
    path: 'offload',
    description: `offload (device copy) via ${engine}`,
    engine,
  });
  const human = await runCli(['dev', 'info', `file:${img}`]);
  assert.equal(line(human.stdout, 'copy path'), `offload (device copy) via ${engine}`);
  assert.equal(line(human.stdout, 'size'), '16777216 (16 MiB)');
});

test('dev info zoned (from a config): zone limits and a zone summary', async (t) => {
  const dir = await tempDir(t);
  const cfg = join(dir, 'c.json');
  await writeFile(
    cfg,
    JSON.stringify({
      devices: {
        mem: { type: 'ram', size: '64M' },
        zns: {
          type: 'zoned',
          backing: 'mem',
          zoneSize: '4M',
          zoneCapacity: '3M',
          conventionalZones: 2,
          maxOpenZones: 4,
          maxActiveZones: 6,
        },
      },
    }),
  );
  const r = await runCli(['dev', 'info', 'zns', '--config', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(line(r.stdout, 'device'), 'zns (zoned)');
  assert.equal(
    line(r.stdout, 'zoned'),
    '16 zones of 4 MiB (capacity 3 MiB), max open 4, max active 6, max append 32 MiB',
  );
  assert.equal(line(r.stdout, 'zone states'), 'not-wp 2, empty 14');
  assert.match(r.stdout, /first 8 zones:\n {2}start\s+size\s+capacity\s+write pointer\s+type\s+state\n/);
  assert.match(r.stdout, /\n {2}0\s+4 MiB\s+4 MiB\s+-\s+conventional\s+not-wp\n/);
  assert.match(r.stdout, /\n {2}8388608\s+4 MiB\s+3 MiB\s+8388608\s+seq-write-required\s+empty\n/);

  const json = JSON.parse(
    (await runCli(['dev', 'info', 'zns', '--config', cfg, '--json'])).stdout,
  ) as DevInfo;
  assert.deepEqual(json.zones?.counts, { 'not-wp': 2, empty: 14 });
  assert.equal(json.zones?.first.length, 8);
  assert.equal(json.zoned?.nrZones, 16);
});

test('zone summary counts the states zones are in', async () => {
  const zns = new ZonedDevice(new RamDevice({ size: 32 << 20 }), {
    name: 'z',
    zoneSize: 4 << 20,
    maxOpenZones: 2,
  });
  await zns.write(0, new Uint8Array(4096));
  await zns.finishZone(4 << 20);
  await zns.openZone(8 << 20);
  // The last zone; with two zones open already, the least recently written implicitly open
  // zone (zone 0) is closed to make room.
  await zns.write(28 << 20, new Uint8Array(512));
  const info = await devInfo(zns);
  assert.deepEqual(info.zones?.counts, {
    closed: 1,
    full: 1,
    'explicit-open': 1,
    empty: 4,
    'implicit-open': 1,
  });
  assert.deepEqual(info.zones?.first[0], {
    start: 0,
    size: 4 << 20,
    capacity: 4 << 20,
    writePointer: 4096,
    type: 'seq-write-required',
    state: 'closed',
  });
  assert.match(
    renderDevInfo(info),
    /zone states\s+closed 1, full 1, explicit-open 1, empty 4, implicit-open 1\n/,
  );
  await zns.close();
});

test('dev info linear: stacked limits and the table', async (t) => {
  const dir = await tempDir(t);
  const cfg = join(dir, 'c.json');
  await writeFile(
    cfg,
    JSON.stringify({
      devices: {
        a: { type: 'ram', size: '64M' },
        b: { type: 'ram', size: '64M', copy: { maxHwBytes: '1M' } },
        lin: {
          type: 'linear',
          targets: [
            { device: 'a', offset: '16M', length: '32M' },
            { device: 'b', length: '8M' },
          ],
        },
      },
    }),
  );
  const r = await runCli(['dev', 'info', 'lin', '-c', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(line(r.stdout, 'device'), 'lin (linear)');
  assert.equal(line(r.stdout, 'size'), '41943040 (40 MiB)');
  assert.equal(
    line(r.stdout, 'copy limits'),
    'maxBytes 1 MiB, maxHwBytes 1 MiB, maxRanges 256, maxRangeBytes 128 MiB',
  );
  assert.match(line(r.stdout, 'copy path'), /^offload \(device copy\)/);
  assert.match(r.stdout, /\n {2}targets\s+2\n/);
  assert.match(r.stdout, /\n {2}components\s+a,b\n/);
});

test('dev info errors: unknown kind, bad size, unknown name, bad config', async (t) => {
  const kind = await runCli(['dev', 'info', 'tape:1G']);
  assert.equal(kind.code, 1);
  assert.equal(
    kind.stderr,
    'tsblk: device spec "tape:1G": unknown device kind "tape"; expected one of ram, null, file, nvme-tcp\n',
  );
  const size = await runCli(['dev', 'info', 'ram:10X']);
  assert.equal(size.code, 1);
  assert.match(size.stderr, /^tsblk: device spec "ram:10X": invalid size "10X": /);
  const name = await runCli(['dev', 'info', 'disk0']);
  assert.equal(name.code, 1);
  assert.match(name.stderr, /^tsblk: unknown device "disk0"; give an inline spec/);
  const dir = await tempDir(t);
  const cfg = join(dir, 'bad.json');
  await writeFile(
    cfg,
    JSON.stringify({ devices: { lin: { type: 'linear', targets: [{ device: 'disk9', length: '1M' }] } } }),
  );
  const bad = await runCli(['dev', 'info', 'lin', '--config', cfg]);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, `tsblk: ${cfg}: devices.lin.targets[0].device: unknown device "disk9"\n`);
  assert.equal(bad.stdout, '');
});
