import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CopyJob, type CopyJobCheckpoint, type CopyJobProgress } from './copy-job.js';
import { ThroughputMeter } from './throughput.js';
import { MappedDevice } from './mapped-device.js';
import { LinearTarget } from './linear.js';
import { fillRandom, readAll } from './testing/model.js';
import { RamDevice } from '../devices/ram.js';
import { FaultDevice } from '../devices/fault.js';
import type { CopyRange } from '../block/device.js';
import { BlockError, CopyError } from '../block/errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function rejectsWith(p: Promise<unknown>, code: string, check?: (err: BlockError) => void) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    check?.(err);
    return true;
  });
}

function throwsCode(fn: () => unknown, code: string, message?: RegExp) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(BlockError.is(err), String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Destination bytes a finished job must hold. */
function expected(srcData: Buffer, dstBefore: Buffer, ranges: readonly CopyRange[]): Buffer {
  const out = Buffer.from(dstBefore);
  for (const r of ranges) srcData.copy(out, r.dst, r.src, r.src + r.len);
  return out;
}

const RANGES: CopyRange[] = [
  { src: 0, dst: 2 * MiB, len: 768 * KiB },
  { src: MiB, dst: 3 * MiB, len: MiB + 256 * KiB },
  { src: 3 * MiB, dst: 0, len: 512 * KiB },
];
const TOTAL = RANGES.reduce((s, r) => s + r.len, 0);

async function devices() {
  const src = new RamDevice({ name: 'src', size: 4 * MiB + 512 * KiB });
  const dstRam = new RamDevice({ name: 'dst-ram', size: 4 * MiB + 512 * KiB });
  const srcData = await fillRandom(src);
  const dstBefore = await fillRandom(dstRam);
  return { src, dstRam, srcData, dstBefore };
}

describe('CopyJob', () => {
  it('copies ranges of any size in chunks, reporting progress up to the total', async () => {
    const { src, dstRam, srcData, dstBefore } = await devices();
    const job = new CopyJob(src, dstRam, RANGES, { chunkBytes: 256 * KiB, concurrency: 2 });
    const seen: CopyJobProgress[] = [];
    let maxInFlight = 0;
    job.on('progress', (p) => {
      seen.push(p);
      maxInFlight = Math.max(maxInFlight, p.chunksInFlight);
    });
    assert.equal(job.state, 'idle');
    const res = await job.run();
    assert.equal(job.state, 'done');
    assert.deepEqual(await readAll(dstRam), expected(srcData, dstBefore, RANGES));
    assert.equal(res.bytes, TOTAL);
    assert.equal(res.copied, TOTAL);
    assert.equal(res.resumed, 0);
    assert.equal(res.emulated, TOTAL, 'different devices: emulated');
    assert.equal(res.offloaded, 0);
    const last = seen[seen.length - 1]!;
    assert.equal(last.bytesDone, TOTAL);
    assert.equal(last.state, 'done');
    assert.equal(last.etaSeconds, 0);
    // 768K + 1280K + 512K in 256K chunks: 10 chunks.
    assert.equal(last.chunksDone, 10);
    assert.ok(maxInFlight >= 1 && maxInFlight <= 2, `in flight ${maxInFlight}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone);
    assert.deepEqual(
      job.completed,
      RANGES.map((r) => r.len),
    );
    assert.equal(await job.run(), res, 'run() twice returns the same result');
  });

  it('offloads within one device; mode passes through to issueCopy', async () => {
    const ram = new RamDevice({ size: 8 * MiB });
    const data = await fillRandom(ram);
    const ranges = [{ src: 0, dst: 4 * MiB, len: 3 * MiB }];
    const off = await new CopyJob(ram, ram, ranges, { chunkBytes: MiB }).run();
    assert.equal(off.offloaded, 3 * MiB);
    assert.deepEqual(await readAll(ram, 4 * MiB, 3 * MiB), data.subarray(0, 3 * MiB));
    const emu = await new CopyJob(ram, ram, [{ src: 4 * MiB, dst: 0, len: MiB }], { mode: 'emulate' }).run();
    assert.equal(emu.emulated, MiB);
    const noCopy = new RamDevice({ size: MiB, copy: false });
    await rejectsWith(
      new CopyJob(noCopy, noCopy, [{ src: 0, dst: 512 * KiB, len: 4096 }], { mode: 'offload' }).run(),
      'EOPNOTSUPP',
      (e) => assert.deepEqual((e as CopyError).completed, [0]),
    );
  });

  it('cuts chunks at maxRangesPerChunk', async () => {
    const { src, dstRam } = await devices();
    const ranges = Array.from({ length: 7 }, (_, i) => ({ src: i * 8192, dst: i * 8192, len: 4096 }));
    const job = new CopyJob(src, dstRam, ranges, { maxRangesPerChunk: 3 });
    await job.run();
    assert.equal(job.progress().chunksDone, 3);
  });

  it('refuses bad jobs with EINVAL before copying', () => {
    const ram = new RamDevice({ size: MiB });
    throwsCode(
      () => new CopyJob(ram, ram, [{ src: 0, dst: 4096, len: 8192 }]),
      'EINVAL',
      /overlaps a source/,
    );
    throwsCode(() => new CopyJob(ram, ram, [{ src: 0, dst: 4096, len: 100 }]), 'EINVAL');
    throwsCode(() => new CopyJob(ram, ram, []), 'EINVAL');
    throwsCode(() => new CopyJob(ram, ram, [{ src: 0, dst: MiB - 512, len: 1024 }]), 'ERANGE');
    throwsCode(() => new CopyJob(ram, ram, [{ src: 0, dst: 8192, len: 512 }], { chunkBytes: 256 }), 'EINVAL');
    throwsCode(() => new CopyJob(ram, ram, [{ src: 0, dst: 8192, len: 512 }], { concurrency: 0 }), 'EINVAL');
    throwsCode(
      () => new CopyJob(ram, ram, [{ src: 0, dst: 8192, len: 512 }], { completed: [100] }),
      'EINVAL',
    );
    const ro = new RamDevice({ size: MiB, readOnly: true });
    throwsCode(() => new CopyJob(ram, ro, [{ src: 0, dst: 0, len: 512 }]), 'EPERM');
  });

  it('copies the last block of both devices', async () => {
    const { src, dstRam, srcData } = await devices();
    const last = src.size - 512;
    await new CopyJob(src, dstRam, [{ src: last, dst: last, len: 512 }]).run();
    assert.deepEqual(await readAll(dstRam, last, 512), srcData.subarray(last));
  });
});

describe('CopyJob failure and resume', () => {
  it('an injected write error fails with per-range prefixes; resumed from the checkpoint the data is identical', async () => {
    const { src, dstRam, srcData, dstBefore } = await devices();
    const dst = new FaultDevice(dstRam, { name: 'dst' });
    // A bad block 300 KiB into range 1's destination.
    const bad = RANGES[1]!.dst + 300 * KiB;
    const rule = dst.addRule({ ops: ['write'], offset: bad, length: 512 });
    const job = new CopyJob(src, dst, RANGES, {
      chunkBytes: 128 * KiB,
      concurrency: 2,
      copy: { chunkBytes: 64 * KiB },
    });
    let failure: CopyError | undefined;
    await rejectsWith(job.run(), 'EIO', (e) => {
      assert.ok(CopyError.isCopyError(e));
      failure = e;
    });
    assert.equal(job.state, 'failed');
    const done = failure!.completed;
    assert.equal(done[0], RANGES[0]!.len, 'range 0 finished before range 1 failed');
    assert.ok(
      done[1]! > 0 && done[1]! <= 300 * KiB,
      `range 1 prefix ${done[1]} ends at or before the bad block`,
    );
    assert.equal(done[1]! % (64 * KiB), 0, 'prefix ends on a write boundary');
    assert.equal(done[2], 0, 'range 2 never started');
    assert.deepEqual(job.completed, [...done]);
    // The prefixes are really on the destination.
    const now = await readAll(dstRam);
    assert.deepEqual(
      now.subarray(RANGES[1]!.dst, RANGES[1]!.dst + done[1]!),
      srcData.subarray(RANGES[1]!.src, RANGES[1]!.src + done[1]!),
    );

    // Through JSON, as a tool would keep it.
    const cp = JSON.parse(JSON.stringify(job.checkpoint())) as CopyJobCheckpoint;
    assert.deepEqual(
      cp.ranges.map((r) => r.completed),
      done,
    );
    dst.removeRule(rule);
    // Any write into an already-copied prefix would now fail: the resumed job must not rewrite them.
    dst.addRule({ ops: ['write'], offset: RANGES[0]!.dst, length: RANGES[0]!.len });
    dst.addRule({ ops: ['write'], offset: RANGES[1]!.dst, length: done[1]! });
    const resumed = CopyJob.fromCheckpoint(src, dst, cp, { chunkBytes: 128 * KiB });
    assert.equal(resumed.progress().bytesDone, RANGES[0]!.len + done[1]!);
    const res = await resumed.run();
    assert.equal(res.resumed, RANGES[0]!.len + done[1]!);
    assert.equal(res.copied, TOTAL - res.resumed);
    assert.equal(res.emulated, TOTAL - res.resumed);
    assert.deepEqual(await readAll(dstRam), expected(srcData, dstBefore, RANGES));
    assert.deepEqual(
      resumed.completed,
      RANGES.map((r) => r.len),
    );
  });

  it('an offloaded copy through a FaultDevice fails at the faulty block and resumes', async () => {
    const ram = new RamDevice({ size: 8 * MiB });
    const data = await fillRandom(ram);
    const f = new FaultDevice(ram);
    f.addRule({ ops: ['copy'], offset: 4 * MiB + MiB + 5000, length: 1, times: 1 });
    const ranges = [{ src: 0, dst: 4 * MiB, len: 3 * MiB }];
    const job = new CopyJob(f, f, ranges, { chunkBytes: 512 * KiB, concurrency: 1 });
    await rejectsWith(job.run(), 'EIO', (e) => assert.deepEqual((e as CopyError).completed, [MiB + 4608]));
    assert.ok(job.progress().offloaded >= MiB + 4608);
    const res = await CopyJob.fromCheckpoint(f, f, job.checkpoint()).run();
    assert.equal(res.offloaded, 2 * MiB - 4608);
    assert.deepEqual(await readAll(ram, 4 * MiB, 3 * MiB), data.subarray(0, 3 * MiB));
  });

  it('resumes a copy across a linear mapping whose component failed', async () => {
    const a = new RamDevice({ name: 'a', size: 2 * MiB });
    const fb = new FaultDevice(new RamDevice({ name: 'b', size: 2 * MiB }), { name: 'fb' });
    const dm = new MappedDevice({
      name: 'dmj',
      targets: [
        new LinearTarget({ start: 0, length: 2 * MiB, device: a, offset: 0 }),
        new LinearTarget({ start: 2 * MiB, length: 2 * MiB, device: fb, offset: 0 }),
      ],
    });
    const data = await fillRandom(dm);
    fb.down();
    const ranges = [{ src: 0, dst: 2 * MiB, len: 2 * MiB }];
    const job = new CopyJob(dm, dm, ranges, { chunkBytes: 256 * KiB });
    await rejectsWith(job.run(), 'ENODEV', (e) => assert.deepEqual((e as CopyError).completed, [0]));
    fb.up();
    const res = await CopyJob.fromCheckpoint(dm, dm, job.checkpoint()).run();
    assert.equal(res.emulated, 2 * MiB, 'a → b pieces are emulated inside the mapping');
    assert.deepEqual(await readAll(dm, 2 * MiB, 2 * MiB), data.subarray(0, 2 * MiB));
  });

  it('a checkpoint is refused for other devices or with bad counts', async () => {
    const { src, dstRam } = await devices();
    const job = new CopyJob(src, dstRam, RANGES);
    const cp = job.checkpoint();
    throwsCode(() => CopyJob.fromCheckpoint(dstRam, src, cp), 'EINVAL', /taken for src → dst-ram/);
    throwsCode(() => CopyJob.fromCheckpoint(src, dstRam, { ...cp, version: 2 } as never), 'EINVAL');
    const bad = { ...cp, ranges: cp.ranges.map((r, i) => ({ ...r, completed: i === 0 ? r.len + 512 : 0 })) };
    throwsCode(() => CopyJob.fromCheckpoint(src, dstRam, bad), 'EINVAL', /completed/);
    const finished = { ...cp, ranges: cp.ranges.map((r) => ({ ...r, completed: r.len })) };
    const res = await CopyJob.fromCheckpoint(src, dstRam, finished).run();
    assert.equal(res.copied, 0);
    assert.equal(res.resumed, TOTAL);
  });
});

describe('CopyJob control', () => {
  it('abort stops the job with ECANCELED and prefixes; resuming finishes the copy', async () => {
    const { src, dstRam, srcData, dstBefore } = await devices();
    const dst = new FaultDevice(dstRam, { name: 'dst', delays: { write: { ms: 5 } } });
    const ac = new AbortController();
    const job = new CopyJob(src, dst, RANGES, {
      chunkBytes: 128 * KiB,
      signal: ac.signal,
      copy: { chunkBytes: 64 * KiB },
    });
    job.once('progress', () => ac.abort());
    let completed: readonly number[] = [];
    await rejectsWith(job.run(), 'ECANCELED', (e) => (completed = (e as CopyError).completed));
    const copied = completed.reduce((s, c) => s + c, 0);
    assert.ok(copied > 0 && copied < TOTAL, `copied ${copied}`);
    dst.setDelay('write', undefined);
    const res = await CopyJob.fromCheckpoint(src, dst, job.checkpoint()).run();
    assert.equal(res.resumed, copied);
    assert.deepEqual(await readAll(dstRam), expected(srcData, dstBefore, RANGES));
  });

  it('pause lets running chunks finish and starts no new one until resume', async () => {
    const { src, dstRam, srcData, dstBefore } = await devices();
    const dst = new FaultDevice(dstRam, { name: 'dst', delays: { write: { ms: 2 } } });
    const job = new CopyJob(src, dst, RANGES, { chunkBytes: 256 * KiB, concurrency: 1 });
    const events: string[] = [];
    job.on('pause', () => events.push('pause'));
    job.on('resume', () => events.push('resume'));
    let paused = false;
    job.on('progress', (p) => {
      if (!paused && p.chunksDone === 1) {
        paused = true;
        job.pause();
      }
    });
    const run = job.run();
    while (!paused) await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 20)); // the running chunk finishes
    const held = job.progress();
    assert.equal(held.state, 'paused');
    assert.equal(held.chunksInFlight, 0);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(job.progress().chunksDone, held.chunksDone, 'no chunk ran while paused');
    assert.ok(held.bytesDone < TOTAL);
    job.resume();
    await run;
    assert.deepEqual(events, ['pause', 'resume']);
    assert.deepEqual(await readAll(dstRam), expected(srcData, dstBefore, RANGES));
  });

  it('an abort while paused ends the job', async () => {
    const { src, dstRam } = await devices();
    const ac = new AbortController();
    const job = new CopyJob(src, dstRam, RANGES, { signal: ac.signal });
    job.pause();
    const run = job.run();
    setTimeout(() => ac.abort(), 5);
    await rejectsWith(run, 'ECANCELED', (e) => assert.deepEqual((e as CopyError).completed, [0, 0, 0]));
  });

  it('reports throughput over its window and an ETA from it', async () => {
    let t = 0;
    const { src, dstRam } = await devices();
    // Each clock read advances 1 ms: the rate is deterministic in clock reads, not wall time.
    const job = new CopyJob(src, dstRam, RANGES, {
      chunkBytes: 256 * KiB,
      concurrency: 1,
      now: () => (t += 1),
    });
    const rates: CopyJobProgress[] = [];
    job.on('progress', (p) => rates.push(p));
    await job.run();
    const mid = rates.find((p) => p.bytesDone > TOTAL / 2 && p.bytesDone < TOTAL)!;
    assert.ok(mid.bytesPerSecond > 0);
    assert.ok(mid.etaSeconds !== undefined && mid.etaSeconds > 0);
    assert.ok(Math.abs(mid.etaSeconds - (TOTAL - mid.bytesDone) / mid.bytesPerSecond) < 1e-9);
    assert.ok(rates[rates.length - 1]!.elapsedMs > 0);
  });
});

describe('ThroughputMeter', () => {
  it('measures over the sliding window only', () => {
    const m = new ThroughputMeter(1000);
    assert.equal(m.bytesPerSecond, 0);
    assert.equal(m.etaSeconds(100), undefined);
    m.record(0, 0);
    m.record(500, 1000);
    assert.equal(m.bytesPerSecond, 2000);
    assert.equal(m.etaSeconds(4000), 2);
    m.record(1000, 1000); // stalled for 500 ms
    assert.equal(m.bytesPerSecond, 1000);
    m.record(2500, 1000); // only the stall remains in the window
    assert.equal(m.bytesPerSecond, 0);
    m.record(3000, 6000);
    // The sample before the window start (1000) anchors the rate: 5000 bytes over 2 s.
    assert.equal(m.bytesPerSecond, 2500);
    assert.equal(m.etaSeconds(0), 0);
  });
});
