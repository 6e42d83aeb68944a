// What the NVMe host commands (connect, id-ctrl, id-ns) accept as "which controller": an
// address with --nqn, an nvme-tcp:// URL (of a namespace, or of a controller without /NSID),
// or the name of an nvme-tcp device in --config. Options given on the command line (--hostnqn,
// digests, queues) override the ones in the URL or config entry.

import type { NvmeController } from '../host/controller.js';
import type { Config } from '../server/config.js';
import { ConfigError } from '../server/config-error.js';
import { checkDeviceName, INLINE_KINDS } from '../server/device-spec.js';
import {
  checkNqnAt,
  NVME_TCP_SCHEME,
  parseAddress,
  parseNvmeTcpUrl,
  type NvmeTcpConnection,
} from '../server/nvme-tcp-spec.js';
import { connectController, type ExtraControllerOptions } from '../server/remote-controllers.js';
import { NVME_TCP_IO_PORT } from '../target/port.js';
import { UsageError } from './errors.js';

export interface ConnectionArgs {
  nqn?: string;
  hostnqn?: string;
  hdrDigest?: boolean;
  dataDigest?: boolean;
  nrIoQueues?: number;
}

export interface NvmeTarget {
  connection: NvmeTcpConnection;
  /** The namespace the argument names, when it names one. */
  nsid?: number;
}

const USAGE =
  'HOST[:PORT] --nqn SUBNQN, nvme-tcp://HOST[:PORT]/SUBNQN[/NSID] or an nvme-tcp device from --config';

/**
 * Resolves the controller (and namespace) a host command is pointed at. `command` names the
 * command in messages.
 */
export function resolveNvmeTarget(
  arg: string,
  opts: ConnectionArgs,
  config: Config | undefined,
  command: string,
): NvmeTarget {
  let target: NvmeTarget;
  const spec = config?.devices.get(arg);
  if (spec) {
    if (spec.type !== 'nvme-tcp')
      throw new UsageError(
        `${command}: "${arg}" is a ${spec.type} device, not an NVMe/TCP namespace; give ${USAGE}`,
      );
    const { type: _t, name: _n, nsid, ...connection } = spec;
    target = { connection, nsid };
  } else if (arg.startsWith(NVME_TCP_SCHEME)) {
    target = parseTargetUrl(arg);
  } else {
    const kind = arg.slice(0, arg.indexOf(':'));
    if ((INLINE_KINDS as readonly string[]).includes(kind))
      throw new UsageError(
        `${command}: "${arg}" is a ${kind} device, not an NVMe/TCP controller; give ${USAGE}`,
      );
    if (opts.nqn === undefined)
      throw new UsageError(
        config && !arg.includes(':') && !arg.includes('.')
          ? `${command}: unknown device "${arg}"; give ${USAGE}`
          : `${command}: which subsystem? give --nqn SUBNQN with an address (${USAGE})`,
      );
    target = { connection: { address: parseAddress(arg, NVME_TCP_IO_PORT, `address "${arg}"`), subnqn: '' } };
  }
  const c = target.connection;
  if (opts.nqn !== undefined) c.subnqn = checkNqnAt(opts.nqn, 'subsystem NQN', '--nqn');
  if (opts.hostnqn !== undefined) c.hostnqn = checkNqnAt(opts.hostnqn, 'host NQN', '--hostnqn');
  if (opts.hdrDigest) c.headerDigest = true;
  if (opts.dataDigest) c.dataDigest = true;
  if (opts.nrIoQueues !== undefined) c.ioQueues = opts.nrIoQueues;
  return target;
}

/** A namespace URL, or a controller URL (the path is then all NQN). */
function parseTargetUrl(text: string): NvmeTarget {
  const where = `"${text}"`;
  const q = text.indexOf('?');
  const body = q < 0 ? text : text.slice(0, q);
  // nvme-tcp://HOST/SUBNQN without /NSID: a controller. The last segment of a namespace URL
  // is all digits; an NQN never ends that way in practice (it ends in a name or a UUID).
  const tail = body.slice(body.lastIndexOf('/') + 1);
  const segments = body.slice(NVME_TCP_SCHEME.length).split('/').length;
  const hasNsid = /^\d+$/.test(tail) && segments > 2;
  if (hasNsid) {
    const { type: _t, name: _n, nsid, ...connection } = parseNvmeTcpUrl(text, where, checkDeviceName);
    return { connection, nsid };
  }
  // Parse it as a namespace of NSID 1 and drop the NSID: one grammar, one set of messages
  // (a URL without even a path goes as it is, for the "missing /SUBNQN" message).
  const withNsid = segments < 2 ? text : q < 0 ? `${body}/1` : `${body}/1${text.slice(q)}`;
  try {
    const { type: _t, name: _n, nsid: _s, ...connection } = parseNvmeTcpUrl(withNsid, where, checkDeviceName);
    return { connection };
  } catch (err) {
    if (ConfigError.is(err)) throw new ConfigError(where, err.detail.replace(/\/NSID/g, '[/NSID]'));
    throw err;
  }
}

/** Commander parser for a positive count option. */
export function countArg(what: string, max = 65535) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max)
      throw new UsageError(`${what} "${text}": expected 1..${max}`);
    return Number(text);
  };
}

/**
 * Connects to the controller of `target`, runs `fn`, and always disconnects (also when `fn`
 * fails). Connect failures are HostErrors naming the address, the NQN and the cause.
 */
export async function withController<T>(
  target: NvmeTarget,
  fn: (controller: NvmeController) => Promise<T>,
  extra: ExtraControllerOptions = {},
): Promise<T> {
  const controller = await connectController(target.connection, extra);
  let result: T;
  try {
    result = await fn(controller);
  } catch (err) {
    await controller.disconnect().catch(() => {});
    throw err;
  }
  await controller.disconnect();
  return result;
}
