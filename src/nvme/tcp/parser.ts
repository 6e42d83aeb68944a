// Streaming NVMe/TCP PDU parser: an explicit state machine over a byte queue (byte-queue.ts),
// the shape of undici's WebSocket ByteParser. Chunks of any size go in with push(); next()
// returns the next complete PDU, or undefined when more bytes are needed, or throws a
// TcpFatalError.
//
// What a user must know:
// - One parser per connection and direction: 'h2c' in the controller (it reads what the host
//   sends), 'c2h' in the host.
// - The caller pulls one PDU at a time, because the IC exchange changes how later PDUs are
//   framed: after handling the ICReq/ICResp, call configure({ headerDigest, dataDigest, pda, ... }) before the next next().
//   The same goes for limits that change at run time (in-capsule size after Connect). A change
//   applies from the next PDU header on. `for (const pdu of parser)` pulls lazily, so
//   configuring inside the loop body works.
// - Nothing in a header is trusted. Every field is checked in wire order, the lowest offending
//   field first, before any length is used (FreeBSD sys/dev/nvmf/nvmf_tcp.h
//   nvmf_tcp_validate_pdu_header is the model; SPDK lib/nvmf/tcp.c nvmf_tcp_pdu_ch_handle and
//   Linux drivers/nvme/target/tcp.c nvmet_tcp_try_recv_pdu check the same things less
//   completely). Data beyond the configured per-PDU limit is refused before it is buffered.
// - A TcpFatalError stops the parser for good (every later next() throws it again and push()
//   drops its input). It carries the FES, the FEI and the offending header bytes; send
//   buildTermReqFor(err) when err.sendTermReq, then close the connection. Only a malformed
//   TermReq from the peer is closed without an answer (NVMe-oF 1.1 section 7.4.7, as FreeBSD
//   cites it).
// - A data digest mismatch is *not* fatal: the PDU is delivered with dataDigestError = true.
//   The transport has no FES for it; the command fails with Transient Transport Error (SPDK's
//   target) or a data transfer error (Linux's host) and the connection lives on. A caller that
//   prefers Linux nvmet's behaviour (drop the connection) closes on the flag.
// - Data is a view into the pushed chunk when it sits in one chunk, else copied once into a
//   new buffer; so never reuse a buffer after pushing it. SQEs, CQEs and TermReq error data are
//   small copies that do not keep socket chunks alive.

import { ByteQueue } from '../../util/byte-queue.js';
import { crc32c } from './digest.js';
import { TcpFatalError } from './errors.js';
import {
  C2HDataHeader,
  CapsuleCmdHeader,
  CapsuleRespHeader,
  CommonHeader,
  DigestOption,
  H2CDataHeader,
  ICReqHeader,
  ICRespHeader,
  isPduType,
  NVME_TCP_ADMIN_CCSZ,
  NVME_TCP_DIGEST_LENGTH,
  NVME_TCP_MAX_TERM_PLEN,
  NVME_TCP_MIN_MAXH2CDATA,
  NVME_TCP_MIN_TERM_PLEN,
  NVME_TCP_PDA_MAX,
  NVME_TCP_PFV_1_0,
  NVMET_TCP_MAXH2CDATA,
  PDU_HEADER_LENGTH,
  PDU_VALID_FLAGS,
  pduCarriesData,
  pduDirection,
  PduFlags,
  PduType,
  pduTypeName,
  pdaBytes,
  R2THeader,
  TcpFes,
  TermReqHeader,
  type PduDirection,
  type TcpPdu,
} from './pdu.js';

export interface PduParserOptions {
  /** 'h2c': this parser runs in the controller and reads host→controller PDUs; 'c2h': in the host. */
  direction: PduDirection;
  /** True once ICReq/ICResp are done; default false, so the first PDU must be the IC PDU. */
  established?: boolean;
  /** Header digests on (after the IC exchange); default false. */
  headerDigest?: boolean;
  /** Data digests on (after the IC exchange); default false. */
  dataDigest?: boolean;
  /** This side's own PDU data alignment, 0's based dwords (CPDA in a controller, HPDA in a host); default 0. */
  pda?: number;
  /** 'h2c': most in-capsule data one CapsuleCmd may carry; default NVME_TCP_ADMIN_CCSZ (8 KiB). */
  maxInCapsuleData?: number;
  /** 'h2c': most data one H2CData PDU may carry, the MAXH2CDATA announced; default 4 MiB. */
  maxH2CData?: number;
  /** 'c2h': most data one C2HData PDU may carry; default 4 MiB. */
  maxC2HData?: number;
}

export type PduParserConfig = Omit<PduParserOptions, 'direction'>;

/** The settings in force; see PduParserOptions. */
export interface PduParserSettings {
  headerDigest: boolean;
  dataDigest: boolean;
  pda: number;
  maxInCapsuleData: number;
  maxH2CData: number;
  maxC2HData: number;
}

const State = {
  /** Waiting for the 8-byte common header. */
  COMMON_HEADER: 0,
  /** Waiting for the whole header (common header included) and its digest. */
  HEADER: 1,
  /** Skipping the padding between the header digest and PDO. */
  PAD: 2,
  /** Waiting for the data. */
  DATA: 3,
  /** Waiting for the 4-byte data digest. */
  DATA_DIGEST: 4,
  FAILED: 5,
} as const;
type State = (typeof State)[keyof typeof State];

/** The PDU being parsed, as the common header described it. */
interface Current {
  type: PduType;
  flags: number;
  hlen: number;
  /** Header bytes to read: hlen plus the header digest. */
  headerLen: number;
  padLen: number;
  dataLen: number;
  dataDigest: boolean;
  pdu: TcpPdu | undefined;
  data: Buffer | undefined;
}

const FEI = {
  type: CommonHeader.offsetOf('type'),
  flags: CommonHeader.offsetOf('flags'),
  hlen: CommonHeader.offsetOf('hlen'),
  pdo: CommonHeader.offsetOf('pdo'),
  plen: CommonHeader.offsetOf('plen'),
} as const;

const DIGEST_FLAGS = PduFlags.HDGSTF | PduFlags.DDGSTF;
const DIGEST_OPTIONS = DigestOption.HDR_DIGEST_ENABLE | DigestOption.DATA_DIGEST_ENABLE;
const MAX_U32 = 0xffffffff;
const COMMON_SIZE = CommonHeader.SIZE;

function checkLimit(what: string, v: number | undefined, max: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what}: ${v} is outside 0..${max}`);
}

export class PduParser implements Iterable<TcpPdu> {
  readonly direction: PduDirection;
  #settings: PduParserSettings;
  #established: boolean;
  #state: State = State.COMMON_HEADER;
  #cur: Current | undefined;
  #error: TcpFatalError | undefined;

  #queue = new ByteQueue();

  constructor(options: PduParserOptions) {
    if (options.direction !== 'h2c' && options.direction !== 'c2h') {
      throw new RangeError(`PduParser direction must be 'h2c' or 'c2h', got ${String(options.direction)}`);
    }
    this.direction = options.direction;
    this.#established = options.established ?? false;
    this.#settings = {
      headerDigest: false,
      dataDigest: false,
      pda: 0,
      maxInCapsuleData: NVME_TCP_ADMIN_CCSZ,
      maxH2CData: NVMET_TCP_MAXH2CDATA,
      maxC2HData: NVMET_TCP_MAXH2CDATA,
    };
    this.configure(options);
  }

  /** Changes digests, alignment or limits; applies from the next PDU header on. */
  configure(update: PduParserConfig): void {
    checkLimit('pda', update.pda, NVME_TCP_PDA_MAX);
    checkLimit('maxInCapsuleData', update.maxInCapsuleData, MAX_U32);
    checkLimit('maxH2CData', update.maxH2CData, MAX_U32);
    checkLimit('maxC2HData', update.maxC2HData, MAX_U32);
    const s = this.#settings;
    if (update.headerDigest !== undefined) s.headerDigest = update.headerDigest;
    if (update.dataDigest !== undefined) s.dataDigest = update.dataDigest;
    if (update.pda !== undefined) s.pda = update.pda;
    if (update.maxInCapsuleData !== undefined) s.maxInCapsuleData = update.maxInCapsuleData;
    if (update.maxH2CData !== undefined) s.maxH2CData = update.maxH2CData;
    if (update.maxC2HData !== undefined) s.maxC2HData = update.maxC2HData;
    if (update.established !== undefined) this.#established = update.established;
  }

  /** The settings in force (a copy). */
  get settings(): Readonly<PduParserSettings> {
    return { ...this.#settings };
  }

  /** True once the IC PDU has been parsed (or `established` was configured). */
  get established(): boolean {
    return this.#established;
  }

  /** Bytes pushed but not yet consumed. */
  get bufferedBytes(): number {
    return this.#queue.length;
  }

  /** True while a PDU has been started (its common header read) but not finished. */
  get inProgress(): boolean {
    return this.#state !== State.COMMON_HEADER && this.#state !== State.FAILED;
  }

  /** The error that stopped the parser, if one did. */
  get error(): TcpFatalError | undefined {
    return this.#error;
  }

  /** Appends bytes. Ignored once the parser has failed. */
  push(chunk: Uint8Array): void {
    if (this.#error === undefined) this.#queue.push(chunk);
  }

  /** The next complete PDU, undefined if more bytes are needed; throws TcpFatalError. */
  next(): TcpPdu | undefined {
    if (this.#error !== undefined) throw this.#error;
    for (;;) {
      switch (this.#state) {
        case State.COMMON_HEADER: {
          if (this.#queue.length < COMMON_SIZE) return undefined;
          this.#cur = this.#checkCommonHeader(this.#queue.peek(COMMON_SIZE));
          this.#state = State.HEADER;
          break;
        }
        case State.HEADER: {
          const cur = this.#cur!;
          if (this.#queue.length < cur.headerLen) return undefined;
          cur.pdu = this.#checkHeader(cur, this.#queue.consume(cur.headerLen));
          if (cur.dataLen === 0) return this.#finish(cur);
          this.#state = cur.padLen > 0 ? State.PAD : State.DATA;
          break;
        }
        case State.PAD: {
          const cur = this.#cur!;
          const n = Math.min(cur.padLen, this.#queue.length);
          this.#queue.skip(n);
          cur.padLen -= n;
          if (cur.padLen > 0) return undefined;
          this.#state = State.DATA;
          break;
        }
        case State.DATA: {
          const cur = this.#cur!;
          if (this.#queue.length < cur.dataLen) return undefined;
          cur.data = this.#queue.consume(cur.dataLen);
          if (!cur.dataDigest) return this.#finish(cur);
          this.#state = State.DATA_DIGEST;
          break;
        }
        case State.DATA_DIGEST: {
          const cur = this.#cur!;
          if (this.#queue.length < NVME_TCP_DIGEST_LENGTH) return undefined;
          const got = this.#queue.consume(NVME_TCP_DIGEST_LENGTH).readUInt32LE(0);
          if (got !== crc32c(cur.data!)) (cur.pdu as { dataDigestError: boolean }).dataDigestError = true;
          return this.#finish(cur);
        }
        case State.FAILED:
          throw this.#error!;
      }
    }
  }

  *[Symbol.iterator](): Iterator<TcpPdu> {
    for (let pdu = this.next(); pdu !== undefined; pdu = this.next()) yield pdu;
  }

  #finish(cur: Current): TcpPdu {
    const pdu = cur.pdu!;
    if ('data' in pdu && cur.data !== undefined) pdu.data = cur.data;
    if (pdu.type === PduType.ICReq || pdu.type === PduType.ICResp) this.#established = true;
    this.#cur = undefined;
    this.#state = State.COMMON_HEADER;
    return pdu;
  }

  #fail(fes: TcpFes, fei: number, header: Buffer, detail: string, sendTermReq = true): never {
    this.#error = new TcpFatalError(
      {
        fes,
        fei,
        header: Buffer.from(header.subarray(0, 128)),
        termReqType: this.direction === 'h2c' ? PduType.C2HTermReq : PduType.H2CTermReq,
        sendTermReq,
      },
      detail,
    );
    this.#state = State.FAILED;
    this.#queue.clear();
    throw this.#error;
  }

  /** Validates the common header, lowest field first; returns how the rest of the PDU is framed. */
  #checkCommonHeader(ch: Buffer): Current {
    const rawType = ch[FEI.type]!;
    const flags = ch[FEI.flags]!;
    const hlen = ch[FEI.hlen]!;
    const pdo = ch[FEI.pdo]!;
    const plen = ch.readUInt32LE(FEI.plen);
    const s = this.#settings;
    const fail = (fes: TcpFes, fei: number, detail: string, sendTermReq = true): never =>
      this.#fail(fes, fei, ch, detail, sendTermReq);

    // type (byte 0)
    if (!isPduType(rawType))
      fail(TcpFes.INVALID_PDU_HDR, FEI.type, `unknown PDU type 0x${rawType.toString(16)}`);
    const type = rawType as PduType;
    const name = pduTypeName(type);
    if (pduDirection(type) !== this.direction) {
      const peer = this.direction === 'h2c' ? 'a host' : 'a controller';
      fail(TcpFes.INVALID_PDU_HDR, FEI.type, `${name} is not a PDU ${peer} sends`);
    }
    const isIc = type === PduType.ICReq || type === PduType.ICResp;
    const isTerm = type === PduType.H2CTermReq || type === PduType.C2HTermReq;
    if (isIc && this.#established) {
      fail(TcpFes.PDU_SEQ_ERR, 0, `${name} on a connection that is already initialized`);
    }
    if (!isIc && !isTerm && !this.#established) {
      const ic = this.direction === 'h2c' ? 'ICReq' : 'ICResp';
      fail(TcpFes.PDU_SEQ_ERR, 0, `${name} before the ${ic} that must open the connection`);
    }
    // NVMe-oF 1.1 7.4.7: a TermReq with an impossible length ends the connection without a
    // reply; so does any other error in a TermReq, as the peer is already closing.
    const reply = !isTerm;
    if (isTerm && (plen < NVME_TCP_MIN_TERM_PLEN || plen > NVME_TCP_MAX_TERM_PLEN)) {
      fail(
        TcpFes.INVALID_PDU_HDR,
        FEI.plen,
        `${name} plen ${plen} is outside ${NVME_TCP_MIN_TERM_PLEN}..${NVME_TCP_MAX_TERM_PLEN}`,
        false,
      );
    }

    // flags (byte 1)
    const valid = PDU_VALID_FLAGS[type];
    if ((flags & ~valid) !== 0) {
      fail(
        TcpFes.INVALID_PDU_HDR,
        FEI.flags,
        `${name} flags 0x${flags.toString(16)} set bits it never carries`,
        reply,
      );
    }
    const headerDigestLen = flags & PduFlags.HDGSTF ? NVME_TCP_DIGEST_LENGTH : 0;
    const fullHlen = hlen + headerDigestLen;
    const carriesData = pduCarriesData(type);
    // Data follows when plen goes past the header; a plen short of it is reported at plen below.
    const hasData = carriesData && plen > fullHlen;
    let wanted = 0;
    if (s.headerDigest && (valid & PduFlags.HDGSTF) !== 0) wanted |= PduFlags.HDGSTF;
    if (s.dataDigest && hasData) wanted |= PduFlags.DDGSTF;
    if ((flags & DIGEST_FLAGS) !== wanted) {
      const on = (bit: number) => ((wanted & bit) !== 0 ? 'expected' : 'not expected');
      fail(
        TcpFes.INVALID_PDU_HDR,
        FEI.flags,
        `${name} flags 0x${flags.toString(16)}: header digest ${on(PduFlags.HDGSTF)}, data digest ${on(PduFlags.DDGSTF)} on this connection`,
        reply,
      );
    }
    if (type === PduType.C2HData && flags & PduFlags.DATA_SUCCESS && !(flags & PduFlags.DATA_LAST)) {
      fail(TcpFes.INVALID_PDU_HDR, FEI.flags, 'C2HData has SUCCESS without LAST_PDU');
    }

    // hlen (byte 2)
    const expectedHlen = PDU_HEADER_LENGTH[type];
    if (hlen !== expectedHlen) {
      fail(TcpFes.INVALID_PDU_HDR, FEI.hlen, `${name} hlen ${hlen}, must be ${expectedHlen}`, reply);
    }

    // pdo (byte 3)
    if (!carriesData) {
      if (pdo !== 0)
        fail(
          TcpFes.INVALID_PDU_HDR,
          FEI.pdo,
          `${name} carries no data, its pdo must be 0, got ${pdo}`,
          reply,
        );
    } else if (hasData || pdo !== 0) {
      const align = pdaBytes(s.pda);
      if (pdo < fullHlen || pdo > plen || pdo % align !== 0) {
        fail(
          TcpFes.INVALID_PDU_HDR,
          FEI.pdo,
          `${name} pdo ${pdo}: must lie between the header end (${fullHlen}) and plen (${plen}) on a ${align}-byte boundary`,
        );
      }
    }

    // plen (bytes 4..7)
    if (isIc && plen !== expectedHlen)
      fail(TcpFes.INVALID_PDU_HDR, FEI.plen, `${name} plen ${plen}, must be ${expectedHlen}`);
    if (plen < fullHlen) {
      fail(
        TcpFes.INVALID_PDU_HDR,
        FEI.plen,
        `${name} plen ${plen} is shorter than its header (${fullHlen})`,
        reply,
      );
    }
    if (!carriesData && !isTerm && plen !== fullHlen) {
      fail(
        TcpFes.INVALID_PDU_HDR,
        FEI.plen,
        `${name} carries no data, plen must be ${fullHlen}, got ${plen}`,
      );
    }
    const dataDigest = (flags & PduFlags.DDGSTF) !== 0;
    let dataLen = 0;
    let padLen = 0;
    if (isTerm) {
      dataLen = plen - hlen;
    } else if (hasData) {
      dataLen = plen - pdo - (dataDigest ? NVME_TCP_DIGEST_LENGTH : 0);
      padLen = pdo - fullHlen;
      if (dataLen <= 0) {
        fail(
          TcpFes.INVALID_PDU_HDR,
          FEI.plen,
          `${name} plen ${plen} leaves no data after pdo ${pdo} and the digests`,
        );
      }
      const [limit, what] =
        type === PduType.CapsuleCmd
          ? [s.maxInCapsuleData, 'in-capsule data is limited to']
          : type === PduType.H2CData
            ? [s.maxH2CData, 'MAXH2CDATA is']
            : [s.maxC2HData, 'C2HData PDUs are limited to'];
      if (dataLen > limit) {
        fail(TcpFes.DATA_LIMIT_EXCEEDED, 0, `${name} carries ${dataLen} data bytes; ${what} ${limit}`);
      }
    }
    return {
      type,
      flags,
      hlen,
      headerLen: fullHlen,
      padLen,
      dataLen,
      dataDigest,
      pdu: undefined,
      data: undefined,
    };
  }

  /** Checks the header digest and the type's own fields; returns the decoded PDU (data to come). */
  #checkHeader(cur: Current, hdr: Buffer): TcpPdu {
    const { type, flags, hlen } = cur;
    const name = pduTypeName(type);
    const fail = (fes: TcpFes, fei: number, detail: string): never =>
      this.#fail(fes, fei, hdr.subarray(0, hlen), detail);
    if (cur.headerLen > hlen) {
      const got = hdr.readUInt32LE(hlen);
      const want = crc32c(hdr.subarray(0, hlen));
      if (got !== want) {
        fail(
          TcpFes.HDR_DIGEST_ERR,
          0,
          `${name} header digest 0x${hex(got)}, the header's CRC32C is 0x${hex(want)}`,
        );
      }
    }
    switch (type) {
      case PduType.ICReq:
      case PduType.ICResp: {
        // Both share pfv@8, the PDA byte @10 and dgst@11 (FreeBSD nvmf_tcp_validate_ic_pdu).
        const req = type === PduType.ICReq;
        const t = req ? ICReqHeader : ICRespHeader;
        const pdaOff = req ? ICReqHeader.offsetOf('hpda') : ICRespHeader.offsetOf('cpda');
        const pfv = hdr.readUInt16LE(t.offsetOf('pfv'));
        const pda = hdr[pdaOff]!;
        const dgst = hdr[t.offsetOf('dgst')]!;
        if (pfv !== NVME_TCP_PFV_1_0) {
          fail(TcpFes.UNSUPPORTED_PARAM, t.offsetOf('pfv'), `${name} pfv ${pfv}, only 0 is defined`);
        }
        if (pda > NVME_TCP_PDA_MAX) {
          fail(
            TcpFes.INVALID_PDU_HDR,
            pdaOff,
            `${name} ${req ? 'hpda' : 'cpda'} ${pda} exceeds ${NVME_TCP_PDA_MAX}`,
          );
        }
        if ((dgst & ~DIGEST_OPTIONS) !== 0) {
          fail(
            TcpFes.INVALID_PDU_HDR,
            t.offsetOf('dgst'),
            `${name} dgst 0x${dgst.toString(16)} sets reserved bits`,
          );
        }
        if (req)
          return {
            type,
            flags,
            pfv,
            hpda: pda,
            dgst,
            maxr2t: hdr.readUInt32LE(ICReqHeader.offsetOf('maxr2t')),
          };
        const maxh2cdata = hdr.readUInt32LE(ICRespHeader.offsetOf('maxh2cdata'));
        if (maxh2cdata < NVME_TCP_MIN_MAXH2CDATA || maxh2cdata % 4 !== 0) {
          fail(
            TcpFes.INVALID_PDU_HDR,
            ICRespHeader.offsetOf('maxh2cdata'),
            `ICResp maxh2cdata ${maxh2cdata}: must be a multiple of 4 and at least ${NVME_TCP_MIN_MAXH2CDATA}`,
          );
        }
        return { type, flags, pfv, cpda: pda, dgst, maxh2cdata };
      }
      case PduType.H2CTermReq:
      case PduType.C2HTermReq:
        return {
          type,
          flags,
          fes: hdr.readUInt16LE(TermReqHeader.offsetOf('fes')),
          fei: hdr.readUInt32LE(TermReqHeader.offsetOf('fei')),
          data: Buffer.alloc(0),
        };
      case PduType.CapsuleCmd: {
        const at = CapsuleCmdHeader.offsetOf('ccsqe');
        const sqe = Buffer.from(hdr.subarray(at, at + CapsuleCmdHeader.sizeOf('ccsqe')));
        return { type, flags, sqe, data: undefined, dataDigestError: false };
      }
      case PduType.CapsuleResp: {
        const at = CapsuleRespHeader.offsetOf('rccqe');
        return { type, flags, cqe: Buffer.from(hdr.subarray(at, at + CapsuleRespHeader.sizeOf('rccqe'))) };
      }
      case PduType.H2CData:
      case PduType.C2HData: {
        const t = type === PduType.H2CData ? H2CDataHeader : C2HDataHeader;
        const datal = hdr.readUInt32LE(t.offsetOf('datal'));
        if (datal !== cur.dataLen || datal === 0) {
          fail(
            TcpFes.INVALID_PDU_HDR,
            t.offsetOf('datal'),
            `${name} datal ${datal}, but the PDU carries ${cur.dataLen} data bytes`,
          );
        }
        const common = {
          flags,
          cccid: hdr.readUInt16LE(t.offsetOf('cccid')),
          datao: hdr.readUInt32LE(t.offsetOf('datao')),
          datal,
          last: (flags & PduFlags.DATA_LAST) !== 0,
          data: Buffer.alloc(0),
          dataDigestError: false,
        };
        if (type === PduType.H2CData) {
          return { type, ...common, ttag: hdr.readUInt16LE(H2CDataHeader.offsetOf('ttag')) };
        }
        return { type, ...common, success: (flags & PduFlags.DATA_SUCCESS) !== 0 };
      }
      case PduType.R2T: {
        const r2tl = hdr.readUInt32LE(R2THeader.offsetOf('r2tl'));
        if (r2tl === 0) fail(TcpFes.INVALID_PDU_HDR, R2THeader.offsetOf('r2tl'), 'R2T asks for 0 bytes');
        return {
          type,
          flags,
          cccid: hdr.readUInt16LE(R2THeader.offsetOf('cccid')),
          ttag: hdr.readUInt16LE(R2THeader.offsetOf('ttag')),
          r2to: hdr.readUInt32LE(R2THeader.offsetOf('r2to')),
          r2tl,
        };
      }
    }
  }
}

function hex(v: number): string {
  return v.toString(16).padStart(8, '0');
}
