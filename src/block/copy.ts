// issueCopy — the userspace blkdev_issue_copy. Copies byte ranges from one device to another
// (or within one): offloaded to the destination device when it can copy from the source,
// otherwise emulated with reads and writes through a bounded buffer budget.
//
//  1. validate everything before touching anything (copy-validate.ts);
//  2. choose the path: offload when dst.canCopyFrom(src) and offload is enabled, unless the
//     caller forces one;
//  3. split by the smaller copy limit of the two devices (or the buffer chunk) and at zone
//     boundaries, and group offload pieces into requests within maxRanges/maxBytes;
//  4. run with bounded concurrency and memory, honouring an AbortSignal, reporting progress;
//  5. keep writes into each zone of a zoned destination in ascending order;
//  6. on failure report, per range, the prefix known copied.
//
// Overlapping sources and destinations on one device behave as if every source were read
// before any destination is written (memmove semantics): see copy-plan.ts.

import { ByteBudget } from './budget.js';
import type { BlockDevice, CopyRange } from './device.js';
import { BlockError, CopyError, ErrorCode, abortError, toBlockError } from './errors.js';
import { copyOffloadEnabled } from './limits.js';
import { readFully, writeFully } from './io.js';
import { planCopy, type Piece, type Unit } from './copy-plan.js';
import { DEFAULT_COPY_MAX_RANGES, DEFAULT_COPY_MAX_TOTAL_BYTES, validateCopy } from './copy-validate.js';

export { DEFAULT_COPY_MAX_RANGES, DEFAULT_COPY_MAX_TOTAL_BYTES } from './copy-validate.js';
export const DEFAULT_COPY_MEMORY_BUDGET = 64 * 1024 * 1024;
export const DEFAULT_COPY_CONCURRENCY = 8;
export const DEFAULT_COPY_CHUNK_BYTES = 4 * 1024 * 1024;

export type CopyMode = 'auto' | 'offload' | 'emulate';
export type CopyPath = 'offload' | 'emulate' | 'mixed' | 'none';

export interface CopyProgress {
  bytesDone: number;
  bytesTotal: number;
  offloaded: number;
  emulated: number;
}

export interface IssueCopyOptions {
  /** 'auto' (default) offloads when it can; 'offload' fails with EOPNOTSUPP when it cannot. */
  mode?: CopyMode;
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
  /** Most ranges per call (default 4096). */
  maxRanges?: number;
  /** Most bytes per call (default 128 MiB); larger copies belong to a copy job. */
  maxTotalBytes?: number;
  /** Emulation never holds more buffer than this (default 64 MiB). */
  memoryBudget?: number;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Emulation buffer per request (default 4 MiB, capped by both devices' maxTransferBytes). */
  chunkBytes?: number;
}

export interface RangeResult {
  readonly src: number;
  readonly dst: number;
  readonly len: number;
  /** Bytes known copied, a prefix of the range. Equal to len on success. */
  readonly completed: number;
  /** The path issueCopy sent the range down. A stacked device may still emulate inside. */
  readonly path: CopyPath;
}

export interface CopyResult {
  readonly bytes: number;
  /** Bytes the devices copied by themselves. */
  readonly offloaded: number;
  /** Bytes moved through host memory (by issueCopy, or inside a stacked device). */
  readonly emulated: number;
  readonly ranges: RangeResult[];
  /** Most emulation buffer bytes held at once. */
  readonly peakBufferBytes: number;
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1)
    throw new BlockError(ErrorCode.EINVAL, `issueCopy: option ${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * Copies `ranges` from `src` to `dst`. Resolves with what each path carried; rejects with a
 * plain BlockError when the request is invalid (nothing was touched) or with a CopyError
 * carrying per-range completed prefixes when it failed part way.
 */
export async function issueCopy(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  options: IssueCopyOptions = {},
): Promise<CopyResult> {
  const mode = options.mode ?? 'auto';
  if (mode !== 'auto' && mode !== 'offload' && mode !== 'emulate')
    throw new BlockError(
      ErrorCode.EINVAL,
      `issueCopy: mode must be auto, offload or emulate, got ${String(mode)}`,
    );
  const maxRanges = positiveInt('maxRanges', options.maxRanges, DEFAULT_COPY_MAX_RANGES);
  const maxTotalBytes = positiveInt('maxTotalBytes', options.maxTotalBytes, DEFAULT_COPY_MAX_TOTAL_BYTES);
  const budgetBytes = positiveInt('memoryBudget', options.memoryBudget, DEFAULT_COPY_MEMORY_BUDGET);
  const concurrency = positiveInt('concurrency', options.concurrency, DEFAULT_COPY_CONCURRENCY);
  const total = validateCopy(src, dst, ranges, { maxRanges, maxTotalBytes });
  const align = Math.max(src.limits.logicalBlockSize, dst.limits.logicalBlockSize);

  const canOffload = copyOffloadEnabled(dst.limits) && dst.canCopyFrom(src);
  if (mode === 'offload' && !canOffload)
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `copy ${src.name} → ${dst.name}: offload forced but ${
        !dst.limits.copy
          ? `${dst.name} cannot copy by itself`
          : dst.limits.copy.maxBytes === 0
            ? `offload is disabled on ${dst.name} (copy.maxBytes is 0)`
            : `${dst.name} cannot copy from ${src.name}`
      }; use mode auto or emulate`,
    );
  const offload = mode !== 'emulate' && canOffload;

  const floorAlign = (n: number) => n - (n % align);
  const chunk = floorAlign(
    Math.min(
      positiveInt('chunkBytes', options.chunkBytes, DEFAULT_COPY_CHUNK_BYTES),
      src.limits.maxTransferBytes,
      dst.limits.maxTransferBytes,
      budgetBytes,
      // No buffer larger than the largest range: a 4 KiB copy should not allocate 4 MiB.
      Math.max(...ranges.map((r) => r.len)),
    ),
  );
  if (chunk < align)
    throw new BlockError(
      ErrorCode.EINVAL,
      `issueCopy: memoryBudget/chunkBytes of ${Math.min(budgetBytes, options.chunkBytes ?? budgetBytes)} bytes ` +
        `cannot hold one ${align}-byte block`,
    );
  let pieceBytes = chunk;
  if (offload) {
    const c = dst.limits.copy!;
    let limit = Math.min(c.maxRangeBytes, c.maxBytes);
    if (src !== dst && src.limits.copy)
      limit = Math.min(limit, src.limits.copy.maxRangeBytes, src.limits.copy.maxBytes);
    pieceBytes = floorAlign(limit);
    if (pieceBytes < align)
      throw new BlockError(
        ErrorCode.EINVAL,
        `copy ${src.name} → ${dst.name}: copy limits are below one block`,
      );
  }

  const plan = planCopy(src, dst, ranges, pieceBytes);
  const run = new CopyRun(src, dst, total, budgetBytes, concurrency, chunk, options);
  // The path each piece took; an offload the device refuses (EOPNOTSUPP) in auto mode is
  // emulated instead, and the piece is counted as emulated.
  const pathOfPiece = new Map<Piece, 'offload' | 'emulate'>();

  if (plan.ordered) {
    // Decide each dependent unit's path now, so an impossible request fails before any I/O.
    const steps = plan.ordered.map((unit) => {
      if (offload && (unit.pieces.length === 1 || fitsOneRequest(dst, unit)))
        return { unit, path: 'offload' as const };
      if (mode === 'offload')
        throw new BlockError(
          ErrorCode.E2BIG,
          `copy ${src.name} → ${dst.name}: ${unit.pieces.length} overlapping pieces (${unit.bytes} bytes) must be ` +
            `copied in one request but exceed ${dst.name}'s copy limits; use mode auto`,
        );
      if (unit.bytes > budgetBytes && unit.pieces.length > 1)
        throw new BlockError(
          ErrorCode.ENOMEM,
          `copy ${src.name} → ${dst.name}: ${unit.bytes} bytes of ranges overwrite each other's sources in a cycle ` +
            `and must be buffered at once, more than the memory budget of ${budgetBytes}; raise memoryBudget or split the call`,
        );
      return { unit, path: 'emulate' as const };
    });
    for (const { unit, path } of steps) for (const p of unit.pieces) pathOfPiece.set(p, path);
    await run.sequential(steps);
  } else {
    // Zoned destinations need ascending writes per zone; sort so issue order is write order.
    const pieces = dst.limits.zoned ? [...plan.pieces].sort((a, b) => a.dst - b.dst) : plan.pieces;
    const path = offload ? 'offload' : 'emulate';
    for (const p of pieces) pathOfPiece.set(p, path);
    if (offload) await run.offloadConcurrent(pieces);
    else await run.emulateConcurrent(pieces);
  }

  for (const p of run.fellBack) pathOfPiece.set(p, 'emulate');
  const paths = plan.byRange.map((pieces) => new Set(pieces.flatMap((p) => pathOfPiece.get(p) ?? [])));
  const completed = plan.byRange.map(prefixDone);
  if (run.error)
    throw new CopyError(run.error, completed, { offloaded: run.offloaded, emulated: run.emulated });
  return {
    bytes: total,
    offloaded: run.offloaded,
    emulated: run.emulated,
    peakBufferBytes: run.budget.peak,
    ranges: ranges.map((r, i) => ({
      src: r.src,
      dst: r.dst,
      len: r.len,
      completed: completed[i]!,
      path: pathOf(paths[i]!),
    })),
  };
}

function pathOf(s: Set<'offload' | 'emulate'>): CopyPath {
  if (s.size === 0) return 'none';
  if (s.size === 2) return 'mixed';
  return s.has('offload') ? 'offload' : 'emulate';
}

/** EOPNOTSUPP with nothing copied: the device declined the request as a whole. */
function refusedBeforeCopying(err: unknown): boolean {
  if (!BlockError.is(err) || err.code !== ErrorCode.EOPNOTSUPP) return false;
  if (!CopyError.isCopyError(err)) return true;
  return err.offloaded === 0 && err.emulated === 0 && err.completed.every((n) => n === 0);
}

function fitsOneRequest(dst: BlockDevice, unit: Unit): boolean {
  const c = dst.limits.copy!;
  return unit.pieces.length <= c.maxRanges && unit.bytes <= c.maxBytes;
}

/** Bytes of a range known copied: whole pieces up to the first incomplete one, plus its prefix. */
function prefixDone(pieces: Piece[]): number {
  let n = 0;
  for (const p of pieces) {
    n += p.done;
    if (p.done < p.len) break;
  }
  return n;
}

/** The mutable state of one issueCopy call: counters, budget, first error, in-flight work. */
class CopyRun {
  readonly budget: ByteBudget;
  offloaded = 0;
  emulated = 0;
  error: BlockError | undefined;
  /** Pieces whose offload the destination refused (EOPNOTSUPP, nothing copied) and that were emulated. */
  readonly fellBack = new Set<Piece>();
  #bytesDone = 0;
  #pool: Buffer[] = [];

  constructor(
    readonly src: BlockDevice,
    readonly dst: BlockDevice,
    readonly total: number,
    budgetBytes: number,
    readonly concurrency: number,
    readonly chunk: number,
    readonly options: IssueCopyOptions,
  ) {
    this.budget = new ByteBudget(budgetBytes);
  }

  get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  #fail(err: unknown, what: string): void {
    if (!this.error) this.error = toBlockError(err, what);
  }

  /** False once an error or an abort means no new work may start. */
  #mayStart(): boolean {
    if (this.error) return false;
    if (this.signal?.aborted) {
      this.error = abortError(this.signal, `copy ${this.src.name} → ${this.dst.name}`);
      return false;
    }
    return true;
  }

  #progress(bytes: number): void {
    this.#bytesDone += bytes;
    this.options.onProgress?.({
      bytesDone: this.#bytesDone,
      bytesTotal: this.total,
      offloaded: this.offloaded,
      emulated: this.emulated,
    });
  }

  /** Runs `task(item)` for each item in order, at most `concurrency` at a time. */
  async #pipeline<T>(items: T[], task: (item: T) => Promise<void>): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    for (const item of items) {
      if (!this.#mayStart()) break;
      const p = task(item).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= this.concurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  }

  /** Groups pieces (already in issue order) into requests within maxRanges and maxBytes. */
  #batches(pieces: Piece[]): Piece[][] {
    const c = this.dst.limits.copy!;
    const out: Piece[][] = [];
    let cur: Piece[] = [];
    let bytes = 0;
    for (const p of pieces) {
      if (cur.length > 0 && (cur.length >= c.maxRanges || bytes + p.len > c.maxBytes)) {
        out.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(p);
      bytes += p.len;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  /**
   * Offloads one request. In auto mode a device may still refuse a request it cannot express
   * (e.g. an NVMe Copy whose ranges would have to run in a cycle) with EOPNOTSUPP before
   * copying anything; `fallback` then emulates the batch, as blkdev_copy_offload's callers
   * fall back to emulation in the kernel series.
   */
  async #offloadBatch(batch: Piece[], fallback: (batch: Piece[]) => Promise<void>): Promise<void> {
    const ranges = batch.map((p) => ({ src: p.src, dst: p.dst, len: p.len }));
    try {
      const r = await this.dst.copy(this.src, ranges, {
        allowEmulation: this.options.mode !== 'offload',
        signal: this.signal,
      });
      this.offloaded += r.offloaded;
      this.emulated += r.emulated;
      let bytes = 0;
      for (const p of batch) {
        p.done = p.len;
        bytes += p.len;
      }
      this.#progress(bytes);
    } catch (err) {
      if (this.options.mode !== 'offload' && refusedBeforeCopying(err)) {
        for (const p of batch) this.fellBack.add(p);
        await fallback(batch);
        return;
      }
      if (CopyError.isCopyError(err)) {
        batch.forEach((p, i) => (p.done = Math.min(p.len, err.completed[i] ?? 0)));
        this.offloaded += err.offloaded;
        this.emulated += err.emulated;
      }
      this.#fail(err, `copy ${this.src.name} → ${this.dst.name}`);
    }
  }

  offloadConcurrent(pieces: Piece[]): Promise<void> {
    // A zoned destination takes its requests one after another, so each zone sees ascending writes.
    const batches = this.#batches(pieces);
    if (this.dst.limits.zoned) return this.#sequentialBatches(batches);
    return this.#pipeline(batches, (b) => this.#offloadBatch(b, (f) => this.emulateConcurrent(f)));
  }

  async #sequentialBatches(batches: Piece[][]): Promise<void> {
    for (const b of batches) {
      if (!this.#mayStart()) return;
      await this.#offloadBatch(b, (f) => this.emulateConcurrent(f));
    }
  }

  #takeBuffer(): Buffer {
    return this.#pool.pop() ?? Buffer.allocUnsafe(this.chunk);
  }

  /**
   * Emulates pieces concurrently: each takes a chunk of the budget, reads, writes and gives
   * the chunk back. On a zoned destination a piece writes only after the previous piece of
   * the same zone has written, while reads still run ahead.
   */
  async emulateConcurrent(pieces: Piece[]): Promise<void> {
    const zoneSize = this.dst.limits.zoned?.zoneSize ?? 0;
    const lastWriteInZone = new Map<number, Promise<boolean>>();
    await this.#pipeline(pieces, async (p) => {
      const zone = zoneSize ? Math.floor(p.dst / zoneSize) : -1;
      const before = zoneSize ? lastWriteInZone.get(zone) : undefined;
      let wrote!: (ok: boolean) => void;
      if (zoneSize) lastWriteInZone.set(zone, new Promise<boolean>((r) => (wrote = r)));
      let ok = false;
      try {
        await this.budget.acquire(this.chunk, this.signal);
      } catch (err) {
        this.#fail(err, 'copy');
        wrote?.(false);
        return;
      }
      const buf = this.#takeBuffer();
      try {
        const view = buf.subarray(0, p.len);
        await this.src.read(p.src, view, { signal: this.signal });
        // A write into a zone waits for the zone's previous write; if that failed, this one
        // would land past the write pointer, so it is not issued.
        if (before && !(await before)) return;
        if (this.error) return;
        await this.dst.write(p.dst, view, { signal: this.signal });
        p.done = p.len;
        this.emulated += p.len;
        ok = true;
        this.#progress(p.len);
      } catch (err) {
        this.#fail(err, `copy ${this.src.name} → ${this.dst.name}`);
      } finally {
        wrote?.(ok);
        this.#pool.push(buf);
        this.budget.release(this.chunk);
      }
    });
  }

  /** Runs dependent units one at a time, in the plan's topological order. */
  async sequential(steps: Array<{ unit: Unit; path: 'offload' | 'emulate' }>): Promise<void> {
    for (const { unit, path } of steps) {
      if (!this.#mayStart()) return;
      // A dependent unit must read all its sources before writing: emulate it buffered.
      if (path === 'offload') await this.#offloadBatch(unit.pieces, () => this.#emulateBuffered(unit));
      else await this.#emulateBuffered(unit);
    }
  }

  /** Reads every piece of the unit, then writes them in ascending destination order. */
  async #emulateBuffered(unit: Unit): Promise<void> {
    const held = unit.bytes;
    try {
      await this.budget.acquire(held, this.signal);
    } catch (err) {
      this.#fail(err, 'copy');
      return;
    }
    try {
      const bufs: Buffer[] = [];
      for (const p of unit.pieces) {
        const b = Buffer.allocUnsafe(p.len);
        // Pieces cut at an offload limit can exceed a request's maxTransferBytes.
        await readFully(this.src, p.src, b, { signal: this.signal });
        bufs.push(b);
      }
      for (let i = 0; i < unit.pieces.length; i++) {
        const p = unit.pieces[i]!;
        await writeFully(this.dst, p.dst, bufs[i]!, { signal: this.signal });
        p.done = p.len;
        this.emulated += p.len;
        this.#progress(p.len);
      }
    } catch (err) {
      this.#fail(err, `copy ${this.src.name} → ${this.dst.name}`);
    } finally {
      this.budget.release(held);
    }
  }
}
