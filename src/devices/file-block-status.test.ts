import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FILE_MAX_STATUS_EXTENTS, FileDevice } from './file.js';
import type { BlockStatusExtent } from '../block/device.js';
import { readFully } from '../block/io.js';
import { BlockError } from '../block/errors.js';
import { loadNative, nativeStatus, type NativeAddon, type NativeError } from '../native/addon.js';

// The addon is used here whatever the environment says; the TSBLK_NO_NATIVE=1 path runs in a
// child process below (loading is lazy).
delete process.env.TSBLK_NO_NATIVE;

const KiB = 1024;
const MiB = 1024 * KiB;

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

let dir: string;
let counter = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsblk-file-status-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const tmpPath = () => join(dir, `dev${counter++}.img`);

function realNative(): NativeAddon {
  const n = loadNative();
  assert.ok(n, `native addon not loaded: ${nativeStatus().reason}`);
  return n;
}

function nativeError(code: string): NativeError {
  return Object.assign(new Error(`${code}: injected, lseek`), { code, errno: -1, syscall: 'lseek' });
}

/** What the filesystem reports for [offset, end), walked with lseek directly: the reference. */
async function fsExtents(path: string, offset: number, end: number): Promise<BlockStatusExtent[]> {
  const n = realNative();
  const fh = await open(path, 'r');
  const out: BlockStatusExtent[] = [];
  const push = (len: number, isHole: boolean) => {
    const last = out.at(-1);
    if (last && last.hole === isHole) out[out.length - 1] = { ...last, length: last.length + len };
    else out.push(isHole ? hole(len) : data(len));
  };
  try {
    for (let pos = offset; pos < end;) {
      const d = await n.lseekData(fh.fd, pos, n.SEEK_DATA);
      const dataAt = d < 0 ? end : Math.min(end, d);
      if (dataAt > pos) push(dataAt - pos, true);
      if (dataAt >= end) break;
      const h = Math.min(end, await n.lseekData(fh.fd, dataAt, n.SEEK_HOLE));
      push(h - dataAt, false);
      pos = h;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** All of [offset, offset+length), asking again from where each answer ended. */
async function allExtents(dev: FileDevice, offset: number, length: number) {
  const out: BlockStatusExtent[] = [];
  let calls = 0;
  for (let pos = offset; pos < offset + length; calls++) {
    const got = await dev.blockStatus(pos, offset + length - pos);
    for (const e of got) {
      const last = out.at(-1);
      if (last && last.hole === e.hole && last.zero === e.zero)
        out[out.length - 1] = { ...last, length: last.length + e.length };
      else out.push({ ...e });
      pos += e.length;
    }
  }
  return { extents: out, calls };
}

async function checkZeroesRead(dev: FileDevice, offset: number, extents: readonly BlockStatusExtent[]) {
  let pos = offset;
  for (const e of extents) {
    if (e.zero) {
      const buf = Buffer.alloc(e.length, 0xee);
      await readFully(dev, pos, buf);
      assert.ok(
        buf.every((b) => b === 0),
        `zero extent at ${pos}+${e.length}`,
      );
    }
    pos += e.length;
  }
}

describe('FileDevice blockStatus with SEEK_DATA / SEEK_HOLE', () => {
  it('a sparse file (ftruncate, writes at 0 and 5 MiB) reports what the filesystem does', async () => {
    const path = tmpPath();
    const size = 16 * MiB;
    const dev = await FileDevice.open({ path, size, create: true, logicalBlockSize: 4096 });
    await dev.write(0, Buffer.alloc(4096, 1));
    await dev.write(5 * MiB, Buffer.alloc(4096, 2));
    await dev.flush();
    const reference = await fsExtents(path, 0, size);
    const got = await dev.blockStatus(0, size);
    assert.deepEqual(got, reference);
    // Whatever the filesystem's granularity, the written blocks are data...
    assert.equal(got[0]!.hole, false);
    if (reference.length > 1) {
      // ...and on a filesystem that tracks holes, the untouched middle is a hole.
      assert.deepEqual(await dev.blockStatus(MiB, 3 * MiB), [hole(3 * MiB)]);
      assert.deepEqual(await dev.blockStatus(5 * MiB, 4096), [data(4096)]);
      assert.deepEqual(await dev.blockStatus(size - 4096, 4096), [hole(4096)]);
    } else assert.deepEqual(got, [data(size)]); // a filesystem without holes: all data
    await checkZeroesRead(dev, 0, got);
    await dev.close();
  });

  it('the last block written is data; a discarded (punched) block becomes a hole', async () => {
    const path = tmpPath();
    const size = 8 * MiB;
    const dev = await FileDevice.open({ path, size, create: true });
    await dev.write(size - 4096, Buffer.alloc(4096, 3));
    assert.deepEqual(await dev.blockStatus(size - 512, 512), [data(512)]);
    await dev.write(MiB, Buffer.alloc(64 * KiB, 4));
    await dev.discard(MiB, 64 * KiB);
    const reference = await fsExtents(path, 0, size);
    assert.deepEqual(await dev.blockStatus(0, size), reference);
    if (reference.length > 1) assert.deepEqual(await dev.blockStatus(MiB, 64 * KiB), [hole(64 * KiB)]);
    await checkZeroesRead(dev, 0, reference);
    await dev.close();
  });

  it('a file truncated under the device: bytes past its end are a hole that reads as zeroes', async () => {
    const path = tmpPath();
    const dev = await FileDevice.open({ path, size: 4 * MiB, create: true });
    await dev.write(0, Buffer.alloc(8192, 5));
    await truncate(path, 4096);
    const got = await dev.blockStatus(0, 4 * MiB);
    assert.deepEqual(got, [data(4096), hole(4 * MiB - 4096)]);
    await checkZeroesRead(dev, 0, got);
    await dev.close();
  });

  it(`answers at most ${FILE_MAX_STATUS_EXTENTS} extents; asking again covers the rest`, async (t) => {
    const path = tmpPath();
    const islands = FILE_MAX_STATUS_EXTENTS + 100;
    const size = islands * 8192;
    const dev = await FileDevice.open({ path, size, create: true, logicalBlockSize: 4096 });
    for (let i = 0; i < islands; i++) await dev.write(i * 8192, Buffer.alloc(4096, 6));
    const reference = await fsExtents(path, 0, size);
    if (reference.length === 1) {
      t.diagnostic('the filesystem under tmpdir reports no holes; the cap cannot be reached');
      assert.deepEqual(await dev.blockStatus(0, size), [data(size)]);
    } else {
      const first = await dev.blockStatus(0, size);
      assert.equal(first.length, FILE_MAX_STATUS_EXTENTS);
      const { extents, calls } = await allExtents(dev, 0, size);
      assert.deepEqual(extents, reference);
      assert.ok(calls >= 2);
    }
    await dev.close();
  });

  it('native: null answers one data extent', async () => {
    const path = tmpPath();
    const dev = await FileDevice.open({ path, size: 4 * MiB, create: true, native: null });
    assert.deepEqual(await dev.blockStatus(0, 4 * MiB), [data(4 * MiB)]);
    assert.deepEqual(await dev.blockStatus(4 * MiB - 512, 512), [data(512)]);
    await dev.close();
  });

  it('TSBLK_NO_NATIVE=1 answers one data extent', () => {
    const url = new URL('./file.ts', import.meta.url).href;
    const path = tmpPath();
    const script = `import { FileDevice } from ${JSON.stringify(url)};
      const dev = await FileDevice.open({ path: ${JSON.stringify(path)}, size: 1048576, create: true });
      console.log(JSON.stringify(await dev.blockStatus(0, 1048576)));
      await dev.close();`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, TSBLK_NO_NATIVE: '1' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [data(MiB)]);
  });
});

describe('FileDevice blockStatus with a fake lseek', () => {
  /** The real addon with lseekData replaced. */
  const fake = (lseekData: NativeAddon['lseekData']): NativeAddon => ({ ...realNative(), lseekData });

  it('EINVAL / EOPNOTSUPP / ENOSYS from lseek: one data extent', async () => {
    for (const code of ['EINVAL', 'EOPNOTSUPP', 'ENOSYS']) {
      const native = fake(() => Promise.reject(nativeError(code)));
      const dev = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, native });
      assert.deepEqual(await dev.blockStatus(0, MiB), [data(MiB)], code);
      await dev.close();
    }
  });

  it('other lseek errors fail the request with their code', async () => {
    const native = fake(() => Promise.reject(nativeError('EIO')));
    const dev = await FileDevice.open({ path: tmpPath(), size: MiB, create: true, native });
    await assert.rejects(dev.blockStatus(0, MiB), (err: unknown) => BlockError.is(err) && err.code === 'EIO');
    await dev.close();
  });

  it('boundaries finer than the logical block size widen to whole blocks of data', async () => {
    // A filesystem with 1 KiB blocks under a 4096-byte device: data at [1 KiB, 2 KiB) and
    // [9 KiB, 10 KiB), holes elsewhere (the file is 16 KiB long).
    const islands = [
      [1024, 2048],
      [9 * 1024, 10 * 1024],
    ] as const;
    const native = fake((_fd, offset, whence) => {
      const size = 16 * KiB;
      if (offset >= size) return Promise.resolve(-1);
      const inData = islands.find(([a, b]) => offset >= a && offset < b);
      if (whence === realNative().SEEK_DATA) {
        if (inData) return Promise.resolve(offset);
        const next = islands.find(([a]) => a > offset);
        return Promise.resolve(next ? next[0] : -1);
      }
      return Promise.resolve(inData ? inData[1] : offset);
    });
    const dev = await FileDevice.open({
      path: tmpPath(),
      size: 16 * KiB,
      create: true,
      native,
      logicalBlockSize: 4096,
    });
    assert.deepEqual(await dev.blockStatus(0, 16 * KiB), [data(4096), hole(4096), data(4096), hole(4096)]);
    await dev.close();
  });
});
