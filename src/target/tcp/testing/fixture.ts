// A target listening on 127.0.0.1 port 0 (an I/O listener, and a discovery listener when
// asked) for TCP tests, with one subsystem over RAM namespaces, and its teardown.

import { RamDevice } from '../../../devices/ram.js';
import type { NamespaceOptions } from '../../namespace.js';
import type { SubsystemOptions } from '../../subsystem.js';
import { Target, type TargetOptions } from '../../target.js';
import { TcpPort } from '../../port.js';
import { TcpTransport, type TcpTransportOptions } from '../transport.js';
import type { HostAddress } from './host.js';

export const TCP_TEST_NQN = 'nqn.2026-11.io.tsblk:tcp-test';

export interface TcpFixture {
  target: Target;
  transport: TcpTransport;
  io: TcpPort;
  discovery: TcpPort | undefined;
  /** Where the I/O listener is. */
  address: HostAddress;
  /** Where the discovery listener is (throws when there is none). */
  discoveryAddress: HostAddress;
  close(): Promise<void>;
}

export async function startTcpTarget(
  opts: {
    namespaces?: NamespaceOptions[];
    subsystem?: Partial<SubsystemOptions>;
    target?: TargetOptions;
    transport?: TcpTransportOptions;
    discovery?: boolean;
  } = {},
): Promise<TcpFixture> {
  const target = new Target(opts.target);
  target.addSubsystem({
    nqn: TCP_TEST_NQN,
    ...opts.subsystem,
    namespaces: opts.namespaces ?? [{ nsid: 1, device: new RamDevice({ size: 64 * 1024 * 1024 }) }],
  });
  const transport = new TcpTransport(target, opts.transport);
  const io = await TcpPort.listen(transport, { address: '127.0.0.1', port: 0 });
  const discovery = opts.discovery
    ? await TcpPort.listen(transport, { address: '127.0.0.1', port: 0, discovery: true })
    : undefined;
  return {
    target,
    transport,
    io,
    discovery,
    address: { host: '127.0.0.1', port: io.port },
    get discoveryAddress(): HostAddress {
      if (!discovery) throw new Error('no discovery listener in this fixture');
      return { host: '127.0.0.1', port: discovery.port };
    },
    async close() {
      target.shutdown();
      await Promise.all([io.close(), discovery?.close()]);
      await transport.closeAll();
    },
  };
}
