// The JSON config file: `{ "devices": { "<name>": { "type": ..., ... } }, "subsystems": {...},
// "ports": [...], "nbd": {...}, "ublk": {...} }` (docs/config.md).
//
// Each top-level key is a section with its own parser, listed in SECTIONS in the order they
// are parsed; a section may look at the sections parsed before it (exports will refer to
// devices). Adding a section (subsystems, ports, exports) is: a field on Config, a parser
// function, one entry in SECTIONS. Unknown top-level keys are rejected, like unknown keys
// everywhere else, so a typo never silently leaves a device out.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './config-error.js';
import { parseDevicesSection, type ParseContext } from './config-devices.js';
import { Fields, suggest } from './config-fields.js';
import { parseNbdSection, type NbdConfig } from './config-nbd.js';
import { parseUblkSection, type UblkConfig } from './config-ublk.js';
import type { DeviceSpec } from './device-spec.js';
import {
  parsePortsSection,
  parseSubsystemsSection,
  type PortConfig,
  type SubsystemConfig,
} from './config-target.js';

export interface Config {
  /** The file it was read from, when it was read from one. */
  readonly source?: string;
  /** Device specs by name, in the order the file lists them. */
  readonly devices: ReadonlyMap<string, DeviceSpec>;
  /** NVMe-oF subsystems by NQN, in the order the file lists them (config-target.ts). */
  readonly subsystems: ReadonlyMap<string, SubsystemConfig>;
  /** TCP listeners; empty when the file has no `ports` (serve then uses its defaults). */
  readonly ports: readonly PortConfig[];
  /** NBD exports and listeners (config-nbd.ts); absent when the file has no `nbd` section. */
  readonly nbd?: NbdConfig;
  /** ublk devices (config-ublk.ts); absent when the file has no `ublk` section. */
  readonly ublk?: UblkConfig;
}

type Sections = Omit<Config, 'source'>;

interface Section<K extends keyof Sections> {
  readonly key: K;
  /** The value when the section is absent. */
  empty(): Sections[K];
  parse(value: unknown, path: string, ctx: ParseContext, earlier: Partial<Sections>): Sections[K];
}

function section<K extends keyof Sections>(s: Section<K>): Section<K> {
  return s;
}

const SECTIONS = [
  section({
    key: 'devices',
    empty: () => new Map(),
    parse: (value, path, ctx) => parseDevicesSection(value, path, ctx),
  }),
  section({
    key: 'subsystems',
    empty: () => new Map(),
    parse: (value, path, _ctx, earlier) => parseSubsystemsSection(value, path, earlier.devices ?? new Map()),
  }),
  section({
    key: 'ports',
    empty: () => [],
    parse: (value, path, _ctx, earlier) => parsePortsSection(value, path, earlier.subsystems ?? new Map()),
  }),
  section({
    key: 'nbd',
    empty: () => undefined,
    parse: (value, path, ctx, earlier) => parseNbdSection(value, path, ctx, earlier.devices ?? new Map()),
  }),
  section({
    key: 'ublk',
    empty: () => undefined,
    parse: (value, path, _ctx, earlier) => parseUblkSection(value, path, earlier.devices ?? new Map()),
  }),
] as const;

export const SECTION_KEYS: readonly string[] = SECTIONS.map((s) => s.key);

/**
 * Checks a parsed JSON value and returns the Config. `baseDir` resolves relative file paths
 * (default: the current directory). Throws ConfigError naming the bad value's path.
 */
export function parseConfig(json: unknown, options: { baseDir?: string; source?: string } = {}): Config {
  const top = Fields.object(json, '');
  for (const key of top.keys()) {
    if (!SECTION_KEYS.includes(key))
      throw new ConfigError(
        key,
        `unknown section${suggest(key, SECTION_KEYS)}; expected ${SECTION_KEYS.join(', ')}`,
      );
  }
  const ctx: ParseContext = { baseDir: options.baseDir ?? process.cwd() };
  const out: Partial<Record<keyof Sections, unknown>> = {};
  for (const s of SECTIONS) {
    const value = top.value[s.key];
    const parsed = value === undefined ? s.empty() : s.parse(value, s.key, ctx, out as Partial<Sections>);
    // An optional section that is absent leaves no key behind (Config.nbd).
    if (parsed !== undefined) out[s.key] = parsed;
  }
  return { ...(options.source === undefined ? {} : { source: options.source }), ...(out as Sections) };
}

/** Reads and checks a config file; errors start with the file name. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(file, `cannot read config: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, `not valid JSON: ${(err as Error).message}`);
  }
  try {
    return parseConfig(json, { baseDir: dirname(resolve(file)), source: file });
  } catch (err) {
    throw ConfigError.is(err) ? err.within(file) : err;
  }
}
