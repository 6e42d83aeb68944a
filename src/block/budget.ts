// A counting semaphore over bytes: emulated copies take buffer space from it before reading,
// so a copy of any size never holds more than the budget in memory.

import { abortError } from './errors.js';

export class ByteBudget {
  readonly limit: number;
  #used = 0;
  #peak = 0;
  #waiters: Array<{ bytes: number; resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  get used(): number {
    return this.#used;
  }
  /** The most bytes ever held at once. */
  get peak(): number {
    return this.#peak;
  }

  /** Waits until `bytes` fit (first come, first served), then takes them. */
  acquire(bytes: number, signal?: AbortSignal): Promise<void> {
    if (bytes > this.limit)
      throw new RangeError(`ByteBudget: ${bytes} bytes exceed the whole budget ${this.limit}`);
    if (this.#waiters.length === 0 && this.#used + bytes <= this.limit) {
      this.#take(bytes);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = { bytes, resolve, reject };
      this.#waiters.push(waiter);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) {
            this.#waiters.splice(i, 1);
            reject(abortError(signal, 'waiting for copy buffer space'));
            this.#wake();
          }
        },
        { once: true },
      );
    });
  }

  release(bytes: number): void {
    this.#used -= bytes;
    if (this.#used < 0) throw new Error('ByteBudget: released more than acquired');
    this.#wake();
  }

  #take(bytes: number) {
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }

  #wake() {
    while (this.#waiters.length > 0 && this.#used + this.#waiters[0]!.bytes <= this.limit) {
      const w = this.#waiters.shift()!;
      this.#take(w.bytes);
      w.resolve();
    }
  }
}
