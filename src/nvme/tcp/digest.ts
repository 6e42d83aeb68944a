// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for NVMe/TCP header and data digests.
// A digest is the plain CRC32C of the bytes (initial value ~0, final XOR ~0: Linux's
// nvme_tcp_hdgst() is cpu_to_le32(~crc32c(~0, pdu, len))), written little-endian after the
// header or the data (NVME_TCP_DIGEST_LENGTH = 4).
//
// Two implementations, chosen per call:
// - @node-rs/crc32 (napi-rs; a prebuilt N-API binary shipped inside the registry package, so
//   nothing is compiled or downloaded at install; SIMD/hardware CRC32C) for buffers of 256 bytes
//   and more;
// - a table-driven slice-by-8 loop in TypeScript for shorter buffers (the N-API call costs more
//   than the whole CRC of a 24..128-byte header) and whenever the package cannot load
//   (TSBLK_NO_NATIVE=1 forces it, as for the project's own addon).
//
// Measured on this project's 2-core machine (Node 20.20, random buffers, best of 3 rounds of
// 32 MiB per cell, MB/s; a throwaway script timed each package on the same buffers):
//
//   bytes per call          24     72    128    256    512  1 KiB  4 KiB  128 KiB
//   TS slice-by-8         1193   1229   1632   1646   1704   1740   1752   1753
//   @node-rs/crc32 1.10.8  237    741   1228   2009   2826   4076   5660   6266
//   crc32c() below        1159   1448   1537   2074   2744   3997   5705   7023
//   sse4_crc32 7.0.0       315   1105   1808   2932   4470   6280   8602   9589
//   fast-crc32c 2.0.0      268   1072   1871   2947   4504   6329   8183   9681  (wraps sse4_crc32)
//   @aws-crypto/crc32c      98    107    110    106    109    109    111    108  (plain JS table)
//
// sse4_crc32 is faster from 256 bytes up (about 1.5x at 4-128 KiB), but it compiles C++ with
// node-gyp in an install script (it built here only because the machine has a compiler and
// Node headers), its fast path is x86 SSE4.2 only, and it still pins node-addon-api 1.x; a
// missing toolchain or a blocked install script would leave only the TS loop. @node-rs/crc32
// is maintained with napi-rs and installs from the registry alone on every platform napi-rs
// builds for.

import { createRequire } from 'node:module';

const POLY = 0x82f63b78;

/** Eight 256-entry tables, one after the other: TABLES[k*256 + b] is byte b's CRC k bytes early. */
const TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      const prev = t[(k - 1) * 256 + i]!;
      t[k * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
})();

/**
 * CRC32C in TypeScript, slice-by-8. `previous` is the CRC of the bytes before `data`, so
 * crc32cTs(b, crc32cTs(a)) is the CRC of a followed by b.
 */
export function crc32cTs(data: Uint8Array, previous = 0): number {
  const t = TABLES;
  let crc = ~previous;
  let i = 0;
  const n = data.length;
  const end8 = n - (n & 7);
  for (; i < end8; i += 8) {
    crc ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    crc =
      t[1792 + (crc & 0xff)]! ^
      t[1536 + ((crc >>> 8) & 0xff)]! ^
      t[1280 + ((crc >>> 16) & 0xff)]! ^
      t[1024 + (crc >>> 24)]! ^
      t[768 + data[i + 4]!]! ^
      t[512 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
  }
  for (; i < n; i++) crc = t[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

type Crc32cFn = (input: Uint8Array, initialState?: number) => number;

/** @node-rs/crc32's crc32c, checked against the standard vector, or undefined with the reason. */
function loadNative(): { fn: Crc32cFn | undefined; reason: string } {
  if (process.env.TSBLK_NO_NATIVE === '1') return { fn: undefined, reason: 'disabled by TSBLK_NO_NATIVE=1' };
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32c?: Crc32cFn };
    const fn = mod.crc32c;
    if (typeof fn !== 'function') return { fn: undefined, reason: '@node-rs/crc32 has no crc32c export' };
    if (fn(Buffer.from('123456789'), 0) >>> 0 !== 0xe3069283) {
      return { fn: undefined, reason: '@node-rs/crc32 failed the check value' };
    }
    return { fn, reason: 'loaded' };
  } catch (err) {
    return { fn: undefined, reason: `@node-rs/crc32 did not load: ${(err as Error).message}` };
  }
}

const native = loadNative();

/** Below this many bytes the TS loop beats the N-API call (see the table above). */
export const NATIVE_MIN_BYTES = 256;

/** Which implementation serves buffers of NATIVE_MIN_BYTES and more, and why. */
export const crc32cImplementation: { name: '@node-rs/crc32' | 'typescript'; reason: string } = {
  name: native.fn ? '@node-rs/crc32' : 'typescript',
  reason: native.reason,
};

/** CRC32C of `data`, continuing from `previous` (the CRC of the bytes before it). */
export function crc32c(data: Uint8Array, previous = 0): number {
  if (native.fn !== undefined && data.length >= NATIVE_MIN_BYTES) return native.fn(data, previous) >>> 0;
  return crc32cTs(data, previous);
}

/** CRC32C of several buffers as if they were one. */
export function crc32cv(list: readonly Uint8Array[], previous = 0): number {
  let crc = previous;
  for (const b of list) crc = crc32c(b, crc);
  return crc;
}
