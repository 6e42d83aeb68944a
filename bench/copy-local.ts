// bench/copy-local — copy offload vs emulation on RAM and file devices, with memcpy
// (Buffer.copy of the same sizes) measured in the same run as the ceiling.
//
//   node --import tsx bench/copy-local.ts [--quick] [--dir /var/tmp] [--skip-rss]
//
// Prints one table row per (device, range size, range count) and then the peak RSS of an
// emulated 4 GiB file-to-file copy run in a child process (bench/copy-rss.ts), which shows
// that emulation stays inside its memory budget whatever the copy size.

import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { issueCopy } from '../src/block/copy.js';
import type { BlockDevice, CopyRange } from '../src/block/device.js';
import { writeFully } from '../src/block/io.js';
import { RamDevice } from '../src/devices/ram.js';
import { FileDevice } from '../src/devices/file.js';
import { nativeStatus } from '../src/native/addon.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const dirArg = args.indexOf('--dir');
const baseDir = dirArg >= 0 ? args[dirArg + 1]! : '/var/tmp';
const minMs = quick ? 60 : 300;

const sizes = [4 * KiB, 64 * KiB, MiB, 16 * MiB];
const counts = [1, 8, 64];

function fmtSize(n: number): string {
  if (n >= MiB) return `${n / MiB} MiB`;
  return `${n / KiB} KiB`;
}

/** Runs fn repeatedly for at least minMs (after one warm-up) and returns bytes per second. */
async function rate(bytesPerCall: number, fn: () => Promise<void> | void): Promise<number> {
  await fn();
  let calls = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  do {
    await fn();
    calls++;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  } while (elapsed < minMs);
  return (bytesPerCall * calls) / (elapsed / 1000);
}

function layout(size: number, count: number): { ranges: CopyRange[]; deviceSize: number } {
  // Sources packed at the start, destinations after them, a gap between ranges so nothing merges.
  const stride = size + 4 * KiB;
  const half = stride * count;
  const ranges = Array.from({ length: count }, (_, i) => ({
    src: i * stride,
    dst: half + i * stride,
    len: size,
  }));
  return { ranges, deviceSize: 2 * half };
}

function memcpyRate(size: number, count: number): Promise<number> {
  const src = Buffer.alloc(size * count);
  randomFillSync(src);
  const dst = Buffer.alloc(size * count);
  return rate(size * count, () => {
    for (let i = 0; i < count; i++) src.copy(dst, i * size, i * size, (i + 1) * size);
  });
}

async function fill(dev: BlockDevice, ranges: CopyRange[]) {
  const buf = Buffer.alloc(Math.min(ranges[0]!.len, 16 * MiB));
  randomFillSync(buf);
  for (const r of ranges)
    for (let o = 0; o < r.len; o += buf.length)
      await writeFully(dev, r.src + o, buf.subarray(0, Math.min(buf.length, r.len - o)));
}

interface Row {
  device: string;
  size: number;
  count: number;
  memcpy: number;
  offload: number;
  emulate: number;
}

async function measure(kind: 'ram' | 'file', size: number, count: number, dir: string): Promise<Row> {
  const { ranges, deviceSize } = layout(size, count);
  const total = size * count;
  const dev: BlockDevice =
    kind === 'ram'
      ? new RamDevice({ size: deviceSize })
      : await FileDevice.open({
          path: join(dir, `bench-${size}-${count}.img`),
          size: deviceSize,
          create: true,
        });
  try {
    await fill(dev, ranges);
    const opts = { maxTotalBytes: Math.max(total, 128 * MiB) };
    const offload = await rate(total, async () => {
      const r = await issueCopy(dev, dev, ranges, { ...opts, mode: 'offload' });
      if (r.offloaded !== total) throw new Error(`expected ${total} offloaded, got ${r.offloaded}`);
    });
    const emulate = await rate(total, async () => {
      await issueCopy(dev, dev, ranges, { ...opts, mode: 'emulate' });
    });
    return { device: kind, size, count, memcpy: await memcpyRate(size, count), offload, emulate };
  } finally {
    await dev.close();
  }
}

function pad(s: string, n: number, right = false) {
  return right ? s.padEnd(n) : s.padStart(n);
}

async function main() {
  const dir = mkdtempSync(join(baseDir || tmpdir(), 'tsblk-bench-'));
  const native = nativeStatus();
  console.log(
    `# tsblk bench/copy-local — node ${process.version}, native addon: ${native.available ? 'loaded' : native.reason}`,
  );
  console.log(`# file devices in ${dir}; each cell runs ≥ ${minMs} ms after a warm-up; MiB/s`);
  const header = [
    'device',
    'range',
    'ranges',
    'total',
    'memcpy',
    'offload',
    'emulate',
    'offload/memcpy',
    'offload/emulate',
  ];
  const widths = [6, 8, 6, 9, 9, 9, 9, 14, 15];
  console.log(header.map((h, i) => pad(h, widths[i]!, i === 0)).join(' | '));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  try {
    for (const kind of ['ram', 'file'] as const) {
      for (const size of sizes) {
        for (const count of counts) {
          if (kind === 'file' && size * count > 256 * MiB) continue;
          if (quick && (size === 16 * MiB || count === 64) && !(size === MiB && count === 1)) continue;
          const r = await measure(kind, size, count, dir);
          const mib = (x: number) => (x / MiB).toFixed(0);
          console.log(
            [
              pad(r.device, widths[0]!, true),
              pad(fmtSize(r.size), widths[1]!),
              pad(String(r.count), widths[2]!),
              pad(fmtSize(r.size * r.count), widths[3]!),
              pad(mib(r.memcpy), widths[4]!),
              pad(mib(r.offload), widths[5]!),
              pad(mib(r.emulate), widths[6]!),
              pad(`${((100 * r.offload) / r.memcpy).toFixed(0)}%`, widths[7]!),
              pad(`${(r.offload / r.emulate).toFixed(2)}×`, widths[8]!),
            ].join(' | '),
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (!args.includes('--skip-rss')) {
    const gib = quick ? 1 : 4;
    console.log(`\n# emulated ${gib} GiB file → file copy in a child process (memory budget 64 MiB)`);
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'bench/copy-rss.ts', String(gib), baseDir],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    if (child.status !== 0) process.exitCode = 1;
  }
}

await main();
