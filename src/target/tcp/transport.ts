// The NVMe/TCP transport of the target: the TransportOps the core talks to (nvmet_tcp_ops),
// shared by every connection of one Target. Each accepted socket becomes a TcpQueue
// (queue.ts); listeners (../port.ts) hand sockets to accept().
//
// Sizes, and why (all overridable through TcpTransportOptions):
// - In-capsule data: 16 KiB on I/O queues (IOCCSZ = 4 + 16384/16 = 1028), nvmet's
//   NVMET_TCP_DEF_INLINE_DATA_SIZE (4 × PAGE_SIZE); 8 KiB on the admin queue, fixed, because
//   the Linux host puts up to NVME_TCP_ADMIN_CCSZ (8 KiB) in admin capsules without asking.
// - Largest command (the transport's MDTS limit): 4 MiB, the cap nvmet-tcp puts on every SGL
//   (NVMET_TCP_MAXH2CDATA). The controller's MDTS is the smaller of this and the target's
//   maxDataTransferBytes (1 MiB by default).
// - MAXH2CDATA announced in ICResp: nvmet's 4 MiB, lowered to the MDTS. Each R2T asks for at
//   most MAXH2CDATA bytes, so with the defaults one R2T moves a whole command (as with nvmet),
//   and no H2CData PDU can be larger than a command could be — the parser buffers at most
//   that much for one PDU.
// - C2HData PDUs carry at most 128 KiB each (SPDK's NVMF_TCP_PDU_MAX_C2H_DATA_SIZE; nvmet
//   sends one PDU per command): long reads interleave with other commands' responses.
// - Outstanding R2Ts per command: what the host asked for in ICReq (MAXR2T + 1), at most 16.
// - A data digest mismatch fails that command with Transient Transport Error (0x22, retryable),
//   as SPDK's target does; `dataDigestError: 'close'` closes the connection instead, as
//   Linux nvmet does.

import type { Socket } from 'node:net';
import { NVME_TCP_ADMIN_CCSZ, NVME_TCP_MIN_MAXH2CDATA, NVMET_TCP_MAXH2CDATA } from '../../nvme/tcp/pdu.js';
import { BlockError, ErrorCode } from '../../block/errors.js';
import type { Controller } from '../controller.js';
import type { Target } from '../target.js';
import type { Request, TransportOps } from '../transport.js';
import { TcpQueue } from './queue.js';

export const TCP_DEFAULT_INLINE_DATA_SIZE = 16 * 1024;
export const TCP_ADMIN_INLINE_DATA_SIZE = NVME_TCP_ADMIN_CCSZ;
export const TCP_DEFAULT_MAX_DATA_TRANSFER_BYTES = NVMET_TCP_MAXH2CDATA;
export const TCP_DEFAULT_C2H_DATA_CHUNK = 128 * 1024;
export const TCP_MAX_R2T_PER_COMMAND = 16;
/** Largest in-capsule size accepted as an option (IOCCSZ is 32 bits, but capsules are buffered whole). */
export const TCP_MAX_INLINE_DATA_SIZE = 1024 * 1024;

export interface TcpTransportOptions {
  /** In-capsule data bytes of I/O queue capsules, a multiple of 16; default 16 KiB. */
  inlineDataSize?: number;
  /** Largest data transfer of one command, bytes; default 4 MiB. */
  maxDataTransferBytes?: number;
  /** MAXH2CDATA announced in ICResp (≥ 4096, multiple of 4); default min(4 MiB, MDTS). */
  maxH2CDataBytes?: number;
  /** Most data bytes per C2HData PDU; default 128 KiB. */
  c2hDataChunkBytes?: number;
  /** Cap on outstanding R2Ts per command (the host's MAXR2T + 1 applies below it); default 16. */
  maxR2TPerCommand?: number;
  /** What a data digest mismatch does: fail the command (default) or close the connection. */
  dataDigestError?: 'fail-command' | 'close';
  /** Receives one line per connection event (accepted, closed and why, fatal errors). */
  log?: (line: string) => void;
}

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, `NVMe/TCP transport: ${msg}`);
}

function intIn(what: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max)
    invalid(`${what} ${v} must be an integer in ${min}..${max}`);
  return v;
}

export class TcpTransport implements TransportOps {
  readonly type = 'tcp';
  readonly target: Target;
  readonly inlineDataSize: number;
  readonly adminInlineDataSize = TCP_ADMIN_INLINE_DATA_SIZE;
  readonly maxDataTransferBytes: number;
  /** MAXH2CDATA every ICResp announces. */
  readonly maxH2CData: number;
  readonly c2hDataChunk: number;
  readonly maxR2TPerCommand: number;
  readonly dataDigestError: 'fail-command' | 'close';
  readonly log: (line: string) => void;
  /** Every open connection, whatever its state. */
  readonly connections = new Set<TcpQueue>();

  constructor(target: Target, options: TcpTransportOptions = {}) {
    this.target = target;
    this.inlineDataSize = intIn(
      'inlineDataSize',
      options.inlineDataSize,
      TCP_DEFAULT_INLINE_DATA_SIZE,
      0,
      TCP_MAX_INLINE_DATA_SIZE,
    );
    if (this.inlineDataSize % 16)
      invalid(`inlineDataSize ${this.inlineDataSize} must be a multiple of 16 (IOCCSZ units)`);
    this.maxDataTransferBytes = intIn(
      'maxDataTransferBytes',
      options.maxDataTransferBytes,
      TCP_DEFAULT_MAX_DATA_TRANSFER_BYTES,
      4096,
      2 ** 30,
    );
    const mdts = Math.min(target.maxDataTransferBytes, this.maxDataTransferBytes);
    this.maxH2CData = intIn(
      'maxH2CDataBytes',
      options.maxH2CDataBytes,
      Math.max(NVME_TCP_MIN_MAXH2CDATA, Math.min(NVMET_TCP_MAXH2CDATA, mdts)),
      NVME_TCP_MIN_MAXH2CDATA,
      NVMET_TCP_MAXH2CDATA,
    );
    if (this.maxH2CData % 4) invalid(`maxH2CDataBytes ${this.maxH2CData} must be a multiple of 4`);
    this.c2hDataChunk = intIn(
      'c2hDataChunkBytes',
      options.c2hDataChunkBytes,
      TCP_DEFAULT_C2H_DATA_CHUNK,
      512,
      2 ** 30,
    );
    this.maxR2TPerCommand = intIn(
      'maxR2TPerCommand',
      options.maxR2TPerCommand,
      TCP_MAX_R2T_PER_COMMAND,
      1,
      256,
    );
    const dde = options.dataDigestError ?? 'fail-command';
    if (dde !== 'fail-command' && dde !== 'close') invalid(`dataDigestError must be fail-command or close`);
    this.dataDigestError = dde;
    this.log = options.log ?? (() => {});
  }

  /** Takes over an accepted socket: it becomes one queue (the first PDU must be ICReq). */
  accept(socket: Socket, portid?: number): TcpQueue {
    const q = new TcpQueue(this, socket, portid);
    this.connections.add(q);
    void q.closed.then(() => this.connections.delete(q));
    return q;
  }

  /** Open connections that arrived on `portid`. */
  connectionsOn(portid: number): TcpQueue[] {
    return [...this.connections].filter((c) => c.queue.portid === portid);
  }

  /** Closes every connection; resolves when all are gone. */
  async closeAll(reason = 'transport shut down'): Promise<void> {
    const all = [...this.connections];
    for (const c of all) c.close(reason);
    await Promise.all(all.map((c) => c.closed));
  }

  // ---- TransportOps ----

  queueResponse(req: Request): void {
    const q = req.queue.context;
    if (q instanceof TcpQueue) q.queueResponse(req);
  }

  deleteController(ctrl: Controller): void {
    const reason = `${ctrl} deleted: ${ctrl.deleteReason ?? 'no reason given'}`;
    for (const queue of [...ctrl.queues.values()]) {
      const q = queue.context;
      if (q instanceof TcpQueue) q.close(reason);
      else queue.destroy();
    }
  }
}
