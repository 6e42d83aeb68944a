import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FILE_DEFAULT_COPY_LIMITS, FileDevice, type FileDeviceOptions } from './file.js';
import { BlockError, CopyError } from '../block/errors.js';
import { loadNative, nativeStatus, type NativeAddon, type NativeError } from '../native/addon.js';

// Both engines are covered below (native: null, and TSBLK_NO_NATIVE=1 in a child process),
// so a suite run with TSBLK_NO_NATIVE=1 still tests the addon here (loading is lazy).
delete process.env.TSBLK_NO_NATIVE;

const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;
let counter = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsblk-file-'));
});
after(() => rm(dir, { recursive: true, force: true }));

function tmpPath(): string {
  return join(dir, `dev${counter++}.img`);
}

function realNative(): NativeAddon {
  const n = loadNative();
  assert.ok(n, `native addon not loaded: ${nativeStatus().reason}`);
  return n;
}

function nativeError(code: string, syscall: string, bytesCopied?: number): NativeError {
  return Object.assign(new Error(`${code}: injected, ${syscall}`), {
    code,
    errno: -1,
    syscall,
    ...(bytesCopied === undefined ? {} : { bytesCopied }),
  });
}

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(BlockError.is(err), `expected a BlockError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

async function readDev(dev: FileDevice, offset: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len, 0xee);
  await dev.read(offset, buf);
  return buf;
}

const isZero = (b: Uint8Array) => b.every((x) => x === 0);

/** True when this process holds a descriptor on path whose flags include O_DSYNC (/proc/self/fdinfo). */
async function openWithDsync(path: string): Promise<boolean> {
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== path) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? '0', 8);
    if (flags & constants.O_DSYNC) return true;
  }
  return false;
}

// Every behaviour runs on both engines: the native addon, and the pure-TypeScript fallback.
const engines: Array<{ label: string; native: () => NativeAddon | null; offloads: boolean }> = [
  { label: 'native addon', native: realNative, offloads: true },
  { label: 'no addon', native: () => null, offloads: false },
];

for (const engine of engines) {
  const openDev = (o: Omit<FileDeviceOptions, 'native'>) =>
    FileDevice.open({ ...o, native: engine.native() });

  describe(`FileDevice (${engine.label})`, () => {
    it('creates a sparse file of the given size and reads and writes its last block', async () => {
      const path = tmpPath();
      const size = 64 * MiB;
      const dev = await openDev({ path, size, create: true });
      assert.equal(dev.kind, 'file');
      assert.equal(dev.size, size);
      assert.equal(dev.name, path);
      const st = await stat(path);
      assert.equal(st.size, size);
      assert.ok(st.blocks * 512 < MiB, 'the new file is sparse');
      const data = randomBytes(4096);
      await dev.write(size - 4096, data);
      assert.deepEqual(await readDev(dev, size - 4096, 4096), data);
      assert.ok(isZero(await readDev(dev, 0, 4096)));
      await dev.close();
      assert.deepEqual((await readFile(path)).subarray(size - 4096), data);
    });

    it('FUA writes and flush complete and the data is in the file', async () => {
      const path = tmpPath();
      const dev = await openDev({ path, size: MiB, create: true });
      const data = randomBytes(8192);
      await dev.write(MiB - 8192, data, { fua: true });
      await dev.write(0, data.subarray(0, 512));
      await dev.flush();
      // FUA goes through a second descriptor on the file opened with O_DSYNC.
      assert.ok(await openWithDsync(path), 'an O_DSYNC descriptor is open on the file');
      const file = await readFile(path);
      assert.deepEqual(file.subarray(MiB - 8192), data);
      assert.deepEqual(file.subarray(0, 512), data.subarray(0, 512));
      await dev.close();
    });

    it('a read past the end of a file that shrank under the device returns zeroes', async () => {
      const path = tmpPath();
      const dev = await openDev({ path, size: MiB, create: true });
      await dev.write(0, Buffer.alloc(MiB, 7));
      await truncate(path, MiB - 1024);
      const got = await readDev(dev, MiB - 2048, 2048);
      assert.ok(got.subarray(0, 1024).every((b) => b === 7));
      assert.ok(isZero(got.subarray(1024)));
      await dev.close();
    });

    it('discard and writeZeroes read back as zeroes; the untouched bytes stay', async () => {
      const path = tmpPath();
      const size = 4 * MiB;
      const dev = await openDev({ path, size, create: true });
      const data = randomBytes(size);
      await dev.write(0, data);
      await dev.discard(MiB, MiB);
      await dev.writeZeroes(size - 4096, 4096);
      await dev.writeZeroes(512, 1024, { noUnmap: true });
      const got = await readFile(path);
      assert.ok(isZero(got.subarray(MiB, 2 * MiB)));
      assert.ok(isZero(got.subarray(size - 4096)));
      assert.ok(isZero(got.subarray(512, 1536)));
      assert.deepEqual(got.subarray(0, 512), data.subarray(0, 512));
      assert.deepEqual(got.subarray(1536, MiB), data.subarray(1536, MiB));
      assert.deepEqual(got.subarray(2 * MiB, size - 4096), data.subarray(2 * MiB, size - 4096));
      assert.equal(got.length, size, 'the file keeps its size');
      await dev.flush();
      const st = await stat(path);
      if (engine.offloads) assert.ok(st.blocks * 512 <= size - MiB, 'the discard punched a hole');
      else assert.ok(st.blocks * 512 >= size, 'without fallocate zeroes were written');
      assert.equal(dev.limits.writeZeroes?.unmaps, engine.offloads);
      assert.equal(dev.details().fallocate, engine.offloads ? 'native' : 'emulated');
      await dev.close();
    });

    it('copies between two files and reports the engine that moved the bytes', async () => {
      const a = await openDev({ path: tmpPath(), size: 8 * MiB, create: true });
      const b = await openDev({ path: tmpPath(), size: 8 * MiB, create: true });
      const data = randomBytes(3 * MiB);
      await a.write(MiB, data);
      assert.equal(b.canCopyFrom(a), true);
      const r = await b.copy(
        a,
        [
          { src: MiB, dst: 0, len: MiB },
          { src: 2 * MiB, dst: 8 * MiB - 2 * MiB, len: 2 * MiB },
        ],
        { allowEmulation: true },
      );
      assert.deepEqual(
        r,
        engine.offloads ? { offloaded: 3 * MiB, emulated: 0 } : { offloaded: 0, emulated: 3 * MiB },
      );
      assert.deepEqual(await readDev(b, 0, MiB), data.subarray(0, MiB));
      assert.deepEqual(await readDev(b, 6 * MiB, 2 * MiB), data.subarray(MiB));
      assert.match(
        String(b.details().copyEngine),
        engine.offloads
          ? /^copy_file_range$/
          : /^emulated \(native addon not loaded: disabled by the caller\)$/,
      );
      await a.close();
      await b.close();
    });

    it('A→B and B→C in one request: C gets the old B; only the overlapping source goes through memory', async () => {
      const dev = await openDev({ path: tmpPath(), size: 8 * MiB, create: true });
      const a = Buffer.alloc(MiB, 0xaa);
      const b = Buffer.alloc(MiB, 0xbb);
      await dev.write(0, a);
      await dev.write(MiB, b);
      const r = await dev.copy(
        dev,
        [
          { src: 0, dst: MiB, len: MiB },
          { src: MiB, dst: 2 * MiB, len: MiB },
        ],
        { allowEmulation: true },
      );
      assert.deepEqual(await readDev(dev, MiB, MiB), a);
      assert.deepEqual(await readDev(dev, 2 * MiB, MiB), b);
      assert.deepEqual(
        r,
        engine.offloads ? { offloaded: MiB, emulated: MiB } : { offloaded: 0, emulated: 2 * MiB },
      );
      await dev.close();
    });

    it('a range overlapping itself moves like memmove, also seen through a second device on the same file', async () => {
      const path = tmpPath();
      const one = await openDev({ path, size: 4 * MiB, create: true });
      const two = await openDev({ path });
      const data = randomBytes(2 * MiB);
      await one.write(0, data);
      await two.copy(one, [{ src: 0, dst: 4096, len: 2 * MiB }], { allowEmulation: true });
      assert.deepEqual(await readDev(one, 4096, 2 * MiB), data);
      await two.close();
      await one.close();
    });

    it('copies within one file without overlap', async () => {
      const dev = await openDev({ path: tmpPath(), size: 4 * MiB, create: true });
      const data = randomBytes(MiB);
      await dev.write(0, data);
      const r = await dev.copy(dev, [{ src: 0, dst: 3 * MiB, len: MiB }], { allowEmulation: true });
      assert.equal(r.offloaded + r.emulated, MiB);
      assert.equal(r.offloaded, engine.offloads ? MiB : 0);
      assert.deepEqual(await readDev(dev, 3 * MiB, MiB), data);
      await dev.close();
    });

    it('a read-only device reads, and refuses writes, discard, write zeroes and copies with EPERM', async () => {
      const path = tmpPath();
      await writeFile(path, Buffer.alloc(64 * KiB, 3));
      const dev = await openDev({ path, readOnly: true });
      assert.equal(dev.size, 64 * KiB);
      assert.ok((await readDev(dev, 60 * KiB, 4 * KiB)).every((b) => b === 3));
      await rejectsWith(dev.write(0, Buffer.alloc(512)), 'EPERM');
      await rejectsWith(dev.discard(0, 512), 'EPERM');
      await rejectsWith(dev.writeZeroes(0, 512), 'EPERM');
      await rejectsWith(dev.copy(dev, [{ src: 0, dst: 512, len: 512 }], { allowEmulation: true }), 'EPERM');
      await dev.flush();
      await dev.close();
      assert.ok((await readFile(path)).every((b) => b === 3));
    });
  });
}

describe('FileDevice open', () => {
  it('a missing file without create is ENODEV', async () => {
    await rejectsWith(FileDevice.open({ path: join(dir, 'missing.img') }), 'ENODEV', /create: true/);
  });

  it('create without a size is EINVAL and leaves no file behind', async () => {
    const path = join(dir, 'nosize.img');
    await rejectsWith(FileDevice.open({ path, create: true }), 'EINVAL', /needs a size/);
    assert.equal(existsSync(path), false);
  });

  it('a size that is not a multiple of the block size is EINVAL, and the file is not extended', async () => {
    const path = tmpPath();
    await writeFile(path, Buffer.alloc(1000));
    await rejectsWith(FileDevice.open({ path }), 'EINVAL', /pass size: 512/);
    await rejectsWith(
      FileDevice.open({ path, size: 8192 + 512, logicalBlockSize: 4096 }),
      'EINVAL',
      /multiple/,
    );
    assert.equal((await stat(path)).size, 1000);
    const created = join(dir, 'odd.img');
    await rejectsWith(FileDevice.open({ path: created, size: 1000, create: true }), 'EINVAL');
    assert.equal(existsSync(created), false);
  });

  it('a longer file keeps its length and the device is the given size; a shorter one is extended', async () => {
    const path = tmpPath();
    await writeFile(path, Buffer.alloc(64 * KiB, 1));
    const small = await FileDevice.open({ path, size: 32 * KiB });
    assert.equal(small.size, 32 * KiB);
    await rejectsWith(small.read(32 * KiB, Buffer.alloc(512)), 'ERANGE');
    await small.close();
    assert.equal((await stat(path)).size, 64 * KiB);
    await rejectsWith(FileDevice.open({ path, size: 128 * KiB, readOnly: true }), 'EINVAL', /writable/);
    const big = await FileDevice.open({ path, size: 128 * KiB });
    assert.equal((await stat(path)).size, 128 * KiB);
    assert.ok(isZero(await readDev(big, 128 * KiB - 512, 512)));
    await big.close();
  });

  it('bad paths and option combinations are EINVAL', async () => {
    const sub = join(dir, 'a-directory');
    await mkdir(sub);
    await rejectsWith(FileDevice.open({ path: sub }), 'EINVAL', /directory/);
    await rejectsWith(FileDevice.open({ path: '' }), 'EINVAL');
    await rejectsWith(
      FileDevice.open({ path: tmpPath(), create: true, readOnly: true, size: 4096 }),
      'EINVAL',
    );
    await rejectsWith(FileDevice.open({ path: tmpPath(), create: true, size: -512 }), 'EINVAL');
    await rejectsWith(
      FileDevice.open({ path: '/dev/null' }),
      'EINVAL',
      /not a regular file or a block device/,
    );
  });

  it('limits: defaults, copy overrides and copy: false', async () => {
    const dev = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, logicalBlockSize: 4096 });
    assert.equal(dev.limits.logicalBlockSize, 4096);
    assert.equal(dev.limits.maxTransferBytes, 8 * MiB);
    assert.deepEqual(dev.limits.copy, { ...FILE_DEFAULT_COPY_LIMITS });
    assert.deepEqual(dev.limits.discard, { granularity: 4096, maxBytes: MiB, zeroesData: true });
    await rejectsWith(dev.write(512, Buffer.alloc(512)), 'EINVAL');
    const noCopy = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, copy: false });
    assert.equal(noCopy.canCopyFrom(dev), false);
    await rejectsWith(
      noCopy.copy(dev, [{ src: 0, dst: 0, len: 4096 }], { allowEmulation: true }),
      'EOPNOTSUPP',
    );
    const tuned = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, copy: { maxRanges: 1 } });
    await rejectsWith(
      tuned.copy(
        tuned,
        [
          { src: 0, dst: 4096, len: 512 },
          { src: 512, dst: 8192, len: 512 },
        ],
        { allowEmulation: true },
      ),
      'E2BIG',
    );
    for (const d of [dev, noCopy, tuned]) await d.close();
  });

  it('details name the path and the engines', async () => {
    const path = tmpPath();
    const dev = await FileDevice.open({ path, size: MiB, create: true });
    assert.deepEqual(dev.details(), {
      path,
      backing: 'regular file',
      copyEngine: 'copy_file_range',
      fallocate: 'native',
      fua: 'O_DSYNC',
    });
    await dev.close();
    await rejectsWith(dev.read(0, Buffer.alloc(512)), 'EBADF');
  });
});

describe('FileDevice copy fallbacks and failures', () => {
  /** The real addon with copyFileRange and fallocate replaced. */
  function fakeNative(over: Partial<NativeAddon>): NativeAddon {
    return { ...realNative(), ...over };
  }

  it('copy_file_range refused with EXDEV: the bytes are emulated, or EOPNOTSUPP when emulation is not allowed', async () => {
    let calls = 0;
    const native = fakeNative({
      copyFileRange: () => {
        calls++;
        return Promise.reject(nativeError('EXDEV', 'copy_file_range', 0));
      },
    });
    const dev = await FileDevice.open({ path: tmpPath(), size: 4 * MiB, create: true, native });
    const data = randomBytes(MiB);
    await dev.write(0, data);
    const ranges = [{ src: 0, dst: 2 * MiB, len: MiB }];
    assert.deepEqual(await dev.copy(dev, ranges, { allowEmulation: true }), { offloaded: 0, emulated: MiB });
    assert.deepEqual(await readDev(dev, 2 * MiB, MiB), data);
    assert.equal(calls, 1);
    await dev.writeZeroes(2 * MiB, MiB);
    await assert.rejects(dev.copy(dev, ranges, { allowEmulation: false }), (err: unknown) => {
      assert.ok(CopyError.isCopyError(err));
      assert.equal(err.code, 'EOPNOTSUPP');
      assert.match(err.message, /EXDEV/);
      assert.deepEqual(err.completed, [0]);
      return true;
    });
    assert.ok(isZero(await readDev(dev, 2 * MiB, MiB)), 'nothing was copied');
    await dev.close();
  });

  it('a failure part way reports per-range prefixes and the path of the copied bytes', async () => {
    const real = realNative();
    let call = 0;
    const native = fakeNative({
      // The second range copies 64 KiB, then fails with EIO.
      copyFileRange: async (fdIn, offIn, fdOut, offOut, len) => {
        if (call++ === 0) return real.copyFileRange(fdIn, offIn, fdOut, offOut, len);
        const n = await real.copyFileRange(fdIn, offIn, fdOut, offOut, 64 * KiB);
        throw nativeError('EIO', 'copy_file_range', n);
      },
    });
    const dev = await FileDevice.open({ path: tmpPath(), size: 4 * MiB, create: true, native });
    const data = randomBytes(MiB);
    await dev.write(0, data);
    const ranges = [
      { src: 0, dst: 2 * MiB, len: 256 * KiB },
      { src: 256 * KiB, dst: 3 * MiB, len: 256 * KiB },
      { src: 512 * KiB, dst: 3 * MiB + 512 * KiB, len: 256 * KiB },
    ];
    await assert.rejects(dev.copy(dev, ranges, { allowEmulation: true }), (err: unknown) => {
      assert.ok(CopyError.isCopyError(err));
      assert.equal(err.code, 'EIO');
      assert.deepEqual(err.completed, [256 * KiB, 64 * KiB, 0]);
      assert.equal(err.offloaded, 320 * KiB);
      assert.equal(err.emulated, 0);
      return true;
    });
    assert.deepEqual(await readDev(dev, 2 * MiB, 256 * KiB), data.subarray(0, 256 * KiB));
    assert.deepEqual(await readDev(dev, 3 * MiB, 64 * KiB), data.subarray(256 * KiB, 320 * KiB));
    assert.ok(isZero(await readDev(dev, 3 * MiB + 512 * KiB, 256 * KiB)), 'the third range was not touched');
    await dev.close();
  });

  it('copy_file_range stopping short at a source file that shrank: the rest is emulated as zeroes', async () => {
    const aPath = tmpPath();
    const a = await FileDevice.open({ path: aPath, size: 2 * MiB, create: true });
    const b = await FileDevice.open({ path: tmpPath(), size: 2 * MiB, create: true });
    const data = randomBytes(2 * MiB);
    await a.write(0, data);
    await b.write(0, Buffer.alloc(2 * MiB, 0xff));
    await truncate(aPath, MiB + 512);
    const r = await b.copy(a, [{ src: 0, dst: 0, len: 2 * MiB }], { allowEmulation: true });
    assert.deepEqual(r, { offloaded: MiB + 512, emulated: MiB - 512 });
    const got = await readDev(b, 0, 2 * MiB);
    assert.deepEqual(got.subarray(0, MiB + 512), data.subarray(0, MiB + 512));
    assert.ok(isZero(got.subarray(MiB + 512)));
    await rejectsWith(
      b.copy(a, [{ src: 0, dst: 0, len: 2 * MiB }], { allowEmulation: false }),
      'EIO',
      /truncated/,
    );
    await a.close();
    await b.close();
  });

  it('offload forced without the addon, or onto overlapping ranges, is EOPNOTSUPP before any I/O', async () => {
    const plain = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, native: null });
    await plain.write(0, Buffer.alloc(4096, 1));
    await rejectsWith(
      plain.copy(plain, [{ src: 0, dst: 8192, len: 4096 }], { allowEmulation: false }),
      'EOPNOTSUPP',
      /native addon/,
    );
    assert.ok(isZero(await readDev(plain, 8192, 4096)));
    const withAddon = await FileDevice.open({ path: tmpPath(), size: MiB, create: true });
    await withAddon.write(0, Buffer.alloc(8192, 1));
    await rejectsWith(
      withAddon.copy(withAddon, [{ src: 0, dst: 4096, len: 8192 }], { allowEmulation: false }),
      'EOPNOTSUPP',
      /overlap/,
    );
    assert.ok((await readDev(withAddon, 8192, 4096)).every((b) => b === 0));
    await plain.close();
    await withAddon.close();
  });

  it('fallocate refused by the filesystem: zeroes are written instead, and details say so', async () => {
    const modes: number[] = [];
    const native = fakeNative({
      fallocate: (_fd, mode) => {
        modes.push(mode);
        return Promise.reject(nativeError('EOPNOTSUPP', 'fallocate'));
      },
    });
    const dev = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, native });
    await dev.write(0, Buffer.alloc(MiB, 9));
    await dev.discard(0, 4096);
    await dev.writeZeroes(MiB - 4096, 4096);
    assert.ok(isZero(await readDev(dev, 0, 4096)));
    assert.ok(isZero(await readDev(dev, MiB - 4096, 4096)));
    assert.ok((await readDev(dev, 4096, 4096)).every((b) => b === 9));
    // Punch, then zero-range, each tried once; afterwards zeroes are written directly.
    assert.deepEqual(modes, [0x03, 0x11]);
    assert.equal(dev.details().fallocate, 'emulated');
    await dev.close();
  });

  for (const engine of engines) {
    it(`close waits for a copy in flight on either device (${engine.label})`, async () => {
      const native = engine.native();
      const a = await FileDevice.open({ path: tmpPath(), size: 16 * MiB, create: true, native });
      const bPath = tmpPath();
      const b = await FileDevice.open({ path: bPath, size: 16 * MiB, create: true, native });
      const data = randomBytes(16 * MiB);
      await a.write(0, data.subarray(0, 8 * MiB));
      await a.write(8 * MiB, data.subarray(8 * MiB));
      const copy = b.copy(a, [{ src: 0, dst: 0, len: 16 * MiB }], { allowEmulation: true });
      await Promise.all([a.close(), b.close()]);
      const total = 16 * MiB;
      assert.deepEqual(
        await copy,
        engine.offloads ? { offloaded: total, emulated: 0 } : { offloaded: 0, emulated: total },
      );
      assert.ok((await readFile(bPath)).equals(data));
    });
  }

  it('with TSBLK_NO_NATIVE=1 a device uses the emulated engines and says why', () => {
    const url = new URL('./file.ts', import.meta.url).href;
    const path = tmpPath();
    const script = `import { FileDevice } from ${JSON.stringify(url)};
      const dev = await FileDevice.open({ path: ${JSON.stringify(path)}, size: 1 << 20, create: true });
      await dev.write(0, Buffer.alloc(4096, 1));
      const r = await dev.copy(dev, [{ src: 0, dst: 8192, len: 4096 }], { allowEmulation: true });
      await dev.discard(0, 4096);
      const back = Buffer.alloc(4096);
      await dev.read(8192, back);
      console.log(JSON.stringify({ r, details: dev.details(), copied: back.every((b) => b === 1) }));
      await dev.close();`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, TSBLK_NO_NATIVE: '1' },
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout) as { r: unknown; details: Record<string, unknown>; copied: boolean };
    assert.deepEqual(out.r, { offloaded: 0, emulated: 4096 });
    assert.equal(out.copied, true);
    assert.equal(out.details.copyEngine, 'emulated (native addon not loaded: disabled by TSBLK_NO_NATIVE=1)');
    assert.equal(out.details.fallocate, 'emulated');
  });
});
