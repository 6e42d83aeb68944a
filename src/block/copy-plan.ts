// Turns a validated range list into pieces and an order to run them in (issueCopy steps 3
// and 5, and the memmove rule).
//
// Pieces: each range is cut at the piece size (the copy limit for offload, the buffer chunk
// for emulation) and at zone boundaries of a zoned destination, because no write may cross
// a zone.
//
// Order: when nothing constrains it, pieces run concurrently. Two things constrain it:
//  - memmove semantics on one device: a piece that writes bytes another piece reads must
//    wait until that piece has read them (edge reader → writer);
//  - zoned destinations: writes in one zone go in ascending order (edge lower → higher).
// Pieces that depend on each other in a cycle (A writes what B reads and B writes what A
// reads) form a strongly connected component that is read completely before any of it is
// written. The plan lists these units in a topological order.

import type { BlockDevice, CopyRange } from './device.js';

export interface Piece {
  /** Index in the caller's range list. */
  readonly range: number;
  /** Byte offset of this piece within its range. */
  readonly offsetInRange: number;
  readonly src: number;
  readonly dst: number;
  readonly len: number;
  /** Bytes of this piece known copied (a prefix). */
  done: number;
}

/** A set of pieces that must be read entirely before any of them is written. */
export interface Unit {
  readonly pieces: Piece[];
  readonly bytes: number;
}

export interface CopyPlan {
  readonly pieces: Piece[];
  /** Pieces of each range, in range order. */
  readonly byRange: Piece[][];
  /**
   * Null when the pieces are independent apart from zone order (handled by the runner);
   * otherwise the units in an order that satisfies every dependency, run one at a time.
   */
  readonly ordered: Unit[] | null;
}

/** Cuts ranges into pieces of at most pieceBytes that never cross a destination zone. */
export function splitRanges(
  ranges: readonly CopyRange[],
  pieceBytes: number,
  dstZoneSize: number,
): Piece[][] {
  return ranges.map((r, range) => {
    const out: Piece[] = [];
    for (let off = 0; off < r.len;) {
      let len = Math.min(pieceBytes, r.len - off);
      if (dstZoneSize > 0) {
        const dst = r.dst + off;
        len = Math.min(len, dstZoneSize - (dst % dstZoneSize));
      }
      out.push({ range, offsetInRange: off, src: r.src + off, dst: r.dst + off, len, done: 0 });
      off += len;
    }
    return out;
  });
}

/** True when some source byte of the list is also a destination byte (same device only). */
export function anySourceOverwritten(ranges: readonly CopyRange[]): boolean {
  const dsts = ranges.map((r) => [r.dst, r.dst + r.len] as const).sort((a, b) => a[0] - b[0]);
  for (const r of ranges) {
    // Destinations are disjoint (validated), so a binary search finds the only candidates.
    let lo = 0;
    let hi = dsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (dsts[mid]![1] <= r.src) lo = mid + 1;
      else hi = mid;
    }
    if (lo < dsts.length && dsts[lo]![0] < r.src + r.len) return true;
  }
  return false;
}

export function planCopy(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  pieceBytes: number,
): CopyPlan {
  const zoneSize = dst.limits.zoned?.zoneSize ?? 0;
  const byRange = splitRanges(ranges, pieceBytes, zoneSize);
  const pieces = byRange.flat();
  const overlap = src === dst && anySourceOverwritten(ranges);
  return { pieces, byRange, ordered: overlap ? orderDependentPieces(pieces, zoneSize) : null };
}

/** Builds the dependency graph, collapses its cycles and returns units in topological order. */
function orderDependentPieces(pieces: Piece[], zoneSize: number): Unit[] {
  const n = pieces.length;
  const edges: number[][] = Array.from({ length: n }, () => []);

  // Reader → writer: piece q reads bytes that piece p writes, so q goes first.
  const bySrc = pieces.map((_, i) => i).sort((a, b) => pieces[a]!.src - pieces[b]!.src);
  const srcStarts = bySrc.map((i) => pieces[i]!.src);
  let maxLen = 0;
  for (const p of pieces) maxLen = Math.max(maxLen, p.len);
  for (let p = 0; p < n; p++) {
    const w = pieces[p]!;
    // Candidates have src in (w.dst - maxLen, w.dst + w.len).
    let lo = lowerBound(srcStarts, w.dst - maxLen + 1);
    for (; lo < n && srcStarts[lo]! < w.dst + w.len; lo++) {
      const q = bySrc[lo]!;
      const r = pieces[q]!;
      if (q !== p && r.src + r.len > w.dst) edges[q]!.push(p);
    }
  }
  // Zone order: within one destination zone, lower writes first.
  if (zoneSize > 0) {
    const byDst = pieces.map((_, i) => i).sort((a, b) => pieces[a]!.dst - pieces[b]!.dst);
    for (let k = 1; k < byDst.length; k++) {
      const a = pieces[byDst[k - 1]!]!;
      const b = pieces[byDst[k]!]!;
      if (Math.floor(a.dst / zoneSize) === Math.floor(b.dst / zoneSize))
        edges[byDst[k - 1]!]!.push(byDst[k]!);
    }
  }

  const comp = stronglyConnectedComponents(edges);
  const nComp = Math.max(-1, ...comp) + 1;
  const members: number[][] = Array.from({ length: nComp }, () => []);
  comp.forEach((c, i) => members[c]!.push(i));
  const indeg = new Array<number>(nComp).fill(0);
  const cEdges: Set<number>[] = Array.from({ length: nComp }, () => new Set());
  edges.forEach((outs, from) => {
    for (const to of outs) {
      const a = comp[from]!;
      const b = comp[to]!;
      if (a !== b && !cEdges[a]!.has(b)) {
        cEdges[a]!.add(b);
        indeg[b]!++;
      }
    }
  });
  // Kahn's algorithm, taking the ready unit whose first piece comes first, so the order is
  // deterministic and follows the caller's order where the dependencies allow.
  const ready = new MinHeap<number>((a, b) => members[a]![0]! - members[b]![0]!);
  for (let c = 0; c < nComp; c++) if (indeg[c] === 0) ready.push(c);
  const units: Unit[] = [];
  while (ready.size > 0) {
    const c = ready.pop()!;
    const ps = members[c]!.map((i) => pieces[i]!).sort((a, b) => a.dst - b.dst);
    units.push({ pieces: ps, bytes: ps.reduce((s, p) => s + p.len, 0) });
    for (const d of cEdges[c]!) if (--indeg[d]! === 0) ready.push(d);
  }
  return units;
}

function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Tarjan's algorithm without recursion (piece counts reach the thousands). */
export function stronglyConnectedComponents(edges: number[][]): number[] {
  const n = edges.length;
  const index = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const onStack = new Array<boolean>(n).fill(false);
  const comp = new Array<number>(n).fill(-1);
  const stack: number[] = [];
  let next = 0;
  let nComp = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    const work: Array<[number, number]> = [[root, 0]];
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const [v, ei] = frame;
      if (ei === 0) {
        index[v] = low[v] = next++;
        stack.push(v);
        onStack[v] = true;
      }
      const outs = edges[v]!;
      if (ei < outs.length) {
        frame[1]++;
        const w = outs[ei]!;
        if (index[w] === -1) work.push([w, 0]);
        else if (onStack[w]) low[v] = Math.min(low[v]!, index[w]!);
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]![0];
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
      if (low[v] === index[v]) {
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = false;
          comp[w] = nComp;
        } while (w !== v);
        nComp++;
      }
    }
  }
  return comp;
}

class MinHeap<T> {
  #a: T[] = [];
  constructor(private readonly less: (a: T, b: T) => number) {}
  get size(): number {
    return this.#a.length;
  }
  push(v: T): void {
    const a = this.#a;
    a.push(v);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (this.less(a[i]!, a[p]!) >= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
