// One command on a TCP queue between the capsule and its response (the transport half of
// nvmet_tcp_cmd): which R2Ts are open for its host→controller data, how much of that data has
// arrived, and whether the data arrived damaged. The core's Request holds everything else.

import type { NvmeStatus } from '../../nvme/status.js';
import type { Request } from '../transport.js';

/** An R2T the controller sent and the host has not fully answered yet. */
export interface OpenR2T {
  readonly cmd: TcpCommand;
  /** Transfer tag the host echoes in its H2CData PDUs (unique per queue while open). */
  readonly ttag: number;
  /** Offset in the command's data the R2T asked for. */
  readonly offset: number;
  /** Bytes it asked for (at most MAXH2CDATA). */
  readonly length: number;
  /** Bytes of it received so far (H2CData must arrive in order). */
  received: number;
}

/** Why a command fails once its data is in (a data digest mismatch). */
export interface DeferredFailure {
  readonly status: NvmeStatus;
  readonly message: string;
}

export class TcpCommand {
  readonly req: Request;
  /** Offset the next R2T asks for; req.length once every byte has been asked for. */
  nextR2tOffset = 0;
  /** R2Ts sent and not fully answered, oldest first. */
  readonly open: OpenR2T[] = [];
  /** True between req.execute() and the response. */
  executing = false;
  /** Set when data arrived damaged: no more R2Ts; the command fails once open R2Ts are answered. */
  failure: DeferredFailure | undefined;

  constructor(req: Request) {
    this.req = req;
  }

  get cid(): number {
    return this.req.cid;
  }

  /** True when every byte has been asked for and every R2T answered. */
  get dataComplete(): boolean {
    return this.nextR2tOffset >= this.req.length && this.open.length === 0;
  }

  /**
   * Stores H2CData bytes at `datao` of the command's data. When one PDU carries the whole
   * transfer its buffer becomes req.data as it is (no copy); otherwise the data buffer is
   * allocated once, uninitialised, because the command only runs after every byte of it has
   * been written here.
   */
  place(datao: number, data: Buffer): void {
    const req = this.req;
    if (req.data === undefined && datao === 0 && data.length === req.length) {
      req.data = data;
      return;
    }
    req.data ??= Buffer.allocUnsafe(req.length);
    data.copy(req.data, datao);
  }
}
