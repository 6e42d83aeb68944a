import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteQueue } from './byte-queue.js';

function own(bytes: number[]): Buffer {
  const b = Buffer.alloc(bytes.length); // its own memory, not Node's shared pool
  b.set(bytes);
  return b;
}

test('bytes inside one chunk come back as a view; across chunks as one copy', () => {
  const q = new ByteQueue();
  const a = own([1, 2, 3, 4]);
  const b = own([5, 6, 7]);
  q.push(a);
  q.push(new Uint8Array(0));
  q.push(new Uint8Array(b.buffer, b.byteOffset, b.length));
  assert.equal(q.length, 7);
  const view = q.consume(2);
  assert.equal(view.buffer, a.buffer);
  assert.deepEqual([...view], [1, 2]);
  const copy = q.peek(4);
  assert.deepEqual([...copy], [3, 4, 5, 6]);
  assert.notEqual(copy.buffer, a.buffer);
  assert.notEqual(copy.buffer, b.buffer);
  assert.equal(q.length, 5, 'peek consumes nothing');
  q.skip(3);
  assert.deepEqual([...q.consume(2)], [6, 7]);
  assert.equal(q.length, 0);
});

test('asking for more than is queued is a RangeError, and nothing is consumed', () => {
  const q = new ByteQueue();
  q.push(own([1, 2]));
  assert.throws(() => q.consume(3), /asked for 3 bytes, 2 queued/);
  assert.throws(() => q.skip(-1), RangeError);
  assert.equal(q.length, 2);
  q.clear();
  assert.equal(q.length, 0);
  assert.throws(() => q.peek(1), RangeError);
});

test('many one-byte chunks read back in order (the chunk list is compacted along the way)', () => {
  const q = new ByteQueue();
  const n = 5000;
  for (let i = 0; i < n; i++) q.push(own([i & 0xff]));
  let pos = 0;
  for (const size of [1, 7, 1024, 1500, 2468]) {
    const got = q.consume(size);
    for (let k = 0; k < size; k++) assert.equal(got[k], (pos + k) & 0xff);
    pos += size;
  }
  assert.equal(pos, n);
  assert.equal(q.length, 0);
});

test('consumeInto copies across chunks and consumes exactly the target length', () => {
  const q = new ByteQueue();
  q.push(Buffer.from([1, 2, 3]));
  q.push(Buffer.from([4, 5]));
  q.push(Buffer.from([6, 7, 8, 9]));
  const out = Buffer.alloc(6);
  q.consumeInto(out);
  assert.deepEqual([...out], [1, 2, 3, 4, 5, 6]);
  assert.equal(q.length, 3);
  assert.deepEqual([...q.consume(3)], [7, 8, 9]);
  assert.throws(() => q.consumeInto(Buffer.alloc(1)));
});
