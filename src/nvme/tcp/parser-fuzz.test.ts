// Property tests (fast-check): whatever bytes arrive, in whatever pieces, the parser returns
// PDUs, waits, or throws a TcpFatalError; it never throws anything else and never loops.
// Random valid conversations round-trip exactly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  buildC2HData,
  buildCapsuleCmd,
  buildCapsuleResp,
  buildH2CData,
  buildICReq,
  buildICResp,
  buildR2T,
  type TxOptions,
} from './builder.js';
import { TcpFatalError } from './errors.js';
import { PduParser } from './parser.js';
import { PduFlags, PduType, type PduDirection, type TcpPdu } from './pdu.js';
import { cut, feed, samples, type Link } from './testing/streams.js';

const RUNS = Number(process.env.TSBLK_PROPERTY_RUNS ?? 300);

const linkArb: fc.Arbitrary<Link> = fc.record({
  headerDigest: fc.boolean(),
  dataDigest: fc.boolean(),
  pda: fc.oneof(fc.constantFrom(0, 1, 3, 31), fc.integer({ min: 0, max: 31 })),
});

/**
 * Feeds `chunks` and pulls until the parser waits or fails. Returns what came out; fails the
 * test on any exception that is not a TcpFatalError, or when next() does not make progress.
 */
function drive(
  parser: PduParser,
  chunks: Buffer[],
  link: Link | undefined,
): { pdus: TcpPdu[]; error?: TcpFatalError } {
  const pdus: TcpPdu[] = [];
  let pushed = 0;
  try {
    for (const chunk of chunks) {
      parser.push(chunk);
      pushed += chunk.length;
      // Every PDU consumes at least its 8-byte common header, so this bounds the loop.
      for (let guard = 0; ; guard++) {
        assert.ok(guard <= pushed / 8 + 1, 'next() keeps returning PDUs without consuming bytes');
        const pdu = parser.next();
        if (pdu === undefined) break;
        pdus.push(pdu);
        if (link && (pdu.type === PduType.ICReq || pdu.type === PduType.ICResp)) parser.configure(link);
      }
    }
  } catch (err) {
    if (!TcpFatalError.is(err)) throw err;
    assert.equal(parser.error, err);
    return { pdus, error: err };
  }
  assert.ok(pdus.length * 8 <= pushed);
  return { pdus };
}

/** Something shaped like a PDU: a plausible common header more often than not, then any bytes. */
const pduish = fc
  .record({
    type: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 9), fc.integer({ min: 0, max: 255 })),
    flags: fc.oneof(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 255 })),
    hlen: fc.oneof(fc.constantFrom(24, 72, 128), fc.integer({ min: 0, max: 255 })),
    pdo: fc.oneof(fc.constantFrom(0, 24, 28, 72, 76, 128), fc.integer({ min: 0, max: 255 })),
    plen: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 0xffffffff })),
    body: fc.uint8Array({ maxLength: 400 }),
  })
  .map(({ type, flags, hlen, pdo, plen, body }) => {
    const b = Buffer.alloc(8 + body.length);
    b.set([type, flags, hlen, pdo]);
    b.writeUInt32LE(plen, 4);
    b.set(body, 8);
    return b;
  });

const cutsArb = fc.array(fc.nat(), { maxLength: 10 });

describe('fuzz: arbitrary input', () => {
  it('random bytes and PDU-shaped garbage: only TcpFatalError, never a hang', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<PduDirection>('h2c', 'c2h'),
        fc.boolean(),
        linkArb,
        fc.integer({ min: 0, max: 4096 }),
        fc.oneof(
          fc.uint8Array({ maxLength: 1024 }).map((a) => Buffer.from(a)),
          fc.array(pduish, { minLength: 1, maxLength: 6 }).map((l) => Buffer.concat(l)),
        ),
        cutsArb,
        (direction, established, link, limit, stream, cuts) => {
          const parser = new PduParser({
            direction,
            established,
            ...link,
            maxInCapsuleData: limit,
            maxH2CData: limit,
            maxC2HData: limit,
          });
          const points = cuts.map((c) => (stream.length ? c % stream.length : 0));
          const { error } = drive(parser, cut(stream, points), undefined);
          if (error) {
            assert.ok(error.fes >= 1 && error.fes <= 6);
            assert.ok(error.header.length >= 8 && error.header.length <= 128);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('valid conversations with a few bytes changed: only TcpFatalError, or the same PDUs when nothing changed', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<PduDirection>('h2c', 'c2h'),
        linkArb,
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 4 }),
        cutsArb,
        (direction, link, edits, cuts) => {
          const list = samples(direction, link);
          const original = Buffer.concat(list.map((s) => s.bytes));
          const stream = Buffer.from(original);
          for (const e of edits) stream[e.at % stream.length] = e.value;
          const parser = new PduParser({
            direction,
            maxInCapsuleData: 8192,
            maxH2CData: 8192,
            maxC2HData: 8192,
          });
          const { pdus, error } = drive(
            parser,
            cut(
              stream,
              cuts.map((c) => c % stream.length),
            ),
            link,
          );
          if (stream.equals(original)) {
            assert.equal(error, undefined);
            assert.deepEqual(
              pdus,
              list.map((s) => s.expect),
            );
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// ---- random valid conversations ----

type Spec = { bytes: (tx: TxOptions) => Buffer[]; expect: (link: Link) => TcpPdu };

const dataArb = (min: number) => fc.uint8Array({ minLength: min, maxLength: 600 }).map((a) => Buffer.from(a));
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

function digestFlags(link: Link, hasData: boolean): number {
  return (link.headerDigest ? PduFlags.HDGSTF : 0) | (link.dataDigest && hasData ? PduFlags.DDGSTF : 0);
}

const hostSpec: fc.Arbitrary<Spec> = fc.oneof(
  fc
    .record({ sqe: fc.uint8Array({ minLength: 64, maxLength: 64 }), data: dataArb(0) })
    .map(({ sqe, data }): Spec => ({
      bytes: (tx) => buildCapsuleCmd(tx, sqe, data),
      expect: (link) => ({
        type: PduType.CapsuleCmd,
        flags: digestFlags(link, data.length > 0),
        sqe: Buffer.from(sqe),
        data: data.length ? data : undefined,
        dataDigestError: false,
      }),
    })),
  fc.record({ cccid: u16, ttag: u16, datao: u32, last: fc.boolean(), data: dataArb(1) }).map((f): Spec => ({
    bytes: (tx) => buildH2CData(tx, f, f.data),
    expect: (link) => ({
      type: PduType.H2CData,
      flags: digestFlags(link, true) | (f.last ? PduFlags.DATA_LAST : 0),
      cccid: f.cccid,
      ttag: f.ttag,
      datao: f.datao,
      datal: f.data.length,
      last: f.last,
      data: f.data,
      dataDigestError: false,
    }),
  })),
);

const controllerSpec: fc.Arbitrary<Spec> = fc.oneof(
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((cqe): Spec => ({
    bytes: (tx) => buildCapsuleResp(tx, cqe),
    expect: (link) => ({ type: PduType.CapsuleResp, flags: digestFlags(link, false), cqe: Buffer.from(cqe) }),
  })),
  fc
    .record({ cccid: u16, datao: u32, last: fc.boolean(), success: fc.boolean(), data: dataArb(1) })
    .map((f): Spec => {
      const success = f.last && f.success;
      return {
        bytes: (tx) => buildC2HData(tx, { ...f, success }, f.data),
        expect: (link) => ({
          type: PduType.C2HData,
          flags:
            digestFlags(link, true) |
            (f.last ? PduFlags.DATA_LAST : 0) |
            (success ? PduFlags.DATA_SUCCESS : 0),
          cccid: f.cccid,
          datao: f.datao,
          datal: f.data.length,
          last: f.last,
          success,
          data: f.data,
          dataDigestError: false,
        }),
      };
    }),
  fc
    .record({ cccid: u16, ttag: u16, r2to: u32, r2tl: fc.integer({ min: 1, max: 0xffffffff }) })
    .map((f): Spec => ({
      bytes: (tx) => buildR2T(tx, f),
      expect: (link) => ({ type: PduType.R2T, flags: digestFlags(link, false), ...f }),
    })),
);

describe('fuzz: random valid conversations', () => {
  for (const direction of ['h2c', 'c2h'] as const) {
    it(`${direction}: whatever the fields, data sizes, digests, alignment and chunking, the parser returns what was built`, () => {
      fc.assert(
        fc.property(
          linkArb,
          fc.array(direction === 'h2c' ? hostSpec : controllerSpec, { minLength: 1, maxLength: 8 }),
          cutsArb,
          (link, specs, cuts) => {
            const dgst = (link.headerDigest ? 1 : 0) | (link.dataDigest ? 2 : 0);
            const ic =
              direction === 'h2c'
                ? {
                    bytes: buildICReq({ dgst, hpda: 0 }),
                    expect: { type: PduType.ICReq, flags: 0, pfv: 0, hpda: 0, dgst, maxr2t: 0 },
                  }
                : {
                    bytes: buildICResp({ dgst, cpda: 0, maxh2cdata: 4096 }),
                    expect: { type: PduType.ICResp, flags: 0, pfv: 0, cpda: 0, dgst, maxh2cdata: 4096 },
                  };
            const stream = Buffer.concat([...ic.bytes, ...specs.flatMap((s) => s.bytes(link))]);
            const parser = new PduParser({
              direction,
              maxInCapsuleData: 600,
              maxH2CData: 600,
              maxC2HData: 600,
            });
            const got = feed(
              parser,
              cut(
                stream,
                cuts.map((c) => c % stream.length),
              ),
              link,
            );
            assert.deepEqual(got, [ic.expect, ...specs.map((s) => s.expect(link))]);
            assert.equal(parser.bufferedBytes, 0);
            assert.equal(parser.inProgress, false);
          },
        ),
        { numRuns: RUNS },
      );
    });
  }
});
