// bench/copy-network-host — the host half of bench/copy-network. bench/copy-network.ts runs it
// inside the host network namespace; it connects to the tsblk target over the shaped link,
// fills the source areas, runs every case in both modes and prints one JSON object
// (HostReport) on stdout. Progress goes to stderr.
//
//   ip netns exec tsblk-host-<pid> node --import tsx bench/copy-network-host.ts \
//     --target 10.231.0.1:4420 --nqn NQN --pair '<PairDescription JSON>' [--quick]
//
// Each case, per mode: warm-up copies for WARM_UP_MS (one offloaded copy for the job); the
// destination is zeroed with Write Zeroes (checked: a sample reads back as zeroes), so a copy
// that did nothing cannot pass; the wire counters are read; the copy runs `reps` times back
// to back; the counters are read again; a sample of the destination is compared with what
// the source holds. A mismatch, or a copy that took another path than asked, fails the run
// (exit 1).
//
// The data: every 512-byte block of a source holds its absolute byte offset (8 bytes, big
// endian) and then bytes of one random 1 MiB buffer, so a block copied to the wrong place or
// from the wrong place does not compare equal.

import { randomBytes, randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { issueCopy, type CopyMode } from '../src/block/copy.js';
import type { BlockDevice, CopyRange } from '../src/block/device.js';
import { CopyJob } from '../src/mapper/copy-job.js';
import { NvmeController } from '../src/host/controller.js';
import { readWire, wireDelta, type PairDescription, type WireDelta } from './lib/netns.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BLOCK = 512;
const SAMPLE = 4 * KiB;
/** Copies repeat for this long before a case is measured (both processes JIT-compile their paths). */
const WARM_UP_MS = 300;

/** Where the cases live on the namespace (which must hold at least LAYOUT_BYTES). */
const SMALL_SRC = 0;
const SMALL_DST = 64 * MiB;
const JOB_SRC = 128 * MiB;
const JOB_DST = JOB_SRC + GiB + 128 * MiB;
export const LAYOUT_BYTES = JOB_DST + GiB;

export type CaseName = '8k' | '2m16' | 'job1g';

export interface CaseResult {
  readonly case: CaseName;
  readonly label: string;
  readonly mode: 'offload' | 'emulate';
  /** Bytes one copy moves. */
  readonly bytes: number;
  readonly ranges: number;
  readonly reps: number;
  /** Per copy, ms. */
  readonly medianMs: number;
  readonly minMs: number;
  readonly p10Ms: number;
  readonly p90Ms: number;
  readonly maxMs: number;
  /** The counter window over reps: per-copy time including the gaps between copies. */
  readonly meanMs: number;
  /** The counter window: all reps. */
  readonly wire: WireDelta;
  /** What issueCopy / the job reported for one copy. */
  readonly offloaded: number;
  readonly emulated: number;
  /** 4 KiB samples compared after the case. */
  readonly verifiedSamples: number;
}

export interface HostReport {
  readonly controller: {
    readonly name: string;
    readonly ioQueues: number;
    readonly queueSize: number;
    readonly maxDataTransferBytes: number;
  };
  readonly namespace: {
    readonly name: string;
    readonly size: number;
    readonly logicalBlockSize: number;
    readonly maxTransferBytes: number;
    readonly copy: unknown;
  };
  readonly fill: { readonly bytes: number; readonly ms: number };
  readonly cases: CaseResult[];
}

interface Args {
  host: string;
  port: number;
  nqn: string;
  pair: PairDescription;
  quick: boolean;
  only: CaseName[] | undefined;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const target = get('target');
  const nqn = get('nqn');
  const pair = get('pair');
  if (!target || !nqn || !pair)
    throw new Error('usage: copy-network-host --target ADDR:PORT --nqn NQN --pair JSON');
  const [host, port] = target.split(':');
  const only = get('cases')?.split(',') as CaseName[] | undefined;
  const unknown = only?.filter((c) => !['8k', '2m16', 'job1g'].includes(c));
  if (unknown?.length) throw new Error(`unknown case ${unknown.join(', ')}: the cases are 8k, 2m16, job1g`);
  return {
    host: host!,
    port: Number(port),
    nqn,
    pair: JSON.parse(pair) as PairDescription,
    quick: argv.includes('--quick'),
    only,
  };
}

const log = (s: string) => process.stderr.write(`host: ${s}\n`);

// --- the data ---------------------------------------------------------------------------------

const BASE = randomBytes(MiB);
for (let i = 0; i < BASE.length; i++) if (BASE[i] === 0) BASE[i] = 0xa5; // never a zero byte

/** What the source holds at [offset, offset + len) (both multiples of BLOCK). */
function pattern(offset: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  for (let o = 0; o < len; o += BLOCK) {
    const abs = offset + o;
    const b = abs % BASE.length;
    BASE.copy(out, o, b, b + BLOCK);
    out.writeBigUInt64BE(BigInt(abs), o);
  }
  return out;
}

async function fill(ns: BlockDevice, areas: { offset: number; len: number }[]): Promise<number> {
  const step = Math.min(MiB, ns.limits.maxTransferBytes);
  const jobs: { offset: number; len: number }[] = [];
  for (const a of areas)
    for (let o = 0; o < a.len; o += step) jobs.push({ offset: a.offset + o, len: Math.min(step, a.len - o) });
  let next = 0;
  let bytes = 0;
  let lastLog = performance.now();
  const worker = async () => {
    while (next < jobs.length) {
      const j = jobs[next++]!;
      await ns.write(j.offset, pattern(j.offset, j.len));
      bytes += j.len;
      if (performance.now() - lastLog > 2000) {
        lastLog = performance.now();
        log(`filling: ${(bytes / MiB).toFixed(0)} MiB written`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return bytes;
}

// --- the cases --------------------------------------------------------------------------------

interface Case {
  readonly name: CaseName;
  readonly label: string;
  readonly ranges: CopyRange[];
  readonly job: boolean;
  /** Reps: at least minReps, and more until minMs have passed (at most maxReps). */
  readonly minReps: number;
  readonly maxReps: number;
  readonly minMs: number;
}

function cases(quick: boolean): Case[] {
  const stride = 2 * MiB + 4 * KiB;
  return [
    {
      name: '8k',
      label: '8 KiB × 1',
      ranges: [{ src: SMALL_SRC, dst: SMALL_DST, len: 8 * KiB }],
      job: false,
      minReps: 20,
      maxReps: 100_000,
      minMs: quick ? 300 : 2000,
    },
    {
      name: '2m16',
      label: '2 MiB × 16',
      // Scattered sources gathered into one contiguous destination (what Simple Copy was made
      // for, e.g. garbage collection): one NVMe Copy command with 16 source ranges. NVMe Copy
      // has a single destination, so scattered destinations would take 16 commands.
      ranges: Array.from({ length: 16 }, (_, i) => ({
        src: SMALL_SRC + i * stride,
        dst: SMALL_DST + i * 2 * MiB,
        len: 2 * MiB,
      })),
      job: false,
      minReps: quick ? 3 : 7,
      maxReps: 2000,
      minMs: quick ? 300 : 2000,
    },
    {
      name: 'job1g',
      label: quick ? '256 MiB job' : '1 GiB job',
      ranges: [{ src: JOB_SRC, dst: JOB_DST, len: quick ? 256 * MiB : GiB }],
      job: true,
      minReps: 1,
      maxReps: 1,
      minMs: 0,
    },
  ];
}

async function copyOnce(
  ns: BlockDevice,
  c: Case,
  mode: CopyMode,
): Promise<{ offloaded: number; emulated: number }> {
  if (c.job) return new CopyJob(ns, ns, c.ranges, { mode }).run();
  const total = c.ranges.reduce((n, r) => n + r.len, 0);
  return issueCopy(ns, ns, c.ranges, { mode, maxTotalBytes: Math.max(total, 128 * MiB) });
}

async function zeroDestinations(ns: BlockDevice, c: Case): Promise<void> {
  // Write Zeroes carries no data; without it, zero buffers do the same (over the link).
  // DEAC=0 (noUnmap): the RAM namespace keeps the chunks the warm-up allocated, so the
  // measured copies do not include the target allocating (and page-faulting in) fresh memory
  // for the destination — a cost a real SSD does not have, and one that would fall on
  // whichever mode ran first.
  const wz = ns.limits.writeZeroes;
  const step = Math.min(wz?.maxBytes || MiB, ns.limits.maxTransferBytes, MiB);
  const zero = wz ? undefined : Buffer.alloc(step);
  const pieces: { offset: number; len: number }[] = [];
  for (const r of c.ranges)
    for (let o = 0; o < r.len; o += step) pieces.push({ offset: r.dst + o, len: Math.min(step, r.len - o) });
  let next = 0;
  const worker = async () => {
    while (next < pieces.length) {
      const p = pieces[next++]!;
      if (zero) await ns.write(p.offset, zero.subarray(0, p.len));
      else await ns.writeZeroes(p.offset, p.len, { noUnmap: true });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const probe = Buffer.alloc(Math.min(SAMPLE, c.ranges[0]!.len), 0xff);
  await ns.read(c.ranges[0]!.dst, probe);
  if (probe.some((b) => b !== 0))
    throw new Error(`${c.label}: the destination does not read back as zeroes after Write Zeroes`);
}

/** Offsets (relative to the range) of the 4 KiB samples checked in one range. */
function sampleOffsets(len: number, randomOnes: number): number[] {
  if (len <= 4 * SAMPLE) return Array.from({ length: Math.ceil(len / SAMPLE) }, (_, i) => i * SAMPLE);
  const last = len - SAMPLE;
  const set = new Set([0, last]);
  for (let i = 0; i < randomOnes; i++) set.add(randomInt(0, last / BLOCK) * BLOCK);
  return [...set].sort((a, b) => a - b);
}

async function verify(ns: BlockDevice, c: Case, mode: CopyMode): Promise<number> {
  let n = 0;
  const perRange = c.job ? 62 : 2;
  for (const [i, r] of c.ranges.entries()) {
    for (const off of sampleOffsets(r.len, perRange)) {
      const len = Math.min(SAMPLE, r.len - off);
      const got = Buffer.alloc(len);
      await ns.read(r.dst + off, got);
      const want = pattern(r.src + off, len);
      if (!got.equals(want)) {
        const at = got.findIndex((b, k) => b !== want[k]);
        throw new Error(
          `${c.label} (${mode}): range ${i} is wrong at destination byte ${r.dst + off + at}: ` +
            `expected 0x${want[at]!.toString(16)} (source byte ${r.src + off + at}), got 0x${got[at]!.toString(16)}`,
        );
      }
      n++;
    }
  }
  return n;
}

async function measure(
  ns: BlockDevice,
  pair: PairDescription,
  c: Case,
  mode: 'offload' | 'emulate',
): Promise<CaseResult> {
  const bytes = c.ranges.reduce((n, r) => n + r.len, 0);
  const check = (r: { offloaded: number; emulated: number }, path = mode) => {
    const got = path === 'offload' ? r.offloaded : r.emulated;
    if (got !== bytes)
      throw new Error(
        `${c.label} (${path}): ${got} of ${bytes} bytes took the ${path} path (offloaded ${r.offloaded}, emulated ${r.emulated})`,
      );
    return r;
  };
  // Warm-up: allocates the destination on the target and warms the code paths. The job's is
  // offloaded in both modes (an emulated 1 GiB warm-up would cost ten seconds of link time).
  const warmUp = c.job ? 'offload' : mode;
  const w0 = performance.now();
  do check(await copyOnce(ns, c, warmUp), warmUp);
  while (!c.job && performance.now() - w0 < WARM_UP_MS);
  await zeroDestinations(ns, c);
  const times: number[] = [];
  let last = { offloaded: 0, emulated: 0 };
  const before = readWire(pair);
  const t0 = performance.now();
  while (times.length < c.minReps || (performance.now() - t0 < c.minMs && times.length < c.maxReps)) {
    const t = performance.now();
    last = check(await copyOnce(ns, c, mode));
    times.push(performance.now() - t);
  }
  const wire = wireDelta(before, readWire(pair));
  const verifiedSamples = await verify(ns, c, mode);
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    case: c.name,
    label: c.label,
    mode,
    bytes,
    ranges: c.ranges.length,
    reps: times.length,
    medianMs,
    minMs: sorted[0]!,
    p10Ms: sorted[Math.floor(sorted.length * 0.1)]!,
    p90Ms: sorted[Math.floor(sorted.length * 0.9)]!,
    maxMs: sorted[sorted.length - 1]!,
    meanMs: wire.ms / times.length,
    wire,
    offloaded: last.offloaded,
    emulated: last.emulated,
    verifiedSamples,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  log(`connecting to ${args.nqn} at ${args.host}:${args.port}`);
  const ctrl = await NvmeController.connect({
    address: { host: args.host, port: args.port },
    subnqn: args.nqn,
  });
  try {
    const ns = ctrl.namespace(1);
    if (ns.size < LAYOUT_BYTES)
      throw new Error(`namespace 1 has ${ns.size} bytes; the cases need ${LAYOUT_BYTES}`);
    const all = cases(args.quick).filter((c) => !args.only || args.only.includes(c.name));
    const areas: { offset: number; len: number }[] = [];
    for (const c of all) for (const r of c.ranges) areas.push({ offset: r.src, len: r.len });
    log(`filling ${(areas.reduce((n, a) => n + a.len, 0) / MiB).toFixed(0)} MiB of source data`);
    const t = performance.now();
    const filled = await fill(ns, areas);
    const fillMs = performance.now() - t;
    const results: CaseResult[] = [];
    for (const c of all) {
      for (const mode of ['offload', 'emulate'] as const) {
        log(`${c.label}: ${mode}`);
        const r = await measure(ns, args.pair, c, mode);
        log(
          `${c.label}: ${mode}: ${r.reps} reps, median ${r.medianMs.toFixed(3)} ms, ` +
            `${(r.bytes / MiB / (r.medianMs / 1000)).toFixed(1)} MiB/s, verified ${r.verifiedSamples} samples`,
        );
        results.push(r);
      }
    }
    const report: HostReport = {
      controller: {
        name: ctrl.name,
        ioQueues: ctrl.ioQueueCount,
        queueSize: ctrl.queueSize,
        maxDataTransferBytes: ctrl.maxDataTransferBytes,
      },
      namespace: {
        name: ns.name,
        size: ns.size,
        logicalBlockSize: ns.limits.logicalBlockSize,
        maxTransferBytes: ns.limits.maxTransferBytes,
        copy: ns.limits.copy,
      },
      fill: { bytes: filled, ms: fillMs },
      cases: results,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await ctrl.disconnect();
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`host: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
}
