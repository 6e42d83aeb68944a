import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode } from '../block/errors.js';
import {
  buildIdCtrl,
  buildIdNs,
  decodeIdCtrl,
  decodeIdNs,
  DlFeat,
  encodeFlbas,
  NsFeat,
  Ocfs,
  Oncs,
  Vwc,
  type IdCtrlOptions,
  type IdNsOptions,
} from '../nvme/identify.js';
import {
  HOST_DEFAULT_MAX_TRANSFER_BYTES,
  namespaceGeometry,
  type IdCtrlNvmLimits,
  type NamespaceLimitsInput,
} from './namespace-limits.js';

const MiB = 1024 * 1024;

function derive(
  ns: IdNsOptions,
  ctrl: Partial<IdCtrlOptions> = {},
  extra: { mdts?: number; nvm?: IdCtrlNvmLimits; page?: number } = {},
) {
  const input: NamespaceLimitsInput = {
    name: 'ctrl0',
    nsid: 1,
    idCtrl: decodeIdCtrl(buildIdCtrl({ sn: 'sn', subnqn: 'nqn.2024-01.io.tsblk:t', ...ctrl })),
    idNs: decodeIdNs(buildIdNs(ns)),
    maxDataTransferBytes: extra.mdts ?? MiB,
    ...(extra.nvm ? { idCtrlNvm: extra.nvm } : {}),
    ...(extra.page ? { minPageBytes: extra.page } : {}),
  };
  return namespaceGeometry(input);
}

function throwsCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(BlockError.is(e), `not a BlockError: ${String(e)}`);
    assert.equal(e.code, code);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('size and logical block size come from NSZE and the LBA format FLBAS selects', () => {
  const a = derive({ nsze: 2048, blockSize: 512 });
  assert.equal(a.size, 2048 * 512);
  assert.equal(a.blocks, 2048);
  assert.equal(a.limits.logicalBlockSize, 512);
  assert.equal(a.lbaFormat, 0);
  const b = derive({
    nsze: 100,
    lbaf: [
      { ms: 0, lbads: 9, rp: 0 },
      { ms: 0, lbads: 12, rp: 0 },
    ],
    flbas: encodeFlbas(1),
  });
  assert.equal(b.limits.logicalBlockSize, 4096);
  assert.equal(b.size, 100 * 4096);
  assert.equal(b.lbaFormat, 1);
});

test('formats with metadata, odd block sizes and inactive NSIDs are refused', () => {
  throwsCode(
    () => derive({ nsze: 8, lbaf: [{ ms: 8, lbads: 9, rp: 0 }], dps: 1 }),
    ErrorCode.EOPNOTSUPP,
    /8 bytes of metadata.*protection information type 1.*cannot carry/,
  );
  // Metadata in the selected format only matters: format 0 without, format 1 with.
  const lbaf = [
    { ms: 0, lbads: 12, rp: 0 },
    { ms: 16, lbads: 12, rp: 0 },
  ];
  assert.equal(derive({ nsze: 8, lbaf, flbas: encodeFlbas(0) }).limits.logicalBlockSize, 4096);
  throwsCode(() => derive({ nsze: 8, lbaf, flbas: encodeFlbas(1, true) }), ErrorCode.EOPNOTSUPP, /metadata/);
  throwsCode(() => derive({ nsze: 8, blockSize: 1024 }), ErrorCode.EOPNOTSUPP, /1024-byte logical blocks/);
  throwsCode(() => derive({ nsze: 0 }), ErrorCode.ENODEV, /not active/);
});

test('physical block size from NPWG only when NSFEAT.OPTPERF says it is valid', () => {
  assert.equal(derive({ nsze: 64, blockSize: 512, npwg: 7 }).limits.physicalBlockSize, 4096);
  assert.equal(derive({ nsze: 64, blockSize: 512, npwg: 7, nsfeat: 0 }).limits.physicalBlockSize, 512);
  // 3 blocks is not a power of two: the logical block stands.
  assert.equal(derive({ nsze: 64, blockSize: 512, npwg: 2 }).limits.physicalBlockSize, 512);
  assert.equal(derive({ nsze: 64, blockSize: 4096 }).limits.physicalBlockSize, 4096);
  const g = derive({ nsze: 64, blockSize: 512, nsfeat: NsFeat.OPTPERF, nows: 15 });
  assert.equal(g.optimalWriteBytes, 16 * 512);
  assert.equal(derive({ nsze: 64, blockSize: 512 }).optimalWriteBytes, 0);
});

test('maxTransferBytes: MDTS, 4 MiB when MDTS sets no limit, at most 65536 blocks', () => {
  assert.equal(derive({ nsze: 64 }, {}, { mdts: 128 * 1024 }).limits.maxTransferBytes, 128 * 1024);
  assert.equal(
    derive({ nsze: 64 }, {}, { mdts: 0 }).limits.maxTransferBytes,
    HOST_DEFAULT_MAX_TRANSFER_BYTES,
  );
  assert.equal(HOST_DEFAULT_MAX_TRANSFER_BYTES, 4 * MiB);
  assert.equal(
    derive({ nsze: 64, blockSize: 512 }, {}, { mdts: 64 * MiB }).limits.maxTransferBytes,
    32 * MiB,
  );
  assert.equal(
    derive({ nsze: 64, blockSize: 4096 }, {}, { mdts: 512 * MiB }).limits.maxTransferBytes,
    256 * MiB,
  );
});

test('readOnly follows NSATTR write protect', () => {
  assert.equal(derive({ nsze: 64, writeProtected: true }).limits.readOnly, true);
  assert.equal(derive({ nsze: 64 }).limits.readOnly, false);
});

test('discard follows ONCS DSM; zeroesData follows DLFEAT; DMRL/DMRSL/DMSL narrow it', () => {
  const on = derive({ nsze: 64, blockSize: 512, dlfeat: DlFeat.READ_ZEROES }, { oncs: Oncs.DSM });
  assert.deepEqual(on.limits.discard, {
    granularity: 512,
    maxBytes: 256 * 0xffffffff * 512,
    zeroesData: true,
  });
  assert.equal(on.dsmRangeBlocks, 0xffffffff);
  assert.equal(on.dsmMaxRanges, 256);
  const ones = derive({ nsze: 64, dlfeat: DlFeat.READ_ONES }, { oncs: Oncs.DSM });
  assert.equal(ones.limits.discard!.zeroesData, false);
  assert.equal(derive({ nsze: 64 }, { oncs: Oncs.WRITE_ZEROES }).limits.discard, undefined);
  const narrow = derive(
    { nsze: 64, blockSize: 4096 },
    { oncs: Oncs.DSM },
    { nvm: { wzsl: 0, dmrl: 4, dmrsl: 100 } },
  );
  assert.equal(narrow.dsmRangeBlocks, 100);
  assert.equal(narrow.dsmMaxRanges, 4);
  assert.equal(narrow.limits.discard!.maxBytes, 400 * 4096);
  const total = derive({ nsze: 64 }, { oncs: Oncs.DSM }, { nvm: { wzsl: 0, dmrl: 0, dmrsl: 0, dmsl: 300n } });
  assert.equal(total.limits.discard!.maxBytes, 300 * 512);
});

test('writeZeroes follows ONCS; one command is WZSL, else maxTransferBytes, at most 65536 blocks', () => {
  const on = derive(
    { nsze: 64, blockSize: 512, dlfeat: DlFeat.WRITE_ZEROES_DEALLOCATE | DlFeat.READ_ZEROES },
    { oncs: Oncs.WRITE_ZEROES },
    { mdts: 256 * 1024 },
  );
  assert.deepEqual(on.limits.writeZeroes, { maxBytes: 256 * 1024, unmaps: true });
  assert.equal(on.writeZeroesBlocks, 512);
  const noDeac = derive({ nsze: 64 }, { oncs: Oncs.WRITE_ZEROES });
  assert.equal(noDeac.limits.writeZeroes!.unmaps, false);
  const wzsl = derive(
    { nsze: 64, blockSize: 4096 },
    { oncs: Oncs.WRITE_ZEROES },
    { nvm: { wzsl: 3, dmrl: 0, dmrsl: 0 }, page: 4096 },
  );
  assert.equal(wzsl.limits.writeZeroes!.maxBytes, 8 * 4096);
  const capped = derive(
    { nsze: 64, blockSize: 512 },
    { oncs: Oncs.WRITE_ZEROES },
    { nvm: { wzsl: 14, dmrl: 0, dmrsl: 0 } }, // 64 MiB asked, 65536 blocks (32 MiB) allowed
  );
  assert.equal(capped.limits.writeZeroes!.maxBytes, 65536 * 512);
  assert.equal(derive({ nsze: 64 }, { oncs: Oncs.DSM }).limits.writeZeroes, undefined);
});

test('copy limits: ONCS Copy + OCFS format 0 or 1 → MSSRL, MCL, MSRC + 1; none otherwise', () => {
  const ns = { nsze: 4096, blockSize: 4096, mssrl: 128, mcl: 1024, msrc: 15 } as const;
  const on = derive(ns, { oncs: Oncs.COPY, ocfs: Ocfs.FORMAT_0 });
  assert.deepEqual(on.limits.copy, {
    maxBytes: 1024 * 4096,
    maxHwBytes: 1024 * 4096,
    maxRanges: 16,
    maxRangeBytes: 128 * 4096,
  });
  assert.deepEqual(on.offeredCopyFormats, [0]);
  assert.ok(
    derive(ns, { oncs: Oncs.COPY, ocfs: Ocfs.FORMAT_1 }).limits.copy,
    'format 1 alone gives copy limits',
  );
  // Only cross-namespace formats: nothing usable within the namespace.
  assert.equal(derive(ns, { oncs: Oncs.COPY, ocfs: Ocfs.FORMAT_2 | Ocfs.FORMAT_3 }).limits.copy, undefined);
  assert.equal(derive(ns, { oncs: Oncs.DSM, ocfs: Ocfs.FORMAT_0 }).limits.copy, undefined);
  assert.equal(derive({ ...ns, mssrl: 0 }, { oncs: Oncs.COPY, ocfs: Ocfs.FORMAT_0 }).limits.copy, undefined);
  assert.equal(derive({ ...ns, mcl: 0 }, { oncs: Oncs.COPY, ocfs: Ocfs.FORMAT_0 }).limits.copy, undefined);
  // A range cannot be longer than the whole copy; 256 ranges at most.
  const odd = derive(
    { nsze: 4096, blockSize: 512, mssrl: 0xffff, mcl: 100, msrc: 255 },
    { oncs: Oncs.COPY, ocfs: 0xf },
  );
  assert.equal(odd.limits.copy!.maxRangeBytes, 100 * 512);
  assert.equal(odd.limits.copy!.maxRanges, 256);
  assert.deepEqual(odd.offeredCopyFormats, [0, 1, 2, 3]);
});

test('a volatile write cache is reported only when VWC says so', () => {
  assert.equal(derive({ nsze: 8 }, { vwc: Vwc.PRESENT }).volatileWriteCache, true);
  assert.equal(derive({ nsze: 8 }, { vwc: 0 }).volatileWriteCache, false);
});
