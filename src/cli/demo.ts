// `tsblk demo`: copy offload end to end on one device, in a second. It creates a 1 GiB sparse
// RAM device, writes a pseudo-random pattern to a few ranges, copies them once with offload
// and once with forced emulation into two other regions, reads everything back, compares it
// byte for byte and prints what each step did. Exit code 0 only when both copies match.
// (`npm start` runs this until the NVMe/TCP target exists.)

import type { Command } from 'commander';
import type { BlockDevice, CopyRange } from '../block/device.js';
import { BlockError, ErrorCode } from '../block/errors.js';
import { readFully, writeFully } from '../block/io.js';
import type { CopyMode } from '../block/copy.js';
import { RamDevice } from '../devices/ram.js';
import { peakBuffer } from './copy.js';
import { runCopy, type CopyOutcome } from './copy-run.js';
import { EXIT_FAILURE, EXIT_OK } from './errors.js';
import { formatDuration, formatRate, formatSize, table, type CliIo } from './output.js';

const MiB = 1024 * 1024;
export const DEMO_DEVICE_SIZE = 1024 * MiB;

/** Source ranges in the first quarter of the device; copies go to the second and third. */
export const DEMO_SOURCES: ReadonlyArray<{ offset: number; len: number }> = [
  { offset: 0, len: 1 * MiB },
  { offset: 16 * MiB, len: 4 * MiB },
  { offset: 100 * MiB + 64 * 1024, len: 64 * 1024 },
  { offset: 200 * MiB, len: 8 * MiB },
];
const OFFLOAD_REGION = 256 * MiB;
const EMULATE_REGION = 512 * MiB;

/** A reproducible pattern that differs per offset, so a misplaced block is caught. */
export function pattern(offset: number, len: number): Buffer {
  const buf = Buffer.allocUnsafe(len);
  let x = (offset / 512 + 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < len; i += 4) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return buf;
}

async function verify(dev: BlockDevice, ranges: readonly CopyRange[]): Promise<void> {
  for (const r of ranges) {
    const want = Buffer.alloc(r.len);
    const got = Buffer.alloc(r.len);
    await readFully(dev, r.src, want);
    await readFully(dev, r.dst, got);
    const at = want.findIndex((b, i) => b !== got[i]);
    if (at >= 0)
      throw new BlockError(
        ErrorCode.EIO,
        `demo: byte ${r.dst + at} differs from its source byte ${r.src + at}`,
      );
  }
}

function describeCopy(title: string, o: CopyOutcome): string {
  const rate = o.seconds > 0 ? o.completedBytes / o.seconds : Infinity;
  return (
    `${title}: ${formatSize(o.bytes)} in ${o.ranges.length} ranges, paths ${[...new Set(o.ranges.map((r) => r.path))].join('/')}\n` +
    table(
      [
        ['offloaded', formatSize(o.offloaded)],
        ['emulated', formatSize(o.emulated)],
        ['time', formatDuration(o.seconds)],
        ['throughput', formatRate(rate)],
        ['peak buffer', peakBuffer(o)],
      ],
      '  ',
    ) +
    '\n'
  );
}

/** Runs the demo; returns the exit code. */
export async function demo(io: CliIo): Promise<number> {
  const dev = new RamDevice({ name: 'demo0', size: DEMO_DEVICE_SIZE });
  try {
    const out = io.stdout;
    out.write(`tsblk demo: copy offload on ${dev.name}, a ${formatSize(dev.size)} sparse RAM device\n`);
    for (const s of DEMO_SOURCES) await writeFully(dev, s.offset, pattern(s.offset, s.len));
    const written = DEMO_SOURCES.reduce((n, s) => n + s.len, 0);
    out.write(`wrote a pattern to ${DEMO_SOURCES.length} ranges (${formatSize(written)}):\n`);
    out.write(
      `${table([['offset', 'len'], ...DEMO_SOURCES.map((s) => [s.offset, formatSize(s.len)])], '  ')}\n`,
    );

    const copies: Array<[string, CopyMode, number]> = [
      ['copy 1, mode offload', 'offload', OFFLOAD_REGION],
      ['copy 2, mode emulate', 'emulate', EMULATE_REGION],
    ];
    for (const [title, mode, region] of copies) {
      const ranges = DEMO_SOURCES.map((s) => ({ src: s.offset, dst: region + s.offset, len: s.len }));
      const outcome = await runCopy(dev, dev, ranges, { mode });
      if (outcome.error) throw outcome.error;
      out.write(describeCopy(`${title}, into the region at ${formatSize(region)}`, outcome));
      await verify(dev, ranges);
      out.write(`  verified: ${formatSize(outcome.bytes)} match the source byte for byte\n`);
    }
    out.write(`memory held by the device: ${formatSize(dev.allocatedBytes())} of ${formatSize(dev.size)}\n`);
    out.write('demo passed\n');
    return EXIT_OK;
  } catch (err) {
    io.stderr.write(`tsblk: demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FAILURE;
  } finally {
    await dev.close();
  }
}

export function registerDemo(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('copy with offload and with emulation on a 1 GiB RAM device and verify both')
    .action(async () => setExit(await demo(io)));
}
