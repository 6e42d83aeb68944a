// bench/copy-network — copy offload over NVMe/TCP on a link shaped to 1 Gbit/s: the NVMe Copy
// command (the target copies; only the command crosses the link) against emulation (the host
// reads every byte over the link and writes it back). This is the experiment behind the Linux
// copy-offload series' headline (there: 107 → 787 MiB/s and 100 → 2655 MiB/s with network
// use falling from ~97% to ~14% / 0.6%).
//
//   npm run bench:copy-network        (= npm run build && node --import tsx bench/copy-network.ts)
//   node --import tsx bench/copy-network.ts [--quick] [--cases 8k,2m16,job1g] [--json FILE]
//                                           [--profile DIR] [--rate-mbit N]
//
// Needs root and iproute2 (exit code 2 otherwise): bench/lib/netns.ts makes two network
// namespaces joined by a veth pair, tbf-shaped to 1 Gbit/s each way, and checks the rate with
// a plain TCP transfer each way (printed in the header). `tsblk serve` (from dist/: build
// first) runs in the target namespace over one 3 GiB sparse RAM namespace on 10.231.0.1:4420;
// bench/copy-network-host.ts runs in the host namespace, connects with NvmeController and
// copies within namespace 1 with issueCopy (8 KiB × 1 and 2 MiB × 16, repeated; the median
// copy time is reported) and with a 1 GiB CopyJob, each with mode 'offload' and 'emulate'.
// Every case checks the path taken and a sample of the destination; a wrong copy fails the
// run (exit 1). The namespaces are removed whatever happens (also on Ctrl-C).
//
// Wire bytes are per copy, both directions, from the tbf counters of the two veth ends
// (every frame with its Ethernet/IP/TCP headers). "link use" is each direction's bits over
// the link rate during the case's whole measured window.

import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  NetnsPair,
  NetnsUnavailableError,
  netnsUnavailableReason,
  waitForLine,
  type TcpRate,
} from './lib/netns.js';
import type { CaseResult, HostReport } from './copy-network-host.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NQN = 'nqn.2026-11.io.tsblk:bench-copy-network';
const PORT = 4420;
const NS_DEVICE = 'ram:3G,name=bench0';
const KiB = 1024;
const MiB = 1024 * KiB;

const args = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}
const quick = args.includes('--quick');
const rateBits = Number(opt('rate-mbit') ?? '1000') * 1e6;
const profileDir = opt('profile');

function fmtBytes(n: number): string {
  if (n >= 10 * MiB) return `${(n / MiB).toFixed(0)} MiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 10 * KiB) return `${(n / KiB).toFixed(0)} KiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

function fmtMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(3)} ms`;
}

function fmtPct(x: number): string {
  const p = 100 * x;
  if (p >= 10) return `${p.toFixed(0)}%`;
  if (p >= 0.1) return `${p.toFixed(1)}%`;
  if (p === 0) return '0%';
  return `${Number(p.toPrecision(2))}%`; // two significant digits: 0.0053%, 0.00033%
}

/** A case, reduced to what the table shows. */
interface Row {
  r: CaseResult;
  mibs: number;
  /** Per copy, frames with headers. */
  h2t: number;
  t2h: number;
  wireShare: number;
  useH2t: number;
  useT2h: number;
  speedup?: number;
  wireRatio?: number;
}

function rows(report: HostReport): Row[] {
  const out: Row[] = report.cases.map((r) => {
    const h2t = r.wire.hostToTarget.frameBytes / r.reps;
    const t2h = r.wire.targetToHost.frameBytes / r.reps;
    const cap = (rateBits / 8) * (r.wire.ms / 1000);
    return {
      r,
      mibs: r.bytes / MiB / (r.medianMs / 1000),
      h2t,
      t2h,
      wireShare: (h2t + t2h) / r.bytes,
      useH2t: r.wire.hostToTarget.frameBytes / cap,
      useT2h: r.wire.targetToHost.frameBytes / cap,
    };
  });
  for (const row of out) {
    if (row.r.mode !== 'offload') continue;
    const em = out.find((x) => x.r.case === row.r.case && x.r.mode === 'emulate');
    if (!em) continue;
    row.speedup = em.r.medianMs / row.r.medianMs;
    row.wireRatio = (row.h2t + row.t2h) / (em.h2t + em.t2h);
  }
  return out;
}

const COLUMNS = [
  ['case', 10],
  ['mode', 7],
  ['copied', 8],
  ['reps', 5],
  ['time/copy', 10],
  ['MiB/s', 8],
  ['wire h→t', 9],
  ['wire t→h', 9],
  ['wire/copied', 11],
  ['link use h→t/t→h', 17],
  ['speed-up', 8],
  ['wire ratio', 10],
] as const;

function cells(row: Row): string[] {
  const r = row.r;
  return [
    r.label,
    r.mode,
    fmtBytes(r.bytes),
    String(r.reps),
    fmtMs(r.medianMs),
    row.mibs >= 100 ? row.mibs.toFixed(0) : row.mibs.toFixed(1),
    fmtBytes(row.h2t),
    fmtBytes(row.t2h),
    fmtPct(row.wireShare),
    `${fmtPct(row.useH2t)} / ${fmtPct(row.useT2h)}`,
    row.speedup === undefined ? '' : `${row.speedup.toFixed(1)}×`,
    row.wireRatio === undefined ? '' : fmtPct(row.wireRatio),
  ];
}

function printTable(rs: Row[]): void {
  const line = (c: string[]) =>
    c.map((s, i) => (i < 2 ? s.padEnd(COLUMNS[i]![1]) : s.padStart(COLUMNS[i]![1]))).join(' | ');
  console.log(line(COLUMNS.map((c) => c[0])));
  console.log(COLUMNS.map((c) => '-'.repeat(c[1])).join('-|-'));
  for (const r of rs) console.log(line(cells(r)));
}

function printMarkdown(rs: Row[]): void {
  console.log(`| ${COLUMNS.map((c) => c[0]).join(' | ')} |`);
  console.log(`| ${COLUMNS.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
  for (const r of rs) console.log(`| ${cells(r).join(' | ')} |`);
}

/** dist/ is what `tsblk serve` runs: warn when a source file is newer than the build. */
function checkBuild(): void {
  const main = join(ROOT, 'dist/cli/main.js');
  let built: number;
  try {
    built = statSync(main).mtimeMs;
  } catch {
    throw new Error('dist/ is missing: run `npm run build` first (npm run bench:copy-network does)');
  }
  const newer: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, name.name);
      if (name.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && statSync(p).mtimeMs > built) newer.push(p);
    }
  };
  walk(join(ROOT, 'src'));
  if (newer.length)
    console.error(
      `# warning: ${newer.length} source file(s) changed since the last build (e.g. ${newer[0]}); ` +
        'the target runs dist/ — npm run build',
    );
}

function fmtRate(t: TcpRate): string {
  return `${t.direction} ${(t.goodputBits / 1e6).toFixed(0)} Mbit/s TCP goodput (${(t.frameBits / 1e6).toFixed(0)} Mbit/s of frames)`;
}

async function main(): Promise<number> {
  const reason = netnsUnavailableReason();
  if (reason) {
    console.error(`bench/copy-network: ${reason}`);
    return 2;
  }
  checkBuild();
  const loadBefore = loadavg()[0]!;
  const work = mkdtempSync(join(tmpdir(), 'tsblk-copy-network-'));
  try {
    return await NetnsPair.with({ rateBits }, async (pair) => {
      const rates = [await pair.measureTcp('host→target'), await pair.measureTcp('target→host')];
      const config = join(work, 'target.json');
      writeFileSync(
        config,
        JSON.stringify({
          subsystems: { [NQN]: { namespaces: [{ device: NS_DEVICE }] } },
          ports: [{ address: pair.target.address, port: PORT }],
        }),
      );
      const prof = (name: string) =>
        profileDir
          ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${name}.cpuprofile`]
          : [];
      const target = pair.spawn(
        'target',
        [process.execPath, ...prof('target'), 'bin/tsblk.js', 'serve', config],
        {
          cwd: ROOT,
        },
      );
      let targetLog = '';
      target.stderr?.on('data', (d: Buffer) => (targetLog = (targetLog + d.toString()).slice(-8000)));
      await waitForLine(
        target,
        (l) => l.includes(`listening on ${pair.target.address}:${PORT}`),
        'tsblk serve',
      );

      const hostArgs = [
        '--target',
        `${pair.target.address}:${PORT}`,
        '--nqn',
        NQN,
        '--pair',
        JSON.stringify(pair.describe()),
        ...(quick ? ['--quick'] : []),
        ...(opt('cases') ? ['--cases', opt('cases')!] : []),
      ];
      const host = pair.spawn(
        'host',
        [process.execPath, ...prof('host'), '--import', 'tsx', 'bench/copy-network-host.ts', ...hostArgs],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      host.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number>((resolve) => host.once('exit', (c) => resolve(c ?? 1)));
      // Stop the target gracefully (it also writes its CPU profile on the way out).
      target.kill('SIGTERM');
      await new Promise((resolve) => (target.exitCode !== null ? resolve(0) : target.once('exit', resolve)));
      if (code !== 0) {
        if (targetLog) console.error(`# tsblk serve stderr:\n${targetLog}`);
        console.error(`bench/copy-network: the host side failed (exit ${code})`);
        return 1;
      }
      const report = JSON.parse(out.trim().split('\n').pop()!) as HostReport;
      if (opt('json')) writeFileSync(opt('json')!, JSON.stringify({ rates, report }, null, 2));

      const rs = rows(report);
      console.log(
        `# tsblk bench/copy-network — node ${process.version}, link shaped to ${rateBits / 1e6} Mbit/s (tbf, each way)`,
      );
      for (const r of rates) console.log(`# link check: ${fmtRate(r)}`);
      console.log(
        `# target: tsblk serve, ${NS_DEVICE} as namespace 1; host: ${report.controller.ioQueues} I/O queues × ${report.controller.queueSize}, ` +
          `MDTS ${fmtBytes(report.controller.maxDataTransferBytes)}, copy limits ${JSON.stringify(report.namespace.copy)}`,
      );
      // The short cases are bound by per-command latency and suffer first when something else runs.
      console.log(
        `# ${availableParallelism()} CPUs; 1-min load average ${loadBefore.toFixed(1)} before the run, ` +
          `${loadavg()[0]!.toFixed(1)} after (the target, the host and the kernel's TCP share these CPUs)`,
      );
      console.log(
        `# source filled over the link: ${fmtBytes(report.fill.bytes)} in ${fmtMs(report.fill.ms)}; ` +
          'time/copy is the median; wire bytes are per copy, frames with headers',
      );
      console.log('');
      printTable(rs);
      console.log('\n# markdown (docs/benchmarks.md):\n');
      printMarkdown(rs);
      return 0;
    });
  } catch (err) {
    console.error(`bench/copy-network: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof NetnsUnavailableError ? 2 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
