// BlockDevice copy ranges → NVMe Copy commands, and running them.
//
// A BlockDevice.copy request already fits limits.copy (issueCopy split it), but one NVMe
// Copy writes all its source ranges to consecutive blocks from one SDLBA. So:
//
// - Grouping: ranges are taken in destination order; a range joins the current command
//   when its destination starts where the command's ends, the command stays within MSRC + 1
//   ranges and MCL blocks, every range within MSSRL, and (same namespace) the range's source
//   does not overlap what the command's earlier ranges write. That last rule keeps a
//   command correct on controllers that process ranges one after another (QEMU's
//   nvme_do_copy reads and writes range 0, then range 1, ...) as well as on those that
//   read every source first (tsblk's target): a range never reads blocks an earlier range
//   of its own command wrote. A range overlapping its own destination is fine (every
//   controller reads a range before writing it).
// - Ordering (same namespace): the contract wants every source read before any destination
//   is written. Command A must run before command B when A reads blocks B writes; commands
//   run one at a time in such an order. When the dependencies form a cycle no order exists:
//   the request is refused with EOPNOTSUPP before anything is sent. Independent commands run
//   concurrently.
// - A command whose sources overlap its own destination is not idempotent: it is sent with
//   retryable false, so a connection loss fails it instead of running it twice.
// - A failed Copy reports in DW0 the number of source ranges completed, counted from range
//   0 (the spec's "lowest numbered Source Range not copied"; tsblk's target, QEMU). The
//   CopyError gives those ranges whole and every other range of that command 0; ranges of
//   commands that succeeded are whole, of commands not run 0.

import type { CopyPathBytes, CopyRange } from '../block/device.js';
import { BlockError, CopyError, ErrorCode, abortError } from '../block/errors.js';
import { overlaps } from '../block/checks.js';
import { stronglyConnectedComponents } from '../block/copy-plan.js';
import { encodeCopyCommand, encodeCopySourceRanges, COPY_MAX_RANGES } from '../nvme/copy.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { blockErrorFromStatus, isSuccess } from '../nvme/status.js';
import { MAX_BLOCKS_PER_COMMAND } from './namespace-limits.js';
import type { HostCommand, HostCompletion } from './types.js';

/** One source range of a planned command. */
export interface PlannedCopyRange {
  /** Index in the caller's range list. */
  readonly index: number;
  readonly range: CopyRange;
}

/** One NVMe Copy command: ranges in descriptor order, destinations consecutive from dst. */
export interface CopyCommandPlan {
  /** Destination byte offset (SDLBA × block size). */
  readonly dst: number;
  readonly bytes: number;
  readonly ranges: readonly PlannedCopyRange[];
  /** False when a source overlaps the command's own destination. */
  readonly retryable: boolean;
}

export interface CopySchedule {
  /** Commands in the order to send them. */
  readonly commands: readonly CopyCommandPlan[];
  /** True when some command must wait for another: send one at a time, in order. */
  readonly sequential: boolean;
}

export interface CopyCommandLimits {
  readonly blockSize: number;
  /** MSRC + 1. */
  readonly maxRanges: number;
  /** MCL in bytes. */
  readonly maxBytes: number;
  /** MSSRL in bytes. */
  readonly maxRangeBytes: number;
}

interface Group {
  dst: number;
  bytes: number;
  ranges: PlannedCopyRange[];
}

/**
 * Groups `ranges` into Copy commands and orders them (rules at the top of this file).
 * `sameNamespace` is true when the source is the destination namespace. Throws BlockError
 * E2BIG for a range beyond MSSRL and EOPNOTSUPP for dependencies no order satisfies.
 */
export function planCopyCommands(
  ranges: readonly CopyRange[],
  limits: CopyCommandLimits,
  sameNamespace: boolean,
  what: string,
): CopySchedule {
  const maxRanges = Math.min(limits.maxRanges, COPY_MAX_RANGES);
  const maxRangeBytes = Math.min(limits.maxRangeBytes, MAX_BLOCKS_PER_COMMAND * limits.blockSize);
  const order = ranges.map((_, i) => i).sort((a, b) => ranges[a]!.dst - ranges[b]!.dst || a - b);
  const groups: Group[] = [];
  let cur: Group | undefined;
  for (const index of order) {
    const r = ranges[index]!;
    if (r.len > maxRangeBytes)
      throw new BlockError(
        ErrorCode.E2BIG,
        `${what}: range ${index} of ${r.len} bytes exceeds the namespace's largest source range (${maxRangeBytes} bytes)`,
      );
    const joins =
      cur !== undefined &&
      cur.dst + cur.bytes === r.dst &&
      cur.ranges.length < maxRanges &&
      cur.bytes + r.len <= limits.maxBytes &&
      !(sameNamespace && overlaps(r.src, r.len, cur.dst, cur.bytes));
    if (joins) {
      cur!.ranges.push({ index, range: r });
      cur!.bytes += r.len;
    } else {
      cur = { dst: r.dst, bytes: r.len, ranges: [{ index, range: r }] };
      groups.push(cur);
    }
  }
  const commands = groups.map((g): CopyCommandPlan => ({
    dst: g.dst,
    bytes: g.bytes,
    ranges: g.ranges,
    retryable: !sameNamespace || !g.ranges.some((p) => overlaps(p.range.src, p.range.len, g.dst, g.bytes)),
  }));
  if (!sameNamespace || commands.length === 1) return { commands, sequential: false };
  return orderCommands(commands, what);
}

/** Readers before writers; EOPNOTSUPP when the commands depend on each other in a cycle. */
function orderCommands(commands: CopyCommandPlan[], what: string): CopySchedule {
  const n = commands.length;
  // edges[a] holds b when a reads blocks b writes, so a must run first.
  const edges: number[][] = Array.from({ length: n }, () => []);
  let dependent = false;
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      if (a === b) continue;
      const w = commands[b]!;
      if (commands[a]!.ranges.some((p) => overlaps(p.range.src, p.range.len, w.dst, w.bytes))) {
        edges[a]!.push(b);
        dependent = true;
      }
    }
  }
  if (!dependent) return { commands, sequential: false };
  const comp = stronglyConnectedComponents(edges);
  const sizes = new Map<number, number[]>();
  comp.forEach((c, i) => sizes.set(c, [...(sizes.get(c) ?? []), i]));
  const cycle = [...sizes.values()].find((members) => members.length > 1);
  if (cycle)
    throw new BlockError(
      ErrorCode.EOPNOTSUPP,
      `${what}: ranges ${cycle
        .flatMap((c) => commands[c]!.ranges.map((p) => p.index))
        .sort((x, y) => x - y)
        .join(', ')} overwrite each other's sources across ${cycle.length} Copy commands ` +
        `(one command cannot hold them: their destinations are apart, or a range would read what an ` +
        `earlier range of the command wrote), so no command order reads every source first; ` +
        `nothing was sent — copy them with emulation (issueCopy mode 'emulate') or in separate calls`,
    );
  // Kahn's algorithm, taking the lowest-numbered ready command (ascending destinations where
  // the dependencies allow).
  const indeg = new Array<number>(n).fill(0);
  for (const outs of edges) for (const b of outs) indeg[b]!++;
  const done = new Array<boolean>(n).fill(false);
  const out: CopyCommandPlan[] = [];
  while (out.length < n) {
    const next = indeg.findIndex((d, i) => d === 0 && !done[i]);
    done[next] = true;
    out.push(commands[next]!);
    for (const b of edges[next]!) indeg[b]!--;
  }
  return { commands: out, sequential: true };
}

export interface CopyCommandTarget {
  /** Destination namespace. */
  readonly nsid: number;
  /** Descriptor format: 0/1 within a namespace, 2/3 (with SNSID) across namespaces. */
  readonly format: number;
  /** Source namespace, for formats 2 and 3. */
  readonly snsid?: number;
  readonly blockSize: number;
}

/** The HostCommand of one planned Copy. */
export function copyHostCommand(
  plan: CopyCommandPlan,
  target: CopyCommandTarget,
  signal?: AbortSignal,
): HostCommand {
  const bs = target.blockSize;
  const cross = target.format === 2 || target.format === 3;
  const data = encodeCopySourceRanges(
    plan.ranges.map((p) => ({
      slba: p.range.src / bs,
      blocks: p.range.len / bs,
      ...(cross ? { snsid: target.snsid } : {}),
    })),
    target.format,
  );
  return {
    sqe: {
      opcode: IoOpcode.COPY,
      nsid: target.nsid,
      ...encodeCopyCommand({ sdlba: plan.dst / bs, ranges: plan.ranges.length, format: target.format }),
    },
    data,
    retryable: plan.retryable,
    ...(signal ? { signal } : {}),
  };
}

/** Per-command result: the completion, or the BlockError a transport failure became. */
type Outcome = { completion: HostCompletion } | { error: BlockError } | undefined;

/**
 * Sends the schedule's commands through `send` (which resolves with the completion of any
 * status and rejects only with a BlockError) and returns the bytes copied, or throws a
 * CopyError with per-range completed prefixes of the caller's `ranges`.
 */
export async function runCopyCommands(
  schedule: CopySchedule,
  ranges: readonly CopyRange[],
  target: CopyCommandTarget,
  send: (command: HostCommand) => Promise<HostCompletion>,
  what: string,
  signal?: AbortSignal,
): Promise<CopyPathBytes> {
  const outcomes: Outcome[] = new Array(schedule.commands.length).fill(undefined);
  const runOne = async (i: number) => {
    try {
      outcomes[i] = { completion: await send(copyHostCommand(schedule.commands[i]!, target, signal)) };
    } catch (err) {
      outcomes[i] = {
        error: BlockError.is(err) ? err : new BlockError(ErrorCode.EIO, `${what}: ${String(err)}`),
      };
    }
  };
  let aborted: BlockError | undefined;
  if (schedule.sequential) {
    for (let i = 0; i < schedule.commands.length; i++) {
      if (signal?.aborted) {
        aborted = abortError(signal, what);
        break;
      }
      await runOne(i);
      const o = outcomes[i]!;
      if ('error' in o || !isSuccess(o.completion.status)) break;
    }
  } else {
    await Promise.all(schedule.commands.map((_, i) => runOne(i)));
  }

  const completed = ranges.map(() => 0);
  let failure: BlockError | undefined;
  schedule.commands.forEach((plan, i) => {
    const o = outcomes[i];
    if (o === undefined) return;
    if ('error' in o) {
      failure ??= o.error;
      return;
    }
    const { status, dw0 } = o.completion;
    const whole = isSuccess(status) ? plan.ranges.length : Math.min(dw0 >>> 0, plan.ranges.length);
    let failedAt = plan.dst;
    for (let k = 0; k < whole; k++) {
      const p = plan.ranges[k]!;
      completed[p.index] = p.range.len;
      failedAt += p.range.len;
    }
    if (!isSuccess(status))
      failure ??= blockErrorFromStatus(
        status,
        `${what}: Copy to block ${plan.dst / target.blockSize} (${plan.ranges.length} ranges, ${whole} completed)`,
        { offset: failedAt },
      );
  });
  failure ??= aborted;
  const offloaded = completed.reduce((s, n) => s + n, 0);
  if (failure) throw new CopyError(failure, completed, { offloaded, emulated: 0 });
  return { offloaded, emulated: 0 };
}
