// A queue pair as the core sees it: one transport connection (nvmet's nvmet_sq + nvmet_cq).
//
// The transport creates a Queue when a connection is set up (target.createQueue) and calls
// destroy() when it goes away. A fresh queue accepts only a Fabrics Connect; Connect binds it
// to a controller with a queue ID and a size. SQ flow control: each completion advances the
// SQ head (reported in the CQE) modulo the queue size, unless the host disabled SQ flow
// control in Connect (CATTR bit 2), in which case SQHD is 0xFFFF. A host that has more
// commands outstanding than the queue holds gets Command Sequence Error for the excess.

import type { Controller } from './controller.js';
import type { Target } from './target.js';
import type { Request, TransportOps } from './transport.js';

export class Queue {
  readonly target: Target;
  readonly ops: TransportOps;
  /** The port the connection arrived on (discovery log entries, logs). */
  readonly portid: number | undefined;
  /** The transport's own per-connection state; the core never looks at it. */
  context: unknown;

  ctrl: Controller | undefined;
  /** Queue ID once connected (0 = admin queue); -1 before Connect. */
  qid = -1;
  /** Entries (Connect SQSIZE + 1); 0 before Connect. */
  size = 0;
  sqhd = 0;
  sqFlowDisabled = false;
  /** Commands initRequest accepted and not yet completed. */
  outstanding = 0;
  /** Parsed requests not yet completed (abandoned if the connection dies first). */
  readonly #requests = new Set<Request>();
  #closed = false;

  constructor(target: Target, ops: TransportOps, portid?: number) {
    this.target = target;
    this.ops = ops;
    this.portid = portid;
  }

  get connected(): boolean {
    return this.ctrl !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** In-capsule data this queue accepts, bytes. */
  get inlineDataSize(): number {
    return this.qid === 0
      ? (this.ops.adminInlineDataSize ?? this.ops.inlineDataSize)
      : this.ops.inlineDataSize;
  }

  /** SQHD for the next completion (advances the head unless flow control is off). */
  nextSqhd(): number {
    if (this.sqFlowDisabled) return 0xffff;
    if (this.size > 0) this.sqhd = (this.sqhd + 1) % this.size;
    return this.sqhd;
  }

  /**
   * The connection is gone: responses of commands still running are dropped, and the queue
   * leaves its controller. Closing the admin queue deletes the controller (its I/O queues
   * are closed through ops.deleteController). Idempotent.
   */
  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Requests still waiting for their data never execute: release their namespaces.
    for (const r of [...this.#requests]) r.abandon(`${this} closed before the command's data arrived`);
    const ctrl = this.ctrl;
    if (ctrl) ctrl.queueDestroyed(this);
  }

  /** @internal core.ts tracks requests from parse to completion. */
  track(req: Request): void {
    this.#requests.add(req);
  }

  /** @internal */
  untrack(req: Request): void {
    this.#requests.delete(req);
  }

  toString(): string {
    return this.ctrl ? `controller ${this.ctrl.cntlid} queue ${this.qid}` : 'unconnected queue';
  }
}
