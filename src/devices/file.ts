// FileDevice: a block device over a regular file or a block device node, the userspace loop
// driver. Decisions a user relies on:
//
// - Size: `size` given and the file shorter → the file is extended sparse (ftruncate); the
//   file longer → the device is its first `size` bytes and the file keeps its length. No
//   size → the file's (or block device's) size. It must be a multiple of the logical block
//   size, else EINVAL. `create` makes a missing file and then needs `size`.
// - Block devices need the native addon (BLKGETSIZE64, BLKSSZGET); without it open() fails
//   with EOPNOTSUPP and says why the addon is missing.
// - FUA writes go through a second descriptor opened with O_DSYNC on the same open file
//   (/proc/self/fd): the kernel then syncs just the written range (vfs_fsync_range), where an
//   fdatasync after the write would also wait for every other dirty page of the file.
//   flush() is fdatasync.
// - discard and writeZeroes use fallocate (PUNCH_HOLE|KEEP_SIZE; ZERO_RANGE for
//   writeZeroes with noUnmap) when the addon is loaded; where the filesystem (or the
//   missing addon) cannot, they write zeroes. Discarded blocks always read back as zeroes.
// - Copy offload: between any FileDevices (canCopyFrom). copy_file_range moves the bytes
//   in the kernel (reflinks on filesystems that share extents) and they count as
//   `offloaded`; without the addon, or when the kernel refuses (EXDEV, EINVAL, ENOSYS,
//   EOPNOTSUPP), bytes go through a 1 MiB buffer with pread/pwrite and count as `emulated`.
//   With allowEmulation false (issueCopy mode 'offload') those cases fail with EOPNOTSUPP
//   instead. Sources behave as if all were read before any destination is written: on the
//   same file, a source overlapping any destination of the request is read into memory
//   first (bounded by limits.copy.maxBytes, default 64 MiB) and written back as `emulated`.
// - blockStatus on a regular file walks it with lseek SEEK_DATA / SEEK_HOLE (native addon,
//   on the thread pool): holes are { hole, zero }, the rest data. At most
//   FILE_MAX_STATUS_EXTENTS extents per answer (the caller asks again from where it ended);
//   boundaries finer than the logical block size (a filesystem with smaller blocks) are
//   widened to whole blocks that count as data unless every part is a hole. A filesystem
//   without hole tracking reports everything as data, which is correct. Block devices, the
//   missing addon, and lseek failing with EINVAL / EOPNOTSUPP / ENOSYS answer one data
//   extent (the default); other lseek errors fail the request.
// - close() waits for operations in flight, so no file descriptor is used after it closes.

import { constants, type Stats } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import type {
  BlockDevice,
  BlockStatusExtent,
  CopyPathBytes,
  CopyRange,
  DeviceCopyOptions,
  DeviceDetails,
  WriteOptions,
  WriteZeroesOptions,
} from '../block/device.js';
import { BlockDeviceBase } from '../block/base.js';
import { overlaps } from '../block/checks.js';
import { BlockError, CopyError, ErrorCode, throwIfAborted, toBlockError } from '../block/errors.js';
import type { CopyLimits, QueueLimits } from '../block/limits.js';
import { isNativeError, loadNative, nativeStatus, type NativeAddon } from '../native/addon.js';
import { ExtentList, alignRuns } from '../util/extent-list.js';

export interface FileDeviceOptions {
  /** A regular file or a block device node. */
  path: string;
  /** Default: the path. */
  name?: string;
  /** Device size in bytes; see the top of this file for how it meets the file's length. */
  size?: number;
  /** Create the file when missing (needs size). */
  create?: boolean;
  readOnly?: boolean;
  /** 512 or 4096. Default 512 for files, the device's own for block devices. */
  logicalBlockSize?: 512 | 4096;
  /** Default max(logicalBlockSize, 4096). */
  physicalBlockSize?: number;
  /** Largest read or write; default 8 MiB. */
  maxTransferBytes?: number;
  /** false: no copy offload. Otherwise overrides of FILE_DEFAULT_COPY_LIMITS. */
  copy?: false | Partial<CopyLimits>;
  /**
   * The native addon to use. Default: loadNative(). null forces the pure-TypeScript paths
   * (tests use it to cover both in one process).
   */
  native?: NativeAddon | null;
}

export const FILE_DEFAULT_MAX_TRANSFER_BYTES = 8 * 1024 * 1024;
export const FILE_DEFAULT_COPY_LIMITS: Readonly<CopyLimits> = Object.freeze({
  maxBytes: 64 * 1024 * 1024,
  maxHwBytes: 64 * 1024 * 1024,
  maxRanges: 256,
  maxRangeBytes: 64 * 1024 * 1024,
});
/** Most extents in one blockStatus answer: each costs two lseek calls. */
export const FILE_MAX_STATUS_EXTENTS = 1024;
/** Buffer for emulated copies and for zeroes written where fallocate cannot. */
const BOUNCE_BYTES = 1024 * 1024;

/** copy_file_range / fallocate errors that mean "not here", not "failed": fall back. */
const COPY_FALLBACK_CODES = new Set(['EXDEV', 'EINVAL', 'ENOSYS', 'EOPNOTSUPP']);
const FALLOCATE_FALLBACK_CODES = new Set(['ENOSYS', 'EOPNOTSUPP']);
/** lseek errors that mean "SEEK_DATA / SEEK_HOLE is not available here": answer "data". */
const SEEK_FALLBACK_CODES = new Set(['EINVAL', 'ENOSYS', 'EOPNOTSUPP']);

let zeroes: Buffer | undefined;

/** Reads buf.length bytes at pos, looping on short reads; bytes past end of file read as zeroes. */
async function readAt(fh: FileHandle, pos: number, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) {
      buf.fill(0, done);
      return;
    }
    done += bytesRead;
  }
}

/** Writes all of data at pos, looping on short writes; onProgress sees the bytes written so far. */
async function writeAt(fh: FileHandle, pos: number, data: Uint8Array, onProgress?: (n: number) => void) {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, pos + done);
    if (bytesWritten === 0) throw new BlockError(ErrorCode.EIO, `write at ${pos + done} made no progress`);
    done += bytesWritten;
    onProgress?.(done);
  }
}

function describeOpenError(err: unknown, path: string): BlockError {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOENT')
    return new BlockError(
      ErrorCode.ENODEV,
      `open ${path}: no such file; pass create: true with a size to make one`,
      {
        cause: err,
      },
    );
  if (code === 'EACCES' || code === 'EROFS')
    return new BlockError(ErrorCode.EPERM, `open ${path}: ${String(code)}; open it with readOnly: true`, {
      cause: err,
    });
  if (code === 'EISDIR')
    return new BlockError(ErrorCode.EINVAL, `open ${path}: is a directory`, { cause: err });
  return toBlockError(err, `open ${path}`);
}

/** Opens the backing file; with create, makes it when missing (and says so). */
async function openBacking(path: string, readOnly: boolean, create: boolean) {
  const flags = readOnly ? constants.O_RDONLY : constants.O_RDWR;
  try {
    return { fh: await open(path, flags), created: false };
  } catch (err) {
    if (!create || (err as { code?: unknown }).code !== 'ENOENT') throw describeOpenError(err, path);
  }
  try {
    return { fh: await open(path, flags | constants.O_CREAT | constants.O_EXCL, 0o644), created: true };
  } catch (err) {
    throw describeOpenError(err, path);
  }
}

/** A second descriptor on the same open file, for FUA writes; /proc/self/fd avoids a path race. */
async function openDsync(
  fh: FileHandle,
  path: string,
  identity: string,
  block: boolean,
): Promise<FileHandle> {
  const flags = constants.O_WRONLY | constants.O_DSYNC;
  let dsync: FileHandle;
  try {
    dsync = await open(`/proc/self/fd/${fh.fd}`, flags);
  } catch {
    dsync = await open(path, flags);
  }
  if (identityOf(await dsync.stat(), block) !== identity) {
    await dsync.close();
    throw new BlockError(ErrorCode.EIO, `open ${path}: the file was replaced while it was being opened`);
  }
  return dsync;
}

function identityOf(st: Stats, block: boolean): string {
  return block ? `blk:${st.rdev}` : `${st.dev}:${st.ino}`;
}

function einval(msg: string): BlockError {
  return new BlockError(ErrorCode.EINVAL, msg);
}

interface FileDeviceInit {
  name: string;
  size: number;
  limits: QueueLimits;
  path: string;
  fh: FileHandle;
  dsync: FileHandle | undefined;
  identity: string;
  block: boolean;
  native: NativeAddon | undefined;
  nativeReason: string;
}

export class FileDevice extends BlockDeviceBase {
  readonly kind = 'file';
  readonly path: string;
  readonly #fh: FileHandle;
  /** O_DSYNC descriptor for FUA writes; absent on read-only devices. */
  readonly #dsync: FileHandle | undefined;
  /** dev:ino (rdev for block devices): two devices on one file see each other's overlaps. */
  readonly #identity: string;
  readonly #block: boolean;
  readonly #native: NativeAddon | undefined;
  readonly #nativeReason: string;
  /** fallocate modes the filesystem refused with EOPNOTSUPP/ENOSYS: written as zeroes from then on. */
  readonly #refusedModes = new Set<number>();
  /** Operations in flight (on this device, or copies reading from it): close waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>();

  private constructor(init: FileDeviceInit) {
    super(init.name, init.size, init.limits);
    this.path = init.path;
    this.#fh = init.fh;
    this.#dsync = init.dsync;
    this.#identity = init.identity;
    this.#block = init.block;
    this.#native = init.native;
    this.#nativeReason = init.nativeReason;
  }

  /** Opens (and with create, makes) the backing file. Errors are BlockErrors; nothing is left open. */
  static async open(options: FileDeviceOptions): Promise<FileDevice> {
    const { path } = options;
    if (typeof path !== 'string' || path === '') throw einval('file device: path must be a non-empty string');
    const readOnly = options.readOnly ?? false;
    const create = options.create ?? false;
    if (create && readOnly)
      throw einval(`open ${path}: create and readOnly together cannot make a usable file`);
    const wanted = options.size;
    if (wanted !== undefined && (!Number.isSafeInteger(wanted) || wanted < 0))
      throw einval(`open ${path}: size ${wanted} must be a non-negative integer`);
    const native = options.native === undefined ? loadNative() : (options.native ?? undefined);
    const nativeReason = options.native === null ? 'disabled by the caller' : nativeStatus().reason;

    const { fh, created } = await openBacking(path, readOnly, create);
    let dsync: FileHandle | undefined;
    try {
      const st = await fh.stat();
      const block = st.isBlockDevice();
      if (!block && !st.isFile()) throw einval(`open ${path}: not a regular file or a block device`);
      let backingSize = st.size;
      let deviceLbs = 512;
      if (block) {
        if (!native)
          throw new BlockError(
            ErrorCode.EOPNOTSUPP,
            `open ${path}: a block device needs the native addon for its size, which is not loaded (${nativeReason})`,
          );
        backingSize = native.blockDeviceSize(fh.fd);
        deviceLbs = native.blockDeviceLogicalBlockSize(fh.fd);
      }
      const lbs = options.logicalBlockSize ?? (deviceLbs <= 512 ? 512 : 4096);
      if (lbs < deviceLbs)
        throw einval(`open ${path}: logicalBlockSize ${lbs} is smaller than the device's ${deviceLbs}`);
      if (created && wanted === undefined) throw einval(`open ${path}: creating a file needs a size`);
      const size = wanted ?? backingSize;
      if (size % lbs !== 0)
        throw einval(
          `open ${path}: size ${size} is not a multiple of the ${lbs}-byte logical block size; ` +
            `pass size: ${size - (size % lbs)} to use the whole blocks`,
        );
      if (size > backingSize) {
        if (block) throw einval(`open ${path}: size ${size} exceeds the block device's ${backingSize} bytes`);
        if (readOnly)
          throw einval(
            `open ${path}: the file has ${backingSize} bytes, fewer than size ${size}; open it writable to extend it`,
          );
        await fh.truncate(size);
      }
      const identity = identityOf(st, block);
      if (!readOnly) dsync = await openDsync(fh, path, identity, block);
      const wholeDevice = Math.max(lbs, size);
      const limits: QueueLimits = {
        logicalBlockSize: lbs,
        physicalBlockSize: options.physicalBlockSize ?? Math.max(lbs, 4096),
        maxTransferBytes: options.maxTransferBytes ?? FILE_DEFAULT_MAX_TRANSFER_BYTES,
        readOnly,
        ...(options.copy === false ? {} : { copy: { ...FILE_DEFAULT_COPY_LIMITS, ...options.copy } }),
        discard: { granularity: lbs, maxBytes: wholeDevice, zeroesData: true },
        writeZeroes: { maxBytes: wholeDevice, unmaps: native !== undefined },
      };
      const name = options.name ?? path;
      return new FileDevice({ name, size, limits, path, fh, dsync, identity, block, native, nativeReason });
    } catch (err) {
      await dsync?.close().catch(() => {});
      await fh.close().catch(() => {});
      if (created) await unlink(path).catch(() => {});
      throw toBlockError(err, `open ${path}`);
    }
  }

  override canCopyFrom(source: BlockDevice): boolean {
    return this.limits.copy !== undefined && source instanceof FileDevice;
  }

  override details(): DeviceDetails {
    const punch = this.#fallocMode('punch');
    const zero = this.#fallocMode('zero');
    const fallocate = this.#native && !(this.#refusedModes.has(punch) && this.#refusedModes.has(zero));
    return {
      path: this.path,
      backing: this.#block ? 'block device' : 'regular file',
      copyEngine: this.#copyEngine(),
      fallocate: fallocate ? 'native' : 'emulated',
      fua: 'O_DSYNC',
    };
  }

  protected doRead(offset: number, buffer: Uint8Array): Promise<void> {
    return this.#track(readAt(this.#fh, offset, buffer));
  }

  protected doWrite(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const fh = options?.fua === true && this.#dsync ? this.#dsync : this.#fh;
    return this.#track(writeAt(fh, offset, data));
  }

  protected doFlush(): Promise<void> {
    return this.#track(this.#fh.datasync());
  }

  protected async doClose(): Promise<void> {
    // Base.close() has marked the device closed, so nothing new starts; let the rest finish.
    await Promise.allSettled([...this.#inFlight]);
    await this.#dsync?.close();
    await this.#fh.close();
  }

  protected override doDiscard(offset: number, length: number): Promise<void> {
    return this.#track(this.#zeroRange(offset, length, true));
  }

  protected override doWriteZeroes(
    offset: number,
    length: number,
    options?: WriteZeroesOptions,
  ): Promise<void> {
    return this.#track(this.#zeroRange(offset, length, options?.noUnmap !== true));
  }

  protected override doBlockStatus(offset: number, length: number): Promise<BlockStatusExtent[]> {
    const native = this.#native;
    if (!native || this.#block) return super.doBlockStatus(offset, length);
    return this.#track(this.#seekExtents(native, offset, length));
  }

  protected override doCopy(source: BlockDevice, ranges: readonly CopyRange[], options: DeviceCopyOptions) {
    const src = source as FileDevice; // canCopyFrom admits only FileDevices
    if (src.closed)
      return Promise.reject(
        new BlockError(ErrorCode.EBADF, `copy on ${this.name}: source ${src.name} is closed`),
      );
    const work = this.#copy(src, ranges, options);
    if (src !== this) void src.#track(work);
    return this.#track(work);
  }

  #copyEngine(): string {
    if (!this.#native) return `emulated (native addon not loaded: ${this.#nativeReason})`;
    // copy_file_range takes regular files only (EINVAL otherwise), so block devices never try it.
    if (this.#block) return 'emulated (copy_file_range does not work on block devices)';
    return 'copy_file_range';
  }

  /** The addon when copy_file_range can serve a copy between src and this device. */
  #kernelCopy(src: FileDevice): NativeAddon | undefined {
    return this.#block || src.#block ? undefined : this.#native;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const done = () => this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  #fallocMode(kind: 'punch' | 'zero'): number {
    const n = this.#native;
    if (!n) return 0;
    return kind === 'punch'
      ? n.FALLOC_FL_PUNCH_HOLE | n.FALLOC_FL_KEEP_SIZE
      : n.FALLOC_FL_ZERO_RANGE | n.FALLOC_FL_KEEP_SIZE;
  }

  /** Walks [offset, offset+length) with SEEK_DATA / SEEK_HOLE, at most FILE_MAX_STATUS_EXTENTS extents. */
  async #seekExtents(native: NativeAddon, offset: number, length: number): Promise<BlockStatusExtent[]> {
    const fd = this.#fh.fd;
    const end = offset + length;
    const out = new ExtentList();
    try {
      for (let pos = offset; pos < end && out.count < FILE_MAX_STATUS_EXTENTS;) {
        // -1: no data from pos to the end of the file, and bytes past it read as zeroes.
        const data = await native.lseekData(fd, pos, native.SEEK_DATA);
        const dataAt = data < 0 ? end : Math.min(end, Math.max(pos, data));
        out.push(dataAt - pos, true, true);
        pos = dataAt;
        if (pos >= end) break;
        const hole = await native.lseekData(fd, pos, native.SEEK_HOLE);
        if (hole < 0) {
          // The file shrank under us since SEEK_DATA: the rest reads as zeroes.
          out.push(end - pos, true, true);
          break;
        }
        // A hole at pos means a concurrent change; one block of data is still a true answer.
        const holeAt = hole > pos ? Math.min(end, hole) : Math.min(end, pos + this.limits.logicalBlockSize);
        out.push(holeAt - pos, false, false);
        pos = holeAt;
      }
    } catch (err) {
      if (isNativeError(err) && SEEK_FALLBACK_CODES.has(err.code)) return super.doBlockStatus(offset, length);
      throw err;
    }
    // The last step may have added two extents (a hole and data) past the cap.
    return alignRuns(out.toArray(), this.limits.logicalBlockSize).slice(0, FILE_MAX_STATUS_EXTENTS);
  }

  /** Zeroes a range: punch a hole (when unmapping is allowed), else zero the range, else write zeroes. */
  async #zeroRange(offset: number, length: number, unmap: boolean): Promise<void> {
    if (this.#native) {
      const modes = unmap
        ? [this.#fallocMode('punch'), this.#fallocMode('zero')]
        : [this.#fallocMode('zero')];
      for (const mode of modes) {
        if (this.#refusedModes.has(mode)) continue;
        try {
          await this.#native.fallocate(this.#fh.fd, mode, offset, length);
          return;
        } catch (err) {
          if (!isNativeError(err) || !FALLOCATE_FALLBACK_CODES.has(err.code)) throw err;
          this.#refusedModes.add(mode);
        }
      }
    }
    zeroes ??= Buffer.alloc(BOUNCE_BYTES);
    for (let done = 0; done < length; done += BOUNCE_BYTES) {
      await writeAt(this.#fh, offset + done, zeroes.subarray(0, Math.min(BOUNCE_BYTES, length - done)));
    }
  }

  async #copy(
    src: FileDevice,
    ranges: readonly CopyRange[],
    options: DeviceCopyOptions,
  ): Promise<CopyPathBytes> {
    // On one file, a source that overlaps any destination must be read before anything is written.
    const sameFile = src.#identity === this.#identity;
    const overlapping = ranges.map(
      (r) => sameFile && ranges.some((d) => overlaps(r.src, r.len, d.dst, d.len)),
    );
    if (!options.allowEmulation) {
      if (!this.#kernelCopy(src)) {
        const engine = (src.#block ? src : this).#copyEngine();
        throw new BlockError(
          ErrorCode.EOPNOTSUPP,
          `copy on ${this.name}: offload from ${src.name} needs copy_file_range, but the engine is ${engine}`,
        );
      }
      if (overlapping.some(Boolean))
        throw new BlockError(
          ErrorCode.EOPNOTSUPP,
          `copy on ${this.name}: sources overlap destinations in one file, which the kernel cannot copy; allow emulation`,
        );
    }
    const completed = ranges.map(() => 0);
    const paths = { offloaded: 0, emulated: 0 };
    try {
      const snapshots: Array<Buffer | undefined> = [];
      for (const [i, r] of ranges.entries()) {
        if (!overlapping[i]) continue;
        const buf = Buffer.allocUnsafe(r.len);
        await readAt(src.#fh, r.src, buf);
        snapshots[i] = buf;
      }
      for (const [i, r] of ranges.entries()) {
        throwIfAborted(options.signal, `copy on ${this.name}`);
        const snap = snapshots[i];
        const progress = (path: 'offloaded' | 'emulated', base: number) => (n: number) => {
          paths[path] += base + n - completed[i]!;
          completed[i] = base + n;
        };
        if (snap) await writeAt(this.#fh, r.dst, snap, progress('emulated', 0));
        else await this.#copyRange(src, r, options.allowEmulation, progress);
      }
    } catch (err) {
      throw new CopyError(toBlockError(err, `copy on ${this.name}`), completed, paths);
    }
    return paths;
  }

  /** One range whose source overlaps no destination: copy_file_range, else (or for the rest) pread/pwrite. */
  async #copyRange(
    src: FileDevice,
    r: CopyRange,
    allowEmulation: boolean,
    progress: (path: 'offloaded' | 'emulated', base: number) => (n: number) => void,
  ): Promise<void> {
    let done = 0;
    const kernel = this.#kernelCopy(src);
    if (kernel) {
      const offloaded = progress('offloaded', 0);
      try {
        done = await kernel.copyFileRange(src.#fh.fd, r.src, this.#fh.fd, r.dst, r.len);
        offloaded(done);
      } catch (err) {
        if (!isNativeError(err)) throw err;
        done = err.bytesCopied ?? 0;
        offloaded(done);
        if (!COPY_FALLBACK_CODES.has(err.code)) throw err;
        if (!allowEmulation)
          throw new BlockError(
            ErrorCode.EOPNOTSUPP,
            `copy on ${this.name}: copy_file_range from ${src.name} failed with ${err.code}; allow emulation`,
            { cause: err },
          );
      }
      if (done === r.len) return;
      // A short count means the source file ended (it was truncated under us): the rest reads as zeroes.
      if (!allowEmulation)
        throw new BlockError(
          ErrorCode.EIO,
          `copy on ${this.name}: ${src.name} ended at ${r.src + done}, inside the device; was the file truncated?`,
        );
    }
    const emulated = progress('emulated', done);
    const buf = Buffer.allocUnsafe(Math.min(BOUNCE_BYTES, r.len - done));
    for (let pos = done; pos < r.len;) {
      const n = Math.min(buf.length, r.len - pos);
      const piece = buf.subarray(0, n);
      await readAt(src.#fh, r.src + pos, piece);
      await writeAt(this.#fh, r.dst + pos, piece);
      pos += n;
      emulated(pos - done);
    }
  }
}
