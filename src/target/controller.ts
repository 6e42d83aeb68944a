// A dynamic controller: what one host association sees (nvmet's struct nvmet_ctrl).
//
// - Queues: the admin queue (qid 0) and I/O queues 1..N, each one transport connection.
//   N is what Set Features Number of Queues granted (at most the subsystem's maxIoQueues;
//   before that feature is set, the maximum).
// - Registers through Property Get/Set: CAP (MQES from the target's queue size, TO 7.5 s,
//   CSS NVM + I/O command sets, MPSMIN 4 KiB), VS 2.1, CC and CSTS. CC.EN 0→1 checks
//   IOSQES=6, IOCQES=4, MPS=0, AMS=0, CSS NVM or CSI and sets CSTS.RDY, or CSTS.CFS when a
//   value is unsupported; CC.EN 1→0 resets CSTS; CC.SHN≠0 clears RDY and sets CSTS.SHST
//   to "complete" at once (nothing is cached in the target; namespace devices keep their own
//   caches, flushed by Flush or FUA).
// - Keep-alive: KATO from Connect, rounded up to whole seconds (Identify KAS = 100 ms units
//   × 10). The timer restarts on every Keep Alive and when CC.EN goes to 1. Traffic-based
//   keep-alive (CTRATT.TBKAS) gives nvmet's grace: when the timer runs out but any command
//   arrived during the period, it runs one more period instead of expiring; so a controller
//   dies after KATO with no command at all, at most 2 × KATO after the last one. Expiry
//   sets CSTS.CFS and deletes the controller with all its queues. Discovery controllers
//   connected with KATO 0 get 120 s, as nvmet.
// - Asynchronous events: up to 4 outstanding Asynchronous Event Requests (AERL 3). Namespace
//   changes add the NSID to the Changed Namespace List (1024 entries, then 0xFFFFFFFF) and
//   send a Notice / Namespace Attribute Changed event when Async Event Configuration bit 8 is
//   set (the default, as nvmet) and no such event is waiting to be read; reading log page 04h
//   without RAE unmasks it.
// - Error log: the newest 64 failures that named a field (errorLoc), as nvmet records them.

import type { Clock, TimerHandle } from './clock.js';
import type { Queue } from './queue.js';
import type { Subsystem } from './subsystem.js';
import type { Request, TransportOps } from './transport.js';
import { NvmeStatusError, Status, withDnr, type NvmeStatus } from '../nvme/status.js';
import {
  CapCss,
  CcCss,
  ConnectCommand,
  connectInvalidSqe,
  CstsShst,
  decodeCc,
  encodeCap,
  encodeCsts,
  encodeVs,
} from '../nvme/fabrics.js';
import { AsyncEventConfig } from '../nvme/features.js';
import { CommandError } from './errors.js';
import {
  AsyncEventNotice,
  AsyncEventType,
  encodeAsyncEvent,
  LogPageId,
  MAX_CHANGED_NAMESPACES,
} from '../nvme/log-page.js';

export const NVME_VS_2_1 = encodeVs({ major: 2, minor: 1 });
/** KAS: keep-alive granularity in 100 ms units (NVMET_KAS). */
export const KEEP_ALIVE_GRANULARITY = 10;
export const DISCOVERY_DEFAULT_KATO_MS = 120_000;
export const ASYNC_EVENT_LIMIT = 4;
export const ERROR_LOG_ENTRIES = 64;
/** Admin queues hold at most 4096 entries (AQA.ASQS is 12 bits, 0's based). */
export const ADMIN_QUEUE_MAX_ENTRIES = 4096;

/** The Async Event Configuration bits (Set Features 0Bh) the target supports. */
export const AenConfig = {
  /** SMART critical warnings (bits 4:0): accepted, never sent (nvmet does the same). */
  SMART_CRITICAL:
    AsyncEventConfig.SMART_SPARE |
    AsyncEventConfig.SMART_TEMPERATURE |
    AsyncEventConfig.SMART_DEGRADED |
    AsyncEventConfig.SMART_READ_ONLY |
    AsyncEventConfig.SMART_VOLATILE_BACKUP,
  NS_ATTRIBUTE: AsyncEventConfig.NS_ATTR,
  DISCOVERY_CHANGE: AsyncEventConfig.DISCOVERY_CHANGE,
} as const;

export const CSTS_RDY = encodeCsts({ rdy: true });
export const CSTS_CFS = encodeCsts({ cfs: true });
export const CSTS_SHST_COMPLETE = encodeCsts({ shst: CstsShst.COMPLETE });
const CSTS_SHST_MASK = encodeCsts({ shst: 3 });

/** CAP for a controller whose queues hold at most maxQueueSize entries. */
export function capRegister(maxQueueSize: number): bigint {
  return encodeCap({
    mqes: maxQueueSize - 1,
    to: 15, // 15 × 500 ms for CSTS.RDY to follow CC.EN, as nvmet
    css: CapCss.NVM | CapCss.CSI, // NVM, and CC.CSS = 110b (I/O command sets) allowed
    mpsmin: 0, // 4 KiB pages
    mpsmax: 0,
  });
}

export interface ControllerFeatures {
  arbitration: number;
  powerState: number;
  /** Error Recovery: TLER (bits 15:0); DULBE is not supported. */
  errorRecovery: number;
  /** Volatile Write Cache Enable. When cleared, every write is sent with FUA. */
  writeCache: boolean;
  asyncEventConfig: number;
  /** Host Behavior Support data (512 bytes) as last set. */
  hostBehavior: Buffer;
}

export interface ErrorLogEntry {
  readonly errorCount: bigint;
  readonly sqid: number;
  readonly cid: number;
  readonly status: NvmeStatus;
  readonly errorLoc: number;
  readonly lba: number;
  readonly nsid: number;
  readonly opcode: number;
}

interface PendingAer {
  readonly req: Request;
  readonly resolve: () => void;
}

interface QueuedEvent {
  readonly type: number;
  readonly info: number;
  readonly lid: number;
}

export interface ControllerInit {
  subsystem: Subsystem;
  cntlid: number;
  hostnqn: string;
  hostid: Buffer;
  /** KATO from Connect, milliseconds (0 = no keep-alive). */
  kato: number;
  ops: TransportOps;
  clock: Clock;
  maxQueueSize: number;
  /** MDTS in bytes for this controller (power of two × 4096). */
  maxDataTransferBytes: number;
  portid: number | undefined;
  /** Called once when the controller is deleted (the target drops it from its maps). */
  onDelete?: (ctrl: Controller, reason: string) => void;
}

export type ControllerState = 'live' | 'deleting' | 'deleted';

export class Controller {
  readonly subsystem: Subsystem;
  readonly cntlid: number;
  readonly hostnqn: string;
  readonly hostid: Buffer;
  readonly ops: TransportOps;
  readonly portid: number | undefined;
  readonly cap: bigint;
  readonly vs = NVME_VS_2_1;
  readonly maxQueueSize: number;
  readonly maxDataTransferBytes: number;
  cc = 0;
  csts = 0;
  /** Keep-alive timeout in seconds (0 = disabled). */
  kato: number;
  readonly queues = new Map<number, Queue>();
  /** I/O queues the host may connect (qid 1..ioQueues). */
  ioQueues: number;
  /** True once Set Features Number of Queues succeeded. */
  queueCountSet = false;
  readonly features: ControllerFeatures;
  #state: ControllerState = 'live';
  readonly #clock: Clock;
  #kaTimer: TimerHandle | undefined;
  #trafficSeen = false;
  readonly #onDelete: ((ctrl: Controller, reason: string) => void) | undefined;
  /** Why the controller was deleted. */
  deleteReason: string | undefined;

  readonly #aers: PendingAer[] = [];
  readonly #events: QueuedEvent[] = [];
  /** Event kinds (AenConfig bits) sent and not yet acknowledged by reading their log page. */
  readonly #aenMasked = new Set<number>();
  #changedNs: number[] = [];
  #changedNsOverflow = false;
  #errorCount = 0n;
  readonly #errors: ErrorLogEntry[] = [];

  constructor(init: ControllerInit) {
    this.subsystem = init.subsystem;
    this.cntlid = init.cntlid;
    this.hostnqn = init.hostnqn;
    this.hostid = init.hostid;
    this.ops = init.ops;
    this.portid = init.portid;
    this.#clock = init.clock;
    this.#onDelete = init.onDelete;
    this.maxQueueSize = init.maxQueueSize;
    this.maxDataTransferBytes = init.maxDataTransferBytes;
    this.cap = capRegister(init.maxQueueSize);
    let katoMs = init.kato;
    if (this.subsystem.isDiscovery && katoMs === 0) katoMs = DISCOVERY_DEFAULT_KATO_MS;
    this.kato = Math.ceil(katoMs / 1000);
    this.ioQueues = this.subsystem.maxIoQueues;
    this.features = {
      arbitration: 0,
      powerState: 0,
      errorRecovery: 0,
      writeCache: true,
      asyncEventConfig: this.subsystem.isDiscovery ? AenConfig.DISCOVERY_CHANGE : AenConfig.NS_ATTRIBUTE,
      hostBehavior: Buffer.alloc(512),
    };
    this.#startKeepAlive();
  }

  get state(): ControllerState {
    return this.#state;
  }

  get live(): boolean {
    return this.#state === 'live';
  }

  get enabled(): boolean {
    return decodeCc(this.cc).en;
  }

  get ready(): boolean {
    return (this.csts & CSTS_RDY) !== 0;
  }

  toString(): string {
    return `controller ${this.cntlid} of ${this.subsystem.nqn} (host ${this.hostnqn})`;
  }

  // ---- registers ----

  /**
   * Property Set of CC (nvmet_update_cc, except that CC keeps the value the host wrote):
   * EN 0→1 starts the controller (RDY, or CFS for values it cannot honour); EN 1→0 resets
   * CSTS (RDY, CFS and SHST clear); SHN set stops the controller (RDY clear) and reports the
   * shutdown complete at once; SHN cleared returns SHST to normal operation.
   */
  setCc(value: number): void {
    const old = decodeCc(this.cc);
    const next = decodeCc(value >>> 0);
    this.cc = value >>> 0;
    if (next.en && !old.en) this.#start(next);
    if (!next.en && old.en) this.csts = 0;
    if (next.shn && !old.shn) this.csts = (this.csts & ~(CSTS_RDY | CSTS_SHST_MASK)) | CSTS_SHST_COMPLETE;
    if (!next.shn && old.shn) this.csts &= ~CSTS_SHST_MASK;
  }

  #start(cc: ReturnType<typeof decodeCc>): void {
    // Discovery controllers do not check the I/O entry sizes (nvmet: old hosts leave them 0).
    const badEntrySizes = !this.subsystem.isDiscovery && (cc.iosqes !== 6 || cc.iocqes !== 4);
    if (badEntrySizes || cc.mps !== 0 || cc.ams !== 0 || (cc.css !== CcCss.NVM && cc.css !== CcCss.CSI)) {
      this.csts = CSTS_CFS;
      return;
    }
    this.csts = CSTS_RDY;
    // A host that enabled the controller gets a full keep-alive period from now.
    this.#restartKeepAlive();
  }

  // ---- queues ----

  /**
   * Binds a queue to this controller (Connect). Throws NvmeStatusError for a queue ID that
   * is taken or out of range, or a size the controller cannot take.
   */
  installQueue(queue: Queue, qid: number, sqsize: number, disableSqFlow: boolean): void {
    if (this.queues.has(qid))
      throw new CommandError(withDnr(Status.CMD_SEQ_ERROR), `${this}: queue ${qid} is already connected`, {
        errorLoc: ConnectCommand.offsetOf('qid'),
      });
    if (sqsize === 0) throw connectInvalidParam('SQSIZE 0 is not a valid queue size', 'sqsize');
    const max = qid === 0 ? ADMIN_QUEUE_MAX_ENTRIES : this.maxQueueSize;
    if (sqsize + 1 > max)
      throw connectInvalidParam(
        `SQSIZE ${sqsize} asks for ${sqsize + 1} entries; ${qid === 0 ? 'the admin queue holds' : 'I/O queues hold'} at most ${max}`,
        'sqsize',
      );
    queue.ctrl = this;
    queue.qid = qid;
    queue.size = sqsize + 1;
    queue.sqhd = 0;
    queue.sqFlowDisabled = disableSqFlow;
    this.queues.set(qid, queue);
  }

  queueDestroyed(queue: Queue): void {
    if (this.queues.get(queue.qid) === queue) this.queues.delete(queue.qid);
    if (queue.qid === 0) this.delete('admin queue closed');
  }

  /** Connected I/O queues. */
  get ioQueueCount(): number {
    return [...this.queues.keys()].filter((q) => q > 0).length;
  }

  // ---- keep-alive ----

  /** A command arrived (traffic-based keep-alive). */
  noteTraffic(): void {
    this.#trafficSeen = true;
  }

  /** Keep Alive command: a fresh period starts now. */
  keepAlive(): void {
    this.#restartKeepAlive();
  }

  /** Set Features Keep Alive Timer (milliseconds). */
  setKeepAliveTimeout(ms: number): void {
    this.#stopKeepAlive();
    this.kato = Math.ceil(ms / 1000);
    this.#startKeepAlive();
  }

  #startKeepAlive(): void {
    if (this.kato === 0 || this.#state !== 'live') return;
    this.#trafficSeen = false;
    this.#kaTimer = this.#clock.setTimer(this.kato * 1000, () => this.#keepAliveExpired());
  }

  #stopKeepAlive(): void {
    this.#kaTimer?.cancel();
    this.#kaTimer = undefined;
  }

  #restartKeepAlive(): void {
    this.#stopKeepAlive();
    this.#startKeepAlive();
  }

  #keepAliveExpired(): void {
    this.#kaTimer = undefined;
    if (this.#trafficSeen) {
      this.#startKeepAlive();
      return;
    }
    this.fatalError(`keep-alive timer (${this.kato} s) expired`);
  }

  // ---- teardown ----

  /** Marks the controller failed (CSTS.CFS) and deletes it. */
  fatalError(reason: string): void {
    this.csts |= CSTS_CFS;
    this.delete(reason);
  }

  /**
   * Deletes the controller once: stops the keep-alive timer, ends pending Asynchronous Event
   * Requests, frees the controller ID and asks the transport to close every queue.
   */
  delete(reason: string): void {
    if (this.#state !== 'live') return;
    this.#state = 'deleting';
    this.deleteReason = reason;
    this.#stopKeepAlive();
    for (const a of this.#aers.splice(0)) {
      a.req.status = withDnr(Status.ABORT_QUEUE);
      a.req.message = `${this} deleted: ${reason}`;
      a.resolve();
    }
    this.subsystem.controllers.delete(this);
    this.#onDelete?.(this, reason);
    try {
      this.ops.deleteController(this);
    } finally {
      this.#state = 'deleted';
    }
  }

  // ---- asynchronous events ----

  /**
   * Holds an Asynchronous Event Request until an event is due. Throws Asynchronous Event
   * Request Limit Exceeded when AERL + 1 are already outstanding.
   */
  waitForEvent(req: Request): Promise<void> {
    if (this.#aers.length >= ASYNC_EVENT_LIMIT)
      throw new NvmeStatusError(
        withDnr(Status.ASYNC_LIMIT),
        `${this}: ${ASYNC_EVENT_LIMIT} Asynchronous Event Requests already outstanding (AERL ${ASYNC_EVENT_LIMIT - 1})`,
      );
    return new Promise<void>((resolve) => {
      this.#aers.push({ req, resolve });
      this.#deliverEvents();
    });
  }

  get outstandingAers(): number {
    return this.#aers.length;
  }

  /** Sends an event if its kind is enabled and not masked (nvmet_aen_bit_disabled). */
  #raise(bit: number, event: QueuedEvent): void {
    if ((this.features.asyncEventConfig & bit) === 0) return;
    if (this.#aenMasked.has(bit)) return;
    this.#aenMasked.add(bit);
    this.#events.push(event);
    this.#deliverEvents();
  }

  #deliverEvents(): void {
    while (this.#aers.length > 0 && this.#events.length > 0) {
      const e = this.#events.shift()!;
      const a = this.#aers.shift()!;
      a.req.dw0 = encodeAsyncEvent(e);
      a.resolve();
    }
  }

  /** Reading a log page without RAE re-arms the event kind it reports. */
  acknowledgeEvent(bit: number): void {
    this.#aenMasked.delete(bit);
  }

  namespaceChanged(nsid: number): void {
    if (!this.live) return;
    if (!this.#changedNsOverflow && !this.#changedNs.includes(nsid)) {
      if (this.#changedNs.length >= MAX_CHANGED_NAMESPACES) {
        this.#changedNsOverflow = true;
        this.#changedNs = [];
      } else this.#changedNs.push(nsid);
    }
    this.#raise(AenConfig.NS_ATTRIBUTE, {
      type: AsyncEventType.NOTICE,
      info: AsyncEventNotice.NS_CHANGED,
      lid: LogPageId.CHANGED_NS,
    });
  }

  discoveryChanged(): void {
    if (!this.live) return;
    this.#raise(AenConfig.DISCOVERY_CHANGE, {
      type: AsyncEventType.NOTICE,
      info: AsyncEventNotice.DISC_CHANGED,
      lid: LogPageId.DISCOVER,
    });
  }

  /** The Changed Namespace List, emptied by reading it ([0xFFFFFFFF] after an overflow). */
  takeChangedNamespaces(): number[] {
    const list = this.#changedNsOverflow ? [0xffffffff] : this.#changedNs;
    this.#changedNs = [];
    this.#changedNsOverflow = false;
    return list;
  }

  // ---- error log ----

  recordError(req: Request): void {
    if (req.errorLoc === undefined) return;
    this.#errorCount++;
    this.#errors.unshift({
      errorCount: this.#errorCount,
      sqid: Math.max(0, req.queue.qid),
      cid: req.cid,
      status: req.status,
      errorLoc: req.errorLoc,
      lba: req.errorLba ?? 0,
      nsid: req.cmd.nsid,
      opcode: req.opcode,
    });
    if (this.#errors.length > ERROR_LOG_ENTRIES) this.#errors.length = ERROR_LOG_ENTRIES;
  }

  /** Error log entries, newest first. */
  get errorLog(): readonly ErrorLogEntry[] {
    return this.#errors;
  }

  /** Errors recorded since the controller was created. */
  get errorCount(): bigint {
    return this.#errorCount;
  }
}

/** Connect Invalid Parameters naming the bad SQE field in DW0 (IATTR 0, IPO = its offset). */
export function connectInvalidParam(
  msg: string,
  field: 'recfmt' | 'qid' | 'sqsize' | 'cattr' | 'kato',
): CommandError {
  return new CommandError(withDnr(Status.CONNECT_INVALID_PARAM), msg, {
    errorLoc: ConnectCommand.offsetOf(field),
    commandSet: 'fabrics',
    dw0: connectInvalidSqe(field),
  });
}
