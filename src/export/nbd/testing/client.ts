// A minimal NBD client for tests of the server: fixed newstyle handshake with NBD_OPT_GO (or
// NBD_OPT_LIST), then simple replies only (no structured replies negotiated), with many
// requests in flight matched by cookie. Written from the spec with no server code shared, so
// it checks the server rather than agreeing with it.

import { connect, type Socket } from 'node:net';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_IHAVEOPT,
  NBD_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_REPLY_MAGIC,
  NBD_REP_ACK,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
} from '../protocol.js';

type Address = { host: string; port: number } | { path: string };

/** An option the server refused (NBD_REP_ERR_*). */
export class OptionRefused extends Error {
  constructor(readonly reply: number) {
    super(`option refused: reply type 0x${reply.toString(16)}`);
  }
}

export class TestNbdClient {
  readonly #socket: Socket;
  #buf = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #ended: Error | undefined;
  #nextCookie = 1n;
  readonly #pending = new Map<
    bigint,
    { length: number; resolve: (r: { error: number; data: Buffer }) => void }
  >();
  #transmitting = false;
  size = 0;
  flags = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (b: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, b]);
      this.#wake();
    });
    const end = (why: string) => {
      this.#ended ??= new Error(why);
      this.#wake();
      for (const p of this.#pending.values()) p.resolve({ error: -1, data: Buffer.alloc(0) });
      this.#pending.clear();
    };
    socket.on('end', () => end('server closed the connection'));
    socket.on('close', () => end('connection closed'));
    socket.on('error', (e) => end(e.message));
  }

  /** Connects and reads the greeting. */
  static async connect(address: Address): Promise<TestNbdClient> {
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new TestNbdClient(socket);
    const g = await c.#read(18);
    if (g.readBigUInt64BE(0) !== NBD_MAGIC || g.readBigUInt64BE(8) !== NBD_IHAVEOPT)
      throw new Error('bad greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    socket.write(flags);
    return c;
  }

  /** Connects and enters transmission on `name`. */
  static async open(address: Address, name: string): Promise<TestNbdClient> {
    const c = await TestNbdClient.connect(address);
    try {
      await c.go(name);
    } catch (err) {
      c.destroy();
      throw err;
    }
    return c;
  }

  get closed(): boolean {
    return this.#ended !== undefined;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
    if (this.#transmitting) this.#drainReplies();
  }

  async #read(n: number): Promise<Buffer> {
    while (this.#buf.length < n) {
      if (this.#ended) throw this.#ended;
      await new Promise<void>((r) => (this.#waiter = r));
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return Buffer.from(out);
  }

  #option(option: number, payload: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(payload.length, 12);
    this.#socket.write(Buffer.concat([h, payload]));
  }

  async #reply(): Promise<{ type: number; data: Buffer }> {
    const h = await this.#read(20);
    if (h.readBigUInt64BE(0) !== NBD_OPT_REPLY_MAGIC) throw new Error('bad option reply magic');
    const type = h.readUInt32BE(12);
    const data = await this.#read(h.readUInt32BE(16));
    return { type, data };
  }

  /** NBD_OPT_LIST: the export names. */
  async list(): Promise<string[]> {
    this.#option(NBD_OPT_LIST, Buffer.alloc(0));
    const names: string[] = [];
    for (;;) {
      const r = await this.#reply();
      if (r.type === NBD_REP_ACK) return names;
      if (r.type & NBD_REP_FLAG_ERROR) throw new OptionRefused(r.type);
      if (r.type === NBD_REP_SERVER) names.push(r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    }
  }

  /** NBD_OPT_GO; throws OptionRefused (e.g. NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_SHUTDOWN). */
  async go(name: string): Promise<void> {
    const n = Buffer.from(name);
    const p = Buffer.alloc(4 + n.length + 2);
    p.writeUInt32BE(n.length, 0);
    n.copy(p, 4);
    this.#option(NBD_OPT_GO, p);
    for (;;) {
      const r = await this.#reply();
      if (r.type & NBD_REP_FLAG_ERROR) throw new OptionRefused(r.type);
      if (r.type === NBD_REP_INFO && r.data.readUInt16BE(0) === 0) {
        this.size = Number(r.data.readBigUInt64BE(2));
        this.flags = r.data.readUInt16BE(10);
      }
      if (r.type === NBD_REP_ACK) break;
    }
    this.#transmitting = true;
    this.#drainReplies();
  }

  /** NBD_OPT_ABORT without waiting. */
  abort(): void {
    this.#option(NBD_OPT_ABORT, Buffer.alloc(0));
  }

  #drainReplies(): void {
    for (;;) {
      if (this.#buf.length < 16) return;
      if (this.#buf.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) {
        this.#socket.destroy(new Error('bad reply magic'));
        return;
      }
      const error = this.#buf.readUInt32BE(4);
      const cookie = this.#buf.readBigUInt64BE(8);
      const p = this.#pending.get(cookie);
      if (!p) {
        this.#socket.destroy(new Error(`reply to unknown cookie ${cookie}`));
        return;
      }
      const dataLen = error === 0 ? p.length : 0;
      if (this.#buf.length < 16 + dataLen) return;
      const data = Buffer.from(this.#buf.subarray(16, 16 + dataLen));
      this.#buf = this.#buf.subarray(16 + dataLen);
      this.#pending.delete(cookie);
      p.resolve({ error, data });
    }
  }

  #request(
    type: number,
    offset: number,
    length: number,
    payload?: Buffer,
  ): Promise<{ error: number; data: Buffer }> {
    if (this.#ended) return Promise.resolve({ error: -1, data: Buffer.alloc(0) });
    const cookie = this.#nextCookie++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    const p = new Promise<{ error: number; data: Buffer }>((resolve) =>
      this.#pending.set(cookie, { length: type === NBD_CMD_READ ? length : 0, resolve }),
    );
    this.#socket.write(payload ? Buffer.concat([h, payload]) : h);
    return p;
  }

  /** NBD error (0 ok, -1 connection gone) and the data. */
  read(offset: number, length: number): Promise<{ error: number; data: Buffer }> {
    return this.#request(NBD_CMD_READ, offset, length);
  }

  async write(offset: number, data: Buffer): Promise<number> {
    return (await this.#request(NBD_CMD_WRITE, offset, data.length, data)).error;
  }

  async flush(): Promise<number> {
    return (await this.#request(NBD_CMD_FLUSH, 0, 0)).error;
  }

  /** NBD_CMD_DISC, then waits for the server to close. */
  async disconnect(): Promise<void> {
    if (!this.#ended) void this.#request(NBD_CMD_DISC, 0, 0);
    this.#pending.clear();
    await this.waitClosed();
  }

  async waitClosed(): Promise<void> {
    while (!this.#ended) await new Promise<void>((r) => (this.#waiter = r));
    this.#socket.destroy();
  }

  /** Sends bytes as they are (protocol violations). */
  sendRaw(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  destroy(): void {
    this.#socket.destroy();
  }
}
