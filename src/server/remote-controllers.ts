// The NVMe/TCP controller associations a DeviceSet (or a host command) opens: one per
// (address, subsystem NQN, host NQN), shared by every namespace reached through it, so two
// namespaces of one controller can copy between each other (cross-namespace Copy) and a
// command that opens five namespaces opens one association, as `nvme connect` does.
//
// - The first spec for an association decides its options (digests, I/O queues). A later spec
//   that asks for a different value explicitly is an error rather than silently getting the
//   first one's; a spec that leaves an option out takes what the association has.
// - A failed connect becomes a HostError whose message names the address, the subsystem NQN,
//   the host NQN and what went wrong (the target's status for a refused Connect), so the CLI
//   prints one line, never a stack trace.
// - disconnectAll() disconnects every association opened here (orderly: CC.SHN, then the
//   queues), after the devices on them are closed.
// - The host library is loaded on first use, so commands on local devices do not load it.

import type { ControllerOptions, NvmeController } from '../host/controller.js';
import { HostError } from '../host/errors.js';
import { ConfigError } from './config-error.js';
import { connectionKey, formatAddress, type NvmeTcpConnection } from './nvme-tcp-spec.js';

/** Options of ControllerOptions a caller may add (timeouts, mostly for tests). */
export type ExtraControllerOptions = Omit<
  ControllerOptions,
  'address' | 'subnqn' | 'hostnqn' | 'headerDigest' | 'dataDigest' | 'ioQueues'
>;

/** "nqn.x at 127.0.0.1:4420 (host NQN nqn.y)": how messages name an association. */
export function describeConnection(c: NvmeTcpConnection & { hostnqn: string }): string {
  return `${c.subnqn} at ${formatAddress(c.address)} (host NQN ${c.hostnqn})`;
}

/**
 * Opens one association, with a HostError naming it when that fails. `extra` adds controller
 * options (timeouts) the spec cannot express.
 */
export async function connectController(
  c: NvmeTcpConnection,
  extra: ExtraControllerOptions = {},
): Promise<NvmeController> {
  const hostnqn = c.hostnqn ?? (await import('../host/host-nqn.js')).defaultHostNqn();
  const { NvmeController } = await import('../host/controller.js');
  try {
    return await NvmeController.connect({
      ...extra,
      address: { host: c.address.host, port: c.address.port },
      subnqn: c.subnqn,
      hostnqn,
      ...(c.headerDigest !== undefined ? { headerDigest: c.headerDigest } : {}),
      ...(c.dataDigest !== undefined ? { dataDigest: c.dataDigest } : {}),
      ...(c.ioQueues !== undefined ? { ioQueues: c.ioQueues } : {}),
    });
  } catch (err) {
    throw withContext(err, `cannot connect to ${describeConnection({ ...c, hostnqn })}`, c);
  }
}

/**
 * A HostError from the host library with `context` in front (other errors unchanged). The
 * library's own mention of the address and NQN is dropped, so the message names them once:
 * "cannot connect to NQN at ADDR (host NQN H): connect ECONNREFUSED 127.0.0.1:4420".
 */
export function withContext(
  err: unknown,
  context: string,
  c: { address: { host: string; port: number }; subnqn: string },
): unknown {
  if (!HostError.is(err)) return err;
  const hostPort = `${c.address.host}:${c.address.port}`;
  let message = err.message;
  for (const prefix of [`cannot connect to ${hostPort}: `, `${c.subnqn}@${hostPort}: `])
    if (message.startsWith(prefix)) message = message.slice(prefix.length);
  message = message.replace(`Connect to ${c.subnqn} at ${hostPort} `, 'Connect ');
  return new HostError(err.code, `${context}: ${message}`, {
    ...(err.status !== undefined ? { status: err.status } : {}),
    cause: err,
  });
}

interface Entry {
  readonly controller: Promise<NvmeController>;
  /** The options the association was opened with, as the first spec gave them. */
  readonly options: NvmeTcpConnection;
  readonly where: string;
}

const OPTION_NAMES = {
  headerDigest: 'header digest (hdgst)',
  dataDigest: 'data digest (ddgst)',
  ioQueues: 'I/O queues (queues)',
} as const;

export class ControllerPool {
  readonly #entries = new Map<string, Entry>();
  readonly #extra: ExtraControllerOptions;

  constructor(extra: ExtraControllerOptions = {}) {
    this.#extra = extra;
  }

  /** The controllers connected so far (failed connects are not listed). */
  async controllers(): Promise<NvmeController[]> {
    const settled = await Promise.allSettled([...this.#entries.values()].map((e) => e.controller));
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  }

  /**
   * The association for `c`, connecting it on first use. `where` names the spec or config
   * entry in errors about conflicting options.
   */
  async get(c: NvmeTcpConnection, where: string): Promise<NvmeController> {
    const resolved = { ...c, hostnqn: c.hostnqn ?? (await import('../host/host-nqn.js')).defaultHostNqn() };
    const key = connectionKey(resolved);
    const entry = this.#entries.get(key);
    if (entry) {
      for (const k of Object.keys(OPTION_NAMES) as Array<keyof typeof OPTION_NAMES>) {
        const want = c[k];
        if (want !== undefined && want !== entry.options[k])
          throw new ConfigError(
            where,
            `${OPTION_NAMES[k]} ${String(want)} conflicts with ${entry.where}, which opened the association to ` +
              `${describeConnection(resolved)} with ${String(entry.options[k] ?? 'the default')}; ` +
              'namespaces of one controller share one association, so give the same options (or leave them out)',
          );
      }
      return entry.controller;
    }
    const controller = connectController(resolved, this.#extra);
    // A failed connect is not kept: the next open tries again (and reports its own error).
    controller.catch(() => {
      if (this.#entries.get(key)?.controller === controller) this.#entries.delete(key);
    });
    this.#entries.set(key, { controller, options: c, where });
    return controller;
  }

  /** Disconnects every association; throws the first failure after trying all. */
  async disconnectAll(): Promise<void> {
    const all = await this.controllers();
    this.#entries.clear();
    let first: unknown;
    for (const c of all.reverse()) {
      try {
        await c.disconnect();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}
