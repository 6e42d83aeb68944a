// A pool of large I/O buffers. Allocating a fresh 1 MiB Buffer per request costs page faults
// (the kernel zeroes new pages), garbage collection and a trip through malloc; at 1 GB/s
// that is more than the copy itself. Buffers here come in power-of-two classes from
// MIN_POOLED_BYTES up, each with its own ArrayBuffer, and go back with give() once nothing
// refers to them any more (the caller's promise; this pool cannot check it).
// Smaller requests get an ordinary Buffer, which Node already serves from its slab.

export const MIN_POOLED_BYTES = 64 * 1024;

export class BufferPool {
  readonly #free = new Map<number, Buffer[]>();
  readonly #maxPerClass: number;
  readonly #maxClassBytes: number;

  /**
   * @param maxPerClass free buffers kept per size class (more are left to the GC)
   * @param maxClassBytes largest class pooled; bigger requests get a plain Buffer
   */
  constructor(options: { maxPerClass?: number; maxClassBytes?: number } = {}) {
    this.#maxPerClass = options.maxPerClass ?? 16;
    this.#maxClassBytes = options.maxClassBytes ?? 32 * 1024 * 1024;
  }

  /** A buffer of exactly `length` bytes (contents undefined). */
  take(length: number): Buffer {
    const cls = classOf(length);
    if (cls === 0 || cls > this.#maxClassBytes) return Buffer.allocUnsafe(length);
    const whole = this.#free.get(cls)?.pop() ?? Buffer.allocUnsafeSlow(cls);
    return whole.subarray(0, length);
  }

  /** Returns a buffer from take(); anything else (or a buffer given twice) is ignored safely. */
  give(buf: Buffer): void {
    const ab = buf.buffer;
    const cls = ab.byteLength;
    if (buf.byteOffset !== 0 || classOf(cls) !== cls || cls > this.#maxClassBytes) return;
    let list = this.#free.get(cls);
    if (!list) this.#free.set(cls, (list = []));
    if (list.length >= this.#maxPerClass) return;
    const whole = Buffer.from(ab, 0, cls);
    if (list.some((b) => b.buffer === ab)) return;
    list.push(whole);
  }

  /** Free buffers held, for tests and `dev info`-style reports. */
  get freeBytes(): number {
    let n = 0;
    for (const [cls, list] of this.#free) n += cls * list.length;
    return n;
  }
}

/** The pooled size class for length: the next power of two ≥ MIN_POOLED_BYTES, or 0 below it. */
function classOf(length: number): number {
  if (length < MIN_POOLED_BYTES) return 0;
  return 2 ** Math.ceil(Math.log2(length));
}
