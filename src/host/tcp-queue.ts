// One host-side NVMe/TCP connection = one NVMe queue pair (Linux drivers/nvme/host/tcp.c,
// struct nvme_tcp_queue). It moves commands, data and completions; it never decides whether a
// failed command is retried — its owner (the controller) does.
//
// What a user must know:
// - open(): TCP connect and the IC exchange within connectTimeoutMs: ICReq with HPDA 0, MAXR2T 0
//   (one R2T per command, as Linux) and the digests asked for; the ICResp must have PFV 0 and
//   exactly those digests (Linux's rule). Fabrics Connect is the owner's first command.
// - At most size − 1 commands are outstanding (SQSIZE, 0's based, is what the controller takes
//   at once; Linux sizes its tag set the same way). More wait in FIFO order for a free command
//   ID; command IDs are reused.
// - Host→controller data goes in the capsule when it fits the queue's in-capsule size (8 KiB
//   for the admin queue and every Fabrics command, NVME_TCP_ADMIN_CCSZ; IOCCSZ × 16 − 64 on
//   I/O queues), else each R2T is answered with H2CData PDUs of at most MAXH2CDATA bytes cut
//   from the caller's buffer (never copied). Controller→host data (C2HData) is copied straight
//   into the caller's `into` buffer at DATAO; DATAO must continue where the data stopped and
//   DATAO + DATAL must stay inside `into`, or it is a protocol error. A last C2HData PDU with
//   SUCCESS completes the command (status success, DW0/DW1 0). A C2HData data digest mismatch
//   completes the command with Data Transfer Error (0x4, retryable), as Linux does.
// - Failures: a malformed PDU (answered with H2CTermReq), a C2HTermReq, bad data offsets, a
//   closed socket or a command past its timeout fail the whole queue: the socket is destroyed
//   and every command outstanding or waiting is handed to the owner's queueFailed() in
//   submission order (commands submitted with submit() and no owner are rejected with the
//   HostError: PROTOCOL, CLOSED or TIMEOUT).
// - AbortSignal: a command that has not been sent yet (waiting for a slot, or held by the
//   controller) fails with HostError ABORTED; once sent it runs to completion.
// - Hot path: one QueueRequest object and one promise per command; capsules built into one
//   scratch SQE; socket writes corked for the rest of the tick (one writev for a burst of
//   commands); timeouts found by one timer per queue scanning the slots, not a timer per command.

import { connect as tcpConnect, type Socket } from 'node:net';
import type { HostCommand, HostCompletion } from './types.js';
import { HostError } from './errors.js';
import { FABRICS_OPCODE, opcodeName } from '../nvme/opcodes.js';
import { SqeFlags } from '../nvme/command.js';
import { SglIdentifier } from '../nvme/sgl.js';
import { decodeStatusField, Status, SUCCESS, type NvmeStatus } from '../nvme/status.js';
import {
  buildCapsuleCmd,
  buildH2CData,
  buildICReq,
  buildTermReqFor,
  type TxOptions,
} from '../nvme/tcp/builder.js';
import { TcpFatalError } from '../nvme/tcp/errors.js';
import { PduParser } from '../nvme/tcp/parser.js';
import {
  DigestOption,
  fesName,
  NVME_TCP_ADMIN_CCSZ,
  NVME_TCP_PFV_1_0,
  NVMET_TCP_MAXH2CDATA,
  PduType,
  type C2HDataPdu,
  type ICRespPdu,
  type R2TPdu,
  type TcpPdu,
} from '../nvme/tcp/pdu.js';

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface TcpQueueOptions {
  address: { host: string; port: number };
  /** Queue ID (0 = admin); for messages. */
  qid: number;
  /** Entries of the queue (SQSIZE + 1): at most size − 1 commands are outstanding. */
  size: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** In-capsule data this queue may send (Fabrics commands: at least 8 KiB); default 8 KiB. */
  inlineDataSize?: number;
  /** Default per-command timeout; 0 = none. Default 30 s. */
  commandTimeoutMs?: number;
  /** TCP connect + ICResp; default 10 s. */
  connectTimeoutMs?: number;
  /** Largest C2HData PDU accepted (the parser refuses more before buffering); default 4 MiB. */
  maxC2HDataBytes?: number;
  /** For messages, e.g. `nqn...@127.0.0.1:4420`. */
  name?: string;
  /** Who takes the commands of a failed queue. */
  owner?: QueueOwner;
}

/** The queue's owner decides what happens to the commands of a failed queue. */
export interface QueueOwner {
  /**
   * The queue failed (it is already closed). `requests` are its managed commands that were
   * outstanding or waiting, in submission order; `request.wasSent` tells which ones reached
   * the wire. Called once per queue, also with an empty list.
   */
  queueFailed(queue: TcpQueue, error: HostError, requests: QueueRequest[]): void;
}

export interface SubmitOptions {
  /** Overrides the queue's command timeout; 0 = none (Asynchronous Event Requests). */
  timeoutMs?: number;
}

let nextSeq = 0;

/**
 * One command on its way through a queue (and, after a queue failure, through its owner).
 * `managed` requests go to the owner when their queue fails; others are rejected.
 */
export class QueueRequest {
  readonly cmd: HostCommand;
  readonly promise: Promise<HostCompletion>;
  /** Submission order, across all queues. */
  readonly seq = nextSeq++;
  readonly managed: boolean;
  /** Per-command timeout (undefined: the queue's). */
  readonly timeoutMs: number | undefined;
  /** True once settled. */
  done = false;
  /** True while the capsule is on the wire and the completion has not arrived. */
  inFlight = false;
  /** Set when the queue failed: was the capsule sent before that? */
  wasSent = false;
  // ---- transport state of the current attempt ----
  cid = -1;
  deadline = 0;
  inCapsule = false;
  /** C2H bytes received / H2C bytes asked for by R2Ts. */
  transferred = 0;
  digestError = false;
  timedOut = false;
  #resolve!: (c: HostCompletion) => void;
  #reject!: (e: Error) => void;

  constructor(cmd: HostCommand, managed: boolean, timeoutMs?: number) {
    if (cmd.data !== undefined && cmd.into !== undefined && cmd.data.length > 0 && cmd.into.length > 0)
      throw new RangeError('an NVMe command moves data in one direction: give `data` or `into`, not both');
    this.cmd = cmd;
    this.managed = managed;
    this.timeoutMs = timeoutMs;
    this.promise = new Promise<HostCompletion>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const signal = cmd.signal;
    if (signal) {
      if (signal.aborted) this.fail(abortedError(cmd));
      else signal.addEventListener('abort', this);
    }
  }

  /** The command's AbortSignal fired (EventListener object: no closure per command). */
  handleEvent(): void {
    if (this.done || this.inFlight) return;
    this.fail(abortedError(this.cmd));
  }

  complete(c: HostCompletion): void {
    if (this.done) return;
    this.done = true;
    this.cmd.signal?.removeEventListener('abort', this);
    this.#resolve(c);
  }

  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.cmd.signal?.removeEventListener('abort', this);
    this.#reject(err);
  }

  /** "READ (CID 5)" for messages. */
  describe(qid: number): string {
    const sqe = this.cmd.sqe;
    const name = opcodeName(qid, sqe.opcode ?? 0, (sqe.nsid ?? 0) & 0xff);
    return this.cid >= 0 ? `${name} (CID ${this.cid})` : name;
  }
}

function abortedError(cmd: HostCommand): HostError {
  const sqe = cmd.sqe;
  return new HostError(
    'ABORTED',
    `command opcode 0x${(sqe.opcode ?? 0).toString(16)} aborted before it was sent`,
    { cause: cmd.signal?.reason },
  );
}

/** A FIFO with O(1) shift (Array.shift copies). */
class Fifo<T> {
  #items: Array<T | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(v: T): void {
    this.#items.push(v);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const v = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return v;
  }

  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

const SQE_SIZE = 64;

export class TcpQueue {
  readonly qid: number;
  /** Entries (SQSIZE + 1); size − 1 commands at most are outstanding. */
  readonly size: number;
  readonly name: string;
  readonly socket: Socket;
  readonly commandTimeoutMs: number;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  owner: QueueOwner | undefined;
  /** In-capsule data bytes this queue sends at most (Fabrics commands: at least 8 KiB). */
  inlineDataSize: number;
  /** The controller's ICResp. */
  icresp!: ICRespPdu;
  /** Digests and alignment of what this host sends. */
  tx: TxOptions = { headerDigest: false, dataDigest: false };

  readonly #parser: PduParser;
  readonly #slots: Array<QueueRequest | undefined>;
  readonly #free: number[] = [];
  readonly #waiting = new Fifo<QueueRequest>();
  readonly #sqe = Buffer.alloc(SQE_SIZE);
  readonly #asked: number;
  #inflight = 0;
  #error: HostError | undefined;
  #closing = false;
  #corked = false;
  #timer: NodeJS.Timeout | undefined;
  #ic: { resolve: (p: ICRespPdu) => void; reject: (e: HostError) => void } | undefined;

  private constructor(socket: Socket, o: TcpQueueOptions) {
    if (!Number.isInteger(o.size) || o.size < 2 || o.size > 65536)
      throw new RangeError(`queue size ${o.size} must be 2..65536 entries`);
    this.socket = socket;
    this.qid = o.qid;
    this.size = o.size;
    this.name = `${o.name ?? `${o.address.host}:${o.address.port}`} queue ${o.qid}`;
    this.owner = o.owner;
    this.commandTimeoutMs = o.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.inlineDataSize = o.inlineDataSize ?? NVME_TCP_ADMIN_CCSZ;
    this.#asked =
      (o.headerDigest ? DigestOption.HDR_DIGEST_ENABLE : 0) |
      (o.dataDigest ? DigestOption.DATA_DIGEST_ENABLE : 0);
    this.#parser = new PduParser({ direction: 'c2h', maxC2HData: o.maxC2HDataBytes ?? NVMET_TCP_MAXH2CDATA });
    this.#slots = new Array<QueueRequest | undefined>(o.size - 1);
    // Pop from the end: CIDs 0, 1, 2, ... are used first.
    for (let cid = o.size - 2; cid >= 0; cid--) this.#free.push(cid);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) =>
      this.#fail(new HostError('CLOSED', `${this.name}: socket error: ${err.message}`)),
    );
    socket.on('close', () =>
      this.#fail(
        new HostError(
          'CLOSED',
          `${this.name}: ${this.#closing ? 'closed by the host' : 'the controller closed the connection'}`,
        ),
      ),
    );
    const t = this.commandTimeoutMs > 0 ? this.commandTimeoutMs : 1000;
    this.#timer = setInterval(() => this.#checkTimeouts(), Math.max(10, Math.min(1000, Math.floor(t / 8))));
    this.#timer.unref();
  }

  /** Connects and runs the IC exchange. Rejects with HostError CONNECT or IC. */
  static async open(o: TcpQueueOptions): Promise<TcpQueue> {
    const where = `${o.address.host}:${o.address.port}`;
    const timeoutMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const socket = tcpConnect({ host: o.address.host, port: o.address.port });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new HostError('CONNECT', `cannot connect to ${where}: no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(new HostError('CONNECT', `cannot connect to ${where}: ${err.message}`, { cause: err }));
        });
      });
    } catch (err) {
      socket.destroy();
      throw err;
    }
    socket.removeAllListeners('error');
    const q = new TcpQueue(socket, o);
    try {
      await q.#initialize(Math.max(1, deadline - Date.now()));
    } catch (err) {
      q.destroy();
      throw err;
    }
    return q;
  }

  async #initialize(timeoutMs: number): Promise<void> {
    const done = new Promise<ICRespPdu>((resolve, reject) => (this.#ic = { resolve, reject }));
    const timer = setTimeout(
      () => this.#ic?.reject(new HostError('IC', `${this.name}: no ICResp within the connect timeout`)),
      timeoutMs,
    );
    this.#write(buildICReq({ hpda: 0, dgst: this.#asked, maxr2t: 0 }));
    try {
      const resp = await done;
      if (resp.pfv !== NVME_TCP_PFV_1_0)
        throw new HostError('IC', `${this.name}: ICResp PFV ${resp.pfv}, expected 0`);
      if (resp.dgst !== this.#asked)
        throw new HostError(
          'IC',
          `${this.name}: ICResp enables digests 0x${resp.dgst.toString(16)}, the host asked for 0x${this.#asked.toString(16)} (header ${this.#asked & 1 ? 'on' : 'off'}, data ${this.#asked & 2 ? 'on' : 'off'})`,
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

  // ---- state ----

  /** Commands sent and not completed. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Commands sent or waiting for a slot (what least-outstanding balancing compares). */
  get outstanding(): number {
    return this.#inflight + this.#waiting.length;
  }

  /** Why the queue failed, once it did. */
  get error(): HostError | undefined {
    return this.#error;
  }

  get failed(): boolean {
    return this.#error !== undefined;
  }

  /** MAXH2CDATA of the ICResp. */
  get maxH2CData(): number {
    return this.icresp.maxh2cdata;
  }

  // ---- submission ----

  /** Submits a command; resolves with its completion (any status), rejects with HostError. */
  submit(cmd: HostCommand, options: SubmitOptions = {}): Promise<HostCompletion> {
    const req = new QueueRequest(cmd, false, options.timeoutMs);
    if (!req.done) this.enqueue(req);
    return req.promise;
  }

  /** Sends `req` now, or queues it for the next free command ID. */
  enqueue(req: QueueRequest): void {
    if (req.done) return;
    if (this.#error) {
      req.wasSent = false;
      if (req.managed && this.owner) this.owner.queueFailed(this, this.#error, [req]);
      else req.fail(this.#error);
      return;
    }
    const cid = this.#free.pop();
    if (cid === undefined) this.#waiting.push(req);
    else this.#send(req, cid);
  }

  #send(req: QueueRequest, cid: number): void {
    const cmd = req.cmd;
    const s = cmd.sqe;
    const data = cmd.data !== undefined && cmd.data.length > 0 ? cmd.data : undefined;
    const length = data ? data.length : (cmd.into?.length ?? 0);
    const opcode = s.opcode ?? 0;
    let inCapsule = false;
    if (data) {
      // Fabrics commands (Connect's 1 KiB) always fit the admin size (nvme_tcp_inline_data_size).
      const limit =
        opcode === FABRICS_OPCODE ? Math.max(this.inlineDataSize, NVME_TCP_ADMIN_CCSZ) : this.inlineDataSize;
      inCapsule = length <= limit;
    }
    req.cid = cid;
    req.inFlight = true;
    req.inCapsule = inCapsule;
    req.transferred = 0;
    req.digestError = false;
    req.timedOut = false;
    const timeout = req.timeoutMs ?? this.commandTimeoutMs;
    req.deadline = timeout > 0 ? Date.now() + timeout : 0;
    this.#slots[cid] = req;
    this.#inflight++;

    const b = this.#sqe;
    b.fill(0);
    b[0] = opcode;
    b[1] = ((s.flags ?? 0) & ~0xc0) | SqeFlags.SGL_METABUF; // PSDT 01b: SGLs (Linux sets it on fabrics)
    b.writeUInt16LE(cid, 2);
    b.writeUInt32LE((s.nsid ?? 0) >>> 0, 4);
    if (s.cdw2) b.writeUInt32LE(s.cdw2 >>> 0, 8);
    if (s.cdw3) b.writeUInt32LE(s.cdw3 >>> 0, 12);
    if (s.mptr) b.writeBigUInt64LE(BigInt(s.mptr), 16);
    // DPTR: one SGL descriptor, address 0 (in-capsule: offset 0 from ICDOFF).
    b.writeUInt32LE(length, 32);
    b[39] = inCapsule ? SglIdentifier.INCAPSULE : SglIdentifier.TRANSPORT;
    if (s.cdw10) b.writeUInt32LE(s.cdw10 >>> 0, 40);
    if (s.cdw11) b.writeUInt32LE(s.cdw11 >>> 0, 44);
    if (s.cdw12) b.writeUInt32LE(s.cdw12 >>> 0, 48);
    if (s.cdw13) b.writeUInt32LE(s.cdw13 >>> 0, 52);
    if (s.cdw14) b.writeUInt32LE(s.cdw14 >>> 0, 56);
    if (s.cdw15) b.writeUInt32LE(s.cdw15 >>> 0, 60);
    this.#write(buildCapsuleCmd(this.tx, b, inCapsule ? data : undefined));
  }

  /** Writes buffers, corked until the end of this tick so a burst of PDUs is one writev. */
  #write(list: readonly Buffer[]): void {
    const s = this.socket;
    if (s.destroyed) return;
    if (!this.#corked) {
      this.#corked = true;
      s.cork();
      process.nextTick(this.#uncork);
    }
    for (const b of list) s.write(b);
  }

  readonly #uncork = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  };

  // ---- completion ----

  #complete(req: QueueRequest, status: NvmeStatus, dw0: number, dw1: number): void {
    const cid = req.cid;
    this.#slots[cid] = undefined;
    this.#inflight--;
    req.inFlight = false;
    // The freed slot goes to the oldest waiting command first (FIFO).
    let next = this.#waiting.shift();
    while (next !== undefined && next.done) next = this.#waiting.shift();
    if (next !== undefined) this.#send(next, cid);
    else this.#free.push(cid);
    if (req.digestError && status.sct === 0 && status.sc === 0) status = Status.DATA_XFER_ERROR;
    req.complete({ status, dw0, dw1 });
  }

  // ---- receive ----

  #onData(chunk: Buffer): void {
    if (this.#error) return;
    this.#parser.push(chunk);
    for (;;) {
      let pdu: TcpPdu | undefined;
      try {
        pdu = this.#parser.next();
      } catch (err) {
        if (!TcpFatalError.is(err)) throw err;
        if (err.sendTermReq) this.#write(buildTermReqFor(err));
        this.#fail(new HostError('PROTOCOL', `${this.name}: ${err.message}`), err.sendTermReq);
        return;
      }
      if (pdu === undefined || this.#error) return;
      this.#dispatch(pdu);
    }
  }

  #dispatch(pdu: TcpPdu): void {
    switch (pdu.type) {
      case PduType.CapsuleResp: {
        const cqe = pdu.cqe;
        const cid = cqe.readUInt16LE(12);
        const req = this.#slots[cid];
        if (req === undefined)
          return this.#protocolError(`CapsuleResp for CID ${cid}, which is not outstanding`);
        const word = cqe.readUInt16LE(14);
        const status = word >>> 1 === 0 ? SUCCESS : decodeStatusField(word).status;
        return this.#complete(req, status, cqe.readUInt32LE(0), cqe.readUInt32LE(4));
      }
      case PduType.C2HData:
        return this.#onC2HData(pdu);
      case PduType.R2T:
        return this.#onR2T(pdu);
      case PduType.ICResp:
        this.#parser.configure({
          headerDigest: (pdu.dgst & DigestOption.HDR_DIGEST_ENABLE) !== 0,
          dataDigest: (pdu.dgst & DigestOption.DATA_DIGEST_ENABLE) !== 0,
          pda: 0,
        });
        this.#ic?.resolve(pdu);
        return;
      case PduType.C2HTermReq: {
        const text = `the controller ended the connection with C2HTermReq: FES 0x${pdu.fes.toString(16)} ${fesName(pdu.fes)}, FEI ${pdu.fei}`;
        this.#ic?.reject(new HostError('IC', `${this.name}: ${text}`));
        return this.#fail(new HostError('PROTOCOL', `${this.name}: ${text}`));
      }
      default:
        return this.#protocolError(`unexpected ${pdu.type} PDU`);
    }
  }

  #onC2HData(pdu: C2HDataPdu): void {
    const req = this.#slots[pdu.cccid];
    const into = req?.cmd.into;
    if (req === undefined || into === undefined || into.length === 0)
      return this.#protocolError(`C2HData for CID ${pdu.cccid}, which expects no data`);
    const end = pdu.datao + pdu.datal;
    if (pdu.datao !== req.transferred || end > into.length)
      return this.#protocolError(
        `C2HData bytes ${pdu.datao}..${end} of ${req.describe(this.qid)}: expected offset ${req.transferred} of a ${into.length}-byte transfer`,
      );
    into.set(pdu.data, pdu.datao);
    req.transferred = end;
    if (pdu.dataDigestError) req.digestError = true;
    if (pdu.success) {
      if (end !== into.length)
        return this.#protocolError(
          `C2HData SUCCESS for ${req.describe(this.qid)} after ${end} of ${into.length} bytes`,
        );
      this.#complete(req, SUCCESS, 0, 0);
    }
  }

  #onR2T(pdu: R2TPdu): void {
    const req = this.#slots[pdu.cccid];
    const data = req?.cmd.data;
    if (req === undefined || data === undefined || data.length === 0 || req.inCapsule)
      return this.#protocolError(`R2T for CID ${pdu.cccid}, which has no data to send`);
    const end = pdu.r2to + pdu.r2tl;
    // nvme_tcp_handle_r2t: each R2T continues where the data asked for so far ends, inside the data.
    if (pdu.r2to !== req.transferred || end > data.length)
      return this.#protocolError(
        `R2T for bytes ${pdu.r2to}..${end} of ${req.describe(this.qid)}: expected offset ${req.transferred} of a ${data.length}-byte transfer`,
      );
    req.transferred = end;
    const max = this.icresp.maxh2cdata;
    for (let off = pdu.r2to; off < end; off += max) {
      const n = Math.min(max, end - off);
      this.#write(
        buildH2CData(
          this.tx,
          { cccid: pdu.cccid, ttag: pdu.ttag, datao: off, last: off + n === end },
          data.subarray(off, off + n),
        ),
      );
    }
  }

  // ---- failure ----

  #checkTimeouts(): void {
    if (this.#inflight === 0) return;
    const now = Date.now();
    for (const req of this.#slots) {
      if (req !== undefined && req.deadline !== 0 && now >= req.deadline) {
        req.timedOut = true;
        const ms = req.timeoutMs ?? this.commandTimeoutMs;
        this.#fail(
          new HostError('TIMEOUT', `${this.name}: ${req.describe(this.qid)} timed out after ${ms} ms`),
        );
        return;
      }
    }
  }

  #protocolError(message: string): void {
    this.#fail(new HostError('PROTOCOL', `${this.name}: ${message}`));
  }

  /**
   * Fails the queue once: closes the socket (after flushing what is written when `flush`, so
   * an H2CTermReq gets out), hands every command to the owner (or rejects it).
   */
  #fail(err: HostError, flush = false): void {
    if (this.#error) return;
    this.#error = err;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#ic?.reject(
      err.code === 'CLOSED' || err.code === 'PROTOCOL' ? new HostError('IC', err.message) : err,
    );
    if (flush && !this.socket.destroyed) {
      if (this.#corked) this.#uncork();
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else this.socket.destroy();
    const requests: QueueRequest[] = [];
    for (const req of this.#slots) if (req !== undefined) requests.push(req);
    requests.sort((a, b) => a.seq - b.seq);
    for (const req of requests) {
      req.wasSent = true;
      req.inFlight = false;
    }
    for (const req of this.#waiting.drain()) {
      if (req.done) continue;
      req.wasSent = false;
      requests.push(req);
    }
    this.#slots.fill(undefined);
    this.#free.length = 0;
    this.#inflight = 0;
    const managed: QueueRequest[] = [];
    for (const req of requests) {
      if (req.managed && this.owner) managed.push(req);
      else if (req.timedOut || err.code !== 'TIMEOUT') req.fail(err);
      else req.fail(new HostError('CLOSED', `${this.name} failed: ${err.message}`, { cause: err }));
    }
    this.owner?.queueFailed(this, err, managed);
  }

  /**
   * Closes the connection in order (FIN, then waits up to `lingerMs` for the controller to
   * close its side); outstanding commands fail with CLOSED (or go to the owner).
   */
  async close(lingerMs = 2000): Promise<void> {
    if (!this.#error && !this.#closing) {
      this.#closing = true;
      this.socket.end();
    }
    if (this.socket.destroyed) return;
    const timer = setTimeout(() => this.destroy(), lingerMs);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection at once; outstanding commands fail with `err` (default CLOSED). */
  destroy(err?: HostError): void {
    this.#closing = true;
    this.#fail(err ?? new HostError('CLOSED', `${this.name}: closed by the host`));
  }
}
