// Runs one command sequence on a fresh world with one copy mode, checking every operation
// against the reference model: success or failure (and the error code, and the ZNS error
// name for zone violations), every byte read, zone reports, copy results. It returns a trace
// (what happened, with digests of everything read) for comparing the `auto` and `emulate`
// runs of the same sequence.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { BlockDevice } from '../../src/block/device.js';
import { BlockError, CopyError, ErrorCode } from '../../src/block/errors.js';
import { issueCopy, type CopyMode, type CopyResult } from '../../src/block/copy.js';
import { ZoneType, type Zone } from '../../src/block/zone.js';
import { describe as describeOp, resolve, type Command, type Op } from './commands.js';
import { createWorld, type World, type WorldConfig } from './devices.js';
import { knownBugHit } from './known-bugs.js';
import { modelCopy, type Expectation, type ModelDevice } from './reference.js';

export interface RunResult {
  /** One line per command: the op, its outcome, digests of what was read. */
  readonly trace: string[];
  /** Index of the first command whose outcome the model could not predict, if any. */
  readonly uncertainAt: number | undefined;
  /** Final images of both devices. */
  readonly images: Buffer[];
  /** The resolved ops, for failure messages. */
  readonly ops: string[];
}

type Settled<T> = { ok: true; value: T } | { ok: false; err: unknown };

async function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, err };
  }
}

function digest(buf: Uint8Array): string {
  return createHash('sha1').update(buf).digest('hex').slice(0, 16);
}

function errText(err: unknown): string {
  return BlockError.is(err) ? `${err.code}${err.zone ? `/${err.zone}` : ''}: ${err.message}` : String(err);
}

/** Asserts that a settled device call matches the model's expectation; returns the outcome text. */
function checkOutcome(expect: Expectation, got: Settled<unknown>, what: string): string {
  if (expect.ok) {
    if (!got.ok)
      assert.fail(`${what}: the model expects success, the device failed with ${errText(got.err)}`);
    return 'ok';
  }
  if (got.ok)
    assert.fail(
      `${what}: the model expects failure (${expect.codes.join('|')}${expect.zoneErrors ? ` ${expect.zoneErrors.join('|')}` : ''}), the device succeeded`,
    );
  const err = got.err;
  assert.ok(BlockError.is(err), `${what}: expected a BlockError, got ${String(err)}`);
  assert.ok(
    expect.codes.includes(err.code),
    `${what}: expected ${expect.codes.join('|')}, got ${errText(err)}`,
  );
  if (expect.zoneErrors)
    assert.ok(
      err.zone !== undefined && expect.zoneErrors.includes(err.zone),
      `${what}: expected zone error ${expect.zoneErrors.join('|')}, got ${errText(err)}`,
    );
  return err.code;
}

/** Reads a whole device in transfer-sized pieces. */
export async function readImage(dev: BlockDevice): Promise<Buffer> {
  const buf = Buffer.alloc(dev.size);
  const step = dev.limits.maxTransferBytes;
  for (let pos = 0; pos < dev.size; pos += step)
    await dev.read(pos, buf.subarray(pos, Math.min(dev.size, pos + step)));
  return buf;
}

/** First differing block, for messages. */
function firstDifference(a: Buffer, b: Buffer, lbs: number): string {
  for (let i = 0; i < a.length; i++)
    if (a[i] !== b[i])
      return `first difference at byte ${i} (block ${Math.floor(i / lbs)}): device ${a[i]}, model ${b[i]}`;
  return 'lengths differ';
}

async function verifyImage(dev: BlockDevice, model: ModelDevice, what: string): Promise<Buffer> {
  const img = await readImage(dev);
  if (!img.equals(model.image))
    assert.fail(
      `${what}: ${dev.name} differs from the model: ${firstDifference(img, model.image, model.lbs)}`,
    );
  return img;
}

function zoneView(z: Zone, conventional: boolean) {
  return {
    start: z.start,
    size: z.size,
    capacity: z.capacity,
    type: z.type,
    state: z.state,
    writePointer: conventional ? undefined : z.writePointer,
  };
}

async function verifyZones(dev: BlockDevice, model: ModelDevice, what: string): Promise<string> {
  if (!model.zones) return '';
  const want = model.reportZones(0).zones!;
  const got = (await dev.reportZones(0)).map((z) => zoneView(z, z.type === ZoneType.CONVENTIONAL));
  assert.deepEqual(got, want, `${what}: reportZones of ${dev.name} differs from the model`);
  return digest(Buffer.from(JSON.stringify(got)));
}

function checkCopyResult(r: CopyResult, op: Extract<Op, { op: 'copy' }>, mode: CopyMode, what: string): void {
  const total = op.ranges.reduce((s, x) => s + x.len, 0);
  assert.equal(r.bytes, total, `${what}: result.bytes`);
  assert.equal(
    r.offloaded + r.emulated,
    total,
    `${what}: offloaded ${r.offloaded} + emulated ${r.emulated} ≠ ${total}`,
  );
  if (mode === 'emulate')
    assert.equal(r.offloaded, 0, `${what}: mode emulate but ${r.offloaded} bytes offloaded`);
  assert.equal(r.ranges.length, op.ranges.length, `${what}: result.ranges`);
  r.ranges.forEach((x, i) => {
    const want = op.ranges[i]!;
    assert.deepEqual(
      [x.src, x.dst, x.len, x.completed],
      [want.src, want.dst, want.len, want.len],
      `${what}: range ${i}`,
    );
    if (mode === 'emulate') assert.equal(x.path, 'emulate', `${what}: range ${i} path`);
  });
}

/**
 * A copy whose outcome depends on timing (a zoned destination where some pieces land and
 * some are refused). Checks what must still hold, then adopts the device's state: the
 * failure is a CopyError with an allowed code; nothing outside the destination ranges
 * changed; each range's `completed` prefix holds its source bytes; every other destination
 * block holds either its old bytes or its source bytes; write pointers only moved forward.
 */
async function adoptUncertainCopy(
  world: World,
  op: Extract<Op, { op: 'copy' }>,
  expect: Extract<Expectation, { ok: false }>,
  sources: Buffer[],
  err: unknown,
  what: string,
): Promise<void> {
  assert.ok(CopyError.isCopyError(err), `${what}: expected a CopyError, got ${errText(err)}`);
  assert.ok(
    expect.codes.includes(err.code),
    `${what}: expected ${expect.codes.join('|')}, got ${errText(err)}`,
  );
  if (expect.zoneErrors)
    assert.ok(
      err.zone !== undefined && expect.zoneErrors.includes(err.zone),
      `${what}: expected zone error ${expect.zoneErrors.join('|')}, got ${errText(err)}`,
    );
  const dev = world.devices[op.to];
  const model = world.models[op.to];
  const lbs = model.lbs;
  const img = await readImage(dev);
  const expected = Buffer.from(model.image);
  op.ranges.forEach((r, i) => {
    const c = err.completed[i] ?? -1;
    assert.ok(
      c >= 0 && c <= r.len && c % lbs === 0,
      `${what}: completed[${i}] = ${c} for a ${r.len}-byte range`,
    );
    assert.ok(
      img.subarray(r.dst, r.dst + c).equals(sources[i]!.subarray(0, c)),
      `${what}: range ${i}: the completed prefix of ${c} bytes does not hold the source bytes`,
    );
    for (let off = c; off < r.len; off += lbs) {
      const got = img.subarray(r.dst + off, r.dst + off + lbs);
      const old = model.image.subarray(r.dst + off, r.dst + off + lbs);
      const src = sources[i]!.subarray(off, off + lbs);
      assert.ok(
        got.equals(old) || got.equals(src),
        `${what}: range ${i} block at ${r.dst + off} holds neither its old nor its source bytes`,
      );
    }
    img.copy(expected, r.dst, r.dst, r.dst + r.len);
  });
  if (!img.equals(expected))
    assert.fail(
      `${what}: bytes outside the destination ranges changed: ${firstDifference(img, expected, lbs)}`,
    );
  model.image.set(img);
  if (op.from !== op.to) await verifyImage(world.devices[op.from], world.models[op.from], `${what} (source)`);
  if (!model.zones) return;
  const reported = await dev.reportZones(0);
  reported.forEach((z, i) => {
    const mz = model.zones![i]!;
    if (mz.conventional) return;
    assert.ok(
      z.writePointer >= mz.wp && z.writePointer <= mz.start + mz.cap,
      `${what}: zone ${i} write pointer moved from ${mz.wp} to ${z.writePointer}`,
    );
    model.adoptZone(i, z.state, z.writePointer);
  });
  await verifyZones(dev, model, `${what} (adopted zones)`);
}

/** Runs one op; returns its trace line and whether its outcome was uncertain. */
async function runOp(
  world: World,
  op: Op,
  mode: CopyMode,
  what: string,
): Promise<{ line: string; uncertain?: boolean }> {
  const line = describeOp(op);
  switch (op.op) {
    case 'read': {
      const m = world.models[op.dev];
      const { expect, data } = m.read(op.offset, op.len);
      const buf = Buffer.alloc(Math.max(0, op.len), 0xa5);
      const out = checkOutcome(expect, await settle(world.devices[op.dev].read(op.offset, buf)), what);
      if (expect.ok && !buf.equals(data!))
        assert.fail(`${what}: read data differs from the model: ${firstDifference(buf, data!, m.lbs)}`);
      return { line: `${line} → ${out}${expect.ok ? ` ${digest(buf)}` : ''}` };
    }
    case 'write':
    case 'discard':
    case 'writeZeroes':
    case 'flush':
    case 'zone':
    case 'resetAll': {
      const m = world.models[op.dev];
      const d = world.devices[op.dev];
      let expect: Expectation;
      let p: Promise<unknown>;
      if (op.op === 'write') {
        expect = m.write(op.offset, op.data);
        p = d.write(op.offset, op.data, { fua: op.fua });
      } else if (op.op === 'discard') {
        expect = m.discard(op.offset, op.len);
        p = d.discard(op.offset, op.len);
      } else if (op.op === 'writeZeroes') {
        expect = m.writeZeroes(op.offset, op.len);
        p = d.writeZeroes(op.offset, op.len, { noUnmap: op.noUnmap });
      } else if (op.op === 'flush') {
        expect = { ok: true };
        p = d.flush();
      } else if (op.op === 'resetAll') {
        expect = m.resetAllZones();
        p = d.resetAllZones();
      } else {
        expect = m.zoneManagement(op.action, op.zoneStart);
        const call = { open: d.openZone, close: d.closeZone, finish: d.finishZone, reset: d.resetZone }[
          op.action
        ];
        p = call.call(d, op.zoneStart);
      }
      const out = checkOutcome(expect, await settle(p), what);
      // A refused request must not have changed anything (or, cut per zone, only the pieces that landed).
      if (!expect.ok) await verifyImage(d, m, `${what} (after the failure)`);
      const zones =
        op.op === 'zone' || op.op === 'resetAll' || (m.zones && op.op !== 'flush')
          ? await verifyZones(d, m, what)
          : '';
      return { line: `${line} → ${out} ${zones}` };
    }
    case 'append': {
      const m = world.models[op.dev];
      const { expect, at } = m.zoneAppend(op.zoneStart, op.data);
      const got = await settle(world.devices[op.dev].zoneAppend(op.zoneStart, op.data));
      const out = checkOutcome(expect, got, what);
      if (expect.ok && got.ok)
        assert.equal(got.value, at, `${what}: appended at ${got.value}, the model's write pointer was ${at}`);
      if (m.zones) await verifyZones(world.devices[op.dev], m, what);
      return { line: `${line} → ${out} ${at ?? ''}` };
    }
    case 'report': {
      const m = world.models[op.dev];
      const { expect, zones } = m.reportZones(op.offset, op.max);
      const got = await settle(world.devices[op.dev].reportZones(op.offset, op.max));
      const out = checkOutcome(expect, got, what);
      if (expect.ok && got.ok)
        assert.deepEqual(
          got.value.map((z) => zoneView(z, z.type === ZoneType.CONVENTIONAL)),
          zones,
          `${what}: reportZones differs from the model`,
        );
      return { line: `${line} → ${out} ${got.ok ? digest(Buffer.from(JSON.stringify(got.value))) : ''}` };
    }
    case 'verify': {
      const img = await verifyImage(world.devices[op.dev], world.models[op.dev], what);
      const zones = await verifyZones(world.devices[op.dev], world.models[op.dev], what);
      return { line: `${line} → ${digest(img)} ${zones}` };
    }
    case 'copy': {
      const src = world.models[op.from];
      const dst = world.models[op.to];
      const { expect, sources } = modelCopy(src, dst, op.ranges);
      const options = { mode, ...world.config.copyOptions };
      const got = await settle(issueCopy(world.devices[op.from], world.devices[op.to], op.ranges, options));
      if (!expect.ok && expect.uncertain && !got.ok) {
        await adoptUncertainCopy(world, op, expect, sources, got.err, what);
        return { line: `${line} → uncertain ${BlockError.is(got.err) ? got.err.code : ''}`, uncertain: true };
      }
      if (!expect.ok && expect.uncertain && got.ok)
        assert.fail(
          `${what}: the model expects some pieces to be refused (${expect.zoneErrors?.join('|')}), the copy succeeded`,
        );
      const out = checkOutcome(expect, got, what);
      if (got.ok) checkCopyResult(got.value, op, mode, what);
      else if (!expect.ok) {
        const validation = !expect.codes.includes(ErrorCode.EIO);
        if (validation)
          assert.ok(
            !CopyError.isCopyError(got.err),
            `${what}: an invalid request must fail with a plain BlockError before any I/O`,
          );
        else {
          assert.ok(
            CopyError.isCopyError(got.err),
            `${what}: a copy failing at run time must throw a CopyError`,
          );
          assert.deepEqual(
            got.err.completed,
            op.ranges.map(() => 0),
            `${what}: no piece could land, completed must be all 0`,
          );
        }
        await verifyImage(world.devices[op.to], dst, `${what} (after the failure)`);
      }
      if (dst.zones) await verifyZones(world.devices[op.to], dst, what);
      return { line: `${line} → ${out}` };
    }
  }
}

/** Outcome counts per operation (TSBLK_PROPERTY_STATS=1 prints them): is the generator balanced? */
export const outcomeStats = new Map<string, number>();

function countOutcome(op: Op, line: string): void {
  const outcome = line.split(' → ')[1]?.split(' ')[0] ?? '?';
  let what: string = op.op;
  if (op.op === 'zone') what += `-${op.action}`;
  if (op.op === 'copy') {
    const overlap =
      op.from === op.to &&
      op.ranges.some((r) => op.ranges.some((d) => r.src < d.dst + d.len && d.dst < r.src + r.len));
    what += `${op.from === op.to ? '' : '-cross'}${overlap ? '-overlap' : ''}`;
  }
  const key = `${what} ${outcome === 'ok' || /^[0-9a-f]{16}$/.test(outcome) ? 'ok' : outcome}`;
  outcomeStats.set(key, (outcomeStats.get(key) ?? 0) + 1);
}

/** Runs a sequence on a fresh world; throws an AssertionError naming the step and the ops so far. */
export async function runSequence(
  config: WorldConfig,
  commands: readonly Command[],
  mode: CopyMode,
): Promise<RunResult> {
  const world = await createWorld(config);
  const trace: string[] = [];
  const ops: string[] = [];
  let uncertainAt: number | undefined;
  try {
    for (const [i, cmd] of commands.entries()) {
      const op = resolve(world.models, cmd);
      const bug = knownBugHit(op, world.devices, world.models);
      if (bug) {
        // Skipped in both copy modes alike (resolution depends only on the model).
        trace.push(`${describeOp(op)} → skipped: known bug ${bug.id}`);
        if (mode === 'auto')
          outcomeStats.set(`skipped ${bug.id}`, (outcomeStats.get(`skipped ${bug.id}`) ?? 0) + 1);
        ops.push(`(skipped, known bug ${bug.id}) ${describeOp(op)}`);
        continue;
      }
      ops.push(describeOp(op));
      const what = `[${config.kind}, copy mode ${mode}] step ${i}: ${describeOp(op)}`;
      const r = await runOp(world, op, mode, what);
      if (mode === 'auto') countOutcome(op, r.line);
      trace.push(r.line);
      if (r.uncertain) uncertainAt ??= i;
    }
    const images: Buffer[] = [];
    for (const dev of [0, 1] as const) {
      images.push(
        await verifyImage(
          world.devices[dev],
          world.models[dev],
          `[${config.kind}, copy mode ${mode}] final image`,
        ),
      );
      await verifyZones(
        world.devices[dev],
        world.models[dev],
        `[${config.kind}, copy mode ${mode}] final zones`,
      );
    }
    return { trace, uncertainAt, images, ops };
  } catch (err) {
    if (err instanceof Error)
      err.message += `\n  devices: ${world.devices.map((d) => `${d.name} (${d.kind}, ${d.size} bytes, lbs ${d.limits.logicalBlockSize})`).join(', ')}\n  ops:\n    ${ops.join('\n    ')}`;
    throw err;
  } finally {
    await world.close();
  }
}

/**
 * The property: the sequence passes against the model with copies in `auto` mode and in
 * `emulate` mode, and both runs saw the same things — every outcome and every byte read, up
 * to the first copy whose outcome depends on timing, and the final images when there was none.
 */
export async function checkSequence(config: WorldConfig, commands: readonly Command[]): Promise<void> {
  const auto = await runSequence(config, commands, 'auto');
  const emulate = await runSequence(config, commands, 'emulate');
  const n = Math.min(auto.uncertainAt ?? Infinity, emulate.uncertainAt ?? Infinity);
  const upTo = Number.isFinite(n) ? n : commands.length;
  for (let i = 0; i < upTo; i++)
    assert.equal(
      emulate.trace[i],
      auto.trace[i],
      `[${config.kind}] step ${i}: copy modes auto and emulate disagree`,
    );
  if (!Number.isFinite(n))
    auto.images.forEach((img, d) =>
      assert.ok(
        img.equals(emulate.images[d]!),
        `[${config.kind}] final image of device ${d} differs between auto and emulate`,
      ),
    );
}
