// The NVMe codec package, shared by the target (src/target/) and the host (src/host/); it
// imports nothing from either. Each file covers one NVMe concept; import from the single files
// or from here.
//
// Decisions a user of this package must know:
// - Every wire structure is a field table (struct.ts) whose offsets are asserted by the tests
//   against gcc's offsetof on libnvme's types.h / Linux's nvme.h structs. Little-endian.
// - u64 fields decode to bigint (exact). Decoded command views turn LBAs into numbers and
//   saturate at 2^53-1, which is out of range for every namespace tsblk serves.
// - Status values are { sct, sc, dnr, more, crd }; `Status.X` are ready-made (DNR clear), use
//   withDnr(). SCT 1 codes 0x80–0x8F mean different things for NVM and Fabrics commands:
//   both tables exist, names pick NVM unless told 'fabrics'.
// - statusFromBlockError(err, op) is the one BlockError → NVMe status mapping (table in status.ts).
// - Decoders of command data that a host controls (Copy source ranges) throw NvmeStatusError
//   with the status to complete the command with; struct-level decode of a short buffer throws
//   RangeError (a transport or caller bug, not a host error).
// - ASCII fields: SN/MN/FR and discovery TRADDR/TRSVCID are space padded, NQNs NUL padded.

export * from '../util/struct.js';
export * from './opcodes.js';
export * from './status.js';
export * from './command.js';
export * from './completion.js';
export * from './sgl.js';
export * from './identify.js';
export * from './log-page.js';
export * from './features.js';
export * from './fabrics.js';
export * from './copy.js';
