// Building block-status answers: runs of bytes with the same allocation flags, in order.
// Devices and the mapper collect their answer here so adjacent runs with equal flags merge,
// and alignRuns() cuts an answer from a finer-grained source (a filesystem's SEEK_HOLE, a
// component with smaller blocks) to whole blocks. Structural on purpose: a run is the block
// core's BlockStatusExtent without this module depending on it.

/** Bytes with the same allocation: `hole` unallocated, `zero` reads as zeroes. */
export interface StatusRun {
  readonly length: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

/** An answer being built: runs in order, adjacent runs with equal flags merged. */
export class ExtentList {
  readonly #runs: Array<{ length: number; hole: boolean; zero: boolean }> = [];
  #covered = 0;

  /** Bytes covered so far. */
  get covered(): number {
    return this.#covered;
  }

  /** Runs so far (after merging). */
  get count(): number {
    return this.#runs.length;
  }

  /** Appends a run; a run of no bytes is ignored. */
  push(length: number, hole: boolean, zero: boolean): void {
    if (!(length > 0)) return;
    this.#covered += length;
    const last = this.#runs.at(-1);
    if (last && last.hole === hole && last.zero === zero) last.length += length;
    else this.#runs.push({ length, hole, zero });
  }

  /**
   * Appends runs, at most `max` bytes of them (a source that answered more than it was asked
   * is cut), and returns the bytes appended.
   */
  pushAll(runs: readonly StatusRun[], max = Infinity): number {
    let n = 0;
    for (const r of runs) {
      if (n >= max) break;
      if (!(r.length > 0)) continue;
      const len = Math.min(r.length, max - n);
      this.push(len, r.hole, r.zero);
      n += len;
    }
    return n;
  }

  toArray(): StatusRun[] {
    return this.#runs.map((r) => ({ length: r.length, hole: r.hole, zero: r.zero }));
  }
}

/**
 * Cuts runs that start on a block boundary into whole blocks. A block that two or more runs
 * share gets the flags all of them have (hole only when every part is a hole, zero only when
 * every part reads as zeroes), which is never wrong. A trailing partial block is dropped — the
 * caller asks again from the block boundary — unless it is all there is, when it becomes one
 * data block (the answer must cover at least one block; "data" is always correct).
 */
export function alignRuns(runs: readonly StatusRun[], blockSize: number): StatusRun[] {
  const out = new ExtentList();
  let partial: { hole: boolean; zero: boolean; need: number } | undefined;
  for (const r of runs) {
    let len = r.length;
    if (!(len > 0)) continue;
    if (partial) {
      partial.hole &&= r.hole;
      partial.zero &&= r.zero;
      const take = Math.min(len, partial.need);
      partial.need -= take;
      len -= take;
      if (partial.need > 0) continue;
      out.push(blockSize, partial.hole, partial.zero);
      partial = undefined;
    }
    const whole = len - (len % blockSize);
    out.push(whole, r.hole, r.zero);
    if (len > whole) partial = { hole: r.hole, zero: r.zero, need: blockSize - (len - whole) };
  }
  if (partial && out.count === 0) out.push(blockSize, false, false);
  return out.toArray();
}
