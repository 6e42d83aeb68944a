import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExtentList, alignRuns } from './extent-list.js';

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });
const zero = (length: number) => ({ length, hole: false, zero: true });

describe('ExtentList', () => {
  it('merges adjacent runs with equal flags and ignores empty ones', () => {
    const l = new ExtentList();
    l.push(512, true, true);
    l.push(0, false, false);
    l.push(1024, true, true);
    l.push(512, false, false);
    l.push(512, false, true);
    assert.deepEqual(l.toArray(), [hole(1536), data(512), zero(512)]);
    assert.equal(l.covered, 2560);
    assert.equal(l.count, 3);
  });

  it('pushAll cuts at max bytes and says how many it took', () => {
    const l = new ExtentList();
    assert.equal(l.pushAll([hole(4096), data(4096)], 6144), 6144);
    assert.deepEqual(l.toArray(), [hole(4096), data(2048)]);
    assert.equal(l.pushAll([data(512)], 4096), 512);
    assert.deepEqual(l.toArray(), [hole(4096), data(2560)]);
  });

  it('toArray returns copies that later pushes do not change', () => {
    const l = new ExtentList();
    l.push(512, true, true);
    const first = l.toArray();
    l.push(512, true, true);
    assert.deepEqual(first, [hole(512)]);
  });
});

describe('alignRuns', () => {
  it('keeps runs that are already whole blocks', () => {
    assert.deepEqual(alignRuns([hole(8192), data(4096)], 4096), [hole(8192), data(4096)]);
  });

  it('a block shared by a hole and data becomes data; one shared by holes stays a hole', () => {
    // 4096-byte blocks over 1024-byte pieces: block 0 = hole 3 KiB + data 1 KiB → data;
    // block 1 = data 1 KiB + hole 3 KiB → data; blocks 2..3 holes.
    const got = alignRuns([hole(3072), data(2048), hole(3072 + 8192)], 4096);
    assert.deepEqual(got, [data(8192), hole(8192)]);
  });

  it('zero survives only where every part reads as zeroes', () => {
    assert.deepEqual(alignRuns([hole(2048), zero(2048), data(4096)], 4096), [zero(4096), data(4096)]);
  });

  it('drops a trailing partial block, unless it is all there is (then one data block)', () => {
    assert.deepEqual(alignRuns([hole(4096), hole(1024)], 4096), [hole(4096)]);
    assert.deepEqual(alignRuns([hole(1024)], 4096), [data(4096)]);
    assert.deepEqual(alignRuns([], 4096), []);
  });
});
