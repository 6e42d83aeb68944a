import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, MIN_POOLED_BYTES } from './buffer-pool.js';

test('take gives exactly the length asked; a given-back buffer is reused for the same class', () => {
  const pool = new BufferPool();
  const a = pool.take(1024 * 1024);
  assert.equal(a.length, 1024 * 1024);
  a.fill(7);
  pool.give(a);
  assert.equal(pool.freeBytes, 1024 * 1024);
  const b = pool.take(1000 * 1000); // same 1 MiB class
  assert.equal(b.length, 1000 * 1000);
  assert.equal(b.buffer, a.buffer, 'the same memory comes back');
  assert.equal(pool.freeBytes, 0);
  const c = pool.take(1024 * 1024);
  assert.notEqual(c.buffer, a.buffer, 'a taken buffer is never handed out twice');
});

test('small and oversized requests are plain buffers and are not pooled', () => {
  const pool = new BufferPool({ maxClassBytes: 1024 * 1024 });
  const small = pool.take(MIN_POOLED_BYTES - 1);
  assert.equal(small.length, MIN_POOLED_BYTES - 1);
  pool.give(small);
  const big = pool.take(2 * 1024 * 1024);
  pool.give(big);
  assert.equal(pool.freeBytes, 0);
});

test('give ignores foreign buffers, views not at offset 0 and double gives; the per-class cap holds', () => {
  const pool = new BufferPool({ maxPerClass: 2 });
  pool.give(Buffer.alloc(100 * 1024)); // not a power-of-two ArrayBuffer
  const a = pool.take(MIN_POOLED_BYTES);
  pool.give(a.subarray(1));
  assert.equal(pool.freeBytes, 0);
  pool.give(a);
  pool.give(a);
  assert.equal(pool.freeBytes, MIN_POOLED_BYTES, 'given twice, kept once');
  const bufs = [pool.take(MIN_POOLED_BYTES), pool.take(MIN_POOLED_BYTES), pool.take(MIN_POOLED_BYTES)];
  for (const b of bufs) pool.give(b);
  assert.equal(pool.freeBytes, 2 * MIN_POOLED_BYTES);
});
