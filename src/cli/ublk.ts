// `tsblk ublk add|list|del`: a device as a Linux block device /dev/ublkbN (docs/ublk.md).
//
//   tsblk ublk add <device> [--queues N] [--depth D] [--id N]   serve until SIGINT/SIGTERM
//   tsblk ublk list [--json]                                    the ublk devices present
//   tsblk ublk del <id> [--timeout S]                           STOP_DEV + DEL_DEV
//   tsblk ublk add <device> --recoverable; tsblk ublk recover <id> <device>   user recovery
//
// Decisions:
// - `add` is a foreground server, like `tsblk nbd`: the first stdout line is the block device
//   (`/dev/ublkb0`, scripts read it), the second its size. On the first signal: STOP_DEV
//   (/dev/ublkbN goes once the requests in flight finish), queues stopped, DEL_DEV, the device
//   flushed and closed, exit 0 (1 if any of that failed); a second signal exits 130 at once,
//   leaving the ublk device behind for `tsblk ublk del`. A signal during the start is held
//   until the device is live, then handled the same way, so a normal exit leaves no
//   /dev/ublkb* or /dev/ublkc*.
// - Stopped from outside (`tsblk ublk del`, or another tool's STOP_DEV): the kernel aborts
//   every fetched tag; the server sees that, stops its queues, closes /dev/ublkcN, deletes the
//   device if still needed, flushes, and exits 0. A queue failure exits 1 the same way.
// - `del` on a device whose server still runs: STOP_DEV first (/dev/ublkbN is removed, the
//   server's requests are aborted), then waits (--timeout, default 10 s) for the server to
//   exit, since DEL_DEV blocks until /dev/ublkcN is closed. A tsblk server exits by itself;
//   a server that keeps /dev/ublkcN open past the timeout gets a one-line error (EBUSY, exit 1)
//   naming its pid, and the device is left stopped but not deleted. A device whose server is
//   gone (killed) is deleted at once.
// - A machine without ublk (no /dev/ublk-control, no access to it, or an addon without
//   io_uring) gets one line saying why (`modprobe ublk_drv`, rebuild the addon), exit 1; the
//   check runs before any device is opened. Option errors are usage errors (exit 2).

import { accessSync, constants, existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import type { Command } from 'commander';
import type { BlockDevice } from '../block/device.js';
import { UBLK_CONTROL_PATH, UblkControl } from '../export/ublk/control.js';
import { UblkExport, ublkUnavailable } from '../export/ublk/device.js';
import { UblkError } from '../export/ublk/errors.js';
import {
  featureNames,
  ParamBasic,
  Params,
  toS32,
  UBLK_MAX_NR_QUEUES,
  UBLK_MAX_QUEUE_DEPTH,
  UBLK_PARAM_TYPE,
  UBLK_S_DEV,
} from '../export/ublk/uapi.js';
import { withDevices } from './device-args.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError } from './errors.js';
import { formatSize, table, writeJson, type CliIo } from './output.js';

/**
 * Where `add ram:SIZE --recoverable` keeps the RAM: a sparse file on tmpfs, which outlives the
 * server process (RAM inside it would not), named after the ublk device id once it has one.
 */
export function ublkRamDir(): string {
  return process.env.TSBLK_UBLK_RAM_DIR ?? '/dev/shm';
}

export function recoverableRamPath(id: number, dir = ublkRamDir()): string {
  return join(dir, `tsblk-ublk-${id}.img`);
}

/** `ram:SIZE` (and nothing else) → its size text; undefined for any other spec. */
export function plainRamSize(spec: string): string | undefined {
  return /^ram:([0-9]+[KMGT]?i?B?)$/i.exec(spec)?.[1];
}

/** The kernel's limit on device ids (UBLK_MAX_UBLKS = 1 << MINORBITS). */
export const UBLK_MAX_DEV_ID = (1 << 20) - 1;
const DEFAULT_DEL_TIMEOUT_S = 10;
/** How often a running server looks for tags the kernel aborted (a stop from outside). */
const ABORT_POLL_MS = 200;

interface AddCliOptions {
  config?: string;
  queues?: string;
  depth?: string;
  id?: string;
  recoverable?: boolean;
}

export interface UblkAddChoice {
  queues: number;
  depth: number;
  devId?: number;
  recoverable?: boolean;
}

/** A whole number in [min, max], or a usage error naming the option. */
export function parseCount(text: string, what: string, min: number, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`${what} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  return n;
}

/** Checks `add`'s options (usage errors, exit 2) before anything is opened. */
export function checkUblkAddOptions(opts: AddCliOptions): UblkAddChoice {
  return {
    queues: opts.queues === undefined ? 1 : parseCount(opts.queues, '--queues', 1, UBLK_MAX_NR_QUEUES),
    depth: opts.depth === undefined ? 64 : parseCount(opts.depth, '--depth', 1, UBLK_MAX_QUEUE_DEPTH),
    ...(opts.id === undefined ? {} : { devId: parseCount(opts.id, '--id', 0, UBLK_MAX_DEV_ID) }),
    ...(opts.recoverable ? { recoverable: true } : {}),
  };
}

/** Throws the one-line reason this machine cannot run ublk (exit 1), before opening anything. */
export function requireUblk(): void {
  const why = ublkUnavailable();
  if (why) throw new UblkError('ENOTSUP', `ublk is not available here: ${why}`);
  try {
    accessSync(UBLK_CONTROL_PATH, constants.R_OK | constants.W_OK);
  } catch {
    throw new UblkError(
      'EACCES',
      `ublk needs read-write access to ${UBLK_CONTROL_PATH} (run as root, or with CAP_SYS_ADMIN)`,
    );
  }
}

// ---- add ----

type End = { kind: 'signal'; signal: NodeJS.Signals } | { kind: 'external' } | { kind: 'error'; err: Error };

/**
 * Watches for the end of serving: SIGINT/SIGTERM (installed at once, so a signal during the
 * start is held, not fatal), a queue error, or the kernel aborting tags (a stop from outside).
 */
class EndWatch {
  private end: End | undefined;
  private wake: ((e: End) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onSignal = (signal: NodeJS.Signals) => this.finish({ kind: 'signal', signal });

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  finish(e: End): void {
    if (this.end) return;
    this.end = e;
    this.wake?.(e);
  }

  /** Resolves with how serving `exp` ended. */
  wait(exp: UblkExport): Promise<End> {
    const aborted = () => exp.queues.some((q) => q.stats.aborted > 0);
    this.timer = setInterval(() => {
      if (aborted()) this.finish({ kind: 'external' });
    }, ABORT_POLL_MS);
    return new Promise<End>((resolve) => {
      this.wake = resolve;
      if (this.end) resolve(this.end);
    }).then((e) => {
      // A queue error caused by the device going away is the outside stop, not a failure.
      return e.kind === 'error' && aborted() ? { kind: 'external' } : e;
    });
  }

  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

function stoppedFromOutside(err: unknown): boolean {
  return err instanceof UblkError && err.code === 'ENODEV';
}

/** How serve gets its device: a new one (add), or a dead server's (recover). */
type Attach = (onError: (err: UblkError) => void) => Promise<UblkExport>;

function addAttach(device: BlockDevice, choice: UblkAddChoice): Attach {
  return (onError) =>
    UblkExport.start(device, {
      queues: choice.queues,
      depth: choice.depth,
      ...(choice.devId === undefined ? {} : { devId: choice.devId }),
      ...(choice.recoverable ? { recoverable: true } : {}),
      onError,
    });
}

async function serveUblk(device: BlockDevice, attach: Attach, io: CliIo): Promise<number> {
  const out = io.stdout;
  const say = (line: string) => void io.stderr.write(`tsblk ublk: ${line}\n`);
  const watch = new EndWatch();
  let exp: UblkExport;
  try {
    exp = await attach((err) => watch.finish({ kind: 'error', err }));
  } catch (err) {
    watch.dispose();
    throw err;
  }
  const ro = device.limits.readOnly;
  out.write(`${exp.blockPath}\n`);
  out.write(
    `  size ${device.size} bytes (${formatSize(device.size)}), ${device.limits.logicalBlockSize}-byte blocks${ro ? ', read-only' : ''}\n`,
  );
  out.write(
    `  ublk device ${exp.devId} (${exp.charPath}, server pid ${process.pid}): ${device.name} (${device.kind}), ` +
      `${exp.queues.length} queues x ${exp.queues[0]?.depth ?? 0} tags, flags 0x${exp.flags.toString(16)} (${featureNames(exp.flags).join(' ')})` +
      `${exp.queues[0]?.threadCopies ? ', data copied by the queue threads' : ''}\n`,
  );
  out.write('stop with Ctrl-C (SIGINT), SIGTERM or tsblk ublk del\n');

  let end: End;
  try {
    end = await watch.wait(exp);
  } finally {
    watch.dispose();
  }
  const force = () => {
    io.stderr.write('tsblk ublk: second signal: exiting without finishing the shutdown\n');
    process.exit(EXIT_INTERRUPTED);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    let code = EXIT_OK;
    if (end.kind === 'signal') out.write(`tsblk ublk: ${end.signal}: stopping ${exp.blockPath}\n`);
    else if (end.kind === 'external')
      out.write(`tsblk ublk: ${exp.blockPath} was stopped from outside: shutting down\n`);
    else {
      say(`${end.err.message}; stopping ${exp.blockPath}`);
      code = EXIT_FAILURE;
    }
    try {
      await exp.stop();
    } catch (err) {
      // After a stop from outside, the other side may have deleted the device first.
      if (!(end.kind === 'external' && stoppedFromOutside(err))) {
        say(`stopping ublk device ${exp.devId}: ${(err as Error).message}`);
        code = EXIT_FAILURE;
      }
    }
    const sum = (k: 'served' | 'failed' | 'aborted') => exp.queues.reduce((a, q) => a + q.stats[k], 0);
    out.write(
      `tsblk ublk: stopped ublk device ${exp.devId}: served=${sum('served')} failed=${sum('failed')} aborted=${sum('aborted')}\n`,
    );
    if (!ro) {
      try {
        await device.flush();
        out.write(`  flushed ${device.name}\n`);
      } catch (err) {
        say(`flushing ${device.name}: ${(err as Error).message}`);
        code = EXIT_FAILURE;
      }
    }
    return code;
  } finally {
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

// ---- list ----

/** The ids of the ublk devices present: /sys/class/ublk-char/ublkcN, else /dev/ublkcN. */
export function ublkDeviceIds(sysDir = '/sys/class/ublk-char', devDir = '/dev'): number[] {
  const ids = new Set<number>();
  for (const dir of [sysDir, devDir]) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const m = /^ublkc(\d+)$/.exec(n);
      if (m) ids.add(Number(m[1]));
    }
  }
  return [...ids].sort((a, b) => a - b);
}

/** True while `pid` runs (a zombie, already exited but not reaped, counts as gone). */
export function processRunning(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) STATE ...: comm may hold spaces and parentheses, so take the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export interface UblkDeviceEntry {
  id: number;
  /** live, dead, quiesced, fail_io (or `state N`). */
  state: string;
  queues: number;
  depth: number;
  maxIoBufBytes: number;
  /** Bytes, from the basic parameters; null before SET_PARAMS. */
  size: number | null;
  /** ublksrv_pid: the server START_DEV named (ADD_DEV's before that); null when the kernel cleared it. */
  pid: number | null;
  serverRunning: boolean;
  flags: string[];
  blockDevice: string | null;
  charDevice: string;
}

export function stateName(state: number): string {
  const e = Object.entries(UBLK_S_DEV).find(([, v]) => v === state);
  return e ? e[0].toLowerCase() : `state ${state}`;
}

async function deviceSize(ctrl: UblkControl, id: number): Promise<number | null> {
  const basicEnd = Params.offsetOf('basic') + ParamBasic.SIZE;
  const buf = Buffer.alloc(basicEnd);
  buf.writeUInt32LE(basicEnd, Params.offsetOf('len'));
  try {
    await ctrl.getParams(id, buf);
  } catch {
    return null;
  }
  const types = buf.readUInt32LE(Params.offsetOf('types'));
  if ((types & UBLK_PARAM_TYPE.BASIC) === 0) return null;
  return Number(ParamBasic.decode(buf, Params.offsetOf('basic')).dev_sectors) * 512;
}

async function listDevices(ctrl: UblkControl): Promise<UblkDeviceEntry[]> {
  const list: UblkDeviceEntry[] = [];
  for (const id of ublkDeviceIds()) {
    let info;
    try {
      info = await ctrl.getDevInfo(id);
    } catch (err) {
      if (stoppedFromOutside(err)) continue; // deleted since the directory was read
      throw err;
    }
    const pid = toS32(info.ublksrv_pid);
    const block = `/dev/ublkb${id}`;
    list.push({
      id,
      state: stateName(info.state),
      queues: info.nr_hw_queues,
      depth: info.queue_depth,
      maxIoBufBytes: info.max_io_buf_bytes,
      size: await deviceSize(ctrl, id),
      pid: pid > 0 ? pid : null,
      serverRunning: processRunning(pid),
      flags: featureNames(info.flags),
      blockDevice: existsSync(block) ? block : null,
      charDevice: `/dev/ublkc${id}`,
    });
  }
  return list;
}

export function formatUblkList(list: readonly UblkDeviceEntry[]): string {
  if (list.length === 0) return 'no ublk devices\n';
  const rows: (string | number)[][] = [['ID', 'STATE', 'QUEUES', 'DEPTH', 'SIZE', 'PID', 'BLOCK']];
  for (const d of list)
    rows.push([
      d.id,
      d.state,
      d.queues,
      d.depth,
      d.size === null ? '-' : formatSize(d.size),
      d.pid === null ? '-' : `${d.pid}${d.serverRunning ? '' : ' (gone)'}`,
      d.blockDevice ?? '-',
    ]);
  return `${table(rows)}\n`;
}

// ---- del ----

async function deleteDevice(id: number, timeoutS: number, io: CliIo): Promise<void> {
  const out = io.stdout;
  const ctrl = UblkControl.open();
  let info;
  try {
    info = await ctrl.getDevInfo(id);
  } catch (err) {
    if (stoppedFromOutside(err))
      throw new UblkError('ENODEV', `no ublk device ${id} (tsblk ublk list shows the ones present)`);
    throw err;
  }
  // Read before STOP_DEV, which clears it.
  const pid = toS32(info.ublksrv_pid);
  await ctrl.stopDev(id);
  out.write(`stopped ublk device ${id}: /dev/ublkb${id} removed\n`);
  if (pid !== process.pid && processRunning(pid)) {
    out.write(`  waiting up to ${timeoutS} s for its server (pid ${pid}) to close /dev/ublkc${id}\n`);
    const until = Date.now() + timeoutS * 1000;
    while (processRunning(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    if (processRunning(pid))
      throw new UblkError(
        'EBUSY',
        `ublk device ${id} is stopped, but its server (pid ${pid}) still holds /dev/ublkc${id} ` +
          `and DEL_DEV would wait for it: stop that process (kill ${pid}), then run tsblk ublk del ${id} again`,
      );
  }
  try {
    await ctrl.delDev(id);
  } catch (err) {
    if (!stoppedFromOutside(err)) throw err;
    out.write(`deleted ublk device ${id} (its server deleted it on exit)\n`);
    return;
  }
  out.write(`deleted ublk device ${id}\n`);
}

// ---- commander ----

export function registerUblk(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const ublk = program
    .command('ublk')
    .description('Linux block devices (/dev/ublkbN) served by tsblk through ublk_drv and io_uring');
  ublk
    .command('add')
    .description('serve a device as /dev/ublkbN until SIGINT, SIGTERM or tsblk ublk del')
    .argument(
      '<device>',
      'an inline spec (ram:1G, file:PATH[,options], nvme-tcp://...) or a device name from --config',
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--queues <n>', 'hardware queues, a thread each (default 1)')
    .option('--depth <d>', 'requests in flight per queue (default 64)')
    .option('--id <n>', 'ask for device id N (/dev/ublkbN; default: the first free one)')
    .option(
      '--recoverable',
      'if this server dies, the device waits (quiesced) for tsblk ublk recover instead of going away',
    )
    .action(async (spec: string, opts: AddCliOptions) => {
      const choice = checkUblkAddOptions(opts);
      // A recoverable RAM device lives in a tmpfs file, so a new server can take it over.
      const ramSize = choice.recoverable ? plainRamSize(spec) : undefined;
      if (choice.recoverable && spec.startsWith('ram:') && ramSize === undefined)
        throw new UsageError(
          `--recoverable takes ram:SIZE without options (it becomes a file in ${ublkRamDir()}); for more, use file:PATH on a tmpfs`,
        );
      requireUblk();
      let ramFile: string | undefined;
      if (ramSize !== undefined) {
        if (!existsSync(ublkRamDir()))
          throw new UblkError(
            'ENOENT',
            `--recoverable ram: needs ${ublkRamDir()} (a tmpfs; or set TSBLK_UBLK_RAM_DIR)`,
          );
        ramFile = join(ublkRamDir(), `tsblk-ublk-new-${process.pid}.img`);
        rmSync(ramFile, { force: true });
      }
      const openSpec = ramFile ? `file:${ramFile},size=${ramSize},create` : spec;
      try {
        const code = await withDevices(opts.config, async (set) => {
          const device = await set.open(openSpec);
          const attach = addAttach(device, choice);
          return serveUblk(
            device,
            async (onError) => {
              const exp = await attach(onError);
              if (ramFile) {
                const named = recoverableRamPath(exp.devId);
                renameSync(ramFile, named);
                ramFile = named;
                io.stderr.write(
                  `tsblk ublk: RAM in ${named}; after a crash: tsblk ublk recover ${exp.devId}\n`,
                );
              }
              return exp;
            },
            io,
          );
        });
        setExit(code);
      } finally {
        // The device is gone (or never came): so is its RAM. A forced exit never gets here.
        if (ramFile) rmSync(ramFile, { force: true });
      }
    });
  ublk
    .command('recover')
    .description('take over recoverable ublk device <id> whose server died, serving <device> (the same data)')
    .argument('<id>', 'the device id (N of /dev/ublkcN)')
    .argument(
      '[device]',
      `the device the dead server served (the same file: spec); default: the RAM file of add ram:SIZE --recoverable (${recoverableRamPath(0).replace('-0.', '-<id>.')})`,
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--timeout <s>', 'seconds to wait for the kernel to quiesce the device (default 10)')
    .action(async (idText: string, spec: string | undefined, opts: { config?: string; timeout?: string }) => {
      const id = parseCount(idText, 'device id', 0, UBLK_MAX_DEV_ID);
      const timeoutS = opts.timeout === undefined ? 10 : parseCount(opts.timeout, '--timeout', 0, 3600);
      requireUblk();
      const ramFile = spec === undefined ? recoverableRamPath(id) : undefined;
      if (ramFile && !existsSync(ramFile))
        throw new UblkError(
          'ENOENT',
          `no device given and no RAM file ${ramFile} (from tsblk ublk add ram:SIZE --recoverable): name the device the dead server served`,
        );
      const code = await withDevices(opts.config, async (set) => {
        const device = await set.open(ramFile ? `file:${ramFile}` : spec!);
        return serveUblk(
          device,
          (onError) => UblkExport.recover(id, device, { onError, timeoutMs: timeoutS * 1000 }),
          io,
        );
      });
      // Served to the end (the device is deleted): its RAM goes too.
      if (ramFile) rmSync(ramFile, { force: true });
      setExit(code);
    });
  ublk
    .command('list')
    .description('the ublk devices present: id, state, queues, depth, size, server pid')
    .option('--json', 'one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      requireUblk();
      const list = await listDevices(UblkControl.open());
      if (opts.json) writeJson(io.stdout, { devices: list });
      else io.stdout.write(formatUblkList(list));
    });
  ublk
    .command('del')
    .description('stop and delete ublk device <id> (its running server, if any, is stopped)')
    .argument('<id>', 'the device id (N of /dev/ublkcN)')
    .option(
      '--timeout <s>',
      `seconds to wait for a running server to exit (default ${DEFAULT_DEL_TIMEOUT_S})`,
    )
    .action(async (idText: string, opts: { timeout?: string }) => {
      const id = parseCount(idText, 'device id', 0, UBLK_MAX_DEV_ID);
      const timeoutS =
        opts.timeout === undefined ? DEFAULT_DEL_TIMEOUT_S : parseCount(opts.timeout, '--timeout', 0, 3600);
      requireUblk();
      await deleteDevice(id, timeoutS, io);
    });
}
