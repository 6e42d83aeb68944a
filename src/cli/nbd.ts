// `tsblk nbd <device>`: serves one device over NBD until SIGINT or SIGTERM (docs/nbd.md).
//
//   --listen ADDR:PORT     TCP listener (default 127.0.0.1:10809; port 0 picks a free one)
//   --socket PATH          a unix socket instead
//   --name NAME            export name (default: the device's name)
//   --description TEXT     shown by nbdinfo / NBD_INFO_DESCRIPTION
//   --read-only            refuse writes (READ_ONLY flag)
//   --no-multi-conn        do not advertise CAN_MULTI_CONN
//   --tls-cert F --tls-key F [--tls-ca F] [--tls required|optional] [--tls-verify-client]
//
// Decisions: the export is reachable under its name AND as the default export '', so both
// `nbd://127.0.0.1:10809/NAME` and `nbd://127.0.0.1:10809` work (qemu-nbd serves '' by
// default, libnbd and qemu-img ask for '' when the URI has no path). The first stdout line is
// the URI with the real bound port (scripts read it); `nbds://` when TLS is required. With
// certificates, TLS is required unless `--tls optional`. On the first signal: close the
// server (running requests finish, up to 10 s), flush the device, close it, exit 0 (1 if the
// flush or close failed); a second signal exits 130 at once.

import type { Command } from 'commander';
import type { BlockDevice } from '../block/device.js';
import { NBD_DEFAULT_PORT } from '../export/nbd/protocol.js';
import { NbdServer, type NbdListenAddress } from '../export/nbd/server.js';
import { formatNbdUri } from '../export/nbd/uri.js';
import { withDevices } from './device-args.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError } from './errors.js';
import { formatSize, type CliIo } from './output.js';
import { parseListenAddress } from './serve.js';

interface NbdCliOptions {
  config?: string;
  listen?: string;
  socket?: string;
  name?: string;
  description?: string;
  readOnly?: boolean;
  multiConn: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tls?: string;
  tlsVerifyClient?: boolean;
  verbose?: boolean;
}

interface TlsChoice {
  cert: string;
  key: string;
  ca?: string;
  required: boolean;
  verifyClient: boolean;
}

/** Checks the option combinations (usage errors, exit 2) before anything is opened. */
export function checkNbdOptions(opts: NbdCliOptions): { address: NbdListenAddress; tls?: TlsChoice } {
  if (opts.listen !== undefined && opts.socket !== undefined)
    throw new UsageError('--listen and --socket contradict each other; give one');
  let address: NbdListenAddress;
  if (opts.socket !== undefined) {
    if (opts.socket === '') throw new UsageError('--socket needs a path');
    address = { path: opts.socket };
  } else {
    const l = parseListenAddress(opts.listen ?? `127.0.0.1:${NBD_DEFAULT_PORT}`, '--listen');
    address = { host: l.address, port: l.port };
  }
  if (opts.tls !== undefined && opts.tls !== 'required' && opts.tls !== 'optional')
    throw new UsageError(`--tls ${opts.tls}: expected required or optional`);
  const anyTls =
    opts.tls !== undefined || opts.tlsCa !== undefined || opts.tlsVerifyClient || opts.tlsCert || opts.tlsKey;
  if (!anyTls) return { address };
  if (opts.tlsCert === undefined || opts.tlsKey === undefined)
    throw new UsageError('TLS needs both --tls-cert FILE and --tls-key FILE');
  if (opts.tlsVerifyClient && opts.tlsCa === undefined)
    throw new UsageError('--tls-verify-client needs --tls-ca FILE to check client certificates against');
  return {
    address,
    tls: {
      cert: opts.tlsCert,
      key: opts.tlsKey,
      ...(opts.tlsCa === undefined ? {} : { ca: opts.tlsCa }),
      required: opts.tls !== 'optional',
      verifyClient: opts.tlsVerifyClient ?? false,
    },
  };
}

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

async function serveDevice(
  device: BlockDevice,
  opts: NbdCliOptions,
  checked: ReturnType<typeof checkNbdOptions>,
  io: CliIo,
): Promise<number> {
  const name = opts.name ?? device.name;
  const log = opts.verbose ? (line: string) => void io.stderr.write(`tsblk nbd: ${line}\n`) : undefined;
  const server = new NbdServer({
    exports: [
      {
        name,
        device,
        readOnly: opts.readOnly ?? false,
        multiConn: opts.multiConn,
        ...(opts.description === undefined ? {} : { description: opts.description }),
      },
    ],
    defaultExport: name,
    ...(checked.tls ? { tls: checked.tls } : {}),
    ...(log ? { log } : {}),
  });
  let bound;
  try {
    bound = await server.listen(checked.address);
  } catch (err) {
    await server.close(0);
    throw err;
  }
  const at = bound.path !== undefined ? { path: bound.path } : { host: bound.host!, port: bound.port! };
  const tlsRequired = checked.tls?.required ?? false;
  const out = io.stdout;
  const ro = opts.readOnly || device.limits.readOnly;
  out.write(`${formatNbdUri(at, name, tlsRequired)}\n`);
  out.write(
    `  export ${JSON.stringify(name)}: ${device.name} (${device.kind}), size ${device.size} bytes (${formatSize(device.size)})` +
      `${ro ? ', read-only' : ''}${opts.multiConn ? '' : ', no multi-conn'}` +
      `${checked.tls ? (tlsRequired ? ', TLS required' : ', TLS optional') : ''}\n`,
  );
  if (name !== '') out.write(`  also the default export: ${formatNbdUri(at, '', tlsRequired)}\n`);
  out.write('stop with Ctrl-C (SIGINT) or SIGTERM\n');

  const signal = await waitForSignal();
  const force = () => {
    io.stderr.write('tsblk nbd: second signal: exiting without finishing the shutdown\n');
    process.exit(EXIT_INTERRUPTED);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    out.write(`tsblk nbd: ${signal}: shutting down\n`);
    await server.close();
    if (!device.limits.readOnly) {
      try {
        await device.flush();
        out.write(`  flushed ${device.name}\n`);
      } catch (err) {
        io.stderr.write(`tsblk nbd: flushing ${device.name}: ${(err as Error).message}\n`);
        return EXIT_FAILURE;
      }
    }
    return EXIT_OK;
  } finally {
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

export function registerNbd(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('nbd')
    .description('serve one device over NBD (default 127.0.0.1:10809) until SIGINT or SIGTERM')
    .argument(
      '<device>',
      'an inline spec (ram:1G, file:PATH[,options], nvme-tcp://...) or a device name from --config',
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--listen <addr:port>', 'TCP address (default 127.0.0.1:10809; port 0 picks a free port)')
    .option('--socket <path>', 'listen on a unix socket instead of TCP')
    .option('--name <name>', "export name (default: the device's name); also served as the default export")
    .option('--description <text>', 'export description (nbdinfo shows it)')
    .option('--read-only', 'refuse writes')
    .option('--no-multi-conn', 'do not advertise CAN_MULTI_CONN')
    .option('--tls-cert <file>', 'TLS server certificate (PEM)')
    .option('--tls-key <file>', 'TLS private key (PEM, unencrypted)')
    .option('--tls-ca <file>', 'CA certificate(s) for client certificates (PEM)')
    .option('--tls <mode>', 'required (default with certificates) or optional')
    .option('--tls-verify-client', 'require a client certificate signed by --tls-ca')
    .option('-v, --verbose', 'log connections to stderr')
    .action(async (spec: string, opts: NbdCliOptions) => {
      const checked = checkNbdOptions(opts);
      const code = await withDevices(opts.config, async (set) =>
        serveDevice(await set.open(spec), opts, checked, io),
      );
      setExit(code);
    });
}
