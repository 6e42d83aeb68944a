import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Status, withDnr } from './status.js';
import {
  AsyncEventType,
  buildSmartLog,
  CHANGED_NS_LOG_SIZE,
  dataUnits,
  decodeAsyncEvent,
  decodeChangedNsList,
  decodeDiscoveryLog,
  decodeGetLogPage,
  decodeU128,
  DISCOVERY_NQN,
  DiscoveryLogEntry,
  DiscoveryLogHeader,
  encodeAsyncEvent,
  encodeChangedNsList,
  encodeDiscoveryLog,
  encodeErrorLog,
  encodeErrorLogEntry,
  encodeGetLogPage,
  encodeU128,
  ErrorLogEntry,
  LogPageId,
  logPageSlice,
  NS_CHANGED_EVENT,
  SmartLog,
  SubType,
  TcpSecType,
  TrType,
} from './log-page.js';
import { assertLayout } from './testing/layout.js';

test('log page identifiers', () => {
  assert.equal(LogPageId.ERROR, 0x01);
  assert.equal(LogPageId.SMART, 0x02);
  assert.equal(LogPageId.CHANGED_NS, 0x04);
  assert.equal(LogPageId.DISCOVER, 0x70);
});

test('Get Log Page dwords: LID, LSP, RAE, NUMDL/NUMDU, LSI, LPO, CSI', () => {
  // A discovery log read of 4096 bytes at offset 1024 with RAE set, as nvme-cli sends it.
  const c = decodeGetLogPage({
    cdw10: (0x3ff << 16) | (1 << 15) | (0x01 << 8) | 0x70,
    cdw11: 0x00050000,
    cdw12: 1024,
    cdw13: 0,
    cdw14: 0x02800003,
  });
  assert.deepEqual(c, {
    lid: 0x70,
    lsp: 1,
    rae: true,
    numd: 0x3ff,
    length: 4096,
    lsi: 5,
    lpo: 1024,
    uuidIndex: 3,
    ot: true,
    csi: 2,
  });
  const big = decodeGetLogPage({ cdw10: 0xffff0002, cdw11: 0x0001, cdw12: 0, cdw13: 1, cdw14: 0 });
  assert.equal(big.numd, 0x1ffff);
  assert.equal(big.length, 0x20000 * 4);
  assert.equal(big.lpo, 2 ** 32);
  const enc = encodeGetLogPage({
    lid: 0x70,
    length: 4096,
    lsp: 1,
    rae: true,
    lsi: 5,
    lpo: 1024,
    csi: 2,
    ot: true,
    uuidIndex: 3,
  });
  assert.deepEqual(decodeGetLogPage(enc), c);
  assert.deepEqual(decodeGetLogPage(encodeGetLogPage({ lid: 2, length: 0x80000 })).length, 0x80000);
  assert.throws(() => encodeGetLogPage({ lid: 2, length: 6 }), /multiple of 4/);
});

test('logPageSlice honours offset and zero fills', () => {
  const page = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...logPageSlice(page, 4, 8)], [5, 6, 7, 8, 0, 0, 0, 0]);
  assert.deepEqual([...logPageSlice(page, 100, 4)], [0, 0, 0, 0]);
});

test('error information entry layout and encoding', () => {
  // prettier-ignore
  assertLayout(ErrorLogEntry, 64, {
    error_count: 0, sqid: 8, cmdid: 10, status_field: 12, parm_error_location: 14, lba: 16, nsid: 24, vs: 28,
    trtype: 29, csi: 30, opcode: 31, cs: 32, trtype_spec_info: 40, rsvd42: 42, log_page_version: 63,
  });
  const e = encodeErrorLogEntry({
    errorCount: 3,
    sqid: 1,
    cid: 0x22,
    status: withDnr(Status.LBA_RANGE),
    errorLoc: 40,
    lba: 1000,
    nsid: 1,
    opcode: 0x02,
    trtype: TrType.TCP,
  });
  assert.equal(e.readBigUInt64LE(0), 3n);
  assert.equal(e.readUInt16LE(8), 1);
  assert.equal(e.readUInt16LE(10), 0x22);
  assert.equal(e.readUInt16LE(12), 0x8000 | (0x80 << 1)); // DNR | SC 0x80, phase 0
  assert.equal(e.readUInt16LE(14), 40);
  assert.equal(e.readBigUInt64LE(16), 1000n);
  assert.equal(e.readUInt32LE(24), 1);
  assert.equal(e[29], 3);
  assert.equal(e[31], 0x02);
  assert.equal(
    encodeErrorLogEntry({ errorCount: 1, sqid: 0, cid: 0, status: Status.INTERNAL }).readUInt16LE(14),
    0xffff,
  );
  const log = encodeErrorLog(
    [
      { errorCount: 2, sqid: 1, cid: 1, status: Status.INTERNAL },
      { errorCount: 1, sqid: 1, cid: 0, status: Status.INTERNAL },
    ],
    4096,
  );
  assert.equal(log.length, 4096);
  assert.equal(log.readBigUInt64LE(64), 1n);
  assert.equal(log.readBigUInt64LE(128), 0n);
  const partial = encodeErrorLog([{ errorCount: 9, sqid: 0, cid: 0, status: Status.INTERNAL }], 8);
  assert.equal(partial.readBigUInt64LE(0), 9n);
});

test('SMART / health log layout and builder', () => {
  // prettier-ignore
  assertLayout(SmartLog, 512, {
    critical_warning: 0, temperature: 1, avail_spare: 3, spare_thresh: 4, percent_used: 5,
    endu_grp_crit_warn_sumry: 6, rsvd7: 7, data_units_read: 32, data_units_written: 48, host_reads: 64,
    host_writes: 80, ctrl_busy_time: 96, power_cycles: 112, power_on_hours: 128, unsafe_shutdowns: 144,
    media_errors: 160, num_err_log_entries: 176, warning_temp_time: 192, critical_comp_time: 196, temp_sensor: 200,
    thm_temp1_trans_count: 216, thm_temp2_trans_count: 220, thm_temp1_total_time: 224, thm_temp2_total_time: 228,
    rsvd232: 232,
  });
  const s = buildSmartLog({
    temperature: 313,
    dataUnitsRead: dataUnits(1_024_000),
    hostReads: 2n ** 70n,
    numErrLogEntries: 4,
  });
  assert.equal(s.length, 512);
  assert.equal(s.readUInt16LE(1), 313);
  assert.equal(s[3], 100);
  assert.equal(s[4], 10);
  assert.equal(decodeU128(s.subarray(32, 48)), 2n); // 1,024,000 bytes = 2000 units of 512 → 2 data units
  assert.equal(decodeU128(s.subarray(64, 80)), 2n ** 70n);
  assert.equal(s.readBigUInt64LE(176), 4n);
  assert.equal(dataUnits(1), 1);
  assert.deepEqual(encodeU128(1n << 64n).toString('hex'), '00000000000000000100000000000000');
  assert.throws(() => encodeU128(-1), /not a u128/);
});

test('changed namespace list: 1024 entries, overflow marker', () => {
  const buf = encodeChangedNsList([7, 2, 7]);
  assert.equal(buf.length, CHANGED_NS_LOG_SIZE);
  assert.equal(CHANGED_NS_LOG_SIZE, 4096);
  assert.deepEqual(decodeChangedNsList(buf), [2, 7]);
  const over = encodeChangedNsList(Array.from({ length: 1025 }, (_, i) => i + 1));
  assert.deepEqual(decodeChangedNsList(over), [0xffffffff]);
  const full = encodeChangedNsList(Array.from({ length: 1024 }, (_, i) => i + 1));
  assert.equal(decodeChangedNsList(full).length, 1024);
  assert.equal(full.readUInt32LE(4092), 1024);
});

test('discovery log header and entry layouts', () => {
  assertLayout(DiscoveryLogHeader, 1024, { genctr: 0, numrec: 8, recfmt: 16, rsvd18: 18 });
  // prettier-ignore
  assertLayout(DiscoveryLogEntry, 1024, {
    trtype: 0, adrfam: 1, subtype: 2, treq: 3, portid: 4, cntlid: 6, asqsz: 8, eflags: 10, rsvd12: 12, trsvcid: 32,
    rsvd64: 64, subnqn: 256, traddr: 512, tsas: 768,
  });
});

test('discovery log: known bytes and round trip', () => {
  const log = encodeDiscoveryLog(5n, [
    { portid: 1, trsvcid: '4420', traddr: '127.0.0.1', subnqn: 'nqn.2026-01.io.tsblk:ram0' },
    {
      portid: 1,
      trsvcid: '8009',
      traddr: '127.0.0.1',
      subnqn: DISCOVERY_NQN,
      subtype: SubType.CURRENT_DISCOVERY,
      sectype: TcpSecType.TLS13,
    },
  ]);
  assert.equal(log.length, 3 * 1024);
  assert.equal(log.readBigUInt64LE(0), 5n);
  assert.equal(log.readBigUInt64LE(8), 2n);
  assert.equal(log.readUInt16LE(16), 0);
  const e0 = log.subarray(1024, 2048);
  assert.deepEqual([...e0.subarray(0, 12)], [3, 1, 2, 0, 1, 0, 0xff, 0xff, 32, 0, 0, 0]);
  assert.equal(e0.toString('latin1', 32, 64), '4420'.padEnd(32, ' '));
  assert.equal(e0.toString('latin1', 512, 521), '127.0.0.1');
  assert.equal(e0[521], 0x20, 'TRADDR is space padded');
  assert.equal(e0.toString('latin1', 256, 281), 'nqn.2026-01.io.tsblk:ram0');
  assert.equal(e0[281], 0, 'SUBNQN is NUL padded');
  assert.equal(log[2048 + 768], 2, 'TSAS SECTYPE');
  const d = decodeDiscoveryLog(log);
  assert.equal(d.genctr, 5n);
  assert.equal(d.numrec, 2);
  assert.equal(d.entries[1]!.subnqn, DISCOVERY_NQN);
  assert.equal(d.entries[1]!.trsvcid, '8009');
  assert.equal(d.entries[0]!.traddr, '127.0.0.1');
  // a host that read only the header sees numrec but no entries
  const head = decodeDiscoveryLog(logPageSlice(log, 0, 1024));
  assert.equal(head.numrec, 2);
  assert.equal(head.entries.length, 0);
  // NUL padded fields (nvmet) decode the same
  const nul = Buffer.from(log);
  nul.fill(0, 1024 + 32 + 4, 1024 + 64);
  assert.equal(decodeDiscoveryLog(nul).entries[0]!.trsvcid, '4420');
});

test('AER completion DW0 for a namespace change (nvmet layout)', () => {
  assert.equal(NS_CHANGED_EVENT, (0x04 << 16) | (0x00 << 8) | 0x2);
  assert.deepEqual(decodeAsyncEvent(NS_CHANGED_EVENT), { type: AsyncEventType.NOTICE, info: 0, lid: 4 });
  assert.equal(encodeAsyncEvent({ type: 7, info: 0xf0, lid: 0x70 }), 0x70f007);
  assert.throws(() => encodeAsyncEvent({ type: 8, info: 0, lid: 0 }), /event type/);
});
