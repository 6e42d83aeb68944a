// Handshake wire formats: the server greeting, client flags, option headers, option replies
// and the payloads inside them (NBD_REP_SERVER, NBD_REP_INFO, NBD_REP_META_CONTEXT), plus the
// decoders for the option payloads that carry structure (NBD_OPT_INFO / NBD_OPT_GO and
// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT). Pure functions, big-endian, every
// fixed part declared once as a table of field offsets beside its size.
//
// Decoders check every length against the payload they were given and throw
// OptionPayloadError, which the handshake answers with its `reply` (NBD_REP_ERR_INVALID).
// Strings follow the spec's rule: UTF-8, no NUL, at most NBD_MAX_STRING (4096) bytes.

import type { BlockSizeConstraints } from './export.js';
import {
  NBD_EXPORT_NAME_REPLY_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_GREETING_SIZE,
  NBD_IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAGIC,
  NBD_MAX_STRING,
  NBD_OPT_REPLY_MAGIC,
  NBD_OPTION_HEADER_SIZE,
  NBD_OPTION_REPLY_HEADER_SIZE,
  NBD_REP_ERR_INVALID,
} from './protocol.js';

// ---- fixed layouts ------------------------------------------------------------------------

/** S: server greeting. */
export const Greeting = {
  SIZE: NBD_GREETING_SIZE,
  magic: 0, // u64 NBDMAGIC
  ihaveopt: 8, // u64 IHAVEOPT
  handshakeFlags: 16, // u16
} as const;

/** C: client flags, right after the greeting. */
export const ClientFlags = { SIZE: 4, flags: 0 /* u32 */ } as const;

/** C: option header; `length` bytes of option data follow. */
export const OptionHeader = {
  SIZE: NBD_OPTION_HEADER_SIZE,
  magic: 0, // u64 IHAVEOPT
  option: 8, // u32
  length: 12, // u32 option data length
} as const;

/** S: option reply header; `length` bytes of reply data follow. */
export const OptionReplyHeader = {
  SIZE: NBD_OPTION_REPLY_HEADER_SIZE,
  magic: 0, // u64 NBD_OPT_REPLY_MAGIC
  option: 8, // u32 the option this answers
  type: 12, // u32 NBD_REP_*
  length: 16, // u32 reply data length
} as const;

/** S: reply to NBD_OPT_EXPORT_NAME; 124 zero bytes follow unless the client set C_NO_ZEROES. */
export const ExportNameReply = {
  SIZE: 10,
  size: 0, // u64 export size
  transmissionFlags: 8, // u16
} as const;

/** NBD_REP_SERVER data: name length, name, then an optional description (no length). */
export const RepServer = { SIZE: 4, nameLength: 0 /* u32 */ } as const;

/** NBD_REP_META_CONTEXT data: context id, then the context name (no length). */
export const RepMetaContext = { SIZE: 4, contextId: 0 /* u32 */ } as const;

/** NBD_REP_INFO / NBD_INFO_EXPORT. */
export const InfoExport = {
  SIZE: 12,
  type: 0, // u16 NBD_INFO_EXPORT
  size: 2, // u64 export size
  transmissionFlags: 10, // u16
} as const;

/** NBD_REP_INFO / NBD_INFO_NAME and NBD_INFO_DESCRIPTION: type, then the string. */
export const InfoString = { SIZE: 2, type: 0 /* u16 */ } as const;

/** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE. */
export const InfoBlockSize = {
  SIZE: 14,
  type: 0, // u16 NBD_INFO_BLOCK_SIZE
  minimum: 2, // u32
  preferred: 6, // u32
  maximum: 10, // u32
} as const;

// ---- errors -------------------------------------------------------------------------------

/** An option payload that does not parse; `reply` is the NBD_REP_ERR_* to answer with. */
export class OptionPayloadError extends Error {
  override readonly name = 'OptionPayloadError';
  constructor(
    message: string,
    readonly reply: number = NBD_REP_ERR_INVALID,
  ) {
    super(message);
  }
}

// ---- strings ------------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes a protocol string: valid UTF-8, no NUL, at most NBD_MAX_STRING bytes. */
export function decodeNbdString(bytes: Uint8Array, what: string): string {
  if (bytes.length > NBD_MAX_STRING) {
    throw new OptionPayloadError(
      `${what} is ${bytes.length} bytes, longer than the ${NBD_MAX_STRING}-byte limit`,
    );
  }
  if (bytes.includes(0)) throw new OptionPayloadError(`${what} contains a NUL byte`);
  try {
    return utf8.decode(bytes);
  } catch {
    throw new OptionPayloadError(`${what} is not valid UTF-8`);
  }
}

/** UTF-8 bytes of s cut to at most `max` bytes without splitting a character (for messages and descriptions). */
export function truncateUtf8(s: string, max = NBD_MAX_STRING): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--; // back off continuation bytes
  return b.subarray(0, end);
}

function nameBytes(name: string): Buffer {
  const b = Buffer.from(name, 'utf8');
  if (b.length > NBD_MAX_STRING) {
    throw new RangeError(`export name of ${b.length} bytes is longer than the ${NBD_MAX_STRING}-byte limit`);
  }
  return b;
}

// ---- server → client ----------------------------------------------------------------------

/** The 18-byte greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES. */
export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(Greeting.SIZE);
  b.writeBigUInt64BE(NBD_MAGIC, Greeting.magic);
  b.writeBigUInt64BE(NBD_IHAVEOPT, Greeting.ihaveopt);
  b.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, Greeting.handshakeFlags);
  return b;
}

/** One option reply: header plus data. */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OptionReplyHeader.SIZE + data.length);
  b.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, OptionReplyHeader.magic);
  b.writeUInt32BE(option >>> 0, OptionReplyHeader.option);
  b.writeUInt32BE(type >>> 0, OptionReplyHeader.type);
  b.writeUInt32BE(data.length, OptionReplyHeader.length);
  b.set(data, OptionReplyHeader.SIZE);
  return b;
}

/** An error reply (type has bit 31 set) carrying a message for the user, cut to 4096 bytes. */
export function encodeErrorReply(option: number, type: number, message = ''): Buffer {
  return encodeOptionReply(option, type, truncateUtf8(message));
}

/** NBD_REP_SERVER data: one export for NBD_OPT_LIST. */
export function encodeRepServer(name: string, description = ''): Buffer {
  const n = nameBytes(name);
  const d = truncateUtf8(description);
  const b = Buffer.alloc(RepServer.SIZE + n.length + d.length);
  b.writeUInt32BE(n.length, RepServer.nameLength);
  n.copy(b, RepServer.SIZE);
  d.copy(b, RepServer.SIZE + n.length);
  return b;
}

/** NBD_REP_META_CONTEXT data. */
export function encodeRepMetaContext(contextId: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(RepMetaContext.SIZE + n.length);
  b.writeUInt32BE(contextId >>> 0, RepMetaContext.contextId);
  n.copy(b, RepMetaContext.SIZE);
  return b;
}

/** NBD_REP_INFO data, NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(InfoExport.SIZE);
  b.writeUInt16BE(NBD_INFO_EXPORT, InfoExport.type);
  b.writeBigUInt64BE(BigInt(size), InfoExport.size);
  b.writeUInt16BE(transmissionFlags, InfoExport.transmissionFlags);
  return b;
}

/** NBD_REP_INFO data, NBD_INFO_NAME: the canonical export name. */
export function encodeInfoName(name: string): Buffer {
  return infoString(NBD_INFO_NAME, nameBytes(name));
}

/** NBD_REP_INFO data, NBD_INFO_DESCRIPTION (cut to 4096 bytes). */
export function encodeInfoDescription(description: string): Buffer {
  return infoString(NBD_INFO_DESCRIPTION, truncateUtf8(description));
}

function infoString(type: number, s: Buffer): Buffer {
  const b = Buffer.alloc(InfoString.SIZE + s.length);
  b.writeUInt16BE(type, InfoString.type);
  s.copy(b, InfoString.SIZE);
  return b;
}

/** NBD_REP_INFO data, NBD_INFO_BLOCK_SIZE. */
export function encodeInfoBlockSize(c: BlockSizeConstraints): Buffer {
  const b = Buffer.alloc(InfoBlockSize.SIZE);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, InfoBlockSize.type);
  b.writeUInt32BE(c.minimum, InfoBlockSize.minimum);
  b.writeUInt32BE(c.preferred, InfoBlockSize.preferred);
  b.writeUInt32BE(c.maximum, InfoBlockSize.maximum);
  return b;
}

/** The whole reply to NBD_OPT_EXPORT_NAME. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(ExportNameReply.SIZE + (noZeroes ? 0 : NBD_EXPORT_NAME_REPLY_ZEROES));
  b.writeBigUInt64BE(BigInt(size), ExportNameReply.size);
  b.writeUInt16BE(transmissionFlags, ExportNameReply.transmissionFlags);
  return b;
}

// ---- client → server ----------------------------------------------------------------------

export interface DecodedOptionHeader {
  readonly magic: bigint;
  readonly option: number;
  readonly length: number;
}

export function decodeOptionHeader(b: Uint8Array): DecodedOptionHeader {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < OptionHeader.SIZE) throw new RangeError(`option header needs ${OptionHeader.SIZE} bytes`);
  return {
    magic: buf.readBigUInt64BE(OptionHeader.magic),
    option: buf.readUInt32BE(OptionHeader.option),
    length: buf.readUInt32BE(OptionHeader.length),
  };
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export interface InfoRequest {
  readonly name: string;
  /** NBD_INFO_* types asked for, in the client's order (unknown types included). */
  readonly infos: readonly number[];
}

/** Reads a payload field by field, failing with OptionPayloadError when it runs short. */
class PayloadCursor {
  #pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.#pos;
  }

  #take(n: number, field: string): Buffer {
    if (n > this.remaining) {
      throw new OptionPayloadError(
        `${this.what}: ${field} needs ${n} bytes at offset ${this.#pos}, only ${this.remaining} left of ${this.buf.length}`,
      );
    }
    const out = this.buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  u16(field: string): number {
    return this.#take(2, field).readUInt16BE(0);
  }

  u32(field: string): number {
    return this.#take(4, field).readUInt32BE(0);
  }

  /** A u32 length, then that many bytes of string. */
  string(field: string): string {
    const len = this.u32(`${field} length`);
    if (len > NBD_MAX_STRING) {
      throw new OptionPayloadError(
        `${this.what}: ${field} length ${len} is longer than the ${NBD_MAX_STRING}-byte limit`,
      );
    }
    return decodeNbdString(this.#take(len, field), `${this.what}: ${field}`);
  }

  end(): void {
    if (this.remaining !== 0) {
      throw new OptionPayloadError(`${this.what}: ${this.remaining} unexpected bytes after the last field`);
    }
  }
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Decodes NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, count × u16. */
export function decodeInfoRequest(payload: Uint8Array, what = 'NBD_OPT_GO'): InfoRequest {
  const c = new PayloadCursor(asBuffer(payload), what);
  const name = c.string('export name');
  const count = c.u16('information request count');
  if (count * 2 !== c.remaining) {
    throw new OptionPayloadError(
      `${what}: ${count} information requests need ${count * 2} bytes, the option has ${c.remaining} left`,
    );
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(c.u16(`information request ${i}`));
  c.end();
  return { name, infos };
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export interface MetaContextRequest {
  readonly exportName: string;
  readonly queries: readonly string[];
}

/** Decodes meta context option data: u32 name length, name, u32 count, count × (u32 length, query). */
export function decodeMetaContextRequest(
  payload: Uint8Array,
  what = 'NBD_OPT_SET_META_CONTEXT',
): MetaContextRequest {
  const c = new PayloadCursor(asBuffer(payload), what);
  const exportName = c.string('export name');
  const count = c.u32('query count');
  // Each query takes at least its 4-byte length: reject an impossible count before looping.
  if (count > c.remaining / 4) {
    throw new OptionPayloadError(`${what}: ${count} queries cannot fit in the ${c.remaining} bytes left`);
  }
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(c.string(`query ${i}`));
  c.end();
  return { exportName, queries };
}
