import { test } from 'node:test';
import assert from 'node:assert/strict';
import { issueCopy } from '../block/copy.js';
import type { BlockDevice } from '../block/device.js';
import { BlockError, CopyError, ErrorCode } from '../block/errors.js';
import { setCopyMaxBytes } from '../block/limits.js';
import { FaultDevice } from '../devices/fault.js';
import { decodeDsmCommand, decodeDsmRanges, decodeRwCdw12, Sqe } from '../nvme/command.js';
import { decodeCopyCommand, decodeCopySourceRanges } from '../nvme/copy.js';
import { buildIdNs, decodeIdNs, type IdCtrlFields, type IdNsFields } from '../nvme/identify.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { NvmeStatusError, Status, withDnr } from '../nvme/status.js';
import type { NamespaceOptions } from '../target/namespace.js';
import type { SubsystemOptions } from '../target/subsystem.js';
import type { Target } from '../target/target.js';
import { NQN, ram, setup } from '../target/testing/fixtures.js';
import type { IdCtrlNvmLimits } from './namespace-limits.js';
import { blockErrorFromHost, RemoteNamespace } from './remote-namespace.js';
import { HostError, type HostErrorCode } from './errors.js';
import { LoopParent, type LoopParentOptions } from './testing/loop-parent.js';
import type { HostCommand, HostCompletion, NamespaceParent } from './types.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Wraps a parent and records every I/O command, so tests can count and decode them. */
class RecordingParent implements NamespaceParent {
  readonly commands: HostCommand[] = [];
  idCtrl: IdCtrlFields;
  /** What NvmeController offers beyond the contract (Identify Controller NVM). */
  idCtrlNvm: IdCtrlNvmLimits | undefined;
  /** Replaces Identify Namespace answers when set. */
  identifyOverride: ((nsid: number) => Promise<IdNsFields>) | undefined;
  constructor(readonly inner: NamespaceParent) {
    this.idCtrl = inner.idCtrl;
  }
  get name() {
    return this.inner.name;
  }
  get maxDataTransferBytes() {
    return this.inner.maxDataTransferBytes;
  }
  get copyFormats() {
    return this.inner.copyFormats;
  }
  /** Answers a command in place of the controller when it returns a completion. */
  answer: ((command: HostCommand) => HostCompletion | undefined) | undefined;
  submitIo(command: HostCommand): Promise<HostCompletion> {
    this.commands.push(command);
    const local = this.answer?.(command);
    if (local) return Promise.resolve(local);
    return this.inner.submitIo(command);
  }
  identifyNamespace(nsid: number) {
    return this.identifyOverride?.(nsid) ?? this.inner.identifyNamespace(nsid);
  }
  opcodes(): number[] {
    return this.commands.map((c) => c.sqe.opcode!);
  }
  copies(): HostCommand[] {
    return this.commands.filter((c) => c.sqe.opcode === IoOpcode.COPY);
  }
}

interface Fixture {
  target: Target;
  devices: BlockDevice[];
  loop: LoopParent;
  parent: RecordingParent;
  ns: RemoteNamespace;
}

async function open(
  opts: {
    namespaces?: NamespaceOptions[];
    subsystem?: Partial<SubsystemOptions>;
    parent?: LoopParentOptions;
  } = {},
): Promise<Fixture> {
  const namespaces = opts.namespaces ?? [{ nsid: 1, device: ram(4 * MiB) }];
  const { target, host } = setup({ namespaces, subsystem: opts.subsystem ?? {} });
  const loop = await LoopParent.connect(host, NQN, opts.parent);
  const parent = new RecordingParent(loop);
  const ns = await RemoteNamespace.open(parent, namespaces[0]!.nsid);
  return { target, devices: namespaces.map((n) => n.device), loop, parent, ns };
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

async function readDev(dev: BlockDevice, offset: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  await dev.read(offset, b);
  return b;
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(BlockError.is(e), `not a BlockError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

const sqeOf = (c: HostCommand) => Sqe.decode(Sqe.encode(c.sqe));

// ---- open, limits, details ----

test('open: size, block size, name, kind and limits from the target’s Identify data', async () => {
  const { ns, loop } = await open();
  assert.equal(ns.kind, 'nvme');
  assert.equal(ns.name, `${NQN}@loop/n1`);
  assert.equal(ns.nsid, 1);
  assert.equal(ns.size, 4 * MiB);
  assert.equal(ns.limits.logicalBlockSize, 512);
  assert.equal(ns.limits.physicalBlockSize, 4096);
  assert.equal(ns.limits.maxTransferBytes, loop.maxDataTransferBytes);
  assert.equal(loop.maxDataTransferBytes, 1 * MiB);
  assert.equal(ns.limits.readOnly, false);
  assert.deepEqual(ns.limits.discard, {
    granularity: 512,
    maxBytes: 256 * 0xffffffff * 512,
    zeroesData: true,
  });
  assert.deepEqual(ns.limits.writeZeroes, { maxBytes: 1 * MiB, unmaps: true });
  // RamDevice copy limits through Identify: MSSRL 65535, MCL 128 MiB, MSRC 255.
  assert.deepEqual(ns.limits.copy, {
    maxBytes: 128 * MiB,
    maxHwBytes: 128 * MiB,
    maxRanges: 256,
    maxRangeBytes: 0xffff * 512,
  });
  assert.equal(Number(ns.idNs.nsze), 8192);
  const d = ns.details();
  assert.equal(d.nsid, 1);
  assert.equal(d.controller, `${NQN}@loop`);
  assert.equal(d.subnqn, NQN);
  assert.equal(d.copy, 'offload (NVMe Copy)');
  assert.equal(d.copyFormats, '0,1');
  assert.equal(d.blocks, 8192);
  assert.equal(d.volatileWriteCache, true);
  assert.equal(d.removed, false);
  assert.equal(typeof d.nguid, 'string');
  setCopyMaxBytes(ns.limits, 0);
  assert.equal(ns.details().copy, 'offload disabled (copy.maxBytes 0)');
});

test('open: a 4096-byte namespace; an inactive NSID is ENODEV; a bad NSID is EINVAL', async () => {
  const { ns, parent } = await open({
    namespaces: [{ nsid: 3, device: ram(1 * MiB, { logicalBlockSize: 4096 }) }],
  });
  assert.equal(ns.limits.logicalBlockSize, 4096);
  assert.equal(ns.size, 1 * MiB);
  await rejectsCode(RemoteNamespace.open(parent, 4), ErrorCode.ENODEV, /namespace 4 .* not active/);
  await rejectsCode(RemoteNamespace.open(parent, 0), ErrorCode.EINVAL);
  // FFFFFFFFh: the target answers Invalid Namespace; Identify failures are BlockErrors too.
  await rejectsCode(RemoteNamespace.open(parent, 0xffffffff), ErrorCode.EINVAL);
});

test('a controller without Copy (OCFS 0) gives no copy limits; issueCopy then emulates', async () => {
  const { ns, parent } = await open({ subsystem: { copyFormats: 0 } });
  assert.equal(ns.limits.copy, undefined);
  assert.equal(ns.canCopyFrom(ns), false);
  assert.equal(ns.details().copy, 'none');
  await ns.write(0, pattern(8 * KiB, 1));
  const res = await issueCopy(ns, ns, [{ src: 0, dst: 64 * KiB, len: 8 * KiB }]);
  assert.deepEqual([res.offloaded, res.emulated], [0, 8 * KiB]);
  assert.equal(parent.copies().length, 0);
  assert.deepEqual(await readDev(ns, 64 * KiB, 8 * KiB), pattern(8 * KiB, 1));
});

// ---- read / write / flush ----

test('write then read round trip, the last block included, with FUA when asked', async () => {
  const { ns, parent, devices } = await open();
  const data = pattern(64 * KiB, 2);
  await ns.write(128 * KiB, data);
  assert.deepEqual(await readDev(ns, 128 * KiB, data.length), data);
  assert.deepEqual(await readDev(devices[0]!, 128 * KiB, data.length), data, 'on the target device');
  const last = pattern(512, 3);
  await ns.write(ns.size - 512, last, { fua: true });
  assert.deepEqual(await readDev(ns, ns.size - 512, 512), last);
  assert.deepEqual(await readDev(devices[0]!, ns.size - 512, 512), last);
  const writes = parent.commands.filter((c) => c.sqe.opcode === IoOpcode.WRITE);
  assert.deepEqual(
    writes.map((c) => decodeRwCdw12(c.sqe.cdw12!).fua),
    [false, true],
  );
  const lastWrite = sqeOf(writes[1]!);
  assert.deepEqual([lastWrite.cdw10, decodeRwCdw12(lastWrite.cdw12).nlb], [ns.size / 512 - 1, 0]);
  // One command per request, up to maxTransferBytes.
  const big = pattern(ns.limits.maxTransferBytes, 4);
  const before = parent.commands.length;
  await ns.write(0, big);
  assert.deepEqual(await readDev(ns, 0, big.length), big);
  assert.equal(parent.commands.length, before + 2);
});

test('4096-byte blocks: the last block reads and writes', async () => {
  const { ns } = await open({ namespaces: [{ nsid: 1, device: ram(2 * MiB, { logicalBlockSize: 4096 }) }] });
  const last = pattern(4096, 5);
  await ns.write(ns.size - 4096, last);
  assert.deepEqual(await readDev(ns, ns.size - 4096, 4096), last);
  await rejectsCode(ns.read(512, Buffer.alloc(4096)), ErrorCode.EINVAL, /4096-byte block/);
});

test('flush sends Flush with a volatile write cache, nothing without one', async () => {
  const { ns, parent, loop } = await open();
  await ns.flush();
  assert.deepEqual(parent.opcodes(), [IoOpcode.FLUSH]);
  const noCache = new RecordingParent(loop);
  noCache.idCtrl = { ...loop.idCtrl, vwc: 0 };
  const ns2 = await RemoteNamespace.open(noCache, 1);
  await ns2.write(0, pattern(512, 6));
  await ns2.flush();
  await ns2.close();
  assert.deepEqual(noCache.opcodes(), [IoOpcode.WRITE]);
});

test('requests that break the limits fail with the exact code before any command is sent', async () => {
  const { ns, parent } = await open();
  await rejectsCode(ns.read(1, Buffer.alloc(512)), ErrorCode.EINVAL);
  await rejectsCode(ns.read(0, Buffer.alloc(100)), ErrorCode.EINVAL);
  await rejectsCode(ns.read(ns.size - 512, Buffer.alloc(1024)), ErrorCode.ERANGE);
  await rejectsCode(ns.write(ns.size, Buffer.alloc(512)), ErrorCode.ERANGE);
  await rejectsCode(ns.write(0, Buffer.alloc(ns.limits.maxTransferBytes + 512)), ErrorCode.E2BIG);
  await rejectsCode(ns.discard(ns.size - 512, 1024), ErrorCode.ERANGE);
  await rejectsCode(ns.discard(0, 100), ErrorCode.EINVAL);
  await rejectsCode(ns.writeZeroes(0, ns.limits.writeZeroes!.maxBytes + 512), ErrorCode.E2BIG);
  await rejectsCode(
    ns.copy(ns, [{ src: 0, dst: 512, len: 100 }], { allowEmulation: true }),
    ErrorCode.EINVAL,
  );
  await rejectsCode(ns.openZone(0), ErrorCode.EOPNOTSUPP, /not zoned/);
  await rejectsCode(ns.reportZones(0), ErrorCode.EOPNOTSUPP);
  const ac = new AbortController();
  ac.abort();
  await rejectsCode(ns.read(0, Buffer.alloc(512), { signal: ac.signal }), ErrorCode.ECANCELED);
  assert.equal(parent.commands.length, 0);
});

test('the AbortSignal travels with the command', async () => {
  const { ns, parent } = await open();
  const ac = new AbortController();
  await ns.read(0, Buffer.alloc(512), { signal: ac.signal });
  await ns.writeZeroes(0, 512, { signal: ac.signal });
  assert.ok(
    parent.commands.every((c) => c.signal === ac.signal),
    'every command carries the signal',
  );
});

// ---- discard / write zeroes ----

test('discard is one Dataset Management deallocate; the blocks read back as zeroes', async () => {
  const { ns, parent } = await open();
  await ns.write(0, pattern(64 * KiB, 7));
  await ns.write(ns.size - 4096, pattern(4096, 8));
  await ns.discard(8 * KiB, 16 * KiB);
  await ns.discard(ns.size - 1024, 1024);
  const got = await readDev(ns, 0, 64 * KiB);
  assert.ok(
    got.subarray(8 * KiB, 24 * KiB).every((b) => b === 0),
    'discarded blocks read as zeroes',
  );
  assert.deepEqual(got.subarray(0, 8 * KiB), pattern(64 * KiB, 7).subarray(0, 8 * KiB));
  assert.deepEqual(got.subarray(24 * KiB), pattern(64 * KiB, 7).subarray(24 * KiB));
  const tail = await readDev(ns, ns.size - 4096, 4096);
  assert.deepEqual(tail.subarray(0, 3072), pattern(4096, 8).subarray(0, 3072));
  assert.ok(
    tail.subarray(3072).every((b) => b === 0),
    'the discarded last blocks read as zeroes',
  );
  const dsm = parent.commands.filter((c) => c.sqe.opcode === IoOpcode.DSM);
  assert.equal(dsm.length, 2);
  const d = decodeDsmCommand(sqeOf(dsm[0]!));
  assert.deepEqual([d.ranges, d.ad], [1, true]);
  assert.deepEqual(decodeDsmRanges(dsm[0]!.data!, 1)[0], { cattr: 0, nlb: 32, slba: 16 });
});

test('discard splits into DSM ranges of DMRSL blocks, DMRL ranges per command (Identify Controller NVM)', async () => {
  const { loop } = await open();
  const parent = new RecordingParent(loop);
  parent.idCtrlNvm = { wzsl: 0, dmrl: 4, dmrsl: 8 };
  const ns = await RemoteNamespace.open(parent, 1);
  assert.equal(ns.limits.discard!.maxBytes, 32 * 512);
  await ns.write(0, pattern(32 * KiB, 30));
  await ns.discard(4 * KiB, 16 * KiB - 1024); // 30 blocks: 8 + 8 + 8 + 6
  const dsm = parent.commands.filter((c) => c.sqe.opcode === IoOpcode.DSM);
  assert.equal(dsm.length, 1);
  assert.deepEqual(
    decodeDsmRanges(dsm[0]!.data!, 4).map((r) => [r.slba, r.nlb]),
    [
      [8, 8],
      [16, 8],
      [24, 8],
      [32, 6],
    ],
  );
  const got = await readDev(ns, 0, 32 * KiB);
  assert.ok(
    got.subarray(4 * KiB, 19 * KiB).every((b) => b === 0),
    'discarded blocks read as zeroes',
  );
  assert.deepEqual(got.subarray(19 * KiB), pattern(32 * KiB, 30).subarray(19 * KiB));
  await rejectsCode(ns.discard(0, 33 * 512), ErrorCode.E2BIG);
});

test('writeZeroes: Write Zeroes with DEAC unless noUnmap; zeroes read back, the last block too', async () => {
  const { ns, parent } = await open();
  await ns.write(0, pattern(32 * KiB, 9));
  await ns.write(ns.size - 2048, pattern(2048, 10));
  await ns.writeZeroes(4 * KiB, 8 * KiB);
  await ns.writeZeroes(ns.size - 512, 512, { noUnmap: true });
  const got = await readDev(ns, 0, 32 * KiB);
  assert.ok(
    got.subarray(4 * KiB, 12 * KiB).every((b) => b === 0),
    'zeroed blocks read as zeroes',
  );
  assert.deepEqual(got.subarray(12 * KiB), pattern(32 * KiB, 9).subarray(12 * KiB));
  const tail = await readDev(ns, ns.size - 2048, 2048);
  assert.deepEqual(tail.subarray(0, 1536), pattern(2048, 10).subarray(0, 1536));
  assert.ok(
    tail.subarray(1536).every((b) => b === 0),
    'the zeroed last block reads as zeroes',
  );
  const wz = parent.commands.filter((c) => c.sqe.opcode === IoOpcode.WRITE_ZEROES).map(sqeOf);
  assert.deepEqual(
    wz.map((s) => [s.cdw10, decodeRwCdw12(s.cdw12).nlb, decodeRwCdw12(s.cdw12).deac]),
    [
      [8, 15, true],
      [ns.size / 512 - 1, 0, false],
    ],
  );
});

// ---- errors from the target, from the transport ----

test('target-side errors map to BlockError codes naming the operation, namespace and status', async () => {
  const inner = ram(4 * MiB);
  const fault = new FaultDevice(inner);
  const { ns, target } = await open({ namespaces: [{ nsid: 1, device: fault }] });
  fault.addRule({ ops: ['write'], offset: 0, length: 4096, code: ErrorCode.ENOSPC });
  await rejectsCode(
    ns.write(0, Buffer.alloc(512)),
    ErrorCode.ENOSPC,
    new RegExp(`write on ${NQN}@loop/n1: NVMe status 0x81 CAP_EXCEEDED`),
  );
  fault.addRule({ ops: ['read'], offset: 8192, length: 512 });
  await rejectsCode(
    ns.read(8192, Buffer.alloc(512)),
    ErrorCode.EIO,
    /read on .*\/n1: NVMe status 0x281 READ_ERROR/,
  );
  // The target made the namespace read-only after we opened it: Namespace Is Write Protected.
  await target.removeNamespace(NQN, 1);
  target.addNamespace(NQN, { nsid: 1, device: inner, readOnly: true });
  await rejectsCode(ns.write(65536, Buffer.alloc(512)), ErrorCode.EPERM, /0x20 NS_WRITE_PROTECTED/);
  // The target shrank it: LBA Out of Range for the blocks that are gone.
  await target.removeNamespace(NQN, 1);
  target.addNamespace(NQN, { nsid: 1, device: ram(1 * MiB) });
  await rejectsCode(ns.read(2 * MiB, Buffer.alloc(512)), ErrorCode.ERANGE, /LBA_RANGE/);
  // Removed at the target: Invalid Namespace → ENODEV.
  await target.removeNamespace(NQN, 1);
  await rejectsCode(ns.read(0, Buffer.alloc(512)), ErrorCode.ENODEV, /INVALID_NS/);
});

test('HostErrors map to EIO, ECANCELED (aborted) and ENODEV (controller lost, deleted)', async () => {
  const cases: Array<[HostErrorCode, ErrorCode]> = [
    ['ABORTED', ErrorCode.ECANCELED],
    ['CONTROLLER_LOST', ErrorCode.ENODEV],
    ['DELETED', ErrorCode.ENODEV],
    ['TIMEOUT', ErrorCode.EIO],
    ['NOT_RETRYABLE', ErrorCode.EIO],
    ['CLOSED', ErrorCode.EIO],
  ];
  for (const [code, errno] of cases) {
    const cause = new HostError(code, 'boom');
    const e = blockErrorFromHost(cause, 'read on ns');
    assert.equal(e.code, errno, code);
    assert.equal(e.cause, cause);
    assert.match(e.message, new RegExp(`read on ns: boom \\(${code}\\)`));
  }
  const st = blockErrorFromHost(new NvmeStatusError(withDnr(Status.INVALID_NS), 'x'), 'identify');
  assert.equal(st.code, ErrorCode.ENODEV);
  const { ns, loop } = await open();
  loop.close();
  await assert.rejects(ns.read(0, Buffer.alloc(512)), (e: unknown) => {
    assert.ok(BlockError.is(e), 'a BlockError');
    assert.equal(e.code, ErrorCode.ENODEV);
    assert.ok(HostError.is(e.cause), 'the HostError is the cause');
    assert.equal((e.cause as HostError).code, 'DELETED');
    return true;
  });
});

// ---- removal and refresh ----

test('markRemoved: every later operation fails with ENODEV and sends nothing; close works', async () => {
  const { ns, parent } = await open();
  ns.markRemoved();
  assert.equal(ns.removed, true);
  await rejectsCode(ns.read(0, Buffer.alloc(512)), ErrorCode.ENODEV, /removed/);
  await rejectsCode(ns.write(0, Buffer.alloc(512)), ErrorCode.ENODEV);
  await rejectsCode(ns.flush(), ErrorCode.ENODEV);
  await rejectsCode(ns.discard(0, 512), ErrorCode.ENODEV);
  await rejectsCode(ns.refresh(), ErrorCode.ENODEV);
  // Even a bad request: the device is gone, that is the first thing to say.
  await rejectsCode(ns.read(1, Buffer.alloc(3)), ErrorCode.ENODEV);
  assert.equal(ns.canCopyFrom(ns), false);
  assert.equal(ns.details().removed, true);
  await ns.close();
  assert.equal(parent.commands.length, 0);
});

test('refresh takes a resized namespace: the new last block works, limits keep their object', async () => {
  const { ns, target } = await open({ namespaces: [{ nsid: 1, device: ram(1 * MiB) }] });
  const limits = ns.limits;
  setCopyMaxBytes(ns.limits, 1 * MiB);
  await target.removeNamespace(NQN, 1);
  const bigger = ram(3 * MiB);
  target.addNamespace(NQN, { nsid: 1, device: bigger });
  await rejectsCode(ns.read(2 * MiB, Buffer.alloc(512)), ErrorCode.ERANGE); // still the old size, locally
  await ns.refresh();
  assert.equal(ns.size, 3 * MiB);
  assert.equal(Number(ns.idNs.nsze), 6144);
  assert.equal(ns.limits, limits);
  assert.equal(ns.limits.copy!.maxBytes, 1 * MiB, 'the lowered copy cap survives');
  const last = pattern(512, 11);
  await ns.write(ns.size - 512, last);
  assert.deepEqual(await readDev(bigger, ns.size - 512, 512), last);
  // Capabilities change too: read-only now, refused locally.
  await target.removeNamespace(NQN, 1);
  target.addNamespace(NQN, { nsid: 1, device: bigger, readOnly: true });
  await ns.refresh();
  assert.equal(ns.limits.readOnly, true);
  await rejectsCode(ns.write(0, Buffer.alloc(512)), ErrorCode.EPERM, /read-only/);
  // Gone at the target: refresh marks it removed.
  await target.removeNamespace(NQN, 1);
  await rejectsCode(ns.refresh(), ErrorCode.ENODEV, /not active/);
  assert.equal(ns.removed, true);
  await rejectsCode(ns.read(0, Buffer.alloc(512)), ErrorCode.ENODEV);
});

test('refresh of a namespace reformatted with metadata marks it removed (EOPNOTSUPP)', async () => {
  const { loop } = await open();
  const parent = new RecordingParent(loop);
  const ns = await RemoteNamespace.open(parent, 1, { name: 'fast' });
  assert.equal(ns.name, 'fast');
  await rejectsCode(ns.read(ns.size, Buffer.alloc(512)), ErrorCode.ERANGE, /read on fast/);
  parent.identifyOverride = async () =>
    decodeIdNs(buildIdNs({ nsze: 8192, lbaf: [{ ms: 8, lbads: 9, rp: 0 }] }));
  await rejectsCode(ns.refresh(), ErrorCode.EOPNOTSUPP, /metadata/);
  assert.equal(ns.removed, true);
  assert.equal(ns.size, 4 * MiB, 'the old geometry stays');
  await rejectsCode(ns.read(0, Buffer.alloc(512)), ErrorCode.ENODEV, /read on fast: .*metadata/);
  assert.equal(parent.commands.length, 0);
});

test('error messages of a namespace with its own name add the NSID', async () => {
  const inner = ram(1 * MiB);
  const fault = new FaultDevice(inner, { rules: [{ ops: ['read'], offset: 0, length: 512 }] });
  const { loop } = await open({ namespaces: [{ nsid: 1, device: fault }] });
  const ns = await RemoteNamespace.open(loop, 1, { name: 'fast' });
  await rejectsCode(
    ns.read(0, Buffer.alloc(512)),
    ErrorCode.EIO,
    /^EIO: read on fast \(nsid 1\): NVMe status 0x281/,
  );
});

// ---- copy ----

test('copy: one range is one Copy command (format 0); every byte offloaded', async () => {
  const { ns, parent } = await open();
  const data = pattern(8 * KiB, 12);
  await ns.write(0, data);
  const res = await ns.copy(ns, [{ src: 0, dst: 64 * KiB, len: 8 * KiB }], { allowEmulation: true });
  assert.deepEqual(res, { offloaded: 8 * KiB, emulated: 0 });
  assert.deepEqual(await readDev(ns, 64 * KiB, 8 * KiB), data);
  const copies = parent.copies();
  assert.equal(copies.length, 1);
  const c = decodeCopyCommand(sqeOf(copies[0]!));
  assert.deepEqual([c.nsid, c.sdlba, c.ranges, c.format], [1, 128, 1, 0]);
  assert.equal(copies[0]!.retryable, true);
});

test('copy: ranges with consecutive destinations → one Copy; non-consecutive → several', async () => {
  const { ns, parent } = await open();
  await ns.write(0, pattern(64 * KiB, 13));
  const ranges = [
    { src: 32 * KiB, dst: 1 * MiB, len: 4 * KiB },
    { src: 0, dst: 1 * MiB + 4 * KiB, len: 8 * KiB },
    { src: 16 * KiB, dst: 1 * MiB + 12 * KiB, len: 2 * KiB },
  ];
  await ns.copy(ns, ranges, { allowEmulation: true });
  assert.equal(parent.copies().length, 1);
  assert.equal(decodeCopyCommand(sqeOf(parent.copies()[0]!)).ranges, 3);
  const src = pattern(64 * KiB, 13);
  const got = await readDev(ns, 1 * MiB, 14 * KiB);
  assert.deepEqual(
    got,
    Buffer.concat([
      src.subarray(32 * KiB, 36 * KiB),
      src.subarray(0, 8 * KiB),
      src.subarray(16 * KiB, 18 * KiB),
    ]),
  );

  parent.commands.length = 0;
  const apart = [
    { src: 0, dst: 2 * MiB, len: 4 * KiB },
    { src: 8 * KiB, dst: 3 * MiB, len: 4 * KiB },
    // The last block of the device.
    { src: 12 * KiB, dst: ns.size - 512, len: 512 },
  ];
  const res = await ns.copy(ns, apart, { allowEmulation: true });
  assert.equal(res.offloaded, 8 * KiB + 512);
  assert.equal(parent.copies().length, 3);
  assert.deepEqual(await readDev(ns, 2 * MiB, 4 * KiB), src.subarray(0, 4 * KiB));
  assert.deepEqual(await readDev(ns, 3 * MiB, 4 * KiB), src.subarray(8 * KiB, 12 * KiB));
  assert.deepEqual(await readDev(ns, ns.size - 512, 512), src.subarray(12 * KiB, 12 * KiB + 512));
});

test('copy: a command that reads what another writes goes first, so every source is read first', async () => {
  const { ns, parent } = await open();
  const a = pattern(4 * KiB, 14);
  const b = pattern(4 * KiB, 15);
  await ns.write(0, a);
  await ns.write(64 * KiB, b);
  // Range 0 overwrites range 1's source.
  await ns.copy(
    ns,
    [
      { src: 0, dst: 64 * KiB, len: 4 * KiB },
      { src: 64 * KiB, dst: 128 * KiB, len: 4 * KiB },
    ],
    { allowEmulation: true },
  );
  assert.deepEqual(await readDev(ns, 64 * KiB, 4 * KiB), a);
  assert.deepEqual(await readDev(ns, 128 * KiB, 4 * KiB), b, 'range 1 read the old data');
  assert.deepEqual(
    parent.copies().map((c) => decodeCopyCommand(sqeOf(c)).sdlba),
    [256, 128],
  );
});

test('copy: a dependency cycle across commands is EOPNOTSUPP before any command; data untouched', async () => {
  const { ns, parent } = await open();
  const a = pattern(4 * KiB, 16);
  const b = pattern(4 * KiB, 17);
  await ns.write(0, a);
  await ns.write(64 * KiB, b);
  parent.commands.length = 0;
  await assert.rejects(
    ns.copy(
      ns,
      [
        { src: 0, dst: 64 * KiB, len: 4 * KiB },
        { src: 64 * KiB, dst: 0, len: 4 * KiB },
      ],
      { allowEmulation: true },
    ),
    (e: unknown) => {
      assert.ok(CopyError.isCopyError(e), 'a CopyError');
      assert.equal(e.code, ErrorCode.EOPNOTSUPP);
      assert.deepEqual(e.completed, [0, 0]);
      assert.match(e.message, /overwrite each other's sources/);
      return true;
    },
  );
  assert.equal(parent.commands.length, 0);
  assert.deepEqual(await readDev(ns, 0, 4 * KiB), a);
  assert.deepEqual(await readDev(ns, 64 * KiB, 4 * KiB), b);
});

test('issueCopy in auto mode offloads through NVMe Copy: no reads or writes, result says offloaded', async () => {
  const { ns, parent } = await open();
  const src = pattern(256 * KiB, 18);
  await ns.write(0, src);
  parent.commands.length = 0;
  const ranges = [
    { src: 0, dst: 1 * MiB, len: 64 * KiB },
    { src: 128 * KiB, dst: 2 * MiB, len: 128 * KiB },
    { src: 64 * KiB, dst: ns.size - 64 * KiB, len: 64 * KiB },
  ];
  const res = await issueCopy(ns, ns, ranges, { mode: 'auto' });
  assert.equal(res.offloaded, 256 * KiB);
  assert.equal(res.emulated, 0);
  assert.ok(
    res.ranges.every((r) => r.path === 'offload' && r.completed === r.len),
    'every range offloaded whole',
  );
  assert.ok(
    parent.opcodes().every((op) => op === IoOpcode.COPY),
    'only Copy commands were sent',
  );
  assert.ok(parent.copies().length >= 1, 'at least one Copy was sent');
  assert.deepEqual(await readDev(ns, 1 * MiB, 64 * KiB), src.subarray(0, 64 * KiB));
  assert.deepEqual(await readDev(ns, 2 * MiB, 128 * KiB), src.subarray(128 * KiB));
  assert.deepEqual(await readDev(ns, ns.size - 64 * KiB, 64 * KiB), src.subarray(64 * KiB, 128 * KiB));
});

test('issueCopy: an overlapping shift is one non-retryable Copy with memmove semantics', async () => {
  const { ns, parent } = await open();
  const src = pattern(16 * KiB, 19);
  await ns.write(0, src);
  parent.commands.length = 0;
  const res = await issueCopy(ns, ns, [{ src: 0, dst: 4 * KiB, len: 16 * KiB }]);
  assert.equal(res.offloaded, 16 * KiB);
  assert.deepEqual(await readDev(ns, 4 * KiB, 16 * KiB), src);
  assert.equal(parent.copies().length, 1);
  assert.equal(parent.copies()[0]!.retryable, false);
});

test('copy across namespaces with formats 2/3 enabled (CDFE): format 2 with SNSID, offloaded', async () => {
  const { loop, devices } = await open({
    namespaces: [
      { nsid: 1, device: ram(2 * MiB) },
      { nsid: 2, device: ram(2 * MiB) },
    ],
    parent: { crossNamespaceCopy: true },
  });
  assert.deepEqual([...loop.copyFormats].sort(), [0, 1, 2, 3]);
  const parent = new RecordingParent(loop);
  const n1 = await RemoteNamespace.open(parent, 1);
  const n2 = await RemoteNamespace.open(parent, 2);
  assert.equal(n2.canCopyFrom(n1), true);
  const data = pattern(32 * KiB, 20);
  await n1.write(0, data);
  parent.commands.length = 0;
  const res = await issueCopy(n1, n2, [
    { src: 0, dst: 64 * KiB, len: 16 * KiB },
    { src: 16 * KiB, dst: n2.size - 16 * KiB, len: 16 * KiB },
  ]);
  assert.deepEqual([res.offloaded, res.emulated], [32 * KiB, 0]);
  assert.deepEqual(parent.opcodes(), [IoOpcode.COPY, IoOpcode.COPY], 'no reads or writes');
  for (const c of parent.copies()) {
    const cmd = decodeCopyCommand(sqeOf(c));
    assert.deepEqual([cmd.nsid, cmd.format], [2, 2]);
    assert.deepEqual(
      decodeCopySourceRanges(c.data!, 2, cmd.ranges).map((d) => d.snsid),
      [1],
    );
  }
  assert.deepEqual(await readDev(devices[1]!, 64 * KiB, 16 * KiB), data.subarray(0, 16 * KiB));
  assert.deepEqual(await readDev(n2, n2.size - 16 * KiB, 16 * KiB), data.subarray(16 * KiB));
});

test('without CDFE, or with different block sizes, namespaces cannot copy together: issueCopy emulates', async () => {
  const { loop } = await open({
    namespaces: [
      { nsid: 1, device: ram(1 * MiB) },
      { nsid: 2, device: ram(1 * MiB) },
      { nsid: 3, device: ram(1 * MiB, { logicalBlockSize: 4096 }) },
    ],
  });
  assert.deepEqual([...loop.copyFormats].sort(), [0, 1]);
  const parent = new RecordingParent(loop);
  const [n1, n2, n3] = await Promise.all([1, 2, 3].map((i) => RemoteNamespace.open(parent, i)));
  assert.equal(n2!.canCopyFrom(n1!), false);
  assert.equal(n1!.canCopyFrom(n1!), true);
  await n1!.write(0, pattern(8 * KiB, 21));
  const res = await issueCopy(n1!, n2!, [{ src: 0, dst: 0, len: 8 * KiB }]);
  assert.deepEqual([res.offloaded, res.emulated], [0, 8 * KiB]);
  assert.deepEqual(await readDev(n2!, 0, 8 * KiB), pattern(8 * KiB, 21));
  assert.equal(parent.copies().length, 0);

  const { loop: loop2 } = await open({
    namespaces: [
      { nsid: 1, device: ram(1 * MiB) },
      { nsid: 3, device: ram(1 * MiB, { logicalBlockSize: 4096 }) },
    ],
    parent: { crossNamespaceCopy: true },
  });
  const m1 = await RemoteNamespace.open(loop2, 1);
  const m3 = await RemoteNamespace.open(loop2, 3);
  assert.equal(m3.canCopyFrom(m1), false, 'different block sizes');
  assert.equal(n3!.canCopyFrom(m3), false, 'another controller');
});

test('a Copy that fails part way: CopyError with whole ranges before DW0, 0 after', async () => {
  const inner = ram(4 * MiB);
  const fault = new FaultDevice(inner);
  const { ns, parent } = await open({ namespaces: [{ nsid: 1, device: fault }] });
  const src = pattern(64 * KiB, 22);
  await ns.write(0, src);
  // Reading range 2's source fails at the target.
  fault.addRule({ ops: ['read'], offset: 40 * KiB, length: 512 });
  parent.commands.length = 0;
  const ranges = [
    { src: 0, dst: 1 * MiB, len: 8 * KiB },
    { src: 16 * KiB, dst: 1 * MiB + 8 * KiB, len: 8 * KiB },
    { src: 32 * KiB, dst: 1 * MiB + 16 * KiB, len: 16 * KiB },
    { src: 56 * KiB, dst: 1 * MiB + 32 * KiB, len: 8 * KiB },
  ];
  await assert.rejects(ns.copy(ns, ranges, { allowEmulation: true }), (e: unknown) => {
    assert.ok(CopyError.isCopyError(e), 'a CopyError');
    assert.equal(e.code, ErrorCode.EIO);
    assert.deepEqual(e.completed, [8 * KiB, 8 * KiB, 0, 0]);
    assert.equal(e.offloaded, 16 * KiB);
    assert.match(
      e.message,
      /copy on .*\/n1: Copy to block 2048 \(4 ranges, 2 completed\): NVMe status 0x28[01]/,
    );
    return true;
  });
  assert.equal(parent.copies().length, 1);
  assert.deepEqual(
    await readDev(inner, 1 * MiB, 16 * KiB),
    Buffer.concat([src.subarray(0, 8 * KiB), src.subarray(16 * KiB, 24 * KiB)]),
  );
  // Through issueCopy the same prefixes come back.
  await assert.rejects(issueCopy(ns, ns, ranges), (e: unknown) => {
    assert.ok(CopyError.isCopyError(e), 'a CopyError');
    assert.deepEqual(e.completed, [8 * KiB, 8 * KiB, 0, 0]);
    return true;
  });
});

test('a read-only namespace refuses copy and write locally (EPERM)', async () => {
  const { ns, parent } = await open({ namespaces: [{ nsid: 1, device: ram(1 * MiB), readOnly: true }] });
  assert.equal(ns.limits.readOnly, true);
  await rejectsCode(ns.write(0, Buffer.alloc(512)), ErrorCode.EPERM);
  await rejectsCode(
    ns.copy(ns, [{ src: 0, dst: 4096, len: 512 }], { allowEmulation: true }),
    ErrorCode.EPERM,
  );
  await rejectsCode(issueCopy(ns, ns, [{ src: 0, dst: 4096, len: 512 }]), ErrorCode.EPERM);
  await ns.flush(); // nothing to make durable
  assert.equal(parent.commands.length, 0);
  const got = Buffer.alloc(512);
  await ns.read(0, got);
  assert.ok(
    got.every((b) => b === 0),
    'an unwritten read-only namespace reads zeroes',
  );
});

test('writeZeroes: a controller that refuses Write Zeroes (Invalid Opcode) gets zero buffers from then on', async () => {
  const { ns, parent } = await open();
  parent.answer = (c) =>
    c.sqe.opcode === IoOpcode.WRITE_ZEROES
      ? { status: withDnr(Status.INVALID_OPCODE), dw0: 0, dw1: 0 }
      : undefined;
  await ns.write(0, pattern(64 * KiB, 11));
  await ns.writeZeroes(8 * KiB, 16 * KiB);
  await ns.writeZeroes(32 * KiB, 4 * KiB, { noUnmap: true });
  const got = await readDev(ns, 0, 64 * KiB);
  const want = pattern(64 * KiB, 11);
  want.fill(0, 8 * KiB, 24 * KiB);
  want.fill(0, 32 * KiB, 36 * KiB);
  assert.deepEqual(got, want);
  // One refused Write Zeroes, then only writes: the refusal is remembered.
  const ops = parent.opcodes();
  assert.equal(ops.filter((o) => o === IoOpcode.WRITE_ZEROES).length, 1);
  assert.equal(ops.filter((o) => o === IoOpcode.WRITE).length, 3);
  assert.match(String(ns.details().writeZeroes), /zero buffers/);
});

test('writeZeroes: other statuses are errors, not a fallback', async () => {
  const { ns, parent } = await open();
  parent.answer = (c) =>
    c.sqe.opcode === IoOpcode.WRITE_ZEROES ? { status: withDnr(Status.INTERNAL), dw0: 0, dw1: 0 } : undefined;
  await rejectsCode(ns.writeZeroes(0, 4 * KiB), ErrorCode.EIO);
  assert.equal(parent.opcodes().filter((o) => o === IoOpcode.WRITE).length, 0);
});
