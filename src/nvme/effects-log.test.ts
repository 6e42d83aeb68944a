import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CmdEffects, CmdEffectsLog, cmdEffectsOf, encodeCmdEffectsLog } from './effects-log.js';
import { assertLayout } from './testing/layout.js';

test('struct nvme_cmd_effects_log: 4096 bytes, acs at 0, iocs at 1024 (libnvme types.h)', () => {
  assertLayout(CmdEffectsLog, 4096, { acs: 0, iocs: 1024, rsvd2048: 2048 });
});

test('encodeCmdEffectsLog puts each opcode’s u32 at base + 4 × opcode', () => {
  const log = encodeCmdEffectsLog(
    { 0x06: CmdEffects.CSUPP },
    new Map([[0x19, CmdEffects.CSUPP | CmdEffects.LBCC]]),
  );
  assert.equal(log.length, 4096);
  assert.equal(log.readUInt32LE(0x06 * 4), 1);
  assert.equal(log.readUInt32LE(1024 + 0x19 * 4), 3);
  assert.equal(cmdEffectsOf(log, 'io', 0x19), 3);
  assert.equal(cmdEffectsOf(log, 'io', 0x02), 0);
  assert.throws(() => encodeCmdEffectsLog({ 256: 1 }, {}), RangeError);
});
