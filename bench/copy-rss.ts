// bench/copy-rss — peak RSS of an emulated file-to-file copy of N GiB, run alone in its own
// process so nothing else inflates the number. Used by bench/copy-local.ts.
//
//   node --import tsx bench/copy-rss.ts [GiB=4] [dir=/var/tmp]

import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { issueCopy, DEFAULT_COPY_MEMORY_BUDGET } from '../src/block/copy.js';
import { FileDevice } from '../src/devices/file.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const gib = Number(process.argv[2] ?? 4);
const dir = mkdtempSync(join(process.argv[3] ?? '/var/tmp', 'tsblk-rss-'));
const size = gib * GiB;

const src = await FileDevice.open({ path: join(dir, 'src.img'), size, create: true });
const dst = await FileDevice.open({ path: join(dir, 'dst.img'), size, create: true });
try {
  // Real data every 64 MiB so the copy moves bytes, not only holes.
  const block = Buffer.alloc(MiB);
  randomFillSync(block);
  for (let o = 0; o < size; o += 64 * MiB) await src.write(o, block);
  const rssBefore = process.memoryUsage().rss;
  let peakSampled = rssBefore;
  const timer = setInterval(() => (peakSampled = Math.max(peakSampled, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  const r = await issueCopy(src, dst, [{ src: 0, dst: 0, len: size }], {
    mode: 'emulate',
    maxTotalBytes: size,
  });
  const secs = (performance.now() - t0) / 1000;
  clearInterval(timer);
  const maxRss = process.resourceUsage().maxRSS * 1024;
  const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
  console.log(
    'copied | time | throughput | budget | peak buffer | RSS before | peak RSS (sampled) | max RSS (getrusage)',
  );
  console.log(
    [
      mib(r.emulated),
      `${secs.toFixed(1)} s`,
      `${(r.emulated / MiB / secs).toFixed(0)} MiB/s`,
      mib(DEFAULT_COPY_MEMORY_BUDGET),
      mib(r.peakBufferBytes),
      mib(rssBefore),
      mib(peakSampled),
      mib(maxRss),
    ].join(' | '),
  );
  if (r.peakBufferBytes > DEFAULT_COPY_MEMORY_BUDGET) {
    console.error('copy-rss: peak buffer exceeded the budget');
    process.exitCode = 1;
  }
} finally {
  await src.close();
  await dst.close();
  rmSync(dir, { recursive: true, force: true });
}
