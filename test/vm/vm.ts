// Run one batch of commands inside a QEMU guest booted from Debian's 6.12 kernel: the real
// Linux peers (nvme-tcp host, nvmet-tcp target, brd, null_blk, ublk_drv, nbd, QEMU's emulated
// NVMe controller) for the interop tests. See docs/interop.md.
//
// What a user must know:
// - The guest's root is the host's / (read-only virtio-9p, tmpfs overlay: writes vanish at
//   power-off); the project directory is shared read-write at the same path (cache=none:
//   every write reaches the host at once). The host's /tmp, /run and /dev/shm are NOT seen.
// - No network device: only `lo` (127.0.0.1) inside the guest. A server to test runs there.
// - No udev: `modprobe` modules yourself (nvme, nvme-tcp, ...) and wait for /dev nodes.
// - TCG (no KVM by default: this host's KVM cannot boot the kernel): the guest is ~20x slower
//   than the host, a boot costs ~7 s. Batch many checks into one run.
// - A non-zero exit of the command is a normal result (`exitCode`); a timeout or a guest that
//   never reports a status (panic) throws a VmError with what was printed so far.
// - A guest that dies before the command starts (a rare boot crash under multi-threaded TCG)
//   is booted again, up to `bootRetries` times.
// - The vmlinux and initramfs are cached in TSBLK_VM_CACHE (default ~/.cache/tsblk-vm).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initramfsFor } from './initramfs.js';
import { pvhVmlinux } from './kernel.js';
import { checkPeers, GUEST_PATH } from './peers.js';
import { VmError } from './vm-error.js';

export { VmError, type VmErrorCode } from './vm-error.js';
export { assertPeers, checkPeers, interopSkip, type PeerCheck } from './peers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The project root (shared read-write into the guest at the same path). */
export const PROJECT_ROOT = resolve(HERE, '../..');
/** Guest-side scripts (test/vm/guest/). */
export const GUEST_DIR = join(HERE, 'guest');
const INIT_SCRIPT = join(HERE, 'init.sh');

export interface GuestOptions {
  /** argv run in the guest (PATH is the host's); exactly one of command and script */
  command?: readonly string[];
  /** a bash script's text, run with bash in the guest */
  script?: string;
  /** environment of the command (the guest starts from a clean one) */
  env?: Readonly<Record<string, string>>;
  /** working directory in the guest (default: the project root) */
  cwd?: string;
  /** guest RAM, QEMU syntax (default 2G) */
  memory?: string;
  /** vCPUs (default 2) */
  cpus?: number;
  /** kill QEMU after this long (default 600 000 ms); throws VmError 'timeout' */
  timeoutMs?: number;
  /** extra QEMU arguments, e.g. an emulated NVMe controller (see `qemuNvmeArgs`) */
  qemuArgs?: readonly string[];
  /** share the project directory read-write (default true) */
  shareProject?: boolean;
  /** more host directories shared read-write at the same path */
  rwShares?: readonly string[];
  /** 'tcg' (default, or env TSBLK_VM_ACCEL) or 'kvm' on a host whose KVM boots the kernel */
  accel?: 'tcg' | 'kvm';
  /** boots retried when the guest dies before the command starts (default 2) */
  bootRetries?: number;
  /** copy guest stdout/stderr live to this process's stderr (default: env TSBLK_VM_VERBOSE=1) */
  echo?: boolean;
  /** also the kernel console live on stderr and the QEMU command line (env TSBLK_VM_VERBOSE=2) */
  verbose?: boolean;
  /** the guest's console on this terminal (stdin too); stdout/stderr are then not captured */
  interactive?: boolean;
}

export interface GuestResult {
  /** the command's exit status */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** kernel console (ttyS0) */
  console: string;
  /** QEMU's own messages (e.g. "aio failed" from an emulated device) */
  qemuStderr: string;
  /** host time from starting QEMU to the command starting in the guest */
  bootMs: number;
  /** guest time the command ran */
  commandMs: number;
  /** host time of the whole run, QEMU exit included (the last attempt) */
  totalMs: number;
  /** boots needed (1 unless a boot crashed before the command started) */
  attempts: number;
  kernelVersion: string;
}

/** QEMU 7.2 arguments for an emulated NVMe controller with one namespace on a raw image. */
export function qemuNvmeArgs(o: {
  image: string;
  serial?: string;
  lbs?: number;
  /** copy limits (properties of nvme-ns in QEMU 7.2): blocks per range, blocks per command, ranges (0's based) */
  mssrl?: number;
  mcl?: number;
  msrc?: number;
}): string[] {
  const lbs = o.lbs ?? 512;
  const limits = [
    o.mssrl !== undefined ? `,mssrl=${o.mssrl}` : '',
    o.mcl !== undefined ? `,mcl=${o.mcl}` : '',
    o.msrc !== undefined ? `,msrc=${o.msrc}` : '',
  ].join('');
  return [
    '-drive',
    `file=${qemuEscape(o.image)},if=none,id=nvm,format=raw,cache=unsafe`,
    '-device',
    `nvme,id=nvme0,serial=${o.serial ?? 'deadbeef'}`,
    '-device',
    `nvme-ns,drive=nvm,bus=nvme0,nsid=1,logical_block_size=${lbs},physical_block_size=${lbs}${limits}`,
  ];
}

/** QEMU option values escape a comma by doubling it. */
function qemuEscape(s: string): string {
  return s.replace(/,/g, ',,');
}

/** Single-quotes `s` for bash. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function cacheDir(): string {
  const dir =
    process.env.TSBLK_VM_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tsblk-vm');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * QEMU processes still running. They die with this process: on exit, and on SIGTERM/SIGINT/
 * SIGHUP (a test runner cancelling a file), which are handled only while a guest runs and then
 * re-raised, so the process still ends the way it would have.
 */
const running = new Set<ReturnType<typeof spawn>>();
const killAll = () => {
  for (const q of running) q.kill('SIGKILL');
};
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
function onSignal(signal: NodeJS.Signals): void {
  killAll();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.kill(process.pid, signal);
}
function track(q: ReturnType<typeof spawn>): void {
  if (running.size === 0) for (const s of SIGNALS) process.on(s, onSignal);
  running.add(q);
}
function untrack(q: ReturnType<typeof spawn>): void {
  running.delete(q);
  if (running.size === 0) for (const s of SIGNALS) process.removeListener(s, onSignal);
}
process.on('exit', killAll);

/** A unix socket QEMU connects to as a chardev client; collects (and optionally echoes) bytes. */
class SocketSink {
  readonly path: string;
  private readonly server: Server;
  private readonly chunks: Buffer[] = [];
  private socket: Socket | undefined;
  private ended: Promise<void> | undefined;
  constructor(path: string, echo?: (b: Buffer) => void) {
    this.path = path;
    this.server = createServer((s) => {
      this.socket = s;
      this.ended = new Promise((res) => s.on('close', () => res()));
      s.on('data', (b: Buffer) => {
        this.chunks.push(b);
        echo?.(b);
      });
      s.on('error', () => undefined);
    });
  }
  listen(): Promise<void> {
    return new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.path, () => res());
    });
  }
  /** All bytes once QEMU has closed its end (it has exited). */
  async text(): Promise<string> {
    if (this.ended) await Promise.race([this.ended, new Promise((r) => setTimeout(r, 2000))]);
    this.socket?.destroy();
    this.server.close();
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

interface Attempt {
  exitCode: number | undefined;
  started: boolean;
  timedOut: boolean;
  qemuStatus: number | null;
  stdout: string;
  stderr: string;
  console: string;
  qemuStderr: string;
  bootMs: number;
  commandMs: number;
  totalMs: number;
}

/**
 * Boots the guest, runs `command` (or `script`) in it, powers off. Resolves with the exit
 * status and output; throws VmError 'missing-peer' | 'timeout' | 'no-exit-status'.
 */
export async function runInGuest(opts: GuestOptions): Promise<GuestResult> {
  if ((opts.command === undefined) === (opts.script === undefined)) {
    throw new Error('runInGuest: give exactly one of command and script');
  }
  const peers = checkPeers();
  if (!peers.ok || !peers.kernel) throw new VmError('missing-peer', peers.reason);
  const kernel = peers.kernel;
  const cache = cacheDir();
  const initrd = initramfsFor(kernel, INIT_SCRIPT, cache);
  const bootImage =
    process.env.TSBLK_VM_PVH === '0' ? kernel.vmlinuz : (pvhVmlinux(kernel, cache) ?? kernel.vmlinuz);

  const verboseEnv = process.env.TSBLK_VM_VERBOSE ?? '';
  const verbose = opts.verbose ?? verboseEnv === '2';
  const echo = opts.echo ?? (verboseEnv === '1' || verboseEnv === '2');
  const interactive = opts.interactive ?? false;
  const accel = opts.accel ?? (process.env.TSBLK_VM_ACCEL === 'kvm' ? 'kvm' : 'tcg');

  const tmp = mkdtempSync(join(tmpdir(), 'tsblk-vm-'));
  const ctl = join(tmp, 'ctl');
  mkdirSync(ctl);
  try {
    // the command, as a script the guest's init runs in the chroot
    const lines = [
      `export PATH=${GUEST_PATH}`,
      `export HOME=/root LANG=C.UTF-8 TSBLK_VM=1 TERM=${shellQuote(interactive ? (process.env.TERM ?? 'vt100') : 'dumb')}`,
    ];
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw new Error(`runInGuest: bad environment variable name ${k}`);
      lines.push(`export ${k}=${shellQuote(v)}`);
    }
    const shareProject = opts.shareProject ?? true;
    lines.push(`cd ${shellQuote(opts.cwd ?? (shareProject ? PROJECT_ROOT : '/'))} 2>/dev/null || cd /`);
    if (opts.script !== undefined) {
      writeFileSync(join(ctl, 'script.sh'), opts.script);
      lines.push('exec /bin/bash /run/tsblkvm/script.sh');
    } else {
      lines.push(`exec ${(opts.command ?? []).map(shellQuote).join(' ')}`);
    }
    writeFileSync(join(ctl, 'cmd.sh'), lines.join('\n') + '\n');

    const shares = [...(shareProject ? [PROJECT_ROOT] : []), ...(opts.rwShares ?? []).map((d) => resolve(d))];
    const shareArgs: string[] = [];
    shares.forEach((dir, i) => {
      if (!existsSync(dir)) throw new Error(`runInGuest: shared directory ${dir} does not exist`);
      if (dir === '/') throw new Error('runInGuest: refusing to share / read-write');
      shareArgs.push(
        '-fsdev',
        `local,id=rw${i},path=${qemuEscape(dir)},security_model=none,multidevs=remap`,
        '-device',
        `virtio-9p-pci,fsdev=rw${i},mount_tag=vmrw${i}`,
      );
    });
    writeFileSync(join(ctl, 'shares'), shares.map((d, i) => `vmrw${i} ${d}\n`).join(''));

    // lsm/audit/tsc/no_timer_check trim TCG boot time; panic/oops end a crashed guest at once
    const append = [
      'console=ttyS0 panic=-1 oops=panic mitigations=off edd=off 8250.nr_uarts=1 rdinit=/init',
      'lsm=capability audit=0 tsc=reliable no_timer_check',
      verbose ? 'loglevel=7 tsblkvm.verbose=1' : 'quiet loglevel=1',
      interactive ? 'tsblkvm.interactive=1' : '',
      'tsblkvm.rwcache=none',
    ]
      .filter(Boolean)
      .join(' ');
    const accelArgs =
      accel === 'kvm'
        ? ['-accel', 'kvm', '-cpu', 'host']
        : ['-accel', 'tcg,thread=multi,tb-size=256', '-cpu', 'max'];
    const baseArgs = [
      ...['-nodefaults', '-no-user-config', '-nic', 'none', '-display', 'none', '-no-reboot'],
      ...['-machine', 'q35', ...accelArgs, '-smp', String(opts.cpus ?? 2), '-m', opts.memory ?? '2G'],
      ...['-kernel', bootImage, '-initrd', initrd, '-append', append],
      ...['-fsdev', 'local,id=vmroot,path=/,security_model=none,readonly=on,multidevs=remap'],
      ...['-device', 'virtio-9p-pci,fsdev=vmroot,mount_tag=vmroot'],
      ...['-fsdev', `local,id=vmctl,path=${qemuEscape(ctl)},security_model=none`],
      ...['-device', 'virtio-9p-pci,fsdev=vmctl,mount_tag=vmctl'],
      ...shareArgs,
      ...['-device', 'virtio-serial-pci,id=vser'],
      ...(opts.qemuArgs ?? []),
    ];

    const retries = opts.bootRetries ?? 2;
    for (let attempt = 1; ; attempt++) {
      const a = await bootOnce(baseArgs, tmp, ctl, {
        timeoutMs: opts.timeoutMs ?? 600_000,
        echo,
        verbose,
        interactive,
      });
      const output = { stdout: a.stdout, stderr: a.stderr, console: a.console, qemuStderr: a.qemuStderr };
      if (a.timedOut) {
        throw new VmError(
          'timeout',
          `guest timed out after ${opts.timeoutMs ?? 600_000} ms (command ${a.started ? 'had started' : 'never started'})` +
            describeFailure(output),
          output,
        );
      }
      if (a.exitCode !== undefined) {
        return {
          exitCode: a.exitCode,
          ...output,
          bootMs: a.bootMs,
          commandMs: a.commandMs,
          totalMs: a.totalMs,
          attempts: attempt,
          kernelVersion: kernel.version,
        };
      }
      // A crashed boot powers off (panic=-1, -no-reboot: QEMU exits 0); a QEMU that refuses
      // its arguments exits 1 at once, and booting again would not help.
      if (!a.started && a.qemuStatus === 0 && attempt <= retries) {
        const sig = /Oops[^\n]*|BUG:[^\n]*|Kernel panic[^\n]*|general protection[^\n]*/.exec(a.console)?.[0];
        process.stderr.write(
          `tsblk-vm: guest died before the command started${sig ? ` (${sig.trim()})` : ''}; booting again (${attempt}/${retries})\n`,
        );
        continue;
      }
      throw new VmError(
        'no-exit-status',
        `guest did not report an exit status (QEMU exit ${a.qemuStatus}); the command ${a.started ? 'had started' : 'never started'}` +
          describeFailure(output),
        output,
      );
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function describeFailure(o: { stdout: string; stderr: string; console: string; qemuStderr: string }): string {
  const tail = (s: string, n: number) => s.replace(/\r/g, '').trimEnd().split('\n').slice(-n).join('\n');
  let msg = '';
  if (o.qemuStderr.trim()) msg += `\n--- QEMU:\n${tail(o.qemuStderr, 10)}`;
  if (o.stdout.trim()) msg += `\n--- guest stdout (last lines):\n${tail(o.stdout, 20)}`;
  if (o.stderr.trim()) msg += `\n--- guest stderr (last lines):\n${tail(o.stderr, 20)}`;
  if (o.console.trim()) msg += `\n--- kernel console (last lines):\n${tail(o.console, 40)}`;
  return msg;
}

async function bootOnce(
  baseArgs: string[],
  tmp: string,
  ctl: string,
  o: { timeoutMs: number; echo: boolean; verbose: boolean; interactive: boolean },
): Promise<Attempt> {
  for (const f of ['started', 'finished', 'exit_code']) rmSync(join(ctl, f), { force: true });
  const toStderr = (b: Buffer) => void process.stderr.write(b);
  const out = new SocketSink(join(tmp, 'out.sock'), o.echo ? toStderr : undefined);
  const err = new SocketSink(join(tmp, 'err.sock'), o.echo ? toStderr : undefined);
  const con = new SocketSink(join(tmp, 'con.sock'), o.verbose ? toStderr : undefined);
  const sinks = o.interactive ? [con] : [out, err, con];
  for (const s of sinks) {
    rmSync(s.path, { force: true });
    await s.listen();
  }
  const args = [...baseArgs, '-chardev', `socket,id=kcon,path=${con.path}`, '-serial', 'chardev:kcon'];
  if (o.interactive) {
    args.push('-chardev', 'stdio,id=io,signal=off', '-device', 'virtconsole,chardev=io,bus=vser.0');
  } else {
    args.push(
      ...['-chardev', `socket,id=out,path=${out.path}`, '-device', 'virtconsole,chardev=out,bus=vser.0'],
      ...['-chardev', `socket,id=err,path=${err.path}`, '-device', 'virtconsole,chardev=err,bus=vser.0'],
    );
  }
  if (o.verbose) process.stderr.write(`tsblk-vm: qemu-system-x86_64 ${args.join(' ')}\n`);

  const t0 = performance.now();
  let tStarted = 0;
  const q = spawn('qemu-system-x86_64', args, {
    stdio: o.interactive ? 'inherit' : ['ignore', 'ignore', 'pipe'],
  });
  track(q);
  const qemuErr: Buffer[] = [];
  q.stderr?.on('data', (b: Buffer) => {
    qemuErr.push(b);
    if (o.echo) toStderr(b);
  });
  let timedOut = false;
  const poll = setInterval(() => {
    if (!tStarted && existsSync(join(ctl, 'started'))) tStarted = performance.now();
  }, 100);
  const timer = setTimeout(() => {
    timedOut = true;
    q.kill('SIGTERM');
    setTimeout(() => q.kill('SIGKILL'), 5000).unref();
  }, o.timeoutMs);
  const qemuStatus = await new Promise<number | null>((res) => {
    q.on('error', (e) => {
      qemuErr.push(Buffer.from(`cannot start qemu-system-x86_64: ${e.message}\n`));
      res(null);
    });
    q.on('close', (code, signal) => res(code ?? (signal ? 128 : null)));
  });
  const t1 = performance.now();
  clearTimeout(timer);
  clearInterval(poll);
  untrack(q);

  const read = (f: string) => {
    try {
      return readFileSync(join(ctl, f), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const started = read('started');
  const finished = read('finished');
  const code = read('exit_code');
  if (started && !tStarted) tStarted = t1;
  const [stdout, stderr, consoleText] = await Promise.all([
    o.interactive ? '' : out.text(),
    o.interactive ? '' : err.text(),
    con.text(),
  ]);
  return {
    exitCode: code !== undefined && /^\d+$/.test(code) ? Number(code) : undefined,
    started: started !== undefined,
    timedOut,
    qemuStatus,
    stdout,
    stderr,
    console: consoleText,
    qemuStderr: Buffer.concat(qemuErr).toString('utf8'),
    bootMs: tStarted ? tStarted - t0 : t1 - t0,
    commandMs: started && finished ? Math.round((Number(finished) - Number(started)) * 1000) : 0,
    totalMs: t1 - t0,
  };
}

/** Absolute path of a guest script in test/vm/guest/. */
export function guestScript(name: string): string {
  return join(GUEST_DIR, name);
}
