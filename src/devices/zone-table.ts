// The zone state machine of a ZNS-style zoned device (NVMe ZNS command set 1.1, with the
// kernel's null_blk zoned.c as the reference): zone conditions, write pointers and the
// open/active resource accounting. Pure and synchronous: ZonedDevice serializes the work on
// each zone and does the I/O; this file only decides whether an operation is allowed and
// what state it leads to. Every rule it enforces throws a BlockError carrying the ZNS status
// name in `zone`.
//
// Only sequential zones that are not EMPTY are stored, so a device with millions of zones
// costs memory only for the zones in use.

import { BlockError, ErrorCode, ZoneError } from '../block/errors.js';
import { ZONE_STATE_NAMES, ZoneState, ZoneType, type Zone } from '../block/zone.js';

export interface ZoneTableGeometry {
  /** Device name, for messages. */
  readonly name: string;
  /** Device size in bytes; the last zone is smaller when size is not a multiple of zoneSize. */
  readonly size: number;
  readonly zoneSize: number;
  /** Writable bytes of a sequential zone (a runt zone: at most its length). */
  readonly zoneCapacity: number;
  /** Conventional zones at the start of the device. */
  readonly conventionalZones: number;
  /** 0 = no limit. */
  readonly maxOpenZones: number;
  /** 0 = no limit. */
  readonly maxActiveZones: number;
}

/** Conditions a test can force on a zone, as null_blk's zone_readonly / zone_offline. */
export type ForcedZoneCondition = 'read-only' | 'offline' | 'empty';

interface SeqZone {
  state: ZoneState;
  /** Absolute write pointer. */
  wp: number;
  /**
   * Bytes [start, dataEnd) hold written data; above it the zone reads as zeroes. Equal to wp
   * except after finish, which moves wp to the capacity end without writing.
   */
  dataEnd: number;
}

const S = ZoneState;

function zoneError(code: ErrorCode, kind: ZoneError, message: string, offset?: number): BlockError {
  return new BlockError(code, message, { zone: kind, ...(offset !== undefined ? { offset } : {}) });
}

export class ZoneTable {
  readonly geometry: ZoneTableGeometry;
  readonly nrZones: number;
  /** Sequential zones that are not EMPTY. */
  readonly #zones = new Map<number, SeqZone>();
  /** Implicitly open zones, least recently written first (the LRU close order). */
  readonly #implicitOpen = new Set<number>();
  #explicitOpen = 0;
  #closed = 0;
  /** Zones with a write between checkWrite and endWrite. */
  readonly #writing = new Set<number>();

  constructor(geometry: ZoneTableGeometry) {
    this.geometry = geometry;
    this.nrZones = Math.ceil(geometry.size / geometry.zoneSize);
  }

  get openZones(): number {
    return this.#implicitOpen.size + this.#explicitOpen;
  }
  get activeZones(): number {
    return this.openZones + this.#closed;
  }

  indexOf(offset: number): number {
    return Math.floor(offset / this.geometry.zoneSize);
  }
  isConventional(z: number): boolean {
    return z < this.geometry.conventionalZones;
  }
  start(z: number): number {
    return z * this.geometry.zoneSize;
  }
  /** Bytes from the start of zone z to the start of the next (less for the runt zone). */
  length(z: number): number {
    return Math.min(this.geometry.zoneSize, this.geometry.size - this.start(z));
  }
  capacity(z: number): number {
    const len = this.length(z);
    return this.isConventional(z) ? len : Math.min(this.geometry.zoneCapacity, len);
  }
  state(z: number): ZoneState {
    if (this.isConventional(z)) return S.NOT_WP;
    return this.#zones.get(z)?.state ?? S.EMPTY;
  }
  /** The absolute write pointer; start + capacity for FULL, READ_ONLY and OFFLINE zones. */
  writePointer(z: number): number {
    if (this.isConventional(z)) return this.start(z) + this.length(z);
    return this.#zones.get(z)?.wp ?? this.start(z);
  }

  /**
   * End of the bytes of zone z that come from the backing store; above it a read returns
   * zeroes (ZNS: unwritten blocks are deallocated). Fails ZONE_OFFLINE for an offline zone.
   */
  readableEnd(z: number, op: string): number {
    if (this.isConventional(z)) return this.start(z) + this.length(z);
    const e = this.#zones.get(z);
    if (e?.state === S.OFFLINE)
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_OFFLINE,
        `${op} on ${this.#where(z)}: zone is offline`,
        this.start(z),
      );
    return e?.dataEnd ?? this.start(z);
  }

  zone(z: number): Zone {
    const conventional = this.isConventional(z);
    return {
      start: this.start(z),
      size: this.length(z),
      capacity: this.capacity(z),
      writePointer: this.writePointer(z),
      type: conventional ? ZoneType.CONVENTIONAL : ZoneType.SEQUENTIAL_WRITE_REQUIRED,
      state: this.state(z),
    };
  }

  /** Sequential zones that are not EMPTY, ascending. */
  usedZones(): number[] {
    return [...this.#zones.keys()].sort((a, b) => a - b);
  }

  /**
   * Checks a write of len bytes at offset into sequential zone z (write, write zeroes, zone
   * append, copy destination) and opens the zone implicitly when it is EMPTY or CLOSED. `wp`
   * lets a multi-range copy check a range against the write pointer its earlier ranges will
   * leave. Every successful call must be followed by endWrite(z, bytesWritten).
   */
  checkWrite(z: number, offset: number, len: number, op: string, wp = this.writePointer(z)): void {
    const state = this.state(z);
    const start = this.start(z);
    const capEnd = start + this.capacity(z);
    const where = this.#where(z);
    if (state === S.OFFLINE)
      throw zoneError(ErrorCode.EIO, ZoneError.ZONE_OFFLINE, `${op} on ${where}: zone is offline`, offset);
    if (state === S.READ_ONLY)
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_READ_ONLY,
        `${op} on ${where}: zone is read-only`,
        offset,
      );
    if (state === S.FULL || wp >= capEnd)
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_FULL,
        `${op} on ${where}: zone is full; reset it first`,
        offset,
      );
    if (offset !== wp)
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_INVALID_WRITE,
        `${op} on ${where}: offset ${offset} is not at the write pointer ${wp}; sequential zones take writes only at the write pointer (or use zone append)`,
        offset,
      );
    if (offset + len > start + this.length(z))
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_BOUNDARY_ERROR,
        `${op} on ${where}: bytes ${offset}..${offset + len} cross the end of the zone at ${start + this.length(z)}`,
        offset,
      );
    if (offset + len > capEnd)
      throw zoneError(
        ErrorCode.EIO,
        ZoneError.ZONE_BOUNDARY_ERROR,
        `${op} on ${where}: bytes ${offset}..${offset + len} go past the zone capacity end ${capEnd} (${capEnd - wp} bytes left)`,
        offset,
      );
    if (state === S.EMPTY || state === S.CLOSED) {
      this.#acquire(z, state, op);
      this.#set(z, S.IMPLICIT_OPEN);
    } else if (state === S.IMPLICIT_OPEN) {
      // Most recently written moves to the back of the LRU order.
      this.#implicitOpen.delete(z);
      this.#implicitOpen.add(z);
    }
    this.#writing.add(z);
  }

  /**
   * Ends the write(s) checked on zone z: the write pointer advances over the `written` bytes
   * that reached the backing store, and nothing more, so a failed write never leaves the
   * write pointer past unwritten data. Reaching the capacity makes the zone FULL. A zone that
   * the failed write opened and that holds no data goes back to EMPTY, freeing its resources.
   */
  endWrite(z: number, written: number): void {
    this.#writing.delete(z);
    const e = this.#zones.get(z);
    if (!e) return; // nothing was opened (cannot happen after a successful checkWrite)
    const start = this.start(z);
    if (written > 0) {
      e.wp += written;
      e.dataEnd = e.wp;
      if (e.wp >= start + this.capacity(z))
        this.#set(z, S.FULL, { wp: start + this.capacity(z), dataEnd: e.wp });
    } else if (e.wp === start && (e.state === S.IMPLICIT_OPEN || e.state === S.CLOSED)) {
      this.#set(z, S.EMPTY);
    }
  }

  /** Explicit open: EMPTY, IMPLICIT_OPEN, CLOSED → EXPLICIT_OPEN; EXPLICIT_OPEN is a no-op. */
  open(z: number, op: string): void {
    const state = this.#manageable(z, op);
    switch (state) {
      case S.EXPLICIT_OPEN:
        return;
      case S.EMPTY:
      case S.CLOSED:
        this.#acquire(z, state, op);
        break;
      case S.IMPLICIT_OPEN:
        break;
      default:
        throw this.#invalidTransition(z, op, state);
    }
    this.#set(z, S.EXPLICIT_OPEN);
  }

  /** Close: an open zone becomes CLOSED, or EMPTY when it holds no data; CLOSED is a no-op. */
  close(z: number, op: string): void {
    const state = this.#manageable(z, op);
    if (state === S.CLOSED) return;
    if (state !== S.IMPLICIT_OPEN && state !== S.EXPLICIT_OPEN) throw this.#invalidTransition(z, op, state);
    this.#closeOpen(z);
  }

  /** Finish: EMPTY, open or CLOSED → FULL with the write pointer at the capacity end; FULL is a no-op. */
  finish(z: number, op: string): void {
    const state = this.#manageable(z, op);
    if (state === S.FULL) return;
    if (state === S.READ_ONLY || state === S.OFFLINE) throw this.#invalidTransition(z, op, state);
    const start = this.start(z);
    this.#set(z, S.FULL, { wp: start + this.capacity(z), dataEnd: this.#zones.get(z)?.dataEnd ?? start });
  }

  /**
   * Reset: any state but READ_ONLY and OFFLINE → EMPTY, write pointer at the start. Returns
   * the end of the data the zone held, so the caller can free [start, end) on the backing.
   */
  reset(z: number, op: string): number {
    const state = this.#manageable(z, op);
    if (state === S.READ_ONLY || state === S.OFFLINE) throw this.#invalidTransition(z, op, state);
    const dataEnd = this.#zones.get(z)?.dataEnd ?? this.start(z);
    this.#set(z, S.EMPTY);
    return dataEnd;
  }

  /**
   * Test hook: forces a condition. READ_ONLY and OFFLINE free the zone's open/active
   * resources (null_blk finishes the zone first) and keep its data; 'empty' puts the zone
   * back to EMPTY.
   */
  force(z: number, condition: ForcedZoneCondition): void {
    const start = this.start(z);
    const dataEnd = this.#zones.get(z)?.dataEnd ?? start;
    const wp = start + this.capacity(z);
    if (condition === 'empty') this.#set(z, S.EMPTY);
    else this.#set(z, condition === 'read-only' ? S.READ_ONLY : S.OFFLINE, { wp, dataEnd });
  }

  #where(z: number): string {
    return `${this.geometry.name} zone ${z} (start ${this.start(z)}, ${ZONE_STATE_NAMES[this.state(z)]})`;
  }

  /** The state of a sequential zone for a management operation; conventional zones are EINVAL. */
  #manageable(z: number, op: string): ZoneState {
    if (this.isConventional(z))
      throw zoneError(
        ErrorCode.EINVAL,
        ZoneError.INVALID_ZONE_STATE_TRANSITION,
        `${op} on ${this.#where(z)}: conventional zones have no write pointer to manage`,
        this.start(z),
      );
    return this.state(z);
  }

  #invalidTransition(z: number, op: string, state: ZoneState): BlockError {
    return zoneError(
      ErrorCode.EIO,
      ZoneError.INVALID_ZONE_STATE_TRANSITION,
      `${op} on ${this.#where(z)}: not allowed from the ${ZONE_STATE_NAMES[state]} state`,
      this.start(z),
    );
  }

  /**
   * Takes the resources a zone leaving `from` (EMPTY or CLOSED) needs to become open:
   * an active slot from EMPTY (checked first, as null_blk does), then an open slot, closing
   * the least recently written implicitly open zone when the open limit is reached. Explicitly
   * opened zones are never closed for room.
   */
  #acquire(z: number, from: ZoneState, op: string): void {
    const { maxOpenZones, maxActiveZones } = this.geometry;
    if (from === S.EMPTY && maxActiveZones > 0 && this.activeZones >= maxActiveZones)
      throw zoneError(
        ErrorCode.EOVERFLOW,
        ZoneError.TOO_MANY_ACTIVE_ZONES,
        `${op} on ${this.#where(z)}: ${this.activeZones} zones are active (limit maxActiveZones ${maxActiveZones}); finish or reset one`,
        this.start(z),
      );
    if (maxOpenZones > 0 && this.openZones >= maxOpenZones) {
      const victim = this.#implicitOpen.values().next();
      if (victim.done)
        throw zoneError(
          ErrorCode.ETOOMANYREFS,
          ZoneError.TOO_MANY_OPEN_ZONES,
          `${op} on ${this.#where(z)}: ${this.openZones} zones are explicitly open (limit maxOpenZones ${maxOpenZones}); close or finish one`,
          this.start(z),
        );
      this.#closeOpen(victim.value);
    }
  }

  /** An open zone with data becomes CLOSED; without data (and no write in flight) EMPTY. */
  #closeOpen(z: number): void {
    const e = this.#zones.get(z);
    if (e && e.wp === this.start(z) && !this.#writing.has(z)) this.#set(z, S.EMPTY);
    else this.#set(z, S.CLOSED);
  }

  /** The one place a sequential zone changes state, so the resource counts stay exact. */
  #set(z: number, next: ZoneState, pos?: { wp: number; dataEnd: number }): void {
    const e = this.#zones.get(z);
    const prev = e?.state ?? S.EMPTY;
    if (prev === S.IMPLICIT_OPEN) this.#implicitOpen.delete(z);
    else if (prev === S.EXPLICIT_OPEN) this.#explicitOpen--;
    else if (prev === S.CLOSED) this.#closed--;
    if (next === S.IMPLICIT_OPEN) this.#implicitOpen.add(z);
    else if (next === S.EXPLICIT_OPEN) this.#explicitOpen++;
    else if (next === S.CLOSED) this.#closed++;
    if (next === S.EMPTY) {
      this.#zones.delete(z);
      return;
    }
    const start = this.start(z);
    const wp = pos?.wp ?? e?.wp ?? start;
    const dataEnd = pos?.dataEnd ?? e?.dataEnd ?? start;
    if (e) {
      e.state = next;
      e.wp = wp;
      e.dataEnd = dataEnd;
    } else this.#zones.set(z, { state: next, wp, dataEnd });
  }
}
