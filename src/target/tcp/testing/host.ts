// A minimal NVMe/TCP host, built only on the shared codecs (src/nvme, src/nvme/tcp): it drives
// the target over real sockets in tests, and it is the seed of tsblk's host library. It does
// what the Linux host (drivers/nvme/host/tcp.c, fabrics.c) does, in the same order:
//
//   TcpHostQueue.open(addr)        TCP connect, ICReq (HPDA 0, MAXR2T 0, the digests asked for),
//                                   ICResp checked (PFV, CPDA, digests ⊆ asked, MAXH2CDATA)
//   TcpHostController.connect()    admin queue: Connect (SQSIZE 31, KATO, CNTLID 0xFFFF),
//                                   Property Get CAP, Property Set CC.EN, wait for CSTS.RDY,
//                                   Identify Controller (IOCCSZ → I/O in-capsule size, MDTS),
//                                   Set Features Number of Queues, one connection + Connect per
//                                   I/O queue (SQSIZE 127, the controller's CNTLID)
//
// Per command: host→controller data goes in the capsule when it fits the queue's in-capsule
// size (8 KiB on the admin queue, NVME_TCP_ADMIN_CCSZ; IOCCSZ × 16 − 64 on I/O queues), with a
// Data Block/Offset SGL at offset 0; otherwise with a Transport Data Block SGL, and each R2T is
// answered with H2CData PDUs of at most MAXH2CDATA bytes, LAST_PDU on the R2T's last one.
// Controller→host data arrives as C2HData PDUs in order; a last PDU with SUCCESS completes the
// command without a CapsuleResp. A C2HTermReq, a closed socket or a malformed PDU fails every
// pending command with a TcpHostError (a malformed PDU is answered with H2CTermReq first).

import { once } from 'node:events';
import { connect as tcpConnect, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { encodeSqe, encodeRwCdw12, splitLba, type SqeInput } from '../../../nvme/command.js';
import { decodeCqe, encodeCqe, result64, type Completion } from '../../../nvme/completion.js';
import { encodeCopyCommand, encodeCopySourceRanges, type CopySourceRangeInput } from '../../../nvme/copy.js';
import {
  CapCss,
  CcCss,
  CNTLID_DYNAMIC,
  decodeCap,
  decodeCsts,
  encodeConnect,
  encodeConnectData,
  encodePropertyGet,
  encodePropertySet,
  Property,
} from '../../../nvme/fabrics.js';
import { encodeNumQueues, encodeSetFeaturesCdw10, FeatureId } from '../../../nvme/features.js';
import {
  Cns,
  decodeIdCtrl,
  encodeIdentify,
  IDENTIFY_DATA_SIZE,
  inlineBytesFromIoccsz,
  type IdCtrlFields,
} from '../../../nvme/identify.js';
import { encodeGetLogPage } from '../../../nvme/log-page.js';
import { AdminOpcode, FABRICS_OPCODE, FabricsType, IoOpcode } from '../../../nvme/opcodes.js';
import { inCapsuleSgl, transportSgl } from '../../../nvme/sgl.js';
import { formatStatus, isSuccess, NvmeStatusError, SUCCESS } from '../../../nvme/status.js';
import {
  buildCapsuleCmd,
  buildH2CData,
  buildICReq,
  buildTermReq,
  buildTermReqFor,
  writePdu,
  type TxOptions,
} from '../../../nvme/tcp/builder.js';
import { TcpFatalError } from '../../../nvme/tcp/errors.js';
import { PduParser } from '../../../nvme/tcp/parser.js';
import {
  DigestOption,
  fesName,
  NVME_TCP_ADMIN_CCSZ,
  NVME_TCP_PFV_1_0,
  PduType,
  TcpFes,
  type C2HDataPdu,
  type ICRespPdu,
  type R2TPdu,
  type TcpPdu,
  type TermReqPdu,
} from '../../../nvme/tcp/pdu.js';

export interface HostAddress {
  host: string;
  port: number;
}

/** The host NQN tests use unless they give one (the uuid form nvme-cli generates). */
export const TEST_HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b';

/** CC as the Linux host writes it: EN, CSS NVM, MPS 4 KiB, IOSQES 6 (64 B), IOCQES 4 (16 B). */
export const HOST_CC_ENABLE = 1 | (6 << 16) | (4 << 20);

export type TcpHostErrorCode = 'TERM_REQ' | 'CLOSED' | 'TIMEOUT' | 'PROTOCOL' | 'IC_REFUSED';

const kTcpHostError = Symbol.for('tsblk.TcpHostError');

/** A local failure of the host side (never an NVMe status; those come back in the CQE). */
export class TcpHostError extends Error {
  readonly code: TcpHostErrorCode;
  /** The controller's C2HTermReq, for code TERM_REQ. */
  readonly termReq: TermReqPdu | undefined;

  constructor(code: TcpHostErrorCode, message: string, termReq?: TermReqPdu) {
    super(message);
    this.name = 'TcpHostError';
    this.code = code;
    this.termReq = termReq;
    Object.defineProperty(this, kTcpHostError, { value: true });
  }

  static is(err: unknown): err is TcpHostError {
    return (
      typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kTcpHostError] === true
    );
  }
}

export interface TcpHostQueueOptions {
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** HPDA asked for in ICReq (0's based dwords); default 0 as Linux. */
  hpda?: number;
  /** MAXR2T asked for in ICReq (0's based); default 0 as Linux (one R2T at a time). */
  maxr2t?: number;
  /** In-capsule data this queue may send; default 8 KiB (the admin queue's, and Connect's). */
  inlineDataSize?: number;
  /** Per command; 0 = wait forever (Asynchronous Event Requests). Default 10 s. */
  commandTimeoutMs?: number;
  /** For the IC exchange; default 10 s. */
  icTimeoutMs?: number;
}

export interface SubmitOptions {
  /** Host→controller data. */
  data?: Uint8Array;
  /** Controller→host bytes to ask for (the SGL length). */
  length?: number;
  /** Put `data` in the capsule; default: when it fits the queue's in-capsule size. */
  inCapsule?: boolean;
  /** Per-command timeout override (0 = none). */
  timeoutMs?: number;
  /**
   * Answer R2Ts only once this many are open (or they cover the rest of the data); default 1.
   * Shows how many R2Ts the controller keeps open at once (HostCommandResult.maxOpenR2ts).
   */
  r2tBatch?: number;
  /** Rewrites the capsule PDU's bytes before they are sent (fault injection in tests). */
  mangle?: (pdu: Buffer) => Buffer;
  /** Sees each R2T first; returning true means the caller answers it (tests of bad H2CData). */
  interceptR2T?: (r2t: R2TPdu) => boolean;
  /**
   * Send a raw 64-byte SQE exactly as given (CID, flags and DPTR untouched); the completion is
   * matched by the CID in it. For tests of malformed commands.
   */
  raw?: boolean;
}

export interface HostCommandResult {
  cqe: Completion;
  /** Controller→host data (of a successful command). */
  data: Buffer | undefined;
  /** How the command completed: a CapsuleResp, or the SUCCESS flag on the last C2HData PDU. */
  completion: 'capsule' | 'c2h-success';
  /** The R2Ts the controller sent for this command. */
  r2ts: R2TPdu[];
  /** Most R2Ts of this command open at the same time, as seen by the host. */
  maxOpenR2ts: number;
  /** C2HData PDU headers (data detached) in arrival order. */
  c2h: Array<Omit<C2HDataPdu, 'data'>>;
}

interface Pending {
  cid: number;
  write: Buffer | undefined;
  length: number;
  received: Buffer | undefined;
  receivedBytes: number;
  r2ts: R2TPdu[];
  /** R2Ts received and not answered yet. */
  held: R2TPdu[];
  answeredBytes: number;
  maxOpenR2ts: number;
  r2tBatch: number;
  interceptR2T: ((r2t: R2TPdu) => boolean) | undefined;
  c2h: Array<Omit<C2HDataPdu, 'data'>>;
  resolve: (r: HostCommandResult) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** One host-side NVMe/TCP connection: one queue. */
export class TcpHostQueue {
  readonly socket: Socket;
  readonly options: TcpHostQueueOptions;
  /** The controller's ICResp. */
  icresp!: ICRespPdu;
  /** Digests and alignment of what this host sends. */
  tx: TxOptions = { headerDigest: false, dataDigest: false };
  /** In-capsule data bytes this queue sends at most. */
  inlineDataSize: number;
  /** C2HTermReqs received. */
  readonly termReqs: TermReqPdu[] = [];
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  /** Why the connection failed, once it did. */
  error: TcpHostError | undefined;
  /** Every CQE received, in order (also of commands submitted raw). */
  readonly completions: Completion[] = [];

  readonly #parser = new PduParser({ direction: 'c2h', maxC2HData: 64 * 1024 * 1024 });
  readonly #pending = new Map<number, Pending>();
  #nextCid = 0;
  #ic: { resolve: (p: ICRespPdu) => void; reject: (e: Error) => void } | undefined;

  private constructor(socket: Socket, options: TcpHostQueueOptions) {
    this.socket = socket;
    this.options = options;
    this.inlineDataSize = options.inlineDataSize ?? NVME_TCP_ADMIN_CCSZ;
    socket.setNoDelay(true);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#failAll(new TcpHostError('CLOSED', `socket error: ${err.message}`)));
    socket.on('close', () =>
      this.#failAll(new TcpHostError('CLOSED', 'the controller closed the connection')),
    );
  }

  /** Connects and runs the IC exchange. */
  static async open(address: HostAddress, options: TcpHostQueueOptions = {}): Promise<TcpHostQueue> {
    const socket = tcpConnect({ host: address.host, port: address.port });
    await once(socket, 'connect');
    const q = new TcpHostQueue(socket, options);
    try {
      await q.#initialize();
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return q;
  }

  /** Opens a TCP connection without sending ICReq, for tests that send raw bytes first. */
  static async openRaw(address: HostAddress, options: TcpHostQueueOptions = {}): Promise<TcpHostQueue> {
    const socket = tcpConnect({ host: address.host, port: address.port });
    await once(socket, 'connect');
    return new TcpHostQueue(socket, options);
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /** True once the socket is closed or failed. */
  get isClosed(): boolean {
    return this.socket.destroyed || this.error !== undefined;
  }

  async #initialize(): Promise<void> {
    const o = this.options;
    const dgst =
      (o.headerDigest ? DigestOption.HDR_DIGEST_ENABLE : 0) |
      (o.dataDigest ? DigestOption.DATA_DIGEST_ENABLE : 0);
    const done = new Promise<ICRespPdu>((resolve, reject) => (this.#ic = { resolve, reject }));
    const timer = setTimeout(
      () => this.#ic?.reject(new TcpHostError('TIMEOUT', 'no ICResp')),
      o.icTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    this.sendRaw(buildICReq({ hpda: o.hpda ?? 0, dgst, maxr2t: o.maxr2t ?? 0 }));
    try {
      const resp = await done;
      if (resp.pfv !== NVME_TCP_PFV_1_0) throw new TcpHostError('IC_REFUSED', `ICResp PFV ${resp.pfv}`);
      // Linux (nvme_tcp_init_connection) insists on exactly the digests it asked for.
      if (resp.dgst !== dgst)
        throw new TcpHostError(
          'IC_REFUSED',
          `ICResp digests 0x${resp.dgst.toString(16)}, asked for 0x${dgst.toString(16)}`,
        );
      this.icresp = resp;
      this.tx = {
        headerDigest: (resp.dgst & DigestOption.HDR_DIGEST_ENABLE) !== 0,
        dataDigest: (resp.dgst & DigestOption.DATA_DIGEST_ENABLE) !== 0,
        pda: resp.cpda,
      };
    } finally {
      clearTimeout(timer);
      this.#ic = undefined;
    }
  }

  /** Writes PDU bytes as they are (malformed-PDU tests). */
  sendRaw(list: Buffer | readonly Buffer[]): boolean {
    if (this.socket.destroyed) return false;
    return writePdu(this.socket, Buffer.isBuffer(list) ? [list] : [...list]);
  }

  /** A CID not in use on this queue. */
  allocateCid(): number {
    for (;;) {
      this.#nextCid = (this.#nextCid + 1) & 0xffff;
      if (!this.#pending.has(this.#nextCid)) return this.#nextCid;
    }
  }

  /**
   * Submits one command and resolves with its completion (whatever the status). Rejects with
   * TcpHostError when the connection fails or the command times out.
   */
  submit(sqe: SqeInput | Uint8Array, opts: SubmitOptions = {}): Promise<HostCommandResult> {
    if (this.error) return Promise.reject(this.error);
    if (this.socket.destroyed) return Promise.reject(new TcpHostError('CLOSED', 'the connection is closed'));
    const write = opts.data ? Buffer.from(opts.data) : undefined;
    let raw: Buffer;
    let inCapsule = false;
    if (sqe instanceof Uint8Array) {
      raw = Buffer.from(sqe);
      if (!opts.raw) raw.writeUInt16LE(this.allocateCid(), 2);
    } else {
      raw = encodeSqe({ ...sqe, cid: sqe.cid ?? this.allocateCid() });
    }
    if (!opts.raw) {
      raw[1] = (raw[1]! & ~0xc0) | 0x40; // PSDT 01b: SGL (NVME_CMD_SGL_METABUF)
      if (write) {
        inCapsule = opts.inCapsule ?? write.length <= this.inlineDataSize;
        (inCapsule ? inCapsuleSgl(write.length) : transportSgl(write.length)).copy(raw, 24);
      } else transportSgl(opts.length ?? 0).copy(raw, 24);
    } else inCapsule = write !== undefined && (opts.inCapsule ?? true);
    const cid = raw.readUInt16LE(2);
    if (this.#pending.has(cid) && !opts.raw) throw new RangeError(`CID ${cid} is in use`);
    const result = new Promise<HostCommandResult>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.options.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS;
      const p: Pending = {
        cid,
        write: inCapsule ? undefined : write,
        length: opts.length ?? 0,
        received: undefined,
        receivedBytes: 0,
        r2ts: [],
        held: [],
        answeredBytes: 0,
        maxOpenR2ts: 0,
        r2tBatch: opts.r2tBatch ?? 1,
        interceptR2T: opts.interceptR2T,
        c2h: [],
        resolve,
        reject,
        timer: undefined,
      };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.#pending.delete(cid);
          reject(new TcpHostError('TIMEOUT', `command ${cid} (opcode 0x${raw[0]!.toString(16)}) timed out`));
        }, timeoutMs);
      }
      this.#pending.set(cid, p);
    });
    const pdu = buildCapsuleCmd(this.tx, raw, inCapsule ? write : undefined);
    this.sendRaw(opts.mangle ? opts.mangle(Buffer.concat(pdu)) : pdu);
    return result;
  }

  /** Closes the connection (FIN); pending commands fail with CLOSED. */
  close(): void {
    this.socket.end();
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- receive ----

  #onData(chunk: Buffer): void {
    if (this.error?.code === 'PROTOCOL') return;
    this.#parser.push(chunk);
    for (;;) {
      let pdu: TcpPdu | undefined;
      try {
        pdu = this.#parser.next();
      } catch (err) {
        if (!TcpFatalError.is(err)) throw err;
        if (err.sendTermReq) this.sendRaw(buildTermReqFor(err));
        this.#protocolError(err.message);
        return;
      }
      if (pdu === undefined) return;
      this.#dispatch(pdu);
    }
  }

  #dispatch(pdu: TcpPdu): void {
    switch (pdu.type) {
      case PduType.ICResp:
        this.#parser.configure({
          headerDigest: (pdu.dgst & DigestOption.HDR_DIGEST_ENABLE) !== 0,
          dataDigest: (pdu.dgst & DigestOption.DATA_DIGEST_ENABLE) !== 0,
          pda: this.options.hpda ?? 0,
        });
        this.#ic?.resolve(pdu);
        return;
      case PduType.C2HTermReq: {
        this.termReqs.push(pdu);
        const err = new TcpHostError(
          'TERM_REQ',
          `C2HTermReq: FES 0x${pdu.fes.toString(16)} ${fesName(pdu.fes)}, FEI ${pdu.fei}`,
          pdu,
        );
        this.#ic?.reject(err);
        this.#failAll(err);
        return;
      }
      case PduType.CapsuleResp: {
        const cqe = decodeCqe(pdu.cqe);
        this.completions.push(cqe);
        const p = this.#pending.get(cqe.cid);
        if (!p) return this.#protocolError(`CapsuleResp for CID ${cqe.cid}, which is not pending`);
        this.#finish(p, cqe, 'capsule');
        return;
      }
      case PduType.C2HData:
        return this.#onC2HData(pdu);
      case PduType.R2T:
        return this.#onR2T(pdu);
      default:
        return this.#protocolError(`unexpected ${pdu.type}`);
    }
  }

  #onC2HData(pdu: C2HDataPdu): void {
    const p = this.#pending.get(pdu.cccid);
    if (!p) return this.#protocolError(`C2HData for CID ${pdu.cccid}, which is not pending`);
    const { data, ...header } = pdu;
    p.c2h.push(header);
    if (pdu.datao !== p.receivedBytes || pdu.datao + pdu.datal > p.length)
      return this.#protocolError(
        `C2HData bytes ${pdu.datao}..${pdu.datao + pdu.datal} of CID ${pdu.cccid}: expected offset ${p.receivedBytes}, length ${p.length}`,
      );
    if (pdu.dataDigestError) return this.#protocolError(`C2HData data digest mismatch (CID ${pdu.cccid})`);
    p.received ??= Buffer.alloc(p.length);
    data.copy(p.received, pdu.datao);
    p.receivedBytes += pdu.datal;
    if (pdu.success) {
      if (p.receivedBytes !== p.length)
        return this.#protocolError(`C2HData SUCCESS with ${p.receivedBytes} of ${p.length} bytes`);
      const cqe = decodeCqe(encodeCqe({ cid: p.cid, status: SUCCESS, sqhd: 0xffff }));
      this.completions.push(cqe);
      this.#finish(p, cqe, 'c2h-success');
    }
  }

  #onR2T(pdu: R2TPdu): void {
    const p = this.#pending.get(pdu.cccid);
    if (!p || !p.write) return this.#protocolError(`R2T for CID ${pdu.cccid}, which has no data to send`);
    if (pdu.r2to + pdu.r2tl > p.write.length)
      return this.#protocolError(
        `R2T asks for bytes ${pdu.r2to}..${pdu.r2to + pdu.r2tl} of a ${p.write.length}-byte write`,
      );
    // As Linux's nvme_tcp_handle_r2t: each R2T continues where the data asked for so far ends.
    const asked = p.r2ts.reduce((n, r) => n + r.r2tl, 0);
    if (pdu.r2to !== asked)
      return this.#protocolError(`R2T offset ${pdu.r2to} for CID ${pdu.cccid}; expected ${asked}`);
    p.r2ts.push(pdu);
    if (p.interceptR2T?.(pdu)) return;
    p.held.push(pdu);
    p.maxOpenR2ts = Math.max(p.maxOpenR2ts, p.held.length);
    const heldBytes = p.held.reduce((n, r) => n + r.r2tl, 0);
    if (p.held.length < p.r2tBatch && p.answeredBytes + heldBytes < p.write.length) return;
    const out: Buffer[] = [];
    for (const r of p.held.splice(0)) out.push(...this.h2cData(r, p.write));
    p.answeredBytes += heldBytes;
    this.sendRaw(out);
  }

  /** The H2CData PDUs answering `r2t` from `data` (≤ MAXH2CDATA each, LAST_PDU on the last). */
  h2cData(r2t: R2TPdu, data: Buffer): Buffer[] {
    const max = this.icresp.maxh2cdata;
    const end = r2t.r2to + r2t.r2tl;
    const out: Buffer[] = [];
    for (let off = r2t.r2to; off < end; off += max) {
      const n = Math.min(max, end - off);
      out.push(
        ...buildH2CData(
          this.tx,
          { cccid: r2t.cccid, ttag: r2t.ttag, datao: off, last: off + n === end },
          data.subarray(off, off + n),
        ),
      );
    }
    return out;
  }

  #finish(p: Pending, cqe: Completion, completion: HostCommandResult['completion']): void {
    this.#pending.delete(p.cid);
    if (p.timer) clearTimeout(p.timer);
    const data = isSuccess(cqe.status) && p.length > 0 ? (p.received ?? Buffer.alloc(0)) : undefined;
    p.resolve({ cqe, data, completion, r2ts: p.r2ts, maxOpenR2ts: p.maxOpenR2ts, c2h: p.c2h });
  }

  #protocolError(message: string): void {
    const err = new TcpHostError('PROTOCOL', message);
    this.#failAll(err);
    this.socket.destroy();
  }

  #failAll(err: TcpHostError): void {
    this.error ??= err;
    this.#ic?.reject(err);
    for (const p of this.#pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
  }

  /** An H2CTermReq built by hand (tests of the controller's TermReq handling). */
  static termReq(fes: number = TcpFes.INVALID_PDU_HDR, fei = 0): Buffer[] {
    return buildTermReq(PduType.H2CTermReq, { fes, fei });
  }
}

/** Throws NvmeStatusError unless the command succeeded. */
export function expectSuccess(r: HostCommandResult, what: string): HostCommandResult {
  if (!isSuccess(r.cqe.status))
    throw new NvmeStatusError(r.cqe.status, `${what} failed: ${formatStatus(r.cqe.status)}`);
  return r;
}

export interface ConnectQueueOptions {
  subnqn: string;
  qid: number;
  /** Entries of the queue (SQSIZE + 1). */
  size: number;
  cntlid?: number;
  hostnqn?: string;
  hostid?: Uint8Array;
  /** Keep-alive timeout in ms (admin queue only). */
  kato?: number;
  /** CATTR bit 2: disable SQ flow control. */
  disableSqFlow?: boolean;
}

/** Sends Fabrics Connect on `queue` (its data in the capsule when it fits, as Linux). */
export function connectQueue(queue: TcpHostQueue, o: ConnectQueueOptions): Promise<HostCommandResult> {
  const data = encodeConnectData({
    hostid: o.hostid ?? uuidBytes(randomUUID()),
    cntlid: o.cntlid ?? CNTLID_DYNAMIC,
    subnqn: o.subnqn,
    hostnqn: o.hostnqn ?? TEST_HOSTNQN,
  });
  const sqe = encodeConnect({
    cid: 0,
    qid: o.qid,
    sqsize: o.size - 1,
    kato: o.kato ?? 0,
    cattr: o.disableSqFlow ? 0x04 : 0,
  });
  return queue.submit(sqe, { data });
}

export interface HostConnectOptions extends TcpHostQueueOptions {
  subnqn: string;
  hostnqn?: string;
  /** 16 bytes; default a random UUID, the same for every queue of the controller. */
  hostid?: Uint8Array;
  /** Keep-alive timeout, ms; default 0 (none). Linux uses 5000. */
  kato?: number;
  /** Admin queue entries; default 32 (NVME_AQ_DEPTH). */
  adminQueueSize?: number;
  /** I/O queues to connect; default 1 (0 for the discovery NQN). */
  ioQueues?: number;
  /** Entries per I/O queue; default 128 (Linux's default queue size). */
  ioQueueSize?: number;
  /** Disable SQ flow control on every queue (CATTR bit 2). */
  disableSqFlow?: boolean;
  /** Set CC.EN and wait for CSTS.RDY; default true. */
  enable?: boolean;
}

/** A controller association: the admin queue and its I/O queues. */
export class TcpHostController {
  readonly address: HostAddress;
  readonly options: HostConnectOptions;
  readonly admin: TcpHostQueue;
  readonly io: TcpHostQueue[] = [];
  readonly cntlid: number;
  readonly hostid: Buffer;
  /** Identify Controller, once enabled. */
  idCtrl: IdCtrlFields | undefined;

  private constructor(
    address: HostAddress,
    options: HostConnectOptions,
    admin: TcpHostQueue,
    cntlid: number,
    hostid: Buffer,
  ) {
    this.address = address;
    this.options = options;
    this.admin = admin;
    this.cntlid = cntlid;
    this.hostid = hostid;
  }

  /** Connects the admin queue, enables the controller and connects the I/O queues. */
  static async connect(address: HostAddress, options: HostConnectOptions): Promise<TcpHostController> {
    const hostid = Buffer.from(options.hostid ?? uuidBytes(randomUUID()));
    const admin = await TcpHostQueue.open(address, { ...options, inlineDataSize: NVME_TCP_ADMIN_CCSZ });
    try {
      const r = await connectQueue(admin, {
        subnqn: options.subnqn,
        qid: 0,
        size: options.adminQueueSize ?? 32,
        hostid,
        ...(options.hostnqn ? { hostnqn: options.hostnqn } : {}),
        ...(options.kato !== undefined ? { kato: options.kato } : {}),
        ...(options.disableSqFlow ? { disableSqFlow: true } : {}),
      });
      if (!isSuccess(r.cqe.status))
        throw new NvmeStatusError(
          r.cqe.status,
          `Connect to ${options.subnqn}: ${formatStatus(r.cqe.status, 'fabrics')} (DW0 0x${r.cqe.dw0.toString(16)})`,
        );
      const c = new TcpHostController(address, options, admin, r.cqe.dw0 & 0xffff, hostid);
      if (options.enable === false) return c;
      await c.enable();
      c.idCtrl = decodeIdCtrl(expectSuccess(await c.identify(Cns.CTRL), 'Identify Controller').data!);
      const isDiscovery = options.subnqn === 'nqn.2014-08.org.nvmexpress.discovery';
      const n = options.ioQueues ?? (isDiscovery ? 0 : 1);
      if (n > 0) {
        expectSuccess(
          await admin.submit({
            opcode: AdminOpcode.SET_FEATURES,
            cdw10: encodeSetFeaturesCdw10(FeatureId.NUM_QUEUES),
            cdw11: encodeNumQueues({ nsq: n - 1, ncq: n - 1 }),
          }),
          'Set Features Number of Queues',
        );
        for (let qid = 1; qid <= n; qid++) await c.connectIoQueue(qid);
      }
      return c;
    } catch (err) {
      admin.destroy();
      throw err;
    }
  }

  /** In-capsule bytes of I/O queues, from IOCCSZ (0 until Identify). */
  get ioInlineDataSize(): number {
    return this.idCtrl ? inlineBytesFromIoccsz(this.idCtrl.ioccsz) : 0;
  }

  /** Opens and connects I/O queue `qid`. */
  async connectIoQueue(qid: number, size = this.options.ioQueueSize ?? 128): Promise<TcpHostQueue> {
    const q = await TcpHostQueue.open(this.address, {
      ...this.options,
      inlineDataSize: this.ioInlineDataSize,
    });
    try {
      const r = await connectQueue(q, {
        subnqn: this.options.subnqn,
        qid,
        size,
        cntlid: this.cntlid,
        hostid: this.hostid,
        ...(this.options.hostnqn ? { hostnqn: this.options.hostnqn } : {}),
        ...(this.options.disableSqFlow ? { disableSqFlow: true } : {}),
      });
      if (!isSuccess(r.cqe.status))
        throw new NvmeStatusError(
          r.cqe.status,
          `Connect I/O queue ${qid}: ${formatStatus(r.cqe.status, 'fabrics')}`,
        );
    } catch (err) {
      q.destroy();
      throw err;
    }
    this.io.push(q);
    return q;
  }

  /** The I/O queue at index i (default the first). */
  ioQueue(i = 0): TcpHostQueue {
    const q = this.io[i];
    if (!q) throw new RangeError(`no I/O queue ${i} (${this.io.length} connected)`);
    return q;
  }

  propertyGet(ofst: number, size: 4 | 8 = 4): Promise<HostCommandResult> {
    return this.admin.submit(encodePropertyGet({ cid: 0, ofst, size }));
  }

  propertySet(ofst: number, value: number | bigint, size: 4 | 8 = 4): Promise<HostCommandResult> {
    return this.admin.submit(encodePropertySet({ cid: 0, ofst, size, value }));
  }

  /** CC.EN = 1, then polls CSTS.RDY (within CAP.TO), as nvme_enable_ctrl. */
  async enable(): Promise<void> {
    const cap = decodeCap(
      result64(expectSuccess(await this.propertyGet(Property.CAP, 8), 'Property Get CAP').cqe),
    );
    // nvme_enable_ctrl: CC.CSS = 110b (I/O command sets) when CAP.CSS offers it, else NVM.
    const css = (cap.css & CapCss.CSI) !== 0 ? CcCss.CSI : CcCss.NVM;
    const cc = (HOST_CC_ENABLE & ~(7 << 4)) | (css << 4);
    expectSuccess(await this.propertySet(Property.CC, cc), 'Property Set CC');
    const deadline = Date.now() + Math.max(1, cap.to) * 500;
    for (;;) {
      const csts = decodeCsts(
        expectSuccess(await this.propertyGet(Property.CSTS), 'Property Get CSTS').cqe.dw0,
      );
      if (csts.cfs) throw new Error('controller fatal status (CSTS.CFS) after CC.EN');
      if (csts.rdy) return;
      if (Date.now() > deadline) throw new Error('CSTS.RDY did not follow CC.EN within CAP.TO');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  identify(cns: number, nsid = 0, extra: { cntid?: number; csi?: number } = {}): Promise<HostCommandResult> {
    return this.admin.submit(
      { opcode: AdminOpcode.IDENTIFY, nsid, ...encodeIdentify({ cns, ...extra }) },
      { length: IDENTIFY_DATA_SIZE },
    );
  }

  getLogPage(
    lid: number,
    length: number,
    extra: { lpo?: number; rae?: boolean; nsid?: number } = {},
  ): Promise<HostCommandResult> {
    const { nsid, ...rest } = extra;
    return this.admin.submit(
      {
        opcode: AdminOpcode.GET_LOG_PAGE,
        nsid: nsid ?? 0xffffffff,
        ...encodeGetLogPage({ lid, length, ...rest }),
      },
      { length },
    );
  }

  setFeatures(fid: number, cdw11: number, data?: Uint8Array): Promise<HostCommandResult> {
    return this.admin.submit(
      { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(fid), cdw11 },
      data ? { data } : {},
    );
  }

  keepAlive(): Promise<HostCommandResult> {
    return this.admin.submit({ opcode: AdminOpcode.KEEP_ALIVE });
  }

  read(
    nsid: number,
    slba: number,
    blocks: number,
    blockSize = 512,
    queue = this.ioQueue(),
  ): Promise<HostCommandResult> {
    return queue.submit(
      { opcode: IoOpcode.READ, nsid, ...splitLba(slba), cdw12: encodeRwCdw12({ nlb: blocks - 1 }) },
      { length: blocks * blockSize },
    );
  }

  write(
    nsid: number,
    slba: number,
    data: Uint8Array,
    opts: { blockSize?: number; fua?: boolean; inCapsule?: boolean; queue?: TcpHostQueue } = {},
  ): Promise<HostCommandResult> {
    const blocks = data.length / (opts.blockSize ?? 512);
    if (!Number.isInteger(blocks) || blocks < 1)
      throw new RangeError(`write of ${data.length} bytes is not whole blocks`);
    return (opts.queue ?? this.ioQueue()).submit(
      {
        opcode: IoOpcode.WRITE,
        nsid,
        ...splitLba(slba),
        cdw12: encodeRwCdw12({ nlb: blocks - 1, fua: opts.fua ?? false }),
      },
      { data, ...(opts.inCapsule === undefined ? {} : { inCapsule: opts.inCapsule }) },
    );
  }

  flush(nsid: number, queue = this.ioQueue()): Promise<HostCommandResult> {
    return queue.submit({ opcode: IoOpcode.FLUSH, nsid });
  }

  /** Copy (opcode 0x19) of `ranges` to `sdlba` in descriptor `format`. */
  copy(
    nsid: number,
    sdlba: number,
    ranges: CopySourceRangeInput[],
    format = 0,
    queue = this.ioQueue(),
  ): Promise<HostCommandResult> {
    return queue.submit(
      { opcode: IoOpcode.COPY, nsid, ...encodeCopyCommand({ sdlba, ranges: ranges.length, format }) },
      { data: encodeCopySourceRanges(ranges, format) },
    );
  }

  /** Fabrics Disconnect on an I/O queue (the target then closes that connection). */
  disconnect(queue: TcpHostQueue): Promise<HostCommandResult> {
    return queue.submit({ opcode: FABRICS_OPCODE, nsid: FabricsType.DISCONNECT });
  }

  /** Closes every connection: I/O queues first, then the admin queue (which ends the association). */
  async close(): Promise<void> {
    for (const q of this.io) q.close();
    await Promise.all(this.io.map((q) => q.closed));
    this.admin.close();
    await this.admin.closed;
  }
}

function uuidBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}
