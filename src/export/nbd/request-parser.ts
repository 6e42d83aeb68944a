// The transmission-phase request parser: an explicit state machine over a ByteQueue (undici's
// ByteParser shape). The transmission pushes socket chunks in and pulls one request at a
// time with next(), so it decides how many requests run at once; bytes it has not pulled
// stay queued.
//
// States: HEADER (28-byte compact or, after NBD_OPT_EXTENDED_HEADERS, 32-byte extended
// request) → PAYLOAD (a payload this server keeps: the data of a WRITE up to
// NBD_MAX_PAYLOAD) or DISCARD (a payload it reads and drops: a WRITE above NBD_MAX_PAYLOAD,
// or an extended request that carries a payload its command does not take) → HEADER.
//
// Which requests carry a payload: compact — NBD_CMD_WRITE, always `length` bytes (whatever
// the flags say); extended — exactly the requests with NBD_CMD_FLAG_PAYLOAD_LEN, `length`
// bytes. Deciding what to answer (EOVERFLOW, EINVAL) is the transmission's job; the parser
// only keeps the stream in step.
//
// Fatal (hard disconnect, NbdProtocolError): a magic other than the negotiated one (the
// other style's magic included), or a payload above DISCARD_CAP bytes — reading 4 GiB to
// answer one error is a denial of service, and the spec lets a server disconnect for it.

import { ByteQueue } from '../../util/byte-queue.js';
import { NBD_MAX_PAYLOAD } from './export.js';
import {
  NBD_CMD_FLAG_PAYLOAD_LEN,
  NBD_CMD_WRITE,
  NBD_EXTENDED_REQUEST_MAGIC,
  NBD_EXTENDED_REQUEST_SIZE,
  NBD_REQUEST_MAGIC,
  NBD_REQUEST_SIZE,
} from './protocol.js';

/** Compact request (28 bytes): field offsets. */
export const CompactRequest = {
  SIZE: NBD_REQUEST_SIZE,
  magic: 0, // u32 NBD_REQUEST_MAGIC
  flags: 4, // u16 command flags
  type: 6, // u16 command
  cookie: 8, // u64, opaque
  offset: 16, // u64
  length: 24, // u32
} as const;

/** Extended request (32 bytes): field offsets. */
export const ExtendedRequest = {
  SIZE: NBD_EXTENDED_REQUEST_SIZE,
  magic: 0, // u32 NBD_EXTENDED_REQUEST_MAGIC
  flags: 4,
  type: 6,
  cookie: 8,
  offset: 16, // u64
  length: 24, // u64: payload length with PAYLOAD_LEN, else effect length
} as const;

/** Largest payload read and dropped to answer an error instead of disconnecting. */
export const DISCARD_CAP = 64 * 1024 * 1024 + NBD_MAX_PAYLOAD;

export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  /** Opaque; echoed in every reply to this request. */
  readonly cookie: bigint;
  /** Byte offset as a number; values above 2^53 are approximate, and out of range for any export. */
  readonly offset: number;
  /** The offset exactly as sent (extended replies echo it). */
  readonly offsetWire: bigint;
  /** Effect length (or payload length for WRITE); like offset, approximate above 2^53. */
  readonly length: number;
  /** The data of a WRITE no larger than NBD_MAX_PAYLOAD. */
  readonly payload?: Buffer;
  /** Bytes of payload read and dropped (too large, or not a payload this command takes). */
  readonly discarded?: number;
}

export class NbdProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdProtocolError';
  }
}

const State = {
  HEADER: 0,
  PAYLOAD: 1,
  DISCARD: 2,
  FAILED: 3,
} as const;
type State = (typeof State)[keyof typeof State];

interface Header {
  flags: number;
  type: number;
  cookie: bigint;
  offsetWire: bigint;
  length: number;
}

export class NbdRequestParser {
  readonly extended: boolean;
  readonly #queue = new ByteQueue();
  #state: State = State.HEADER;
  #header: Header | undefined;
  /** Payload bytes still to read (PAYLOAD) or drop (DISCARD). */
  #remaining = 0;
  /** PAYLOAD: the buffer the WRITE's data is gathered into, and how much of it is filled. */
  #payload: Buffer | undefined;
  #filled = 0;

  readonly #allocate: (length: number) => Buffer;

  /** `allocate` gives the buffer a WRITE payload is gathered into (default: a new Buffer). */
  constructor(options: { extended: boolean; allocate?: (length: number) => Buffer }) {
    this.extended = options.extended;
    this.#allocate = options.allocate ?? ((n) => Buffer.allocUnsafe(n));
  }

  /** Bytes received and not yet turned into requests. */
  get buffered(): number {
    return this.#queue.length;
  }

  /** True between requests: no header or payload half read. */
  get idle(): boolean {
    return this.#state === State.HEADER && this.#queue.length === 0;
  }

  /** Queues received bytes; the parser keeps a reference, so the caller must not reuse `chunk`. */
  push(chunk: Uint8Array): void {
    this.#queue.push(chunk);
  }

  /**
   * Where the socket may put its next bytes directly: the unfilled rest of the WRITE payload
   * being gathered, when nothing else is queued ahead of it. A reader that fills it calls
   * filledDirect(n) instead of push(); the payload then needs no copy.
   */
  directTarget(): Buffer | undefined {
    if (this.#state !== State.PAYLOAD || this.#queue.length > 0 || this.#remaining === 0) return undefined;
    return this.#payload!.subarray(this.#filled);
  }

  /** n bytes were written into directTarget() (at its start). */
  filledDirect(n: number): void {
    if (this.#state !== State.PAYLOAD || this.#queue.length > 0 || !(n >= 0 && n <= this.#remaining))
      throw new RangeError(`filledDirect(${n}): no direct target of that size`);
    this.#filled += n;
    this.#remaining -= n;
  }

  /**
   * Copies the queued bytes out of the chunks pushed so far, so the caller may reuse the
   * buffers it pushed (a reader with one receive buffer calls this before the next read).
   */
  ownQueued(): void {
    if (this.#queue.length === 0) return;
    const rest = Buffer.allocUnsafe(this.#queue.length);
    this.#queue.consumeInto(rest);
    this.#queue.push(rest);
  }

  /** Drops everything buffered (after NBD_CMD_DISC nothing more is read). */
  clear(): void {
    this.#queue.clear();
    this.#state = State.HEADER;
    this.#header = undefined;
    this.#payload = undefined;
  }

  /**
   * The next complete request, or undefined when more bytes are needed. Throws
   * NbdProtocolError on a violation; the parser then stays failed.
   */
  next(): NbdRequest | undefined {
    for (;;) {
      switch (this.#state) {
        case State.HEADER: {
          const size = this.extended ? ExtendedRequest.SIZE : CompactRequest.SIZE;
          if (this.#queue.length < size) return undefined;
          const h = this.#parseHeader(this.#queue.consume(size));
          const payload = this.#payloadLength(h);
          if (payload === 0) return toRequest(h, this.#carriesPayload(h) ? { payload: Buffer.alloc(0) } : {});
          if (payload > DISCARD_CAP) {
            this.#state = State.FAILED;
            throw new NbdProtocolError(
              `request payload of ${payload} bytes exceeds the ${DISCARD_CAP}-byte limit (max payload ${NBD_MAX_PAYLOAD})`,
            );
          }
          this.#header = h;
          this.#remaining = payload;
          const keep = h.type === NBD_CMD_WRITE && payload <= NBD_MAX_PAYLOAD;
          this.#state = keep ? State.PAYLOAD : State.DISCARD;
          // Allocated now, so the rest of the data can be received straight into it.
          if (keep) {
            this.#payload = this.#allocate(payload);
            this.#filled = 0;
          }
          break;
        }
        case State.PAYLOAD: {
          const n = Math.min(this.#remaining, this.#queue.length);
          if (n > 0) {
            this.#queue.consumeInto(this.#payload!.subarray(this.#filled, this.#filled + n));
            this.#filled += n;
            this.#remaining -= n;
          }
          if (this.#remaining > 0) return undefined;
          const h = this.#header!;
          const payload = this.#payload!;
          this.#finishPayload();
          return toRequest(h, { payload });
        }
        case State.DISCARD: {
          const n = Math.min(this.#remaining, this.#queue.length);
          this.#queue.skip(n);
          this.#remaining -= n;
          if (this.#remaining > 0) return undefined;
          const h = this.#header!;
          this.#finishPayload();
          return toRequest(h, { discarded: this.#payloadLength(h) });
        }
        case State.FAILED:
          throw new NbdProtocolError('request stream already failed');
      }
    }
  }

  #finishPayload(): void {
    this.#header = undefined;
    this.#payload = undefined;
    this.#remaining = 0;
    this.#state = State.HEADER;
  }

  #parseHeader(b: Buffer): Header {
    const magic = b.readUInt32BE(CompactRequest.magic);
    const want = this.extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC;
    if (magic !== want) {
      this.#state = State.FAILED;
      const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
      const why =
        magic === (this.extended ? NBD_REQUEST_MAGIC : NBD_EXTENDED_REQUEST_MAGIC)
          ? this.extended
            ? ' (a compact request after extended headers were negotiated)'
            : ' (an extended request without extended headers negotiated)'
          : '';
      throw new NbdProtocolError(`bad request magic ${hex(magic)}, expected ${hex(want)}${why}`);
    }
    const lengthWire = this.extended
      ? b.readBigUInt64BE(ExtendedRequest.length)
      : BigInt(b.readUInt32BE(CompactRequest.length));
    return {
      flags: b.readUInt16BE(CompactRequest.flags),
      type: b.readUInt16BE(CompactRequest.type),
      cookie: b.readBigUInt64BE(CompactRequest.cookie),
      offsetWire: b.readBigUInt64BE(CompactRequest.offset),
      length: Number(lengthWire),
    };
  }

  /** Compact WRITE, or any extended request with PAYLOAD_LEN, is followed by `length` bytes. */
  #carriesPayload(h: Header): boolean {
    return this.extended ? (h.flags & NBD_CMD_FLAG_PAYLOAD_LEN) !== 0 : h.type === NBD_CMD_WRITE;
  }

  #payloadLength(h: Header): number {
    return this.#carriesPayload(h) ? h.length : 0;
  }
}

function toRequest(h: Header, extra: { payload?: Buffer; discarded?: number }): NbdRequest {
  return {
    flags: h.flags,
    type: h.type,
    cookie: h.cookie,
    offset: Number(h.offsetWire),
    offsetWire: h.offsetWire,
    length: h.length,
    ...extra,
  };
}
