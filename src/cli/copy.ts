// `tsblk copy <src> [dst] --range SRC:DST:LEN ... | --ranges-file FILE`: copies ranges from one
// device to another (dst defaults to src: a copy within one device, which can offload).
//
// - Copies that fit one issueCopy call (≤ 128 MiB and ≤ 4096 ranges) use issueCopy; larger
//   ones run as a CopyJob (chunked, bounded memory). Both validate everything before moving
//   a byte, so a bad range fails without touching the destination.
// - The summary says how many bytes each path carried (offloaded / emulated), the time, the
//   throughput and the most emulation buffer held at once; --json prints it as one object.
// - On a failure part way (or Ctrl-C) it prints each range's completed prefix and the
//   remaining ranges in ranges-file format, so the copy can be resumed, and exits 1 (130 for
//   Ctrl-C). Devices are flushed and closed in every case.

import { Option, type Command } from 'commander';
import type { CopyRange } from '../block/device.js';
import { BlockError } from '../block/errors.js';
import type { CopyMode } from '../block/copy.js';
import { parseSize } from '../server/size.js';
import { runCopy, type CopyOutcome, type RangeOutcome } from './copy-run.js';
import { withDevices } from './device-args.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError, errorMessage } from './errors.js';
import { formatDuration, formatRate, formatSize, table, writeJson, type CliIo } from './output.js';
import { CopyProgressBar, progressMode } from './progress.js';
import { parseRangeArg, readRangesFile } from './ranges.js';

export interface CopyOptions {
  range?: CopyRange[];
  rangesFile?: string;
  mode: CopyMode;
  config?: string;
  json?: boolean;
  progress?: boolean;
  memoryBudget?: number;
  concurrency?: number;
}

/** Ranges listed one by one in the human summary. */
const LISTED_RANGES = 16;

function sizeArg(what: string) {
  return (text: string): number => {
    try {
      const n = parseSize(text, what);
      if (n === 0) throw new Error(`${what} must be greater than 0`);
      return n;
    } catch (err) {
      throw new UsageError(errorMessage(err));
    }
  };
}

function positiveIntArg(what: string) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text)))
      throw new UsageError(`${what} "${text}": expected a positive whole number`);
    return Number(text);
  };
}

function collectRange(text: string, previous: CopyRange[] | undefined): CopyRange[] {
  return [...(previous ?? []), parseRangeArg(text)];
}

export function registerCopy(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('copy')
    .description('copy byte ranges from one device to another, or within one (offloaded when the device can)')
    .argument(
      '<src>',
      'source device: an inline spec (ram:1G, file:PATH[,options], nvme-tcp://HOST:PORT/SUBNQN/NSID) or a name from --config',
    )
    .argument('[dst]', 'destination device (default: the source)')
    .option('-r, --range <SRC:DST:LEN>', 'a range to copy (repeatable; sizes such as 4k, 1M)', collectRange)
    .option(
      '-f, --ranges-file <file>',
      'ranges from a file: JSON [{"src","dst","len"}] or lines "SRC DST LEN"',
    )
    .addOption(
      new Option('-m, --mode <mode>', 'copy path').choices(['auto', 'offload', 'emulate']).default('auto'),
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--json', 'print one JSON object on stdout instead of the summary')
    .option('--progress', 'show a progress bar on stderr even when it is not a terminal')
    .option('--no-progress', 'never show a progress bar')
    .option(
      '--memory-budget <size>',
      'most emulation buffer the whole copy holds at once (default 64M)',
      sizeArg('--memory-budget'),
    )
    .option(
      '--concurrency <n>',
      'requests in flight at once per issueCopy call (default 8)',
      positiveIntArg('--concurrency'),
    )
    .action(async (src: string, dst: string | undefined, opts: CopyOptions) => {
      setExit(await copyCommand(src, dst, opts, io));
    });
}

/** Runs the copy command and returns the exit code. */
export async function copyCommand(
  src: string,
  dst: string | undefined,
  opts: CopyOptions,
  io: CliIo,
): Promise<number> {
  const ranges = [...(opts.range ?? []), ...(opts.rangesFile ? await readRangesFile(opts.rangesFile) : [])];
  if (ranges.length === 0)
    throw new UsageError(
      'copy: no ranges given; pass --range SRC:DST:LEN (repeatable) or --ranges-file FILE',
    );
  return withDevices(opts.config, async (set) => {
    const source = await set.open(src);
    const dest = dst === undefined ? source : await set.open(dst);
    const total = ranges.reduce((n, r) => n + r.len, 0);
    const bar = new CopyProgressBar(io.stderr, total, progressMode(opts.progress));
    const abort = new AbortController();
    let interrupted = false;
    // The first Ctrl-C stops the copy cleanly (prefixes reported, devices flushed); a second
    // one, for a copy stuck in I/O, exits at once.
    const onSigint = () => {
      if (interrupted) process.exit(EXIT_INTERRUPTED);
      interrupted = true;
      abort.abort(new Error('interrupted (Ctrl-C)'));
    };
    process.on('SIGINT', onSigint);
    try {
      const outcome = await runCopy(source, dest, ranges, {
        mode: opts.mode,
        signal: abort.signal,
        onProgress: (p) => bar.update(p),
        ...(opts.memoryBudget !== undefined ? { memoryBudget: opts.memoryBudget } : {}),
        ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
      });
      bar.stop();
      if (outcome.error === undefined) {
        if (opts.json) writeJson(io.stdout, outcomeJson(outcome, opts.mode));
        else io.stdout.write(renderOutcome(outcome, opts.mode));
        return EXIT_OK;
      }
      io.stderr.write(`tsblk: ${errorMessage(outcome.error)}\n`);
      if (opts.json) writeJson(io.stdout, outcomeJson(outcome, opts.mode));
      else io.stderr.write(renderPartial(outcome));
      return interrupted ? EXIT_INTERRUPTED : EXIT_FAILURE;
    } catch (err) {
      // Rejected before any I/O (validation): nothing to resume.
      bar.stop();
      if (opts.json)
        writeJson(io.stdout, {
          ok: false,
          source: source.name,
          destination: dest.name,
          error: errorJson(err),
        });
      throw err;
    } finally {
      process.off('SIGINT', onSigint);
    }
  });
}

function errorJson(err: unknown): { code?: string; message: string } {
  return { ...(BlockError.is(err) ? { code: err.code } : {}), message: errorMessage(err) };
}

/** The --json object, for success and for a partial failure alike. */
export function outcomeJson(o: CopyOutcome, mode: CopyMode): Record<string, unknown> {
  return {
    ok: o.error === undefined,
    source: o.source,
    destination: o.destination,
    mode,
    engine: o.engine,
    bytes: o.bytes,
    completedBytes: o.completedBytes,
    offloaded: o.offloaded,
    emulated: o.emulated,
    seconds: o.seconds,
    bytesPerSecond: o.seconds > 0 ? o.completedBytes / o.seconds : null,
    peakBufferBytes: o.peakBufferBytes,
    memoryBudget: o.memoryBudget,
    ranges: o.ranges,
    ...(o.error !== undefined ? { error: errorJson(o.error) } : {}),
  };
}

function rangeRows(ranges: readonly RangeOutcome[], withPath: boolean): string {
  const shown = ranges.slice(0, LISTED_RANGES);
  const rows = [
    ['range', 'src', 'dst', 'len', 'completed', ...(withPath ? ['path'] : [])],
    ...shown.map((r, i) => [i, r.src, r.dst, r.len, r.completed, ...(withPath ? [r.path ?? '-'] : [])]),
  ];
  const more = ranges.length > shown.length ? `\n  ... and ${ranges.length - shown.length} more ranges` : '';
  return `${table(rows, '  ')}${more}\n`;
}

export function peakBuffer(o: CopyOutcome): string {
  const budget = `budget ${formatSize(o.memoryBudget)}`;
  return o.peakBufferBytes === null
    ? `not measured (${budget})`
    : `${formatSize(o.peakBufferBytes)} (${budget})`;
}

/** The human summary of a finished copy. */
export function renderOutcome(o: CopyOutcome, mode: CopyMode): string {
  const rate = o.seconds > 0 ? o.completedBytes / o.seconds : Infinity;
  const head =
    `copied ${formatSize(o.bytes)} in ${o.ranges.length} range${o.ranges.length === 1 ? '' : 's'} ` +
    `from ${o.source} to ${o.destination} (mode ${mode}, ${o.engine})\n`;
  const summary = table(
    [
      ['bytes', o.bytes],
      ['offloaded', `${o.offloaded} (${formatSize(o.offloaded)})`],
      ['emulated', `${o.emulated} (${formatSize(o.emulated)})`],
      ['time', formatDuration(o.seconds)],
      ['throughput', formatRate(rate)],
      ['peak buffer', peakBuffer(o)],
    ],
    '  ',
  );
  return `${head}${summary}\n${rangeRows(o.ranges, true)}`;
}

/** What a failed copy did, and how to resume it (printed on stderr). */
export function renderPartial(o: CopyOutcome): string {
  let out =
    `copied ${formatSize(o.completedBytes)} of ${formatSize(o.bytes)} before the failure ` +
    `(offloaded ${formatSize(o.offloaded)}, emulated ${formatSize(o.emulated)}); completed prefix of each range:\n`;
  out += rangeRows(o.ranges, false);
  const rest = o.ranges.filter((r) => r.completed < r.len);
  if (rest.length) {
    out += 'to resume, copy the remaining ranges (ranges-file format, SRC DST LEN):\n';
    out += rest.map((r) => `${r.src + r.completed} ${r.dst + r.completed} ${r.len - r.completed}\n`).join('');
  }
  return out;
}
