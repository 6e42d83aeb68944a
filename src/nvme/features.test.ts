import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AsyncEventConfig,
  Cdfe,
  decodeArbitration,
  decodeAsyncEventConfig,
  decodeErrorRecovery,
  decodeGetFeatures,
  decodeHostBehavior,
  decodeIrqCoalesce,
  decodeKeepAliveTimer,
  decodeNumQueues,
  decodePowerMgmt,
  decodeSetFeatures,
  decodeTempThreshold,
  decodeVolatileWriteCache,
  encodeArbitration,
  encodeErrorRecovery,
  encodeGetFeaturesCdw10,
  encodeHostBehavior,
  encodeIrqCoalesce,
  encodeNumQueues,
  encodePowerMgmt,
  encodeSetFeaturesCdw10,
  encodeTempThreshold,
  encodeVolatileWriteCache,
  featureDataLength,
  FeatureId,
  FeatureSelect,
  HostBehavior,
} from './features.js';
import { assertLayout } from './testing/layout.js';

test('feature identifiers match libnvme enum nvme_features_id', () => {
  assert.equal(FeatureId.ARBITRATION, 0x01);
  assert.equal(FeatureId.POWER_MGMT, 0x02);
  assert.equal(FeatureId.TEMP_THRESH, 0x04);
  assert.equal(FeatureId.ERR_RECOVERY, 0x05);
  assert.equal(FeatureId.VOLATILE_WC, 0x06);
  assert.equal(FeatureId.NUM_QUEUES, 0x07);
  assert.equal(FeatureId.IRQ_COALESCE, 0x08);
  assert.equal(FeatureId.ASYNC_EVENT, 0x0b);
  assert.equal(FeatureId.KATO, 0x0f);
  assert.equal(FeatureId.HOST_BEHAVIOR, 0x16);
  assert.equal(FeatureId.HOST_ID, 0x81);
  assert.equal(FeatureId.WRITE_PROTECT, 0x84);
});

test('Set Features: FID 7:0, SV 31; Get Features: SEL 10:8', () => {
  const set = decodeSetFeatures({ cdw10: 0x80000007, cdw11: 0x00030003, cdw12: 0, cdw13: 0, cdw14: 0x45 });
  assert.deepEqual(set, { fid: 7, sv: true, cdw11: 0x00030003, cdw12: 0, cdw13: 0, uuidIndex: 0x45 });
  assert.equal(encodeSetFeaturesCdw10(7, true), 0x80000007);
  const get = decodeGetFeatures({ cdw10: 0x0000030b, cdw11: 0, cdw12: 0, cdw13: 0, cdw14: 0 });
  assert.deepEqual(get, { fid: 0x0b, sel: FeatureSelect.SUPPORTED_CAPABILITIES, cdw11: 0, uuidIndex: 0 });
  assert.equal(encodeGetFeaturesCdw10(0x0b, FeatureSelect.SUPPORTED_CAPABILITIES), 0x30b);
  assert.equal(encodeGetFeaturesCdw10(0x06), 0x6);
  assert.throws(() => encodeGetFeaturesCdw10(0x100), /FID/);
});

test('Number of Queues: NSQR 15:0, NCQR 31:16, 0s based', () => {
  assert.deepEqual(decodeNumQueues(0x00070003), { nsq: 3, ncq: 7 });
  assert.equal(encodeNumQueues({ nsq: 0xfffe, ncq: 1 }), 0x0001fffe);
});

test('other feature values round trip through their bit layouts', () => {
  assert.deepEqual(decodeArbitration(0x04030207), { ab: 7, lpw: 2, mpw: 3, hpw: 4 });
  assert.equal(encodeArbitration({ ab: 7, lpw: 2, mpw: 3, hpw: 4 }), 0x04030207);
  assert.deepEqual(decodePowerMgmt(0xe3), { ps: 3, wh: 7 });
  assert.equal(encodePowerMgmt({ ps: 3, wh: 7 }), 0xe3);
  assert.deepEqual(decodeTempThreshold(0x00110157), { tmpth: 0x157, tmpsel: 1, thsel: 1 });
  assert.equal(encodeTempThreshold({ tmpth: 0x157, tmpsel: 1, thsel: 1 }), 0x00110157);
  assert.deepEqual(decodeErrorRecovery(0x00010064), { tler: 100, dulbe: true });
  assert.equal(encodeErrorRecovery({ tler: 100, dulbe: true }), 0x00010064);
  assert.deepEqual(decodeVolatileWriteCache(1), { wce: true });
  assert.equal(encodeVolatileWriteCache(false), 0);
  assert.deepEqual(decodeIrqCoalesce(0x0a05), { thr: 5, time: 10 });
  assert.equal(encodeIrqCoalesce({ thr: 5, time: 10 }), 0x0a05);
  assert.deepEqual(decodeKeepAliveTimer(15000), { katoMs: 15000 });
});

test('async event configuration bits (namespace attribute notices = bit 8)', () => {
  assert.equal(AsyncEventConfig.NS_ATTR, 0x100);
  assert.equal(AsyncEventConfig.DISCOVERY_CHANGE >>> 0, 0x80000000);
  const d = decodeAsyncEventConfig((0x100 | 0x80000000 | 0x1f) >>> 0);
  assert.deepEqual(d, {
    smart: 0x1f,
    nsAttr: true,
    fwActivation: false,
    telemetry: false,
    anaChange: false,
    discoveryChange: true,
  });
});

test('Host Behavior Support: 512 bytes, CDFE is the u16 at byte 4', () => {
  assertLayout(HostBehavior, 512, { acre: 0, etdas: 1, lbafee: 2, hdisns: 3, cdfe: 4, rsvd6: 6 });
  const buf = encodeHostBehavior({ acre: true, cdfe: Cdfe.FORMAT_2 | Cdfe.FORMAT_3 });
  assert.equal(buf.length, 512);
  assert.deepEqual([...buf.subarray(0, 6)], [1, 0, 0, 0, 0x0c, 0x00]);
  assert.deepEqual(decodeHostBehavior(buf), {
    acre: true,
    etdas: false,
    lbafee: false,
    hdisns: false,
    cdfe: 0x0c,
  });
  assert.throws(() => decodeHostBehavior(buf.subarray(0, 100)), /needs 512 bytes/);
  assert.equal(featureDataLength(FeatureId.HOST_BEHAVIOR), 512);
  assert.equal(featureDataLength(FeatureId.HOST_ID), 16);
  assert.equal(featureDataLength(FeatureId.NUM_QUEUES), 0);
});
