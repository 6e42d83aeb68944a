import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdminOpcode, dataTransfer, DataTransfer, FabricsType, IoOpcode, opcodeName } from './opcodes.js';

test('opcodes match nvme.h / libnvme', () => {
  assert.equal(AdminOpcode.GET_LOG_PAGE, 0x02);
  assert.equal(AdminOpcode.IDENTIFY, 0x06);
  assert.equal(AdminOpcode.ABORT, 0x08);
  assert.equal(AdminOpcode.SET_FEATURES, 0x09);
  assert.equal(AdminOpcode.GET_FEATURES, 0x0a);
  assert.equal(AdminOpcode.ASYNC_EVENT_REQUEST, 0x0c);
  assert.equal(AdminOpcode.KEEP_ALIVE, 0x18);
  assert.equal(AdminOpcode.FABRICS, 0x7f);
  assert.equal(IoOpcode.FLUSH, 0x00);
  assert.equal(IoOpcode.WRITE, 0x01);
  assert.equal(IoOpcode.READ, 0x02);
  assert.equal(IoOpcode.WRITE_ZEROES, 0x08);
  assert.equal(IoOpcode.DSM, 0x09);
  assert.equal(IoOpcode.COPY, 0x19);
  assert.equal(IoOpcode.ZONE_APPEND, 0x7d);
  assert.deepEqual(FabricsType, {
    PROPERTY_SET: 0x00,
    CONNECT: 0x01,
    PROPERTY_GET: 0x04,
    AUTH_SEND: 0x05,
    AUTH_RECEIVE: 0x06,
    DISCONNECT: 0x08,
  });
});

test('data direction is bits 1:0 of opcode or fctype', () => {
  assert.equal(dataTransfer(IoOpcode.WRITE), DataTransfer.HOST_TO_CTRL);
  assert.equal(dataTransfer(IoOpcode.READ), DataTransfer.CTRL_TO_HOST);
  assert.equal(dataTransfer(IoOpcode.FLUSH), DataTransfer.NONE);
  assert.equal(dataTransfer(IoOpcode.COPY), DataTransfer.HOST_TO_CTRL);
  assert.equal(dataTransfer(AdminOpcode.IDENTIFY), DataTransfer.CTRL_TO_HOST);
  assert.equal(dataTransfer(0x7f, FabricsType.CONNECT), DataTransfer.HOST_TO_CTRL);
  assert.equal(dataTransfer(0x7f, FabricsType.PROPERTY_GET), DataTransfer.NONE);
});

test('names depend on the queue', () => {
  assert.equal(opcodeName(0, 0x06), 'IDENTIFY');
  assert.equal(opcodeName(1, 0x19), 'COPY');
  assert.equal(opcodeName(1, 0x01), 'WRITE');
  assert.equal(opcodeName(0, 0x01), 'CREATE_SQ');
  assert.equal(opcodeName(3, 0x7f, 0x01), 'fabrics CONNECT');
  assert.equal(opcodeName(0, 0x7f, 0x42), 'fabrics fctype 0x42');
  assert.equal(opcodeName(1, 0x99), 'I/O opcode 0x99');
});
