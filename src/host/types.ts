// The seams inside the NVMe/TCP host. A controller association (controller.ts) submits
// commands on its queues and keeps itself connected; a remote namespace (remote-namespace.ts)
// turns BlockDevice operations into NVMe commands through `NamespaceParent`, and never sees
// a socket. Tests run namespaces over the target's loop transport (testing/loop-parent.ts),
// as nvme-loop does in the kernel.

import type { SqeInput } from '../nvme/command.js';
import type { IdCtrlFields, IdNsFields } from '../nvme/identify.js';
import type { NvmeStatus } from '../nvme/status.js';

/** One command for a queue: the SQE without CID and DPTR (the queue fills both in). */
export interface HostCommand {
  readonly sqe: Omit<SqeInput, 'cid' | 'dptr'>;
  /** Host→controller data (in the capsule or through R2T, the queue decides). */
  readonly data?: Uint8Array;
  /** Controller→host data lands here; its length is the transfer length asked for. */
  readonly into?: Uint8Array;
  readonly signal?: AbortSignal;
  /**
   * May the host resubmit this command on a new association when the connection dropped
   * while it was in flight? Default true: reads, writes, flush, write zeroes, deallocate and
   * copies whose sources do not overlap their destination give the same result when run
   * twice. A copy whose source overlaps its destination does not, so it fails instead.
   */
  readonly retryable?: boolean;
}

/** The controller's answer (any status: success or not). */
export interface HostCompletion {
  readonly status: NvmeStatus;
  readonly dw0: number;
  readonly dw1: number;
}

/** What a remote namespace needs from its controller. */
export interface NamespaceParent {
  /** For messages and device names, e.g. `nqn.2026-11.io.tsblk:default@127.0.0.1:4420`. */
  readonly name: string;
  readonly idCtrl: IdCtrlFields;
  /** Largest data transfer of one command in bytes, from MDTS and CAP.MPSMIN (0: no limit). */
  readonly maxDataTransferBytes: number;
  /**
   * Copy descriptor formats this host may send: 0 and 1 as OCFS offers them; 2 and 3 only
   * once Host Behavior Support enabled them (CDFE), which allows cross-namespace copies.
   */
  readonly copyFormats: ReadonlySet<number>;
  /**
   * Submits an I/O command on one of the I/O queues. Resolves with the completion whatever
   * its status; rejects with a HostError when the command could not be completed (the
   * association was lost for longer than the controller-loss timeout, the command was not
   * retryable, it was aborted, the controller was disconnected).
   */
  submitIo(command: HostCommand): Promise<HostCompletion>;
  /** Identify Namespace (CNS 00h) for nsid, fresh from the controller. */
  identifyNamespace(nsid: number): Promise<IdNsFields>;
}
