// negotiate() over real localhost TCP: a raw client writes the option bytes and every byte
// of the server's answers is checked against replies built by hand here (not by the codec).

import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { RamDevice } from '../../devices/ram.js';
import type { ExportLookup, NbdExport } from './export.js';
import { negotiate, type HandshakeContext, type NegotiationOutcome } from './handshake.js';
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_PEEK_EXPORT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_EXT_HEADER_REQD,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from './protocol.js';
import { SocketReadError, SocketReader } from './socket-reader.js';

// ---- fixtures -----------------------------------------------------------------------------

const ram0: NbdExport = {
  name: 'ram0',
  description: 'first disk',
  device: new RamDevice({ name: 'h1-ram0', size: 1 << 20 }),
  readOnly: false,
  multiConn: true,
};
/** The '' export: a 2 MiB read-only device, no multi-conn, no description. */
const dflt: NbdExport = {
  name: '',
  device: new RamDevice({ name: 'h1-ro', size: 2 << 20, readOnly: true }),
  readOnly: false,
  multiConn: false,
};
const EXPORTS: ExportLookup = {
  get: (name) => [dflt, ram0].find((e) => e.name === name),
  list: () => [dflt, ram0],
};

// HAS_FLAGS|FLUSH|FUA|TRIM|WRITE_ZEROES|MULTI_CONN|CACHE|FAST_ZERO, plus SEND_DF when structured.
const RAM0_FLAGS = 0x0d6d;
const RAM0_FLAGS_STRUCTURED = 0x0ded;
// HAS_FLAGS|READ_ONLY|FLUSH|FUA|CACHE.
const DFLT_FLAGS = 0x040f;

const FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

let certDir = '';
let secureContext: tls.SecureContext;
before(() => {
  certDir = mkdtempSync(join(tmpdir(), 'tsblk-nbd-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'k',
      '-out',
      'c',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ],
    { cwd: certDir, stdio: 'ignore' },
  );
  secureContext = tls.createSecureContext({
    key: readFileSync(join(certDir, 'k')),
    cert: readFileSync(join(certDir, 'c')),
  });
});
after(() => rmSync(certDir, { recursive: true, force: true }));

// ---- wire helpers (built by hand) ---------------------------------------------------------

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
const str = (s: string): Buffer => Buffer.from(s, 'utf8');

const GREETING = hex('4e42444d41474943 49484156454f5054 0003');

function opt(option: number, data: Buffer = Buffer.alloc(0), length = data.length): Buffer {
  return Buffer.concat([hex('49484156454f5054'), u32(option), u32(length), data]);
}
function goData(name: string, infos: number[] = []): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(name)), str(name), u16(infos.length), ...infos.map(u16)]);
}
function metaData(name: string, queries: string[]): Buffer {
  const parts = [u32(Buffer.byteLength(name)), str(name), u32(queries.length)];
  for (const q of queries) parts.push(u32(Buffer.byteLength(q)), str(q));
  return Buffer.concat(parts);
}
function rep(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([hex('0003e889045565a9'), u32(option), u32(type), u32(data.length), data]);
}
const infoExport = (size: number, flags: number): Buffer => Buffer.concat([u16(0), u64(size), u16(flags)]);
const infoBlockSize = (min: number, pref: number, max: number): Buffer =>
  Buffer.concat([u16(3), u32(min), u32(pref), u32(max)]);
const BLOCK_SIZE_512 = infoBlockSize(512, 4096, 32 * 1024 * 1024);

// ---- harness ------------------------------------------------------------------------------

interface Conn {
  client: net.Socket;
  rd: SocketReader;
  outcome: Promise<NegotiationOutcome>;
  /** The accepted socket, and its listener counts before negotiate() ran. */
  server: Promise<{ socket: net.Socket; baseline: number[] }>;
  send(data: Buffer): Promise<void>;
}

const EVENTS = ['data', 'end', 'close', 'error', 'readable'];
const counts = (s: net.Socket): number[] => EVENTS.map((e) => s.listenerCount(e));

async function connect(t: TestContext, ctx: Partial<HandshakeContext> = {}): Promise<Conn> {
  const full: HandshakeContext = { exports: EXPORTS, ...ctx };
  let onOutcome!: (o: NegotiationOutcome) => void;
  let onServer!: (s: { socket: net.Socket; baseline: number[] }) => void;
  const outcome = new Promise<NegotiationOutcome>((r) => (onOutcome = r));
  const server = new Promise<{ socket: net.Socket; baseline: number[] }>((r) => (onServer = r));
  const srv = net.createServer((socket) => {
    onServer({ socket, baseline: counts(socket) });
    void negotiate(socket, full).then(onOutcome);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  await once(client, 'connect');
  srv.close();
  t.after(async () => {
    client.destroy();
    const o = await outcome;
    if (o.kind === 'transmission') o.session.socket.destroy();
  });
  const send = (data: Buffer): Promise<void> =>
    new Promise((resolve, reject) => client.write(data, (err) => (err ? reject(err) : resolve())));
  return { client, rd: new SocketReader(client), outcome, server, send };
}

/** Reads one option reply (header + data) as raw bytes. */
async function reply(rd: SocketReader): Promise<Buffer> {
  const header = await rd.read(20);
  return Buffer.concat([header, await rd.read(header.readUInt32BE(16))]);
}

/** An error reply: exact header, and a UTF-8 message matching `re`. */
async function expectError(rd: SocketReader, option: number, type: number, re: RegExp): Promise<void> {
  const r = await reply(rd);
  assert.deepEqual(r.subarray(0, 16), rep(option, type).subarray(0, 16));
  assert.equal(r.readUInt32BE(16), r.length - 20);
  assert.match(r.subarray(20).toString('utf8'), re);
}

/** Greeting checked, client flags sent. */
async function hello(c: Conn, flags = FLAGS): Promise<void> {
  assert.deepEqual(await c.rd.read(18), GREETING);
  await c.send(u32(flags));
}

async function expectHangUp(rd: SocketReader): Promise<void> {
  await assert.rejects(rd.read(1), SocketReadError);
}

async function closed(c: Conn, re: RegExp): Promise<void> {
  const o = await c.outcome;
  assert.equal(o.kind, 'closed');
  if (o.kind === 'closed') assert.match(o.reason, re);
  const { socket } = await c.server;
  assert.equal(socket.destroyed, true);
}

async function transmission(c: Conn) {
  const o = await c.outcome;
  assert.equal(o.kind, 'transmission', o.kind === 'closed' ? o.reason : '');
  if (o.kind !== 'transmission') throw new Error('unreachable');
  return o.session;
}

/** GO for `name` asking nothing: EXPORT, BLOCK_SIZE, ACK. */
async function goPlain(c: Conn, name: string, size: number, flags: number): Promise<void> {
  await c.send(opt(NBD_OPT_GO, goData(name)));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, infoExport(size, flags)));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_ACK));
}

// ---- the happy paths ----------------------------------------------------------------------

test('full GO flow: structured replies, base:allocation, every info, exact bytes, clean socket', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, Buffer.concat([u32(1), str('base:allocation')])),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
  // Unknown info type 99 is ignored.
  await c.send(
    opt(NBD_OPT_GO, goData('ram0', [NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE, 99])),
  );
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_GO, NBD_REP_INFO, infoExport(1 << 20, RAM0_FLAGS_STRUCTURED)),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, Buffer.concat([u16(1), str('ram0')])));
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_GO, NBD_REP_INFO, Buffer.concat([u16(2), str('first disk')])),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_ACK));

  const s = await transmission(c);
  const { socket, baseline } = await c.server;
  assert.equal(s.export, ram0);
  assert.equal(s.structuredReplies, true);
  assert.equal(s.extendedHeaders, false);
  assert.deepEqual([...s.metaContexts], [[1, 'base:allocation']]);
  assert.equal(s.transmissionFlags, RAM0_FLAGS_STRUCTURED);
  assert.equal(s.socket, socket);
  assert.equal(s.leftover.length, 0);
  // No listener of the handshake is left behind, and the socket is still open.
  assert.deepEqual(counts(socket), baseline);
  assert.equal(socket.destroyed, false);
  // The transmission phase owns the socket now: bytes flow both ways.
  const got = new Promise<Buffer>((r) => socket.once('data', r));
  socket.resume();
  await c.send(str('request'));
  assert.equal((await got).toString(), 'request');
  socket.write('reply');
  assert.equal((await c.rd.read(5)).toString(), 'reply');
});

test('INFO then GO without structured replies: same answers, no SEND_DF, no contexts', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_INFO, goData('ram0')));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_INFO, infoExport(1 << 20, RAM0_FLAGS)));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_ACK));
  // INFO with DESCRIPTION asked on an export without one: nothing sent for it.
  await c.send(opt(NBD_OPT_INFO, goData('', [NBD_INFO_DESCRIPTION])));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_INFO, infoExport(2 << 20, DFLT_FLAGS)));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_INFO, NBD_REP_ACK));
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  const s = await transmission(c);
  assert.equal(s.export, ram0);
  assert.equal(s.structuredReplies, false);
  assert.equal(s.extendedHeaders, false);
  assert.equal(s.metaContexts.size, 0);
  assert.equal(s.transmissionFlags, RAM0_FLAGS);
});

test('LIST: one NBD_REP_SERVER per export, including the "" export, then ACK', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_LIST));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_LIST, NBD_REP_SERVER, u32(0)));
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_LIST, NBD_REP_SERVER, Buffer.concat([u32(4), str('ram0'), str('first disk')])),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_LIST, NBD_REP_ACK));
  // LIST takes no data.
  await c.send(opt(NBD_OPT_LIST, hex('00')));
  await expectError(c.rd, NBD_OPT_LIST, NBD_REP_ERR_INVALID, /takes no data/);
  // The default export by its empty name.
  await goPlain(c, '', 2 << 20, DFLT_FLAGS);
  assert.equal((await transmission(c)).export, dflt);
});

test('GO on an unknown export: ERR_UNKNOWN, and negotiation goes on', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_GO, goData('nope', [NBD_INFO_BLOCK_SIZE])));
  await expectError(c.rd, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, /no export named "nope"/);
  await c.send(opt(NBD_OPT_INFO, goData('nope')));
  await expectError(c.rd, NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN, /nope/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  assert.equal((await transmission(c)).export, ram0);
});

test('EXPORT_NAME on an unknown export closes the connection (no error reply exists)', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_EXPORT_NAME, str('nope')));
  await expectHangUp(c.rd);
  await closed(c, /no export named "nope"/);
});

test('EXPORT_NAME with NO_ZEROES: u64 size and u16 flags only', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_EXPORT_NAME, str('ram0')));
  assert.deepEqual(await c.rd.read(10), Buffer.concat([u64(1 << 20), u16(RAM0_FLAGS)]));
  const s = await transmission(c);
  assert.equal(s.export, ram0);
  s.socket.end();
  await expectHangUp(c.rd); // nothing else was sent
  assert.equal(c.rd.buffered, 0);
});

test('EXPORT_NAME without NO_ZEROES (and without FIXED_NEWSTYLE): 124 zero bytes follow', async (t) => {
  const c = await connect(t);
  await hello(c, 0);
  await c.send(opt(NBD_OPT_EXPORT_NAME));
  assert.deepEqual(await c.rd.read(134), Buffer.concat([u64(2 << 20), u16(DFLT_FLAGS), Buffer.alloc(124)]));
  const s = await transmission(c);
  assert.equal(s.export, dflt);
  s.socket.end();
  await expectHangUp(c.rd);
  assert.equal(c.rd.buffered, 0);
});

test('EXPORT_NAME keeps a meta context selected for the same export', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  await reply(c.rd);
  await reply(c.rd);
  await c.send(opt(NBD_OPT_EXPORT_NAME, str('ram0')));
  assert.deepEqual(await c.rd.read(10), Buffer.concat([u64(1 << 20), u16(RAM0_FLAGS_STRUCTURED)]));
  const s = await transmission(c);
  assert.deepEqual([...s.metaContexts], [[1, 'base:allocation']]);
});

// ---- violations and hang-ups --------------------------------------------------------------

test('unknown client flags close the connection', async (t) => {
  const c = await connect(t);
  await hello(c, FLAGS | 4);
  await expectHangUp(c.rd);
  await closed(c, /unknown client flags 0x00000007/);
});

test('bad option magic closes the connection', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(Buffer.concat([hex('49484156454f5055'), u32(NBD_OPT_LIST), u32(0)]));
  await expectHangUp(c.rd);
  await closed(c, /bad option magic/);
});

test('an option longer than the limit is a hard disconnect; one at the limit is read and answered', async (t) => {
  const c = await connect(t, { maxOptionLength: 100 });
  await hello(c);
  await c.send(opt(99, Buffer.alloc(100, 7)));
  await expectError(c.rd, 99, NBD_REP_ERR_UNSUP, /NBD_OPT_99 is not supported/);
  // Only the header is needed to decide: the 101 bytes are never sent.
  await c.send(opt(99, Buffer.alloc(0), 101));
  await expectHangUp(c.rd);
  await closed(c, /101 bytes, more than the 100-byte option limit/);
});

test('the default option limit is 64 KiB', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_GO, Buffer.alloc(0), 64 * 1024 + 1));
  await expectHangUp(c.rd);
  await closed(c, /65537 bytes, more than the 65536-byte/);
});

test('a truncated payload then hang-up: closed, no hang', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_GO, goData('ram0')).subarray(0, 20));
  c.client.end();
  await closed(c, /closed the connection during the handshake/);
});

test('hang-up right after connecting, and mid-greeting', async (t) => {
  const a = await connect(t);
  a.client.destroy();
  await closed(a, /during the handshake/);
  const b = await connect(t);
  assert.deepEqual(await b.rd.read(18), GREETING);
  await b.send(hex('0000'));
  b.client.end();
  await closed(b, /during the handshake/);
});

test('ABORT: ACK, then the server ends the connection', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_ABORT, hex('0102'))); // data with ABORT is ignored
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_ABORT, NBD_REP_ACK));
  await expectHangUp(c.rd);
  await closed(c, /NBD_OPT_ABORT/);
});

test('unknown option 99 and PEEK_EXPORT get ERR_UNSUP; a GO still works after', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(99, hex('deadbeef')));
  await expectError(c.rd, 99, NBD_REP_ERR_UNSUP, /NBD_OPT_99/);
  await c.send(opt(NBD_OPT_PEEK_EXPORT));
  await expectError(c.rd, NBD_OPT_PEEK_EXPORT, NBD_REP_ERR_UNSUP, /PEEK_EXPORT/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  assert.equal((await transmission(c)).export, ram0);
});

test('malformed INFO/GO payloads get ERR_INVALID', async (t) => {
  const c = await connect(t);
  await hello(c);
  // Name length past the payload.
  await c.send(opt(NBD_OPT_GO, Buffer.concat([u32(50), str('ram0'), u16(0)])));
  await expectError(c.rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, /export name needs 50 bytes/);
  // Count of 2 with one type.
  await c.send(opt(NBD_OPT_INFO, Buffer.concat([u32(4), str('ram0'), u16(2), u16(1)])));
  await expectError(c.rd, NBD_OPT_INFO, NBD_REP_ERR_INVALID, /2 information requests need 4 bytes/);
  // A name over 4096 bytes, a name with invalid UTF-8.
  await c.send(opt(NBD_OPT_GO, goData('n'.repeat(4097))));
  await expectError(c.rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, /4096/);
  await c.send(opt(NBD_OPT_GO, Buffer.concat([u32(1), hex('ff'), u16(0)])));
  await expectError(c.rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, /UTF-8/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  await transmission(c);
});

test('client bytes arriving one at a time', async (t) => {
  const c = await connect(t);
  assert.deepEqual(await c.rd.read(18), GREETING);
  const bytes = Buffer.concat([
    u32(FLAGS),
    opt(NBD_OPT_STRUCTURED_REPLY),
    opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])),
  ]);
  c.client.setNoDelay(true);
  for (const b of bytes) {
    await c.send(Buffer.from([b]));
    await tick();
  }
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, Buffer.concat([u32(1), str('base:allocation')])),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
  for (const b of opt(NBD_OPT_GO, goData('ram0', [NBD_INFO_NAME]))) {
    await c.send(Buffer.from([b]));
    await tick();
  }
  assert.deepEqual(
    await reply(c.rd),
    rep(NBD_OPT_GO, NBD_REP_INFO, infoExport(1 << 20, RAM0_FLAGS_STRUCTURED)),
  );
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, Buffer.concat([u16(1), str('ram0')])));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_ACK));
  const s = await transmission(c);
  assert.deepEqual([...s.metaContexts], [[1, 'base:allocation']]);
  assert.equal(s.leftover.length, 0);
});

test('GO and a transmission request in one write: the request comes back as leftover', async (t) => {
  const c = await connect(t);
  await hello(c);
  const request = hex('25609513 0000 0000 0102030405060708 0000000000000000 00000200');
  await c.send(Buffer.concat([opt(NBD_OPT_GO, goData('ram0')), request]));
  await reply(c.rd);
  await reply(c.rd);
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_GO, NBD_REP_ACK));
  const s = await transmission(c);
  assert.deepEqual(s.leftover, request);
  const { socket, baseline } = await c.server;
  assert.deepEqual(counts(socket), baseline);
});

// ---- meta contexts ------------------------------------------------------------------------

const metaCtx = (option: number, id: number): Buffer =>
  rep(option, NBD_REP_META_CONTEXT, Buffer.concat([u32(id), str('base:allocation')]));

test('LIST_META_CONTEXT: all, "base:" wildcard, exact name, unknown namespaces ignored', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  const L = NBD_OPT_LIST_META_CONTEXT;
  for (const queries of [[], ['base:'], ['base:allocation'], ['x-foo:bar', 'base:', 'base:allocation']]) {
    await c.send(opt(L, metaData('ram0', queries)));
    assert.deepEqual(await reply(c.rd), metaCtx(L, 0), `queries ${JSON.stringify(queries)}`);
    assert.deepEqual(await reply(c.rd), rep(L, NBD_REP_ACK));
  }
  for (const queries of [['x-foo:bar'], ['qemu:dirty-bitmap:b'], ['base:other'], ['nocolon']]) {
    await c.send(opt(L, metaData('', queries)));
    assert.deepEqual(await reply(c.rd), rep(L, NBD_REP_ACK), `queries ${JSON.stringify(queries)}`);
  }
  await c.send(opt(L, metaData('nope', [])));
  await expectError(c.rd, L, NBD_REP_ERR_UNKNOWN, /nope/);
  // Query length past the end of the option.
  await c.send(opt(L, Buffer.concat([u32(0), u32(1), u32(20), str('base:')])));
  await expectError(c.rd, L, NBD_REP_ERR_INVALID, /query 0 needs 20 bytes/);
});

test('SET_META_CONTEXT before STRUCTURED_REPLY or EXTENDED_HEADERS: ERR_INVALID', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  await expectError(c.rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID, /STRUCTURED_REPLY/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  assert.equal((await transmission(c)).metaContexts.size, 0);
});

test('SET_META_CONTEXT: wildcards and unknown namespaces select nothing', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:', 'x-a:b', 'base:other'])));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  assert.equal((await transmission(c)).metaContexts.size, 0);
});

test('SET_META_CONTEXT for one export, GO on another: no context active', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('', ['base:allocation', 'base:allocation'])));
  assert.deepEqual(await reply(c.rd), metaCtx(NBD_OPT_SET_META_CONTEXT, 1)); // one reply for the duplicate
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  const s = await transmission(c);
  assert.equal(s.export, ram0);
  assert.equal(s.metaContexts.size, 0);
});

test('a failing SET_META_CONTEXT still replaces the selection', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  assert.deepEqual(await reply(c.rd), metaCtx(NBD_OPT_SET_META_CONTEXT, 1));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('nope', ['base:allocation'])));
  await expectError(c.rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNKNOWN, /nope/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  assert.equal((await transmission(c)).metaContexts.size, 0);
});

test('SET_META_CONTEXT with no queries clears an earlier selection', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  await reply(c.rd);
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', [])));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK));
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  assert.equal((await transmission(c)).metaContexts.size, 0);
});

// ---- structured replies and extended headers ----------------------------------------------

test('STRUCTURED_REPLY: data → INVALID, twice → INVALID', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY, hex('00')));
  await expectError(c.rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, /takes no data/);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await expectError(c.rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, /already/);
  // Extended headers may still follow structured replies.
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK));
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  const s = await transmission(c);
  assert.equal(s.extendedHeaders, true);
});

test('EXTENDED_HEADERS: ACK implies structured replies; twice → INVALID; STRUCTURED_REPLY after → EXT_HEADER_REQD', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS, hex('00')));
  await expectError(c.rd, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID, /takes no data/);
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK));
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS));
  await expectError(c.rd, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID, /already/);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await expectError(c.rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_EXT_HEADER_REQD, /extended headers/);
  // SET_META_CONTEXT is allowed with extended headers alone.
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  assert.deepEqual(await reply(c.rd), metaCtx(NBD_OPT_SET_META_CONTEXT, 1));
  await reply(c.rd);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS_STRUCTURED);
  const s = await transmission(c);
  assert.equal(s.extendedHeaders, true);
  assert.equal(s.structuredReplies, true);
  assert.deepEqual([...s.metaContexts], [[1, 'base:allocation']]);
});

test('EXPORT_NAME after EXTENDED_HEADERS is a hard disconnect', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_EXTENDED_HEADERS));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_EXPORT_NAME, str('ram0')));
  await expectHangUp(c.rd);
  await closed(c, /EXPORT_NAME after extended headers/);
});

// ---- TLS ----------------------------------------------------------------------------------

/** After the STARTTLS ACK: the client side of TLS, and a reader over it. */
async function clientTls(
  c: Conn,
): Promise<{ secure: tls.TLSSocket; rd: SocketReader; send(b: Buffer): Promise<void> }> {
  c.rd.detach();
  const secure = tls.connect({ socket: c.client, rejectUnauthorized: false });
  secure.on('error', () => {});
  await once(secure, 'secureConnect');
  return {
    secure,
    rd: new SocketReader(secure),
    send: (b) => new Promise((resolve, reject) => secure.write(b, (err) => (err ? reject(err) : resolve()))),
  };
}

test('STARTTLS without TLS configured: ERR_POLICY; with data: ERR_INVALID', async (t) => {
  const c = await connect(t);
  await hello(c);
  await c.send(opt(NBD_OPT_STARTTLS));
  await expectError(c.rd, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, /TLS is not enabled/);
  await c.send(opt(NBD_OPT_STARTTLS, hex('00')));
  await expectError(c.rd, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, /takes no data/);
  await goPlain(c, 'ram0', 1 << 20, RAM0_FLAGS);
  await transmission(c);
});

test('STARTTLS (TLS optional): upgrade, state before it forgotten, GO over TLS, TLSSocket handed over', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: false } });
  await hello(c);
  // Negotiated in the clear, then forgotten by STARTTLS.
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await reply(c.rd);
  await c.send(opt(NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])));
  await reply(c.rd);
  await reply(c.rd);
  await c.send(opt(NBD_OPT_STARTTLS));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STARTTLS, NBD_REP_ACK));
  const s = await clientTls(c);
  await s.send(opt(NBD_OPT_STARTTLS));
  await expectError(s.rd, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, /already active/);
  await s.send(Buffer.concat([opt(NBD_OPT_GO, goData('ram0')), str('early')]));
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_GO, NBD_REP_INFO, infoExport(1 << 20, RAM0_FLAGS)));
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_GO, NBD_REP_INFO, BLOCK_SIZE_512));
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_GO, NBD_REP_ACK));
  const session = await transmission(c);
  assert.ok(session.socket instanceof tls.TLSSocket);
  assert.equal(session.structuredReplies, false);
  assert.equal(session.metaContexts.size, 0);
  assert.equal(session.transmissionFlags, RAM0_FLAGS);
  assert.equal(session.leftover.toString(), 'early');
  assert.deepEqual(
    EVENTS.map((e) => session.socket.listenerCount(e)),
    EVENTS.map((e) => new tls.TLSSocket(new net.Socket()).listenerCount(e)),
  );
  // The transmission phase talks over TLS.
  const got = new Promise<Buffer>((r) => session.socket.once('data', r));
  session.socket.resume();
  await s.send(str('ping'));
  assert.equal((await got).toString(), 'ping');
  session.socket.write('pong');
  assert.equal((await s.rd.read(4)).toString(), 'pong');
  s.secure.destroy();
});

test('TLS required: options before STARTTLS get TLS_REQD, EXPORT_NAME closes, ABORT is allowed', async (t) => {
  const ctx = { tls: { secureContext, required: true } };
  const c = await connect(t, ctx);
  await hello(c);
  for (const [option, data] of [
    [NBD_OPT_LIST, Buffer.alloc(0)],
    [NBD_OPT_INFO, goData('ram0')],
    [NBD_OPT_GO, goData('ram0')],
    [NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)],
    [NBD_OPT_SET_META_CONTEXT, metaData('ram0', ['base:allocation'])],
    [99, Buffer.alloc(0)],
  ] as const) {
    await c.send(opt(option, data));
    await expectError(c.rd, option, NBD_REP_ERR_TLS_REQD, /STARTTLS/);
  }
  await c.send(opt(NBD_OPT_EXPORT_NAME, str('ram0')));
  await expectHangUp(c.rd);
  await closed(c, /EXPORT_NAME before STARTTLS/);

  const a = await connect(t, ctx);
  await hello(a);
  await a.send(opt(NBD_OPT_ABORT));
  assert.deepEqual(await reply(a.rd), rep(NBD_OPT_ABORT, NBD_REP_ACK));
  await expectHangUp(a.rd);
  await closed(a, /ABORT/);
});

test('TLS required: after STARTTLS everything works, with no TLS_REQD', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: true } });
  await hello(c);
  await c.send(opt(NBD_OPT_STARTTLS));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STARTTLS, NBD_REP_ACK));
  const s = await clientTls(c);
  await s.send(opt(NBD_OPT_LIST));
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_LIST, NBD_REP_SERVER, u32(0)));
  await reply(s.rd);
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_LIST, NBD_REP_ACK));
  await s.send(opt(NBD_OPT_STRUCTURED_REPLY));
  assert.deepEqual(await reply(s.rd), rep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK));
  await s.send(opt(NBD_OPT_EXPORT_NAME, str('ram0')));
  assert.deepEqual(await s.rd.read(10), Buffer.concat([u64(1 << 20), u16(RAM0_FLAGS_STRUCTURED)]));
  const session = await transmission(c);
  assert.ok(session.socket instanceof tls.TLSSocket);
  assert.equal(session.structuredReplies, true);
  s.secure.destroy();
});

test('TLS required and a client without FIXED_NEWSTYLE: disconnected at once', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: true } });
  await hello(c, NBD_FLAG_C_NO_ZEROES);
  await expectHangUp(c.rd);
  await closed(c, /C_FIXED_NEWSTYLE/);
});

test('TLS optional and a client without FIXED_NEWSTYLE: STARTTLS gets ERR_POLICY', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: false } });
  await hello(c, 0);
  await c.send(opt(NBD_OPT_STARTTLS));
  await expectError(c.rd, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, /fixed newstyle/);
});

test('a failed TLS handshake closes the connection', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: true } });
  await hello(c);
  await c.send(opt(NBD_OPT_STARTTLS));
  await reply(c.rd);
  await c.send(Buffer.alloc(64, 0x41)); // not a ClientHello
  await expectHangUp(c.rd);
  await closed(c, /TLS handshake failed|closed during the TLS handshake/);
});

test('the client hangs up right after the STARTTLS ACK: closed, no hang', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: false } });
  await hello(c);
  await c.send(opt(NBD_OPT_STARTTLS));
  assert.deepEqual(await reply(c.rd), rep(NBD_OPT_STARTTLS, NBD_REP_ACK));
  c.client.end();
  await closed(c, /TLS handshake failed|closed during the TLS handshake/);
});

test('requestCert: a client without a certificate is refused', async (t) => {
  const c = await connect(t, { tls: { secureContext, required: true, requestCert: true } });
  await hello(c);
  await c.send(opt(NBD_OPT_STARTTLS));
  await reply(c.rd);
  c.rd.detach();
  const secure = tls.connect({ socket: c.client, rejectUnauthorized: false });
  secure.on('error', () => {});
  await closed(c, /TLS handshake failed|closed during the TLS handshake/);
  secure.destroy();
});

// ---- shutdown -----------------------------------------------------------------------------

test('shutdown: the next option gets ERR_SHUTDOWN, then the connection ends', async (t) => {
  const ac = new AbortController();
  const c = await connect(t, { signal: ac.signal });
  await hello(c);
  await c.send(opt(NBD_OPT_LIST));
  await reply(c.rd);
  await reply(c.rd);
  await reply(c.rd);
  ac.abort();
  await c.send(opt(NBD_OPT_GO, goData('ram0')));
  await expectError(c.rd, NBD_OPT_GO, NBD_REP_ERR_SHUTDOWN, /shutting down/);
  await expectHangUp(c.rd);
  await closed(c, /server shutting down/);
});

test('shutdown before the handshake: greeting, then ERR_SHUTDOWN; ABORT still gets its ACK', async (t) => {
  const ac = new AbortController();
  ac.abort();
  const c = await connect(t, { signal: ac.signal });
  await hello(c);
  await c.send(opt(NBD_OPT_STRUCTURED_REPLY));
  await expectError(c.rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_SHUTDOWN, /shutting down/);
  await expectHangUp(c.rd);
  await closed(c, /server shutting down/);

  const a = await connect(t, { signal: ac.signal });
  await hello(a);
  await a.send(opt(NBD_OPT_ABORT));
  assert.deepEqual(await reply(a.rd), rep(NBD_OPT_ABORT, NBD_REP_ACK));
  await expectHangUp(a.rd);
  await closed(a, /server shutting down/);
});

test('shutdown with an idle client: disconnected after the grace period', async (t) => {
  const ac = new AbortController();
  const c = await connect(t, { signal: ac.signal });
  await hello(c);
  const start = Date.now();
  ac.abort();
  await expectHangUp(c.rd);
  await closed(c, /server shutting down/);
  assert.ok(Date.now() - start >= 900, `closed after ${Date.now() - start} ms`);
});
