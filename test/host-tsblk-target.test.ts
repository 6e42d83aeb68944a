// tsblk's NVMe/TCP host against tsblk's target running as a separate process
// (`node --import tsx src/cli/main.ts serve CONFIG`), over real TCP on 127.0.0.1.
//
// 1. Every RemoteNamespace operation against two RAM namespaces of one subsystem: reads and
//    writes in the capsule (≤ 16 KiB, IOCCSZ), through R2T, of the MDTS (1 MiB) and of several
//    MiB (split by writeFully), FUA, Flush, Write Zeroes with and without DEAC (noUnmap),
//    Dataset Management, the last block; copies through issueCopy in auto mode: one range,
//    300 scattered sources gathered end to end (two NVMe Copy commands: MSRC + 1 = 256 ranges
//    each), scattered destinations (one Copy per destination run: a Copy writes its ranges
//    consecutively from SDLBA), across the two namespaces (descriptor format 2 with SNSID,
//    enabled by Host Behavior Support CDFE), overlapping ranges (memmove semantics; a Copy
//    reading its own destination is sent with retryable false), and a swap (a cycle no Copy
//    order expresses: issueCopy falls back to emulation). Every command the namespaces send is
//    recorded by wrapping the controller's submitIo, so "offloaded" is checked on the wire: the
//    copy sent Copy commands and not one Read or Write. All data is read back.
// 2. Crash: a file namespace behind a `fault` device that delays each write by 5 ms (so about
//    16 writes are always inside the target when it dies). 600 writes, each to its own range
//    with its own random bytes, at QD 16; the target is `kill -9`ed at a third and at two
//    thirds of the acknowledgements and restarted with the same config (same port) ~1 s later.
//    The host must reconnect ('reconnected'), resubmit what was in flight, and finish every
//    write (ctrl-loss timeout 15 s: none may fail). Every write is then checked through the host
//    and in the backing file itself, which must be exactly the image the writes describe.
// 3. Controller loss: the same kill without a restart, ctrlLossTimeoutMs 1.5 s: the writes in
//    flight fail with BlockError ENODEV whose cause is HostError CONTROLLER_LOST, 'lost' comes
//    between 1.5 s and 3.5 s after the kill, nothing hangs, later I/O fails at once with ENODEV,
//    and the writes acknowledged before the kill are in the backing file.
//
// The crash configs name a fixed port, picked free below the ephemeral port range so nothing
// else takes it while the target is down; the test waits for serve's "stop with" line (printed
// once every listener is bound), never a fixed time, except the ~1 s the target stays dead.
// Every child process is killed in after().

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { issueCopy } from '../src/block/copy.js';
import type { CopyRange } from '../src/block/device.js';
import { BlockError, ErrorCode } from '../src/block/errors.js';
import { readFully, writeFully } from '../src/block/io.js';
import {
  HostError,
  NvmeController,
  type ControllerOptions,
  type HostCommand,
  type RemoteNamespace,
} from '../src/host/index.js';
import { decodeRwCdw12 } from '../src/nvme/command.js';
import { decodeCopyCdw12, decodeCopySourceRanges } from '../src/nvme/copy.js';
import { inlineBytesFromIoccsz } from '../src/nvme/identify.js';
import { IoOpcode } from '../src/nvme/opcodes.js';

const ROOT = resolve(import.meta.dirname, '..');
const KiB = 1024;
const MiB = 1024 * KiB;
const HOSTNQN = 'nqn.2014-08.org.nvmexpress:uuid:7d1c6a52-0f4b-4c8e-9a55-3e2b1d0c9f61';

// ---- the target process ----

interface Target {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<void>;
  output(): string;
}

const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

/** Starts `tsblk serve CONFIG` and resolves once it printed "stop with" (every port is bound). */
async function startTarget(config: string): Promise<Target> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', config], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      children.delete(child);
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`tsblk serve did not start within 20 s:\n${out}`)), 20_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (!out.includes('stop with')) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve();
    };
    const onExit = (code: number | null): void =>
      fail(new Error(`tsblk serve exited (${code}) before it listened:\n${out}`));
    function fail(err: Error): void {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    }
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', onExit);
    child.once('error', fail);
  });
  const m = /listening on 127\.0\.0\.1:(\d+): I\/O/.exec(out);
  assert.ok(m, `no I/O listener in:\n${out}`);
  return { child, port: Number(m[1]), exited, output: () => out };
}

/** SIGKILL, and wait until the process is gone (its sockets are closed by then). */
async function kill9(t: Target): Promise<void> {
  t.child.kill('SIGKILL');
  await t.exited;
}

/**
 * A TCP port nothing listens on, below the ephemeral range (ip_local_port_range): neither
 * another test's port-0 listener nor an outgoing connection takes it while the target is down.
 */
async function freePort(): Promise<number> {
  let low = 32768;
  try {
    low = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the usual default
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * Math.max(1, low - 10_000));
    const s = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    s.close();
    await once(s, 'close');
    return port;
  }
  throw new Error('no free TCP port below the ephemeral range after 50 tries');
}

async function writeConfig(
  path: string,
  nqn: string,
  port: number,
  devices: Record<string, unknown>,
): Promise<void> {
  await writeFile(
    path,
    JSON.stringify({
      devices,
      subsystems: { [nqn]: { namespaces: Object.keys(devices).map((device) => ({ device })) } },
      ports: [{ address: '127.0.0.1', port }],
    }),
  );
}

function connect(t: Target, subnqn: string, extra: Partial<ControllerOptions> = {}): Promise<NvmeController> {
  return NvmeController.connect({
    address: { host: '127.0.0.1', port: t.port },
    subnqn,
    hostnqn: HOSTNQN,
    ioQueues: 2,
    ...extra,
  });
}

/** Records every I/O command the controller's namespaces submit (RemoteNamespace calls parent.submitIo). */
function recordIo(c: NvmeController): HostCommand[] {
  const sent: HostCommand[] = [];
  const submit = c.submitIo.bind(c);
  c.submitIo = (cmd: HostCommand) => {
    sent.push(cmd);
    return submit(cmd);
  };
  return sent;
}

const opcodeOf = (cmd: HostCommand): number => cmd.sqe.opcode ?? -1;
const cdw12Of = (cmd: HostCommand): number => cmd.sqe.cdw12 ?? 0;

function assertZeroes(buf: Uint8Array, what: string): void {
  const at = buf.findIndex((b) => b !== 0);
  assert.equal(at, -1, `${what}: byte ${at} is not zero`);
}

/** Offset of the first differing 512-byte block, for readable failures of big comparisons. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (Buffer.from(actual).equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  assert.fail(`${what}: first difference at byte ${at} (block ${Math.floor(at / 512)})`);
}

// ---- 1. every operation ----

describe('RemoteNamespace against `tsblk serve` in another process', () => {
  const NQN = 'nqn.2026-11.io.tsblk:host-ops';
  let dir: string;
  let target: Target;
  let c: NvmeController;
  let ns1: RemoteNamespace;
  let ns2: RemoteNamespace;
  let sent: HostCommand[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsblk-host-ops-'));
    const config = join(dir, 'ops.json');
    await writeConfig(config, NQN, 0, {
      a: { type: 'ram', size: '64M' },
      b: { type: 'ram', size: '64M' },
    });
    target = await startTarget(config);
    c = await connect(target, NQN);
    ns1 = c.namespace(1);
    ns2 = c.namespace(2);
    sent = recordIo(c);
  });
  after(async () => {
    await c?.disconnect();
    if (target) await kill9(target);
    await rm(dir, { recursive: true, force: true });
  });

  it('connects to the child target and sees both namespaces with the served limits', () => {
    assert.equal(c.state, 'live');
    assert.deepEqual([...c.namespaces.keys()], [1, 2]);
    assert.equal(ns1.size, 64 * MiB);
    assert.equal(ns2.size, 64 * MiB);
    assert.equal(ns1.limits.logicalBlockSize, 512);
    assert.equal(ns1.limits.maxTransferBytes, MiB, 'MDTS 1 MiB');
    assert.equal(inlineBytesFromIoccsz(c.idCtrl.ioccsz), 16 * KiB, 'in-capsule data size');
    assert.ok(c.copyFormats.has(0), 'format 0 (OCFS)');
    assert.ok(c.copyFormats.has(2), 'format 2 (enabled by Host Behavior Support CDFE)');
    assert.ok(ns1.canCopyFrom(ns1));
    assert.ok(ns2.canCopyFrom(ns1), 'cross-namespace copy offload');
  });

  it('writes and reads back in the capsule, through R2T, at MDTS and of several MiB', async () => {
    const sizes = [512, 4 * KiB, 16 * KiB, 16 * KiB + 512, 128 * KiB, MiB];
    const blobs = sizes.map((n, i) => ({ off: i * 2 * MiB + i * 512, data: randomBytes(n) }));
    const mark = sent.length;
    await Promise.all(blobs.map((b) => ns1.write(b.off, b.data)));
    const writes = sent.slice(mark);
    assert.deepEqual(
      writes.map((w) => [opcodeOf(w), decodeRwCdw12(cdw12Of(w)).nlb + 1]),
      sizes.map((n) => [IoOpcode.WRITE, n / 512]),
      'one Write per request',
    );
    const back = await Promise.all(
      blobs.map(async (b) => {
        const buf = new Uint8Array(b.data.length);
        await ns1.read(b.off, buf);
        return buf;
      }),
    );
    back.forEach((buf, i) => assertSameBytes(buf, blobs[i]!.data, `${sizes[i]} bytes`));

    // Several MiB: split at maxTransferBytes, 1 MiB chunks in parallel, read back in one go.
    const big = randomBytes(6 * MiB + 4 * KiB);
    const at = 16 * MiB + 512;
    await Promise.all(
      Array.from({ length: Math.ceil(big.length / MiB) }, (_, i) =>
        writeFully(ns1, at + i * MiB, big.subarray(i * MiB, (i + 1) * MiB)),
      ),
    );
    const bigBack = new Uint8Array(big.length);
    await readFully(ns1, at, bigBack);
    assertSameBytes(bigBack, big, '6 MiB + 4 KiB');

    // One request over MDTS is refused before anything is sent.
    const before = sent.length;
    await assert.rejects(ns1.write(0, new Uint8Array(2 * MiB)), { code: ErrorCode.E2BIG });
    assert.equal(sent.length, before);
  });

  it('FUA write and Flush reach the target', async () => {
    const data = randomBytes(64 * KiB);
    const off = 24 * MiB;
    const mark = sent.length;
    await ns1.write(off, data, { fua: true });
    await ns1.flush();
    const cmds = sent.slice(mark);
    assert.deepEqual(cmds.map(opcodeOf), [IoOpcode.WRITE, IoOpcode.FLUSH]);
    assert.equal(decodeRwCdw12(cdw12Of(cmds[0]!)).fua, true);
    assert.equal(ns1.details().volatileWriteCache, true, 'the target has a volatile write cache');
    const back = new Uint8Array(data.length);
    await ns1.read(off, back);
    assertSameBytes(back, data, 'FUA write');
  });

  it('Write Zeroes (DEAC set, and clear with noUnmap) and Deallocate zero exactly their range', async () => {
    assert.equal(ns1.limits.discard?.zeroesData, true, 'deallocated blocks read as zeroes');
    assert.ok(ns1.limits.writeZeroes);
    const len = 256 * KiB;
    const base = 32 * MiB;
    const region = randomBytes(3 * len + 2 * 512);
    await writeFully(ns1, base, region);
    const r = [base + 512, base + 512 + len, base + 512 + 2 * len];
    const mark = sent.length;
    await ns1.writeZeroes(r[0]!, len);
    const m1 = sent.length;
    await ns1.writeZeroes(r[1]!, len, { noUnmap: true });
    const m2 = sent.length;
    await ns1.discard(r[2]!, len);
    const wz = sent.slice(mark, m1);
    const wzNoUnmap = sent.slice(m1, m2);
    const dsm = sent.slice(m2);
    assert.ok(wz.length > 0 && wz.every((x) => opcodeOf(x) === IoOpcode.WRITE_ZEROES));
    assert.ok(
      wz.every((x) => decodeRwCdw12(cdw12Of(x)).deac),
      'DEAC set by default',
    );
    assert.ok(wzNoUnmap.length > 0 && wzNoUnmap.every((x) => opcodeOf(x) === IoOpcode.WRITE_ZEROES));
    assert.ok(
      wzNoUnmap.every((x) => !decodeRwCdw12(cdw12Of(x)).deac),
      'noUnmap clears DEAC',
    );
    assert.ok(dsm.length > 0 && dsm.every((x) => opcodeOf(x) === IoOpcode.DSM));

    const back = new Uint8Array(region.length);
    await readFully(ns1, base, back);
    assertSameBytes(back.subarray(0, 512), region.subarray(0, 512), 'the block before');
    assertZeroes(back.subarray(512, 512 + 3 * len), 'zeroed and deallocated ranges');
    assertSameBytes(back.subarray(512 + 3 * len), region.subarray(512 + 3 * len), 'the block after');
  });

  it('the last block: write, read, zero, discard; one block past the end is ERANGE', async () => {
    for (const ns of [ns1, ns2]) {
      const last = ns.size - 512;
      const tail = randomBytes(MiB);
      await ns.write(ns.size - MiB, tail); // an R2T write ending on the last block
      const one = new Uint8Array(512);
      await ns.read(last, one);
      assertSameBytes(one, tail.subarray(MiB - 512), `${ns.name} last block`);
      const before = sent.length;
      await assert.rejects(ns.write(last, new Uint8Array(1024)), { code: ErrorCode.ERANGE });
      await assert.rejects(ns.read(ns.size, new Uint8Array(512)), { code: ErrorCode.ERANGE });
      await assert.rejects(ns.writeZeroes(last, 1024), { code: ErrorCode.ERANGE });
      await assert.rejects(ns.discard(ns.size, 512), { code: ErrorCode.ERANGE });
      assert.equal(sent.length, before, 'refused before anything is sent');
      await ns.writeZeroes(last, 512, { noUnmap: true });
      await ns.read(last, one);
      assertZeroes(one, `${ns.name} last block zeroed`);
      const prev = new Uint8Array(512);
      await ns.read(last - 512, prev);
      assertSameBytes(prev, tail.subarray(MiB - 1024, MiB - 512), 'the block before stays');
      await ns.write(last, tail.subarray(0, 512));
      await ns.discard(last, 512);
      await ns.read(last, one);
      assertZeroes(one, `${ns.name} last block discarded`);
    }
  });

  /** Runs issueCopy and asserts it was offloaded: Copy commands only, to `dst`'s NSID. */
  async function offloadedCopy(
    src: RemoteNamespace,
    dst: RemoteNamespace,
    ranges: CopyRange[],
  ): Promise<HostCommand[]> {
    const mark = sent.length;
    const r = await issueCopy(src, dst, ranges);
    const bytes = ranges.reduce((s, x) => s + x.len, 0);
    assert.equal(r.bytes, bytes);
    assert.equal(r.offloaded, bytes, 'every byte offloaded');
    assert.equal(r.emulated, 0, 'nothing emulated');
    const cmds = sent.slice(mark);
    assert.ok(cmds.length > 0);
    assert.deepEqual(
      cmds.filter((x) => opcodeOf(x) !== IoOpcode.COPY).map(opcodeOf),
      [],
      'no Read or Write from the host: the target copied',
    );
    assert.ok(cmds.every((x) => x.sqe.nsid === dst.nsid));
    return cmds;
  }

  /** Source ranges of a Copy command, decoded from its descriptors. */
  function descriptorsOf(cmd: HostCommand) {
    const { nr, df } = decodeCopyCdw12(cdw12Of(cmd));
    return { df, ranges: decodeCopySourceRanges(cmd.data!, df, nr + 1) };
  }

  it('copies one range as one NVMe Copy', async () => {
    const data = randomBytes(MiB);
    await ns1.write(40 * MiB, data);
    const cmds = await offloadedCopy(ns1, ns1, [{ src: 40 * MiB, dst: 42 * MiB + 4 * KiB, len: MiB }]);
    assert.equal(cmds.length, 1);
    const d = descriptorsOf(cmds[0]!);
    assert.equal(d.df, 0);
    assert.deepEqual(
      d.ranges.map((x) => [x.slba, x.blocks]),
      [[(40 * MiB) / 512, MiB / 512]],
    );
    const back = new Uint8Array(MiB);
    await ns1.read(42 * MiB + 4 * KiB, back);
    assertSameBytes(back, data, 'copied range');
  });

  it('gathers 300 scattered ranges into two NVMe Copy commands (MSRC 255)', async () => {
    assert.equal(ns1.limits.copy?.maxRanges, 256);
    const n = 300;
    const srcBase = 44 * MiB;
    const dstBase = 48 * MiB;
    const src = randomBytes(n * 8 * KiB);
    await writeFully(ns1, srcBase, src);
    // Sources of 512 B .. 8 KiB with gaps between them; destinations end to end (one NVMe
    // Copy writes all its ranges consecutively from SDLBA).
    let at = dstBase;
    const ranges = Array.from({ length: n }, (_, i) => {
      const r = { src: srcBase + i * 8 * KiB, dst: at, len: (1 + (i % 16)) * 512 };
      at += r.len;
      return r;
    });
    const cmds = await offloadedCopy(ns1, ns1, ranges);
    assert.deepEqual(
      cmds.map((x) => descriptorsOf(x).ranges.length),
      [256, 44],
    );
    const back = new Uint8Array(at - dstBase);
    await readFully(ns1, dstBase, back);
    for (const [i, r] of ranges.entries()) {
      const off = r.dst - dstBase;
      assertSameBytes(
        back.subarray(off, off + r.len),
        src.subarray(i * 8 * KiB, i * 8 * KiB + r.len),
        `range ${i}`,
      );
    }
  });

  it('scatters ranges to separate destinations: one Copy per destination run, all offloaded', async () => {
    const base = 52 * MiB;
    const src = randomBytes(4 * 64 * KiB);
    await ns1.write(base, src);
    const ranges = [3, 0, 2, 1].map((slot, i) => ({
      src: base + i * 64 * KiB,
      dst: base + MiB + slot * 128 * KiB,
      len: 64 * KiB,
    }));
    const cmds = await offloadedCopy(ns1, ns1, ranges);
    assert.equal(cmds.length, 4);
    for (const [i, r] of ranges.entries()) {
      const back = new Uint8Array(r.len);
      await ns1.read(r.dst, back);
      assertSameBytes(back, src.subarray(i * r.len, (i + 1) * r.len), `range ${i}`);
    }
  });

  it('copies across the two namespaces with descriptor format 2 (SNSID)', async () => {
    const data = randomBytes(3 * 256 * KiB);
    await ns1.write(56 * MiB, data);
    const ranges = [0, 1, 2].map((i) => ({
      src: 56 * MiB + i * 256 * KiB,
      dst: 8 * MiB + (2 - i) * 256 * KiB, // end to end, in reverse order
      len: 256 * KiB,
    }));
    const cmds = await offloadedCopy(ns1, ns2, ranges);
    assert.equal(cmds.length, 1);
    const d = descriptorsOf(cmds[0]!);
    assert.equal(d.df, 2);
    assert.deepEqual(
      d.ranges.map((x) => [x.snsid, x.slba * 512]),
      [2, 1, 0].map((i) => [1, ranges[i]!.src]),
      'descriptors in destination order, each naming namespace 1',
    );
    for (const [i, r] of ranges.entries()) {
      const back = new Uint8Array(r.len);
      await ns2.read(r.dst, back);
      assertSameBytes(back, data.subarray(i * r.len, (i + 1) * r.len), `ns2 range ${i}`);
    }
    // And back the other way, from ns2 to ns1.
    await offloadedCopy(ns2, ns1, [{ src: 8 * MiB, dst: 60 * MiB, len: 512 * KiB }]);
    const back = new Uint8Array(512 * KiB);
    await ns1.read(60 * MiB, back);
    assertSameBytes(back.subarray(0, 256 * KiB), data.subarray(512 * KiB), 'ns2 → ns1, first half');
    assertSameBytes(back.subarray(256 * KiB), data.subarray(256 * KiB, 512 * KiB), 'second half');
  });

  it('overlapping copies behave like memmove', async () => {
    const base = 62 * MiB;
    const model = randomBytes(MiB);
    await ns1.write(base, model);
    const cases: Array<{ what: string; ranges: CopyRange[]; retryable: boolean[] }> = [
      {
        what: 'forwards onto itself',
        ranges: [{ src: base, dst: base + 256 * KiB, len: 512 * KiB }],
        retryable: [false], // it reads what it writes: it may not run twice
      },
      {
        what: 'backwards onto itself',
        ranges: [{ src: base + 512 * KiB, dst: base + 384 * KiB, len: 256 * KiB }],
        retryable: [false],
      },
      {
        // Range 1 reads what range 0 writes: two commands, the reader first.
        what: 'a chain',
        ranges: [
          { src: base, dst: base + 64 * KiB, len: 64 * KiB },
          { src: base + 64 * KiB, dst: base + 128 * KiB, len: 64 * KiB },
        ],
        retryable: [true, true],
      },
    ];
    for (const { what, ranges, retryable } of cases) {
      const cmds = await offloadedCopy(ns1, ns1, ranges);
      assert.deepEqual(
        cmds.map((x) => x.retryable !== false),
        retryable,
        `${what}: retryable`,
      );
      if (ranges.length === 2)
        assert.deepEqual(
          cmds.map((x) => descriptorsOf(x).ranges[0]!.slba * 512),
          [ranges[1]!.src, ranges[0]!.src],
          `${what}: the range reading [64K, 128K) goes before the one writing it`,
        );
      const sources = ranges.map((r) => Buffer.from(model.subarray(r.src - base, r.src - base + r.len)));
      ranges.forEach((r, i) => sources[i]!.copy(model, r.dst - base));
      const back = new Uint8Array(MiB);
      await ns1.read(base, back);
      assertSameBytes(back, model, what);
    }
  });

  it('swapping two ranges (a cycle no Copy order can express) is emulated by issueCopy auto', async () => {
    const base = 60 * MiB;
    const data = randomBytes(128 * KiB);
    await ns1.write(base, data);
    const mark = sent.length;
    const r = await issueCopy(ns1, ns1, [
      { src: base, dst: base + 64 * KiB, len: 64 * KiB },
      { src: base + 64 * KiB, dst: base, len: 64 * KiB },
    ]);
    assert.equal(r.offloaded + r.emulated, 128 * KiB);
    assert.equal(r.emulated, 128 * KiB, 'the host refused to offload the cycle');
    assert.equal(
      sent.slice(mark).filter((x) => opcodeOf(x) === IoOpcode.COPY).length,
      0,
      'no Copy sent for it',
    );
    const back = new Uint8Array(128 * KiB);
    await ns1.read(base, back);
    assertSameBytes(back, Buffer.concat([data.subarray(64 * KiB), data.subarray(0, 64 * KiB)]), 'swapped');
  });
});

// ---- 2 and 3. kill -9 of the target ----

interface Job {
  readonly index: number;
  readonly off: number;
  readonly data: Buffer;
  state: 'waiting' | 'sent' | 'acked' | 'failed';
  error?: unknown;
  /** Target kills before the write was submitted / reconnects before it settled. */
  killsAtStart: number;
  upsAtEnd: number;
}

const SLOT = 32 * KiB;

/** n writes of 4..32 KiB (in the capsule and through R2T), write i in its own 32 KiB slot. */
function makeJobs(n: number): Job[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i,
    off: i * SLOT,
    data: randomBytes((1 + (i % 8)) * 4 * KiB),
    state: 'waiting',
    killsAtStart: 0,
    upsAtEnd: 0,
  }));
}

/** The file image the acknowledged jobs describe (everything else zero: the file starts sparse). */
function imageOf(jobs: Job[], size: number): Buffer {
  const img = Buffer.alloc(size);
  for (const j of jobs) if (j.state === 'acked') j.data.copy(img, j.off);
  return img;
}

interface Workload {
  done: Promise<void>;
  inflight(): number;
  acked(): number;
}

/**
 * `qd` workers take the next job each. `events.kills` / `events.ups` are read at submission and
 * completion; `onAck` runs synchronously in the acknowledgement. stopOnError: a worker stops
 * after its first failed write (else it goes on with the next job).
 */
function runWorkload(
  ns: RemoteNamespace,
  jobs: Job[],
  qd: number,
  events: { kills: number; ups: number },
  onAck: (acked: number) => void,
  stopOnError: boolean,
): Workload {
  let next = 0;
  let inflight = 0;
  let acked = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const j = jobs[next++]!;
      j.state = 'sent';
      j.killsAtStart = events.kills;
      inflight++;
      try {
        await ns.write(j.off, j.data);
        j.state = 'acked';
        j.upsAtEnd = events.ups;
        inflight--;
        onAck(++acked);
      } catch (err) {
        j.state = 'failed';
        j.error = err;
        inflight--;
        if (stopOnError) return;
      }
    }
  };
  return {
    done: Promise.all(Array.from({ length: qd }, worker)).then(() => undefined),
    inflight: () => inflight,
    acked: () => acked,
  };
}

/** Rejects when `p` does not settle within ms ("nothing hangs"). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('kill -9 of the target process under a write workload', () => {
  let dir: string;
  const controllers: NvmeController[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tsblk-host-crash-'));
  });
  after(async () => {
    await Promise.all(controllers.map((c) => c.disconnect().catch(() => {})));
    for (const child of children) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  /** A file namespace behind a fault device delaying every write by 5 ms, on a fixed free port. */
  async function crashConfig(name: string, nqn: string): Promise<{ config: string; image: string }> {
    const config = join(dir, `${name}.json`);
    const image = join(dir, `${name}.img`);
    await writeConfig(config, nqn, await freePort(), {
      slow: { type: 'fault', inner: `file:${image},size=32M,create`, delays: { write: { ms: 5 } } },
    });
    return { config, image };
  }

  it('two kills with restarts: the host reconnects, every write is acknowledged and durable', async () => {
    const NQN = 'nqn.2026-11.io.tsblk:host-crash';
    const { config, image } = await crashConfig('crash', NQN);
    let target = await startTarget(config);
    const port = target.port;
    const c = await connect(target, NQN, {
      reconnectDelayMs: 200,
      ctrlLossTimeoutMs: 15_000,
      queueSize: 32,
    });
    controllers.push(c);
    const ns = c.namespace(1);
    const events = { kills: 0, ups: 0 };
    const states: string[] = [];
    c.on('state', (s: string) => states.push(s));
    c.on('reconnected', () => events.ups++);
    let lost: unknown;
    c.on('lost', (e: unknown) => (lost = e));

    const n = 600;
    const jobs = makeJobs(n);
    const killAt = [n / 3, (2 * n) / 3];
    const inflightAtKill: number[] = [];
    const killed: Array<() => void> = [];
    const killedAt = killAt.map((_, k) => new Promise<void>((resolve) => (killed[k] = resolve)));
    // The kill happens inside the acknowledgement, while the other writes are in flight.
    const w: Workload = runWorkload(
      ns,
      jobs,
      16,
      events,
      (acked) => {
        const k = killAt.indexOf(acked);
        if (k < 0) return;
        target.child.kill('SIGKILL');
        events.kills++;
        inflightAtKill.push(w.inflight());
        killed[k]!();
      },
      false,
    );

    for (let k = 0; k < killAt.length; k++) {
      await killedAt[k];
      await target.exited;
      const reconnected = new Promise<number>((resolve) => c.once('reconnected', resolve));
      await sleep(1000);
      assert.notEqual(c.state, 'live', 'the host noticed the dead target');
      target = await startTarget(config);
      assert.equal(target.port, port, 'restarted on the same port');
      assert.ok((await within(reconnected, 10_000, 'reconnect')) >= 1);
      assert.equal(c.state, 'live');
    }
    await within(w.done, 15_000, 'the workload');

    assert.equal(lost, undefined, 'the controller was not lost');
    assert.equal(events.ups, 2);
    assert.ok(
      states.join(',').startsWith('resetting,connecting,live,resetting,connecting,live'),
      states.join(','),
    );
    const failed = jobs.filter((j) => j.state !== 'acked');
    assert.deepEqual(
      failed.map((j) => `${j.index}: ${j.state} ${String(j.error)}`),
      [],
      'every write acknowledged',
    );
    assert.equal(w.acked(), n);
    // Writes were inside the target at each kill, and some were resubmitted across it.
    assert.equal(inflightAtKill.length, 2);
    for (const [k, inflight] of inflightAtKill.entries()) {
      assert.ok(inflight >= 8, `kill ${k + 1}: only ${inflight} writes in flight`);
      const across = jobs.filter((j) => j.killsAtStart <= k && j.upsAtEnd > k).length;
      assert.ok(across >= 1, `kill ${k + 1}: no write spanned it`);
    }

    // Through the host, then in the file itself.
    const expected = imageOf(jobs, 32 * MiB);
    const viaHost = new Uint8Array(n * SLOT);
    await readFully(ns, 0, viaHost);
    assertSameBytes(viaHost, expected.subarray(0, n * SLOT), 'read through the host');
    assertSameBytes(await readFile(image), expected, 'the backing file');

    await c.disconnect();
    assert.equal(c.state, 'deleted');
    await kill9(target);
  });

  it('a kill without restart: writes in flight fail with CONTROLLER_LOST after ctrlLossTimeoutMs', async () => {
    const NQN = 'nqn.2026-11.io.tsblk:host-loss';
    const { config, image } = await crashConfig('loss', NQN);
    const target = await startTarget(config);
    const lossMs = 1500;
    const c = await connect(target, NQN, { reconnectDelayMs: 200, ctrlLossTimeoutMs: lossMs });
    controllers.push(c);
    const ns = c.namespace(1);
    const lostEvent = new Promise<{ err: unknown; at: number }>((resolve) =>
      c.once('lost', (err: unknown) => resolve({ err, at: Date.now() })),
    );
    const events = { kills: 0, ups: 0 };
    const jobs = makeJobs(300);
    let killedAt = 0;
    let inflightAtKill = 0;
    const w: Workload = runWorkload(
      ns,
      jobs,
      16,
      events,
      (acked) => {
        if (acked !== 60) return;
        target.child.kill('SIGKILL');
        killedAt = Date.now();
        events.kills++;
        inflightAtKill = w.inflight();
      },
      true,
    );

    await within(w.done, 6000, 'the workload after the kill');
    const lost = await within(lostEvent, 1000, "the 'lost' event");
    const elapsed = lost.at - killedAt;
    assert.ok(elapsed >= lossMs - 50 && elapsed < lossMs + 2000, `'lost' ${elapsed} ms after the kill`);
    assert.ok(HostError.is(lost.err) && lost.err.code === 'CONTROLLER_LOST', String(lost.err));
    assert.equal(c.state, 'deleted');

    const failed = jobs.filter((j) => j.state === 'failed');
    assert.ok(inflightAtKill >= 8, `only ${inflightAtKill} writes in flight at the kill`);
    assert.equal(failed.length, 16, 'each of the 16 workers ends on one failed write');
    assert.equal(jobs.filter((j) => j.state === 'sent').length, 0, 'every submitted write settled');
    for (const j of failed) {
      const e = j.error;
      assert.ok(BlockError.is(e), `write ${j.index}: ${String(e)}`);
      assert.equal(e.code, ErrorCode.ENODEV, `write ${j.index}: ${e.message}`);
      assert.ok(HostError.is(e.cause), `write ${j.index}: cause ${String(e.cause)}`);
      assert.equal(e.cause.code, 'CONTROLLER_LOST');
      assert.match(e.message, /controller lost: not reconnected within 1500 ms/);
    }

    // Afterwards: immediate ENODEV, and disconnect() does not hang.
    assert.equal(ns.removed, true);
    await within(
      assert.rejects(ns.write(0, new Uint8Array(512)), { code: ErrorCode.ENODEV }),
      1000,
      'a write after the loss',
    );
    await within(c.disconnect(), 1000, 'disconnect()');

    // What was acknowledged before the kill is in the file; a failed write may or may not have
    // reached it (each 4 KiB page is either old or new); what was never sent did not.
    assert.ok(jobs.filter((j) => j.state === 'acked').length >= 60);
    const file = await readFile(image);
    for (const j of jobs) {
      const got = file.subarray(j.off, j.off + j.data.length);
      if (j.state === 'acked') assertSameBytes(got, j.data, `acknowledged write ${j.index}`);
      else if (j.state === 'waiting') assertZeroes(got, `unsent write ${j.index}`);
      else
        for (let p = 0; p < got.length; p += 4 * KiB) {
          const page = got.subarray(p, p + 4 * KiB);
          assert.ok(
            page.every((b) => b === 0) || page.equals(j.data.subarray(p, p + 4 * KiB)),
            `failed write ${j.index}: page ${p / 4096} is neither old nor new`,
          );
        }
    }
  });
});
