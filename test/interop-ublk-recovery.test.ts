// Interop: ublk user recovery against the Linux kernel's ublk_drv, in ONE guest boot (test/vm/,
// docs/ublk.md "User recovery"). Guest side: test/vm/guest/interop-ublk-recovery.sh:
// `tsblk ublk add ram:128M --recoverable` (the RAM in a /dev/shm file), a writer logging every acknowledged
// O_DIRECT block, SIGKILL of the server mid-way, `tsblk ublk list` (quiesced, server gone),
// `tsblk ublk recover 0`; the writer finishes without an error and every block reads
// back as written (none lost, the one in flight reissued); then ext4 across a second crash:
// synced files and a write issued while no server ran are intact, fsck clean; SIGTERM of the
// recovered server removes the device. Under CI=true a missing peer fails.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
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

const BS = 4096;
const BLOCKS = 100;

function patternSha(first: number, count: number, bytes?: number): string {
  const h = createHash('sha256');
  let left = bytes ?? count * BS;
  for (let lba = first; lba < first + count && left > 0; lba++) {
    h.update(patternBlock(lba, BS).subarray(0, Math.min(BS, left)));
    left -= BS;
  }
  return h.digest('hex');
}

function peers(): PeerCheck {
  const c = checkPeers(['dd', 'sha256sum', 'node', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount', 'modprobe']);
  const native = loadUblkNative();
  if (native.native) return c;
  const missing = [...c.missing, `the native addon's io_uring part (${native.reason}; run npm ci)`];
  return { ...c, ok: false, missing, reason: `interop peers missing: ${missing.join(', ')}` };
}

const p = peers();

describe('interop: ublk user recovery after SIGKILL (one guest boot)', { skip: interopSkip(p) }, () => {
  let run: GuestResult;
  let facts: GuestFacts;
  let built: string;

  before(
    async () => {
      assertPeers(p);
      built = ensureBuilt();
      run = await runInGuest({
        command: ['bash', guestScript('interop-ublk-recovery.sh')],
        env: { BLOCKS: String(BLOCKS) },
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
  });

  it('add ram:128M --recoverable negotiates USER_RECOVERY(_REISSUE); the RAM is a tmpfs file', () => {
    assert.equal(facts.get('add_ready'), 'yes', facts.section('add --recoverable'));
    assert.match(facts.get('add_flags'), /\bUSER_RECOVERY\b.*\bUSER_RECOVERY_REISSUE\b/);
    assert.equal(facts.get('ram_file'), String(128 * 1024 * 1024), '/dev/shm/tsblk-ublk-0.img');
  });

  it('SIGKILL mid-write: the device is quiesced, its server gone, the write in flight waits', () => {
    const acked = Number(facts.get('acked_at_kill'));
    assert.ok(acked >= 30 && acked < BLOCKS, `killed mid-way (${acked} of ${BLOCKS} acknowledged)`);
    assert.equal(facts.get('state_after_kill'), 'quiesced false', facts.section('writer'));
    assert.equal(facts.get('writer_waiting'), 'yes');
  });

  it('recover: live again; the writer finishes without an error; every block reads back as written', () => {
    assert.equal(facts.get('recover_ready'), 'yes', facts.section('writer'));
    assert.equal(facts.get('state_after_recover'), 'live true');
    assert.equal(facts.get('writer_rc'), '0', 'no write failed across the crash');
    assert.equal(facts.get('acked_total'), String(BLOCKS));
    assert.equal(facts.get('blocks_sha'), patternSha(0, BLOCKS), 'no acknowledged block lost or torn');
  });

  it('ext4 across a second crash: synced files and a write made while no server ran are intact, fsck clean', () => {
    assert.equal(facts.get('mkfs_rc'), '0', facts.section('ext4'));
    assert.equal(facts.get('mount_rc'), '0', facts.section('ext4'));
    assert.equal(facts.get('files_synced'), '2');
    assert.equal(facts.get('state_after_kill2'), 'quiesced false');
    assert.equal(facts.get('recover2_ready'), 'yes', facts.section('ext4'));
    assert.equal(facts.get('late_write_rc'), '0');
    assert.equal(facts.get('sha_a'), patternSha(1000, 512));
    assert.equal(facts.get('sha_b'), patternSha(2000, 3, 10000));
    assert.equal(facts.get('sha_c'), patternSha(3000, 256));
    assert.equal(facts.get('umount_rc'), '0');
    assert.equal(facts.get('fsck_rc'), '0', 'fsck.ext4 -fn found problems');
  });

  it('SIGTERM: the recovered server exits 0 and removes /dev/ublkb0 and the RAM file', () => {
    assert.equal(facts.get('stop_exit'), '0', facts.section('stop'));
    assert.equal(facts.get('block_gone'), 'yes');
    assert.equal(facts.get('ram_gone'), 'yes');
  });
});
