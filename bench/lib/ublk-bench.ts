// bench/lib/ublk-bench — the pure parts of bench/ublk.ts: its options, the fio jobs handed to
// the guest script, reading the script's output (fio's JSON, one line per job), the tables.
// No process is started here, so bench/lib/ublk-bench.test.ts checks all of it on the host.

import { formatRatio, formatValue, MiB, parseFioJson, parseSize, type FioResult } from './nbd-bench.js';

/** Table order. The ublksrv targets run only with --ublksrv. */
export const TARGETS = ['tsblk', 'brd', 'loop', 'ublksrv-null', 'ublksrv-loop'] as const;
export type Target = (typeof TARGETS)[number];

export interface UblkJob {
  id: string;
  label: string;
  unit: 'IOPS' | 'MiB/s';
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: string;
  iodepth: number;
}

/** The fio jobs, in table order; every target runs all of them with the same parameters. */
export const JOBS: readonly UblkJob[] = [
  {
    id: 'randread-4k-qd1',
    label: '4 KiB random read, QD1',
    unit: 'IOPS',
    rw: 'randread',
    bs: '4k',
    iodepth: 1,
  },
  {
    id: 'randwrite-4k-qd1',
    label: '4 KiB random write, QD1',
    unit: 'IOPS',
    rw: 'randwrite',
    bs: '4k',
    iodepth: 1,
  },
  {
    id: 'randread-4k-qd64',
    label: '4 KiB random read, QD64',
    unit: 'IOPS',
    rw: 'randread',
    bs: '4k',
    iodepth: 64,
  },
  {
    id: 'randwrite-4k-qd64',
    label: '4 KiB random write, QD64',
    unit: 'IOPS',
    rw: 'randwrite',
    bs: '4k',
    iodepth: 64,
  },
  {
    id: 'read-128k-qd8',
    label: '128 KiB sequential read, QD8',
    unit: 'MiB/s',
    rw: 'read',
    bs: '128k',
    iodepth: 8,
  },
  {
    id: 'write-128k-qd8',
    label: '128 KiB sequential write, QD8',
    unit: 'MiB/s',
    rw: 'write',
    bs: '128k',
    iodepth: 8,
  },
];

/** Which side of fio's JSON holds a job's numbers. */
export function jobDirection(job: Pick<UblkJob, 'rw'>): 'read' | 'write' {
  return job.rw.endsWith('write') ? 'write' : 'read';
}

/** FIO_JOBS for test/vm/guest/bench-ublk.sh: `id rw bs iodepth` per job, jobs split by ';'. */
export function guestJobList(jobs: readonly UblkJob[] = JOBS): string {
  return jobs.map((j) => `${j.id} ${j.rw} ${j.bs} ${j.iodepth}`).join(';');
}

export interface UblkBenchOptions {
  /** Size of every target (fio's region; brd, tmpfs file and tsblk RAM device all this big). */
  sizeMiB: number;
  /** Seconds per fio job, after a 1 s ramp. */
  runtimeS: number;
  /** Hardware queues and tags per queue of the ublk devices (tsblk and ublksrv alike). */
  queues: number;
  depth: number;
  /** A ublksrv `ublk` binary (ublk.null and ublk.loop beside it): adds its null and loop targets. */
  ublksrv?: string;
  /** Every number (fio's, per target and job) written here as JSON. */
  json?: string;
}

export const USAGE =
  'usage: bench/ublk.ts [--size 256M] [--runtime 5] [--queues 2] [--depth 128] [--ublksrv PATH] [--json FILE]';

export function parseUblkBenchArgs(argv: readonly string[]): UblkBenchOptions {
  const o: UblkBenchOptions = { sizeMiB: 256, runtimeS: 5, queues: 2, depth: 128 };
  const int = (flag: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max)
      throw new Error(`${flag} ${v}: a whole number from ${min} to ${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    switch (a) {
      case '--size': {
        const v = value();
        let bytes: number;
        try {
          bytes = parseSize(v);
        } catch {
          throw new Error(`--size ${v}: a size like 256M or 1G`);
        }
        if (bytes % MiB !== 0) throw new Error(`--size ${v}: a whole number of MiB`);
        if (bytes < 16 * MiB) throw new Error(`--size ${v}: at least 16M`);
        o.sizeMiB = bytes / MiB;
        break;
      }
      case '--runtime':
        o.runtimeS = int(a, value(), 1, 600);
        break;
      case '--queues':
        o.queues = int(a, value(), 1, 16);
        break;
      case '--depth':
        o.depth = int(a, value(), 1, 4096);
        break;
      case '--ublksrv':
        o.ublksrv = value();
        break;
      case '--json':
        o.json = value();
        break;
      case '--help':
      case '-h':
        throw new Error(USAGE);
      default:
        throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return o;
}

export interface GuestOutput {
  /** target → job id → fio's numbers */
  results: Map<string, Map<string, FioResult>>;
  /** `fact: KEY=VALUE` lines, in order */
  facts: Map<string, string>;
  /** fio runs that failed or printed JSON that could not be read, one line each */
  errors: string[];
}

/**
 * The guest script's stdout: `fio-json TARGET JOB {...}` (fio's --output-format=json on one
 * line), `fio-failed TARGET JOB WHY` and `fact: K=V` lines; every other line is ignored.
 */
export function parseGuestOutput(stdout: string, jobs: readonly UblkJob[] = JOBS): GuestOutput {
  const out: GuestOutput = { results: new Map(), facts: new Map(), errors: [] };
  for (const line of stdout.split('\n')) {
    const fact = /^fact: ([^=]+)=(.*)$/.exec(line);
    if (fact) {
      out.facts.set(fact[1]!, fact[2]!.trimEnd());
      continue;
    }
    const failed = /^fio-failed (\S+) (\S+) ?(.*)$/.exec(line);
    if (failed) {
      out.errors.push(`${failed[1]} ${failed[2]}: ${failed[3]!.trim() || 'fio failed'}`);
      continue;
    }
    const m = /^fio-json (\S+) (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const [, target, jobId, json] = m as unknown as [string, string, string, string];
    const job = jobs.find((j) => j.id === jobId);
    if (!job) {
      out.errors.push(`${target} ${jobId}: not a job of this bench`);
      continue;
    }
    try {
      const r = parseFioJson(json, jobDirection(job));
      let t = out.results.get(target);
      if (!t) out.results.set(target, (t = new Map()));
      t.set(jobId, r);
    } catch (err) {
      out.errors.push(`${target} ${jobId}: ${(err as Error).message}`);
    }
  }
  return out;
}

/** Targets with at least one result, in table order. */
export function targetsRun(results: GuestOutput['results']): Target[] {
  return TARGETS.filter((t) => results.has(t));
}

/** Targets of `expected` that lack a result for some job. */
export function incompleteTargets(
  results: GuestOutput['results'],
  expected: readonly string[],
  jobs: readonly UblkJob[] = JOBS,
): string[] {
  return expected.filter((t) => jobs.some((j) => !results.get(t)?.has(j.id)));
}

function value(results: GuestOutput['results'], target: string, job: UblkJob): number | undefined {
  const r = results.get(target)?.get(job.id);
  return r === undefined ? undefined : job.unit === 'IOPS' ? r.iops : r.mibs;
}

/** tsblk's value over a peer's (> 1: tsblk faster); undefined when either is missing or zero. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || a <= 0 || b <= 0 ? undefined : a / b;
}

/** Header + a row per job: a column per target that ran, then tsblk's ratio to each peer. */
export function ublkTableCells(results: GuestOutput['results'], jobs: readonly UblkJob[] = JOBS): string[][] {
  const targets = targetsRun(results);
  const peers = targets.includes('tsblk') ? targets.filter((t) => t !== 'tsblk') : [];
  const head = ['workload', 'unit', ...targets, ...peers.map((p) => `tsblk/${p}`)];
  const body = jobs.map((j) => [
    j.label,
    j.unit,
    ...targets.map((t) => formatValue(value(results, t, j), j.unit)),
    ...peers.map((p) => formatRatio(ratio(value(results, 'tsblk', j), value(results, p, j)))),
  ]);
  return [head, ...body];
}

/** Mean completion latency (µs, fio's lat_ns) of the QD1 jobs: the cost of one round trip. */
export function latencyCells(results: GuestOutput['results'], jobs: readonly UblkJob[] = JOBS): string[][] {
  const targets = targetsRun(results);
  const qd1 = jobs.filter((j) => j.iodepth === 1);
  return [
    ['workload', 'unit', ...targets],
    ...qd1.map((j) => [
      j.label,
      'µs',
      ...targets.map((t) => {
        const r = results.get(t)?.get(j.id);
        return r === undefined ? '-' : r.latUs >= 100 ? r.latUs.toFixed(0) : r.latUs.toFixed(1);
      }),
    ]),
  ];
}

/** The note every printed table carries: where the numbers come from. */
export const TCG_NOTE =
  'the guest runs under TCG (software emulation, no KVM on this machine): every number is ~20x below ' +
  'native hardware, and paths that cross to userspace lose more than kernel-only ones (brd, loop); ' +
  'compare ratios within one run, not absolute numbers across machines';
