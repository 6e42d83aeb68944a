// Typed, path-aware readers over parsed JSON, so every config check names the exact value it
// rejects (`devices.lin.targets[1].length: invalid size "1.5G": ...`) and unknown keys are
// caught with a suggestion. Each config section uses these instead of ad-hoc typeof checks.

import { ConfigError } from './config-error.js';
import { parseSize } from './size.js';

/** `a.b`, or `a["odd key"]` for keys that are not plain words. */
export function joinPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const plain = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(key);
  const part = plain ? key : `[${JSON.stringify(key)}]`;
  if (!path) return plain ? key : part;
  return plain ? `${path}.${part}` : `${path}${part}`;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

export function suggest(word: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 2))
    ? ` (did you mean "${best}"?)`
    : '';
}

/** One JSON object being read, with the path it sits at. */
export class Fields {
  readonly path: string;
  readonly value: Record<string, unknown>;

  private constructor(value: Record<string, unknown>, path: string) {
    this.value = value;
    this.path = path;
  }

  static object(value: unknown, path: string): Fields {
    if (!isPlainObject(value)) throw new ConfigError(path, `expected an object, got ${describe(value)}`);
    return new Fields(value, path);
  }

  at(key: string | number): string {
    return joinPath(this.path, key);
  }

  keys(): string[] {
    return Object.keys(this.value);
  }

  has(key: string): boolean {
    return this.value[key] !== undefined;
  }

  /** Rejects every key not in `allowed`. */
  allowOnly(allowed: readonly string[]): void {
    for (const key of Object.keys(this.value)) {
      if (!allowed.includes(key))
        throw new ConfigError(
          this.at(key),
          `unknown key${suggest(key, allowed)}; expected one of ${allowed.join(', ')}`,
        );
    }
  }

  required(key: string): unknown {
    const v = this.value[key];
    if (v === undefined) throw new ConfigError(this.at(key), 'is required');
    return v;
  }

  string(key: string): string | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '')
      throw new ConfigError(this.at(key), `expected a non-empty string, got ${describe(v)}`);
    return v;
  }

  requiredString(key: string): string {
    this.required(key);
    return this.string(key)!;
  }

  boolean(key: string): boolean | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean')
      throw new ConfigError(this.at(key), `expected true or false, got ${describe(v)}`);
    return v;
  }

  /** A size: a number of bytes or a string such as "1G". */
  size(key: string): number | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' && typeof v !== 'string')
      throw new ConfigError(
        this.at(key),
        `expected a size (a number of bytes or a string such as "1G"), got ${describe(v)}`,
      );
    return parseSize(v, this.at(key));
  }

  requiredSize(key: string): number {
    this.required(key);
    return this.size(key)!;
  }

  /** A whole number at least `min`. */
  integer(key: string, min = 0): number | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
      throw new ConfigError(this.at(key), `expected a whole number ≥ ${min}, got ${describe(v)}`);
    return v;
  }

  /** A non-negative number (milliseconds and the like). */
  number(key: string): number | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new ConfigError(this.at(key), `expected a non-negative number, got ${describe(v)}`);
    return v;
  }

  oneOf<T extends string>(key: string, choices: readonly T[]): T | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !(choices as readonly string[]).includes(v))
      throw new ConfigError(
        this.at(key),
        `expected one of ${choices.join(', ')}, got ${describe(v)}${typeof v === 'string' ? suggest(v, choices) : ''}`,
      );
    return v as T;
  }

  array(key: string, { nonEmpty = false } = {}): unknown[] | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw new ConfigError(this.at(key), `expected an array, got ${describe(v)}`);
    if (nonEmpty && v.length === 0) throw new ConfigError(this.at(key), 'must list at least one entry');
    return v;
  }

  object(key: string): Fields | undefined {
    const v = this.value[key];
    if (v === undefined) return undefined;
    return Fields.object(v, this.at(key));
  }
}
