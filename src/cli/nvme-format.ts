// How the host commands print NVMe structures: Identify Controller and Identify Namespace as
// nvme-cli's `id-ctrl` / `id-ns` print them (same field names, same order, `%#x` where nvme-cli
// prints hex, `lbaf  N : ms:.. lbads:.. rp:..` lines), discovery log records as `nvme discover`
// prints them, and the JSON forms of all three.
//
// - Only the fields the shared codec decodes (src/nvme/identify.ts) are printed; fields newer
//   nvme-cli versions print from bytes the codec still treats as reserved are left out.
// - JSON: the decoded fields under their spec names, reserved ranges and the vendor-specific
//   area left out; 64-bit values and 128-bit counters as decimal strings (JSON numbers lose
//   precision above 2^53), IEEE OUI as a number, GUIDs as hex strings, power states and LBA
//   formats as arrays of objects.

import {
  decodeLbaFormats,
  flbasIndex,
  IdCtrl,
  IdNs,
  ieeeOui,
  PowerStateDescriptor,
  type IdCtrlFields,
  type IdNsFields,
} from '../nvme/identify.js';
import {
  AdrFam,
  decodeU128,
  SubType,
  TcpSecType,
  Treq,
  TrType,
  type DiscoveryEntry,
} from '../nvme/log-page.js';
import { CNTLID_DYNAMIC } from '../nvme/fabrics.js';

/** C's `%#x`: `0` for zero, else `0x` and lowercase hex digits. */
export function hex(n: number | bigint): string {
  return n === 0 || n === 0n ? '0' : `0x${n.toString(16)}`;
}

/** A 16-byte GUID as nvme-cli prints FGUID: 8-4-4-4-12 hex digits in byte order. */
export function guidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A little-endian 128-bit counter (TNVMCAP, NVMCAP, ...) in decimal. */
export function u128String(b: Uint8Array): string {
  return decodeU128(b).toString();
}

type Fmt = 'hex' | 'dec' | 'str' | 'ieee' | 'guid' | 'u128';

/** nvme-cli's id-ctrl fields, in its order, with how it prints each. */
const ID_CTRL_LINES: ReadonlyArray<readonly [keyof IdCtrlFields, Fmt]> = [
  ['vid', 'hex'],
  ['ssvid', 'hex'],
  ['sn', 'str'],
  ['mn', 'str'],
  ['fr', 'str'],
  ['rab', 'dec'],
  ['ieee', 'ieee'],
  ['cmic', 'hex'],
  ['mdts', 'dec'],
  ['cntlid', 'hex'],
  ['ver', 'hex'],
  ['rtd3r', 'hex'],
  ['rtd3e', 'hex'],
  ['oaes', 'hex'],
  ['ctratt', 'hex'],
  ['rrls', 'hex'],
  ['bpcap', 'hex'],
  ['nssl', 'hex'],
  ['plsi', 'dec'],
  ['cntrltype', 'dec'],
  ['fguid', 'guid'],
  ['crdt1', 'dec'],
  ['crdt2', 'dec'],
  ['crdt3', 'dec'],
  ['crcap', 'dec'],
  ['nvmsr', 'dec'],
  ['vwci', 'dec'],
  ['mec', 'dec'],
  ['oacs', 'hex'],
  ['acl', 'dec'],
  ['aerl', 'dec'],
  ['frmw', 'hex'],
  ['lpa', 'hex'],
  ['elpe', 'dec'],
  ['npss', 'dec'],
  ['avscc', 'hex'],
  ['apsta', 'hex'],
  ['wctemp', 'dec'],
  ['cctemp', 'dec'],
  ['mtfa', 'dec'],
  ['hmpre', 'dec'],
  ['hmmin', 'dec'],
  ['tnvmcap', 'u128'],
  ['unvmcap', 'u128'],
  ['rpmbs', 'hex'],
  ['edstt', 'dec'],
  ['dsto', 'dec'],
  ['fwug', 'dec'],
  ['kas', 'dec'],
  ['hctma', 'hex'],
  ['mntmt', 'dec'],
  ['mxtmt', 'dec'],
  ['sanicap', 'hex'],
  ['hmminds', 'dec'],
  ['hmmaxd', 'dec'],
  ['nsetidmax', 'dec'],
  ['endgidmax', 'dec'],
  ['anatt', 'dec'],
  ['anacap', 'dec'],
  ['anagrpmax', 'dec'],
  ['nanagrpid', 'dec'],
  ['pels', 'dec'],
  ['domainid', 'dec'],
  ['kpioc', 'dec'],
  ['mptfawr', 'dec'],
  ['megcap', 'u128'],
  ['tmpthha', 'hex'],
  ['cqt', 'dec'],
  ['sqes', 'hex'],
  ['cqes', 'hex'],
  ['maxcmd', 'dec'],
  ['nn', 'dec'],
  ['oncs', 'hex'],
  ['fuses', 'hex'],
  ['fna', 'hex'],
  ['vwc', 'hex'],
  ['awun', 'dec'],
  ['awupf', 'dec'],
  ['icsvscc', 'dec'],
  ['nwpc', 'dec'],
  ['acwu', 'dec'],
  ['ocfs', 'hex'],
  ['sgls', 'hex'],
  ['mnan', 'dec'],
  ['maxdna', 'u128'],
  ['maxcna', 'dec'],
  ['oaqd', 'dec'],
  ['rhiri', 'dec'],
  ['hirt', 'dec'],
  ['cmmrtd', 'dec'],
  ['nmmrtd', 'dec'],
  ['minmrtg', 'dec'],
  ['maxmrtg', 'dec'],
  ['trattr', 'dec'],
  ['mcudmq', 'dec'],
  ['mnsudmq', 'dec'],
  ['mcmr', 'dec'],
  ['nmcmr', 'dec'],
  ['mcdqpc', 'dec'],
  ['subnqn', 'str'],
  ['ioccsz', 'dec'],
  ['iorcsz', 'dec'],
  ['icdoff', 'dec'],
  ['fcatt', 'hex'],
  ['msdbd', 'dec'],
  ['ofcs', 'dec'],
  ['dctype', 'dec'],
];

function formatValue(v: unknown, fmt: Fmt): string {
  switch (fmt) {
    case 'hex':
      return hex(v as number | bigint);
    case 'dec':
    case 'str':
      return String(v);
    case 'ieee': {
      // nvme-cli prints the three bytes most significant first.
      const b = v as Uint8Array;
      return Buffer.from([b[2]!, b[1]!, b[0]!]).toString('hex');
    }
    case 'guid':
      return guidString(v as Uint8Array);
    case 'u128':
      return u128String(v as Uint8Array);
  }
}

export interface PowerState {
  mp: number;
  flags: number;
  enlat: number;
  exlat: number;
  rrt: number;
  rrl: number;
  rwt: number;
  rwl: number;
  idlp: number;
  ips: number;
  actp: number;
  apws: number;
}

/** The NPSS + 1 power state descriptors of an Identify Controller. */
export function powerStates(id: Pick<IdCtrlFields, 'psd' | 'npss'>): PowerState[] {
  const out: PowerState[] = [];
  for (let i = 0; i <= id.npss && i < 32; i++) {
    const p = PowerStateDescriptor.decode(id.psd, i * PowerStateDescriptor.SIZE);
    out.push({
      mp: p.mp,
      flags: p.flags,
      enlat: p.enlat,
      exlat: p.exlat,
      rrt: p.rrt,
      rrl: p.rrl,
      rwt: p.rwt,
      rwl: p.rwl,
      idlp: p.idlp,
      ips: p.ips,
      actp: p.actp,
      apws: p.apws,
    });
  }
  return out;
}

/** PSD FLAGS bit 0 MXPS (MP in 0.0001 W, else 0.01 W), bit 1 NOPS (non-operational). */
const PSD_MXPS = 1 << 0;
const PSD_NOPS = 1 << 1;

function power(value: number, scale: number): string {
  switch (scale & 0x3) {
    case 0:
      return '-';
    case 1:
      return `${Math.floor(value / 10000)}.${String(value % 10000).padStart(4, '0')}W`;
    case 2:
      return `${Math.floor(value / 100)}.${String(value % 100).padStart(2, '0')}W`;
    default:
      return 'reserved';
  }
}

function workload(apws: number): string {
  switch (apws & 0x7) {
    case 0:
      return '-';
    case 1:
      return '1MiB 32 RW, 30s idle';
    case 2:
      return '80K 128KiB SW';
    default:
      return 'reserved';
  }
}

function powerStateLines(ps: PowerState, i: number): string[] {
  const mp = power(ps.mp, ps.flags & PSD_MXPS ? 1 : 2);
  return [
    `ps   ${String(i).padStart(4)} : mp:${mp} ${ps.flags & PSD_NOPS ? 'non-' : ''}operational ` +
      `enlat:${ps.enlat} exlat:${ps.exlat} rrt:${ps.rrt} rrl:${ps.rrl}`,
    `            rwt:${ps.rwt} rwl:${ps.rwl} idle_power:${power(ps.idlp, ps.ips >> 6)} ` +
      `active_power:${power(ps.actp, ps.apws >> 6)}`,
    `            active_power_workload:${workload(ps.apws)}`,
  ];
}

/** Identify Controller as `nvme id-ctrl` prints it. */
export function renderIdCtrl(id: IdCtrlFields): string {
  const lines = ['NVME Identify Controller:'];
  for (const [name, fmt] of ID_CTRL_LINES) lines.push(`${name.padEnd(10)}: ${formatValue(id[name], fmt)}`);
  powerStates(id).forEach((ps, i) => lines.push(...powerStateLines(ps, i)));
  return `${lines.join('\n')}\n`;
}

/** A decoded field as JSON: bigint → decimal string, bytes → hex string. */
function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return v;
}

const U128_CTRL = new Set(['tnvmcap', 'unvmcap', 'megcap', 'maxdna']);

/** Identify Controller as JSON. */
export function idCtrlJson(id: IdCtrlFields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of IdCtrl.fields) {
    if (f.name.startsWith('rsvd') || f.name === 'vs') continue;
    const v = id[f.name];
    if (f.name === 'ieee') out.ieee = ieeeOui(id);
    else if (f.name === 'fguid') out.fguid = guidString(id.fguid);
    else if (U128_CTRL.has(f.name)) out[f.name] = u128String(v as Uint8Array);
    else if (f.name === 'psd') out.psds = powerStates(id);
    else out[f.name] = jsonValue(v);
  }
  return out;
}

/** nvme-cli's id-ns fields before the NPWG group, in its order, with how it prints each. */
const ID_NS_HEAD: ReadonlyArray<readonly [keyof IdNsFields, Fmt]> = [
  ['nsze', 'hex'],
  ['ncap', 'hex'],
  ['nuse', 'hex'],
  ['nsfeat', 'hex'],
  ['nlbaf', 'dec'],
  ['flbas', 'hex'],
  ['mc', 'hex'],
  ['dpc', 'hex'],
  ['dps', 'hex'],
  ['nmic', 'hex'],
  ['rescap', 'hex'],
  ['fpi', 'hex'],
  ['dlfeat', 'dec'],
  ['nawun', 'dec'],
  ['nawupf', 'dec'],
  ['nacwu', 'dec'],
  ['nabsn', 'dec'],
  ['nabo', 'dec'],
  ['nabspf', 'dec'],
  ['noiob', 'dec'],
  ['nvmcap', 'u128'],
];

const ID_NS_TAIL: ReadonlyArray<readonly [keyof IdNsFields, Fmt]> = [
  ['mssrl', 'dec'],
  ['mcl', 'dec'],
  ['msrc', 'dec'],
  ['kpios', 'dec'],
  ['nulbaf', 'dec'],
  ['kpiodaag', 'dec'],
  ['anagrpid', 'dec'],
  ['nsattr', 'dec'],
  ['nvmsetid', 'dec'],
  ['endgid', 'dec'],
];

/** The LBA formats nvme-cli lists: NLBAF + 1, plus NULBAF unique formats. */
function lbaFormats(id: IdNsFields) {
  return decodeLbaFormats({ lbaf: id.lbaf, nlbaf: Math.min(63, id.nlbaf + id.nulbaf) });
}

/** Identify Namespace as `nvme id-ns` prints it. */
export function renderIdNs(id: IdNsFields, nsid: number): string {
  const lines = [`NVME Identify Namespace ${nsid}:`];
  const line = (name: string, value: string) => lines.push(`${name.padEnd(8)}: ${value}`);
  for (const [name, fmt] of ID_NS_HEAD) line(name, formatValue(id[name], fmt));
  // nvme-cli prints the preferred-granularity group only when NSFEAT says it is valid.
  if (id.nsfeat & 0x30) {
    line('npwg', String(id.npwg));
    line('npwa', String(id.npwa));
    if (id.nsfeat & 0x10) line('npdg', String(id.npdg));
    line('npda', String(id.npda));
    line('nows', String(id.nows));
  }
  for (const [name, fmt] of ID_NS_TAIL) line(name, formatValue(id[name], fmt));
  line('nguid', Buffer.from(id.nguid).toString('hex'));
  line('eui64', Buffer.from(id.eui64).toString('hex'));
  const inUse = flbasIndex(id.flbas);
  lbaFormats(id).forEach((f, i) =>
    lines.push(
      `lbaf ${String(i).padStart(2)} : ms:${String(f.ms).padEnd(3)} lbads:${String(f.lbads).padEnd(2)} ` +
        `rp:${hex(f.rp)}${i === inUse ? ' (in use)' : ''}`,
    ),
  );
  return `${lines.join('\n')}\n`;
}

/** Identify Namespace as JSON. */
export function idNsJson(id: IdNsFields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of IdNs.fields) {
    if (f.name.startsWith('rsvd') || f.name === 'vs') continue;
    if (f.name === 'nvmcap') out.nvmcap = u128String(id.nvmcap);
    else if (f.name === 'lbaf') out.lbafs = lbaFormats(id).map((l) => ({ ms: l.ms, ds: l.lbads, rp: l.rp }));
    else out[f.name] = jsonValue(id[f.name]);
  }
  return out;
}

// ---- discovery log records, named as libnvme names them ----

function nameOf(table: Readonly<Record<number, string>>, v: number): string {
  return table[v] ?? 'unrecognized';
}

const TRTYPE_NAMES: Record<number, string> = {
  [TrType.RDMA]: 'rdma',
  [TrType.FC]: 'fc',
  [TrType.TCP]: 'tcp',
  [TrType.LOOP]: 'loop',
};
const ADRFAM_NAMES: Record<number, string> = {
  [AdrFam.PCI]: 'pci',
  [AdrFam.IP4]: 'ipv4',
  [AdrFam.IP6]: 'ipv6',
  [AdrFam.IB]: 'infiniband',
  [AdrFam.FC]: 'fibre-channel',
};
const SUBTYPE_NAMES: Record<number, string> = {
  [SubType.DISCOVERY_REFERRAL]: 'discovery subsystem referral',
  [SubType.NVME]: 'nvme subsystem',
  [SubType.CURRENT_DISCOVERY]: 'current discovery subsystem',
};
const TREQ_NAMES: Record<number, string> = {
  [Treq.NOT_SPECIFIED]: 'not specified',
  [Treq.REQUIRED]: 'required',
  [Treq.NOT_REQUIRED]: 'not required',
  [Treq.NOT_SPECIFIED | Treq.DISABLE_SQFLOW]: 'not specified, sq flow control disable supported',
  [Treq.REQUIRED | Treq.DISABLE_SQFLOW]: 'required, sq flow control disable supported',
  [Treq.NOT_REQUIRED | Treq.DISABLE_SQFLOW]: 'not required, sq flow control disable supported',
};
const SECTYPE_NAMES: Record<number, string> = {
  [TcpSecType.NONE]: 'none',
  [TcpSecType.TLS]: 'tls',
  [TcpSecType.TLS13]: 'tls13',
};
const EFLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [1 << 1, 'explicit discovery connections'],
  [1 << 0, 'duplicate discovery information'],
  [1 << 2, 'no cdc connectivity'],
];

function eflagsName(eflags: number): string {
  if (eflags === 0) return 'none';
  if (eflags & ~0x7) return 'unrecognized';
  return EFLAG_NAMES.filter(([bit]) => eflags & bit)
    .map(([, n]) => n)
    .join(', ');
}

/** One discovery record with its names resolved, for the readable and the JSON form. */
export interface DiscoveryRecord {
  trtype: string;
  adrfam: string;
  subtype: string;
  treq: string;
  portid: number;
  trsvcid: string;
  subnqn: string;
  traddr: string;
  eflags: string;
  sectype: string;
  cntlid: number;
  asqsz: number;
}

export function discoveryRecord(e: DiscoveryEntry): DiscoveryRecord {
  const trtype = e.trtype ?? TrType.TCP;
  return {
    trtype: nameOf(TRTYPE_NAMES, trtype),
    adrfam: e.traddr ? nameOf(ADRFAM_NAMES, e.adrfam ?? AdrFam.IP4) : '',
    subtype: nameOf(SUBTYPE_NAMES, e.subtype ?? SubType.NVME),
    treq: nameOf(TREQ_NAMES, e.treq ?? Treq.NOT_SPECIFIED),
    portid: e.portid,
    trsvcid: e.trsvcid,
    subnqn: e.subnqn,
    traddr: e.traddr,
    eflags: eflagsName(e.eflags ?? 0),
    sectype: trtype === TrType.TCP ? nameOf(SECTYPE_NAMES, e.sectype ?? TcpSecType.NONE) : '',
    cntlid: e.cntlid ?? CNTLID_DYNAMIC,
    asqsz: e.asqsz ?? 32,
  };
}

/** The discovery log as `nvme discover` prints it: a header, then one block per record. */
export function renderDiscovery(entries: readonly DiscoveryEntry[], genctr?: bigint | number): string {
  let out = `\nDiscovery Log Number of Records ${entries.length}`;
  out += genctr === undefined ? '\n' : `, Generation counter ${genctr}\n`;
  entries.forEach((e, i) => {
    const r = discoveryRecord(e);
    out += `=====Discovery Log Entry ${i}======\n`;
    out += `trtype:  ${r.trtype}\n`;
    out += `adrfam:  ${r.adrfam}\n`;
    out += `subtype: ${r.subtype}\n`;
    out += `treq:    ${r.treq}\n`;
    out += `portid:  ${r.portid}\n`;
    out += `trsvcid: ${r.trsvcid}\n`;
    out += `subnqn:  ${r.subnqn}\n`;
    out += `traddr:  ${r.traddr}\n`;
    out += `eflags:  ${r.eflags}\n`;
    if (r.sectype) out += `sectype: ${r.sectype}\n`;
  });
  return out;
}
