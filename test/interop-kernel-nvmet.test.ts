// Interop with real Linux peers, in ONE guest boot (test/vm/, docs/interop.md):
//  - the kernel's NVMe/TCP target (nvmet-tcp via configfs, brd namespace) on 127.0.0.1:4420,
//    driven by the kernel's NVMe/TCP host through nvme-cli: discover, connect, list, id-ctrl,
//    id-ns, a pattern written and read back (also on the last blocks), fio crc32c verify,
//    disconnect, and the data found on the target's backing device;
//  - QEMU's emulated NVMe controller with mssrl/mcl/msrc: the Copy reference. Every sha256
//    that test/vm/guest/qemu-copy-reference.sh prints is predicted on the host by
//    ReferenceModel, so the reference itself is checked before tsblk is compared with it.
// Under CI=true a missing peer fails; elsewhere the file is skipped with the reason.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  formatCopySpec,
  parseReference,
  ReferenceModel,
  type CopySpec,
  type ReferenceReport,
  REFERENCE_LBS,
  REFERENCE_MCL,
  REFERENCE_MSRC,
  REFERENCE_MSSRL,
  REFERENCE_NSZE,
  REFERENCE_TOO_MANY_RANGES,
  REFERENCE_VALID_COPIES,
} from './vm/copy-reference.js';
import { GuestFacts } from './vm/report.js';
import {
  assertPeers,
  checkPeers,
  guestScript,
  interopSkip,
  qemuNvmeArgs,
  runInGuest,
  type GuestResult,
} from './vm/vm.js';

const peers = checkPeers(['nvme', 'fio', 'ss', 'modprobe', 'blockdev']);
const NQN = 'nqn.2024-01.io.tsblk:interop-nvmet';
const QEMU_SERIAL = 'deadbeef';
const QEMU_NQN = `nqn.2019-08.org.qemu:${QEMU_SERIAL}`;
const LBS = REFERENCE_LBS;
const NSZE = REFERENCE_NSZE;
const MSSRL = REFERENCE_MSSRL;
const MCL = REFERENCE_MCL;
const MSRC = REFERENCE_MSRC;

/** copies in order; `status` is what the NVM Command Set specification requires */
const COPIES: { why: string; spec: CopySpec; status: string }[] = [
  ...REFERENCE_VALID_COPIES.map((c) => ({ ...c, status: '0x0' })),
  { ...REFERENCE_TOO_MANY_RANGES, status: '0x4183' }, // SCT 1h / SC 83h, with DNR (QEMU sets it)
];

describe(
  'interop: kernel nvmet-tcp and the QEMU NVMe Copy reference (one guest boot)',
  { skip: interopSkip(peers) },
  () => {
    let run: GuestResult;
    let facts: GuestFacts;
    let dir: string;

    before(
      async () => {
        assertPeers(peers);
        dir = mkdtempSync(join(tmpdir(), 'tsblk-interop-'));
        const image = join(dir, 'qemu-nvme.img');
        writeFileSync(image, '');
        truncateSync(image, NSZE * LBS); // sparse: reads as zeros
        run = await runInGuest({
          command: ['bash', guestScript('interop-kernel-nvmet.sh')],
          env: { NQN, QEMU_NQN, COPIES: COPIES.map((c) => formatCopySpec(c.spec)).join(' ') },
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
      { timeout: 660_000 },
    );
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('boots, runs the guest script to the end and exits 0', (t) => {
      t.diagnostic(
        `guest kernel ${run.kernelVersion}: boot ${(run.bootMs / 1000).toFixed(1)} s, guest script ` +
          `${(run.commandMs / 1000).toFixed(1)} s (nvmet part ${facts.get('nvmet_part_seconds')} s, ` +
          `QEMU Copy part ${facts.get('qemu_part_seconds')} s), total ${(run.totalMs / 1000).toFixed(1)} s, ` +
          `${run.attempts} boot(s)`,
      );
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
      assert.deepEqual(facts.failedChecks(), []);
    });

    describe('kernel nvmet-tcp target, kernel nvme-tcp host', () => {
      it('the target listens on 127.0.0.1:4420 and nvme discover lists both subsystems', () => {
        assert.equal(facts.get('nvmet_listening'), '127.0.0.1:4420');
        assert.equal(facts.get('discover_rc'), '0');
        assert.deepEqual(facts.all('discover_entry').sort(), [
          'current discovery subsystem|127.0.0.1|4420|nqn.2014-08.org.nvmexpress.discovery',
          `nvme subsystem|127.0.0.1|4420|${NQN}`,
        ]);
      });

      it('nvme connect creates a TCP controller and a namespace the size of the brd', () => {
        assert.equal(facts.get('connect_rc'), '0');
        assert.match(facts.get('ns'), /^\/dev\/nvme\d+n1$/);
        assert.equal(facts.get('ctrl_transport'), 'tcp');
        assert.match(facts.get('ctrl_address'), /^traddr=127\.0\.0\.1,trsvcid=4420\b/);
        assert.equal(facts.get('size_bytes'), String(64 << 20));
        assert.equal(facts.get('lbs'), '512');
      });

      it('nvme list, id-ctrl and id-ns show the namespace and the kernel target', () => {
        const row = facts.get('list_row');
        assert.ok(row.startsWith(`${facts.get('ns')} `), row);
        assert.match(row, /\bLinux\b/);
        assert.match(row, /67\.11\s+MB \/\s+67\.11\s+MB/);
        assert.equal(facts.get('id_ctrl_rc'), '0');
        assert.equal(facts.get('id_ctrl_mn'), 'Linux');
        assert.equal(facts.get('id_ctrl_subnqn'), NQN);
        // nvmet 6.12 advertises DSM and Write Zeroes, not Copy (ONCS bit 8)
        assert.equal(Number(facts.get('id_ctrl_oncs')) & 0x100, 0);
        assert.equal(facts.get('id_ns_rc'), '0');
        assert.equal(Number(facts.get('id_ns_nsze')), (64 << 20) / 512);
      });

      it('data written through nvme-tcp reads back, last blocks included, and is on the brd', () => {
        assert.equal(facts.get('dd_write1_rc'), '0');
        assert.equal(facts.get('dd_write2_rc'), '0');
        const written = facts.get('written_sha256');
        assert.match(written, /^[0-9a-f]{64}$/);
        assert.equal(facts.get('read_sha256'), written);
        assert.equal(facts.get('brd_sha256'), written);
      });

      it('fio 4 KiB random writes at QD16 pass crc32c verification', () => {
        assert.equal(facts.get('fio_rc'), '0');
        assert.equal(facts.get('fio_error'), '0');
        assert.equal(facts.get('fio_write_kb'), String(8 * 1024)); // all 8 MiB written ...
        assert.equal(facts.get('fio_read_kb'), String(8 * 1024)); // ... and read back to verify
      });

      it('nvme disconnect removes the controller; the target port closes on teardown', () => {
        assert.equal(facts.get('disconnect_rc'), '0');
        assert.equal(facts.get('disconnect_output'), `NQN:${NQN} disconnected 1 controller(s)`);
        assert.equal(facts.get('ns_gone_after_disconnect'), 'yes');
        assert.equal(facts.get('nvmet_port_closed'), 'yes');
      });
    });

    describe('QEMU emulated NVMe controller: the Copy reference', () => {
      let ref: ReferenceReport;
      let model: ReferenceModel;
      before(() => {
        ref = parseReference(run.stdout);
        model = new ReferenceModel(ref);
      });

      it('advertises Copy (ONCS bit 8, OCFS formats 0 and 1) and the configured limits', () => {
        assert.equal(facts.get('reference_rc'), '0');
        assert.equal(ref.lbs, LBS);
        assert.equal(ref.nsze, NSZE);
        assert.notEqual(Number(ref.id.oncs) & 0x100, 0, `oncs=${ref.id.oncs}`);
        assert.equal(Number(ref.id.ocfs), 0x3);
        assert.equal(Number(ref.id.mssrl), MSSRL);
        assert.equal(Number(ref.id.mcl), MCL);
        assert.equal(Number(ref.id.msrc), MSRC);
      });

      it('the initial pattern matches the host-side model', () => {
        assert.equal(ref.init.area, model.sha256(0, ref.areaBlocks));
        assert.equal(ref.init.tail, model.sha256(-ref.tailBlocks, ref.tailBlocks));
      });

      it('every copy gives the status and the bytes the model predicts', () => {
        assert.equal(ref.done, COPIES.length);
        assert.equal(ref.copies.length, COPIES.length);
        COPIES.forEach((c, i) => {
          const line = ref.copies[i];
          assert.ok(line, `no result for copy ${i + 1}`);
          const what = `copy ${line.k} (${c.why}: ${formatCopySpec(c.spec)}): ${line.says}`;
          const blocks = c.spec.ranges.reduce((n, x) => n + x.nlb, 0);
          assert.equal(line.dst, model.resolve(c.spec.dst), what);
          assert.equal(line.blocks, blocks, what);
          assert.equal(line.status, c.status, what);
          if (c.status === '0x0') {
            assert.equal(line.rc, 0, what);
            model.copy(c.spec);
            assert.equal(line.verdict, 'copied', what);
          } else {
            assert.notEqual(line.rc, 0, what);
            assert.equal(line.verdict, 'unchanged', what);
          }
          assert.equal(line.sha256, model.sha256(c.spec.dst, blocks), what);
        });
      });

      it('after all copies the whole area and the tail match the model', () => {
        assert.equal(ref.final.area, model.sha256(0, ref.areaBlocks));
        assert.equal(ref.final.tail, model.sha256(-ref.tailBlocks, ref.tailBlocks));
      });
    });
  },
);
