// Rendering shared by the commands: where output goes, and how sizes, rates, times and small
// tables look. Human output goes to stdout as aligned text; `--json` prints exactly one JSON
// object on stdout; progress and errors go to stderr.

import { formatSize } from '../server/size.js';

/** The part of a stream the CLI writes to (process.stdout, or a buffer in tests). */
export interface Output {
  write(chunk: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface CliIo {
  stdout: Output;
  stderr: Output;
}

export { formatSize };

/** A byte count with its human form: `1048576 (1 MiB)`. */
export function bytesWithSize(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${bytes} (${formatSize(bytes)})`;
}

export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond)) return '-';
  return `${formatSize(Math.round(bytesPerSecond))}/s`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  if (seconds < 1) return `${(seconds * 1000).toFixed(1)} ms`;
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** Left-aligned columns, two spaces apart; the first row may be a header. */
export function table(rows: ReadonlyArray<ReadonlyArray<string | number>>, indent = ''): string {
  const cells = rows.map((r) => r.map(String));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return cells
    .map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/** `key  value` lines with the keys padded to one width. */
export function keyValues(pairs: ReadonlyArray<readonly [string, string | number]>, indent = ''): string {
  return table(pairs as ReadonlyArray<ReadonlyArray<string | number>>, indent);
}

export function writeJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}
