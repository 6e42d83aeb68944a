// bench/lib/netns — two network namespaces joined by a veth pair shaped to a given rate
// (1 Gbit/s by default): the "target" and the "host" side of a network benchmark.
//
//   tsblk-tgt-<pid>[-n]  veth "veth-tgt"  10.231.0.1/30  ──┐ tbf 1 Gbit/s each way
//   tsblk-host-<pid>[-n] veth "veth-host" 10.231.0.2/30  ──┘
//
// - Shaping: tbf (token bucket filter) on both veth ends, root qdisc. Why tbf and not netem's
//   `rate`: tbf is a plain rate limiter — it charges every frame, GSO super-packets counted
//   per segment with their headers (qdisc_pkt_len), against a bucket refilled at the rate, so
//   the long-run rate is exact and the queue stays bounded (`latency`). netem's rate is a
//   delay emulator (each packet delayed by its serialization time behind a 1000-packet
//   queue) and sch_netem is often not built at all (it is not in this VM's kernel). Measured
//   here: a TCP stream gets 954 Mbit/s of goodput through it, ≈ 998 Mbit/s of frames, with
//   no drops. `burst` 256 KiB holds a whole 64 KiB GSO packet (smaller bursts make tbf
//   segment them in software) and is 2 ms at 1 Gbit/s; `latency` 10 ms bounds the queue.
// - Bytes on the wire, per direction, from the kernel, read before and after each case:
//   the tbf qdisc's byte counter of the sending end (every frame with its Ethernet, IP and
//   TCP headers — what the shaper charged to the link) and the veth's own tx/rx counters
//   (`ip -s -j link`: these count a GSO packet's headers once, so they are ~4% lower on bulk
//   transfers; kept as a cross-check).
// - Teardown always: NetnsPair.with() runs the body in try/finally, a SIGINT/SIGTERM handler
//   tears down before exiting, and an 'exit' hook removes what is still there synchronously.
//   Processes started with spawn() are stopped first (SIGTERM, then SIGKILL after 5 s): a
//   namespace lives as long as a process is inside it. Namespaces left behind by a run that
//   was killed with SIGKILL (their <pid> is gone) are removed at the next create().
// - Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `ip netns`) and iproute2 (`ip`, `tc`);
//   otherwise NetnsUnavailableError, which benchmarks turn into exit code 2.

import {
  execFile,
  execFileSync,
  spawn,
  spawnSync,
  type ChildProcess,
  type SpawnOptions,
} from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const DEFAULT_RATE_BITS = 1_000_000_000;
const TEARDOWN_KILL_MS = 5000;
const STALE_NAME = /^tsblk-(?:tgt|host)-(\d+)(?:-\d+)?$/;

/** Root or iproute2 is missing, or namespaces cannot be made here. */
export class NetnsUnavailableError extends Error {
  override readonly name = 'NetnsUnavailableError';
}

export type Side = 'target' | 'host';

export interface NetEnd {
  readonly ns: string;
  readonly veth: string;
  readonly address: string;
}

/** What another process needs to read the counters (JSON-able). */
export interface PairDescription {
  readonly target: NetEnd;
  readonly host: NetEnd;
  readonly rateBits: number;
}

/** Counters of one direction at one moment. */
export interface DirectionCounters {
  /** Bytes the sender's tbf let onto the link: every frame with its headers. */
  readonly frameBytes: number;
  readonly frames: number;
  readonly drops: number;
  /** The sender veth's tx bytes (GSO headers counted once). */
  readonly linkBytes: number;
  readonly linkPackets: number;
}

export interface WireSample {
  /** process.hrtime in milliseconds. */
  readonly atMs: number;
  readonly hostToTarget: DirectionCounters;
  readonly targetToHost: DirectionCounters;
}

export interface WireDelta {
  readonly ms: number;
  readonly hostToTarget: DirectionCounters;
  readonly targetToHost: DirectionCounters;
}

export interface TcpRate {
  readonly direction: 'host→target' | 'target→host';
  readonly bytes: number;
  readonly ms: number;
  /** Application bytes per second × 8. */
  readonly goodputBits: number;
  /** Frame bytes (the tbf counter) over the same time × 8: how full the shaped link was. */
  readonly frameBits: number;
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0)
    return 'creating network namespaces, veth pairs and tc qdiscs needs root: run it as root (sudo)';
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['tc', 'iproute2'],
  ] as const) {
    const r = spawnSync(tool, ['-V'], { stdio: 'ignore' });
    if (r.error || r.status !== 0) return `\`${tool}\` not found: install ${pkg} (apt-get install ${pkg})`;
  }
  return undefined;
}

function nsExists(name: string): boolean {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').some((l) => l.split(' ')[0] === name);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes tsblk-tgt-/tsblk-host- namespaces whose creating process is gone (a run killed with
 * SIGKILL), and stops what still runs inside them. Returns their names.
 */
export function removeStaleNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const removed: string[] = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = STALE_NAME.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    // Processes the dead run left inside (a target, a probe) would keep the namespace alive.
    const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    removed.push(name);
  }
  return removed;
}

function jsonOf<T>(cmd: string, args: string[]): T {
  return JSON.parse(execFileSync(cmd, args, { encoding: 'utf8' })) as T;
}

interface IpLinkJson {
  stats64?: { tx: { bytes: number; packets: number }; rx: { bytes: number; packets: number } };
}
interface TcQdiscJson {
  kind: string;
  root?: boolean;
  bytes: number;
  packets: number;
  drops: number;
}

function readDirection(end: NetEnd): DirectionCounters {
  const link = jsonOf<IpLinkJson[]>('ip', ['-n', end.ns, '-s', '-j', 'link', 'show', 'dev', end.veth])[0];
  const qdisc = jsonOf<TcQdiscJson[]>('tc', [
    '-n',
    end.ns,
    '-s',
    '-j',
    'qdisc',
    'show',
    'dev',
    end.veth,
  ]).find((q) => q.root);
  if (!link?.stats64 || !qdisc)
    throw new Error(`no counters for ${end.veth} in namespace ${end.ns} (is the pair still there?)`);
  return {
    frameBytes: qdisc.bytes,
    frames: qdisc.packets,
    drops: qdisc.drops,
    linkBytes: link.stats64.tx.bytes,
    linkPackets: link.stats64.tx.packets,
  };
}

/**
 * The wire counters of both directions, now. Synchronous on purpose: called at the edges of
 * a measured window, it must not let other work of the process run in between. Works from
 * any network namespace (`ip -n` names namespaces through /run/netns).
 */
export function readWire(pair: PairDescription): WireSample {
  const atMs = Number(process.hrtime.bigint()) / 1e6;
  return { atMs, hostToTarget: readDirection(pair.host), targetToHost: readDirection(pair.target) };
}

function sub(a: DirectionCounters, b: DirectionCounters): DirectionCounters {
  return {
    frameBytes: b.frameBytes - a.frameBytes,
    frames: b.frames - a.frames,
    drops: b.drops - a.drops,
    linkBytes: b.linkBytes - a.linkBytes,
    linkPackets: b.linkPackets - a.linkPackets,
  };
}

export function wireDelta(before: WireSample, after: WireSample): WireDelta {
  return {
    ms: after.atMs - before.atMs,
    hostToTarget: sub(before.hostToTarget, after.hostToTarget),
    targetToHost: sub(before.targetToHost, after.targetToHost),
  };
}

// The TCP probe: a receiver that counts bytes from the first to the last, and a sender.
const RECEIVER = `
import net from 'node:net';
const [address, port] = process.argv.slice(-2);
const srv = net.createServer((s) => {
  let n = 0, t0 = 0n;
  s.on('data', (d) => { if (n === 0) t0 = process.hrtime.bigint(); n += d.length; });
  s.on('end', () => {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    process.stdout.write(JSON.stringify({ bytes: n, ms }) + '\\n');
    s.end(); srv.close();
  });
});
srv.listen(Number(port), address, () => process.stdout.write('ready\\n'));
`;
const SENDER = `
import net from 'node:net';
const [address, port, total] = process.argv.slice(-3);
const buf = Buffer.alloc(1 << 20, 0x5a);
let sent = 0;
const s = net.connect(Number(port), address, () => {
  const pump = () => {
    while (sent < Number(total)) {
      const n = Math.min(buf.length, Number(total) - sent);
      sent += n;
      if (!s.write(n === buf.length ? buf : buf.subarray(0, n))) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

/** Resolves with the first stdout line of child that satisfies pick; rejects if it exits first. */
export function waitForLine(
  child: ChildProcess,
  pick: (line: string) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let stderr = '';
    const timer = setTimeout(() => finish(new Error(`${what}: nothing after ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (pick(line)) return finish(undefined, line);
      }
    };
    const onErr = (d: Buffer) => void (stderr = (stderr + d.toString('utf8')).slice(-4000));
    const onExit = (code: number | null, sig: string | null) =>
      finish(new Error(`${what}: exited (${sig ?? code}) first${stderr ? `:\n${stderr}` : ''}`));
    const finish = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onErr);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(line!);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onErr);
    child.once('exit', onExit);
  });
}

let pairsMade = 0;

export class NetnsPair implements PairDescription {
  readonly target: NetEnd;
  readonly host: NetEnd;
  readonly rateBits: number;
  readonly #children = new Set<ChildProcess>();
  #torndown: Promise<void> | undefined;

  private constructor(target: NetEnd, host: NetEnd, rateBits: number) {
    this.target = target;
    this.host = host;
    this.rateBits = rateBits;
  }

  /**
   * Makes the pair. Throws NetnsUnavailableError when it cannot be made here; on any other
   * failure part way, what was made is removed before the error is thrown.
   */
  static async create(options: { rateBits?: number } = {}): Promise<NetnsPair> {
    const reason = netnsUnavailableReason();
    if (reason) throw new NetnsUnavailableError(reason);
    removeStaleNamespaces();
    const rateBits = options.rateBits ?? DEFAULT_RATE_BITS;
    const suffix = `${process.pid}${pairsMade++ === 0 ? '' : `-${pairsMade}`}`;
    const pair = new NetnsPair(
      { ns: `tsblk-tgt-${suffix}`, veth: 'veth-tgt', address: '10.231.0.1' },
      { ns: `tsblk-host-${suffix}`, veth: 'veth-host', address: '10.231.0.2' },
      rateBits,
    );
    const t = pair.target;
    const h = pair.host;
    const ip = (...args: string[]) => run('ip', args);
    try {
      try {
        await ip('netns', 'add', t.ns);
      } catch (err) {
        throw new NetnsUnavailableError(
          `ip netns add failed (${(err as { stderr?: string }).stderr?.trim() || String(err)}); ` +
            'network namespaces are not available here (a container without CAP_SYS_ADMIN?)',
        );
      }
      await ip('netns', 'add', h.ns);
      // Created straight inside the namespaces: the fixed veth names never clash in the root one.
      await ip('link', 'add', t.veth, 'netns', t.ns, 'type', 'veth', 'peer', 'name', h.veth, 'netns', h.ns);
      for (const end of [t, h]) {
        await ip('-n', end.ns, 'link', 'set', 'lo', 'up');
        await ip('-n', end.ns, 'addr', 'add', `${end.address}/30`, 'dev', end.veth);
        // No IPv6 link-local address: no DAD, router solicitations or MLD reports in the counters.
        await ip('-n', end.ns, 'link', 'set', 'dev', end.veth, 'addrgenmode', 'none');
        await ip('-n', end.ns, 'link', 'set', end.veth, 'up');
        await run('tc', [
          '-n',
          end.ns,
          'qdisc',
          'replace',
          'dev',
          end.veth,
          'root',
          'tbf',
          'rate',
          `${rateBits}bit`,
          'burst',
          '256kb',
          'latency',
          '10ms',
        ]);
      }
    } catch (err) {
      await pair.teardown();
      if (err instanceof NetnsUnavailableError) throw err;
      const e = err as { stderr?: string; message?: string };
      throw new Error(`setting up namespaces ${t.ns}/${h.ns}: ${e.stderr?.trim() || e.message}`, {
        cause: err,
      });
    }
    return pair;
  }

  /**
   * Makes a pair, runs fn, and tears the pair down whatever happens — also on SIGINT/SIGTERM
   * (then the process exits 130/143 once the pair is gone) and at process exit.
   */
  static async with<T>(options: { rateBits?: number }, fn: (pair: NetnsPair) => Promise<T>): Promise<T> {
    const pair = await NetnsPair.create(options);
    const onSignal = (sig: NodeJS.Signals) => {
      process.stderr.write(`\n${sig}: removing namespaces ${pair.target.ns}, ${pair.host.ns}\n`);
      void pair.teardown().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    };
    const onExit = () => pair.teardownSync();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('exit', onExit);
    try {
      return await fn(pair);
    } finally {
      await pair.teardown();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('exit', onExit);
    }
  }

  describe(): PairDescription {
    return { target: this.target, host: this.host, rateBits: this.rateBits };
  }

  /** `ip netns exec <ns of side> argv...` as a tracked child: stopped at teardown. */
  spawn(side: Side, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.#torndown) throw new Error(`namespaces ${this.target.ns}/${this.host.ns} are gone`);
    const end = side === 'target' ? this.target : this.host;
    const child = spawn('ip', ['netns', 'exec', end.ns, ...argv], { stdio: 'pipe', ...options });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    child.once('error', () => this.#children.delete(child));
    return child;
  }

  readWire(): WireSample {
    return readWire(this);
  }

  /** Sends `bytes` over one TCP connection between the namespaces; the plain-TCP check of the shaping. */
  async measureTcp(direction: 'host→target' | 'target→host', bytes = 64 * 1024 * 1024): Promise<TcpRate> {
    const [from, to]: [Side, Side] = direction === 'host→target' ? ['host', 'target'] : ['target', 'host'];
    const dest = to === 'target' ? this.target : this.host;
    const port = '5201';
    const node = process.execPath;
    const rx = this.spawn(to, [node, '--input-type=module', '-e', RECEIVER, '--', dest.address, port]);
    try {
      await waitForLine(rx, (l) => l === 'ready', `TCP receiver in ${dest.address}`);
      const result = waitForLine(rx, (l) => l.startsWith('{'), 'TCP receiver', 120_000);
      const before = this.readWire();
      const tx = this.spawn(from, [
        node,
        '--input-type=module',
        '-e',
        SENDER,
        '--',
        dest.address,
        port,
        String(bytes),
      ]);
      const [line] = await Promise.all([result, once(tx, 'exit')]);
      const d = wireDelta(before, this.readWire());
      const r = JSON.parse(line) as { bytes: number; ms: number };
      if (r.bytes !== bytes) throw new Error(`TCP probe: ${r.bytes} bytes arrived of ${bytes} sent`);
      const frames = direction === 'host→target' ? d.hostToTarget : d.targetToHost;
      return {
        direction,
        bytes,
        ms: r.ms,
        goodputBits: (bytes * 8) / (r.ms / 1000),
        frameBits: (frames.frameBytes * 8) / (r.ms / 1000),
      };
    } finally {
      rx.kill('SIGKILL');
    }
  }

  /** Stops the children started with spawn(), then deletes both namespaces (and so the veth pair). Idempotent. */
  teardown(): Promise<void> {
    this.#torndown ??= this.#teardown();
    return this.#torndown;
  }

  async #teardown(): Promise<void> {
    await Promise.all(
      [...this.#children].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit').catch(() => {});
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), TEARDOWN_KILL_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
    for (const ns of [this.target.ns, this.host.ns])
      if (nsExists(ns)) await run('ip', ['netns', 'del', ns]).catch(() => {});
  }

  /** For process exit, where nothing asynchronous runs any more: SIGKILL the children, delete the namespaces. */
  teardownSync(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    for (const ns of [this.target.ns, this.host.ns])
      if (nsExists(ns)) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}
