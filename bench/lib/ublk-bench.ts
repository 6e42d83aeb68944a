// The pure parts of bench/ublk.ts: arguments, the guest script's result lines, the table.

import { formatRatio, formatValue } from './nbd-bench.js';

export const TARGETS = ['tsblk', 'brd', 'loop', 'ublksrv-null', 'ublksrv-loop'] as const;
export type Target = (typeof TARGETS)[number];

/** The jobs of test/vm/guest/bench-ublk.sh, in table order. */
export const JOBS = [
  { id: 'randread-4k-qd1', label: '4 KiB random read, QD1', unit: 'IOPS' },
  { id: 'randwrite-4k-qd1', label: '4 KiB random write, QD1', unit: 'IOPS' },
  { id: 'randread-4k-qd64', label: '4 KiB random read, QD64', unit: 'IOPS' },
  { id: 'randwrite-4k-qd64', label: '4 KiB random write, QD64', unit: 'IOPS' },
  { id: 'read-128k-qd8', label: '128 KiB sequential read, QD8', unit: 'MiB/s' },
  { id: 'write-128k-qd8', label: '128 KiB sequential write, QD8', unit: 'MiB/s' },
] as const;

export interface UblkBenchOptions {
  sizeMiB: number;
  runtimeS: number;
  /** A ublksrv `ublk` binary: adds its null and loop targets. */
  ublksrv?: string;
  json?: string;
}

const USAGE = 'usage: bench/ublk.ts [--size 256M] [--runtime 3] [--ublksrv PATH] [--json FILE]';

export function parseUblkBenchArgs(argv: readonly string[]): UblkBenchOptions {
  const o: UblkBenchOptions = { sizeMiB: 256, runtimeS: 3 };
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
        const m = /^(\d+)([MG])$/i.exec(v);
        if (!m) throw new Error(`--size ${v}: a size like 256M or 1G`);
        o.sizeMiB = Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 : 1);
        if (o.sizeMiB < 16) throw new Error(`--size ${v}: at least 16M`);
        break;
      }
      case '--runtime': {
        const v = value();
        o.runtimeS = Number(v);
        if (!Number.isInteger(o.runtimeS) || o.runtimeS < 1)
          throw new Error(`--runtime ${v}: a whole number of seconds ≥ 1`);
        break;
      }
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

export interface JobResult {
  iops: number;
  mibs: number;
}

/** `result TARGET JOB IOPS KIB_PER_S` lines → target → job → result. Other lines are ignored. */
export function parseResults(stdout: string): Map<string, Map<string, JobResult>> {
  const out = new Map<string, Map<string, JobResult>>();
  for (const line of stdout.split('\n')) {
    const m = /^result (\S+) (\S+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)\s*$/.exec(line);
    if (!m) continue;
    const [, target, job, iops, kibps] = m;
    let t = out.get(target!);
    if (!t) out.set(target!, (t = new Map()));
    t.set(job!, { iops: Number(iops), mibs: Number(kibps) / 1024 });
  }
  return out;
}

/** Header + rows: a column per target that ran, then tsblk's ratio to each other target. */
export function ublkTableCells(results: Map<string, Map<string, JobResult>>): string[][] {
  const targets = TARGETS.filter((t) => results.has(t));
  const peers = targets.filter((t) => t !== 'tsblk');
  const ratios = targets.includes('tsblk') ? peers : [];
  const head = ['workload', 'unit', ...targets, ...ratios.map((p) => `tsblk/${p}`)];
  const body = JOBS.map((j) => {
    const v = (t: string) => {
      const r = results.get(t)?.get(j.id);
      return r === undefined ? undefined : j.unit === 'IOPS' ? r.iops : r.mibs;
    };
    const ratio = (p: string) => {
      const a = v('tsblk');
      const b = v(p);
      return a === undefined || b === undefined || a <= 0 || b <= 0 ? undefined : a / b;
    };
    return [
      j.label,
      j.unit,
      ...targets.map((t) => formatValue(v(t), j.unit)),
      ...ratios.map((p) => formatRatio(ratio(p))),
    ];
  });
  return [head, ...body];
}
