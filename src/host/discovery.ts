// discover(): what `nvme discover` does (libnvme nvmf_get_discovery_log): connect to the
// well-known discovery subsystem with KATO 0 (a non-persistent discovery controller), read the
// discovery log page (70h) — its 1024-byte header, then numrec 1024-byte records, then the
// header again — and read it all again while GENCTR changed in between (at most 10 times),
// then disconnect.

import {
  DiscoveryLogEntry,
  DiscoveryLogHeader,
  DISCOVERY_NQN,
  LogPageId,
  type DiscoveryEntry,
} from '../nvme/log-page.js';
import { lbaToNumber } from '../util/struct.js';
import { NvmeController } from './controller.js';
import { HostError } from './errors.js';

export interface DiscoverOptions {
  address: { host: string; port: number };
  hostnqn?: string;
  hostid?: Uint8Array;
  /** TCP connect + ICResp; default 10000. */
  connectTimeoutMs?: number;
  /** Per command; default 30000. */
  commandTimeoutMs?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
}

/** Reads of the whole log before giving up on a GENCTR that keeps changing (libnvme's default). */
export const DISCOVERY_MAX_RETRIES = 10;

/** The records of the discovery log page of the controller at `address`. */
export async function discover(options: DiscoverOptions): Promise<DiscoveryEntry[]> {
  const c = await NvmeController.connect({
    address: options.address,
    subnqn: DISCOVERY_NQN,
    ...(options.hostnqn === undefined ? {} : { hostnqn: options.hostnqn }),
    ...(options.hostid === undefined ? {} : { hostid: options.hostid }),
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: options.commandTimeoutMs }),
    headerDigest: options.headerDigest ?? false,
    dataDigest: options.dataDigest ?? false,
    ioQueues: 0,
    keepAliveTimeoutMs: 0,
    ctrlLossTimeoutMs: 0,
  });
  try {
    return await readDiscoveryLog(c);
  } finally {
    await c.disconnect();
  }
}

/** The discovery log of a connected discovery controller, consistent under one GENCTR. */
export async function readDiscoveryLog(
  c: Pick<NvmeController, 'name' | 'getLogPage'>,
): Promise<DiscoveryEntry[]> {
  const H = DiscoveryLogHeader.SIZE;
  let header = DiscoveryLogHeader.decode(await c.getLogPage(LogPageId.DISCOVER, H, { rae: true }));
  for (let tries = 0; ; tries++) {
    const genctr = header.genctr;
    const numrec = lbaToNumber(header.numrec);
    if (numrec === 0) return [];
    const records = await c.getLogPage(LogPageId.DISCOVER, numrec * DiscoveryLogEntry.SIZE, {
      lpo: H,
      rae: true,
    });
    header = DiscoveryLogHeader.decode(await c.getLogPage(LogPageId.DISCOVER, H));
    if (header.genctr === genctr) {
      const out: DiscoveryEntry[] = [];
      for (let i = 0; i < numrec; i++)
        out.push(toEntry(DiscoveryLogEntry.decode(records, i * DiscoveryLogEntry.SIZE)));
      return out;
    }
    if (tries + 1 >= DISCOVERY_MAX_RETRIES)
      throw new HostError(
        'PROTOCOL',
        `${c.name}: the discovery log changed (GENCTR ${genctr} → ${header.genctr}) on each of ${DISCOVERY_MAX_RETRIES} reads`,
      );
  }
}

function toEntry(e: ReturnType<typeof DiscoveryLogEntry.decode>): DiscoveryEntry {
  return {
    trtype: e.trtype,
    adrfam: e.adrfam,
    subtype: e.subtype,
    treq: e.treq,
    portid: e.portid,
    cntlid: e.cntlid,
    asqsz: e.asqsz,
    eflags: e.eflags,
    trsvcid: e.trsvcid,
    subnqn: e.subnqn,
    traddr: e.traddr,
    sectype: e.tsas[0] ?? 0,
  };
}
