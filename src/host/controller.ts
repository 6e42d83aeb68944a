// An NVMe over TCP controller association seen from the host (Linux drivers/nvme/host/tcp.c,
// fabrics.c and core.c): bring-up, I/O queues, keep-alive, asynchronous events, the namespace
// list, error recovery with reconnect, and orderly disconnect.
//
// Bring-up (connect(), and every reconnect), in Linux's order:
//   admin queue (32 entries, NVME_AQ_DEPTH) + Fabrics Connect (KATO, CNTLID FFFFh) → Property
//   Get CAP and VS → Property Set CC (EN, CSS = I/O command sets when CAP.CSS offers them else
//   NVM, 4 KiB pages, SQES 6, CQES 4) → CSTS.RDY within CAP.TO → Identify Controller → Set
//   Features Number of Queues (the count granted in DW0 is used) → Asynchronous Event
//   Configuration (namespace attribute notices, when OAES has them) → Host Behavior Support
//   with CDFE formats 2/3 when OCFS offers them → one connection + Connect per I/O queue
//   (queue size asked, capped by CAP.MQES + 1 and MAXCMD) → one Asynchronous Event Request →
//   Identify active namespace list (CNS 02h) → RemoteNamespace per NSID → keep-alive.
// A discovery controller (the discovery NQN, or CNTRLTYPE 2) stops after Identify Controller.
//
// What a user must know:
// - I/O goes to the I/O queue with the fewest outstanding commands. Each queue takes at most
//   queueSize − 1 commands; more wait in FIFO order (tcp-queue.ts).
// - Keep-alive: a Keep Alive command every KATO / 2; one that fails or does not complete within
//   KATO starts error recovery.
// - Events: one AER outstanding, re-armed after each completion. A namespace attribute notice
//   reads the Changed Namespace List (log 04h, which re-enables the event) and rescans the
//   active list: new NSIDs are opened, missing ones are markRemoved(), listed ones refresh().
//   'namespaces' is emitted with { added, removed, changed }.
// - Error recovery (nvme_tcp_error_recovery): a queue failure, a command timeout or a failed
//   keep-alive puts the controller in 'resetting': every connection is closed; commands that
//   were on the wire are held when retryable (HostCommand.retryable, default true) and fail
//   with NOT_RETRYABLE otherwise; commands not yet sent and new submissions are held. State
//   'connecting': a new association is tried every reconnectDelayMs; on success the existing
//   RemoteNamespace objects are refreshed (handles stay valid), held commands are resubmitted
//   in their original submission order, and 'reconnected' is emitted. When ctrlLossTimeoutMs
//   has passed since the loss (-1: never), the controller is 'deleted': held commands fail
//   with CONTROLLER_LOST, namespaces are marked removed, 'lost' is emitted.
// - Admin commands of the bring-up never wait for a later association: they fail with the
//   connection they were sent on. User admin commands (submitAdmin) are held like I/O.
// - disconnect(): CC.SHN = 01b and CSTS.SHST = 10b awaited (at most 5 s), then the I/O
//   connections and the admin connection are closed in that order (closing the admin queue ends
//   the association on the target). Commands still outstanding fail with DELETED; idempotent.

import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { BlockError, ErrorCode } from '../block/errors.js';
import { decodeSqe } from '../nvme/command.js';
import { result64 } from '../nvme/completion.js';
import {
  CapCss,
  CcCss,
  CcShn,
  CNTLID_DYNAMIC,
  ConnectCommand,
  ConnectData,
  CstsShst,
  decodeCap,
  decodeConnectInvalid,
  decodeCsts,
  decodeVs,
  encodeCc,
  encodeConnect,
  encodeConnectData,
  encodePropertyGet,
  encodePropertySet,
  Property,
  type Cap,
} from '../nvme/fabrics.js';
import {
  AsyncEventConfig,
  encodeHostBehavior,
  encodeNumQueues,
  encodeSetFeaturesCdw10,
  decodeNumQueues,
  FeatureId,
} from '../nvme/features.js';
import {
  CntrlType,
  Cns,
  Csi,
  IdCtrlNvm,
  decodeIdCtrl,
  decodeIdNs,
  decodeNsList,
  encodeIdentify,
  IDENTIFY_DATA_SIZE,
  inlineBytesFromIoccsz,
  NS_LIST_MAX,
  Oaes,
  Ocfs,
  Oncs,
  type IdCtrlFields,
  type IdNsFields,
} from '../nvme/identify.js';
import {
  AsyncEventNotice,
  AsyncEventType,
  CHANGED_NS_LOG_SIZE,
  decodeAsyncEvent,
  decodeChangedNsList,
  DISCOVERY_NQN,
  encodeGetLogPage,
  LogPageId,
} from '../nvme/log-page.js';
import { AdminOpcode } from '../nvme/opcodes.js';
import { formatStatus, isSuccess, NvmeStatusError, type NvmeStatus } from '../nvme/status.js';
import { NVMET_TCP_MAXH2CDATA } from '../nvme/tcp/pdu.js';
import { HostError } from './errors.js';
import { defaultHostId, defaultHostNqn } from './host-nqn.js';
import type { IdCtrlNvmLimits } from './namespace-limits.js';
import { RemoteNamespace } from './remote-namespace.js';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  QueueRequest,
  TcpQueue,
  type QueueOwner,
} from './tcp-queue.js';
import type { HostCommand, HostCompletion, NamespaceParent } from './types.js';

export interface ControllerOptions {
  address: { host: string; port: number };
  subnqn: string;
  /** Default defaultHostNqn(). */
  hostnqn?: string;
  /** 16 bytes; default defaultHostId(). */
  hostid?: Uint8Array;
  /** Default min(4, os.availableParallelism()); the controller may grant fewer. */
  ioQueues?: number;
  /** I/O queue entries asked for; default 128; capped by CAP.MQES + 1 (and MAXCMD). */
  queueSize?: number;
  /** KATO in ms; default 5000 (Linux NVME_DEFAULT_KATO); 0 = none. */
  keepAliveTimeoutMs?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** Default 30000 (Linux io_timeout); on expiry: error recovery. */
  commandTimeoutMs?: number;
  /** Default 2000 (Linux 10 s). */
  reconnectDelayMs?: number;
  /** Default 60000 (Linux 600 s); -1 = reconnect forever. */
  ctrlLossTimeoutMs?: number;
  /** TCP connect + ICResp; default 10000. */
  connectTimeoutMs?: number;
}

export type ControllerState = 'live' | 'resetting' | 'connecting' | 'deleting' | 'deleted';

export interface NamespaceChanges {
  added: number[];
  removed: number[];
  changed: number[];
}

/** Admin queue entries (NVME_AQ_DEPTH). */
export const ADMIN_QUEUE_SIZE = 32;
export const DEFAULT_IO_QUEUE_SIZE = 128;
export const DEFAULT_KATO_MS = 5000;
export const DEFAULT_RECONNECT_DELAY_MS = 2000;
export const DEFAULT_CTRL_LOSS_TIMEOUT_MS = 60_000;
/** How long disconnect() waits for CSTS.SHST to report the shutdown complete. */
export const SHUTDOWN_TIMEOUT_MS = 5000;

type ResolvedOptions = Required<Omit<ControllerOptions, 'address'>> & {
  address: { host: string; port: number };
};

/** One association: the admin connection and the I/O connections, for one CNTLID. */
interface Association {
  readonly generation: number;
  readonly admin: TcpQueue;
  readonly io: TcpQueue[];
  cntlid: number;
  /** CC.EN done: admin commands of the bring-up may go. */
  enabled: boolean;
}

function invalid(msg: string): never {
  throw new RangeError(msg);
}

function intOption(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min || v > max)
    invalid(`${name} ${v} must be an integer in ${min}..${max}`);
  return v;
}

function resolveOptions(o: ControllerOptions): ResolvedOptions {
  const { host, port } = o.address ?? {};
  if (typeof host !== 'string' || host.length === 0)
    invalid('address.host must be a host name or IP address');
  if (!Number.isInteger(port) || port < 1 || port > 65535) invalid(`address.port ${port} must be 1..65535`);
  if (typeof o.subnqn !== 'string' || o.subnqn.length === 0 || o.subnqn.length > 223)
    invalid('subnqn must be an NQN of 1..223 characters');
  const hostid = o.hostid ?? defaultHostId();
  if (hostid.length !== 16) invalid(`hostid must be 16 bytes, got ${hostid.length}`);
  return {
    address: { host, port },
    subnqn: o.subnqn,
    hostnqn: o.hostnqn ?? defaultHostNqn(),
    hostid,
    ioQueues: intOption('ioQueues', o.ioQueues, Math.min(4, availableParallelism()), 0, 65535),
    queueSize: intOption('queueSize', o.queueSize, DEFAULT_IO_QUEUE_SIZE, 2, 65536),
    keepAliveTimeoutMs: intOption('keepAliveTimeoutMs', o.keepAliveTimeoutMs, DEFAULT_KATO_MS, 0, 0xffffffff),
    headerDigest: o.headerDigest ?? false,
    dataDigest: o.dataDigest ?? false,
    commandTimeoutMs: intOption(
      'commandTimeoutMs',
      o.commandTimeoutMs,
      DEFAULT_COMMAND_TIMEOUT_MS,
      0,
      2 ** 31 - 1,
    ),
    reconnectDelayMs: intOption(
      'reconnectDelayMs',
      o.reconnectDelayMs,
      DEFAULT_RECONNECT_DELAY_MS,
      0,
      2 ** 31 - 1,
    ),
    ctrlLossTimeoutMs: intOption(
      'ctrlLossTimeoutMs',
      o.ctrlLossTimeoutMs,
      DEFAULT_CTRL_LOSS_TIMEOUT_MS,
      -1,
      2 ** 31 - 1,
    ),
    connectTimeoutMs: intOption(
      'connectTimeoutMs',
      o.connectTimeoutMs,
      DEFAULT_CONNECT_TIMEOUT_MS,
      1,
      2 ** 31 - 1,
    ),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The SQE fields of an encoded 64-byte command (CID and DPTR are the queue's). */
function sqeOf(raw: Buffer): HostCommand['sqe'] {
  const { cid: _cid, dptr: _dptr, ...rest } = decodeSqe(raw);
  return rest;
}

/** Which field a Connect Invalid Parameters DW0 blames, by name. */
function connectInvalidField(dw0: number): string {
  const { where, ipo } = decodeConnectInvalid(dw0);
  const table = where === 'data' ? ConnectData : ConnectCommand;
  const f = table.fields.find((x) => x.offset === ipo);
  return `${f ? f.name : `byte ${ipo}`} in the Connect ${where === 'data' ? 'data' : 'command'}`;
}

/** A HostError, or an error caused by one (RemoteNamespace wraps them in BlockErrors). */
function isConnectionError(err: unknown): boolean {
  return HostError.is(err) || (err instanceof Error && HostError.is(err.cause));
}

function statusError(status: NvmeStatus, what: string): NvmeStatusError {
  return new NvmeStatusError(status, what);
}

export class NvmeController extends EventEmitter implements NamespaceParent, QueueOwner {
  readonly options: Readonly<ResolvedOptions>;
  /** `${subnqn}@${host}:${port}` */
  readonly name: string;

  #state: ControllerState = 'connecting';
  #assoc: Association | undefined;
  #generation = 0;
  #cap: Cap | undefined;
  #vs = { major: 0, minor: 0, tertiary: 0 };
  #idCtrl: IdCtrlFields | undefined;
  #ioQueueCount = 0;
  #queueSize = 0;
  #maxDataTransferBytes = 0;
  #copyFormats: ReadonlySet<number> = new Set();
  #idCtrlNvm: IdCtrlNvmLimits | undefined;
  readonly #namespaces = new Map<number, RemoteNamespace>();
  /** Commands waiting for an association, by kind; resubmitted in `seq` order. */
  #heldAdmin: QueueRequest[] = [];
  #heldIo: QueueRequest[] = [];
  /** Set once the controller is deleted: what every later submission fails with. */
  #endError: HostError | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  #keepAliveOutstanding = false;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #lossTimer: NodeJS.Timeout | undefined;
  #lossExpired = false;
  #attempting = false;
  #attempts = 0;
  #lastError: Error | undefined;
  #scan: Promise<void> = Promise.resolve();
  #deleting: Promise<void> | undefined;

  private constructor(options: ResolvedOptions) {
    super();
    this.options = options;
    this.name = `${options.subnqn}@${options.address.host}:${options.address.port}`;
  }

  /** Connects, brings the controller up and opens its namespaces. */
  static async connect(options: ControllerOptions): Promise<NvmeController> {
    const c = new NvmeController(resolveOptions(options));
    try {
      const assoc = await c.#establish(true);
      c.#goLive(assoc);
    } catch (err) {
      c.#state = 'deleted';
      c.#endError = new HostError('DELETED', `${c.name}: the connection could not be established`);
      c.#teardown(c.#assoc);
      throw HostError.is(err)
        ? err
        : new HostError('CONNECT', `${c.name}: ${err instanceof Error ? err.message : String(err)}`, {
            cause: err,
            ...(NvmeStatusError.is(err) ? { status: err.status } : {}),
          });
    }
    return c;
  }

  // ---- what the association negotiated ----

  get state(): ControllerState {
    return this.#state;
  }

  get cntlid(): number {
    return this.#assoc?.cntlid ?? 0;
  }

  get idCtrl(): IdCtrlFields {
    return this.#idCtrl!;
  }

  get cap(): Cap {
    return this.#cap!;
  }

  get version(): { major: number; minor: number; tertiary: number } {
    return this.#vs;
  }

  /** I/O queues of the current association. */
  get ioQueueCount(): number {
    return this.#ioQueueCount;
  }

  /** Entries per I/O queue (SQSIZE + 1). */
  get queueSize(): number {
    return this.#queueSize;
  }

  get maxDataTransferBytes(): number {
    return this.#maxDataTransferBytes;
  }

  get copyFormats(): ReadonlySet<number> {
    return this.#copyFormats;
  }

  /** NVM command set Identify Controller limits (CNS 06h), when the controller has them. */
  get idCtrlNvm(): IdCtrlNvmLimits | undefined {
    return this.#idCtrlNvm;
  }

  get isDiscovery(): boolean {
    return this.options.subnqn === DISCOVERY_NQN || this.#idCtrl?.cntrltype === CntrlType.DISCOVERY;
  }

  get namespaces(): ReadonlyMap<number, RemoteNamespace> {
    return this.#namespaces;
  }

  /** The active namespace `nsid`; BlockError ENODEV when there is none. */
  namespace(nsid: number): RemoteNamespace {
    const ns = this.#namespaces.get(nsid);
    if (ns === undefined) {
      const active = [...this.#namespaces.keys()].join(', ') || 'none';
      throw new BlockError(ErrorCode.ENODEV, `${this.name}: no active namespace ${nsid} (active: ${active})`);
    }
    return ns;
  }

  /** Commands outstanding or waiting on each I/O queue (for tests and metrics). */
  get ioQueueLoad(): number[] {
    return this.#assoc?.io.map((q) => q.outstanding) ?? [];
  }

  // ---- submission ----

  submitIo(cmd: HostCommand): Promise<HostCompletion> {
    const req = new QueueRequest(cmd, true);
    if (!req.done) this.#dispatchIo(req);
    return req.promise;
  }

  submitAdmin(cmd: HostCommand): Promise<HostCompletion> {
    const req = new QueueRequest(cmd, true);
    if (!req.done) this.#dispatchAdmin(req);
    return req.promise;
  }

  #dispatchIo(req: QueueRequest): void {
    if (this.#state === 'live') {
      const io = this.#assoc!.io;
      let best = io[0];
      if (best === undefined) {
        req.fail(new HostError('CLOSED', `${this.name}: the controller has no I/O queues`));
        return;
      }
      for (let i = 1; i < io.length; i++) if (io[i]!.outstanding < best.outstanding) best = io[i]!;
      best.enqueue(req);
    } else if (this.#endError) req.fail(this.#endError);
    else this.#heldIo.push(req);
  }

  #dispatchAdmin(req: QueueRequest): void {
    if (this.#state === 'live') this.#assoc!.admin.enqueue(req);
    else if (this.#endError) req.fail(this.#endError);
    else this.#heldAdmin.push(req);
  }

  /**
   * Admin commands of the controller itself: on the association being brought up they go
   * straight to its admin queue and fail with it (a bring-up never waits for a later
   * association); otherwise like submitAdmin().
   */
  #admin(cmd: HostCommand): Promise<HostCompletion> {
    const a = this.#assoc;
    if (a !== undefined && a.enabled && this.#state !== 'live') return a.admin.submit(cmd);
    return this.submitAdmin(cmd);
  }

  async #adminOk(cmd: HostCommand, what: string): Promise<HostCompletion> {
    const c = await this.#admin(cmd);
    if (!isSuccess(c.status)) throw statusError(c.status, `${this.name}: ${what} failed`);
    return c;
  }

  /** Identify (4096 bytes); throws NvmeStatusError on failure. */
  async identify(cns: number, nsid = 0, csi = 0): Promise<Buffer> {
    const into = Buffer.alloc(IDENTIFY_DATA_SIZE);
    await this.#adminOk(
      { sqe: { opcode: AdminOpcode.IDENTIFY, nsid, ...encodeIdentify({ cns, csi }) }, into },
      `Identify CNS 0x${cns.toString(16)} NSID ${nsid}`,
    );
    return into;
  }

  async identifyNamespace(nsid: number): Promise<IdNsFields> {
    return decodeIdNs(await this.identify(Cns.NS, nsid));
  }

  /**
   * Get Log Page of `length` bytes (a multiple of 4), in pieces of at most the MDTS at
   * increasing offsets when it is larger. Throws NvmeStatusError on failure.
   */
  async getLogPage(
    lid: number,
    length: number,
    opts: { lpo?: number; nsid?: number; rae?: boolean; lsp?: number } = {},
  ): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const step = this.#maxDataTransferBytes > 0 ? this.#maxDataTransferBytes : length;
    for (let off = 0; off < length; off += step) {
      const n = Math.min(step, length - off);
      const last = off + n >= length;
      await this.#adminOk(
        {
          sqe: {
            opcode: AdminOpcode.GET_LOG_PAGE,
            nsid: opts.nsid ?? 0xffffffff,
            ...encodeGetLogPage({
              lid,
              length: n,
              lpo: (opts.lpo ?? 0) + off,
              // Retain the event until the last piece is read.
              rae: opts.rae === true || !last,
              lsp: opts.lsp ?? 0,
            }),
          },
          into: out.subarray(off, off + n),
        },
        `Get Log Page 0x${lid.toString(16)} (${n} bytes at ${(opts.lpo ?? 0) + off})`,
      );
    }
    return out;
  }

  #setFeatures(fid: number, cdw11: number, data?: Uint8Array): Promise<HostCompletion> {
    return this.#adminOk(
      {
        sqe: { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(fid), cdw11 },
        ...(data ? { data } : {}),
      },
      `Set Features 0x${fid.toString(16)}`,
    );
  }

  // ---- bring-up ----

  #connectCommand(qid: number, size: number, kato: number, cntlid: number): HostCommand {
    const o = this.options;
    return {
      sqe: sqeOf(encodeConnect({ cid: 0, qid, sqsize: size - 1, kato })),
      data: encodeConnectData({ hostid: o.hostid, cntlid, subnqn: o.subnqn, hostnqn: o.hostnqn }),
    };
  }

  async #fabricsConnect(q: TcpQueue, kato: number, cntlid: number): Promise<number> {
    const c = await q.submit(this.#connectCommand(q.qid, q.size, kato, cntlid));
    if (!isSuccess(c.status)) {
      const o = this.options;
      const detail =
        c.status.sct === 1 && c.status.sc === 0x82 ? ` (invalid ${connectInvalidField(c.dw0)})` : '';
      throw new HostError(
        'CONNECT',
        `Connect to ${o.subnqn} at ${o.address.host}:${o.address.port} (queue ${q.qid}) refused: ${formatStatus(c.status, 'fabrics')}${detail}`,
        { status: c.status },
      );
    }
    return c.dw0 & 0xffff;
  }

  async #propertyGet(ofst: number, size: 4 | 8): Promise<HostCompletion> {
    return this.#adminOk(
      { sqe: sqeOf(encodePropertyGet({ cid: 0, ofst, size })) },
      `Property Get 0x${ofst.toString(16)}`,
    );
  }

  async #propertySet(ofst: number, value: number): Promise<void> {
    await this.#adminOk(
      { sqe: sqeOf(encodePropertySet({ cid: 0, ofst, size: 4, value })) },
      `Property Set 0x${ofst.toString(16)}`,
    );
  }

  #queueOptions(qid: number, size: number, inlineDataSize: number, maxC2H: number) {
    const o = this.options;
    return {
      address: o.address,
      qid,
      size,
      headerDigest: o.headerDigest,
      dataDigest: o.dataDigest,
      inlineDataSize,
      commandTimeoutMs: o.commandTimeoutMs,
      connectTimeoutMs: o.connectTimeoutMs,
      maxC2HDataBytes: maxC2H,
      name: this.name,
      owner: this,
    };
  }

  /** Throws when disconnect() was called meanwhile (a bring-up must not outlive it). */
  #checkNotDeleted(): void {
    if (this.#state === 'deleting' || this.#state === 'deleted')
      throw this.#endError ?? new HostError('DELETED', `${this.name} was disconnected`);
  }

  /** A new association, up to the namespace scan. Tears it down itself when it fails. */
  async #establish(initial: boolean): Promise<Association> {
    const o = this.options;
    const discovery = o.subnqn === DISCOVERY_NQN;
    const admin = await TcpQueue.open(this.#queueOptions(0, ADMIN_QUEUE_SIZE, 8192, NVMET_TCP_MAXH2CDATA));
    const assoc: Association = { generation: ++this.#generation, admin, io: [], cntlid: 0, enabled: false };
    this.#assoc = assoc;
    try {
      this.#checkNotDeleted();
      assoc.cntlid = await this.#fabricsConnect(admin, o.keepAliveTimeoutMs, CNTLID_DYNAMIC);
      assoc.enabled = true; // admin commands may go from here on (Property Get/Set first)
      const cap = decodeCap(result64(await this.#propertyGet(Property.CAP, 8)));
      this.#cap = cap;
      this.#vs = decodeVs((await this.#propertyGet(Property.VS, 4)).dw0);
      await this.#enable(cap);
      const id = decodeIdCtrl(await this.identify(Cns.CTRL));
      this.#idCtrl = id;
      this.#maxDataTransferBytes = id.mdts ? 2 ** (12 + cap.mpsmin + id.mdts) : 0;
      if (discovery || id.cntrltype === CntrlType.DISCOVERY) {
        this.#ioQueueCount = 0;
        this.#queueSize = 0;
        this.#copyFormats = new Set();
        return assoc;
      }
      this.#idCtrlNvm = await this.#identifyCtrlNvm(cap);
      // Number of Queues: the controller may grant fewer than asked (DW0, 0's based).
      let granted = 0;
      if (o.ioQueues > 0) {
        const nq = await this.#setFeatures(
          FeatureId.NUM_QUEUES,
          encodeNumQueues({ nsq: o.ioQueues - 1, ncq: o.ioQueues - 1 }),
        );
        const q = decodeNumQueues(nq.dw0);
        granted = Math.min(o.ioQueues, q.nsq + 1, q.ncq + 1);
      }
      // Namespace attribute notices are the only events handled (nvme_enable_aen).
      if ((id.oaes & Oaes.NS_ATTR) !== 0)
        await this.#setFeatures(FeatureId.ASYNC_EVENT, AsyncEventConfig.NS_ATTR);
      this.#copyFormats = await this.#configureCopyFormats(id);
      let size = Math.min(o.queueSize, cap.mqes + 1);
      if (id.maxcmd > 0) size = Math.min(size, id.maxcmd);
      const inline = inlineBytesFromIoccsz(id.ioccsz);
      const maxC2H =
        this.#maxDataTransferBytes > 0
          ? Math.max(NVMET_TCP_MAXH2CDATA, this.#maxDataTransferBytes)
          : 0xffffffff;
      for (let qid = 1; qid <= granted; qid++) {
        const q = await TcpQueue.open(this.#queueOptions(qid, size, inline, maxC2H));
        assoc.io.push(q);
        this.#checkNotDeleted();
        await this.#fabricsConnect(q, 0, assoc.cntlid);
      }
      this.#ioQueueCount = granted;
      this.#queueSize = size;
      this.#armAer(assoc);
      const changes = await this.#scanNamespaces(assoc, 'all');
      if (!initial && (changes.added.length || changes.removed.length || changes.changed.length))
        this.emit('namespaces', changes);
      this.#checkNotDeleted();
      return assoc;
    } catch (err) {
      this.#teardown(assoc);
      throw err;
    }
  }

  /** CC.EN = 1 and wait for CSTS.RDY within CAP.TO (nvme_enable_ctrl). */
  async #enable(cap: Cap): Promise<void> {
    const css = (cap.css & CapCss.CSI) !== 0 ? CcCss.CSI : CcCss.NVM;
    await this.#propertySet(Property.CC, encodeCc({ en: true, css, mps: 0, iosqes: 6, iocqes: 4 }));
    const timeoutMs = (cap.to + 1) * 500;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const csts = decodeCsts((await this.#propertyGet(Property.CSTS, 4)).dw0);
      if (csts.cfs)
        throw new HostError('CONNECT', `${this.name}: controller fatal status (CSTS.CFS) after CC.EN`);
      if (csts.rdy) return;
      if (Date.now() >= deadline)
        throw new HostError(
          'CONNECT',
          `${this.name}: CSTS.RDY did not follow CC.EN within CAP.TO (${timeoutMs} ms)`,
        );
      await sleep(10);
    }
  }

  /** Identify CNS 06h CSI NVM (nvme_init_non_mdts_limits), when CAP.CSS offers command sets. */
  async #identifyCtrlNvm(cap: Cap): Promise<IdCtrlNvmLimits | undefined> {
    if ((cap.css & CapCss.CSI) === 0) return undefined;
    try {
      const d = IdCtrlNvm.decode(await this.identify(Cns.CSI_CTRL, 0, Csi.NVM));
      return { wzsl: d.wzsl, dmrl: d.dmrl, dmrsl: d.dmrsl, dmsl: d.dmsl };
    } catch (err) {
      if (NvmeStatusError.is(err)) return undefined;
      throw err;
    }
  }

  /** Copy formats 0/1 as OCFS offers them; 2/3 once Host Behavior Support enabled them. */
  async #configureCopyFormats(id: IdCtrlFields): Promise<ReadonlySet<number>> {
    const formats = new Set<number>();
    if ((id.oncs & Oncs.COPY) === 0) return formats;
    if (id.ocfs & Ocfs.FORMAT_0) formats.add(0);
    if (id.ocfs & Ocfs.FORMAT_1) formats.add(1);
    const cdfe = id.ocfs & (Ocfs.FORMAT_2 | Ocfs.FORMAT_3);
    if (cdfe !== 0) {
      try {
        await this.#setFeatures(FeatureId.HOST_BEHAVIOR, 0, encodeHostBehavior({ cdfe }));
        if (cdfe & Ocfs.FORMAT_2) formats.add(2);
        if (cdfe & Ocfs.FORMAT_3) formats.add(3);
      } catch (err) {
        if (!NvmeStatusError.is(err)) throw err; // refused: formats 2/3 stay off
      }
    }
    return formats;
  }

  #goLive(assoc: Association): void {
    if (assoc.admin.failed || assoc.io.some((q) => q.failed))
      throw (
        assoc.admin.error ?? assoc.io.find((q) => q.failed)?.error ?? new HostError('CLOSED', 'queue failed')
      );
    clearTimeout(this.#lossTimer);
    this.#lossTimer = undefined;
    this.#lossExpired = false;
    this.#setState('live');
    this.#startKeepAlive(assoc);
    const held = [...this.#heldAdmin, ...this.#heldIo].sort((a, b) => a.seq - b.seq);
    const admin = new Set(this.#heldAdmin);
    this.#heldAdmin = [];
    this.#heldIo = [];
    for (const req of held) {
      if (req.done) continue;
      if (admin.has(req)) this.#dispatchAdmin(req);
      else this.#dispatchIo(req);
    }
  }

  #setState(s: ControllerState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.emit('state', s);
  }

  /** Closes every connection of `assoc` at once. */
  #teardown(assoc: Association | undefined): void {
    if (assoc === undefined) return;
    if (this.#assoc === assoc) this.#assoc = undefined;
    for (const q of assoc.io) q.destroy();
    assoc.admin.destroy();
  }

  // ---- namespaces ----

  /** The active namespace list (Identify CNS 02h, 1024 NSIDs per page). */
  async #activeNamespaces(): Promise<number[]> {
    const all: number[] = [];
    for (let after = 0; ;) {
      const page = decodeNsList(await this.identify(Cns.NS_ACTIVE_LIST, after));
      all.push(...page);
      if (page.length < NS_LIST_MAX) return all;
      after = page[page.length - 1]!;
    }
  }

  /**
   * Brings the namespace map up to date with the active list: opens new NSIDs, marks missing
   * ones removed, refreshes `changed` ones ('all': every one, reporting those whose size
   * changed). Stops when the association is replaced meanwhile.
   */
  async #scanNamespaces(assoc: Association, changed: ReadonlySet<number> | 'all'): Promise<NamespaceChanges> {
    const out: NamespaceChanges = { added: [], removed: [], changed: [] };
    const stale = (): boolean => this.#assoc !== assoc;
    const active = await this.#activeNamespaces();
    if (stale()) return out;
    const activeSet = new Set(active);
    for (const [nsid, ns] of [...this.#namespaces]) {
      if (activeSet.has(nsid)) continue;
      ns.markRemoved();
      this.#namespaces.delete(nsid);
      out.removed.push(nsid);
    }
    for (const nsid of active) {
      const ns = this.#namespaces.get(nsid);
      if (ns === undefined) {
        let opened: RemoteNamespace;
        try {
          opened = await RemoteNamespace.open(this, nsid);
        } catch (err) {
          if (isConnectionError(err)) throw err;
          continue; // a namespace that cannot be identified is left out, as Linux does
        }
        if (stale() || this.#namespaces.has(nsid)) {
          opened.markRemoved();
          return out;
        }
        this.#namespaces.set(nsid, opened);
        out.added.push(nsid);
      } else if (changed === 'all' || changed.has(nsid)) {
        const before = ns.size;
        try {
          await ns.refresh();
        } catch (err) {
          if (isConnectionError(err)) throw err;
          if (stale()) return out;
          // Reformatted to something unusable: refresh() marked it removed. Closed by its user: kept.
          if (ns.removed) {
            this.#namespaces.delete(nsid);
            out.removed.push(nsid);
          }
          continue;
        }
        if (stale()) return out;
        if (changed !== 'all' || ns.size !== before) out.changed.push(nsid);
      }
    }
    return out;
  }

  // ---- asynchronous events ----

  #armAer(assoc: Association): void {
    assoc.admin.submit({ sqe: { opcode: AdminOpcode.ASYNC_EVENT_REQUEST } }, { timeoutMs: 0 }).then(
      (c) => this.#onAer(assoc, c),
      () => {}, // the queue failed: error recovery arms a new one
    );
  }

  #onAer(assoc: Association, c: HostCompletion): void {
    if (this.#assoc !== assoc || !isSuccess(c.status)) return; // aborted: no re-arm (Linux)
    this.#armAer(assoc);
    const ev = decodeAsyncEvent(c.dw0);
    if (ev.type === AsyncEventType.NOTICE && ev.info === AsyncEventNotice.NS_CHANGED) {
      this.#scan = this.#scan.then(() => this.#namespacesChanged(assoc)).catch(() => {});
    } else {
      this.emit('event', ev);
    }
  }

  /** Namespace attribute notice: read log 04h (re-enabling the event), then rescan. */
  async #namespacesChanged(assoc: Association): Promise<void> {
    if (this.#assoc !== assoc) return;
    const log = decodeChangedNsList(await this.getLogPage(LogPageId.CHANGED_NS, CHANGED_NS_LOG_SIZE));
    const changed = log.length === 1 && log[0] === 0xffffffff ? 'all' : new Set(log);
    if (this.#assoc !== assoc) return;
    const changes = await this.#scanNamespaces(assoc, changed);
    if (this.#assoc !== assoc) return;
    if (changes.added.length || changes.removed.length || changes.changed.length)
      this.emit('namespaces', changes);
  }

  // ---- keep-alive ----

  #startKeepAlive(assoc: Association): void {
    const kato = this.options.keepAliveTimeoutMs;
    if (kato === 0) return;
    this.#keepAlive = setInterval(() => this.#sendKeepAlive(assoc), Math.max(1, Math.floor(kato / 2)));
    this.#keepAlive.unref();
  }

  #stopKeepAlive(): void {
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    this.#keepAliveOutstanding = false;
  }

  #sendKeepAlive(assoc: Association): void {
    if (this.#assoc !== assoc || this.#state !== 'live' || this.#keepAliveOutstanding) return;
    this.#keepAliveOutstanding = true;
    const kato = this.options.keepAliveTimeoutMs;
    assoc.admin.submit({ sqe: { opcode: AdminOpcode.KEEP_ALIVE } }, { timeoutMs: kato }).then(
      (c) => {
        this.#keepAliveOutstanding = false;
        if (!isSuccess(c.status) && this.#assoc === assoc)
          this.#errorRecovery(
            new HostError('PROTOCOL', `${this.name}: Keep Alive failed: ${formatStatus(c.status)}`, {
              status: c.status,
            }),
          );
      },
      () => {
        this.#keepAliveOutstanding = false; // the queue failed (or timed out): recovery is under way
      },
    );
  }

  // ---- error recovery ----

  /** QueueOwner: a connection of some association failed. */
  queueFailed(queue: TcpQueue, error: HostError, requests: QueueRequest[]): void {
    for (const req of requests) {
      if (req.done) continue;
      if (this.#endError) req.fail(this.#endError);
      else if (req.wasSent && req.cmd.retryable === false)
        req.fail(
          new HostError(
            'NOT_RETRYABLE',
            `${this.name}: ${req.describe(queue.qid)} was in flight when the connection failed and may not be retried (${error.message})`,
            { cause: error },
          ),
        );
      else if (queue.qid === 0) this.#heldAdmin.push(req);
      else this.#heldIo.push(req);
    }
    const a = this.#assoc;
    if (a !== undefined && this.#state === 'live' && (a.admin === queue || a.io.includes(queue)))
      this.#errorRecovery(error);
  }

  #errorRecovery(error: Error): void {
    if (this.#state !== 'live') return;
    this.#lastError = error;
    this.#setState('resetting');
    this.#stopKeepAlive();
    this.#teardown(this.#assoc);
    this.#attempts = 0;
    this.#lossExpired = false;
    const loss = this.options.ctrlLossTimeoutMs;
    if (loss >= 0) {
      this.#lossTimer = setTimeout(() => {
        this.#lossTimer = undefined;
        this.#lossExpired = true;
        if (!this.#attempting && this.#state === 'connecting') this.#lose();
      }, loss);
    }
    this.#setState('connecting');
    this.#reconnectTimer = setTimeout(() => void this.#reconnect(), this.options.reconnectDelayMs);
  }

  async #reconnect(): Promise<void> {
    this.#reconnectTimer = undefined;
    if (this.#state !== 'connecting') return;
    this.#attempting = true;
    this.#attempts++;
    let assoc: Association;
    try {
      assoc = await this.#establish(false);
      // disconnect() may have been called while the attempt ran (the state is re-read).
      if (this.state !== 'connecting')
        throw this.#endError ?? new HostError('DELETED', `${this.name} deleted`);
      this.#goLive(assoc);
    } catch (err) {
      this.#attempting = false;
      this.#lastError = err instanceof Error ? err : new Error(String(err));
      this.#teardown(this.#assoc);
      if (this.state !== 'connecting') return;
      if (this.#lossExpired) return this.#lose();
      this.#reconnectTimer = setTimeout(() => void this.#reconnect(), this.options.reconnectDelayMs);
      return;
    }
    this.#attempting = false;
    this.emit('reconnected', this.#attempts);
  }

  /** The controller-loss timeout expired: everything held fails, namespaces go away. */
  #lose(): void {
    const last = this.#lastError ? `; last error: ${this.#lastError.message}` : '';
    const err = new HostError(
      'CONTROLLER_LOST',
      `${this.name}: controller lost: not reconnected within ${this.options.ctrlLossTimeoutMs} ms (${this.#attempts} attempts)${last}`,
      { cause: this.#lastError },
    );
    this.#endError = err;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#failHeld(err);
    this.#removeNamespaces();
    this.#setState('deleted');
    this.emit('lost', err);
  }

  #failHeld(err: HostError): void {
    const held = [...this.#heldAdmin, ...this.#heldIo].sort((a, b) => a.seq - b.seq);
    this.#heldAdmin = [];
    this.#heldIo = [];
    for (const req of held) req.fail(err);
  }

  #removeNamespaces(): void {
    for (const ns of this.#namespaces.values()) ns.markRemoved();
    this.#namespaces.clear();
  }

  // ---- disconnect ----

  /** Orderly shutdown and close; pending commands fail with DELETED. Idempotent. */
  disconnect(): Promise<void> {
    this.#deleting ??= this.#delete();
    return this.#deleting;
  }

  async #delete(): Promise<void> {
    if (this.#state === 'deleted') return;
    const wasLive = this.#state === 'live';
    this.#setState('deleting');
    this.#endError = new HostError('DELETED', `${this.name} was disconnected`);
    this.#stopKeepAlive();
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#lossTimer);
    this.#reconnectTimer = this.#lossTimer = undefined;
    this.#failHeld(this.#endError);
    const assoc = this.#assoc;
    if (assoc !== undefined && wasLive) {
      try {
        await this.#shutdown(assoc);
      } catch {
        // the association is gone or refuses: closing is all that is left
      }
    }
    if (assoc !== undefined) {
      await Promise.all(assoc.io.map((q) => q.close()));
      await assoc.admin.close();
      if (this.#assoc === assoc) this.#assoc = undefined;
    }
    this.#removeNamespaces();
    this.#setState('deleted');
  }

  /** CC.SHN = normal, then CSTS.SHST = complete within SHUTDOWN_TIMEOUT_MS (nvme_disable_ctrl). */
  async #shutdown(assoc: Association): Promise<void> {
    const cap = this.#cap!;
    const css = (cap.css & CapCss.CSI) !== 0 ? CcCss.CSI : CcCss.NVM;
    const cc = encodeCc({ en: true, css, mps: 0, iosqes: 6, iocqes: 4, shn: CcShn.NORMAL });
    const adminCmd = async (raw: Buffer): Promise<HostCompletion> => {
      const c = await assoc.admin.submit({ sqe: sqeOf(raw) }, { timeoutMs: SHUTDOWN_TIMEOUT_MS });
      if (!isSuccess(c.status)) throw statusError(c.status, `${this.name}: shutdown property access failed`);
      return c;
    };
    await adminCmd(encodePropertySet({ cid: 0, ofst: Property.CC, size: 4, value: cc }));
    const deadline = Date.now() + SHUTDOWN_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const c = await adminCmd(encodePropertyGet({ cid: 0, ofst: Property.CSTS, size: 4 }));
      if (decodeCsts(c.dw0).shst === CstsShst.COMPLETE) return;
      await sleep(10);
    }
  }
}
