// Copy range lists as a user writes them — the copy-ioctl range list:
//   --range SRC:DST:LEN                      (repeatable; sizes such as 4k, 1M allowed)
//   --ranges-file FILE, either JSON          [{"src": 0, "dst": "1M", "len": "64k"}, ...]
//                       or text lines        SRC DST LEN    (# starts a comment)
// The file format is chosen by its first non-blank character: `[` means JSON. Only the syntax
// is checked here; alignment and bounds are the block core's checks (issueCopy validates
// before touching anything).

import { readFile } from 'node:fs/promises';
import type { CopyRange } from '../block/device.js';
import { ConfigError } from '../server/config-error.js';
import { Fields } from '../server/config-fields.js';
import { parseSize } from '../server/size.js';
import { UsageError } from './errors.js';

/** Parses one `--range SRC:DST:LEN`. */
export function parseRangeArg(text: string): CopyRange {
  const parts = text.split(':');
  if (parts.length !== 3 || parts.some((p) => p === ''))
    throw new UsageError(`--range "${text}": expected SRC:DST:LEN, e.g. --range 0:1M:64k`);
  const [src, dst, len] = parts.map((p, i) => {
    try {
      return parseSize(p, ['SRC', 'DST', 'LEN'][i]);
    } catch (err) {
      throw new UsageError(`--range "${text}": ${(err as Error).message}`);
    }
  }) as [number, number, number];
  return { src, dst, len };
}

/** Parses the text of a ranges file; `name` prefixes errors (`ranges.txt:3: ...`). */
export function parseRangesText(text: string, name: string): CopyRange[] {
  if (text.trimStart().startsWith('[')) return parseRangesJson(text, name);
  const ranges: CopyRange[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const at = `${name}:${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 3)
      throw new ConfigError(
        at,
        `expected "SRC DST LEN", got ${fields.length} field${fields.length === 1 ? '' : 's'}: "${line}"`,
      );
    const [src, dst, len] = fields.map((f, k) => parseSize(f, `${at}: ${['SRC', 'DST', 'LEN'][k]}`)) as [
      number,
      number,
      number,
    ];
    ranges.push({ src, dst, len });
  });
  if (ranges.length === 0)
    throw new ConfigError(name, 'no ranges in the file (expected lines "SRC DST LEN" or a JSON array)');
  return ranges;
}

function parseRangesJson(text: string, name: string): CopyRange[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(name, `not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(json)) throw new ConfigError(name, 'expected a JSON array of {"src", "dst", "len"}');
  if (json.length === 0) throw new ConfigError(name, 'no ranges in the file (the JSON array is empty)');
  return json.map((entry, i) => {
    const f = Fields.object(entry, `${name}: [${i}]`);
    f.allowOnly(['src', 'dst', 'len']);
    return { src: f.requiredSize('src'), dst: f.requiredSize('dst'), len: f.requiredSize('len') };
  });
}

/** Reads and parses a ranges file. */
export async function readRangesFile(file: string): Promise<CopyRange[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message;
    throw new ConfigError(file, `cannot read ranges file: ${why}`);
  }
  return parseRangesText(text, file);
}
