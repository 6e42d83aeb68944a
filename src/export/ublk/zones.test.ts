import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BlockError, ErrorCode, ZoneError } from '../../block/errors.js';
import { ZoneState, ZoneType } from '../../block/zone.js';
import { RamDevice } from '../../devices/ram.js';
import { ZonedDevice } from '../../devices/zoned.js';
import { resultForError, UblkError } from './errors.js';
import { paramsFor } from './params.js';
import { BlkZone, ParamBasic, Params, ParamZoned, UBLK_F, UBLK_IO_OP, UBLK_PARAM_TYPE } from './uapi.js';
import { encodeZones, isZoneOp, serveZoneRequest, zonedFlags, type ZoneDataPath } from './zones.js';

const MiB = 1024 * 1024;
const ZS = MiB; // zone size
const NR = 8;

function zoned(
  opts: Partial<ConstructorParameters<typeof ZonedDevice>[1]> = {},
  size = NR * ZS,
): ZonedDevice {
  return new ZonedDevice(new RamDevice({ size, logicalBlockSize: 4096 }), {
    zoneSize: ZS,
    conventionalZones: 1,
    maxOpenZones: 3,
    maxActiveZones: 4,
    ...opts,
  });
}

/** A data path over plain buffers: what the kernel would hand over / receive. */
function dataPath(incoming: Buffer = Buffer.alloc(0)): ZoneDataPath & { written: Buffer[] } {
  const written: Buffer[] = [];
  return {
    written,
    read: (len) => Promise.resolve(Buffer.from(incoming.subarray(0, len))),
    write: (buf) => {
      written.push(Buffer.from(buf));
      return Promise.resolve(buf.length);
    },
  };
}

const req = (op: number, offset: number, count = 0, fua = false) => ({ op, offset, count, fua });
const decodeZones = (b: Buffer) =>
  Array.from({ length: b.length / BlkZone.SIZE }, (_, i) => BlkZone.decode(b, i * BlkZone.SIZE));

test('zoned params: ZONED type, chunk_sectors = zone size, limits capped', () => {
  const dev = zoned({ maxZoneAppendBytes: ZS / 2 });
  const p = Params.decode(paramsFor({ device: dev, maxIoBufBytes: 256 * 1024 }));
  assert.equal(p.types & UBLK_PARAM_TYPE.ZONED, UBLK_PARAM_TYPE.ZONED);
  assert.equal(p.types & UBLK_PARAM_TYPE.BASIC, UBLK_PARAM_TYPE.BASIC);
  const b = ParamBasic.decode(p.basic);
  assert.equal(b.chunk_sectors, ZS / 512);
  assert.equal(b.dev_sectors, BigInt((NR * ZS) / 512));
  const z = ParamZoned.decode(p.zoned);
  assert.equal(z.max_open_zones, 3);
  assert.equal(z.max_active_zones, 4);
  // min(device's zone append 512 KiB, max_io_buf_bytes 256 KiB)
  assert.equal(z.max_zone_append_sectors, (256 * 1024) / 512);

  // Limits larger than the zone count are capped (the kernel refuses them otherwise).
  const big = Params.decode(
    paramsFor({ device: zoned({ maxOpenZones: 100, maxActiveZones: 100 }), maxIoBufBytes: MiB }),
  );
  const bz = ParamZoned.decode(big.zoned);
  assert.equal(bz.max_open_zones, NR);
  assert.equal(bz.max_active_zones, NR);

  // A plain device gets no zoned part.
  const plain = Params.decode(paramsFor({ device: new RamDevice({ size: MiB }), maxIoBufBytes: MiB }));
  assert.equal(plain.types & UBLK_PARAM_TYPE.ZONED, 0);
  assert.equal(ParamBasic.decode(plain.basic).chunk_sectors, 0);
});

test('zoned params: a runt last zone is refused before ADD_DEV', () => {
  const dev = zoned({}, NR * ZS + 64 * 1024);
  assert.throws(
    () => paramsFor({ device: dev, maxIoBufBytes: MiB }),
    (e: unknown) =>
      e instanceof UblkError && e.code === 'EINVAL' && /multiple of its zone size/.test(e.message),
  );
});

test('zonedFlags: ZONED only when the kernel offers it with USER_COPY', () => {
  const dev = zoned();
  assert.equal(zonedFlags(dev, UBLK_F.USER_COPY | UBLK_F.ZONED), UBLK_F.ZONED);
  assert.equal(zonedFlags(new RamDevice({ size: MiB }), UBLK_F.USER_COPY), 0n);
  for (const features of [UBLK_F.USER_COPY, UBLK_F.ZONED])
    assert.throws(
      () => zonedFlags(dev, features),
      (e: unknown) => e instanceof UblkError && e.code === 'ENOTSUP' && /UBLK_F_ZONED/.test(e.message),
    );
});

test('encodeZones: blk_zone entries in sectors, conventional and sequential', async () => {
  const dev = zoned({ zoneCapacity: ZS / 2 });
  await dev.write(ZS, Buffer.alloc(8192, 1));
  const b = encodeZones(await dev.reportZones(0, 2));
  assert.equal(b.length, 128);
  const [conv, seq] = decodeZones(b);
  assert.equal(conv?.type, ZoneType.CONVENTIONAL);
  assert.equal(conv?.cond, ZoneState.NOT_WP);
  assert.equal(conv?.start, 0n);
  assert.equal(conv?.len, BigInt(ZS / 512));
  assert.equal(seq?.type, ZoneType.SEQUENTIAL_WRITE_REQUIRED);
  assert.equal(seq?.cond, ZoneState.IMPLICIT_OPEN);
  assert.equal(seq?.start, BigInt(ZS / 512));
  assert.equal(seq?.wp, BigInt((ZS + 8192) / 512));
  assert.equal(seq?.capacity, BigInt(ZS / 2 / 512));
});

test('REPORT_ZONES: nr_zones from the start sector, answered with bytes written; last zone', async () => {
  const dev = zoned();
  const d = dataPath();
  const r = await serveZoneRequest(dev, req(UBLK_IO_OP.REPORT_ZONES, 6 * ZS, 2), d);
  assert.equal(r.result, 2 * 64);
  assert.equal(r.appendLba, undefined);
  const zones = decodeZones(d.written[0] ?? Buffer.alloc(0));
  assert.deepEqual(
    zones.map((z) => z.start),
    [BigInt((6 * ZS) / 512), BigInt((7 * ZS) / 512)],
  );
  assert.equal(zones[1]?.cond, ZoneState.EMPTY);
  assert.equal(zones[1]?.wp, BigInt((7 * ZS) / 512));
});

test('ZONE_APPEND: data lands at the write pointer, its sector goes back as zone_append_lba', async () => {
  const dev = zoned();
  const last = (NR - 1) * ZS;
  await dev.write(last, Buffer.alloc(4096, 7));
  const data = Buffer.alloc(8192, 0xab);
  const r = await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_APPEND, last, 16), dataPath(data));
  assert.equal(r.result, 8192);
  assert.equal(r.appendLba, BigInt((last + 4096) / 512));
  const back = Buffer.alloc(8192);
  await dev.read(last + 4096, back);
  assert.deepEqual(back, data);
  const [z] = await dev.reportZones(last, 1);
  assert.equal(z?.writePointer, last + 4096 + 8192);
});

test('zone management: open, close, finish, reset, reset all', async () => {
  const dev = zoned();
  const d = dataPath();
  const state = async (off: number) => (await dev.reportZones(off, 1))[0]?.state;
  assert.equal((await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_OPEN, 2 * ZS), d)).result, 0);
  assert.equal(await state(2 * ZS), ZoneState.EXPLICIT_OPEN);
  await dev.write(2 * ZS, Buffer.alloc(4096));
  await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_CLOSE, 2 * ZS), d);
  assert.equal(await state(2 * ZS), ZoneState.CLOSED);
  await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_FINISH, 2 * ZS), d);
  assert.equal(await state(2 * ZS), ZoneState.FULL);
  await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_RESET, 2 * ZS), d);
  assert.equal(await state(2 * ZS), ZoneState.EMPTY);
  await dev.write(3 * ZS, Buffer.alloc(4096));
  await dev.write((NR - 1) * ZS, Buffer.alloc(4096));
  await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_RESET_ALL, 0), d);
  assert.equal(await state(3 * ZS), ZoneState.EMPTY);
  assert.equal(await state((NR - 1) * ZS), ZoneState.EMPTY);
  assert.equal(d.written.length, 0, 'management moves no data');
});

test('zone errors become the -errno the kernel maps to the right block status', async () => {
  const dev = zoned({ maxOpenZones: 1, maxActiveZones: 2 });
  const d = dataPath();
  // Management on a conventional zone: EINVAL.
  const conv = await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_OPEN, 0), d).catch((e: unknown) => e);
  assert.ok(BlockError.is(conv));
  assert.equal(conv.code, ErrorCode.EINVAL);
  assert.equal(resultForError(conv), -22);
  // A write not at the write pointer: EIO (ZONE_INVALID_WRITE).
  const bad = await dev.write(ZS + 4096, Buffer.alloc(4096)).catch((e: unknown) => e);
  assert.ok(BlockError.is(bad));
  assert.equal(bad.code, ErrorCode.EIO);
  assert.equal(bad.zone, ZoneError.ZONE_INVALID_WRITE);
  assert.equal(resultForError(bad), -5);
  // Over the open limit with an explicitly open zone: ETOOMANYREFS.
  await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_OPEN, ZS), d);
  const open = await serveZoneRequest(dev, req(UBLK_IO_OP.ZONE_OPEN, 2 * ZS), d).catch((e: unknown) => e);
  assert.ok(BlockError.is(open));
  assert.equal(open.code, ErrorCode.ETOOMANYREFS);
  assert.equal(resultForError(open), -109);
});

test('isZoneOp: the seven zone ops, not READ/WRITE', () => {
  const ops = Object.entries(UBLK_IO_OP)
    .filter(([, v]) => isZoneOp(v))
    .map(([k]) => k);
  assert.deepEqual(ops.sort(), [
    'REPORT_ZONES',
    'ZONE_APPEND',
    'ZONE_CLOSE',
    'ZONE_FINISH',
    'ZONE_OPEN',
    'ZONE_RESET',
    'ZONE_RESET_ALL',
  ]);
});
