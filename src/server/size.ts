// Sizes as people type them: `512`, `4k`, `4K`, `1M`, `1G`, `1T`, `1MiB`. Units are binary
// (k = 1024) as in dd, fio and dmsetup; `MB`-style suffixes are rejected rather than guessed,
// because whether they mean 10^6 or 2^20 is exactly the ambiguity that corrupts a copy.

import { ConfigError } from './config-error.js';

const UNITS: Record<string, number> = {
  '': 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

const SIZE_RE = /^(\d+)(?:([kKmMgGtTpP])(iB)?)?$/;

const HINT =
  'expected a whole number of bytes with an optional binary unit k, M, G, T, P (or KiB, MiB, GiB, TiB, PiB), e.g. 512, 4k, 1M, 1GiB';

/**
 * Parses a size into bytes. `where` names the value in the error (a config path, an option).
 * Numbers are accepted as they are when they are non-negative safe integers (config files may
 * give sizes as JSON numbers).
 */
export function parseSize(text: string | number, where = ''): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0)
      throw new ConfigError(where, `invalid size ${text}: must be a non-negative whole number of bytes`);
    return text;
  }
  if (typeof text !== 'string')
    throw new ConfigError(
      where,
      `invalid size ${JSON.stringify(text)}: expected a number or a string such as "1G"`,
    );
  const m = SIZE_RE.exec(text.trim());
  if (!m) {
    const decimal = /^\d+[kKmMgGtTpP]B$/.test(text.trim())
      ? `; "${text.trim().slice(0, -1)}" or "${text.trim().slice(0, -1)}iB" mean the binary unit, decimal units are not accepted`
      : '';
    throw new ConfigError(where, `invalid size "${text}": ${HINT}${decimal}`);
  }
  const value = Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!;
  if (!Number.isSafeInteger(value))
    throw new ConfigError(where, `invalid size "${text}": larger than ${Number.MAX_SAFE_INTEGER} bytes`);
  return value;
}

/** Bytes as a person reads them: exact binary units when they divide evenly, else two decimals. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const names = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = -1;
  while (v >= 1024 && i < names.length - 1) {
    v /= 1024;
    i++;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(2);
  return `${text} ${names[i]}`;
}
