// Zoned exports through ublk (UBLK_F_ZONED, kernel 6.6+; it needs USER_COPY): the zoned
// parameters, the zone requests and the REPORT_ZONES answer.
//
// What a user must know:
// - The kernel requires chunk_sectors = zone size (a power of two) and counts zones as
//   dev_sectors / chunk_sectors, so a device whose size is not a whole number of zones (a runt
//   last zone) is refused before ADD_DEV.
// - max_open_zones / max_active_zones are the device's (0 = no limit), capped to the zone
//   count, which the kernel requires. max_zone_append_sectors is the device's largest zone
//   append capped by the largest request (max_io_buf_bytes); the kernel wants it non-zero.
// - REPORT_ZONES: the descriptor carries nr_zones (in the nr_sectors slot) and the start
//   sector; the answer is an array of struct blk_zone (64 bytes each) written with pwrite at
//   the request's user-copy offset, and the result is the bytes written (the kernel ends the
//   request with that many bytes done; 0 would leave it unfinished).
// - ZONE_APPEND: the data is read like a WRITE; the result is its length and the commit's
//   addr (zone_append_lba) is the sector it landed at.
// - Zone management (open, close, finish, reset, reset all) returns 0; zone errors become
//   -errno through resultForError (EIO for write-pointer violations, ETOOMANYREFS and
//   EOVERFLOW for the open and active limits).

import type { BlockDevice } from '../../block/device.js';
import type { Zone } from '../../block/zone.js';
import { UblkError } from './errors.js';
import { BlkZone, featureNames, ParamZoned, UBLK_F, UBLK_IO_OP } from './uapi.js';

const SECTOR = 512;
const U32_MAX = 0xffffffff;

/** The UBLK_F_* flags a zoned device adds to ADD_DEV, or 0n for other devices. */
export function zonedFlags(device: BlockDevice, features: bigint): bigint {
  if (!device.limits.zoned) return 0n;
  if ((features & UBLK_F.ZONED) === 0n || (features & UBLK_F.USER_COPY) === 0n)
    throw new UblkError(
      'ENOTSUP',
      `ublk: ${device.name} is zoned, and this kernel does not offer UBLK_F_ZONED with USER_COPY ` +
        `(kernel 6.6+ built with CONFIG_BLK_DEV_ZONED; features: ${featureNames(features).join(', ')})`,
    );
  return UBLK_F.ZONED;
}

export interface ZonedParams {
  /** basic.chunk_sectors: the zone size in sectors. */
  chunkSectors: number;
  /** struct ublk_param_zoned. */
  zoned: Buffer;
}

/** chunk_sectors and struct ublk_param_zoned for a zoned `device`; throws if ublk cannot express it. */
export function zonedParamsFor(device: BlockDevice, maxIoBufBytes: number): ZonedParams {
  const z = device.limits.zoned;
  if (!z) throw new UblkError('EINVAL', `ublk: ${device.name} is not zoned`);
  const lbs = device.limits.logicalBlockSize;
  if (device.size % z.zoneSize !== 0)
    throw new UblkError(
      'EINVAL',
      `ublk: ${device.name}'s size ${device.size} is not a multiple of its zone size ${z.zoneSize}; ` +
        'the kernel counts ublk zones as size / zone size and cannot report a smaller last zone',
    );
  const chunkSectors = z.zoneSize / SECTOR;
  if (chunkSectors > U32_MAX)
    throw new UblkError('EINVAL', `ublk: ${device.name}'s zone size ${z.zoneSize} exceeds a u32 of sectors`);
  const nrZones = device.size / z.zoneSize;
  const appendBytes = Math.min(z.maxZoneAppendBytes, maxIoBufBytes, z.zoneSize);
  const appendSectors = Math.floor(appendBytes / lbs) * (lbs / SECTOR);
  if (appendSectors === 0)
    throw new UblkError(
      'EINVAL',
      `ublk: ${device.name} has no zone append (maxZoneAppendBytes ${z.maxZoneAppendBytes}); ` +
        'the kernel requires max_zone_append_sectors > 0',
    );
  const zoned = ParamZoned.encode({
    max_open_zones: Math.min(z.maxOpenZones, nrZones),
    max_active_zones: Math.min(z.maxActiveZones, nrZones),
    max_zone_append_sectors: appendSectors,
  });
  return { chunkSectors, zoned };
}

/** Zones as an array of struct blk_zone. */
export function encodeZones(zones: readonly Zone[]): Buffer {
  const out = Buffer.alloc(zones.length * BlkZone.SIZE);
  zones.forEach((z, i) => {
    BlkZone.encode(
      {
        start: z.start / SECTOR,
        len: z.size / SECTOR,
        wp: z.writePointer / SECTOR,
        type: z.type,
        cond: z.state,
        capacity: z.capacity / SECTOR,
      },
      out,
      i * BlkZone.SIZE,
    );
  });
  return out;
}

/** The ops this file serves. */
export function isZoneOp(op: number): boolean {
  return (
    op === UBLK_IO_OP.ZONE_OPEN ||
    op === UBLK_IO_OP.ZONE_CLOSE ||
    op === UBLK_IO_OP.ZONE_FINISH ||
    op === UBLK_IO_OP.ZONE_RESET ||
    op === UBLK_IO_OP.ZONE_RESET_ALL ||
    op === UBLK_IO_OP.ZONE_APPEND ||
    op === UBLK_IO_OP.REPORT_ZONES
  );
}

/** A zone request as the descriptor gives it; `count` is nr_sectors (nr_zones for REPORT_ZONES). */
export interface ZoneRequest {
  readonly op: number;
  readonly fua: boolean;
  /** start_sector in bytes. */
  readonly offset: number;
  readonly count: number;
}

/** Moves a request's data: `read` fills buf from the kernel, `write` hands buf to it. */
export interface ZoneDataPath {
  read(len: number): Promise<Buffer>;
  write(buf: Buffer): Promise<number>;
}

export interface ZoneResult {
  /** Bytes done (append, report) or 0; negative errors are thrown, not returned. */
  result: number;
  /** ZONE_APPEND: the sector the data landed at, for the commit's zone_append_lba. */
  appendLba?: bigint;
}

/** Serves one zone request from `device`. Device errors are thrown (the queue maps them). */
export async function serveZoneRequest(
  device: BlockDevice,
  req: ZoneRequest,
  data: ZoneDataPath,
): Promise<ZoneResult> {
  switch (req.op) {
    case UBLK_IO_OP.ZONE_OPEN:
      await device.openZone(req.offset);
      return { result: 0 };
    case UBLK_IO_OP.ZONE_CLOSE:
      await device.closeZone(req.offset);
      return { result: 0 };
    case UBLK_IO_OP.ZONE_FINISH:
      await device.finishZone(req.offset);
      return { result: 0 };
    case UBLK_IO_OP.ZONE_RESET:
      await device.resetZone(req.offset);
      return { result: 0 };
    case UBLK_IO_OP.ZONE_RESET_ALL:
      await device.resetAllZones();
      return { result: 0 };
    case UBLK_IO_OP.ZONE_APPEND: {
      const len = req.count * SECTOR;
      const buf = await data.read(len);
      const at = await device.zoneAppend(req.offset, buf.subarray(0, len), { fua: req.fua });
      return { result: len, appendLba: BigInt(at / SECTOR) };
    }
    case UBLK_IO_OP.REPORT_ZONES: {
      // The kernel never asks past the last zone; an empty answer still needs one entry's
      // worth of bytes done, so it gets a zero-length zone (the kernel's end marker).
      const zones = req.count > 0 ? await device.reportZones(req.offset, req.count) : [];
      const buf = zones.length > 0 ? encodeZones(zones) : Buffer.alloc(BlkZone.SIZE);
      const n = await data.write(buf);
      return { result: n };
    }
    default:
      throw new UblkError('EOPNOTSUPP', `ublk: op ${req.op} is not a zone request`);
  }
}
