import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRwCdw12, splitLba } from '../../nvme/command.js';
import { IoOpcode } from '../../nvme/opcodes.js';
import { isSuccess, NvmeStatusError } from '../../nvme/status.js';
import { NQN, ram, setup } from '../../target/testing/fixtures.js';
import { HostError } from '../errors.js';
import { LoopParent } from './loop-parent.js';

function fixture(mdts?: number) {
  const device = ram(1024 * 1024);
  const { host } = setup({
    namespaces: [
      { nsid: 1, device },
      { nsid: 2, device: ram(65536) },
    ],
    ...(mdts ? { host: { maxDataTransferBytes: mdts } } : {}),
  });
  return { host, device };
}

test('connect reads Identify Controller, MDTS in bytes and the copy formats', async () => {
  const { host } = fixture(64 * 1024);
  const p = await LoopParent.connect(host, NQN);
  assert.equal(p.name, `${NQN}@loop`);
  assert.equal(p.idCtrl.subnqn, NQN);
  assert.equal(p.maxDataTransferBytes, 64 * 1024);
  assert.deepEqual([...p.copyFormats].sort(), [0, 1]);
  assert.equal(p.controller.io.length, 2);
  const cross = await LoopParent.connect(host, NQN, { crossNamespaceCopy: 0x4, ioQueues: 1 });
  assert.deepEqual([...cross.copyFormats].sort(), [0, 1, 2]);
  assert.equal(cross.controller.io.length, 1);
});

test('submitIo carries data both ways; the last block of the namespace included', async () => {
  const { host, device } = fixture();
  const p = await LoopParent.connect(host, NQN);
  const last = device.size / 512 - 1;
  const data = Buffer.alloc(512, 0xa5);
  const w = await p.submitIo({
    sqe: { opcode: IoOpcode.WRITE, nsid: 1, ...splitLba(last), cdw12: encodeRwCdw12({ nlb: 0 }) },
    data,
  });
  assert.ok(isSuccess(w.status), 'write succeeded');
  const into = new Uint8Array(512);
  const r = await p.submitIo({
    sqe: { opcode: IoOpcode.READ, nsid: 1, ...splitLba(last), cdw12: encodeRwCdw12({ nlb: 0 }) },
    into,
  });
  assert.ok(isSuccess(r.status), 'read succeeded');
  assert.deepEqual(Buffer.from(into), data);
  // An error status resolves; it does not reject.
  const bad = await p.submitIo({
    sqe: { opcode: IoOpcode.READ, nsid: 1, ...splitLba(last + 1), cdw12: encodeRwCdw12({ nlb: 0 }) },
    into,
  });
  assert.equal(bad.status.sc, 0x80);
});

test('an aborted command is HostError ABORTED; after close every command is DELETED', async () => {
  const { host } = fixture();
  const p = await LoopParent.connect(host, NQN);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(
    p.submitIo({ sqe: { opcode: IoOpcode.FLUSH, nsid: 1 }, signal: ac.signal }),
    (e: unknown) => HostError.is(e) && e.code === 'ABORTED',
  );
  await assert.rejects(p.identifyNamespace(0xffffffff), (e: unknown) => NvmeStatusError.is(e));
  assert.equal(Number((await p.identifyNamespace(2)).nsze), 128);
  p.close();
  await assert.rejects(
    p.submitIo({ sqe: { opcode: IoOpcode.FLUSH, nsid: 1 } }),
    (e: unknown) => HostError.is(e) && e.code === 'DELETED',
  );
  await assert.rejects(p.identifyNamespace(1), (e: unknown) => HostError.is(e) && e.code === 'DELETED');
});
