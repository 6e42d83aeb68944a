// FaultDevice: dm-error, dm-flakey and dm-delay in one wrapper around another BlockDevice.
// It has the inner device's size and the inner device's limits object itself (not a copy),
// so tuning copy.maxBytes on either is seen by both.
//
// - Error rules `{ ops, offset, length, code?, afterCount?, times? }` can be added and
//   removed while I/O runs. An operation matches a rule when its kind is in `ops` and its
//   byte range overlaps [offset, offset+length). The first `afterCount` matching operations
//   pass; after that the rule injects `code` (default EIO), at most `times` times.
//   - read, write, discard and writeZeroes that hit a firing rule fail whole: no byte of the
//     request is read or written (like dm-error on a bio), so a failed write never leaves a
//     half-written request behind.
//   - flush has no range: a rule listing 'flush' matches every flush.
//   - 'zone' covers reportZones (the zones it would report), open/close/finish/reset of a
//     zone (the whole zone), resetAllZones (the whole device) and zoneAppend (the zone;
//     append also matches 'write' rules).
//   - copy: a range matches 'copy' rules on its source or destination, 'read' rules on its
//     source and 'write' rules on its destination (a bad block fails an offloaded copy as it
//     fails a read). Ranges are examined in order, each counting as one operation; at the
//     first range with a firing rule the device copies every earlier range plus the
//     block-aligned prefix of that range that ends before the first faulty byte, in one
//     inner copy request (keeping the as-if-all-sources-read-first rule), then fails with a
//     CopyError whose `completed` is exactly that: len, ..., len, prefix, 0, ..., 0.
// - Delays `{ ms, jitterMs? }` per operation kind run before the operation (an abort while
//   waiting fails it with ECANCELED). A delay is never shorter than `ms`.
// - Flakey: with `{ upMs, downMs }` the device alternates up and down intervals counted from
//   when the schedule was set (dm-flakey's up/down). While down every operation fails with
//   ENODEV (or the chosen code). `down()` / `up()` force it by hand; a manual down wins over
//   the schedule until `up()`.
// - blockStatus passes through to the inner device. It fails while the device is down (every
//   operation does), but error rules and delays do not apply: it reads no data, so a bad block
//   shows when it is read, and a client's block-status queries do not shift the afterCount
//   of read rules.
// - close() flushes through the faults but leaves the inner device open: whoever opened the
//   inner device owns it.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  BlockDevice,
  BlockStatusExtent,
  CopyPathBytes,
  CopyRange,
  DeviceCopyOptions,
  DeviceDetails,
  IoOptions,
  WriteOptions,
  WriteZeroesOptions,
} from '../block/device.js';
import { BlockDeviceBase } from '../block/base.js';
import { BlockError, CopyError, ErrorCode, abortError } from '../block/errors.js';
import type { Zone } from '../block/zone.js';

export type FaultOp = 'read' | 'write' | 'flush' | 'discard' | 'writeZeroes' | 'copy' | 'zone';
export const FAULT_OPS: readonly FaultOp[] = [
  'read',
  'write',
  'flush',
  'discard',
  'writeZeroes',
  'copy',
  'zone',
];

export interface FaultRule {
  /** Operation kinds the rule applies to. */
  ops: readonly FaultOp[];
  /** First byte of the faulty range. */
  offset: number;
  /** Bytes in the faulty range (> 0). */
  length: number;
  /** Error to inject; default EIO. */
  code?: ErrorCode;
  /** Let this many matching operations pass before injecting; default 0. */
  afterCount?: number;
  /** Inject at most this many times; default unlimited. */
  times?: number;
}

/** A rule as the device holds it, with its counters. */
export interface FaultRuleStatus extends Readonly<FaultRule> {
  readonly id: number;
  /** Matching operations seen so far. */
  readonly matched: number;
  /** Errors this rule injected. */
  readonly injected: number;
}

export interface FaultDelay {
  /** Minimum delay in milliseconds. */
  ms: number;
  /** Extra random delay, uniform in [0, jitterMs). */
  jitterMs?: number;
}

export interface FlakeyIntervals {
  upMs: number;
  downMs: number;
  /** Error while down; default ENODEV. */
  code?: ErrorCode;
}

export interface FaultDeviceOptions {
  /** Default `<inner>-fault`. */
  name?: string;
  rules?: readonly FaultRule[];
  delays?: Partial<Record<FaultOp, FaultDelay>>;
  flakey?: FlakeyIntervals;
  /** Clock in milliseconds for the flakey schedule (tests pass a fake one); default performance.now. */
  now?: () => number;
  /** Random source in [0, 1) for jitter; default Math.random. */
  random?: () => number;
}

interface RuleState {
  readonly id: number;
  readonly rule: Readonly<Required<Omit<FaultRule, 'times'>>> & { readonly times: number | undefined };
  matched: number;
  injected: number;
}

/** One side of an operation that rules are matched against. */
interface Span {
  readonly ops: readonly FaultOp[];
  readonly offset: number;
  readonly length: number;
}

interface Hit {
  readonly state: RuleState;
  /** First faulty byte, absolute. */
  readonly at: number;
  /** First faulty byte relative to the operation's start. */
  readonly rel: number;
}

function invalid(msg: string): never {
  throw new BlockError(ErrorCode.EINVAL, msg);
}

function checkMs(what: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    invalid(`${what} must be a non-negative number, got ${String(v)}`);
}

export class FaultDevice extends BlockDeviceBase {
  readonly kind = 'fault';
  readonly inner: BlockDevice;
  #rules: RuleState[] = [];
  #nextRuleId = 1;
  #delays = new Map<FaultOp, FaultDelay>();
  #flakey: FlakeyIntervals | undefined;
  #flakeyEpoch = 0;
  #manualDown: ErrorCode | undefined;
  #injected = 0;
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(inner: BlockDevice, options: FaultDeviceOptions = {}) {
    // The inner limits object itself: copy tuning (setCopyMaxBytes) is shared.
    super(options.name ?? `${inner.name}-fault`, inner.size, inner.limits);
    this.inner = inner;
    this.#now = options.now ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    for (const r of options.rules ?? []) this.addRule(r);
    for (const [op, d] of Object.entries(options.delays ?? {}) as Array<[FaultOp, FaultDelay | undefined]>)
      this.setDelay(op, d);
    if (options.flakey) this.setFlakey(options.flakey);
  }

  /** Adds an error rule and returns its id (for removeRule). */
  addRule(rule: FaultRule): number {
    const where = `fault rule on ${this.name}`;
    if (!Array.isArray(rule.ops) || rule.ops.length === 0)
      invalid(`${where}: ops must list at least one of ${FAULT_OPS.join(', ')}`);
    for (const op of rule.ops)
      if (!FAULT_OPS.includes(op))
        invalid(`${where}: unknown op '${String(op)}'; use ${FAULT_OPS.join(', ')}`);
    if (!Number.isSafeInteger(rule.offset) || rule.offset < 0)
      invalid(`${where}: offset ${rule.offset} must be a non-negative integer`);
    if (!Number.isSafeInteger(rule.length) || rule.length <= 0)
      invalid(`${where}: length ${rule.length} must be a positive integer`);
    const code = rule.code ?? ErrorCode.EIO;
    if (!(code in ErrorCode)) invalid(`${where}: unknown error code '${String(code)}'`);
    const afterCount = rule.afterCount ?? 0;
    if (!Number.isSafeInteger(afterCount) || afterCount < 0)
      invalid(`${where}: afterCount ${afterCount} must be ≥ 0`);
    if (rule.times !== undefined && (!Number.isSafeInteger(rule.times) || rule.times < 1))
      invalid(`${where}: times ${rule.times} must be a positive integer (omit it for no limit)`);
    const id = this.#nextRuleId++;
    this.#rules.push({
      id,
      rule: {
        ops: [...rule.ops],
        offset: rule.offset,
        length: rule.length,
        code,
        afterCount,
        times: rule.times,
      },
      matched: 0,
      injected: 0,
    });
    return id;
  }

  /** Removes one rule; false when no rule has that id. */
  removeRule(id: number): boolean {
    const before = this.#rules.length;
    this.#rules = this.#rules.filter((s) => s.id !== id);
    return this.#rules.length !== before;
  }

  clearRules(): void {
    this.#rules = [];
  }

  /** The rules with their counters, oldest first. */
  get rules(): FaultRuleStatus[] {
    return this.#rules.map(({ id, rule, matched, injected }) => ({
      id,
      ops: [...rule.ops],
      offset: rule.offset,
      length: rule.length,
      code: rule.code,
      afterCount: rule.afterCount,
      ...(rule.times === undefined ? {} : { times: rule.times }),
      matched,
      injected,
    }));
  }

  /** Errors injected so far (rules and down intervals). */
  get injected(): number {
    return this.#injected;
  }

  /** Sets or (with undefined) removes the delay of one operation kind. */
  setDelay(op: FaultOp, delay: FaultDelay | undefined): void {
    if (!FAULT_OPS.includes(op)) invalid(`delay on ${this.name}: unknown op '${String(op)}'`);
    if (delay === undefined) {
      this.#delays.delete(op);
      return;
    }
    checkMs(`delay.${op}.ms on ${this.name}`, delay.ms);
    if (delay.jitterMs !== undefined) checkMs(`delay.${op}.jitterMs on ${this.name}`, delay.jitterMs);
    this.#delays.set(op, { ...delay });
  }

  /** Starts (or with undefined stops) the up/down schedule; the first up interval starts now. */
  setFlakey(flakey: FlakeyIntervals | undefined): void {
    if (flakey) {
      checkMs(`flakey.upMs on ${this.name}`, flakey.upMs);
      checkMs(`flakey.downMs on ${this.name}`, flakey.downMs);
      if (flakey.upMs + flakey.downMs <= 0) invalid(`flakey on ${this.name}: upMs + downMs must be positive`);
      if (flakey.code !== undefined && !(flakey.code in ErrorCode))
        invalid(`flakey on ${this.name}: unknown code`);
      this.#flakeyEpoch = this.#now();
    }
    this.#flakey = flakey ? { ...flakey } : undefined;
  }

  /** Takes the device down until up(): every operation fails with `code` (default ENODEV). */
  down(code: ErrorCode = ErrorCode.ENODEV): void {
    if (!(code in ErrorCode)) invalid(`down on ${this.name}: unknown code '${String(code)}'`);
    this.#manualDown = code;
  }

  /** Ends a manual down; a flakey schedule, if set, still applies. */
  up(): void {
    this.#manualDown = undefined;
  }

  /** True while operations fail because the device is down (by hand or by schedule). */
  get isDown(): boolean {
    return this.#downCode() !== undefined;
  }

  override canCopyFrom(source: BlockDevice): boolean {
    return source === this && this.limits.copy !== undefined && this.inner.canCopyFrom(this.inner);
  }

  override details(): DeviceDetails {
    return {
      inner: this.inner.name,
      rules: this.#rules.length,
      injected: this.#injected,
      down: this.isDown,
      ...(this.#flakey ? { flakeyUpMs: this.#flakey.upMs, flakeyDownMs: this.#flakey.downMs } : {}),
    };
  }

  #downCode(): ErrorCode | undefined {
    if (this.#manualDown) return this.#manualDown;
    const f = this.#flakey;
    if (!f) return undefined;
    const phase = (this.#now() - this.#flakeyEpoch) % (f.upMs + f.downMs);
    return phase >= f.upMs ? (f.code ?? ErrorCode.ENODEV) : undefined;
  }

  /** Waits the configured delay of `op`: never less than ms, measured on the monotonic clock. */
  async #delay(op: FaultOp, signal: AbortSignal | undefined): Promise<void> {
    const d = this.#delays.get(op);
    if (!d) return;
    const total = d.ms + (d.jitterMs ? this.#random() * d.jitterMs : 0);
    const end = performance.now() + total;
    try {
      // Timers may fire a fraction of a millisecond early; loop until the time has passed.
      for (let left = total; left > 0; left = end - performance.now())
        await sleep(Math.ceil(left), undefined, { signal });
    } catch {
      throw abortError(signal, `${op} on ${this.name}`);
    }
  }

  /** Delay, then down check, then rules: the order dm-delay over dm-flakey would give. */
  async #enter(op: FaultOp, signal: AbortSignal | undefined, spans: readonly Span[]): Promise<void> {
    await this.#delay(op, signal);
    this.#checkUp(op);
    const hit = this.#match(spans);
    if (hit) throw this.#inject(op, hit);
  }

  #checkUp(op: FaultOp | 'block-status'): void {
    const code = this.#downCode();
    if (code === undefined) return;
    this.#injected++;
    const why = this.#manualDown ? 'taken down by hand' : 'in a flakey down interval';
    throw new BlockError(code, `${op} on ${this.name}: device is down (${why})`);
  }

  /**
   * Counts the operation against every matching rule and returns the firing rule with the
   * earliest faulty byte (ties: the oldest rule), or undefined.
   */
  #match(spans: readonly Span[]): Hit | undefined {
    let best: Hit | undefined;
    for (const s of this.#rules) {
      const r = s.rule;
      let at = Infinity;
      let rel = Infinity;
      for (const span of spans) {
        if (!span.ops.some((op) => r.ops.includes(op))) continue;
        const lo = Math.max(span.offset, r.offset);
        const overlaps =
          span.length === Infinity || lo < Math.min(span.offset + span.length, r.offset + r.length);
        if (!overlaps) continue;
        const spanRel = span.length === Infinity ? 0 : lo - span.offset;
        if (spanRel < rel) {
          rel = spanRel;
          at = span.length === Infinity ? r.offset : lo;
        }
      }
      if (rel === Infinity) continue;
      s.matched++;
      const fires = s.matched > r.afterCount && (r.times === undefined || s.injected < r.times);
      if (fires && (!best || rel < best.rel)) best = { state: s, at, rel };
    }
    return best;
  }

  #inject(op: FaultOp | string, hit: Hit): BlockError {
    hit.state.injected++;
    this.#injected++;
    const r = hit.state.rule;
    return new BlockError(
      r.code,
      `${op} on ${this.name}: injected fault (rule ${hit.state.id}, bytes ${r.offset}..${r.offset + r.length}) at byte ${hit.at}`,
      { offset: hit.at },
    );
  }

  protected async doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    await this.#enter('read', options?.signal, [{ ops: ['read'], offset, length: buffer.length }]);
    await this.inner.read(offset, buffer, options);
  }

  protected async doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.#enter('write', options?.signal, [{ ops: ['write'], offset, length: data.length }]);
    await this.inner.write(offset, data, options);
  }

  protected async doFlush(options?: IoOptions): Promise<void> {
    await this.#enter('flush', options?.signal, [{ ops: ['flush'], offset: 0, length: Infinity }]);
    await this.inner.flush(options);
  }

  protected async doClose(): Promise<void> {}

  protected override async doBlockStatus(
    offset: number,
    length: number,
    options?: IoOptions,
  ): Promise<BlockStatusExtent[]> {
    this.#checkUp('block-status');
    return this.inner.blockStatus(offset, length, options);
  }

  protected override async doDiscard(offset: number, length: number, options?: IoOptions): Promise<void> {
    await this.#enter('discard', options?.signal, [{ ops: ['discard'], offset, length }]);
    await this.inner.discard(offset, length, options);
  }

  protected override async doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    await this.#enter('writeZeroes', options?.signal, [{ ops: ['writeZeroes'], offset, length }]);
    await this.inner.writeZeroes(offset, length, options);
  }

  protected override async doCopy(
    _source: BlockDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    await this.#delay('copy', options.signal);
    this.#checkUp('copy');
    // Find the first range (in order) with a firing rule and its first faulty byte.
    const lbs = this.limits.logicalBlockSize;
    let stop = ranges.length;
    let prefix = 0;
    let fault: BlockError | undefined;
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      const hit = this.#match([
        { ops: ['copy', 'read'], offset: r.src, length: r.len },
        { ops: ['copy', 'write'], offset: r.dst, length: r.len },
      ]);
      if (hit) {
        stop = i;
        prefix = hit.rel - (hit.rel % lbs);
        fault = this.#inject('copy', hit);
        break;
      }
    }
    const todo: CopyRange[] = ranges.slice(0, stop);
    if (prefix > 0) todo.push({ src: ranges[stop]!.src, dst: ranges[stop]!.dst, len: prefix });
    let done: CopyPathBytes = { offloaded: 0, emulated: 0 };
    if (todo.length > 0) {
      try {
        done = await this.inner.copy(this.inner, todo, options);
      } catch (err) {
        if (!CopyError.isCopyError(err)) throw err;
        const completed = ranges.map((_, i) => (i < todo.length ? (err.completed[i] ?? 0) : 0));
        throw new CopyError(err, completed, { offloaded: err.offloaded, emulated: err.emulated });
      }
    }
    if (fault) {
      const completed = ranges.map((r, i) => (i < stop ? r.len : i === stop ? prefix : 0));
      throw new CopyError(fault, completed, done);
    }
    return done;
  }

  protected override async doReportZones(offset: number, maxZones: number): Promise<Zone[]> {
    // The zones the report covers: from the one holding offset, at most maxZones of them.
    const zoneSize = this.limits.zoned?.zoneSize ?? this.size;
    const start = offset - (offset % zoneSize);
    const length = Math.min(this.size - start, maxZones * zoneSize);
    await this.#enter('zone', undefined, [{ ops: ['zone'], offset: start, length }]);
    return this.inner.reportZones(offset, maxZones);
  }

  protected override async doZoneManagement(
    action: 'open' | 'close' | 'finish' | 'reset',
    zoneStart: number,
    options?: IoOptions,
  ): Promise<void> {
    await this.#enter('zone', options?.signal, [
      { ops: ['zone'], offset: zoneStart, length: this.#zoneLength(zoneStart) },
    ]);
    switch (action) {
      case 'open':
        return this.inner.openZone(zoneStart, options);
      case 'close':
        return this.inner.closeZone(zoneStart, options);
      case 'finish':
        return this.inner.finishZone(zoneStart, options);
      case 'reset':
        return this.inner.resetZone(zoneStart, options);
    }
  }

  protected override async doResetAllZones(options?: IoOptions): Promise<void> {
    await this.#enter('zone', options?.signal, [{ ops: ['zone'], offset: 0, length: this.size }]);
    await this.inner.resetAllZones(options);
  }

  protected override async doZoneAppend(
    zoneStart: number,
    data: Uint8Array,
    options?: WriteOptions,
  ): Promise<number> {
    await this.#enter('zone', options?.signal, [
      { ops: ['zone', 'write'], offset: zoneStart, length: this.#zoneLength(zoneStart) },
    ]);
    return this.inner.zoneAppend(zoneStart, data, options);
  }

  #zoneLength(zoneStart: number): number {
    const z = this.limits.zoned;
    return Math.min(z ? z.zoneSize : this.size, this.size - zoneStart);
  }
}
