// Fabrics commands (opcode 0x7F): Connect, Property Get / Set and Disconnect
// (nvmet's fabrics-cmd.c).
//
// Connect (the only command a fresh queue accepts; its 1024-byte data is required):
// - RECFMT ≠ 0 → Connect Incompatible Format (0x80).
// - Admin queue (QID 0): CNTLID in the data must be 0xFFFF (dynamic model); the subsystem NQN
//   must name a subsystem this port exposes (else Connect Invalid Parameters, DW0 IATTR=1 +
//   IPO of SUBNQN); the host NQN must be allowed (else Connect Invalid Host 0x84, DW0 pointing
//   at HOSTNQN); a controller ID must be free (else Controller Busy 0x81). SQSIZE is 1..4095.
//   KATO (ms) starts the keep-alive timer. DW0 of the response is the CNTLID.
// - I/O queue (QID > 0): attaches to the live controller CNTLID of that subsystem whose host
//   NQN matches (else Invalid Parameters blaming CNTLID); QID ≤ the number of I/O queues
//   granted (else Invalid Parameters blaming QID); SQSIZE ≤ MQES; a QID already connected
//   gets Command Sequence Error.
// Property Get: CAP (8 bytes), VS, CC, CSTS (4 bytes); Property Set: CC (4 bytes) only;
// anything else → Invalid Field. Disconnect on an I/O queue: success, then the transport
// closes the connection; on the admin queue: Invalid Queue Type (Fabrics 0x85) — deleting the
// admin queue is done by closing the connection.

import {
  ConnectCommand,
  ConnectData,
  connectInvalidData,
  CNTLID_DYNAMIC,
  decodeConnect,
  decodeConnectData,
  decodeDisconnect,
  decodePropertyGet,
  decodePropertySet,
  encodeConnectResult,
  FabricsCommand,
  Property,
  PropertyGetCommand,
} from '../nvme/fabrics.js';
import { FABRICS_OPCODE, FabricsType } from '../nvme/opcodes.js';
import { Status, withDnr } from '../nvme/status.js';
import { connectInvalidParam, Controller } from './controller.js';
import { CommandError, invalidField, invalidOpcode, SqeOffset } from './errors.js';
import type { Request } from './transport.js';

const FCTYPE_LOC = FabricsCommand.offsetOf('fctype');

/** Parser for a queue that is not connected yet: Connect only. */
export function parseConnectCommand(req: Request): number {
  if (req.opcode !== FABRICS_OPCODE)
    throw invalidOpcode(
      `opcode 0x${req.opcode.toString(16)} on an unconnected queue: only Fabrics Connect is allowed`,
    );
  if (req.fctype !== FabricsType.CONNECT)
    throw invalidOpcode(
      `fctype 0x${req.fctype.toString(16)} on an unconnected queue: only Connect is allowed`,
      FCTYPE_LOC,
    );
  req.handler = executeConnect;
  return ConnectData.SIZE;
}

/** Parser for fabrics commands on a connected queue. */
export function parseFabricsCommand(req: Request): number {
  switch (req.fctype) {
    case FabricsType.PROPERTY_GET:
    case FabricsType.PROPERTY_SET:
      if (req.queue.qid !== 0) throw invalidOpcode('Property Get/Set are admin queue commands', FCTYPE_LOC);
      req.handler = req.fctype === FabricsType.PROPERTY_GET ? executePropertyGet : executePropertySet;
      return 0;
    case FabricsType.DISCONNECT:
      req.handler = executeDisconnect;
      return 0;
    case FabricsType.CONNECT:
      throw new CommandError(withDnr(Status.CMD_SEQ_ERROR), `${req.queue} is already connected`, {
        errorLoc: FCTYPE_LOC,
      });
    default:
      throw invalidOpcode(`fabrics command type 0x${req.fctype.toString(16)} is not supported`, FCTYPE_LOC);
  }
}

function connectError(
  status: typeof Status.CONNECT_INVALID_HOST,
  msg: string,
  dw0: number,
  errorLoc: number,
): CommandError {
  return new CommandError(withDnr(status), msg, { dw0, errorLoc, commandSet: 'fabrics' });
}

function executeConnect(req: Request): void {
  const queue = req.queue;
  const target = queue.target;
  const c = decodeConnect(req.sqe);
  const d = decodeConnectData(req.data!);
  if (c.recfmt !== 0)
    throw new CommandError(withDnr(Status.CONNECT_FORMAT), `Connect record format ${c.recfmt} is not 0`, {
      errorLoc: ConnectCommand.offsetOf('recfmt'),
      commandSet: 'fabrics',
    });
  if (queue.connected) throw new CommandError(withDnr(Status.CMD_SEQ_ERROR), `${queue} is already connected`);
  const subsys = target.subsystem(d.subnqn);
  if (!subsys || !target.exposes(queue.portid, subsys))
    throw connectError(
      Status.CONNECT_INVALID_PARAM,
      `no subsystem ${d.subnqn || '(empty NQN)'}${subsys ? ` on port ${queue.portid}` : ''}`,
      connectInvalidData('subnqn'),
      SqeOffset.DPTR,
    );
  if (d.hostnqn.length === 0)
    throw connectError(
      Status.CONNECT_INVALID_PARAM,
      'the host NQN is empty',
      connectInvalidData('hostnqn'),
      SqeOffset.DPTR,
    );

  if (c.qid === 0) {
    if (d.cntlid !== CNTLID_DYNAMIC)
      throw connectError(
        Status.CONNECT_INVALID_PARAM,
        `CNTLID 0x${d.cntlid.toString(16)}: only the dynamic controller model (0xFFFF) is supported`,
        connectInvalidData('cntlid'),
        SqeOffset.DPTR,
      );
    if (!subsys.hostAllowed(d.hostnqn))
      throw connectError(
        Status.CONNECT_INVALID_HOST,
        `host ${d.hostnqn} is not allowed to connect to ${subsys.nqn}`,
        connectInvalidData('hostnqn'),
        SqeOffset.DPTR,
      );
    const cntlid = subsys.allocateCntlid();
    if (cntlid === undefined)
      throw new CommandError(
        withDnr(Status.CONNECT_CTRL_BUSY),
        `${subsys.nqn} already has ${subsys.controllers.size} controllers (maxControllers ${subsys.maxControllers})`,
        { commandSet: 'fabrics' },
      );
    // MDTS is 4 KiB × 2^n: the largest such size within both limits.
    const limit = Math.min(target.maxDataTransferBytes, queue.ops.maxDataTransferBytes || Infinity);
    const mdtsBytes = 4096 * 2 ** Math.max(0, Math.floor(Math.log2(limit / 4096)));
    const ctrl = new Controller({
      subsystem: subsys,
      cntlid,
      hostnqn: d.hostnqn,
      hostid: d.hostid,
      kato: c.kato,
      ops: queue.ops,
      clock: target.clock,
      maxQueueSize: target.maxQueueSize,
      maxDataTransferBytes: mdtsBytes,
      portid: queue.portid,
    });
    try {
      ctrl.installQueue(queue, 0, c.sqsize, c.disableSqFlow);
    } catch (err) {
      ctrl.delete('admin queue rejected');
      throw err;
    }
    subsys.controllers.add(ctrl);
    req.dw0 = encodeConnectResult(cntlid);
    return;
  }

  const ctrl = subsys.controller(d.cntlid);
  if (!ctrl || !ctrl.live || ctrl.hostnqn !== d.hostnqn)
    throw connectError(
      Status.CONNECT_INVALID_PARAM,
      `no live controller ${d.cntlid} of ${subsys.nqn} for host ${d.hostnqn}`,
      connectInvalidData('cntlid'),
      SqeOffset.DPTR,
    );
  if (c.qid > ctrl.ioQueues)
    throw connectInvalidParam(`queue ID ${c.qid} is above the ${ctrl.ioQueues} I/O queues granted`, 'qid');
  ctrl.installQueue(queue, c.qid, c.sqsize, c.disableSqFlow);
  req.dw0 = encodeConnectResult(ctrl.cntlid);
}

const ATTRIB_LOC = PropertyGetCommand.offsetOf('attrib');
const OFST_LOC = PropertyGetCommand.offsetOf('ofst');

function executePropertyGet(req: Request): void {
  const ctrl = req.queue.ctrl!;
  const p = decodePropertyGet(req.sqe);
  if (p.size === 8) {
    if (p.ofst !== Property.CAP)
      throw invalidField(OFST_LOC, `no 8-byte property at 0x${p.ofst.toString(16)}`);
    req.dw0 = Number(ctrl.cap & 0xffffffffn);
    req.dw1 = Number(ctrl.cap >> 32n);
    return;
  }
  if (p.size !== 4)
    throw invalidField(ATTRIB_LOC, `property size attribute ${p.attrib} is not 0 (4 bytes) or 1 (8 bytes)`);
  switch (p.ofst) {
    case Property.VS:
      req.dw0 = ctrl.vs;
      return;
    case Property.CC:
      req.dw0 = ctrl.cc;
      return;
    case Property.CSTS:
      req.dw0 = ctrl.csts;
      return;
    default:
      throw invalidField(
        OFST_LOC,
        `no 4-byte property at 0x${p.ofst.toString(16)} (VS 0x8, CC 0x14, CSTS 0x1c)`,
      );
  }
}

function executePropertySet(req: Request): void {
  const ctrl = req.queue.ctrl!;
  const p = decodePropertySet(req.sqe);
  if (p.size !== 4) throw invalidField(ATTRIB_LOC, 'only 4-byte properties can be set');
  if (p.ofst !== Property.CC)
    throw invalidField(
      OFST_LOC,
      `property 0x${p.ofst.toString(16)} is read-only or absent; only CC (0x14) can be set`,
    );
  ctrl.setCc(Number(p.value! & 0xffffffffn));
}

function executeDisconnect(req: Request): void {
  const d = decodeDisconnect(req.sqe);
  if (d.recfmt !== 0)
    throw new CommandError(withDnr(Status.CONNECT_FORMAT), `Disconnect record format ${d.recfmt} is not 0`, {
      errorLoc: SqeOffset.CDW10,
      commandSet: 'fabrics',
    });
  if (req.queue.qid === 0)
    throw new CommandError(
      withDnr(Status.DISCONNECT_INVALID_QTYPE),
      'Disconnect deletes I/O queues; close the admin queue connection to end the association',
      { errorLoc: FCTYPE_LOC, commandSet: 'fabrics' },
    );
  req.disconnectAfterResponse = true;
}
