// NbdTransmission: runs the transmission phase of one negotiated NBD connection. It parses
// requests (request-parser.ts), checks each against the export before the device sees it,
// runs many at once on the export's BlockDevice and writes each reply as soon as its
// request finishes (replies may go out of order; the cookie pairs them).
//
// Decisions (the spec leaves these to the server, or the brief asked for a choice):
// - Replies: simple replies unless structured replies were negotiated. Structured: READ is
//   one OFFSET_DATA chunk flagged DONE (no OFFSET_HOLE chunks: that would cost a block-status
//   call per read), BLOCK_STATUS one chunk per active context with DONE on the last, errors
//   one ERROR chunk with the device's message (≤ 4096 bytes), other successes a simple
//   reply. Extended headers: every reply is an extended chunk; other successes are NONE|DONE.
// - Checks, in this order, before touching the device (each answers the request with an
//   error and leaves the connection up): unknown command → EINVAL; a flag the command does
//   not take → EINVAL (FUA is accepted on every command and ignored where nothing is
//   written; NO_HOLE and FAST_ZERO only on WRITE_ZEROES, FAST_ZERO only if advertised; DF
//   only on READ with structured replies; REQ_ONE only on BLOCK_STATUS; PAYLOAD_LEN only on
//   an extended WRITE, where it is required); a write command on a read-only export → EPERM;
//   WRITE above NBD_MAX_PAYLOAD (payload read and dropped) or READ above it → EOVERFLOW;
//   TRIM / WRITE_ZEROES on a device without discard / write zeroes (not advertised, so the
//   client broke the rules) → EINVAL, as nbdkit answers and the spec asks (it reserves
//   ENOTSUP for FAST_ZERO); BLOCK_STATUS with no active metadata context → EINVAL; FLUSH with
//   a nonzero offset or length → EINVAL; length 0 → EINVAL (the spec leaves it unspecified;
//   nbdkit answers EINVAL); past the end of the export → ENOSPC for WRITE and WRITE_ZEROES,
//   EINVAL for the rest (the spec's "Error values"); off the device's logical block size →
//   EINVAL. An extended BLOCK_STATUS may ask for up to 2^64-1 bytes: its length is clamped
//   to the export's end (the offset must still be inside the export).
// - READ and WRITE are split at the device's maxTransferBytes, TRIM at discard.maxBytes,
//   WRITE_ZEROES at writeZeroes.maxBytes. FUA on WRITE is passed to the device; FUA on TRIM
//   and WRITE_ZEROES is a flush after the operation (the device API has no FUA there).
// - FAST_ZERO is fast only when the device zeroes by unmapping (limits.writeZeroes.unmaps)
//   and NO_HOLE is not set: with NO_HOLE the device must keep the blocks allocated and the
//   limits cannot tell whether that writes buffers, so the spec's "cannot determine in
//   advance" rule applies and the answer is ENOTSUP, with nothing written.
// - CACHE is checked like READ and then a no-op: the devices here have no slower tier a
//   read would warm, and reading up to the whole export only to drop it costs I/O.
// - BLOCK_STATUS asks the device again from where each answer ended until the request is
//   covered, 2^20 extents were returned or 4096 calls made; adjacent extents with the same
//   flags are merged. Compact descriptors stay below 2^32 (split on the block size). REQ_ONE
//   returns the first extent of the first answer. A context other than base:allocation
//   (none is offered today) would get one all-zero-status descriptor for the range.
// - Concurrency: at most maxInFlight requests execute; past that, and while the socket's
//   write buffer holds more than REPLY_BUFFER_LIMIT (16 MiB) of replies (until 'drain'), no
//   further request is parsed and the socket is paused. Each reply is written in one
//   corked batch, so chunks of different replies never interleave.
// - DISC: nothing after it is read; in-flight requests finish and are answered, then the
//   socket is ended (TLS close_notify included). The client hanging up: in-flight requests
//   still finish (writes land), their replies are dropped, then `closed` resolves.
// - shutdown(): requests already received and any that arrive while in-flight requests
//   finish are answered ESHUTDOWN without touching the device (the spec's advice; the client
//   then sends DISC); once in-flight requests are done the socket is ended. After timeoutMs
//   the in-flight requests are aborted (their AbortSignal), the socket destroyed, and
//   `closed` resolves without waiting for them.
// - Protocol violations (bad magic, a payload above the discard cap) destroy the socket
//   (hard disconnect). Device errors fail only their request. Nothing escapes an event
//   handler: every failure ends up as a reply or as the close reason.

import type { Socket } from 'node:net';
import type { BlockDevice } from '../../block/device.js';
import { readFully, writeFully } from '../../block/io.js';
import { BufferPool } from '../../util/buffer-pool.js';
import { adoptForDirectReads } from '../../util/direct-socket.js';
import { nbdErrorFromBlockError } from './errors.js';
import { isReadOnly, NBD_MAX_PAYLOAD } from './export.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_PAYLOAD_LEN,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_NAMES,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_META_CONTEXT_BASE_ALLOCATION,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from './protocol.js';
import {
  encodeBlockStatus,
  encodeBlockStatusExt,
  encodeChunk,
  encodeErrorPayload,
  encodeOffsetDataPrefix,
  encodeSimpleReply,
  type ChunkHeader,
  type StatusDescriptor,
} from './reply-codec.js';
import { NbdRequestParser, type NbdRequest } from './request-parser.js';
import type { NegotiatedSession } from './session.js';

export interface TransmissionOptions {
  /** Most requests executing at once; more are read only when one finishes (socket paused). Default 64. */
  maxInFlight?: number;
  /**
   * Most READ/WRITE payload bytes held by executing requests (write data received, read
   * buffers allocated). Default 128 MiB. One request always runs even when larger, so the
   * bound is this plus one request; without it, 64 requests of 32 MiB could hold 2 GiB.
   */
  maxInFlightBytes?: number;
  /** Called once when the connection is gone and its requests are done, with why. */
  onClose?: (reason: string) => void;
  /** Per-request observer (metrics, tests): command name, bytes it covered, NBD error (0 ok). */
  onRequest?: (r: { op: string; bytes: number; error: number }) => void;
}

export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 128 * 1024 * 1024;
/** Most block-status descriptors in one chunk (the spec's SHOULD NOT exceed). */
export const MAX_STATUS_DESCRIPTORS = 1 << 20;
/** Most device blockStatus calls for one request. */
const MAX_STATUS_CALLS = 4096;
/** READ buffers and WRITE payloads, reused across requests and connections (util/buffer-pool.ts). */
const IO_BUFFERS = new BufferPool({ maxPerClass: 8, maxClassBytes: 4 * 1024 * 1024 });

/** Reads at least this large borrow the device's memory when it lends it (BlockDevice.readLoan). */
const LOAN_MIN_BYTES = 64 * 1024;

/** Direct reads that are not payload land here first (libuv's own read size). */
const SCRATCH_BYTES = 64 * 1024;

/** Reply bytes queued on the socket beyond which no further request is parsed. */
export const REPLY_BUFFER_LIMIT = 16 * 1024 * 1024;
/** After ending the socket, how long the peer gets to close its side. */
const END_GRACE_MS = 5000;

/** A request refused before it reached the device. */
class RequestError extends Error {
  constructor(
    readonly nbdError: number,
    message: string,
  ) {
    super(message);
  }
}

type Outcome =
  | { kind: 'ok' }
  | { kind: 'data'; offset: number; data: readonly Uint8Array[]; release: () => void }
  | { kind: 'status'; chunks: Array<{ id: number; descriptors: StatusDescriptor[] }> }
  | { kind: 'error'; error: number; message: string };

type ReplyStyle = 'simple' | 'structured' | 'extended';

const KNOWN_FLAGS =
  NBD_CMD_FLAG_FUA |
  NBD_CMD_FLAG_NO_HOLE |
  NBD_CMD_FLAG_DF |
  NBD_CMD_FLAG_REQ_ONE |
  NBD_CMD_FLAG_FAST_ZERO |
  NBD_CMD_FLAG_PAYLOAD_LEN;

/** Bytes a request holds while it runs: its write payload or its read buffer. */
function payloadBytes(req: NbdRequest): number {
  if (req.type === NBD_CMD_WRITE) return req.payload?.length ?? 0;
  if (req.type === NBD_CMD_READ) return Math.min(req.length, NBD_MAX_PAYLOAD);
  return 0;
}

function opName(type: number): string {
  return NBD_CMD_NAMES[type] ?? `CMD_${type}`;
}

export class NbdTransmission {
  readonly closed: Promise<string>;
  readonly #session: NegotiatedSession;
  #socket: Socket;
  /** Receive buffer for reads that do not go straight into a WRITE payload (direct reads only). */
  #scratch: Buffer | undefined;
  readonly #device: BlockDevice;
  readonly #parser: NbdRequestParser;
  readonly #style: ReplyStyle;
  readonly #maxInFlight: number;
  readonly #maxInFlightBytes: number;
  readonly #onClose: ((reason: string) => void) | undefined;
  readonly #onRequest: TransmissionOptions['onRequest'];
  readonly #abort = new AbortController();
  #resolveClosed!: (reason: string) => void;

  #started = false;
  /** Parsing requests from the socket (false after DISC, a hang-up, a violation, or once shut down). */
  #reading = true;
  #inFlight = 0;
  /** READ/WRITE payload bytes of executing requests. */
  #inFlightBytes = 0;
  #writeBlocked = false;
  #shuttingDown = false;
  /** In-flight requests were given up on (shutdown timeout): close without waiting for them. */
  #abandoned = false;
  #ending = false;
  #socketGone = false;
  #finished = false;
  #reason: string | undefined;
  #endTimer: NodeJS.Timeout | undefined;
  #idleWaiters: Array<() => void> = [];

  constructor(session: NegotiatedSession, options: TransmissionOptions = {}) {
    this.#session = session;
    this.#socket = session.socket;
    this.#device = session.export.device;
    this.#style = session.extendedHeaders ? 'extended' : session.structuredReplies ? 'structured' : 'simple';
    this.#parser = new NbdRequestParser({
      extended: session.extendedHeaders,
      allocate: (n) => IO_BUFFERS.take(n),
    });
    const max = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError(`maxInFlight must be a positive integer, got ${max}`);
    this.#maxInFlight = max;
    const maxBytes = options.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new RangeError(`maxInFlightBytes must be a positive integer, got ${maxBytes}`);
    this.#maxInFlightBytes = maxBytes;
    this.#onClose = options.onClose;
    this.#onRequest = options.onRequest;
    this.closed = new Promise<string>((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** Requests executing now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The connection's socket: session.socket, or the socket it moved to for direct reads. */
  get socket(): Socket {
    return this.#socket;
  }

  /** Begins parsing session.leftover, then the socket's data. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#session.leftover.length > 0) this.#parser.push(this.#session.leftover);
    // Plain TCP and unix sockets: WRITE data is received straight into its payload buffer
    // (util/direct-socket.ts); TLS sockets keep 'data' events.
    const adopted = adoptForDirectReads(this.#socket, {
      buffer: () => this.#nextReadBuffer(),
      received: (n, buf) => this.#onDirectRead(n, buf),
    });
    if (adopted) {
      this.#socket = adopted.socket;
      for (const chunk of adopted.pending) this.#parser.push(chunk);
    } else {
      this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    }
    const s = this.#socket;
    s.on('end', () => this.#onEnd());
    s.on('error', (err: Error) => this.#setReason(`socket error: ${err.message}`));
    s.on('close', () => this.#onSocketClose());
    s.on('drain', () => this.#onDrain());
    if (s.destroyed) {
      this.#setReason('connection closed before transmission started');
      this.#onSocketClose();
      return;
    }
    // Replies are written whole (corked), so Nagle would only add latency.
    s.setNoDelay(true);
    this.#pump();
  }

  /**
   * Server shutdown: answers requests already received (and any arriving meanwhile) with
   * ESHUTDOWN, waits up to timeoutMs for in-flight requests, then ends the socket (or, on
   * timeout, aborts them and destroys it). Resolves when the socket is gone.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    if (!this.#started) this.start();
    if (this.#finished) return;
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#setReason('server shutdown');
      this.#pump();
      this.#maybeEnd();
    }
    const idle = await this.#waitIdle(timeoutMs);
    if (!idle && !this.#socketGone) {
      this.#abandoned = true;
      this.#abort.abort(new Error('server shutdown timed out'));
      this.#reason = `server shutdown: ${this.#inFlight} request(s) still running after ${timeoutMs} ms`;
      this.#socket.destroy();
    } else if (!idle) {
      this.#abandoned = true;
      this.#maybeFinish();
    }
    await this.closed;
  }

  // ---- reading -----------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (!this.#reading) return; // after DISC or a violation: read and drop
    this.#parser.push(chunk);
    this.#pump();
  }

  #nextReadBuffer(): Uint8Array {
    return this.#parser.directTarget() ?? (this.#scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES));
  }

  /** Direct reads: n bytes landed in the scratch buffer or in the payload being gathered. */
  #onDirectRead(n: number, buf: Uint8Array): boolean {
    if (!this.#reading) return true; // after DISC or a violation: read and drop
    if (buf === this.#scratch) {
      this.#parser.push(buf.subarray(0, n));
      this.#pump();
      // The scratch buffer is read into again next: the parser keeps copies of what it holds.
      this.#parser.ownQueued();
    } else {
      this.#parser.filledDirect(n);
      this.#pump();
    }
    return true; // #pump() paused the socket if it had to
  }

  /** Pulls and dispatches requests while there is room, then pauses or resumes the socket. */
  #pump(): void {
    while (this.#reading && !this.#writeBlocked && (this.#shuttingDown || this.#hasRoom())) {
      let req: NbdRequest | undefined;
      try {
        req = this.#parser.next();
      } catch (err) {
        this.#hardDisconnect(`protocol error: ${(err as Error).message}`);
        return;
      }
      if (!req) break;
      this.#dispatch(req);
    }
    this.#updateFlow();
  }

  #updateFlow(): void {
    if (this.#socketGone) return;
    const room = this.#shuttingDown || this.#hasRoom();
    // Not reading any more: keep the socket flowing (data dropped) so the peer's FIN is seen.
    if (!this.#reading || (room && !this.#writeBlocked)) this.#socket.resume();
    else this.#socket.pause();
  }

  /** Room for one more request: under both the request count and the payload byte budget. */
  #hasRoom(): boolean {
    if (this.#inFlight === 0) return true;
    return this.#inFlight < this.#maxInFlight && this.#inFlightBytes < this.#maxInFlightBytes;
  }

  #stopReading(): void {
    this.#reading = false;
    this.#parser.clear();
    this.#updateFlow();
  }

  #dispatch(req: NbdRequest): void {
    if (req.type === NBD_CMD_DISC) {
      this.#setReason('client disconnected (NBD_CMD_DISC)');
      this.#stopReading();
      this.#maybeEnd();
      return;
    }
    if (this.#shuttingDown) {
      const outcome: Outcome = { kind: 'error', error: NBD_ESHUTDOWN, message: 'server is shutting down' };
      this.#complete(req, outcome);
      return;
    }
    this.#inFlight++;
    const bytes = payloadBytes(req);
    this.#inFlightBytes += bytes;
    void this.#run(req, bytes);
  }

  async #run(req: NbdRequest, bytes: number): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await this.#execute(req);
    } catch (err) {
      outcome =
        err instanceof RequestError
          ? { kind: 'error', error: err.nbdError, message: err.message }
          : {
              kind: 'error',
              error: nbdErrorFromBlockError(err),
              message: (err as Error)?.message ?? String(err),
            };
    }
    try {
      this.#complete(req, outcome);
    } catch (err) {
      this.#hardDisconnect(`internal error replying to ${opName(req.type)}: ${(err as Error).message}`);
    } finally {
      this.#inFlight--;
      this.#inFlightBytes -= bytes;
      if (this.#inFlight === 0) this.#notifyIdle();
      this.#pump();
      this.#maybeEnd();
      this.#maybeFinish();
    }
  }

  // ---- checks and execution ------------------------------------------------------------------

  async #execute(req: NbdRequest): Promise<Outcome> {
    const range = this.#check(req);
    const dev = this.#device;
    const signal = this.#abort.signal;
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
    switch (req.type) {
      case NBD_CMD_READ: {
        // Large reads from a device that can lend its memory (RAM) go out without a copy; the
        // loan is released once the socket has sent the reply. Small reads are copied: a loan
        // makes the next write to that chunk copy it.
        if (range.length >= LOAN_MIN_BYTES && range.length <= dev.limits.maxTransferBytes) {
          const loan = await dev.readLoan(range.offset, range.length, { signal });
          if (loan)
            return { kind: 'data', offset: range.offset, data: loan.buffers, release: () => loan.release() };
        }
        // Unzeroed: a failed read is answered with an error, never with this buffer.
        const data = IO_BUFFERS.take(range.length);
        try {
          await readFully(dev, range.offset, data, { signal });
        } catch (err) {
          IO_BUFFERS.give(data);
          throw err;
        }
        return { kind: 'data', offset: range.offset, data: [data], release: () => IO_BUFFERS.give(data) };
      }
      case NBD_CMD_WRITE:
        try {
          await writeFully(dev, range.offset, req.payload!, { fua, signal });
        } finally {
          // Devices do not keep the caller's buffer once the write settles (the contract).
          IO_BUFFERS.give(req.payload!);
        }
        return { kind: 'ok' };
      case NBD_CMD_FLUSH:
        await dev.flush({ signal });
        return { kind: 'ok' };
      case NBD_CMD_TRIM: {
        const step = dev.limits.discard!.maxBytes;
        for (let done = 0; done < range.length; done += step)
          await dev.discard(range.offset + done, Math.min(step, range.length - done), { signal });
        if (fua) await dev.flush({ signal });
        return { kind: 'ok' };
      }
      case NBD_CMD_WRITE_ZEROES: {
        const noUnmap = (req.flags & NBD_CMD_FLAG_NO_HOLE) !== 0;
        const step = dev.limits.writeZeroes!.maxBytes;
        for (let done = 0; done < range.length; done += step)
          await dev.writeZeroes(range.offset + done, Math.min(step, range.length - done), {
            noUnmap,
            signal,
          });
        if (fua) await dev.flush({ signal });
        return { kind: 'ok' };
      }
      case NBD_CMD_CACHE:
        return { kind: 'ok' };
      case NBD_CMD_BLOCK_STATUS:
        return this.#blockStatus(req, range.offset, range.length);
      default:
        throw new RequestError(NBD_EINVAL, `unknown command ${req.type}`);
    }
  }

  /** Every check the spec asks for, before the device is touched; returns the range to act on. */
  #check(req: NbdRequest): { offset: number; length: number } {
    const op = opName(req.type);
    const fail = (error: number, why: string): never => {
      throw new RequestError(error, `${op}: ${why}`);
    };
    const exp = this.#session.export;
    const dev = this.#device;
    const extended = this.#style === 'extended';
    const t = req.type;
    if (
      t !== NBD_CMD_READ &&
      t !== NBD_CMD_WRITE &&
      t !== NBD_CMD_FLUSH &&
      t !== NBD_CMD_TRIM &&
      t !== NBD_CMD_CACHE &&
      t !== NBD_CMD_WRITE_ZEROES &&
      t !== NBD_CMD_BLOCK_STATUS
    )
      throw new RequestError(NBD_EINVAL, `unknown command ${t}`);

    // Flags.
    let allowed = NBD_CMD_FLAG_FUA;
    if (t === NBD_CMD_WRITE_ZEROES) {
      allowed |= NBD_CMD_FLAG_NO_HOLE;
      if (this.#session.transmissionFlags & NBD_FLAG_SEND_FAST_ZERO) allowed |= NBD_CMD_FLAG_FAST_ZERO;
    }
    if (t === NBD_CMD_READ && this.#style !== 'simple') allowed |= NBD_CMD_FLAG_DF;
    if (t === NBD_CMD_BLOCK_STATUS) allowed |= NBD_CMD_FLAG_REQ_ONE;
    if (t === NBD_CMD_WRITE && extended) allowed |= NBD_CMD_FLAG_PAYLOAD_LEN;
    const bad = req.flags & ~allowed;
    if (bad) {
      const unknown = bad & ~KNOWN_FLAGS;
      fail(
        NBD_EINVAL,
        unknown
          ? `unknown command flags 0x${unknown.toString(16)}`
          : `flags 0x${bad.toString(16)} are not valid for this command${bad & NBD_CMD_FLAG_PAYLOAD_LEN && extended ? ' (no payload expected)' : ''}`,
      );
    }
    if (t === NBD_CMD_WRITE && extended && !(req.flags & NBD_CMD_FLAG_PAYLOAD_LEN))
      fail(NBD_EINVAL, 'with extended headers a WRITE must set NBD_CMD_FLAG_PAYLOAD_LEN');

    const writes = t === NBD_CMD_WRITE || t === NBD_CMD_TRIM || t === NBD_CMD_WRITE_ZEROES;
    if (writes && isReadOnly(exp)) fail(NBD_EPERM, `export '${exp.name}' is read-only`);
    if (t === NBD_CMD_WRITE && req.payload === undefined)
      fail(NBD_EOVERFLOW, `${req.length} bytes exceed the maximum payload of ${NBD_MAX_PAYLOAD} bytes`);
    if (t === NBD_CMD_READ && req.length > NBD_MAX_PAYLOAD)
      fail(NBD_EOVERFLOW, `${req.length} bytes exceed the maximum payload of ${NBD_MAX_PAYLOAD} bytes`);
    if (t === NBD_CMD_TRIM && !dev.limits.discard)
      fail(NBD_EINVAL, `device ${dev.name} does not support discard`);
    if (t === NBD_CMD_WRITE_ZEROES && !dev.limits.writeZeroes)
      fail(NBD_EINVAL, `device ${dev.name} does not support write zeroes`);
    if (t === NBD_CMD_BLOCK_STATUS) {
      if (this.#style === 'simple' || this.#session.metaContexts.size === 0)
        fail(NBD_EINVAL, 'no metadata context was negotiated');
    }
    if (t === NBD_CMD_FLUSH) {
      if (req.offsetWire !== 0n || req.length !== 0) fail(NBD_EINVAL, 'offset and length must be 0');
      return { offset: 0, length: 0 };
    }

    // Range.
    const offset = req.offset;
    let length = req.length;
    const size = dev.size;
    if (length === 0) fail(NBD_EINVAL, 'length 0');
    if (t === NBD_CMD_BLOCK_STATUS && extended) {
      if (offset >= size) fail(NBD_EINVAL, `offset ${req.offsetWire} is at or past the export size ${size}`);
      length = Math.min(length, size - offset);
    }
    if (offset > size || length > size - offset)
      fail(
        t === NBD_CMD_WRITE || t === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL,
        `bytes ${req.offsetWire}..+${length} end past the export size ${size}`,
      );
    const lbs = dev.limits.logicalBlockSize;
    if (offset % lbs !== 0 || length % lbs !== 0)
      fail(
        NBD_EINVAL,
        `offset ${offset} and length ${length} must be multiples of the ${lbs}-byte block size`,
      );

    if (t === NBD_CMD_WRITE_ZEROES && req.flags & NBD_CMD_FLAG_FAST_ZERO) {
      if (!dev.limits.writeZeroes!.unmaps)
        fail(NBD_ENOTSUP, `device ${dev.name} cannot zero without writing data`);
      if (req.flags & NBD_CMD_FLAG_NO_HOLE)
        fail(NBD_ENOTSUP, 'zeroing with NO_HOLE keeps blocks allocated and may not be fast');
    }
    return { offset, length };
  }

  async #blockStatus(req: NbdRequest, offset: number, length: number): Promise<Outcome> {
    const reqOne = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0;
    const lbs = this.#device.limits.logicalBlockSize;
    // Compact descriptors carry a 32-bit length; keep each piece block aligned.
    const maxLen = this.#style === 'extended' ? Number.MAX_SAFE_INTEGER : Math.floor(0xffffffff / lbs) * lbs;
    const out: Array<{ length: number; flags: number }> = [];
    const end = offset + length;
    let pos = offset;
    let returned = 0;
    for (let calls = 0; pos < end && calls < MAX_STATUS_CALLS && returned < MAX_STATUS_DESCRIPTORS; calls++) {
      const extents = await this.#device.blockStatus(pos, end - pos, { signal: this.#abort.signal });
      returned += extents.length;
      for (const e of extents) {
        let len = Math.min(e.length, end - pos);
        if (len <= 0) continue;
        pos += len;
        const flags = (e.hole ? NBD_STATE_HOLE : 0) | (e.zero ? NBD_STATE_ZERO : 0);
        const last = out[out.length - 1];
        if (last && last.flags === flags && last.length + len <= maxLen) {
          last.length += len;
          continue;
        }
        while (len > 0) {
          const piece = Math.min(len, maxLen);
          out.push({ length: piece, flags });
          len -= piece;
        }
        if (reqOne || out.length >= MAX_STATUS_DESCRIPTORS) break;
      }
      if (reqOne || out.length >= MAX_STATUS_DESCRIPTORS) break;
    }
    // A device outside BlockDeviceBase might answer nothing: "data" is always a correct answer.
    if (out.length === 0) out.push({ length: Math.min(length, maxLen), flags: 0 });
    const descriptors = (
      reqOne ? out.slice(0, 1) : out.slice(0, MAX_STATUS_DESCRIPTORS)
    ) as StatusDescriptor[];
    const covered = descriptors.reduce((n, d) => n + d.length, 0);
    const chunks = [...this.#session.metaContexts].map(([id, name]) => ({
      id,
      descriptors:
        name === NBD_META_CONTEXT_BASE_ALLOCATION
          ? descriptors
          : [{ length: Math.min(covered, maxLen), flags: 0 }],
    }));
    return { kind: 'status', chunks };
  }

  // ---- replies -------------------------------------------------------------------------------

  #complete(req: NbdRequest, outcome: Outcome): void {
    const release = outcome.kind === 'data' ? outcome.release : undefined;
    this.#write(this.#encodeReply(req, outcome), release);
    if (this.#onRequest) {
      const bytes =
        req.type === NBD_CMD_FLUSH || req.type === NBD_CMD_BLOCK_STATUS || req.type === NBD_CMD_CACHE
          ? 0
          : req.length;
      try {
        this.#onRequest({ op: opName(req.type), bytes, error: outcome.kind === 'error' ? outcome.error : 0 });
      } catch {
        // An observer's bug must not take the connection down.
      }
    }
  }

  #encodeReply(req: NbdRequest, o: Outcome): Uint8Array[] {
    const style = this.#style;
    if (style === 'simple') {
      if (o.kind === 'error') return [encodeSimpleReply(o.error, req.cookie)];
      if (o.kind === 'data') return [encodeSimpleReply(0, req.cookie), ...o.data];
      return [encodeSimpleReply(0, req.cookie)];
    }
    const h = (flags: number, type: number): ChunkHeader => ({
      flags,
      type,
      cookie: req.cookie,
      offset: req.offsetWire,
    });
    switch (o.kind) {
      case 'error':
        return encodeChunk(style, h(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR), [
          encodeErrorPayload(o.error, o.message),
        ]);
      case 'data':
        return encodeChunk(style, h(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA), [
          encodeOffsetDataPrefix(o.offset),
          ...o.data,
        ]);
      case 'status': {
        const parts: Uint8Array[] = [];
        o.chunks.forEach((c, i) => {
          const flags = i === o.chunks.length - 1 ? NBD_REPLY_FLAG_DONE : 0;
          const payload =
            style === 'extended'
              ? encodeBlockStatusExt(c.id, c.descriptors)
              : encodeBlockStatus(c.id, c.descriptors);
          const type = style === 'extended' ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS;
          parts.push(...encodeChunk(style, h(flags, type), [payload]));
        });
        return parts;
      }
      case 'ok':
        return style === 'extended'
          ? encodeChunk(style, h(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE))
          : [encodeSimpleReply(0, req.cookie)];
    }
  }

  /** Writes one whole reply in one corked batch; drops it when the socket can no longer take it. */
  #write(parts: readonly Uint8Array[], release?: () => void): void {
    const s = this.#socket;
    if (this.#socketGone || s.destroyed || !s.writable) {
      release?.();
      return;
    }
    s.cork();
    let ok = true;
    const last = parts.length - 1;
    // The read data goes back (pool, loan) once the socket is done with it (written or failed).
    parts.forEach((p, i) => {
      ok = i === last && release ? s.write(p, () => release()) : s.write(p);
    });
    s.uncork();
    // write() says false as soon as more than the 16 KiB high-water mark is queued, which a
    // single 1 MiB read reply always is; stopping there leaves the pipe idle between replies.
    // Stop reading only when replies pile up past REPLY_BUFFER_LIMIT ('drain' still follows,
    // because write() returned false).
    if (!ok && !this.#writeBlocked && s.writableLength > REPLY_BUFFER_LIMIT) {
      this.#writeBlocked = true;
      this.#updateFlow();
    }
  }

  #onDrain(): void {
    if (!this.#writeBlocked) return;
    this.#writeBlocked = false;
    this.#pump();
    this.#maybeEnd();
  }

  // ---- closing -------------------------------------------------------------------------------

  #setReason(reason: string): void {
    this.#reason ??= reason;
  }

  #onEnd(): void {
    // The client sent FIN: nothing more will come. Requests already parsed keep running.
    this.#setReason('client hung up');
    this.#stopReading();
    this.#maybeEnd();
  }

  #hardDisconnect(reason: string): void {
    this.#setReason(reason);
    this.#reading = false;
    this.#parser.clear();
    this.#socket.destroy();
  }

  /** Ends the socket once nothing more will be read and every reply has been written. */
  #maybeEnd(): void {
    if (this.#ending || this.#socketGone || this.#socket.destroyed || this.#inFlight > 0) return;
    if (this.#shuttingDown && this.#reading) {
      // Answer what is already buffered with ESHUTDOWN, then stop.
      this.#pump();
      if (this.#writeBlocked) return; // wait for 'drain' to answer the rest
      this.#stopReading();
    }
    if (this.#reading) return;
    this.#ending = true;
    this.#socket.end();
    this.#endTimer = setTimeout(() => this.#socket.destroy(), END_GRACE_MS);
    this.#endTimer.unref();
  }

  #onSocketClose(): void {
    this.#socketGone = true;
    this.#reading = false;
    this.#parser.clear();
    if (this.#endTimer) clearTimeout(this.#endTimer);
    this.#setReason('connection closed');
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#finished || !this.#socketGone || (this.#inFlight > 0 && !this.#abandoned)) return;
    this.#finished = true;
    const reason = this.#reason ?? 'connection closed';
    this.#notifyIdle();
    this.#resolveClosed(reason);
    try {
      this.#onClose?.(reason);
    } catch {
      // The owner's callback failing must not escape a socket event.
    }
  }

  #waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight === 0 || this.#finished) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        resolve(this.#inFlight === 0);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#idleWaiters.push(done);
    });
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
