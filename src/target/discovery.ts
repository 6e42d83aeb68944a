// The discovery controller (nvmet's discovery.c): what a host connected to
// nqn.2014-08.org.nvmexpress.discovery can do — Identify Controller (CNTRLTYPE discovery),
// Get Log Page 70h, Get/Set Features (Keep Alive Timer, Async Event Configuration with the
// discovery-change notice), Asynchronous Event Request and Keep Alive. Anything else, or any
// command before CSTS.RDY, is Invalid Opcode, as nvmet answers.
//
// The discovery log has one 1024-byte entry per (port × subsystem) pair where the port
// exposes the subsystem and the subsystem allows the connected host; ports in PORTID order,
// subsystems in the order they were added. GENCTR changes when subsystems, ports or host
// lists change (target.discoveryChanged); reading the log without RAE re-arms the
// discovery-change event.

import {
  AdrFam,
  decodeGetLogPage,
  encodeDiscoveryLog,
  LogPageId,
  SubType,
  TcpSecType,
  TrType,
  type DiscoveryEntry,
  type GetLogPageCommand,
} from '../nvme/log-page.js';
import { AdminOpcode } from '../nvme/opcodes.js';
import { Cns, decodeIdentify, IDENTIFY_DATA_SIZE } from '../nvme/identify.js';
import {
  DISCOVERY_FEATURES,
  executeAsyncEvent,
  executeKeepAlive,
  identifyController,
  parseGetFeatures,
  parseSetFeatures,
  sliceLogPage,
} from './admin-cmd.js';
import { AenConfig, type Controller } from './controller.js';
import { invalidField, invalidOpcode, SqeOffset } from './errors.js';
import type { Target } from './target.js';
import type { Request } from './transport.js';

/** Admin queue entries a host may use on a controller reached through a discovery entry. */
export const DISCOVERY_ASQSZ = 32;

export function parseDiscoveryCommand(req: Request): number {
  const ctrl = req.queue.ctrl!;
  if (!ctrl.ready) throw invalidOpcode('the discovery controller is not ready (CSTS.RDY 0)');
  switch (req.opcode) {
    case AdminOpcode.IDENTIFY:
      req.handler = executeDiscoveryIdentify;
      return IDENTIFY_DATA_SIZE;
    case AdminOpcode.GET_LOG_PAGE: {
      const cmd = decodeGetLogPage(req.cmd);
      req.handler = () => executeDiscoveryLog(req, cmd);
      return cmd.length;
    }
    case AdminOpcode.GET_FEATURES:
      return parseGetFeatures(req, DISCOVERY_FEATURES);
    case AdminOpcode.SET_FEATURES:
      return parseSetFeatures(req, DISCOVERY_FEATURES);
    case AdminOpcode.ASYNC_EVENT_REQUEST:
      req.handler = executeAsyncEvent;
      return 0;
    case AdminOpcode.KEEP_ALIVE:
      req.handler = executeKeepAlive;
      return 0;
    default:
      throw invalidOpcode(
        `opcode 0x${req.opcode.toString(16).padStart(2, '0')} is not a discovery controller command`,
      );
  }
}

function executeDiscoveryIdentify(req: Request): void {
  const id = decodeIdentify(req.cmd);
  if (id.cns !== Cns.CTRL)
    throw invalidField(
      SqeOffset.CDW10,
      `a discovery controller answers Identify Controller (CNS 1) only, not CNS ${id.cns}`,
    );
  req.data = identifyController(req.queue.ctrl!);
}

/** The discovery log entries `ctrl`'s host may see. */
export function discoveryEntries(target: Target, ctrl: Controller): DiscoveryEntry[] {
  const out: DiscoveryEntry[] = [];
  for (const port of target.ports) {
    for (const s of target.subsystems) {
      if (!target.exposes(port.portid, s) || !s.hostAllowed(ctrl.hostnqn)) continue;
      out.push({
        trtype: TrType.TCP,
        adrfam: port.adrfam === 'ipv6' ? AdrFam.IP6 : AdrFam.IP4,
        subtype: SubType.NVME,
        treq: port.treq ?? 0,
        portid: port.portid,
        asqsz: DISCOVERY_ASQSZ,
        trsvcid: port.trsvcid,
        subnqn: s.nqn,
        traddr: port.traddr,
        sectype: TcpSecType.NONE,
      });
    }
  }
  return out;
}

function executeDiscoveryLog(req: Request, cmd: GetLogPageCommand): void {
  if (cmd.lid !== LogPageId.DISCOVER)
    throw invalidField(
      SqeOffset.CDW10,
      `a discovery controller has log page 70h only, not 0x${cmd.lid.toString(16)}`,
    );
  const ctrl = req.queue.ctrl!;
  const target = req.queue.target;
  const page = encodeDiscoveryLog(target.genctr, discoveryEntries(target, ctrl));
  req.data = sliceLogPage(cmd, page);
  if (!cmd.rae) ctrl.acknowledgeEvent(AenConfig.DISCOVERY_CHANGE);
}
