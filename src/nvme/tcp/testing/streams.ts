// Test aids for the NVMe/TCP parser: sample PDU streams built with the builders, paired with
// the PDUs the parser must return, and a driver that feeds a parser in given chunks and
// applies the IC settings after the IC PDU the way a real queue does.

import {
  buildC2HData,
  buildCapsuleCmd,
  buildCapsuleResp,
  buildH2CData,
  buildICReq,
  buildICResp,
  buildR2T,
  buildTermReq,
  type TxOptions,
} from '../builder.js';
import { PduParser } from '../parser.js';
import { PduFlags, PduType, type PduDirection, type TcpPdu } from '../pdu.js';

export interface Sample {
  bytes: Buffer;
  expect: TcpPdu;
}

/** Settings a connection uses after the IC exchange (the same on both sides of the wire). */
export interface Link {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The receiver's PDA. */
  pda: number;
}

/** A deterministic byte pattern, so expected data is easy to rebuild. */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

function digestFlags(link: Link, hasData: boolean): number {
  return (link.headerDigest ? PduFlags.HDGSTF : 0) | (link.dataDigest && hasData ? PduFlags.DDGSTF : 0);
}

function dgstOf(link: Link): number {
  return (link.headerDigest ? 1 : 0) | (link.dataDigest ? 2 : 0);
}

/** Everything a host sends: ICReq, capsules with and without data, H2CData, a TermReq at the end. */
export function hostSamples(link: Link): Sample[] {
  const tx: TxOptions = link;
  const out: Sample[] = [];
  const icreq = { pfv: 0, hpda: 0, dgst: dgstOf(link), maxr2t: 3 };
  out.push({ bytes: Buffer.concat(buildICReq(icreq)), expect: { type: PduType.ICReq, flags: 0, ...icreq } });
  const sqe1 = pattern(64, 1);
  out.push({
    bytes: Buffer.concat(buildCapsuleCmd(tx, sqe1)),
    expect: {
      type: PduType.CapsuleCmd,
      flags: digestFlags(link, false),
      sqe: sqe1,
      data: undefined,
      dataDigestError: false,
    },
  });
  const sqe2 = pattern(64, 2);
  const icd = pattern(300, 3);
  out.push({
    bytes: Buffer.concat(buildCapsuleCmd(tx, sqe2, [icd.subarray(0, 100), icd.subarray(100)])),
    expect: {
      type: PduType.CapsuleCmd,
      flags: digestFlags(link, true),
      sqe: sqe2,
      data: icd,
      dataDigestError: false,
    },
  });
  for (const [last, datao, len] of [
    [false, 0, 33],
    [true, 33, 5],
  ] as const) {
    const data = pattern(len, datao);
    out.push({
      bytes: Buffer.concat(buildH2CData(tx, { cccid: 0x0102, ttag: 0x0304, datao, last }, data)),
      expect: {
        type: PduType.H2CData,
        flags: digestFlags(link, true) | (last ? PduFlags.DATA_LAST : 0),
        cccid: 0x0102,
        ttag: 0x0304,
        datao,
        datal: len,
        last,
        data,
        dataDigestError: false,
      },
    });
  }
  const err = pattern(24, 9);
  out.push({
    bytes: Buffer.concat(buildTermReq(PduType.H2CTermReq, { fes: 2, fei: 0, data: err })),
    expect: { type: PduType.H2CTermReq, flags: 0, fes: 2, fei: 0, data: err },
  });
  return out;
}

/** Everything a controller sends: ICResp, responses, C2HData (with SUCCESS), R2T, a TermReq. */
export function controllerSamples(link: Link): Sample[] {
  const tx: TxOptions = link;
  const out: Sample[] = [];
  const icresp = { pfv: 0, cpda: 0, dgst: dgstOf(link), maxh2cdata: 0x20000 };
  out.push({
    bytes: Buffer.concat(buildICResp(icresp)),
    expect: { type: PduType.ICResp, flags: 0, ...icresp },
  });
  const cqe = pattern(16, 4);
  out.push({
    bytes: Buffer.concat(buildCapsuleResp(tx, cqe)),
    expect: { type: PduType.CapsuleResp, flags: digestFlags(link, false), cqe },
  });
  for (const [last, success, datao, len] of [
    [false, false, 0, 17],
    [true, true, 17, 260],
  ] as const) {
    const data = pattern(len, 5 + datao);
    out.push({
      bytes: Buffer.concat(buildC2HData(tx, { cccid: 0xbeef, datao, last, success }, data)),
      expect: {
        type: PduType.C2HData,
        flags:
          digestFlags(link, true) | (last ? PduFlags.DATA_LAST : 0) | (success ? PduFlags.DATA_SUCCESS : 0),
        cccid: 0xbeef,
        datao,
        datal: len,
        last,
        success,
        data,
        dataDigestError: false,
      },
    });
  }
  const r2t = { cccid: 7, ttag: 8, r2to: 4096, r2tl: 1 << 20 };
  out.push({
    bytes: Buffer.concat(buildR2T(tx, r2t)),
    expect: { type: PduType.R2T, flags: digestFlags(link, false), ...r2t },
  });
  out.push({
    bytes: Buffer.concat(buildTermReq(PduType.C2HTermReq, { fes: 1, fei: 3 })),
    expect: { type: PduType.C2HTermReq, flags: 0, fes: 1, fei: 3, data: Buffer.alloc(0) },
  });
  return out;
}

export function samples(direction: PduDirection, link: Link): Sample[] {
  return direction === 'h2c' ? hostSamples(link) : controllerSamples(link);
}

/** A parser for `direction`, not yet initialized, with limits the samples fit. */
export function newParser(direction: PduDirection): PduParser {
  return new PduParser({ direction, maxInCapsuleData: 8192, maxH2CData: 8192, maxC2HData: 8192 });
}

/**
 * Pushes `chunks` one by one and pulls PDUs after each; after an IC PDU it configures the
 * link settings, as a queue does after the IC exchange. Errors propagate.
 */
export function feed(parser: PduParser, chunks: Iterable<Buffer>, link: Link, out: TcpPdu[] = []): TcpPdu[] {
  for (const chunk of chunks) {
    parser.push(chunk);
    for (const pdu of parser) {
      out.push(pdu);
      if (pdu.type === PduType.ICReq || pdu.type === PduType.ICResp) {
        parser.configure({ headerDigest: link.headerDigest, dataDigest: link.dataDigest, pda: link.pda });
      }
    }
  }
  return out;
}

/** The stream cut at the given offsets. */
export function cut(stream: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.filter((p) => p > 0 && p < stream.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, stream.length]) {
    out.push(stream.subarray(prev, p));
    prev = p;
  }
  return out;
}

/** Every link setting worth covering: digests off/on and three alignments. */
export const LINKS: Link[] = [false, true].flatMap((headerDigest) =>
  [false, true].flatMap((dataDigest) => [0, 3, 31].map((pda) => ({ headerDigest, dataDigest, pda }))),
);
