// The contract between the transport-independent target core and a transport (TCP, the
// loopback used by tests): what a transport provides (TransportOps) and the Request the
// core hands back for each submitted command. Transports move PDUs and data; they never look
// at opcodes. (nvmet's struct nvmet_fabrics_ops and struct nvmet_req.)
//
// Life of a command, as a transport sees it:
//
//   const req = core.initRequest(queue, sqe);     // parse: decode, validate SGL/length, pick handler
//   if (req.completed) { ...response already queued (an error); drop any in-capsule data... }
//   else {
//     if (req.direction === 'host-to-controller')  // fill req.data (req.length bytes):
//       copy in-capsule data, or R2T/H2CData it, into req.data;
//     await req.execute();                         // runs the command; ends in ops.queueResponse(req)
//   }
//   queueResponse(req):                            // called exactly once per request
//     if (req.direction === 'controller-to-host' && req.succeeded) send req.data (C2HData);
//     send req.cqe() (or C2HData with the SUCCESS flag instead, when the transport can);
//     if (req.disconnectAfterResponse) close the connection after the response is sent.
//   connection closed: queue.destroy() — requests still waiting for data are abandoned
//   (no response), running ones finish and their responses are dropped. Data that cannot be
//   moved on a live connection: req.failTransfer(reason) (Data Transfer Error).
//
// Data direction: for admin and I/O commands, opcode bits 1:0 (01b host→controller, 10b
// controller→host, 00b no data; 11b is refused). For fabrics commands (opcode 0x7F) the same
// bits of the fctype: Connect (0x01) carries its 1024-byte data host→controller, Property
// Get/Set and Disconnect carry none. `req.length` is the SGL length, checked against the
// command (e.g. (NLB+1) × block size for Read/Write) and against MDTS before the transport
// moves any data.

import { encodeCqe } from '../nvme/completion.js';
import type { SqeFields } from '../nvme/command.js';
import type { Sgl } from '../nvme/sgl.js';
import { isSuccess, NvmeStatusError, Status, SUCCESS, withDnr, type NvmeStatus } from '../nvme/status.js';
import type { Controller } from './controller.js';
import { CommandError } from './errors.js';
import type { Namespace } from './namespace.js';
import type { Queue } from './queue.js';

/** What a transport gives the core (nvmet_fabrics_ops). */
export interface TransportOps {
  /** Transport name for messages: 'tcp', 'loop'. */
  readonly type: string;
  /**
   * The request is complete: `status`, `dw0`/`dw1` and (for controller→host commands) `data`
   * are final. Send the data and/or the response. Called exactly once for every request
   * initRequest returned, never for a queue the transport already destroyed.
   */
  queueResponse(req: Request): void;
  /**
   * The core wants the controller gone (keep-alive expiry, fatal error, subsystem or admin
   * queue removal): close every connection in `ctrl.queues`; each closed connection calls
   * `queue.destroy()`. Called at most once per controller.
   */
  deleteController(ctrl: Controller): void;
  /** In-capsule data bytes an I/O queue capsule may carry (IOCCSZ = 4 + this / 16). */
  readonly inlineDataSize: number;
  /** In-capsule data bytes on the admin queue (default: inlineDataSize). */
  readonly adminInlineDataSize?: number;
  /** Largest data transfer the transport allows for one command, bytes; 0 or absent = none. */
  readonly maxDataTransferBytes?: number;
}

export type DataDirection = 'none' | 'host-to-controller' | 'controller-to-host';

/** Runs a parsed command; throws NvmeStatusError (or anything: Internal Error) to fail it. */
export type ExecuteFn = (req: Request) => Promise<void> | void;

/** A command on its way through the core (nvmet_req). Created by core.initRequest only. */
export class Request {
  readonly queue: Queue;
  /** The 64-byte SQE as received (a private copy). */
  readonly sqe: Buffer;
  /** Decoded SQE fields. */
  readonly cmd: SqeFields;
  readonly cid: number;
  readonly opcode: number;
  /** Fabrics command type (SQE byte 4), meaningful when opcode is 0x7F. */
  readonly fctype: number;
  direction: DataDirection = 'none';
  /** The data pointer as decoded; undefined when the SQE could not be decoded that far. */
  sgl: Sgl | undefined;
  /** Bytes of data the command moves (the SGL length). */
  length = 0;
  /**
   * Set by a parser when the SGL may describe more data than the command uses (nvmet's
   * nvmet_check_data_len_lte): the Linux host sends Dataset Management with a 4 KiB buffer
   * whatever the range count.
   */
  dataLengthMayExceed = false;
  /** True when the host→controller data travels inside the command capsule. */
  inCapsule = false;
  /** Where in-capsule data starts, bytes past the SQE (the SGL's offset from ICDOFF). */
  inCapsuleOffset = 0;
  /**
   * The data buffer. Host→controller: allocated by initRequest (req.length bytes), filled by
   * the transport before execute(). Controller→host: set by execute().
   */
  data: Buffer | undefined;
  /** The namespace the command addresses, once found. */
  ns: Namespace | undefined;

  // completion fields
  status: NvmeStatus = SUCCESS;
  dw0 = 0;
  dw1 = 0;
  /** SQ head pointer reported in the CQE. */
  sqhd = 0;
  /** Byte offset in the SQE of the field that caused the failure (error log). */
  errorLoc: number | undefined;
  /** First failing LBA (error log). */
  errorLba: number | undefined;
  /** Why the command failed, for logs and tests. */
  message: string | undefined;
  /** Set by Disconnect: close the connection once the response is sent. */
  disconnectAfterResponse = false;

  /** @internal set by the parsers */
  handler: ExecuteFn | undefined;
  /** @internal release of the namespace's in-flight count */
  releaseNs: (() => void) | undefined;
  #state: 'parsed' | 'executing' | 'completed' = 'parsed';
  /** @internal the core's completion step (sqhd, error log, queueResponse) */
  readonly finish: (req: Request) => void;

  constructor(queue: Queue, sqe: Buffer, cmd: SqeFields, finish: (req: Request) => void) {
    this.queue = queue;
    this.sqe = sqe;
    this.cmd = cmd;
    this.cid = cmd.cid;
    this.opcode = cmd.opcode;
    this.fctype = cmd.nsid & 0xff;
    this.finish = finish;
  }

  get completed(): boolean {
    return this.#state === 'completed';
  }

  get succeeded(): boolean {
    return isSuccess(this.status);
  }

  /** req.data for host→controller data, allocated (zeroed) when the transport has not set it. */
  dataBuffer(): Buffer {
    if (!this.data) this.data = Buffer.alloc(this.length);
    return this.data;
  }

  /**
   * Runs the command, then completes it (which calls ops.queueResponse). Never rejects: a
   * failure becomes the completion status. Calling it on a completed request does nothing.
   */
  async execute(): Promise<void> {
    if (this.#state !== 'parsed') return;
    this.#state = 'executing';
    const handler = this.handler;
    try {
      if (!handler) throw new Error('request has no handler');
      if (this.direction === 'host-to-controller' && this.length > 0 && this.data?.length !== this.length)
        throw new CommandError(
          withDnr(Status.DATA_XFER_ERROR),
          `the transport delivered ${this.data?.length ?? 0} of ${this.length} data bytes`,
        );
      await handler(this);
      if (this.direction === 'controller-to-host' && this.length > 0 && this.data?.length !== this.length)
        throw new Error(
          `the command produced ${this.data?.length ?? 0} data bytes, not the ${this.length} it owes the host`,
        );
    } catch (err) {
      this.fail(err);
    }
    this.complete();
  }

  /** Records a failure: an NvmeStatusError's status and error location, else Internal Error. */
  fail(err: unknown): void {
    if (NvmeStatusError.is(err)) {
      this.status = err.status;
      this.errorLoc = err.errorLoc;
      this.errorLba = err.errorLba;
      if (err instanceof CommandError && err.dw0 !== undefined) this.dw0 = err.dw0;
    } else {
      // A bug or an unexpected throw: the host gets Internal Error, never a hang.
      this.status = withDnr(Status.INTERNAL);
    }
    this.message = err instanceof Error ? err.message : String(err);
  }

  /**
   * The transport could not move the command's data but the connection lives on: the
   * request completes with Data Transfer Error (a response is sent). Only before execute().
   */
  failTransfer(reason: string): void {
    if (this.#state !== 'parsed') return;
    this.status = Status.DATA_XFER_ERROR;
    this.message = reason;
    this.complete();
  }

  /**
   * Ends a request that will never execute (its connection died before the data arrived):
   * releases what it holds without a response. Does nothing once execute() has started.
   */
  abandon(reason: string): void {
    if (this.#state !== 'parsed') return;
    this.status = withDnr(Status.ABORT_QUEUE);
    this.message = reason;
    this.complete();
  }

  /** @internal ends the request once. */
  complete(): void {
    if (this.#state === 'completed') return;
    this.#state = 'completed';
    this.releaseNs?.();
    this.releaseNs = undefined;
    this.finish(this);
  }

  /** The 16-byte completion queue entry for this request. */
  cqe(): Buffer {
    return encodeCqe({
      cid: this.cid,
      status: this.status,
      dw0: this.dw0 >>> 0,
      dw1: this.dw1 >>> 0,
      sqhd: this.sqhd,
      sqid: Math.max(0, this.queue.qid),
    });
  }
}
