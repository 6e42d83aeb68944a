// The target core: turns a 64-byte SQE from any transport into a Request that is either
// ready to execute or already completed with an error (nvmet_req_init / nvmet_req_complete).
//
// initRequest, in this order (each failure completes the request at once, DNR set):
//   1. FUSE ≠ 0 → Invalid Field (no fused commands); PSDT ≠ 01b → Invalid Field (fabrics
//      commands describe data with SGLs, MPTR a contiguous buffer).
//   2. More commands outstanding than the queue holds → Command Sequence Error.
//   3. The data pointer: length 0 means no data; otherwise an in-capsule Data Block/Offset
//      descriptor (host→controller only, within the queue's in-capsule size: else SGL
//      Descriptor Type Invalid / Invalid SGL Offset) or a Transport Data Block descriptor
//      (subtype A); any other descriptor → SGL Descriptor Type Invalid.
//   4. Queue not connected → only Fabrics Connect (else Invalid Opcode).
//   5. Length above MDTS → Invalid Field.
//   6. Parse by queue type: fabrics commands (any queue), the discovery controller's admin
//      set, the admin set (controller must be enabled and ready, else Command Sequence
//      Error), or I/O commands (enabled and ready; namespace must be active, else Invalid
//      Namespace or Format; writes to a read-only namespace → Namespace Is Write Protected).
//      Each parser picks the handler and says how many data bytes the command moves.
//   7. SGL length ≠ what the command moves → Data SGL Length Invalid.
// Completion (finish): SQ head advanced, failures with an error location go to the
// controller's error log (and get the More bit), then ops.queueResponse unless the
// transport already destroyed the queue.

import { decodeSqe, decodeSqeFlags } from '../nvme/command.js';
import { dataTransfer, DataTransfer, FABRICS_OPCODE } from '../nvme/opcodes.js';
import { decodeSgl, SglDescriptorType, SglIdentifier, SglSubtype } from '../nvme/sgl.js';
import { nvmeStatus, Status, withDnr } from '../nvme/status.js';
import { parseAdminCommand } from './admin-cmd.js';
import { parseDiscoveryCommand } from './discovery.js';
import { CommandError, invalidField, invalidNamespace, sequenceError, SqeOffset } from './errors.js';
import { parseConnectCommand, parseFabricsCommand } from './fabrics-cmd.js';
import { parseIoCommand } from './io-cmd.js';
import type { Queue } from './queue.js';
import { Request } from './transport.js';

/** A parser sets req.handler (and req.ns for I/O) and returns the data bytes the command moves. */
export type Parser = (req: Request) => number;

/**
 * Starts a command submitted on `queue`. Returns the Request: either ready (fill req.data
 * for host→controller data, then req.execute()) or already completed with an error, in
 * which case ops.queueResponse has been called.
 */
export function initRequest(queue: Queue, sqe: Uint8Array): Request {
  if (sqe.byteLength < 64) throw new RangeError(`an SQE is 64 bytes, got ${sqe.byteLength}`);
  const raw = Buffer.from(sqe.subarray(0, 64));
  const req = new Request(queue, raw, decodeSqe(raw), finish);
  queue.outstanding++;
  queue.track(req);
  try {
    parse(req);
  } catch (err) {
    req.fail(err);
    req.complete();
  }
  return req;
}

function finish(req: Request): void {
  const queue = req.queue;
  queue.untrack(req);
  queue.outstanding = Math.max(0, queue.outstanding - 1);
  req.sqhd = queue.nextSqhd();
  if (!req.succeeded && req.errorLoc !== undefined && queue.ctrl) {
    queue.ctrl.recordError(req);
    // The More bit says the error log has an entry for this command (as nvmet sets it).
    req.status = nvmeStatus(req.status.sct, req.status.sc, {
      dnr: req.status.dnr,
      more: true,
      crd: req.status.crd,
    });
  }
  if (!queue.closed) queue.ops.queueResponse(req);
}

function parse(req: Request): void {
  const { queue, cmd } = req;
  if (queue.closed) throw new CommandError(withDnr(Status.ABORT_QUEUE), 'the queue is closed');
  const flags = decodeSqeFlags(cmd.flags);
  if (flags.fuse !== 0) throw invalidField(SqeOffset.FLAGS, 'fused commands are not supported');
  if (flags.psdt !== 1)
    throw invalidField(SqeOffset.FLAGS, `PSDT ${flags.psdt}: fabrics commands must use SGLs (PSDT 01b)`);
  if (queue.size > 0 && queue.outstanding > queue.size)
    throw sequenceError(
      `${queue}: ${queue.outstanding} commands outstanding on a queue of ${queue.size} entries`,
    );

  setDataPointer(req);
  queue.ctrl?.noteTraffic();

  let expected: number;
  if (!queue.connected) {
    expected = parseConnectCommand(req);
  } else {
    const ctrl = queue.ctrl!;
    if (!ctrl.live) throw new CommandError(withDnr(Status.ABORT_QUEUE), `${ctrl} is being deleted`);
    if (req.length > ctrl.maxDataTransferBytes)
      throw invalidField(
        SqeOffset.DPTR,
        `${req.length} bytes exceed the maximum data transfer size (MDTS) of ${ctrl.maxDataTransferBytes}`,
      );
    if (req.opcode === FABRICS_OPCODE) expected = parseFabricsCommand(req);
    else if (queue.qid === 0 && ctrl.subsystem.isDiscovery) expected = parseDiscoveryCommand(req);
    else {
      if (!ctrl.enabled || !ctrl.ready)
        throw sequenceError(
          `${ctrl} is not enabled (CC.EN ${ctrl.enabled ? 1 : 0}, CSTS.RDY ${ctrl.ready ? 1 : 0})`,
        );
      expected = queue.qid === 0 ? parseAdminCommand(req) : parseIoCommand(req);
    }
  }
  if (req.length !== expected && !(req.dataLengthMayExceed && req.length > expected))
    throw new CommandError(
      withDnr(Status.SGL_INVALID_DATA),
      `the data pointer describes ${req.length} bytes; the command moves ${expected}`,
      { errorLoc: SqeOffset.DPTR },
    );
  if (expected === 0) req.direction = 'none';
}

/** Direction and SGL checks (step 3). */
function setDataPointer(req: Request): void {
  const dir = dataTransfer(req.opcode, req.fctype);
  req.direction =
    dir === DataTransfer.HOST_TO_CTRL
      ? 'host-to-controller'
      : dir === DataTransfer.CTRL_TO_HOST
        ? 'controller-to-host'
        : 'none';
  const sgl = decodeSgl(req.cmd.dptr);
  req.sgl = sgl;
  req.length = sgl.length;
  if (sgl.length === 0) return;
  const typeLoc = SqeOffset.DPTR + 15;
  if (sgl.type === SglIdentifier.INCAPSULE) {
    if (req.direction !== 'host-to-controller')
      throw new CommandError(
        withDnr(Status.SGL_INVALID_TYPE),
        'in-capsule data is for host-to-controller commands only',
        {
          errorLoc: typeLoc,
        },
      );
    const offset = Number(sgl.addr);
    const room = inlineRoom(req);
    if (sgl.addr > BigInt(Number.MAX_SAFE_INTEGER) || offset + sgl.length > room)
      throw new CommandError(
        withDnr(Status.SGL_INVALID_OFFSET),
        `in-capsule data of ${sgl.length} bytes at offset ${sgl.addr} does not fit the ${room}-byte capsule data area`,
        { errorLoc: SqeOffset.DPTR },
      );
    req.inCapsule = true;
    req.inCapsuleOffset = offset;
    return;
  }
  if (sgl.descriptorType === SglDescriptorType.TRANSPORT_DATA_BLOCK && sgl.subtype === SglSubtype.TRANSPORT_A)
    return;
  throw new CommandError(
    withDnr(Status.SGL_INVALID_TYPE),
    `SGL descriptor 0x${sgl.type.toString(16).padStart(2, '0')} is not supported (in-capsule 0x01 or transport 0x5a)`,
    { errorLoc: typeLoc },
  );
}

/** In-capsule bytes allowed: the queue's size; a Connect (queue not yet bound) may carry its 1024 bytes. */
function inlineRoom(req: Request): number {
  const q = req.queue;
  if (!q.connected) return Math.max(1024, q.ops.adminInlineDataSize ?? q.ops.inlineDataSize);
  return q.inlineDataSize;
}

/** Finds the active namespace of an I/O command and holds it until completion. */
export function requireNamespace(req: Request): NonNullable<Request['ns']> {
  const ctrl = req.queue.ctrl!;
  const nsid = req.cmd.nsid;
  const ns = ctrl.subsystem.namespace(nsid);
  if (!ns) throw invalidNamespace(`namespace ${nsid} is not an active namespace of ${ctrl.subsystem.nqn}`);
  req.ns = ns;
  req.releaseNs = ns.enter();
  return ns;
}
