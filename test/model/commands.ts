// Commands of the property test. fast-check generates *descriptions* (an anchor such as "the
// write pointer of zone k", a skew of a few blocks, a length rule); each is resolved against
// the reference model when it runs, so generation leans toward the interesting places of the
// current state — the last block, zone boundaries, write pointers, capacity ends — and
// shrinking keeps the intent of a command even when earlier commands disappear.

import fc from 'fast-check';
import type { ModelCopyRange, ModelDevice } from './reference.js';

export type Anchor = 'any' | 'start' | 'end' | 'zoneStart' | 'zoneEnd' | 'wp' | 'capEnd';

/** Where an offset goes: an anchor, then `skew` blocks, then (rarely) off the block size. */
export interface Spot {
  anchor: Anchor;
  /** Which zone (fraction of the zone count) for zone anchors. */
  zone: number;
  /** Position (fraction of the device) for 'any'. */
  frac: number;
  skew: number;
  misalign: boolean;
}

/** How long a request is: some blocks, or up to a boundary, then `skew` blocks. */
export interface Extent {
  anchor: 'blocks' | 'toZoneEnd' | 'toCapEnd' | 'toEnd' | 'zero';
  blocks: number;
  /** Usually true: cut at the end of the device, so requests at the last block mostly fit. */
  clamp: boolean;
  skew: number;
  misalign: boolean;
}

export type CopyShape = 'random' | 'shift' | 'swap' | 'chain' | 'fill' | 'lastBlock';

export interface CopyPart {
  a: Spot;
  b: Spot;
  len: Extent;
}

export type Dev = 0 | 1;

export type Command =
  | { op: 'write'; dev: Dev; at: Spot; len: Extent; fua: boolean; seed: number }
  | { op: 'read'; dev: Dev; at: Spot; len: Extent }
  | { op: 'discard'; dev: Dev; at: Spot; len: Extent }
  | { op: 'writeZeroes'; dev: Dev; at: Spot; len: Extent; noUnmap: boolean }
  | { op: 'flush'; dev: Dev }
  | {
      op: 'copy';
      from: Dev;
      to: Dev;
      shape: CopyShape;
      parts: CopyPart[];
      order: number;
      /** Keep invalid ranges (validation errors). */
      keepBad: boolean;
      /** Zoned destination: drop ranges a sequential zone would refuse (usually true). */
      zoneRepair: boolean;
    }
  | { op: 'zone'; dev: Dev; action: 'open' | 'close' | 'finish' | 'reset'; at: Spot }
  | { op: 'resetAll'; dev: Dev }
  | { op: 'append'; dev: Dev; at: Spot; len: Extent; seed: number }
  | { op: 'report'; dev: Dev; at: Spot; max: number | undefined }
  | { op: 'verify'; dev: Dev };

/** A command resolved against the model: concrete offsets, lengths and data. */
export type Op =
  | { op: 'write'; dev: Dev; offset: number; data: Buffer; fua: boolean }
  | { op: 'read'; dev: Dev; offset: number; len: number }
  | { op: 'discard'; dev: Dev; offset: number; len: number }
  | { op: 'writeZeroes'; dev: Dev; offset: number; len: number; noUnmap: boolean }
  | { op: 'flush'; dev: Dev }
  | { op: 'copy'; from: Dev; to: Dev; ranges: ModelCopyRange[] }
  | { op: 'zone'; dev: Dev; action: 'open' | 'close' | 'finish' | 'reset'; zoneStart: number }
  | { op: 'resetAll'; dev: Dev }
  | { op: 'append'; dev: Dev; zoneStart: number; data: Buffer }
  | { op: 'report'; dev: Dev; offset: number; max: number | undefined }
  | { op: 'verify'; dev: Dev };

// ---------------------------------------------------------------------------------------------
// Generation

/** fc.oneof with fractional weights (scaled to integers); weight 0 drops the choice. */
function weighted<T>(...choices: Array<{ weight: number; arbitrary: fc.Arbitrary<T> }>): fc.Arbitrary<T> {
  const kept = choices
    .filter((c) => c.weight > 0)
    .map((c) => ({ weight: Math.round(c.weight * 10), arbitrary: c.arbitrary }));
  return fc.oneof(...kept);
}

/** A fraction in [0, 1): mostly uniform, sometimes biased to the ends as fast-check likes. */
const fraction: fc.Arbitrary<number> = fc
  .oneof(
    { weight: 4, arbitrary: fc.noBias(fc.integer({ min: 0, max: 9999 })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 9999 }) },
  )
  .map((n) => n / 10000);

function spotArb(zoned: boolean): fc.Arbitrary<Spot> {
  const anchors: Array<{ weight: number; arbitrary: fc.Arbitrary<Anchor> }> = [
    { weight: 6, arbitrary: fc.constant('any') },
    { weight: 1, arbitrary: fc.constant('start') },
    { weight: 2, arbitrary: fc.constant('end') },
    { weight: zoned ? 3 : 1, arbitrary: fc.constant('zoneStart') },
    { weight: zoned ? 2 : 0, arbitrary: fc.constant('zoneEnd') },
    { weight: zoned ? 8 : 0, arbitrary: fc.constant('wp') },
    { weight: zoned ? 2 : 0, arbitrary: fc.constant('capEnd') },
  ];
  return fc.record({
    anchor: weighted(...anchors),
    zone: fraction,
    frac: fraction,
    skew: fc.oneof(
      { weight: 6, arbitrary: fc.constant(0) },
      { weight: 3, arbitrary: fc.integer({ min: -3, max: 3 }) },
    ),
    misalign: fc.integer({ min: 0, max: 39 }).map((r) => r === 0),
  });
}

function extentArb(zoned: boolean): fc.Arbitrary<Extent> {
  const blocks = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 8 }) },
    { weight: 3, arbitrary: fc.integer({ min: 9, max: 64 }) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 512 }) },
  );
  return fc.record({
    anchor: weighted(
      { weight: 12, arbitrary: fc.constant<Extent['anchor']>('blocks') },
      { weight: zoned ? 3 : 1, arbitrary: fc.constant<Extent['anchor']>('toZoneEnd') },
      { weight: zoned ? 3 : 0, arbitrary: fc.constant<Extent['anchor']>('toCapEnd') },
      { weight: 1, arbitrary: fc.constant<Extent['anchor']>('toEnd') },
      { weight: 0.3, arbitrary: fc.constant<Extent['anchor']>('zero') },
    ),
    blocks,
    clamp: fc.integer({ min: 0, max: 4 }).map((r) => r !== 0),
    skew: fc.oneof(
      { weight: 6, arbitrary: fc.constant(0) },
      { weight: 2, arbitrary: fc.integer({ min: -2, max: 2 }) },
    ),
    misalign: fc.integer({ min: 0, max: 39 }).map((r) => r === 0),
  });
}

const devArb: fc.Arbitrary<Dev> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Dev>(0) },
  { weight: 1, arbitrary: fc.constant<Dev>(1) },
);

function copyArb(zoned: boolean): fc.Arbitrary<Command> {
  const pair = weighted(
    { weight: 6, arbitrary: fc.constant<[Dev, Dev]>([0, 0]) },
    { weight: 1, arbitrary: fc.constant<[Dev, Dev]>([1, 0]) },
    { weight: 1, arbitrary: fc.constant<[Dev, Dev]>([0, 1]) },
    { weight: 0.5, arbitrary: fc.constant<[Dev, Dev]>([1, 1]) },
  );
  const shape = weighted(
    { weight: 4, arbitrary: fc.constant<CopyShape>('random') },
    { weight: 3, arbitrary: fc.constant<CopyShape>('shift') },
    { weight: 2, arbitrary: fc.constant<CopyShape>('swap') },
    { weight: 2, arbitrary: fc.constant<CopyShape>('chain') },
    { weight: zoned ? 4 : 1, arbitrary: fc.constant<CopyShape>('fill') },
    { weight: 1, arbitrary: fc.constant<CopyShape>('lastBlock') },
  );
  const part = fc.record({ a: spotArb(zoned), b: spotArb(zoned), len: extentArb(zoned) });
  return fc
    .record({
      pair,
      shape,
      parts: fc.array(part, { minLength: 1, maxLength: 8 }),
      order: fc.nat(),
      keepBad: fc.integer({ min: 0, max: 9 }).map((r) => r === 0),
      zoneRepair: fc.integer({ min: 0, max: 3 }).map((r) => r !== 0),
    })
    .map(({ pair, ...rest }) => ({ op: 'copy' as const, from: pair[0], to: pair[1], ...rest }));
}

/** One command; zoned kinds get more zone operations and write-pointer anchors. */
export function commandArb(zoned: boolean): fc.Arbitrary<Command> {
  const spot = spotArb(zoned);
  const ext = extentArb(zoned);
  const z = zoned ? 1 : 0.1; // zone operations on a conventional device: EOPNOTSUPP
  return weighted(
    {
      weight: 10,
      arbitrary: fc.record({
        op: fc.constant('write' as const),
        dev: devArb,
        at: spot,
        len: ext,
        fua: fc.boolean(),
        seed: fc.nat(),
      }),
    },
    {
      weight: 6,
      arbitrary: fc.record({ op: fc.constant('read' as const), dev: devArb, at: spot, len: ext }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('discard' as const), dev: devArb, at: spot, len: ext }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant('writeZeroes' as const),
        dev: devArb,
        at: spot,
        len: ext,
        noUnmap: fc.boolean(),
      }),
    },
    { weight: 0.5, arbitrary: fc.record({ op: fc.constant('flush' as const), dev: devArb }) },
    { weight: 10, arbitrary: copyArb(zoned) },
    {
      weight: 4 * z,
      arbitrary: fc.record({
        op: fc.constant('zone' as const),
        dev: fc.constant<Dev>(0),
        action: fc.constantFrom('open' as const, 'close' as const, 'finish' as const, 'reset' as const),
        at: spot.map((s) => ({ ...s, anchor: 'zoneStart' as Anchor, skew: s.misalign ? s.skew : 0 })),
      }),
    },
    {
      weight: 0.5 * z,
      arbitrary: fc.record({ op: fc.constant('resetAll' as const), dev: fc.constant<Dev>(0) }),
    },
    {
      weight: 3 * z,
      arbitrary: fc.record({
        op: fc.constant('append' as const),
        dev: fc.constant<Dev>(0),
        at: spot.map((s) => ({ ...s, anchor: 'zoneStart' as Anchor, skew: 0 })),
        len: ext,
        seed: fc.nat(),
      }),
    },
    {
      weight: 1 * z,
      arbitrary: fc.record({
        op: fc.constant('report' as const),
        dev: fc.constant<Dev>(0),
        at: spot,
        max: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('verify' as const), dev: devArb }) },
  );
}

export function commandsArb(zoned: boolean, maxLength = 40): fc.Arbitrary<Command[]> {
  return fc.array(commandArb(zoned), { minLength: 1, maxLength, size: 'max' });
}

// ---------------------------------------------------------------------------------------------
// Resolution

/** Bytes off the block size: aligned to 512 but not to 4096, or to nothing at all. */
function misalignment(align: number): number {
  return align === 4096 ? 512 : 256;
}

export function resolveSpot(m: ModelDevice, s: Spot, align = m.lbs): number {
  const zones = m.zones;
  const z = zones ? zones[Math.min(zones.length - 1, Math.floor(s.zone * zones.length))] : undefined;
  const anyOffset = Math.floor(s.frac * (m.size / align)) * align;
  let base: number;
  switch (s.anchor) {
    case 'any':
      base = anyOffset;
      break;
    case 'start':
      base = 0;
      break;
    case 'end':
      base = m.size - align; // the last block
      break;
    case 'zoneStart':
      base = z ? z.start : anyOffset;
      break;
    case 'zoneEnd':
      base = z ? z.start + z.len : anyOffset;
      break;
    case 'wp':
      base = z ? (z.conventional ? z.start + Math.floor((s.frac * z.len) / align) * align : z.wp) : anyOffset;
      break;
    case 'capEnd':
      base = z ? z.start + z.cap : anyOffset;
      break;
  }
  let off = Math.max(0, base + s.skew * align);
  off -= off % align; // zone ends of a 512-byte device are 512-aligned; keep to the copy's alignment
  return s.misalign ? off + misalignment(align) : off;
}

export function resolveExtent(m: ModelDevice, offset: number, e: Extent, align = m.lbs): number {
  if (e.anchor === 'zero') return 0;
  let len: number;
  const inside = offset >= 0 && offset < m.size;
  const z = m.zones && inside ? m.zoneAt(offset) : undefined;
  switch (e.anchor) {
    case 'blocks':
      len = e.blocks * align;
      break;
    case 'toZoneEnd':
      len = z ? z.start + z.len - offset : e.blocks * align;
      break;
    case 'toCapEnd':
      len = z ? z.start + z.cap - offset : e.blocks * align;
      break;
    case 'toEnd':
      len = m.size - offset;
      break;
  }
  len += e.skew * align;
  len -= len % align;
  if (e.clamp && inside) len = Math.min(len, m.size - offset);
  if (len <= 0) len = align;
  return e.misalign ? len + misalignment(align) : len;
}

/** Deterministic, block-distinct bytes from a seed (xorshift32). */
export function pattern(len: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(len);
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < len; i++) buf[i] = (x >>> (8 * (i & 3))) & 0xff;
  return buf;
}

function overlapsAny(r: ModelCopyRange, kept: ModelCopyRange[]): boolean {
  return kept.some((k) => r.dst < k.dst + k.len && k.dst < r.dst + r.len);
}

/** A deterministic shuffle (for the order ranges are listed in). */
function shuffle<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Turns a copy description into ranges; unless keepBad, destinations are kept disjoint. */
export function resolveCopy(
  src: ModelDevice,
  dst: ModelDevice,
  c: Extract<Command, { op: 'copy' }>,
): ModelCopyRange[] {
  const align = Math.max(src.lbs, dst.lbs);
  const parts = c.parts;
  const p0 = parts[0]!;
  let ranges: ModelCopyRange[] = [];
  const lenAt = (m: ModelDevice, at: number, e: Extent) => resolveExtent(m, at, e, align);
  switch (c.shape) {
    case 'random':
      ranges = parts.map((p) => {
        const s = resolveSpot(src, p.a, align);
        const d = resolveSpot(dst, p.b, align);
        return { src: s, dst: d, len: lenAt(dst, d, p.len) };
      });
      break;
    case 'shift': {
      // One region moved by a few blocks over itself, listed as consecutive sub-ranges.
      const start = resolveSpot(src, p0.a, align);
      const total = lenAt(src, start, p0.len) * Math.max(1, Math.min(parts.length, 4));
      const step = (p0.b.skew === 0 ? 1 : p0.b.skew) * align * (1 + Math.floor(p0.b.frac * 4));
      const k = Math.min(parts.length, Math.max(1, total / align));
      let pos = 0;
      for (let i = 0; i < k; i++) {
        const end = Math.floor((total / align) * ((i + 1) / k)) * align;
        if (end > pos)
          ranges.push({ src: start + pos, dst: Math.max(0, start + step) + pos, len: end - pos });
        pos = end;
      }
      break;
    }
    case 'swap': {
      // A ↔ B, B often at a write pointer; more parts add independent ranges.
      const a = resolveSpot(src, p0.a, align);
      let b = resolveSpot(dst, p0.b, align);
      const len = lenAt(dst, b, p0.len);
      if (a < b + len && b < a + len) b = a + len;
      ranges = [
        { src: a, dst: b, len },
        { src: b, dst: a, len },
      ];
      for (const p of parts.slice(1)) {
        const d = resolveSpot(dst, p.b, align);
        ranges.push({ src: resolveSpot(src, p.a, align), dst: d, len: lenAt(dst, d, p.len) });
      }
      break;
    }
    case 'chain': {
      // P0 → P1 → P2 ...: each range reads what the next one overwrites.
      const len = lenAt(src, resolveSpot(src, p0.a, align), p0.len);
      const points = [resolveSpot(src, p0.a, align), ...parts.map((p) => resolveSpot(dst, p.b, align))];
      for (let i = 0; i + 1 < points.length; i++) ranges.push({ src: points[i]!, dst: points[i + 1]!, len });
      break;
    }
    case 'fill': {
      // Destinations back to back from a spot (in zoned devices: often a write pointer).
      let d = resolveSpot(dst, p0.b, align);
      for (const p of parts) {
        const s = resolveSpot(src, p.a, align);
        const len = resolveExtent(
          dst,
          d,
          { ...p.len, anchor: p.len.anchor === 'toEnd' ? 'blocks' : p.len.anchor },
          align,
        );
        ranges.push({ src: s, dst: d, len });
        d += len;
      }
      break;
    }
    case 'lastBlock': {
      const len = lenAt(dst, dst.size - align, p0.len);
      ranges.push({ src: resolveSpot(src, p0.a, align), dst: Math.max(0, dst.size - len), len });
      if (parts.length > 1)
        ranges.push({ src: Math.max(0, src.size - len), dst: resolveSpot(dst, parts[1]!.b, align), len });
      break;
    }
  }
  ranges = shuffle(ranges, c.order);
  if (c.keepBad) return ranges;
  // Otherwise every range is valid: aligned, inside both devices (cut at their ends), with
  // destinations disjoint — one bad range would fail the whole copy, and copies of up to 8
  // ranges would then hardly ever run.
  const kept: ModelCopyRange[] = [];
  for (const r0 of ranges) {
    const len = Math.min(r0.len, src.size - r0.src, dst.size - r0.dst);
    const r = { ...r0, len: len - (len % align) };
    const aligned = r.src % align === 0 && r.dst % align === 0;
    if (aligned && r.len > 0 && r.src >= 0 && r.dst >= 0 && !overlapsAny(r, kept)) kept.push(r);
  }
  if (c.zoneRepair && dst.zones) {
    const landing = landingRanges(dst, kept);
    if (landing.length > 0) return landing;
  }
  return kept.length > 0 ? kept : ranges.slice(0, 1);
}

/**
 * The ranges (in their listed order) that land in a zoned destination: taken in ascending
 * destination order, a range is kept when each of its pieces in a sequential zone starts at
 * the zone's write pointer (as advanced by the ranges kept before it) and fits the capacity.
 */
function landingRanges(dst: ModelDevice, ranges: ModelCopyRange[]): ModelCopyRange[] {
  const wp = new Map<number, number>();
  const keep = new Set<ModelCopyRange>();
  for (const r of [...ranges].sort((a, b) => a.dst - b.dst)) {
    const next = new Map(wp);
    const fits = dst.zonesIn(r.dst, r.len).every((z) => {
      if (z.conventional) return true;
      const from = Math.max(r.dst, z.start);
      const to = Math.min(r.dst + r.len, z.start + z.len);
      const at = next.get(z.start) ?? z.wp;
      if (z.cond === 'full' || from !== at || to > z.start + z.cap) return false;
      next.set(z.start, to);
      return true;
    });
    if (!fits) continue;
    keep.add(r);
    for (const [k, v] of next) wp.set(k, v);
  }
  return ranges.filter((r) => keep.has(r));
}

/** Resolves a command against the models of the world. */
export function resolve(models: readonly [ModelDevice, ModelDevice], c: Command): Op {
  switch (c.op) {
    case 'write': {
      const m = models[c.dev];
      const offset = resolveSpot(m, c.at);
      return {
        op: 'write',
        dev: c.dev,
        offset,
        data: pattern(resolveExtent(m, offset, c.len), c.seed),
        fua: c.fua,
      };
    }
    case 'read':
    case 'discard': {
      const m = models[c.dev];
      const offset = resolveSpot(m, c.at);
      return { op: c.op, dev: c.dev, offset, len: resolveExtent(m, offset, c.len) };
    }
    case 'writeZeroes': {
      const m = models[c.dev];
      const offset = resolveSpot(m, c.at);
      return {
        op: 'writeZeroes',
        dev: c.dev,
        offset,
        len: resolveExtent(m, offset, c.len),
        noUnmap: c.noUnmap,
      };
    }
    case 'flush':
    case 'resetAll':
    case 'verify':
      return { op: c.op, dev: c.dev };
    case 'copy':
      return { op: 'copy', from: c.from, to: c.to, ranges: resolveCopy(models[c.from], models[c.to], c) };
    case 'zone':
      return { op: 'zone', dev: c.dev, action: c.action, zoneStart: resolveSpot(models[c.dev], c.at) };
    case 'append': {
      const m = models[c.dev];
      const zoneStart = resolveSpot(m, c.at);
      const z = m.zones && zoneStart < m.size ? m.zoneAt(zoneStart) : undefined;
      // Lengths relative to the write pointer, so appends reach the capacity end.
      const len = resolveExtent(m, z && !z.conventional ? z.wp : zoneStart, c.len);
      return { op: 'append', dev: c.dev, zoneStart, data: pattern(len, c.seed) };
    }
    case 'report':
      return { op: 'report', dev: c.dev, offset: resolveSpot(models[c.dev], c.at), max: c.max };
  }
}

/** A short description of an op for traces and failure messages. */
export function describe(op: Op): string {
  switch (op.op) {
    case 'write':
      return `write dev${op.dev} ${op.offset}+${op.data.length}${op.fua ? ' fua' : ''}`;
    case 'read':
    case 'discard':
      return `${op.op} dev${op.dev} ${op.offset}+${op.len}`;
    case 'writeZeroes':
      return `writeZeroes dev${op.dev} ${op.offset}+${op.len}${op.noUnmap ? ' noUnmap' : ''}`;
    case 'flush':
    case 'resetAll':
    case 'verify':
      return `${op.op} dev${op.dev}`;
    case 'copy':
      return `copy dev${op.from}→dev${op.to} ${op.ranges.map((r) => `{src: ${r.src}, dst: ${r.dst}, len: ${r.len}}`).join(' ')}`;
    case 'zone':
      return `${op.action}Zone dev${op.dev} ${op.zoneStart}`;
    case 'append':
      return `zoneAppend dev${op.dev} ${op.zoneStart} len ${op.data.length}`;
    case 'report':
      return `reportZones dev${op.dev} ${op.offset} max ${op.max ?? 'all'}`;
  }
}
