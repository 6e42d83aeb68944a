// A sparse byte store: fixed-size chunks in a Map keyed by chunk index, allocated on first
// write. Unwritten bytes (holes) read as zeroes and cost no memory, so a 1 TiB RAM disk
// costs only what is written. The RAM device (and anything else that wants memory-backed
// blocks) keeps its data here; offsets are already checked by the caller.
//
// Allocation is reported by extents(): the allocated chunk indexes are also kept in a sorted
// array, so an answer costs O(log n + chunks in the range) whatever the store's size. Keeping
// it sorted costs a binary search and an array splice per chunk allocated or freed, which is
// small beside allocating or freeing the 1 MiB chunk itself (and appending, the sequential
// write case, moves nothing).

import type { BlockStatusExtent, CopyRange } from '../block/device.js';
import { overlaps } from '../block/checks.js';
import { ExtentList } from '../util/extent-list.js';

/** Default chunk size: large enough that a 1 MiB copy is one Buffer.copy, small enough to stay sparse. */
export const SPARSE_CHUNK_BYTES = 1024 * 1024;

/** A source piece for a copy: bytes of `buf` from `at`, or a hole (`buf` undefined). */
interface Piece {
  buf: Buffer | undefined;
  at: number;
  len: number;
}

/** Where the bytes of one copy range come from: the live store, or a snapshot taken first. */
type PieceSource = (pos: number, maxLen: number) => Piece;

export class SparseStore {
  readonly size: number;
  readonly chunkBytes: number;
  readonly #chunks = new Map<number, Buffer>();
  /** The keys of #chunks, ascending. */
  readonly #indexes: number[] = [];
  #allocated = 0;
  #zero: Buffer | undefined;
  /** Chunks lent by lend() and not yet given back, with how many loans hold each. */
  readonly #lent = new Map<Buffer, number>();

  constructor(size: number, chunkBytes = SPARSE_CHUNK_BYTES) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`SparseStore: bad size ${size}`);
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0)
      throw new RangeError(`SparseStore: bad chunk ${chunkBytes}`);
    this.size = size;
    this.chunkBytes = chunkBytes;
  }

  /** Bytes of memory held by allocated chunks. */
  get allocatedBytes(): number {
    return this.#allocated;
  }

  /** Number of allocated chunks. */
  get allocatedChunks(): number {
    return this.#chunks.size;
  }

  /** Copies size bytes at offset into out; holes read as zeroes. */
  read(offset: number, out: Uint8Array): void {
    this.#walk(offset, out.length, (idx, at, len, pos) => {
      const chunk = this.#chunks.get(idx);
      if (chunk) out.set(chunk.subarray(at, at + len), pos);
      else out.fill(0, pos, pos + len);
    });
  }

  /**
   * The bytes of [offset, offset+length) as views of the store's own chunks (holes: views of
   * one zero chunk), without copying. A lent chunk is never modified: a write to it goes to a
   * fresh copy that replaces it in the store (copy on write), until release().
   */
  lend(offset: number, length: number): { buffers: Buffer[]; release: () => void } {
    const buffers: Buffer[] = [];
    const held: Buffer[] = [];
    this.#walk(offset, length, (idx, at, len) => {
      const chunk = this.#chunks.get(idx);
      if (chunk) {
        buffers.push(chunk.subarray(at, at + len));
        held.push(chunk);
        this.#lent.set(chunk, (this.#lent.get(chunk) ?? 0) + 1);
      } else {
        buffers.push(this.#zeroChunk().subarray(0, len));
      }
    });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      for (const chunk of held) {
        const n = this.#lent.get(chunk)! - 1;
        if (n === 0) this.#lent.delete(chunk);
        else this.#lent.set(chunk, n);
      }
    };
    return { buffers, release };
  }

  /** Chunks currently lent (for tests and stats). */
  get lentChunks(): number {
    return this.#lent.size;
  }

  write(offset: number, data: Uint8Array): void {
    this.#walk(offset, data.length, (idx, at, len, pos) => {
      this.#chunkFor(idx, at, len).set(data.subarray(pos, pos + len), at);
    });
  }

  /**
   * Zeroes length bytes at offset. Whole chunks are freed unless `keepAllocated` (write
   * zeroes with "no unmap"); partly zeroed chunks that become all zero are freed too.
   */
  zero(offset: number, length: number, keepAllocated = false): void {
    this.#walk(offset, length, (idx, at, len) => this.#zeroIn(idx, at, len, keepAllocated));
  }

  /**
   * Copies the ranges as if every source were read before any destination is written. Only
   * sources that overlap some destination are snapshotted first (bounded by the request
   * size); the rest go chunk to chunk with Buffer.copy. Holes stay holes: copying one frees
   * or zeroes the destination and never allocates.
   */
  copy(ranges: readonly CopyRange[]): void {
    const sources: PieceSource[] = ranges.map((r) =>
      ranges.some((d) => overlaps(r.src, r.len, d.dst, d.len))
        ? this.#snapshot(r.src, r.len)
        : this.#live(r.src),
    );
    ranges.forEach((r, i) => this.#copyRange(sources[i]!, r.dst, r.len));
  }

  /**
   * Allocation of [offset, offset+length), in order and covering all of it: chunks never
   * written (or freed) are holes that read as zeroes; allocated chunks are data, whatever
   * they hold (a chunk zeroed with keepAllocated stays data). Adjacent equal extents merge.
   */
  extents(offset: number, length: number): BlockStatusExtent[] {
    const out = new ExtentList();
    const end = offset + length;
    const cb = this.chunkBytes;
    let pos = offset;
    for (let i = this.#firstIndexFrom(Math.floor(offset / cb)); i < this.#indexes.length; i++) {
      const start = this.#indexes[i]! * cb;
      if (start >= end) break;
      const from = Math.max(start, pos);
      const to = Math.min(start + cb, end);
      out.push(from - pos, true, true);
      out.push(to - from, false, false);
      pos = to;
    }
    out.push(end - pos, true, true);
    return out.toArray();
  }

  /** Drops every chunk. */
  clear(): void {
    this.#chunks.clear();
    this.#indexes.length = 0;
    this.#allocated = 0;
  }

  /** Position in #indexes of the first allocated chunk index ≥ idx (binary search). */
  #firstIndexFrom(idx: number): number {
    const a = this.#indexes;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < idx) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #addIndex(idx: number): void {
    const a = this.#indexes;
    if (a.length === 0 || a[a.length - 1]! < idx) a.push(idx);
    else a.splice(this.#firstIndexFrom(idx), 0, idx);
  }

  #removeIndex(idx: number): void {
    const i = this.#firstIndexFrom(idx);
    if (this.#indexes[i] === idx) this.#indexes.splice(i, 1);
  }

  /** Calls fn for each chunk-bounded piece of [offset, offset+length): chunk index, offset in chunk, length, position. */
  #walk(
    offset: number,
    length: number,
    fn: (idx: number, at: number, len: number, pos: number) => void,
  ): void {
    const cb = this.chunkBytes;
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / cb);
      const at = abs - idx * cb;
      const len = Math.min(cb - at, length - pos);
      fn(idx, at, len, pos);
      pos += len;
    }
  }

  /** Bytes in chunk idx (the last chunk may be short). */
  #chunkLen(idx: number): number {
    return Math.min(this.chunkBytes, this.size - idx * this.chunkBytes);
  }

  /** The chunk to write [at, at+len) of; a new chunk is zeroed unless the write covers it all. */
  #chunkFor(idx: number, at: number, len: number): Buffer {
    let chunk = this.#chunks.get(idx);
    if (!chunk) {
      const clen = this.#chunkLen(idx);
      chunk = at === 0 && len === clen ? Buffer.allocUnsafe(clen) : Buffer.alloc(clen);
      this.#chunks.set(idx, chunk);
      this.#addIndex(idx);
      this.#allocated += clen;
    }
    return this.#lent.has(chunk) ? this.#unshare(idx, chunk) : chunk;
  }

  /** Replaces lent chunk idx by a copy the store may modify; the borrowers keep the original. */
  #unshare(idx: number, chunk: Buffer): Buffer {
    const copy = Buffer.allocUnsafe(chunk.length);
    chunk.copy(copy);
    this.#chunks.set(idx, copy);
    return copy;
  }

  /** A chunk of zeroes that nothing writes to (hole reads, the zero check). */
  #zeroChunk(): Buffer {
    if (!this.#zero || this.#zero.length < this.chunkBytes) this.#zero = Buffer.alloc(this.chunkBytes);
    return this.#zero;
  }

  #zeroIn(idx: number, at: number, len: number, keepAllocated: boolean): void {
    let chunk = this.#chunks.get(idx);
    if (!chunk) return;
    if (keepAllocated || len < chunk.length) {
      if (this.#lent.has(chunk)) chunk = this.#unshare(idx, chunk);
      chunk.fill(0, at, at + len);
      if (keepAllocated || !this.#isZero(chunk)) return;
    }
    this.#chunks.delete(idx);
    this.#removeIndex(idx);
    this.#allocated -= chunk.length;
  }

  #isZero(chunk: Buffer): boolean {
    return chunk.equals(this.#zeroChunk().subarray(0, chunk.length));
  }

  /** Reads straight from the store: the piece at src+pos, up to the end of its chunk. */
  #live(src: number): PieceSource {
    return (pos, maxLen) => {
      const abs = src + pos;
      const idx = Math.floor(abs / this.chunkBytes);
      const at = abs - idx * this.chunkBytes;
      return { buf: this.#chunks.get(idx), at, len: Math.min(maxLen, this.chunkBytes - at) };
    };
  }

  /** Copies [src, src+len) out now (holes stay holes) and serves pieces from the copy. */
  #snapshot(src: number, length: number): PieceSource {
    const parts: Array<{ pos: number; buf: Buffer | undefined }> = [];
    this.#walk(src, length, (idx, at, len, pos) => {
      const chunk = this.#chunks.get(idx);
      parts.push({ pos, buf: chunk ? Buffer.from(chunk.subarray(at, at + len)) : undefined });
    });
    let i = 0;
    return (pos, maxLen) => {
      // Pieces are asked for in ascending order, so a cursor finds the part.
      while (pos >= parts[i]!.pos + this.#partLen(parts, i, length)) i++;
      const part = parts[i]!;
      const at = pos - part.pos;
      return { buf: part.buf, at, len: Math.min(maxLen, this.#partLen(parts, i, length) - at) };
    };
  }

  #partLen(parts: ReadonlyArray<{ pos: number }>, i: number, total: number): number {
    return (parts[i + 1]?.pos ?? total) - parts[i]!.pos;
  }

  #copyRange(source: PieceSource, dst: number, length: number): void {
    this.#walk(dst, length, (idx, at, len, pos) => {
      // One destination chunk piece may take several source pieces when the ends are not aligned alike.
      let done = 0;
      while (done < len) {
        const piece = source(pos + done, len - done);
        if (piece.buf)
          piece.buf.copy(
            this.#chunkFor(idx, at + done, piece.len),
            at + done,
            piece.at,
            piece.at + piece.len,
          );
        else this.#zeroIn(idx, at + done, piece.len, false);
        done += piece.len;
      }
    });
  }
}
