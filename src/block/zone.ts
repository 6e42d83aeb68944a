// The zone model shared by zoned devices, the mapper and the exports (ZNS / blkzoned).

/** Zone types, numbered as NVMe ZNS and the kernel's BLK_ZONE_TYPE_* number them. */
export const ZoneType = {
  CONVENTIONAL: 1,
  SEQUENTIAL_WRITE_REQUIRED: 2,
} as const;
export type ZoneType = (typeof ZoneType)[keyof typeof ZoneType];

/** Zone states, numbered as the kernel's BLK_ZONE_COND_* (ZNS uses the same order). */
export const ZoneState = {
  NOT_WP: 0x0, // conventional zone: no write pointer
  EMPTY: 0x1,
  IMPLICIT_OPEN: 0x2,
  EXPLICIT_OPEN: 0x3,
  CLOSED: 0x4,
  READ_ONLY: 0xd,
  FULL: 0xe,
  OFFLINE: 0xf,
} as const;
export type ZoneState = (typeof ZoneState)[keyof typeof ZoneState];

export const ZONE_STATE_NAMES: Record<ZoneState, string> = {
  0x0: 'not-wp',
  0x1: 'empty',
  0x2: 'implicit-open',
  0x3: 'explicit-open',
  0x4: 'closed',
  0xd: 'read-only',
  0xe: 'full',
  0xf: 'offline',
};

/** One zone as reportZones describes it. Offsets and sizes in bytes. */
export interface Zone {
  readonly start: number;
  readonly size: number;
  /** Writable bytes from start; equals size for conventional zones. */
  readonly capacity: number;
  /** Absolute write pointer; start + capacity when full; meaningless for conventional zones. */
  readonly writePointer: number;
  readonly type: ZoneType;
  readonly state: ZoneState;
}

/** True for states that count against maxOpenZones. */
export function isOpen(state: ZoneState): boolean {
  return state === ZoneState.IMPLICIT_OPEN || state === ZoneState.EXPLICIT_OPEN;
}

/** True for states that count against maxActiveZones. */
export function isActive(state: ZoneState): boolean {
  return isOpen(state) || state === ZoneState.CLOSED;
}
