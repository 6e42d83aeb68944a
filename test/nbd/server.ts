// Starts the NBD server under test for the loopback interop tests: tsblk's NbdServer, in this
// process, on 127.0.0.1 with a port the kernel picks (never a fixed port), over devices the
// test builds (so it can write a pattern straight into a device and read a peer's writes
// back from it). Also starts nbdkit's memory plugin as a reference server for cross-checks.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import type { BlockDevice } from '../../src/block/device.js';
import type { NbdExport } from '../../src/export/nbd/export.js';
import { NbdServer, type NbdServerOptions } from '../../src/export/nbd/server.js';
import { PEER_ENV } from './peers.js';

export interface TestExport {
  name: string;
  description?: string;
  device: BlockDevice;
  readOnly?: boolean;
  multiConn?: boolean;
}

/** Requests the server completed, by command name ('READ', 'BLOCK_STATUS', ...). */
export interface RequestTally {
  /** requests, successful or not */
  count: Record<string, number>;
  /** bytes covered by successful requests (0 for FLUSH, CACHE and BLOCK_STATUS) */
  bytes: Record<string, number>;
  /** failed requests */
  errors: number;
}

export interface RunningNbd {
  readonly server: NbdServer;
  /** What the server did since the last resetTally(): lets a test prove a client skipped holes. */
  readonly tally: RequestTally;
  resetTally(): void;
  readonly host: string;
  readonly port: number;
  /** nbd://127.0.0.1:PORT/NAME (nbds:// with `tls`), with an optional query (no leading '?'). */
  uri(name?: string, options?: { tls?: boolean; query?: string }): string;
  close(): Promise<void>;
}

/** Percent-encodes an export name for an NBD URI path (the URI spec libnbd and qemu follow). */
function uriName(name: string): string {
  return name
    .split('')
    .map((c) => (/[A-Za-z0-9._~-]/.test(c) ? c : encodeURIComponent(c)))
    .join('');
}

export async function startTsblkNbd(
  exports: readonly TestExport[],
  options: Omit<NbdServerOptions, 'exports'> = {},
): Promise<RunningNbd> {
  const exps: NbdExport[] = exports.map((e) => ({
    name: e.name,
    ...(e.description !== undefined ? { description: e.description } : {}),
    device: e.device,
    readOnly: e.readOnly ?? false,
    multiConn: e.multiConn ?? true,
  }));
  let tally: RequestTally = { count: {}, bytes: {}, errors: 0 };
  const onRequest = options.transmission?.onRequest;
  const server = new NbdServer({
    ...options,
    exports: exps,
    transmission: {
      ...options.transmission,
      onRequest: (r) => {
        tally.count[r.op] = (tally.count[r.op] ?? 0) + 1;
        if (r.error === 0) tally.bytes[r.op] = (tally.bytes[r.op] ?? 0) + r.bytes;
        else tally.errors++;
        onRequest?.(r);
      },
    },
  });
  const addr = await server.listen({ host: '127.0.0.1', port: 0 });
  if (!addr.port) throw new Error(`NbdServer.listen returned no port: ${JSON.stringify(addr)}`);
  const host = '127.0.0.1';
  const port = addr.port;
  return {
    server,
    get tally() {
      return tally;
    },
    resetTally: () => {
      tally = { count: {}, bytes: {}, errors: 0 };
    },
    host,
    port,
    uri: (name = '', o = {}) =>
      `${o.tls ? 'nbds' : 'nbd'}://${host}:${port}/${uriName(name)}${o.query ? `?${o.query}` : ''}`,
    close: () => server.close(2000),
  };
}

export interface RunningNbdkit {
  uri(): string;
  close(): Promise<void>;
}

/**
 * nbdkit's memory plugin (a sparse RAM disk with 32 KiB pages), the reference server for
 * cross-checks. It listens on a Unix socket in a fresh directory (no port to pick), stays in
 * the foreground as our child and dies with us (--exit-with-parent).
 */
export async function startNbdkitMemory(size: string): Promise<RunningNbdkit> {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-nbdkit-'));
  const sock = join(dir, 'sock');
  const child = spawn('nbdkit', ['-f', '-U', sock, '--exit-with-parent', 'memory', size], {
    env: PEER_ENV,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (existsSync(sock)) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nbdkit memory ${size} did not listen on ${sock}: ${stderr}`);
    }
    const failed = await Promise.race([spawnError, delay(20).then(() => undefined)]);
    if (failed) throw new Error(`nbdkit: ${failed.message}`);
  }
  return {
    uri: () => `nbd+unix:///?socket=${sock}`,
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
