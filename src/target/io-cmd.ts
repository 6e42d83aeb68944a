// NVM command set I/O commands over any BlockDevice (nvmet's io-cmd-bdev.c / io-cmd-file.c
// in one, since every backend speaks the BlockDevice contract).
//
// - Read / Write / Compare: SLBA + NLB must lie inside the namespace (else LBA Out of
//   Range, checked before any data moves); transfers larger than the device's
//   maxTransferBytes are split. Write honours FUA, and every write is FUA while the host has
//   the volatile write cache disabled (Set Features 06h).
// - Flush: the namespace's device flush.
// - Write Zeroes: DEAC=1 lets the device deallocate (BlockDevice.writeZeroes), DEAC=0 asks
//   for written zeroes (noUnmap); devices without write-zeroes support get zero buffers
//   written; FUA flushes afterwards.
// - Dataset Management: only Deallocate acts (IDR/IDW are hints); every range is checked
//   before any is discarded; ranges of 0 blocks are skipped; devices without discard
//   ignore it (deallocation is advisory), as nvmet does with EOPNOTSUPP.
// - Copy: copy-cmd.ts.
// - Anything else: Invalid Opcode. Read-only namespaces accept only Read, Compare and Flush
//   (Namespace Is Write Protected, DNR). BlockErrors map through nvmeErrorFromBlockError.

import { readFully, writeFully } from '../block/io.js';
import { decodeDsmCommand, decodeDsmRanges, decodeRwCommand, type RwCommand } from '../nvme/command.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { nvmeErrorFromBlockError, Status, withDnr, type NvmeIoOp } from '../nvme/status.js';
import { parseCopyCommand } from './copy-cmd.js';
import { requireNamespace } from './core.js';
import { CommandError, invalidOpcode, SqeOffset } from './errors.js';
import type { Namespace } from './namespace.js';
import type { Request } from './transport.js';

const READ_ONLY_SAFE: ReadonlySet<number> = new Set([IoOpcode.READ, IoOpcode.FLUSH, IoOpcode.COMPARE]);

/** Largest zero buffer written at once when a device cannot write zeroes by itself. */
const ZERO_CHUNK = 1024 * 1024;

export function parseIoCommand(req: Request): number {
  const ns = requireNamespace(req);
  if (ns.readOnly && !READ_ONLY_SAFE.has(req.opcode))
    throw new CommandError(withDnr(Status.NS_WRITE_PROTECTED), `namespace ${ns.nsid} is read-only`, {
      errorLoc: SqeOffset.NSID,
    });
  switch (req.opcode) {
    case IoOpcode.READ: {
      const rw = checkedRw(req, ns);
      req.handler = () => executeRead(req, ns, rw);
      return rw.blocks * ns.blockSize;
    }
    case IoOpcode.WRITE: {
      const rw = checkedRw(req, ns);
      req.handler = () => executeWrite(req, ns, rw);
      return rw.blocks * ns.blockSize;
    }
    case IoOpcode.COMPARE: {
      const rw = checkedRw(req, ns);
      req.handler = () => executeCompare(req, ns, rw);
      return rw.blocks * ns.blockSize;
    }
    case IoOpcode.FLUSH:
      req.handler = () => executeFlush(req, ns);
      return 0;
    case IoOpcode.WRITE_ZEROES: {
      const rw = checkedRw(req, ns);
      req.handler = () => executeWriteZeroes(req, ns, rw);
      return 0;
    }
    case IoOpcode.DSM: {
      const dsm = decodeDsmCommand(req.cmd);
      req.handler = () => executeDsm(req, ns, dsm.ranges, dsm.ad);
      req.dataLengthMayExceed = true;
      return dsm.ranges * 16;
    }
    case IoOpcode.COPY:
      return parseCopyCommand(req, ns);
    default:
      throw invalidOpcode(`I/O opcode 0x${req.opcode.toString(16).padStart(2, '0')} is not supported`);
  }
}

/** Decodes SLBA/NLB and checks the range lies inside the namespace. */
function checkedRw(req: Request, ns: Namespace): RwCommand {
  const rw = decodeRwCommand(req.cmd);
  checkLbaRange(ns, rw.slba, rw.blocks, SqeOffset.CDW10);
  return rw;
}

/** LBA Out of Range (DNR) unless [slba, slba + blocks) lies inside the namespace. */
export function checkLbaRange(
  ns: Namespace,
  slba: number,
  blocks: number,
  errorLoc: number,
  what = 'the command',
): void {
  if (slba + blocks > ns.blocks)
    throw new CommandError(
      withDnr(Status.LBA_RANGE),
      `${what} covers LBAs ${slba}..${slba + blocks - 1}, past the last LBA ${ns.blocks - 1} of namespace ${ns.nsid}`,
      { errorLoc, errorLba: Math.min(slba, Number.MAX_SAFE_INTEGER) },
    );
}

/** Runs a device operation, turning a BlockError into the NVMe status for `op`. */
export async function blockOp<T>(ns: Namespace, op: NvmeIoOp, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw nvmeErrorFromBlockError(err, op, { blockSize: ns.blockSize });
  }
}

async function executeRead(req: Request, ns: Namespace, rw: RwCommand): Promise<void> {
  const bs = ns.blockSize;
  const buf = Buffer.alloc(rw.blocks * bs);
  await blockOp(ns, 'read', () => readFully(ns.device, rw.slba * bs, buf));
  req.data = buf;
  ns.stats.readCommands++;
  ns.stats.bytesRead += buf.length;
}

/** FUA as the command asks, or always while the host has the write cache disabled. */
function fuaFor(req: Request, fua: boolean): boolean {
  return fua || req.queue.ctrl?.features.writeCache === false;
}

async function executeWrite(req: Request, ns: Namespace, rw: RwCommand): Promise<void> {
  const data = req.data!;
  const fua = fuaFor(req, rw.fua);
  await blockOp(ns, 'write', () => writeFully(ns.device, rw.slba * ns.blockSize, data, { fua }));
  ns.stats.writeCommands++;
  ns.stats.bytesWritten += data.length;
}

async function executeCompare(req: Request, ns: Namespace, rw: RwCommand): Promise<void> {
  const bs = ns.blockSize;
  const buf = Buffer.alloc(rw.blocks * bs);
  await blockOp(ns, 'read', () => readFully(ns.device, rw.slba * bs, buf));
  ns.stats.readCommands++;
  ns.stats.bytesRead += buf.length;
  const data = req.data!;
  if (!buf.equals(data)) {
    let i = 0;
    while (buf[i] === data[i]) i++;
    throw new CommandError(
      withDnr(Status.COMPARE_FAILED),
      `data differs at LBA ${rw.slba + Math.floor(i / bs)}`,
      {
        errorLba: rw.slba + Math.floor(i / bs),
      },
    );
  }
}

async function executeFlush(_req: Request, ns: Namespace): Promise<void> {
  await blockOp(ns, 'flush', () => ns.device.flush());
}

async function executeWriteZeroes(req: Request, ns: Namespace, rw: RwCommand): Promise<void> {
  const dev = ns.device;
  const bs = ns.blockSize;
  const start = rw.slba * bs;
  const end = start + rw.blocks * bs;
  const wz = dev.limits.writeZeroes;
  await blockOp(ns, 'write-zeroes', async () => {
    if (wz) {
      const step = wz.maxBytes - (wz.maxBytes % bs);
      for (let at = start; at < end; at += step)
        await dev.writeZeroes(at, Math.min(step, end - at), { noUnmap: !rw.deac });
    } else {
      const step = Math.min(ZERO_CHUNK, dev.limits.maxTransferBytes);
      const zeroes = Buffer.alloc(Math.min(step, end - start));
      for (let at = start; at < end; at += zeroes.length)
        await dev.write(at, zeroes.subarray(0, Math.min(zeroes.length, end - at)));
    }
    if (fuaFor(req, rw.fua)) await dev.flush();
  });
}

async function executeDsm(req: Request, ns: Namespace, count: number, deallocate: boolean): Promise<void> {
  if (!deallocate) return; // IDR / IDW are hints
  const ranges = decodeDsmRanges(req.data!, count);
  ranges.forEach((r, i) => {
    if (r.nlb > 0) checkLbaRange(ns, r.slba, r.nlb, SqeOffset.DPTR, `dataset management range ${i}`);
  });
  const dev = ns.device;
  const d = dev.limits.discard;
  if (!d) return;
  const bs = ns.blockSize;
  const step = d.maxBytes - (d.maxBytes % bs);
  await blockOp(ns, 'dsm', async () => {
    for (const r of ranges) {
      const end = (r.slba + r.nlb) * bs;
      for (let at = r.slba * bs; at < end; at += step) await dev.discard(at, Math.min(step, end - at));
    }
  });
}
