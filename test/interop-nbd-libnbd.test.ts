// Interop: tsblk's NBD server (NbdServer, in this process, 127.0.0.1, a port the kernel picks)
// against libnbd 1.14's clients on loopback: nbdinfo, nbdcopy and the Python binding nbdsh
// runs (test/nbd/libnbd-ops.py performs a list of operations and reports each result; the
// assertions are here).
//
//  - nbdinfo --list: every export with its description and read-only flag; --json: size,
//    block size constraints (512 / 4096 / 32 MiB), every can_* flag as the export advertises
//    it, structured replies; --map: base:allocation of a sparse RAM export (holes and data
//    exactly at the 1 MiB chunks written) and of a sparse file (the filesystem's blocks).
//  - nbdcopy: file → export, export → file, export → export (sha256 of the whole image),
//    and a 1 GiB sparse RAM export holding 10 MiB copied to null: and to a sparse file fast,
//    because block status lets it skip the holes.
//  - libnbd: structured replies, block status (also REQ_ONE), reads across data and holes
//    (the reply chunks tile the request; DF gives one data chunk), 32 MiB reads (the largest
//    payload), trim, write zeroes with and
//    without NO_HOLE, FAST_ZERO, cache, flush, FUA, errors with strict mode off (so the
//    request reaches the server): past the end (read/trim/cache/block status EINVAL, write
//    and write zeroes ENOSPC: the specification's SHOULDs, which nbdkit follows), misaligned
//    EINVAL, writes to a read-only export EPERM; four connections (multi-conn); a client
//    that does not ask for structured replies.
//
// The server counts what it did (test/nbd/server.ts `tally`), so a test can prove a client
// skipped the holes (bytes READ ≤ the data chunks) instead of just finishing fast.
// Timing note: libnbd 1.14 sends NBD_OPT_LIST_META_CONTEXT's last bytes with MSG_MORE and
// then waits, so each export nbdinfo inspects costs ~200 ms of kernel corking (nbdkit too);
// hence one `nbdinfo --list` run, with --no-content.
//
// Under CI=true a missing peer fails; elsewhere the file is skipped with the reason.

import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileDevice } from '../src/devices/file.js';
import { RamDevice } from '../src/devices/ram.js';
import type { BlockDevice } from '../src/block/device.js';
import { errResult, libnbd, okResult } from './nbd/libnbd.js';
import {
  expectedImage,
  expectedMap,
  GiB,
  KiB,
  MiB,
  parseNbdinfoMap,
  pattern,
  sha256,
  writePattern,
  type Range,
} from './nbd/layout.js';
import { assertPeers, checkNbdPeers, interopSkip, mustRun } from './nbd/peers.js';
import { startTsblkNbd, type RunningNbd } from './nbd/server.js';

const peers = await checkNbdPeers(['nbdinfo', 'nbdcopy', 'python3-libnbd']);

const RAM_SIZE = 64 * MiB;
const RO_SIZE = 16 * MiB;
const FILE_SIZE = 32 * MiB;
const COPY_SIZE = 16 * MiB;
const BIG_SIZE = 1 * GiB;
const CHUNK = 1 * MiB; // SparseStore's chunk: RamDevice's allocation unit
const NBD_MAX_PAYLOAD = 32 * MiB;

/** Written into the 'map' export before serving: aligned chunks, a partial chunk, a write across a chunk boundary, the last sector. */
const MAP_WRITES: Range[] = [
  { offset: 0, length: 64 * KiB },
  { offset: 3 * MiB + 4 * KiB, length: 8 * KiB },
  { offset: 10 * MiB, length: 2 * MiB },
  { offset: 20 * MiB - 512, length: 1024 },
  { offset: RAM_SIZE - 512, length: 512 },
];

/** 40 scattered 256 KiB writes = 10 MiB on the 1 GiB export (one per 25 MiB stride, shifted; some cross a chunk boundary). */
const BIG_WRITES: Range[] = Array.from({ length: 40 }, (_, i) => ({
  offset: i * 25 * MiB + ((i * 7) % 16) * 64 * KiB,
  length: 256 * KiB,
}));

describe('NBD interop: libnbd (nbdinfo, nbdcopy, nbdsh) against tsblk', { skip: interopSkip(peers) }, () => {
  let srv: RunningNbd;
  let dir: string;
  const devices: BlockDevice[] = [];
  let mapDev: RamDevice;
  let rwDev: RamDevice;
  let roDev: RamDevice;
  let fileDev: FileDevice;
  let copyA: RamDevice;
  let copyB: RamDevice;
  let bigDev: RamDevice;
  const FILE_WRITES: Range[] = [
    { offset: 1 * MiB, length: 4 * KiB },
    { offset: 8 * MiB + 4 * KiB, length: 64 * KiB },
    { offset: FILE_SIZE - 4 * KiB, length: 4 * KiB },
  ];

  before(async () => {
    assertPeers(peers);
    dir = await mkdtemp(join(tmpdir(), 'tsblk-nbd-libnbd-'));
    const ram = (name: string, size: number, readOnly = false): RamDevice => {
      const d = new RamDevice({ name, size, readOnly });
      devices.push(d);
      return d;
    };
    mapDev = ram('nbd-map', RAM_SIZE);
    rwDev = ram('nbd-rw', RAM_SIZE);
    copyA = ram('nbd-copy-a', COPY_SIZE);
    copyB = ram('nbd-copy-b', COPY_SIZE);
    bigDev = ram('nbd-big', BIG_SIZE);
    // A read-only export over a device holding a pattern (written before it is served).
    roDev = ram('nbd-ro', RO_SIZE);
    await writePattern(roDev, [{ offset: 0, length: RO_SIZE }]);
    fileDev = await FileDevice.open({ path: join(dir, 'export.img'), size: FILE_SIZE, create: true });
    devices.push(fileDev);
    await writePattern(mapDev, MAP_WRITES);
    await writePattern(fileDev, FILE_WRITES);
    await fileDev.flush();
    await writePattern(bigDev, BIG_WRITES);
    srv = await startTsblkNbd([
      { name: 'map', description: 'sparse RAM disk for the map', device: mapDev },
      { name: 'rw', description: 'RAM disk for libnbd', device: rwDev },
      { name: 'ro', description: 'read-only pattern', device: roDev, readOnly: true },
      { name: 'file', description: 'sparse file', device: fileDev },
      { name: 'copy-a', device: copyA },
      { name: 'copy-b', device: copyB },
      { name: 'big', description: '1 GiB, 10 MiB written', device: bigDev },
    ]);
  });

  after(async () => {
    await srv?.close();
    for (const d of devices) await d.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('nbdinfo', () => {
    it('--list shows every export with its description; the read-only one says so', async () => {
      const r = await mustRun('nbdinfo', ['--list', '--json', '--no-content', srv.uri()]);
      const info = JSON.parse(r.stdout) as {
        protocol: string;
        exports: {
          'export-name': string;
          description?: string;
          is_read_only: boolean;
          'export-size': number;
        }[];
      };
      assert.equal(info.protocol, 'newstyle-fixed');
      const byName = new Map(info.exports.map((e) => [e['export-name'], e]));
      assert.deepEqual(
        [...byName.keys()].sort(),
        ['big', 'copy-a', 'copy-b', 'file', 'map', 'ro', 'rw'],
        r.stdout,
      );
      assert.equal(byName.get('map')?.description, 'sparse RAM disk for the map');
      assert.equal(byName.get('ro')?.description, 'read-only pattern');
      assert.equal(byName.get('copy-a')?.description, undefined, 'no description configured → none sent');
      assert.equal(byName.get('ro')?.is_read_only, true);
      assert.equal(byName.get('rw')?.is_read_only, false);
      assert.equal(byName.get('ro')?.['export-size'], RO_SIZE);
      assert.equal(byName.get('big')?.['export-size'], BIG_SIZE);
    });

    it('--json: size, block sizes and every can_* flag as a writable RAM export advertises them', async () => {
      const r = await mustRun('nbdinfo', ['--json', '--no-content', srv.uri('rw')]);
      const info = JSON.parse(r.stdout) as {
        structured: boolean;
        TLS: boolean;
        exports: Record<string, unknown>[];
      };
      assert.equal(info.structured, true, 'structured replies negotiated');
      assert.equal(info.TLS, false);
      const e = info.exports[0]!;
      assert.equal(e['export-name'], 'rw');
      assert.equal(e['export-size'], RAM_SIZE);
      assert.equal(e['block_size_minimum'], 512);
      assert.equal(e['block_size_preferred'], 4096);
      assert.equal(e['block_size_maximum'], NBD_MAX_PAYLOAD);
      assert.deepEqual(e['contexts'], ['base:allocation']);
      for (const flag of [
        'can_trim',
        'can_zero',
        'can_fast_zero',
        'can_flush',
        'can_fua',
        'can_multi_conn',
        'can_cache',
        'can_df',
      ]) {
        assert.equal(e[flag], true, `${flag} (${r.stdout})`);
      }
      assert.equal(e['is_read_only'], false);
      assert.equal(e['is_rotational'], false);
    });

    it('--json on the read-only export: is_read_only, no trim or zero', async () => {
      const r = await mustRun('nbdinfo', ['--json', '--no-content', srv.uri('ro')]);
      const e = (JSON.parse(r.stdout) as { exports: Record<string, unknown>[] }).exports[0]!;
      assert.equal(e['is_read_only'], true);
      assert.equal(e['can_trim'], false);
      assert.equal(e['can_zero'], false);
      assert.equal(e['can_fast_zero'], false);
      assert.equal(e['can_flush'], true);
      assert.equal(e['export-size'], RO_SIZE);
    });

    it('--map on a sparse RAM export: data exactly at the 1 MiB chunks written, holes elsewhere', async () => {
      const r = await mustRun('nbdinfo', ['--map', '--json', srv.uri('map')]);
      const want = expectedMap(RAM_SIZE, MAP_WRITES, CHUNK);
      assert.deepEqual(parseNbdinfoMap(r.stdout), want, r.stdout);
      // The shape, for a reader: 7 data chunks in 5 extents, holes between.
      assert.deepEqual(
        want.map((e) => [e[0] / MiB, e[1] / MiB, e[2]]),
        [
          [0, 1, 0],
          [1, 2, 3],
          [3, 1, 0],
          [4, 6, 3],
          [10, 2, 0],
          [12, 7, 3],
          [19, 2, 0],
          [21, 42, 3],
          [63, 1, 0],
        ],
      );
      const totals = await mustRun('nbdinfo', ['--map', '--totals', srv.uri('map')]);
      assert.match(totals.stdout, new RegExp(`^\\s*${7 * MiB}\\s+10\\.9%\\s+0 data$`, 'm'), totals.stdout);
    });

    it('--map on a sparse file export: data at the filesystem blocks written, holes elsewhere', async () => {
      const blk = (await stat(join(dir, 'export.img'))).blksize;
      const r = await mustRun('nbdinfo', ['--map', '--json', srv.uri('file')]);
      assert.deepEqual(parseNbdinfoMap(r.stdout), expectedMap(FILE_SIZE, FILE_WRITES, blk), r.stdout);
    });
  });

  describe('nbdcopy', () => {
    it('local file → export → local file, and export → export: the same sha256 everywhere', async () => {
      const src = join(dir, 'copy-src.img');
      const image = pattern(COPY_SIZE, 77);
      await writeFile(src, image);
      await mustRun('nbdcopy', [src, srv.uri('copy-a')]);
      const a = Buffer.alloc(COPY_SIZE);
      await copyA.read(0, a);
      assert.equal(sha256(a), sha256(image), 'file → export');

      const out = join(dir, 'copy-out.img');
      await mustRun('nbdcopy', [srv.uri('copy-a'), out]);
      assert.equal(sha256(await readFile(out)), sha256(image), 'export → file');

      await mustRun('nbdcopy', [srv.uri('copy-a'), srv.uri('copy-b')]);
      const b = Buffer.alloc(COPY_SIZE);
      await copyB.read(0, b);
      assert.equal(sha256(b), sha256(image), 'export → export');
    });

    it('a 1 GiB sparse export with 10 MiB written: to null: and to a sparse file in well under a second', async () => {
      // Block status lets nbdcopy read only the data chunks (under 80 MiB), not 1 GiB.
      const dataChunks = expectedMap(BIG_SIZE, BIG_WRITES, CHUNK).filter((e) => e[2] === 0);
      const dataBytes = dataChunks.reduce((n, e) => n + e[1], 0);
      srv.resetTally();
      const toNull = await mustRun('nbdcopy', [srv.uri('big'), 'null:']);
      const read = srv.tally.bytes['READ'] ?? 0;
      const out = join(dir, 'big-out.img');
      const toFile = await mustRun('nbdcopy', [srv.uri('big'), out]);
      console.log(
        `# nbdcopy 1 GiB export (10 MiB data) → null: ${toNull.ms.toFixed(0)} ms (${read} B read), → sparse file ${toFile.ms.toFixed(0)} ms`,
      );
      assert.ok(
        read <= dataBytes,
        `nbdcopy → null: read ${read} B, more than the ${dataBytes} B of data chunks`,
      );
      // Wall time of the whole nbdcopy process (spawn, handshake, block status, reads): moving
      // 1 GiB through this server takes ~1.5 s here, skipping the holes ~tens of ms.
      assert.ok(toNull.ms < 1000, `nbdcopy → null: took ${toNull.ms.toFixed(0)} ms`);
      assert.ok(toFile.ms < 1000, `nbdcopy → file took ${toFile.ms.toFixed(0)} ms`);

      const st = await stat(out);
      assert.equal(st.size, BIG_SIZE);
      const allocated = st.blocks * 512;
      assert.ok(allocated >= 10 * MiB, `allocated ${allocated}: the 10 MiB written must be there`);
      assert.ok(allocated <= dataBytes, `allocated ${allocated} > ${dataBytes} of data chunks: not sparse`);
      await assertFileImage(out, BIG_SIZE, BIG_WRITES);
    });
  });

  describe('libnbd (nbdsh)', () => {
    it('negotiates structured replies; flags and block sizes as advertised', async () => {
      const rep = await libnbd({ uri: srv.uri('rw') });
      const h = rep.handles[0]!;
      assert.equal(h.structured, true);
      assert.equal(h.size, RAM_SIZE);
      assert.equal(h.readOnly, false);
      assert.equal(h.meta, true, 'base:allocation active');
      assert.deepEqual(h.can, {
        trim: true,
        zero: true,
        fast_zero: true,
        flush: true,
        fua: true,
        multi_conn: true,
        cache: true,
        df: true,
      });
      assert.deepEqual(h.block, { minimum: 512, preferred: 4096, maximum: NBD_MAX_PAYLOAD });
    });

    it('block status: base:allocation extents match what was written; REQ_ONE gives one extent', async () => {
      const rep = await libnbd({
        uri: srv.uri('map'),
        ops: [
          { op: 'status', offset: 0, length: RAM_SIZE },
          { op: 'status', offset: 1 * MiB, length: 8 * MiB, flags: ['REQ_ONE'], once: true },
          { op: 'status', offset: 10 * MiB + 512, length: 4 * MiB, once: true },
        ],
      });
      assert.deepEqual(okResult(rep, 0).extents, expectedMap(RAM_SIZE, MAP_WRITES, CHUNK));
      // REQ_ONE: exactly one extent, starting at the offset, no longer than asked.
      assert.deepEqual(okResult(rep, 1).extents, [[1 * MiB, 2 * MiB, 3]]);
      // From the middle of a data chunk: the extents start at the offset asked.
      const mid = okResult(rep, 2).extents!;
      assert.deepEqual(mid[0], [10 * MiB + 512, 2 * MiB - 512, 0], JSON.stringify(mid));
      assert.equal(mid[1]?.[2], 3, JSON.stringify(mid));
    });

    it('reads across data and holes, with and without DF, and of the largest payload (32 MiB), are exact', async () => {
      // [9 MiB, 13 MiB) holds a hole chunk, two data chunks and a hole chunk: the server may
      // answer with OFFSET_HOLE chunks, unless DF asks for the data in one chunk.
      const from = 9 * MiB;
      const rep = await libnbd({
        uri: srv.uri('map'),
        ops: [
          { op: 'pread_structured', offset: from, length: 4 * MiB },
          { op: 'pread_structured', offset: from, length: 4 * MiB, flags: ['DF'] },
          { op: 'pread', offset: 0, length: NBD_MAX_PAYLOAD },
          { op: 'pread', offset: RAM_SIZE - NBD_MAX_PAYLOAD, length: NBD_MAX_PAYLOAD },
        ],
      });
      const whole = expectedImage(RAM_SIZE, MAP_WRITES);
      const want = (off: number, len: number) => sha256(whole.subarray(off, off + len));
      const plain = okResult(rep, 0);
      assert.equal(plain.sha256, want(from, 4 * MiB));
      // chunks tile the request, and no hole chunk covers a written byte
      let pos = from;
      for (const [kind, off, len] of plain.chunks!) {
        assert.equal(off, pos, JSON.stringify(plain.chunks));
        if (kind === 'hole')
          assert.ok(
            whole.subarray(off, off + len).every((b) => b === 0),
            `hole at ${off}`,
          );
        pos += len;
      }
      assert.equal(pos, from + 4 * MiB);
      const df = okResult(rep, 1);
      assert.equal(df.sha256, want(from, 4 * MiB));
      assert.deepEqual(df.chunks, [['data', from, 4 * MiB]], 'DF: one data chunk');
      assert.equal(okResult(rep, 2).sha256, want(0, NBD_MAX_PAYLOAD));
      assert.equal(okResult(rep, 3).sha256, want(RAM_SIZE - NBD_MAX_PAYLOAD, NBD_MAX_PAYLOAD));
    });

    it('trim: the range reads back as zeroes and becomes a hole', async () => {
      const off = 2 * MiB;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        ops: [
          { op: 'pwrite', offset: off, length: MiB, byte: 0xab },
          { op: 'status', offset: off, length: MiB },
          { op: 'trim', offset: off, length: MiB },
          { op: 'pread', offset: off, length: MiB },
          { op: 'status', offset: off, length: MiB },
        ],
      });
      assert.deepEqual(okResult(rep, 1).extents, [[off, MiB, 0]], 'written: data');
      okResult(rep, 2);
      assert.equal(okResult(rep, 3).byte, 0);
      assert.deepEqual(okResult(rep, 4).extents, [[off, MiB, 3]], 'trimmed: hole');
    });

    it('write zeroes: without NO_HOLE the chunk becomes a hole, with NO_HOLE it stays allocated', async () => {
      const a = 4 * MiB;
      const b = 5 * MiB;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        ops: [
          { op: 'pwrite', offset: a, length: 2 * MiB, byte: 0xcd },
          { op: 'zero', offset: a, length: MiB },
          { op: 'zero', offset: b, length: MiB, flags: ['NO_HOLE'] },
          { op: 'pread', offset: a, length: 2 * MiB },
          { op: 'status', offset: a, length: MiB },
          { op: 'status', offset: b, length: MiB },
        ],
      });
      okResult(rep, 1);
      okResult(rep, 2);
      assert.equal(okResult(rep, 3).byte, 0, 'both ranges read as zeroes');
      assert.deepEqual(okResult(rep, 4).extents, [[a, MiB, 3]], 'zeroed and unmapped: hole');
      const kept = okResult(rep, 5).extents!;
      assert.equal(kept.length, 1, JSON.stringify(kept));
      assert.equal(kept[0]![2] & 1, 0, `NO_HOLE: not a hole (${JSON.stringify(kept)})`);
    });

    it('write zeroes with FAST_ZERO: succeeds where zeroing unmaps; with NO_HOLE too it is refused (ENOTSUP) untouched', async () => {
      const off = 6 * MiB;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        ops: [
          { op: 'pwrite', offset: off, length: 2 * MiB, byte: 0x11 },
          { op: 'zero', offset: off, length: MiB, flags: ['FAST_ZERO'] },
          { op: 'pread', offset: off, length: MiB },
          // tsblk's choice (transmission.ts): zeroing that keeps blocks allocated is not promised fast
          { op: 'zero', offset: off + MiB, length: MiB, flags: ['FAST_ZERO', 'NO_HOLE'] },
          { op: 'pread', offset: off + MiB, length: MiB },
        ],
      });
      okResult(rep, 1);
      assert.equal(okResult(rep, 2).byte, 0);
      assert.match(errResult(rep, 3).errno, /^(ENOTSUP|EOPNOTSUPP)$/);
      assert.equal(okResult(rep, 4).byte, 0x11, 'a refused fast zero writes nothing');
    });

    it('cache, flush and a FUA write succeed; the FUA write and the last sector read back', async () => {
      const last = RAM_SIZE - 512;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        ops: [
          { op: 'cache', offset: 0, length: 4 * MiB },
          { op: 'pwrite', offset: 8 * MiB, length: 64 * KiB, byte: 0x5a, flags: ['FUA'] },
          { op: 'flush' },
          { op: 'pread', offset: 8 * MiB, length: 64 * KiB },
          { op: 'pwrite', offset: last, length: 512, byte: 0xee, flags: ['FUA'] },
          { op: 'pread', offset: last, length: 512 },
          { op: 'cache', offset: last, length: 512 },
        ],
      });
      for (const i of [0, 1, 2, 4, 6]) okResult(rep, i);
      assert.equal(okResult(rep, 3).byte, 0x5a);
      assert.equal(okResult(rep, 5).byte, 0xee);
      const dev = Buffer.alloc(512);
      await rwDev.read(last, dev);
      assert.ok(
        dev.every((x) => x === 0xee),
        'the device holds the FUA write',
      );
    });

    it('errors reach the client as the specification says (strict mode off)', async () => {
      const rep = await libnbd({
        uri: srv.uri('rw'),
        strict: 0,
        ops: [
          { op: 'pread', offset: RAM_SIZE, length: 512 },
          { op: 'pread', offset: RAM_SIZE - 512, length: 1024 },
          { op: 'trim', offset: RAM_SIZE - 512, length: 1024 },
          { op: 'cache', offset: RAM_SIZE, length: 512 },
          { op: 'status', offset: RAM_SIZE, length: 512, once: true },
          { op: 'pwrite', offset: RAM_SIZE - 512, length: 1024, byte: 1 },
          { op: 'zero', offset: RAM_SIZE - 512, length: 1024 },
          { op: 'pread', offset: 100, length: 512 },
          { op: 'pwrite', offset: 512, length: 100, byte: 1 },
          // the connection still works after all of that
          { op: 'pread', offset: 0, length: 512 },
        ],
      });
      const want = ['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'ENOSPC', 'ENOSPC', 'EINVAL', 'EINVAL'];
      const got = want.map((_, i) => errResult(rep, i).errno);
      assert.deepEqual(got, want, JSON.stringify(rep.results, null, 1));
      okResult(rep, 9);
    });

    it('the read-only export refuses write, trim and write zeroes with EPERM and keeps its data', async () => {
      const rep = await libnbd({
        uri: srv.uri('ro'),
        strict: 0,
        ops: [
          { op: 'pwrite', offset: 0, length: 4096, byte: 1 },
          { op: 'trim', offset: 0, length: 4096 },
          { op: 'zero', offset: 0, length: 4096 },
          { op: 'pread', offset: 0, length: RO_SIZE },
        ],
      });
      assert.equal(rep.handles[0]?.readOnly, true);
      assert.deepEqual(
        [0, 1, 2].map((i) => errResult(rep, i).errno),
        ['EPERM', 'EPERM', 'EPERM'],
      );
      assert.equal(okResult(rep, 3).sha256, sha256(pattern(RO_SIZE, 0)));
    });

    it('multi-conn: a write on one connection, flushed on another, is read on a third and a fourth', async () => {
      const off = 12 * MiB;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        handles: 4,
        ops: [
          { op: 'pwrite', h: 0, offset: off, length: 256 * KiB, byte: 0x42 },
          { op: 'flush', h: 1 },
          { op: 'pread', h: 2, offset: off, length: 256 * KiB },
          { op: 'pread', h: 3, offset: off, length: 256 * KiB },
        ],
      });
      assert.equal(rep.handles.length, 4);
      for (const h of rep.handles) assert.equal(h.can.multi_conn, true);
      okResult(rep, 0);
      okResult(rep, 1);
      assert.equal(okResult(rep, 2).byte, 0x42);
      assert.equal(okResult(rep, 3).byte, 0x42);
    });

    it('without structured replies: simple replies still read, write and report errors', async () => {
      const off = 14 * MiB;
      const rep = await libnbd({
        uri: srv.uri('rw'),
        structured: false,
        strict: 0,
        ops: [
          { op: 'pwrite', offset: off, length: 1 * MiB, byte: 0x77 },
          { op: 'pread', offset: off, length: 1 * MiB },
          { op: 'pread', offset: RAM_SIZE, length: 512 },
          { op: 'pread', offset: 0, length: 4096 },
        ],
      });
      const h = rep.handles[0]!;
      assert.equal(h.structured, false);
      assert.equal(h.meta, false, 'no base:allocation without structured replies');
      assert.equal(h.can.df, false, 'DF needs structured replies');
      okResult(rep, 0);
      assert.equal(okResult(rep, 1).byte, 0x77);
      assert.equal(errResult(rep, 2).errno, 'EINVAL');
      okResult(rep, 3);
    });
  });
});

/** The data extents of a file (SEEK_DATA / SEEK_HOLE, through python3: Node has no lseek). */
async function fileDataExtents(path: string): Promise<Range[]> {
  const script = [
    'import json, os, sys',
    'fd = os.open(sys.argv[1], os.O_RDONLY); end = os.fstat(fd).st_size; out = []; pos = 0',
    'while pos < end:',
    '    try: d = os.lseek(fd, pos, os.SEEK_DATA)',
    '    except OSError: break',
    '    h = os.lseek(fd, d, os.SEEK_HOLE); out.append({"offset": d, "length": h - d}); pos = h',
    'print(json.dumps(out))',
  ].join('\n');
  const r = await mustRun('python3', ['-c', script, path]);
  return JSON.parse(r.stdout) as Range[];
}

/**
 * Compares a sparse image file with zeroes + pattern at `ranges`: every byte the file holds
 * as data is compared; its holes read as zeroes by definition, so every written range must
 * lie inside the data (reading all of a 1 GiB file would take seconds).
 */
async function assertFileImage(path: string, size: number, ranges: readonly Range[]): Promise<void> {
  assert.equal((await stat(path)).size, size);
  const data = await fileDataExtents(path);
  for (const r of ranges) {
    const inside = data.some((d) => d.offset <= r.offset && r.offset + r.length <= d.offset + d.length);
    assert.ok(inside, `${path}: written range [${r.offset}, +${r.length}) is a hole in the copy`);
  }
  const fh = await open(path, 'r');
  try {
    for (const d of data) {
      for (let off = d.offset; off < d.offset + d.length; off += 8 * MiB) {
        const len = Math.min(8 * MiB, d.offset + d.length - off);
        const buf = Buffer.alloc(len);
        const { bytesRead } = await fh.read(buf, 0, len, off);
        assert.equal(bytesRead, len);
        if (!buf.equals(windowImage(len, off, ranges))) {
          assert.fail(`${path}: bytes in [${off}, ${off + len}) differ from the export`);
        }
      }
    }
  } finally {
    await fh.close();
  }
}

/** What the device holds in the window [off, off+len) after writePattern(ranges). */
function windowImage(len: number, off: number, ranges: readonly Range[]): Buffer {
  const b = Buffer.alloc(len);
  for (const r of ranges) {
    const from = Math.max(r.offset, off);
    const to = Math.min(r.offset + r.length, off + len);
    if (from < to) pattern(r.length, r.offset).copy(b, from - off, from - r.offset, to - r.offset);
  }
  return b;
}
