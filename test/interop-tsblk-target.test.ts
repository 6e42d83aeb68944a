// Interop: the tsblk NVMe/TCP target (`tsblk serve CONFIG`, run from dist/ inside the guest)
// against real Linux peers, in ONE guest boot (test/vm/, docs/interop.md), with QEMU's emulated
// NVMe controller attached as the Copy reference. Guest side: test/vm/guest/interop-tsblk-target.sh.
//
//  - nvme-cli + the kernel's NVMe/TCP host: discover (entries per host NQN), connect, list,
//    id-ctrl (ONCS Copy bit, OCFS), id-ns (MSSRL/MCL/MSRC as configured: 16/64/7 on 64 MiB of
//    512-byte blocks, QEMU's `-device nvme-ns,mssrl=16,mcl=64,msrc=7`);
//  - fio write + crc32c verify at 4 KiB and 128 KiB, 2 jobs on 2 I/O queues, QD32; again with
//    header and data digests (nvme connect -g -G);
//  - ext4: mkfs, mount, files, unmount, fsck clean; disconnect, reconnect, every sha256 intact;
//  - Copy: qemu-copy-reference.sh runs the SAME copy list on QEMU's namespace and on tsblk's;
//    every valid copy must give the same sha256 on both (and what ReferenceModel predicts).
//    Invalid copies must give the status the NVM Command Set specification defines. QEMU 7.2
//    deviates on some; each deviation is written next to the copy (`qemu72`) and checked, so the
//    table stays true: Internal Error (0x6) instead of Command Size Limit Exceeded for a range
//    over MSSRL and instead of LBA Out of Range, no MCL check at all (it copies), and it may
//    copy the ranges before a bad one. tsblk checks every range before copying anything, so a
//    rejected Copy never changes a block;
//  - descriptor formats nvme-cli 2.3 will not send (`nvme copy` refuses 2 and 3) go through
//    `nvme io-passthru` with hand-built descriptors: format 1 on a namespace without protection
//    information (spec/tsblk: Invalid Field; QEMU 7.2: Invalid Format 0x10a), format 2 before
//    Host Behavior Support enables it and format 4 (Invalid Field on both);
//  - formats 2 and 3 must be enabled with Set Features Host Behavior Support (CDFE), which the
//    Linux host refuses to pass through (EACCES, even for root). So a raw NVMe/TCP host in bash
//    (interop-tsblk-target-lib.sh: ICReq, Connect, Property Set CC.EN, Set Features, I/O queue
//    Connect, Copy, all with in-capsule data) enables them on a controller of its own and sends
//    cross-namespace Copies: from another namespace, and from two namespaces in one command,
//    read back byte for byte by the kernel host; Invalid Namespace or Format (SNSID not
//    active), Incompatible Namespace or Format (a 4 KiB-block source), Command Size Limit (over
//    MSSRL), Invalid Field (format 3: no PI);
//  - discard: blkdiscard through the kernel host (Dataset Management with the kernel's 4 KiB
//    range buffer) succeeds and the blocks read as zeroes; mkfs.ext4's discard says "done";
//  - a subsystem with `hosts: [...]` refuses another host NQN: `nvme connect` fails, the kernel
//    logs "not allowed", a raw Connect gets Connect Invalid Host (SCT 1, 84h); the listed host
//    connects;
//  - keep-alive: the kernel host always sends Keep Alive, so it cannot show expiry. A raw
//    NVMe/TCP host in bash (interop-tsblk-target-lib.sh) sends ICReq and an admin Connect with
//    KATO 1 s, then nothing. The target must tear the controller down (nvme-target.md: between
//    KATO and 2 × KATO after the last command) and close the connection; the test asserts the
//    close comes, no sooner than KATO, and that the target (serve -v) logged deleting that very
//    controller (CNTLID, subsystem, host NQN) because its keep-alive timer expired;
//  - SIGTERM: the target exits 0.
//
// Statuses as nvme-cli prints them are the CQE status field >> 1: DNR 0x4000, More 0x2000
// (tsblk sets More when the error log has an entry, as nvmet does; QEMU does not), SCT << 8 | SC.
// Specification codes are compared on SCT/SC, with DNR required.
//
// dist/ must be current: the guest runs `node bin/tsblk.js serve` (tsx compiling under TCG is
// slow). The test builds it (tsc -p tsconfig.build.json) when a source file is newer than its
// output. Under CI=true a missing peer fails; elsewhere the file is skipped with the reason.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  formatCopySpec,
  parseReference,
  patternBlock,
  ReferenceModel,
  type CopySpec,
  type ReferenceCopyLine,
  type ReferenceReport,
  REFERENCE_LBS,
  REFERENCE_MCL,
  REFERENCE_MSRC,
  REFERENCE_MSSRL,
  REFERENCE_NSZE,
  REFERENCE_TOO_MANY_RANGES,
  REFERENCE_VALID_COPIES,
} from './vm/copy-reference.js';
import { ensureBuilt } from './vm/build-dist.js';
import { GuestFacts, guestRunSummary } from './vm/report.js';
import {
  assertPeers,
  checkPeers,
  guestScript,
  interopSkip,
  qemuNvmeArgs,
  runInGuest,
  type GuestResult,
} from './vm/vm.js';

const peers = checkPeers(['nvme', 'fio', 'ss', 'modprobe', 'blockdev', 'mkfs.ext4', 'dmesg', 'od', 'node']);

const COPY_NQN = 'nqn.2024-01.io.tsblk:interop-copy';
const DATA_NQN = 'nqn.2024-01.io.tsblk:interop-data';
const RESTRICTED_NQN = 'nqn.2024-01.io.tsblk:interop-restricted';
const ALLOWED_HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:7a1b0c2d-0001-4a11-8c0e-a110ed000001';
const ALLOWED_HOSTID = '7a1b0c2d-0001-4a11-8c0e-a110ed000001';
const OTHER_HOSTID = '7a1b0c2d-0002-4bad-8c0e-0d0e00000002';
const OTHER_HOSTNQN = `nqn.2014-08.org.nvmexpress:uuid:${OTHER_HOSTID}`;
const RAW_KATO_HOSTNQN = 'nqn.2024-01.io.tsblk:raw-keepalive-host';
const RAW_COPY_HOSTNQN = 'nqn.2024-01.io.tsblk:raw-copy-host';
const QEMU_SERIAL = 'deadbeef';
const QEMU_NQN = `nqn.2019-08.org.qemu:${QEMU_SERIAL}`;

/** Both Copy namespaces: the reference geometry (test/vm/copy-reference.ts). */
const LBS = REFERENCE_LBS;
const NSZE = REFERENCE_NSZE;
const MSSRL = REFERENCE_MSSRL;
const MCL = REFERENCE_MCL;
const MSRC = REFERENCE_MSRC;
const DATA_BYTES = 128 << 20;

/** Status codes (SCT << 8 | SC) of the NVMe base and NVM command set specifications. */
const SC = {
  SUCCESS: 0x0,
  INVALID_FIELD: 0x2,
  INTERNAL_ERROR: 0x6,
  INVALID_NS_OR_FORMAT: 0xb,
  LBA_OUT_OF_RANGE: 0x80,
  CMD_SIZE_LIMIT: 0x183,
  INCOMPATIBLE_NS: 0x185,
  INVALID_FORMAT: 0x10a,
  CONNECT_INVALID_HOST: 0x184,
} as const;
const DNR = 0x4000;

/** What QEMU 7.2's controller does with a copy, when it is not what the specification says. */
interface Qemu72 {
  /** the status nvme-cli prints (exact, flags included) */
  status: string;
  /** what it wrote: nothing, every range, or the first N ranges */
  wrote: 'nothing' | 'all' | number;
}

interface CopyCase {
  why: string;
  spec: CopySpec;
  /** the specification's status, SCT << 8 | SC */
  status: number;
  /** QEMU 7.2's behaviour when it differs from the specification's (documented deviations) */
  qemu72?: Qemu72;
}

const r = (slba: number, nlb: number) => ({ slba, nlb });
/**
 * In order. The first 11 are the copies test/interop-kernel-nvmet.test.ts runs on QEMU alone;
 * the invalid ones follow (after every valid copy, so QEMU's extra writes cannot change what a
 * later valid copy reads), each writing to a destination of its own.
 */
const COPIES: CopyCase[] = [
  ...REFERENCE_VALID_COPIES.map((c) => ({ ...c, status: SC.SUCCESS })),
  { ...REFERENCE_TOO_MANY_RANGES, status: SC.CMD_SIZE_LIMIT },
  {
    why: 'one range of MSSRL+1 blocks',
    spec: { dst: 5100, ranges: [r(100, MSSRL + 1)] },
    status: SC.CMD_SIZE_LIMIT,
    qemu72: { status: '0x6', wrote: 'nothing' }, // Internal Error, "aio failed" on QEMU's stderr
  },
  {
    why: 'MCL+16 blocks in ranges within MSSRL',
    spec: { dst: 5200, ranges: Array.from({ length: MCL / MSSRL + 1 }, (_, i) => r(320 + 20 * i, MSSRL)) },
    status: SC.CMD_SIZE_LIMIT,
    qemu72: { status: '0x0', wrote: 'all' }, // QEMU 7.2 has no MCL check: it copies all 80 blocks
  },
  {
    why: 'a source range running past the last LBA',
    spec: { dst: 5300, ranges: [r(-4, 8)] },
    status: SC.LBA_OUT_OF_RANGE,
    qemu72: { status: '0x6', wrote: 'nothing' },
  },
  {
    why: 'source SLBA = NSZE',
    spec: { dst: 5400, ranges: [r(NSZE, 1)] },
    status: SC.LBA_OUT_OF_RANGE,
    qemu72: { status: '0x6', wrote: 'nothing' },
  },
  {
    why: 'a destination running past the last LBA',
    spec: { dst: -2, ranges: [r(0, 4)] },
    status: SC.LBA_OUT_OF_RANGE,
    qemu72: { status: '0x6', wrote: 'nothing' },
  },
  {
    why: 'a valid range, then one past the last LBA',
    spec: { dst: 5500, ranges: [r(0, 4), r(NSZE - 1, 2)] },
    status: SC.LBA_OUT_OF_RANGE,
    qemu72: { status: '0x6', wrote: 1 }, // QEMU copies range by range: the first one lands
  },
];

const hex = (n: number) => `0x${n.toString(16)}`;
/** SCT/SC of a status as nvme-cli prints it ("0x6183"), or NaN for "error". */
const code = (s: string) => Number(s) & 0x7ff;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const patternSha = (first: number, count: number) =>
  sha256(Buffer.concat(Array.from({ length: count }, (_, i) => patternBlock(first + i, LBS))));

function assertSpecStatus(actual: string, want: number, what: string): void {
  if (want === SC.SUCCESS) {
    assert.equal(actual, '0x0', what);
    return;
  }
  assert.match(actual, /^0x[0-9a-f]+$/i, what);
  assert.equal(
    hex(code(actual)),
    hex(want),
    `${what}: status ${actual}, the specification says ${hex(want)}`,
  );
  assert.ok((Number(actual) & DNR) !== 0, `${what}: status ${actual} lacks DNR`);
}

/** The target config the guest serves (docs/config.md: devices, subsystems, ports). */
function targetConfig(): object {
  return {
    subsystems: {
      [COPY_NQN]: {
        model: 'tsblk interop',
        namespaces: [
          { nsid: 1, device: `ram:${NSZE * LBS},name=copy-ref`, mssrl: MSSRL, mcl: MCL, msrc: MSRC },
          { nsid: 2, device: 'ram:16M,name=copy-src' }, // cross-namespace copy source
          { nsid: 3, device: 'ram:16M,lbs=4096,name=copy-4k' }, // incompatible block size
        ],
      },
      [DATA_NQN]: { namespaces: [{ nsid: 1, device: `ram:${DATA_BYTES},name=data` }] },
      [RESTRICTED_NQN]: {
        hosts: [ALLOWED_HOSTNQN],
        namespaces: [{ nsid: 1, device: 'ram:16M,name=restricted' }],
      },
    },
    ports: [
      { address: '127.0.0.1', port: 4420 },
      { address: '127.0.0.1', port: 8009, discovery: true },
    ],
  };
}

describe(
  'interop: the tsblk NVMe/TCP target with the kernel host, nvme-cli, fio, ext4 and the QEMU Copy reference (one guest boot)',
  { skip: interopSkip(peers) },
  () => {
    let run: GuestResult;
    let facts: GuestFacts;
    let dir: string;
    let built: string;

    before(
      async () => {
        assertPeers(peers);
        built = ensureBuilt();
        dir = mkdtempSync(join(tmpdir(), 'tsblk-interop-target-'));
        const image = join(dir, 'qemu-nvme.img');
        writeFileSync(image, '');
        truncateSync(image, NSZE * LBS); // sparse: reads as zeros
        const config = join(dir, 'target.json');
        writeFileSync(config, JSON.stringify(targetConfig(), null, 2));
        run = await runInGuest({
          command: ['bash', guestScript('interop-tsblk-target.sh')],
          env: {
            CONFIG: config,
            COPY_NQN,
            DATA_NQN,
            RESTRICTED_NQN,
            ALLOWED_HOSTNQN,
            ALLOWED_HOSTID,
            OTHER_HOSTNQN,
            OTHER_HOSTID,
            RAW_KATO_HOSTNQN,
            RAW_COPY_HOSTNQN,
            QEMU_NQN,
            COPIES: COPIES.map((c) => formatCopySpec(c.spec)).join(' '),
          },
          rwShares: [dir], // the config (the host's /tmp is not the guest's)
          qemuArgs: qemuNvmeArgs({
            image,
            serial: QEMU_SERIAL,
            lbs: LBS,
            mssrl: MSSRL,
            mcl: MCL,
            msrc: MSRC,
          }),
          timeoutMs: 600_000,
        });
        facts = new GuestFacts(run.stdout);
      },
      { timeout: 780_000 },
    );
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('boots, runs the guest script to the end and exits 0', (t) => {
      t.diagnostic(guestRunSummary(run, built));
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
      assert.deepEqual(facts.failedChecks(), []);
    });

    describe('tsblk serve in the guest', () => {
      it('listens on 4420 and on the discovery port 8009, and stops cleanly on SIGTERM', () => {
        assert.equal(facts.get('target_start_rc'), '0', run.stdout.slice(-3000));
        const listening = facts.get('target_listening').trim().split(' ');
        assert.ok(listening.includes('127.0.0.1:4420'), facts.get('target_listening'));
        assert.ok(listening.includes('127.0.0.1:8009'), facts.get('target_listening'));
        assert.equal(facts.get('target_stop_rc'), '0');
      });

      it('nvme discover lists the subsystems that admit the host, on port 4420', () => {
        assert.equal(facts.get('discover_rc'), '0');
        assert.deepEqual(facts.all('discover_entry').sort(), [
          `nvme subsystem|127.0.0.1|4420|${COPY_NQN}`,
          `nvme subsystem|127.0.0.1|4420|${DATA_NQN}`,
        ]);
        assert.equal(facts.get('discover_allowed_rc'), '0');
        assert.deepEqual(facts.all('discover_allowed_entry').sort(), [
          `nvme subsystem|127.0.0.1|4420|${COPY_NQN}`,
          `nvme subsystem|127.0.0.1|4420|${DATA_NQN}`,
          `nvme subsystem|127.0.0.1|4420|${RESTRICTED_NQN}`,
        ]);
      });

      it('nvme connect creates a TCP controller; nvme list shows the namespace', () => {
        assert.equal(facts.get('connect_rc'), '0');
        assert.match(facts.get('ns'), /^\/dev\/nvme\d+n\d+$/);
        assert.equal(facts.get('ctrl_transport'), 'tcp');
        assert.match(facts.get('ctrl_address'), /^traddr=127\.0\.0\.1,trsvcid=4420\b/);
        assert.equal(facts.get('ctrl_model'), 'tsblk interop');
        assert.equal(facts.get('lbs'), String(LBS));
        assert.equal(facts.get('size_bytes'), String(NSZE * LBS));
        const row = facts.get('list_row');
        assert.ok(row.startsWith(`${facts.get('ns')} `), row);
        assert.match(row, /\btsblk interop\b/);
        assert.match(row, /67\.11\s+MB \/\s+67\.11\s+MB\s+512\s+B \+\s+0 B/);
      });

      it('nvme id-ctrl: Copy in ONCS, formats 0-3 in OCFS, the configured model and NQN', () => {
        assert.equal(facts.get('id_ctrl_rc'), '0');
        assert.equal(facts.get('id_ctrl_mn'), 'tsblk interop');
        assert.equal(facts.get('id_ctrl_subnqn'), COPY_NQN);
        const oncs = Number(facts.get('id_ctrl_oncs'));
        assert.equal(oncs & 0x100, 0x100, `ONCS ${hex(oncs)} lacks Copy (bit 8)`);
        assert.equal(oncs & 0x0c, 0x0c, `ONCS ${hex(oncs)} lacks DSM / Write Zeroes`);
        assert.equal(Number(facts.get('id_ctrl_ocfs')), 0xf);
        assert.ok(Number(facts.get('id_ctrl_nn')) >= 3);
      });

      it('nvme id-ns: MSSRL/MCL/MSRC as configured, the size, one 512-byte LBA format; 4 KiB on namespace 3', () => {
        assert.equal(facts.get('id_ns_rc'), '0');
        assert.equal(Number(facts.get('id_ns_mssrl')), MSSRL);
        assert.equal(Number(facts.get('id_ns_mcl')), MCL);
        assert.equal(Number(facts.get('id_ns_msrc')), MSRC);
        assert.equal(Number(facts.get('id_ns_nsze')), NSZE);
        assert.equal(Number(facts.get('id_ns_ncap')), NSZE);
        assert.match(facts.get('id_ns_lbaf0'), /lbads:9 .*\(in use\)/);
        assert.equal(facts.get('id_ns3_rc'), '0');
        assert.match(facts.get('id_ns3_lbaf0'), /lbads:12 .*\(in use\)/);
      });
    });

    describe('Copy: the same qemu-copy-reference.sh run on QEMU 7.2 and on tsblk', () => {
      let qemu: ReferenceReport;
      let tsblk: ReferenceReport;
      before(() => {
        qemu = parseReference(run.stdout, 'ref-qemu');
        tsblk = parseReference(run.stdout, 'ref-tsblk');
      });
      const line = (rep: ReferenceReport, i: number): ReferenceCopyLine => {
        const l = rep.copies[i];
        assert.ok(l, `no result for copy ${i + 1}`);
        return l;
      };
      const what = (i: number, l: ReferenceCopyLine) =>
        `copy ${i + 1} (${COPIES[i]!.why}: ${formatCopySpec(COPIES[i]!.spec)}): ${l.says}`;

      it('both ran every copy on the same layout and advertise the same limits', () => {
        assert.equal(facts.get('qemu_reference_rc'), '0');
        assert.equal(facts.get('tsblk_reference_rc'), '0');
        for (const rep of [qemu, tsblk]) {
          assert.equal(rep.lbs, LBS);
          assert.equal(rep.nsze, NSZE);
          assert.equal(rep.done, COPIES.length);
          assert.equal(rep.copies.length, COPIES.length);
          assert.notEqual(Number(rep.id.oncs) & 0x100, 0, `oncs=${rep.id.oncs}`);
          assert.equal(Number(rep.id.mssrl), MSSRL);
          assert.equal(Number(rep.id.mcl), MCL);
          assert.equal(Number(rep.id.msrc), MSRC);
        }
        assert.equal(tsblk.init.area, qemu.init.area);
        assert.equal(tsblk.init.tail, qemu.init.tail);
        const model = new ReferenceModel(tsblk);
        assert.equal(tsblk.init.area, model.sha256(0, tsblk.areaBlocks));
      });

      it('every valid copy gives tsblk the same bytes as QEMU, and what the model predicts', () => {
        const model = new ReferenceModel(tsblk);
        COPIES.forEach((c, i) => {
          if (c.status !== SC.SUCCESS) return;
          const q = line(qemu, i);
          const t = line(tsblk, i);
          const blocks = c.spec.ranges.reduce((n, x) => n + x.nlb, 0);
          assert.equal(q.status, '0x0', `QEMU ${what(i, q)}`);
          assert.equal(t.status, '0x0', `tsblk ${what(i, t)}`);
          assert.equal(t.rc, 0, what(i, t));
          assert.equal(t.verdict, 'copied', what(i, t));
          model.copy(c.spec);
          assert.equal(t.sha256, model.sha256(c.spec.dst, blocks), what(i, t));
          assert.equal(t.sha256, q.sha256, `tsblk and QEMU differ after ${what(i, t)}`);
        });
      });

      it('invalid copies: tsblk gives the specification’s status and leaves the destination unchanged', () => {
        COPIES.forEach((c, i) => {
          if (c.status === SC.SUCCESS) return;
          const t = line(tsblk, i);
          assert.notEqual(t.rc, 0, what(i, t));
          assertSpecStatus(t.status, c.status, `tsblk ${what(i, t)}`);
          assert.equal(t.verdict, 'unchanged', what(i, t));
          assert.equal(t.sha256, t.before, what(i, t));
        });
      });

      it('invalid copies on QEMU 7.2: the specification’s status, or the documented deviation', () => {
        COPIES.forEach((c, i) => {
          if (c.status === SC.SUCCESS) return;
          const q = line(qemu, i);
          if (!c.qemu72) {
            assertSpecStatus(q.status, c.status, `QEMU ${what(i, q)}`);
            assert.equal(q.verdict, 'unchanged', `QEMU ${what(i, q)}`);
            return;
          }
          assert.equal(q.status, c.qemu72.status, `QEMU 7.2 deviation no longer holds: ${what(i, q)}`);
          const wrote = c.qemu72.wrote;
          const verdict = wrote === 'nothing' ? 'unchanged' : wrote === 'all' ? 'copied' : 'partial';
          assert.equal(q.verdict, verdict, `QEMU ${what(i, q)}`);
        });
      });

      it('after all copies tsblk’s whole area and tail match the model (valid copies only)', () => {
        const model = new ReferenceModel(tsblk);
        for (const c of COPIES) if (c.status === SC.SUCCESS) model.copy(c.spec);
        assert.equal(tsblk.final.area, model.sha256(0, tsblk.areaBlocks));
        assert.equal(tsblk.final.tail, model.sha256(-tsblk.tailBlocks, tsblk.tailBlocks));
      });

      it('QEMU’s final area matches the model with its documented extra writes', () => {
        const model = new ReferenceModel(qemu);
        for (const c of COPIES) {
          const wrote = c.qemu72?.wrote;
          if (c.status === SC.SUCCESS || wrote === 'all') model.copy(c.spec);
          else if (typeof wrote === 'number')
            model.copy({ dst: c.spec.dst, ranges: c.spec.ranges.slice(0, wrote) });
        }
        assert.equal(qemu.final.area, model.sha256(0, qemu.areaBlocks));
        assert.equal(qemu.final.tail, model.sha256(-qemu.tailBlocks, qemu.tailBlocks));
      });
    });

    describe('Copy descriptor formats through nvme io-passthru', () => {
      it('format 0 by hand: the same bytes on QEMU and tsblk', () => {
        assert.equal(facts.get('qemu_pt_f0_valid'), '0x0');
        assert.equal(facts.get('tsblk_pt_f0_valid'), '0x0');
        const want = sha256(Buffer.concat([600, 601, 602, 700, 701].map((lba) => patternBlock(lba, LBS))));
        assert.equal(facts.get('qemu_pt_f0_valid_sha256'), want);
        assert.equal(facts.get('tsblk_pt_f0_valid_sha256'), want);
      });

      it('format 1 without protection information: Invalid Field (QEMU 7.2: Invalid Format 0x10a)', () => {
        assertSpecStatus(facts.get('tsblk_pt_f1_no_pi'), SC.INVALID_FIELD, 'tsblk format 1');
        // QEMU checks the format against the namespace's PI type and answers Invalid Format (a
        // Format NVM status); the NVM command set's Copy has no such case: a format the
        // namespace cannot use is an invalid field
        assert.equal(facts.get('qemu_pt_f1_no_pi'), hex(DNR | SC.INVALID_FORMAT));
      });

      it('format 2 before Host Behavior Support enables it, and format 4: Invalid Field on both; nothing written', () => {
        for (const who of ['tsblk', 'qemu']) {
          assertSpecStatus(facts.get(`${who}_pt_f2_not_enabled`), SC.INVALID_FIELD, `${who} format 2`);
          assertSpecStatus(facts.get(`${who}_pt_f4_unknown`), SC.INVALID_FIELD, `${who} format 4`);
          assert.equal(facts.get(`${who}_pt_untouched_sha256`), sha256(Buffer.alloc(3 * LBS)), who);
        }
      });

      it('a raw host enables formats 2 and 3 (Host Behavior Support CDFE 0x0c) on its own controller', (t) => {
        // the Linux host cannot: its passthrough ioctl refuses Set Features 16h (EACCES, root or
        // not), so nvme-cli's set-feature fails before anything reaches the target
        t.diagnostic(`nvme set-feature 0x16 through the kernel host: ${facts.get('hbs_kernel_passthru')}`);
        assert.equal(facts.get('rawhost_connect'), '0x0');
        assert.equal(facts.get('rawhost_enable'), '0x0');
        assert.equal(facts.get('rawhost_hbs'), '0x0');
        assert.equal(facts.get('rawhost_nq'), '0x0');
        assert.equal(facts.get('rawhost_io_connect'), '0x0');
      });

      it('format 2 copies from another namespace, and from two namespaces in one command (read back by the kernel host)', () => {
        assert.equal(facts.get('ns2_write_rc'), '0');
        assert.equal(facts.get('tsblk_pt_f2_cross'), '0x0');
        assert.equal(facts.get('tsblk_pt_f2_cross_expected'), patternSha(5000, 12));
        assert.equal(facts.get('tsblk_pt_f2_cross_sha256'), patternSha(5000, 12));
        assert.equal(facts.get('tsblk_pt_f2_mixed'), '0x0');
        const mixed = sha256(
          Buffer.concat(
            [1000, 1001, 1002, 1003, 5000, 5001, 5002, 5003].map((lba) => patternBlock(lba, LBS)),
          ),
        );
        assert.equal(facts.get('tsblk_pt_f2_mixed_expected'), mixed);
        assert.equal(facts.get('tsblk_pt_f2_mixed_sha256'), mixed);
      });

      it('format 2/3 errors: Invalid Namespace or Format, Incompatible Namespace or Format, Command Size Limit, Invalid Field; nothing written', () => {
        assertSpecStatus(facts.get('tsblk_pt_f2_no_such_ns'), SC.INVALID_NS_OR_FORMAT, 'SNSID 99');
        assertSpecStatus(facts.get('tsblk_pt_f2_4k_ns'), SC.INCOMPATIBLE_NS, 'SNSID 3 (4 KiB blocks)');
        assertSpecStatus(facts.get('tsblk_pt_f2_over_mssrl'), SC.CMD_SIZE_LIMIT, 'format 2, MSSRL+1 blocks');
        assertSpecStatus(facts.get('tsblk_pt_f3_no_pi'), SC.INVALID_FIELD, 'format 3 (no PI)');
        assert.equal(facts.get('tsblk_pt_f2_errors_dst_sha256'), sha256(Buffer.alloc(17 * LBS)));
      });
    });

    describe('data path: fio, ext4, digests', () => {
      it('connects with 2 I/O queues', () => {
        assert.equal(facts.get('data_connect_rc'), '0');
        assert.equal(facts.get('data_size_bytes'), String(DATA_BYTES));
        assert.equal(facts.get('data_queue_count'), '3'); // admin + 2 I/O
      });

      for (const [name, kb] of [
        ['4k', 16 * 1024],
        ['128k', 32 * 1024],
        ['digest_4k', 4 * 1024],
        ['digest_128k', 8 * 1024],
      ] as const) {
        it(`fio ${name.replace('_', ' ')}: 2 jobs at QD32 write ${kb / 1024} MiB and verify it (crc32c)`, () => {
          assert.equal(facts.get(`fio_${name}_rc`), '0');
          assert.equal(facts.get(`fio_${name}_error`), '0');
          assert.equal(facts.get(`fio_${name}_write_kb`), String(kb));
          assert.equal(facts.get(`fio_${name}_read_kb`), String(kb));
        });
      }

      it('discard (Dataset Management as the Linux host sends it) succeeds and the blocks read as zeroes', () => {
        assert.equal(facts.get('discard_rc'), '0', `kernel: ${facts.get('discard_dmesg')}`);
        assert.equal(facts.get('discard_read_sha256'), sha256(Buffer.alloc(1 << 20)));
      });

      it('ext4: mkfs (discarding the device first), mount, 102 files, unmount, fsck clean', () => {
        assert.equal(facts.get('mkfs_rc'), '0');
        assert.equal(facts.get('mkfs_discard'), 'done', 'mke2fs did not discard the device');
        assert.equal(facts.get('mount_rc'), '0');
        assert.equal(facts.get('ext4_files'), '102');
        assert.equal(facts.get('umount_rc'), '0');
        assert.equal(facts.get('fsck_rc'), '0');
      });

      it('ext4: after disconnect and reconnect fsck is clean and every file has its sha256', () => {
        assert.equal(facts.get('data_disconnect_rc'), '0');
        assert.equal(facts.get('data_reconnect_rc'), '0');
        assert.equal(facts.get('fsck_after_reconnect_rc'), '0');
        assert.equal(facts.get('remount_rc'), '0');
        assert.equal(facts.get('ext4_sha256_check_rc'), '0');
        assert.equal(facts.get('ext4_files_after'), '102');
        assert.equal(facts.get('data_disconnect2_rc'), '0');
      });

      it('connects with header and data digests (the kernel refuses a target that does not grant them)', () => {
        assert.equal(facts.get('digest_connect_rc'), '0');
        assert.equal(facts.get('digest_dmesg_errors'), '0');
        assert.equal(facts.get('digest_disconnect_rc'), '0');
      });
    });

    describe('access control and keep-alive', () => {
      it('a host NQN not in `hosts` is refused with Connect Invalid Host; the listed one connects', () => {
        assert.notEqual(facts.get('restricted_other_rc'), '0');
        assert.equal(facts.get('restricted_other_ns'), 'none');
        assert.match(facts.get('restricted_other_kernel_says'), /is not allowed/);
        assert.equal(facts.get('raw_restricted_other_icresp'), '01');
        assertSpecStatus(facts.get('raw_restricted_other_status'), SC.CONNECT_INVALID_HOST, 'raw Connect');
        assert.equal(facts.get('restricted_allowed_rc'), '0');
        assert.match(facts.get('restricted_allowed_ns'), /^\/dev\/nvme\d+n\d+$/);
        assert.equal(facts.get('restricted_disconnect_rc'), '0');
      });

      it('a controller whose host stops sending commands expires after KATO and its connection closes', () => {
        assert.equal(facts.get('raw_kato_icresp'), '01');
        assert.equal(facts.get('raw_kato_status'), '0x0');
        assert.ok(Number(facts.get('raw_kato_cntlid')) >= 1);
        assert.equal(facts.get('raw_kato_closed'), 'yes', 'the target kept a silent controller for 30 s');
        // Not a refusal (that closes at once): the keep-alive timer. The raw host starts its
        // clock only after it has read the Connect response, which the TCG guest can delay by a
        // few hundred ms under load (0.8 s seen), while the target's timer starts at Connect.
        assert.ok(Number(facts.get('raw_kato_closed_after_s')) >= 0.5, facts.get('raw_kato_closed_after_s'));
        // the controller the raw host got is the one deleted, and for this reason
        const log = facts.get('target_log_keepalive');
        const m = /controller (\d+) of (\S+) \(host (\S+)\) deleted: keep-alive timer \(1 s\) expired/.exec(
          log,
        );
        assert.ok(m, log);
        assert.equal(m[1], facts.get('raw_kato_cntlid'), log);
        assert.equal(m[2], COPY_NQN, log);
        assert.equal(m[3], RAW_KATO_HOSTNQN, log);
      });
    });
  },
);
