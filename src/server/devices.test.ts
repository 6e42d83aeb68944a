import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockError, ErrorCode } from '../block/errors.js';
import { ConfigError } from './config-error.js';
import { loadConfig, parseConfig } from './config.js';
import { DeviceSet, openConfigDevices, openDevice } from './devices.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-devices-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('inline ram and null specs open with their options', async () => {
  const { device: ram, close } = await openDevice('ram:64M,lbs=4096,copy=off,ro,name=r1');
  try {
    assert.equal(ram.kind, 'ram');
    assert.equal(ram.name, 'r1');
    assert.equal(ram.size, 64 << 20);
    assert.equal(ram.limits.logicalBlockSize, 4096);
    assert.equal(ram.limits.readOnly, true);
    assert.equal(ram.limits.copy, undefined);
  } finally {
    await close();
  }
  await assert.rejects(ram.read(0, new Uint8Array(4096)), { code: ErrorCode.EBADF });

  const opened = await openDevice('null:1T');
  assert.equal(opened.device.kind, 'null');
  assert.equal(opened.device.size, 2 ** 40);
  // The last block of a 1 TiB device reads as zeroes.
  const last = new Uint8Array(512).fill(7);
  await opened.device.read(2 ** 40 - 512, last);
  assert.ok(last.every((b) => b === 0));
  await opened.close();
});

test('copy-max sets copy.maxBytes after opening; copy-max-hw lowers maxBytes with it', async () => {
  const a = await openDevice('ram:1G,copy-max=1M');
  assert.equal(a.device.limits.copy?.maxBytes, 1 << 20);
  assert.equal(a.device.limits.copy?.maxHwBytes, 128 << 20);
  await a.close();
  const b = await openDevice('ram:1G,copy-max-hw=2M,copy-max-ranges=4,copy-max-range=64k');
  assert.deepEqual(
    { ...b.device.limits.copy },
    { maxBytes: 2 << 20, maxHwBytes: 2 << 20, maxRanges: 4, maxRangeBytes: 65536 },
  );
  await b.close();
  const off = await openDevice('ram:1G,copy-max=0');
  assert.equal(off.device.limits.copy?.maxBytes, 0);
  await off.close();
});

test('copy-max above the hardware limit names the spec', async () => {
  await assert.rejects(openDevice('ram:1G,copy-max-hw=1M,copy-max=2M'), (err: unknown) => {
    assert.ok(ConfigError.is(err));
    assert.equal(
      err.message,
      'device spec "ram:1G,copy-max-hw=1M,copy-max=2M": copy max bytes: EINVAL: copy.maxBytes 2097152 exceeds the hardware limit 1048576',
    );
    return true;
  });
});

test('file specs create, open and flush sparse images', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'a.img');
  const { device, close } = await openDevice(`file:${path},size=1G,create`);
  assert.equal(device.kind, 'file');
  assert.equal(device.size, 2 ** 30);
  const data = new Uint8Array(512).fill(0xab);
  await device.write(2 ** 30 - 512, data);
  await close();
  assert.equal((await stat(path)).size, 2 ** 30);
  const again = await openDevice(`file:${path},ro`);
  const back = new Uint8Array(512);
  await again.device.read(2 ** 30 - 512, back);
  assert.deepEqual(back, data);
  assert.equal(again.device.limits.readOnly, true);
  await again.close();
});

test('a missing file without create fails with the device error', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(openDevice(`file:${join(dir, 'nope.img')}`), (err: unknown) => {
    assert.ok(BlockError.is(err));
    assert.equal(err.code, ErrorCode.ENODEV);
    return true;
  });
});

test('unknown names and kinds', async () => {
  await assert.rejects(new DeviceSet().open('disk0'), {
    message:
      'unknown device "disk0"; give an inline spec such as ram:1G, null:1T or file:/path/disk.img, or a name with --config FILE',
  });
  const config = parseConfig({ devices: { a: { type: 'ram', size: '1M' } } }, { source: 'c.json' });
  await assert.rejects(new DeviceSet(config).open('b'), {
    message: 'unknown device "b"; devices in c.json: a',
  });
  await assert.rejects(new DeviceSet(parseConfig({})).open('b'), {
    message: 'unknown device "b"; the config defines no devices',
  });
  await assert.rejects(new DeviceSet().open('tape:1G'), {
    message: 'device spec "tape:1G": unknown device kind "tape"; expected one of ram, null, file, nvme-tcp',
  });
});

test('a set opens each name or spec once and closes stacked devices first', async () => {
  const config = parseConfig({
    devices: {
      mem: { type: 'ram', size: '64M' },
      zns: { type: 'zoned', backing: 'mem', zoneSize: '4M', conventionalZones: 1 },
      flaky: { type: 'fault', inner: 'mem', rules: [{ ops: ['read'], offset: '1M', length: '4k' }] },
      lin: {
        type: 'linear',
        targets: [
          { device: 'mem', offset: '32M', length: '16M' },
          { device: 'ram:8M,name=tail', length: '8M' },
        ],
      },
    },
  });
  const set = new DeviceSet(config);
  const all = await set.openAll();
  assert.deepEqual([...all.keys()], ['mem', 'zns', 'flaky', 'lin']);
  const mem = all.get('mem')!;
  assert.equal(await set.open('mem'), mem);
  assert.equal(await set.open('ram:8M,name=tail'), await set.open('ram:8M,name=tail'));
  assert.equal(set.opened.length, 5, 'mem, zns, flaky, the inline ram and lin');

  const zns = all.get('zns')!;
  assert.equal(zns.kind, 'zoned');
  assert.equal(zns.name, 'zns');
  assert.equal(zns.limits.zoned?.nrZones, 16);

  const flaky = all.get('flaky')!;
  assert.equal(flaky.kind, 'fault');
  await assert.rejects(flaky.read(1 << 20, new Uint8Array(4096)), { code: ErrorCode.EIO });

  const lin = all.get('lin')!;
  assert.equal(lin.kind, 'linear');
  assert.equal(lin.size, 24 << 20);
  // Target 0 maps onto mem at 32M: a write through the mapping lands there.
  await lin.write(0, new Uint8Array(512).fill(5));
  const check = new Uint8Array(512);
  await mem.read(32 << 20, check);
  assert.equal(check[0], 5);
  // The last block of the mapping lives on the inline ram device.
  await lin.write(lin.size - 512, new Uint8Array(512).fill(9));
  const tail = new Uint8Array(512);
  await (await set.open('ram:8M,name=tail')).read((8 << 20) - 512, tail);
  assert.equal(tail[511], 9);

  await set.closeAll();
  for (const d of [mem, zns, flaky, lin])
    await assert.rejects(d.read(0, new Uint8Array(512)), { code: ErrorCode.EBADF });
});

test('unnamed ram: and null: specs are a new device at each use; named ones, files and config names are shared', async (t) => {
  const set = new DeviceSet(
    parseConfig({
      devices: {
        a: { type: 'zoned', backing: 'ram:16M', zoneSize: '4M' },
        b: { type: 'zoned', backing: 'ram:16M', zoneSize: '4M' },
      },
    }),
  );
  try {
    const r1 = await set.open('ram:16M');
    const r2 = await set.open('ram:16M');
    assert.notEqual(r1, r2);
    // Distinct storage: a write to one is not seen through the other (last block).
    await r1.write((16 << 20) - 512, new Uint8Array(512).fill(0x5a));
    const back = new Uint8Array(512).fill(1);
    await r2.read((16 << 20) - 512, back);
    assert.ok(back.every((b) => b === 0));
    assert.notEqual(await set.open('null:1G'), await set.open('null:1G'));
    assert.equal(await set.open('ram:16M,name=shared'), await set.open('ram:16M,name=shared'));
    assert.equal(await set.open('null:1G,name=sink'), await set.open('null:1G,name=sink'));
    // Two config devices over the same inline backing text get one backing device each.
    const a = await set.open('a');
    const b = await set.open('b');
    await a.write(0, new Uint8Array(512).fill(7));
    const zb = new Uint8Array(512).fill(1);
    await b.read(0, zb);
    assert.equal(zb[0], 0, 'b does not see what a wrote');
    assert.equal(await set.open('a'), a);
    const dir = await tempDir(t);
    const spec = `file:${join(dir, 'f.img')},size=1M,create`;
    assert.equal(await set.open(spec), await set.open(spec));
    assert.equal(set.opened.length, 11, 'ram×2, null×2, shared, sink, a and b with a backing each, the file');
  } finally {
    await set.closeAll();
  }
  assert.equal(set.opened.length, 0);
});

test('linear targets past the end or misaligned name the target', async () => {
  const past = parseConfig({
    devices: {
      d: { type: 'ram', size: '1M' },
      lin: { type: 'linear', targets: [{ device: 'd', offset: '512k', length: '1M' }] },
    },
  });
  await assert.rejects(openConfigDevices(past), {
    message:
      'devices.lin.targets[0]: offset 524288 + length 1048576 ends at 1572864, past the end of d (1048576 bytes)',
  });
  const odd = parseConfig({
    devices: {
      d: { type: 'ram', size: '1M', logicalBlockSize: 4096 },
      lin: { type: 'linear', targets: [{ device: 'd', offset: 512, length: '4k' }] },
    },
  });
  await assert.rejects(openConfigDevices(odd), {
    message:
      "devices.lin.targets[0]: offset 512 and length 4096 must be multiples of d's 4096-byte logical block size",
  });
});

test('openConfigDevices opens a config file and closes everything', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'c.json');
  await writeFile(
    file,
    JSON.stringify({
      devices: {
        disk: { type: 'file', path: 'disk.img', size: '8M', create: true },
        z: { type: 'zoned', backing: 'disk', zoneSize: '1M' },
      },
    }),
  );
  const { devices, close } = await openConfigDevices(await loadConfig(file));
  assert.equal(devices.get('disk')!.kind, 'file');
  assert.equal(devices.get('z')!.limits.zoned?.nrZones, 8);
  await close();
  assert.equal((await stat(join(dir, 'disk.img'))).size, 8 << 20);
});

test('arguments a device constructor rejects name the spec or config entry (and its file)', async () => {
  await assert.rejects(openDevice('ram:1000'), (err: unknown) => {
    assert.ok(ConfigError.is(err));
    assert.equal(
      err.message,
      'device spec "ram:1000": EINVAL: invalid queue limits: size 1000 must be a non-negative multiple of the logical block size 512',
    );
    return true;
  });
  const config = parseConfig(
    { devices: { z: { type: 'zoned', backing: 'ram:64M', zoneSize: '3M' } } },
    { source: 'site.json' },
  );
  await assert.rejects(openDevice('z', config), (err: unknown) => {
    assert.ok(ConfigError.is(err));
    assert.match(
      err.message,
      /^site\.json: devices\.z: EINVAL: zoned device z: zoneSize 3145728 must be a power of two/,
    );
    return true;
  });
});
