// Runs a copy for the CLI through the right engine — one issueCopy call when the copy fits its
// per-call limits, a CopyJob otherwise — and turns either result (or a failure part way) into
// one CopyOutcome the copy command and the demo render.

import { performance } from 'node:perf_hooks';
import type { BlockDevice, CopyRange } from '../block/device.js';
import { CopyError, toBlockError, type BlockError } from '../block/errors.js';
import {
  DEFAULT_COPY_MAX_RANGES,
  DEFAULT_COPY_MAX_TOTAL_BYTES,
  DEFAULT_COPY_MEMORY_BUDGET,
  issueCopy,
  type CopyMode,
  type CopyPath,
} from '../block/copy.js';
import { CopyJob, DEFAULT_JOB_CONCURRENCY } from '../mapper/copy-job.js';
import type { ProgressSample } from './progress.js';

/** The smallest per-chunk buffer share worth running chunks side by side for. */
const MIN_SHARE = 4 * 1024 * 1024;

export interface RangeOutcome {
  src: number;
  dst: number;
  len: number;
  /** Bytes known copied: a prefix of the range. */
  completed: number;
  /** The path the range took; absent when the copy failed before saying. */
  path?: CopyPath;
}

export interface CopyOutcome {
  source: string;
  destination: string;
  engine: 'issueCopy' | 'copy-job';
  /** Bytes requested. */
  bytes: number;
  /** Bytes known copied (all of them on success). */
  completedBytes: number;
  offloaded: number;
  emulated: number;
  seconds: number;
  /** Most emulation buffer held at once; null when unknown (a failure, or a copy job). */
  peakBufferBytes: number | null;
  /** The emulation buffer budget of the whole copy. */
  memoryBudget: number;
  ranges: RangeOutcome[];
  /** Set when the copy failed part way; `ranges[].completed` then says how far each got. */
  error?: BlockError;
}

export interface RunCopyOptions {
  mode?: CopyMode;
  signal?: AbortSignal;
  onProgress?: (p: ProgressSample) => void;
  memoryBudget?: number;
  concurrency?: number;
}

export function totalBytes(ranges: readonly CopyRange[]): number {
  return ranges.reduce((n, r) => n + r.len, 0);
}

/** Whether a copy fits one issueCopy call; larger ones run as a copy job. */
export function fitsIssueCopy(ranges: readonly CopyRange[]): boolean {
  return ranges.length <= DEFAULT_COPY_MAX_RANGES && totalBytes(ranges) <= DEFAULT_COPY_MAX_TOTAL_BYTES;
}

/**
 * Copies `ranges` from src to dst. Resolves with the outcome, also when the copy failed part
 * way (outcome.error set); rejects only when the request was refused before any I/O.
 */
export async function runCopy(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  options: RunCopyOptions = {},
): Promise<CopyOutcome> {
  return fitsIssueCopy(ranges)
    ? viaIssueCopy(src, dst, ranges, options)
    : viaCopyJob(src, dst, ranges, options);
}

async function viaIssueCopy(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  options: RunCopyOptions,
): Promise<CopyOutcome> {
  const base = {
    source: src.name,
    destination: dst.name,
    engine: 'issueCopy' as const,
    bytes: totalBytes(ranges),
    memoryBudget: options.memoryBudget ?? DEFAULT_COPY_MEMORY_BUDGET,
  };
  const started = performance.now();
  try {
    const r = await issueCopy(src, dst, ranges, {
      ...(options.mode ? { mode: options.mode } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.memoryBudget !== undefined ? { memoryBudget: options.memoryBudget } : {}),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
      onProgress: (p) => options.onProgress?.({ bytesDone: p.bytesDone, bytesTotal: p.bytesTotal }),
    });
    return {
      ...base,
      completedBytes: r.bytes,
      offloaded: r.offloaded,
      emulated: r.emulated,
      seconds: (performance.now() - started) / 1000,
      peakBufferBytes: r.peakBufferBytes,
      ranges: r.ranges.map((x) => ({
        src: x.src,
        dst: x.dst,
        len: x.len,
        completed: x.completed,
        path: x.path,
      })),
    };
  } catch (err) {
    if (!CopyError.isCopyError(err)) throw err;
    return partial(base, ranges, err.completed, err, started, {
      offloaded: err.offloaded,
      emulated: err.emulated,
    });
  }
}

function partial(
  base: Pick<CopyOutcome, 'source' | 'destination' | 'engine' | 'bytes' | 'memoryBudget'>,
  ranges: readonly CopyRange[],
  completed: readonly number[],
  error: unknown,
  started: number,
  paths: { offloaded: number; emulated: number },
  peakBufferBytes: number | null = null,
): CopyOutcome {
  const out = ranges.map((r, i) => ({ src: r.src, dst: r.dst, len: r.len, completed: completed[i] ?? 0 }));
  return {
    ...base,
    completedBytes: out.reduce((n, r) => n + r.completed, 0),
    offloaded: paths.offloaded,
    emulated: paths.emulated,
    seconds: (performance.now() - started) / 1000,
    peakBufferBytes,
    ranges: out,
    error: toBlockError(error, `copy ${base.source} → ${base.destination}`),
  };
}

/**
 * Copies through a CopyJob. The memory budget is for the whole copy: the job runs
 * DEFAULT_JOB_CONCURRENCY chunks at once, so each chunk's issueCopy gets its share (or, when
 * a share would be under 4 MiB, one chunk at a time gets all of it).
 */
async function viaCopyJob(
  src: BlockDevice,
  dst: BlockDevice,
  ranges: readonly CopyRange[],
  options: RunCopyOptions,
): Promise<CopyOutcome> {
  const budget = options.memoryBudget ?? DEFAULT_COPY_MEMORY_BUDGET;
  const base = {
    source: src.name,
    destination: dst.name,
    engine: 'copy-job' as const,
    bytes: totalBytes(ranges),
    memoryBudget: budget,
  };
  const chunksAtOnce = budget / DEFAULT_JOB_CONCURRENCY >= MIN_SHARE ? DEFAULT_JOB_CONCURRENCY : 1;
  const started = performance.now();
  // Built before the try: a job refused at construction (bad ranges) has done nothing.
  const job = new CopyJob(src, dst, ranges, {
    ...(options.mode ? { mode: options.mode } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    concurrency: chunksAtOnce,
    copy: {
      memoryBudget: Math.floor(budget / chunksAtOnce),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    },
  });
  job.on('progress', (p) =>
    options.onProgress?.({
      bytesDone: p.bytesDone,
      bytesTotal: p.bytesTotal,
      ...(p.bytesPerSecond > 0 ? { bytesPerSecond: p.bytesPerSecond } : {}),
      ...(p.etaSeconds !== undefined ? { etaSeconds: p.etaSeconds } : {}),
    }),
  );
  try {
    const r = await job.run();
    // The job counts bytes per path for the whole copy, not per range: a range's path is
    // known only when every byte took the same one.
    const path: CopyPath | undefined =
      r.emulated === 0 ? 'offload' : r.offloaded === 0 ? 'emulate' : undefined;
    return {
      ...base,
      completedBytes: r.copied + r.resumed,
      offloaded: r.offloaded,
      emulated: r.emulated,
      seconds: r.elapsedMs / 1000,
      peakBufferBytes: null,
      ranges: ranges.map((x) => ({
        src: x.src,
        dst: x.dst,
        len: x.len,
        completed: x.len,
        ...(path ? { path } : {}),
      })),
    };
  } catch (err) {
    if (!CopyError.isCopyError(err)) throw err;
    return partial(base, ranges, err.completed, err, started, {
      offloaded: err.offloaded,
      emulated: err.emulated,
    });
  }
}
