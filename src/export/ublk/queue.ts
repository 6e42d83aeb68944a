// One ublk queue: `depth` tags, each a slot for one request the kernel hands over. Every tag
// is fetched once (FETCH_REQ); when the kernel fills a tag, the addon's queue thread copies
// the tag's descriptor into a completion batch; the request is served from the BlockDevice
// and committed with COMMIT_AND_FETCH_REQ (bytes done, or -errno), which also fetches the
// tag's next request. Many tags are served at once; commits finished in the same turn of the
// event loop go to the queue thread in one batch.
//
// Data moves with UBLK_F_USER_COPY: a WRITE's data is read (pread) from /dev/ublkcN at the
// request's offset (userCopyOffset), a READ's data is written there (pwrite). The queue
// thread does both when the addon can (QUEUE_COPY): each tag owns a slice of one copy buffer
// (maxIoBytes); the thread fills a WRITE's slice before handing the request over and writes a
// READ's slice just before its commit — no trip through libuv's thread pool, which costs two
// thread hand-offs per request. Requests the thread did not copy (zone operations, an older
// addon) take the same pread/pwrite through Node's fs. The buffer is per tag so a zero-copy
// mode (registered buffers, kernel 6.15+) can later replace the copies without reshaping the
// request handling.

import { read as fsRead, write as fsWrite } from 'node:fs';

import type { BlockDevice } from '../../block/device.js';
import type { UblkNative, UblkQueueHandle } from '../../native/addon.js';
import { resultForError, UblkError } from './errors.js';
import { isZoneOp, serveZoneRequest, type ZoneResult } from './zones.js';
import {
  descAreaBytes,
  ioOp,
  UBLK_IO_F,
  UBLK_IO_OP,
  UBLK_IO_RES,
  UBLK_U_IO,
  userCopyOffset,
} from './uapi.js';

const SECTOR = 512;
const TAG_THREAD_FAILED = 0xffff;
const EOPNOTSUPP = -95;
const EIO = -5;

export interface UblkQueueOptions {
  native: UblkNative;
  /** /dev/ublkcN, open read-write; the caller closes it after stop(). */
  charFd: number;
  qid: number;
  depth: number;
  device: BlockDevice;
  /** The device's max_io_buf_bytes: the largest request. With it, the queue thread copies data. */
  maxIoBytes?: number;
  /** Called once when the queue can no longer serve (its thread failed, or a command failed). */
  onError?: (err: UblkError) => void;
}

/** A request as the descriptor gives it (bytes, not sectors). */
export interface UblkRequest {
  readonly tag: number;
  readonly op: number;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  /** The queue thread put a WRITE's data in the tag's copy slice (or failed to). */
  readonly copiedIn: boolean;
  readonly copyFailed: boolean;
}

/** Completion entry flags from the queue thread (native/uring.c). */
const ENTRY_COPIED_IN = 2;
const ENTRY_COPY_FAILED = 4;

function pread(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fsRead(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

function pwrite(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fsWrite(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

export class UblkQueue {
  readonly qid: number;
  readonly depth: number;
  /** Requests served, by result: ok (result >= 0) and failed. */
  readonly stats = { served: 0, failed: 0, aborted: 0 };
  private readonly o: UblkQueueOptions;
  private handle: UblkQueueHandle | undefined;
  private readonly buffers: (Buffer | undefined)[];
  /** depth x maxIoBytes, tag t's slice at t * maxIoBytes; the queue thread copies to/from it. */
  private readonly copy: Buffer | undefined;
  private readonly perTag: number;
  private commits: { tag: number; result: number; copyLen: number; addr?: bigint | undefined }[] = [];
  private commitScheduled = false;
  private stopped = false;
  private failed = false;

  constructor(o: UblkQueueOptions) {
    this.o = o;
    this.qid = o.qid;
    this.depth = o.depth;
    this.buffers = new Array<Buffer | undefined>(o.depth);
    // Not zeroed: a slice is read only after the thread or the device filled it. Pages are
    // touched only as tags use them.
    this.perTag = o.maxIoBytes ?? 0;
    this.copy =
      o.native.QUEUE_COPY === 1 && this.perTag >= SECTOR
        ? Buffer.allocUnsafeSlow(o.depth * this.perTag)
        : undefined;
  }

  /** True when the queue thread moves request data (QUEUE_COPY and a known maxIoBytes). */
  get threadCopies(): boolean {
    return this.copy !== undefined;
  }

  /** Opens the ring, starts the queue thread and fetches every tag. */
  start(): void {
    const { native } = this.o;
    this.handle = this.copy
      ? native.queueOpen(
          this.o.charFd,
          this.qid,
          this.depth,
          descAreaBytes(this.depth),
          (b) => this.onBatch(b),
          this.copy,
          this.perTag,
          userCopyOffset(this.qid, 0),
          userCopyOffset(this.qid, 1) - userCopyOffset(this.qid, 0),
          1 << UBLK_IO_OP.WRITE,
        )
      : native.queueOpen(this.o.charFd, this.qid, this.depth, descAreaBytes(this.depth), (b) =>
          this.onBatch(b),
        );
    const cmds = Buffer.alloc(this.depth * native.QUEUE_CMD_BYTES);
    for (let tag = 0; tag < this.depth; tag++) {
      const at = tag * native.QUEUE_CMD_BYTES;
      cmds.writeUInt32LE(UBLK_U_IO.FETCH_REQ, at);
      cmds.writeUInt16LE(tag, at + 4);
    }
    native.queueSubmit(this.handle, cmds);
  }

  /** Stops the thread and closes the ring (the kernel aborts the fetches still in it). */
  stop(): void {
    this.stopped = true;
    if (this.handle) this.o.native.queueStop(this.handle);
  }

  private fail(err: UblkError): void {
    if (this.failed) return;
    this.failed = true;
    this.o.onError?.(err);
  }

  private onBatch(b: Buffer): void {
    const size = this.o.native.QUEUE_CQE_BYTES;
    for (let at = 0; at + size <= b.length; at += size) {
      const tag = b.readUInt16LE(at);
      const res = b.readInt32LE(at + 4);
      if (tag === TAG_THREAD_FAILED && b.readUInt16LE(at + 2) === 1) {
        this.fail(new UblkError('EIO', `ublk queue ${this.qid}: its io_uring thread failed (errno ${-res})`));
        continue;
      }
      if (res === UBLK_IO_RES.OK) {
        const entryFlags = b.readUInt16LE(at + 2);
        const opFlags = b.readUInt32LE(at + 8);
        const nrSectors = b.readUInt32LE(at + 12);
        const startSector = b.readUInt32LE(at + 16) + b.readUInt32LE(at + 20) * 2 ** 32;
        this.serve({
          tag,
          op: ioOp(opFlags),
          flags: opFlags & ~0xff,
          offset: startSector * SECTOR,
          length: nrSectors * SECTOR,
          copiedIn: (entryFlags & ENTRY_COPIED_IN) !== 0,
          copyFailed: (entryFlags & ENTRY_COPY_FAILED) !== 0,
        });
      } else if (res === UBLK_IO_RES.ABORT) {
        this.stats.aborted++; // the device is going away: this tag is not fetched again
      } else {
        this.fail(
          new UblkError(
            'EIO',
            `ublk queue ${this.qid} tag ${tag}: the kernel refused a command (res ${res})`,
          ),
        );
      }
    }
  }

  private buffer(tag: number, len: number): Buffer {
    let buf = this.buffers[tag];
    if (!buf || buf.length < len) {
      buf = Buffer.allocUnsafe(len);
      this.buffers[tag] = buf;
    }
    return buf;
  }

  private serve(req: UblkRequest): void {
    const run: Promise<ZoneResult & { copyLen?: number }> = isZoneOp(req.op)
      ? this.executeZone(req)
      : this.copy
        ? this.executeWithThreadCopy(req)
        : this.execute(req).then((result) => ({ result }));
    run.then(
      ({ result, appendLba, copyLen }) => {
        this.stats.served++;
        this.commit(req.tag, result, appendLba, copyLen);
      },
      (err: unknown) => {
        this.stats.failed++;
        this.commit(req.tag, resultForError(err));
      },
    );
  }

  /** Runs one request; resolves with its result (bytes for READ/WRITE, 0 else, or -errno). */
  private async execute(req: UblkRequest): Promise<number> {
    const dev = this.o.device;
    const fd = this.o.charFd;
    switch (req.op) {
      case UBLK_IO_OP.READ: {
        const buf = this.buffer(req.tag, req.length);
        const data = buf.subarray(0, req.length);
        await dev.read(req.offset, data);
        let done = 0;
        while (done < req.length) {
          const n = await pwrite(
            fd,
            buf.subarray(done),
            req.length - done,
            userCopyOffset(this.qid, req.tag, done),
          );
          if (n <= 0) break;
          done += n;
        }
        return done > 0 ? done : EIO;
      }
      case UBLK_IO_OP.WRITE: {
        const buf = this.buffer(req.tag, req.length);
        let got = 0;
        while (got < req.length) {
          const n = await pread(
            fd,
            buf.subarray(got),
            req.length - got,
            userCopyOffset(this.qid, req.tag, got),
          );
          if (n <= 0) break;
          got += n;
        }
        if (got !== req.length) return EIO;
        await dev.write(req.offset, buf.subarray(0, req.length), { fua: (req.flags & UBLK_IO_F.FUA) !== 0 });
        return req.length;
      }
      case UBLK_IO_OP.FLUSH:
        await dev.flush();
        return 0;
      case UBLK_IO_OP.DISCARD:
        await dev.discard(req.offset, req.length);
        return 0;
      case UBLK_IO_OP.WRITE_ZEROES:
        await dev.writeZeroes(req.offset, req.length, { noUnmap: (req.flags & UBLK_IO_F.NOUNMAP) !== 0 });
        return 0;
      default:
        return EOPNOTSUPP;
    }
  }

  /**
   * READ and WRITE with the queue thread moving the data: a WRITE's data is already in the
   * tag's slice; a READ fills the slice and its commit asks the thread to write it out
   * (copyLen). Everything else as execute().
   */
  private async executeWithThreadCopy(req: UblkRequest): Promise<{ result: number; copyLen?: number }> {
    const dev = this.o.device;
    const fits = req.length <= this.perTag;
    if (req.op === UBLK_IO_OP.WRITE && (req.copiedIn || req.copyFailed)) {
      if (req.copyFailed) return { result: EIO };
      const at = req.tag * this.perTag;
      await dev.write(req.offset, this.copy!.subarray(at, at + req.length), {
        fua: (req.flags & UBLK_IO_F.FUA) !== 0,
      });
      return { result: req.length };
    }
    if (req.op === UBLK_IO_OP.READ && fits) {
      const at = req.tag * this.perTag;
      await dev.read(req.offset, this.copy!.subarray(at, at + req.length));
      return { result: req.length, copyLen: req.length };
    }
    return { result: await this.execute(req) };
  }

  /** Zone requests (zones.ts), with this tag's user-copy data path. */
  private executeZone(req: UblkRequest): Promise<ZoneResult> {
    const fd = this.o.charFd;
    return serveZoneRequest(
      this.o.device,
      { op: req.op, fua: (req.flags & UBLK_IO_F.FUA) !== 0, offset: req.offset, count: req.length / SECTOR },
      {
        read: async (len) => {
          const buf = this.buffer(req.tag, len);
          const n = await pread(fd, buf, len, userCopyOffset(this.qid, req.tag));
          if (n !== len) throw new UblkError('EIO', `ublk queue ${this.qid} tag ${req.tag}: short data read`);
          return buf;
        },
        write: (buf) => pwrite(fd, buf, buf.length, userCopyOffset(this.qid, req.tag)),
      },
    );
  }

  private commit(tag: number, result: number, addr?: bigint, copyLen = 0): void {
    if (this.stopped) return;
    this.commits.push({ tag, result, addr, copyLen });
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    // Requests that finish in the same turn of the event loop go in one batch.
    setImmediate(() => this.flushCommits());
  }

  private flushCommits(): void {
    this.commitScheduled = false;
    if (this.stopped || !this.handle || this.commits.length === 0) return;
    const { native } = this.o;
    const size = native.QUEUE_CMD_BYTES;
    const cmds = Buffer.alloc(this.commits.length * size);
    this.commits.forEach((c, i) => {
      cmds.writeUInt32LE(UBLK_U_IO.COMMIT_AND_FETCH_REQ, i * size);
      cmds.writeUInt16LE(c.tag, i * size + 4);
      cmds.writeInt32LE(c.result, i * size + 8);
      if (c.copyLen > 0) cmds.writeUInt32LE(c.copyLen, i * size + 12); // the thread writes the data first
      if (c.addr !== undefined) cmds.writeBigUInt64LE(c.addr, i * size + 16); // zone_append_lba
    });
    this.commits = [];
    native.queueSubmit(this.handle, cmds);
  }
}
