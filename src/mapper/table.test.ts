import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Table } from './table.js';
import { LinearTarget } from './linear.js';
import { RamDevice } from '../devices/ram.js';
import { BlockError } from '../block/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function throwsEinval(fn: () => unknown, message: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(BlockError.is(err), String(err));
    assert.equal(err.code, 'EINVAL');
    assert.match(err.message, message);
    return true;
  });
}

describe('Table validation', () => {
  const a = new RamDevice({ name: 'a', size: MiB });
  const b = new RamDevice({ name: 'b', size: MiB, logicalBlockSize: 4096 });
  const lin = (start: number, length: number, device = a, offset = 0) =>
    new LinearTarget({ start, length, device, offset });

  it('accepts contiguous targets and reports size, devices and block size', () => {
    const t = new Table([
      lin(0, 64 * KiB),
      lin(64 * KiB, 128 * KiB, b, 4096),
      lin(192 * KiB, 4096, a, 512 * KiB),
    ]);
    assert.equal(t.size, 196 * KiB);
    assert.deepEqual(t.devices, [a, b]);
    assert.equal(t.logicalBlockSize, 4096);
    assert.equal(t.indexAt(0), 0);
    assert.equal(t.indexAt(64 * KiB - 1), 0);
    assert.equal(t.indexAt(64 * KiB), 1);
    assert.equal(t.indexAt(t.size - 1), 2);
    assert.equal(t.toString(), `0 65536 linear a 0\n65536 131072 linear b 4096\n196608 4096 linear a 524288`);
  });

  it('splits a request into component runs at target boundaries', () => {
    const t = new Table([lin(0, 64 * KiB, a, 8192), lin(64 * KiB, 64 * KiB, b, 0)]);
    assert.deepEqual(t.runs(60 * KiB, 8 * KiB), [
      { pos: 60 * KiB, device: a, offset: 8192 + 60 * KiB, length: 4 * KiB },
      { pos: 64 * KiB, device: b, offset: 0, length: 4 * KiB },
    ]);
    assert.deepEqual(t.runs(t.size - 4096, 4096), [
      { pos: t.size - 4096, device: b, offset: 60 * KiB, length: 4096 },
    ]);
  });

  it('refuses an empty table', () => throwsEinval(() => new Table([]), /no targets/));
  it('refuses a gap at the start', () =>
    throwsEinval(() => new Table([lin(4096, 4096)]), /gap — bytes 0\.\.4096/));
  it('refuses a gap between targets', () =>
    throwsEinval(() => new Table([lin(0, 4096), lin(8192, 4096)]), /target 1 .*gap — bytes 4096\.\.8192/));
  it('refuses overlapping targets', () =>
    throwsEinval(
      () => new Table([lin(0, 8192), lin(4096, 4096)]),
      /target 1 .*overlaps the previous target/,
    ));
  it('refuses boundaries off the largest logical block size of the components', () => {
    throwsEinval(() => new Table([lin(0, 512), lin(512, 4096, b)]), /multiples of 4096 bytes/);
    throwsEinval(
      () => new Table([lin(0, 4096, a, 512), lin(4096, 4096, b)]),
      /offset 512 on a must be a multiple of 4096/,
    );
  });
  it('refuses a target past the end of its component', () =>
    throwsEinval(() => lin(0, 8192, a, MiB - 4096), /ends at 1052672, past the end of a \(1048576 bytes\)/));
  it('refuses a target unaligned to its own component', () =>
    throwsEinval(() => lin(0, 4096, b, 512), /multiples of b's 4096-byte/));
  it('refuses negative or zero sizes', () => {
    throwsEinval(() => lin(0, 0), /length must be positive/);
    throwsEinval(() => lin(-512, 512), /start -512 must be a non-negative integer/);
  });
});
