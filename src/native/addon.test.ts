import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isNativeError, loadNative, nativeStatus, type NativeAddon } from './addon.js';

// These tests need the built addon (`node native/build.mjs`, run by `npm ci`); the
// pure-TypeScript fallbacks are tested through the devices that use them.
// They cover the TSBLK_NO_NATIVE=1 path in a child process, so a suite run with it set still
// tests the addon here (loading is lazy: nothing has read the variable yet).
delete process.env.TSBLK_NO_NATIVE;

let dir: string;
let native: NativeAddon;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsblk-native-'));
  const addon = loadNative();
  assert.ok(addon, `native addon not loaded: ${nativeStatus().reason}`);
  native = addon;
});
after(() => rm(dir, { recursive: true, force: true }));

async function withFile(name: string, data: Buffer, fn: (fh: FileHandle, path: string) => Promise<void>) {
  const path = join(dir, name);
  await writeFile(path, data);
  const fh = await open(path, 'r+');
  try {
    await fn(fh, path);
  } finally {
    await fh.close();
  }
}

async function rejectsWithErrno(p: Promise<unknown>, code: string, syscall: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isNativeError(err), String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.syscall, syscall);
    assert.ok(err.errno < 0, 'errno is negative, as in Node fs errors');
    assert.match(err.message, new RegExp(`^${code}: `));
    return true;
  });
}

describe('native addon loading', () => {
  it('loads once and reports where from', () => {
    assert.equal(loadNative(), native);
    const status = nativeStatus();
    assert.equal(status.available, true);
    assert.match(status.reason, /tsblk_native\.node/);
    assert.equal(native.FALLOC_FL_KEEP_SIZE, 0x01);
    assert.equal(native.FALLOC_FL_PUNCH_HOLE, 0x02);
    assert.equal(native.FALLOC_FL_ZERO_RANGE, 0x10);
  });

  it('TSBLK_NO_NATIVE=1 forces the fallback without throwing', () => {
    const url = new URL('./addon.ts', import.meta.url).href;
    const script = `import { loadNative, nativeStatus } from ${JSON.stringify(url)};
      console.log(JSON.stringify({ addon: loadNative() === undefined ? 'none' : 'loaded', ...nativeStatus() }));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, TSBLK_NO_NATIVE: '1' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      addon: 'none',
      available: false,
      reason: 'disabled by TSBLK_NO_NATIVE=1',
    });
  });
});

describe('fallocate', () => {
  it('punches a hole that reads as zeroes and keeps the size', async () => {
    const data = randomBytes(256 * 1024);
    await withFile('punch', data, async (fh, path) => {
      const before = await stat(path);
      const p = native.fallocate(
        fh.fd,
        native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_KEEP_SIZE,
        64 * 1024,
        128 * 1024,
      );
      assert.ok(p instanceof Promise);
      assert.equal(await p, undefined);
      const after = await stat(path);
      assert.equal(after.size, data.length);
      assert.ok(
        after.blocks < before.blocks,
        `blocks ${before.blocks} → ${after.blocks}: the hole freed space`,
      );
      const got = await readFile(path);
      assert.deepEqual(got.subarray(0, 64 * 1024), data.subarray(0, 64 * 1024));
      assert.ok(got.subarray(64 * 1024, 192 * 1024).every((b) => b === 0));
      assert.deepEqual(got.subarray(192 * 1024), data.subarray(192 * 1024));
    });
  });

  it('zeroes a range with ZERO_RANGE, including the last bytes of the file', async () => {
    const data = randomBytes(64 * 1024);
    await withFile('zero', data, async (fh, path) => {
      await native.fallocate(
        fh.fd,
        native.FALLOC_FL_ZERO_RANGE | native.FALLOC_FL_KEEP_SIZE,
        60 * 1024,
        4096,
      );
      const got = await readFile(path);
      assert.equal(got.length, data.length);
      assert.deepEqual(got.subarray(0, 60 * 1024), data.subarray(0, 60 * 1024));
      assert.ok(got.subarray(60 * 1024).every((b) => b === 0));
    });
  });

  it('fails with the errno name: EOPNOTSUPP for a hole punch without KEEP_SIZE, EBADF for a bad fd', async () => {
    await withFile('bad', Buffer.alloc(4096, 1), async (fh) => {
      await rejectsWithErrno(
        native.fallocate(fh.fd, native.FALLOC_FL_PUNCH_HOLE, 0, 4096),
        'EOPNOTSUPP',
        'fallocate',
      );
    });
    await rejectsWithErrno(native.fallocate(99999, 0, 0, 4096), 'EBADF', 'fallocate');
  });
});

describe('copyFileRange', () => {
  it('copies bytes between files at 64-bit offsets and resolves with the count', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 512);
    await withFile('cfr-src', data, async (src) => {
      await withFile('cfr-dst', Buffer.alloc(0), async (dst, dstPath) => {
        const far = 2 ** 33; // past 4 GiB: offsets are 64-bit
        const n = await native.copyFileRange(src.fd, 512, dst.fd, far, data.length - 512);
        assert.equal(n, data.length - 512);
        const got = Buffer.alloc(data.length - 512);
        await dst.read(got, 0, got.length, far);
        assert.deepEqual(got, data.subarray(512));
        assert.equal((await stat(dstPath)).size, far + data.length - 512);
      });
    });
  });

  it('stops at the end of the source file with a short count', async () => {
    await withFile('short-src', Buffer.alloc(10 * 1024, 5), async (src) => {
      await withFile('short-dst', Buffer.alloc(0), async (dst) => {
        assert.equal(await native.copyFileRange(src.fd, 4096, dst.fd, 0, 64 * 1024), 6 * 1024);
      });
    });
  });

  it('rejects overlapping ranges in one file with EINVAL and a bad fd with EBADF, with bytesCopied', async () => {
    await withFile('overlap', randomBytes(64 * 1024), async (fh) => {
      await rejectsWithErrno(
        native.copyFileRange(fh.fd, 0, fh.fd, 4096, 16 * 1024),
        'EINVAL',
        'copy_file_range',
      );
      await assert.rejects(native.copyFileRange(fh.fd, 0, 99999, 0, 4096), { code: 'EBADF', bytesCopied: 0 });
    });
  });

  it('checks its arguments synchronously', () => {
    assert.throws(() => native.copyFileRange(0, -1, 1, 0, 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native.copyFileRange(0, 0.5, 1, 0, 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native.copyFileRange(0, 2 ** 53, 1, 0, 1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native.fallocate('x' as unknown as number, 0, 0, 1), {
      code: 'ERR_INVALID_ARG_TYPE',
    });
    assert.throws(() => (native.fallocate as (...a: number[]) => unknown)(1, 0), {
      code: 'ERR_MISSING_ARGS',
    });
  });
});

describe('block-device ioctls', () => {
  it('fail with ENOTTY on a regular file', async () => {
    await withFile('not-a-blockdev', Buffer.alloc(4096), async (fh) => {
      assert.throws(() => native.blockDeviceSize(fh.fd), { code: 'ENOTTY', syscall: 'ioctl(BLKGETSIZE64)' });
      assert.throws(() => native.blockDeviceLogicalBlockSize(fh.fd), {
        code: 'ENOTTY',
        syscall: 'ioctl(BLKSSZGET)',
      });
    });
  });
});
