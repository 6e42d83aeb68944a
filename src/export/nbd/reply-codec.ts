// Transmission-phase replies: the simple reply (16 bytes), the structured reply chunk header
// (20 bytes), the extended reply chunk header (32 bytes, after NBD_OPT_EXTENDED_HEADERS) and
// the chunk payloads this server sends. Each wire struct is a table of field offsets beside
// its size; encoders return Buffers and leave bulk data (READ payloads) as separate buffers
// so a reply goes out as a list without copying the data.

import {
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_EXTENDED_REPLY_SIZE,
  NBD_MAX_STRING,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_SIMPLE_REPLY_SIZE,
  NBD_STRUCTURED_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_SIZE,
} from './protocol.js';

export const SimpleReply = {
  SIZE: NBD_SIMPLE_REPLY_SIZE,
  magic: 0, // u32 NBD_SIMPLE_REPLY_MAGIC
  error: 4, // u32
  cookie: 8, // u64
} as const;

export const StructuredReplyHeader = {
  SIZE: NBD_STRUCTURED_REPLY_SIZE,
  magic: 0, // u32 NBD_STRUCTURED_REPLY_MAGIC
  flags: 4, // u16 reply flags
  type: 6, // u16 reply type
  cookie: 8, // u64
  length: 16, // u32 payload length
} as const;

export const ExtendedReplyHeader = {
  SIZE: NBD_EXTENDED_REPLY_SIZE,
  magic: 0, // u32 NBD_EXTENDED_REPLY_MAGIC
  flags: 4, // u16
  type: 6, // u16
  cookie: 8, // u64
  offset: 16, // u64: the request's offset
  length: 24, // u64 payload length
} as const;

/** NBD_REPLY_TYPE_OFFSET_DATA payload: offset, then the data. */
export const OffsetDataPayload = { SIZE: 8, offset: 0 } as const;
/** NBD_REPLY_TYPE_OFFSET_HOLE payload (32-bit hole size in both header styles). */
export const OffsetHolePayload = { SIZE: 12, offset: 0, length: 8 } as const;
/** NBD_REPLY_TYPE_BLOCK_STATUS: context id, then 8-byte descriptors. */
export const BlockStatusPayload = {
  SIZE: 4,
  contextId: 0,
  DESCRIPTOR: 8,
  descLength: 0,
  descFlags: 4,
} as const;
/** NBD_REPLY_TYPE_BLOCK_STATUS_EXT: context id, count, then 16-byte descriptors. */
export const BlockStatusExtPayload = {
  SIZE: 8,
  contextId: 0,
  count: 4,
  DESCRIPTOR: 16,
  descLength: 0,
  descFlags: 8,
} as const;
/** NBD_REPLY_TYPE_ERROR: error, message length, message. */
export const ErrorPayload = { SIZE: 6, error: 0, messageLength: 4 } as const;

export type ChunkStyle = 'structured' | 'extended';

export interface ChunkHeader {
  readonly flags: number;
  readonly type: number;
  readonly cookie: bigint;
  /** The request's offset exactly as sent (extended headers only; ignored otherwise). */
  readonly offset: bigint;
}

/** Block status descriptor: `length` bytes with these status `flags`. */
export interface StatusDescriptor {
  readonly length: number;
  readonly flags: number;
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const b = Buffer.alloc(SimpleReply.SIZE);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, SimpleReply.magic);
  b.writeUInt32BE(error, SimpleReply.error);
  b.writeBigUInt64BE(cookie, SimpleReply.cookie);
  return b;
}

export function encodeStructuredHeader(h: ChunkHeader, payloadLength: number): Buffer {
  if (!Number.isInteger(payloadLength) || payloadLength < 0 || payloadLength > 0xffffffff)
    throw new RangeError(`structured reply payload of ${payloadLength} bytes does not fit 32 bits`);
  const b = Buffer.alloc(StructuredReplyHeader.SIZE);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, StructuredReplyHeader.magic);
  b.writeUInt16BE(h.flags, StructuredReplyHeader.flags);
  b.writeUInt16BE(h.type, StructuredReplyHeader.type);
  b.writeBigUInt64BE(h.cookie, StructuredReplyHeader.cookie);
  b.writeUInt32BE(payloadLength, StructuredReplyHeader.length);
  return b;
}

export function encodeExtendedHeader(h: ChunkHeader, payloadLength: number): Buffer {
  const b = Buffer.alloc(ExtendedReplyHeader.SIZE);
  b.writeUInt32BE(NBD_EXTENDED_REPLY_MAGIC, ExtendedReplyHeader.magic);
  b.writeUInt16BE(h.flags, ExtendedReplyHeader.flags);
  b.writeUInt16BE(h.type, ExtendedReplyHeader.type);
  b.writeBigUInt64BE(h.cookie, ExtendedReplyHeader.cookie);
  b.writeBigUInt64BE(h.offset, ExtendedReplyHeader.offset);
  b.writeBigUInt64BE(BigInt(payloadLength), ExtendedReplyHeader.length);
  return b;
}

/** One chunk as a buffer list: the header for `style`, then the payload parts unchanged. */
export function encodeChunk(
  style: ChunkStyle,
  h: ChunkHeader,
  payload: readonly Uint8Array[] = [],
): Uint8Array[] {
  let length = 0;
  for (const p of payload) length += p.length;
  const header = style === 'extended' ? encodeExtendedHeader(h, length) : encodeStructuredHeader(h, length);
  return [header, ...payload];
}

/** OFFSET_DATA payload prefix; the data follows as its own buffer. */
export function encodeOffsetDataPrefix(offset: number): Buffer {
  const b = Buffer.alloc(OffsetDataPayload.SIZE);
  b.writeBigUInt64BE(BigInt(offset), OffsetDataPayload.offset);
  return b;
}

export function encodeOffsetHole(offset: number, length: number): Buffer {
  if (!Number.isInteger(length) || length <= 0 || length > 0xffffffff)
    throw new RangeError(`hole size ${length} must be in 1..2^32-1`);
  const b = Buffer.alloc(OffsetHolePayload.SIZE);
  b.writeBigUInt64BE(BigInt(offset), OffsetHolePayload.offset);
  b.writeUInt32BE(length, OffsetHolePayload.length);
  return b;
}

export function encodeBlockStatus(contextId: number, descriptors: readonly StatusDescriptor[]): Buffer {
  const P = BlockStatusPayload;
  const b = Buffer.alloc(P.SIZE + descriptors.length * P.DESCRIPTOR);
  b.writeUInt32BE(contextId, P.contextId);
  descriptors.forEach((d, i) => {
    const at = P.SIZE + i * P.DESCRIPTOR;
    if (!Number.isInteger(d.length) || d.length <= 0 || d.length > 0xffffffff)
      throw new RangeError(`block status descriptor length ${d.length} must be in 1..2^32-1`);
    b.writeUInt32BE(d.length, at + P.descLength);
    b.writeUInt32BE(d.flags >>> 0, at + P.descFlags);
  });
  return b;
}

export function encodeBlockStatusExt(contextId: number, descriptors: readonly StatusDescriptor[]): Buffer {
  const P = BlockStatusExtPayload;
  const b = Buffer.alloc(P.SIZE + descriptors.length * P.DESCRIPTOR);
  b.writeUInt32BE(contextId, P.contextId);
  b.writeUInt32BE(descriptors.length, P.count);
  descriptors.forEach((d, i) => {
    const at = P.SIZE + i * P.DESCRIPTOR;
    if (!Number.isSafeInteger(d.length) || d.length <= 0)
      throw new RangeError(`block status descriptor length ${d.length} must be positive`);
    b.writeBigUInt64BE(BigInt(d.length), at + P.descLength);
    b.writeBigUInt64BE(BigInt(d.flags >>> 0), at + P.descFlags);
  });
  return b;
}

/** Cuts a message to at most maxBytes of UTF-8 without splitting a character. */
export function truncateUtf8(message: string, maxBytes: number): Buffer {
  const b = Buffer.from(message, 'utf8');
  if (b.length <= maxBytes) return b;
  let end = maxBytes;
  // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/** NBD_REPLY_TYPE_ERROR payload; the message is cut to the protocol's 4096-byte string limit. */
export function encodeErrorPayload(error: number, message = ''): Buffer {
  if (error === 0) throw new RangeError('an error chunk needs a nonzero error');
  const msg = truncateUtf8(message, NBD_MAX_STRING);
  const b = Buffer.alloc(ErrorPayload.SIZE + msg.length);
  b.writeUInt32BE(error, ErrorPayload.error);
  b.writeUInt16BE(msg.length, ErrorPayload.messageLength);
  msg.copy(b, ErrorPayload.SIZE);
  return b;
}
