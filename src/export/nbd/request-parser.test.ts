import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NBD_MAX_PAYLOAD } from './export.js';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_PAYLOAD_LEN,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_EXTENDED_REQUEST_MAGIC,
  NBD_REQUEST_MAGIC,
} from './protocol.js';
import {
  CompactRequest,
  DISCARD_CAP,
  ExtendedRequest,
  NbdProtocolError,
  NbdRequestParser,
  type NbdRequest,
} from './request-parser.js';

// Test-only encoders, written against the spec's byte layout (not the field tables).
function compact(
  flags: number,
  type: number,
  cookie: bigint,
  offset: bigint,
  length: number,
  payload?: Buffer,
) {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([b, payload]) : b;
}
function extended(
  flags: number,
  type: number,
  cookie: bigint,
  offset: bigint,
  length: bigint,
  payload?: Buffer,
) {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(NBD_EXTENDED_REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeBigUInt64BE(length, 24);
  return payload ? Buffer.concat([b, payload]) : b;
}

function drain(p: NbdRequestParser): NbdRequest[] {
  const out: NbdRequest[] = [];
  for (let r = p.next(); r; r = p.next()) out.push(r);
  return out;
}

function parseChunks(chunks: Buffer[], ext = false): NbdRequest[] {
  const p = new NbdRequestParser({ extended: ext });
  const out: NbdRequest[] = [];
  for (const c of chunks) {
    p.push(c);
    out.push(...drain(p));
  }
  assert.equal(p.idle, true, 'nothing left half-parsed');
  return out;
}

/** Deterministic PRNG (mulberry32) so a failing chunking can be reproduced. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function splits(stream: Buffer): Buffer[][] {
  const all: Buffer[][] = [];
  for (let i = 0; i <= stream.length; i++) all.push([stream.subarray(0, i), stream.subarray(i)]);
  all.push([...stream].map((b) => Buffer.from([b])));
  const r = rng(7);
  for (let n = 0; n < 50; n++) {
    const parts: Buffer[] = [];
    for (let at = 0; at < stream.length;) {
      const len = 1 + Math.floor(r() * 40);
      parts.push(stream.subarray(at, at + len));
      at += len;
    }
    all.push(parts);
  }
  return all;
}

test('field offsets of both request layouts match the spec', () => {
  assert.deepEqual(
    { ...CompactRequest },
    { SIZE: 28, magic: 0, flags: 4, type: 6, cookie: 8, offset: 16, length: 24 },
  );
  assert.deepEqual(
    { ...ExtendedRequest },
    { SIZE: 32, magic: 0, flags: 4, type: 6, cookie: 8, offset: 16, length: 24 },
  );
  assert.equal(DISCARD_CAP, 64 * 1024 * 1024 + NBD_MAX_PAYLOAD);
});

test('compact requests parse identically at every split point and in random chunkings', () => {
  const data = Buffer.from('0123456789abcdef'.repeat(64)); // 1024 bytes
  const stream = Buffer.concat([
    compact(0, NBD_CMD_READ, 0x0102030405060708n, 4096n, 512),
    compact(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 0xffffffffffffffffn, 0n, data.length, data),
    compact(0, NBD_CMD_FLUSH, 3n, 0n, 0),
    compact(0, NBD_CMD_WRITE, 4n, 512n, 0), // empty write: a payload of 0 bytes
    compact(0, NBD_CMD_DISC, 5n, 0n, 0),
  ]);
  for (const chunks of splits(stream)) {
    const reqs = parseChunks(chunks);
    assert.equal(reqs.length, 5);
    const [read, write, flush, empty, disc] = reqs as [
      NbdRequest,
      NbdRequest,
      NbdRequest,
      NbdRequest,
      NbdRequest,
    ];
    assert.deepEqual(
      { ...read },
      {
        flags: 0,
        type: NBD_CMD_READ,
        cookie: 0x0102030405060708n,
        offset: 4096,
        offsetWire: 4096n,
        length: 512,
      },
    );
    assert.equal(write.type, NBD_CMD_WRITE);
    assert.equal(write.flags, NBD_CMD_FLAG_FUA);
    assert.equal(write.cookie, 0xffffffffffffffffn);
    assert.equal(write.length, 1024);
    assert.deepEqual(write.payload, data);
    assert.equal(flush.type, NBD_CMD_FLUSH);
    assert.equal(flush.payload, undefined);
    assert.equal(empty.payload?.length, 0);
    assert.equal(disc.type, NBD_CMD_DISC);
    assert.equal(disc.cookie, 5n);
  }
});

test('extended requests: 64-bit lengths, payload only with PAYLOAD_LEN, at every split point', () => {
  const data = Buffer.alloc(600, 0xab);
  const junk = Buffer.alloc(12, 0xcd);
  const stream = Buffer.concat([
    extended(0, NBD_CMD_TRIM, 1n, 1n << 40n, 1n << 40n),
    extended(NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_WRITE, 2n, 1024n, BigInt(data.length), data),
    // A payload on a command that takes none: read and dropped, the stream stays in step.
    extended(NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_READ, 3n, 0n, BigInt(junk.length), junk),
    // WRITE without PAYLOAD_LEN has no payload in extended mode.
    extended(0, NBD_CMD_WRITE, 4n, 0n, 512n),
    extended(0, NBD_CMD_READ, 5n, (1n << 60n) + 1n, 0xffffffffffffffffn),
  ]);
  for (const chunks of splits(stream)) {
    const reqs = parseChunks(chunks, true);
    assert.equal(reqs.length, 5);
    const [trim, write, read, bare, huge] = reqs as NbdRequest[] as [
      NbdRequest,
      NbdRequest,
      NbdRequest,
      NbdRequest,
      NbdRequest,
    ];
    assert.equal(trim.length, 2 ** 40);
    assert.equal(trim.offset, 2 ** 40);
    assert.deepEqual(write.payload, data);
    assert.equal(read.payload, undefined);
    assert.equal(read.discarded, 12);
    assert.equal(read.length, 12);
    assert.equal(bare.payload, undefined);
    assert.equal(bare.length, 512);
    // Beyond 2^53: the exact value is kept for echoing; the number is only "huge".
    assert.equal(huge.offsetWire, (1n << 60n) + 1n);
    assert.ok(huge.offset > Number.MAX_SAFE_INTEGER);
    assert.ok(huge.length > Number.MAX_SAFE_INTEGER);
  }
});

test('a WRITE larger than NBD_MAX_PAYLOAD is read and dropped; the next request parses', () => {
  const big = NBD_MAX_PAYLOAD + 512;
  const p = new NbdRequestParser({ extended: false });
  p.push(compact(0, NBD_CMD_WRITE, 9n, 0n, big));
  assert.equal(p.next(), undefined);
  // Payload trickles in; the parser never holds more than what arrived.
  const piece = Buffer.alloc(1024 * 1024);
  let sent = 0;
  while (sent + piece.length <= big) {
    p.push(piece);
    assert.equal(p.next(), undefined);
    assert.equal(p.buffered, 0, 'dropped bytes are not kept');
    sent += piece.length;
  }
  p.push(Buffer.concat([Buffer.alloc(big - sent), compact(0, NBD_CMD_FLUSH, 10n, 0n, 0)]));
  const [w, f] = drain(p) as [NbdRequest, NbdRequest];
  assert.equal(w.cookie, 9n);
  assert.equal(w.payload, undefined);
  assert.equal(w.discarded, big);
  assert.equal(w.length, big);
  assert.equal(f.type, NBD_CMD_FLUSH);
  assert.equal(f.cookie, 10n);
});

test('payloads above the discard cap are fatal as soon as the header is read', () => {
  const p = new NbdRequestParser({ extended: false });
  p.push(compact(0, NBD_CMD_WRITE, 1n, 0n, DISCARD_CAP + 1));
  assert.throws(() => p.next(), NbdProtocolError);
  const e = new NbdRequestParser({ extended: true });
  e.push(extended(NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_WRITE, 1n, 0n, 1n << 63n));
  assert.throws(() => e.next(), /exceeds/);
  // At the cap exactly it is still consumed.
  const ok = new NbdRequestParser({ extended: false });
  ok.push(compact(0, NBD_CMD_WRITE, 1n, 0n, DISCARD_CAP));
  assert.equal(ok.next(), undefined);
});

test('a wrong magic is a protocol error, including the other header style, and the parser stays failed', () => {
  const bad = compact(0, NBD_CMD_READ, 1n, 0n, 512);
  bad.writeUInt32BE(0x12560953, 0); // the historic request magic
  const p = new NbdRequestParser({ extended: false });
  p.push(bad);
  assert.throws(() => p.next(), /bad request magic 0x12560953/);
  p.push(compact(0, NBD_CMD_READ, 2n, 0n, 512));
  assert.throws(() => p.next(), NbdProtocolError);

  const e = new NbdRequestParser({ extended: true });
  e.push(Buffer.concat([compact(0, NBD_CMD_READ, 1n, 0n, 512), Buffer.alloc(4)]));
  assert.throws(() => e.next(), /compact request after extended headers/);

  const c = new NbdRequestParser({ extended: false });
  c.push(extended(0, NBD_CMD_READ, 1n, 0n, 512n));
  assert.throws(() => c.next(), /extended request without extended headers/);
});

test('a magic split across chunks is only judged once complete', () => {
  const p = new NbdRequestParser({ extended: false });
  const req = compact(0, NBD_CMD_READ, 1n, 0n, 512);
  p.push(req.subarray(0, 3));
  assert.equal(p.next(), undefined);
  assert.equal(p.idle, false);
  p.push(req.subarray(3));
  assert.equal(p.next()?.cookie, 1n);
  assert.equal(p.idle, true);
});

test('clear() drops a half-read request', () => {
  const p = new NbdRequestParser({ extended: false });
  p.push(compact(0, NBD_CMD_WRITE, 1n, 0n, 512, Buffer.alloc(100)));
  assert.equal(p.next(), undefined);
  p.clear();
  assert.equal(p.idle, true);
  p.push(compact(0, NBD_CMD_READ, 2n, 0n, 512));
  assert.equal(p.next()?.cookie, 2n);
});

test('direct reads: a WRITE payload is received into its own buffer, the rest is copied', () => {
  const allocated: Buffer[] = [];
  const p = new NbdRequestParser({
    extended: false,
    allocate: (n) => {
      const b = Buffer.alloc(n);
      allocated.push(b);
      return b;
    },
  });
  const data = Buffer.from(Array.from({ length: 10000 }, (_, i) => (i * 7) & 0xff));
  assert.equal(p.directTarget(), undefined, 'no payload being gathered');
  // A header with the payload's first 1000 bytes, as one scratch read might bring it.
  const scratch = Buffer.alloc(4096);
  const head = compact(0, NBD_CMD_WRITE, 9n, 512n, data.length, data.subarray(0, 1000));
  head.copy(scratch);
  p.push(scratch.subarray(0, head.length));
  assert.equal(p.next(), undefined, 'payload incomplete');
  p.ownQueued();
  const target = p.directTarget();
  assert.ok(target, 'mid-payload with nothing queued: a direct target');
  assert.equal(target.length, data.length - 1000);
  assert.equal(target.buffer, allocated[0]!.buffer, 'the target is the payload buffer itself');
  scratch.fill(0xee); // the reader reuses its scratch buffer: nothing may still point into it
  data.copy(target, 0, 1000, 6000);
  p.filledDirect(5000);
  assert.equal(p.next(), undefined);
  const rest = p.directTarget()!;
  assert.equal(rest.length, 4000);
  data.copy(rest, 0, 6000);
  p.filledDirect(4000);
  assert.equal(p.directTarget(), undefined, 'payload complete: back to headers');
  const req = p.next()!;
  assert.equal(req.cookie, 9n);
  assert.ok(req.payload!.equals(data), 'payload intact');
  assert.equal(req.payload, allocated[0]);
  assert.throws(() => p.filledDirect(1), RangeError, 'no target any more');
});

test('direct reads: bytes queued behind a payload keep it on the copying path; ownQueued keeps them', () => {
  const p = new NbdRequestParser({ extended: false });
  const payload = Buffer.alloc(100, 3);
  const scratch = Buffer.concat([compact(0, NBD_CMD_WRITE, 1n, 0n, 100, payload.subarray(0, 40))]);
  p.push(scratch);
  assert.equal(p.directTarget(), undefined, 'header not parsed yet: nothing to target');
  assert.equal(p.next(), undefined);
  assert.equal(p.directTarget()?.length, 60);
  // The rest of the payload and a second request arrive through the copying path.
  const second = Buffer.concat([payload.subarray(40), compact(0, NBD_CMD_FLUSH, 2n, 0n, 0)]);
  const reused = Buffer.from(second);
  p.push(reused);
  assert.equal(p.directTarget(), undefined, 'bytes queued: the payload is completed from the queue');
  assert.equal(p.next()?.cookie, 1n);
  p.ownQueued();
  reused.fill(0);
  const flush = p.next()!;
  assert.equal(flush.type, NBD_CMD_FLUSH, 'the queued header survived the reuse of the pushed buffer');
  assert.equal(flush.cookie, 2n);
});
