import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultDevice } from '../devices/fault.js';
import { cmdEffectsOf, CmdEffects } from '../nvme/effects-log.js';
import {
  decodeHostBehavior,
  encodeGetFeaturesCdw10,
  encodeHostBehavior,
  encodeNumQueues,
  encodeSetFeaturesCdw10,
  FeatureId,
} from '../nvme/features.js';
import {
  Cns,
  CntrlType,
  decodeIdCtrl,
  decodeIdNs,
  decodeNsIdDescs,
  decodeNsList,
  encodeIdentify,
  IdNsCsIndep,
  idNsBlockSize,
  Nidt,
  Oncs,
} from '../nvme/identify.js';
import {
  decodeChangedNsList,
  decodeU128,
  encodeGetLogPage,
  ErrorLogEntry,
  LogPageId,
  SmartLog,
} from '../nvme/log-page.js';
import { AdminOpcode, IoOpcode } from '../nvme/opcodes.js';
import { decodeStatusField, Status } from '../nvme/status.js';
import { deriveIdentifiers, formatUuid } from './namespace.js';
import type { LoopController, LoopResult } from './testing/loop.js';
import { assertStatus, NQN, ram, read, rw, setup, write } from './testing/fixtures.js';

function identify(c: LoopController, cns: number, nsid = 0, csi = 0): Promise<LoopResult> {
  return c.admin.submit(
    { opcode: AdminOpcode.IDENTIFY, nsid, ...encodeIdentify({ cns, csi }) },
    { length: 4096 },
  );
}

function getLog(
  c: LoopController,
  lid: number,
  length: number,
  extra: { nsid?: number; rae?: boolean; lpo?: number; csi?: number } = {},
) {
  return c.admin.submit(
    {
      opcode: AdminOpcode.GET_LOG_PAGE,
      nsid: extra.nsid ?? 0xffffffff,
      ...encodeGetLogPage({ lid, length, ...extra }),
    },
    { length },
  );
}

function getFeature(c: LoopController, fid: number, cdw11 = 0, length = 0) {
  return c.admin.submit(
    { opcode: AdminOpcode.GET_FEATURES, cdw10: encodeGetFeaturesCdw10(fid), cdw11 },
    { length },
  );
}

function setFeature(c: LoopController, fid: number, cdw11 = 0, data?: Buffer) {
  return c.admin.submit(
    { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(fid), cdw11 },
    data ? { data } : {},
  );
}

test('Identify Controller reports the subsystem, the Copy bit, OCFS, MDTS and in-capsule size', async () => {
  const { host } = setup({
    subsystem: { serial: 'SN123', model: 'tsblk test', firmware: '9.9', copyFormats: 0x05 },
    target: { maxDataTransferBytes: 256 * 1024 },
    host: { inlineDataSize: 4096 },
    namespaces: [{ nsid: 3000, device: ram(1 << 20) }],
  });
  const c = await host.connectController(NQN);
  const r = await identify(c, Cns.CTRL);
  assertStatus(r.cqe, Status.SUCCESS);
  const id = decodeIdCtrl(r.data!);
  assert.equal(id.sn, 'SN123');
  assert.equal(id.mn, 'tsblk test');
  assert.equal(id.fr, '9.9');
  assert.equal(id.subnqn, NQN);
  assert.equal(id.cntlid, c.cntlid);
  assert.equal(id.cntrltype, CntrlType.IO);
  assert.equal(id.mdts, 6, '256 KiB = 4 KiB × 2^6');
  assert.equal(id.oncs & Oncs.COPY, Oncs.COPY);
  assert.equal(id.oncs & (Oncs.DSM | Oncs.WRITE_ZEROES), Oncs.DSM | Oncs.WRITE_ZEROES);
  assert.equal(id.ocfs, 0x05);
  assert.equal(id.ioccsz, (64 + 4096) / 16);
  assert.equal(id.iorcsz, 1);
  assert.equal(id.sgls & 0x100001, 0x100001);
  assert.equal(id.nn, 3000, 'NN covers the highest NSID');
  assert.equal(id.aerl, 3);
  assert.equal(id.kas, 10);
  assert.equal(id.vwc & 1, 1);
  assert.equal(id.ver, 0x00020100);
});

test('Identify Namespace: sizes in blocks, LBA format, copy limits from the device, read-only, identifiers', async () => {
  const offload = ram(8 << 20, {
    logicalBlockSize: 4096,
    copy: { maxBytes: 1 << 20, maxHwBytes: 1 << 20, maxRangeBytes: 64 << 10, maxRanges: 16 },
  });
  const plain = ram(1 << 20, { copy: false, physicalBlockSize: 4096 });
  const { host } = setup({
    namespaces: [
      { nsid: 1, device: offload },
      { nsid: 2, device: plain, readOnly: true },
      { nsid: 3, device: ram(1 << 20), copyLimits: { mssrl: 128, mcl: 128, msrc: 127 } },
    ],
  });
  const c = await host.connectController(NQN);
  const a = decodeIdNs((await identify(c, Cns.NS, 1)).data!);
  assert.equal(a.nsze, 2048n);
  assert.equal(a.ncap, 2048n);
  assert.equal(a.nuse, 2048n);
  assert.equal(idNsBlockSize(a), 4096);
  assert.equal(a.mssrl, 16, 'maxRangeBytes 64 KiB / 4 KiB');
  assert.equal(a.mcl, 256, 'maxBytes 1 MiB / 4 KiB');
  assert.equal(a.msrc, 15, 'maxRanges 16, 0-based');
  assert.equal(a.nsattr, 0);
  const b = decodeIdNs((await identify(c, Cns.NS, 2)).data!);
  assert.equal(b.nsze, 2048n);
  assert.equal(idNsBlockSize(b), 512);
  assert.equal(b.nsattr & 1, 1, 'read-only namespace is write protected');
  assert.equal(b.mssrl, 0xffff, 'no offload: emulated default MSSRL');
  assert.equal(b.mcl, (128 << 20) / 512, 'no offload: MCL keeps one command within 128 MiB');
  assert.equal(b.msrc, 255);
  assert.equal(b.npwg, 7, '4 KiB physical blocks of 512-byte LBAs (0-based)');
  assert.equal(b.nows, 7);
  assert.equal(b.dlfeat & 0x7, 1, 'deallocated blocks read as zeroes');
  const q = decodeIdNs((await identify(c, Cns.NS, 3)).data!);
  assert.deepEqual([q.mssrl, q.mcl, q.msrc], [128, 128, 127], 'per-namespace overrides, like QEMU');
  const ids = deriveIdentifiers(NQN, 1);
  assert.deepEqual(a.nguid, ids.nguid);
  assert.deepEqual(a.eui64, ids.eui64);
  assert.equal(a.eui64[0]! & 0x03, 0x02, 'locally administered, unicast');
  const inactive = await identify(c, Cns.NS, 9);
  assertStatus(inactive.cqe, Status.SUCCESS);
  assert.equal(
    inactive.data!.every((x) => x === 0),
    true,
    'inactive NSID: zero-filled',
  );
  assertStatus((await identify(c, Cns.NS, 0xffffffff)).cqe, Status.INVALID_NS, true);
});

test('NGUID, EUI-64 and UUID are stable for the same NQN and NSID and differ otherwise', () => {
  const a = deriveIdentifiers(NQN, 1);
  const b = deriveIdentifiers(NQN, 1);
  const c = deriveIdentifiers(NQN, 2);
  const d = deriveIdentifiers('nqn.2024-01.io.tsblk:other', 1);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.nguid, c.nguid);
  assert.notDeepEqual(a.eui64, d.eui64);
  assert.match(formatUuid(a.uuid), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('active namespace list, descriptor list, CSI structures and unknown CNS', async () => {
  const { host } = setup({ namespaces: [5, 1, 9].map((nsid) => ({ nsid, device: ram(1 << 20) })) });
  const c = await host.connectController(NQN);
  assert.deepEqual(decodeNsList((await identify(c, Cns.NS_ACTIVE_LIST, 0)).data!), [1, 5, 9]);
  assert.deepEqual(decodeNsList((await identify(c, Cns.NS_ACTIVE_LIST, 1)).data!), [5, 9]);
  assert.deepEqual(decodeNsList((await identify(c, Cns.CSI_NS_ACTIVE_LIST, 0, 0)).data!), [1, 5, 9]);
  assertStatus((await identify(c, Cns.NS_ACTIVE_LIST, 0xfffffffe)).cqe, Status.INVALID_NS, true);
  const descs = decodeNsIdDescs((await identify(c, Cns.NS_DESC_LIST, 5)).data!);
  const ids = deriveIdentifiers(NQN, 5);
  assert.deepEqual(
    descs.map((d) => d.nidt),
    [Nidt.EUI64, Nidt.NGUID, Nidt.UUID, Nidt.CSI],
  );
  assert.deepEqual(Buffer.from(descs[2]!.nid), ids.uuid);
  assertStatus((await identify(c, Cns.NS_DESC_LIST, 2)).cqe, Status.INVALID_NS, true);
  assertStatus((await identify(c, Cns.CSI_NS, 1, 0)).cqe, Status.SUCCESS);
  assertStatus((await identify(c, Cns.CSI_NS, 1, 2)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await identify(c, Cns.CSI_CTRL, 0, 0)).cqe, Status.SUCCESS);
  const indep = IdNsCsIndep.decode((await identify(c, Cns.CSI_INDEPENDENT_ID_NS, 9)).data!);
  assert.equal(indep.nstat & 1, 1, 'namespace ready');
  const iocs = (await identify(c, Cns.COMMAND_SET_STRUCTURE)).data!;
  assert.equal(iocs.readBigUInt64LE(0), 1n, 'NVM command set only');
  const bad = await identify(c, 0x15);
  assertStatus(bad.cqe, Status.INVALID_FIELD, true);
  assert.equal(bad.req.errorLoc, 40);
});

test('error log: failed commands that name a field, newest first, with the More bit set', async () => {
  const { host } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const bad = await read(c.io[0]!, 1, 2048, 1);
  assertStatus(bad.cqe, Status.LBA_RANGE, true);
  assert.equal(bad.cqe.status.more, true);
  const bad2 = await c.io[0]!.submit({ opcode: 0x7e, nsid: 1 });
  assertStatus(bad2.cqe, Status.INVALID_OPCODE, true);
  const r = await getLog(c, LogPageId.ERROR, 2 * 64);
  const e0 = ErrorLogEntry.decode(r.data!, 0);
  const e1 = ErrorLogEntry.decode(r.data!, 64);
  assert.equal(e0.error_count, 2n);
  assert.equal(e0.cmdid, bad2.cqe.cid);
  assert.equal(e0.parm_error_location, 0);
  assert.equal(e1.error_count, 1n);
  assert.equal(e1.sqid, 1);
  assert.equal(e1.lba, 2048n);
  assert.equal(e1.parm_error_location, 40);
  assert.equal(decodeStatusField(e1.status_field).status.sc, Status.LBA_RANGE.sc);
});

test('SMART log counts host reads, writes and data units per namespace and for all', async () => {
  const { host } = setup({
    namespaces: [
      { nsid: 1, device: ram(1 << 20) },
      { nsid: 2, device: ram(1 << 20) },
    ],
  });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const q = c.io[0]!;
  await write(q, 1, 0, Buffer.alloc(512 * 1001, 1));
  await read(q, 1, 0, 8);
  await read(q, 2, 0, 8);
  const all = SmartLog.decode((await getLog(c, LogPageId.SMART, 512)).data!);
  assert.equal(decodeU128(all.host_reads), 2n);
  assert.equal(decodeU128(all.host_writes), 1n);
  assert.equal(decodeU128(all.data_units_written), 2n, '1001 sectors = 2 units of 1000, rounded up');
  assert.equal(decodeU128(all.data_units_read), 1n);
  const one = SmartLog.decode((await getLog(c, LogPageId.SMART, 512, { nsid: 2 })).data!);
  assert.equal(decodeU128(one.host_reads), 1n);
  assert.equal(decodeU128(one.host_writes), 0n);
  assertStatus((await getLog(c, LogPageId.SMART, 512, { nsid: 7 })).cqe, Status.INVALID_NS, true);
});

test('commands supported and effects: admin and NVM commands, Copy changes logical blocks', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  const r = await getLog(c, LogPageId.CMD_EFFECTS, 4096, { csi: 0 });
  assertStatus(r.cqe, Status.SUCCESS);
  assert.equal(cmdEffectsOf(r.data!, 'admin', AdminOpcode.IDENTIFY), CmdEffects.CSUPP);
  assert.equal(cmdEffectsOf(r.data!, 'io', IoOpcode.COPY), CmdEffects.CSUPP | CmdEffects.LBCC);
  assert.equal(cmdEffectsOf(r.data!, 'io', IoOpcode.READ), CmdEffects.CSUPP);
  assert.equal(cmdEffectsOf(r.data!, 'io', IoOpcode.ZONE_APPEND), 0);
  assertStatus((await getLog(c, LogPageId.CMD_EFFECTS, 4096, { csi: 2 })).cqe, Status.INVALID_LOG_PAGE, true);
});

test('log page offsets: dword aligned, inside the page; slices zero-filled; unknown LIDs refused', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  const fw = await getLog(c, LogPageId.FW_SLOT, 512);
  assertStatus(fw.cqe, Status.SUCCESS);
  assertStatus((await getLog(c, LogPageId.SMART, 8, { lpo: 2 })).cqe, Status.INVALID_FIELD, true);
  assertStatus((await getLog(c, LogPageId.SMART, 8, { lpo: 1024 })).cqe, Status.INVALID_FIELD, true);
  const tail = await getLog(c, LogPageId.SMART, 16, { lpo: 508 });
  assertStatus(tail.cqe, Status.SUCCESS);
  assert.equal(tail.data!.length, 16);
  assert.equal(
    tail.data!.subarray(4).every((b) => b === 0),
    true,
  );
  const spare = await getLog(c, LogPageId.SMART, 4, { lpo: 0 });
  assert.equal(spare.data![3], 100, 'available spare 100%');
  assertStatus((await getLog(c, LogPageId.DISCOVER, 1024)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await getLog(c, 0xc0, 512)).cqe, Status.INVALID_FIELD, true);
});

test('Number of Queues: grants at most maxIoQueues, then refuses changes once I/O queues exist', async () => {
  const { host } = setup({ subsystem: { maxIoQueues: 4 } });
  const c = await host.connectController(NQN);
  const get0 = await getFeature(c, FeatureId.NUM_QUEUES);
  assert.equal(get0.cqe.dw0, encodeNumQueues({ nsq: 3, ncq: 3 }));
  const s = await setFeature(c, FeatureId.NUM_QUEUES, encodeNumQueues({ nsq: 7, ncq: 7 }));
  assert.equal(s.cqe.dw0, encodeNumQueues({ nsq: 3, ncq: 3 }));
  const s2 = await setFeature(c, FeatureId.NUM_QUEUES, encodeNumQueues({ nsq: 1, ncq: 1 }));
  assert.equal(s2.cqe.dw0, encodeNumQueues({ nsq: 1, ncq: 1 }));
  assertStatus((await c.connectIoQueue(3)).cqe, Status.CONNECT_INVALID_PARAM, true);
  assertStatus((await c.connectIoQueue(2)).cqe, Status.SUCCESS);
  assertStatus((await setFeature(c, FeatureId.NUM_QUEUES, 0)).cqe, Status.CMD_SEQ_ERROR, true);
  assertStatus((await setFeature(c, FeatureId.NUM_QUEUES, 0xffff)).cqe, Status.INVALID_FIELD, true);
});

test('Keep Alive Timer, Async Event Configuration, Volatile Write Cache, Arbitration, Power, Error Recovery', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN, { kato: 5000 });
  assert.equal((await getFeature(c, FeatureId.KATO)).cqe.dw0, 5000);
  await setFeature(c, FeatureId.KATO, 2500);
  assert.equal((await getFeature(c, FeatureId.KATO)).cqe.dw0, 3000, 'rounded up to whole seconds');
  assert.equal(
    (await getFeature(c, FeatureId.ASYNC_EVENT)).cqe.dw0,
    0x100,
    'namespace notices on by default',
  );
  assertStatus((await setFeature(c, FeatureId.ASYNC_EVENT, 1 << 11)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await setFeature(c, FeatureId.ASYNC_EVENT, 0x11f)).cqe, Status.SUCCESS);
  assert.equal((await getFeature(c, FeatureId.ASYNC_EVENT)).cqe.dw0, 0x11f);
  assert.equal((await getFeature(c, FeatureId.VOLATILE_WC)).cqe.dw0, 1);
  await setFeature(c, FeatureId.VOLATILE_WC, 0);
  assert.equal((await getFeature(c, FeatureId.VOLATILE_WC)).cqe.dw0, 0);
  assert.equal(c.controller.features.writeCache, false);
  await setFeature(c, FeatureId.ARBITRATION, 0x01020307);
  assert.equal((await getFeature(c, FeatureId.ARBITRATION)).cqe.dw0, 0x01020307);
  assertStatus((await setFeature(c, FeatureId.POWER_MGMT, 1)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await setFeature(c, FeatureId.ERR_RECOVERY, 1 << 16)).cqe, Status.INVALID_FIELD, true);
  await setFeature(c, FeatureId.ERR_RECOVERY, 30);
  assert.equal((await getFeature(c, FeatureId.ERR_RECOVERY)).cqe.dw0, 30);
  assertStatus((await getFeature(c, FeatureId.IRQ_COALESCE)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await setFeature(c, FeatureId.TIMESTAMP, 0)).cqe, Status.INVALID_FIELD, true);
});

test('Host Behavior Support: CDFE enables formats 2/3 only when OCFS has them; Host Identifier', async () => {
  const { host } = setup({ subsystem: { copyFormats: 0x05 } });
  const c = await host.connectController(NQN);
  const hb = await getFeature(c, FeatureId.HOST_BEHAVIOR, 0, 512);
  assert.equal(decodeHostBehavior(hb.data!).cdfe, 0);
  assertStatus(
    (await setFeature(c, FeatureId.HOST_BEHAVIOR, 0, encodeHostBehavior({ cdfe: 0x8 }))).cqe,
    Status.INVALID_FIELD,
    true,
  );
  assertStatus(
    (await setFeature(c, FeatureId.HOST_BEHAVIOR, 0, encodeHostBehavior({ cdfe: 0x4, acre: true }))).cqe,
    Status.SUCCESS,
  );
  const after = decodeHostBehavior((await getFeature(c, FeatureId.HOST_BEHAVIOR, 0, 512)).data!);
  assert.deepEqual([after.cdfe, after.acre], [0x4, true]);
  const short = await c.admin.submit(
    { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(FeatureId.HOST_BEHAVIOR) },
    { data: Buffer.alloc(256) },
  );
  assertStatus(short.cqe, Status.SGL_INVALID_DATA, true);
  const hostid = await getFeature(c, FeatureId.HOST_ID, 1, 16);
  assert.deepEqual(hostid.data, host.hostid);
  assertStatus((await getFeature(c, FeatureId.HOST_ID, 0, 16)).cqe, Status.INVALID_FIELD, true);
  assertStatus((await setFeature(c, FeatureId.HOST_ID, 1, Buffer.alloc(16))).cqe, Status.CMD_SEQ_ERROR, true);
});

test('Abort never aborts (DW0 bit 0 = 1); queue management opcodes are Invalid Opcode', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  const a = await c.admin.submit({ opcode: AdminOpcode.ABORT, cdw10: 1 | (5 << 16) });
  assertStatus(a.cqe, Status.SUCCESS);
  assert.equal(a.cqe.dw0 & 1, 1);
  assertStatus((await c.admin.submit({ opcode: AdminOpcode.CREATE_SQ })).cqe, Status.INVALID_OPCODE, true);
  assertStatus((await c.admin.submit({ opcode: AdminOpcode.FORMAT_NVM })).cqe, Status.INVALID_OPCODE, true);
});

test('Keep Alive without KATO is Keep Alive Timeout Invalid', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN, { kato: 0 });
  assertStatus((await c.admin.submit({ opcode: AdminOpcode.KEEP_ALIVE })).cqe, Status.KA_TIMEOUT_INVALID);
  const d = await host.connectController(NQN, { kato: 1000 });
  assertStatus((await d.admin.submit({ opcode: AdminOpcode.KEEP_ALIVE })).cqe, Status.SUCCESS);
});

test('write cache disabled: writes reach the device with FUA', async () => {
  const inner = ram(1 << 20);
  const seen: boolean[] = [];
  const spy = new (class extends FaultDevice {
    override async write(offset: number, data: Uint8Array, options?: { fua?: boolean }): Promise<void> {
      seen.push(options?.fua === true);
      return super.write(offset, data, options);
    }
  })(inner);
  const { host } = setup({ namespaces: [{ nsid: 1, device: spy }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  await write(c.io[0]!, 1, 0, Buffer.alloc(512));
  await write(c.io[0]!, 1, 0, Buffer.alloc(512), 512, true);
  await setFeature(c, FeatureId.VOLATILE_WC, 0);
  await write(c.io[0]!, 1, 0, Buffer.alloc(512));
  assert.deepEqual(seen, [false, true, true]);
  assertStatus((await c.io[0]!.submit(rw(IoOpcode.READ, 1, 0, 1), { length: 512 })).cqe, Status.SUCCESS);
});

test('changed namespace list log clears on read', async () => {
  const { host, target } = setup();
  const c = await host.connectController(NQN);
  target.addNamespace(NQN, { nsid: 4, device: ram(1 << 20) });
  target.addNamespace(NQN, { nsid: 2, device: ram(1 << 20) });
  const r = await getLog(c, LogPageId.CHANGED_NS, 4096);
  assert.deepEqual(decodeChangedNsList(r.data!), [2, 4]);
  const again = await getLog(c, LogPageId.CHANGED_NS, 4096);
  assert.deepEqual(decodeChangedNsList(again.data!), []);
});

test('MDTS: the largest 4 KiB × 2^n within both the target and the transport limit', async () => {
  const { host } = setup({ host: { maxDataTransferBytes: 100_000 } });
  const c = await host.connectController(NQN);
  assert.equal(decodeIdCtrl((await identify(c, Cns.CTRL)).data!).mdts, 4, '64 KiB ≤ 100000 < 128 KiB');
  assert.equal(c.controller.maxDataTransferBytes, 64 * 1024);
});

test('OCFS defaults to 0x0F (formats 0–3), as QEMU advertises', async () => {
  const { host } = setup();
  const c = await host.connectController(NQN);
  assert.equal(decodeIdCtrl((await identify(c, Cns.CTRL)).data!).ocfs, 0x0f);
});
