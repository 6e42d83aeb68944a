// Bugs the property test found in code it does not own, kept out of the generated sequences
// until they are fixed — each one named, with the condition that triggers it, so the rest of
// the property keeps running. TSBLK_PROPERTY_STRICT=1 turns every exclusion off (the
// property then reproduces the bugs). Remove an entry when its fix lands.

import type { BlockDevice } from '../../src/block/device.js';
import type { Op } from './commands.js';
import type { ModelDevice } from './reference.js';

export interface KnownBug {
  readonly id: string;
  readonly summary: string;
  /** True when `op` on `devices` (in the state `models` describe) would hit the bug. */
  readonly hits: (op: Op, devices: readonly BlockDevice[], models: readonly ModelDevice[]) => boolean;
}

const strict = process.env.TSBLK_PROPERTY_STRICT === '1';

/**
 * True when the pieces of a same-device copy may depend on each other in a cycle (so
 * issueCopy must buffer them together or send them as one request): some ranges reach each
 * other through "reads what the other writes" edges — on a zoned device also through "writes
 * below the other in one zone" edges, and then a range shifted over itself counts too.
 */
export function mayFormCycle(op: Extract<Op, { op: 'copy' }>, zoneSize: number): boolean {
  const rs = op.ranges;
  const n = rs.length;
  const overlap = (a: number, al: number, b: number, bl: number) => a < b + bl && b < a + al;
  const zonesMeet = (a: number, al: number, b: number, bl: number) =>
    zoneSize > 0 &&
    Math.floor(a / zoneSize) <= Math.floor((b + bl - 1) / zoneSize) &&
    Math.floor(b / zoneSize) <= Math.floor((a + al - 1) / zoneSize);
  if (zoneSize > 0 && rs.some((r) => overlap(r.src, r.len, r.dst, r.len))) return true;
  const reach = rs.map((a, i) =>
    rs.map(
      (b, j) =>
        i !== j &&
        (overlap(a.src, a.len, b.dst, b.len) || (zonesMeet(a.dst, a.len, b.dst, b.len) && a.dst < b.dst)),
    ),
  );
  for (let k = 0; k < n; k++)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) if (reach[i]![k] && reach[k]![j]) reach[i]![j] = true;
  return rs.some((_, i) => rs.some((_, j) => i !== j && reach[i]![j] && reach[j]![i]));
}

export const KNOWN_BUGS: readonly KnownBug[] = [
  // Fixed, kept as examples of the shape of an entry:
  //  - issuecopy-cycle-e2big (fixed in c7c95c7): a cycle emulated by issueCopy in auto mode read
  //    whole offload-sized pieces, E2BIG above maxTransferBytes — excluded when
  //    mayFormCycle(op) and min(copy.maxBytes, copy.maxRangeBytes) > maxTransferBytes.
  //  - zoned-copy-cut-memmove: ZonedDevice.copy zero-filled early destinations before later
  //    ranges read them — excluded when mayFormCycle(op), a source reached above a zone's data
  //    end and a conventional-zone destination overlapped another range's source.
];

/** The known bug `op` would hit, if any (none in strict mode). */
export function knownBugHit(
  op: Op,
  devices: readonly BlockDevice[],
  models: readonly ModelDevice[],
): KnownBug | undefined {
  if (strict) return undefined;
  return KNOWN_BUGS.find((b) => b.hits(op, devices, models));
}
