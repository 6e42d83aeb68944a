// The `nbd` section of a config file: what `tsblk serve` exports over NBD (docs/config.md,
// "NBD exports"; docs/nbd.md). Checked with path-qualified errors like the other sections;
// devices are opened by serve through the same DeviceSet as the namespaces, so a device named
// by both a namespace and an export is one device object reached by two protocols.
//
//   "nbd": { "listen": ["127.0.0.1:10809", "[::1]:10809", { "address", "port" }, { "path" }],
//            "exports": { "<name>": { "device", "readOnly", "description", "multiConn" } },
//            "default": "<export name>",
//            "tls": { "cert", "key", "ca", "required", "verifyClient" } }
//
// Decisions:
// - `listen` is optional (default 127.0.0.1:10809); a string is ADDRESS:PORT (IPv6 in
//   brackets), an object `{ "address", "port" }` (port default 10809) or `{ "path" }` for a
//   unix socket. Port 0 picks a free port. Relative socket and TLS file paths resolve against
//   the config file's directory, like file devices.
// - `exports` must name at least one export; the key is the export name ('' allowed, at most
//   4096 bytes). `default` names the export a client gets for '' (default: the first export).
// - `multiConn` defaults to true (every connection reaches the same device object, so a
//   flush on one covers writes completed on all); `readOnly` to false.
// - Zoned devices are refused: NBD has no zone commands, and a client's out-of-order writes
//   would fail on sequential zones.
// - `tls.required` defaults to true: certificates were configured to protect the data.
//   `verifyClient` needs `ca`.

import { isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import { NBD_DEFAULT_PORT } from '../export/nbd/protocol.js';
import { ConfigError } from './config-error.js';
import type { ParseContext } from './config-devices.js';
import { describe, Fields, joinPath } from './config-fields.js';
import { isInlineSpec, parseDeviceSpec, type DeviceSpec } from './device-spec.js';

export type NbdListenConfig =
  | { readonly address: string; readonly port: number; readonly path?: undefined }
  | { readonly path: string; readonly address?: undefined };

export interface NbdExportConfig {
  readonly name: string;
  /** A device name of the config, or an inline spec (`ram:1G`). */
  readonly device: string;
  readonly readOnly: boolean;
  readonly multiConn: boolean;
  readonly description?: string;
  /** Where the entry sits in the config, for errors found when serving it. */
  readonly at: string;
}

export interface NbdTlsConfigFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  readonly required: boolean;
  readonly verifyClient: boolean;
}

export interface NbdConfig {
  readonly listen: readonly NbdListenConfig[];
  /** In the order the file lists them. */
  readonly exports: readonly NbdExportConfig[];
  /** The export '' reaches. */
  readonly defaultExport: string;
  readonly tls?: NbdTlsConfigFiles;
}

const SECTION_KEYS = ['listen', 'exports', 'default', 'tls'];
const EXPORT_KEYS = ['device', 'readOnly', 'description', 'multiConn'];
const TLS_KEYS = ['cert', 'key', 'ca', 'required', 'verifyClient'];
const LISTEN_FORM =
  'expected "ADDRESS:PORT" (e.g. "127.0.0.1:10809", "[::1]:10809"), { "address", "port" } or { "path" }';

/** The default listener: 127.0.0.1 on the NBD port. */
export const NBD_DEFAULT_LISTEN: NbdListenConfig = { address: '127.0.0.1', port: NBD_DEFAULT_PORT };

function port(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535)
    throw new ConfigError(where, `expected a port 0..65535, got ${describe(v)}`);
  return v;
}

function ipAddress(address: string, where: string): string {
  if (isIP(address) === 0)
    throw new ConfigError(where, `"${address}" is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1)`);
  return address;
}

/** Parses "127.0.0.1:10809" or "[::1]:10809" (the port may be left out: 10809). */
export function parseHostPort(text: string, where: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(text);
  if (!m) {
    const hint = isIP(text) === 6 ? `; put an IPv6 address in brackets: [${text}]:${NBD_DEFAULT_PORT}` : '';
    throw new ConfigError(where, `"${text}": ${LISTEN_FORM}${hint}`);
  }
  const address = ipAddress(m[1]!, where);
  if (text.startsWith('[') && isIP(address) !== 6)
    throw new ConfigError(where, `"${address}" in brackets is not an IPv6 address`);
  return { address, port: m[2] === undefined ? NBD_DEFAULT_PORT : port(Number(m[2]), where) };
}

function parseListen(v: unknown, where: string, ctx: ParseContext): NbdListenConfig {
  if (typeof v === 'string') return parseHostPort(v, where);
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ConfigError(where, `${LISTEN_FORM}, got ${describe(v)}`);
  const f = Fields.object(v, where);
  if (f.has('path')) {
    f.allowOnly(['path']);
    const p = f.requiredString('path');
    return { path: isAbsolute(p) ? p : resolve(ctx.baseDir, p) };
  }
  f.allowOnly(['address', 'port', 'path']);
  const address = ipAddress(f.requiredString('address'), f.at('address'));
  return { address, port: f.has('port') ? port(f.value.port, f.at('port')) : NBD_DEFAULT_PORT };
}

function parseDevice(e: Fields, devices: ReadonlyMap<string, DeviceSpec>): string {
  const where = e.at('device');
  const v = e.value.device;
  if (v === undefined)
    throw new ConfigError(
      where,
      'is required: the name of a device in this config, or an inline spec such as ram:1G',
    );
  if (typeof v !== 'string' || v === '')
    throw new ConfigError(where, `expected a device name or an inline spec, got ${describe(v)}`);
  if (isInlineSpec(v)) {
    parseDeviceSpec(v, where);
    return v;
  }
  const spec = devices.get(v);
  if (!spec) {
    const known = [...devices.keys()];
    throw new ConfigError(
      where,
      `unknown device "${v}"${known.length ? `; devices: ${known.join(', ')}` : '; the config defines no devices'}`,
    );
  }
  if (spec.type === 'zoned')
    throw new ConfigError(
      where,
      `"${v}" is a zoned device; NBD has no zone commands, so it cannot be exported`,
    );
  return v;
}

function parseTls(f: Fields, ctx: ParseContext): NbdTlsConfigFiles {
  f.allowOnly(TLS_KEYS);
  const file = (key: string): string | undefined => {
    const p = f.string(key);
    return p === undefined ? undefined : isAbsolute(p) ? p : resolve(ctx.baseDir, p);
  };
  f.required('cert');
  f.required('key');
  const cert = file('cert')!;
  const key = file('key')!;
  const ca = file('ca');
  const verifyClient = f.boolean('verifyClient') ?? false;
  if (verifyClient && ca === undefined)
    throw new ConfigError(f.at('verifyClient'), 'needs "ca": the CA client certificates must chain to');
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    required: f.boolean('required') ?? true,
    verifyClient,
  };
}

/** Parses `nbd`; `devices` are the config's own devices (exports may name them). */
export function parseNbdSection(
  value: unknown,
  path: string,
  ctx: ParseContext,
  devices: ReadonlyMap<string, DeviceSpec>,
): NbdConfig {
  const f = Fields.object(value, path);
  f.allowOnly(SECTION_KEYS);

  let listen: NbdListenConfig[] = [NBD_DEFAULT_LISTEN];
  const raw = f.value.listen;
  if (raw !== undefined) {
    const list = typeof raw === 'string' ? [raw] : f.array('listen', { nonEmpty: true })!;
    listen = list.map((v, i) =>
      parseListen(v, typeof raw === 'string' ? f.at('listen') : joinPath(f.at('listen'), i), ctx),
    );
    const seen = new Set<string>();
    for (const [i, l] of listen.entries()) {
      const key = l.path ?? `${l.address.toLowerCase()}|${l.port}`;
      if (l.path === undefined && l.port === 0) continue;
      if (seen.has(key))
        throw new ConfigError(
          joinPath(f.at('listen'), i),
          `${l.path ?? `${l.address} port ${l.port}`} is listed twice`,
        );
      seen.add(key);
    }
  }

  const section = f.object('exports');
  if (!section)
    throw new ConfigError(
      f.at('exports'),
      'is required: at least one export, e.g. { "disk": { "device": "ram:1G" } }',
    );
  const exports: NbdExportConfig[] = section.keys().map((name) => {
    const at = section.at(name);
    if (Buffer.byteLength(name) > 4096) throw new ConfigError(at, 'an export name is at most 4096 bytes');
    const e = section.object(name)!;
    e.allowOnly(EXPORT_KEYS);
    const device = parseDevice(e, devices);
    const description = e.value.description;
    if (description !== undefined && typeof description !== 'string')
      throw new ConfigError(e.at('description'), `expected a string, got ${describe(description)}`);
    if (typeof description === 'string' && Buffer.byteLength(description) > 4096)
      throw new ConfigError(e.at('description'), 'is longer than 4096 bytes');
    return {
      name,
      device,
      readOnly: e.boolean('readOnly') ?? false,
      multiConn: e.boolean('multiConn') ?? true,
      ...(description ? { description } : {}),
      at,
    };
  });
  if (exports.length === 0) throw new ConfigError(f.at('exports'), 'must define at least one export');

  let defaultExport = exports[0]!.name;
  const d = f.value.default;
  if (d !== undefined) {
    if (typeof d !== 'string' || !exports.some((e) => e.name === d))
      throw new ConfigError(
        f.at('default'),
        `${typeof d === 'string' ? `unknown export "${d}"` : `expected an export name, got ${describe(d)}`}; exports: ${exports.map((e) => JSON.stringify(e.name)).join(', ')}`,
      );
    defaultExport = d;
  }

  const tlsFields = f.object('tls');
  return {
    listen,
    exports,
    defaultExport,
    ...(tlsFields ? { tls: parseTls(tlsFields, ctx) } : {}),
  };
}
