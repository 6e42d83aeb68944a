// bench/nbd — tsblk's NBD export against the two NBD servers everyone uses, driven by the same
// clients in the same run: fio's nbd engine (libnbd) and nbdcopy.
//
//   npm run bench:nbd        (= npm run build && node --import tsx bench/nbd.ts)
//   node --import tsx bench/nbd.ts [--size 1G] [--runtime 5] [--rounds 1] [--only tsblk,nbdkit,qemu-nbd]
//                                  [--copy-runs 3] [--no-fio] [--no-nbdcopy] [--congestion cubic]
//                                  [--json FILE]
//
// The servers, each a separate process on 127.0.0.1, one at a time, over SIZE of RAM:
// - tsblk:    `node bin/tsblk.js nbd ram:SIZE --listen 127.0.0.1:0 --name disk` (dist/, built
//             first when stale): one Node.js process, the sparse RAM device (1 MiB chunks).
// - nbdkit:   `nbdkit -f --exit-with-parent -i 127.0.0.1 -p PORT memory size=SIZE`: the memory
//             plugin (sparse array, allocated on write), nbdkit's default 16 worker threads.
// - qemu-nbd: `qemu-nbd -f raw --cache=writeback --aio=threads --discard=unmap -e 8 -t -x disk`
//             on a sparse raw file on tmpfs (/dev/shm). writeback = the page cache, i.e. RAM
//             (--cache=none needs O_DIRECT, which tmpfs refuses); aio=threads is the default
//             (aio=native requires --cache=none, so it is out here too); -e 8 lets nbdcopy
//             open its 4 connections and makes qemu-nbd advertise CAN_MULTI_CONN like the other
//             two; -t keeps serving between clients.
// All three advertise multi-conn, trim and zero, and report holes (base:allocation) where
// they have them; the table header says what each reported for a fresh export.
//
// Workloads, per server, on a fresh export: a prefill (1 MiB sequential writes over the whole
// export, so reads hit data), then fio time-based jobs of RUNTIME s (+1 s ramp) with one
// libnbd connection each: 4 KiB random read and write at QD32, 1 MiB sequential read and
// write at QD8. Then nbdcopy: a fresh 1 GiB export with 10 MiB written (ten 1 MiB writes
// ~100 MiB apart) copied to `null:` — a server that reports holes lets nbdcopy skip the other
// 1014 MiB; nbdcopy runs COPY_RUNS times, the median time is shown. nbdcopy uses 4
// connections when the server advertises multi-conn (all three do).
//
// The client and the server share this machine's CPUs (2 on the project machine), no pinning:
// tsblk is one event-loop thread, the peers use threads; a pinned layout would favour tsblk.
// Table: IOPS for 4 KiB, MiB/s for 1 MiB, seconds for nbdcopy; the ratio columns are "how many
// times as fast as the peer" (> 1: tsblk faster; for times, the inverse ratio). A second
// table: each server's CPU time (user + system, all threads, /proc/PID/stat) over the wall
// time of each fio run, in cores — the machine is CPU-bound, so this says what a rate cost.
// TCP congestion control changes the ranking on loopback (bench/lib/congestion.ts): the
// header names the one in use; --congestion NAME switches the host to NAME for the run and
// back afterwards (root; it applies to every server alike, as a sysctl).
// Exit status: 0 when every selected server ran every case, 1 otherwise, 2 on bad arguments or
// a missing tool.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { congestionControl, switchCongestionControl } from './lib/congestion.js';
import {
  GiB,
  MiB,
  WORKLOADS,
  fioArgs,
  findUri,
  formatMarkdown,
  formatTable,
  median,
  medianRun,
  nbdUri,
  parseBenchArgs,
  cpuTicksFromStat,
  parseFioJson,
  parseMapTotals,
  tableCells,
  type BenchOptions,
  type FioResult,
  type Row,
  type ServerId,
} from './lib/nbd-bench.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const NAME = 'disk';
const COPY_SIZE = GiB;
const COPY_WRITES = 10; // × 1 MiB, spaced ~100 MiB apart
const START_TIMEOUT_MS = 30_000;
const run = promisify(execFile);

/** A started server. */
interface Running {
  uri: string;
  proc: ChildProcess;
  /** What it prints on stderr (the last 8 KB), for a failure message. */
  log: () => string;
  cleanup?: () => void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: HOST, port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function spawnServer(cmd: string, args: string[]): { proc: ChildProcess; log: () => string } {
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d: Buffer) => (log = (log + d.toString()).slice(-8000));
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return { proc, log: () => log };
}

/** Waits until the port accepts connections; throws if the process exits or time runs out. */
async function waitListening(r: { proc: ChildProcess; log: () => string }, port: number, what: string) {
  const t0 = performance.now();
  while (!(await canConnect(port))) {
    if (r.proc.exitCode !== null || r.proc.signalCode !== null)
      throw new Error(
        `${what} exited (${r.proc.exitCode ?? r.proc.signalCode}) before listening:\n${r.log()}`,
      );
    if (performance.now() - t0 > START_TIMEOUT_MS) throw new Error(`${what} not listening on ${port}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Processes still running: killed if this process dies first. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    for (const p of live) p.kill('SIGKILL');
    process.exit(130);
  });

async function startTsblk(sizeBytes: number): Promise<Running> {
  const r = spawnServer(process.execPath, [
    'bin/tsblk.js',
    'nbd',
    `ram:${sizeBytes}`,
    '--listen',
    `${HOST}:0`,
    '--name',
    NAME,
  ]);
  const t0 = performance.now();
  let uri: string | undefined;
  while (!(uri = findUri(r.log()))) {
    if (r.proc.exitCode !== null || r.proc.signalCode !== null)
      throw new Error(`tsblk nbd exited (${r.proc.exitCode ?? r.proc.signalCode}):\n${r.log()}`);
    if (performance.now() - t0 > START_TIMEOUT_MS) throw new Error(`tsblk nbd printed no URI:\n${r.log()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return { uri, ...r };
}

async function startNbdkit(sizeBytes: number): Promise<Running> {
  const port = await freePort();
  const r = spawnServer('nbdkit', [
    '--foreground',
    '--exit-with-parent',
    '--ipaddr',
    HOST,
    '--port',
    String(port),
    'memory',
    `size=${sizeBytes}`,
  ]);
  await waitListening(r, port, 'nbdkit');
  return { uri: nbdUri(HOST, port, NAME), ...r };
}

async function startQemuNbd(sizeBytes: number): Promise<Running> {
  const port = await freePort();
  const dir = mkdtempSync('/dev/shm/tsblk-bench-nbd-');
  const image = join(dir, 'disk.raw');
  writeFileSync(image, '');
  truncateSync(image, sizeBytes); // sparse
  const r = spawnServer('qemu-nbd', [
    '--format=raw',
    '--cache=writeback',
    '--aio=threads',
    '--discard=unmap',
    '--shared=8',
    '--persistent',
    `--export-name=${NAME}`,
    `--bind=${HOST}`,
    `--port=${port}`,
    image,
  ]);
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    await waitListening(r, port, 'qemu-nbd');
  } catch (err) {
    r.proc.kill('SIGKILL');
    cleanup();
    throw err;
  }
  return { uri: nbdUri(HOST, port, NAME), ...r, cleanup };
}

const START: Record<ServerId, (sizeBytes: number) => Promise<Running>> = {
  tsblk: startTsblk,
  nbdkit: startNbdkit,
  'qemu-nbd': startQemuNbd,
};

/** SIGTERM, wait (SIGKILL after 10 s); the exit code (null when killed). */
async function stop(r: Running): Promise<number | null> {
  if (r.proc.exitCode === null && r.proc.signalCode === null) {
    const exited = once(r.proc, 'exit');
    r.proc.kill('SIGTERM');
    const timer = setTimeout(() => r.proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  r.cleanup?.();
  return r.proc.exitCode;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU seconds (user + system, all threads) the process has used so far. */
function cpuSeconds(pid: number): number {
  return cpuTicksFromStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) / CLK_TCK;
}

/** A fio job, and the server's CPU use over the whole fio run (ramp and connect included). */
async function fio(
  work: string,
  server: Running,
  args: Parameters<typeof fioArgs>[0],
  dir: 'read' | 'write',
): Promise<FioResult & { serverCores: number }> {
  const cpu0 = cpuSeconds(server.proc.pid!);
  const t0 = performance.now();
  try {
    await run('fio', fioArgs(args), { cwd: work, maxBuffer: 16 * MiB });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`fio ${args.name} on ${args.uri} failed: ${e.stderr || e.stdout || e.message}`);
  }
  const serverCores = (cpuSeconds(server.proc.pid!) - cpu0) / ((performance.now() - t0) / 1000);
  return { ...parseFioJson(readFileSync(args.output, 'utf8'), dir), serverCores };
}

/** What the server reports through base:allocation, as "N MiB data, M MiB holes". */
async function mapTotals(uri: string): Promise<string> {
  try {
    const { stdout } = await run('nbdinfo', ['--map', '--totals', uri]);
    const t = parseMapTotals(stdout);
    const f = (n: number) => `${Number((n / MiB).toFixed(1))} MiB`;
    return `${f(t.dataBytes)} data, ${f(t.holeBytes)} holes`;
  } catch (err) {
    return `nbdinfo --map failed: ${(err as Error).message.split('\n')[0]}`;
  }
}

interface ServerResult {
  fio: Record<string, FioResult & { serverCores: number }>;
  prefill?: FioResult;
  copyTimesS: number[];
  /** base:allocation of a fresh export, and of the nbdcopy export after its 10 MiB were written. */
  freshMap?: string;
  copyMap?: string;
  exitCode?: number | null;
  error?: string;
}

async function benchServer(id: ServerId, o: BenchOptions, work: string): Promise<ServerResult> {
  const res: ServerResult = { fio: {}, copyTimesS: [] };
  const out = (name: string) => join(work, `${id}-${name}.json`);
  if (o.fio) {
    const s = await START[id](o.sizeBytes);
    try {
      res.freshMap = await mapTotals(s.uri);
      const common = { uri: s.uri, sizeBytes: o.sizeBytes };
      res.prefill = await fio(
        work,
        s,
        { ...common, name: 'prefill', rw: 'write', bs: MiB, iodepth: 8, output: out('prefill') },
        'write',
      );
      for (const w of WORKLOADS) {
        const dir = w.rw.endsWith('read') ? 'read' : 'write';
        res.fio[w.id] = await fio(
          work,
          s,
          {
            ...common,
            name: w.id,
            rw: w.rw,
            bs: w.bs,
            iodepth: w.iodepth,
            timeS: o.runtimeS,
            output: out(w.id),
          },
          dir,
        );
        console.error(
          `#   ${id} ${w.id}: ${w.unit === 'IOPS' ? res.fio[w.id]!.iops.toFixed(0) : res.fio[w.id]!.mibs.toFixed(0)} ${w.unit}`,
        );
      }
    } finally {
      res.exitCode = await stop(s);
    }
  }
  if (o.nbdcopy) {
    const s = await START[id](COPY_SIZE);
    try {
      res.freshMap ??= await mapTotals(s.uri);
      // Ten 1 MiB writes, each followed by a 101 MiB gap (fio's rw=write:GAP).
      await fio(
        work,
        s,
        {
          uri: s.uri,
          sizeBytes: COPY_SIZE,
          name: 'copy-data',
          rw: 'write:101m',
          bs: MiB,
          iodepth: 1,
          output: out('copy-data'),
          extra: [`--number_ios=${COPY_WRITES}`],
        },
        'write',
      );
      res.copyMap = await mapTotals(s.uri);
      for (let i = 0; i < o.copyRuns; i++) {
        const t0 = performance.now();
        try {
          await run('nbdcopy', [s.uri, 'null:']);
        } catch (err) {
          const e = err as { stderr?: string; message: string };
          throw new Error(`nbdcopy ${s.uri} null: failed: ${e.stderr || e.message}`);
        }
        res.copyTimesS.push((performance.now() - t0) / 1000);
      }
      console.error(`#   ${id} nbdcopy: ${res.copyTimesS.map((t) => t.toFixed(2)).join(', ')} s`);
    } finally {
      const code = await stop(s);
      res.exitCode = res.exitCode === undefined || res.exitCode === 0 ? code : res.exitCode;
    }
  }
  return res;
}

function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.error ? 'missing' : (r.stdout || r.stderr).split('\n')[0]!.trim();
}

/** Server CPU use per fio workload (a second table, no ratios). */
function cpuRowsOf(results: Partial<Record<ServerId, ServerResult>>): Row[] {
  return WORKLOADS.map((w) => {
    const values: Row['values'] = {};
    for (const [id, r] of Object.entries(results) as [ServerId, ServerResult][]) {
      const f = r.fio[w.id];
      if (f) values[id] = f.serverCores;
    }
    return { label: w.label, unit: 'cores' as const, values };
  });
}

function rowsOf(results: Partial<Record<ServerId, ServerResult>>, o: BenchOptions): Row[] {
  const rows: Row[] = [];
  if (o.fio) {
    for (const w of WORKLOADS) {
      const values: Row['values'] = {};
      for (const [id, r] of Object.entries(results) as [ServerId, ServerResult][]) {
        const f = r.fio[w.id];
        if (f) values[id] = w.unit === 'IOPS' ? f.iops : f.mibs;
      }
      rows.push({ label: w.label, unit: w.unit, values });
    }
  }
  if (o.nbdcopy) {
    const values: Row['values'] = {};
    for (const [id, r] of Object.entries(results) as [ServerId, ServerResult][])
      if (r.copyTimesS.length) values[id] = median(r.copyTimesS);
    rows.push({ label: 'nbdcopy 1 GiB (10 MiB data) → null:', unit: 's', values });
  }
  return rows;
}

/** One result from several rounds: per workload the median run; the first round's nbdcopy and maps. */
function mergeRounds(rounds: readonly ServerResult[]): ServerResult {
  const first = rounds[0] ?? { fio: {}, copyTimesS: [] };
  const fio: ServerResult['fio'] = {};
  for (const w of WORKLOADS) {
    const got = rounds.map((r) => r.fio[w.id]).filter((f) => f !== undefined);
    if (got.length) fio[w.id] = medianRun(got, (f) => (w.unit === 'IOPS' ? f.iops : f.mibs));
  }
  const error = rounds.find((r) => r.error)?.error;
  return { ...first, fio, ...(error ? { error } : {}) };
}

async function main(): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`bench/nbd: ${(err as Error).message}`);
    return 2;
  }
  const tools: [string, string[]][] = [
    ['fio', ['--version']],
    ['nbdinfo', ['--version']],
    ...(o.nbdcopy ? [['nbdcopy', ['--version']] as [string, string[]]] : []),
    ...(o.servers.includes('nbdkit') ? [['nbdkit', ['--version']] as [string, string[]]] : []),
    ...(o.servers.includes('qemu-nbd') ? [['qemu-nbd', ['--version']] as [string, string[]]] : []),
  ];
  const versions = tools.map(([t, a]) => [t, version(t, a)] as const);
  const missing = versions.filter(([, v]) => v === 'missing').map(([t]) => t);
  if (missing.length) {
    console.error(`bench/nbd: missing ${missing.join(', ')} (scripts/install-peers.sh installs them)`);
    return 2;
  }
  if (o.servers.includes('tsblk')) {
    const { ensureBuilt } = await import('../test/vm/build-dist.js');
    console.error(`# ${ensureBuilt()}`);
  }
  let restoreCongestion: (() => void) | undefined;
  if (o.congestion) {
    try {
      restoreCongestion = switchCongestionControl(o.congestion);
    } catch (err) {
      console.error(`bench/nbd: ${(err as Error).message}`);
      return 2;
    }
  }
  const congestion = congestionControl();
  const loadBefore = loadavg()[0]!;
  const work = mkdtempSync(join(tmpdir(), 'tsblk-bench-nbd-'));
  const results: Partial<Record<ServerId, ServerResult>> = {};
  let failed = false;
  try {
    // Servers take turns, round after round, so a load that comes and goes (this machine is
    // shared) touches all of them alike; each workload shows its median round.
    const runs: Partial<Record<ServerId, ServerResult[]>> = {};
    for (let round = 1; round <= o.rounds; round++) {
      for (const id of o.servers) {
        console.error(`# ${id}${o.rounds > 1 ? ` (round ${round} of ${o.rounds})` : ''} ...`);
        // nbdcopy's own runs are repeated inside a round (--copy-runs): once is enough.
        const ro = round === 1 ? o : { ...o, nbdcopy: false };
        let r: ServerResult;
        try {
          r = await benchServer(id, ro, work);
          if (r.exitCode !== 0) console.error(`# warning: ${id} exited with ${r.exitCode} after SIGTERM`);
        } catch (err) {
          failed = true;
          console.error(`bench/nbd: ${id}: ${(err as Error).message}`);
          r = { fio: {}, copyTimesS: [], error: (err as Error).message };
        }
        (runs[id] ??= []).push(r);
      }
    }
    for (const id of o.servers) results[id] = mergeRounds(runs[id] ?? []);
  } finally {
    rmSync(work, { recursive: true, force: true });
    restoreCongestion?.();
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, versions, results }, null, 2));

  const cells = tableCells(rowsOf(results, o), o.servers);
  console.log(
    `# tsblk bench/nbd — node ${process.version}, ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? '?'}), ` +
      `1-min load ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`,
  );
  console.log(
    `# TCP congestion control: ${congestion}${o.congestion ? ` (switched for this run, ${congestionControl()} again now)` : ' (the host setting; --congestion NAME switches it)'}`,
  );
  console.log(`# ${versions.map(([t, v]) => `${t}: ${v}`).join('; ')}`);
  console.log(
    `# fio nbd engine (libnbd, 1 connection), ${o.runtimeS} s per job after a 1 s ramp${o.rounds > 1 ? `, median of ${o.rounds} rounds` : ''}, export ${(o.sizeBytes / MiB).toFixed(0)} MiB prefilled; ` +
      `nbdcopy: median of ${o.copyRuns}, fresh 1 GiB export with ${COPY_WRITES} MiB written`,
  );
  for (const id of o.servers) {
    const r = results[id];
    const pre = r?.prefill ? `, prefill ${r.prefill.mibs.toFixed(0)} MiB/s` : '';
    const copy = r?.copyMap ? `; nbdcopy source: ${r.copyMap}` : '';
    console.log(`# ${id}: fresh export: ${r?.freshMap ?? '?'}${pre}${copy}${r?.error ? ' — FAILED' : ''}`);
  }
  console.log('# ratios: how many times as fast tsblk was (> 1: tsblk faster)\n');
  console.log(formatTable(cells));
  const cpu = o.fio ? tableCells(cpuRowsOf(results), o.servers, false) : undefined;
  if (cpu) {
    console.log(
      '\n# server CPU during each fio run (user + system, all threads, over wall time; 2 CPUs here)\n',
    );
    console.log(formatTable(cpu));
  }
  console.log('\n# markdown (docs/benchmarks.md):\n');
  console.log(formatMarkdown(cells));
  if (cpu) console.log(`\n${formatMarkdown(cpu)}`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
