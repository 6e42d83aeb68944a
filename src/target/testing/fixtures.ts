// Shared set-ups for the target's tests: a Target with one subsystem over RAM namespaces, a
// loopback host, and small command builders.

import { RamDevice, type RamDeviceOptions } from '../../devices/ram.js';
import type { BlockDevice } from '../../block/device.js';
import { encodeCopyCommand, encodeCopySourceRanges, type CopySourceRangeInput } from '../../nvme/copy.js';
import { splitLba } from '../../nvme/command.js';
import { encodeRwCdw12 } from '../../nvme/command.js';
import { IoOpcode } from '../../nvme/opcodes.js';
import { sameStatus, type NvmeStatus } from '../../nvme/status.js';
import type { Completion } from '../../nvme/completion.js';
import type { NamespaceOptions } from '../namespace.js';
import type { SubsystemOptions } from '../subsystem.js';
import { Target, type TargetOptions } from '../target.js';
import { LoopHost, type LoopHostOptions, type LoopQueue, type LoopResult } from './loop.js';
import assert from 'node:assert/strict';

export const NQN = 'nqn.2024-01.io.tsblk:test';

export interface Fixture {
  target: Target;
  host: LoopHost;
}

/** A target with subsystem NQN holding `namespaces`, and a loop host. */
export function setup(
  opts: {
    namespaces?: NamespaceOptions[];
    subsystem?: Partial<SubsystemOptions>;
    target?: TargetOptions;
    host?: LoopHostOptions;
  } = {},
): Fixture {
  const target = new Target(opts.target);
  target.addSubsystem({ nqn: NQN, ...opts.subsystem, namespaces: opts.namespaces ?? [] });
  return { target, host: new LoopHost(target, opts.host) };
}

export function ram(size: number, o: Partial<RamDeviceOptions> = {}): RamDevice {
  return new RamDevice({ size, ...o });
}

/** Fills a device with a pattern where each 512-byte sector starts with its sector number. */
export async function fillPattern(dev: BlockDevice, seed = 0): Promise<void> {
  const buf = Buffer.alloc(dev.size);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 7 + seed + (i >> 9)) & 0xff;
  for (let s = 0; s < buf.length / 512; s++) buf.writeUInt32LE(s + seed * 1000000, s * 512);
  await dev.write(0, buf);
}

export async function readAll(dev: BlockDevice): Promise<Buffer> {
  const buf = Buffer.alloc(dev.size);
  await dev.read(0, buf);
  return buf;
}

export function rw(
  opcode: number,
  nsid: number,
  slba: number,
  blocks: number,
  extra: { fua?: boolean; deac?: boolean } = {},
) {
  return {
    opcode,
    nsid,
    ...splitLba(slba),
    cdw12: encodeRwCdw12({ nlb: blocks - 1, fua: extra.fua, deac: extra.deac }),
  };
}

export function read(
  q: LoopQueue,
  nsid: number,
  slba: number,
  blocks: number,
  bs = 512,
): Promise<LoopResult> {
  return q.submit(rw(IoOpcode.READ, nsid, slba, blocks), { length: blocks * bs });
}

export function write(
  q: LoopQueue,
  nsid: number,
  slba: number,
  data: Buffer,
  bs = 512,
  fua = false,
): Promise<LoopResult> {
  return q.submit(rw(IoOpcode.WRITE, nsid, slba, data.length / bs, { fua }), { data });
}

export function copy(
  q: LoopQueue,
  nsid: number,
  sdlba: number,
  ranges: CopySourceRangeInput[],
  format = 0,
  extra: { fua?: boolean; data?: Buffer } = {},
): Promise<LoopResult> {
  const dw = encodeCopyCommand({ sdlba, ranges: ranges.length, format, fua: extra.fua });
  return q.submit(
    { opcode: IoOpcode.COPY, nsid, ...dw },
    { data: extra.data ?? encodeCopySourceRanges(ranges, format) },
  );
}

/** Asserts the completion's SCT/SC (and DNR when given). */
export function assertStatus(cqe: Completion, expected: NvmeStatus, dnr?: boolean): void {
  assert.ok(
    sameStatus(cqe.status, expected),
    `status sct ${cqe.status.sct} sc 0x${cqe.status.sc.toString(16)}, expected sct ${expected.sct} sc 0x${expected.sc.toString(16)}`,
  );
  if (dnr !== undefined) assert.equal(cqe.status.dnr, dnr, 'DNR');
}
