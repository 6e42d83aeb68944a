import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeGetFeaturesCdw10, encodeSetFeaturesCdw10, FeatureId } from '../nvme/features.js';
import { CntrlType, decodeIdCtrl, encodeIdentify, Oaes } from '../nvme/identify.js';
import {
  AdrFam,
  decodeAsyncEvent,
  decodeDiscoveryLog,
  encodeGetLogPage,
  LogPageId,
  SubType,
  TrType,
} from '../nvme/log-page.js';
import { AdminOpcode } from '../nvme/opcodes.js';
import { Status } from '../nvme/status.js';
import { DISCOVERY_NQN } from './subsystem.js';
import { Target, type PortRecord } from './target.js';
import { LoopHost, type LoopController } from './testing/loop.js';
import { assertStatus, ram } from './testing/fixtures.js';

const A = 'nqn.2024-01.io.tsblk:a';
const B = 'nqn.2024-01.io.tsblk:b';
const OTHER = 'nqn.2014-08.org.nvmexpress:uuid:99999999-2222-4333-8444-555555555555';
const P1: PortRecord = { portid: 1, adrfam: 'ipv4', traddr: '127.0.0.1', trsvcid: '4420' };
const P2: PortRecord = { portid: 2, adrfam: 'ipv6', traddr: '::1', trsvcid: '4421', subsystems: [A] };

function discoveryLog(c: LoopController, length = 4096, rae = false) {
  return c.admin.submit(
    { opcode: AdminOpcode.GET_LOG_PAGE, ...encodeGetLogPage({ lid: LogPageId.DISCOVER, length, rae }) },
    { length },
  );
}

function target(): Target {
  return new Target({
    subsystems: [
      { nqn: A, namespaces: [{ nsid: 1, device: ram(1 << 20) }] },
      { nqn: B, hosts: [OTHER] },
    ],
    ports: [P2, P1],
  });
}

test('discovery Identify Controller: CNTRLTYPE discovery, the well-known NQN, discovery-change events', async () => {
  const host = new LoopHost(target());
  const d = await host.connectController(DISCOVERY_NQN);
  const r = await d.admin.submit(
    { opcode: AdminOpcode.IDENTIFY, ...encodeIdentify({ cns: 1 }) },
    { length: 4096 },
  );
  assertStatus(r.cqe, Status.SUCCESS);
  const id = decodeIdCtrl(r.data!);
  assert.equal(id.cntrltype, CntrlType.DISCOVERY);
  assert.equal(id.subnqn, DISCOVERY_NQN);
  assert.equal(id.oaes >>> 0, Oaes.DISCOVERY_CHANGE >>> 0);
  assert.equal(id.oncs, 0);
  assert.equal(id.nn, 0);
  const ns = await d.admin.submit(
    { opcode: AdminOpcode.IDENTIFY, ...encodeIdentify({ cns: 0 }) },
    { length: 4096 },
  );
  assertStatus(ns.cqe, Status.INVALID_FIELD, true);
});

test('discovery log: one entry per port × subsystem the port exposes and the host may use', async () => {
  const t = target();
  const host = new LoopHost(t);
  const d = await host.connectController(DISCOVERY_NQN);
  const log = decodeDiscoveryLog((await discoveryLog(d)).data!);
  assert.equal(log.numrec, 2, 'port 1 × A, port 2 × A; B does not admit this host');
  assert.equal(log.recfmt, 0);
  assert.deepEqual(
    log.entries.map((e) => [
      e.portid,
      e.subnqn,
      e.traddr,
      e.trsvcid,
      e.adrfam,
      e.trtype,
      e.subtype,
      e.cntlid,
      e.asqsz,
    ]),
    [
      [1, A, '127.0.0.1', '4420', AdrFam.IP4, TrType.TCP, SubType.NVME, 0xffff, 32],
      [2, A, '::1', '4421', AdrFam.IP6, TrType.TCP, SubType.NVME, 0xffff, 32],
    ],
  );
  assert.equal(log.entries[0]!.tsas[0], 0, 'SECTYPE none');
  const other = new LoopHost(t, { hostnqn: OTHER });
  const d2 = await other.connectController(DISCOVERY_NQN);
  const log2 = decodeDiscoveryLog((await discoveryLog(d2)).data!);
  assert.deepEqual(
    log2.entries.map((e) => [e.portid, e.subnqn]),
    [
      [1, A],
      [1, B],
      [2, A],
    ],
  );
});

test('the header alone, then the rest at an offset, as hosts read it', async () => {
  const host = new LoopHost(target());
  const d = await host.connectController(DISCOVERY_NQN);
  const head = decodeDiscoveryLog((await discoveryLog(d, 1024)).data!);
  assert.equal(head.numrec, 2);
  assert.equal(head.entries.length, 0);
  const tail = await d.admin.submit(
    {
      opcode: AdminOpcode.GET_LOG_PAGE,
      ...encodeGetLogPage({ lid: LogPageId.DISCOVER, length: 1024, lpo: 2048 }),
    },
    { length: 1024 },
  );
  assert.equal(tail.data!.readUInt16LE(4), 2, 'the second entry, port 2');
  const odd = await d.admin.submit(
    {
      opcode: AdminOpcode.GET_LOG_PAGE,
      ...encodeGetLogPage({ lid: LogPageId.DISCOVER, length: 1024, lpo: 6 }),
    },
    { length: 1024 },
  );
  assertStatus(odd.cqe, Status.INVALID_FIELD, true);
  const smart = await d.admin.submit(
    { opcode: AdminOpcode.GET_LOG_PAGE, ...encodeGetLogPage({ lid: LogPageId.SMART, length: 512 }) },
    { length: 512 },
  );
  assertStatus(smart.cqe, Status.INVALID_FIELD, true);
});

test('GENCTR changes with subsystems, ports and hosts, and an AER reports the change', async () => {
  const t = target();
  const host = new LoopHost(t);
  const d = await host.connectController(DISCOVERY_NQN);
  const g0 = decodeDiscoveryLog((await discoveryLog(d)).data!).genctr;
  const aer = d.admin.submit({ opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
  t.addSubsystem({ nqn: 'nqn.2024-01.io.tsblk:c' });
  const ev = await aer;
  assert.deepEqual(decodeAsyncEvent(ev.cqe.dw0), { type: 2, info: 0xf0, lid: 0x70 });
  const l1 = decodeDiscoveryLog((await discoveryLog(d)).data!);
  assert.ok(l1.genctr > g0);
  assert.equal(l1.numrec, 3);
  t.removePort(2);
  const l2 = decodeDiscoveryLog((await discoveryLog(d)).data!);
  assert.ok(l2.genctr > l1.genctr);
  assert.equal(l2.numrec, 2);
  t.subsystem(B)!.addHost(host.hostnqn);
  const l3 = decodeDiscoveryLog((await discoveryLog(d)).data!);
  assert.ok(l3.genctr > l2.genctr);
  assert.equal(l3.numrec, 3);
  await t.removeSubsystem(B);
  assert.equal(decodeDiscoveryLog((await discoveryLog(d)).data!).numrec, 2);
});

test('discovery features: KATO and async event configuration only; other commands are Invalid Opcode', async () => {
  const host = new LoopHost(target());
  const d = await host.connectController(DISCOVERY_NQN, { kato: 30_000 });
  const k = await d.admin.submit({
    opcode: AdminOpcode.GET_FEATURES,
    cdw10: encodeGetFeaturesCdw10(FeatureId.KATO),
  });
  assert.equal(k.cqe.dw0, 30_000);
  const bad = await d.admin.submit({
    opcode: AdminOpcode.SET_FEATURES,
    cdw10: encodeSetFeaturesCdw10(FeatureId.ASYNC_EVENT),
    cdw11: 1 << 8,
  });
  assertStatus(bad.cqe, Status.INVALID_FIELD, true);
  const nq = await d.admin.submit({
    opcode: AdminOpcode.SET_FEATURES,
    cdw10: encodeSetFeaturesCdw10(FeatureId.NUM_QUEUES),
  });
  assertStatus(nq.cqe, Status.INVALID_FIELD, true);
  assertStatus((await d.admin.submit({ opcode: AdminOpcode.ABORT })).cqe, Status.INVALID_OPCODE, true);
  assertStatus((await d.admin.submit({ opcode: AdminOpcode.KEEP_ALIVE })).cqe, Status.SUCCESS);
  assertStatus((await d.admin.submit({ opcode: AdminOpcode.FORMAT_NVM })).cqe, Status.INVALID_OPCODE, true);
});

test('before CC.EN the discovery controller answers Invalid Opcode, as nvmet', async () => {
  const host = new LoopHost(target());
  const d = await host.connectController(DISCOVERY_NQN, { enable: false });
  const r = await d.admin.submit(
    { opcode: AdminOpcode.IDENTIFY, ...encodeIdentify({ cns: 1 }) },
    { length: 4096 },
  );
  assertStatus(r.cqe, Status.INVALID_OPCODE, true);
});

test('a port that does not expose a subsystem refuses Connect to it', async () => {
  const t = target();
  const on2 = new LoopHost(t, { portid: 2, hostnqn: OTHER });
  const r = await on2.connect(B);
  assertStatus(r.result.cqe, Status.CONNECT_INVALID_PARAM, true);
  assertStatus((await on2.connect(A)).result.cqe, Status.SUCCESS);
  assertStatus((await on2.connect(DISCOVERY_NQN)).result.cqe, Status.SUCCESS);
  const on1 = new LoopHost(t, { portid: 1, hostnqn: OTHER });
  assertStatus((await on1.connect(B)).result.cqe, Status.SUCCESS);
});

test('removing a port deletes the controllers that came through it', async () => {
  const t = target();
  const on1 = new LoopHost(t, { portid: 1 });
  const c = await on1.connectController(A);
  t.removePort(1);
  assert.equal(c.controller.live, false);
  assert.match(c.controller.deleteReason!, /port 1 removed/);
});
