// Loads the optional native addon (native/tsblk.c) once, on first use. Every caller has a
// pure-TypeScript fallback or a clear error when it is absent, so loading never throws:
// loadNative() returns undefined and nativeStatus() says why. TSBLK_NO_NATIVE=1 forces the
// fallback (tests use it to cover both paths).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The addon's exports. The promise-returning calls run on libuv's thread pool; their errors
 * look like Node's fs errors (`code` 'EXDEV', `errno` negative, `syscall`). The caller keeps
 * the file descriptors open until the promise settles.
 */
export interface NativeAddon {
  /**
   * copy_file_range(2) in a loop until `len` bytes are copied or the source ends; resolves
   * with the bytes copied (fewer than len only at the source's end of file). A failure part
   * way carries `bytesCopied`, the prefix that was copied.
   */
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<number>;
  /** fallocate(2) with FALLOC_FL_* flags. */
  fallocate(fd: number, mode: number, offset: number, len: number): Promise<void>;
  /** ioctl(BLKGETSIZE64): a block device's size in bytes. */
  blockDeviceSize(fd: number): number;
  /** ioctl(BLKSSZGET): a block device's logical block size. */
  blockDeviceLogicalBlockSize(fd: number): number;
  /**
   * lseek(2) with SEEK_DATA or SEEK_HOLE (the constants below), on the thread pool: resolves
   * with the resulting offset, or -1 for ENXIO (SEEK_DATA: no data at or after offset; either:
   * offset at or past the end of the file). A filesystem without hole tracking reports the
   * whole file as data.
   */
  lseekData(fd: number, offset: number, whence: number): Promise<number>;
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;
  readonly SEEK_DATA: number;
  readonly SEEK_HOLE: number;
}

/** The error shape the addon rejects with. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  bytesCopied?: number;
}

const ADDON_FILE = join('native', 'build', 'Release', 'tsblk_native.node');

let loaded: { addon: NativeAddon | undefined; reason: string } | undefined;

/** The built addon, looked for in the package root above this module (src/ or dist/src/). */
function findAddon(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, ADDON_FILE);
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  return undefined;
}

function load(): { addon: NativeAddon | undefined; reason: string } {
  if (process.env.TSBLK_NO_NATIVE === '1')
    return { addon: undefined, reason: 'disabled by TSBLK_NO_NATIVE=1' };
  if (process.platform !== 'linux')
    return { addon: undefined, reason: `not supported on ${process.platform}` };
  const path = findAddon();
  if (!path)
    return { addon: undefined, reason: `${ADDON_FILE} not found; build it with \`node native/build.mjs\`` };
  try {
    const mod = createRequire(import.meta.url)(path) as Partial<NativeAddon>;
    for (const fn of [
      'copyFileRange',
      'fallocate',
      'blockDeviceSize',
      'blockDeviceLogicalBlockSize',
      'lseekData',
    ] as const) {
      if (typeof mod[fn] !== 'function')
        return { addon: undefined, reason: `${path} lacks ${fn}(); rebuild it` };
    }
    return { addon: mod as NativeAddon, reason: `loaded from ${path}` };
  } catch (err) {
    return {
      addon: undefined,
      reason: `${path} failed to load: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}

/** The addon, or undefined when it is not built, fails to load, or TSBLK_NO_NATIVE=1. */
export function loadNative(): NativeAddon | undefined {
  loaded ??= load();
  return loaded.addon;
}

/** Whether the addon is in use, and why (or why not), for `tsblk dev info` and warnings. */
export function nativeStatus(): { available: boolean; reason: string } {
  loaded ??= load();
  return { available: loaded.addon !== undefined, reason: loaded.reason };
}

/** True for an error the addon rejected with (it has a string errno `code`). */
export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).code === 'string';
}

// ---- ublk: io_uring (native/uring.c), loaded on its own ----
// Separate from loadNative(): an addon built before uring.c existed still serves
// copy_file_range and friends, and the ublk server reports why it cannot run.

/** What the addon's io_uring part exports (native/uring.c documents each call). */
export interface UblkNative {
  /** One control command on /dev/ublk-control; `data` becomes the command's addr/len. */
  ublkControl(cmdOp: number, cmd: Uint8Array, data: Uint8Array | null): Promise<number>;
  /** A queue's ring and thread; completions arrive in batches of QUEUE_CQE_BYTES entries. */
  queueOpen(
    charFd: number,
    qid: number,
    depth: number,
    descBytes: number,
    onCompletions: (batch: Buffer) => void,
    /** depth x bytesPerTag bytes: the thread moves request data itself (uring.c says how). */
    copyBuffer?: Uint8Array | null,
    bytesPerTag?: number,
    copyBase?: number,
    copyStride?: number,
    copyInOps?: number,
  ): UblkQueueHandle;
  /** Hands QUEUE_CMD_BYTES-sized commands to the queue's thread. */
  queueSubmit(handle: UblkQueueHandle, cmds: Uint8Array): void;
  /** Wakes the thread, joins it, closes the ring; a second call does nothing. */
  queueStop(handle: UblkQueueHandle): void;
  readonly QUEUE_CMD_BYTES: number;
  readonly QUEUE_CQE_BYTES: number;
  readonly UBLK_MAX_DESC_AREA: number;
  /** 1 when queueOpen takes a copy buffer; undefined from an addon built before that. */
  readonly QUEUE_COPY?: number;
}

/** An opaque queue handle (a napi external). */
export type UblkQueueHandle = { readonly __ublkQueue: unique symbol };

/** The io_uring functions, or why they are missing (addon absent or built before uring.c). */
export function loadUblkNative(): { native: UblkNative } | { native: undefined; reason: string } {
  loaded ??= load();
  if (!loaded.addon) return { native: undefined, reason: `native addon not loaded: ${loaded.reason}` };
  const mod = loaded.addon as unknown as Partial<UblkNative>;
  for (const fn of ['ublkControl', 'queueOpen', 'queueSubmit', 'queueStop'] as const) {
    if (typeof mod[fn] !== 'function')
      return {
        native: undefined,
        reason: `the native addon lacks ${fn}() (built before io_uring support); rebuild it`,
      };
  }
  return { native: mod as UblkNative };
}
