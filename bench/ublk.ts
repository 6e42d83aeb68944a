// bench/ublk — tsblk's ublk server against the kernel's own block devices, in the QEMU guest.
//
//   npm run bench:ublk       (= npm run build && node --import tsx bench/ublk.ts)
//   node --import tsx bench/ublk.ts [--size 256M] [--runtime 3] [--ublksrv PATH] [--json FILE]
//
// One guest boot (test/vm/, Debian's 6.12 kernel) runs test/vm/guest/bench-ublk.sh: fio
// (libaio, O_DIRECT, one job) on each target in turn, over SIZE, prefilled with 1 MiB writes:
// 4 KiB random read and write at QD1 and QD64, 128 KiB sequential read and write at QD8,
// RUNTIME s each after a 1 s ramp. Targets:
// - tsblk:  `tsblk ublk add ram:SIZE --queues 2 --depth 128` (dist/, USER_COPY);
// - brd:    the kernel's RAM disk — the ceiling for a RAM-backed block device;
// - loop:   losetup over a file on tmpfs, direct I/O when the kernel takes it;
// - with --ublksrv PATH (a ublksrv `ublk` binary built by hand from github.com/ublk-org/ublksrv):
//   ublksrv's null target (no data moved) and its loop target over the same tmpfs file.
// The guest runs under TCG (no KVM on the project machine): every number is ~20x below
// native hardware, and kernel-only paths (brd) lose less than paths that cross to userspace.
// Compare ratios within a run, not absolute numbers across machines.
// Exit status: 0 when every target ran every job, 1 otherwise, 2 on bad arguments.

import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';

import { ensureBuilt } from '../test/vm/build-dist.js';
import { guestScript, runInGuest } from '../test/vm/vm.js';
import { formatMarkdown, formatTable } from './lib/nbd-bench.js';
import {
  JOBS,
  parseResults,
  parseUblkBenchArgs,
  ublkTableCells,
  type UblkBenchOptions,
} from './lib/ublk-bench.js';

async function main(): Promise<number> {
  let o: UblkBenchOptions;
  try {
    o = parseUblkBenchArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`bench/ublk: ${(err as Error).message}`);
    return 2;
  }
  console.error(`# ${ensureBuilt()}`);
  const loadBefore = loadavg()[0]!;
  const run = await runInGuest({
    command: ['bash', guestScript('bench-ublk.sh')],
    env: {
      SIZE_MIB: String(o.sizeMiB),
      RUNTIME: String(o.runtimeS),
      ...(o.ublksrv ? { UBLKSRV: o.ublksrv } : {}),
    },
    memory: `${Math.max(2048, 2 * o.sizeMiB + 1024)}M`,
    timeoutMs: 1_800_000,
  });
  const results = parseResults(run.stdout);
  if (o.json)
    writeFileSync(
      o.json,
      JSON.stringify(
        { options: o, results: Object.fromEntries([...results].map(([t, m]) => [t, Object.fromEntries(m)])) },
        null,
        2,
      ),
    );
  const expected = ['tsblk', 'brd', 'loop', ...(o.ublksrv ? ['ublksrv-null', 'ublksrv-loop'] : [])];
  const incomplete = expected.filter((t) => (results.get(t)?.size ?? 0) < JOBS.length);
  const facts = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('fact: '))
    .map((l) => l.slice(6));
  console.log(
    `# tsblk bench/ublk — in a QEMU guest under TCG (no KVM: ~20x slower than native), guest kernel 6.12, ` +
      `host ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? '?'}), 1-min load ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`,
  );
  console.log(
    `# fio libaio direct=1, ${o.runtimeS} s per job after a 1 s ramp, ${o.sizeMiB} MiB prefilled; ${facts.join(', ')}`,
  );
  console.log('# ratios: how many times as fast tsblk was (> 1: tsblk faster)\n');
  const cells = ublkTableCells(results);
  console.log(formatTable(cells));
  console.log('\n# markdown (docs/benchmarks.md):\n');
  console.log(formatMarkdown(cells));
  if (run.exitCode !== 0 || incomplete.length) {
    console.error(`bench/ublk: guest exit ${run.exitCode}; incomplete: ${incomplete.join(', ') || 'none'}`);
    console.error(run.stdout.split('\n').slice(-40).join('\n'));
    return 1;
  }
  return 0;
}

process.exitCode = await main();
