// A NamespaceParent over the target's loop transport (src/target/testing/loop.ts), as
// nvme-loop does in the kernel: a controller of an in-process Target, connected without
// TCP, so every RemoteNamespace test runs against tsblk's own target.
//
//   const { host } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
//   const parent = await LoopParent.connect(host, NQN, { crossNamespaceCopy: true });
//   const ns = await RemoteNamespace.open(parent, 1);
//
// Commands are spread round-robin over the I/O queues. A command whose AbortSignal already
// fired is refused with HostError ABORTED, and after close() every command fails with
// HostError DELETED, as NvmeController does.

import { decodeCap, Property } from '../../nvme/fabrics.js';
import { result64 } from '../../nvme/completion.js';
import { encodeHostBehavior, encodeSetFeaturesCdw10, FeatureId } from '../../nvme/features.js';
import {
  Cns,
  decodeIdCtrl,
  decodeIdNs,
  encodeIdentify,
  IDENTIFY_DATA_SIZE,
  type IdCtrlFields,
  type IdNsFields,
} from '../../nvme/identify.js';
import { AdminOpcode } from '../../nvme/opcodes.js';
import { formatStatus, isSuccess, NvmeStatusError } from '../../nvme/status.js';
import type { LoopController, LoopHost } from '../../target/testing/loop.js';
import { HostError } from '../errors.js';
import type { HostCommand, HostCompletion, NamespaceParent } from '../types.js';

export interface LoopParentOptions {
  /** I/O queues to connect (default 2). */
  ioQueues?: number;
  /**
   * Enable Copy descriptor formats 2/3 (cross-namespace) with Set Features Host Behavior
   * Support: true for every cross-namespace format OCFS offers, or a CDFE mask.
   */
  crossNamespaceCopy?: boolean | number;
  /** Default `${subnqn}@loop`. */
  name?: string;
}

export class LoopParent implements NamespaceParent {
  readonly name: string;
  readonly controller: LoopController;
  readonly idCtrl: IdCtrlFields;
  readonly maxDataTransferBytes: number;
  readonly copyFormats: ReadonlySet<number>;
  #next = 0;
  #closed = false;

  private constructor(
    controller: LoopController,
    name: string,
    idCtrl: IdCtrlFields,
    mdtsBytes: number,
    copyFormats: Set<number>,
  ) {
    this.controller = controller;
    this.name = name;
    this.idCtrl = idCtrl;
    this.maxDataTransferBytes = mdtsBytes;
    this.copyFormats = copyFormats;
  }

  /** Connects a controller of `subnqn` on the loop host and reads what a host reads. */
  static async connect(host: LoopHost, subnqn: string, options: LoopParentOptions = {}): Promise<LoopParent> {
    const c = await host.connectController(subnqn, { ioQueues: options.ioQueues ?? 2 });
    const cap = decodeCap(result64((await c.propertyGet(Property.CAP, 8)).cqe));
    const id = await c.admin.submit(
      { opcode: AdminOpcode.IDENTIFY, ...encodeIdentify({ cns: Cns.CTRL }) },
      { length: IDENTIFY_DATA_SIZE },
    );
    if (!isSuccess(id.cqe.status) || !id.data)
      throw new Error(`Identify Controller of ${subnqn}: ${formatStatus(id.cqe.status)}`);
    const idCtrl = decodeIdCtrl(id.data);
    const mdtsBytes = idCtrl.mdts === 0 ? 0 : 2 ** idCtrl.mdts * 2 ** (12 + cap.mpsmin);
    const formats = new Set([0, 1].filter((f) => (idCtrl.ocfs & (1 << f)) !== 0));
    const want = options.crossNamespaceCopy;
    if (want) {
      const cdfe = (typeof want === 'number' ? want : idCtrl.ocfs) & 0b1100;
      const r = await c.admin.submit(
        { opcode: AdminOpcode.SET_FEATURES, cdw10: encodeSetFeaturesCdw10(FeatureId.HOST_BEHAVIOR) },
        { data: encodeHostBehavior({ cdfe }) },
      );
      if (!isSuccess(r.cqe.status))
        throw new Error(
          `Set Features Host Behavior Support CDFE 0x${cdfe.toString(16)}: ${formatStatus(r.cqe.status)}`,
        );
      for (const f of [2, 3]) if (cdfe & (1 << f)) formats.add(f);
    }
    return new LoopParent(c, options.name ?? `${subnqn}@loop`, idCtrl, mdtsBytes, formats);
  }

  async submitIo(command: HostCommand): Promise<HostCompletion> {
    if (this.#closed) throw new HostError('DELETED', `${this.name}: the controller was disconnected`);
    if (command.signal?.aborted)
      throw new HostError('ABORTED', `${this.name}: the command was aborted before it was sent`);
    const queues = this.controller.io;
    const q = queues[this.#next++ % queues.length]!;
    const r = await q.submit(
      { ...command.sqe },
      {
        ...(command.data ? { data: command.data } : {}),
        ...(command.into ? { length: command.into.length } : {}),
      },
    );
    if (r.data && command.into) command.into.set(r.data.subarray(0, command.into.length));
    return { status: r.cqe.status, dw0: r.cqe.dw0, dw1: r.cqe.dw1 };
  }

  async identifyNamespace(nsid: number): Promise<IdNsFields> {
    if (this.#closed) throw new HostError('DELETED', `${this.name}: the controller was disconnected`);
    const r = await this.controller.admin.submit(
      { opcode: AdminOpcode.IDENTIFY, nsid, ...encodeIdentify({ cns: Cns.NS }) },
      { length: IDENTIFY_DATA_SIZE },
    );
    if (!isSuccess(r.cqe.status) || !r.data)
      throw new NvmeStatusError(r.cqe.status, `Identify Namespace ${nsid} on ${this.name}`);
    return decodeIdNs(r.data);
  }

  /** Disconnects the loop controller; later commands fail with code 'DELETED'. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.controller.close();
  }
}
