// Copy pass-through for mapped devices: a copy request on the mapped device (source and
// destination both on it) is remapped through the table and handed down to the components.
//
// 1. Remap: every range is cut where its source or its destination crosses a target (or
//    extent) boundary, so each piece has one source component and one destination component.
// 2. Group pieces by (source component, destination component). A group whose destination can
//    copy from its source (canCopyFrom, offload enabled) is offloaded with
//    issueCopy(mode 'offload' — 'auto' when the caller allows emulation, so a stacked
//    component may emulate inside), which splits it by the component's own copy limits;
//    the other groups are emulated with issueCopy(mode 'emulate'). When the caller forbids
//    emulation and any group needs it, the request fails with EOPNOTSUPP before any I/O.
// 3. Order, keeping the request's as-if-every-source-were-read-first rule. Inside a group
//    issueCopy keeps it. Across groups, a group that reads bytes another group writes must
//    go first. With no such hazard all groups run concurrently. Otherwise:
//      a. emulated groups that read hazardous bytes read their sources into memory first
//         (bounded by the request, i.e. by limits.copy.maxBytes);
//      b. offloaded groups run one at a time in dependency order;
//      c. then the buffered pieces are written and the remaining emulated groups run.
//    If offloaded groups depend on each other in a cycle (only possible between siblings
//    that copy across devices), or a hazard meets a zoned destination, every piece is read
//    into memory first and written in ascending order (emulation), or, when emulation is
//    forbidden, the request fails with EOPNOTSUPP before any I/O.
// 4. Zoned destinations: groups are cut into runs of consecutive destination pieces and run
//    one after another in ascending destination order, so each zone sees ascending writes.
// 5. Partial completion: each piece records the prefix it copied; a range's completed count
//    is the sum over its pieces up to the first incomplete one.
//
// "Before any I/O" covers this mapping's own decision. A component that is itself a mapping
// decides for its own pieces when its group runs, so with nested mappings and forced offload
// an EOPNOTSUPP from below can come after other groups copied (the CopyError says how much).
//
// A caller of device.copy must give disjoint destinations (issueCopy guarantees it); pieces
// that would write the same component bytes through two targets are refused with EINVAL.

import type { BlockDevice, CopyPathBytes, CopyRange, DeviceCopyOptions } from '../block/device.js';
import { BlockError, CopyError, ErrorCode, abortError, toBlockError } from '../block/errors.js';
import { copyOffloadEnabled } from '../block/limits.js';
import { overlaps } from '../block/checks.js';
import { readFully } from '../block/io.js';
import { DEFAULT_COPY_MAX_RANGES, DEFAULT_COPY_MAX_TOTAL_BYTES, issueCopy } from '../block/copy.js';
import type { Table } from './table.js';

/** A piece of a request range that stays on one source and one destination component. */
export interface MappedCopyPiece {
  /** Index of the request range. */
  readonly range: number;
  readonly len: number;
  readonly srcDevice: BlockDevice;
  readonly src: number;
  readonly dstDevice: BlockDevice;
  readonly dst: number;
  /** Bytes known copied, a prefix of the piece. */
  done: number;
}

interface Group {
  readonly index: number;
  readonly srcDevice: BlockDevice;
  readonly dstDevice: BlockDevice;
  readonly pieces: MappedCopyPiece[];
  readonly offload: boolean;
}

/** Cuts each range at target boundaries of its source and its destination; pieces per range, in order. */
export function remapCopy(table: Table, ranges: readonly CopyRange[]): MappedCopyPiece[][] {
  return ranges.map((r, range) => {
    const out: MappedCopyPiece[] = [];
    for (let off = 0; off < r.len;) {
      const s = table.runAt(r.src + off);
      const d = table.runAt(r.dst + off);
      const len = Math.min(s.length, d.length, r.len - off);
      out.push({
        range,
        len,
        srcDevice: s.device,
        src: s.offset,
        dstDevice: d.device,
        dst: d.offset,
        done: 0,
      });
      off += len;
    }
    return out;
  });
}

function canOffload(src: BlockDevice, dst: BlockDevice): boolean {
  return copyOffloadEnabled(dst.limits) && dst.canCopyFrom(src);
}

/**
 * Groups pieces by component pair. With `zoneOrder`, groups are instead maximal runs of one
 * pair in ascending destination order, so running them in order writes each zone upwards.
 */
function groupPieces(pieces: MappedCopyPiece[], zoneOrder: boolean): Group[] {
  const groups: Group[] = [];
  const add = (p: MappedCopyPiece) =>
    groups.push({
      index: groups.length,
      srcDevice: p.srcDevice,
      dstDevice: p.dstDevice,
      pieces: [p],
      offload: canOffload(p.srcDevice, p.dstDevice),
    });
  if (zoneOrder) {
    const devs: BlockDevice[] = [];
    for (const p of pieces) if (!devs.includes(p.dstDevice)) devs.push(p.dstDevice);
    const sorted = [...pieces].sort(
      (a, b) => devs.indexOf(a.dstDevice) - devs.indexOf(b.dstDevice) || a.dst - b.dst,
    );
    for (const p of sorted) {
      const g = groups[groups.length - 1];
      if (g && g.srcDevice === p.srcDevice && g.dstDevice === p.dstDevice) g.pieces.push(p);
      else add(p);
    }
    return groups;
  }
  const byPair = new Map<BlockDevice, Map<BlockDevice, Group>>();
  for (const p of pieces) {
    let inner = byPair.get(p.srcDevice);
    if (!inner) byPair.set(p.srcDevice, (inner = new Map()));
    const g = inner.get(p.dstDevice);
    if (g) g.pieces.push(p);
    else {
      add(p);
      inner.set(p.dstDevice, groups[groups.length - 1]!);
    }
  }
  return groups;
}

interface Interval {
  readonly start: number;
  readonly end: number;
  readonly group: number;
}

/** Destination intervals per component, sorted by start, with a running max of ends for overlap queries. */
function destinationIndex(groups: Group[], what: string) {
  const byDevice = new Map<BlockDevice, { iv: Interval[]; maxEnd: number[] }>();
  for (const g of groups)
    for (const p of g.pieces) {
      let e = byDevice.get(p.dstDevice);
      if (!e) byDevice.set(p.dstDevice, (e = { iv: [], maxEnd: [] }));
      e.iv.push({ start: p.dst, end: p.dst + p.len, group: g.index });
    }
  for (const [dev, e] of byDevice) {
    e.iv.sort((a, b) => a.start - b.start);
    let m = 0;
    e.iv.forEach((v, k) => {
      if (k > 0 && v.start < e.iv[k - 1]!.end)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: two destination pieces write bytes ${v.start}..${e.iv[k - 1]!.end} of ${dev.name}; ` +
            'each destination byte may be written once (are two targets mapping the same component bytes?)',
        );
      m = Math.max(m, v.end);
      e.maxEnd.push(m);
    });
  }
  return byDevice;
}

/** edges[u] holds every other group v that writes bytes group u reads (u must read first). */
function hazardEdges(groups: Group[], dsts: ReturnType<typeof destinationIndex>): Set<number>[] {
  const edges = groups.map(() => new Set<number>());
  for (const g of groups)
    for (const p of g.pieces) {
      const e = dsts.get(p.srcDevice);
      if (!e) continue;
      const end = p.src + p.len;
      // Last interval starting before the source ends, then back while ends can still reach it.
      let lo = 0;
      let hi = e.iv.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (e.iv[mid]!.start < end) lo = mid + 1;
        else hi = mid;
      }
      for (let k = lo - 1; k >= 0 && e.maxEnd[k]! > p.src; k--) {
        const v = e.iv[k]!;
        if (v.group !== g.index && overlaps(p.src, p.len, v.start, v.end - v.start))
          edges[g.index]!.add(v.group);
      }
    }
  return edges;
}

/** Kahn's algorithm over the given groups (lowest index first); undefined on a cycle. */
function topoOrder(nodes: Group[], edges: Set<number>[]): Group[] | undefined {
  const inSet = new Set(nodes.map((g) => g.index));
  const indeg = new Map<number, number>(nodes.map((g) => [g.index, 0]));
  for (const g of nodes) for (const v of edges[g.index]!) if (inSet.has(v)) indeg.set(v, indeg.get(v)! + 1);
  const byIndex = new Map(nodes.map((g) => [g.index, g]));
  const ready = nodes.filter((g) => indeg.get(g.index) === 0).map((g) => g.index);
  const out: Group[] = [];
  while (ready.length > 0) {
    ready.sort((a, b) => a - b);
    const u = ready.shift()!;
    out.push(byIndex.get(u)!);
    for (const v of edges[u]!) {
      if (!inSet.has(v)) continue;
      const d = indeg.get(v)! - 1;
      indeg.set(v, d);
      if (d === 0) ready.push(v);
    }
  }
  return out.length === nodes.length ? out : undefined;
}

/** Bytes of a range known copied: whole pieces up to the first incomplete one, plus its prefix. */
function prefixDone(pieces: readonly MappedCopyPiece[]): number {
  let n = 0;
  for (const p of pieces) {
    n += p.done;
    if (p.done < p.len) break;
  }
  return n;
}

/** Counters and the first error of one pass-through copy. */
class Run {
  offloaded = 0;
  emulated = 0;
  error: BlockError | undefined;

  constructor(
    readonly what: string,
    readonly options: DeviceCopyOptions,
  ) {}

  /** False once an error or an abort means no new work may start. */
  mayStart(): boolean {
    if (this.error) return false;
    if (this.options.signal?.aborted) {
      this.error = abortError(this.options.signal, this.what);
      return false;
    }
    return true;
  }

  fail(err: unknown): void {
    this.error ??= toBlockError(err, this.what);
  }

  async group(g: Group): Promise<void> {
    if (!this.mayStart()) return;
    const ranges = g.pieces.map((p) => ({ src: p.src, dst: p.dst, len: p.len }));
    const bytes = ranges.reduce((s, r) => s + r.len, 0);
    try {
      const r = await issueCopy(g.srcDevice, g.dstDevice, ranges, {
        mode: g.offload ? (this.options.allowEmulation ? 'auto' : 'offload') : 'emulate',
        ...(this.options.signal ? { signal: this.options.signal } : {}),
        maxRanges: Math.max(DEFAULT_COPY_MAX_RANGES, ranges.length),
        maxTotalBytes: Math.max(DEFAULT_COPY_MAX_TOTAL_BYTES, bytes),
      });
      for (const p of g.pieces) p.done = p.len;
      this.offloaded += r.offloaded;
      this.emulated += r.emulated;
    } catch (err) {
      if (CopyError.isCopyError(err)) {
        g.pieces.forEach((p, i) => (p.done = Math.min(p.len, err.completed[i] ?? 0)));
        this.offloaded += err.offloaded;
        this.emulated += err.emulated;
      }
      this.fail(err);
    }
  }

  /** Reads each piece's source into memory; nothing is written. */
  async stage(pieces: MappedCopyPiece[]): Promise<Map<MappedCopyPiece, Buffer> | undefined> {
    const staged = new Map<MappedCopyPiece, Buffer>();
    for (const p of pieces) {
      if (!this.mayStart()) return undefined;
      const buf = Buffer.allocUnsafe(p.len);
      try {
        await readFully(p.srcDevice, p.src, buf, this.ioOptions());
      } catch (err) {
        this.fail(err);
        return undefined;
      }
      staged.set(p, buf);
    }
    return staged;
  }

  /** Writes staged pieces in ascending destination order, recording each piece's prefix. */
  async writeStaged(staged: Map<MappedCopyPiece, Buffer>): Promise<void> {
    const pieces = [...staged.keys()].sort((a, b) => a.dst - b.dst);
    for (const p of pieces) {
      const buf = staged.get(p)!;
      const step = p.dstDevice.limits.maxTransferBytes;
      while (p.done < p.len) {
        if (!this.mayStart()) return;
        const n = Math.min(step, p.len - p.done);
        try {
          await p.dstDevice.write(p.dst + p.done, buf.subarray(p.done, p.done + n), this.ioOptions());
        } catch (err) {
          this.fail(err);
          return;
        }
        p.done += n;
        this.emulated += n;
      }
    }
  }

  ioOptions() {
    return this.options.signal ? { signal: this.options.signal } : {};
  }
}

/**
 * Copies `ranges` (source and destination both on the mapped device `name` with `table`)
 * through the table. Returns the bytes each path carried; throws a plain BlockError before
 * any I/O when the request cannot be done as asked, or a CopyError with per-range prefixes.
 */
export async function copyThroughTable(
  name: string,
  table: Table,
  ranges: readonly CopyRange[],
  options: DeviceCopyOptions,
): Promise<CopyPathBytes> {
  const what = `copy on ${name}`;
  const byRange = remapCopy(table, ranges);
  const pieces = byRange.flat();
  const zoneOrder = pieces.some((p) => p.dstDevice.limits.zoned !== undefined);
  const groups = groupPieces(pieces, zoneOrder);
  const dsts = destinationIndex(groups, what);

  const needsEmulation = groups.filter((g) => !g.offload);
  if (!options.allowEmulation && needsEmulation.length > 0) {
    const g = needsEmulation[0]!;
    const bytes = needsEmulation.reduce((s, x) => s + x.pieces.reduce((t, p) => t + p.len, 0), 0);
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `${what}: offload required, but ${bytes} bytes map to component pairs that cannot copy together ` +
        `(first: ${g.srcDevice.name} → ${g.dstDevice.name}); nothing was copied — allow emulation (issueCopy mode auto)`,
    );
  }

  const edges = hazardEdges(groups, dsts);
  const hazards = edges.some((e) => e.size > 0);
  const run = new Run(what, options);

  if (!hazards) {
    if (zoneOrder) for (const g of groups) await run.group(g);
    else await Promise.all(groups.map((g) => run.group(g)));
  } else {
    const offloadOrder = zoneOrder
      ? undefined
      : topoOrder(
          groups.filter((g) => g.offload),
          edges,
        );
    if (!offloadOrder) {
      // Offloaded groups that must each go first (a cycle), or a zoned destination: read
      // everything, then write in ascending order.
      if (!options.allowEmulation)
        throw new BlockError(
          ErrorCode.EOPNOTSUPP,
          `${what}: ranges overwrite each other's sources across components ` +
            `${zoneOrder ? 'on a zoned device' : 'in a cycle'}, which only emulation can order; nothing was copied — allow emulation`,
        );
      const staged = await run.stage(pieces);
      if (staged) await run.writeStaged(staged);
    } else {
      const stagedGroups = groups.filter((g) => !g.offload && edges[g.index]!.size > 0);
      const staged = await run.stage(stagedGroups.flatMap((g) => g.pieces));
      if (staged) {
        for (const g of offloadOrder) await run.group(g);
        if (run.mayStart()) {
          await run.writeStaged(staged);
          for (const g of groups) if (!g.offload && !stagedGroups.includes(g)) await run.group(g);
        }
      }
    }
  }

  if (run.error) throw new CopyError(run.error, byRange.map(prefixDone), run);
  return { offloaded: run.offloaded, emulated: run.emulated };
}
