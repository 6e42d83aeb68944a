// The `tsblk` command line. One file per command (dev-info.ts, copy.ts, demo.ts, serve.ts, nbd.ts,
// and the NVMe host commands discover.ts, connect.ts, id-ctrl.ts, id-ns.ts);
// this file wires them into a commander program and maps errors to exit codes:
// 0 success, 1 failure (`tsblk: <message>` on stderr), 2 usage error, 130 interrupted copy.
//
// `run(argv, io)` runs one command line in-process (tests use it with buffers); running this
// file directly (`node --import tsx src/cli/main.ts ...`, or dist/cli/main.js through
// bin/tsblk.js) runs process.argv and sets process.exitCode.
//
// Devices are named by inline spec (`ram:1G`, `null:1T`, `file:/path[,size=1G,create,...]`,
// `nvme-tcp://HOST:PORT/SUBNQN/NSID`, see src/server/device-spec.ts) or by name from a JSON config given with --config
// (docs/config.md).

import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { registerConnect } from './connect.js';
import { registerCopy } from './copy.js';
import { registerDemo } from './demo.js';
import { registerDevInfo } from './dev-info.js';
import { registerDiscover } from './discover.js';
import { EXIT_OK, EXIT_USAGE, reportError } from './errors.js';
import { registerIdCtrl } from './id-ctrl.js';
import { registerIdNs } from './id-ns.js';
import { registerNbd } from './nbd.js';
import type { CliIo } from './output.js';
import { registerServe } from './serve.js';
import { registerUblk } from './ublk.js';

function packageVersion(): string {
  try {
    // src/cli/main.ts and dist/cli/main.js both sit two levels below the package root.
    return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const HELP_AFTER = `
Devices (every command that takes one):
  ram:SIZE[,OPTS]    sparse RAM device       e.g. ram:1G, ram:64M,lbs=4096,copy=off,ro
  null:SIZE[,OPTS]   stores nothing          e.g. null:1T
  file:PATH[,OPTS]   file or block device    e.g. file:/tmp/a.img,size=1G,create
  nvme-tcp://HOST[:PORT]/SUBNQN/NSID[?hostnqn=NQN&hdgst&ddgst&queues=N&name=NAME]
                     a remote NVMe/TCP namespace (docs/nvme-host.md)
  NAME               a device from --config FILE (docs/config.md)
  OPTS: name=, lbs=, pbs=, max-transfer=, ro, copy=on|off, copy-max=, copy-max-hw=,
        copy-max-ranges=, copy-max-range=; file also size=, create
  An unnamed ram: or null: spec is a new device at each use; add name= to share one.
Sizes: 512, 4k, 1M, 1G, 1T, 1MiB (binary units)
Exit codes: 0 success, 1 failure, 2 usage error, 130 copy interrupted
`;

/** Builds the program; `setExit` records the exit code a command decided on. */
export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('tsblk')
    .description('userspace block storage with copy offload: devices, mappings, copies')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: (s, write) => write(s.replace(/^error: /, 'tsblk: ')),
    })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', HELP_AFTER);
  const dev = program.command('dev').description('inspect devices');
  registerDevInfo(dev, io);
  registerCopy(program, io, setExit);
  registerDemo(program, io, setExit);
  registerServe(program, io, setExit);
  registerNbd(program, io, setExit);
  registerUblk(program, io, setExit);
  registerDiscover(program, io);
  registerConnect(program, io);
  registerIdCtrl(program, io);
  registerIdNs(program, io);
  return program;
}

/** Runs one tsblk command line (without the node and script arguments); resolves with the exit code. */
export async function run(
  argv: readonly string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let code = EXIT_OK;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // commander printed the message already (through outputError or the help).
      return EXIT_USAGE;
    }
    return reportError(err, io.stderr);
  }
}

/** True when this module is the program node started, not an import. */
function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (invokedDirectly()) process.exitCode = await run(process.argv.slice(2));
