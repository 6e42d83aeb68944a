// Wire structures declared once, as field tables. Every NVMe structure in src/nvme/ (and the ublk uAPI) is a
// `defineStruct(name, SIZE, fields)` call: the table is the single source of truth, and
// encode / decode / offsetOf are derived from it (the TypeScript counterpart of SPDK's
// packed structs plus SPDK_STATIC_ASSERT on sizes and offsets).
//
// Conventions (every caller relies on them):
// - Little-endian, as NVMe is.
// - u8/u16/u32 decode to `number`. **u64 decodes to `bigint`** (exact: SGL addresses, metadata
//   pointers and discovery generation counters use all 64 bits). Encoders accept a
//   `number` (a non-negative safe integer) or a `bigint` for u64. `lbaToNumber()` turns a u64 LBA
//   into a number for the block layer (LBAs beyond 2^53 saturate, which is out of range for
//   every device tsblk can serve).
// - 'bytes' fields decode to a copy (never a view into the wire buffer) and must be encoded
//   from exactly `length` bytes. Fields left out of an encode input are zero.
// - 'ascii' fields are space padded (SN, MN, FR as Identify requires); `pad: 'nul'` makes them
//   NUL padded (NQNs in Connect data and Identify SUBNQN). Only printable ASCII is accepted.
// - Definitions are checked when the module loads: a field outside SIZE or two fields that
//   overlap throw at once, so a wrong table cannot ship.

export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'bytes' | 'ascii';

export interface FieldDef {
  readonly name: string;
  readonly offset: number;
  readonly type: FieldType;
  /** Byte length; required for 'bytes' and 'ascii', implied for integers. */
  readonly length?: number;
  /** Padding of an 'ascii' field: 'space' (default) or 'nul'. */
  readonly pad?: 'space' | 'nul';
}

type DecodedOf<T extends FieldType> = T extends 'u64'
  ? bigint
  : T extends 'bytes'
    ? Buffer
    : T extends 'ascii'
      ? string
      : number;

type InputOf<T extends FieldType> = T extends 'u64'
  ? bigint | number
  : T extends 'bytes'
    ? Uint8Array
    : T extends 'ascii'
      ? string
      : number;

/** The decoded object of a struct: one property per field, named as in the table. */
export type StructValue<F extends readonly FieldDef[]> = {
  [K in F[number] as K['name']]: DecodedOf<K['type']>;
};

/** What encode takes: any subset of the fields; missing ones are encoded as zero. */
export type StructInput<F extends readonly FieldDef[]> = {
  [K in F[number] as K['name']]?: InputOf<K['type']>;
};

export type FieldName<F extends readonly FieldDef[]> = F[number]['name'];

export interface Struct<F extends readonly FieldDef[]> {
  /** The C name of the structure in the source it was taken from (for messages). */
  readonly name: string;
  /** Size in bytes. */
  readonly SIZE: number;
  readonly fields: F;
  offsetOf(field: FieldName<F>): number;
  sizeOf(field: FieldName<F>): number;
  /** Encodes into a new Buffer of SIZE bytes, or into `into` at `at` (the rest is left alone). */
  encode(value: StructInput<F>, into?: Buffer, at?: number): Buffer;
  /** Decodes SIZE bytes at `at`. Throws RangeError when the buffer is too short. */
  decode(buf: Uint8Array, at?: number): StructValue<F>;
  /** Reads one field without decoding the rest. */
  get<N extends FieldName<F>>(
    buf: Uint8Array,
    field: N,
    at?: number,
  ): DecodedOf<Extract<F[number], { name: N }>['type']>;
  /** Writes one field in place. */
  set<N extends FieldName<F>>(
    buf: Uint8Array,
    field: N,
    value: InputOf<Extract<F[number], { name: N }>['type']>,
    at?: number,
  ): void;
}

const INT_SIZE = { u8: 1, u16: 2, u32: 4, u64: 8 } as const;

function fieldLength(f: FieldDef): number {
  if (f.type === 'bytes' || f.type === 'ascii') {
    if (f.length === undefined || !Number.isInteger(f.length) || f.length <= 0) {
      throw new Error(`field ${f.name}: type ${f.type} needs a positive length`);
    }
    return f.length;
  }
  const n = INT_SIZE[f.type];
  if (f.length !== undefined && f.length !== n) throw new Error(`field ${f.name}: ${f.type} is ${n} bytes`);
  return n;
}

const U64_MAX = (1n << 64n) - 1n;

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** A u64 LBA as a JavaScript number; values beyond 2^53-1 saturate to Number.MAX_SAFE_INTEGER. */
export function lbaToNumber(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/** Checks that `v` fits an unsigned integer field of `bytes` bytes; returns it as a number. */
function checkUint(struct: string, f: FieldDef, v: unknown, bytes: 1 | 2 | 4): number {
  const max = bytes === 4 ? 0xffffffff : bytes === 2 ? 0xffff : 0xff;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${struct}.${f.name}: ${String(v)} is not a u${bytes * 8} (0..${max})`);
  }
  return v;
}

function checkU64(struct: string, f: FieldDef, v: unknown): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw new RangeError(`${struct}.${f.name}: ${v} is not a u64`);
    return v;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${struct}.${f.name}: ${String(v)} is not a u64 (use a bigint above 2^53)`);
  }
  return BigInt(v);
}

function writeField(struct: string, f: FieldDef, len: number, buf: Buffer, pos: number, v: unknown): void {
  switch (f.type) {
    case 'u8':
      buf.writeUInt8(checkUint(struct, f, v, 1), pos);
      return;
    case 'u16':
      buf.writeUInt16LE(checkUint(struct, f, v, 2), pos);
      return;
    case 'u32':
      buf.writeUInt32LE(checkUint(struct, f, v, 4), pos);
      return;
    case 'u64':
      buf.writeBigUInt64LE(checkU64(struct, f, v), pos);
      return;
    case 'bytes': {
      if (!(v instanceof Uint8Array) || v.byteLength !== len) {
        const got = v instanceof Uint8Array ? `${v.byteLength} bytes` : typeof v;
        throw new RangeError(`${struct}.${f.name}: needs exactly ${len} bytes, got ${got}`);
      }
      buf.set(v, pos);
      return;
    }
    case 'ascii': {
      if (typeof v !== 'string') throw new RangeError(`${struct}.${f.name}: needs a string`);
      if (v.length > len) {
        throw new RangeError(`${struct}.${f.name}: "${v}" is ${v.length} characters, the field holds ${len}`);
      }
      if (!/^[\x20-\x7e]*$/.test(v)) {
        throw new RangeError(`${struct}.${f.name}: "${v}" has characters outside printable ASCII`);
      }
      buf.fill(f.pad === 'nul' ? 0 : 0x20, pos, pos + len);
      buf.write(v, pos, 'latin1');
      return;
    }
  }
}

function readField(f: FieldDef, len: number, buf: Buffer, pos: number): number | bigint | Buffer | string {
  switch (f.type) {
    case 'u8':
      return buf.readUInt8(pos);
    case 'u16':
      return buf.readUInt16LE(pos);
    case 'u32':
      return buf.readUInt32LE(pos);
    case 'u64':
      return buf.readBigUInt64LE(pos);
    case 'bytes':
      return Buffer.from(buf.subarray(pos, pos + len));
    case 'ascii': {
      const raw = buf.subarray(pos, pos + len);
      const nul = raw.indexOf(0);
      const text = raw.toString('latin1', 0, nul === -1 ? len : nul);
      return f.pad === 'nul' ? text : text.replace(/ +$/, '');
    }
  }
}

/**
 * Declares a wire structure. `fields` is the table (keep spec names, name reserved ranges
 * `rsvdN` after their offset); `size` is the structure's size from the spec.
 */
export function defineStruct<const F extends readonly FieldDef[]>(
  name: string,
  size: number,
  fields: F,
): Struct<F> {
  const byName = new Map<string, { f: FieldDef; len: number }>();
  const sorted = [...fields].sort((a, b) => a.offset - b.offset);
  let end = 0;
  let prev = '';
  for (const f of sorted) {
    const len = fieldLength(f);
    if (byName.has(f.name)) throw new Error(`${name}: field ${f.name} declared twice`);
    if (!Number.isInteger(f.offset) || f.offset < 0 || f.offset + len > size) {
      throw new Error(
        `${name}.${f.name}: bytes ${f.offset}..${f.offset + len - 1} fall outside the ${size}-byte structure`,
      );
    }
    if (f.offset < end)
      throw new Error(`${name}.${f.name} at ${f.offset} overlaps ${prev} (which ends at ${end})`);
    end = f.offset + len;
    prev = f.name;
    byName.set(f.name, { f, len });
  }

  const lookup = (field: string): { f: FieldDef; len: number } => {
    const e = byName.get(field);
    if (!e) throw new RangeError(`${name} has no field ${field}`);
    return e;
  };
  const need = (buf: Uint8Array, at: number, len: number, what: string): void => {
    if (!Number.isInteger(at) || at < 0 || buf.byteLength < at + len) {
      throw new RangeError(`${what}: needs ${len} bytes at offset ${at}, the buffer has ${buf.byteLength}`);
    }
  };

  return {
    name,
    SIZE: size,
    fields,
    offsetOf: (field) => lookup(field).f.offset,
    sizeOf: (field) => lookup(field).len,
    encode(value, into, at = 0) {
      const buf = into ?? Buffer.alloc(size);
      need(buf, at, size, `encode ${name}`);
      if (into) buf.fill(0, at, at + size);
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === undefined) continue;
        const { f, len } = lookup(key);
        writeField(name, f, len, buf, at + f.offset, v);
      }
      return buf;
    },
    decode(input, at = 0) {
      need(input, at, size, `decode ${name}`);
      const buf = asBuffer(input);
      const out: Record<string, unknown> = {};
      for (const f of fields) out[f.name] = readField(f, fieldLength(f), buf, at + f.offset);
      return out as StructValue<F>;
    },
    get(input, field, at = 0) {
      const { f, len } = lookup(field);
      need(input, at + f.offset, len, `read ${name}.${field}`);
      return readField(f, len, asBuffer(input), at + f.offset) as never;
    },
    set(input, field, value, at = 0) {
      const { f, len } = lookup(field);
      need(input, at + f.offset, len, `write ${name}.${field}`);
      writeField(name, f, len, asBuffer(input), at + f.offset, value);
    },
  };
}

/** Byte ranges of a struct not covered by any field (tests assert there are none). */
export function gaps(s: Struct<readonly FieldDef[]>): Array<{ from: number; to: number }> {
  const out: Array<{ from: number; to: number }> = [];
  let pos = 0;
  for (const f of [...s.fields].sort((a, b) => a.offset - b.offset)) {
    if (f.offset > pos) out.push({ from: pos, to: f.offset - 1 });
    pos = f.offset + s.sizeOf(f.name);
  }
  if (pos < s.SIZE) out.push({ from: pos, to: s.SIZE - 1 });
  return out;
}

/** Extracts bits hi..lo (inclusive, hi ≤ 31) of a 32-bit word. */
export function bits(word: number, hi: number, lo: number): number {
  const width = hi - lo + 1;
  return width >= 32 ? word >>> 0 : (word >>> lo) & (((1 << width) >>> 0) - 1);
}

/** Places `value` into bits hi..lo of a 32-bit word; throws when it does not fit. */
export function field(value: number, hi: number, lo: number, what = 'value'): number {
  const width = hi - lo + 1;
  const max = width >= 32 ? 0xffffffff : 2 ** width - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what}: ${value} does not fit bits ${hi}:${lo} (0..${max})`);
  }
  return (value * 2 ** lo) >>> 0;
}
