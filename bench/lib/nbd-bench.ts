// bench/lib/nbd-bench — the pure parts of bench/nbd.ts: its options, the fio jobs and their
// command lines, reading fio's JSON, the ratios and the table. No process is started here, so
// bench/lib/nbd-bench.test.ts checks all of it in the unit suite.

import { isCongestionName } from './congestion.js';

export const SERVERS = ['tsblk', 'nbdkit', 'qemu-nbd'] as const;
export type ServerId = (typeof SERVERS)[number];

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** A size as the tools spell it: bytes, or a number with K/M/G/T (binary; an optional iB/B). */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`size ${JSON.stringify(text)}: expected bytes or a number with K, M, G or T`);
  const unit = { '': 1, k: KiB, m: MiB, g: GiB, t: 1024 * GiB }[m[2]!.toLowerCase()]!;
  const n = Number(m[1]) * unit;
  if (n <= 0 || !Number.isSafeInteger(n)) throw new Error(`size ${text}: must be positive`);
  return n;
}

export interface BenchOptions {
  /** Export size for the fio workloads (every server gets the same). */
  sizeBytes: number;
  /** Seconds per fio workload. */
  runtimeS: number;
  /** Servers to run, in table order. */
  servers: ServerId[];
  /** nbdcopy runs per server (the median is reported). */
  copyRuns: number;
  /** Times every server runs every fio workload, servers taking turns; the median run is shown. */
  rounds: number;
  /** Write the raw results here as JSON. */
  json?: string;
  /** TCP congestion control to switch the host to for the run (bench/lib/congestion.ts). */
  congestion?: string;
  /** Skip the fio workloads or the nbdcopy case. */
  fio: boolean;
  nbdcopy: boolean;
}

const USAGE =
  'usage: bench/nbd.ts [--size 1G] [--runtime 5] [--rounds 1] [--only tsblk,nbdkit,qemu-nbd] [--copy-runs 3] ' +
  '[--no-fio] [--no-nbdcopy] [--congestion cubic|bbr] [--json FILE]';

/** Parses bench/nbd.ts's arguments; throws with the usage on anything unknown. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const o: BenchOptions = {
    sizeBytes: GiB,
    runtimeS: 5,
    servers: [...SERVERS],
    copyRuns: 3,
    rounds: 1,
    fio: true,
    nbdcopy: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    switch (a) {
      case '--size':
        o.sizeBytes = parseSize(value());
        if (o.sizeBytes % MiB !== 0) throw new Error(`--size must be a whole number of MiB`);
        break;
      case '--runtime': {
        const v = value();
        o.runtimeS = Number(v);
        if (!Number.isInteger(o.runtimeS) || o.runtimeS < 1)
          throw new Error(`--runtime ${v}: a whole number of seconds ≥ 1`);
        break;
      }
      case '--rounds': {
        const v = value();
        o.rounds = Number(v);
        if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new Error(`--rounds ${v}: ≥ 1`);
        break;
      }
      case '--copy-runs': {
        const v = value();
        o.copyRuns = Number(v);
        if (!Number.isInteger(o.copyRuns) || o.copyRuns < 1) throw new Error(`--copy-runs ${v}: ≥ 1`);
        break;
      }
      case '--only': {
        const v = value();
        const list = v.split(',').filter(Boolean);
        for (const s of list)
          if (!(SERVERS as readonly string[]).includes(s))
            throw new Error(`--only ${v}: unknown server ${s} (known: ${SERVERS.join(', ')})`);
        // Table order stays tsblk, nbdkit, qemu-nbd whatever order was asked for.
        o.servers = SERVERS.filter((s) => list.includes(s));
        if (o.servers.length === 0) throw new Error('--only: name at least one server');
        break;
      }
      case '--json':
        o.json = value();
        break;
      case '--congestion': {
        const v = value();
        if (!isCongestionName(v))
          throw new Error(`--congestion ${v}: a congestion control name like cubic or bbr`);
        o.congestion = v;
        break;
      }
      case '--no-fio':
        o.fio = false;
        break;
      case '--no-nbdcopy':
        o.nbdcopy = false;
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

export interface FioWorkload {
  id: string;
  label: string;
  rw: 'randread' | 'randwrite' | 'read' | 'write';
  bs: number;
  iodepth: number;
  /** What the table shows for it. */
  unit: 'IOPS' | 'MiB/s';
}

/** The measured fio workloads, in table order (each runs after the prefill). */
export const WORKLOADS: readonly FioWorkload[] = [
  {
    id: 'randread-4k',
    label: '4 KiB random read, QD32',
    rw: 'randread',
    bs: 4 * KiB,
    iodepth: 32,
    unit: 'IOPS',
  },
  {
    id: 'randwrite-4k',
    label: '4 KiB random write, QD32',
    rw: 'randwrite',
    bs: 4 * KiB,
    iodepth: 32,
    unit: 'IOPS',
  },
  { id: 'read-1m', label: '1 MiB sequential read, QD8', rw: 'read', bs: MiB, iodepth: 8, unit: 'MiB/s' },
  { id: 'write-1m', label: '1 MiB sequential write, QD8', rw: 'write', bs: MiB, iodepth: 8, unit: 'MiB/s' },
];

/**
 * fio's command line for one job on an NBD URI through its nbd engine (libnbd, one
 * connection, requests pipelined up to iodepth). `timeS` makes it time-based; without it the
 * job covers `sizeBytes` once (the prefill). `extra` are more --key=value options.
 */
export function fioArgs(o: {
  name: string;
  uri: string;
  rw: string;
  bs: number;
  iodepth: number;
  sizeBytes: number;
  output: string;
  timeS?: number;
  extra?: readonly string[];
}): string[] {
  return [
    `--name=${o.name}`,
    '--ioengine=nbd',
    `--uri=${o.uri}`,
    `--rw=${o.rw}`,
    `--bs=${o.bs}`,
    `--iodepth=${o.iodepth}`,
    `--size=${o.sizeBytes}`,
    // Random offsets without fio's block bitmap: the client's cost stays flat for any size.
    '--norandommap',
    '--randrepeat=0',
    ...(o.timeS === undefined ? [] : ['--time_based', `--runtime=${o.timeS}`, '--ramp_time=1']),
    ...(o.extra ?? []),
    '--output-format=json',
    `--output=${o.output}`,
  ];
}

export interface FioResult {
  iops: number;
  mibs: number;
  /** Mean completion latency (submit to completion), µs. */
  latUs: number;
  bytes: number;
}

interface FioJobJson {
  error?: number;
  read?: { iops: number; bw_bytes: number; io_bytes: number; lat_ns: { mean: number } };
  write?: { iops: number; bw_bytes: number; io_bytes: number; lat_ns: { mean: number } };
}

/**
 * The one job of fio's --output-format=json for direction `dir`. fio may print notes before
 * the JSON document (e.g. "fio: ..."), so parsing starts at the first '{'.
 */
export function parseFioJson(text: string, dir: 'read' | 'write'): FioResult {
  const start = text.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON: ${text.slice(0, 300)}`);
  const doc = JSON.parse(text.slice(start)) as { jobs?: FioJobJson[] };
  const job = doc.jobs?.[0];
  if (!job) throw new Error('fio JSON without jobs');
  if (job.error) throw new Error(`fio job failed with error ${job.error}`);
  const d = job[dir];
  if (!d || d.io_bytes === 0) throw new Error(`fio job did no ${dir}s`);
  return { iops: d.iops, mibs: d.bw_bytes / MiB, latUs: d.lat_ns.mean / 1000, bytes: d.io_bytes };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The run whose key is the median (the lower of the two middle ones for an even count): a
 * whole run, so its other figures (CPU) belong to the rate shown.
 */
export function medianRun<T>(runs: readonly T[], key: (t: T) => number): T {
  if (runs.length === 0) throw new Error('median of nothing');
  const s = [...runs].sort((a, b) => key(a) - key(b));
  return s[(s.length - 1) >> 1]!;
}

/** One table row: a value per server (undefined = not run or failed). */
export interface Row {
  label: string;
  /** 'cores': server CPU time over wall time (1.00 = one core busy the whole time). */
  unit: 'IOPS' | 'MiB/s' | 's' | 'cores';
  values: Partial<Record<ServerId, number>>;
}

/**
 * tsblk against a peer as "how many times as fast": value ratio for rates, inverted for times
 * (seconds), so > 1 always means tsblk did better.
 */
export function speedRatio(row: Row, peer: ServerId): number | undefined {
  const t = row.values.tsblk;
  const p = row.values[peer];
  if (row.unit === 'cores') return undefined; // a cost, not a speed
  if (t === undefined || p === undefined || t <= 0 || p <= 0) return undefined;
  return row.unit === 's' ? p / t : t / p;
}

export function formatValue(v: number | undefined, unit: Row['unit']): string {
  if (v === undefined) return '-';
  if (unit === 's') return v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
  if (unit === 'cores') return v.toFixed(2);
  if (unit === 'IOPS') return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

export function formatRatio(r: number | undefined): string {
  return r === undefined ? '-' : `${r.toFixed(2)}×`;
}

/**
 * The header and the cells of every row; ratio columns (unless `ratios` is false) for the
 * peers in `servers` when tsblk is one of them.
 */
export function tableCells(
  rows: readonly Row[],
  servers: readonly ServerId[],
  withRatios = true,
): string[][] {
  const peers = servers.filter((s) => s !== 'tsblk');
  const ratios = withRatios && servers.includes('tsblk') ? peers : [];
  const head = ['workload', 'unit', ...servers, ...ratios.map((p) => `tsblk/${p}`)];
  const body = rows.map((r) => [
    r.label,
    r.unit,
    ...servers.map((s) => formatValue(r.values[s], r.unit)),
    ...ratios.map((p) => formatRatio(speedRatio(r, p))),
  ]);
  return [head, ...body];
}

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function formatTable(cells: readonly (readonly string[])[]): string {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ');
  const [head, ...body] = cells;
  return [line(head!), widths.map((w) => '-'.repeat(w)).join('-|-'), ...body.map(line)].join('\n');
}

/** The same table in Markdown (docs/benchmarks.md). */
export function formatMarkdown(cells: readonly (readonly string[])[]): string {
  const [head, ...body] = cells;
  return [
    `| ${head!.join(' | ')} |`,
    `| ${head!.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`,
    ...body.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** "127.0.0.1:PORT" and the export name, as an NBD URI (RFC-ish: nbd://host:port/name). */
export function nbdUri(host: string, port: number, name: string): string {
  return `nbd://${host}:${port}/${encodeURIComponent(name)}`;
}

/** utime + stime (clock ticks, every thread) from the text of /proc/PID/stat. */
export function cpuTicksFromStat(stat: string): number {
  // the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime))
    throw new Error(`not a /proc/PID/stat line: ${stat}`);
  return utime + stime;
}

/** `nbdinfo --map --totals` (lines "BYTES PERCENT TYPE DESCRIPTION"): bytes reported as data and as holes. */
export function parseMapTotals(text: string): { dataBytes: number; holeBytes: number } {
  let dataBytes = 0;
  let holeBytes = 0;
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+[\d.]+%\s+(\d+)\b/.exec(line);
    if (!m) continue;
    // base:allocation type bit 0 = hole (bit 1 = reads as zeroes, irrelevant here)
    if (Number(m[2]) & 1) holeBytes += Number(m[1]);
    else dataBytes += Number(m[1]);
  }
  if (dataBytes + holeBytes === 0)
    throw new Error(`nbdinfo --map --totals: nothing parsed from ${text.slice(0, 200)}`);
  return { dataBytes, holeBytes };
}

/** The first `nbd://` or `nbds://` URI in a server's output (tsblk nbd prints it first). */
export function findUri(text: string): string | undefined {
  return /^(nbds?:\/\/\S+)$/m.exec(text)?.[1];
}
