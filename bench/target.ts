// bench/target — the tsblk NVMe/TCP target against the kernel's nvmet-tcp, both driven by the
// kernel's NVMe/TCP host with fio, over RAM-backed storage (brd for nvmet, a RAM namespace for
// tsblk), in one QEMU guest boot (test/vm). The guest runs without hardware acceleration here,
// so the ratio column is what to read, not the absolute numbers.
//
//   npm run build && node --import tsx bench/target.ts [--runtime S] [--size MiB] [--jobs a,b]
//
// Prints a table: IOPS, bandwidth and mean latency per job for each target, and tsblk/nvmet.

import { runInGuest, assertPeers, checkPeers, PROJECT_ROOT } from '../test/vm/vm.js';

const args = process.argv.slice(2);
function opt(name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
}
const runtime = opt('runtime', '8');
const sizeMiB = opt('size', '256');
const jobs = opt('jobs', '').split(',').filter(Boolean).join(' ');

interface FioJob {
  read: {
    iops: number;
    bw_bytes: number;
    lat_ns: { mean: number };
    clat_ns?: { percentile?: Record<string, number> };
  };
  write: { iops: number; bw_bytes: number; lat_ns: { mean: number } };
}

async function main() {
  assertPeers(checkPeers(['fio', 'nvme']));
  const env: Record<string, string> = { RUNTIME: runtime, SIZE_MIB: sizeMiB };
  if (jobs) env.JOBS = jobs;
  const r = await runInGuest({
    command: ['bash', `${PROJECT_ROOT}/bench/guest/target-bench.sh`],
    env,
    memory: '3G',
    timeoutMs: 40 * 60_000,
  });
  const rows = new Map<string, Map<string, FioJob>>();
  for (const line of r.stdout.split('\n')) {
    const m = /^bench: (\S+) (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const parsed = JSON.parse(m[3]!) as { jobs: FioJob[] };
    if (!rows.has(m[2]!)) rows.set(m[2]!, new Map());
    rows.get(m[2]!)!.set(m[1]!, parsed.jobs[0]!);
  }
  if (r.exitCode !== 0 || rows.size === 0) {
    console.error(r.stdout.slice(-4000));
    console.error(r.stderr.slice(-2000));
    throw new Error(`guest benchmark failed (exit ${r.exitCode})`);
  }
  console.log(
    `# bench/target — kernel ${r.kernelVersion}, guest under TCG, fio ${runtime} s per job, ${sizeMiB} MiB`,
  );
  console.log(
    'job               | nvmet IOPS | tsblk IOPS | nvmet MiB/s | tsblk MiB/s | nvmet lat µs | tsblk lat µs | tsblk/nvmet',
  );
  console.log(
    '------------------|------------|------------|-------------|-------------|--------------|--------------|------------',
  );
  for (const [job, byTarget] of rows) {
    const side = (t: string) => {
      const j = byTarget.get(t);
      if (!j) return undefined;
      const dir = j.read.iops > 0 ? j.read : j.write;
      return { iops: dir.iops, mib: dir.bw_bytes / 2 ** 20, lat: dir.lat_ns.mean / 1000 };
    };
    const k = side('nvmet');
    const t = side('tsblk');
    const f = (n: number | undefined, d = 0) => (n === undefined ? '-' : n.toFixed(d));
    console.log(
      [
        job.padEnd(17),
        f(k?.iops).padStart(10),
        f(t?.iops).padStart(10),
        f(k?.mib, 1).padStart(11),
        f(t?.mib, 1).padStart(11),
        f(k?.lat).padStart(12),
        f(t?.lat).padStart(12),
        (k && t ? `${(t.iops / k.iops).toFixed(2)}×` : '-').padStart(10),
      ].join(' | '),
    );
  }
}

await main();
