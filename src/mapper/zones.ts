// When a mapping is zoned. A mapped device is zoned only when every target maps whole zones
// of zoned components, contiguously, and all components share one zone size and capacity:
// then each zone of the mapped device is exactly one zone of a component and zone
// operations pass straight through (dm's zoned-target rules, simplified). Anything else —
// a conventional component, a target starting or ending inside a zone, mixed zone
// geometry — makes the mapping a conventional device.

import type { ZonedLimits } from '../block/limits.js';
import type { Table } from './table.js';

function minNotZero(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}

/** The zoned limits of the mapping, or undefined when it is not zoned (see above). */
export function tableZonedLimits(table: Table): ZonedLimits | undefined {
  let geometry: ZonedLimits | undefined;
  let maxOpenZones = 0;
  let maxActiveZones = 0;
  let maxZoneAppendBytes = Infinity;
  const last = table.targets.length - 1;
  for (const [i, t] of table.targets.entries()) {
    const e = t.map(0);
    if (e.length < t.length) return undefined; // not contiguous on one component (striped)
    const z = e.device.limits.zoned;
    if (!z) return undefined;
    if (geometry && (z.zoneSize !== geometry.zoneSize || z.zoneCapacity !== geometry.zoneCapacity))
      return undefined;
    geometry ??= z;
    if (t.start % z.zoneSize !== 0 || e.offset % z.zoneSize !== 0) return undefined;
    // A smaller last zone (the kernel's runt zone) may only end the mapping, as it ends its device.
    const wholeZones = t.length % z.zoneSize === 0;
    const endsInRunt = i === last && e.offset + t.length === e.device.size;
    if (!wholeZones && !endsInRunt) return undefined;
    maxOpenZones = minNotZero(maxOpenZones, z.maxOpenZones);
    maxActiveZones = minNotZero(maxActiveZones, z.maxActiveZones);
    maxZoneAppendBytes = Math.min(maxZoneAppendBytes, z.maxZoneAppendBytes);
  }
  if (!geometry) return undefined;
  // Every open zone may sit on one component, so the smallest component limit is the safe one.
  if (maxActiveZones && maxOpenZones > maxActiveZones) maxOpenZones = maxActiveZones;
  return {
    zoneSize: geometry.zoneSize,
    zoneCapacity: geometry.zoneCapacity,
    nrZones: Math.ceil(table.size / geometry.zoneSize),
    maxOpenZones,
    maxActiveZones,
    maxZoneAppendBytes,
  };
}
