// TCP listeners of the target (nvmet's ports with trtype tcp): each listener is one address and
// TCP port, registered with the Target as one port record so the discovery log page lists it.
//
// - Addresses are IPv4 or IPv6 literals ("127.0.0.1", "::1", "0.0.0.0"); the port record's
//   TRADDR is the address as given and TRSVCID the port actually bound (port 0 picks a free
//   one, for tests).
// - An I/O listener exposes every subsystem of the target, or only `subsystems` when listed;
//   NVMe/TCP's conventional I/O port is 4420. A discovery listener (`discovery: true`,
//   conventionally port 8009) exposes no NVM subsystem: hosts reach only the discovery
//   controller there, whose log page lists the I/O listeners. (The discovery controller is
//   also reachable on every I/O listener, as with nvmet.)
// - Port IDs are the caller's, or the lowest free one from 1.
// - close(): stops accepting, removes the port record (which deletes the controllers that
//   connected through this port, closing their connections on every port) and closes the
//   remaining connections that arrived here; resolves when all of them are gone.

import { createServer, isIP, type Server, type Socket } from 'node:net';
import { BlockError, ErrorCode } from '../block/errors.js';
import type { PortRecord } from './target.js';
import type { TcpQueue } from './tcp/queue.js';
import type { TcpTransport } from './tcp/transport.js';

export const NVME_TCP_IO_PORT = 4420;
export const NVME_TCP_DISCOVERY_PORT = 8009;
/** Pending connections the kernel queues per listener (NVMET_TCP_BACKLOG). */
export const TCP_LISTEN_BACKLOG = 128;

export interface TcpPortOptions {
  /** IPv4 or IPv6 literal to listen on. */
  address: string;
  /** TCP port; 0 = any free port. */
  port: number;
  /** Port ID in the discovery log; default the lowest free one from 1. */
  portid?: number;
  /** A discovery listener: no NVM subsystem is reachable through it. */
  discovery?: boolean;
  /** NQNs of the subsystems this I/O listener exposes; default all. */
  subsystems?: readonly string[];
  /** TREQ of the discovery log entry; default 0. */
  treq?: number;
}

export type TcpPortKind = 'io' | 'discovery';

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, msg);
}

/** "127.0.0.1:4420" or "[::1]:4420". */
export function formatHostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

export class TcpPort {
  readonly transport: TcpTransport;
  readonly record: PortRecord;
  readonly kind: TcpPortKind;
  readonly #server: Server;
  #closing: Promise<void> | undefined;

  private constructor(transport: TcpTransport, server: Server, record: PortRecord, kind: TcpPortKind) {
    this.transport = transport;
    this.#server = server;
    this.record = record;
    this.kind = kind;
  }

  /** Starts listening and registers the port record. Rejects when the address cannot be bound. */
  static async listen(transport: TcpTransport, options: TcpPortOptions): Promise<TcpPort> {
    const { address, port } = options;
    const family = isIP(address);
    if (family === 0)
      invalid(`listen address "${address}" must be an IPv4 or IPv6 literal (e.g. 127.0.0.1, ::1)`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) invalid(`TCP port ${port} must be 0..65535`);
    if (options.discovery && options.subsystems)
      invalid(
        `a discovery listener exposes no subsystems; drop "subsystems" from ${formatHostPort(address, port)}`,
      );
    const target = transport.target;
    const portid = options.portid ?? nextPortid(target.ports.map((p) => p.portid));

    let self: TcpPort | undefined;
    const server = createServer((socket: Socket) => {
      if (self === undefined || self.#closing) socket.destroy();
      else transport.accept(socket, self.record.portid);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const e = new Error(
          `cannot listen on ${formatHostPort(address, port)}: ${err.message}`,
        ) as NodeJS.ErrnoException;
        if (err.code !== undefined) e.code = err.code;
        reject(e);
      });
      server.listen({ host: address, port, backlog: TCP_LISTEN_BACKLOG }, () => resolve());
    });
    server.on('error', (err) => transport.log(`listener ${formatHostPort(address, port)}: ${err.message}`));
    const bound = server.address();
    const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
    const record: PortRecord = {
      portid,
      trtype: 'tcp',
      adrfam: family === 6 ? 'ipv6' : 'ipv4',
      traddr: address,
      trsvcid: String(boundPort),
      ...(options.treq === undefined ? {} : { treq: options.treq }),
      ...(options.discovery
        ? { subsystems: [] }
        : options.subsystems
          ? { subsystems: [...options.subsystems] }
          : {}),
    };
    try {
      self = new TcpPort(transport, server, target.addPort(record), options.discovery ? 'discovery' : 'io');
    } catch (err) {
      server.close();
      throw err;
    }
    transport.log(`listening on ${self} (${self.kind}, port ID ${portid})`);
    return self;
  }

  get portid(): number {
    return this.record.portid;
  }

  get address(): string {
    return this.record.traddr;
  }

  /** The TCP port bound. */
  get port(): number {
    return Number(this.record.trsvcid);
  }

  /** True until close() is called. */
  get listening(): boolean {
    return this.#closing === undefined;
  }

  /** Open connections that arrived on this listener. */
  get connections(): TcpQueue[] {
    return this.transport.connectionsOn(this.portid);
  }

  toString(): string {
    return formatHostPort(this.address, this.port);
  }

  /** Stops accepting and closes this port's connections; resolves when they are gone. */
  close(reason = `port ${this} closed`): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      this.transport.target.removePort(this.portid);
      const left = this.connections;
      for (const c of left) c.close(reason);
      await Promise.all([stopped, ...left.map((c) => c.closed)]);
      this.transport.log(`stopped listening on ${this}`);
    })();
    return this.#closing;
  }
}

function nextPortid(used: readonly number[]): number {
  const taken = new Set(used);
  for (let id = 1; id <= 0xffff; id++) if (!taken.has(id)) return id;
  return invalid('no free port ID (65535 ports in use)');
}
