// The host's identity in Connect: its NQN and its 16-byte host identifier, as nvme-cli and
// libnvme find them (nvmf_hostnqn_from_file, nvmf_hostid_from_file):
//
// - /etc/nvme/hostnqn and /etc/nvme/hostid when they are readable (the files the Linux host
//   uses, so tsblk and the kernel appear as the same host to a target's allow list);
// - else the host ID is the UUID inside a uuid-form host NQN (libnvme derives it that way);
// - else a UUID stable per machine: HMAC-SHA256 keyed with /etc/machine-id over a tsblk
//   constant (systemd's sd_id128_get_machine_app_specific scheme, so the machine ID itself is
//   not disclosed), or over the host name when there is no machine ID, shaped as a version 4
//   UUID. The NQN is then `nqn.2014-08.org.nvmexpress:uuid:<uuid>`, as `nvme gen-hostnqn`.

import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface HostIdentityFiles {
  hostnqn: string;
  hostid: string;
  machineId: string;
}

export const DEFAULT_HOST_FILES: Readonly<HostIdentityFiles> = {
  hostnqn: '/etc/nvme/hostnqn',
  hostid: '/etc/nvme/hostid',
  machineId: '/etc/machine-id',
};

const UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const APP_ID = 'tsblk NVMe host identity';

function readTrimmed(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text.length > 0 ? text : undefined;
  } catch {
    return undefined;
  }
}

/** The UUID (text) this machine's derived identity uses. */
export function machineUuid(files: HostIdentityFiles = DEFAULT_HOST_FILES): string {
  const key = readTrimmed(files.machineId) ?? `hostname:${hostname()}`;
  const b = createHmac('sha256', key).update(APP_ID).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  return uuidText(b);
}

export function uuidText(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function uuidBytes(uuid: string): Uint8Array {
  if (!UUID_RE.test(uuid)) throw new RangeError(`"${uuid}" is not a UUID (8-4-4-4-12 hex digits)`);
  return new Uint8Array(Buffer.from(uuid.replace(/-/g, ''), 'hex'));
}

/** The host NQN: /etc/nvme/hostnqn, else the uuid NQN of this machine. */
export function defaultHostNqn(files: HostIdentityFiles = DEFAULT_HOST_FILES): string {
  return readTrimmed(files.hostnqn) ?? `${UUID_NQN_PREFIX}${machineUuid(files)}`;
}

/** The 16-byte host ID: /etc/nvme/hostid, else the UUID of the host NQN, else this machine's. */
export function defaultHostId(files: HostIdentityFiles = DEFAULT_HOST_FILES): Uint8Array {
  const text = readTrimmed(files.hostid);
  if (text !== undefined && UUID_RE.test(text)) return uuidBytes(text);
  const nqn = defaultHostNqn(files);
  if (nqn.startsWith(UUID_NQN_PREFIX)) {
    const u = nqn.slice(UUID_NQN_PREFIX.length);
    if (UUID_RE.test(u)) return uuidBytes(u);
  }
  return uuidBytes(machineUuid(files));
}
