// Helpers for the NVMe/TCP host tests (controller*.test.ts, discovery.test.ts): a RAM device
// whose reads and writes can be slowed down or held, counting how many run at once on the
// target; Read/Write commands; the target-side connections of one controller.

import { setTimeout as sleep } from 'node:timers/promises';
import type { IoOptions, WriteOptions } from '../../block/device.js';
import { RamDevice, type RamDeviceOptions } from '../../devices/ram.js';
import { encodeRwCdw12, splitLba } from '../../nvme/command.js';
import { IoOpcode } from '../../nvme/opcodes.js';
import { isSuccess, formatStatus } from '../../nvme/status.js';
import type { TcpFixture } from '../../target/tcp/testing/fixture.js';
import type { TcpQueue as TargetTcpQueue } from '../../target/tcp/queue.js';
import type { HostCommand, HostCompletion } from '../types.js';

/** A RamDevice that delays (or holds) its reads and writes and counts them in flight. */
export class SlowRamDevice extends RamDevice {
  readDelayMs = 0;
  writeDelayMs = 0;
  /** While set, reads and writes wait for it first. */
  gate: Promise<void> | undefined;
  inflight = 0;
  maxInflight = 0;
  reads = 0;
  writes = 0;

  constructor(options: RamDeviceOptions) {
    super(options);
  }

  async #enter(delayMs: number): Promise<void> {
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      if (this.gate) await this.gate;
      if (delayMs > 0) await sleep(delayMs);
    } finally {
      this.inflight--;
    }
  }

  protected override async doRead(offset: number, buffer: Uint8Array, options?: IoOptions): Promise<void> {
    this.reads++;
    await this.#enter(this.readDelayMs);
    return super.doRead(offset, buffer, options);
  }

  protected override async doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.writes++;
    await this.#enter(this.writeDelayMs);
    return super.doWrite(offset, data, options);
  }
}

/** A gate that opens when open() is called. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

export function readCmd(nsid: number, lba: number, into: Uint8Array, blockSize = 512): HostCommand {
  return {
    sqe: {
      opcode: IoOpcode.READ,
      nsid,
      ...splitLba(lba),
      cdw12: encodeRwCdw12({ nlb: into.length / blockSize - 1 }),
    },
    into,
  };
}

export function writeCmd(
  nsid: number,
  lba: number,
  data: Uint8Array,
  extra: { blockSize?: number; retryable?: boolean } = {},
): HostCommand {
  const bs = extra.blockSize ?? 512;
  return {
    sqe: {
      opcode: IoOpcode.WRITE,
      nsid,
      ...splitLba(lba),
      cdw12: encodeRwCdw12({ nlb: data.length / bs - 1 }),
    },
    data,
    ...(extra.retryable === undefined ? {} : { retryable: extra.retryable }),
  };
}

/** Throws unless the completion is a success. */
export function ok(c: HostCompletion, what = 'command'): HostCompletion {
  if (!isSuccess(c.status)) throw new Error(`${what} failed: ${formatStatus(c.status)}`);
  return c;
}

/** The target-side connections (admin and I/O) of controller `cntlid`. */
export function targetConnections(f: TcpFixture, cntlid: number): TargetTcpQueue[] {
  return [...f.transport.connections].filter((c) => c.queue.ctrl?.cntlid === cntlid);
}

/** Resolves at the next `event` of `emitter`, with its first argument. */
export function nextEvent<T>(emitter: NodeJS.EventEmitter, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no '${event}' event within ${timeoutMs} ms`)),
      timeoutMs,
    );
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}
