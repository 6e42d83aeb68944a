// Interop: `tsblk ublk` against the Linux kernel's ublk_drv, in ONE guest boot (test/vm/,
// docs/interop.md). Guest side: test/vm/guest/interop-ublk.sh, which starts
// `tsblk ublk add ram:256M --queues 2 --depth 64` from dist/ (bin/tsblk.js; data moved with
// UBLK_F_USER_COPY) and then, through /dev/ublkb0:
//  - `tsblk ublk list --json`: the device, live, with the server's pid, queues, depth, size;
//  - the size, block sizes, 2 hardware queues and the queue limits the kernel derived from
//    SET_PARAMS (discard, write zeroes, volatile cache + FUA, not rotational, writable);
//  - a pattern written with dd and read back buffered, O_DIRECT 4 KiB and 128 KiB; patterns
//    written with O_DIRECT 4 KiB and 128 KiB; the device's last block;
//  - blkdiscard (DISCARD) and blkdiscard -z (WRITE_ZEROES) read back as zeroes, the rest kept;
//  - fio randwrite + crc32c verify at 4 KiB and 128 KiB, 2 jobs, QD 32;
//  - ext4: mkfs, mount, three pattern files, sync, umount, fsck -fn clean, mount again: every
//    sha256 as computed here;
//  - SIGTERM: STOP_DEV, queues stopped, DEL_DEV: the server exits 0, /dev/ublkb0 and
//    /dev/ublkc0 are gone;
//  - a second server deleted from another process (`tsblk ublk del 0`): the server notices,
//    exits 0, both nodes are gone and `tsblk ublk list` shows none.
// dist/ must be current (ensureBuilt), and the native addon built with io_uring support
// (native/uring.c). Under CI=true a missing peer fails; elsewhere the file is skipped.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import { loadUblkNative } from '../src/native/addon.js';
import { ensureBuilt } from './vm/build-dist.js';
import { patternBlock } from './vm/copy-reference.js';
import { GuestFacts, guestRunSummary } from './vm/report.js';
import {
  assertPeers,
  checkPeers,
  guestScript,
  interopSkip,
  runInGuest,
  type GuestResult,
  type PeerCheck,
} from './vm/vm.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const QUEUES = 2;
const DEPTH = 64;
const BS = 4096;

/** sha256 of lib.sh `pattern FIRST COUNT 4096`, cut to `bytes` when given. */
function patternSha(first: number, count: number, bytes?: number): string {
  const h = createHash('sha256');
  let left = bytes ?? count * BS;
  for (let lba = first; lba < first + count && left > 0; lba++) {
    const b = patternBlock(lba, BS);
    h.update(b.subarray(0, Math.min(BS, left)));
    left -= BS;
  }
  return h.digest('hex');
}

/** The harness's peers, plus ublk_drv in the guest kernel and the addon's io_uring part. */
function ublkPeers(): PeerCheck {
  const c = checkPeers([
    'fio',
    'blkdiscard',
    'blockdev',
    'modprobe',
    'dd',
    'sha256sum',
    'cmp',
    'node',
    'mkfs.ext4',
    'fsck.ext4',
    'mount',
    'umount',
    'timeout',
  ]);
  const missing = [...c.missing];
  if (c.kernel) {
    const dir = join(c.kernel.moduleDir, 'kernel', 'drivers', 'block');
    let has = false;
    try {
      has = readdirSync(dir).some((f) => f.startsWith('ublk_drv.ko'));
    } catch {
      // no such directory: missing below
    }
    if (!has) missing.push(`ublk_drv in ${dir} (guest kernel without CONFIG_BLK_DEV_UBLK)`);
  }
  const native = loadUblkNative();
  if (!native.native) missing.push(`the native addon's io_uring part (${native.reason}; run npm ci)`);
  if (missing.length === c.missing.length) return c;
  return { ...c, ok: false, missing, reason: `interop peers missing: ${missing.join(', ')}` };
}

const peers = ublkPeers();

describe(
  'interop: tsblk ublk server against the kernel ublk_drv (one guest boot)',
  { skip: interopSkip(peers) },
  () => {
    let run: GuestResult;
    let facts: GuestFacts;
    let built: string;

    before(
      async () => {
        assertPeers(peers);
        built = ensureBuilt();
        run = await runInGuest({
          command: ['bash', guestScript('interop-ublk.sh')],
          env: { SIZE: String(SIZE), QUEUES: String(QUEUES), DEPTH: String(DEPTH) },
          timeoutMs: 480_000,
        });
        facts = new GuestFacts(run.stdout);
      },
      { timeout: 540_000 },
    );

    it('boots, runs the guest script to the end and exits 0', (t) => {
      t.diagnostic(guestRunSummary(run, built));
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
      assert.deepEqual(facts.failedChecks(), []);
    });

    it('loads ublk_drv; tsblk ublk add prints /dev/ublkb0 and the size first, USER_COPY negotiated', () => {
      assert.equal(facts.get('modprobe_rc'), '0');
      assert.equal(facts.get('control_dev'), 'yes');
      assert.equal(facts.get('server_ready'), 'yes', facts.tail(40));
      assert.equal(facts.get('ready_line'), '/dev/ublkb0');
      assert.match(
        facts.get('size_line'),
        new RegExp(`^  size ${SIZE} bytes \\(256 MiB\\), 512-byte blocks$`),
      );
      assert.match(
        facts.get('info_line'),
        new RegExp(
          `^  ublk device 0 \\(/dev/ublkc0, server pid ${facts.get('server_pid')}\\): .*` +
            `${QUEUES} queues x ${DEPTH} tags, flags 0x[0-9a-f]+ \\(.*\\bUSER_COPY\\b.*\\), ` +
            'data copied by the queue threads$',
        ),
      );
      assert.equal(facts.get('block_dev'), 'yes');
      assert.equal(facts.get('char_dev'), 'yes');
    });

    it('tsblk ublk list --json shows the live device with its server pid, queues, depth and size', () => {
      assert.equal(facts.get('list_rc'), '0', facts.tail(40));
      const list = JSON.parse(facts.get('list_json')) as { devices: Record<string, unknown>[] };
      assert.equal(list.devices.length, 1);
      const d = list.devices[0]!;
      assert.equal(d.id, 0);
      assert.equal(d.state, 'live');
      assert.equal(d.pid, Number(facts.get('server_pid')));
      assert.equal(d.serverRunning, true);
      assert.equal(d.queues, QUEUES);
      assert.equal(d.depth, DEPTH);
      assert.equal(d.size, SIZE);
      assert.equal(d.blockDevice, '/dev/ublkb0');
      assert.equal(d.charDevice, '/dev/ublkc0');
      assert.ok((d.flags as string[]).includes('USER_COPY'));
    });

    it('the kernel took the parameters: size, block sizes, queues, discard, write zeroes, cache', () => {
      assert.equal(facts.get('size'), String(SIZE));
      assert.equal(facts.get('lbs'), '512');
      assert.equal(facts.get('pbs'), '4096');
      assert.equal(facts.get('hw_queues'), String(QUEUES));
      assert.equal(facts.get('max_sectors_kb'), '1024'); // min(RAM's 32 MiB, the 1 MiB default buffer)
      assert.ok(Number(facts.get('discard_max')) > 0, 'no discard in the queue limits');
      // tsblk asks for 512 (RAM's granularity); the block layer raises it to the physical block
      // size (blk_validate_limits: max(discard_granularity, physical_block_size)).
      assert.equal(facts.get('discard_granularity'), '4096');
      assert.ok(Number(facts.get('write_zeroes_max')) > 0, 'no write zeroes in the queue limits');
      assert.equal(facts.get('write_cache'), 'write back');
      assert.equal(facts.get('fua'), '1');
      assert.equal(facts.get('rotational'), '0');
      assert.equal(facts.get('ro'), '0');
    });

    it('data written through /dev/ublkb0 reads back equal: buffered, O_DIRECT 4 KiB and 128 KiB, last block', () => {
      const p = facts.get('pattern_sha');
      assert.match(p, /^[0-9a-f]{64}$/);
      assert.equal(facts.get('dd_write_rc'), '0');
      assert.equal(facts.get('buffered_sha'), p);
      assert.equal(facts.get('direct4k_sha'), p);
      assert.equal(facts.get('direct128k_sha'), p);
      assert.equal(facts.get('write4k_rc'), '0');
      assert.equal(facts.get('write128k_rc'), '0');
      assert.equal(facts.get('write4k_sha'), p);
      assert.equal(facts.get('write128k_sha'), p);
      assert.equal(facts.get('last_block_match'), 'yes');
    });

    it('blkdiscard and blkdiscard -z read back as zeroes; the blocks next to them are kept', () => {
      assert.equal(facts.get('blkdiscard_rc'), '0');
      const zero = facts.get('zero4_sha');
      assert.equal(facts.get('discarded_sha'), zero);
      assert.equal(facts.get('kept_sha'), facts.get('pattern_tail_sha'));
      assert.notEqual(facts.get('kept_sha'), zero);
      assert.equal(facts.get('zeroout_rc'), '0');
      assert.equal(facts.get('zeroed_sha'), zero);
    });

    it('fio randwrite with crc32c verify passes at 4 KiB and 128 KiB (2 jobs, QD 32)', () => {
      assert.equal(facts.get('fio_4k_rc'), '0', facts.tail(40));
      assert.equal(facts.get('fio_128k_rc'), '0', facts.tail(40));
    });

    it('ext4: mkfs, mount, files, umount, fsck -fn clean, remount: every byte intact', () => {
      assert.equal(facts.get('mkfs_rc'), '0', facts.section('ext4'));
      assert.equal(facts.get('mount_rc'), '0', facts.section('ext4'));
      assert.equal(facts.get('files_written'), '3');
      assert.equal(facts.get('umount_rc'), '0');
      assert.equal(facts.get('fsck_rc'), '0', 'fsck.ext4 -fn found problems');
      assert.equal(facts.get('remount_rc'), '0');
      assert.equal(facts.get('bytes_a'), String(1024 * BS));
      assert.equal(facts.get('sha_a'), patternSha(0, 1024));
      assert.equal(facts.get('bytes_b'), String(257 * BS));
      assert.equal(facts.get('sha_b'), patternSha(5000, 257));
      assert.equal(facts.get('bytes_c'), '10000');
      assert.equal(facts.get('sha_c'), patternSha(9000, 3, 10000));
      assert.equal(facts.get('umount2_rc'), '0');
    });

    it('SIGTERM: the server stops the device, exits 0 and leaves no /dev/ublkb0 or /dev/ublkc0', () => {
      assert.equal(facts.get('server_exit'), '0', facts.tail(40));
      const stopped = facts.get('stopped_line');
      const m = /served=(\d+) failed=(\d+) aborted=(\d+)/.exec(stopped);
      assert.ok(m, `no counts in '${stopped}'`);
      assert.ok(Number(m[1]) > 0, 'no request was served');
      assert.equal(m[2], '0', 'requests failed');
      assert.equal(m[3], String(QUEUES * DEPTH), 'every fetched tag was aborted at stop');
      assert.equal(facts.get('block_gone'), 'yes');
      assert.equal(facts.get('char_gone'), 'yes');
    });

    it('tsblk serve with a ublk section: /dev/ublkb0 over the config device, data round trip, SIGTERM removes it', () => {
      assert.match(
        facts.get('serve_ublk_line'),
        /^ {2}ublk device 0: \/dev\/ublkb0 over disk \(ram, 64 MiB\), 2 queue\(s\) x 32 tags$/,
        facts.section('tsblk serve'),
      );
      assert.equal(facts.get('serve_block_size'), String(64 * MiB));
      assert.equal(facts.get('serve_data_sha'), patternSha(300, 256));
      assert.equal(facts.get('serve_exit'), '0');
      assert.equal(facts.get('serve_block_gone'), 'yes');
    });

    it('tsblk ublk del 0 from another process: the running server exits 0, nothing is left', () => {
      assert.equal(facts.get('server2_ready'), 'yes', facts.tail(40));
      assert.equal(facts.get('ready2_line'), '/dev/ublkb0');
      assert.equal(facts.get('del_rc'), '0', facts.tail(40));
      assert.match(facts.get('del_line'), /^deleted ublk device 0\b/);
      assert.equal(facts.get('server2_exit'), '0', facts.tail(40));
      assert.match(facts.get('outside_line'), /\/dev\/ublkb0 was stopped from outside/);
      assert.equal(facts.get('block2_gone'), 'yes');
      assert.equal(facts.get('char2_gone'), 'yes');
      assert.equal(facts.get('list_after'), 'no ublk devices');
    });
  },
);
