// By hand: run a command in the interop guest, or get a root shell there.
//
//   node --import tsx test/vm/run.ts [options] [-- CMD [ARGS...]]
//
// With no CMD (or with --shell) the guest's console is this terminal: a root shell (exit to
// power off). Exit status: CMD's; 124 timeout; 125 harness failure (missing peer, panic).

import { runInGuest, VmError, type GuestOptions } from './vm.js';

const USAGE = `usage: node --import tsx test/vm/run.ts [options] [-- CMD [ARGS...]]
  -i, --shell          interactive root shell on this terminal (default when no CMD)
  --mem SIZE           guest RAM (default 2G)
  --cpus N             vCPUs (default 2)
  --timeout SEC        kill the guest after SEC seconds (default 600; 0, and shells: a day)
  --env NAME=VALUE     environment of CMD (repeatable)
  --rw DIR             share host DIR read-write at the same path (repeatable)
  --no-project         do not share the project directory
  --qemu-args "ARGS"   extra QEMU arguments, split on whitespace
  --nvme IMAGE[,mssrl=N,mcl=N,msrc=N,lbs=N]  QEMU's emulated NVMe controller on a raw image
  -v, --verbose        kernel console and QEMU command line on stderr
  -q, --quiet          do not echo guest output live (it is printed at the end)
`;

function parse(argv: string[]): GuestOptions & { timeoutSec: number } {
  const o: GuestOptions & { timeoutSec: number } = { timeoutSec: -1, echo: true };
  const env: Record<string, string> = {};
  const rw: string[] = [];
  const qemu: string[] = [];
  let shell = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--') {
      o.command = argv.slice(i + 1);
      break;
    } else if (a === '-i' || a === '--shell') shell = true;
    else if (a === '--mem') o.memory = next();
    else if (a === '--cpus') o.cpus = Number(next());
    else if (a === '--timeout') o.timeoutSec = Number(next());
    else if (a === '--env') {
      const kv = next();
      const eq = kv.indexOf('=');
      if (eq < 1) throw new Error(`--env wants NAME=VALUE, got ${kv}`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === '--rw') rw.push(next());
    else if (a === '--no-project') o.shareProject = false;
    else if (a === '--qemu-args') qemu.push(...next().split(/\s+/).filter(Boolean));
    else if (a === '--nvme') {
      const [image, ...props] = next().split(',');
      qemu.push(
        '-drive',
        `file=${image},if=none,id=nvm,format=raw,cache=unsafe`,
        '-device',
        'nvme,id=nvme0,serial=deadbeef',
        '-device',
        `nvme-ns,drive=nvm,bus=nvme0,nsid=1${props.map((p) => (p.startsWith('lbs=') ? `,logical_block_size=${p.slice(4)},physical_block_size=${p.slice(4)}` : `,${p}`)).join('')}`,
      );
    } else if (a === '-v' || a === '--verbose') o.verbose = true;
    else if (a === '-q' || a === '--quiet') o.echo = false;
    else if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (shell || !o.command || o.command.length === 0) {
    o.interactive = true;
    o.command = o.command && o.command.length > 0 ? o.command : ['bash', '-l'];
  }
  // a shell waits for a person: no timeout unless asked
  if (o.timeoutSec < 0) o.timeoutSec = o.interactive ? 0 : 600;
  o.env = env;
  o.rwShares = rw;
  o.qemuArgs = qemu;
  return o;
}

let opts: ReturnType<typeof parse>;
try {
  opts = parse(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`run: ${(e as Error).message}\n${USAGE}`);
  process.exit(2);
}
try {
  const timeoutMs = (opts.timeoutSec > 0 ? opts.timeoutSec : 86_400) * 1000;
  const r = await runInGuest({ ...opts, timeoutMs });
  if (!opts.interactive && !opts.echo) {
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
  }
  process.stderr.write(
    `run: exit ${r.exitCode}; boot ${(r.bootMs / 1000).toFixed(1)} s, command ${(r.commandMs / 1000).toFixed(1)} s, ` +
      `total ${(r.totalMs / 1000).toFixed(1)} s (kernel ${r.kernelVersion}${r.attempts > 1 ? `, ${r.attempts} boots` : ''})\n`,
  );
  process.exitCode = r.exitCode;
} catch (e) {
  process.stderr.write(`run: ${(e as Error).message}\n`);
  process.exitCode = e instanceof VmError && e.code === 'timeout' ? 124 : 125;
}
