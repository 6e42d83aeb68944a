// struct ublk_params for a BlockDevice: its size and queue limits in the kernel's terms
// (SET_PARAMS before START_DEV). Flush and FUA are always advertised (a volatile write cache):
// the server passes both to the device, which is correct for every device, cached or not.

import type { BlockDevice } from '../../block/device.js';
import { BlockError, ErrorCode } from '../../block/errors.js';
import { zonedParamsFor } from './zones.js';
import { Params, ParamBasic, ParamDiscard, PARAMS_ZONED_END, UBLK_ATTR, UBLK_PARAM_TYPE } from './uapi.js';

const SECTOR = 512;
const U32_MAX = 0xffffffff;

const log2 = (n: number): number => Math.round(Math.log2(n));
/** Bytes as 512-byte sectors, rounded down to whole logical blocks and capped to a u32. */
function sectors(bytes: number, lbs: number): number {
  const s = Math.floor(bytes / lbs) * (lbs / SECTOR);
  return Math.min(s, Math.floor(U32_MAX / (lbs / SECTOR)) * (lbs / SECTOR));
}

export interface UblkParamsInput {
  device: BlockDevice;
  /** The dev info's max_io_buf_bytes: no request is larger. */
  maxIoBufBytes: number;
}

/** The encoded struct ublk_params (basic, discard and zoned parts) for `device`. */
export function paramsFor({ device, maxIoBufBytes }: UblkParamsInput): Buffer {
  const l = device.limits;
  const lbs = l.logicalBlockSize;
  if (lbs > 4096)
    throw new BlockError(
      ErrorCode.EINVAL,
      `ublk: ${device.name} has ${lbs}-byte blocks; ublk takes at most a page`,
    );
  if (device.size % SECTOR !== 0)
    throw new BlockError(
      ErrorCode.EINVAL,
      `ublk: ${device.name}'s size ${device.size} is not a multiple of 512`,
    );
  const maxBytes = Math.min(l.maxTransferBytes, maxIoBufBytes);
  // Zoned devices (zones.ts): chunk_sectors = zone size, and the zoned part.
  const zoned = l.zoned ? zonedParamsFor(device, maxIoBufBytes) : undefined;
  let attrs = UBLK_ATTR.VOLATILE_CACHE | UBLK_ATTR.FUA;
  if (l.readOnly) attrs |= UBLK_ATTR.READ_ONLY;
  const basic = ParamBasic.encode({
    attrs,
    logical_bs_shift: log2(lbs),
    physical_bs_shift: log2(l.physicalBlockSize),
    io_min_shift: log2(l.physicalBlockSize),
    io_opt_shift: 0,
    max_sectors: sectors(maxBytes, lbs),
    dev_sectors: device.size / SECTOR,
    chunk_sectors: zoned?.chunkSectors ?? 0,
  });
  let types = UBLK_PARAM_TYPE.BASIC;
  if (zoned) types |= UBLK_PARAM_TYPE.ZONED;
  let discard: Buffer = Buffer.alloc(ParamDiscard.SIZE);
  if ((l.discard || l.writeZeroes) && !l.readOnly) {
    types |= UBLK_PARAM_TYPE.DISCARD;
    // The kernel wants a granularity even when only write zeroes is offered, and one
    // segment per discard (ublk_validate_params).
    discard = ParamDiscard.encode({
      discard_granularity: Math.max(l.discard?.granularity ?? lbs, lbs),
      max_discard_sectors: l.discard ? sectors(l.discard.maxBytes, lbs) : 0,
      max_write_zeroes_sectors: l.writeZeroes ? sectors(l.writeZeroes.maxBytes, lbs) : 0,
      max_discard_segments: 1,
    });
  }
  // len covers the parts up to zoned: every kernel with USER_COPY knows them.
  return Params.encode({
    len: PARAMS_ZONED_END,
    types,
    basic,
    discard,
    ...(zoned ? { zoned: zoned.zoned } : {}),
  });
}
