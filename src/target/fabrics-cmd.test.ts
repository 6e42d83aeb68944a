import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeCap,
  decodeConnectInvalid,
  decodeCsts,
  encodeCc,
  FabricsCommand,
  Property,
} from '../nvme/fabrics.js';
import { encodeSqe } from '../nvme/command.js';
import { AdminOpcode, IoOpcode } from '../nvme/opcodes.js';
import { transportSgl } from '../nvme/sgl.js';
import { Status } from '../nvme/status.js';
import { DISCOVERY_NQN } from './subsystem.js';
import { asCapsule, CC_ENABLE } from './testing/loop.js';
import { assertStatus, NQN, ram, read, setup } from './testing/fixtures.js';

const OTHER_HOST = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555';

test('Connect to the admin queue creates a controller; DW0 is its dynamic CNTLID', async () => {
  const { host, target } = setup();
  const a = await host.connect(NQN);
  const b = await host.connect(NQN);
  assertStatus(a.result.cqe, Status.SUCCESS);
  assertStatus(b.result.cqe, Status.SUCCESS);
  const ids = [a.result.cqe.dw0, b.result.cqe.dw0];
  assert.deepEqual(ids, [1, 2]);
  assert.equal(target.subsystem(NQN)!.controllers.size, 2);
  assert.equal(a.queue.queue.qid, 0);
  assert.equal(a.queue.queue.size, 32, 'SQSIZE 31 is 32 entries');
  assert.equal(a.result.cqe.sqhd, 1, 'the SQ head moved past the Connect');
});

test('Connect to an unknown subsystem: Connect Invalid Parameters naming SUBNQN in the data', async () => {
  const { host, target } = setup();
  const { result } = await host.connect('nqn.2024-01.io.tsblk:nope');
  assertStatus(result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(result.cqe.dw0), { where: 'data', ipo: 256 });
  assert.equal(target.controllers.length, 0);
});

test('Connect by a host not on the list: Connect Invalid Host (0x84) naming HOSTNQN', async () => {
  const { host, target } = setup({ subsystem: { hosts: [OTHER_HOST] } });
  const { result } = await host.connect(NQN);
  assertStatus(result.cqe, Status.CONNECT_INVALID_HOST, true);
  assert.equal(result.cqe.status.sc, 0x84);
  assert.deepEqual(decodeConnectInvalid(result.cqe.dw0), { where: 'data', ipo: 512 });
  const ok = await host.connect(NQN, { hostnqn: OTHER_HOST });
  assertStatus(ok.result.cqe, Status.SUCCESS);
  // allowAnyHost overrides the list; removing the host closes the door again
  target.subsystem(NQN)!.allowAnyHost = true;
  assertStatus((await host.connect(NQN)).result.cqe, Status.SUCCESS);
});

test('Connect with a bad record format, a static CNTLID or SQSIZE 0 is refused', async () => {
  const { host } = setup();
  const f = await host.connect(NQN, { recfmt: 1 });
  assertStatus(f.result.cqe, Status.CONNECT_FORMAT, true);
  const c = await host.connect(NQN, { cntlid: 5 });
  assertStatus(c.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(c.result.cqe.dw0), { where: 'data', ipo: 16 });
  const z = await host.connect(NQN, { sqsize: 0 });
  assertStatus(z.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(z.result.cqe.dw0), { where: 'sqe', ipo: 44 });
});

test('I/O queue Connect: QID within the granted queues, SQSIZE within MQES, the right controller', async () => {
  const { host } = setup({ target: { maxQueueSize: 128 } });
  const c = await host.connectController(NQN, { ioQueues: 2 });
  assert.equal(c.io.length, 2);
  assert.equal(c.controller.queues.size, 3);
  assert.equal(c.io[0]!.queue.size, 128);
  const big = await host.connect(NQN, { cntlid: c.cntlid, sqsize: 128 }, 2);
  assertStatus(big.result.cqe, Status.CMD_SEQ_ERROR, true);
  c.io[1]!.close();
  const big2 = await host.connect(NQN, { cntlid: c.cntlid, sqsize: 128 }, 2);
  assertStatus(big2.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(big2.result.cqe.dw0), { where: 'sqe', ipo: 44 });
  const q3 = await host.connect(NQN, { cntlid: c.cntlid, sqsize: 127 }, 3);
  assertStatus(q3.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(q3.result.cqe.dw0), { where: 'sqe', ipo: 42 });
  const dup = await host.connect(NQN, { cntlid: c.cntlid }, 1);
  assertStatus(dup.result.cqe, Status.CMD_SEQ_ERROR, true);
  const stranger = await host.connect(NQN, { cntlid: c.cntlid, hostnqn: OTHER_HOST }, 2);
  assertStatus(stranger.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assert.deepEqual(decodeConnectInvalid(stranger.result.cqe.dw0), { where: 'data', ipo: 16 });
  const none = await host.connect(NQN, { cntlid: 999 }, 1);
  assertStatus(none.result.cqe, Status.CONNECT_INVALID_PARAM, true);
});

test('more controllers than maxControllers: Controller Busy; IDs come back round-robin', async () => {
  const { host } = setup({ subsystem: { maxControllers: 2 } });
  const a = await host.connectController(NQN);
  await host.connectController(NQN);
  const busy = await host.connect(NQN);
  assertStatus(busy.result.cqe, Status.CONNECT_CTRL_BUSY, true);
  a.close();
  const c = await host.connect(NQN);
  assertStatus(c.result.cqe, Status.SUCCESS);
  assert.equal(c.result.cqe.dw0, 3, 'the freed ID 1 is not handed out again at once');
});

test('an unconnected queue accepts only Connect', async () => {
  const { host } = setup();
  const q = host.newQueue();
  const r = await q.submit({ opcode: AdminOpcode.IDENTIFY, cdw10: 1 }, { length: 4096 });
  assertStatus(r.cqe, Status.INVALID_OPCODE, true);
  const sqe = asCapsule(encodeSqe({ opcode: 0x7f, cid: 9, nsid: 0x04 }));
  const pg = await q.submit(sqe);
  assertStatus(pg.cqe, Status.INVALID_OPCODE, true);
  assert.equal(pg.req.errorLoc, FabricsCommand.offsetOf('fctype'));
});

test('CC.EN=1 sets CSTS.RDY; admin and I/O commands before that get Command Sequence Error', async () => {
  const { host } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { enable: false });
  const early = await c.admin.submit({ opcode: AdminOpcode.IDENTIFY, cdw10: 1 }, { length: 4096 });
  assertStatus(early.cqe, Status.CMD_SEQ_ERROR, true);
  const csts0 = await c.propertyGet(Property.CSTS);
  assert.equal(decodeCsts(csts0.cqe.dw0).rdy, false);
  assertStatus((await c.propertySet(Property.CC, CC_ENABLE)).cqe, Status.SUCCESS);
  assert.equal(decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0).rdy, true);
  assert.equal((await c.propertyGet(Property.CC)).cqe.dw0, CC_ENABLE);
  const ok = await c.admin.submit({ opcode: AdminOpcode.IDENTIFY, cdw10: 1 }, { length: 4096 });
  assertStatus(ok.cqe, Status.SUCCESS);
});

test('shutdown notification: CSTS.SHST complete and RDY cleared; clearing SHN returns to normal', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  await c.propertySet(Property.CC, CC_ENABLE | encodeCc({ shn: 1 }));
  const s = decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0);
  assert.equal(s.shst, 2);
  assert.equal(s.rdy, false);
  await c.propertySet(Property.CC, 0);
  assert.equal(decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0).shst, 0);
  await c.propertySet(Property.CC, CC_ENABLE);
  assert.equal(decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0).rdy, true);
  await c.propertySet(Property.CC, 0);
  assert.equal(decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0).rdy, false, 'CC.EN 1→0 clears RDY');
});

test('CC.EN with unsupported entry sizes or page size sets CSTS.CFS instead of RDY', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN, { enable: false });
  await c.propertySet(Property.CC, encodeCc({ en: true, iosqes: 7, iocqes: 4 }));
  const s = decodeCsts((await c.propertyGet(Property.CSTS)).cqe.dw0);
  assert.equal(s.cfs, true);
  assert.equal(s.rdy, false);
  const d = await host.connectController(NQN, { enable: false });
  await d.propertySet(Property.CC, encodeCc({ en: true, iosqes: 6, iocqes: 4, mps: 1 }));
  assert.equal(decodeCsts((await d.propertyGet(Property.CSTS)).cqe.dw0).cfs, true);
});

test('Property Get: CAP (8 bytes) with MQES, TO, CSS; VS 2.1; bad offsets and sizes are Invalid Field', async () => {
  const { host } = setup({ target: { maxQueueSize: 256 } });
  const c = await host.connectController(NQN);
  const r = await c.propertyGet(Property.CAP, 8);
  assertStatus(r.cqe, Status.SUCCESS);
  const cap = decodeCap((BigInt(r.cqe.dw1) << 32n) | BigInt(r.cqe.dw0));
  assert.equal(cap.mqes, 255);
  assert.equal(cap.to, 15);
  assert.equal(cap.css & 1, 1, 'NVM command set');
  assert.equal(cap.mpsmin, 0);
  assert.equal((await c.propertyGet(Property.VS)).cqe.dw0, 0x00020100);
  assertStatus((await c.propertyGet(Property.CAP, 4)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await c.propertyGet(Property.NSSR)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await c.propertySet(Property.CSTS, 1)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await c.propertySet(Property.CC, 1n, 8)).cqe, Status.INVALID_FIELD, true);
});

test('Disconnect ends an I/O queue after its response; on the admin queue it is refused', async () => {
  const { host } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const dq = asCapsule(encodeSqe({ opcode: 0x7f, cid: 77, nsid: 0x08 }));
  const r = await c.io[0]!.submit(dq);
  assertStatus(r.cqe, Status.SUCCESS);
  assert.equal(r.req.disconnectAfterResponse, true);
  const ra = await c.admin.submit(asCapsule(encodeSqe({ opcode: 0x7f, cid: 78, nsid: 0x08 })));
  assertStatus(ra.cqe, Status.DISCONNECT_INVALID_QTYPE, true);
  // The transport closes the I/O connection; the controller lives on with its admin queue.
  c.io[0]!.close();
  assert.equal(c.controller.live, true);
  assert.equal(c.controller.queues.has(1), false);
  const again = await c.connectIoQueue(1);
  assertStatus(again.cqe, Status.SUCCESS);
  assertStatus((await read(c.io[1]!, 1, 0, 1)).cqe, Status.SUCCESS);
});

test('a second Connect on a connected queue is a Command Sequence Error; Auth Send is Invalid Opcode', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  const again = await c.admin.submit(asCapsule(encodeSqe({ opcode: 0x7f, cid: 5, nsid: 0x01 })));
  assertStatus(again.cqe, Status.CMD_SEQ_ERROR, true);
  const auth = await c.admin.submit(asCapsule(encodeSqe({ opcode: 0x7f, cid: 6, nsid: 0x05 })));
  assertStatus(auth.cqe, Status.INVALID_OPCODE, true);
});

test('closing the admin queue deletes the controller and closes its I/O queues', async () => {
  const { host, target } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { ioQueues: 2 });
  const ctrl = c.controller;
  c.admin.close();
  assert.equal(ctrl.live, false);
  assert.deepEqual(host.deleted, [{ cntlid: ctrl.cntlid, reason: 'admin queue closed' }]);
  assert.equal(
    c.io.every((q) => q.queue.closed),
    true,
  );
  assert.equal(target.subsystem(NQN)!.controllers.size, 0);
});

test('the discovery NQN admits any host, even when the subsystem list does not', async () => {
  const { host } = setup({ subsystem: { hosts: [OTHER_HOST] } });
  const d = await host.connectController(DISCOVERY_NQN);
  assert.equal(d.controller.subsystem.isDiscovery, true);
  // and has no I/O queues
  const io = await host.connect(DISCOVERY_NQN, { cntlid: d.cntlid }, 1);
  assertStatus(io.result.cqe, Status.CONNECT_INVALID_PARAM, true);
});

test('SGL checks: a transport SGL on a command without data still needs length 0 to match', async () => {
  const { host } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const flush = await c.io[0]!.submit({ opcode: IoOpcode.FLUSH, nsid: 1 }, { dptr: transportSgl(512) });
  assertStatus(flush.cqe, Status.SGL_INVALID_DATA, true);
});
