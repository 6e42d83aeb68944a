// A FIFO of received socket chunks read by byte count, for the PDU parser. Reads return a view
// into a chunk when the bytes sit in one chunk and copy them once otherwise, so callers must
// not modify a chunk after pushing it. Consumed chunks are released at once.

export class ByteQueue {
  // chunks[head] is the oldest chunk still holding bytes; `offset` of its bytes are consumed.
  #chunks: Array<Buffer | undefined> = [];
  #head = 0;
  #offset = 0;
  #length = 0;

  /** Bytes queued and not yet consumed. */
  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.#chunks.push(b);
    this.#length += b.length;
  }

  /** The next n bytes without consuming them. n must not exceed length. */
  peek(n: number): Buffer {
    this.#need(n);
    const first = this.#chunks[this.#head]!;
    if (first.length - this.#offset >= n) return first.subarray(this.#offset, this.#offset + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.#head, off = this.#offset; filled < n; i++, off = 0) {
      const c = this.#chunks[i]!;
      const take = Math.min(c.length - off, n - filled);
      c.copy(out, filled, off, off + take);
      filled += take;
    }
    return out;
  }

  /** The next n bytes, consumed. n must not exceed length. */
  consume(n: number): Buffer {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  /** Copies the next target.length bytes into target and consumes them (no allocation). */
  consumeInto(target: Uint8Array): void {
    const n = target.length;
    this.#need(n);
    let filled = 0;
    for (let i = this.#head, off = this.#offset; filled < n; i++, off = 0) {
      const c = this.#chunks[i]!;
      const take = Math.min(c.length - off, n - filled);
      target.set(c.subarray(off, off + take), filled);
      filled += take;
    }
    this.skip(n);
  }

  /** Drops the next n bytes. n must not exceed length. */
  skip(n: number): void {
    this.#need(n);
    this.#length -= n;
    while (n > 0) {
      const c = this.#chunks[this.#head]!;
      const take = Math.min(c.length - this.#offset, n);
      n -= take;
      this.#offset += take;
      if (this.#offset === c.length) {
        this.#chunks[this.#head] = undefined; // let the chunk go
        this.#head++;
        this.#offset = 0;
      }
    }
    if (this.#head === this.#chunks.length) {
      this.#chunks.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Drops everything. */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
  }

  #need(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.#length) {
      throw new RangeError(`ByteQueue: asked for ${n} bytes, ${this.#length} queued`);
    }
  }
}
