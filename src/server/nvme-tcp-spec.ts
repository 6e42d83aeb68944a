// Remote NVMe/TCP namespaces as device specs, and the `HOST[:PORT]` addresses the host
// commands take.
//
// Inline grammar:  nvme-tcp://HOST[:PORT]/SUBNQN/NSID[?OPTION[=VALUE][&...]]
//   HOST      an IPv4 address, a host name, or an IPv6 address in brackets ([::1])
//   PORT      default 4420 (the NVMe/TCP I/O port)
//   SUBNQN    the subsystem NQN; everything between the first "/" after the address and the
//             last "/" (so an NQN may contain "/"); "%XX" escapes are decoded, so an NQN with
//             "?", "%" or "&" can be written (%3F, %25, %26)
//   NSID      the namespace ID, 1..4294967294
// Options: hostnqn=NQN (default: the machine's host NQN), hdgst / ddgst (header / data
//   digest, =on|off), queues=N (I/O queues asked for; the controller may grant fewer),
//   name=NAME (the device name; default SUBNQN@HOST:PORT/nNSID).
//
// The same fields come from a config device `{ "type": "nvme-tcp", "address": "HOST:PORT",
// "subnqn", "nsid", "hostnqn", "headerDigest", "dataDigest", "ioQueues" }` (config-devices.ts).

import { isIP } from 'node:net';
import { BlockError } from '../block/errors.js';
import { checkNqn } from '../target/subsystem.js';
import { NVME_TCP_IO_PORT } from '../target/port.js';
import { ConfigError } from './config-error.js';

export const NVME_TCP_SCHEME = 'nvme-tcp://';

/** Where a controller listens. `host` is bare (no brackets around IPv6). */
export interface NvmeTcpAddress {
  host: string;
  port: number;
}

/** What the controller association needs (several namespaces may share one). */
export interface NvmeTcpConnection {
  address: NvmeTcpAddress;
  subnqn: string;
  hostnqn?: string;
  headerDigest?: boolean;
  dataDigest?: boolean;
  ioQueues?: number;
}

export interface NvmeTcpSpec extends NvmeTcpConnection {
  type: 'nvme-tcp';
  name?: string;
  nsid: number;
}

export const NSID_MAX = 0xfffffffe;
export const NVME_TCP_OPTIONS = ['hostnqn', 'hdgst', 'ddgst', 'queues', 'name'] as const;

const HOSTNAME_RE =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const URL_FORM =
  'expected nvme-tcp://HOST[:PORT]/SUBNQN/NSID (e.g. nvme-tcp://127.0.0.1:4420/nqn.2026-11.io.tsblk:default/1)';

/** "127.0.0.1:4420" or "[::1]:4420". */
export function formatAddress(a: NvmeTcpAddress): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** The canonical URL of a namespace (options left out). */
export function formatNvmeTcpUrl(c: { address: NvmeTcpAddress; subnqn: string }, nsid?: number): string {
  return `${NVME_TCP_SCHEME}${formatAddress(c.address)}/${c.subnqn}${nsid === undefined ? '' : `/${nsid}`}`;
}

/**
 * Parses `HOST[:PORT]` (IPv6 as `[::1]` or `[::1]:4420`; a bare IPv6 address without a port is
 * accepted too unless `bareIpv6` is false, as in URLs). `where` prefixes errors.
 */
export function parseAddress(
  text: string,
  defaultPort: number,
  where: string,
  { bareIpv6 = true } = {},
): NvmeTcpAddress {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new ConfigError(where, `missing "]" after the IPv6 address in "${text}"`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':'))
        throw new ConfigError(where, `unexpected "${rest}" after "]" in "${text}": expected :PORT`);
      portText = rest.slice(1);
    }
    if (isIP(host) !== 6) throw new ConfigError(where, `"${host}" in brackets is not an IPv6 address`);
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) {
      if (bareIpv6 && isIP(text) === 6) host = text;
      else
        throw new ConfigError(where, `"${text}": put an IPv6 address in brackets, e.g. [::1]:${defaultPort}`);
    } else if (colons === 1) {
      host = text.slice(0, text.indexOf(':'));
      portText = text.slice(text.indexOf(':') + 1);
    } else host = text;
    if (host === '') throw new ConfigError(where, `missing host in "${text}"`);
    if (isIP(host) === 0 && !HOSTNAME_RE.test(host))
      throw new ConfigError(where, `"${host}" is not an IP address or host name`);
  }
  return { host, port: portText === undefined ? defaultPort : parsePort(portText, where) };
}

function parsePort(text: string, where: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new ConfigError(where, `invalid port "${text}": expected 1..65535`);
  return Number(text);
}

/** Checks an NQN, as a ConfigError naming `where`. */
export function checkNqnAt(nqn: string, what: string, where: string): string {
  try {
    return checkNqn(nqn, what);
  } catch (err) {
    if (BlockError.is(err)) throw new ConfigError(where, err.message.replace(/^EINVAL: /, ''));
    throw err;
  }
}

/** Checks a namespace ID (1..FFFFFFFEh). */
export function checkNsid(text: string | number, where: string): number {
  const n = typeof text === 'number' ? text : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > NSID_MAX)
    throw new ConfigError(where, `invalid namespace ID "${text}": expected 1..${NSID_MAX}`);
  return n;
}

function decode(text: string, what: string, where: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ConfigError(where, `${what} "${text}" has a malformed %-escape`);
  }
}

function parseFlag(value: string | undefined, at: string): boolean {
  if (value === undefined) return true;
  const v = value.toLowerCase();
  if (['on', 'yes', 'true', '1'].includes(v)) return true;
  if (['off', 'no', 'false', '0'].includes(v)) return false;
  throw new ConfigError(at, `invalid value "${value}": expected on or off`);
}

/**
 * Parses `nvme-tcp://HOST[:PORT]/SUBNQN/NSID[?options]`. `checkName` validates `name=` (the
 * device-name rule lives in device-spec.ts). Errors are ConfigErrors prefixed by `where`.
 */
export function parseNvmeTcpUrl(
  text: string,
  where: string,
  checkName: (name: string, at: string) => string,
): NvmeTcpSpec {
  if (!text.startsWith(NVME_TCP_SCHEME)) throw new ConfigError(where, URL_FORM);
  const rest = text.slice(NVME_TCP_SCHEME.length);
  const q = rest.indexOf('?');
  const body = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? undefined : rest.slice(q + 1);
  const slash = body.indexOf('/');
  if (slash < 0) throw new ConfigError(where, `missing /SUBNQN/NSID after the address; ${URL_FORM}`);
  const authority = body.slice(0, slash);
  if (authority === '') throw new ConfigError(where, `missing host; ${URL_FORM}`);
  const address = parseAddress(authority, NVME_TCP_IO_PORT, where, { bareIpv6: false });
  const path = body.slice(slash + 1);
  const last = path.lastIndexOf('/');
  if (last < 0 || path.slice(last + 1) === '')
    throw new ConfigError(where, `missing the namespace ID after the NQN; ${URL_FORM}`);
  const rawNqn = path.slice(0, last);
  if (rawNqn === '') throw new ConfigError(where, `missing the subsystem NQN; ${URL_FORM}`);
  const subnqn = checkNqnAt(decode(rawNqn, 'subsystem NQN', where), 'subsystem NQN', where);
  const nsid = checkNsid(path.slice(last + 1), where);
  const spec: NvmeTcpSpec = { type: 'nvme-tcp', address, subnqn, nsid };
  if (query === undefined) return spec;

  const seen = new Set<string>();
  for (const opt of query.split('&')) {
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? undefined : opt.slice(eq + 1);
    const at = `${where}: option "${key}"`;
    if (key === '') throw new ConfigError(where, 'empty option (two "&" in a row, or a trailing "&" or "?")');
    if (!(NVME_TCP_OPTIONS as readonly string[]).includes(key))
      throw new ConfigError(
        where,
        `unknown option "${key}" for nvme-tcp; expected one of ${NVME_TCP_OPTIONS.join(', ')}`,
      );
    if (seen.has(key)) throw new ConfigError(at, 'given twice');
    seen.add(key);
    const need = (): string => {
      if (value === undefined || value === '') throw new ConfigError(at, `needs a value (${key}=...)`);
      return value;
    };
    switch (key) {
      case 'hostnqn':
        spec.hostnqn = checkNqnAt(decode(need(), 'host NQN', at), 'host NQN', at);
        break;
      case 'hdgst':
        spec.headerDigest = parseFlag(value, at);
        break;
      case 'ddgst':
        spec.dataDigest = parseFlag(value, at);
        break;
      case 'queues': {
        const v = need();
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535)
          throw new ConfigError(at, `invalid count "${v}": expected 1..65535 I/O queues`);
        spec.ioQueues = Number(v);
        break;
      }
      case 'name':
        spec.name = checkName(decode(need(), 'name', at), at);
        break;
    }
  }
  return spec;
}

/** The key of the controller association a spec uses: address, subsystem and host NQN. */
export function connectionKey(c: NvmeTcpConnection): string {
  return `${formatAddress(c.address)}|${c.subnqn}|${c.hostnqn ?? ''}`;
}
