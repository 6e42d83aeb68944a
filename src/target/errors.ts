// Command failures inside the target: an NvmeStatusError that may also carry a completion
// DW0 (Connect names the bad field there; Copy reports the ranges completed), plus short
// constructors for the failures every parser reports.

import {
  NvmeStatusError,
  Status,
  withDnr,
  type NvmeStatus,
  type NvmeStatusErrorOptions,
} from '../nvme/status.js';

export interface CommandErrorOptions extends NvmeStatusErrorOptions {
  /** Completion DW0 to report with the failure. */
  dw0?: number;
}

export class CommandError extends NvmeStatusError {
  readonly dw0: number | undefined;

  constructor(status: NvmeStatus, detail: string, options: CommandErrorOptions = {}) {
    super(status, detail, options);
    this.name = 'CommandError';
    this.dw0 = options.dw0;
  }
}

/** Byte offsets of SQE fields used as error locations (struct nvme_common_command). */
export const SqeOffset = {
  OPCODE: 0,
  FLAGS: 1,
  NSID: 4,
  DPTR: 24,
  CDW10: 40,
  CDW11: 44,
  CDW12: 48,
  CDW13: 52,
  CDW14: 56,
  CDW15: 60,
} as const;

/** Invalid Field in Command, DNR, pointing at `errorLoc`. */
export function invalidField(errorLoc: number, detail: string): CommandError {
  return new CommandError(withDnr(Status.INVALID_FIELD), detail, { errorLoc });
}

/** Invalid Command Opcode, DNR (nvmet_report_invalid_opcode). */
export function invalidOpcode(detail: string, errorLoc: number = SqeOffset.OPCODE): CommandError {
  return new CommandError(withDnr(Status.INVALID_OPCODE), detail, { errorLoc });
}

/** Invalid Namespace or Format, DNR, pointing at NSID. */
export function invalidNamespace(detail: string, errorLoc: number = SqeOffset.NSID): CommandError {
  return new CommandError(withDnr(Status.INVALID_NS), detail, { errorLoc });
}

/** Command Sequence Error, DNR. */
export function sequenceError(detail: string, errorLoc?: number): CommandError {
  return new CommandError(withDnr(Status.CMD_SEQ_ERROR), detail, errorLoc === undefined ? {} : { errorLoc });
}
