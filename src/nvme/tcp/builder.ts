// Builders for every NVMe/TCP PDU either side sends. Each returns the PDU as a list of Buffers
// for socket.write()/writev(): one freshly allocated buffer with the header, the header digest
// and the padding up to PDO; then the caller's data buffers as they are (never copied); then
// the 4-byte data digest. plen, hlen, pdo and the digest flags are computed here, never taken
// from the caller.
//
// Layout rules, as Linux (drivers/nvme/host/tcp.c nvme_tcp_setup_cmd_pdu,
// nvme_tcp_setup_h2c_data_pdu; drivers/nvme/target/tcp.c nvmet_setup_c2h_data_pdu) and FreeBSD
// (lib/libnvmf/nvmf_tcp.c nvmf_tcp_construct_pdu) build them:
// - HDGSTF on every PDU type that has digests once header digests are on; DDGSTF only when the
//   PDU actually carries data (a CapsuleCmd without in-capsule data has no data digest);
// - PDO = 0 without data, else hlen + header digest rounded up to the receiver's PDA
//   ((pda + 1) * 4 bytes: the controller's CPDA for what the host sends, the host's HPDA for
//   what the controller sends), the gap filled with zeros;
// - ICReq, ICResp and TermReqs never carry digests or padding.

import { crc32c, crc32cv } from './digest.js';
import type { TcpFatalError } from './errors.js';
import {
  C2HDataHeader,
  CapsuleCmdHeader,
  CapsuleRespHeader,
  CommonHeader,
  H2CDataHeader,
  ICReqHeader,
  ICRespHeader,
  NVME_TCP_DIGEST_LENGTH,
  NVME_TCP_PDA_MAX,
  NVME_TCP_PFV_1_0,
  NVME_TCP_TERM_REQ_MAX_DATA,
  PduFlags,
  PduType,
  pdaBytes,
  pduTypeName,
  R2THeader,
  TermReqHeader,
} from './pdu.js';

/** What the IC exchange settled for PDUs this side sends. */
export interface TxOptions {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The receiver's PDU data alignment, 0's based dwords (CPDA or HPDA); default 0 (4 bytes). */
  pda?: number;
}

/** PDU data: one buffer or a scatter list sent back to back (never copied). */
export type PduData = Uint8Array | readonly Uint8Array[];

const OFF = {
  type: CommonHeader.offsetOf('type'),
  flags: CommonHeader.offsetOf('flags'),
  hlen: CommonHeader.offsetOf('hlen'),
  pdo: CommonHeader.offsetOf('pdo'),
  plen: CommonHeader.offsetOf('plen'),
  ccsqe: CapsuleCmdHeader.offsetOf('ccsqe'),
  rccqe: CapsuleRespHeader.offsetOf('rccqe'),
  h2cCccid: H2CDataHeader.offsetOf('cccid'),
  h2cTtag: H2CDataHeader.offsetOf('ttag'),
  h2cDatao: H2CDataHeader.offsetOf('datao'),
  h2cDatal: H2CDataHeader.offsetOf('datal'),
  c2hCccid: C2HDataHeader.offsetOf('cccid'),
  c2hDatao: C2HDataHeader.offsetOf('datao'),
  c2hDatal: C2HDataHeader.offsetOf('datal'),
  r2tCccid: R2THeader.offsetOf('cccid'),
  r2tTtag: R2THeader.offsetOf('ttag'),
  r2tR2to: R2THeader.offsetOf('r2to'),
  r2tR2tl: R2THeader.offsetOf('r2tl'),
} as const;

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function dataList(data: PduData | undefined): Buffer[] {
  if (data === undefined) return [];
  if (data instanceof Uint8Array) return data.length ? [asBuffer(data)] : [];
  return data.filter((b) => b.length > 0).map(asBuffer);
}

function checkUint(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what}: ${v} is outside 0..${max}`);
}

function checkTx(tx: TxOptions): number {
  const pda = tx.pda ?? 0;
  checkUint('PDU data alignment (PDA)', pda, NVME_TCP_PDA_MAX);
  return pda;
}

/**
 * Lays out a PDU of `hlen` header bytes and `data`: allocates the header (+ digest + padding),
 * lets `fill` write the type-specific fields, then writes the common header and the digests.
 */
function frame(
  tx: TxOptions,
  type: PduType,
  hlen: number,
  flags: number,
  data: Buffer[],
  fill: (head: Buffer) => void,
): Buffer[] {
  const pda = checkTx(tx);
  const dataLen = data.reduce((n, b) => n + b.length, 0);
  const hdgst = tx.headerDigest ? NVME_TCP_DIGEST_LENGTH : 0;
  const ddgst = tx.dataDigest && dataLen > 0 ? NVME_TCP_DIGEST_LENGTH : 0;
  const align = pdaBytes(pda);
  const pdo = dataLen > 0 ? Math.ceil((hlen + hdgst) / align) * align : 0;
  const plen = (dataLen > 0 ? pdo + dataLen : hlen + hdgst) + ddgst;
  checkUint(`${pduTypeName(type)} plen`, plen, 0xffffffff);
  const head = Buffer.alloc(dataLen > 0 ? pdo : hlen + hdgst);
  fill(head);
  head[OFF.type] = type;
  head[OFF.flags] = flags | (hdgst ? PduFlags.HDGSTF : 0) | (ddgst ? PduFlags.DDGSTF : 0);
  head[OFF.hlen] = hlen;
  head[OFF.pdo] = pdo;
  head.writeUInt32LE(plen, OFF.plen);
  if (hdgst) head.writeUInt32LE(crc32c(head.subarray(0, hlen)), hlen);
  const out = [head, ...data];
  if (ddgst) {
    const d = Buffer.allocUnsafe(NVME_TCP_DIGEST_LENGTH);
    d.writeUInt32LE(crc32cv(data), 0);
    out.push(d);
  }
  return out;
}

/** What writePdu needs of a net.Socket (or any stream.Writable). */
export interface PduSink {
  cork(): void;
  uncork(): void;
  write(chunk: Buffer): boolean;
}

/**
 * Writes one PDU's buffers between cork() and uncork(), so Node hands them to the kernel in a
 * single writev. Returns the last write()'s result: false means wait for 'drain'.
 */
export function writePdu(sink: PduSink, list: readonly Buffer[]): boolean {
  let ok = true;
  sink.cork();
  for (const b of list) ok = sink.write(b);
  sink.uncork();
  return ok;
}

const NO_DIGESTS: TxOptions = { headerDigest: false, dataDigest: false };

export interface ICReqInput {
  /** Host PDU data alignment the host asks for, 0's based dwords; default 0. */
  hpda?: number;
  /** DigestOption bits the host asks for; default 0. */
  dgst?: number;
  /** Outstanding R2Ts per command, 0's based; default 0 (one, as Linux asks). */
  maxr2t?: number;
  /** Default NVME_TCP_PFV_1_0; anything else only to test a peer. */
  pfv?: number;
}

/** ICReq: the host's first PDU (Linux nvme_tcp_init_connection). */
export function buildICReq(f: ICReqInput = {}): Buffer[] {
  return frame(NO_DIGESTS, PduType.ICReq, ICReqHeader.SIZE, 0, [], (head) =>
    ICReqHeader.encode(
      { pfv: f.pfv ?? NVME_TCP_PFV_1_0, hpda: f.hpda ?? 0, dgst: f.dgst ?? 0, maxr2t: f.maxr2t ?? 0 },
      head,
    ),
  );
}

export interface ICRespInput {
  /** Controller PDU data alignment, 0's based dwords; default 0. */
  cpda?: number;
  /** DigestOption bits the controller enables (a subset of what the host asked). */
  dgst?: number;
  /** MAXH2CDATA: at least 4096 and a multiple of 4, or the Linux host refuses the connection. */
  maxh2cdata: number;
  pfv?: number;
}

/** ICResp: the controller's answer (Linux nvmet_tcp_handle_icreq). */
export function buildICResp(f: ICRespInput): Buffer[] {
  return frame(NO_DIGESTS, PduType.ICResp, ICRespHeader.SIZE, 0, [], (head) =>
    ICRespHeader.encode(
      { pfv: f.pfv ?? NVME_TCP_PFV_1_0, cpda: f.cpda ?? 0, dgst: f.dgst ?? 0, maxh2cdata: f.maxh2cdata },
      head,
    ),
  );
}

export interface TermReqInput {
  fes: number;
  /** Byte offset of the bad field for FES 1 and 6; default 0. */
  fei?: number;
  /** Error data, usually the offending PDU header; at most 128 bytes. */
  data?: Uint8Array;
}

/** H2CTermReq (host) or C2HTermReq (controller): no digests, plen = 24 + error data. */
export function buildTermReq(
  type: typeof PduType.H2CTermReq | typeof PduType.C2HTermReq,
  f: TermReqInput,
): Buffer[] {
  const data = f.data ?? Buffer.alloc(0);
  if (data.length > NVME_TCP_TERM_REQ_MAX_DATA) {
    throw new RangeError(`TermReq error data is ${data.length} bytes; at most ${NVME_TCP_TERM_REQ_MAX_DATA}`);
  }
  const out = Buffer.alloc(TermReqHeader.SIZE + data.length);
  TermReqHeader.encode(
    { type, hlen: TermReqHeader.SIZE, plen: out.length, fes: f.fes, fei: f.fei ?? 0 },
    out,
  );
  out.set(data, TermReqHeader.SIZE);
  return [out];
}

/** The TermReq that reports a parser error to the peer (the error says which type). */
export function buildTermReqFor(err: TcpFatalError): Buffer[] {
  return buildTermReq(err.termReqType, { fes: err.fes, fei: err.fei, data: err.header });
}

/** CapsuleCmd: the 64-byte SQE and optional in-capsule data (its SGL is the caller's business). */
export function buildCapsuleCmd(tx: TxOptions, sqe: Uint8Array, data?: PduData): Buffer[] {
  const size = CapsuleCmdHeader.sizeOf('ccsqe');
  if (sqe.length !== size)
    throw new RangeError(`CapsuleCmd needs a ${size}-byte SQE, got ${sqe.length} bytes`);
  return frame(tx, PduType.CapsuleCmd, CapsuleCmdHeader.SIZE, 0, dataList(data), (head) =>
    head.set(sqe, OFF.ccsqe),
  );
}

/** CapsuleResp: the 16-byte CQE. */
export function buildCapsuleResp(tx: TxOptions, cqe: Uint8Array): Buffer[] {
  const size = CapsuleRespHeader.sizeOf('rccqe');
  if (cqe.length !== size)
    throw new RangeError(`CapsuleResp needs a ${size}-byte CQE, got ${cqe.length} bytes`);
  return frame(tx, PduType.CapsuleResp, CapsuleRespHeader.SIZE, 0, [], (head) => head.set(cqe, OFF.rccqe));
}

function needData(what: string, list: Buffer[]): void {
  if (list.length === 0) throw new RangeError(`${what} needs at least one data byte`);
}

export interface H2CDataInput {
  cccid: number;
  ttag: number;
  /** Offset of this data in the command's data. */
  datao: number;
  /** LAST_PDU: the last H2CData PDU answering this R2T. */
  last: boolean;
}

/** H2CData: write data for an R2T; datal is the data's length. */
export function buildH2CData(tx: TxOptions, f: H2CDataInput, data: PduData): Buffer[] {
  const list = dataList(data);
  needData('H2CData', list);
  checkUint('H2CData cccid', f.cccid, 0xffff);
  checkUint('H2CData ttag', f.ttag, 0xffff);
  checkUint('H2CData datao', f.datao, 0xffffffff);
  const datal = list.reduce((n, b) => n + b.length, 0);
  return frame(tx, PduType.H2CData, H2CDataHeader.SIZE, f.last ? PduFlags.DATA_LAST : 0, list, (head) => {
    head.writeUInt16LE(f.cccid, OFF.h2cCccid);
    head.writeUInt16LE(f.ttag, OFF.h2cTtag);
    head.writeUInt32LE(f.datao, OFF.h2cDatao);
    head.writeUInt32LE(datal, OFF.h2cDatal);
  });
}

export interface C2HDataInput {
  cccid: number;
  datao: number;
  /** LAST_PDU: the last C2HData PDU of the command. */
  last: boolean;
  /** SUCCESS: the command completed successfully and no CapsuleResp follows; needs `last`. */
  success?: boolean;
}

/** C2HData: read data; datal is the data's length. */
export function buildC2HData(tx: TxOptions, f: C2HDataInput, data: PduData): Buffer[] {
  const list = dataList(data);
  needData('C2HData', list);
  checkUint('C2HData cccid', f.cccid, 0xffff);
  checkUint('C2HData datao', f.datao, 0xffffffff);
  if (f.success && !f.last)
    throw new RangeError('C2HData: SUCCESS needs LAST_PDU (the completion ends the command)');
  const flags = (f.last ? PduFlags.DATA_LAST : 0) | (f.success ? PduFlags.DATA_SUCCESS : 0);
  const datal = list.reduce((n, b) => n + b.length, 0);
  return frame(tx, PduType.C2HData, C2HDataHeader.SIZE, flags, list, (head) => {
    head.writeUInt16LE(f.cccid, OFF.c2hCccid);
    head.writeUInt32LE(f.datao, OFF.c2hDatao);
    head.writeUInt32LE(datal, OFF.c2hDatal);
  });
}

export interface R2TInput {
  cccid: number;
  ttag: number;
  /** Offset in the command's data the host sends from. */
  r2to: number;
  /** Bytes the host may send now (more than MAXH2CDATA is fine: the host splits them). */
  r2tl: number;
}

/** R2T: the controller asks for write data. */
export function buildR2T(tx: TxOptions, f: R2TInput): Buffer[] {
  checkUint('R2T cccid', f.cccid, 0xffff);
  checkUint('R2T ttag', f.ttag, 0xffff);
  checkUint('R2T r2to', f.r2to, 0xffffffff);
  checkUint('R2T r2tl', f.r2tl, 0xffffffff);
  if (f.r2tl === 0) throw new RangeError('R2T: r2tl must not be 0');
  return frame(tx, PduType.R2T, R2THeader.SIZE, 0, [], (head) => {
    head.writeUInt16LE(f.cccid, OFF.r2tCccid);
    head.writeUInt16LE(f.ttag, OFF.r2tTtag);
    head.writeUInt32LE(f.r2to, OFF.r2tR2to);
    head.writeUInt32LE(f.r2tl, OFF.r2tR2tl);
  });
}
