// Failures of the guest harness itself (as opposed to a guest command that exits non-zero,
// which is a normal result). `code` says which, so a test can tell a missing peer from a hang.

export type VmErrorCode =
  /** QEMU, the kernel, busybox or a tool is not installed (scripts/install-peers.sh) */
  | 'missing-peer'
  /** the guest ran past its timeout and QEMU was killed */
  | 'timeout'
  /** the guest never reported an exit status (kernel panic, QEMU error, ...) */
  | 'no-exit-status';

export class VmError extends Error {
  override name = 'VmError';
  constructor(
    readonly code: VmErrorCode,
    message: string,
    /** what the guest printed before it failed, when it got that far */
    readonly output?: { stdout: string; stderr: string; console: string; qemuStderr: string },
  ) {
    super(message);
  }
}
