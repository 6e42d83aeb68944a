// The addon's io_uring part (native/uring.c) without a ublk kernel: the queue thread, its
// command hand-over, completion batches and stop, exercised with URING_CMDs on a plain file
// (which io_uring fails with -EOPNOTSUPP per command); the control path's errors. The ublk
// protocol over a real ublk_drv is tested in the guest (test/interop-ublk.test.ts).
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { UblkExport } from '../export/ublk/device.js';
import { UblkError } from '../export/ublk/errors.js';
import { RamDevice } from '../devices/ram.js';
import { loadUblkNative, type UblkNative } from './addon.js';

delete process.env.TSBLK_NO_NATIVE;
const EOPNOTSUPP = -95;
const FETCH_REQ = 0xc0107520;

let native: UblkNative;
let fh: FileHandle;

before(async () => {
  const r = loadUblkNative();
  assert.ok(r.native, `io_uring part not loaded: ${r.native ? '' : r.reason}`);
  native = r.native;
  fh = await open(fileURLToPath(import.meta.url), 'r');
});
after(() => fh.close());

function cmds(tags: number[], cmdOp = FETCH_REQ): Buffer {
  const b = Buffer.alloc(tags.length * native.QUEUE_CMD_BYTES);
  tags.forEach((tag, i) => {
    b.writeUInt32LE(cmdOp, i * native.QUEUE_CMD_BYTES);
    b.writeUInt16LE(tag, i * native.QUEUE_CMD_BYTES + 4);
  });
  return b;
}

describe('queue rings', () => {
  it('hands commands to the queue thread and every completion back, by tag, then stops', async () => {
    const seen = new Map<number, number>();
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const depth = 32;
    const h = native.queueOpen(fh.fd, 0, depth, 0, (batch) => {
      assert.equal(batch.length % native.QUEUE_CQE_BYTES, 0);
      for (let at = 0; at < batch.length; at += native.QUEUE_CQE_BYTES) {
        seen.set(batch.readUInt16LE(at), batch.readInt32LE(at + 4));
        assert.equal(batch.readUInt32LE(at + 8), 0, 'no descriptor for a failed command');
      }
      if (seen.size === depth) done();
    });
    // Two submissions: the second arrives while the thread sleeps in io_uring_enter.
    native.queueSubmit(h, cmds([...Array(16).keys()]));
    await new Promise((r) => setImmediate(r));
    native.queueSubmit(h, cmds([...Array(16).keys()].map((t) => t + 16)));
    await all;
    native.queueStop(h);
    native.queueStop(h); // a second stop is a no-op
    assert.deepEqual(
      [...seen.keys()].sort((a, b) => a - b),
      [...Array(depth).keys()],
    );
    for (const res of seen.values()) assert.equal(res, EOPNOTSUPP);
    assert.throws(() => native.queueSubmit(h, cmds([0])), { code: 'ERR_INVALID_STATE' });
  });

  it('refuses a tag at or above the depth, a short command and bad arguments', () => {
    const h = native.queueOpen(fh.fd, 1, 4, 0, () => undefined);
    try {
      assert.throws(() => native.queueSubmit(h, cmds([4])), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => native.queueSubmit(h, Buffer.alloc(native.QUEUE_CMD_BYTES - 1)), {
        code: 'ERR_OUT_OF_RANGE',
      });
    } finally {
      native.queueStop(h);
    }
    assert.throws(() => native.queueOpen(fh.fd, 0, 0, 0, () => undefined), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native.queueOpen(fh.fd, 0, 4097, 0, () => undefined), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native.queueOpen(fh.fd, 4096, 1, 0, () => undefined), { code: 'ERR_OUT_OF_RANGE' });
    // /dev/null cannot be mapped as ublk descriptors: the mmap error, no thread left behind
    const fd = openSync('/dev/null', 'r');
    try {
      assert.throws(() => native.queueOpen(fd, 1, 4, 4096, () => undefined), {
        code: 'ENODEV',
        syscall: 'mmap io descriptors',
      });
    } finally {
      closeSync(fd);
    }
  });
});

describe('queue data copies (copyBuffer)', () => {
  it("writes a tag's buffer at its offset before the command (copy_len), and nothing without it", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsblk-uring-'));
    const file = join(dir, 'data');
    const out = await open(file, 'w+');
    try {
      const depth = 4;
      const perTag = 4096;
      const base = 8192;
      const stride = 16384;
      const copy = Buffer.alloc(depth * perTag);
      for (let i = 0; i < copy.length; i++) copy[i] = (i * 7 + 3) & 0xff;
      const completed = new Map<number, number>();
      let wake!: () => void;
      const two = new Promise<void>((resolve) => (wake = resolve));
      const h = native.queueOpen(
        out.fd,
        0,
        depth,
        0,
        (batch) => {
          for (let at = 0; at < batch.length; at += native.QUEUE_CQE_BYTES)
            completed.set(batch.readUInt16LE(at), batch.readInt32LE(at + 4));
          if (completed.size === 2) wake();
        },
        copy,
        perTag,
        base,
        stride,
        0,
      );
      const c = cmds([2, 1]);
      c.writeUInt32LE(3000, 12); // tag 2: copy 3000 bytes out first
      native.queueSubmit(h, c); // tag 1: copy_len 0
      await two;
      native.queueStop(h);
      // The URING_CMD itself fails on a plain file; the copy before it is what is checked.
      assert.equal(completed.get(2), EOPNOTSUPP);
      const { size } = await out.stat();
      assert.equal(size, base + 2 * stride + 3000, 'only tag 2 wrote, exactly copy_len bytes');
      const got = Buffer.alloc(3000);
      await out.read(got, 0, 3000, base + 2 * stride);
      assert.deepEqual(got, copy.subarray(2 * perTag, 2 * perTag + 3000));
    } finally {
      await out.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a copy buffer smaller than depth x bytesPerTag, a stride below it, and missing arguments', () => {
    const cb = () => undefined;
    assert.throws(() => native.queueOpen(fh.fd, 0, 4, 0, cb, Buffer.alloc(4 * 4096 - 1), 4096, 0, 4096, 0), {
      code: 'ERR_OUT_OF_RANGE',
    });
    assert.throws(() => native.queueOpen(fh.fd, 0, 4, 0, cb, Buffer.alloc(4 * 4096), 4096, 0, 4095, 0), {
      code: 'ERR_OUT_OF_RANGE',
    });
    assert.throws(() => native.queueOpen(fh.fd, 0, 4, 0, cb, Buffer.alloc(4 * 4096), 4096), {
      code: 'ERR_MISSING_ARGS',
    });
    // null: no copies, as without the argument
    native.queueStop(native.queueOpen(fh.fd, 0, 4, 0, cb, null));
  });
});

describe('control commands', () => {
  it('check the command buffer', () => {
    assert.throws(() => native.ublkControl(0x80207513, Buffer.alloc(31), null), { code: 'ERR_OUT_OF_RANGE' });
  });

  if (existsSync('/dev/ublk-control')) {
    it('GET_FEATURES answers with the feature flags (/dev/ublk-control is present)', async () => {
      const out = Buffer.alloc(8);
      const cmd = Buffer.alloc(32);
      cmd.writeUInt16LE(0xffff, 4);
      assert.equal(await native.ublkControl(0x80207513, cmd, out), 0);
      assert.notEqual(out.readBigUInt64LE(0), 0n);
    });
  } else {
    it('fail with ENOENT naming /dev/ublk-control when ublk_drv is not loaded', async () => {
      await assert.rejects(native.ublkControl(0x80207513, Buffer.alloc(32), Buffer.alloc(8)), {
        code: 'ENOENT',
        syscall: 'open /dev/ublk-control',
      });
    });

    it('UblkExport.start says to load ublk_drv, and creates nothing', async () => {
      const dev = new RamDevice({ size: 1 << 20 });
      await assert.rejects(UblkExport.start(dev), (err: unknown) => {
        assert.ok(err instanceof UblkError);
        assert.equal(err.code, 'ENOTSUP');
        assert.match(err.message, /modprobe ublk_drv/);
        return true;
      });
    });
  }
});
