// One NVMe/TCP connection = one NVMe queue pair (nvmet_tcp_queue). It moves PDUs and data
// between the socket and the target core and never looks at an opcode.
//
// Receive side, one PDU at a time from the streaming parser (nvme/tcp/parser.ts):
// - ICReq (the only PDU allowed first; the parser enforces order, PFV 0, HPDA ≤ 31, DGST bits):
//   answered by ICResp with CPDA 0, the digests the host asked for (both are supported),
//   MAXH2CDATA from the transport. The host's HPDA aligns the data of every C2HData we send;
//   MAXR2T + 1 (capped by the transport) R2Ts may be open per command.
// - CapsuleCmd: core.initRequest(). Errors found there are answered at once (any in-capsule
//   data is dropped). Otherwise, host→controller data comes in the capsule — its length must
//   be exactly the SGL's offset + length, else Data SGL Length Invalid — or, for a Transport
//   Data Block SGL, through R2Ts of at most MAXH2CDATA bytes each; a capsule that carries data
//   with a transport SGL gets SGL Descriptor Type Invalid. A CID already in use on this queue
//   gets Command ID Conflict.
// - H2CData must name an open R2T by TTAG (else fatal FES 1 at TTAG) and its command by CCCID
//   (FES 1 at CCCID), stay inside the R2T (FES 4), continue exactly where the R2T's data
//   stopped and set LAST_PDU exactly on its last PDU (FES 2) — FreeBSD's and SPDK's rules.
// - A data digest mismatch fails that command with Transient Transport Error (0x22) once its
//   data is in, or closes the connection (transport option). A header digest mismatch and
//   every malformed PDU are fatal: C2HTermReq with the FES/FEI, then close. Only this
//   connection is affected: closing an I/O queue leaves its controller and other queues up.
// - H2CTermReq: the host gives up; close without an answer.
//
// Send side: a controller→host command that succeeded sends its data as C2HData PDUs of at
// most the transport's chunk size. The last one carries SUCCESS instead of a CapsuleResp only
// when the host disabled SQ flow control in Connect and DW0/DW1 are 0: that is Linux nvmet's
// rule, because the implied completion has no SQHD (and no result). Every other completion is a
// CapsuleResp whose CQE carries the SQ head pointer the core advanced. Header and data digests
// go on every PDU once negotiated.
//
// Flow control and backpressure:
// - SQ size: the core completes every command beyond the queue size with Command Sequence
//   Error (nvmet instead fails the controller when its 2 × SQSIZE command slots run out, SPDK
//   sends a TermReq); the connection stays usable and an excess command allocates nothing.
// - When socket.write() returns false (the host does not read its responses) we stop reading
//   (socket.pause(), and no more PDUs from the parser's buffer) until 'drain'. Before Connect
//   has completed, one command at a time. Memory per connection is then bounded by the queue
//   size × MDTS (data of accepted commands; R2T buffers are allocated when their data arrives)
//   plus one PDU (≤ MAXH2CDATA) being parsed.
// - Socket errors and closes destroy the core queue (queue.destroy()): responses of commands
//   still running are dropped, and losing the admin queue deletes the controller.

import type { Socket } from 'node:net';
import {
  buildC2HData,
  buildCapsuleResp,
  buildICResp,
  buildR2T,
  buildTermReqFor,
  writePdu,
  type TxOptions,
} from '../../nvme/tcp/builder.js';
import { TcpFatalError } from '../../nvme/tcp/errors.js';
import { PduParser } from '../../nvme/tcp/parser.js';
import {
  DigestOption,
  H2CDataHeader,
  NVME_TCP_DIGEST_LENGTH,
  PduType,
  TcpFes,
  type CapsuleCmdPdu,
  type H2CDataPdu,
  type ICReqPdu,
  type TcpPdu,
  type TermReqPdu,
  fesName,
} from '../../nvme/tcp/pdu.js';
import { formatStatus, Status, withDnr, type NvmeStatus } from '../../nvme/status.js';
import { CommandError, SqeOffset } from '../errors.js';
import type { Queue } from '../queue.js';
import type { Request } from '../transport.js';
import { TcpCommand, type OpenR2T } from './command.js';
import type { TcpTransport } from './transport.js';

/** How long a closing connection waits for the host to close its side before dropping it. */
export const TCP_LINGER_MS = 2000;

export type TcpQueueState = 'ic' | 'live' | 'closing' | 'closed';

const DIGESTS = DigestOption.HDR_DIGEST_ENABLE | DigestOption.DATA_DIGEST_ENABLE;
const MAX_TTAG = 0xfffe;

/** Counters for logs and tests. */
export interface TcpQueueStats {
  capsules: number;
  r2ts: number;
  h2cDataPdus: number;
  c2hDataPdus: number;
  responses: number;
  /** Completions implied by C2HData SUCCESS instead of a CapsuleResp. */
  successFlags: number;
  dataDigestErrors: number;
  /** Times reading stopped because the host was not reading responses. */
  readPauses: number;
}

export class TcpQueue {
  readonly transport: TcpTransport;
  readonly socket: Socket;
  /** The core's queue (its context points back here). */
  readonly queue: Queue;
  /** "address:port" of the host, for messages. */
  readonly peer: string;
  /** Resolves once the socket is closed and the core queue destroyed. */
  readonly closed: Promise<void>;
  readonly stats: TcpQueueStats = {
    capsules: 0,
    r2ts: 0,
    h2cDataPdus: 0,
    c2hDataPdus: 0,
    responses: 0,
    successFlags: 0,
    dataDigestErrors: 0,
    readPauses: 0,
  };
  /** Why the connection closed (or is closing); undefined while it is open. */
  closeReason: string | undefined;
  /** The fatal transport error that ended the connection, if one did. */
  fatalError: TcpFatalError | undefined;

  #state: TcpQueueState = 'ic';
  readonly #parser: PduParser;
  #tx: TxOptions = { headerDigest: false, dataDigest: false };
  #maxR2T = 1;
  /** Commands between initRequest and their response, by CID. */
  readonly #commands = new Map<number, TcpCommand>();
  /** Open R2Ts by TTAG. */
  readonly #r2ts = new Map<number, OpenR2T>();
  #nextTtag = 0;
  #executing = 0;
  #needDrain = false;
  #readPaused = false;
  #pumping = false;
  #connectSeen = false;
  #linger: NodeJS.Timeout | undefined;
  #resolveClosed!: () => void;

  constructor(transport: TcpTransport, socket: Socket, portid?: number) {
    this.transport = transport;
    this.socket = socket;
    this.queue = transport.target.createQueue(transport, portid);
    this.queue.context = this;
    this.peer = formatPeer(socket);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#parser = new PduParser({
      direction: 'h2c',
      // Until Connect says which queue this is, the larger of the admin and I/O capsule sizes.
      maxInCapsuleData: Math.max(transport.adminInlineDataSize, transport.inlineDataSize),
      maxH2CData: transport.maxH2CData,
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => {
      this.#needDrain = false;
      this.#updateFlow();
    });
    socket.on('end', () => this.close('the host closed the connection'));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.#onClose());
    transport.log(`${this}: connection accepted`);
  }

  get state(): TcpQueueState {
    return this.#state;
  }

  /** True while reading is stopped for backpressure. */
  get readPaused(): boolean {
    return this.#readPaused;
  }

  /** Digests and alignment of what this side sends, as negotiated. */
  get txOptions(): Readonly<TxOptions> {
    return this.#tx;
  }

  /** Commands between capsule and response. */
  get outstanding(): number {
    return this.#commands.size;
  }

  toString(): string {
    return `NVMe/TCP ${this.peer} (${this.queue})`;
  }

  /**
   * Ends the connection: the core queue is destroyed at once (responses still to come are
   * dropped), what is already queued on the socket is flushed, then the socket closes — or is
   * dropped after TCP_LINGER_MS if the host does not close its side. Idempotent.
   */
  close(reason: string): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    this.closeReason = reason;
    this.transport.log(`${this}: closing: ${reason}`);
    this.#commands.clear();
    this.#r2ts.clear();
    this.queue.destroy();
    // Keep reading (and discarding) so the host's FIN is seen even if reading was paused.
    this.socket.resume();
    if (!this.socket.destroyed) {
      this.socket.end();
      this.#linger = setTimeout(() => this.socket.destroy(), TCP_LINGER_MS);
      this.#linger.unref();
    }
  }

  // ---- receive ----

  #onData(chunk: Buffer): void {
    if (this.#state !== 'ic' && this.#state !== 'live') return;
    this.#parser.push(chunk);
    this.#pump();
  }

  #onClose(): void {
    if (this.#linger) clearTimeout(this.#linger);
    if (this.#state !== 'closing') {
      this.closeReason ??= 'connection closed';
      this.transport.log(`${this}: closed: ${this.closeReason}`);
      this.#commands.clear();
      this.#r2ts.clear();
      this.queue.destroy();
    }
    this.#state = 'closed';
    this.#resolveClosed();
  }

  /** True while no new PDU may be taken (see "Flow control" above). */
  get #readBlocked(): boolean {
    return this.#needDrain || (!this.queue.connected && this.#executing > 0);
  }

  /** Parses and handles buffered PDUs until the parser needs bytes or reading is blocked. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while ((this.#state === 'ic' || this.#state === 'live') && !this.#readBlocked) {
        let pdu: TcpPdu | undefined;
        try {
          pdu = this.#parser.next();
          if (pdu !== undefined) this.#dispatch(pdu);
        } catch (err) {
          if (TcpFatalError.is(err)) this.#fatal(err);
          // A bug must cost this connection only, never the process.
          else
            this.close(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          return;
        }
        if (pdu === undefined) break;
      }
    } finally {
      this.#pumping = false;
    }
    this.#updateFlow();
  }

  /** Pauses or resumes the socket to match #readBlocked. */
  #updateFlow(): void {
    if (this.#state !== 'ic' && this.#state !== 'live') return;
    const blocked = this.#readBlocked;
    if (blocked && !this.#readPaused) {
      this.#readPaused = true;
      if (this.#needDrain) this.stats.readPauses++;
      this.socket.pause();
    } else if (!blocked && this.#readPaused) {
      this.#readPaused = false;
      this.socket.resume();
      this.#pump();
    }
  }

  #dispatch(pdu: TcpPdu): void {
    switch (pdu.type) {
      case PduType.ICReq:
        return this.#onICReq(pdu);
      case PduType.CapsuleCmd:
        return this.#onCapsule(pdu);
      case PduType.H2CData:
        return this.#onH2CData(pdu);
      case PduType.H2CTermReq:
        return this.#onTermReq(pdu);
      default:
        // The parser only lets host→controller types through; this is a bug if reached.
        throw new Error(`${this}: unexpected PDU type ${pdu.type}`);
    }
  }

  #onICReq(pdu: ICReqPdu): void {
    const dgst = pdu.dgst & DIGESTS;
    const headerDigest = (dgst & DigestOption.HDR_DIGEST_ENABLE) !== 0;
    const dataDigest = (dgst & DigestOption.DATA_DIGEST_ENABLE) !== 0;
    this.#maxR2T = Math.max(1, Math.min(this.transport.maxR2TPerCommand, pdu.maxr2t + 1));
    this.#send(buildICResp({ cpda: 0, dgst, maxh2cdata: this.transport.maxH2CData }));
    // Digests apply from the PDU after ICResp; the host aligns its data to our CPDA (0).
    this.#tx = { headerDigest, dataDigest, pda: pdu.hpda };
    this.#parser.configure({ headerDigest, dataDigest, pda: 0 });
    this.#state = 'live';
    this.transport.log(
      `${this}: ICReq: digests header ${headerDigest ? 'on' : 'off'}, data ${dataDigest ? 'on' : 'off'}; HPDA ${pdu.hpda}, MAXR2T ${pdu.maxr2t}`,
    );
  }

  #onTermReq(pdu: TermReqPdu): void {
    this.close(`the host sent H2CTermReq: FES 0x${pdu.fes.toString(16)} ${fesName(pdu.fes)}, FEI ${pdu.fei}`);
  }

  #onCapsule(pdu: CapsuleCmdPdu): void {
    this.stats.capsules++;
    const req = this.transport.target.initRequest(this.queue, pdu.sqe);
    if (req.completed) return; // answered already; any in-capsule data is dropped
    if (this.#commands.has(req.cid))
      return this.#failNow(
        req,
        withDnr(Status.CMDID_CONFLICT),
        `command ID ${req.cid} is already in use on ${this.queue}`,
      );
    const cmd = new TcpCommand(req);
    this.#commands.set(req.cid, cmd);
    const data = pdu.data;
    if (pdu.dataDigestError) {
      this.stats.dataDigestErrors++;
      if (this.transport.dataDigestError === 'close')
        return this.close(`data digest mismatch in the capsule of command ${req.cid}`);
      return this.#failNow(req, Status.TRANSIENT_TR_ERR, 'data digest mismatch in the command capsule');
    }
    if (req.direction === 'host-to-controller' && req.length > 0) {
      if (req.inCapsule) {
        const end = req.inCapsuleOffset + req.length;
        const got = data?.length ?? 0;
        if (data === undefined || got !== end)
          return this.#failNow(
            req,
            withDnr(Status.SGL_INVALID_DATA),
            `the capsule carries ${got} bytes of in-capsule data; the SGL describes ${req.length} bytes at offset ${req.inCapsuleOffset}`,
            SqeOffset.DPTR,
          );
        req.data = data.subarray(req.inCapsuleOffset, end);
        return this.#execute(cmd);
      }
      if (data !== undefined)
        return this.#failNow(
          req,
          withDnr(Status.SGL_INVALID_TYPE),
          `the capsule carries ${data.length} data bytes but the SGL is a Transport Data Block; in-capsule data needs a Data Block/Offset SGL (0x01)`,
          SqeOffset.DPTR + 15,
        );
      return this.#sendR2Ts(cmd);
    }
    if (data !== undefined)
      return this.#failNow(
        req,
        withDnr(Status.SGL_INVALID_DATA),
        `the capsule carries ${data.length} data bytes for a command that takes none from the host`,
        SqeOffset.DPTR,
      );
    this.#execute(cmd);
  }

  #execute(cmd: TcpCommand): void {
    cmd.executing = true;
    this.#executing++;
    void cmd.req.execute();
  }

  /** Completes a request the core accepted with a transport-level failure. */
  #failNow(req: Request, status: NvmeStatus, message: string, errorLoc?: number): void {
    req.fail(new CommandError(status, message, errorLoc === undefined ? {} : { errorLoc }));
    req.complete();
  }

  /** Sends R2Ts until MAXR2T are open or every byte of the command has been asked for. */
  #sendR2Ts(cmd: TcpCommand): void {
    const req = cmd.req;
    while (cmd.failure === undefined && cmd.open.length < this.#maxR2T && cmd.nextR2tOffset < req.length) {
      const length = Math.min(this.transport.maxH2CData, req.length - cmd.nextR2tOffset);
      const r2t: OpenR2T = { cmd, ttag: this.#allocTtag(), offset: cmd.nextR2tOffset, length, received: 0 };
      this.#r2ts.set(r2t.ttag, r2t);
      cmd.open.push(r2t);
      cmd.nextR2tOffset += length;
      this.stats.r2ts++;
      this.#send(buildR2T(this.#tx, { cccid: req.cid, ttag: r2t.ttag, r2to: r2t.offset, r2tl: length }));
    }
  }

  #allocTtag(): number {
    for (;;) {
      const t = this.#nextTtag;
      this.#nextTtag = t >= MAX_TTAG ? 0 : t + 1;
      if (!this.#r2ts.has(t)) return t;
    }
  }

  #onH2CData(pdu: H2CDataPdu): void {
    this.stats.h2cDataPdus++;
    const r2t = this.#r2ts.get(pdu.ttag);
    if (!r2t)
      return this.#protocolError(
        pdu,
        TcpFes.INVALID_PDU_HDR,
        H2CDataHeader.offsetOf('ttag'),
        `H2CData TTAG ${pdu.ttag} names no open R2T`,
      );
    const cmd = r2t.cmd;
    if (pdu.cccid !== cmd.cid)
      return this.#protocolError(
        pdu,
        TcpFes.INVALID_PDU_HDR,
        H2CDataHeader.offsetOf('cccid'),
        `H2CData CCCID ${pdu.cccid}, but R2T ${pdu.ttag} was sent for command ${cmd.cid}`,
      );
    const end = r2t.offset + r2t.length;
    if (pdu.datao < r2t.offset || pdu.datao + pdu.datal > end)
      return this.#protocolError(
        pdu,
        TcpFes.DATA_OUT_OF_RANGE,
        0,
        `H2CData bytes ${pdu.datao}..${pdu.datao + pdu.datal} lie outside R2T ${pdu.ttag} (${r2t.offset}..${end})`,
      );
    const expected = r2t.offset + r2t.received;
    if (pdu.datao !== expected)
      return this.#protocolError(
        pdu,
        TcpFes.PDU_SEQ_ERR,
        0,
        `H2CData DATAO ${pdu.datao}; R2T ${pdu.ttag}'s data continues at ${expected}`,
      );
    const complete = r2t.received + pdu.datal === r2t.length;
    if (complete !== pdu.last)
      return this.#protocolError(
        pdu,
        TcpFes.PDU_SEQ_ERR,
        0,
        complete
          ? `the H2CData PDU completing R2T ${pdu.ttag} lacks LAST_PDU`
          : `H2CData sets LAST_PDU with ${r2t.length - r2t.received - pdu.datal} bytes of R2T ${pdu.ttag} still to come`,
      );
    if (pdu.dataDigestError) {
      this.stats.dataDigestErrors++;
      if (this.transport.dataDigestError === 'close')
        return this.close(`data digest mismatch in H2CData for command ${cmd.cid}`);
      cmd.failure ??= {
        status: Status.TRANSIENT_TR_ERR,
        message: `data digest mismatch in H2CData at offset ${pdu.datao}`,
      };
    } else if (cmd.failure === undefined) cmd.place(pdu.datao, pdu.data);
    r2t.received += pdu.datal;
    if (!complete) return;

    this.#r2ts.delete(r2t.ttag);
    cmd.open.splice(cmd.open.indexOf(r2t), 1);
    if (cmd.failure !== undefined) {
      if (cmd.open.length === 0) this.#failNow(cmd.req, cmd.failure.status, cmd.failure.message);
    } else if (cmd.dataComplete) this.#execute(cmd);
    else this.#sendR2Ts(cmd);
  }

  /** A fatal error found after parsing (H2CData against the open R2Ts). */
  #protocolError(pdu: H2CDataPdu, fes: TcpFes, fei: number, detail: string): void {
    this.#fatal(
      new TcpFatalError(
        { fes, fei, header: this.#h2cHeader(pdu), termReqType: PduType.C2HTermReq },
        `${detail} (${this.queue})`,
      ),
    );
  }

  /** The offending H2CData header for the TermReq's error data, rebuilt from its fields. */
  #h2cHeader(pdu: H2CDataPdu): Buffer {
    const hdgst = this.#tx.headerDigest ? NVME_TCP_DIGEST_LENGTH : 0;
    const ddgst = this.#tx.dataDigest ? NVME_TCP_DIGEST_LENGTH : 0;
    const pdo = H2CDataHeader.SIZE + hdgst;
    return H2CDataHeader.encode({
      type: PduType.H2CData,
      flags: pdu.flags,
      hlen: H2CDataHeader.SIZE,
      pdo,
      plen: pdo + pdu.datal + ddgst,
      cccid: pdu.cccid,
      ttag: pdu.ttag,
      datao: pdu.datao,
      datal: pdu.datal,
    });
  }

  /** C2HTermReq (unless the error says not to answer), then close. */
  #fatal(err: TcpFatalError): void {
    this.fatalError = err;
    this.transport.log(`${this}: ${err.message}`);
    if (err.sendTermReq && !this.socket.destroyed) this.#send(buildTermReqFor(err));
    this.close(`fatal transport error FES 0x${err.fes.toString(16)} ${fesName(err.fes)}`);
  }

  // ---- send ----

  /** Called by the transport for every completed request of this queue. */
  queueResponse(req: Request): void {
    const cmd = this.#commands.get(req.cid);
    if (cmd?.req === req) {
      this.#commands.delete(req.cid);
      if (cmd.executing) {
        cmd.executing = false;
        this.#executing--;
      }
      for (const r of cmd.open) this.#r2ts.delete(r.ttag);
      cmd.open.length = 0;
    }
    if (this.#state !== 'live') return;
    this.#respond(req);
    if (!this.#connectSeen && this.queue.connected) {
      // Now the queue type is known: capsules may carry at most its in-capsule size.
      this.#connectSeen = true;
      this.#parser.configure({ maxInCapsuleData: this.queue.inlineDataSize });
    }
    if (req.disconnectAfterResponse) this.close('the host sent Disconnect');
    else if (!this.#pumping) this.#updateFlow();
  }

  #respond(req: Request): void {
    const tx = this.#tx;
    const socket = this.socket;
    socket.cork();
    try {
      const data =
        req.direction === 'controller-to-host' && req.succeeded && req.length > 0 ? req.data : undefined;
      if (data !== undefined) {
        // SUCCESS only without SQ flow control, as nvmet: the implied CQE has no SQHD or result.
        const success = this.queue.sqFlowDisabled && req.dw0 === 0 && req.dw1 === 0;
        const chunk = this.transport.c2hDataChunk;
        for (let off = 0; off < data.length; off += chunk) {
          const n = Math.min(chunk, data.length - off);
          const last = off + n === data.length;
          this.stats.c2hDataPdus++;
          this.#send(
            buildC2HData(
              tx,
              { cccid: req.cid, datao: off, last, success: last && success },
              data.subarray(off, off + n),
            ),
          );
        }
        if (success) {
          this.stats.successFlags++;
          return;
        }
      }
      this.stats.responses++;
      this.#send(buildCapsuleResp(tx, req.cqe()));
      if (!req.succeeded && req.message)
        this.transport.log(`${this}: command ${req.cid} failed: ${formatStatus(req.status)}: ${req.message}`);
    } finally {
      socket.uncork();
    }
  }

  #send(list: Buffer[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!writePdu(this.socket, list) && !this.#needDrain) {
      this.#needDrain = true;
      if (!this.#pumping) this.#updateFlow();
    }
  }
}

function formatPeer(socket: Socket): string {
  const a = socket.remoteAddress ?? '?';
  const host = a.includes(':') ? `[${a}]` : a;
  return `${host}:${socket.remotePort ?? '?'}`;
}
