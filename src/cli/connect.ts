// `tsblk connect HOST[:PORT] --nqn SUBNQN`: opens an NVMe/TCP association the way `nvme
// connect` does, prints what was negotiated — the controller (CNTLID, model, serial,
// firmware, version, I/O queues granted and their size, MDTS in bytes, keep-alive, copy
// support and descriptor formats) and one line per active namespace (NSID, size, block size,
// copy limits) — and disconnects again (CC.SHN, then the queues). It is a check that a target
// is reachable and what it offers; to use a namespace, name it as a device
// (nvme-tcp://HOST:PORT/SUBNQN/NSID) in any other command.

import type { Command } from 'commander';
import type { NvmeController } from '../host/controller.js';
import type { RemoteNamespace } from '../host/remote-namespace.js';
import { idNsCopyLimits, Oncs } from '../nvme/identify.js';
import { loadConfig } from '../server/config.js';
import { formatAddress } from '../server/nvme-tcp-spec.js';
import { countArg, resolveNvmeTarget, withController, type ConnectionArgs } from './nvme-args.js';
import { bytesWithSize, formatSize, keyValues, table, writeJson, type CliIo } from './output.js';
import { hex } from './nvme-format.js';

export interface ConnectOptions extends ConnectionArgs {
  config?: string;
  json?: boolean;
}

export interface NamespaceSummary {
  nsid: number;
  size: number;
  blocks: number;
  logicalBlockSize: number;
  /** Identify Namespace copy fields and the byte limits the host derived from them. */
  copy: {
    mssrl: number;
    mcl: number;
    msrc: number;
    maxRangeBytes: number;
    maxHwBytes: number;
    maxRanges: number;
  } | null;
}

export interface ControllerSummary {
  address: string;
  subnqn: string;
  hostnqn: string;
  cntlid: number;
  model: string;
  serial: string;
  firmware: string;
  version: string;
  ioQueues: { asked: number; granted: number };
  queueSize: number;
  mdts: number;
  /** 0: no limit. */
  maxDataTransferBytes: number;
  keepAliveTimeoutMs: number;
  /** KAS: the controller's keep-alive granularity in ms (0: keep-alive not supported). */
  keepAliveGranularityMs: number;
  copy: {
    /** ONCS Copy. */
    supported: boolean;
    ocfs: number;
    /** Descriptor formats the controller offers (OCFS). */
    formatsOffered: number[];
    /** Formats this host may send (2 and 3, cross-namespace, only once enabled). */
    formatsUsable: number[];
  };
  namespaces: NamespaceSummary[];
}

function namespaceSummary(ns: RemoteNamespace): NamespaceSummary {
  const id = ns.idNs;
  const c = ns.limits.copy;
  const lim = idNsCopyLimits(id);
  return {
    nsid: ns.nsid,
    size: ns.size,
    blocks: ns.size / ns.limits.logicalBlockSize,
    logicalBlockSize: ns.limits.logicalBlockSize,
    copy: c
      ? {
          mssrl: id.mssrl,
          mcl: id.mcl,
          msrc: id.msrc,
          maxRangeBytes: c.maxRangeBytes,
          maxHwBytes: c.maxHwBytes,
          maxRanges: lim.maxRanges,
        }
      : null,
  };
}

/** What `tsblk connect` reports about a live controller. */
export function controllerSummary(c: NvmeController): ControllerSummary {
  const id = c.idCtrl;
  const o = c.options;
  const v = c.version;
  const offered = [0, 1, 2, 3].filter((f) => id.ocfs & (1 << f));
  return {
    address: formatAddress(o.address),
    subnqn: o.subnqn,
    hostnqn: o.hostnqn,
    cntlid: c.cntlid,
    model: id.mn,
    serial: id.sn,
    firmware: id.fr,
    version: `${v.major}.${v.minor}.${v.tertiary}`,
    ioQueues: { asked: o.ioQueues, granted: c.ioQueueCount },
    queueSize: c.queueSize,
    mdts: id.mdts,
    maxDataTransferBytes: c.maxDataTransferBytes,
    keepAliveTimeoutMs: o.keepAliveTimeoutMs,
    keepAliveGranularityMs: id.kas * 100,
    copy: {
      supported: (id.oncs & Oncs.COPY) !== 0,
      ocfs: id.ocfs,
      formatsOffered: offered,
      formatsUsable: [...c.copyFormats].sort((a, b) => a - b),
    },
    namespaces: [...c.namespaces.values()].sort((a, b) => a.nsid - b.nsid).map(namespaceSummary),
  };
}

const list = (xs: readonly number[]) => (xs.length ? xs.join(',') : 'none');

function copyLine(s: ControllerSummary): string {
  const c = s.copy;
  if (!c.supported) return 'not supported (ONCS Copy clear): copies through this controller are emulated';
  const cross = c.formatsUsable.some((f) => f >= 2) ? ' (cross-namespace copy enabled)' : '';
  return `NVMe Copy; formats offered ${list(c.formatsOffered)} (OCFS ${hex(c.ocfs)}), used ${list(c.formatsUsable)}${cross}`;
}

function namespaceCopy(n: NamespaceSummary): string {
  const c = n.copy;
  if (!c) return 'no copy';
  return (
    `range ${formatSize(c.maxRangeBytes)}, copy ${formatSize(c.maxHwBytes)}, ${c.maxRanges} ranges ` +
    `(MSSRL ${c.mssrl}, MCL ${c.mcl}, MSRC ${c.msrc})`
  );
}

/** The readable report. */
export function renderControllerSummary(s: ControllerSummary): string {
  let out = `connected to ${s.subnqn} at ${s.address} (host NQN ${s.hostnqn})\ncontroller\n`;
  out += keyValues(
    [
      ['cntlid', s.cntlid],
      ['model', s.model],
      ['serial', s.serial],
      ['firmware', s.firmware],
      ['version', `NVMe ${s.version}`],
      [
        'I/O queues',
        `${s.ioQueues.granted} granted (${s.ioQueues.asked} asked), ${s.queueSize} entries each`,
      ],
      [
        'max transfer',
        s.maxDataTransferBytes === 0
          ? 'no limit (MDTS 0)'
          : `${bytesWithSize(s.maxDataTransferBytes)} (MDTS ${s.mdts})`,
      ],
      [
        'keep-alive',
        s.keepAliveTimeoutMs === 0
          ? 'off (KATO 0)'
          : `KATO ${s.keepAliveTimeoutMs} ms, controller granularity ${s.keepAliveGranularityMs} ms`,
      ],
      ['copy', copyLine(s)],
    ],
    '  ',
  );
  out += `\nnamespaces (${s.namespaces.length})\n`;
  if (s.namespaces.length)
    out += `${table(
      [
        ['nsid', 'size', 'block size', 'copy limits'],
        ...s.namespaces.map((n) => [n.nsid, bytesWithSize(n.size), n.logicalBlockSize, namespaceCopy(n)]),
      ],
      '  ',
    )}\n`;
  return out;
}

export function registerConnect(program: Command, io: CliIo): void {
  program
    .command('connect')
    .description('connect to an NVMe/TCP subsystem, show the controller and its namespaces, disconnect')
    .argument(
      '<address>',
      'HOST[:PORT] (port 4420 by default; IPv6 as [::1]:4420), or nvme-tcp://HOST[:PORT]/SUBNQN',
    )
    .option('-n, --nqn <subnqn>', 'subsystem NQN')
    .option(
      '-q, --hostnqn <hostnqn>',
      'host NQN (default: /etc/nvme/hostnqn, else one derived from the machine ID)',
    )
    .option(
      '-i, --nr-io-queues <n>',
      'I/O queues to ask for (the controller may grant fewer)',
      countArg('--nr-io-queues'),
    )
    .option('-g, --hdr-digest', 'enable the PDU header digest')
    .option('-G, --data-digest', 'enable the PDU data digest')
    .option('-c, --config <file>', 'JSON config file (an nvme-tcp device name may stand for the address)')
    .option('--json', 'print one JSON object')
    .action(async (address: string, opts: ConnectOptions) => {
      const config = opts.config === undefined ? undefined : await loadConfig(opts.config);
      const target = resolveNvmeTarget(address, opts, config, 'connect');
      const summary = await withController(target, async (c) => controllerSummary(c));
      if (opts.json) writeJson(io.stdout, summary);
      else io.stdout.write(`${renderControllerSummary(summary)}disconnected\n`);
    });
}
