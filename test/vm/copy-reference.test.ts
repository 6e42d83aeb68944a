// The host-side oracle of the Copy reference (copy-reference.ts) without a guest: the pattern
// generator agrees with the guest script's awk generator, the model copies with memmove
// semantics, and the script's output is parsed field by field.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  formatCopySpec,
  parseCopySpec,
  parseReference,
  patternBlock,
  ReferenceModel,
  type ReferenceLayout,
} from './copy-reference.js';
import { guestScript } from './vm.js';

/** lib.sh's `pattern FIRST COUNT BS`, run on the host (bash + awk, as in the guest). */
function shellPattern(first: number, count: number, bs: number): Buffer {
  const r = spawnSync('bash', [
    '-c',
    'source "$0"; pattern "$1" "$2" "$3"',
    guestScript('lib.sh'),
    String(first),
    String(count),
    String(bs),
  ]);
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

const layout: ReferenceLayout = { lbs: 512, nsze: 1000, patternBlocks: 16, areaBlocks: 64, tailBlocks: 4 };

test('patternBlock matches the guest generator, at 512 and 4096 bytes and past 8 digits', () => {
  for (const [first, count, bs] of [
    [0, 3, 512],
    [1020, 4, 512],
    [7, 2, 4096],
    [123_456_789, 2, 512],
  ] as const) {
    const host = Buffer.concat(Array.from({ length: count }, (_, i) => patternBlock(first + i, bs)));
    assert.equal(host.length, count * bs);
    assert.ok(shellPattern(first, count, bs).equals(host), `blocks ${first}+${count} of ${bs} bytes`);
  }
  assert.equal(patternBlock(42, 512).subarray(0, 26).toString(), 'LBA 00000042 LBA 00000042 ');
});

test('copy specs format and parse back; a bad spec is refused with the expected form', () => {
  const spec = {
    dst: -4,
    ranges: [
      { slba: 10, nlb: 2 },
      { slba: -1, nlb: 1 },
    ],
  };
  assert.equal(formatCopySpec(spec), '-4=10+2,-1+1');
  assert.deepEqual(parseCopySpec('-4=10+2,-1+1'), spec);
  assert.throws(() => parseCopySpec('4096=0'), /want DST=SLBA\+NLB/);
  assert.throws(() => parseCopySpec('4096=0+8,'), /bad copy spec/);
});

test('the model starts as pattern, zeros and pattern tail, last block included', () => {
  const m = new ReferenceModel(layout);
  assert.ok(m.read(0, 1).equals(patternBlock(0, 512)));
  assert.ok(m.read(15, 1).equals(patternBlock(15, 512)));
  assert.ok(m.read(16, 1).equals(Buffer.alloc(512)));
  assert.ok(m.read(995, 1).equals(Buffer.alloc(512)));
  assert.ok(m.read(996, 1).equals(patternBlock(996, 512)));
  assert.ok(m.read(-1, 1).equals(patternBlock(999, 512)), 'last block');
  assert.equal(m.resolve(-4), 996);
  const sha = createHash('sha256').update(m.read(0, 64)).digest('hex');
  assert.equal(m.sha256(0, 64), sha);
});

test('model copies concatenate ranges in order, with memmove semantics on overlap', () => {
  const m = new ReferenceModel(layout);
  m.copy({
    dst: 40,
    ranges: [
      { slba: 5, nlb: 2 },
      { slba: 1, nlb: 1 },
      { slba: 5, nlb: 1 },
    ],
  });
  assert.ok(m.read(40, 4).equals(Buffer.concat([5, 6, 1, 5].map((i) => patternBlock(i, 512)))));
  // 0..7 -> 4: the destination gets the original 0..7, not a smeared copy of 0..3
  m.copy({ dst: 4, ranges: [{ slba: 0, nlb: 8 }] });
  const want = [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7].map((i) => patternBlock(i, 512));
  assert.ok(m.read(0, 12).equals(Buffer.concat(want)));
  // the last block as a destination
  m.copy({ dst: -1, ranges: [{ slba: 40, nlb: 1 }] });
  assert.ok(m.read(999, 1).equals(patternBlock(5, 512)));
  assert.throws(() => m.copy({ dst: -1, ranges: [{ slba: 0, nlb: 2 }] }), /outside the namespace/);
});

test('parseReference reads every field of the script output', () => {
  const h = (c: string) => c.repeat(64);
  const out = [
    'fact: qemu_ns=/dev/nvme0n1',
    'ref: device=/dev/nvme0n1 lbs=512 nsze=131072 pattern_blocks=1024 area_blocks=8192 tail_blocks=8',
    'ref: id oncs=0x15d ocfs=0x3 mssrl=16 mcl=64 msrc=7',
    `ref: init area_sha256=${h('a')} tail_sha256=${h('b')}`,
    `ref: copy 1 dst=4096 ranges=0+8 blocks=8 rc=0 status=0x0 verdict=copied sha256=${h('c')} expected=${h('c')} before=${h('d')}`,
    'ref: copy 1 says: NVMe Copy: success',
    `ref: copy 2 dst=5000 ranges=1+1,2+1 blocks=2 rc=1 status=0x4183 verdict=unchanged sha256=${h('e')} expected=n/a before=${h('e')}`,
    'ref: copy 2 says: NVMe status: Command Size Limit Exceeded(0x4183)',
    `ref: final area_sha256=${h('f')} tail_sha256=${h('0')}`,
    'ref: done copies=2',
  ].join('\n');
  const r = parseReference(out);
  assert.equal(r.device, '/dev/nvme0n1');
  assert.deepEqual(
    [r.lbs, r.nsze, r.patternBlocks, r.areaBlocks, r.tailBlocks],
    [512, 131072, 1024, 8192, 8],
  );
  assert.deepEqual(r.id, { oncs: '0x15d', ocfs: '0x3', mssrl: '16', mcl: '64', msrc: '7' });
  assert.deepEqual(r.init, { area: h('a'), tail: h('b') });
  assert.deepEqual(r.final, { area: h('f'), tail: h('0') });
  assert.equal(r.done, 2);
  assert.deepEqual(r.copies[1], {
    k: 2,
    dst: 5000,
    ranges: '1+1,2+1',
    blocks: 2,
    rc: 1,
    status: '0x4183',
    verdict: 'unchanged',
    sha256: h('e'),
    expected: 'n/a',
    before: h('e'),
    says: 'NVMe status: Command Size Limit Exceeded(0x4183)',
  });
  assert.equal(r.copies[0]?.says, 'NVMe Copy: success');
  assert.throws(() => parseReference('ref: done copies=0'), /no 'ref: device=' line/);
});
