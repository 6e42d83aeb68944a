import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { MappedDevice, tableLimits } from './mapped-device.js';
import { LinearTarget } from './linear.js';
import { Table } from './table.js';
import { CountingRam, fillRandom, modelCopy, readAll } from './testing/model.js';
import { RamDevice } from '../devices/ram.js';
import { FaultDevice } from '../devices/fault.js';
import type { BlockDevice, CopyRange } from '../block/device.js';
import { BlockError, CopyError } from '../block/errors.js';
import { setCopyMaxBytes } from '../block/limits.js';
import { issueCopy } from '../block/copy.js';

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

const lin = (start: number, length: number, device: BlockDevice, offset = 0) =>
  new LinearTarget({ start, length, device, offset });

/** a[256K..768K) then b[0..512K): a 1 MiB mapping over two RAM disks, boundary at 512K. */
async function twoDisks(options: { aCopy?: false | object; bCopy?: false | object } = {}) {
  const a = new RamDevice({
    name: 'a',
    size: MiB,
    ...(options.aCopy !== undefined ? { copy: options.aCopy } : {}),
  });
  const b = new RamDevice({
    name: 'b',
    size: MiB,
    ...(options.bCopy !== undefined ? { copy: options.bCopy } : {}),
  });
  const aData = await fillRandom(a);
  const bData = await fillRandom(b);
  const dm = new MappedDevice({
    name: 'dm',
    targets: [lin(0, 512 * KiB, a, 256 * KiB), lin(512 * KiB, 512 * KiB, b, 0)],
  });
  const flat = Buffer.concat([aData.subarray(256 * KiB, 768 * KiB), bData.subarray(0, 512 * KiB)]);
  return { a, b, aData, bData, dm, flat };
}

describe('MappedDevice I/O', () => {
  it('reads and writes across a target boundary land in the right component bytes', async () => {
    const { a, b, aData, bData, dm, flat } = await twoDisks();
    assert.equal(dm.kind, 'linear');
    assert.equal(dm.size, MiB);
    assert.deepEqual(await readAll(dm, 500 * KiB, 24 * KiB), flat.subarray(500 * KiB, 524 * KiB));
    const data = randomBytes(16 * KiB);
    await dm.write(504 * KiB, data);
    assert.deepEqual(await readAll(a, 760 * KiB, 8 * KiB), data.subarray(0, 8 * KiB));
    assert.deepEqual(await readAll(b, 0, 8 * KiB), data.subarray(8 * KiB));
    // Neighbours untouched.
    assert.deepEqual(await readAll(a, 768 * KiB, 4096), aData.subarray(768 * KiB, 772 * KiB));
    assert.deepEqual(await readAll(a, 756 * KiB, 4096), aData.subarray(756 * KiB, 760 * KiB));
    assert.deepEqual(await readAll(b, 8 * KiB, 4096), bData.subarray(8 * KiB, 12 * KiB));
    // The last block of the mapping is the last block of b's mapped range.
    const last = randomBytes(512);
    await dm.write(dm.size - 512, last);
    assert.deepEqual(await readAll(b, 512 * KiB - 512, 512), last);
    assert.deepEqual(await readAll(dm, dm.size - 512, 512), last);
    await rejectsWith(dm.read(dm.size - 512, Buffer.alloc(1024)), 'ERANGE');
  });

  it('a failing component fails the request', async () => {
    const a = new RamDevice({ size: MiB });
    const fa = new FaultDevice(a, { rules: [{ ops: ['read'], offset: 4096, length: 512 }] });
    const dm = new MappedDevice({ targets: [lin(0, MiB, fa)] });
    assert.match(dm.name, /^dm-\d+$/);
    await rejectsWith(dm.read(0, Buffer.alloc(8192)), 'EIO', (e) => assert.equal(e.offset, 4096));
  });

  it('discard and writeZeroes are split at target boundaries; flush reaches every distinct component once', async () => {
    const a = new CountingRam({ name: 'a', size: MiB });
    const b = new CountingRam({ name: 'b', size: MiB });
    const aData = await fillRandom(a);
    const bData = await fillRandom(b);
    // a appears twice in the table.
    const dm = new MappedDevice({
      targets: [
        lin(0, 64 * KiB, a, 0),
        lin(64 * KiB, 64 * KiB, b, 64 * KiB),
        lin(128 * KiB, 64 * KiB, a, 512 * KiB),
      ],
    });
    await dm.discard(60 * KiB, 8 * KiB);
    assert.deepEqual(await readAll(a, 60 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
    assert.deepEqual(await readAll(b, 64 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
    assert.deepEqual(await readAll(b, 68 * KiB, 4 * KiB), bData.subarray(68 * KiB, 72 * KiB));
    await dm.writeZeroes(124 * KiB, 8 * KiB);
    assert.deepEqual(await readAll(b, 124 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
    assert.deepEqual(await readAll(a, 512 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
    assert.deepEqual(await readAll(a, 516 * KiB, 4 * KiB), aData.subarray(516 * KiB, 520 * KiB));
    const [fa, fb] = [a.flushes, b.flushes];
    await dm.flush();
    assert.equal(a.flushes - fa, 1);
    assert.equal(b.flushes - fb, 1);
  });

  it('close() flushes but leaves the components open', async () => {
    const a = new CountingRam({ size: MiB });
    const dm = new MappedDevice({ targets: [lin(0, MiB, a)] });
    await dm.close();
    assert.equal(a.flushes, 1);
    assert.equal(a.closed, false);
    await rejectsWith(dm.read(0, Buffer.alloc(512)), 'EBADF');
  });
});

describe('MappedDevice limits', () => {
  it('stacks every component: largest block size, smallest transfer and copy limits', () => {
    const a = new RamDevice({
      size: MiB,
      maxTransferBytes: 256 * KiB,
      copy: { maxRanges: 8, maxRangeBytes: 64 * KiB },
    });
    const b = new RamDevice({
      size: MiB,
      logicalBlockSize: 4096,
      copy: { maxHwBytes: 512 * KiB, maxBytes: 256 * KiB, maxRanges: 32 },
    });
    const dm = new MappedDevice({ targets: [lin(0, 512 * KiB, a), lin(512 * KiB, 512 * KiB, b)] });
    assert.equal(dm.limits.logicalBlockSize, 4096);
    assert.equal(dm.limits.maxTransferBytes, 256 * KiB);
    assert.deepEqual(dm.limits.copy, {
      maxHwBytes: 512 * KiB,
      maxBytes: 256 * KiB,
      maxRanges: 8,
      maxRangeBytes: 64 * KiB,
    });
    assert.equal(dm.limits.readOnly, false);
    assert.equal(dm.limits.zoned, undefined);
    assert.ok(dm.limits.discard && dm.limits.writeZeroes);
    // The mapping's copy cap is its own.
    setCopyMaxBytes(dm.limits, 128 * KiB);
    assert.equal(b.limits.copy!.maxBytes, 256 * KiB);
    // A single-component mapping does not share its component's object either.
    const one = new MappedDevice({ targets: [lin(0, MiB, a)] });
    setCopyMaxBytes(one.limits, 4096);
    assert.equal(a.limits.copy!.maxBytes, 128 * MiB);
  });

  it('a component without copy offload leaves the mapping without copy; copies then emulate above it', async () => {
    const { dm, flat } = await twoDisks({ bCopy: false });
    assert.equal(dm.limits.copy, undefined);
    assert.equal(dm.canCopyFrom(dm), false);
    await rejectsWith(dm.copy(dm, [{ src: 0, dst: 4096, len: 512 }], { allowEmulation: true }), 'EOPNOTSUPP');
    const ranges = [{ src: 0, dst: 600 * KiB, len: 64 * KiB }];
    const r = await issueCopy(dm, dm, ranges);
    assert.equal(r.emulated, 64 * KiB);
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
  });

  it('is read-only when a component is, or when asked', async () => {
    const ro = new RamDevice({ size: MiB, readOnly: true });
    const rw = new RamDevice({ size: MiB });
    assert.equal(new MappedDevice({ targets: [lin(0, MiB, rw), lin(MiB, MiB, ro)] }).limits.readOnly, true);
    const asked = new MappedDevice({ targets: [lin(0, MiB, rw)], readOnly: true });
    assert.equal(asked.limits.readOnly, true);
    await rejectsWith(asked.write(0, Buffer.alloc(512)), 'EPERM');
    assert.equal(tableLimits(new Table([lin(0, MiB, rw)])).readOnly, false);
  });
});

describe('MappedDevice copy pass-through', () => {
  it('offloads pieces within one component and emulates pieces across components', async () => {
    const { a, dm, flat } = await twoDisks();
    const ranges: CopyRange[] = [
      { src: 0, dst: 128 * KiB, len: 64 * KiB }, // a → a
      { src: 256 * KiB, dst: 768 * KiB, len: 32 * KiB }, // a → b
      { src: 480 * KiB, dst: 896 * KiB, len: 64 * KiB }, // a → b (32K) then b → b (32K)
    ];
    const r = await dm.copy(dm, ranges, { allowEmulation: true });
    assert.deepEqual(r, { offloaded: 96 * KiB, emulated: 64 * KiB });
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
    // The unmapped part of a is untouched by any of it.
    const aNow = await readAll(a, 0, 256 * KiB);
    assert.deepEqual(aNow.length, 256 * KiB);
  });

  it('through issueCopy (auto) the same counts come back', async () => {
    const { dm, flat } = await twoDisks();
    const ranges: CopyRange[] = [
      { src: 0, dst: 128 * KiB, len: 64 * KiB },
      { src: 256 * KiB, dst: 768 * KiB, len: 32 * KiB },
    ];
    const r = await issueCopy(dm, dm, ranges);
    assert.equal(r.offloaded, 64 * KiB);
    assert.equal(r.emulated, 32 * KiB);
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
  });

  it('forced offload with a piece needing emulation fails EOPNOTSUPP before any write', async () => {
    const { a, b, aData, bData, dm } = await twoDisks();
    const ranges: CopyRange[] = [
      { src: 0, dst: 128 * KiB, len: 64 * KiB }, // offloadable, listed first
      { src: 256 * KiB, dst: 768 * KiB, len: 32 * KiB }, // needs emulation
    ];
    await rejectsWith(dm.copy(dm, ranges, { allowEmulation: false }), 'EOPNOTSUPP', (e) => {
      assert.match(e.message, /a → b/);
      assert.deepEqual((e as CopyError).completed, [0, 0]);
    });
    await rejectsWith(issueCopy(dm, dm, ranges, { mode: 'offload' }), 'EOPNOTSUPP');
    assert.deepEqual(await readAll(a), aData, 'a unchanged');
    assert.deepEqual(await readAll(b), bData, 'b unchanged');
    // Only same-component pieces: forced offload works.
    const r = await dm.copy(dm, [ranges[0]!], { allowEmulation: false });
    assert.deepEqual(r, { offloaded: 64 * KiB, emulated: 0 });
  });

  it('pieces are cut by each component’s own copy limits', async () => {
    const { dm, flat } = await twoDisks({ aCopy: { maxRangeBytes: 8 * KiB, maxRanges: 2 } });
    assert.equal(dm.limits.copy!.maxRangeBytes, 8 * KiB);
    // b keeps larger limits: a b → b piece of the mapping's maximum goes down in one request.
    const ranges = [
      { src: 600 * KiB, dst: 700 * KiB, len: 8 * KiB },
      { src: 0, dst: 64 * KiB, len: 8 * KiB },
    ];
    const r = await dm.copy(dm, ranges, { allowEmulation: false });
    assert.equal(r.offloaded, 16 * KiB);
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
  });

  it('a swap across components reads both sources before writing', async () => {
    const { dm, flat } = await twoDisks();
    const ranges = [
      { src: 0, dst: 512 * KiB, len: 64 * KiB },
      { src: 512 * KiB, dst: 0, len: 64 * KiB },
    ];
    const r = await dm.copy(dm, ranges, { allowEmulation: true });
    assert.deepEqual(r, { offloaded: 0, emulated: 128 * KiB });
    assert.deepEqual(await readAll(dm, 0, 64 * KiB), flat.subarray(512 * KiB, 576 * KiB));
    assert.deepEqual(await readAll(dm, 512 * KiB, 64 * KiB), flat.subarray(0, 64 * KiB));
  });

  it('a rotation through an offloaded piece keeps as-if-read-first and still offloads', async () => {
    const { dm, flat } = await twoDisks();
    const ranges = [
      { src: 0, dst: 128 * KiB, len: 64 * KiB }, // a → a, reads what the b → a range writes
      { src: 512 * KiB, dst: 0, len: 64 * KiB }, // b → a, reads what the a → b range writes
      { src: 128 * KiB, dst: 512 * KiB, len: 64 * KiB }, // a → b, reads what the a → a range writes
    ];
    const r = await dm.copy(dm, ranges, { allowEmulation: true });
    assert.deepEqual(r, { offloaded: 64 * KiB, emulated: 128 * KiB });
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
  });

  it('overlap inside one component (memmove) is kept by the component copy', async () => {
    const { dm, flat } = await twoDisks();
    const ranges = [{ src: 0, dst: 16 * KiB, len: 64 * KiB }];
    const r = await dm.copy(dm, ranges, { allowEmulation: false });
    assert.equal(r.offloaded, 64 * KiB);
    assert.deepEqual(await readAll(dm), modelCopy(flat, ranges));
  });

  it('random range lists match the read-everything-first model', async () => {
    // Three components, one mapped twice, with small copy limits so pieces are cut often.
    const a = new RamDevice({ name: 'a', size: 256 * KiB, copy: { maxRangeBytes: 16 * KiB, maxRanges: 4 } });
    const b = new RamDevice({ name: 'b', size: 256 * KiB });
    const c = new RamDevice({ name: 'c', size: 256 * KiB, logicalBlockSize: 4096 });
    const dm = new MappedDevice({
      targets: [
        lin(0, 64 * KiB, a, 128 * KiB),
        lin(64 * KiB, 96 * KiB, b, 32 * KiB),
        lin(160 * KiB, 32 * KiB, c, 0),
        lin(192 * KiB, 64 * KiB, a, 0),
      ],
    });
    const blocks = dm.size / 4096;
    const runs = Number(process.env.TSBLK_PROPERTY_RUNS ?? 60);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            src: fc.nat(blocks - 1),
            dst: fc.nat(blocks - 1),
            len: fc.integer({ min: 1, max: 12 }),
          }),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        fc.boolean(),
        async (raw, viaIssueCopy) => {
          // Keep destinations disjoint and inside the device.
          // Called directly, a request must fit the mapping's copy limits (issueCopy splits).
          const c = dm.limits.copy!;
          const ranges: CopyRange[] = [];
          for (const r of raw) {
            if (!viaIssueCopy && ranges.length === c.maxRanges) break;
            const maxLen = viaIssueCopy ? Infinity : c.maxRangeBytes / 4096;
            const len = Math.min(r.len, maxLen, blocks - r.src, blocks - r.dst) * 4096;
            const dst = r.dst * 4096;
            if (ranges.some((x) => dst < x.dst + x.len && x.dst < dst + len)) continue;
            ranges.push({ src: r.src * 4096, dst, len });
          }
          const before = await fillRandom(dm);
          if (viaIssueCopy) await issueCopy(dm, dm, ranges);
          else await dm.copy(dm, ranges, { allowEmulation: true });
          assert.deepEqual(await readAll(dm), modelCopy(before, ranges));
        },
      ),
      { numRuns: runs },
    );
  });

  it('a failing component gives per-range prefixes that stop at the first incomplete piece', async () => {
    const ra = new RamDevice({ name: 'ra', size: MiB });
    const fa = new FaultDevice(ra, { name: 'fa' });
    const b = new RamDevice({ name: 'b', size: MiB });
    const dm = new MappedDevice({ targets: [lin(0, 512 * KiB, fa), lin(512 * KiB, 512 * KiB, b)] });
    const flat = await fillRandom(dm);
    // Range 0: fa → fa for its first 128K, then fa → b; the fa piece fails 10000 bytes in.
    // The fa → b piece completes, but is not part of the prefix.
    fa.addRule({ ops: ['copy'], offset: 384 * KiB + 10000, length: 1 });
    const ranges = [
      { src: 0, dst: 384 * KiB, len: 256 * KiB },
      { src: 700 * KiB, dst: 900 * KiB, len: 64 * KiB }, // b → b, independent of range 0
    ];
    await rejectsWith(dm.copy(dm, ranges, { allowEmulation: true }), 'EIO', (e) => {
      assert.ok(CopyError.isCopyError(e));
      assert.deepEqual(e.completed, [9728, 64 * KiB]);
    });
    const now = await readAll(dm);
    assert.deepEqual(now.subarray(384 * KiB, 384 * KiB + 9728), flat.subarray(0, 9728));
    assert.deepEqual(now.subarray(384 * KiB + 9728, 512 * KiB), flat.subarray(384 * KiB + 9728, 512 * KiB));
    assert.deepEqual(now.subarray(512 * KiB, 640 * KiB), flat.subarray(128 * KiB, 256 * KiB));
    assert.deepEqual(now.subarray(900 * KiB, 964 * KiB), flat.subarray(700 * KiB, 764 * KiB));
  });

  it('refuses with EINVAL, before writing, destinations that alias one component’s bytes through two targets', async () => {
    const a = new RamDevice({ size: MiB });
    const aData = await fillRandom(a);
    const dm = new MappedDevice({
      targets: [
        lin(0, 64 * KiB, a, 0),
        lin(64 * KiB, 64 * KiB, a, 0),
        lin(128 * KiB, 64 * KiB, a, 512 * KiB),
      ],
    });
    const ranges = [
      { src: 128 * KiB, dst: 0, len: 4096 },
      { src: 132 * KiB, dst: 64 * KiB, len: 4096 },
    ];
    await rejectsWith(dm.copy(dm, ranges, { allowEmulation: true }), 'EINVAL', (e) =>
      assert.match(e.message, /written once/),
    );
    assert.deepEqual(await readAll(a), aData);
  });

  it('an abort before the copy starts fails with ECANCELED and copies nothing', async () => {
    const { a, aData, dm } = await twoDisks();
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(
      dm.copy(dm, [{ src: 0, dst: 128 * KiB, len: 4096 }], { allowEmulation: true, signal: ac.signal }),
      'ECANCELED',
    );
    assert.deepEqual(await readAll(a), aData);
  });
});
