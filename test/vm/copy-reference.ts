// Host side of test/vm/guest/qemu-copy-reference.sh: the COPY specs it takes, the lines it
// prints, and a model of the namespace that predicts every sha256 it should print. The model
// is the independent oracle: the same pattern generator as the guest script (lib.sh
// `pattern`), and copies with memmove semantics (all sources read before the destination is
// written, as QEMU 7.2 does).
//
// The same script run against the tsblk target gives the same sha256 values when the
// namespace has the same size and block size; compare ReferenceReport.copies line by line.

import { createHash } from 'node:crypto';

export interface CopyRange {
  /** first source LBA; negative counts from the end of the namespace (-1 = last LBA) */
  slba: number;
  /** number of blocks (1-based) */
  nlb: number;
}

export interface CopySpec {
  /** destination LBA; negative counts from the end */
  dst: number;
  ranges: CopyRange[];
}

/** "DST=SLBA+NLB,SLBA+NLB": the script's argument for one copy. */
export function formatCopySpec(c: CopySpec): string {
  return `${c.dst}=${c.ranges.map((r) => `${r.slba}+${r.nlb}`).join(',')}`;
}

/** Parses formatCopySpec's output back. */
export function parseCopySpec(s: string): CopySpec {
  const m = /^(-?\d+)=(-?\d+\+\d+(?:,-?\d+\+\d+)*)$/.exec(s);
  if (!m) throw new Error(`bad copy spec '${s}': want DST=SLBA+NLB[,SLBA+NLB...]`);
  return {
    dst: Number(m[1]),
    ranges: (m[2] as string).split(',').map((r) => {
      const [slba, nlb] = r.split('+');
      return { slba: Number(slba), nlb: Number(nlb) };
    }),
  };
}

/** Block `lba` of the pattern: "LBA %08d " repeated, cut to `lbs` bytes. */
export function patternBlock(lba: number, lbs: number): Buffer {
  const s = `LBA ${String(lba).padStart(8, '0')} `;
  return Buffer.from(s.repeat(Math.ceil(lbs / s.length)).slice(0, lbs), 'latin1');
}

export interface ReferenceLayout {
  lbs: number;
  /** namespace size in blocks */
  nsze: number;
  patternBlocks: number;
  areaBlocks: number;
  tailBlocks: number;
}

/** The namespace as the script leaves it after initialising, then after each copy. */
export class ReferenceModel {
  /** blocks written by copies; others are computed from the layout */
  private readonly written = new Map<number, Buffer>();
  constructor(readonly layout: ReferenceLayout) {}

  resolve(lba: number): number {
    return lba < 0 ? this.layout.nsze + lba : lba;
  }

  block(lba: number): Buffer {
    const w = this.written.get(lba);
    if (w) return w;
    const { lbs, nsze, patternBlocks, tailBlocks } = this.layout;
    if (lba < patternBlocks || (lba >= nsze - tailBlocks && lba < nsze)) return patternBlock(lba, lbs);
    return Buffer.alloc(lbs);
  }

  read(lba: number, count: number): Buffer {
    const first = this.resolve(lba);
    return Buffer.concat(Array.from({ length: count }, (_, i) => this.block(first + i)));
  }

  sha256(lba: number, count: number): string {
    return createHash('sha256').update(this.read(lba, count)).digest('hex');
  }

  /** Applies a copy that succeeds: every source is read before the destination is written. */
  copy(c: CopySpec): void {
    const data = Buffer.concat(c.ranges.map((r) => this.read(r.slba, r.nlb)));
    const dst = this.resolve(c.dst);
    const n = data.length / this.layout.lbs;
    if (dst < 0 || dst + n > this.layout.nsze)
      throw new Error(`model: copy to ${dst}+${n} is outside the namespace`);
    for (let i = 0; i < n; i++) {
      this.written.set(dst + i, data.subarray(i * this.layout.lbs, (i + 1) * this.layout.lbs));
    }
  }
}

export interface ReferenceCopyLine {
  k: number;
  /** resolved destination LBA */
  dst: number;
  /** resolved ranges as printed, "SLBA+NLB,..." */
  ranges: string;
  blocks: number;
  rc: number;
  /** nvme-cli status in hex ("0x0" on success), or "error" */
  status: string;
  verdict: 'copied' | 'unchanged' | 'partial';
  sha256: string;
  expected: string;
  before: string;
  /** nvme-cli's own message */
  says: string;
}

export interface ReferenceReport extends ReferenceLayout {
  device: string;
  /** what Identify says: oncs, ocfs, mssrl, mcl, msrc (as nvme-cli prints them) */
  id: Record<string, string>;
  init: { area: string; tail: string };
  copies: ReferenceCopyLine[];
  final: { area: string; tail: string };
  done: number;
}

/** key=value pairs of one line (values have no spaces). */
function pairs(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(\w+)=(\S*)/g)) out[m[1] as string] = m[2] as string;
  return out;
}

/**
 * Parses the `ref:` lines of the script's output; throws when a part is missing. `tag` reads
 * lines renamed `TAG: ` instead (a guest script that runs the reference on several devices
 * renames each run's lines, e.g. `ref-qemu: ` and `ref-tsblk: `).
 */
export function parseReference(stdout: string, tag = 'ref'): ReferenceReport {
  const head = `${tag}: `;
  const lines = stdout
    .split('\n')
    .filter((l) => l.startsWith(head))
    .map((l) => l.slice(head.length));
  const find = (prefix: string) => {
    const l = lines.find((x) => x.startsWith(prefix));
    if (l === undefined) throw new Error(`copy reference output has no '${head}${prefix}' line`);
    return pairs(l);
  };
  const top = find('device=');
  const init = find('init ');
  const fin = find('final ');
  const copies: ReferenceCopyLine[] = [];
  const says = new Map<number, string>();
  for (const l of lines) {
    const s = /^copy (\d+) says: (.*)$/.exec(l);
    if (s) says.set(Number(s[1]), s[2] as string);
  }
  for (const l of lines) {
    const m = /^copy (\d+) dst=/.exec(l);
    if (!m) continue;
    const p = pairs(l);
    const k = Number(m[1]);
    copies.push({
      k,
      dst: Number(p.dst),
      ranges: p.ranges ?? '',
      blocks: Number(p.blocks),
      rc: Number(p.rc),
      status: p.status ?? '',
      verdict: p.verdict as ReferenceCopyLine['verdict'],
      sha256: p.sha256 ?? '',
      expected: p.expected ?? '',
      before: p.before ?? '',
      says: says.get(k) ?? '',
    });
  }
  return {
    device: top.device ?? '',
    lbs: Number(top.lbs),
    nsze: Number(top.nsze),
    patternBlocks: Number(top.pattern_blocks),
    areaBlocks: Number(top.area_blocks),
    tailBlocks: Number(top.tail_blocks),
    id: find('id '),
    init: { area: init.area_sha256 ?? '', tail: init.tail_sha256 ?? '' },
    copies,
    final: { area: fin.area_sha256 ?? '', tail: fin.tail_sha256 ?? '' },
    done: Number(find('done ').copies),
  };
}

/**
 * The Copy reference namespace both interop tests use (QEMU's `-device nvme-ns` and tsblk's
 * namespace get the same geometry): 64 MiB of 512-byte blocks, copy limits small enough to hit.
 */
export const REFERENCE_LBS = 512;
export const REFERENCE_NSZE = (64 << 20) / REFERENCE_LBS;
export const REFERENCE_MSSRL = 16;
export const REFERENCE_MCL = 64;
export const REFERENCE_MSRC = 7; // 0's based: 8 ranges

export interface ReferenceCopy {
  why: string;
  spec: CopySpec;
}

const r = (slba: number, nlb: number): CopyRange => ({ slba, nlb });

/**
 * The valid copies every Copy reference run makes, in order (a later one reads what an earlier
 * one wrote). QEMU and tsblk must give the same bytes for each.
 */
export const REFERENCE_VALID_COPIES: readonly ReferenceCopy[] = [
  { why: '1 range of 8 blocks', spec: { dst: 4096, ranges: [r(0, 8)] } },
  { why: '3 ranges, concatenated in order', spec: { dst: 4200, ranges: [r(10, 2), r(20, 4), r(30, 1)] } },
  { why: 'one range of exactly MSSRL blocks', spec: { dst: 4400, ranges: [r(100, REFERENCE_MSSRL)] } },
  {
    why: 'exactly MSRC+1 ranges',
    spec: { dst: 4500, ranges: Array.from({ length: REFERENCE_MSRC + 1 }, (_, i) => r(200 + 3 * i, 1)) },
  },
  {
    why: 'exactly MCL blocks in MCL/MSSRL ranges',
    spec: {
      dst: 4600,
      ranges: Array.from({ length: REFERENCE_MCL / REFERENCE_MSSRL }, (_, i) =>
        r(320 + 20 * i, REFERENCE_MSSRL),
      ),
    },
  },
  { why: 'ranges out of order and repeated', spec: { dst: 4700, ranges: [r(50, 2), r(5, 3), r(50, 2)] } },
  { why: 'the last LBA as source', spec: { dst: 4800, ranges: [r(-1, 1)] } },
  { why: 'the last 4 LBAs as destination', spec: { dst: -4, ranges: [r(400, 4)] } },
  { why: 'source = an earlier copy’s destination', spec: { dst: 4900, ranges: [r(4096, 8)] } },
  // tsblk and QEMU 7.2 both copy like memmove (docs/nvme-target.md): no Overlapping I/O Range
  { why: 'overlapping source and destination', spec: { dst: 4, ranges: [r(0, 8)] } },
];

/** MSRC+2 ranges: Command Size Limit Exceeded (SCT 1h / SC 83h) on QEMU and tsblk alike. */
export const REFERENCE_TOO_MANY_RANGES: ReferenceCopy = {
  why: 'MSRC+2 ranges: Command Size Limit Exceeded',
  spec: { dst: 5000, ranges: Array.from({ length: REFERENCE_MSRC + 2 }, (_, i) => r(200 + 3 * i, 1)) },
};
