import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CopyRange } from '../block/device.js';
import { BlockError, CopyError, ErrorCode } from '../block/errors.js';
import { Sqe } from '../nvme/command.js';
import { decodeCopyCommand, decodeCopySourceRanges } from '../nvme/copy.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { Status, SUCCESS, withDnr } from '../nvme/status.js';
import {
  copyHostCommand,
  planCopyCommands,
  runCopyCommands,
  type CopyCommandLimits,
  type CopySchedule,
} from './copy-commands.js';
import type { HostCommand, HostCompletion } from './types.js';

const B = 512;
const LIMITS: CopyCommandLimits = { blockSize: B, maxRanges: 256, maxBytes: 1 << 20, maxRangeBytes: 64 * B };

/** Ranges in blocks, for readability. */
const r = (src: number, dst: number, len: number): CopyRange => ({
  src: src * B,
  dst: dst * B,
  len: len * B,
});

/** Each command as [first destination block, caller indices of its ranges]. */
function shape(s: CopySchedule): Array<[number, number[]]> {
  return s.commands.map((c) => [c.dst / B, c.ranges.map((p) => p.index)]);
}

function throwsCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(BlockError.is(e), 'a BlockError');
    assert.equal(e.code, code);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('ranges with consecutive destinations become one command, in destination order', () => {
  // Given out of order: destination order is 2, 0, 1.
  const s = planCopyCommands([r(100, 8, 4), r(200, 12, 2), r(300, 0, 8)], LIMITS, true, 'copy');
  assert.deepEqual(shape(s), [[0, [2, 0, 1]]]);
  assert.equal(s.commands[0]!.bytes, 14 * B);
  assert.equal(s.commands[0]!.retryable, true);
  assert.equal(s.sequential, false);
});

test('a gap between destinations starts a new command; independent commands are not ordered', () => {
  const s = planCopyCommands([r(100, 0, 4), r(200, 10, 4), r(300, 14, 4)], LIMITS, true, 'copy');
  assert.deepEqual(shape(s), [
    [0, [0]],
    [10, [1, 2]],
  ]);
  assert.equal(s.sequential, false);
});

test('MSRC + 1 and MCL close a command; MSSRL is enforced per range', () => {
  const ranges = [r(100, 0, 4), r(200, 4, 4), r(300, 8, 4)];
  assert.deepEqual(shape(planCopyCommands(ranges, { ...LIMITS, maxRanges: 2 }, true, 'copy')), [
    [0, [0, 1]],
    [8, [2]],
  ]);
  assert.deepEqual(shape(planCopyCommands(ranges, { ...LIMITS, maxBytes: 6 * B }, true, 'copy')), [
    [0, [0]],
    [4, [1]],
    [8, [2]],
  ]);
  throwsCode(() => planCopyCommands([r(0, 100, 65)], LIMITS, true, 'copy'), ErrorCode.E2BIG, /range 0/);
});

test('a command that reads what another writes runs first (readers before writers)', () => {
  // Range 0 writes blocks 20..24, which range 1 reads: range 1's command goes first.
  const s = planCopyCommands([r(0, 20, 4), r(20, 40, 4)], LIMITS, true, 'copy');
  assert.deepEqual(shape(s), [
    [40, [1]],
    [20, [0]],
  ]);
  assert.equal(s.sequential, true);
});

test('a range never reads what an earlier range of its own command writes', () => {
  // Destinations are consecutive (0..4, 4..8) but range 1 reads blocks 0..4 that range 0
  // writes: a controller running ranges in order would copy new data. Two commands, the
  // reader (range 1, destination 4) first.
  const s = planCopyCommands([r(100, 0, 4), r(0, 4, 4)], LIMITS, true, 'copy');
  assert.deepEqual(shape(s), [
    [4, [1]],
    [0, [0]],
  ]);
  // The other way round is fine in one command: range 0 reads 4..8 before range 1 writes it.
  const one = planCopyCommands([r(4, 0, 4), r(100, 4, 4)], LIMITS, true, 'copy');
  assert.deepEqual(shape(one), [[0, [0, 1]]]);
  assert.equal(one.commands[0]!.retryable, false, 'a source overlaps the destination');
});

test('commands that overwrite each other’s sources in a cycle are refused before sending', () => {
  throwsCode(
    () => planCopyCommands([r(0, 16, 4), r(16, 0, 4)], LIMITS, true, 'copy on ns1'),
    ErrorCode.EOPNOTSUPP,
    /copy on ns1: ranges 0, 1 overwrite each other's sources across 2 Copy commands/,
  );
  // Consecutive destinations do not help: range 1 would read what range 0 wrote.
  throwsCode(
    () => planCopyCommands([r(4, 0, 4), r(0, 4, 4)].reverse(), LIMITS, true, 'copy'),
    ErrorCode.EOPNOTSUPP,
  );
});

test('a range overlapping its own destination is one command, not retryable', () => {
  const s = planCopyCommands([r(0, 2, 8)], LIMITS, true, 'copy');
  assert.deepEqual(shape(s), [[2, [0]]]);
  assert.equal(s.commands[0]!.retryable, false);
});

test('across namespaces offsets never conflict: no ordering, always retryable', () => {
  const s = planCopyCommands([r(0, 16, 4), r(16, 0, 4)], LIMITS, false, 'copy');
  assert.deepEqual(shape(s), [
    [0, [1]],
    [16, [0]],
  ]);
  assert.equal(s.sequential, false);
  assert.ok(
    s.commands.every((c) => c.retryable),
    'every command retryable',
  );
});

test('copyHostCommand encodes SDLBA, NR, the format and the descriptors (SNSID for 2)', () => {
  const s = planCopyCommands([r(100, 8, 4), r(200, 12, 2)], LIMITS, false, 'copy');
  const cmd = copyHostCommand(s.commands[0]!, { nsid: 2, format: 2, snsid: 1, blockSize: B });
  const sqe = Sqe.decode(Sqe.encode(cmd.sqe));
  assert.equal(sqe.opcode, IoOpcode.COPY);
  assert.equal(sqe.nsid, 2);
  const c = decodeCopyCommand(sqe);
  assert.deepEqual([c.sdlba, c.ranges, c.format], [8, 2, 2]);
  const descs = decodeCopySourceRanges(cmd.data!, 2, 2);
  assert.deepEqual(
    descs.map((d) => [d.snsid, d.slba, d.blocks]),
    [
      [1, 100, 4],
      [1, 200, 2],
    ],
  );
  assert.equal(cmd.retryable, true);
  const f0 = copyHostCommand(s.commands[0]!, { nsid: 1, format: 0, blockSize: B });
  assert.equal(decodeCopyCommand(Sqe.decode(Sqe.encode(f0.sqe))).format, 0);
  assert.equal(decodeCopySourceRanges(f0.data!, 0, 2)[0]!.snsid, undefined);
});

const ok: HostCompletion = { status: SUCCESS, dw0: 0, dw1: 0 };
const target = { nsid: 1, format: 0, blockSize: B };

test('runCopyCommands: every byte offloaded on success', async () => {
  const ranges = [r(100, 0, 4), r(200, 10, 4)];
  const sent: HostCommand[] = [];
  const res = await runCopyCommands(
    planCopyCommands(ranges, LIMITS, true, 'copy'),
    ranges,
    target,
    async (c) => (sent.push(c), ok),
    'copy',
  );
  assert.deepEqual(res, { offloaded: 8 * B, emulated: 0 });
  assert.equal(sent.length, 2);
});

test('runCopyCommands: DW0 of a failed Copy gives whole ranges before it, 0 after', async () => {
  // One command of ranges 2, 0, 1 (destination order); it fails after 1 range; the other
  // command (range 3) succeeds.
  const ranges = [r(100, 8, 4), r(200, 12, 2), r(300, 0, 8), r(400, 40, 2)];
  const schedule = planCopyCommands(ranges, LIMITS, true, 'copy');
  await assert.rejects(
    runCopyCommands(
      schedule,
      ranges,
      target,
      async (c) => (c.sqe.cdw10 === 0 ? { status: withDnr(Status.READ_ERROR), dw0: 1, dw1: 0 } : ok),
      'copy on ns',
    ),
    (e: unknown) => {
      assert.ok(CopyError.isCopyError(e), 'a CopyError');
      assert.equal(e.code, ErrorCode.EIO);
      assert.deepEqual(e.completed, [0, 0, 8 * B, 2 * B]);
      assert.equal(e.offloaded, 10 * B);
      assert.equal(e.offset, 8 * B, 'the first range not copied');
      assert.match(
        e.message,
        /copy on ns: Copy to block 0 \(3 ranges, 1 completed\): NVMe status 0x281 READ_ERROR/,
      );
      return true;
    },
  );
});

test('runCopyCommands: a dependent schedule stops at the first failure; transport errors count 0', async () => {
  const ranges = [r(0, 20, 4), r(20, 40, 4)]; // range 1's command first, then range 0's
  const schedule = planCopyCommands(ranges, LIMITS, true, 'copy');
  let calls = 0;
  await assert.rejects(
    runCopyCommands(
      schedule,
      ranges,
      target,
      async () => {
        calls++;
        throw new BlockError(ErrorCode.ENODEV, 'controller lost');
      },
      'copy',
    ),
    (e: unknown) =>
      CopyError.isCopyError(e) && e.code === ErrorCode.ENODEV && e.completed.every((n) => n === 0),
  );
  assert.equal(calls, 1, 'the second command was not sent');
  const bad = { status: withDnr(Status.CMD_SIZE_LIMIT_EXCEEDED), dw0: 0, dw1: 0 };
  let n = 0;
  await assert.rejects(
    runCopyCommands(schedule, ranges, target, async () => (n++ === 0 ? ok : bad), 'copy'),
    (e: unknown) =>
      CopyError.isCopyError(e) &&
      e.code === ErrorCode.E2BIG &&
      e.completed[1] === 4 * B &&
      e.completed[0] === 0,
  );
});

test('runCopyCommands: an abort between dependent commands stops with ECANCELED', async () => {
  const ranges = [r(0, 20, 4), r(20, 40, 4)];
  const ac = new AbortController();
  await assert.rejects(
    runCopyCommands(
      planCopyCommands(ranges, LIMITS, true, 'copy'),
      ranges,
      target,
      async (c) => {
        assert.equal(c.signal, ac.signal);
        ac.abort();
        return ok;
      },
      'copy',
      ac.signal,
    ),
    (e: unknown) =>
      CopyError.isCopyError(e) &&
      e.code === ErrorCode.ECANCELED &&
      e.completed[1] === 4 * B &&
      e.completed[0] === 0,
  );
});
