// Interop: the Linux kernel's NBD client (nbd.ko, set up by nbd-client 3.24 over netlink)
// against `tsblk nbd ram:256M` (dist/, inside the guest), in ONE guest boot (test/vm/,
// docs/interop.md). Guest side: test/vm/guest/interop-kernel-nbd.sh.
//
//  - connect by export name (-N): the size the kernel sees, the transmission flags it got
//    (debugfs nbd0/flags: flush, FUA, trim, write zeroes, multi-conn; not read-only, not
//    rotational) and the queue limits they became (discard, write zeroes, write-back cache);
//  - ext4: mkfs (whose whole-device discard must say "done"), mount, three pattern files,
//    sync, umount, fsck -fn clean, mount again: every sha256 as computed here;
//  - blkdiscard of a 16 MiB pattern reads back as zeroes (TRIM on the RAM device), blkdiscard
//    -z of a 4 MiB one too (WRITE_ZEROES);
//  - nbd-client -d: exit 0, the device's size drops to 0, no TCP connection left;
//  - nbd-client -C 2 -b 4096: two TCP connections (nbd-client refuses -C without
//    CAN_MULTI_CONN), 4096-byte logical blocks, 8 MiB written and read back through both, the
//    ext4 label written over the first connection still there; disconnect;
//  - SIGTERM: tsblk nbd exits 0.
// The file patterns are test/vm/guest/lib.sh's `pattern` ("LBA %08d " per 4 KiB block), built
// here with copy-reference.ts's patternBlock, so the guest's sha256 values are checked against
// an independent generator. Under CI=true a missing peer fails; elsewhere the file is skipped.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, it } from 'node:test';

import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_ROTATIONAL,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from '../src/export/nbd/protocol.js';
import { ensureBuilt } from './vm/build-dist.js';
import { patternBlock } from './vm/copy-reference.js';
import { GuestFacts, guestRunSummary } from './vm/report.js';
import { assertPeers, checkPeers, guestScript, interopSkip, runInGuest, type GuestResult } from './vm/vm.js';

const peers = checkPeers([
  'nbd-client',
  'node',
  'modprobe',
  'blockdev',
  'blkdiscard',
  'blkid',
  'mkfs.ext4',
  'fsck.ext4',
  'ss',
  'dd',
]);

const SIZE = 256 * 1024 * 1024;
const NAME = 'disk';
const PORT = 10809;
const BS = 4096;
const MiB = 1024 * 1024;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** sha256 of `count` pattern blocks from `first`, cut to `bytes` when given. */
function patternSha(first: number, count: number, bytes?: number): string {
  const h = createHash('sha256');
  let left = bytes ?? count * BS;
  for (let i = 0; i < count && left > 0; i++) {
    const b = patternBlock(first + i, BS);
    h.update(left < BS ? b.subarray(0, left) : b);
    left -= BS;
  }
  return h.digest('hex');
}
const zeroSha = (bytes: number) => sha256(Buffer.alloc(bytes));
const hex = (n: number) => `0x${n.toString(16)}`;

describe(
  'interop: the kernel NBD client (nbd-client, nbd.ko) against tsblk nbd, with ext4, discard and multi-conn (one guest boot)',
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
          command: ['bash', guestScript('interop-kernel-nbd.sh')],
          env: { SIZE: String(SIZE), NAME, PORT: String(PORT) },
          timeoutMs: 240_000,
        });
        facts = new GuestFacts(run.stdout);
      },
      { timeout: 300_000 },
    );

    it('boots, runs the guest script to the end and exits 0', (t) => {
      t.diagnostic(guestRunSummary(run, built));
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
      assert.deepEqual(facts.failedChecks(), []);
    });

    it('loads nbd.ko (nbds_max=2) and starts tsblk nbd on 127.0.0.1:10809', () => {
      assert.equal(facts.get('modprobe_rc'), '0');
      assert.equal(facts.get('nbd_dev'), 'yes');
      assert.equal(facts.get('server_start_rc'), '0', facts.tail(40));
      assert.match(run.stdout, new RegExp(`^nbd://127\\.0\\.0\\.1:${PORT}/${NAME}$`, 'm'));
    });

    it('nbd-client -N connects: the kernel sees the export size over one connection', () => {
      assert.equal(facts.get('connect_rc'), '0');
      assert.equal(facts.get('c1_size'), String(SIZE));
      assert.equal(facts.get('c1_lbs'), '512'); // nbd-client's default block size
      assert.equal(facts.get('c1_connections'), '1');
    });

    it('the kernel got flush, FUA, trim, write zeroes and multi-conn; not read-only, not rotational', () => {
      for (const c of ['c1', 'c2']) {
        const raw = facts.get(`${c}_flags`);
        assert.match(raw, /^0x[0-9a-f]+$/i, `${c}: debugfs nbd0/flags`);
        const flags = Number(raw);
        for (const [name, bit] of [
          ['HAS_FLAGS', NBD_FLAG_HAS_FLAGS],
          ['SEND_FLUSH', NBD_FLAG_SEND_FLUSH],
          ['SEND_FUA', NBD_FLAG_SEND_FUA],
          ['SEND_TRIM', NBD_FLAG_SEND_TRIM],
          ['SEND_WRITE_ZEROES', NBD_FLAG_SEND_WRITE_ZEROES],
          ['CAN_MULTI_CONN', NBD_FLAG_CAN_MULTI_CONN],
        ] as const)
          assert.equal(flags & bit, bit, `${c}: flags ${hex(flags)} lack ${name}`);
        assert.equal(flags & NBD_FLAG_READ_ONLY, 0, `${c}: flags ${hex(flags)} say read-only`);
        assert.equal(flags & NBD_FLAG_ROTATIONAL, 0, `${c}: flags ${hex(flags)} say rotational`);
        // ... and what the block layer made of them
        assert.ok(Number(facts.get(`${c}_discard_max`)) > 0, `${c}: no discard (TRIM) in the queue limits`);
        assert.ok(
          Number(facts.get(`${c}_write_zeroes_max`)) > 0,
          `${c}: no write zeroes in the queue limits`,
        );
        assert.equal(facts.get(`${c}_write_cache`), 'write back', `${c}: SEND_FLUSH means a volatile cache`);
        assert.equal(facts.get(`${c}_ro`), '0');
        assert.equal(facts.get(`${c}_rotational`), '0');
      }
    });

    it('ext4: mkfs (its discard done), mount, files, umount, fsck -fn clean, remount: every byte intact', () => {
      assert.equal(facts.get('mkfs_rc'), '0');
      assert.equal(facts.get('mkfs_discard'), 'done');
      assert.equal(facts.get('mount_rc'), '0');
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
    });

    it('blkdiscard (TRIM) and blkdiscard -z (WRITE_ZEROES) turn written patterns into zeroes', () => {
      assert.equal(facts.get('raw_write_rc'), '0');
      assert.equal(facts.get('raw_sha'), patternSha(0, (16 * MiB) / BS), 'the pattern was there first');
      assert.equal(facts.get('blkdiscard_rc'), '0');
      assert.equal(facts.get('discarded_sha'), zeroSha(16 * MiB));
      assert.equal(facts.get('zero_before_sha'), patternSha(0, (4 * MiB) / BS));
      assert.equal(facts.get('zeroout_rc'), '0');
      assert.equal(facts.get('zeroed_sha'), zeroSha(4 * MiB));
    });

    it('nbd-client -d disconnects cleanly: size 0, no connection left', () => {
      assert.equal(facts.get('disconnect_rc'), '0');
      assert.equal(facts.get('after_disconnect_size'), '0');
      assert.equal(facts.get('after_disconnect_connections'), '0');
    });

    it('nbd-client -C 2 -b 4096: two connections, 4 KiB blocks, data written and read back, the fs label kept', () => {
      assert.equal(facts.get('mc_connect_rc'), '0');
      assert.equal(facts.get('c2_size'), String(SIZE));
      assert.equal(facts.get('c2_lbs'), '4096');
      assert.equal(facts.get('c2_connections'), '2');
      assert.equal(facts.get('mc_write_rc'), '0');
      assert.equal(facts.get('mc_sha'), patternSha(100, (8 * MiB) / BS));
      assert.equal(facts.get('mc_fs_label'), 'tsblk-nbd');
      assert.equal(facts.get('mc_disconnect_rc'), '0');
    });

    it('tsblk nbd stops with exit status 0 on SIGTERM, after every connection closed with NBD_CMD_DISC', () => {
      assert.equal(facts.get('server_stop_rc'), '0');
      const closed = run.stdout.match(/^tsblk nbd: connection \d+ .*: closed \((.*)\)$/gm) ?? [];
      assert.equal(closed.length, 3, `three connections (1 + 2), closed:\n${closed.join('\n')}`);
      for (const line of closed) assert.match(line, /NBD_CMD_DISC/);
    });
  },
);
