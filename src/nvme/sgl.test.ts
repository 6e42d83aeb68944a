import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeSgl,
  encodeSgl,
  inCapsuleSgl,
  KeyedSglDescriptor,
  SglDescriptor,
  SglIdentifier,
  SglsSupport,
  transportSgl,
} from './sgl.js';
import { gaps } from '../util/struct.js';

test('SGL descriptors are 16 bytes with the identifier in byte 15', () => {
  assert.equal(SglDescriptor.SIZE, 16);
  assert.equal(SglDescriptor.offsetOf('addr'), 0);
  assert.equal(SglDescriptor.offsetOf('length'), 8);
  assert.equal(SglDescriptor.offsetOf('type'), 15);
  assert.deepEqual(gaps(SglDescriptor), []);
  assert.equal(KeyedSglDescriptor.offsetOf('key'), 11);
  assert.equal(KeyedSglDescriptor.offsetOf('type'), 15);
  assert.deepEqual(gaps(KeyedSglDescriptor), []);
});

test('the two forms the Linux TCP host sends', () => {
  assert.equal(SglIdentifier.INCAPSULE, 0x01);
  assert.equal(SglIdentifier.TRANSPORT, 0x5a);
  assert.equal(inCapsuleSgl(1024).toString('hex'), '0000000000000000' + '00040000' + '000000' + '01');
  assert.equal(transportSgl(8192).toString('hex'), '0000000000000000' + '00200000' + '000000' + '5a');
  const d = decodeSgl(inCapsuleSgl(512, 16));
  assert.deepEqual(d, { type: 1, descriptorType: 0, subtype: 1, addr: 16n, length: 512 });
  assert.deepEqual(decodeSgl(encodeSgl({ type: 0x5a, length: 0 })).length, 0);
  assert.throws(() => decodeSgl(Buffer.alloc(8)), /needs 16 bytes/);
});

test('SGLS bits', () => {
  assert.equal(SglsSupport.SUPPORTED, 1);
  assert.equal(SglsSupport.KEYED, 4);
  assert.equal(SglsSupport.OFFSET, 0x100000);
  assert.equal(SglsSupport.TRANSPORT, 0x200000);
});
