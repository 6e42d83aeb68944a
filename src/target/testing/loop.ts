// A loopback "transport" for tests, like nvmet-loop: SQEs are built with the codec and
// handed to the core with their data; completions come back as decoded CQEs plus the data
// the controller returned. Every command can be tested without TCP.
//
//   const host = new LoopHost(target);
//   const c = await host.connectController(NQN, { ioQueues: 2 });   // Connect, CC.EN, queues
//   const r = await c.io[0]!.submit({ opcode: IoOpcode.READ, nsid: 1, ... }, { length: 4096 });
//   r.cqe.status, r.data

import { encodeSqe, type SqeInput } from '../../nvme/command.js';
import { decodeCqe, type Completion } from '../../nvme/completion.js';
import {
  encodeConnect,
  encodeConnectData,
  encodePropertyGet,
  encodePropertySet,
  Property,
} from '../../nvme/fabrics.js';
import { encodeNumQueues, encodeSetFeaturesCdw10, FeatureId } from '../../nvme/features.js';
import { AdminOpcode } from '../../nvme/opcodes.js';
import { inCapsuleSgl, transportSgl } from '../../nvme/sgl.js';
import { formatStatus, isSuccess } from '../../nvme/status.js';
import type { Controller } from '../controller.js';
import type { Queue } from '../queue.js';
import type { Target } from '../target.js';
import type { Request, TransportOps } from '../transport.js';

export interface LoopResult {
  cqe: Completion;
  /** Controller→host data of a successful command. */
  data: Buffer | undefined;
  req: Request;
}

export interface SubmitOptions {
  /** Host→controller data. */
  data?: Uint8Array;
  /** Controller→host bytes to ask for (the SGL length). */
  length?: number;
  /** Send the data in the capsule (default: when it fits the queue's in-capsule size). */
  inCapsule?: boolean;
  /** Use this DPTR instead of the one built from data/length. */
  dptr?: Uint8Array;
  /** SQE flags byte; default 0x40 (PSDT: SGL, metadata buffer). */
  flags?: number;
}

export interface LoopHostOptions {
  portid?: number;
  hostnqn?: string;
  hostid?: Uint8Array;
  /** In-capsule data size of I/O queues (default 8192). */
  inlineDataSize?: number;
  /** MDTS the transport allows (default: none). */
  maxDataTransferBytes?: number;
}

export const LOOP_HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-000000000001';

export class LoopQueue {
  readonly queue: Queue;
  readonly host: LoopHost;
  #cid = 0;
  readonly #pending = new Map<number, (r: LoopResult) => void>();
  /** Every response the core sent on this queue, in order. */
  readonly responses: LoopResult[] = [];

  constructor(host: LoopHost, queue: Queue) {
    this.host = host;
    this.queue = queue;
    queue.context = this;
  }

  nextCid(): number {
    this.#cid = (this.#cid + 1) & 0xffff;
    return this.#cid;
  }

  /** @internal */
  deliver(req: Request): void {
    const result: LoopResult = {
      cqe: decodeCqe(req.cqe()),
      data: req.direction === 'controller-to-host' && req.succeeded ? req.data : undefined,
      req,
    };
    this.responses.push(result);
    const resolve = this.#pending.get(req.cid);
    this.#pending.delete(req.cid);
    resolve?.(result);
  }

  /**
   * Submits one command: `sqe` fields (cid assigned when absent) or a whole 64-byte SQE.
   * Resolves with the completion (never rejects for an NVMe error status).
   */
  submit(sqe: SqeInput | Uint8Array, opts: SubmitOptions = {}): Promise<LoopResult> {
    let raw: Buffer;
    if (sqe instanceof Uint8Array) raw = Buffer.from(sqe);
    else {
      const input: SqeInput = { flags: opts.flags ?? 0x40, ...sqe };
      if (input.cid === undefined) input.cid = this.nextCid();
      if (input.dptr === undefined) input.dptr = opts.dptr ?? this.#dptr(opts);
      raw = encodeSqe(input);
    }
    const cid = raw.readUInt16LE(2);
    const done = new Promise<LoopResult>((resolve) => this.#pending.set(cid, resolve));
    const req = this.queue.target.initRequest(this.queue, raw);
    if (!req.completed) {
      if (req.direction === 'host-to-controller' && req.length > 0) {
        const data = opts.data ?? Buffer.alloc(0);
        // A real transport moves exactly req.length bytes; a short buffer is what a
        // misbehaving transport would deliver, and the core must refuse it.
        req.data = Buffer.from(data.subarray(0, req.length));
      }
      void req.execute();
    }
    return done;
  }

  #dptr(opts: SubmitOptions): Buffer {
    if (opts.data) {
      const len = opts.data.byteLength;
      const fits = len <= this.queue.inlineDataSize || (!this.queue.connected && len <= 8192);
      return (opts.inCapsule ?? fits) ? inCapsuleSgl(len) : transportSgl(len);
    }
    return transportSgl(opts.length ?? 0);
  }

  /** Closes the "connection" (queue.destroy). */
  close(): void {
    this.queue.destroy();
  }
}

export interface ConnectOptions {
  kato?: number;
  sqsize?: number;
  cntlid?: number;
  hostnqn?: string;
  hostid?: Uint8Array;
  cattr?: number;
  recfmt?: number;
}

export class LoopController {
  readonly host: LoopHost;
  readonly cntlid: number;
  readonly admin: LoopQueue;
  readonly io: LoopQueue[] = [];
  readonly subnqn: string;

  constructor(host: LoopHost, subnqn: string, cntlid: number, admin: LoopQueue) {
    this.host = host;
    this.subnqn = subnqn;
    this.cntlid = cntlid;
    this.admin = admin;
  }

  /** The target-side controller object. */
  get controller(): Controller {
    return this.admin.queue.ctrl!;
  }

  async propertySet(ofst: number, value: number | bigint, size: 4 | 8 = 4): Promise<LoopResult> {
    const q = this.admin;
    return q.submit(asCapsule(encodePropertySet({ cid: q.nextCid(), ofst, size, value })));
  }

  async propertyGet(ofst: number, size: 4 | 8 = 4): Promise<LoopResult> {
    const q = this.admin;
    return q.submit(asCapsule(encodePropertyGet({ cid: q.nextCid(), ofst, size })));
  }

  /** Connects one more I/O queue with ID qid. */
  async connectIoQueue(qid: number, opts: ConnectOptions = {}): Promise<LoopResult> {
    const { queue, result } = await this.host.connect(this.subnqn, { ...opts, cntlid: this.cntlid }, qid);
    if (isSuccess(result.cqe.status)) this.io.push(queue);
    return result;
  }

  close(): void {
    for (const q of this.io) q.close();
    this.admin.close();
  }
}

/** What every fabrics host sends: PSDT 01b (SGL) and a null transport SGL (no data). */
export function asCapsule(sqe: Buffer): Buffer {
  sqe[1] = 0x40;
  transportSgl(0).copy(sqe, 24);
  return sqe;
}

/** CC for an NVM host: EN, CSS NVM, 64-byte SQEs, 16-byte CQEs, 4 KiB pages. */
export const CC_ENABLE = 1 | (6 << 16) | (4 << 20);

export class LoopHost implements TransportOps {
  readonly type = 'loop';
  readonly target: Target;
  readonly portid: number | undefined;
  readonly hostnqn: string;
  readonly hostid: Buffer;
  readonly inlineDataSize: number;
  readonly adminInlineDataSize = 8192;
  readonly maxDataTransferBytes: number | undefined;
  /** Controllers the core asked this transport to delete, with their reasons. */
  readonly deleted: Array<{ cntlid: number; reason: string | undefined }> = [];

  constructor(target: Target, opts: LoopHostOptions = {}) {
    this.target = target;
    this.portid = opts.portid;
    this.hostnqn = opts.hostnqn ?? LOOP_HOSTNQN;
    this.hostid = Buffer.from(opts.hostid ?? Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));
    this.inlineDataSize = opts.inlineDataSize ?? 8192;
    this.maxDataTransferBytes = opts.maxDataTransferBytes;
  }

  queueResponse(req: Request): void {
    (req.queue.context as LoopQueue).deliver(req);
  }

  deleteController(ctrl: Controller): void {
    this.deleted.push({ cntlid: ctrl.cntlid, reason: ctrl.deleteReason });
    for (const q of [...ctrl.queues.values()]) q.destroy();
  }

  newQueue(): LoopQueue {
    return new LoopQueue(this, this.target.createQueue(this, this.portid));
  }

  /** Sends a Connect on a fresh queue. */
  async connect(
    subnqn: string,
    opts: ConnectOptions = {},
    qid = 0,
  ): Promise<{ queue: LoopQueue; result: LoopResult }> {
    const queue = this.newQueue();
    const data = encodeConnectData({
      hostid: opts.hostid ?? this.hostid,
      cntlid: opts.cntlid ?? 0xffff,
      subnqn,
      hostnqn: opts.hostnqn ?? this.hostnqn,
    });
    const sqe = encodeConnect({
      cid: queue.nextCid(),
      qid,
      sqsize: opts.sqsize ?? (qid === 0 ? 31 : 127),
      kato: opts.kato ?? 0,
      cattr: opts.cattr ?? 0,
      recfmt: opts.recfmt ?? 0,
      dptr: inCapsuleSgl(data.length),
    });
    const result = await queue.submit(sqe, { data });
    return { queue, result };
  }

  /**
   * Connect + CC.EN + Number of Queues + I/O queue connects, as a host does. Throws with the
   * status when a step fails.
   */
  async connectController(
    subnqn: string,
    opts: ConnectOptions & { ioQueues?: number; enable?: boolean } = {},
  ): Promise<LoopController> {
    const { queue, result } = await this.connect(subnqn, opts, 0);
    if (!isSuccess(result.cqe.status))
      throw new Error(`Connect to ${subnqn}: ${formatStatus(result.cqe.status, 'fabrics')}`);
    const c = new LoopController(this, subnqn, result.cqe.dw0 & 0xffff, queue);
    if (opts.enable === false) return c;
    const en = await c.propertySet(Property.CC, CC_ENABLE);
    if (!isSuccess(en.cqe.status)) throw new Error(`Property Set CC: ${formatStatus(en.cqe.status)}`);
    const n = opts.ioQueues ?? 0;
    if (n > 0) {
      const nq = await queue.submit({
        opcode: AdminOpcode.SET_FEATURES,
        cdw10: encodeSetFeaturesCdw10(FeatureId.NUM_QUEUES),
        cdw11: encodeNumQueues({ nsq: n - 1, ncq: n - 1 }),
      });
      if (!isSuccess(nq.cqe.status))
        throw new Error(`Set Features Number of Queues: ${formatStatus(nq.cqe.status)}`);
      for (let qid = 1; qid <= n; qid++) {
        const r = await c.connectIoQueue(qid);
        if (!isSuccess(r.cqe.status))
          throw new Error(`Connect I/O queue ${qid}: ${formatStatus(r.cqe.status, 'fabrics')}`);
      }
    }
    return c;
  }
}
