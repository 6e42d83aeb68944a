// Commands Supported and Effects log page (Get Log Page LID 05h), 4096 bytes. Added by the
// target helper (the codec files do not cover it yet); same conventions as the other tables.
// Source: linux-nvme/libnvme src/nvme/types.h (struct nvme_cmd_effects_log: __le32 acs[256],
// __le32 iocs[256], __u8 rsvd[2048]; enum nvme_cmd_effects); torvalds/linux
// drivers/nvme/target/admin-cmd.c (nvmet_get_cmd_effects_admin / _nvm: which commands nvmet
// reports and with which bits).

import { defineStruct } from '../util/struct.js';

/** struct nvme_cmd_effects_log: one u32 per admin opcode, then one per I/O opcode. */
export const CmdEffectsLog = defineStruct('nvme_cmd_effects_log', 4096, [
  { name: 'acs', offset: 0, type: 'bytes', length: 1024 }, // __le32 acs[256]
  { name: 'iocs', offset: 1024, type: 'bytes', length: 1024 }, // __le32 iocs[256]
  { name: 'rsvd2048', offset: 2048, type: 'bytes', length: 2048 },
] as const);

/** Command effects bits (enum nvme_cmd_effects). */
export const CmdEffects = {
  /** Command Supported. */
  CSUPP: 1 << 0,
  /** Logical Block Content Change. */
  LBCC: 1 << 1,
  /** Namespace Capability Change. */
  NCC: 1 << 2,
  /** Namespace Inventory Change. */
  NIC: 1 << 3,
  /** Controller Capability Change. */
  CCC: 1 << 4,
} as const;

/** Builds the log page from effects per admin opcode and per I/O opcode. */
export function encodeCmdEffectsLog(
  admin: ReadonlyMap<number, number> | Record<number, number>,
  io: ReadonlyMap<number, number> | Record<number, number>,
): Buffer {
  const buf = Buffer.alloc(CmdEffectsLog.SIZE);
  const put = (base: number, table: ReadonlyMap<number, number> | Record<number, number>) => {
    const entries =
      table instanceof Map ? [...table.entries()] : Object.entries(table).map(([k, v]) => [Number(k), v]);
    for (const [opcode, effects] of entries as Array<[number, number]>) {
      if (!Number.isInteger(opcode) || opcode < 0 || opcode > 0xff)
        throw new RangeError(`opcode ${opcode} is not a byte`);
      buf.writeUInt32LE(effects >>> 0, base + opcode * 4);
    }
  };
  put(CmdEffectsLog.offsetOf('acs'), admin);
  put(CmdEffectsLog.offsetOf('iocs'), io);
  return buf;
}

/** Effects of one opcode in a decoded log page. */
export function cmdEffectsOf(log: Uint8Array, kind: 'admin' | 'io', opcode: number): number {
  const b = Buffer.from(log.buffer, log.byteOffset, log.byteLength);
  return b.readUInt32LE(CmdEffectsLog.offsetOf(kind === 'admin' ? 'acs' : 'iocs') + opcode * 4);
}
