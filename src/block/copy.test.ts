import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { issueCopy, type CopyProgress } from './copy.js';
import type { BlockDevice, CopyPathBytes, CopyRange, DeviceCopyOptions } from './device.js';
import { BlockError, CopyError, ErrorCode } from './errors.js';
import { setCopyMaxBytes } from './limits.js';
import { readFully, writeFully } from './io.js';
import { RamDevice } from '../devices/ram.js';
import { NullDevice } from '../devices/null.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function filled(size: number, opts: Partial<ConstructorParameters<typeof RamDevice>[0]> = {}) {
  const dev = new RamDevice({ size, ...opts });
  const data = randomBytes(size);
  await writeFully(dev, 0, data);
  return { dev, data };
}

async function contents(dev: BlockDevice): Promise<Buffer> {
  const b = Buffer.alloc(dev.size);
  await readFully(dev, 0, b);
  return b;
}

/** The reference: every source read from the old image before any destination is written. */
function applyCopies(srcImage: Buffer, dstImage: Buffer, ranges: readonly CopyRange[]): Buffer {
  const out = Buffer.from(dstImage);
  const reads = ranges.map((r) => Buffer.from(srcImage.subarray(r.src, r.src + r.len)));
  ranges.forEach((r, i) => reads[i]!.copy(out, r.dst));
  return out;
}

async function expectError(p: Promise<unknown>, code: string, re?: RegExp): Promise<BlockError> {
  try {
    await p;
  } catch (err) {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('issueCopy validation (nothing is touched on a bad request)', () => {
  test('each rule fails with its exact error and leaves the destination as it was', async () => {
    const { dev, data } = await filled(64 * KiB);
    const cases: Array<[string, CopyRange[], string, RegExp, object?]> = [
      ['no ranges', [], 'EINVAL', /no ranges/],
      ['zero-length range', [{ src: 0, dst: 8192, len: 0 }], 'EINVAL', /range 0 .*zero-length/],
      ['misaligned src', [{ src: 100, dst: 8192, len: 512 }], 'EINVAL', /multiples of 512/],
      ['misaligned dst', [{ src: 0, dst: 8193, len: 512 }], 'EINVAL', /multiples of 512/],
      ['misaligned len', [{ src: 0, dst: 8192, len: 700 }], 'EINVAL', /multiples of 512/],
      ['negative', [{ src: -512, dst: 8192, len: 512 }], 'EINVAL', /non-negative integers/],
      ['fractional', [{ src: 0.5, dst: 8192, len: 512 }], 'EINVAL', /non-negative integers/],
      [
        'source past the end',
        [{ src: 63 * KiB, dst: 0, len: 2 * KiB }],
        'ERANGE',
        /source ends at 66560, past the end/,
      ],
      [
        'destination past the end',
        [{ src: 0, dst: 63 * KiB, len: 2 * KiB }],
        'ERANGE',
        /destination ends at 66560/,
      ],
      [
        'overlapping destinations',
        [
          { src: 0, dst: 8192, len: 4096 },
          { src: 16384, dst: 10240, len: 4096 },
        ],
        'EINVAL',
        /destination ranges 0 and 1 overlap/,
      ],
      [
        'too many ranges',
        Array.from({ length: 5 }, (_, i) => ({ src: i * 512, dst: 32768 + i * 512, len: 512 })),
        'E2BIG',
        /5 ranges exceed the limit of 4/,
        { maxRanges: 4 },
      ],
      [
        'total over the per-call limit',
        [{ src: 0, dst: 32768, len: 8192 }],
        'E2BIG',
        /8192 bytes exceed/,
        { maxTotalBytes: 4096 },
      ],
    ];
    for (const [name, ranges, code, re, opts] of cases) {
      await expectError(issueCopy(dev, dev, ranges, opts), code, re).catch((e) =>
        assert.fail(`${name}: ${e}`),
      );
      assert.deepEqual(await contents(dev), data, `${name} touched the device`);
    }
  });

  test('the default range limit is 4096 and the default byte limit 128 MiB', async () => {
    const dev = new RamDevice({ size: 1024 * MiB });
    const many = Array.from({ length: 4097 }, (_, i) => ({ src: i * 512, dst: 4 * MiB + i * 512, len: 512 }));
    await expectError(issueCopy(dev, dev, many), 'E2BIG', /4097 ranges exceed the limit of 4096/);
    await issueCopy(dev, dev, many.slice(0, 4096));
    await expectError(issueCopy(dev, dev, [{ src: 0, dst: 512 * MiB, len: 128 * MiB + 512 }]), 'E2BIG');
  });

  test('alignment uses the larger logical block size of the two devices', async () => {
    const small = new RamDevice({ size: MiB, logicalBlockSize: 512 });
    const big = new RamDevice({ size: MiB, logicalBlockSize: 4096 });
    await expectError(
      issueCopy(small, big, [{ src: 512, dst: 0, len: 4096 }]),
      'EINVAL',
      /multiples of 4096/,
    );
    await expectError(issueCopy(big, small, [{ src: 0, dst: 0, len: 512 }]), 'EINVAL', /multiples of 4096/);
    const r = await issueCopy(small, big, [{ src: 4096, dst: 0, len: 4096 }]);
    assert.equal(r.emulated, 4096);
  });

  test('a read-only destination is EPERM', async () => {
    const src = new RamDevice({ size: MiB });
    const ro = new RamDevice({ size: MiB, readOnly: true });
    await expectError(issueCopy(src, ro, [{ src: 0, dst: 0, len: 4096 }]), 'EPERM', /read-only/);
  });

  test('forced offload without the capability is EOPNOTSUPP; offload disabled by copy.maxBytes = 0', async () => {
    const a = new RamDevice({ size: MiB });
    const b = new RamDevice({ size: MiB });
    await expectError(
      issueCopy(a, b, [{ src: 0, dst: 0, len: 4096 }], { mode: 'offload' }),
      'EOPNOTSUPP',
      /cannot copy from/,
    );
    const plain = new RamDevice({ size: MiB, copy: false });
    await expectError(
      issueCopy(plain, plain, [{ src: 0, dst: 8192, len: 4096 }], { mode: 'offload' }),
      'EOPNOTSUPP',
      /cannot copy by itself/,
    );
    setCopyMaxBytes(a.limits, 0);
    await expectError(
      issueCopy(a, a, [{ src: 0, dst: 8192, len: 4096 }], { mode: 'offload' }),
      'EOPNOTSUPP',
      /disabled/,
    );
    const r = await issueCopy(a, a, [{ src: 0, dst: 8192, len: 4096 }]);
    assert.deepEqual([r.offloaded, r.emulated], [0, 4096]);
    assert.throws(
      () => setCopyMaxBytes(a.limits, a.limits.copy!.maxHwBytes + 512),
      /exceeds the hardware limit/,
    );
  });

  test('bad options are EINVAL', async () => {
    const a = new RamDevice({ size: MiB });
    const r = [{ src: 0, dst: 8192, len: 4096 }];
    await expectError(issueCopy(a, a, r, { mode: 'fast' as never }), 'EINVAL', /mode/);
    await expectError(issueCopy(a, a, r, { concurrency: 0 }), 'EINVAL', /concurrency/);
    await expectError(
      issueCopy(a, a, r, { memoryBudget: 100, mode: 'emulate' }),
      'EINVAL',
      /cannot hold one 512-byte block/,
    );
  });
});

describe('issueCopy paths', () => {
  test('offload within one device and emulation give identical bytes; the result says which path', async () => {
    const { dev: a, data } = await filled(4 * MiB);
    const { dev: b } = await filled(4 * MiB);
    await writeFully(b, 0, data);
    const ranges = [
      { src: 0, dst: 2 * MiB, len: 256 * KiB },
      { src: MiB, dst: 3 * MiB, len: 512 },
      { src: 4 * MiB - 4096, dst: 2 * MiB + 512 * KiB, len: 4096 }, // the last block as a source
      { src: 8192, dst: 4 * MiB - 512, len: 512 }, // the last block as a destination
    ];
    const ro = await issueCopy(a, a, ranges, { mode: 'offload' });
    const re = await issueCopy(b, b, ranges, { mode: 'emulate' });
    assert.deepEqual([ro.offloaded, ro.emulated], [ro.bytes, 0]);
    assert.deepEqual([re.offloaded, re.emulated], [0, re.bytes]);
    assert.deepEqual(
      ro.ranges.map((r) => r.path),
      ['offload', 'offload', 'offload', 'offload'],
    );
    assert.deepEqual(
      re.ranges.map((r) => r.path),
      ['emulate', 'emulate', 'emulate', 'emulate'],
    );
    assert.ok(ro.ranges.every((r) => r.completed === r.len));
    const expected = applyCopies(data, data, ranges);
    assert.deepEqual(await contents(a), expected);
    assert.deepEqual(await contents(b), expected);
  });

  test('auto emulates between two devices that cannot copy together', async () => {
    const { dev: a, data } = await filled(MiB);
    const b = new RamDevice({ size: MiB });
    const r = await issueCopy(a, b, [{ src: 4096, dst: 0, len: 64 * KiB }]);
    assert.deepEqual([r.offloaded, r.emulated], [0, 64 * KiB]);
    assert.deepEqual((await contents(b)).subarray(0, 64 * KiB), data.subarray(4096, 4096 + 64 * KiB));
  });

  test('offload requests are split by copy limits and grouped by maxRanges', async () => {
    const dev = new RecordingRam({
      size: 4 * MiB,
      copy: { maxRangeBytes: 8 * KiB, maxRanges: 3, maxBytes: 20 * KiB, maxHwBytes: 64 * KiB },
    });
    const data = randomBytes(dev.size);
    await writeFully(dev, 0, data);
    const ranges = [
      { src: 0, dst: MiB, len: 40 * KiB },
      { src: 100 * KiB, dst: 2 * MiB, len: 4 * KiB },
    ];
    await issueCopy(dev, dev, ranges, { mode: 'offload' });
    assert.ok(dev.requests.length >= 3);
    for (const req of dev.requests) {
      assert.ok(req.length <= 3, 'maxRanges');
      assert.ok(
        req.every((r) => r.len <= 8 * KiB),
        'maxRangeBytes',
      );
      assert.ok(req.reduce((s, r) => s + r.len, 0) <= 20 * KiB, 'maxBytes');
    }
    assert.equal(
      dev.requests.flat().reduce((s, r) => s + r.len, 0),
      44 * KiB,
    );
    assert.deepEqual(await contents(dev), applyCopies(data, data, ranges));
  });

  test('the smaller copy limit of the two devices splits a copy between siblings', async () => {
    const pool = new Set<SiblingRam>();
    const src = new SiblingRam(pool, { size: MiB, copy: { maxRangeBytes: 4 * KiB } });
    const dst = new SiblingRam(pool, { size: MiB, copy: { maxRangeBytes: 16 * KiB } });
    const data = randomBytes(MiB);
    await writeFully(src, 0, data);
    const r = await issueCopy(src, dst, [{ src: 0, dst: 64 * KiB, len: 32 * KiB }]);
    assert.equal(r.offloaded, 32 * KiB);
    assert.ok(dst.requests.flat().every((x) => x.len <= 4 * KiB));
    assert.deepEqual((await contents(dst)).subarray(64 * KiB, 96 * KiB), data.subarray(0, 32 * KiB));
  });
});

describe('issueCopy memmove semantics (every source read before any destination is written)', () => {
  const scenarios: Array<[string, CopyRange[]]> = [
    ['one range shifted up over itself', [{ src: 0, dst: 3 * KiB, len: 40 * KiB }]],
    ['one range shifted down over itself', [{ src: 3 * KiB, dst: 0, len: 40 * KiB }]],
    [
      'a chain A→B, B→C',
      [
        { src: 0, dst: 16 * KiB, len: 16 * KiB },
        { src: 16 * KiB, dst: 32 * KiB, len: 16 * KiB },
      ],
    ],
    [
      'a swap A↔B (a cycle)',
      [
        { src: 0, dst: 16 * KiB, len: 16 * KiB },
        { src: 16 * KiB, dst: 0, len: 16 * KiB },
      ],
    ],
    [
      'a rotation of three with partial overlaps',
      [
        { src: 0, dst: 20 * KiB, len: 12 * KiB },
        { src: 20 * KiB, dst: 41 * KiB, len: 12 * KiB },
        { src: 40 * KiB, dst: 512, len: 12 * KiB },
      ],
    ],
  ];
  for (const [name, ranges] of scenarios) {
    for (const mode of ['offload', 'emulate', 'auto'] as const) {
      test(`${name} (${mode}, small pieces)`, async () => {
        const { dev, data } = await filled(128 * KiB, { copy: { maxRangeBytes: 4 * KiB, maxRanges: 64 } });
        const r = await issueCopy(dev, dev, ranges, { mode, chunkBytes: 4 * KiB });
        assert.equal(
          r.bytes,
          ranges.reduce((s, x) => s + x.len, 0),
        );
        assert.deepEqual(await contents(dev), applyCopies(data, data, ranges));
      });
    }
  }

  test('a cycle that does not fit one offload request is emulated in transfers the devices accept', async () => {
    // Found by the property test: pieces cut at the copy limit (256 KiB) were read whole,
    // over maxTransferBytes (64 KiB), and failed E2BIG.
    const { dev, data } = await filled(MiB, {
      maxTransferBytes: 64 * KiB,
      copy: { maxRangeBytes: 256 * KiB, maxRanges: 1, maxBytes: 256 * KiB, maxHwBytes: 256 * KiB },
    });
    const swap = [
      { src: 0, dst: 256 * KiB, len: 256 * KiB },
      { src: 256 * KiB, dst: 0, len: 256 * KiB },
    ];
    const r = await issueCopy(dev, dev, swap);
    assert.deepEqual([r.offloaded, r.emulated], [0, 512 * KiB]);
    assert.deepEqual(await contents(dev), applyCopies(data, data, swap));
  });

  // The swap pairs piece k of one range with piece k of the other: cycles of 2 × 64 KiB.
  test('a cycle larger than the memory budget is refused before any I/O', async () => {
    const { dev, data } = await filled(MiB, { copy: false });
    const swap = [
      { src: 0, dst: 256 * KiB, len: 256 * KiB },
      { src: 256 * KiB, dst: 0, len: 256 * KiB },
    ];
    await expectError(
      issueCopy(dev, dev, swap, { memoryBudget: 96 * KiB, chunkBytes: 64 * KiB }),
      'ENOMEM',
      /memory budget/,
    );
    assert.deepEqual(await contents(dev), data);
    await issueCopy(dev, dev, swap, { memoryBudget: 512 * KiB, chunkBytes: 64 * KiB });
    assert.deepEqual(await contents(dev), applyCopies(data, data, swap));
  });
});

describe('issueCopy resources, progress and abort', () => {
  test('emulation stays within its memory budget whatever the copy size', async () => {
    const src = new NullDevice({ size: 1024 * MiB });
    const dst = new NullDevice({ size: 1024 * MiB });
    const r = await issueCopy(src, dst, [{ src: 0, dst: 0, len: 128 * MiB }], {
      mode: 'emulate',
      memoryBudget: 2 * MiB,
      chunkBytes: 512 * KiB,
    });
    assert.equal(r.emulated, 128 * MiB);
    assert.ok(r.peakBufferBytes <= 2 * MiB, `peak ${r.peakBufferBytes}`);
    assert.ok(r.peakBufferBytes >= 512 * KiB);
  });

  test('no more requests in flight than the concurrency option', async () => {
    const src = new CountingRam({ size: 8 * MiB });
    const dst = new RamDevice({ size: 8 * MiB });
    await issueCopy(src, dst, [{ src: 0, dst: 0, len: 8 * MiB }], { concurrency: 3, chunkBytes: 256 * KiB });
    assert.equal(src.maxInFlight, 3);
  });

  test('progress is reported after every request and ends at the total', async () => {
    const { dev } = await filled(4 * MiB);
    const seen: CopyProgress[] = [];
    await issueCopy(dev, dev, [{ src: 0, dst: 2 * MiB, len: MiB }], {
      mode: 'emulate',
      chunkBytes: 128 * KiB,
      onProgress: (p) => seen.push({ ...p }),
    });
    assert.equal(seen.length, 8);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.bytesDone > seen[i - 1]!.bytesDone);
    assert.deepEqual(seen.at(-1), { bytesDone: MiB, bytesTotal: MiB, offloaded: 0, emulated: MiB });
  });

  test('an abort stops the copy and reports a consistent completed prefix', async () => {
    const src = new CountingRam({ size: 8 * MiB, delayMs: 5 });
    const data = randomBytes(8 * MiB);
    await writeFully(src, 0, data);
    const dst = new RamDevice({ size: 8 * MiB });
    const ac = new AbortController();
    const p = issueCopy(src, dst, [{ src: 0, dst: 0, len: 8 * MiB }], {
      chunkBytes: 256 * KiB,
      concurrency: 2,
      signal: ac.signal,
      onProgress: (pr) => pr.bytesDone >= MiB && ac.abort(),
    });
    const err = await expectError(p, 'ECANCELED');
    assert.ok(CopyError.isCopyError(err));
    const done = err.completed[0]!;
    assert.ok(done >= MiB && done < 8 * MiB, `completed ${done}`);
    assert.deepEqual((await contents(dst)).subarray(0, done), data.subarray(0, done));
  });

  test('a failing write reports per-range prefixes, and nothing outside the destination ranges changes', async () => {
    const { dev: src, data } = await filled(2 * MiB);
    const dst = new FailingRam({ size: 2 * MiB, failWritesAt: 300 * KiB });
    const before = randomBytes(2 * MiB);
    await writeFully(dst, 0, before);
    dst.armed = true;
    const ranges = [
      { src: 0, dst: 0, len: 128 * KiB }, // fully before the bad spot
      { src: MiB, dst: 256 * KiB, len: 128 * KiB }, // crosses it at +44 KiB
      { src: 0, dst: MiB, len: 64 * KiB }, // after it; may or may not have run
    ];
    const err = await expectError(
      issueCopy(src, dst, ranges, { chunkBytes: 16 * KiB, concurrency: 1 }),
      'EIO',
    );
    assert.ok(CopyError.isCopyError(err));
    assert.equal(err.completed[0], 128 * KiB);
    assert.equal(err.completed[1], 32 * KiB); // the pieces before the failing 16 KiB piece
    const after = await contents(dst);
    ranges.forEach((r, i) => {
      const c = err.completed[i]!;
      assert.deepEqual(
        after.subarray(r.dst, r.dst + c),
        data.subarray(r.src, r.src + c),
        `prefix of range ${i}`,
      );
    });
    // Bytes outside every destination range are as they were.
    const inRange = (o: number) => ranges.some((r) => o >= r.dst && o < r.dst + r.len);
    for (let o = 0; o < after.length; o += 512)
      if (!inRange(o)) assert.equal(after[o], before[o], `byte ${o}`);
  });
});

/** Records each offload request the device receives. */
class RecordingRam extends RamDevice {
  readonly requests: CopyRange[][] = [];
  protected override doCopy(
    source: BlockDevice,
    ranges: readonly CopyRange[],
    o: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    this.requests.push(ranges.map((r) => ({ ...r })));
    return super.doCopy(source, ranges, o);
  }
}

/** RAM devices of one "controller": each can copy from any other, like sibling namespaces. */
class SiblingRam extends RamDevice {
  readonly requests: CopyRange[][] = [];
  constructor(
    private readonly pool: Set<SiblingRam>,
    opts: ConstructorParameters<typeof RamDevice>[0],
  ) {
    super(opts);
    pool.add(this);
  }
  override canCopyFrom(source: BlockDevice): boolean {
    return this.pool.has(source as SiblingRam);
  }
  protected override async doCopy(source: BlockDevice, ranges: readonly CopyRange[]): Promise<CopyPathBytes> {
    this.requests.push(ranges.map((r) => ({ ...r })));
    const bufs = await Promise.all(
      ranges.map(async (r) => {
        const b = Buffer.alloc(r.len);
        await source.read(r.src, b);
        return b;
      }),
    );
    for (let i = 0; i < ranges.length; i++) await this.write(ranges[i]!.dst, bufs[i]!);
    return { offloaded: bufs.reduce((s, b) => s + b.length, 0), emulated: 0 };
  }
}

/** Counts concurrent reads; optionally slows them down. */
class CountingRam extends RamDevice {
  inFlight = 0;
  maxInFlight = 0;
  private readonly delayMs: number;
  constructor(opts: ConstructorParameters<typeof RamDevice>[0] & { delayMs?: number }) {
    super(opts);
    this.delayMs = opts.delayMs ?? 1;
  }
  protected override async doRead(offset: number, buffer: Uint8Array): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, this.delayMs));
    try {
      await super.doRead(offset, buffer);
    } finally {
      this.inFlight--;
    }
  }
}

/** Fails any write that covers one byte offset. */
class FailingRam extends RamDevice {
  private readonly failAt: number;
  armed = false;
  constructor(opts: ConstructorParameters<typeof RamDevice>[0] & { failWritesAt: number }) {
    super(opts);
    this.failAt = opts.failWritesAt;
  }
  protected override doWrite(offset: number, data: Uint8Array): Promise<void> {
    if (this.armed && this.failAt >= offset && this.failAt < offset + data.length)
      return Promise.reject(new BlockError(ErrorCode.EIO, `injected media error at ${this.failAt}`));
    return super.doWrite(offset, data);
  }
}

describe('issueCopy into a zoned destination', () => {
  test('writes into a sequential zone go in ascending order even when reads finish out of order', async () => {
    const { ZonedDevice } = await import('../devices/zoned.js');
    const src = new SlowLowReadsRam({ size: 4 * MiB });
    const data = randomBytes(4 * MiB);
    await writeFully(src, 0, data);
    const backing = new RamDevice({ size: 8 * MiB, copy: false });
    const zoned = new ZonedDevice(backing, { zoneSize: MiB, conventionalZones: 1 });
    // Zone 1 starts at 1 MiB, empty. Ranges listed highest first; each spans several pieces.
    const ranges = [
      { src: 2 * MiB, dst: MiB + 192 * KiB, len: 64 * KiB },
      { src: 0, dst: MiB, len: 192 * KiB },
    ];
    const r = await issueCopy(src, zoned, ranges, { chunkBytes: 32 * KiB, concurrency: 8 });
    assert.equal(r.emulated, 256 * KiB);
    assert.ok(src.outOfOrder, 'the test should make reads complete out of order');
    const [zone] = await zoned.reportZones(MiB, 1);
    assert.equal(zone!.writePointer, MiB + 256 * KiB);
    const got = Buffer.alloc(256 * KiB);
    await zoned.read(MiB, got);
    assert.deepEqual(
      got,
      Buffer.concat([data.subarray(0, 192 * KiB), data.subarray(2 * MiB, 2 * MiB + 64 * KiB)]),
    );
  });

  test('a piece that would land past a failed write is not written; the prefix is reported', async () => {
    const { ZonedDevice } = await import('../devices/zoned.js');
    const src = new RamDevice({ size: 4 * MiB });
    const zoned = new ZonedDevice(new RamDevice({ size: 4 * MiB, copy: false }), { zoneSize: MiB });
    await zoned.write(0, Buffer.alloc(64 * KiB, 1)); // write pointer of zone 0 at 64 KiB
    // Starts 32 KiB past the write pointer: the first write fails, so nothing after it may land.
    const err = await expectError(
      issueCopy(src, zoned, [{ src: 0, dst: 96 * KiB, len: 128 * KiB }], { chunkBytes: 32 * KiB }),
      'EIO',
    );
    assert.ok(CopyError.isCopyError(err));
    assert.deepEqual(err.completed, [0]);
    assert.equal(err.zone, 'ZONE_INVALID_WRITE');
    const [zone] = await zoned.reportZones(0, 1);
    assert.equal(zone!.writePointer, 64 * KiB);
  });
});

/** Reads below 1 MiB take longer, so later pieces' reads complete first. */
class SlowLowReadsRam extends RamDevice {
  private finished: number[] = [];
  outOfOrder = false;
  protected override async doRead(offset: number, buffer: Uint8Array): Promise<void> {
    await new Promise((r) => setTimeout(r, offset < MiB ? 20 - Math.floor(offset / (64 * KiB)) : 1));
    await super.doRead(offset, buffer);
    if (this.finished.length && offset < this.finished[this.finished.length - 1]!) this.outOfOrder = true;
    this.finished.push(offset);
  }
}

/** Refuses (EOPNOTSUPP, nothing copied) every offload request that `refuse` matches. */
class RefusingRam extends RamDevice {
  requests = 0;
  constructor(
    opts: ConstructorParameters<typeof RamDevice>[0],
    private readonly refuse: (ranges: readonly CopyRange[]) => boolean,
  ) {
    super(opts);
  }
  protected override doCopy(
    source: BlockDevice,
    ranges: readonly CopyRange[],
    o: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    this.requests++;
    if (this.refuse(ranges))
      return Promise.reject(new BlockError(ErrorCode.EOPNOTSUPP, 'this request cannot be expressed'));
    return super.doCopy(source, ranges, o);
  }
}

describe('issueCopy when the device refuses an offload request (EOPNOTSUPP, nothing copied)', () => {
  test('auto mode emulates that request; the result says emulate for its ranges', async () => {
    const dev = new RefusingRam({ size: 1 * MiB }, (ranges) => ranges.some((r) => r.src === 0));
    const data = randomBytes(dev.size);
    await writeFully(dev, 0, data);
    const ranges = [
      { src: 0, dst: 512 * KiB, len: 64 * KiB },
      { src: 128 * KiB, dst: 768 * KiB, len: 64 * KiB },
    ];
    const r = await issueCopy(dev, dev, ranges, { maxRanges: 16 });
    assert.ok(dev.requests >= 1);
    assert.equal(r.offloaded + r.emulated, 128 * KiB);
    assert.ok(r.emulated >= 64 * KiB, `emulated ${r.emulated}`);
    assert.equal(r.ranges[0]!.path, 'emulate');
    assert.deepEqual(await contents(dev), applyCopies(data, data, ranges));
  });

  test('a dependent (overlapping) unit refused is emulated buffered: memmove semantics hold', async () => {
    const dev = new RefusingRam({ size: 256 * KiB }, () => true);
    const data = randomBytes(dev.size);
    await writeFully(dev, 0, data);
    // A swap: each range reads what the other writes.
    const ranges = [
      { src: 0, dst: 64 * KiB, len: 64 * KiB },
      { src: 64 * KiB, dst: 0, len: 64 * KiB },
    ];
    const r = await issueCopy(dev, dev, ranges);
    assert.equal(r.offloaded, 0);
    assert.equal(r.emulated, 128 * KiB);
    assert.deepEqual(
      r.ranges.map((x) => x.path),
      ['emulate', 'emulate'],
    );
    assert.deepEqual(await contents(dev), applyCopies(data, data, ranges));
  });

  test('forced offload reports the refusal and copies nothing', async () => {
    const dev = new RefusingRam({ size: 256 * KiB }, () => true);
    const data = randomBytes(dev.size);
    await writeFully(dev, 0, data);
    await expectError(
      issueCopy(dev, dev, [{ src: 0, dst: 128 * KiB, len: 64 * KiB }], { mode: 'offload' }),
      'EOPNOTSUPP',
      /cannot be expressed/,
    );
    assert.deepEqual(await contents(dev), data);
  });
});
