// Admin commands of an I/O controller (nvmet's admin-cmd.c): Identify, Get Log Page,
// Get/Set Features, Asynchronous Event Request, Keep Alive and Abort. Queue creation and
// deletion are PCIe-only (Invalid Opcode here, as nvmet for fabrics controllers).
//
// Identify: CNS 00h namespace (all zeroes for an inactive NSID, Invalid Namespace for
// FFFFFFFFh), 01h controller, 02h active namespace list, 03h namespace identification
// descriptors (EUI-64, NGUID, UUID, CSI), 05h/06h/07h with CSI NVM (NVM namespace and
// controller structures, zero as nvmet; CSI-specific active list), 08h command-set
// independent namespace, 1Ch I/O command set combinations (NVM only). Others: Invalid Field.
// Get Log Page: 01h error information (newest first), 02h SMART / health (one namespace or
// all), 03h firmware slot (zeroes, one read-only slot, as nvmet), 04h changed namespace list
// (cleared when read; RAE=0 re-arms its event), 05h commands supported and effects. LPO must
// be dword aligned and inside the page; offset type "index" is not supported.
// Features: SEL of Get Features and SV of Set Features are ignored (ONCS Save/Select is not
// advertised, so the spec lets the controller ignore them). See docs/nvme-target.md for each
// feature's values.

import {
  ASYNC_EVENT_LIMIT,
  AenConfig,
  ERROR_LOG_ENTRIES,
  KEEP_ALIVE_GRANULARITY,
  type Controller,
} from './controller.js';
import {
  CommandError,
  invalidField,
  invalidNamespace,
  invalidOpcode,
  sequenceError,
  SqeOffset,
} from './errors.js';
import type { Namespace } from './namespace.js';
import type { Request } from './transport.js';
import { CmdEffects, encodeCmdEffectsLog } from '../nvme/effects-log.js';
import {
  Cdfe,
  decodeArbitration,
  encodeArbitration,
  decodeErrorRecovery,
  decodeGetFeatures,
  decodeHostBehavior,
  decodeNumQueues,
  decodePowerMgmt,
  decodeSetFeatures,
  encodeErrorRecovery,
  encodeNumQueues,
  FeatureId,
  HostBehavior,
} from '../nvme/features.js';
import {
  buildIdCtrl,
  buildIdNs,
  Cmic,
  CntrlType,
  Cns,
  Csi,
  Ctratt,
  decodeIdentify,
  DlFeat,
  encodeIoCommandSets,
  encodeNsIdDescs,
  encodeNsList,
  IDENTIFY_DATA_SIZE,
  IdCtrlNvm,
  IdNsCsIndep,
  ioccszFor,
  Lpa,
  Nidt,
  Nmic,
  NsAttr,
  Nstat,
  NvmIdNs,
  Oaes,
  Ofcs,
  Oncs,
  Vwc,
} from '../nvme/identify.js';
import {
  buildSmartLog,
  CHANGED_NS_LOG_SIZE,
  dataUnits,
  decodeGetLogPage,
  encodeChangedNsList,
  encodeErrorLog,
  ErrorLogEntry,
  LogPageId,
  logPageSlice,
  type GetLogPageCommand,
} from '../nvme/log-page.js';
import { AdminOpcode, IoOpcode } from '../nvme/opcodes.js';
import { SglsSupport } from '../nvme/sgl.js';
import { Status, withDnr } from '../nvme/status.js';

export function parseAdminCommand(req: Request): number {
  switch (req.opcode) {
    case AdminOpcode.IDENTIFY:
      req.handler = executeIdentify;
      return IDENTIFY_DATA_SIZE;
    case AdminOpcode.GET_LOG_PAGE: {
      const cmd = decodeGetLogPage(req.cmd);
      req.handler = () => executeGetLogPage(req, cmd);
      return cmd.length;
    }
    case AdminOpcode.GET_FEATURES:
      return parseGetFeatures(req);
    case AdminOpcode.SET_FEATURES:
      return parseSetFeatures(req);
    case AdminOpcode.ASYNC_EVENT_REQUEST:
      req.handler = executeAsyncEvent;
      return 0;
    case AdminOpcode.KEEP_ALIVE:
      req.handler = executeKeepAlive;
      return 0;
    case AdminOpcode.ABORT:
      req.handler = executeAbort;
      return 0;
    default:
      throw invalidOpcode(`admin opcode 0x${req.opcode.toString(16).padStart(2, '0')} is not supported`);
  }
}

// ---- Identify ----

/** Identify Controller data for any controller (I/O or discovery). */
export function identifyController(ctrl: Controller): Buffer {
  const s = ctrl.subsystem;
  const ops = ctrl.ops;
  const inline = ops.inlineDataSize - (ops.inlineDataSize % 16);
  const common = {
    sn: s.serial,
    mn: s.model,
    fr: s.firmware,
    cntlid: ctrl.cntlid,
    ver: ctrl.vs,
    kas: KEEP_ALIVE_GRANULARITY,
    maxcmd: ctrl.maxQueueSize,
    sgls: SglsSupport.SUPPORTED | (inline > 0 ? SglsSupport.OFFSET : 0),
    subnqn: s.nqn,
    ioccsz: ioccszFor(inline),
    iorcsz: 1,
    msdbd: 1,
    ofcs: Ofcs.DISCONNECT,
    aerl: ASYNC_EVENT_LIMIT - 1,
    elpe: ERROR_LOG_ENTRIES - 1,
  };
  if (s.isDiscovery)
    return buildIdCtrl({
      ...common,
      cntrltype: CntrlType.DISCOVERY,
      cmic: 0,
      mdts: 0,
      oaes: Oaes.DISCOVERY_CHANGE,
      ctratt: 0,
      lpa: Lpa.EXTENDED,
      nn: 0,
      oncs: 0,
      ocfs: 0,
      vwc: 0,
      nwpc: 0,
      frmw: 0,
    });
  const maxNsid = Math.max(0, ...s.namespaces.map((n) => n.nsid));
  return buildIdCtrl({
    ...common,
    cntrltype: CntrlType.IO,
    cmic: Cmic.MULTI_PORT | Cmic.MULTI_CTRL,
    mdts: Math.log2(ctrl.maxDataTransferBytes / 4096),
    oaes: Oaes.NS_ATTR,
    ctratt: Ctratt.HOST_ID_128 | Ctratt.TBKAS,
    lpa: Lpa.SMART_PER_NS | Lpa.CMD_EFFECTS | Lpa.EXTENDED,
    // The Linux host drops namespaces above NN, so NN covers the highest NSID in use.
    nn: Math.max(1024, maxNsid),
    oncs: Oncs.COMPARE | Oncs.DSM | Oncs.WRITE_ZEROES | Oncs.COPY,
    ocfs: s.copyFormats,
    vwc: Vwc.PRESENT | Vwc.FLUSH_BROADCAST_NOT_SUPPORTED,
    nwpc: 0,
    frmw: 0x03, // slot 1 read-only, one slot
  });
}

/** Identify Namespace (NVM) data of an active namespace. */
export function identifyNamespace(ns: Namespace): Buffer {
  const l = ns.device.limits;
  const bs = ns.blockSize;
  const perBlock = (bytes: number) => Math.max(1, Math.min(0x10000, Math.floor(bytes / bs))) - 1;
  const d = l.discard;
  return buildIdNs({
    nsze: ns.blocks,
    blockSize: bs,
    nmic: Nmic.SHARED,
    dlfeat:
      (d?.zeroesData ? DlFeat.READ_ZEROES : DlFeat.READ_NOT_REPORTED) |
      (l.writeZeroes ? DlFeat.WRITE_ZEROES_DEALLOCATE : 0),
    // Preferred write granularity / alignment and optimal write size: the physical block.
    npwg: perBlock(l.physicalBlockSize),
    npwa: perBlock(l.physicalBlockSize),
    nows: perBlock(l.physicalBlockSize),
    npdg: d ? perBlock(d.granularity) : 0,
    npda: d ? perBlock(d.granularity) : 0,
    mssrl: ns.copyLimits.mssrl,
    mcl: ns.copyLimits.mcl,
    msrc: ns.copyLimits.msrc,
    writeProtected: ns.readOnly,
    nguid: ns.nguid,
    eui64: ns.eui64,
  });
}

function identifyCsIndependent(ns: Namespace): Buffer {
  return IdNsCsIndep.encode({
    nmic: Nmic.SHARED,
    nsattr: ns.readOnly ? NsAttr.WRITE_PROTECTED : 0,
    nstat: Nstat.NRDY,
  });
}

const CNS_LOC = SqeOffset.CDW10;
const CSI_LOC = SqeOffset.CDW11 + 3;

function activeNamespace(req: Request): Namespace {
  const ctrl = req.queue.ctrl!;
  const ns = ctrl.subsystem.namespace(req.cmd.nsid);
  if (!ns) throw invalidNamespace(`namespace ${req.cmd.nsid} is not active`);
  return ns;
}

function executeIdentify(req: Request): void {
  const ctrl = req.queue.ctrl!;
  const id = decodeIdentify(req.cmd);
  const nsid = req.cmd.nsid;
  const s = ctrl.subsystem;
  const nvmOnly = () => {
    if (id.csi !== Csi.NVM) throw invalidField(CSI_LOC, `command set ${id.csi} is not supported (NVM only)`);
  };
  switch (id.cns) {
    case Cns.NS: {
      if (nsid === 0xffffffff)
        throw invalidNamespace(
          'Identify Namespace for NSID FFFFFFFFh: namespace management is not supported',
        );
      const ns = s.namespace(nsid);
      // An inactive (but valid) NSID returns a zero-filled structure.
      req.data = ns ? identifyNamespace(ns) : Buffer.alloc(IDENTIFY_DATA_SIZE);
      return;
    }
    case Cns.CTRL:
      req.data = identifyController(ctrl);
      return;
    case Cns.NS_ACTIVE_LIST:
    case Cns.CSI_NS_ACTIVE_LIST:
      if (nsid >= 0xfffffffe)
        throw invalidNamespace(`NSID 0x${nsid.toString(16)} cannot start an active namespace list`);
      req.data =
        id.cns === Cns.CSI_NS_ACTIVE_LIST && id.csi !== Csi.NVM
          ? Buffer.alloc(IDENTIFY_DATA_SIZE)
          : encodeNsList(
              s.namespaces.map((n) => n.nsid),
              nsid,
            );
      return;
    case Cns.NS_DESC_LIST: {
      const ns = activeNamespace(req);
      req.data = encodeNsIdDescs([
        { nidt: Nidt.EUI64, nid: ns.eui64 },
        { nidt: Nidt.NGUID, nid: ns.nguid },
        { nidt: Nidt.UUID, nid: ns.uuid },
        { nidt: Nidt.CSI, nid: Buffer.from([Csi.NVM]) },
      ]);
      return;
    }
    case Cns.CSI_NS:
      nvmOnly();
      activeNamespace(req);
      req.data = NvmIdNs.encode({});
      return;
    case Cns.CSI_CTRL:
      nvmOnly();
      req.data = IdCtrlNvm.encode({});
      return;
    case Cns.CSI_INDEPENDENT_ID_NS:
      req.data = identifyCsIndependent(activeNamespace(req));
      return;
    case Cns.COMMAND_SET_STRUCTURE:
      req.data = encodeIoCommandSets([1n << BigInt(Csi.NVM)]);
      return;
    default:
      throw invalidField(CNS_LOC, `Identify CNS 0x${id.cns.toString(16)} is not supported`);
  }
}

// ---- Get Log Page ----

const LID_LOC = SqeOffset.CDW10;
const LPO_LOC = SqeOffset.CDW12;

/** Checks LPO against a page of `size` bytes and returns the host's slice of it. */
export function sliceLogPage(cmd: GetLogPageCommand, page: Buffer): Buffer {
  if (cmd.ot) throw invalidField(SqeOffset.CDW14, 'log page offset type "index" is not supported');
  if (cmd.lpo % 4 !== 0) throw invalidField(LPO_LOC, `log page offset ${cmd.lpo} is not dword aligned`);
  if (cmd.lpo > page.length)
    throw invalidField(LPO_LOC, `log page offset ${cmd.lpo} is past the ${page.length}-byte page`);
  return logPageSlice(page, cmd.lpo, cmd.length);
}

function executeGetLogPage(req: Request, cmd: GetLogPageCommand): void {
  const ctrl = req.queue.ctrl!;
  let page: Buffer;
  switch (cmd.lid) {
    case LogPageId.ERROR:
      page = encodeErrorLog(
        ctrl.errorLog.map((e) => ({
          errorCount: e.errorCount,
          sqid: e.sqid,
          cid: e.cid,
          status: e.status,
          errorLoc: e.errorLoc,
          lba: e.lba,
          nsid: e.nsid,
          opcode: e.opcode,
        })),
        ERROR_LOG_ENTRIES * ErrorLogEntry.SIZE,
      );
      break;
    case LogPageId.SMART:
      page = smartLog(req, ctrl);
      break;
    case LogPageId.FW_SLOT:
      // One read-only slot that is always active: an all-zero page, as nvmet reports it.
      page = Buffer.alloc(512);
      break;
    case LogPageId.CHANGED_NS:
      page = encodeChangedNsList(ctrl.takeChangedNamespaces());
      if (page.length !== CHANGED_NS_LOG_SIZE) throw new Error('changed namespace list has the wrong size');
      if (!cmd.rae) ctrl.acknowledgeEvent(AenConfig.NS_ATTRIBUTE);
      break;
    case LogPageId.CMD_EFFECTS:
      if (cmd.csi !== Csi.NVM)
        throw new CommandError(
          withDnr(Status.INVALID_LOG_PAGE),
          `no command effects for command set ${cmd.csi}`,
          {
            errorLoc: SqeOffset.CDW14,
          },
        );
      page = commandEffects();
      break;
    default:
      throw invalidField(LID_LOC, `log page 0x${cmd.lid.toString(16).padStart(2, '0')} is not supported`);
  }
  req.data = sliceLogPage(cmd, page);
}

function smartLog(req: Request, ctrl: Controller): Buffer {
  const nsid = req.cmd.nsid;
  let namespaces: Namespace[];
  if (nsid === 0 || nsid === 0xffffffff) namespaces = ctrl.subsystem.namespaces;
  else {
    const ns = ctrl.subsystem.namespace(nsid);
    if (!ns) throw invalidNamespace(`namespace ${nsid} is not active`);
    namespaces = [ns];
  }
  let read = 0;
  let written = 0;
  let reads = 0;
  let writes = 0;
  for (const ns of namespaces) {
    read += ns.stats.bytesRead;
    written += ns.stats.bytesWritten;
    reads += ns.stats.readCommands;
    writes += ns.stats.writeCommands;
  }
  const target = req.queue.target;
  return buildSmartLog({
    dataUnitsRead: dataUnits(read),
    dataUnitsWritten: dataUnits(written),
    hostReads: reads,
    hostWrites: writes,
    powerOnHours: Math.floor((target.clock.now() - target.startedAt) / 3_600_000),
    powerCycles: 1,
    numErrLogEntries: ctrl.errorCount,
  });
}

let effectsPage: Buffer | undefined;

function commandEffects(): Buffer {
  const S = CmdEffects.CSUPP;
  const W = CmdEffects.CSUPP | CmdEffects.LBCC;
  effectsPage ??= encodeCmdEffectsLog(
    {
      [AdminOpcode.GET_LOG_PAGE]: S,
      [AdminOpcode.IDENTIFY]: S,
      [AdminOpcode.ABORT]: S,
      [AdminOpcode.SET_FEATURES]: S,
      [AdminOpcode.GET_FEATURES]: S,
      [AdminOpcode.ASYNC_EVENT_REQUEST]: S,
      [AdminOpcode.KEEP_ALIVE]: S,
    },
    {
      [IoOpcode.FLUSH]: S,
      [IoOpcode.READ]: S,
      [IoOpcode.COMPARE]: S,
      [IoOpcode.WRITE]: W,
      [IoOpcode.WRITE_ZEROES]: W,
      [IoOpcode.DSM]: W,
      [IoOpcode.COPY]: W,
    },
  );
  return effectsPage;
}

// ---- Features ----

const FID_LOC = SqeOffset.CDW10;
const CDW11_LOC = SqeOffset.CDW11;

/** Features an I/O controller implements, with the data bytes Get/Set Features move. */
const IO_FEATURES: ReadonlyMap<number, { get: number; set: number }> = new Map([
  [FeatureId.ARBITRATION, { get: 0, set: 0 }],
  [FeatureId.POWER_MGMT, { get: 0, set: 0 }],
  [FeatureId.ERR_RECOVERY, { get: 0, set: 0 }],
  [FeatureId.VOLATILE_WC, { get: 0, set: 0 }],
  [FeatureId.NUM_QUEUES, { get: 0, set: 0 }],
  [FeatureId.ASYNC_EVENT, { get: 0, set: 0 }],
  [FeatureId.KATO, { get: 0, set: 0 }],
  [FeatureId.HOST_BEHAVIOR, { get: HostBehavior.SIZE, set: HostBehavior.SIZE }],
  [FeatureId.HOST_ID, { get: 16, set: 16 }],
]);

/** Features of a discovery controller. */
export const DISCOVERY_FEATURES: ReadonlyMap<number, { get: number; set: number }> = new Map([
  [FeatureId.ASYNC_EVENT, { get: 0, set: 0 }],
  [FeatureId.KATO, { get: 0, set: 0 }],
]);

export function parseGetFeatures(req: Request, table = IO_FEATURES): number {
  const cmd = decodeGetFeatures(req.cmd);
  const f = table.get(cmd.fid);
  if (!f) throw invalidField(FID_LOC, `Get Features: feature 0x${cmd.fid.toString(16)} is not supported`);
  req.handler = () => getFeature(req, cmd.fid, cmd.cdw11);
  return f.get;
}

export function parseSetFeatures(req: Request, table = IO_FEATURES): number {
  const cmd = decodeSetFeatures(req.cmd);
  const f = table.get(cmd.fid);
  if (!f) throw invalidField(FID_LOC, `Set Features: feature 0x${cmd.fid.toString(16)} is not supported`);
  req.handler = () => setFeature(req, cmd.fid, cmd.cdw11);
  return f.set;
}

function getFeature(req: Request, fid: number, cdw11: number): void {
  const ctrl = req.queue.ctrl!;
  const f = ctrl.features;
  switch (fid) {
    case FeatureId.ARBITRATION:
      req.dw0 = f.arbitration;
      return;
    case FeatureId.POWER_MGMT:
      req.dw0 = f.powerState;
      return;
    case FeatureId.ERR_RECOVERY:
      req.dw0 = f.errorRecovery;
      return;
    case FeatureId.VOLATILE_WC:
      req.dw0 = f.writeCache ? 1 : 0;
      return;
    case FeatureId.NUM_QUEUES:
      req.dw0 = encodeNumQueues({ nsq: ctrl.ioQueues - 1, ncq: ctrl.ioQueues - 1 });
      return;
    case FeatureId.ASYNC_EVENT:
      req.dw0 = f.asyncEventConfig >>> 0;
      return;
    case FeatureId.KATO:
      req.dw0 = ctrl.kato * 1000;
      return;
    case FeatureId.HOST_BEHAVIOR:
      req.data = Buffer.from(f.hostBehavior);
      return;
    case FeatureId.HOST_ID:
      if ((cdw11 & 1) === 0)
        throw invalidField(CDW11_LOC, 'the host identifier is 128 bits: set EXHID (CDW11 bit 0)');
      req.data = Buffer.from(ctrl.hostid);
      return;
  }
}

function setFeature(req: Request, fid: number, cdw11: number): void {
  const ctrl = req.queue.ctrl!;
  const f = ctrl.features;
  switch (fid) {
    case FeatureId.ARBITRATION:
      // Stored and reported back; fabrics queues have no arbitration to apply it to.
      f.arbitration = encodeArbitration(decodeArbitration(cdw11));
      return;
    case FeatureId.POWER_MGMT: {
      const p = decodePowerMgmt(cdw11);
      if (p.ps !== 0) throw invalidField(CDW11_LOC, `power state ${p.ps} does not exist (NPSS 0)`);
      f.powerState = cdw11 & 0xff;
      return;
    }
    case FeatureId.ERR_RECOVERY: {
      const e = decodeErrorRecovery(cdw11);
      if (e.dulbe)
        throw invalidField(
          CDW11_LOC,
          'deallocated or unwritten logical block errors (DULBE) are not supported',
        );
      f.errorRecovery = encodeErrorRecovery({ tler: e.tler });
      return;
    }
    case FeatureId.VOLATILE_WC:
      f.writeCache = (cdw11 & 1) === 1;
      return;
    case FeatureId.NUM_QUEUES: {
      const q = decodeNumQueues(cdw11);
      if (q.nsq === 0xffff || q.ncq === 0xffff)
        throw invalidField(CDW11_LOC, 'NSQR/NCQR 65535 (65536 queues) is not allowed');
      if (ctrl.ioQueueCount > 0)
        throw sequenceError('Number of Queues cannot change after I/O queues are connected');
      const granted = Math.min(q.nsq + 1, q.ncq + 1, ctrl.subsystem.maxIoQueues);
      ctrl.ioQueues = granted;
      ctrl.queueCountSet = true;
      req.dw0 = encodeNumQueues({ nsq: granted - 1, ncq: granted - 1 });
      return;
    }
    case FeatureId.ASYNC_EVENT: {
      const supported = ctrl.subsystem.isDiscovery
        ? AenConfig.DISCOVERY_CHANGE
        : AenConfig.SMART_CRITICAL | AenConfig.NS_ATTRIBUTE;
      if ((cdw11 & ~supported) !== 0)
        throw invalidField(
          CDW11_LOC,
          `async event configuration 0x${(cdw11 >>> 0).toString(16)} enables unsupported events (supported 0x${(supported >>> 0).toString(16)})`,
        );
      f.asyncEventConfig = cdw11 >>> 0;
      req.dw0 = cdw11 >>> 0;
      return;
    }
    case FeatureId.KATO:
      ctrl.setKeepAliveTimeout(cdw11 >>> 0);
      return;
    case FeatureId.HOST_BEHAVIOR: {
      const hb = decodeHostBehavior(req.data!);
      const usable = ctrl.subsystem.copyFormats & (Cdfe.FORMAT_2 | Cdfe.FORMAT_3);
      const asked = hb.cdfe & ~0x3; // bits 1:0 are reserved: formats 0/1 need no enabling
      if ((asked & ~usable) !== 0)
        throw new CommandError(
          withDnr(Status.INVALID_FIELD),
          `Host Behavior Support CDFE 0x${hb.cdfe.toString(16)} enables copy formats the controller does not support (OCFS 0x${ctrl.subsystem.copyFormats.toString(16)})`,
          { errorLoc: SqeOffset.DPTR },
        );
      f.hostBehavior = Buffer.from(req.data!.subarray(0, HostBehavior.SIZE));
      return;
    }
    case FeatureId.HOST_ID:
      // Fabrics hosts give their identifier in Connect (nvmet refuses it the same way).
      throw sequenceError('the host identifier is set by Connect on fabrics');
  }
}

/** The copy formats the host enabled through Host Behavior Support CDFE (bits 2, 3). */
export function enabledCopyFormats(ctrl: Controller): number {
  return HostBehavior.get(ctrl.features.hostBehavior, 'cdfe');
}

// ---- AER, Keep Alive ----

export async function executeAsyncEvent(req: Request): Promise<void> {
  await req.queue.ctrl!.waitForEvent(req);
}

export function executeKeepAlive(req: Request): void {
  const ctrl = req.queue.ctrl!;
  if (ctrl.kato === 0)
    throw new CommandError(Status.KA_TIMEOUT_INVALID, 'Keep Alive without a keep-alive timeout (KATO 0)');
  ctrl.keepAlive();
}

/** Abort: nothing is aborted; DW0 bit 0 set says so (nvmet's "minimum viable" Abort). */
function executeAbort(req: Request): void {
  req.dw0 = 1;
}
