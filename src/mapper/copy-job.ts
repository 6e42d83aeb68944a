// CopyJob: the kcopyd of tsblk — copies any amount of data between two devices (or within
// one) by cutting the job's ranges into chunks, each one issueCopy call, and running a few
// chunks at a time.
//
// - Chunks hold at most `chunkBytes` (default 64 MiB) and `maxRangesPerChunk` ranges (default
//   4096), taken in range order; `concurrency` chunks (default 2) run at once. `mode` and the
//   per-call tuning in `copy` pass through to issueCopy, which offloads or emulates each chunk.
// - Progress: a 'progress' event after every request issueCopy reports and after every chunk,
//   with bytes done/total, offloaded/emulated, throughput over a sliding window (bytes/s) and
//   an ETA in seconds (undefined until a rate is known).
// - Control: an AbortSignal stops the job (in-flight chunks stop at their next request);
//   pause() lets in-flight chunks finish and starts no new one until resume().
// - Partial completion and resume: for each job range the job knows the prefix copied — the
//   bytes from the range's start up to the first byte not known copied. Chunks finishing out
//   of order extend the prefix only once everything before them is done. On failure run()
//   rejects with a CopyError whose `completed` holds those prefixes. checkpoint() returns them
//   as a JSON-able object at any time; CopyJob.fromCheckpoint() starts a new job that copies
//   only what lies after each prefix. Bytes copied beyond a prefix (a later chunk that
//   finished before an earlier one failed) are copied again: only prefixes are trusted.
// - Offloaded/emulated counts and `copied` are this job's own; `resumed` is what the
//   checkpoint already had.
// - A job whose source and destination are the same device must not write any byte it reads
//   (EINVAL): chunks run concurrently and resume trusts prefixes, so memmove-style overlap is
//   issueCopy's job, within its per-call limit.

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { BlockDevice, CopyRange } from '../block/device.js';
import { BlockError, CopyError, ErrorCode, abortError, toBlockError } from '../block/errors.js';
import { DEFAULT_COPY_MAX_RANGES, issueCopy, type CopyMode, type IssueCopyOptions } from '../block/copy.js';
import { validateCopy } from '../block/copy-validate.js';
import { anySourceOverwritten } from '../block/copy-plan.js';
import { ThroughputMeter } from './throughput.js';

export const DEFAULT_JOB_CHUNK_BYTES = 64 * 1024 * 1024;
export const DEFAULT_JOB_CONCURRENCY = 2;
export const DEFAULT_JOB_THROUGHPUT_WINDOW_MS = 5000;

export interface CopyJobOptions {
  /** Passed to issueCopy: 'auto' (default), 'offload' or 'emulate'. */
  mode?: CopyMode;
  /** Most bytes per issueCopy call (default 64 MiB; rounded down to the block size). */
  chunkBytes?: number;
  /** Most ranges per issueCopy call (default 4096). */
  maxRangesPerChunk?: number;
  /** Chunks in flight at once (default 2). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Throughput window for progress (default 5000 ms). */
  throughputWindowMs?: number;
  /** Clock in milliseconds (tests pass a fake one); default performance.now. */
  now?: () => number;
  /** Per-call tuning passed to every issueCopy call. */
  copy?: Pick<IssueCopyOptions, 'memoryBudget' | 'concurrency' | 'chunkBytes'>;
  /** Bytes of each range already copied (a prefix); what fromCheckpoint passes. */
  completed?: readonly number[];
}

export interface CopyJobRange extends CopyRange {
  /** Bytes known copied from the start of the range. */
  readonly completed: number;
}

/** The state a job can be resumed from. Plain data: JSON.stringify it to keep it. */
export interface CopyJobCheckpoint {
  readonly version: 1;
  /** Names of the devices, checked on resume. */
  readonly src: string;
  readonly dst: string;
  readonly ranges: readonly CopyJobRange[];
}

export type CopyJobState = 'idle' | 'running' | 'paused' | 'done' | 'failed';

export interface CopyJobProgress {
  readonly state: CopyJobState;
  /** Bytes copied, including what a checkpoint already had and in-flight progress. */
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** This job's bytes by path. */
  readonly offloaded: number;
  readonly emulated: number;
  /** Over the throughput window. */
  readonly bytesPerSecond: number;
  /** Seconds to go at that rate; undefined until a rate is known. */
  readonly etaSeconds: number | undefined;
  readonly chunksDone: number;
  readonly chunksInFlight: number;
  readonly elapsedMs: number;
}

export interface CopyJobResult {
  /** Bytes of all ranges. */
  readonly bytes: number;
  /** Bytes this job copied. */
  readonly copied: number;
  /** Bytes the checkpoint had already copied. */
  readonly resumed: number;
  readonly offloaded: number;
  readonly emulated: number;
  readonly elapsedMs: number;
}

export interface CopyJobEvents {
  progress: [CopyJobProgress];
  pause: [];
  resume: [];
}

/** A slice of one job range. */
interface Piece {
  readonly range: number;
  readonly off: number;
  readonly len: number;
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1)
    throw new BlockError(ErrorCode.EINVAL, `copy job: option ${name} must be a positive integer, got ${v}`);
  return v;
}

export class CopyJob extends EventEmitter<CopyJobEvents> {
  readonly src: BlockDevice;
  readonly dst: BlockDevice;
  readonly ranges: readonly CopyRange[];
  readonly bytesTotal: number;
  readonly #mode: CopyMode;
  readonly #chunkBytes: number;
  readonly #maxRanges: number;
  readonly #concurrency: number;
  readonly #signal: AbortSignal | undefined;
  readonly #copy: CopyJobOptions['copy'];
  readonly #now: () => number;
  readonly #meter: ThroughputMeter;
  /** Per range: bytes known copied from its start. */
  readonly #prefix: number[];
  /** Per range: finished slices beyond the prefix, offset → length. */
  readonly #ahead: Map<number, number>[];
  readonly #resumed: number;
  #finished = 0;
  #inFlight = new Map<number, number>();
  #offloaded = 0;
  #emulated = 0;
  #chunksDone = 0;
  #state: CopyJobState = 'idle';
  #started = 0;
  #ended: number | undefined;
  #error: BlockError | undefined;
  #run: Promise<CopyJobResult> | undefined;
  #wake: (() => void) | undefined;

  constructor(
    src: BlockDevice,
    dst: BlockDevice,
    ranges: readonly CopyRange[],
    options: CopyJobOptions = {},
  ) {
    super();
    const what = `copy job ${src.name} → ${dst.name}`;
    const align = Math.max(src.limits.logicalBlockSize, dst.limits.logicalBlockSize);
    this.bytesTotal = validateCopy(src, dst, ranges, {
      maxRanges: Number.MAX_SAFE_INTEGER,
      maxTotalBytes: Number.MAX_SAFE_INTEGER,
    });
    if (src === dst && anySourceOverwritten(ranges))
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: a destination range overlaps a source range on the same device; a copy job cannot ` +
          'resume such a copy safely — use issueCopy (memmove semantics) or copy through a scratch area',
      );
    const mode = options.mode ?? 'auto';
    if (mode !== 'auto' && mode !== 'offload' && mode !== 'emulate')
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: mode must be auto, offload or emulate, got ${String(mode)}`,
      );
    const chunk = positiveInt('chunkBytes', options.chunkBytes, DEFAULT_JOB_CHUNK_BYTES);
    if (chunk < align)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: chunkBytes ${chunk} is smaller than one ${align}-byte block`,
      );
    const window = options.throughputWindowMs ?? DEFAULT_JOB_THROUGHPUT_WINDOW_MS;
    if (!(window > 0)) throw new BlockError(ErrorCode.EINVAL, `${what}: throughputWindowMs must be positive`);

    const completed = options.completed ?? ranges.map(() => 0);
    if (completed.length !== ranges.length)
      throw new BlockError(
        ErrorCode.EINVAL,
        `${what}: ${completed.length} completed counts for ${ranges.length} ranges`,
      );
    completed.forEach((c, i) => {
      const len = ranges[i]!.len;
      if (!Number.isSafeInteger(c) || c < 0 || c > len || c % align !== 0)
        throw new BlockError(
          ErrorCode.EINVAL,
          `${what}: completed ${c} of range ${i} must be a multiple of ${align} between 0 and its length ${len}`,
        );
    });

    this.src = src;
    this.dst = dst;
    this.ranges = ranges.map((r) => ({ src: r.src, dst: r.dst, len: r.len }));
    this.#mode = mode;
    this.#chunkBytes = chunk - (chunk % align);
    this.#maxRanges = positiveInt('maxRangesPerChunk', options.maxRangesPerChunk, DEFAULT_COPY_MAX_RANGES);
    this.#concurrency = positiveInt('concurrency', options.concurrency, DEFAULT_JOB_CONCURRENCY);
    this.#signal = options.signal;
    this.#copy = options.copy;
    this.#now = options.now ?? (() => performance.now());
    this.#meter = new ThroughputMeter(window);
    this.#prefix = [...completed];
    this.#ahead = ranges.map(() => new Map());
    this.#resumed = completed.reduce((s, c) => s + c, 0);
  }

  /** A job that continues from a checkpoint of an earlier job over the same devices. */
  static fromCheckpoint(
    src: BlockDevice,
    dst: BlockDevice,
    checkpoint: CopyJobCheckpoint,
    options: Omit<CopyJobOptions, 'completed'> = {},
  ): CopyJob {
    const cp = checkpoint as Partial<CopyJobCheckpoint> | null;
    if (!cp || cp.version !== 1 || !Array.isArray(cp.ranges))
      throw new BlockError(
        ErrorCode.EINVAL,
        'copy job checkpoint: not a version 1 checkpoint with a ranges list',
      );
    if (cp.src !== src.name || cp.dst !== dst.name)
      throw new BlockError(
        ErrorCode.EINVAL,
        `copy job checkpoint: taken for ${cp.src} → ${cp.dst}, not ${src.name} → ${dst.name}; resume on the same devices`,
      );
    const ranges = cp.ranges.map((r) => ({ src: r.src, dst: r.dst, len: r.len }));
    return new CopyJob(src, dst, ranges, { ...options, completed: cp.ranges.map((r) => r.completed) });
  }

  get state(): CopyJobState {
    return this.#state;
  }

  /** Per range, the bytes known copied (a prefix). */
  get completed(): number[] {
    return [...this.#prefix];
  }

  checkpoint(): CopyJobCheckpoint {
    return {
      version: 1,
      src: this.src.name,
      dst: this.dst.name,
      ranges: this.ranges.map((r, i) => ({
        src: r.src,
        dst: r.dst,
        len: r.len,
        completed: this.#prefix[i]!,
      })),
    };
  }

  progress(): CopyJobProgress {
    let inFlight = 0;
    for (const b of this.#inFlight.values()) inFlight += b;
    const bytesDone = this.#resumed + this.#finished + inFlight;
    return {
      state: this.#state,
      bytesDone,
      bytesTotal: this.bytesTotal,
      offloaded: this.#offloaded,
      emulated: this.#emulated,
      bytesPerSecond: this.#meter.bytesPerSecond,
      etaSeconds: this.#meter.etaSeconds(this.bytesTotal - bytesDone),
      chunksDone: this.#chunksDone,
      chunksInFlight: this.#inFlight.size,
      elapsedMs:
        this.#started === 0 && this.#state === 'idle' ? 0 : (this.#ended ?? this.#now()) - this.#started,
    };
  }

  /** Starts no new chunk until resume(); chunks in flight finish. */
  pause(): void {
    if (this.#state !== 'running' && this.#state !== 'idle') return;
    this.#state = 'paused';
    this.emit('pause');
  }

  resume(): void {
    if (this.#state !== 'paused') return;
    this.#state = this.#run ? 'running' : 'idle';
    this.emit('resume');
    this.#wake?.();
  }

  /** Runs the job (once; later calls return the same promise). */
  run(): Promise<CopyJobResult> {
    this.#run ??= this.#execute();
    return this.#run;
  }

  async #execute(): Promise<CopyJobResult> {
    this.#started = this.#now();
    if (this.#state === 'idle') this.#state = 'running';
    this.#meter.record(this.#started, 0);
    const what = `copy job ${this.src.name} → ${this.dst.name}`;
    const running = new Set<Promise<void>>();
    let id = 0;
    for (const chunk of this.#chunks()) {
      await this.#whilePaused();
      if (this.#error) break;
      if (this.#signal?.aborted) {
        this.#error = abortError(this.#signal, what);
        break;
      }
      const p = this.#runChunk(id++, chunk).finally(() => running.delete(p));
      running.add(p);
      if (running.size >= this.#concurrency) await Promise.race(running);
    }
    await Promise.all(running);
    this.#ended = this.#now();
    if (this.#error) {
      this.#state = 'failed';
      this.#emitProgress();
      throw new CopyError(this.#error, this.completed, {
        offloaded: this.#offloaded,
        emulated: this.#emulated,
      });
    }
    this.#state = 'done';
    this.#emitProgress();
    return {
      bytes: this.bytesTotal,
      copied: this.#finished,
      resumed: this.#resumed,
      offloaded: this.#offloaded,
      emulated: this.#emulated,
      elapsedMs: this.#ended - this.#started,
    };
  }

  /** Waits while paused; an abort ends the wait. */
  async #whilePaused(): Promise<void> {
    while (this.#state === 'paused' && !this.#signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#signal?.removeEventListener('abort', done);
          this.#wake = undefined;
          resolve();
        };
        this.#wake = done;
        this.#signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** The work after each range's prefix, cut into chunks, in range order. */
  *#chunks(): Generator<Piece[]> {
    // The prefixes as the job starts: chunks finishing later move #prefix, not this plan.
    const from = [...this.#prefix];
    let chunk: Piece[] = [];
    let bytes = 0;
    for (let i = 0; i < this.ranges.length; i++) {
      const r = this.ranges[i]!;
      for (let off = from[i]!; off < r.len;) {
        const len = Math.min(r.len - off, this.#chunkBytes - bytes);
        chunk.push({ range: i, off, len });
        bytes += len;
        off += len;
        if (bytes === this.#chunkBytes || chunk.length === this.#maxRanges) {
          yield chunk;
          chunk = [];
          bytes = 0;
        }
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  async #runChunk(id: number, pieces: Piece[]): Promise<void> {
    const ranges = pieces.map((p) => {
      const r = this.ranges[p.range]!;
      return { src: r.src + p.off, dst: r.dst + p.off, len: p.len };
    });
    this.#inFlight.set(id, 0);
    try {
      const res = await issueCopy(this.src, this.dst, ranges, {
        ...this.#copy,
        mode: this.#mode,
        ...(this.#signal ? { signal: this.#signal } : {}),
        maxRanges: this.#maxRanges,
        maxTotalBytes: this.#chunkBytes,
        onProgress: (p) => {
          this.#inFlight.set(id, p.bytesDone);
          this.#emitProgress();
        },
      });
      pieces.forEach((p) => this.#done(p.range, p.off, p.len));
      this.#offloaded += res.offloaded;
      this.#emulated += res.emulated;
    } catch (err) {
      if (CopyError.isCopyError(err)) {
        pieces.forEach((p, i) => this.#done(p.range, p.off, Math.min(p.len, err.completed[i] ?? 0)));
        this.#offloaded += err.offloaded;
        this.#emulated += err.emulated;
      }
      this.#error ??= toBlockError(err, `copy job ${this.src.name} → ${this.dst.name}`);
    } finally {
      this.#inFlight.delete(id);
      this.#chunksDone++;
      this.#emitProgress();
    }
  }

  /** Records bytes [off, off+len) of a range as copied and extends its prefix. */
  #done(range: number, off: number, len: number): void {
    if (len <= 0) return;
    this.#finished += len;
    const ahead = this.#ahead[range]!;
    ahead.set(off, len);
    let p = this.#prefix[range]!;
    for (let n = ahead.get(p); n !== undefined; n = ahead.get(p)) {
      ahead.delete(p);
      p += n;
    }
    this.#prefix[range] = p;
  }

  #emitProgress(): void {
    const before = this.progress();
    this.#meter.record(this.#now(), before.bytesDone - this.#resumed);
    this.emit('progress', this.progress());
  }
}
