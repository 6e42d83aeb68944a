import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isNativeError, loadNative, nativeStatus, type NativeAddon } from './addon.js';

// lseekData needs the built addon (`node native/build.mjs`, run by `npm ci`).
delete process.env.TSBLK_NO_NATIVE;

const MiB = 1024 * 1024;
let dir: string;
let native: NativeAddon;
let fh: FileHandle;

before(async () => {
  const addon = loadNative();
  assert.ok(addon, `native addon not loaded: ${nativeStatus().reason}`);
  native = addon;
  dir = await mkdtemp(join(tmpdir(), 'tsblk-lseek-'));
  // 16 MiB, sparse, with one block of data at 0 and one at 5 MiB.
  fh = await open(join(dir, 'sparse'), 'w+');
  await fh.truncate(16 * MiB);
  await fh.write(Buffer.alloc(4096, 1), 0, 4096, 0);
  await fh.write(Buffer.alloc(4096, 1), 0, 4096, 5 * MiB);
});
after(async () => {
  await fh?.close();
  await rm(dir, { recursive: true, force: true });
});

/** True when the filesystem under tmpdir reports holes (some report a sparse file as all data). */
async function tracksHoles(): Promise<boolean> {
  return (await native.lseekData(fh.fd, 0, native.SEEK_HOLE)) < 16 * MiB;
}

describe('lseekData', () => {
  it('exports the Linux whence values', () => {
    assert.equal(native.SEEK_DATA, 3);
    assert.equal(native.SEEK_HOLE, 4);
  });

  it('finds data and holes, resolving asynchronously', async () => {
    const p = native.lseekData(fh.fd, 0, native.SEEK_DATA);
    assert.ok(p instanceof Promise);
    assert.equal(await p, 0);
    if (await tracksHoles()) {
      assert.equal(await native.lseekData(fh.fd, 0, native.SEEK_HOLE), 4096);
      assert.equal(await native.lseekData(fh.fd, 4096, native.SEEK_DATA), 5 * MiB);
      assert.equal(await native.lseekData(fh.fd, 5 * MiB, native.SEEK_HOLE), 5 * MiB + 4096);
      // No data after the second block: ENXIO, answered as -1.
      assert.equal(await native.lseekData(fh.fd, 6 * MiB, native.SEEK_DATA), -1);
    } else {
      assert.equal(await native.lseekData(fh.fd, 6 * MiB, native.SEEK_DATA), 6 * MiB);
    }
    // Inside a hole SEEK_HOLE stays put; without hole tracking the end of the file is the
    // first hole. At or past the end, ENXIO for both.
    const holes = await tracksHoles();
    assert.equal(
      await native.lseekData(fh.fd, 16 * MiB - 512, native.SEEK_HOLE),
      holes ? 16 * MiB - 512 : 16 * MiB,
    );
    assert.equal(await native.lseekData(fh.fd, 16 * MiB, native.SEEK_HOLE), -1);
    assert.equal(await native.lseekData(fh.fd, 2 ** 40, native.SEEK_DATA), -1);
  });

  it('rejects other errors like Node fs errors', async () => {
    await assert.rejects(native.lseekData(99999, 0, native.SEEK_DATA), (err: unknown) => {
      assert.ok(isNativeError(err));
      assert.equal(err.code, 'EBADF');
      assert.equal(err.syscall, 'lseek');
      assert.ok(err.errno < 0);
      assert.match(err.message, /^EBADF: /);
      return true;
    });
  });

  it('checks its arguments synchronously', () => {
    assert.throws(() => native.lseekData(fh.fd, 0, 0), { code: 'ERR_OUT_OF_RANGE' }); // SEEK_SET
    assert.throws(() => native.lseekData(fh.fd, -1, native.SEEK_DATA), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => (native.lseekData as (...a: number[]) => unknown)(fh.fd, 0), {
      code: 'ERR_MISSING_ARGS',
    });
  });
});
