// Interop: a zoned tsblk device exported through ublk (UBLK_F_ZONED) and used by the Linux
// kernel, in ONE guest boot (test/vm/, docs/interop.md). Guest side:
// test/vm/guest/interop-ublk-zoned.sh, which starts `node bin/tsblk.js ublk add -c zoned.json z`
// (dist/; a zoned device over ram: 64 zones of 4 MiB, 8 conventional, open/active limits 12/14)
// and checks, through /dev/ublkb0:
//  - the kernel's view: host-managed, chunk_sectors = zone size, nr_zones, the open and active
//    limits, zone append size;
//  - blkzone report: start, len, write pointer, condition and type of conventional,
//    sequential and last zones;
//  - sequential O_DIRECT writes move the write pointer and read back; a write above the write
//    pointer fails and leaves it; the last zone filled to FULL, its last block read back;
//  - blkzone reset / open / close / finish and reset of every zone, as conditions;
//  - mkfs.f2fs -m, mount, a file written, remounted and read back equal;
//  - SIGTERM: the server exits 0 and /dev/ublkb0 and /dev/ublkc0 are gone.
// Under CI=true a missing peer fails; elsewhere the file is skipped.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import { loadUblkNative } from '../src/native/addon.js';
import { ensureBuilt } from './vm/build-dist.js';
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

const ZONE_MIB = 4;
const ZS = ZONE_MIB * 2048; // zone size in sectors
const NR_ZONES = 64;
const CONV = 8;
const MAX_OPEN = 12;
const MAX_ACTIVE = 14;
// BLK_ZONE_COND_* and BLK_ZONE_TYPE_*
const COND = { NOT_WP: 0, EMPTY: 1, IMP_OPEN: 2, EXP_OPEN: 3, CLOSED: 4, FULL: 14 } as const;
const TYPE = { CONVENTIONAL: 1, SEQ_REQUIRED: 2 } as const;

function ublkZonedPeers(): PeerCheck {
  const c = checkPeers(['blkzone', 'mkfs.f2fs', 'blockdev', 'modprobe', 'dd', 'cmp', 'node']);
  const missing = [...c.missing];
  if (c.kernel) {
    for (const [dir, mod] of [
      [join(c.kernel.moduleDir, 'kernel', 'drivers', 'block'), 'ublk_drv.ko'],
      [join(c.kernel.moduleDir, 'kernel', 'fs', 'f2fs'), 'f2fs.ko'],
    ] as const) {
      let has = false;
      try {
        has = readdirSync(dir).some((f) => f.startsWith(mod));
      } catch {
        // no such directory: missing below
      }
      if (!has) missing.push(`${mod} in ${dir}`);
    }
  }
  const native = loadUblkNative();
  if (!native.native) missing.push(`the native addon's io_uring part (${native.reason}; run npm ci)`);
  if (missing.length === c.missing.length) return c;
  return { ...c, ok: false, missing, reason: `interop peers missing: ${missing.join(', ')}` };
}

const peers = ublkZonedPeers();

/** A `zone N` fact: start, len, write pointer (relative to start, as blkzone prints it), cond, type. */
function zone(
  facts: GuestFacts,
  key: string,
): { start: number; len: number; wp: number; cond: number; type: number } {
  const v = facts.get(key);
  const m = /^(\d+) (\d+) (\d+) (\d+) (\d+)$/.exec(v);
  assert.ok(m, `${key}: no zone in '${v}'\n${facts.tail(30)}`);
  const [start, len, wp, cond, type] = m.slice(1).map(Number) as [number, number, number, number, number];
  return { start, len, wp, cond, type };
}

describe(
  'interop: a zoned tsblk device through ublk (UBLK_F_ZONED), used by the kernel (one guest boot)',
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
          command: ['bash', guestScript('interop-ublk-zoned.sh')],
          env: {
            ZONE_MIB: String(ZONE_MIB),
            NR_ZONES: String(NR_ZONES),
            CONV: String(CONV),
            MAX_OPEN: String(MAX_OPEN),
            MAX_ACTIVE: String(MAX_ACTIVE),
          },
          timeoutMs: 420_000,
        });
        facts = new GuestFacts(run.stdout);
      },
      { timeout: 480_000 },
    );

    it('boots, runs the guest script to the end and exits 0', (t) => {
      t.diagnostic(guestRunSummary(run, built));
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
    });

    it('tsblk ublk add exports the zoned device with ZONED and USER_COPY negotiated', () => {
      assert.equal(facts.get('modprobe_rc'), '0');
      assert.equal(facts.get('server_ready'), 'yes', facts.tail(40));
      const ready = facts.get('ready_line');
      assert.match(ready, /\(zoned\)/);
      assert.match(ready, /\bUSER_COPY\b/);
      assert.match(ready, /\bZONED\b/);
      assert.equal(facts.get('block_dev'), 'yes');
    });

    it('the kernel sees a host-managed device with the zone geometry and limits', () => {
      assert.equal(facts.get('size'), String(NR_ZONES * ZONE_MIB * 1024 * 1024));
      assert.equal(facts.get('zoned'), 'host-managed');
      assert.equal(facts.get('chunk_sectors'), String(ZS));
      assert.equal(facts.get('nr_zones'), String(NR_ZONES));
      assert.equal(facts.get('max_open_zones'), String(MAX_OPEN));
      assert.equal(facts.get('max_active_zones'), String(MAX_ACTIVE));
      // min(the device's zone append, the 1 MiB request buffer)
      assert.equal(facts.get('zone_append_max_bytes'), String(1024 * 1024));
    });

    it('blkzone report lists every zone with its start, length, write pointer, condition and type', () => {
      assert.equal(facts.get('report_lines'), String(NR_ZONES));
      const first = zone(facts, 'zone_first');
      assert.deepEqual(
        [first.start, first.len, first.cond, first.type],
        [0, ZS, COND.NOT_WP, TYPE.CONVENTIONAL],
      );
      assert.deepEqual(zone(facts, 'zone_seq'), {
        start: CONV * ZS,
        len: ZS,
        wp: 0,
        cond: COND.EMPTY,
        type: TYPE.SEQ_REQUIRED,
      });
      const last = zone(facts, 'zone_last');
      assert.deepEqual([last.start, last.len, last.cond], [(NR_ZONES - 1) * ZS, ZS, COND.EMPTY]);
    });

    it('sequential writes move the write pointer; a write above it fails; the last zone fills', () => {
      assert.equal(facts.get('seq_write1_rc'), '0');
      const w1 = zone(facts, 'seq_wp1');
      assert.deepEqual([w1.wp, w1.cond], [2048, COND.IMP_OPEN]);
      assert.equal(facts.get('seq_write2_rc'), '0');
      assert.equal(zone(facts, 'seq_wp2').wp, 4096);
      assert.equal(facts.get('seq_read_match'), 'yes');
      assert.notEqual(facts.get('bad_write_rc'), '0', 'a write above the write pointer succeeded');
      assert.equal(zone(facts, 'bad_write_wp').wp, 4096, 'the failed write moved the write pointer');
      assert.equal(facts.get('seq4k_rc'), '0');
      assert.equal(zone(facts, 'seq4k_wp').wp, 32);
      assert.equal(facts.get('last_zone_rc'), '0');
      const last = zone(facts, 'last_zone');
      assert.deepEqual([last.wp, last.cond], [ZS, COND.FULL]);
      assert.equal(facts.get('last_block_match'), 'yes');
    });

    it('blkzone reset, open, close, finish and reset of all zones change the conditions', () => {
      assert.equal(facts.get('reset_rc'), '0');
      const r = zone(facts, 'reset_zone');
      assert.deepEqual([r.wp, r.cond], [0, COND.EMPTY]);
      assert.equal(facts.get('reset_reads_zero'), 'yes');
      assert.equal(facts.get('mgmt_write_rc'), '0');
      assert.equal(zone(facts, 'implicit_open').cond, COND.IMP_OPEN);
      assert.equal(facts.get('open_rc'), '0');
      assert.equal(zone(facts, 'explicit_open').cond, COND.EXP_OPEN);
      assert.equal(facts.get('close_rc'), '0');
      const closed = zone(facts, 'closed');
      assert.deepEqual([closed.wp, closed.cond], [8, COND.CLOSED]);
      assert.equal(facts.get('finish_rc'), '0');
      assert.equal(zone(facts, 'finished').cond, COND.FULL);
      assert.equal(facts.get('reset_all_rc'), '0');
      const [m, l] = facts.get('after_reset_all').split(' | ');
      assert.match(m ?? '', new RegExp(`^\\d+ ${ZS} 0 ${COND.EMPTY} ${TYPE.SEQ_REQUIRED}$`));
      assert.match(l ?? '', new RegExp(`^\\d+ ${ZS} 0 ${COND.EMPTY} ${TYPE.SEQ_REQUIRED}$`));
    });

    it('mkfs.f2fs -m formats it; a file survives a remount', () => {
      assert.equal(facts.get('modprobe_f2fs_rc'), '0');
      assert.equal(facts.get('mkfs_f2fs_rc'), '0', facts.tail(60));
      assert.equal(facts.get('mount_rc'), '0', facts.tail(40));
      assert.equal(facts.get('f2fs_write_rc'), '0');
      assert.equal(facts.get('umount_rc'), '0');
      assert.equal(facts.get('remount_rc'), '0');
      assert.equal(facts.get('f2fs_file_match'), 'yes');
    });

    it('SIGTERM: the server exits 0 and leaves no /dev/ublkb0 or /dev/ublkc0', () => {
      assert.equal(facts.get('server_exit'), '0', facts.tail(40));
      assert.match(facts.get('stopped_line'), /served=[1-9]\d* /);
      assert.equal(facts.get('block_gone'), 'yes');
      assert.equal(facts.get('char_gone'), 'yes');
    });
  },
);
