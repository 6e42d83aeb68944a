// The one error the NVMe/TCP parser throws: a fatal transport error. The connection cannot go
// on after it (the byte stream has lost its framing or the peer broke the protocol), so the
// caller sends the TermReq the error describes, when `sendTermReq` says so, and closes.

import { fesName, type PduType, type TcpFes } from './pdu.js';

const kTcpFatalError = Symbol.for('tsblk.TcpFatalError');

export interface TcpFatalErrorInit {
  fes: TcpFes;
  /** Byte offset of the offending field for FES 1 and 6; 0 otherwise. */
  fei: number;
  /** The received header bytes (at most 128), sent back as the TermReq's error data. */
  header: Buffer;
  /** The TermReq type that reports this error to the peer. */
  termReqType: typeof PduType.H2CTermReq | typeof PduType.C2HTermReq;
  /** False when the spec says to close without a TermReq (an invalid TermReq from the peer). */
  sendTermReq?: boolean;
}

export class TcpFatalError extends Error {
  readonly code = 'NVME_TCP_FATAL';
  readonly fes: TcpFes;
  readonly fei: number;
  readonly header: Buffer;
  readonly termReqType: typeof PduType.H2CTermReq | typeof PduType.C2HTermReq;
  readonly sendTermReq: boolean;

  constructor(init: TcpFatalErrorInit, detail: string) {
    const where = init.fes === 0x01 || init.fes === 0x06 ? ` at byte ${init.fei}` : '';
    super(`NVMe/TCP fatal error 0x${init.fes.toString(16)} ${fesName(init.fes)}${where}: ${detail}`);
    this.name = 'TcpFatalError';
    this.fes = init.fes;
    this.fei = init.fei;
    this.header = init.header;
    this.termReqType = init.termReqType;
    this.sendTermReq = init.sendTermReq ?? true;
    Object.defineProperty(this, kTcpFatalError, { value: true });
  }

  /** True for any TcpFatalError, also one made by another copy of this module. */
  static is(err: unknown): err is TcpFatalError {
    return (
      typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kTcpFatalError] === true
    );
  }
}
