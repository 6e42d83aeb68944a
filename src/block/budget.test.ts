import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ByteBudget } from './budget.js';

test('ByteBudget hands out bytes first come, first served, and records the peak', async () => {
  const b = new ByteBudget(10);
  await b.acquire(6);
  const order: string[] = [];
  const p1 = b.acquire(6).then(() => order.push('six'));
  const p2 = b.acquire(2).then(() => order.push('two')); // fits now, but waits its turn
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, []);
  b.release(6);
  await Promise.all([p1, p2]);
  assert.deepEqual(order, ['six', 'two']);
  assert.equal(b.used, 8);
  assert.equal(b.peak, 8);
  assert.throws(() => b.acquire(11), /exceed the whole budget/);
});

test('ByteBudget waiters can be aborted', async () => {
  const b = new ByteBudget(4);
  await b.acquire(4);
  const ac = new AbortController();
  const p = b.acquire(4, ac.signal);
  ac.abort();
  await assert.rejects(p, (e: Error & { code?: string }) => e.code === 'ECANCELED');
  b.release(4);
  assert.equal(b.used, 0);
});
