import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { FaultDevice } from './fault.js';
import { RamDevice } from './ram.js';
import { ZonedDevice } from './zoned.js';
import { BlockError, CopyError, ErrorCode } from '../block/errors.js';
import { setCopyMaxBytes } from '../block/limits.js';
import { issueCopy } from '../block/copy.js';
import { ZoneState } from '../block/zone.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejectsWith(p: Promise<unknown>, code: string, check?: (err: BlockError) => void) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    check?.(err);
    return true;
  });
}

async function readAt(dev: { read(o: number, b: Uint8Array): Promise<void> }, offset: number, len: number) {
  const buf = Buffer.alloc(len, 0xee);
  await dev.read(offset, buf);
  return buf;
}

/** A RAM device filled with random bytes, and the bytes. */
async function filledRam(size = 1 * MiB, options: Partial<ConstructorParameters<typeof RamDevice>[0]> = {}) {
  const ram = new RamDevice({ size, ...options });
  const data = randomBytes(size);
  for (let off = 0; off < size; off += 256 * KiB) await ram.write(off, data.subarray(off, off + 256 * KiB));
  return { ram, data };
}

describe('FaultDevice pass-through', () => {
  it('has the inner size and the inner limits object, and passes I/O through', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram);
    assert.equal(f.kind, 'fault');
    assert.equal(f.name, `${ram.name}-fault`);
    assert.equal(f.size, ram.size);
    assert.equal(f.limits, ram.limits, 'the same object, so copy tuning is shared');
    setCopyMaxBytes(f.limits, 64 * KiB);
    assert.equal(ram.limits.copy!.maxBytes, 64 * KiB);
    assert.deepEqual(await readAt(f, 4096, 8192), data.subarray(4096, 4096 + 8192));
    const last = ram.size - 512;
    const block = randomBytes(512);
    await f.write(last, block);
    assert.deepEqual(await readAt(ram, last, 512), block, 'the last block lands on the inner device');
    await f.discard(0, 4096);
    assert.deepEqual(await readAt(ram, 0, 4096), Buffer.alloc(4096));
    await f.writeZeroes(8192, 4096);
    assert.deepEqual(await readAt(ram, 8192, 4096), Buffer.alloc(4096));
    await f.flush();
    assert.deepEqual(f.details(), { inner: ram.name, rules: 0, injected: 0, down: false });
  });

  it('can copy from itself only, and only when the inner device can copy from itself', () => {
    const ram = new RamDevice({ size: MiB });
    const f = new FaultDevice(ram);
    assert.equal(f.canCopyFrom(f), true);
    assert.equal(f.canCopyFrom(ram), false);
    const noCopy = new FaultDevice(new RamDevice({ size: MiB, copy: false }));
    assert.equal(noCopy.canCopyFrom(noCopy), false);
    assert.equal(noCopy.limits.copy, undefined);
  });

  it('close() flushes but leaves the inner device open', async () => {
    const ram = new RamDevice({ size: MiB });
    const f = new FaultDevice(ram);
    await f.close();
    await rejectsWith(f.read(0, Buffer.alloc(512)), 'EBADF');
    assert.equal(ram.closed, false);
    await ram.read(0, Buffer.alloc(512));
  });
});

describe('FaultDevice error rules', () => {
  it('fails only operations of the listed kinds that overlap the range, whole, with the first faulty byte', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram, { rules: [{ ops: ['read'], offset: 8192 + 100, length: 1 }] });
    assert.deepEqual(await readAt(f, 0, 8192), data.subarray(0, 8192), 'ends just before the rule');
    assert.deepEqual(await readAt(f, 8704, 512), data.subarray(8704, 9216), 'starts just after the block');
    const buf = Buffer.alloc(8192, 0xee);
    await rejectsWith(f.read(4096, buf), 'EIO', (err) => {
      assert.equal(err.offset, 8292);
      assert.match(err.message, /injected fault/);
    });
    assert.ok(
      buf.every((b) => b === 0xee),
      'a failed read fills nothing',
    );
    // Writes are not listed: they pass.
    const w = randomBytes(512);
    await f.write(8192, w);
    assert.deepEqual(await readAt(ram, 8192, 512), w);
    assert.equal(f.injected, 1);
    assert.equal(f.rules[0]!.matched, 1);
  });

  it('a failed write writes nothing; custom codes; discard and writeZeroes rules', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram);
    f.addRule({ ops: ['write'], offset: 65536, length: 512, code: ErrorCode.ENOSPC });
    f.addRule({ ops: ['discard', 'writeZeroes'], offset: 0, length: 4096 });
    await rejectsWith(f.write(61440, randomBytes(8192)), 'ENOSPC');
    assert.deepEqual(
      await readAt(ram, 61440, 8192),
      data.subarray(61440, 61440 + 8192),
      'inner bytes unchanged',
    );
    await rejectsWith(f.discard(0, 512), 'EIO');
    await rejectsWith(f.writeZeroes(3584, 1024), 'EIO');
    assert.deepEqual(await readAt(ram, 0, 8192), data.subarray(0, 8192));
    await f.discard(4096, 512);
    assert.deepEqual(await readAt(ram, 4096, 512), Buffer.alloc(512));
  });

  it('the last block of the device can be made faulty', async () => {
    const { ram, data } = await filledRam();
    const last = ram.size - 512;
    const f = new FaultDevice(ram, { rules: [{ ops: ['read', 'write'], offset: last, length: 512 }] });
    await rejectsWith(f.read(last, Buffer.alloc(512)), 'EIO', (e) => assert.equal(e.offset, last));
    await rejectsWith(f.write(last - 512, Buffer.alloc(1024)), 'EIO');
    assert.deepEqual(await readAt(f, last - 512, 512), data.subarray(last - 512, last));
    assert.deepEqual(await readAt(ram, last, 512), data.subarray(last));
  });

  it('afterCount lets the first N matching operations pass; other operations do not count', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram);
    const id = f.addRule({ ops: ['read'], offset: 0, length: 4096, afterCount: 2 });
    await readAt(f, 0, 512);
    await readAt(f, 8192, 512); // outside: not counted
    await f.write(0, Buffer.alloc(512)); // other op: not counted
    await readAt(f, 512, 512);
    await rejectsWith(readAt(f, 1024, 512), 'EIO');
    await rejectsWith(readAt(f, 1024, 512), 'EIO');
    const s = f.rules.find((r) => r.id === id)!;
    assert.equal(s.matched, 4);
    assert.equal(s.injected, 2);
  });

  it('times limits how often a rule fires', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram, {
      rules: [{ ops: ['read'], offset: 0, length: 512, times: 1, afterCount: 1 }],
    });
    await readAt(f, 0, 512);
    await rejectsWith(readAt(f, 0, 512), 'EIO');
    await readAt(f, 0, 512);
    await readAt(f, 0, 512);
    assert.equal(f.rules[0]!.injected, 1);
  });

  it('flush rules match every flush', async () => {
    const f = new FaultDevice(new RamDevice({ size: MiB }), {
      rules: [{ ops: ['flush'], offset: 0, length: 1, times: 1 }],
    });
    await rejectsWith(f.flush(), 'EIO');
    await f.flush();
  });

  it('rules are added and removed at run time', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram);
    const a = f.addRule({ ops: ['read'], offset: 0, length: 512 });
    const b = f.addRule({ ops: ['read'], offset: 4096, length: 512 });
    assert.notEqual(a, b);
    await rejectsWith(readAt(f, 0, 512), 'EIO');
    assert.equal(f.removeRule(a), true);
    assert.equal(f.removeRule(a), false);
    await readAt(f, 0, 512);
    await rejectsWith(readAt(f, 4096, 512), 'EIO');
    f.clearRules();
    assert.deepEqual(f.rules, []);
    await readAt(f, 4096, 512);
  });

  it('bad rules are EINVAL', () => {
    const f = new FaultDevice(new RamDevice({ size: MiB }));
    const bad = [
      { ops: [], offset: 0, length: 1 },
      { ops: ['bogus'], offset: 0, length: 1 },
      { ops: ['read'], offset: -1, length: 1 },
      { ops: ['read'], offset: 0, length: 0 },
      { ops: ['read'], offset: 0, length: 1, code: 'ENOPE' },
      { ops: ['read'], offset: 0, length: 1, afterCount: -1 },
      { ops: ['read'], offset: 0, length: 1, times: 0 },
    ];
    for (const r of bad)
      assert.throws(
        () => f.addRule(r as never),
        (e: unknown) => BlockError.is(e) && e.code === 'EINVAL',
        JSON.stringify(r),
      );
    assert.throws(
      () => f.setDelay('read', { ms: -1 }),
      (e: unknown) => BlockError.is(e) && e.code === 'EINVAL',
    );
    assert.throws(
      () => f.setFlakey({ upMs: 0, downMs: 0 }),
      (e: unknown) => BlockError.is(e) && e.code === 'EINVAL',
    );
  });
});

describe('FaultDevice delays', () => {
  it('delays an operation kind by at least ms, and only that kind', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram, { delays: { read: { ms: 40 } } });
    let t = performance.now();
    await readAt(f, 0, 512);
    assert.ok(performance.now() - t >= 40, `read took ${performance.now() - t} ms`);
    t = performance.now();
    await f.write(0, Buffer.alloc(512));
    f.setDelay('read', undefined);
    f.setDelay('write', { ms: 20, jitterMs: 10 });
    t = performance.now();
    await f.write(0, Buffer.alloc(512));
    assert.ok(performance.now() - t >= 20, `write took ${performance.now() - t} ms`);
  });

  it('an abort while delayed fails with ECANCELED and does not run the operation', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram, { delays: { write: { ms: 10_000 } } });
    const ac = new AbortController();
    const p = f.write(0, Buffer.alloc(512), { signal: ac.signal });
    setTimeout(() => ac.abort(), 10);
    await rejectsWith(p, 'ECANCELED');
    assert.deepEqual(await readAt(ram, 0, 512), data.subarray(0, 512));
  });
});

describe('FaultDevice flakey and down', () => {
  it('alternates up and down intervals on its clock; down is ENODEV, then it recovers', async () => {
    let now = 1000;
    const { ram } = await filledRam();
    const f = new FaultDevice(ram, { flakey: { upMs: 100, downMs: 50 }, now: () => now });
    await readAt(f, 0, 512);
    now += 99;
    await f.write(0, Buffer.alloc(512));
    now += 1; // 100: down
    assert.equal(f.isDown, true);
    await rejectsWith(readAt(f, 0, 512), 'ENODEV', (e) => assert.match(e.message, /flakey down interval/));
    await rejectsWith(f.flush(), 'ENODEV');
    now += 49;
    await rejectsWith(f.discard(0, 512), 'ENODEV');
    now += 1; // 150: up again
    assert.equal(f.isDown, false);
    await readAt(f, 0, 512);
    now += 100 + 25; // second down interval
    await rejectsWith(readAt(f, 0, 512), 'ENODEV');
    f.setFlakey(undefined);
    await readAt(f, 0, 512);
  });

  it('a real-time flakey device fails while down and recovers', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram, { flakey: { upMs: 0, downMs: 30, code: ErrorCode.EIO } });
    await rejectsWith(readAt(f, 0, 512), 'EIO');
    f.setFlakey({ upMs: 60_000, downMs: 1 });
    await readAt(f, 0, 512);
  });

  it('down() and up() by hand, with a chosen code', async () => {
    const { ram } = await filledRam();
    const f = new FaultDevice(ram);
    f.down();
    await rejectsWith(readAt(f, 0, 512), 'ENODEV', (e) => assert.match(e.message, /by hand/));
    f.down(ErrorCode.EIO);
    await rejectsWith(f.write(0, Buffer.alloc(512)), 'EIO');
    await rejectsWith(f.copy(f, [{ src: 0, dst: 4096, len: 512 }], { allowEmulation: true }), 'EIO', (e) => {
      assert.ok(CopyError.isCopyError(e));
      assert.deepEqual(e.completed, [0]);
    });
    f.up();
    await readAt(f, 0, 512);
    assert.equal(f.injected, 3);
  });
});

describe('FaultDevice copy', () => {
  it('copies the block-aligned prefix before the first faulty byte, then fails with that prefix', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram);
    // Faulty byte 5000 bytes into the destination: the prefix is 4608 (9 blocks).
    f.addRule({ ops: ['copy'], offset: 512 * KiB + 5000, length: 1 });
    const r = { src: 0, dst: 512 * KiB, len: 64 * KiB };
    await rejectsWith(f.copy(f, [r], { allowEmulation: false }), 'EIO', (e) => {
      assert.ok(CopyError.isCopyError(e));
      assert.deepEqual(e.completed, [4608]);
      assert.equal(e.offloaded, 4608);
      assert.equal(e.offset, 512 * KiB + 5000);
    });
    assert.deepEqual(await readAt(ram, r.dst, 4608), data.subarray(0, 4608), 'prefix copied');
    assert.deepEqual(
      await readAt(ram, r.dst + 4608, r.len - 4608),
      data.subarray(r.dst + 4608, r.dst + r.len),
      'nothing after the prefix written',
    );
  });

  it('through issueCopy: earlier ranges complete, the faulty range gives its prefix, later ranges 0', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram);
    // A bad block on the source of range 1 (read rules apply to copy sources).
    f.addRule({ ops: ['read'], offset: 128 * KiB + 2048, length: 512 });
    const ranges = [
      { src: 0, dst: 512 * KiB, len: 32 * KiB },
      { src: 128 * KiB, dst: 600 * KiB, len: 32 * KiB },
      { src: 256 * KiB, dst: 700 * KiB, len: 32 * KiB },
    ];
    await rejectsWith(issueCopy(f, f, ranges, { mode: 'offload' }), 'EIO', (e) => {
      assert.ok(CopyError.isCopyError(e));
      assert.deepEqual(e.completed, [32 * KiB, 2048, 0]);
    });
    assert.deepEqual(await readAt(ram, 512 * KiB, 32 * KiB), data.subarray(0, 32 * KiB));
    assert.deepEqual(await readAt(ram, 600 * KiB, 2048), data.subarray(128 * KiB, 128 * KiB + 2048));
    assert.deepEqual(
      await readAt(ram, 600 * KiB + 2048, 512),
      data.subarray(600 * KiB + 2048, 600 * KiB + 2560),
    );
    assert.deepEqual(await readAt(ram, 700 * KiB, 32 * KiB), data.subarray(700 * KiB, 732 * KiB));
    // The rule cleared, the copy succeeds and is offloaded.
    f.clearRules();
    const res = await issueCopy(f, f, ranges, { mode: 'offload' });
    assert.equal(res.offloaded, 96 * KiB);
    assert.deepEqual(await readAt(ram, 700 * KiB, 32 * KiB), data.subarray(256 * KiB, 288 * KiB));
  });

  it('a fault at the first block of a range copies nothing of it; write rules hit destinations', async () => {
    const { ram, data } = await filledRam();
    const f = new FaultDevice(ram, { rules: [{ ops: ['write'], offset: 300 * KiB, length: 512 }] });
    await rejectsWith(
      f.copy(f, [{ src: 0, dst: 300 * KiB, len: 4096 }], { allowEmulation: false }),
      'EIO',
      (e) => assert.deepEqual((e as CopyError).completed, [0]),
    );
    assert.deepEqual(await readAt(ram, 300 * KiB, 4096), data.subarray(300 * KiB, 300 * KiB + 4096));
  });

  it('emulated copies through issueCopy stop at the faulty chunk', async () => {
    const { ram: srcRam, data } = await filledRam();
    const dst = new FaultDevice(new RamDevice({ size: MiB }), {
      rules: [{ ops: ['write'], offset: 96 * KiB, length: 1 }],
    });
    await rejectsWith(
      issueCopy(srcRam, dst, [{ src: 0, dst: 0, len: 256 * KiB }], { chunkBytes: 32 * KiB, concurrency: 1 }),
      'EIO',
      (e) => assert.deepEqual((e as CopyError).completed, [96 * KiB]),
    );
    assert.deepEqual(await readAt(dst, 0, 96 * KiB), data.subarray(0, 96 * KiB));
  });
});

describe('FaultDevice over a zoned device', () => {
  it('passes zone operations through and fails them by zone rules', async () => {
    const zoned = new ZonedDevice(new RamDevice({ size: 4 * MiB }), { zoneSize: MiB });
    const f = new FaultDevice(zoned, { rules: [{ ops: ['zone'], offset: 2 * MiB, length: 1 }] });
    assert.equal(f.limits.zoned, zoned.limits.zoned);
    const zones = await f.reportZones(0, 2);
    assert.equal(zones.length, 2);
    await f.openZone(0);
    assert.equal((await zoned.reportZones(0, 1))[0]!.state, ZoneState.EXPLICIT_OPEN);
    const at = await f.zoneAppend(MiB, Buffer.alloc(4096, 1));
    assert.equal(at, MiB);
    await rejectsWith(f.resetZone(2 * MiB), 'EIO');
    await rejectsWith(f.zoneAppend(2 * MiB, Buffer.alloc(512)), 'EIO');
    await rejectsWith(f.resetAllZones(), 'EIO');
    await rejectsWith(f.reportZones(0), 'EIO', (e) => assert.equal(e.offset, 2 * MiB));
    await f.finishZone(3 * MiB);
    f.clearRules();
    await f.resetAllZones();
    assert.equal((await zoned.reportZones(MiB, 1))[0]!.state, ZoneState.EMPTY);
  });
});
