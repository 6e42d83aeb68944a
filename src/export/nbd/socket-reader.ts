// Exact-length reads over a socket for the NBD handshake, which is a strict request/reply
// dialogue: "give me the next n bytes" is all it needs. The socket is paused whenever no read
// is waiting, so nothing is pulled off it that the handshake has not asked for; detach() then
// hands the socket to its next owner (the TLS layer or the transmission phase) with the bytes
// that did arrive early, and leaves no listener behind.

import type { Duplex } from 'node:stream';
import { ByteQueue } from '../../util/byte-queue.js';

/** The socket ended, closed or failed before the bytes asked for arrived. */
export class SocketReadError extends Error {
  override readonly name = 'SocketReadError';
  constructor(
    message: string,
    /** 'end': the peer closed its side; 'close': the socket closed; 'error': an I/O error; 'detached'. */
    readonly kind: 'end' | 'close' | 'error' | 'detached',
  ) {
    super(message);
  }
}

interface PendingRead {
  readonly n: number;
  readonly resolve: (b: Buffer) => void;
  readonly reject: (e: SocketReadError) => void;
}

export class SocketReader {
  readonly #socket: Duplex;
  readonly #queue = new ByteQueue();
  #pending: PendingRead | undefined;
  /** Set once the socket can deliver nothing more; every later read fails with it. */
  #failure: SocketReadError | undefined;
  #detached = false;

  readonly #onData = (chunk: Buffer | string): void => {
    this.#queue.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    this.#settle();
  };
  readonly #onEnd = (): void => this.#fail(new SocketReadError('the client closed the connection', 'end'));
  readonly #onClose = (): void => this.#fail(new SocketReadError('the connection was closed', 'close'));
  readonly #onError = (err: Error): void =>
    this.#fail(new SocketReadError(`socket error: ${err.message}`, 'error'));

  constructor(socket: Duplex) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
    socket.pause();
    if (socket.destroyed) this.#fail(new SocketReadError('the connection was closed', 'close'));
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.#queue.length;
  }

  /** The next n bytes. One read at a time; rejects with SocketReadError when they cannot come. */
  read(n: number): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 0) return Promise.reject(new RangeError(`read: bad length ${n}`));
    if (this.#pending) return Promise.reject(new Error('SocketReader: a read is already waiting'));
    if (this.#detached) return Promise.reject(new SocketReadError('the reader was detached', 'detached'));
    if (this.#queue.length >= n) return Promise.resolve(this.#take(n));
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending = { n, resolve, reject };
      this.#socket.resume();
    });
  }

  /**
   * Stops reading: removes every listener this reader added, leaves the socket paused and
   * returns the bytes received but not read. A waiting read fails with kind 'detached'.
   */
  detach(): Buffer {
    if (this.#detached) return Buffer.alloc(0);
    this.#detached = true;
    this.#socket.pause();
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onClose);
    this.#socket.off('error', this.#onError);
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(new SocketReadError('the reader was detached', 'detached'));
    const rest = this.#take(this.#queue.length);
    this.#queue.clear();
    return rest;
  }

  /** n bytes off the queue, copied: chunk views must not outlive the queue's ownership of them. */
  #take(n: number): Buffer {
    return n === 0 ? Buffer.alloc(0) : Buffer.from(this.#queue.consume(n));
  }

  #settle(): void {
    const p = this.#pending;
    if (p && this.#queue.length >= p.n) {
      this.#pending = undefined;
      p.resolve(this.#take(p.n));
    }
    // Pause between reads so bytes for the next owner stay in the socket.
    if (!this.#pending) this.#socket.pause();
  }

  #fail(err: SocketReadError): void {
    this.#failure ??= err;
    const p = this.#pending;
    if (p && this.#queue.length < p.n) {
      this.#pending = undefined;
      p.reject(this.#failure);
    }
  }
}
