import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './config-error.js';
import { loadConfig, parseConfig } from './config.js';

const SIZE_HINT =
  'expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB';

const EXAMPLE = {
  devices: {
    disk0: { type: 'file', path: 'disk0.img', size: '1G', create: true },
    mem: { type: 'ram', size: '256M', logicalBlockSize: 4096, copy: { maxBytes: '1M', maxRanges: 16 } },
    nothing: { type: 'null', size: 1099511627776, copy: false, readOnly: true },
    zns: {
      type: 'zoned',
      backing: 'mem',
      zoneSize: '16M',
      zoneCapacity: '12M',
      conventionalZones: 1,
      maxOpenZones: 4,
    },
    scratch: { type: 'zoned', backing: 'ram:64M', zoneSize: '4M' },
    flaky: {
      type: 'fault',
      inner: 'disk0',
      rules: [{ ops: ['write', 'copy'], offset: '1M', length: '4k', code: 'EIO', afterCount: 2, times: 1 }],
      delays: { read: { ms: 1, jitterMs: 2 } },
      flakey: { upMs: 1000, downMs: 10 },
    },
    lin: {
      type: 'linear',
      targets: [
        { device: 'disk0', offset: 0, length: '512M' },
        { device: 'mem', offset: '128M', length: '128M' },
      ],
    },
  },
};

test('parses the full example into specs', () => {
  const c = parseConfig(EXAMPLE, { baseDir: '/srv/tsblk' });
  assert.deepEqual([...c.devices.keys()], ['disk0', 'mem', 'nothing', 'zns', 'scratch', 'flaky', 'lin']);
  assert.deepEqual(c.devices.get('disk0'), {
    type: 'file',
    name: 'disk0',
    path: '/srv/tsblk/disk0.img',
    size: 2 ** 30,
    create: true,
  });
  assert.deepEqual(c.devices.get('mem'), {
    type: 'ram',
    name: 'mem',
    size: 256 << 20,
    logicalBlockSize: 4096,
    copy: { maxRanges: 16 },
    copyMaxBytes: 1 << 20,
  });
  assert.deepEqual(c.devices.get('nothing'), {
    type: 'null',
    name: 'nothing',
    size: 2 ** 40,
    copy: false,
    readOnly: true,
  });
  assert.deepEqual(c.devices.get('zns'), {
    type: 'zoned',
    name: 'zns',
    backing: { name: 'mem' },
    zoneSize: 16 << 20,
    zoneCapacity: 12 << 20,
    conventionalZones: 1,
    maxOpenZones: 4,
  });
  assert.deepEqual(c.devices.get('scratch'), {
    type: 'zoned',
    name: 'scratch',
    backing: { spec: { type: 'ram', size: 64 << 20 }, text: 'ram:64M' },
    zoneSize: 4 << 20,
  });
  assert.deepEqual(c.devices.get('flaky'), {
    type: 'fault',
    name: 'flaky',
    inner: { name: 'disk0' },
    rules: [{ ops: ['write', 'copy'], offset: 1 << 20, length: 4096, code: 'EIO', afterCount: 2, times: 1 }],
    options: { delays: { read: { ms: 1, jitterMs: 2 } }, flakey: { upMs: 1000, downMs: 10 } },
  });
  assert.deepEqual(c.devices.get('lin'), {
    type: 'linear',
    name: 'lin',
    targets: [
      { device: { name: 'disk0' }, offset: 0, length: 512 << 20 },
      { device: { name: 'mem' }, offset: 128 << 20, length: 128 << 20 },
    ],
  });
});

test('an empty config and an absent devices section have no devices', () => {
  assert.equal(parseConfig({}).devices.size, 0);
  assert.equal(parseConfig({ devices: {} }).devices.size, 0);
});

test('absolute file paths are kept', () => {
  const c = parseConfig({ devices: { f: { type: 'file', path: '/abs/x.img' } } }, { baseDir: '/elsewhere' });
  assert.equal((c.devices.get('f') as { path: string }).path, '/abs/x.img');
});

function withDevice(name: string, dev: unknown, extra: Record<string, unknown> = {}) {
  return { devices: { [name]: dev, ...extra } };
}

const errors: Array<[string, unknown, string]> = [
  ['top level not an object', [], 'expected an object, got an array'],
  [
    'unknown section',
    { devices: {}, iscsi: {} },
    'iscsi: unknown section; expected devices, subsystems, ports, nbd, ublk',
  ],
  [
    'misspelt section',
    { device: {} },
    'device: unknown section (did you mean "devices"?); expected devices, subsystems, ports, nbd, ublk',
  ],
  ['devices not an object', { devices: [] }, 'devices: expected an object, got an array'],
  [
    'bad device name',
    withDevice('a b', { type: 'ram', size: 1 }),
    'devices["a b"]: invalid device name "a b": use letters, digits, ".", "_" and "-", starting with a letter or digit',
  ],
  [
    'device not an object',
    withDevice('d', 'ram:1G'),
    'devices.d: expected an object, got the string "ram:1G"',
  ],
  [
    'missing type',
    withDevice('d', { size: '1G' }),
    'devices.d.type: is required; one of ram, null, file, nvme-tcp, zoned, fault, linear',
  ],
  [
    'bad type',
    withDevice('d', { type: 'rom', size: '1G' }),
    'devices.d.type: expected one of ram, null, file, nvme-tcp, zoned, fault, linear, got the string "rom" (did you mean "ram"?)',
  ],
  [
    'unknown key',
    withDevice('d', { type: 'ram', sise: '1G' }),
    'devices.d.sise: unknown key (did you mean "size"?); expected one of type, logicalBlockSize, physicalBlockSize, maxTransferBytes, readOnly, copy, size',
  ],
  ['missing size', withDevice('d', { type: 'ram' }), 'devices.d.size: is required'],
  [
    'bad size text',
    withDevice('d', { type: 'ram', size: '1.5G' }),
    `devices.d.size: invalid size "1.5G": ${SIZE_HINT}`,
  ],
  [
    'negative size',
    withDevice('d', { type: 'null', size: -1 }),
    'devices.d.size: invalid size -1: must be a non-negative whole number of bytes',
  ],
  [
    'size of the wrong type',
    withDevice('d', { type: 'ram', size: true }),
    'devices.d.size: expected a size (a number of bytes or a string such as "1G"), got boolean true',
  ],
  [
    'bad logical block size',
    withDevice('d', { type: 'ram', size: '1G', logicalBlockSize: 1024 }),
    'devices.d.logicalBlockSize: logical block size must be 512 or 4096, got 1024',
  ],
  [
    'bad readOnly',
    withDevice('d', { type: 'ram', size: '1G', readOnly: 'yes' }),
    'devices.d.readOnly: expected true or false, got the string "yes"',
  ],
  [
    'unknown copy key',
    withDevice('d', { type: 'ram', size: '1G', copy: { max: 1 } }),
    'devices.d.copy.max: unknown key; expected one of maxBytes, maxHwBytes, maxRanges, maxRangeBytes',
  ],
  [
    'copy maxRanges 0',
    withDevice('d', { type: 'ram', size: '1G', copy: { maxRanges: 0 } }),
    'devices.d.copy.maxRanges: expected a whole number ≥ 1, got number 0',
  ],
  [
    'copy of the wrong type',
    withDevice('d', { type: 'ram', size: '1G', copy: 'off' }),
    'devices.d.copy: expected an object, got the string "off"',
  ],
  ['file without path', withDevice('f', { type: 'file', size: '1G' }), 'devices.f.path: is required'],
  [
    'file path empty',
    withDevice('f', { type: 'file', path: '' }),
    'devices.f.path: expected a non-empty string, got the string ""',
  ],
  [
    'zoned without zoneSize',
    withDevice('z', { type: 'zoned', backing: 'ram:1G' }),
    'devices.z.zoneSize: is required',
  ],
  [
    'zoned without backing',
    withDevice('z', { type: 'zoned', zoneSize: '1M' }),
    'devices.z.backing: is required: the name of a device in this config, or an inline spec such as ram:1G',
  ],
  [
    'zoned unknown backing',
    withDevice('z', { type: 'zoned', backing: 'mem', zoneSize: '1M' }),
    'devices.z.backing: unknown device "mem"',
  ],
  [
    'zoned bad inline backing',
    withDevice('z', { type: 'zoned', backing: 'ram:1.5G', zoneSize: '1M' }),
    `devices.z.backing: invalid size "1.5G": ${SIZE_HINT}`,
  ],
  [
    'zoned backing not a string',
    withDevice('z', { type: 'zoned', backing: 7, zoneSize: '1M' }),
    'devices.z.backing: expected a device name or an inline spec, got number 7',
  ],
  [
    'zoned negative conventionalZones',
    withDevice('z', { type: 'zoned', backing: 'ram:1G', zoneSize: '1M', conventionalZones: -1 }),
    'devices.z.conventionalZones: expected a whole number ≥ 0, got number -1',
  ],
  [
    'fault rule bad op',
    withDevice('f', { type: 'fault', inner: 'ram:1G', rules: [{ ops: ['wirte'], length: 512 }] }),
    'devices.f.rules[0].ops[0]: unknown operation the string "wirte" (did you mean "write"?); expected one of read, write, flush, discard, writeZeroes, copy, zone',
  ],
  [
    'fault rule without ops',
    withDevice('f', { type: 'fault', inner: 'ram:1G', rules: [{ length: 512 }] }),
    'devices.f.rules[0].ops: is required: a list of read, write, flush, discard, writeZeroes, copy, zone',
  ],
  [
    'fault rule without length',
    withDevice('f', { type: 'fault', inner: 'ram:1G', rules: [{ ops: ['read'] }] }),
    'devices.f.rules[0].length: is required',
  ],
  [
    'fault rule bad code',
    withDevice('f', {
      type: 'fault',
      inner: 'ram:1G',
      rules: [{ ops: ['read'], length: 512, code: 'EBUSY' }],
    }),
    /^devices\.f\.rules\[0\]\.code: expected one of EINVAL, EPERM, EIO, .*, got the string "EBUSY"$/ as unknown as string,
  ],
  [
    'fault rule unknown key',
    withDevice('f', { type: 'fault', inner: 'ram:1G', rules: [{ ops: ['read'], length: 512, after: 1 }] }),
    'devices.f.rules[0].after: unknown key; expected one of ops, offset, length, code, afterCount, times',
  ],
  [
    'fault rules not an array',
    withDevice('f', { type: 'fault', inner: 'ram:1G', rules: {} }),
    'devices.f.rules: expected an array, got an object',
  ],
  [
    'fault delay unknown op',
    withDevice('f', { type: 'fault', inner: 'ram:1G', delays: { reads: { ms: 1 } } }),
    'devices.f.delays.reads: unknown key (did you mean "read"?); expected one of read, write, flush, discard, writeZeroes, copy, zone',
  ],
  [
    'fault delay without ms',
    withDevice('f', { type: 'fault', inner: 'ram:1G', delays: { read: {} } }),
    'devices.f.delays.read.ms: is required',
  ],
  [
    'fault flakey zero',
    withDevice('f', { type: 'fault', inner: 'ram:1G', flakey: { upMs: 0, downMs: 0 } }),
    'devices.f.flakey: upMs + downMs must be greater than 0',
  ],
  [
    'linear without targets',
    withDevice('lin', { type: 'linear' }),
    'devices.lin.targets: is required: a list of {"device", "offset", "length"}',
  ],
  [
    'linear with no targets',
    withDevice('lin', { type: 'linear', targets: [] }),
    'devices.lin.targets: must list at least one entry',
  ],
  [
    'linear unknown target device',
    withDevice(
      'lin',
      {
        type: 'linear',
        targets: [
          { device: 'disk0', length: '1M' },
          { device: 'disk9', length: '1M' },
        ],
      },
      { disk0: { type: 'ram', size: '1G' } },
    ),
    'devices.lin.targets[1].device: unknown device "disk9"',
  ],
  [
    'linear target without length',
    withDevice('lin', { type: 'linear', targets: [{ device: 'ram:1G' }] }),
    'devices.lin.targets[0].length: is required',
  ],
  [
    'linear target zero length',
    withDevice('lin', { type: 'linear', targets: [{ device: 'ram:1G', length: 0 }] }),
    'devices.lin.targets[0].length: must be greater than 0',
  ],
  [
    'linear target unknown key',
    withDevice('lin', { type: 'linear', targets: [{ device: 'ram:1G', length: '1M', start: 0 }] }),
    'devices.lin.targets[0].start: unknown key; expected one of device, offset, length',
  ],
  [
    'linear target not an object',
    withDevice('lin', { type: 'linear', targets: ['ram:1G'] }),
    'devices.lin.targets[0]: expected an object, got the string "ram:1G"',
  ],
  [
    'self cycle',
    withDevice('lin', { type: 'linear', targets: [{ device: 'lin', length: '1M' }] }),
    'devices.lin.targets[0].device: cycle: lin → lin',
  ],
  [
    'two-device cycle',
    { devices: { a: { type: 'zoned', backing: 'b', zoneSize: '1M' }, b: { type: 'fault', inner: 'a' } } },
    'devices.b.inner: cycle: a → b → a',
  ],
  [
    'three-device cycle',
    {
      devices: {
        base: { type: 'ram', size: '1G' },
        x: {
          type: 'linear',
          targets: [
            { device: 'base', length: '1M' },
            { device: 'y', length: '1M' },
          ],
        },
        y: { type: 'fault', inner: 'z' },
        z: { type: 'zoned', backing: 'x', zoneSize: '1M' },
      },
    },
    'devices.z.backing: cycle: x → y → z → x',
  ],
];

for (const [what, json, message] of errors) {
  test(`config error: ${what}`, () => {
    assert.throws(
      () => parseConfig(json),
      (err: unknown) => {
        assert.ok(ConfigError.is(err), `not a ConfigError: ${String(err)}`);
        if (typeof message === 'string') assert.equal(err.message, message);
        else assert.match(err.message, message as RegExp);
        return true;
      },
    );
  });
}

test('loadConfig reads a file, resolves paths next to it, and prefixes errors with the file name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-config-'));
  try {
    const good = join(dir, 'good.json');
    await writeFile(good, JSON.stringify({ devices: { f: { type: 'file', path: 'f.img' } } }));
    const c = await loadConfig(good);
    assert.equal(c.source, good);
    assert.equal((c.devices.get('f') as { path: string }).path, join(dir, 'f.img'));

    const bad = join(dir, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({ devices: { lin: { type: 'linear', targets: [{ device: 'disk9', length: 512 }] } } }),
    );
    await assert.rejects(loadConfig(bad), {
      message: `${bad}: devices.lin.targets[0].device: unknown device "disk9"`,
    });

    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{ "devices": ');
    await assert.rejects(loadConfig(broken), (err: unknown) => {
      assert.ok(ConfigError.is(err));
      assert.match(err.message, new RegExp(`^${broken.replace(/[.]/g, '\\.')}: not valid JSON: `));
      return true;
    });

    await assert.rejects(loadConfig(join(dir, 'missing.json')), {
      message: `${join(dir, 'missing.json')}: cannot read config: no such file`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the full example in docs/config.md parses and opens', async () => {
  const { readFile, mkdir } = await import('node:fs/promises');
  const { openConfigDevices } = await import('./devices.js');
  const doc = await readFile(new URL('../../docs/config.md', import.meta.url), 'utf8');
  const block = /## Full example\s+```json\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, 'docs/config.md has a "Full example" JSON block');
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-doc-'));
  try {
    await mkdir(join(dir, 'images'));
    const config = parseConfig(JSON.parse(block[1]!), { baseDir: dir });
    const { devices, close } = await openConfigDevices(config);
    try {
      assert.deepEqual([...devices.keys()], ['disk0', 'mem', 'sink', 'zns', 'scratch', 'flaky', 'lin']);
      assert.equal(devices.get('lin')!.size, 640 << 20);
      assert.equal(devices.get('mem')!.limits.copy?.maxBytes, 1 << 20);
    } finally {
      await close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
