// Interop: tsblk's NBD server (NbdServer, in this process, 127.0.0.1, a port the kernel picks)
// against QEMU 7.2's NBD client on loopback: qemu-img and qemu-io.
//
//  - qemu-img info: size, format probed as raw; qemu-img map: QEMU's view of block status
//    (data/zero) equals what the RAM device holds (1 MiB chunks);
//  - qemu-img convert: a local raw file with a pattern into the export (-n) and back out,
//    byte-identical; qemu-img compare export vs file: identical → 0, one byte changed on the
//    device → 1 at that very offset; a mostly sparse export converted to a file stays sparse
//    (QEMU reads block status and skips the holes);
//  - qemu-io: pattern write + verify read, write zeroes (-z, with unmap -u, fast -n), discard,
//    FUA write (-f), the last sector, a read past the end failing;
//  - cross-check with nbdkit's memory plugin (the reference server): the same qemu-io writes
//    on both give identical images (qemu-img compare across the two servers) and the same
//    nbdinfo --map.
//
// Under CI=true a missing peer fails; elsewhere the file is skipped with the reason.

import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlockDevice } from '../src/block/device.js';
import { RamDevice } from '../src/devices/ram.js';
import {
  expectedMap,
  KiB,
  MiB,
  parseNbdinfoMap,
  pattern,
  sha256,
  writePattern,
  type Range,
} from './nbd/layout.js';
import type { Extent } from './nbd/libnbd.js';
import { assertPeers, checkNbdPeers, describeRun, interopSkip, mustRun, runPeer } from './nbd/peers.js';
import { startNbdkitMemory, startTsblkNbd, type RunningNbd, type RunningNbdkit } from './nbd/server.js';

const peers = await checkNbdPeers(['qemu-img', 'qemu-io', 'nbdkit', 'nbdinfo']);

const DISK_SIZE = 32 * MiB;
const SPARSE_SIZE = 256 * MiB;
const IO_SIZE = 16 * MiB;
const XCHECK_SIZE = 32 * MiB;
const CHUNK = 1 * MiB;

const SPARSE_WRITES: Range[] = [
  { offset: 0, length: 4 * KiB },
  { offset: 17 * MiB + 512, length: 100 * KiB },
  { offset: 128 * MiB, length: 3 * MiB },
  { offset: SPARSE_SIZE - 4 * KiB, length: 4 * KiB },
];

/** qemu-img map --output=json → [offset, length, flags] with flags as NBD's (hole 1, zero 2), merged. */
function parseQemuMap(json: string): Extent[] {
  const rows = JSON.parse(json) as { start: number; length: number; data: boolean; zero: boolean }[];
  const out: Extent[] = [];
  for (const r of rows) {
    const flags = (r.data ? 0 : 1) | (r.zero ? 2 : 0);
    const last = out[out.length - 1];
    if (last && last[2] === flags && last[0] + last[1] === r.start) last[1] += r.length;
    else out.push([r.start, r.length, flags]);
  }
  return out;
}

async function deviceBytes(d: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  await d.read(offset, b);
  return b;
}

describe('NBD interop: QEMU (qemu-img, qemu-io) against tsblk', { skip: interopSkip(peers) }, () => {
  let srv: RunningNbd;
  let dir: string;
  const devices: BlockDevice[] = [];
  let disk: RamDevice;
  let sparse: RamDevice;
  let io: RamDevice;
  let xcheck: RamDevice;

  before(async () => {
    assertPeers(peers);
    dir = await mkdtemp(join(tmpdir(), 'tsblk-nbd-qemu-'));
    const ram = (name: string, size: number): RamDevice => {
      const d = new RamDevice({ name, size });
      devices.push(d);
      return d;
    };
    disk = ram('nbd-disk', DISK_SIZE);
    sparse = ram('nbd-sparse', SPARSE_SIZE);
    io = ram('nbd-io', IO_SIZE);
    xcheck = ram('nbd-xcheck', XCHECK_SIZE);
    await writePattern(sparse, SPARSE_WRITES);
    srv = await startTsblkNbd([
      { name: 'disk', device: disk },
      { name: 'sparse', device: sparse },
      { name: 'io', device: io },
      { name: 'xcheck', device: xcheck },
    ]);
  });

  after(async () => {
    await srv?.close();
    for (const d of devices) await d.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('qemu-img', () => {
    it('info: the size, and the format probed as raw', async () => {
      const r = await mustRun('qemu-img', ['info', '--output=json', srv.uri('disk')]);
      const info = JSON.parse(r.stdout) as { 'virtual-size': number; format: string };
      assert.equal(info['virtual-size'], DISK_SIZE);
      assert.equal(info.format, 'raw');
    });

    it('map: QEMU sees data exactly at the 1 MiB chunks written, zero holes elsewhere', async () => {
      const r = await mustRun('qemu-img', ['map', '--output=json', '-f', 'raw', srv.uri('sparse')]);
      assert.deepEqual(parseQemuMap(r.stdout), expectedMap(SPARSE_SIZE, SPARSE_WRITES, CHUNK), r.stdout);
    });

    it('convert a raw file into the export and back out: byte-identical; compare: 0, then 1 at a changed byte', async () => {
      const src = join(dir, 'src.img');
      const image = pattern(DISK_SIZE, 5);
      await writeFile(src, image);
      await mustRun('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, srv.uri('disk')]);
      assert.equal(sha256(await deviceBytes(disk, 0, DISK_SIZE)), sha256(image), 'the device holds the file');

      const back = join(dir, 'back.img');
      await mustRun('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.uri('disk'), back]);
      assert.ok((await readFile(back)).equals(image), 'converted back out: byte-identical');

      const same = await runPeer('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, srv.uri('disk')]);
      assert.equal(same.code, 0, describeRun('qemu-img compare (identical)', same));
      assert.match(same.stdout, /Images are identical/);

      // One byte changed on the device, in the middle of a sector near the end.
      const at = DISK_SIZE - 3 * 512 + 77;
      const sector = await deviceBytes(disk, at - 77, 512);
      sector[77] = sector[77]! ^ 0xff;
      await disk.write(at - 77, sector);
      const diff = await runPeer('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, srv.uri('disk')]);
      assert.equal(diff.code, 1, describeRun('qemu-img compare (one byte changed)', diff));
      // qemu-img compare names the first sector that differs
      assert.match(diff.stdout, new RegExp(`Content mismatch at offset ${at - 77}!`));
    });

    it('convert a mostly sparse export to a file: the file stays sparse and holds the data', async () => {
      const out = join(dir, 'sparse-out.img');
      srv.resetTally();
      const r = await mustRun('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.uri('sparse'), out]);
      const read = srv.tally.bytes['READ'] ?? 0;
      const st = await stat(out);
      assert.equal(st.size, SPARSE_SIZE);
      const written = SPARSE_WRITES.reduce((n, w) => n + w.length, 0);
      const dataChunks = expectedMap(SPARSE_SIZE, SPARSE_WRITES, CHUNK)
        .filter((e) => e[2] === 0)
        .reduce((n, e) => n + e[1], 0);
      const allocated = st.blocks * 512;
      console.log(
        `# qemu-img convert ${SPARSE_SIZE / MiB} MiB export (${written} B written): ${r.ms.toFixed(0)} ms, ${read} B read, ${allocated} B allocated`,
      );
      // QEMU asks for block status and reads only the data chunks (without it: all 256 MiB,
      // and the output would still be sparse because qemu-img also skips zero blocks it reads).
      assert.ok(srv.tally.count['BLOCK_STATUS'], 'qemu-img asked for block status');
      assert.ok(read <= dataChunks, `qemu-img read ${read} B, more than the ${dataChunks} B of data chunks`);
      assert.ok(allocated >= written, `allocated ${allocated} < ${written} written`);
      assert.ok(allocated <= dataChunks, `allocated ${allocated} > ${dataChunks} in data chunks: not sparse`);
      const fh = await open(out, 'r');
      try {
        for (const w of SPARSE_WRITES) {
          const b = Buffer.alloc(w.length);
          await fh.read(b, 0, w.length, w.offset);
          assert.ok(b.equals(pattern(w.length, w.offset)), `data at ${w.offset}`);
        }
      } finally {
        await fh.close();
      }
    });
  });

  describe('qemu-io', () => {
    const qemuIo = (...cmds: string[]) =>
      runPeer('qemu-io', ['-f', 'raw', srv.uri('io'), ...cmds.flatMap((c) => ['-c', c])]);

    it('write -P 0xab then read -P 0xab: the pattern verifies, and the device holds it', async () => {
      const r = await qemuIo('write -P 0xab 0 64k', 'read -P 0xab 0 64k');
      assert.equal(r.code, 0, describeRun('qemu-io', r));
      assert.match(r.stdout, /wrote 65536\/65536 bytes at offset 0\n/);
      assert.match(r.stdout, /read 65536\/65536 bytes at offset 0\n/);
      assert.doesNotMatch(r.stdout, /Pattern verification failed/);
      assert.ok((await deviceBytes(io, 0, 64 * KiB)).every((b) => b === 0xab));
    });

    it('write -z, write -z -u (unmap), write -z -u -n (fast zero): zeroes read back; unmapped becomes a hole', async () => {
      const r = await qemuIo(
        'write -P 0xcd 1M 3M',
        'write -z 1M 1M',
        'write -z -u 2M 1M',
        'write -z -u -n 3M 1M',
        'read -P 0 1M 3M',
      );
      assert.equal(r.code, 0, describeRun('qemu-io', r));
      assert.doesNotMatch(r.stdout + r.stderr, /failed/);
      assert.ok((await deviceBytes(io, 1 * MiB, 3 * MiB)).every((b) => b === 0));
      const st = await io.blockStatus(2 * MiB, MiB);
      assert.deepEqual(
        st,
        [{ length: MiB, hole: true, zero: true }],
        'write -z -u (NBD zero without NO_HOLE) unmaps',
      );
    });

    it('write -z -n without -u (FAST_ZERO with NO_HOLE): refused with ENOTSUP, nothing written', async () => {
      // tsblk's choice (src/export/nbd/transmission.ts): zeroing that must keep blocks
      // allocated is not promised to be fast, so FAST_ZERO fails at once (the spec's ENOTSUP)
      // and the client falls back to writing zeroes itself.
      const r = await qemuIo('write -P 0x9a 7M 1M', 'write -z -n 7M 1M');
      assert.equal(r.code, 1, describeRun('qemu-io', r));
      assert.match(r.stdout + r.stderr, /write failed: Operation not supported/);
      assert.ok(
        (await deviceBytes(io, 7 * MiB, MiB)).every((b) => b === 0x9a),
        'the data is untouched',
      );
    });

    it('discard: the range reads back as zeroes (RAM discard zeroes data)', async () => {
      const r = await qemuIo('write -P 0x21 5M 1M', 'discard 5M 1M', 'read -P 0 5M 1M');
      assert.equal(r.code, 0, describeRun('qemu-io', r));
      assert.match(r.stdout, /discard 1048576\/1048576 bytes at offset 5242880\n/);
      assert.ok((await deviceBytes(io, 5 * MiB, MiB)).every((b) => b === 0));
    });

    it('a FUA write (write -f) and the last sector', async () => {
      const last = IO_SIZE - 512;
      const r = await qemuIo(
        'write -f -P 0x33 6M 4k',
        `write -P 0x5e ${last} 512`,
        `read -P 0x5e ${last} 512`,
        'read -P 0x33 6M 4k',
      );
      assert.equal(r.code, 0, describeRun('qemu-io', r));
      assert.doesNotMatch(r.stdout, /Pattern verification failed/);
      assert.ok((await deviceBytes(io, 6 * MiB, 4 * KiB)).every((b) => b === 0x33));
      assert.ok((await deviceBytes(io, last, 512)).every((b) => b === 0x5e));
    });

    it('a read past the end fails with an error and exit status 1', async () => {
      const r = await qemuIo(`read ${IO_SIZE} 512`);
      assert.equal(r.code, 1, describeRun('qemu-io', r));
      assert.match(r.stdout + r.stderr, /read failed: Input\/output error/);
    });
  });

  describe('cross-check with nbdkit memory', () => {
    let ref: RunningNbdkit;
    before(async () => {
      ref = await startNbdkitMemory(String(XCHECK_SIZE));
    });
    after(async () => {
      await ref?.close();
    });

    it('the same qemu-io writes on both servers: identical images, the same nbdinfo --map', async () => {
      // Whole MiB-aligned ranges, so nbdkit's 32 KiB pages and tsblk's 1 MiB chunks agree.
      const cmds = [
        'write -P 0x10 0 1M',
        'write -P 0x20 4M 2M',
        'write -P 0x30 8M 1M',
        'write -z -u 8M 1M',
        'write -P 0x40 12M 1M',
        'discard 12M 1M',
        `write -P 0x50 ${XCHECK_SIZE - MiB} 1M`,
      ].flatMap((c) => ['-c', c]);
      await mustRun('qemu-io', ['-f', 'raw', srv.uri('xcheck'), ...cmds]);
      await mustRun('qemu-io', ['-f', 'raw', ref.uri(), ...cmds]);
      const cmp = await runPeer('qemu-img', [
        'compare',
        '-f',
        'raw',
        '-F',
        'raw',
        ref.uri(),
        srv.uri('xcheck'),
      ]);
      assert.equal(cmp.code, 0, describeRun('qemu-img compare nbdkit tsblk', cmp));
      const [a, b] = await Promise.all([
        mustRun('nbdinfo', ['--map', '--json', ref.uri()]),
        mustRun('nbdinfo', ['--map', '--json', srv.uri('xcheck')]),
      ]);
      assert.deepEqual(
        parseNbdinfoMap(b.stdout),
        parseNbdinfoMap(a.stdout),
        `nbdkit:\n${a.stdout}\ntsblk:\n${b.stdout}`,
      );
      assert.deepEqual(
        parseNbdinfoMap(b.stdout),
        expectedMap(
          XCHECK_SIZE,
          [
            { offset: 0, length: MiB },
            { offset: 4 * MiB, length: 2 * MiB },
            { offset: XCHECK_SIZE - MiB, length: MiB },
          ],
          CHUNK,
        ),
      );
    });
  });
});
