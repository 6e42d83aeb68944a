import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode } from '../block/errors.js';
import { setCopyMaxBytes } from '../block/limits.js';
import { ZonedDevice } from '../devices/zoned.js';
import { deriveCopyLimits, EMULATED_COPY_LIMITS, Namespace } from './namespace.js';
import { NQN, ram } from './testing/fixtures.js';

const MiB = 1024 * 1024;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return BlockError.is(err) ? err.code : 'not a BlockError';
  }
  return undefined;
}

test('copy limits from an offloading device: MSSRL ≤ 65535 and ≤ MCL, MSRC = maxRanges − 1 (≤ 255)', () => {
  assert.deepEqual(deriveCopyLimits(ram(MiB)), { mssrl: 0xffff, mcl: (128 * MiB) / 512, msrc: 255 });
  const small = ram(MiB, {
    logicalBlockSize: 4096,
    copy: { maxBytes: 8 * 4096, maxHwBytes: 8 * 4096, maxRangeBytes: 64 * 4096, maxRanges: 1000 },
  });
  assert.deepEqual(deriveCopyLimits(small), { mssrl: 8, mcl: 8, msrc: 255 });
});

test('no offload (no copy limits, or copy.maxBytes 0): the emulation defaults', () => {
  const expect512 = { mssrl: 0xffff, mcl: EMULATED_COPY_LIMITS.maxBytes / 512, msrc: 255 };
  assert.deepEqual(deriveCopyLimits(ram(MiB, { copy: false })), expect512);
  const off = ram(MiB);
  setCopyMaxBytes(off.limits, 0);
  assert.deepEqual(deriveCopyLimits(off), expect512);
  assert.equal(new Namespace(NQN, { nsid: 1, device: off }).copyOffload, false);
  assert.deepEqual(deriveCopyLimits(ram(MiB, { copy: false, logicalBlockSize: 4096 })), {
    mssrl: EMULATED_COPY_LIMITS.maxBytes / 4096,
    mcl: EMULATED_COPY_LIMITS.maxBytes / 4096,
    msrc: 255,
  });
});

test('namespace options are checked: NSID, identifiers, copy limit overrides; zoned devices refused', () => {
  const dev = ram(MiB);
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 0, device: dev })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 0xffffffff, device: dev })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 1, device: dev, nguid: 'abcd' })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 1, device: dev, eui64: new Uint8Array(7) })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 1, device: dev, copyLimits: { msrc: 256 } })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 1, device: dev, copyLimits: { mssrl: 128, mcl: 64 } })),
    ErrorCode.EINVAL,
  );
  const zoned = new ZonedDevice(ram(4 * MiB), { zoneSize: MiB });
  assert.equal(
    code(() => new Namespace(NQN, { nsid: 1, device: zoned })),
    ErrorCode.EOPNOTSUPP,
  );
  const ns = new Namespace(NQN, {
    nsid: 1,
    device: dev,
    nguid: '00112233-4455-6677-8899-aabbccddeeff',
    eui64: '02:00:00:00:00:00:00:01',
    uuid: '6f2a8c1e-3b7d-4e59-9a0c-5d1e8f2b4c73',
  });
  assert.equal(ns.nguid.toString('hex'), '00112233445566778899aabbccddeeff');
  assert.equal(ns.eui64.toString('hex'), '0200000000000001');
  assert.equal(ns.uuid.toString('hex'), '6f2a8c1e3b7d4e599a0c5d1e8f2b4c73');
});

test('read-only from the option or the device; size and LBADS from the device', () => {
  const ro = new Namespace(NQN, { nsid: 1, device: ram(MiB, { readOnly: true }) });
  assert.equal(ro.readOnly, true);
  const ns = new Namespace(NQN, { nsid: 2, device: ram(MiB, { logicalBlockSize: 4096 }), readOnly: true });
  assert.deepEqual([ns.readOnly, ns.blocks, ns.lbads, ns.copyOffload], [true, 256, 12, true]);
});

test('drain waits for the commands in flight', async () => {
  const ns = new Namespace(NQN, { nsid: 1, device: ram(MiB) });
  let idle = false;
  void ns.drain().then(() => (idle = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(idle, true, 'nothing in flight: drains at once');
  const leave1 = ns.enter();
  const leave2 = ns.enter();
  let drained = false;
  void ns.drain().then(() => (drained = true));
  leave1();
  leave1(); // leaving twice counts once
  await new Promise((r) => setImmediate(r));
  assert.equal(drained, false);
  assert.equal(ns.inflight, 1);
  leave2();
  await new Promise((r) => setImmediate(r));
  assert.equal(drained, true);
});
