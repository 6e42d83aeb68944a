// Interop: tsblk's NVMe/TCP HOST (src/host/, the CLI's discover/connect/id-ctrl/id-ns/copy)
// against the Linux kernel's nvmet-tcp target, in ONE guest boot (test/vm/, docs/interop.md).
// Guest side: test/vm/guest/interop-host-nvmet.sh and host-io.mjs (one node process).
//
//  - nvmet via configfs: one subsystem (our model, serial and CNTLID range) with namespace 1 =
//    a 64 MiB file on tmpfs (file backend: 4 KiB blocks, tmpfs's block size) and namespace 2 =
//    a 64 MiB brd RAM disk (block backend: 512-byte blocks), on 127.0.0.1:4420;
//  - identify: `tsblk discover/connect/id-ctrl/id-ns --json` against nvme-cli's own decode of
//    the same subsystem through the kernel host (`nvme discover/id-ctrl/id-ns -o json`, the
//    kernel's block devices): every field both decode must agree, except CNTLID, which must
//    differ (two live controllers) and lie in the configured range;
//  - I/O through the library, the kernel host disconnected first: round "plain" on the file
//    namespace, round "digest" on the brd namespace with header and data digests. Writes of one
//    block, exactly the in-capsule size (no R2T), one block more (one R2T for all of it),
//    5 MiB (two commands: nvmet sets MDTS 0, so the host's 4 MiB default splits it) and the
//    last block, each with its own pattern, read back and compared by tsblk AND read from the
//    backing file / brd in the guest with dd + sha256sum; every sha256 is predicted here;
//    flush (nvmet has a volatile write cache: a Flush goes out); Write Zeroes and Deallocate
//    over a pattern;
//  - copy: nvmet has no Copy (ONCS bit 8 clear), so issueCopy and `tsblk copy` in auto mode
//    emulate and say so (path 'emulate', 0 bytes offloaded), the data lands; forced offload
//    fails with EOPNOTSUPP before any command and changes nothing;
//  - `tsblk connect` to a subsystem NQN nvmet lacks: exit 1, a message naming the NQN and the
//    status nvmet returned (Connect Invalid Parameters, 0x182 with DNR), quickly; the node
//    process ends by itself (nothing left open).
//
// dist/ must be current (the guest imports it: tsx under TCG is too slow); built when stale.
// The project reaches the guest through the read-only root share (9p cache=loose: loading the
// CLI's modules is ~2x faster than through the read-write project share); the JSON outputs come
// back through a read-write temporary directory. Under CI=true a missing peer fails; elsewhere
// the file is skipped with the reason.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt } from './vm/build-dist.js';
import { GuestFacts, guestRunSummary } from './vm/report.js';
import {
  assertPeers,
  checkPeers,
  guestScript,
  interopSkip,
  PROJECT_ROOT,
  runInGuest,
  type GuestResult,
} from './vm/vm.js';

const peers = checkPeers(['nvme', 'ss', 'modprobe', 'blockdev', 'node', 'timeout', 'dmesg']);

const NQN = 'nqn.2024-01.io.tsblk:interop-host';
const BAD_NQN = 'nqn.2024-01.io.tsblk:no-such-subsystem';
const MODEL = 'tsblk host interop';
const SERIAL = 'TSBLKHOST0042';
const CNTLID_MIN = 100;
const CNTLID_MAX = 199;
const MIB = 1 << 20;
const NS1_MIB = 64; // file on tmpfs: 4 KiB blocks
const NS2_MIB = 64; // brd: 512-byte blocks
/** nvmet-tcp's default in-capsule data size (NVMET_TCP_DEF_INLINE_DATA_SIZE, 4 pages). */
const INLINE = 16384;
/** The host's transfer limit when the controller reports MDTS 0 (namespace-limits.ts). */
const HOST_MAX_TRANSFER = 4 * MIB;
const BIG = 5 * MIB;

interface Region {
  key: string;
  lba: number;
  blocks: number;
}
interface RoundPlan {
  name: string;
  nsid: number;
  digests: boolean;
  lbs: number;
  blocks: number;
  /** written with pattern(`${name}/${key}`), read back */
  writes: Region[];
  /** written with a pattern, then Write Zeroes / Deallocate */
  zeroes: Region;
  discard: Region;
  /** issueCopy src → dst (auto), src → offloadDst (forced offload: refused); src, offloadDst ∈ writes */
  copy: { src: Region; dst: Region; offloadDst: Region };
}
interface HostPlan {
  nsids: number[];
  rounds: RoundPlan[];
  /** `tsblk copy` within namespace nsid, in blocks: src → dst (auto), src → offloadDst (offload) */
  cliCopy: { nsid: number; lbs: number; src: number; dst: number; offloadDst: number; blocks: number };
}

function roundPlan(name: string, nsid: number, digests: boolean, lbs: number, mib: number): RoundPlan {
  const m = MIB / lbs; // blocks per MiB
  const k64 = (64 * 1024) / lbs;
  const copySrc = { key: 'copysrc', lba: 8 * m, blocks: k64 };
  const offloadGuard = { key: 'offloadguard', lba: 9 * m, blocks: k64 };
  return {
    name,
    nsid,
    digests,
    lbs,
    blocks: mib * m,
    writes: [
      { key: 'one', lba: 1, blocks: 1 },
      { key: 'incapsule', lba: 64, blocks: INLINE / lbs },
      { key: 'r2t', lba: 64 + 2 * (INLINE / lbs), blocks: INLINE / lbs + 1 },
      { key: 'big', lba: m, blocks: BIG / lbs },
      copySrc,
      offloadGuard,
      { key: 'cliguard', lba: 10 * m, blocks: k64 },
      { key: 'last', lba: mib * m - 1, blocks: 1 },
    ],
    zeroes: { key: 'zeroes', lba: 6 * m, blocks: (256 * 1024) / lbs },
    discard: { key: 'discard', lba: 7 * m, blocks: (256 * 1024) / lbs },
    copy: {
      src: copySrc,
      dst: { key: 'copydst', lba: 8 * m + 2 * k64, blocks: k64 },
      offloadDst: offloadGuard,
    },
  };
}

const PLAIN = roundPlan('plain', 1, false, 4096, NS1_MIB);
const DIGEST = roundPlan('digest', 2, true, 512, NS2_MIB);
const CLI_DST = { key: 'clicopydst', lba: 11 * (MIB / PLAIN.lbs), blocks: PLAIN.copy.src.blocks };
const cliGuard = PLAIN.writes.find((w) => w.key === 'cliguard')!;
const PLAN: HostPlan = {
  nsids: [1, 2],
  rounds: [PLAIN, DIGEST],
  cliCopy: {
    nsid: PLAIN.nsid,
    lbs: PLAIN.lbs,
    src: PLAIN.copy.src.lba,
    dst: CLI_DST.lba,
    offloadDst: cliGuard.lba,
    blocks: PLAIN.copy.src.blocks,
  },
};

// ---- the oracle: what every region must hold -------------------------------------------

/** host-io.mjs's pattern: block i is "tsblk TAG lba NNNNNNNNNN |" repeated, cut to lbs bytes. */
function pattern(tag: string, r: Region, lbs: number): Buffer {
  const out = Buffer.alloc(r.blocks * lbs);
  for (let i = 0; i < r.blocks; i++) {
    const s = `tsblk ${tag} lba ${String(r.lba + i).padStart(10, '0')} |`;
    out.write(s.repeat(Math.ceil(lbs / s.length)).slice(0, lbs), i * lbs, 'latin1');
  }
  return out;
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const written = (r: RoundPlan, w: Region) => sha256(pattern(`${r.name}/${w.key}`, w, r.lbs));
const zeroes = (r: Region, lbs: number) => sha256(Buffer.alloc(r.blocks * lbs));

/** Every region the guest reads from the backing store: "KEY:NSID:OFFSET:LENGTH". */
function regions(): string {
  const out: string[] = [];
  const add = (key: string, r: RoundPlan, g: Region) =>
    out.push(`${key}:${r.nsid}:${g.lba * r.lbs}:${g.blocks * r.lbs}`);
  for (const r of PLAN.rounds) {
    for (const w of r.writes) add(`${r.name}_${w.key}`, r, w);
    add(`${r.name}_zeroes`, r, r.zeroes);
    add(`${r.name}_discard`, r, r.discard);
    add(`${r.name}_copydst`, r, r.copy.dst);
  }
  add('cli_copydst', PLAIN, CLI_DST);
  return out.join(' ');
}

// ---- identify: tsblk's decode against nvme-cli's ---------------------------------------

type Json = Record<string, unknown>;
const primitive = (v: unknown) => ['string', 'number', 'boolean'].includes(typeof v);
/** nvme-cli pads strings (SN, MN, FR) with the spaces of the structure; compare trimmed. */
const norm = (v: unknown) => (typeof v === 'string' ? v.trimEnd() : typeof v === 'number' ? String(v) : v);

/** Fields both decode as scalars, those on which they disagree, and nvme-cli's that tsblk lacks. */
function compareDecodes(tsblk: Json, nvme: Json, skip: readonly string[]) {
  const common = Object.keys(nvme).filter(
    (k) => !skip.includes(k) && primitive(nvme[k]) && primitive(tsblk[k]),
  );
  const differ = common
    .filter((k) => norm(tsblk[k]) !== norm(nvme[k]))
    .map((k) => `${k}: tsblk ${JSON.stringify(tsblk[k])}, nvme-cli ${JSON.stringify(nvme[k])}`);
  const onlyNvmeCli = Object.keys(nvme).filter((k) => !(k in tsblk));
  return { common, differ, onlyNvmeCli };
}
const compared = (c: ReturnType<typeof compareDecodes>) =>
  `${c.common.length} fields compared; nvme-cli only: ${c.onlyNvmeCli.join(', ') || 'none'}`;

/** True when the guest's init mounts its own tmpfs or pseudo file system over this path. */
function hiddenInGuest(path: string): boolean {
  return ['/tmp', '/run', '/dev', '/proc', '/sys'].some((m) => path === m || path.startsWith(`${m}/`));
}

describe(
  'interop: tsblk NVMe/TCP host against the kernel nvmet-tcp target (one guest boot)',
  { skip: interopSkip(peers) },
  () => {
    let run: GuestResult;
    let facts: GuestFacts;
    let dir: string;
    let built: string;
    const out = (name: string) => readFileSync(join(dir, name), 'utf8');
    const json = (name: string) => JSON.parse(out(name)) as Json;

    before(
      async () => {
        assertPeers(peers);
        built = ensureBuilt();
        dir = mkdtempSync(join(tmpdir(), 'tsblk-interop-host-'));
        run = await runInGuest({
          command: ['bash', guestScript('interop-host-nvmet.sh')],
          env: {
            NQN,
            BAD_NQN,
            OUT: dir,
            PLAN: JSON.stringify(PLAN),
            REGIONS: regions(),
            MODEL,
            SERIAL,
            CNTLID_MIN: String(CNTLID_MIN),
            CNTLID_MAX: String(CNTLID_MAX),
            NS1_MIB: String(NS1_MIB),
            NS2_MIB: String(NS2_MIB),
          },
          // the project through the root share (cache=loose, see the top), unless it lives where
          // the guest mounts a tmpfs over the host's tree (/tmp, /run: a CI checkout may)
          shareProject: hiddenInGuest(PROJECT_ROOT),
          rwShares: [dir],
          timeoutMs: 480_000,
        });
        facts = new GuestFacts(run.stdout);
      },
      { timeout: 600_000 },
    );
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('boots, runs the guest script to the end and exits 0; the tsblk process ends by itself', (t) => {
      t.diagnostic(guestRunSummary(run, built));
      assert.equal(run.exitCode, 0, `guest script failed:\n${facts.tail(30)}\n${run.stderr}`);
      assert.match(run.stdout, /^guest script done$/m);
      // 124: still running after 300 s (a socket or timer left open keeps node alive)
      assert.equal(facts.get('host_io_rc'), '0', run.stderr.slice(-3000));
      assert.equal(facts.get('host_io_active_handles'), 'none');
    });

    describe('nvmet-tcp and the kernel host (the reference)', () => {
      it('nvmet serves both namespaces on 127.0.0.1:4420 with our model, serial and CNTLID range', () => {
        assert.equal(facts.get('set_model_rc'), '0');
        assert.equal(facts.get('set_serial_rc'), '0');
        assert.equal(facts.get('set_cntlid_range_rc'), '0');
        assert.equal(facts.get('nvmet_ns1_path'), '/tmp/nvmet-ns1.img');
        assert.equal(facts.get('nvmet_ns2_path'), '/dev/ram0');
        assert.equal(facts.get('nvmet_listening'), '127.0.0.1:4420');
      });

      it('nvme-cli discovers, connects and identifies; the kernel sees 4 KiB and 512-byte namespaces', () => {
        assert.equal(facts.get('nvme_discover_rc'), '0');
        assert.equal(facts.get('nvme_connect_rc'), '0');
        assert.equal(facts.get('nvme_id_ctrl_rc'), '0');
        assert.equal(facts.get('nvme_id_ns_1_rc'), '0');
        assert.equal(facts.get('nvme_id_ns_2_rc'), '0');
        assert.equal(facts.get('kernel_ns1_lbs'), '4096');
        assert.equal(facts.get('kernel_ns1_bytes'), String(NS1_MIB * MIB));
        assert.equal(facts.get('kernel_ns2_lbs'), '512');
        assert.equal(facts.get('kernel_ns2_bytes'), String(NS2_MIB * MIB));
        const id = json('nvme-id-ctrl.json');
        assert.equal(id.mn, MODEL.padEnd(40));
        assert.equal(String(id.sn).trimEnd(), SERIAL);
      });
    });

    describe('tsblk CLI identify, cross-checked with nvme-cli', () => {
      it('tsblk discover 127.0.0.1:4420 lists what nvme discover lists: the subsystem and the discovery subsystem', () => {
        assert.equal(facts.get('discover_rc'), '0', facts.get('discover_stderr'));
        const mine = json('discover.out').records as Json[];
        const theirs = json('nvme-discover.json').records as Json[];
        const key = (r: Json) =>
          [
            'trtype',
            'adrfam',
            'subtype',
            'treq',
            'portid',
            'trsvcid',
            'subnqn',
            'traddr',
            'eflags',
            'sectype',
          ]
            .map((k) => `${k}=${String(r[k])}`)
            .join(' ');
        assert.deepEqual(mine.map(key).sort(), theirs.map(key).sort());
        const nvm = mine.filter((r) => r.subtype === 'nvme subsystem');
        assert.deepEqual(
          nvm.map((r) => [r.subnqn, r.traddr, r.trsvcid]),
          [[NQN, '127.0.0.1', '4420']],
        );
        assert.ok(
          mine.some((r) => r.subtype === 'current discovery subsystem'),
          key(mine[0] ?? {}),
        );
      });

      it('tsblk connect --json: controller and namespaces as nvmet made them', () => {
        assert.equal(facts.get('connect_rc'), '0', facts.get('connect_stderr'));
        const s = json('connect.out');
        const id = json('nvme-id-ctrl.json');
        assert.equal(s.subnqn, NQN);
        assert.equal(s.model, MODEL);
        assert.equal(s.serial, SERIAL);
        assert.equal(s.firmware, String(id.fr).trimEnd());
        assert.equal(s.mdts, id.mdts);
        assert.equal(s.maxDataTransferBytes, 0); // MDTS 0: no limit
        assert.deepEqual(s.copy, { supported: false, ocfs: 0, formatsOffered: [], formatsUsable: [] });
        assert.deepEqual(
          (s.namespaces as Json[]).map((n) => [n.nsid, n.size, n.logicalBlockSize, n.copy]),
          [
            [1, NS1_MIB * MIB, 4096, null],
            [2, NS2_MIB * MIB, 512, null],
          ],
        );
        const cntlid = Number(s.cntlid);
        assert.ok(cntlid >= CNTLID_MIN && cntlid <= CNTLID_MAX, `cntlid ${cntlid}`);
      });

      it('tsblk id-ctrl --json decodes every field as nvme-cli does; CNTLIDs differ, both in range', (t) => {
        assert.equal(facts.get('id_ctrl_rc'), '0', facts.get('id_ctrl_stderr'));
        const mine = json('id_ctrl.out');
        const theirs = json('nvme-id-ctrl.json');
        const c = compareDecodes(mine, theirs, ['cntlid']);
        const { common, differ } = c;
        t.diagnostic(compared(c));
        assert.deepEqual(differ, []);
        for (const k of [
          'sn',
          'mn',
          'fr',
          'mdts',
          'cntrltype',
          'ver',
          'oncs',
          'nn',
          'vwc',
          'ioccsz',
          'sgls',
          'subnqn',
        ])
          assert.ok(common.includes(k), `${k} not compared (${common.join(',')})`);
        assert.ok(common.length >= 40, `only ${common.length} fields compared`);
        // the facts the host relies on, as nvmet 6.12 sets them
        assert.equal(mine.mn, MODEL);
        assert.equal(mine.sn, SERIAL);
        assert.equal(mine.cntrltype, 1); // I/O controller
        assert.equal(Number(mine.oncs) & 0x100, 0, 'nvmet has no Copy');
        assert.equal(Number(mine.oncs) & 0xc, 0xc, 'nvmet offers Write Zeroes and Dataset Management');
        assert.equal(mine.ioccsz, (INLINE + 64) / 16);
        assert.equal(Number(mine.vwc) & 1, 1);
        // the kernel host is still connected: nvmet gave each association its own CNTLID
        const kernel = Number(facts.get('nvme_cntlid'));
        assert.equal(theirs.cntlid, kernel);
        for (const c of [Number(mine.cntlid), kernel])
          assert.ok(c >= CNTLID_MIN && c <= CNTLID_MAX, `cntlid ${c}`);
        assert.notEqual(Number(mine.cntlid), kernel);
      });

      for (const [nsid, lbs, mib] of [
        [1, 4096, NS1_MIB],
        [2, 512, NS2_MIB],
      ] as const) {
        it(`tsblk id-ns …/${nsid} --json decodes every field as nvme-cli does (${lbs}-byte blocks)`, (t) => {
          assert.equal(facts.get(`id_ns_${nsid}_rc`), '0', facts.get(`id_ns_${nsid}_stderr`));
          const mine = json(`id_ns_${nsid}.out`);
          const theirs = json(`nvme-id-ns-${nsid}.json`);
          const c = compareDecodes(mine, theirs, []);
          const { common, differ } = c;
          t.diagnostic(compared(c));
          assert.deepEqual(differ, []);
          for (const k of ['nsze', 'ncap', 'nuse', 'nlbaf', 'flbas', 'dlfeat', 'mssrl', 'mcl', 'msrc'])
            assert.ok(common.includes(k), `${k} not compared (${common.join(',')})`);
          assert.equal(mine.nsid, nsid);
          assert.deepEqual(mine.lbafs, theirs.lbafs);
          const lbaf = (mine.lbafs as Json[])[Number(mine.flbas) & 0xf];
          assert.equal(2 ** Number(lbaf?.ds), lbs);
          assert.equal(Number(mine.nsze), (mib * MIB) / lbs);
        });
      }
    });

    it('the kernel host disconnects before tsblk does its own I/O', () => {
      assert.equal(facts.get('kernel_disconnect_rc'), '0');
      assert.match(facts.get('kernel_disconnect_output'), new RegExp(`NQN:${NQN} disconnected 1 controller`));
      assert.equal(facts.get('kernel_controllers_left'), '0');
    });

    for (const r of PLAN.rounds) {
      const p = r.name;
      const nsKind = r.nsid === 1 ? 'file' : 'brd';
      describe(`library I/O, round ${p}: namespace ${r.nsid} (${nsKind}, ${r.lbs}-byte blocks)${r.digests ? ', header and data digests' : ''}`, () => {
        it('connects; nvmet grants the digests asked for on every queue; the geometry nvmet reports', () => {
          assert.equal(facts.get(`${p}_connect`), 'ok');
          const queues = Number(facts.get(`${p}_io_queues`));
          assert.ok(queues >= 1);
          const dgst = r.digests ? '3' : '0'; // ICResp DGST: bit 0 header, bit 1 data
          assert.equal(
            facts.get(`${p}_icresp_dgst`),
            Array(queues + 1)
              .fill(dgst)
              .join(','),
          );
          assert.equal(facts.get(`${p}_inline_bytes`), String(INLINE));
          assert.equal(facts.get(`${p}_mdts_bytes`), '0');
          assert.equal(facts.get(`${p}_lbs`), String(r.lbs));
          assert.equal(facts.get(`${p}_size`), String(r.blocks * r.lbs));
          assert.equal(facts.get(`${p}_max_transfer`), String(HOST_MAX_TRANSFER));
          assert.equal(facts.get(`${p}_copy_limits`), 'none');
          assert.equal(facts.get(`${p}_can_copy`), 'false');
        });

        for (const w of r.writes) {
          const k = `${p}_${w.key}`;
          const bytes = w.blocks * r.lbs;
          const cmds = Math.ceil(bytes / HOST_MAX_TRANSFER);
          it(`write ${w.key}: ${bytes} bytes at LBA ${w.lba} in ${cmds} command(s), read back, on the ${nsKind}`, () => {
            assert.equal(facts.get(`${k}_write`), 'ok');
            assert.equal(facts.get(`${k}_read`), 'ok');
            assert.equal(facts.get(`${k}_verify`), 'ok');
            assert.equal(facts.get(`${k}_write_cmds`), String(cmds));
            assert.equal(facts.get(`${k}_read_cmds`), String(cmds));
            // in the capsule up to the in-capsule size, else one R2T per command for all its data
            const inCapsule = bytes <= INLINE;
            assert.equal(facts.get(`${k}_r2t`), inCapsule ? '0' : String(cmds));
            assert.equal(facts.get(`${k}_r2t_bytes`), inCapsule ? '0' : String(bytes));
            const want = written(r, w);
            assert.equal(facts.get(`${k}_sha256`), want, 'what tsblk read back');
            assert.equal(facts.get(`backing_${k}_sha256`), want, `what the ${nsKind} holds`);
          });
        }

        it('flush sends one Flush (nvmet reports a volatile write cache)', () => {
          assert.equal(facts.get(`${p}_vwc`), 'true');
          assert.equal(facts.get(`${p}_flush`), 'ok');
          assert.equal(facts.get(`${p}_flush_cmds`), '1');
        });

        if (nsKind === 'brd')
          it('Write Zeroes: the blocks read back as zeroes, through tsblk and on the brd', () => {
            assert.equal(facts.get(`${p}_zeroes`), 'ok');
            assert.equal(facts.get(`${p}_zeroes_cmds`), '1');
            assert.equal(facts.get(`${p}_zeroes_read_zero`), 'true');
            assert.equal(facts.get(`${p}_zeroes_sha256`), zeroes(r.zeroes, r.lbs));
            assert.equal(facts.get(`backing_${p}_zeroes_sha256`), zeroes(r.zeroes, r.lbs));
          });
        else
          it('Write Zeroes on a tmpfs file: nvmet refuses it (Invalid Opcode) once; tsblk writes zero buffers instead', () => {
            // nvmet's file backend zeroes with fallocate(FALLOC_FL_ZERO_RANGE), which tmpfs lacks;
            // nvmet turns that EOPNOTSUPP into Invalid Command Opcode although ONCS offers the
            // command. Like blkdev_issue_zeroout, the host then writes zeroes as data.
            assert.equal(facts.get(`${p}_zeroes`), 'ok');
            assert.equal(facts.get(`${p}_zeroes_cmds`), '1'); // sent once: DNR, no retry
            assert.ok(Number(facts.get(`${p}_zeroes_write_cmds`)) >= 1, 'zero buffers written');
            assert.equal(facts.get(`${p}_zeroes_read_zero`), 'true');
            assert.equal(facts.get(`${p}_zeroes_sha256`), zeroes(r.zeroes, r.lbs));
            assert.equal(facts.get(`backing_${p}_zeroes_sha256`), zeroes(r.zeroes, r.lbs));
          });

        it('Deallocate is accepted (one Dataset Management command)', () => {
          assert.equal(facts.get(`${p}_discard`), 'ok');
          assert.equal(facts.get(`${p}_discard_cmds`), '1');
          if (nsKind === 'file') {
            // nvmet's file backend punches a hole: zeroes, on tmpfs and through tsblk
            assert.equal(facts.get(`${p}_discard_read_zero`), 'true');
            assert.equal(facts.get(`backing_${p}_discard_sha256`), zeroes(r.discard, r.lbs));
          } else {
            // what a block device keeps after a discard is its business; tsblk read what is there
            assert.equal(facts.get(`${p}_discard_sha256`), facts.get(`backing_${p}_discard_sha256`));
          }
        });

        it('issueCopy auto: no Copy on nvmet, so it emulates, says so, and the data lands', () => {
          const len = r.copy.src.blocks * r.lbs;
          assert.equal(facts.get(`${p}_copy`), 'ok');
          assert.deepEqual(JSON.parse(facts.get(`${p}_copy_result`)), {
            bytes: len,
            offloaded: 0,
            emulated: len,
            path: 'emulate',
          });
          assert.equal(facts.get(`${p}_copy_cmds`), 'read 1 write 1 copy 0');
          const want = sha256(pattern(`${p}/${r.copy.src.key}`, r.copy.src, r.lbs));
          assert.equal(facts.get(`${p}_copy_dst_sha256`), want);
          assert.equal(facts.get(`backing_${p}_copydst_sha256`), want);
        });

        it('issueCopy forced offload: EOPNOTSUPP before any command, the destination unchanged', () => {
          const e = facts.get(`${p}_offload`);
          assert.match(e, /^EOPNOTSUPP: /);
          assert.match(e, /offload forced/);
          assert.match(e, /cannot copy by itself/);
          assert.equal(facts.get(`${p}_offload_cmds`), '0');
          const guard = written(r, r.copy.offloadDst);
          assert.equal(facts.get(`${p}_offload_dst_sha256`), guard);
          assert.equal(facts.get(`backing_${p}_offloadguard_sha256`), guard);
        });

        it('disconnects', () => {
          assert.equal(facts.get(`${p}_state_after`), 'deleted');
        });
      });
    }

    describe('tsblk copy (CLI) on an nvme-tcp namespace', () => {
      const len = PLAN.cliCopy.blocks * PLAN.cliCopy.lbs;
      it('auto: emulated, reported as such (0 bytes offloaded), the data lands', () => {
        assert.equal(facts.get('cli_copy_rc'), '0', facts.get('cli_copy_stderr'));
        const o = json('cli_copy.out');
        assert.equal(o.ok, true);
        assert.equal(o.mode, 'auto');
        assert.equal(o.bytes, len);
        assert.equal(o.offloaded, 0);
        assert.equal(o.emulated, len);
        assert.deepEqual(
          (o.ranges as Json[]).map((x) => x.path),
          ['emulate'],
        );
        const want = sha256(pattern(`${PLAIN.name}/${PLAIN.copy.src.key}`, PLAIN.copy.src, PLAIN.lbs));
        assert.equal(facts.get('backing_cli_copydst_sha256'), want);
      });

      it('auto, the summary a person reads: 0 offloaded, all emulated, the range took the emulate path', () => {
        assert.equal(facts.get('cli_copy_text_rc'), '0', facts.get('cli_copy_text_stderr'));
        const text = out('cli_copy_text.out');
        assert.match(text, /\(mode auto, issueCopy\)/);
        assert.match(text, /^\s*offloaded\s+0 \(0 B\)$/m);
        assert.match(text, new RegExp(`^\\s*emulated\\s+${len} \\(64 KiB\\)$`, 'm'));
        assert.match(
          text,
          new RegExp(`^\\s*0\\s+${PLAN.cliCopy.src * PLAN.cliCopy.lbs}\\s.*\\semulate$`, 'm'),
        );
      });

      it('--mode offload: exit 1, EOPNOTSUPP named, the destination unchanged', () => {
        assert.equal(facts.get('cli_offload_rc'), '1');
        const stderr = facts.get('cli_offload_stderr');
        assert.match(stderr, /EOPNOTSUPP/);
        assert.match(stderr, /offload forced/);
        const o = json('cli_offload.out');
        assert.equal(o.ok, false);
        assert.equal((o.error as Json).code, 'EOPNOTSUPP');
        assert.equal(facts.get(`backing_${PLAIN.name}_cliguard_sha256`), written(PLAIN, cliGuard));
      });
    });

    describe('tsblk connect to a subsystem NQN nvmet does not have', () => {
      /** One line naming the NQN, the address and the status nvmet returned; no stack trace. */
      function assertClear(stderr: string): void {
        assert.ok(stderr.startsWith(`tsblk: cannot connect to ${BAD_NQN} at 127.0.0.1:4420 `), stderr);
        assert.match(stderr, /refused: 0x182 CONNECT_INVALID_PARAM DNR\b/); // SCT 1h SC 82h, Do Not Retry
        assert.match(stderr, /\(invalid subnqn in the Connect data\)/); // IATTR/IPO: the field nvmet rejected
        assert.doesNotMatch(stderr, /\n\s+at |internal error/);
      }

      it('in-process (run(), as bin/tsblk.js calls it): exit code 1, a clear message, at once', () => {
        assert.equal(facts.get('bad_nqn_rc'), '1');
        assertClear(facts.get('bad_nqn_stderr'));
        assert.ok(Number(facts.get('bad_nqn_seconds')) < 10, facts.get('bad_nqn_seconds'));
      });

      it('as its own process (node bin/tsblk.js): exit status 1, the same message, the process ends', () => {
        // 124 would be `timeout` killing a process that did not end within 60 s
        assert.equal(facts.get('bad_nqn_process_rc'), '1', facts.get('bad_nqn_process_stderr'));
        assertClear(facts.get('bad_nqn_process_stderr'));
      });

      it('nvmet saw both Connect commands and logged why it refused them', () => {
        assert.match(
          facts.get('nvmet_log_bad_nqn'),
          new RegExp(`connect request for invalid subsystem ${BAD_NQN}`),
        );
        assert.equal(facts.get('nvmet_log_bad_nqn_count'), '2');
      });
    });
  },
);
