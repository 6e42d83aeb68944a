import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { RamDevice } from '../../devices/ram.js';
import { assertLayout } from '../../nvme/testing/layout.js';
import { paramsFor } from './params.js';
import {
  BlkZone,
  CtrlCmd,
  DevInfo,
  descAreaBytes,
  featureNames,
  IoCmd,
  IoDesc,
  ParamBasic,
  ParamDevt,
  ParamDiscard,
  Params,
  ParamZoned,
  UBLK_F,
  UBLK_IO_OP,
  UBLK_MAX_DESC_AREA,
  UBLK_PARAM_TYPE,
  UBLK_U_CMD,
  UBLK_U_IO,
  userCopyOffset,
} from './uapi.js';

// Offsets and ioctl numbers: gcc offsetof()/sizeof()/_IOR/_IOWR on the structs of
// torvalds/linux include/uapi/linux/ublk_cmd.h (2026, with SHMEM_ZC).
test('struct layouts match ublk_cmd.h', () => {
  // prettier-ignore
  assertLayout(CtrlCmd, 32, { dev_id: 0, queue_id: 4, len: 6, addr: 8, data: 16, dev_path_len: 24, pad: 26, reserved: 28 });
  // prettier-ignore
  assertLayout(DevInfo, 64, {
    nr_hw_queues: 0, queue_depth: 2, state: 4, pad0: 6, max_io_buf_bytes: 8, dev_id: 12, ublksrv_pid: 16, pad1: 20,
    flags: 24, ublksrv_flags: 32, owner_uid: 40, owner_gid: 44, reserved1: 48, reserved2: 56,
  });
  assertLayout(IoDesc, 24, { op_flags: 0, nr_sectors: 4, start_sector: 8, addr: 16 });
  assertLayout(IoCmd, 16, { q_id: 0, tag: 2, result: 4, addr: 8 });
  // prettier-ignore
  assertLayout(ParamBasic, 32, {
    attrs: 0, logical_bs_shift: 4, physical_bs_shift: 5, io_opt_shift: 6, io_min_shift: 7, max_sectors: 8,
    chunk_sectors: 12, dev_sectors: 16, virt_boundary_mask: 24,
  });
  // prettier-ignore
  assertLayout(ParamDiscard, 20, {
    discard_alignment: 0, discard_granularity: 4, max_discard_sectors: 8, max_write_zeroes_sectors: 12,
    max_discard_segments: 16, reserved0: 18,
  });
  // prettier-ignore
  assertLayout(BlkZone, 64, {
    start: 0, len: 8, wp: 16, type: 24, cond: 25, non_seq: 26, reset: 27, resv: 28, capacity: 32, reserved: 40,
  });
  assertLayout(ParamDevt, 16, { char_major: 0, char_minor: 4, disk_major: 8, disk_minor: 12 });
  assertLayout(ParamZoned, 32, {
    max_open_zones: 0,
    max_active_zones: 4,
    max_zone_append_sectors: 8,
    reserved: 12,
  });
  // prettier-ignore
  assertLayout(Params, 152, {
    len: 0, types: 4, basic: 8, discard: 40, devt: 60, zoned: 76, dma: 108, pad116: 116, seg: 120, integrity: 136,
  });
});

test('command numbers are the header ioctl encodings', () => {
  assert.equal(UBLK_U_CMD.ADD_DEV, 0xc0207504);
  assert.equal(UBLK_U_CMD.GET_DEV_INFO, 0x80207502);
  assert.equal(UBLK_U_CMD.GET_FEATURES, 0x80207513);
  assert.equal(UBLK_U_CMD.START_DEV, 0xc0207506);
  assert.equal(UBLK_U_CMD.DEL_DEV, 0xc0207505);
  assert.equal(UBLK_U_IO.FETCH_REQ, 0xc0107520);
  assert.equal(UBLK_U_IO.COMMIT_AND_FETCH_REQ, 0xc0107521);
});

test('user-copy offsets and descriptor areas', () => {
  assert.equal(userCopyOffset(0, 0), 0x80000000);
  assert.equal(userCopyOffset(1, 2, 512), 0x80000000 + 2 ** 41 + 2 * 2 ** 25 + 512);
  assert.equal(
    userCopyOffset(4094, 0xffff, 2 ** 25 - 1),
    0x80000000 + 4094 * 2 ** 41 + 0xffff * 2 ** 25 + 2 ** 25 - 1,
  );
  assert.throws(() => userCopyOffset(4095, 0xffff, 2 ** 25 - 1), RangeError);
  assert.equal(UBLK_MAX_DESC_AREA, 98304);
  assert.equal(descAreaBytes(64), 4096);
  assert.equal(descAreaBytes(171), 8192); // 171 × 24 = 4104
  assert.equal(descAreaBytes(4096), UBLK_MAX_DESC_AREA);
});

test('featureNames names known and unknown bits', () => {
  assert.deepEqual(featureNames(UBLK_F.USER_COPY | UBLK_F.CMD_IOCTL_ENCODE | (1n << 40n)), [
    'CMD_IOCTL_ENCODE',
    'USER_COPY',
    'bit 40',
  ]);
});

test('paramsFor: size and limits of a RAM device in ublk_params', () => {
  const dev = new RamDevice({ size: 64 * 1024 * 1024, logicalBlockSize: 4096 });
  const p = Params.decode(paramsFor({ device: dev, maxIoBufBytes: 1024 * 1024 }));
  assert.equal(p.len, 108);
  assert.equal(p.types, UBLK_PARAM_TYPE.BASIC | UBLK_PARAM_TYPE.DISCARD);
  const b = ParamBasic.decode(p.basic);
  assert.equal(b.logical_bs_shift, 12);
  assert.equal(b.physical_bs_shift, 12);
  assert.equal(b.max_sectors, 2048);
  assert.equal(b.dev_sectors, 131072n);
  assert.equal(b.attrs, 0b1100); // VOLATILE_CACHE | FUA, writable
  const d = ParamDiscard.decode(p.discard);
  assert.equal(d.discard_granularity, 4096);
  assert.equal(d.max_discard_sectors, 131072);
  assert.equal(d.max_write_zeroes_sectors, 131072);
  assert.equal(d.max_discard_segments, 1);
  const ro = Params.decode(
    paramsFor({ device: new RamDevice({ size: 1 << 20, readOnly: true }), maxIoBufBytes: 1 << 20 }),
  );
  assert.equal(ro.types, UBLK_PARAM_TYPE.BASIC, 'no discard on a read-only device');
  assert.equal(ParamBasic.decode(ro.basic).attrs & 1, 1);
});

// The same layouts checked against the C header installed on this machine (linux-libc-dev),
// for the structs and fields it has: a field table that drifts from the kernel fails here too.
const HEADER = '/usr/include/linux/ublk_cmd.h';
test('struct sizes and offsets match the installed linux/ublk_cmd.h (gcc)', (t) => {
  const gcc = spawnSync('gcc', ['--version']);
  if (gcc.status !== 0 || !existsSync(HEADER)) {
    assert.notEqual(process.env.CI, 'true', `CI needs gcc and ${HEADER} (linux-libc-dev)`);
    t.skip(`gcc or ${HEADER} missing`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tsblk-ublk-'));
  try {
    const src = `#include <stdio.h>
#include <stddef.h>
#include <linux/ublk_cmd.h>
#include <linux/blkzoned.h>
#define O(t, f) printf(#t "." #f " %zu\\n", offsetof(struct t, f))
#define S(t) printf(#t " %zu\\n", sizeof(struct t))
int main(void) {
  S(ublksrv_ctrl_cmd); O(ublksrv_ctrl_cmd, queue_id); O(ublksrv_ctrl_cmd, len); O(ublksrv_ctrl_cmd, addr); O(ublksrv_ctrl_cmd, data);
  S(ublksrv_ctrl_dev_info); O(ublksrv_ctrl_dev_info, max_io_buf_bytes); O(ublksrv_ctrl_dev_info, dev_id);
  O(ublksrv_ctrl_dev_info, ublksrv_pid); O(ublksrv_ctrl_dev_info, flags); O(ublksrv_ctrl_dev_info, ublksrv_flags);
  S(ublksrv_io_desc); O(ublksrv_io_desc, nr_sectors); O(ublksrv_io_desc, start_sector); O(ublksrv_io_desc, addr);
  S(ublksrv_io_cmd); O(ublksrv_io_cmd, tag); O(ublksrv_io_cmd, result); O(ublksrv_io_cmd, addr);
  S(ublk_param_basic); O(ublk_param_basic, max_sectors); O(ublk_param_basic, dev_sectors); O(ublk_param_basic, virt_boundary_mask);
  S(ublk_param_discard); O(ublk_param_discard, max_write_zeroes_sectors); O(ublk_param_discard, max_discard_segments);
  O(ublk_params, basic); O(ublk_params, discard);
#ifdef UBLK_PARAM_TYPE_ZONED
  O(ublk_params, devt); O(ublk_params, zoned); S(ublk_param_zoned);
  O(ublk_param_zoned, max_open_zones); O(ublk_param_zoned, max_active_zones); O(ublk_param_zoned, max_zone_append_sectors);
  O(ublksrv_io_cmd, zone_append_lba);
  printf("UBLK_F_ZONED %llu\n", (unsigned long long)UBLK_F_ZONED);
  printf("UBLK_IO_OP_ZONE_OPEN %d\nUBLK_IO_OP_ZONE_CLOSE %d\nUBLK_IO_OP_ZONE_FINISH %d\nUBLK_IO_OP_ZONE_APPEND %d\n",
    UBLK_IO_OP_ZONE_OPEN, UBLK_IO_OP_ZONE_CLOSE, UBLK_IO_OP_ZONE_FINISH, UBLK_IO_OP_ZONE_APPEND);
  printf("UBLK_IO_OP_ZONE_RESET_ALL %d\nUBLK_IO_OP_ZONE_RESET %d\nUBLK_IO_OP_REPORT_ZONES %d\n",
    UBLK_IO_OP_ZONE_RESET_ALL, UBLK_IO_OP_ZONE_RESET, UBLK_IO_OP_REPORT_ZONES);
#endif
  S(blk_zone); O(blk_zone, start); O(blk_zone, len); O(blk_zone, wp); O(blk_zone, type); O(blk_zone, cond);
  O(blk_zone, non_seq); O(blk_zone, reset); O(blk_zone, capacity);
  return 0;
}
`;
    writeFileSync(join(dir, 'off.c'), src);
    const cc = spawnSync('gcc', ['-o', join(dir, 'off'), join(dir, 'off.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const out = spawnSync(join(dir, 'off'), { encoding: 'utf8' }).stdout;
    const c = new Map(
      out
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    const eq = (key: string, v: number) => assert.equal(Number(c.get(key)), v, key);
    eq('ublksrv_ctrl_cmd', CtrlCmd.SIZE);
    for (const f of ['queue_id', 'len', 'addr', 'data'] as const)
      eq(`ublksrv_ctrl_cmd.${f}`, CtrlCmd.offsetOf(f));
    eq('ublksrv_ctrl_dev_info', DevInfo.SIZE);
    for (const f of ['max_io_buf_bytes', 'dev_id', 'ublksrv_pid', 'flags', 'ublksrv_flags'] as const)
      eq(`ublksrv_ctrl_dev_info.${f}`, DevInfo.offsetOf(f));
    eq('ublksrv_io_desc', IoDesc.SIZE);
    for (const f of ['nr_sectors', 'start_sector', 'addr'] as const)
      eq(`ublksrv_io_desc.${f}`, IoDesc.offsetOf(f));
    eq('ublksrv_io_cmd', IoCmd.SIZE);
    for (const f of ['tag', 'result', 'addr'] as const) eq(`ublksrv_io_cmd.${f}`, IoCmd.offsetOf(f));
    eq('ublk_param_basic', ParamBasic.SIZE);
    for (const f of ['max_sectors', 'dev_sectors', 'virt_boundary_mask'] as const)
      eq(`ublk_param_basic.${f}`, ParamBasic.offsetOf(f));
    eq('ublk_param_discard', ParamDiscard.SIZE);
    for (const f of ['max_write_zeroes_sectors', 'max_discard_segments'] as const)
      eq(`ublk_param_discard.${f}`, ParamDiscard.offsetOf(f));
    eq('ublk_params.basic', Params.offsetOf('basic'));
    eq('ublk_params.discard', Params.offsetOf('discard'));
    if (c.has('ublk_params.zoned')) {
      eq('ublk_params.devt', Params.offsetOf('devt'));
      eq('ublk_params.zoned', Params.offsetOf('zoned'));
      eq('ublk_param_zoned', ParamZoned.SIZE);
      for (const f of ['max_open_zones', 'max_active_zones', 'max_zone_append_sectors'] as const)
        eq(`ublk_param_zoned.${f}`, ParamZoned.offsetOf(f));
      eq('ublksrv_io_cmd.zone_append_lba', IoCmd.offsetOf('addr'));
      eq('UBLK_F_ZONED', Number(UBLK_F.ZONED));
      for (const [k, v] of Object.entries(UBLK_IO_OP))
        if (k.startsWith('ZONE_') || k === 'REPORT_ZONES') eq(`UBLK_IO_OP_${k}`, v);
    }
    eq('blk_zone', BlkZone.SIZE);
    for (const f of ['start', 'len', 'wp', 'type', 'cond', 'non_seq', 'reset', 'capacity'] as const)
      eq(`blk_zone.${f}`, BlkZone.offsetOf(f));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
