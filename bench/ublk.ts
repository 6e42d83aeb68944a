// bench/ublk — tsblk's ublk server against the kernel's own block devices and against
// ublksrv, all in one QEMU guest boot, with the same fio jobs.
//
//   npm run bench:ublk       (= npm run build && node --import tsx bench/ublk.ts)
//   node --import tsx bench/ublk.ts [--size 256M] [--runtime 5] [--queues 2] [--depth 128]
//                                   [--ublksrv PATH] [--json FILE]
//
// One boot of the guest (test/vm/, Debian's 6.12 kernel) runs test/vm/guest/bench-ublk.sh:
// fio (libaio, direct=1, one job) on each target in turn over SIZE, prefilled with 1 MiB
// writes so reads hit data: 4 KiB random read and write at QD1 and QD64, 128 KiB sequential
// read and write at QD8, 1 s ramp + RUNTIME s each. Targets:
// - tsblk:  `node bin/tsblk.js ublk add ram:SIZE --queues Q --depth D` (dist/, built first
//           when stale; data moved with USER_COPY);
// - brd:    the kernel's RAM disk — the ceiling for a RAM-backed block device;
// - loop:   losetup over a file on tmpfs, direct I/O when the kernel takes it (the header says);
// - with --ublksrv PATH (a ublksrv `ublk` binary, with ublk.null and ublk.loop beside it, built
//   by hand from github.com/ublk-org/ublksrv — its code stays out of this repository):
//   ublksrv's null target (no data moved: the cost of the ublk round trip alone) and its loop
//   target over the same tmpfs file, with the same queues and depth as tsblk.
// The guest runs under TCG (no KVM on the project machine): every number is ~20x below native
// hardware, and paths that cross to userspace lose more than kernel-only ones. Compare ratios
// within one run, not absolute numbers across machines. The host's load average is printed:
// other guests on the machine disturb the run.
// Exit status: 0 when every target ran every job, 1 otherwise, 2 on bad arguments.

import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { ensureBuilt } from '../test/vm/build-dist.js';
import { guestScript, runInGuest } from '../test/vm/vm.js';
import { formatMarkdown, formatTable } from './lib/nbd-bench.js';
import {
  JOBS,
  TCG_NOTE,
  guestJobList,
  incompleteTargets,
  latencyCells,
  parseGuestOutput,
  parseUblkBenchArgs,
  ublkTableCells,
  type UblkBenchOptions,
} from './lib/ublk-bench.js';

/** The host directories a guest does not see through its read-only root (test/vm/vm.ts). */
const HOST_ONLY = ['/tmp', '/run', '/dev/shm'];

/** The absolute path of a usable ublksrv build, and the directory to share if the guest needs it. */
function checkUblksrv(path: string): { path: string; share?: string } {
  const abs = resolve(path);
  for (const p of [abs, join(dirname(abs), 'ublk.null'), join(dirname(abs), 'ublk.loop')]) {
    if (!existsSync(p))
      throw new Error(`--ublksrv ${path}: ${p} does not exist (ublk runs ublk.null/ublk.loop beside it)`);
    accessSync(p, constants.X_OK);
  }
  const hidden = HOST_ONLY.some((d) => abs.startsWith(`${d}/`));
  return hidden ? { path: abs, share: dirname(abs) } : { path: abs };
}

async function main(): Promise<number> {
  let o: UblkBenchOptions;
  let ublksrv: { path: string; share?: string } | undefined;
  try {
    o = parseUblkBenchArgs(process.argv.slice(2));
    if (o.ublksrv) ublksrv = checkUblksrv(o.ublksrv);
  } catch (err) {
    console.error(`bench/ublk: ${(err as Error).message}`);
    return 2;
  }
  console.error(`# ${ensureBuilt()}`);
  console.error(
    `# one guest boot: ${JOBS.length} fio jobs x ${ublksrv ? 5 : 3} targets, ${o.runtimeS + 1} s each plus prefill (TCG: a few minutes)`,
  );
  const loadBefore = loadavg()[0]!;
  const run = await runInGuest({
    command: ['bash', guestScript('bench-ublk.sh')],
    env: {
      SIZE_MIB: String(o.sizeMiB),
      RUNTIME: String(o.runtimeS),
      QUEUES: String(o.queues),
      DEPTH: String(o.depth),
      FIO_JOBS: guestJobList(),
      ...(ublksrv ? { UBLKSRV: ublksrv.path } : {}),
    },
    ...(ublksrv?.share ? { rwShares: [ublksrv.share] } : {}),
    // brd and the tmpfs file hold SIZE each at the same time; tsblk's RAM is freed by then
    memory: `${Math.max(2048, 2 * o.sizeMiB + 1024)}M`,
    timeoutMs: 1_800_000,
  });
  const loadAfter = loadavg()[0]!;
  const g = parseGuestOutput(run.stdout);
  const expected = ['tsblk', 'brd', 'loop', ...(ublksrv ? ['ublksrv-null', 'ublksrv-loop'] : [])];
  const incomplete = incompleteTargets(g.results, expected);
  const fact = (k: string) => g.facts.get(k) ?? '?';

  if (o.json)
    writeFileSync(
      o.json,
      JSON.stringify(
        {
          options: o,
          kernel: run.kernelVersion,
          loadavg: { before: loadBefore, after: loadAfter },
          facts: Object.fromEntries(g.facts),
          results: Object.fromEntries([...g.results].map(([t, m]) => [t, Object.fromEntries(m)])),
          errors: g.errors,
        },
        null,
        2,
      ),
    );

  console.log(
    `# tsblk bench/ublk — QEMU guest, kernel ${run.kernelVersion}, ${fact('guest_cpus')} vCPUs; ` +
      `host ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? '?'}), 1-min load ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after`,
  );
  console.log(`# NOTE: ${TCG_NOTE}`);
  console.log(
    `# ${fact('fio_version')} libaio direct=1, 1 job, ${o.runtimeS} s per job after a 1 s ramp, ${o.sizeMiB} MiB per target, prefilled`,
  );
  console.log(`# tsblk: ${fact('tsblk_info')}`);
  console.log(`# loop: direct I/O ${fact('loop_dio') === '1' ? 'on' : `off (${fact('loop_dio')})`}`);
  if (ublksrv) {
    console.log(
      `# ublksrv: ${ublksrv.path} (${fact('ublksrv_version')}), ${o.queues} queues x ${o.depth} tags`,
    );
    console.log(`#   null: ${fact('ublksrv_null_flags')}`);
    console.log(`#   loop: ${fact('ublksrv_loop_flags')}; ${fact('ublksrv_loop_target')}`);
  }
  console.log('# ratios: tsblk over the peer (> 1: tsblk faster)\n');
  const cells = ublkTableCells(g.results);
  console.log(formatTable(cells));
  console.log('\n# mean latency at QD1 (fio lat_ns, submit to completion)\n');
  const lat = latencyCells(g.results);
  console.log(formatTable(lat));
  console.log('\n# markdown (docs/benchmarks.md):\n');
  console.log(formatMarkdown(cells));
  console.log('');
  console.log(formatMarkdown(lat));

  if (run.exitCode !== 0 || incomplete.length || g.errors.length) {
    console.error(`bench/ublk: guest exit ${run.exitCode}; incomplete: ${incomplete.join(', ') || 'none'}`);
    for (const e of g.errors) console.error(`  ${e}`);
    console.error(
      run.stdout
        .split('\n')
        .filter((l) => !l.startsWith('fio-json '))
        .slice(-40)
        .join('\n'),
    );
    return 1;
  }
  return 0;
}

process.exitCode = await main();
