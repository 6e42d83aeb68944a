// The Copy command (I/O opcode 0x19): source range descriptor formats 0–3, checked in the
// order QEMU's nvme_copy checks them, executed through issueCopy.
//
// Before any data moves (parse, on the SQE alone):
//   1. DF not in OCFS, or DF 2/3 not enabled by Host Behavior Support CDFE → Invalid Field.
//   2. NR + 1 > MSRC + 1 → Command Size Limit Exceeded (SCT 1, 0x83).
//   3. DF 1 or 3 (descriptors for 32/64-bit guard protection information) on a namespace
//      without such PI — every tsblk namespace → Invalid Field. (QEMU answers Invalid Format
//      0x10A here; the spec's Invalid Field is what we return.)
//   4. The data must be (NR + 1) × 32 bytes (formats 0/2) or × 40 (1/3): the core answers
//      Data SGL Length Invalid otherwise.
// Then, on the descriptors, before anything is copied (QEMU checks ranges while it copies;
// tsblk refuses the whole command up front, so a rejected Copy never changes a block):
//   5. Σ (NLB + 1) > MCL → Command Size Limit Exceeded.
//   6. Per range, in order: formats 2/3 with SNSID ≠ NSID: SNSID 0, FFFFFFFFh or not an
//      active namespace of the subsystem → Invalid Namespace or Format; a different LBA size
//      → Incompatible Namespace or Format (0x85). NLB + 1 > MSSRL of the source namespace →
//      Command Size Limit Exceeded. Source past the end → LBA Out of Range. Destination
//      (SDLBA + blocks so far) past the end → LBA Out of Range. SOPT.FCO set but the range
//      cannot be offloaded → Fast Copy Not Possible (0x86).
// A read-only destination was refused before parsing (Namespace Is Write Protected).
//
// Execution: ranges are grouped by source namespace (in order of first appearance) and
// each group is one issueCopy call, so ranges of one namespace offload when the devices can
// copy together (same device, or dst.canCopyFrom(src)) and are emulated otherwise.
// Overlapping source and destination ranges behave like memmove (issueCopy reads every
// source of the call before writing any destination it overlaps); Overlapping I/O Range
// (0x87) is never returned. FUA (or a disabled volatile write cache) flushes the destination
// after the copy. On a failure part way, DW0 = the number of whole source ranges copied
// counting from range 0, and the status comes from the failing range's error (a read error
// → Unrecovered Read Error, any other I/O error → Write Fault).

import { DEFAULT_COPY_MEMORY_BUDGET, issueCopy } from '../block/copy.js';
import type { CopyRange } from '../block/device.js';
import { BlockError, CopyError, ErrorCode } from '../block/errors.js';
import { copyOffloadEnabled } from '../block/limits.js';
import {
  COPY_CDW12_OFFSET,
  CopySopt,
  decodeCopyCommand,
  decodeCopySourceRanges,
  type CopyCommand,
  type CopySourceRange,
} from '../nvme/copy.js';
import { nvmeErrorFromBlockError, Status, withDnr } from '../nvme/status.js';
import { enabledCopyFormats } from './admin-cmd.js';
import { CommandError, invalidField, invalidNamespace, SqeOffset } from './errors.js';
import { checkLbaRange } from './io-cmd.js';
import type { Namespace } from './namespace.js';
import type { Request } from './transport.js';

/** Largest emulation buffer one Copy may hold for ranges that overwrite each other's sources. */
const MAX_COPY_BUFFER = 256 * 1024 * 1024;

function sizeLimit(detail: string, errorLoc = COPY_CDW12_OFFSET): CommandError {
  return new CommandError(withDnr(Status.CMD_SIZE_LIMIT_EXCEEDED), detail, { errorLoc });
}

export function parseCopyCommand(req: Request, ns: Namespace): number {
  const ctrl = req.queue.ctrl!;
  const c = decodeCopyCommand(req.cmd);
  const ocfs = ctrl.subsystem.copyFormats;
  if (c.format > 3 || (ocfs & (1 << c.format)) === 0)
    throw invalidField(
      COPY_CDW12_OFFSET,
      `copy descriptor format ${c.format} is not supported (OCFS 0x${ocfs.toString(16)})`,
    );
  if ((c.format === 2 || c.format === 3) && (enabledCopyFormats(ctrl) & (1 << c.format)) === 0)
    throw invalidField(
      COPY_CDW12_OFFSET,
      `copy descriptor format ${c.format} (cross-namespace) is not enabled: set CDFE bit ${c.format} with Set Features Host Behavior Support`,
    );
  const maxRanges = ns.copyLimits.msrc + 1;
  if (c.ranges > maxRanges)
    throw sizeLimit(`${c.ranges} source ranges exceed MSRC: at most ${maxRanges} per Copy`);
  if (c.format === 1 || c.format === 3)
    throw invalidField(
      COPY_CDW12_OFFSET,
      `copy descriptor format ${c.format} is for 32/64-bit guard protection information; namespace ${ns.nsid} has no protection information (use format ${c.format - 1})`,
    );
  req.handler = () => executeCopy(req, ns, c);
  return c.dataLength!;
}

interface PlannedRange {
  readonly index: number;
  readonly src: Namespace;
  readonly range: CopyRange;
}

/** Step 5 and 6: every check on the descriptors, before anything is copied. */
function planCopy(req: Request, dst: Namespace, c: CopyCommand, descs: CopySourceRange[]): PlannedRange[] {
  const subsys = req.queue.ctrl!.subsystem;
  const total = descs.reduce((n, d) => n + d.blocks, 0);
  if (total > dst.copyLimits.mcl)
    throw sizeLimit(
      `${total} blocks in all ranges exceed MCL ${dst.copyLimits.mcl} of namespace ${dst.nsid}`,
    );
  const bs = dst.blockSize;
  const out: PlannedRange[] = [];
  let dlba = c.sdlba;
  descs.forEach((d, i) => {
    const at = `source range ${i}`;
    let src = dst;
    if (d.snsid !== undefined && d.snsid !== dst.nsid) {
      const found = d.snsid === 0 || d.snsid === 0xffffffff ? undefined : subsys.namespace(d.snsid);
      if (!found)
        throw invalidNamespace(
          `${at}: source namespace ${d.snsid} is not an active namespace of ${subsys.nqn}`,
          SqeOffset.DPTR,
        );
      if (found.blockSize !== bs)
        throw new CommandError(
          withDnr(Status.INCOMPATIBLE_NS),
          `${at}: namespace ${found.nsid} has ${found.blockSize}-byte blocks, namespace ${dst.nsid} ${bs}-byte blocks`,
          { errorLoc: SqeOffset.DPTR },
        );
      src = found;
    }
    if (d.blocks > src.copyLimits.mssrl)
      throw sizeLimit(
        `${at}: ${d.blocks} blocks exceed MSSRL ${src.copyLimits.mssrl} of namespace ${src.nsid}`,
        SqeOffset.DPTR,
      );
    checkLbaRange(src, d.slba, d.blocks, SqeOffset.DPTR, `${at} (namespace ${src.nsid})`);
    checkLbaRange(dst, dlba, d.blocks, SqeOffset.CDW10, `the destination of ${at}`);
    if (d.sopt !== undefined && (d.sopt & CopySopt.FCO) !== 0 && !canOffload(src, dst))
      throw new CommandError(
        withDnr(Status.FAST_COPY_NOT_POSSIBLE),
        `${at}: Fast Copy Only, but namespace ${src.nsid} → ${dst.nsid} can only be emulated`,
        { errorLoc: SqeOffset.DPTR },
      );
    out.push({ index: i, src, range: { src: d.slba * bs, dst: dlba * bs, len: d.blocks * bs } });
    dlba += d.blocks;
  });
  return out;
}

function canOffload(src: Namespace, dst: Namespace): boolean {
  return copyOffloadEnabled(dst.device.limits) && dst.device.canCopyFrom(src.device);
}

/** Ranges grouped by source namespace, groups in order of first appearance. */
function groupBySource(plan: PlannedRange[]): PlannedRange[][] {
  const groups = new Map<Namespace, PlannedRange[]>();
  for (const p of plan) {
    const g = groups.get(p.src);
    if (g) g.push(p);
    else groups.set(p.src, [p]);
  }
  return [...groups.values()];
}

/** Which side of the copy failed, for the status: reads are named "read on <device>". */
function failedOnRead(err: unknown): boolean {
  return BlockError.is(err) && /^(?:[A-Z0-9]+: )?read on /.test(err.message);
}

async function executeCopy(req: Request, dst: Namespace, c: CopyCommand): Promise<void> {
  const descs = decodeCopySourceRanges(req.data!, c.format, c.ranges);
  const plan = planCopy(req, dst, c, descs);
  const done = new Array<boolean>(plan.length).fill(false);
  let offloaded = 0;
  let emulated = 0;
  let failure: unknown;
  for (const group of groupBySource(plan)) {
    const ranges = group.map((p) => p.range);
    const bytes = ranges.reduce((n, r) => n + r.len, 0);
    const src = group[0]!.src;
    try {
      const r = await issueCopy(src.device, dst.device, ranges, {
        maxRanges: ranges.length,
        maxTotalBytes: bytes,
        memoryBudget: Math.max(DEFAULT_COPY_MEMORY_BUDGET, Math.min(bytes, MAX_COPY_BUFFER)),
      });
      offloaded += r.offloaded;
      emulated += r.emulated;
      for (const p of group) done[p.index] = true;
    } catch (err) {
      if (CopyError.isCopyError(err)) {
        group.forEach((p, i) => (done[p.index] = err.completed[i] === p.range.len));
        offloaded += err.offloaded;
        emulated += err.emulated;
      }
      failure = err;
      break;
    }
  }
  const stats = dst.stats;
  stats.copyBytesOffloaded += offloaded;
  stats.copyBytesEmulated += emulated;
  if (failure !== undefined) {
    stats.copyFailures++;
    let copied = 0;
    while (copied < done.length && done[copied]) copied++;
    if (BlockError.is(failure) && failure.code === ErrorCode.ENOMEM)
      throw new CommandError(withDnr(Status.INSUFFICIENT_RESOURCES), failure.message, { dw0: copied });
    const e = nvmeErrorFromBlockError(failure, failedOnRead(failure) ? 'copy-read' : 'copy', {
      blockSize: dst.blockSize,
    });
    throw new CommandError(e.status, `${copied} of ${plan.length} source ranges copied: ${e.message}`, {
      dw0: copied,
      ...(e.errorLoc === undefined ? {} : { errorLoc: e.errorLoc }),
      ...(e.errorLba === undefined ? {} : { errorLba: e.errorLba }),
      cause: failure,
    });
  }
  if (c.fua || req.queue.ctrl?.features.writeCache === false) {
    try {
      await dst.device.flush();
    } catch (err) {
      throw nvmeErrorFromBlockError(err, 'flush', { blockSize: dst.blockSize });
    }
  }
  const bytes = plan.reduce((n, p) => n + p.range.len, 0);
  stats.copies++;
  stats.copyRanges += plan.length;
  stats.writeCommands++;
  stats.bytesWritten += bytes;
}
