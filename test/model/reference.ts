// The reference model of the property test: what a block device must do, written as plainly
// as possible and independently of tsblk's code paths (no import from src/ other than the
// contract's vocabulary: error codes, zone error names, zone state numbers).
//
// A model device is a Buffer holding the whole image plus, for zoned devices, one record per
// zone: conventional or sequential, condition and write pointer. Each operation returns an
// Expectation — success, or failure with the codes the device may answer — and applies its
// effect to the model. Rules the model follows (from docs/copy.md, src/block/device.ts and
// the top comment of src/devices/zoned.ts):
//
// - Arguments: offset and length must be multiples of the logical block size (EINVAL), end
//   inside the device (ERANGE) and fit the transfer limit (E2BIG). When a request breaks
//   several rules the model accepts any of their codes: the order of checks is not a contract.
// - Plain devices: a write stores its bytes; discard and write zeroes leave zeroes.
// - Zoned devices (open/active limits unlimited): a write into a sequential zone must start at
//   the write pointer and stay inside the zone's capacity (EIO with ZONE_FULL,
//   ZONE_INVALID_WRITE or ZONE_BOUNDARY_ERROR); EMPTY/CLOSED zones open implicitly; reaching
//   the capacity makes the zone FULL. Bytes at or above a write pointer read as zeroes: the
//   model keeps them zero (writes land only at the write pointer, reset zeroes the zone,
//   finish writes nothing). Discard is for conventional zones only (EINVAL). Zone management
//   follows ZNS: open from EMPTY/IMPLICIT_OPEN/CLOSED (EXPLICIT_OPEN: no-op), close an open
//   zone (EMPTY again when it holds no data; CLOSED: no-op), finish from anything but FULL
//   (FULL: no-op), reset from anything; conventional zones are EINVAL, other bad transitions
//   EIO/INVALID_ZONE_STATE_TRANSITION.
// - `splitAtZones`: a request spanning zones is cut into one request per zone, as a mapping
//   with one target per zone does; each piece succeeds or fails on its own and the first
//   failing piece's error is reported. Without it (a ZonedDevice), a write starting in a
//   sequential zone must stay in it, and a write starting in a conventional zone may span only
//   conventional zones.
// - Copy (issueCopy): memmove — every source is read before any destination is written. The
//   model checks the validation rules, then predicts for a zoned destination whether every
//   piece lands at its zone's write pointer (success), whether no piece can land (failure,
//   nothing changes: every touched zone's lowest piece is refused), or neither — then the
//   outcome depends on timing and the expectation is `uncertain`; the runner checks the
//   invariants that still hold and adopts the device's state (see resync).

import { ErrorCode, ZoneError } from '../../src/block/errors.js';
import { ZoneState, ZoneType } from '../../src/block/zone.js';

export interface ZoneLayout {
  readonly zoneSize: number;
  readonly zoneCapacity: number;
  /** One flag per zone, in device order. */
  readonly conventional: readonly boolean[];
  /** Requests spanning zones are cut per zone (mapping with one target per zone). */
  readonly splitAtZones: boolean;
  readonly maxZoneAppendBytes: number;
}

export interface ModelGeometry {
  readonly name: string;
  readonly size: number;
  readonly logicalBlockSize: number;
  readonly maxTransferBytes: number;
  /** Largest discard / write zeroes; 0 when the device lacks the operation. */
  readonly discardMaxBytes: number;
  readonly writeZeroesMaxBytes: number;
  readonly zoned?: ZoneLayout;
}

export type Expectation =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** The device must fail with one of these codes. */
      readonly codes: readonly ErrorCode[];
      /** When given, the BlockError's `zone` must be one of these. */
      readonly zoneErrors?: readonly ZoneError[];
      /** True when the device's state afterwards is not predictable (see the top comment). */
      readonly uncertain?: boolean;
    };

export type ZoneCond = 'empty' | 'implicit-open' | 'explicit-open' | 'closed' | 'full';

/** ZNS / blkzoned numbering of the conditions, for comparing with reportZones. */
export const ZONE_COND_NUMBER: Record<ZoneCond | 'not-wp', number> = {
  'not-wp': ZoneState.NOT_WP,
  empty: ZoneState.EMPTY,
  'implicit-open': ZoneState.IMPLICIT_OPEN,
  'explicit-open': ZoneState.EXPLICIT_OPEN,
  closed: ZoneState.CLOSED,
  full: ZoneState.FULL,
};

export interface ModelZone {
  readonly start: number;
  /** Bytes to the next zone (less for a runt last zone). */
  readonly len: number;
  /** Writable bytes; len for conventional zones. */
  readonly cap: number;
  readonly conventional: boolean;
  cond: ZoneCond;
  /** Absolute write pointer (sequential zones). */
  wp: number;
  /** End of the written bytes: the write pointer, except after finish (which writes nothing). */
  dataEnd: number;
}

/** The report a device should give for a zone (writePointer undefined: not checked). */
export interface ExpectedZone {
  start: number;
  size: number;
  capacity: number;
  type: number;
  state: number;
  writePointer: number | undefined;
}

export interface ModelCopyRange {
  src: number;
  dst: number;
  len: number;
}

const { EINVAL, ERANGE, E2BIG, EIO, EOPNOTSUPP } = ErrorCode;

const OK: Expectation = { ok: true };

function fail(codes: ErrorCode[], zoneErrors?: ZoneError[], uncertain = false): Expectation {
  const uniq = <T>(xs: T[]) => [...new Set(xs)];
  return {
    ok: false,
    codes: uniq(codes),
    ...(zoneErrors ? { zoneErrors: uniq(zoneErrors) } : {}),
    ...(uncertain ? { uncertain } : {}),
  };
}

export class ModelDevice {
  readonly geometry: ModelGeometry;
  readonly image: Buffer;
  readonly zones: ModelZone[] | undefined;

  constructor(geometry: ModelGeometry) {
    this.geometry = geometry;
    this.image = Buffer.alloc(geometry.size);
    const z = geometry.zoned;
    if (z) {
      this.zones = z.conventional.map((conventional, i) => {
        const start = i * z.zoneSize;
        const len = Math.min(z.zoneSize, geometry.size - start);
        return {
          start,
          len,
          cap: conventional ? len : Math.min(z.zoneCapacity, len),
          conventional,
          cond: 'empty',
          wp: start,
          dataEnd: start,
        };
      });
      if (this.zones.length !== Math.ceil(geometry.size / z.zoneSize))
        throw new Error('zone layout does not cover the device');
    }
  }

  get size(): number {
    return this.geometry.size;
  }
  get lbs(): number {
    return this.geometry.logicalBlockSize;
  }

  /** The zone holding byte `offset`. */
  zoneAt(offset: number): ModelZone {
    const zs = this.geometry.zoned!.zoneSize;
    return this.zones![Math.floor(offset / zs)]!;
  }

  /** Zones that [offset, offset+len) touches, in order. */
  zonesIn(offset: number, len: number): ModelZone[] {
    const zs = this.geometry.zoned!.zoneSize;
    return this.zones!.slice(Math.floor(offset / zs), Math.floor((offset + len - 1) / zs) + 1);
  }

  /** Argument errors of a ranged request (none: []). */
  #argErrors(offset: number, len: number, maxBytes: number): ErrorCode[] {
    const out: ErrorCode[] = [];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0) return [EINVAL];
    if (offset % this.lbs !== 0 || len % this.lbs !== 0) out.push(EINVAL);
    if (offset + len > this.size) out.push(ERANGE);
    if (len > maxBytes) out.push(E2BIG);
    return out;
  }

  read(offset: number, len: number): { expect: Expectation; data?: Buffer } {
    const errs = this.#argErrors(offset, len, this.geometry.maxTransferBytes);
    if (errs.length > 0) return { expect: fail(errs) };
    return { expect: OK, data: Buffer.from(this.image.subarray(offset, offset + len)) };
  }

  write(offset: number, data: Buffer): Expectation {
    const errs = this.#argErrors(offset, data.length, this.geometry.maxTransferBytes);
    if (errs.length > 0) return fail(errs);
    return this.#writeLike(offset, data);
  }

  writeZeroes(offset: number, len: number): Expectation {
    if (this.geometry.writeZeroesMaxBytes === 0) return fail([EOPNOTSUPP]);
    const errs = this.#argErrors(offset, len, this.geometry.writeZeroesMaxBytes);
    if (errs.length > 0) return fail(errs);
    return this.#writeLike(offset, Buffer.alloc(len));
  }

  discard(offset: number, len: number): Expectation {
    if (this.geometry.discardMaxBytes === 0) return fail([EOPNOTSUPP]);
    const errs = this.#argErrors(offset, len, this.geometry.discardMaxBytes);
    if (errs.length > 0) return fail(errs);
    if (len === 0) return OK;
    if (!this.zones) {
      this.image.fill(0, offset, offset + len);
      return OK;
    }
    const touched = this.zonesIn(offset, len);
    if (!this.geometry.zoned!.splitAtZones) {
      if (touched.some((z) => !z.conventional)) return fail([EINVAL]);
      this.image.fill(0, offset, offset + len);
      return OK;
    }
    let first: Expectation | undefined;
    for (const z of touched) {
      const from = Math.max(offset, z.start);
      const to = Math.min(offset + len, z.start + z.len);
      if (z.conventional) this.image.fill(0, from, to);
      else first ??= fail([EINVAL]);
    }
    return first ?? OK;
  }

  /** Write or write zeroes of checked arguments: plain, or by the zone rules. */
  #writeLike(offset: number, data: Buffer): Expectation {
    const len = data.length;
    if (len === 0) return OK;
    if (!this.zones) {
      data.copy(this.image, offset);
      return OK;
    }
    const touched = this.zonesIn(offset, len);
    if (this.geometry.zoned!.splitAtZones) {
      // One request per zone; each lands or fails by itself, the first failure is reported.
      let first: Expectation | undefined;
      for (const z of touched) {
        const from = Math.max(offset, z.start);
        const to = Math.min(offset + len, z.start + z.len);
        const e = this.#zoneWrite(z, from, data.subarray(from - offset, to - offset));
        if (!e.ok) first ??= e;
      }
      return first ?? OK;
    }
    const head = touched[0]!;
    if (head.conventional) {
      if (touched.some((z) => !z.conventional)) return fail([EIO], [ZoneError.ZONE_BOUNDARY_ERROR]);
      data.copy(this.image, offset);
      return OK;
    }
    return this.#zoneWrite(head, offset, data);
  }

  /** Why a write of len bytes at offset into sequential zone z is refused ([] when it is not). */
  #sequentialWriteErrors(z: ModelZone, offset: number, len: number, wp = z.wp): ZoneError[] {
    const capEnd = z.start + z.cap;
    const out: ZoneError[] = [];
    if (z.cond === 'full' || wp >= capEnd) out.push(ZoneError.ZONE_FULL);
    if (offset !== wp) out.push(ZoneError.ZONE_INVALID_WRITE);
    if (offset + len > capEnd) out.push(ZoneError.ZONE_BOUNDARY_ERROR); // also past the zone end
    return out;
  }

  /** A write that lies inside zone z's byte range (or starts in it, for ZonedDevice). */
  #zoneWrite(z: ModelZone, offset: number, data: Buffer): Expectation {
    if (z.conventional) {
      data.copy(this.image, offset);
      return OK;
    }
    const errs = this.#sequentialWriteErrors(z, offset, data.length);
    if (errs.length > 0) return fail([EIO], errs);
    this.#advance(z, data);
    return OK;
  }

  /** Lands data at zone z's write pointer (already checked). */
  #advance(z: ModelZone, data: Uint8Array): void {
    this.image.set(data, z.wp);
    advanceZone(z, data.length);
  }

  /** Zone argument errors: not zoned, outside, not a zone start. */
  #zoneStartErrors(zoneStart: number): ErrorCode[] {
    if (!this.zones) return [EOPNOTSUPP];
    const out: ErrorCode[] = [];
    if (zoneStart < 0 || zoneStart >= this.size) out.push(ERANGE);
    if (zoneStart % this.geometry.zoned!.zoneSize !== 0) out.push(EINVAL);
    return out;
  }

  zoneManagement(action: 'open' | 'close' | 'finish' | 'reset', zoneStart: number): Expectation {
    const errs = this.#zoneStartErrors(zoneStart);
    if (errs.length > 0) return fail(errs);
    const z = this.zoneAt(zoneStart);
    if (z.conventional) return fail([EINVAL], [ZoneError.INVALID_ZONE_STATE_TRANSITION]);
    const bad = fail([EIO], [ZoneError.INVALID_ZONE_STATE_TRANSITION]);
    switch (action) {
      case 'open':
        if (z.cond === 'full') return bad;
        z.cond = 'explicit-open';
        return OK;
      case 'close':
        if (z.cond === 'closed') return OK;
        if (z.cond !== 'implicit-open' && z.cond !== 'explicit-open') return bad;
        z.cond = z.wp === z.start ? 'empty' : 'closed';
        return OK;
      case 'finish':
        z.cond = 'full';
        z.wp = z.start + z.cap;
        return OK;
      case 'reset':
        this.#reset(z);
        return OK;
    }
  }

  resetAllZones(): Expectation {
    if (!this.zones) return fail([EOPNOTSUPP]);
    for (const z of this.zones) if (!z.conventional) this.#reset(z);
    return OK;
  }

  #reset(z: ModelZone): void {
    z.cond = 'empty';
    z.wp = z.dataEnd = z.start;
    this.image.fill(0, z.start, z.start + z.len);
  }

  /** Zone append: returns the offset the data must land at. */
  zoneAppend(zoneStart: number, data: Buffer): { expect: Expectation; at?: number } {
    const errs = this.#zoneStartErrors(zoneStart);
    if (errs.length === 0) {
      const len = data.length;
      // The data lands at the write pointer, so the zone rules (not ERANGE) catch a long append.
      if (len % this.lbs !== 0) errs.push(EINVAL);
      if (len === 0) errs.push(EINVAL);
      if (len > this.geometry.zoned!.maxZoneAppendBytes) errs.push(E2BIG);
    }
    if (errs.length > 0) return { expect: fail(errs) };
    const z = this.zoneAt(zoneStart);
    if (z.conventional) return { expect: fail([EINVAL]) };
    const at = z.wp;
    const zerrs = this.#sequentialWriteErrors(z, at, data.length);
    if (zerrs.length > 0) return { expect: fail([EIO], zerrs) };
    this.#advance(z, data);
    return { expect: OK, at };
  }

  /** What reportZones(offset, maxZones) must return. */
  reportZones(offset: number, maxZones?: number): { expect: Expectation; zones?: ExpectedZone[] } {
    if (!this.zones) return { expect: fail([EOPNOTSUPP]) };
    if (offset < 0 || offset >= this.size) return { expect: fail([ERANGE]) };
    const first = Math.floor(offset / this.geometry.zoned!.zoneSize);
    const zones = this.zones.slice(first, maxZones === undefined ? undefined : first + maxZones).map((z) => ({
      start: z.start,
      size: z.len,
      capacity: z.cap,
      type: z.conventional ? ZoneType.CONVENTIONAL : ZoneType.SEQUENTIAL_WRITE_REQUIRED,
      state: ZONE_COND_NUMBER[z.conventional ? 'not-wp' : z.cond],
      writePointer: z.conventional ? undefined : z.wp,
    }));
    return { expect: OK, zones };
  }

  /** Adopts a zone's condition and write pointer from the device (after an uncertain copy). */
  adoptZone(index: number, state: number, writePointer: number): void {
    const z = this.zones![index]!;
    const cond = (Object.keys(ZONE_COND_NUMBER) as Array<ZoneCond | 'not-wp'>).find(
      (c) => ZONE_COND_NUMBER[c] === state,
    );
    if (!cond || cond === 'not-wp') throw new Error(`zone ${index}: cannot adopt state ${state}`);
    if (z.cond !== 'full') z.dataEnd = writePointer; // a full zone takes no copy
    z.cond = cond;
    z.wp = writePointer;
  }
}

/** Validation errors of a copy (docs/copy.md §1); [] when the request is valid. */
export function copyValidationErrors(
  src: ModelDevice,
  dst: ModelDevice,
  ranges: readonly ModelCopyRange[],
): ErrorCode[] {
  if (ranges.length === 0) return [EINVAL];
  if (ranges.length > 4096) return [E2BIG];
  const align = Math.max(src.lbs, dst.lbs);
  const out: ErrorCode[] = [];
  let total = 0;
  for (const r of ranges) {
    if (![r.src, r.dst, r.len].every((n) => Number.isSafeInteger(n) && n >= 0)) {
      out.push(EINVAL);
      continue;
    }
    if (r.len === 0) out.push(EINVAL);
    if (r.src % align || r.dst % align || r.len % align) out.push(EINVAL);
    if (r.src + r.len > src.size) out.push(ERANGE);
    if (r.dst + r.len > dst.size) out.push(ERANGE);
    total += r.len;
  }
  if (total > 128 * 1024 * 1024) out.push(E2BIG);
  for (let i = 0; i < ranges.length; i++)
    for (let j = i + 1; j < ranges.length; j++) {
      const a = ranges[i]!;
      const b = ranges[j]!;
      if (a.dst < b.dst + b.len && b.dst < a.dst + a.len) out.push(EINVAL);
    }
  return out;
}

/** One destination piece of a copy inside one zone (or the whole range on a plain device). */
export interface CopySegment {
  range: number;
  dst: number;
  data: Buffer;
}

/**
 * Predicts issueCopy(src, dst, ranges) and applies it when the outcome is certain. Returns the
 * expectation and the source bytes of every range as they were before the copy (what each
 * destination must hold when the range completes).
 */
export function modelCopy(
  src: ModelDevice,
  dst: ModelDevice,
  ranges: readonly ModelCopyRange[],
): { expect: Expectation; sources: Buffer[] } {
  const errs = copyValidationErrors(src, dst, ranges);
  if (errs.length > 0) return { expect: fail(errs), sources: [] };
  // memmove: read everything first.
  const sources = ranges.map((r) => Buffer.from(src.image.subarray(r.src, r.src + r.len)));
  if (!dst.zones) {
    ranges.forEach((r, i) => sources[i]!.copy(dst.image, r.dst));
    return { expect: OK, sources };
  }
  // Cut destinations at zone boundaries; sequential zones take their pieces in ascending order.
  const segments: CopySegment[] = [];
  ranges.forEach((r, i) => {
    for (const z of dst.zonesIn(r.dst, r.len)) {
      const from = Math.max(r.dst, z.start);
      const to = Math.min(r.dst + r.len, z.start + z.len);
      segments.push({ range: i, dst: from, data: sources[i]!.subarray(from - r.dst, to - r.dst) });
    }
  });
  let conventionalPieces = 0;
  let goodPieces = 0;
  let badZones = 0;
  const zoneErrors: ZoneError[] = [];
  const byZone = new Map<ModelZone, CopySegment[]>();
  for (const s of segments) {
    const z = dst.zoneAt(s.dst);
    if (z.conventional) conventionalPieces++;
    else byZone.set(z, [...(byZone.get(z) ?? []), s]);
  }
  const sequentialErrors = (z: ModelZone, s: CopySegment, wp: number) => {
    const capEnd = z.start + z.cap;
    const out: ZoneError[] = [];
    if (z.cond === 'full' || wp >= capEnd) out.push(ZoneError.ZONE_FULL);
    if (s.dst !== wp) out.push(ZoneError.ZONE_INVALID_WRITE);
    if (s.dst + s.data.length > capEnd) out.push(ZoneError.ZONE_BOUNDARY_ERROR);
    return out;
  };
  for (const [z, segs] of byZone) {
    segs.sort((a, b) => a.dst - b.dst);
    let wp = z.wp;
    for (const s of segs) {
      const e = sequentialErrors(z, s, wp);
      if (e.length === 0) {
        goodPieces++;
        wp += s.data.length;
        continue;
      }
      badZones++;
      if (e.includes(ZoneError.ZONE_FULL) || e.includes(ZoneError.ZONE_INVALID_WRITE)) zoneErrors.push(...e);
      else {
        // At the write pointer but past the capacity: the copy may cut the piece into smaller
        // requests, and those below the capacity land; the one reaching it is refused.
        goodPieces++;
        zoneErrors.push(ZoneError.ZONE_BOUNDARY_ERROR, ZoneError.ZONE_FULL);
      }
      break;
    }
  }
  if (badZones === 0) {
    for (const s of segments) if (dst.zoneAt(s.dst).conventional) s.data.copy(dst.image, s.dst);
    for (const [z, segs] of byZone)
      for (const s of segs) {
        dst.image.set(s.data, s.dst);
        advanceZone(z, s.data.length);
      }
    return { expect: OK, sources };
  }
  // Every piece refused at its first byte → nothing changes; otherwise timing decides.
  const nothingLands = conventionalPieces === 0 && goodPieces === 0;
  return { expect: fail([EIO], zoneErrors, !nothingLands), sources };
}

function advanceZone(z: ModelZone, len: number): void {
  z.wp += len;
  z.dataEnd = z.wp;
  if (z.cond === 'empty' || z.cond === 'closed') z.cond = 'implicit-open';
  if (z.wp === z.start + z.cap) z.cond = 'full';
}
