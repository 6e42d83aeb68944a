// `tsblk serve [config.json]`: runs the NVMe/TCP target, the NBD server and a config's ublk
// devices until SIGINT or SIGTERM (what `npm start` runs). Without a config it serves one
// subsystem over a 1 GiB RAM namespace on 127.0.0.1:4420 with discovery on 127.0.0.1:8009,
// the same device as NBD export ram0 (and the default export) on 127.0.0.1:10809, and prints
// the nvme-cli lines and NBD URIs to use. docs/serve.md has the details.
//
//   --listen ADDR:PORT            I/O listener (repeatable); replaces the config's or the default
//   --discovery-listen ADDR:PORT  discovery listener (repeatable); likewise
//   --no-discovery                no discovery listener
//   --nbd-listen ADDR:PORT|PATH   NBD listener (repeatable; a PATH with a '/' is a unix socket);
//                                 replaces the config's or the default
//   --no-nbd                      no NBD server
//   -v, --verbose                 log connections and transport errors to stderr
//
// IPv6 addresses go in brackets: --listen [::1]:4420. Port 0 picks a free port (printed).
// The first SIGINT/SIGTERM shuts down gracefully (exit 0, or 1 if a device failed to flush
// or close); a second one exits at once with 130. A config's ublk devices (/dev/ublkbN) are
// stopped and deleted first on the graceful path; the forced exit skips that (`tsblk ublk
// list` / `del N` clean up what the kernel keeps).

import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { NbdListenConfig } from '../server/config-nbd.js';
import { formatSize } from '../server/size.js';
import { formatHostPort } from '../target/port.js';
import { loadConfig } from '../server/config.js';
import { Server, type ListenAddress } from '../server/serve.js';
import type { Namespace } from '../target/namespace.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError } from './errors.js';
import type { CliIo } from './output.js';

/** Parses "127.0.0.1:4420" or "[::1]:4420". */
export function parseListenAddress(text: string, option: string): ListenAddress {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const bad = (why: string): never => {
    throw new UsageError(
      `${option} ${text}: ${why}; expected ADDRESS:PORT, e.g. 127.0.0.1:4420 or [::1]:4420`,
    );
  };
  if (!m) return bad('not an address and port');
  const address = m[1]!;
  const port = Number(m[2]);
  const family = isIP(address);
  if (family === 0) bad(`"${address}" is not an IPv4 or IPv6 address`);
  if (family === 6 && !text.startsWith('[')) bad('put an IPv6 address in brackets');
  if (!Number.isInteger(port) || port > 65535) bad(`port ${m[2]} is not 0..65535`);
  return { address, port };
}

/** An NBD listener: ADDRESS:PORT, or a unix socket path (anything with a '/'). */
export function parseNbdListen(text: string, option: string): NbdListenConfig {
  if (text.includes('/')) return { path: resolve(text) };
  return parseListenAddress(text, option);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function describeNamespace(ns: Namespace): string {
  const dev = ns.device;
  const l = ns.copyLimits;
  const copy = ns.copyOffload ? 'copy offload' : 'copy emulated';
  return (
    `namespace ${ns.nsid}: ${dev.name} (${dev.kind}, ${formatSize(dev.size)}, ${ns.blockSize}-byte blocks` +
    `${ns.readOnly ? ', read-only' : ''}), ${copy}: MSSRL ${l.mssrl}, MCL ${l.mcl}, MSRC ${l.msrc}`
  );
}

interface ServeCliOptions {
  listen: string[];
  discoveryListen: string[];
  discovery: boolean;
  nbdListen: string[];
  nbd: boolean;
  verbose?: boolean;
}

/** Runs the daemon until a signal; returns the exit code. */
export async function serve(
  configFile: string | undefined,
  opts: ServeCliOptions,
  io: CliIo,
): Promise<number> {
  const listen = opts.listen.map((t) => parseListenAddress(t, '--listen'));
  const discoveryListen = opts.discoveryListen.map((t) => parseListenAddress(t, '--discovery-listen'));
  if (!opts.discovery && discoveryListen.length)
    throw new UsageError('--no-discovery and --discovery-listen contradict each other');
  const nbdListen = opts.nbdListen.map((t) => parseNbdListen(t, '--nbd-listen'));
  if (!opts.nbd && nbdListen.length) throw new UsageError('--no-nbd and --nbd-listen contradict each other');
  const config = configFile === undefined ? undefined : await loadConfig(configFile);
  const log = opts.verbose ? (line: string) => void io.stderr.write(`tsblk serve: ${line}\n`) : undefined;
  const server = await Server.start({
    ...(config ? { config } : {}),
    listen,
    discoveryListen,
    discovery: opts.discovery,
    nbdListen,
    nbd: opts.nbd,
    transport: log ? { log } : {},
    ...(log ? { nbdLog: (line: string) => log(`nbd: ${line}`) } : {}),
  });

  const out = io.stdout;
  const what = [
    server.listeners.length ? 'NVMe/TCP target' : '',
    server.nbd ? 'NBD server' : '',
    server.ublk.length ? 'ublk devices' : '',
  ]
    .filter(Boolean)
    .join(' and ');
  out.write(`tsblk serve: ${what} running (pid ${process.pid})${config ? ` from ${configFile}` : ''}\n`);
  for (const s of server.subsystems) {
    const access = s.allowAnyHost ? 'any host' : `hosts ${s.hosts.join(', ')}`;
    out.write(`  subsystem ${s.nqn} (${access})\n`);
    for (const ns of s.namespaces) out.write(`    ${describeNamespace(ns)}\n`);
  }
  for (const l of server.listeners)
    out.write(
      `  listening on ${Server.formatListener(l)}: ${l.kind === 'io' ? 'I/O' : 'discovery'}, port ID ${l.portid}\n`,
    );
  if (server.nbd) {
    for (const e of server.nbd.exports) {
      const isDefault = server.nbd.defaultExport === e && e.name !== '';
      const ro = e.readOnly || e.device.limits.readOnly;
      out.write(
        `  NBD export ${JSON.stringify(e.name)}${isDefault ? ' (default)' : ''}: ${e.device.name} (${e.device.kind}, ${formatSize(e.device.size)}${ro ? ', read-only' : ''})\n`,
      );
    }
    const tls = server.nbd.tls;
    for (const l of server.nbdListeners)
      out.write(
        `  listening on ${l.address.path ?? formatHostPort(l.address.host!, l.address.port!)}: NBD${tls ? (tls.required ? ', TLS required' : ', TLS optional') : ''}\n`,
      );
  }
  for (const u of server.ublk)
    out.write(
      `  ublk device ${u.devId}: ${u.blockPath} over ${u.device.name} (${u.device.kind}, ${formatSize(u.device.size)}), ${u.queues.length} queue(s) x ${u.queues[0]?.depth ?? 0} tags\n`,
    );
  const commands = server.connectCommands();
  if (commands.length) {
    out.write('connect a Linux host with:\n');
    for (const line of commands) out.write(`  ${line}\n`);
  }
  if (server.nbd) {
    out.write('NBD clients (nbdinfo, qemu-img, nbdcopy) use:\n');
    for (const l of server.nbdListeners) for (const uri of l.uris) out.write(`  ${uri}\n`);
  }
  out.write('stop with Ctrl-C (SIGINT) or SIGTERM\n');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  const force = () => {
    io.stderr.write('tsblk serve: second signal: exiting without finishing the shutdown\n');
    process.exit(EXIT_INTERRUPTED);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    out.write(`tsblk serve: ${signal}: shutting down\n`);
    const report = await server.close();
    for (const name of report.flushed) out.write(`  flushed ${name}\n`);
    for (const e of report.errors) io.stderr.write(`tsblk serve: ${e}\n`);
    out.write(`tsblk serve: stopped${report.errors.length ? ' with errors' : ''}\n`);
    return report.errors.length ? EXIT_FAILURE : EXIT_OK;
  } finally {
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

export function registerServe(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('serve')
    .description(
      'run the NVMe/TCP target and NBD server (default: one 1 GiB RAM namespace on 127.0.0.1:4420, discovery on 127.0.0.1:8009, the same device over NBD on 127.0.0.1:10809)',
    )
    .argument('[config]', 'JSON config with devices, subsystems, ports and nbd (docs/config.md)')
    .option(
      '--listen <addr:port>',
      'I/O listener, repeatable; replaces the config or default ones',
      collect,
      [],
    )
    .option(
      '--discovery-listen <addr:port>',
      'discovery listener, repeatable; replaces the config or default ones',
      collect,
      [],
    )
    .option('--no-discovery', 'no discovery listener')
    .option(
      '--nbd-listen <addr:port|path>',
      'NBD listener, repeatable (a path with a "/" is a unix socket); replaces the config or default ones',
      collect,
      [],
    )
    .option('--no-nbd', 'no NBD server')
    .option('-v, --verbose', 'log connections and transport errors to stderr')
    .action(async (config: string | undefined, opts: ServeCliOptions) =>
      setExit(await serve(config, opts, io)),
    );
}
