// NbdTransmission over a real localhost TCP socket pair: the session is built by hand (as the
// handshake would), the client side writes raw request bytes and reads replies with the
// small reader below.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  BlockDevice,
  BlockStatusExtent,
  IoOptions,
  WriteOptions,
  WriteZeroesOptions,
} from '../../block/device.js';
import { BlockError, ErrorCode } from '../../block/errors.js';
import { RamDevice } from '../../devices/ram.js';
import { FaultDevice } from '../../devices/fault.js';
import { MemDevice } from '../../devices/testing/mem.js';
import { ByteQueue } from '../../util/byte-queue.js';
import { NBD_MAX_PAYLOAD, transmissionFlags, type NbdExport } from './export.js';
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
  NBD_CMD_READ,
  NBD_CMD_RESIZE,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_EXTENDED_REQUEST_MAGIC,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './protocol.js';
import type { NegotiatedSession } from './session.js';
import { NbdTransmission, type TransmissionOptions } from './transmission.js';

// Nothing may escape an event handler: collect unhandled rejections and fail at the end.
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
// Sockets of every test, destroyed at the end even when a test failed half way.
const sockets = new Set<net.Socket>();
after(() => {
  for (const s of sockets) s.destroy();
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled, [], 'no unhandled rejections');
});

type Style = 'simple' | 'structured' | 'extended';
const MiB = 1024 * 1024;

// ---- test devices ------------------------------------------------------------------------------

type Hook = (op: string, offset: number, length: number, signal?: AbortSignal) => Promise<void> | void;

/** A RamDevice with a hook before every data operation, a call log and an extent map. */
class HookedRam extends RamDevice {
  hook: Hook | undefined;
  readonly calls: Array<{ op: string; offset: number; length: number }> = [];
  active = 0;
  maxActive = 0;
  /** block status answer: extents from `offset`; undefined = the default (all data). */
  extents: ((offset: number, length: number) => BlockStatusExtent[]) | undefined;
  statusCalls = 0;

  async #around<T>(
    op: string,
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ) {
    this.calls.push({ op, offset, length });
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.hook?.(op, offset, length, signal);
      return await fn();
    } finally {
      this.active--;
    }
  }
  protected override doRead(offset: number, buffer: Uint8Array, o?: IoOptions) {
    return this.#around('read', offset, buffer.length, o?.signal, () => super.doRead(offset, buffer, o));
  }
  protected override doReadLoan(offset: number, length: number, o?: IoOptions) {
    return this.#around('read', offset, length, o?.signal, () => super.doReadLoan(offset, length, o));
  }
  protected override doWrite(offset: number, data: Uint8Array, o?: WriteOptions) {
    return this.#around('write', offset, data.length, o?.signal, () => super.doWrite(offset, data, o));
  }
  protected override doFlush(o?: IoOptions) {
    return this.#around('flush', 0, 0, o?.signal, () => super.doFlush(o));
  }
  protected override doDiscard(offset: number, length: number, o?: IoOptions) {
    return this.#around('discard', offset, length, o?.signal, () => super.doDiscard(offset, length, o));
  }
  protected override doWriteZeroes(offset: number, length: number, o?: WriteZeroesOptions) {
    return this.#around(o?.noUnmap ? 'zero-nounmap' : 'zero', offset, length, o?.signal, () =>
      super.doWriteZeroes(offset, length, o),
    );
  }
  protected override async doBlockStatus(offset: number, length: number): Promise<BlockStatusExtent[]> {
    this.statusCalls++;
    return this.extents ? this.extents(offset, length) : [{ length, hole: false, zero: false }];
  }
}

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

// ---- wire helpers ------------------------------------------------------------------------------

interface Req {
  type: number;
  offset?: number | bigint;
  length?: number | bigint;
  flags?: number;
  payload?: Buffer;
  cookie?: bigint;
}

function encodeRequest(extended: boolean, r: Req, cookie: bigint): Buffer {
  const h = Buffer.alloc(extended ? 32 : 28);
  h.writeUInt32BE(extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC, 0);
  let flags = r.flags ?? 0;
  if (extended && r.payload) flags |= NBD_CMD_FLAG_PAYLOAD_LEN;
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(r.type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(BigInt(r.offset ?? 0), 16);
  const length = BigInt(r.length ?? r.payload?.length ?? 0);
  if (extended) h.writeBigUInt64BE(length, 24);
  else h.writeUInt32BE(Number(length), 24);
  return r.payload ? Buffer.concat([h, r.payload]) : h;
}

type Msg =
  | { kind: 'simple'; error: number; cookie: bigint; data?: Buffer }
  | {
      kind: 'chunk';
      extended: boolean;
      flags: number;
      type: number;
      cookie: bigint;
      offset?: bigint;
      payload: Buffer;
    };

/** Reads reply messages off the client socket. */
class ReplyReader {
  readonly #q = new ByteQueue();
  #wake: (() => void) | undefined;
  #ended = false;
  /** Simple replies to READs carry data; the reader must know how much (as a real client does). */
  readonly readLengths = new Map<bigint, number>();
  received = 0;

  constructor(sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.received += c.length;
      this.#q.push(c);
      this.#notify();
    });
    sock.on('end', () => this.#finish());
    sock.on('close', () => this.#finish());
    sock.on('error', () => this.#finish());
  }
  #finish() {
    this.#ended = true;
    this.#notify();
  }
  #notify() {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }
  get ended() {
    return this.#ended;
  }
  get buffered() {
    return this.#q.length;
  }
  async #need(n: number): Promise<boolean> {
    while (this.#q.length < n) {
      if (this.#ended) return false;
      await new Promise<void>((r) => (this.#wake = r));
    }
    return true;
  }
  async message(): Promise<Msg | undefined> {
    if (!(await this.#need(4))) return undefined;
    const magic = this.#q.peek(4).readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      assert.ok(await this.#need(16), 'truncated simple reply');
      const b = this.#q.consume(16);
      const error = b.readUInt32BE(4);
      const cookie = b.readBigUInt64BE(8);
      const len = this.readLengths.get(cookie);
      this.readLengths.delete(cookie);
      if (error !== 0 || len === undefined) return { kind: 'simple', error, cookie };
      assert.ok(await this.#need(len), 'truncated read data');
      return { kind: 'simple', error, cookie, data: Buffer.from(this.#q.consume(len)) };
    }
    const extended = magic === NBD_EXTENDED_REPLY_MAGIC;
    assert.ok(extended || magic === NBD_STRUCTURED_REPLY_MAGIC, `bad reply magic 0x${magic.toString(16)}`);
    const size = extended ? 32 : 20;
    assert.ok(await this.#need(size), 'truncated chunk header');
    const h = Buffer.from(this.#q.consume(size));
    const length = extended ? Number(h.readBigUInt64BE(24)) : h.readUInt32BE(16);
    assert.ok(await this.#need(length), 'truncated chunk payload');
    return {
      kind: 'chunk',
      extended,
      flags: h.readUInt16BE(4),
      type: h.readUInt16BE(6),
      cookie: h.readBigUInt64BE(8),
      ...(extended ? { offset: h.readBigUInt64BE(16) } : {}),
      payload: length === 0 ? Buffer.alloc(0) : Buffer.from(this.#q.consume(length)),
    };
  }
  /** One whole reply: a simple reply, or chunks of one cookie up to DONE. */
  async reply(): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.message();
      assert.ok(m, 'connection ended before the reply was complete');
      if (out.length) assert.equal(m.cookie, out[0]!.cookie, 'chunks of one reply are not interleaved');
      out.push(m);
      if (m.kind === 'simple' || m.flags & NBD_REPLY_FLAG_DONE) return out;
    }
  }
  /** Waits for the server to end the connection; returns bytes that came after the last reply. */
  async end(): Promise<number> {
    while (!this.#ended) await new Promise<void>((r) => (this.#wake = r));
    return this.#q.length;
  }
}

function errorOf(reply: Msg[]): number {
  for (const m of reply) {
    if (m.kind === 'simple') return m.error;
    if (m.type & 0x8000) return m.payload.readUInt32BE(0);
  }
  return 0;
}

function errorMessage(reply: Msg[]): string {
  for (const m of reply)
    if (m.kind === 'chunk' && m.type === NBD_REPLY_TYPE_ERROR) {
      const n = m.payload.readUInt16BE(4);
      return m.payload.subarray(6, 6 + n).toString();
    }
  return '';
}

function dataOf(reply: Msg[], offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let covered = 0;
  for (const m of reply) {
    if (m.kind === 'simple') return m.data ?? Buffer.alloc(0);
    if (m.type === NBD_REPLY_TYPE_OFFSET_DATA) {
      const at = Number(m.payload.readBigUInt64BE(0)) - offset;
      m.payload.copy(out, at, 8);
      covered += m.payload.length - 8;
    }
  }
  assert.equal(covered, length, 'content chunks cover the request');
  return out;
}

/** Block status chunks → per context id, the descriptors. */
function statusOf(reply: Msg[]): Map<number, Array<{ length: number; flags: number }>> {
  const out = new Map<number, Array<{ length: number; flags: number }>>();
  for (const m of reply) {
    if (m.kind !== 'chunk') continue;
    if (m.type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      const d = [];
      for (let at = 4; at < m.payload.length; at += 8)
        d.push({ length: m.payload.readUInt32BE(at), flags: m.payload.readUInt32BE(at + 4) });
      out.set(m.payload.readUInt32BE(0), d);
    } else if (m.type === NBD_REPLY_TYPE_BLOCK_STATUS_EXT) {
      const count = m.payload.readUInt32BE(4);
      assert.equal(m.payload.length, 8 + 16 * count);
      const d = [];
      for (let at = 8; at < m.payload.length; at += 16) {
        assert.equal(m.payload.readUInt32BE(at + 8), 0, 'high 32 status bits are zero');
        d.push({ length: Number(m.payload.readBigUInt64BE(at)), flags: m.payload.readUInt32BE(at + 12) });
      }
      out.set(m.payload.readUInt32BE(0), d);
    }
  }
  return out;
}

// ---- harness -----------------------------------------------------------------------------------

interface SetupOptions extends TransmissionOptions {
  device?: BlockDevice;
  readOnly?: boolean;
  metaContexts?: Map<number, string>;
  leftover?: Buffer;
  flags?: number;
  start?: boolean;
}

async function socketPair(): Promise<{ server: net.Socket; client: net.Socket }> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  client.setNoDelay(true);
  await once(client, 'connect');
  const [server] = await accepted;
  srv.close();
  sockets.add(client).add(server);
  return { server, client };
}

async function setup(style: Style, o: SetupOptions = {}) {
  const device = o.device ?? new HookedRam({ size: 1 * MiB });
  const { server, client } = await socketPair();
  const exp: NbdExport = { name: 'test', device, readOnly: o.readOnly ?? false, multiConn: true };
  const structured = style !== 'simple';
  const session: NegotiatedSession = {
    export: exp,
    structuredReplies: structured,
    extendedHeaders: style === 'extended',
    metaContexts: o.metaContexts ?? (structured ? new Map([[1, 'base:allocation']]) : new Map()),
    transmissionFlags: o.flags ?? transmissionFlags(exp, { structured }),
    socket: server,
    leftover: o.leftover ?? Buffer.alloc(0),
  };
  const log: Array<{ op: string; bytes: number; error: number }> = [];
  const closeReasons: string[] = [];
  const t = new NbdTransmission(session, {
    ...(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {}),
    ...(o.maxInFlightBytes !== undefined ? { maxInFlightBytes: o.maxInFlightBytes } : {}),
    onRequest: (r) => {
      log.push(r);
      o.onRequest?.(r);
    },
    onClose: (r) => {
      closeReasons.push(r);
      o.onClose?.(r);
    },
  });
  if (o.start !== false) t.start();
  const reader = new ReplyReader(client);
  let next = 1n;
  const extended = style === 'extended';
  const send = (r: Req): bigint => {
    const cookie = r.cookie ?? next++;
    if (r.type === NBD_CMD_READ && style === 'simple') reader.readLengths.set(cookie, Number(r.length ?? 0));
    client.write(encodeRequest(extended, r, cookie));
    return cookie;
  };
  const call = async (r: Req): Promise<Msg[]> => {
    const cookie = send(r);
    const reply = await reader.reply();
    assert.equal(reply[0]!.cookie, cookie);
    return reply;
  };
  const cleanup = () => {
    client.destroy();
    server.destroy();
  };
  return {
    t,
    client,
    server,
    reader,
    send,
    call,
    device,
    session,
    log,
    closeReasons,
    cleanup,
    extended,
    style,
  };
}

type Harness = Awaited<ReturnType<typeof setup>>;

async function write(h: Harness, offset: number, data: Buffer, flags?: number) {
  const reply = await h.call({
    type: NBD_CMD_WRITE,
    offset,
    payload: data,
    ...(flags !== undefined ? { flags } : {}),
  });
  assert.equal(errorOf(reply), 0, `write at ${offset}: ${errorMessage(reply)}`);
  return reply;
}
async function read(h: Harness, offset: number, length: number) {
  const reply = await h.call({ type: NBD_CMD_READ, offset, length });
  assert.equal(errorOf(reply), 0, `read at ${offset}: ${errorMessage(reply)}`);
  return dataOf(reply, offset, length);
}
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}
async function disconnect(h: Harness) {
  h.send({ type: NBD_CMD_DISC });
  assert.equal(await h.reader.end(), 0, 'no reply to DISC');
  return h.t.closed;
}

// ---- every command, each header style ----------------------------------------------------------

for (const style of ['simple', 'structured', 'extended'] as const) {
  test(`${style}: every command succeeds; the last sector round-trips`, async () => {
    const h = await setup(style);
    const dev = h.device as HookedRam;
    const size = dev.size;
    const a = pattern(8192, 1);
    await write(h, 4096, a);
    assert.deepEqual(await read(h, 4096, 8192), a);
    // The last sector and the last 4 KiB block of the export.
    const last = pattern(512, 9);
    await write(h, size - 512, last, NBD_CMD_FLAG_FUA);
    assert.deepEqual(await read(h, size - 512, 512), last);
    assert.deepEqual(await read(h, size - 4096, 4096), Buffer.concat([Buffer.alloc(3584), last]));
    const onDevice = Buffer.alloc(512);
    await dev.read(size - 512, onDevice);
    assert.deepEqual(onDevice, last);

    for (const type of [NBD_CMD_FLUSH]) assert.equal(errorOf(await h.call({ type })), 0);
    assert.equal(errorOf(await h.call({ type: NBD_CMD_TRIM, offset: 4096, length: 4096 })), 0);
    assert.deepEqual(await read(h, 4096, 4096), Buffer.alloc(4096), 'trimmed blocks read as zeroes (ram)');
    assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE_ZEROES, offset: 8192, length: 4096 })), 0);
    assert.equal(
      errorOf(
        await h.call({
          type: NBD_CMD_WRITE_ZEROES,
          offset: size - 512,
          length: 512,
          flags: NBD_CMD_FLAG_NO_HOLE,
        }),
      ),
      0,
    );
    assert.deepEqual(await read(h, 0, 16384), Buffer.alloc(16384));
    assert.deepEqual(await read(h, size - 512, 512), Buffer.alloc(512));
    assert.ok(
      dev.calls.some((c) => c.op === 'zero-nounmap'),
      'NO_HOLE → noUnmap',
    );
    assert.equal(errorOf(await h.call({ type: NBD_CMD_CACHE, offset: 0, length: size })), 0);
    // FUA is accepted (and ignored) on commands that write nothing.
    assert.equal(
      errorOf(await h.call({ type: NBD_CMD_READ, offset: 0, length: 512, flags: NBD_CMD_FLAG_FUA })),
      0,
    );

    const bs = await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 4096 });
    if (style === 'simple')
      assert.equal(errorOf(bs), NBD_EINVAL, 'no meta context without structured replies');
    else assert.deepEqual(statusOf(bs).get(1), [{ length: 4096, flags: 0 }]);

    assert.match(await disconnect(h), /DISC/);
    assert.deepEqual(
      h.log.map((r) => r.op),
      [
        'WRITE',
        'READ',
        'WRITE',
        'READ',
        'READ',
        'FLUSH',
        'TRIM',
        'READ',
        'WRITE_ZEROES',
        'WRITE_ZEROES',
        'READ',
        'READ',
        'CACHE',
        'READ',
        'BLOCK_STATUS',
      ],
    );
    assert.deepEqual(h.log[0], { op: 'WRITE', bytes: 8192, error: 0 });
    assert.equal(h.closeReasons.length, 1);
    h.cleanup();
  });

  test(`${style}: request errors are answered and the connection stays up`, async () => {
    const h = await setup(style);
    const size = h.device.size;
    const cases: Array<[string, Req, number]> = [
      ['unknown command', { type: 42, offset: 0, length: 512 }, NBD_EINVAL],
      ['RESIZE (not offered)', { type: NBD_CMD_RESIZE, offset: 0, length: 0 }, NBD_EINVAL],
      ['read past the end', { type: NBD_CMD_READ, offset: size - 512, length: 1024 }, NBD_EINVAL],
      ['read at the end', { type: NBD_CMD_READ, offset: size, length: 512 }, NBD_EINVAL],
      ['read offset above 2^53', { type: NBD_CMD_READ, offset: 1n << 60n, length: 512 }, NBD_EINVAL],
      ['write past the end', { type: NBD_CMD_WRITE, offset: size, payload: Buffer.alloc(512) }, NBD_ENOSPC],
      [
        'write-zeroes past the end',
        { type: NBD_CMD_WRITE_ZEROES, offset: size - 512, length: 1024 },
        NBD_ENOSPC,
      ],
      ['trim past the end', { type: NBD_CMD_TRIM, offset: size - 512, length: 1024 }, NBD_EINVAL],
      ['cache past the end', { type: NBD_CMD_CACHE, offset: size, length: 512 }, NBD_EINVAL],
      ['misaligned read offset', { type: NBD_CMD_READ, offset: 100, length: 512 }, NBD_EINVAL],
      ['misaligned read length', { type: NBD_CMD_READ, offset: 0, length: 100 }, NBD_EINVAL],
      ['misaligned write', { type: NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(100) }, NBD_EINVAL],
      ['zero-length read', { type: NBD_CMD_READ, offset: 0, length: 0 }, NBD_EINVAL],
      ['zero-length write', { type: NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(0) }, NBD_EINVAL],
      ['zero-length trim', { type: NBD_CMD_TRIM, offset: 0, length: 0 }, NBD_EINVAL],
      ['flush with an offset', { type: NBD_CMD_FLUSH, offset: 512, length: 0 }, NBD_EINVAL],
      [
        'NO_HOLE on WRITE',
        { type: NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512), flags: NBD_CMD_FLAG_NO_HOLE },
        NBD_EINVAL,
      ],
      [
        'REQ_ONE on READ',
        { type: NBD_CMD_READ, offset: 0, length: 512, flags: NBD_CMD_FLAG_REQ_ONE },
        NBD_EINVAL,
      ],
      [
        'FAST_ZERO on TRIM',
        { type: NBD_CMD_TRIM, offset: 0, length: 512, flags: NBD_CMD_FLAG_FAST_ZERO },
        NBD_EINVAL,
      ],
      ['unknown flag bit', { type: NBD_CMD_FLUSH, flags: 1 << 9 }, NBD_EINVAL],
      ['READ too large', { type: NBD_CMD_READ, offset: 0, length: NBD_MAX_PAYLOAD + 512 }, NBD_EOVERFLOW],
    ];
    if (style === 'simple')
      cases.push([
        'DF without structured replies',
        { type: NBD_CMD_READ, offset: 0, length: 512, flags: NBD_CMD_FLAG_DF },
        NBD_EINVAL,
      ]);
    if (style !== 'extended')
      cases.push([
        'PAYLOAD_LEN on a compact request',
        { type: NBD_CMD_FLUSH, flags: NBD_CMD_FLAG_PAYLOAD_LEN },
        NBD_EINVAL,
      ]);
    for (const [what, req, want] of cases) {
      const reply = await h.call(req);
      assert.equal(errorOf(reply), want, `${what}: ${errorMessage(reply)}`);
      if (style !== 'simple') {
        assert.equal(reply.length, 1, `${what}: one ERROR chunk`);
        const m = reply[0]!;
        assert.ok(m.kind === 'chunk' && m.type === NBD_REPLY_TYPE_ERROR && m.flags & NBD_REPLY_FLAG_DONE);
        assert.ok(errorMessage(reply).length > 0, `${what}: an error message for a human`);
        if (m.kind === 'chunk' && style === 'extended') assert.equal(m.offset, BigInt(req.offset ?? 0));
      }
    }
    // Still up: a normal request works and the device saw none of the bad ones.
    assert.deepEqual(await read(h, 0, 512), Buffer.alloc(512));
    const dev = h.device as HookedRam;
    assert.deepEqual(
      dev.calls.map((c) => c.op),
      ['read'],
    );
    await disconnect(h);
    h.cleanup();
  });
}

// ---- reply shapes per style --------------------------------------------------------------------

test('simple replies: 16-byte header, READ data follows, errors carry no data', async () => {
  const h = await setup('simple');
  await write(h, 0, pattern(1024, 3));
  const ok = await h.call({ type: NBD_CMD_READ, offset: 0, length: 1024, cookie: 0xfedcba9876543210n });
  assert.equal(ok.length, 1);
  assert.equal(ok[0]!.kind, 'simple');
  assert.equal(ok[0]!.cookie, 0xfedcba9876543210n, 'cookie echoed exactly');
  assert.deepEqual(dataOf(ok, 0, 1024), pattern(1024, 3));
  const bad = await h.call({ type: NBD_CMD_READ, offset: 1, length: 512 });
  assert.equal(errorOf(bad), NBD_EINVAL);
  assert.equal(h.reader.buffered, 0, 'no data after an error reply');
  await disconnect(h);
  h.cleanup();
});

test('structured replies: READ is one OFFSET_DATA chunk with DONE; other successes are simple', async () => {
  const h = await setup('structured');
  const data = pattern(4096, 5);
  const w = await write(h, 8192, data);
  assert.equal(w[0]!.kind, 'simple');
  const r = await h.call({ type: NBD_CMD_READ, offset: 8192, length: 4096, flags: NBD_CMD_FLAG_DF });
  assert.equal(r.length, 1);
  const m = r[0]!;
  assert.ok(m.kind === 'chunk');
  assert.equal(m.type, NBD_REPLY_TYPE_OFFSET_DATA);
  assert.equal(m.flags, NBD_REPLY_FLAG_DONE);
  assert.equal(m.payload.readBigUInt64BE(0), 8192n);
  assert.deepEqual(m.payload.subarray(8), data);
  await disconnect(h);
  h.cleanup();
});

test('extended replies: every reply is a 32-byte chunk echoing the request offset; NONE|DONE for success', async () => {
  const h = await setup('extended');
  const w = await h.call({ type: NBD_CMD_WRITE, offset: 4096, payload: pattern(512, 1) });
  assert.equal(w.length, 1);
  const m = w[0]!;
  assert.ok(m.kind === 'chunk' && m.extended);
  assert.equal(m.type, NBD_REPLY_TYPE_NONE);
  assert.equal(m.flags, NBD_REPLY_FLAG_DONE);
  assert.equal(m.offset, 4096n);
  assert.equal(m.payload.length, 0);
  for (const type of [NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_CACHE]) {
    const r = await h.call({
      type,
      offset: type === NBD_CMD_FLUSH ? 0 : 8192,
      length: type === NBD_CMD_FLUSH ? 0 : 512,
    });
    const c = r[0]!;
    assert.ok(c.kind === 'chunk' && c.extended && c.type === NBD_REPLY_TYPE_NONE, `type ${type}`);
  }
  const r = await h.call({ type: NBD_CMD_READ, offset: 4096, length: 512 });
  const d = r[0]!;
  assert.ok(d.kind === 'chunk' && d.extended && d.type === NBD_REPLY_TYPE_OFFSET_DATA);
  assert.equal(d.offset, 4096n);
  assert.deepEqual(dataOf(r, 4096, 512), pattern(512, 1));
  // An extended WRITE without PAYLOAD_LEN has no payload: EINVAL, and the stream stays in step.
  assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE, offset: 0, length: 512, flags: 0 })), NBD_EINVAL);
  // A payload on a command that takes none is consumed, then refused.
  const junk = await h.call({
    type: NBD_CMD_READ,
    offset: 0,
    flags: NBD_CMD_FLAG_PAYLOAD_LEN,
    payload: Buffer.alloc(24, 0x25),
  });
  assert.equal(errorOf(junk), NBD_EINVAL);
  assert.match(errorMessage(junk), /no payload expected/);
  assert.deepEqual(await read(h, 4096, 512), pattern(512, 1));
  await disconnect(h);
  h.cleanup();
});

test('extended: a compact request is a protocol violation → hard disconnect', async () => {
  const h = await setup('extended');
  h.client.write(encodeRequest(false, { type: NBD_CMD_READ, offset: 0, length: 512 }, 1n));
  h.client.write(Buffer.alloc(4));
  assert.equal(await h.reader.end(), 0, 'no reply');
  assert.match(await h.t.closed, /protocol error: bad request magic/);
  assert.equal((h.device as HookedRam).calls.length, 0);
  h.cleanup();
});

test('compact: a wrong magic closes the connection after in-flight requests finish', async () => {
  const slow = gate();
  const dev = new HookedRam({ size: MiB });
  dev.hook = (op) => (op === 'write' ? slow.opened : undefined);
  const h = await setup('simple', { device: dev });
  h.send({ type: NBD_CMD_WRITE, offset: 0, payload: pattern(512, 7) });
  while (dev.active === 0) await sleep(1);
  const bad = Buffer.alloc(28);
  bad.writeUInt32BE(0xdeadbeef, 0);
  h.client.write(bad);
  await h.reader.end();
  let done = false;
  void h.t.closed.then(() => (done = true));
  await sleep(20);
  assert.equal(done, false, 'closed waits for the in-flight write');
  slow.open();
  assert.match(await h.t.closed, /protocol error/);
  const landed = Buffer.alloc(512);
  await dev.read(0, landed);
  assert.deepEqual(landed, pattern(512, 7), 'the write landed');
  h.cleanup();
});

// ---- block status ------------------------------------------------------------------------------

/** A map of the 1 MiB device: [0,8K) data, [8K,24K) hole+zero in pieces, [24K,28K) zero, rest data. */
function extentMap(offset: number, length: number, maxPerCall = 2): BlockStatusExtent[] {
  const map: Array<[number, number, boolean, boolean]> = [
    [0, 4096, false, false],
    [4096, 8192, false, false],
    [8192, 16384, true, true],
    [16384, 24576, true, true],
    [24576, 28672, false, true],
    [28672, MiB, false, false],
  ];
  const out: BlockStatusExtent[] = [];
  for (const [s, e, hole, zero] of map) {
    if (e <= offset || s >= offset + length) continue;
    const from = Math.max(s, offset);
    out.push({ length: Math.min(e, offset + length) - from, hole, zero });
    if (out.length === maxPerCall) break; // the device answers a prefix; the server asks again
  }
  return out;
}

test('structured BLOCK_STATUS: merged descriptors from repeated device calls, REQ_ONE, bounds', async () => {
  const dev = new HookedRam({ size: MiB });
  dev.extents = (o, l) => extentMap(o, l);
  const h = await setup('structured', { device: dev });
  const r = await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 65536 });
  assert.equal(r.length, 1);
  const c = r[0]!;
  assert.ok(c.kind === 'chunk' && c.type === NBD_REPLY_TYPE_BLOCK_STATUS && c.flags === NBD_REPLY_FLAG_DONE);
  assert.deepEqual(statusOf(r).get(1), [
    { length: 8192, flags: 0 },
    { length: 16384, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
    { length: 4096, flags: NBD_STATE_ZERO },
    { length: 36864, flags: 0 },
  ]);
  assert.ok(dev.statusCalls >= 3, 'asked again from where each answer ended');

  const one = await h.call({
    type: NBD_CMD_BLOCK_STATUS,
    offset: 8192,
    length: 65536,
    flags: NBD_CMD_FLAG_REQ_ONE,
  });
  assert.deepEqual(statusOf(one).get(1), [{ length: 8192, flags: NBD_STATE_HOLE | NBD_STATE_ZERO }]);
  // The last block of the export.
  const tail = await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: MiB - 512, length: 512 });
  assert.deepEqual(statusOf(tail).get(1), [{ length: 512, flags: 0 }]);
  // Compact requests past the end are refused.
  assert.equal(
    errorOf(await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: MiB - 512, length: 1024 })),
    NBD_EINVAL,
  );
  await disconnect(h);
  h.cleanup();
});

test('BLOCK_STATUS: one chunk per active context, DONE only on the last', async () => {
  const dev = new HookedRam({ size: MiB });
  dev.extents = (o, l) => extentMap(o, l, 100);
  const h = await setup('structured', {
    device: dev,
    metaContexts: new Map([
      [1, 'base:allocation'],
      [7, 'x-test:other'],
    ]),
  });
  const r = await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 16384 });
  assert.equal(r.length, 2);
  assert.deepEqual(
    r.map((m) => (m.kind === 'chunk' ? m.flags : -1)),
    [0, NBD_REPLY_FLAG_DONE],
  );
  const s = statusOf(r);
  assert.deepEqual(s.get(1), [
    { length: 8192, flags: 0 },
    { length: 8192, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
  ]);
  assert.deepEqual(s.get(7), [{ length: 16384, flags: 0 }], 'an unknown context says "no information"');
  await disconnect(h);
  h.cleanup();
});

test('BLOCK_STATUS without a negotiated context → EINVAL', async () => {
  const h = await setup('structured', { metaContexts: new Map() });
  assert.equal(errorOf(await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 512 })), NBD_EINVAL);
  await disconnect(h);
  h.cleanup();
});

test('extended BLOCK_STATUS_EXT: 64-bit descriptors; a 2^64-1 length is clamped to the export end', async () => {
  const dev = new HookedRam({ size: MiB });
  dev.extents = (o, l) => extentMap(o, l);
  const h = await setup('extended', { device: dev });
  const r = await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 16384, length: 0xffffffffffffffffn });
  assert.equal(r.length, 1);
  const c = r[0]!;
  assert.ok(c.kind === 'chunk' && c.extended && c.type === NBD_REPLY_TYPE_BLOCK_STATUS_EXT);
  assert.equal(c.flags, NBD_REPLY_FLAG_DONE);
  assert.equal(c.offset, 16384n);
  assert.deepEqual(statusOf(r).get(1), [
    { length: 8192, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
    { length: 4096, flags: NBD_STATE_ZERO },
    { length: MiB - 28672, flags: 0 },
  ]);
  // The offset itself must be inside the export.
  assert.equal(errorOf(await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: MiB, length: 512 })), NBD_EINVAL);
  await disconnect(h);
  h.cleanup();
});

// ---- capabilities, read-only, FAST_ZERO, splitting ----------------------------------------------

test('read-only export: WRITE/TRIM/WRITE_ZEROES → EPERM (write payload consumed), reads work', async () => {
  const h = await setup('structured', { readOnly: true });
  assert.equal(
    errorOf(await h.call({ type: NBD_CMD_WRITE, offset: 0, payload: pattern(4096, 1) })),
    NBD_EPERM,
  );
  assert.equal(errorOf(await h.call({ type: NBD_CMD_TRIM, offset: 0, length: 4096 })), NBD_EPERM);
  assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE_ZEROES, offset: 0, length: 4096 })), NBD_EPERM);
  assert.deepEqual(await read(h, 0, 4096), Buffer.alloc(4096));
  assert.equal(errorOf(await h.call({ type: NBD_CMD_FLUSH })), 0);
  assert.deepEqual(
    (h.device as HookedRam).calls.map((c) => c.op),
    ['read', 'flush'],
  );
  await disconnect(h);
  h.cleanup();
});

test('a device without discard / write zeroes: TRIM and WRITE_ZEROES → EINVAL (not advertised)', async () => {
  const dev = new MemDevice({ size: MiB, discard: false, writeZeroes: false });
  const h = await setup('simple', { device: dev });
  assert.equal(errorOf(await h.call({ type: NBD_CMD_TRIM, offset: 0, length: 4096 })), NBD_EINVAL);
  assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE_ZEROES, offset: 0, length: 4096 })), NBD_EINVAL);
  assert.equal(dev.log.length, 0);
  await disconnect(h);
  h.cleanup();
});

test('FAST_ZERO: fast on an unmapping device; ENOTSUP with NO_HOLE or on a writing device, nothing written', async () => {
  const h = await setup('structured');
  const dev = h.device as HookedRam;
  await write(h, 0, pattern(8192, 2));
  assert.equal(
    errorOf(
      await h.call({ type: NBD_CMD_WRITE_ZEROES, offset: 0, length: 4096, flags: NBD_CMD_FLAG_FAST_ZERO }),
    ),
    0,
  );
  assert.deepEqual(await read(h, 0, 4096), Buffer.alloc(4096));
  const noHole = await h.call({
    type: NBD_CMD_WRITE_ZEROES,
    offset: 4096,
    length: 4096,
    flags: NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE,
  });
  assert.equal(errorOf(noHole), NBD_ENOTSUP);
  assert.deepEqual(await read(h, 4096, 4096), pattern(8192, 2).subarray(4096), 'untouched');
  assert.equal(dev.calls.filter((c) => c.op.startsWith('zero')).length, 1);
  await disconnect(h);
  h.cleanup();

  // A device that zeroes by writing (limits say unmaps: false).
  const slowZero = new HookedRam({ size: MiB });
  (slowZero.limits as { writeZeroes?: { maxBytes: number; unmaps: boolean } }).writeZeroes = {
    maxBytes: MiB,
    unmaps: false,
  };
  const h2 = await setup('simple', { device: slowZero });
  await write(h2, 0, pattern(4096, 4));
  const r = await h2.call({
    type: NBD_CMD_WRITE_ZEROES,
    offset: 0,
    length: 4096,
    flags: NBD_CMD_FLAG_FAST_ZERO,
  });
  assert.equal(errorOf(r), NBD_ENOTSUP);
  assert.deepEqual(await read(h2, 0, 4096), pattern(4096, 4));
  // Without FAST_ZERO the same request succeeds.
  assert.equal(errorOf(await h2.call({ type: NBD_CMD_WRITE_ZEROES, offset: 0, length: 4096 })), 0);
  await disconnect(h2);
  h2.cleanup();

  // FAST_ZERO when the client was not offered it → EINVAL.
  const h3 = await setup('simple', {
    flags:
      transmissionFlags(
        { name: '', device: new RamDevice({ size: MiB }), readOnly: false, multiConn: true },
        { structured: false },
      ) & ~NBD_FLAG_SEND_FAST_ZERO,
  });
  assert.equal(
    errorOf(
      await h3.call({ type: NBD_CMD_WRITE_ZEROES, offset: 0, length: 512, flags: NBD_CMD_FLAG_FAST_ZERO }),
    ),
    NBD_EINVAL,
  );
  await disconnect(h3);
  h3.cleanup();
});

test('requests larger than the device limits are split (maxTransferBytes, discard/zero maxBytes); FUA flushes', async () => {
  const dev = new MemDevice({ size: 4 * MiB, maxTransferBytes: 64 * 1024 });
  const limits = dev.limits as { discard?: object; writeZeroes?: object };
  limits.discard = { granularity: 512, maxBytes: 128 * 1024, zeroesData: true };
  limits.writeZeroes = { maxBytes: 256 * 1024, unmaps: true };
  const h = await setup('structured', { device: dev });
  const data = pattern(MiB, 6);
  await write(h, MiB, data);
  assert.deepEqual(await read(h, MiB, MiB), data);
  const ops = (op: string) => dev.log.filter((e) => e.op === op);
  assert.equal(ops('write').length, 16);
  assert.equal(ops('read').length, 16);
  assert.ok(ops('write').every((e) => e.length === 64 * 1024));
  assert.equal(
    errorOf(await h.call({ type: NBD_CMD_TRIM, offset: 0, length: MiB, flags: NBD_CMD_FLAG_FUA })),
    0,
  );
  assert.equal(ops('discard').length, 8);
  assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE_ZEROES, offset: MiB, length: MiB })), 0);
  assert.equal(ops('write-zeroes').length, 4);
  assert.equal(ops('flush').length, 1, 'FUA on TRIM flushed once');
  assert.deepEqual(await read(h, MiB, 65536), Buffer.alloc(65536));
  await disconnect(h);
  h.cleanup();
});

test('WRITE above NBD_MAX_PAYLOAD → EOVERFLOW; the payload is consumed and the next request works', async () => {
  const h = await setup('simple', { device: new HookedRam({ size: 64 * MiB }) });
  const big = Buffer.alloc(NBD_MAX_PAYLOAD + 4096, 1);
  assert.equal(errorOf(await h.call({ type: NBD_CMD_WRITE, offset: 0, payload: big })), NBD_EOVERFLOW);
  assert.deepEqual(await read(h, 0, 4096), Buffer.alloc(4096), 'nothing was written');
  await disconnect(h);
  h.cleanup();
});

// ---- failing devices ---------------------------------------------------------------------------

test('device errors fail only their request, with the mapped error and the device message', async () => {
  const inner = new RamDevice({ size: MiB });
  const dev = new FaultDevice(inner, {
    rules: [
      { ops: ['read'], offset: 0, length: 4096, code: ErrorCode.EIO },
      { ops: ['write'], offset: 8192, length: 512, code: ErrorCode.ENOSPC },
      { ops: ['flush'], offset: 0, length: 1, code: ErrorCode.EIO, times: 1 },
      { ops: ['discard'], offset: 0, length: MiB, code: ErrorCode.ENODEV },
    ],
  });
  for (const style of ['simple', 'structured', 'extended'] as const) {
    const h = await setup(style, { device: dev });
    const r = await h.call({ type: NBD_CMD_READ, offset: 0, length: 512 });
    assert.equal(errorOf(r), NBD_EIO);
    if (style !== 'simple') assert.match(errorMessage(r), /EIO/);
    if (style === 'simple') assert.equal(h.reader.buffered, 0, 'no payload after a failed read');
    assert.equal(
      errorOf(await h.call({ type: NBD_CMD_WRITE, offset: 8192, payload: Buffer.alloc(512) })),
      NBD_ENOSPC,
    );
    assert.equal(errorOf(await h.call({ type: NBD_CMD_TRIM, offset: 0, length: 512 })), NBD_EIO);
    if (style === 'simple') assert.equal(errorOf(await h.call({ type: NBD_CMD_FLUSH })), NBD_EIO);
    // Other ranges still work.
    await write(h, 4096, pattern(512, 8));
    assert.deepEqual(await read(h, 4096, 512), pattern(512, 8));
    await disconnect(h);
    h.cleanup();
  }
});

/** A device whose every operation rejects with something that is not a BlockError. */
class BrokenDevice extends RamDevice {
  override read(): Promise<void> {
    return Promise.reject(new TypeError('backend bug'));
  }
  override write(): Promise<void> {
    return Promise.reject('a string, not an Error');
  }
  override flush(): Promise<void> {
    throw new Error('thrown synchronously');
  }
  override blockStatus(): Promise<BlockStatusExtent[]> {
    return Promise.reject(new BlockError(ErrorCode.ENOMEM, 'no memory for the extent list'));
  }
}

test('a device whose operations reject (or throw) with anything: EIO replies, no unhandled rejection', async () => {
  for (const style of ['simple', 'extended'] as const) {
    const h = await setup(style, { device: new BrokenDevice({ size: MiB }) });
    assert.equal(errorOf(await h.call({ type: NBD_CMD_READ, offset: 0, length: 512 })), NBD_EIO);
    assert.equal(
      errorOf(await h.call({ type: NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512) })),
      NBD_EIO,
    );
    assert.equal(errorOf(await h.call({ type: NBD_CMD_FLUSH })), NBD_EIO);
    if (style === 'extended')
      assert.equal(errorOf(await h.call({ type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 512 })), 12);
    await disconnect(h);
    h.cleanup();
  }
  await sleep(10);
  assert.deepEqual(unhandled, []);
});

test('observers that throw do not take the connection down', async () => {
  const h = await setup('simple', {
    onRequest: () => {
      throw new Error('metrics bug');
    },
    onClose: () => {
      throw new Error('owner bug');
    },
  });
  assert.deepEqual(await read(h, 0, 512), Buffer.alloc(512));
  assert.deepEqual(await read(h, 512, 512), Buffer.alloc(512));
  await disconnect(h);
  h.cleanup();
});

// ---- concurrency -------------------------------------------------------------------------------

test('replies go out as requests finish: a slow read is overtaken', async () => {
  const dev = new HookedRam({ size: MiB });
  for (const style of ['simple', 'structured', 'extended'] as const) {
    const slow = gate();
    dev.hook = (op, offset) => (op === 'read' && offset === 0 ? slow.opened : undefined);
    const h = await setup(style, { device: dev });
    await write(h, 4096, pattern(512, 1));
    const a = h.send({ type: NBD_CMD_READ, offset: 0, length: 512 });
    const b = h.send({ type: NBD_CMD_READ, offset: 4096, length: 512 });
    const first = await h.reader.reply();
    assert.equal(first[0]!.cookie, b, 'the fast read answered first');
    assert.deepEqual(dataOf(first, 4096, 512), pattern(512, 1));
    slow.open();
    const second = await h.reader.reply();
    assert.equal(second[0]!.cookie, a);
    await disconnect(h);
    h.cleanup();
    dev.hook = undefined;
  }
});

test('backpressure: maxInFlight 2 with 10 queued requests', async () => {
  const dev = new HookedRam({ size: MiB });
  const gates: Array<() => void> = [];
  dev.hook = (op) => (op === 'write' ? new Promise<void>((r) => gates.push(r)) : undefined);
  const h = await setup('structured', { device: dev, maxInFlight: 2 });
  const cookies = Array.from({ length: 10 }, (_, i) =>
    h.send({ type: NBD_CMD_WRITE, offset: i * 4096, payload: pattern(4096, i) }),
  );
  await sleep(50);
  assert.equal(dev.active, 2, 'two requests executing');
  assert.equal(h.t.inFlight, 2);
  assert.equal(h.t.socket.isPaused(), true, 'socket paused at the limit');
  const got: bigint[] = [];
  for (let i = 0; i < 10; i++) {
    while (gates.length === 0) await sleep(1);
    gates.shift()!();
    const r = await h.reader.reply();
    assert.equal(errorOf(r), 0);
    got.push(r[0]!.cookie);
    assert.ok(dev.active <= 2);
  }
  assert.deepEqual(got.sort(), [...cookies].sort());
  assert.equal(dev.maxActive, 2, 'never more than maxInFlight at once');
  for (let i = 0; i < 10; i++) assert.deepEqual(await read(h, i * 4096, 4096), pattern(4096, i));
  await disconnect(h);
  h.cleanup();
});

test('byte budget: writes holding maxInFlightBytes stop further parsing; one large request still runs', async () => {
  const dev = new HookedRam({ size: MiB });
  const gates: Array<() => void> = [];
  dev.hook = (op) => (op === 'write' ? new Promise<void>((r) => gates.push(r)) : undefined);
  const h = await setup('structured', { device: dev, maxInFlightBytes: 3 * 4096 });
  const cookies = Array.from({ length: 6 }, (_, i) =>
    h.send({ type: NBD_CMD_WRITE, offset: i * 4096, payload: pattern(4096, i) }),
  );
  await sleep(50);
  assert.equal(dev.active, 3, 'three 4 KiB writes fill a 12 KiB budget');
  for (let i = 0; i < 6; i++) {
    while (gates.length === 0) await sleep(1);
    gates.shift()!();
    assert.equal(errorOf(await h.reader.reply()), 0);
  }
  assert.equal(dev.maxActive, 3, 'never more than the budget allows');
  assert.equal(cookies.length, 6);
  // A single request larger than the whole budget is not starved.
  h.send({ type: NBD_CMD_WRITE, offset: 0, payload: pattern(64 * 1024, 9) });
  while (gates.length === 0) await sleep(1);
  gates.shift()!();
  assert.equal(errorOf(await h.reader.reply()), 0);
  assert.deepEqual(await read(h, 0, 64 * 1024), pattern(64 * 1024, 9));
  await disconnect(h);
  h.cleanup();
});

test('write backpressure: a client that stops reading stops the server from parsing more', async () => {
  const dev = new HookedRam({ size: 16 * MiB });
  const h = await setup('simple', { device: dev, maxInFlight: 4 });
  h.client.pause();
  const n = 150;
  for (let i = 0; i < n; i++) {
    const cookie = BigInt(1000 + i);
    h.reader.readLengths.set(cookie, MiB);
    h.client.write(encodeRequest(false, { type: NBD_CMD_READ, offset: (i % 16) * MiB, length: MiB }, cookie));
  }
  await sleep(300);
  const reads = dev.calls.filter((c) => c.op === 'read').length;
  assert.ok(
    reads < 40,
    `server stopped reading requests while its replies were not drained (${reads} of ${n})`,
  );
  h.client.resume();
  for (let i = 0; i < n; i++) {
    const r = await h.reader.reply();
    assert.equal(errorOf(r), 0);
  }
  assert.equal(dev.calls.filter((c) => c.op === 'read').length, n);
  await disconnect(h);
  h.cleanup();
});

// ---- disconnects -------------------------------------------------------------------------------

test('DISC with requests in flight: they finish and are answered, later requests are ignored, then the socket ends', async () => {
  const slow = gate();
  const dev = new HookedRam({ size: MiB });
  dev.hook = (op) => (op === 'write' ? slow.opened : undefined);
  const h = await setup('structured', { device: dev });
  const w = h.send({ type: NBD_CMD_WRITE, offset: 0, payload: pattern(4096, 3) });
  while (dev.active === 0) await sleep(1);
  h.send({ type: NBD_CMD_DISC });
  h.send({ type: NBD_CMD_WRITE, offset: 8192, payload: pattern(512, 4) }); // a client MUST NOT; ignored
  await sleep(20);
  assert.equal(h.reader.ended, false, 'not closed while a request runs');
  slow.open();
  const r = await h.reader.reply();
  assert.equal(r[0]!.cookie, w);
  assert.equal(errorOf(r), 0);
  assert.equal(await h.reader.end(), 0, 'nothing after the in-flight reply');
  assert.match(await h.t.closed, /NBD_CMD_DISC/);
  assert.deepEqual(
    dev.calls.map((c) => c.op),
    ['write'],
    'the request after DISC never ran',
  );
  assert.deepEqual(h.closeReasons, [await h.t.closed]);
  h.cleanup();
});

test('client hangs up with a write in flight: the write lands, then closed resolves', async () => {
  const slow = gate();
  const dev = new HookedRam({ size: MiB });
  dev.hook = (op) => (op === 'write' ? slow.opened : undefined);
  const h = await setup('simple', { device: dev });
  h.send({ type: NBD_CMD_WRITE, offset: MiB - 4096, payload: pattern(4096, 5) });
  while (dev.active === 0) await sleep(1);
  h.client.destroy();
  let done = false;
  void h.t.closed.then(() => (done = true));
  await sleep(30);
  assert.equal(done, false, 'closed waits for the in-flight write');
  slow.open();
  const reason = await h.t.closed;
  assert.match(reason, /hung up|closed|reset/);
  const landed = Buffer.alloc(4096);
  await dev.read(MiB - 4096, landed);
  assert.deepEqual(landed, pattern(4096, 5));
  h.cleanup();
});

test('shutdown: in-flight requests finish, new ones get ESHUTDOWN, then the socket ends', async () => {
  const slow = gate();
  const dev = new HookedRam({ size: MiB });
  dev.hook = (op) => (op === 'write' ? slow.opened : undefined);
  const h = await setup('extended', { device: dev });
  const w = h.send({ type: NBD_CMD_WRITE, offset: 0, payload: pattern(512, 1) });
  while (dev.active === 0) await sleep(1);
  const down = h.t.shutdown(5000);
  const late = h.send({ type: NBD_CMD_READ, offset: 0, length: 512 });
  const r1 = await h.reader.reply();
  assert.equal(r1[0]!.cookie, late);
  assert.equal(errorOf(r1), NBD_ESHUTDOWN);
  slow.open();
  const r2 = await h.reader.reply();
  assert.equal(r2[0]!.cookie, w);
  assert.equal(errorOf(r2), 0);
  await down;
  assert.equal(await h.reader.end(), 0);
  assert.match(await h.t.closed, /shutdown/);
  assert.deepEqual(
    dev.calls.map((c) => c.op),
    ['write'],
    'the ESHUTDOWN request never ran',
  );
  h.cleanup();
});

test('shutdown answers requests already buffered behind maxInFlight with ESHUTDOWN', async () => {
  const dev = new HookedRam({ size: MiB });
  const release: Array<() => void> = [];
  dev.hook = (op) => (op === 'read' ? new Promise<void>((r) => release.push(r)) : undefined);
  const h = await setup('simple', { device: dev, maxInFlight: 1 });
  const first = h.send({ type: NBD_CMD_READ, offset: 0, length: 512 });
  const queued = [h.send({ type: NBD_CMD_FLUSH }), h.send({ type: NBD_CMD_FLUSH })];
  while (release.length === 0) await sleep(1);
  await sleep(20);
  const down = h.t.shutdown(5000);
  const got = [await h.reader.reply(), await h.reader.reply()];
  assert.deepEqual(
    got.map((r) => [r[0]!.cookie, errorOf(r)]),
    queued.map((c) => [c, NBD_ESHUTDOWN]),
  );
  release.shift()!();
  const r = await h.reader.reply();
  assert.equal(r[0]!.cookie, first);
  assert.equal(errorOf(r), 0);
  await down;
  h.cleanup();
});

test('shutdown timeout: stuck requests are aborted and the socket destroyed', async () => {
  const dev = new HookedRam({ size: MiB });
  let aborted = false;
  dev.hook = (_op, _o, _l, signal) =>
    new Promise<void>((_, reject) =>
      signal?.addEventListener('abort', () => {
        aborted = true;
        reject(new BlockError(ErrorCode.ECANCELED, 'aborted'));
      }),
    );
  const h = await setup('simple', { device: dev });
  h.send({ type: NBD_CMD_WRITE, offset: 0, payload: Buffer.alloc(512) });
  while (dev.active === 0) await sleep(1);
  const t0 = Date.now();
  await h.t.shutdown(100);
  assert.ok(Date.now() - t0 >= 90);
  assert.equal(aborted, true, 'the in-flight request saw its signal abort');
  assert.match(await h.t.closed, /still running/);
  await h.reader.end();
  h.cleanup();
});

// ---- input split anywhere ----------------------------------------------------------------------

test('requests split at every byte (and across the handshake leftover) are parsed the same', async () => {
  for (const style of ['simple', 'extended'] as const) {
    const extended = style === 'extended';
    const stream = Buffer.concat([
      encodeRequest(extended, { type: NBD_CMD_WRITE, offset: 512, payload: pattern(1024, 11) }, 1n),
      encodeRequest(extended, { type: NBD_CMD_FLUSH }, 2n),
      encodeRequest(extended, { type: NBD_CMD_READ, offset: 512, length: 1024 }, 3n),
    ]);
    // 10 bytes arrived with the handshake; the rest trickles in one byte per segment.
    const h = await setup(style, { leftover: stream.subarray(0, 10) });
    h.reader.readLengths.set(3n, 1024);
    for (let i = 10; i < stream.length; i++) {
      h.client.write(stream.subarray(i, i + 1));
      if (i % 7 === 0) await new Promise((r) => setImmediate(r));
    }
    const replies = [await h.reader.reply(), await h.reader.reply(), await h.reader.reply()];
    assert.deepEqual(
      replies.map((r) => r[0]!.cookie),
      [1n, 2n, 3n],
    );
    assert.deepEqual(dataOf(replies[2]!, 512, 1024), pattern(1024, 11));
    await disconnect(h);
    h.cleanup();
  }
});

test('a socket that is already gone at start resolves closed', async () => {
  const h = await setup('simple', { start: false });
  h.server.destroy();
  await once(h.server, 'close');
  h.t.start();
  assert.match(await h.t.closed, /closed/);
  h.cleanup();
});

test('direct reads: a TCP session moves to a socket that receives WRITE data into the payload buffers', async () => {
  const h = await setup('structured', { device: new HookedRam({ size: 8 * MiB }) });
  assert.notEqual(h.t.socket, h.server, 'the transmission reads through an adopted socket');
  // Three writes in one stream, sent in odd-sized pieces so headers and payloads straddle reads.
  const writes = [
    { offset: 0, data: pattern(3 * MiB, 5) },
    { offset: 3 * MiB, data: pattern(4096, 6) },
    { offset: 4 * MiB, data: pattern(2 * MiB + 512, 7) },
  ];
  const wire = Buffer.concat(
    writes.map((w, i) =>
      encodeRequest(false, { type: NBD_CMD_WRITE, offset: w.offset, payload: w.data }, BigInt(100 + i)),
    ),
  );
  for (let at = 0; at < wire.length;) {
    const n = Math.min(wire.length - at, 1 + ((at * 7919) % 200_000));
    h.client.write(wire.subarray(at, at + n));
    at += n;
  }
  const cookies = new Set<bigint>();
  for (let i = 0; i < writes.length; i++) {
    const r = await h.reader.reply();
    assert.equal(errorOf(r), 0);
    cookies.add(r[0]!.cookie);
  }
  assert.deepEqual([...cookies].sort(), [100n, 101n, 102n]);
  for (const w of writes)
    assert.ok((await read(h, w.offset, w.data.length)).equals(w.data), `data at ${w.offset}`);
  await disconnect(h);
  h.cleanup();
});

test("large reads borrow the RAM device's chunks: sent without a copy, unchanged by later writes, given back", async () => {
  const dev = new HookedRam({ size: 4 * MiB });
  const h = await setup('structured', { device: dev });
  const old = pattern(2 * MiB, 1);
  await write(h, MiB, old);
  // The server's socket is corked: the 2 MiB reply stays queued in it, lent.
  h.t.socket.cork();
  const cookie = h.send({ type: NBD_CMD_READ, offset: MiB, length: 2 * MiB });
  while (!dev.calls.some((c) => c.op === 'read')) await sleep(1);
  await sleep(5);
  assert.ok(dev.lentChunks > 0, 'the reply refers to the device chunks');
  // A write over the same range, from another connection's point of view (the device itself).
  const fresh = pattern(2 * MiB, 2);
  await dev.write(MiB, fresh);
  h.t.socket.uncork();
  const r = await h.reader.reply();
  assert.equal(r[0]!.cookie, cookie);
  assert.ok(dataOf(r, MiB, 2 * MiB).equals(old), 'the reply holds the bytes read, not the later write');
  assert.ok((await read(h, MiB, 2 * MiB)).equals(fresh), 'the device holds the write');
  await sleep(5);
  assert.equal(dev.lentChunks, 0, 'every loan given back once sent');
  // Small reads are copied, not lent.
  await read(h, 0, 4096);
  assert.equal(dev.lentChunks, 0);
  await disconnect(h);
  h.cleanup();
});
