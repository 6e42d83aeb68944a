import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCsts, Property } from '../nvme/fabrics.js';
import { encodeSetFeaturesCdw10, FeatureId } from '../nvme/features.js';
import {
  decodeAsyncEvent,
  decodeChangedNsList,
  encodeGetLogPage,
  LogPageId,
  NS_CHANGED_EVENT,
} from '../nvme/log-page.js';
import { AdminOpcode } from '../nvme/opcodes.js';
import { Status } from '../nvme/status.js';
import { FakeClock } from './testing/fake-clock.js';
import { CC_ENABLE, type LoopController } from './testing/loop.js';
import { assertStatus, NQN, ram, read, setup } from './testing/fixtures.js';

const aer = (c: LoopController) => c.admin.submit({ opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
const keepAlive = (c: LoopController) => c.admin.submit({ opcode: AdminOpcode.KEEP_ALIVE });
const changedNs = (c: LoopController, rae = false) =>
  c.admin.submit(
    {
      opcode: AdminOpcode.GET_LOG_PAGE,
      nsid: 0xffffffff,
      ...encodeGetLogPage({ lid: LogPageId.CHANGED_NS, length: 4096, rae }),
    },
    { length: 4096 },
  );

/** Lets promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

test('keep-alive: no command for KATO deletes the controller and closes all its queues', async () => {
  const clock = new FakeClock();
  const { host, target } = setup({ target: { clock }, namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { kato: 5000, ioQueues: 2 });
  const ctrl = c.controller;
  // Setting up the queues was traffic in the first period, which buys the second one.
  clock.advance(5000);
  assert.equal(ctrl.live, true);
  clock.advance(4999);
  assert.equal(ctrl.live, true);
  clock.advance(1);
  assert.equal(ctrl.live, false);
  assert.match(ctrl.deleteReason!, /keep-alive timer \(5 s\) expired/);
  assert.equal(decodeCsts(ctrl.csts).cfs, true);
  assert.equal(c.io.every((q) => q.queue.closed) && c.admin.queue.closed, true);
  assert.equal(host.deleted.length, 1);
  assert.equal(target.subsystem(NQN)!.controllers.size, 0);
  assert.equal(clock.pending, 0, 'no timer left behind');
});

test('keep-alive: a Keep Alive command starts a fresh period', async () => {
  const clock = new FakeClock();
  const { host } = setup({ target: { clock } });
  const c = await host.connectController(NQN, { kato: 2000 });
  clock.advance(1500);
  assertStatus((await keepAlive(c)).cqe, Status.SUCCESS);
  clock.advance(1999);
  assert.equal(c.controller.live, true);
  clock.advance(1);
  assert.equal(c.controller.live, false);
});

test('keep-alive: traffic during a period buys one more period (nvmet TBKAS grace), not more', async () => {
  const clock = new FakeClock();
  const { host } = setup({ target: { clock }, namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { kato: 1000, ioQueues: 1 });
  clock.advance(900);
  assertStatus((await read(c.io[0]!, 1, 0, 1)).cqe, Status.SUCCESS);
  clock.advance(100); // the period ends, but I/O arrived in it
  assert.equal(c.controller.live, true);
  clock.advance(999);
  assert.equal(c.controller.live, true);
  clock.advance(1); // a whole period without any command
  assert.equal(c.controller.live, false);
});

test('keep-alive: KATO 0 never expires; Set Features KATO starts a timer from that moment', async () => {
  const clock = new FakeClock();
  const { host } = setup({ target: { clock } });
  const c = await host.connectController(NQN, { kato: 0 });
  clock.advance(10 * 60 * 1000);
  assert.equal(c.controller.live, true);
  await c.admin.submit({
    opcode: AdminOpcode.SET_FEATURES,
    cdw10: encodeSetFeaturesCdw10(FeatureId.KATO),
    cdw11: 3000,
  });
  clock.advance(2999);
  assert.equal(c.controller.live, true);
  clock.advance(1);
  assert.equal(c.controller.live, false);
});

test('keep-alive: CC.EN 0→1 restarts the period', async () => {
  const clock = new FakeClock();
  const { host } = setup({ target: { clock } });
  const c = await host.connectController(NQN, { kato: 3000, enable: false });
  clock.advance(2500);
  await c.propertySet(Property.CC, CC_ENABLE); // traffic, and a fresh period from t=2500
  clock.advance(2999);
  assert.equal(c.controller.live, true);
  clock.advance(1);
  assert.equal(c.controller.live, false, 'no command since CC.EN');
});

test('discovery controllers connected with KATO 0 get 120 s', async () => {
  const clock = new FakeClock();
  const { host } = setup({ target: { clock } });
  const d = await host.connectController('nqn.2014-08.org.nvmexpress.discovery');
  assert.equal(d.controller.kato, 120);
  clock.advance(119_999);
  assert.equal(d.controller.live, true);
  clock.advance(1);
  assert.equal(d.controller.live, false);
});

test('AER completes when a namespace is added, with the changed namespace list to read', async () => {
  const { host, target } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN);
  const pending = aer(c);
  let done = false;
  void pending.then(() => (done = true));
  await settle();
  assert.equal(done, false, 'an AER waits for an event');
  target.addNamespace(NQN, { nsid: 7, device: ram(1 << 20) });
  const r = await pending;
  assertStatus(r.cqe, Status.SUCCESS);
  assert.equal(r.cqe.dw0, NS_CHANGED_EVENT);
  assert.deepEqual(decodeAsyncEvent(r.cqe.dw0), { type: 2, info: 0, lid: 4 });
  const log = await changedNs(c);
  assert.deepEqual(decodeChangedNsList(log.data!), [7]);
});

test('AER on removal; events stay masked until the log is read without RAE', async () => {
  const { host, target } = setup({
    namespaces: [
      { nsid: 1, device: ram(1 << 20) },
      { nsid: 2, device: ram(1 << 20) },
    ],
  });
  const c = await host.connectController(NQN);
  const first = aer(c);
  await target.removeNamespace(NQN, 2);
  assert.equal((await first).cqe.dw0, NS_CHANGED_EVENT);
  // Masked: a second change does not complete the next AER...
  const second = aer(c);
  let fired = false;
  void second.then(() => (fired = true));
  await target.removeNamespace(NQN, 1);
  await settle();
  assert.equal(fired, false);
  // ...reading with RAE keeps it masked, reading without RAE re-arms it.
  assert.deepEqual(decodeChangedNsList((await changedNs(c, true)).data!), [1, 2]);
  target.addNamespace(NQN, { nsid: 3, device: ram(1 << 20) });
  await settle();
  assert.equal(fired, false);
  assert.deepEqual(decodeChangedNsList((await changedNs(c, false)).data!), [3]);
  target.addNamespace(NQN, { nsid: 4, device: ram(1 << 20) });
  assert.equal((await second).cqe.dw0, NS_CHANGED_EVENT);
});

test('an event that happens with no AER outstanding is delivered to the next AER', async () => {
  const { host, target } = setup();
  const c = await host.connectController(NQN);
  target.addNamespace(NQN, { nsid: 1, device: ram(1 << 20) });
  const r = await aer(c);
  assert.equal(r.cqe.dw0, NS_CHANGED_EVENT);
});

test('namespace notices disabled: the list still records changes, no event is sent', async () => {
  const { host, target } = setup();
  const c = await host.connectController(NQN);
  await c.admin.submit({
    opcode: AdminOpcode.SET_FEATURES,
    cdw10: encodeSetFeaturesCdw10(FeatureId.ASYNC_EVENT),
    cdw11: 0,
  });
  const p = aer(c);
  let fired = false;
  void p.then(() => (fired = true));
  target.addNamespace(NQN, { nsid: 1, device: ram(1 << 20) });
  await settle();
  assert.equal(fired, false);
  assert.deepEqual(decodeChangedNsList((await changedNs(c)).data!), [1]);
});

test('AER limit: a fifth outstanding request gets Asynchronous Event Request Limit Exceeded', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  const held = [aer(c), aer(c), aer(c), aer(c)];
  const fifth = await aer(c);
  assertStatus(fifth.cqe, Status.ASYNC_LIMIT, true);
  assert.equal(c.controller.outstandingAers, 4);
  // Deleting the controller ends the held AERs (their responses are dropped with the queue).
  c.controller.delete('test');
  assert.equal(c.controller.outstandingAers, 0);
  assert.equal(held.length, 4);
});

test('more than 1024 changed namespaces collapse to FFFFFFFFh', async () => {
  const { host, target } = setup();
  const c = await host.connectController(NQN);
  await c.admin.submit({
    opcode: AdminOpcode.SET_FEATURES,
    cdw10: encodeSetFeaturesCdw10(FeatureId.ASYNC_EVENT),
    cdw11: 0,
  });
  for (let nsid = 1; nsid <= 1025; nsid++) c.controller.namespaceChanged(nsid);
  assert.deepEqual(decodeChangedNsList((await changedNs(c)).data!), [0xffffffff]);
  assert.equal(target.subsystem(NQN)!.namespaces.length, 0);
});
