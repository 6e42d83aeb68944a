// TcpQueue against a scripted controller (raw PDUs over a real socket on 127.0.0.1): the IC
// exchange, in-capsule data, R2T answered by several H2CData PDUs, C2HData into the caller's
// buffer with SUCCESS, the queue depth limit with FIFO waiting and CID reuse, AbortSignal,
// command timeout, and the failures that end a queue (malformed PDU, C2HTermReq, bad offsets).

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { decodeSqe, sqeSgl } from '../nvme/command.js';
import { encodeCqe } from '../nvme/completion.js';
import { SglIdentifier } from '../nvme/sgl.js';
import { sameStatus, Status } from '../nvme/status.js';
import {
  buildC2HData,
  buildCapsuleResp,
  buildICResp,
  buildR2T,
  buildTermReq,
  type TxOptions,
} from '../nvme/tcp/builder.js';
import { PduParser } from '../nvme/tcp/parser.js';
import {
  DigestOption,
  PduType,
  TcpFes,
  type CapsuleCmdPdu,
  type H2CDataPdu,
  type ICReqPdu,
  type TcpPdu,
} from '../nvme/tcp/pdu.js';
import { HostError } from './errors.js';
import { TcpQueue, type TcpQueueOptions } from './tcp-queue.js';

/** One connection of the scripted controller. */
class FakeConn {
  readonly parser = new PduParser({ direction: 'h2c', maxInCapsuleData: 1 << 20 });
  tx: TxOptions = { headerDigest: false, dataDigest: false };
  icreq: ICReqPdu | undefined;
  readonly capsules: CapsuleCmdPdu[] = [];
  readonly h2c: H2CDataPdu[] = [];
  readonly termReqs: TcpPdu[] = [];
  constructor(readonly socket: Socket) {}
  send(list: Buffer[]): void {
    for (const b of list) this.socket.write(b);
  }
  respond(cid: number, status = Status.SUCCESS, dw0 = 0): void {
    this.send(buildCapsuleResp(this.tx, encodeCqe({ cid, status, dw0 })));
  }
}

interface FakeScript {
  /** ICResp fields; default: the digests asked for, MAXH2CDATA 4096. */
  icresp?: (req: ICReqPdu) => { dgst?: number; maxh2cdata?: number } | 'silent';
  capsule?: (conn: FakeConn, pdu: CapsuleCmdPdu) => void;
  h2c?: (conn: FakeConn, pdu: H2CDataPdu) => void;
}

class FakeController {
  readonly conns: FakeConn[] = [];
  private constructor(
    readonly server: Server,
    readonly script: FakeScript,
  ) {}

  static async start(script: FakeScript): Promise<FakeController> {
    const server = createServer();
    const self = new FakeController(server, script);
    server.on('connection', (s: Socket) => self.#accept(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return self;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  #accept(socket: Socket): void {
    const c = new FakeConn(socket);
    this.conns.push(c);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      c.parser.push(chunk);
      for (;;) {
        let pdu: TcpPdu | undefined;
        try {
          pdu = c.parser.next();
        } catch {
          socket.destroy();
          return;
        }
        if (!pdu) return;
        if (pdu.type === PduType.ICReq) {
          c.icreq = pdu;
          const r = this.script.icresp?.(pdu) ?? {};
          if (r === 'silent') continue;
          const dgst = r.dgst ?? pdu.dgst;
          c.parser.configure({ headerDigest: (dgst & 1) !== 0, dataDigest: (dgst & 2) !== 0 });
          c.send(buildICResp({ dgst, maxh2cdata: r.maxh2cdata ?? 4096 }));
          c.tx = { headerDigest: (dgst & 1) !== 0, dataDigest: (dgst & 2) !== 0 };
        } else if (pdu.type === PduType.CapsuleCmd) {
          c.capsules.push(pdu);
          this.script.capsule?.(c, pdu);
        } else if (pdu.type === PduType.H2CData) {
          c.h2c.push(pdu);
          this.script.h2c?.(c, pdu);
        } else if (pdu.type === PduType.H2CTermReq) {
          c.termReqs.push(pdu);
        }
      }
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function queueOptions(port: number, extra: Partial<TcpQueueOptions> = {}): TcpQueueOptions {
  return { address: { host: '127.0.0.1', port }, qid: 1, size: 32, inlineDataSize: 8192, ...extra };
}

const cidOf = (p: CapsuleCmdPdu): number => p.sqe.readUInt16LE(2);
const closed: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closed) await c();
});

async function fake(script: FakeScript): Promise<FakeController> {
  const f = await FakeController.start(script);
  closed.push(() => f.close());
  return f;
}

describe('TcpQueue: IC exchange', () => {
  it('asks for the digests, takes MAXH2CDATA and CPDA from the ICResp', async () => {
    const f = await fake({ icresp: () => ({ maxh2cdata: 8192 }) });
    const q = await TcpQueue.open(queueOptions(f.port, { headerDigest: true, dataDigest: true }));
    assert.equal(f.conns[0]!.icreq!.dgst, DigestOption.HDR_DIGEST_ENABLE | DigestOption.DATA_DIGEST_ENABLE);
    assert.equal(f.conns[0]!.icreq!.hpda, 0);
    assert.equal(f.conns[0]!.icreq!.maxr2t, 0);
    assert.equal(q.maxH2CData, 8192);
    assert.deepEqual(q.tx, { headerDigest: true, dataDigest: true, pda: 0 });
    q.destroy();
  });

  it('refuses an ICResp whose digests differ from those asked with HostError IC', async () => {
    const f = await fake({ icresp: () => ({ dgst: 0 }) });
    await assert.rejects(
      TcpQueue.open(queueOptions(f.port, { headerDigest: true, dataDigest: true })),
      (e) => {
        assert.ok(HostError.is(e));
        assert.equal(e.code, 'IC');
        assert.match(e.message, /digests 0x0, the host asked for 0x3/);
        return true;
      },
    );
  });

  it('gives up with IC when no ICResp comes within the connect timeout', async () => {
    const f = await fake({ icresp: () => 'silent' });
    const t0 = Date.now();
    await assert.rejects(TcpQueue.open(queueOptions(f.port, { connectTimeoutMs: 200 })), { code: 'IC' });
    assert.ok(Date.now() - t0 < 2000);
  });

  it('fails with CONNECT when nothing listens', async () => {
    const s = createServer();
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    await assert.rejects(TcpQueue.open(queueOptions(port)), (e) => {
      assert.ok(HostError.is(e));
      assert.equal(e.code, 'CONNECT');
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
  });
});

describe('TcpQueue: data transfer', () => {
  it('puts data that fits in the capsule with an in-capsule SGL, larger data behind a transport SGL', async () => {
    const f = await fake({
      capsule: (c, p) => {
        if (p.data === undefined && sqeSgl(decodeSqe(p.sqe)).length > 0)
          c.send(
            buildR2T(c.tx, { cccid: cidOf(p), ttag: 1, r2to: 0, r2tl: sqeSgl(decodeSqe(p.sqe)).length }),
          );
        else c.respond(cidOf(p));
      },
      h2c: (c, p) => {
        if (p.last) c.respond(p.cccid);
      },
    });
    const q = await TcpQueue.open(queueOptions(f.port, { inlineDataSize: 4096 }));
    const small = randomBytes(4096);
    const big = randomBytes(4100);
    await q.submit({ sqe: { opcode: 0x01, nsid: 1 }, data: small });
    await q.submit({ sqe: { opcode: 0x01, nsid: 1 }, data: big });
    // A Fabrics command may carry 8 KiB in its capsule whatever the queue's in-capsule size.
    const connectData = randomBytes(1024);
    await q.submit({ sqe: { opcode: 0x7f, nsid: 0x01 }, data: connectData });
    const [a, b, c] = f.conns[0]!.capsules;
    assert.equal(sqeSgl(decodeSqe(a!.sqe)).type, SglIdentifier.INCAPSULE);
    assert.deepEqual(a!.data, small);
    assert.equal(sqeSgl(decodeSqe(b!.sqe)).type, SglIdentifier.TRANSPORT);
    assert.equal(sqeSgl(decodeSqe(b!.sqe)).length, 4100);
    assert.equal(b!.data, undefined);
    assert.deepEqual(Buffer.concat(f.conns[0]!.h2c.map((h) => h.data)), big);
    assert.equal(sqeSgl(decodeSqe(c!.sqe)).type, SglIdentifier.INCAPSULE);
    assert.deepEqual(c!.data, connectData);
    assert.equal(decodeSqe(a!.sqe).flags & 0xc0, 0x40, 'PSDT 01b: SGL');
    q.destroy();
  });

  for (const digests of [false, true]) {
    it(`answers R2Ts larger than MAXH2CDATA with several H2CData PDUs${digests ? ' (digests on)' : ''}`, async () => {
      const len = 3 * 4096 + 1000; // first R2T 6000 bytes, second the rest
      const f = await fake({
        capsule: (c, p) => c.send(buildR2T(c.tx, { cccid: cidOf(p), ttag: 7, r2to: 0, r2tl: 6000 })),
        h2c: (c, p) => {
          if (!p.last) return;
          const sent = c.h2c.reduce((n, h) => n + h.datal, 0);
          if (sent < len) c.send(buildR2T(c.tx, { cccid: p.cccid, ttag: 8, r2to: sent, r2tl: len - sent }));
          else c.respond(p.cccid);
        },
      });
      const q = await TcpQueue.open(
        queueOptions(f.port, { inlineDataSize: 0, headerDigest: digests, dataDigest: digests }),
      );
      const data = randomBytes(len);
      const c = await q.submit({ sqe: { opcode: 0x01, nsid: 1 }, data });
      assert.ok(sameStatus(c.status, Status.SUCCESS));
      const h = f.conns[0]!.h2c;
      assert.deepEqual(
        h.map((p) => [p.ttag, p.datao, p.datal, p.last]),
        [
          [7, 0, 4096, false],
          [7, 4096, 1904, true],
          [8, 6000, 4096, false],
          [8, 10096, 3192, true],
        ],
      );
      assert.ok(h.every((p) => !p.dataDigestError));
      assert.deepEqual(Buffer.concat(h.map((p) => p.data)), data);
      q.destroy();
    });
  }

  it('writes C2HData into the caller buffer and completes on SUCCESS without a CapsuleResp', async () => {
    const data = randomBytes(10_000);
    const f = await fake({
      capsule: (c, p) => {
        c.send(buildC2HData(c.tx, { cccid: cidOf(p), datao: 0, last: false }, data.subarray(0, 6000)));
        c.send(
          buildC2HData(
            c.tx,
            { cccid: cidOf(p), datao: 6000, last: true, success: true },
            data.subarray(6000),
          ),
        );
      },
    });
    const q = await TcpQueue.open(queueOptions(f.port, { dataDigest: true }));
    const into = Buffer.alloc(10_000);
    const c = await q.submit({ sqe: { opcode: 0x02, nsid: 1 }, into });
    assert.ok(sameStatus(c.status, Status.SUCCESS));
    assert.equal(c.dw0, 0);
    assert.deepEqual(into, data);
    assert.equal(sqeSgl(decodeSqe(f.conns[0]!.capsules[0]!.sqe)).length, 10_000);
    q.destroy();
  });

  it('completes a command whose C2HData failed its data digest with Data Transfer Error; the queue lives on', async () => {
    let n = 0;
    const f = await fake({
      capsule: (c, p) => {
        const list = buildC2HData(c.tx, { cccid: cidOf(p), datao: 0, last: true }, Buffer.alloc(512, 1));
        if (n++ === 0) list[list.length - 1]![0]! ^= 0xff; // break the data digest
        c.send(list);
        c.respond(cidOf(p));
      },
    });
    const q = await TcpQueue.open(queueOptions(f.port, { dataDigest: true }));
    const bad = await q.submit({ sqe: { opcode: 0x02, nsid: 1 }, into: Buffer.alloc(512) });
    assert.ok(sameStatus(bad.status, Status.DATA_XFER_ERROR));
    const good = await q.submit({ sqe: { opcode: 0x02, nsid: 1 }, into: Buffer.alloc(512) });
    assert.ok(sameStatus(good.status, Status.SUCCESS));
    q.destroy();
  });
});

describe('TcpQueue: queue depth', () => {
  it('keeps at most size − 1 commands outstanding, the rest wait in order, CIDs are reused', async () => {
    const f = await fake({});
    const q = await TcpQueue.open(queueOptions(f.port, { size: 4 }));
    const done: number[] = [];
    const all = Array.from({ length: 10 }, (_, i) =>
      q.submit({ sqe: { opcode: 0x00, nsid: 1, cdw10: i } }).then(() => done.push(i)),
    );
    const conn = (): (typeof f.conns)[0] => f.conns[0]!;
    const until = async (n: number) => {
      while (conn().capsules.length < n) await new Promise((r) => setTimeout(r, 5));
    };
    await until(3);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(conn().capsules.length, 3, 'no fourth capsule while three are outstanding');
    assert.equal(q.inflight, 3);
    assert.equal(q.outstanding, 10);
    // Complete one at a time: each completion lets exactly the next waiting command go, on the freed CID.
    for (let i = 0; i < 10; i++) {
      const p = conn().capsules[i]!;
      assert.equal(decodeSqe(p.sqe).cdw10, i, 'submission order');
      conn().respond(cidOf(p));
      if (i + 3 < 10) {
        await until(i + 4);
        assert.equal(cidOf(conn().capsules[i + 3]!), cidOf(p), 'the freed CID is reused');
      }
    }
    await Promise.all(all);
    assert.deepEqual(done, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(conn().capsules.every((p) => cidOf(p) < 3));
    q.destroy();
  });

  it('fails a waiting command whose AbortSignal fires with ABORTED; it is never sent', async () => {
    const f = await fake({});
    const q = await TcpQueue.open(queueOptions(f.port, { size: 2 }));
    const first = q.submit({ sqe: { opcode: 0x00, nsid: 1, cdw10: 1 } });
    const ac = new AbortController();
    const second = q.submit({ sqe: { opcode: 0x00, nsid: 1, cdw10: 2 }, signal: ac.signal });
    const third = q.submit({ sqe: { opcode: 0x00, nsid: 1, cdw10: 3 } });
    ac.abort();
    await assert.rejects(second, { name: 'HostError', code: 'ABORTED' });
    while (f.conns[0]!.capsules.length < 1) await new Promise((r) => setTimeout(r, 5));
    f.conns[0]!.respond(cidOf(f.conns[0]!.capsules[0]!));
    await first;
    while (f.conns[0]!.capsules.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.equal(decodeSqe(f.conns[0]!.capsules[1]!.sqe).cdw10, 3, 'the aborted command was skipped');
    f.conns[0]!.respond(cidOf(f.conns[0]!.capsules[1]!));
    await third;
    // An already aborted signal fails at once.
    await assert.rejects(q.submit({ sqe: { opcode: 0 }, signal: AbortSignal.abort() }), { code: 'ABORTED' });
    q.destroy();
  });
});

describe('TcpQueue: failures', () => {
  it('times out a command: TIMEOUT for it, CLOSED for the others, and the connection is closed', async () => {
    const f = await fake({});
    const q = await TcpQueue.open(queueOptions(f.port, { commandTimeoutMs: 200 }));
    const slow = q.submit({ sqe: { opcode: 0x00 } });
    const untimed = q.submit({ sqe: { opcode: 0x0c } }, { timeoutMs: 0 });
    const t0 = Date.now();
    await assert.rejects(
      slow,
      (e) => HostError.is(e) && e.code === 'TIMEOUT' && /timed out after 200 ms/.test(e.message),
    );
    assert.ok(Date.now() - t0 >= 190);
    await assert.rejects(untimed, { code: 'CLOSED' });
    await q.closed;
    assert.equal(q.error?.code, 'TIMEOUT');
  });

  it('answers a malformed PDU with H2CTermReq and fails the queue with PROTOCOL', async () => {
    const f = await fake({
      capsule: (c) => {
        const bad = buildCapsuleResp(c.tx, encodeCqe({ cid: 0 }));
        bad[0]![2] = 30; // hlen
        c.send(bad);
      },
    });
    const q = await TcpQueue.open(queueOptions(f.port));
    await assert.rejects(q.submit({ sqe: { opcode: 0 } }), { name: 'HostError', code: 'PROTOCOL' });
    for (let i = 0; i < 100 && f.conns[0]!.termReqs.length === 0; i++)
      await new Promise((r) => setTimeout(r, 5));
    const t = f.conns[0]!.termReqs[0] as { fes: number; fei: number } | undefined;
    assert.equal(t?.fes, TcpFes.INVALID_PDU_HDR);
    assert.equal(t?.fei, 2);
    await assert.rejects(q.submit({ sqe: { opcode: 0 } }), { code: 'PROTOCOL' });
  });

  it('fails with PROTOCOL on C2HData outside the caller buffer', async () => {
    const f = await fake({
      capsule: (c, p) => {
        if (p.sqe[0] === 0x02)
          c.send(buildC2HData(c.tx, { cccid: cidOf(p), datao: 0, last: true }, Buffer.alloc(1024)));
      },
    });
    const q = await TcpQueue.open(queueOptions(f.port));
    const other = q.submit({ sqe: { opcode: 0x00 } }); // outstanding on the same queue
    other.catch(() => {});
    await assert.rejects(q.submit({ sqe: { opcode: 0x02 }, into: Buffer.alloc(512) }), (e) => {
      assert.ok(HostError.is(e));
      assert.equal(e.code, 'PROTOCOL');
      assert.match(e.message, /C2HData bytes 0\.\.1024 .*512-byte transfer/);
      return true;
    });
    await assert.rejects(other, { code: 'PROTOCOL' });
  });

  it('fails with PROTOCOL on a C2HTermReq', async () => {
    const f = await fake({
      capsule: (c) => c.send(buildTermReq(PduType.C2HTermReq, { fes: TcpFes.HDR_DIGEST_ERR })),
    });
    const q = await TcpQueue.open(queueOptions(f.port));
    await assert.rejects(q.submit({ sqe: { opcode: 0 } }), (e) => {
      assert.ok(HostError.is(e));
      assert.equal(e.code, 'PROTOCOL');
      assert.match(e.message, /C2HTermReq: FES 0x3 Header Digest Error/);
      return true;
    });
  });

  it('hands managed commands of a failed queue to its owner, in submission order, with wasSent', async () => {
    const f = await fake({});
    const seen: Array<{ code: string; sent: boolean[]; cdw10: number[] }> = [];
    const q = await TcpQueue.open(
      queueOptions(f.port, {
        size: 2,
        owner: {
          queueFailed: (_q, err, reqs) =>
            seen.push({
              code: err.code,
              sent: reqs.map((r) => r.wasSent),
              cdw10: reqs.map((r) => r.cmd.sqe.cdw10 ?? -1),
            }),
        },
      }),
    );
    const { QueueRequest } = await import('./tcp-queue.js');
    const a = new QueueRequest({ sqe: { opcode: 0, cdw10: 1 } }, true);
    const b = new QueueRequest({ sqe: { opcode: 0, cdw10: 2 } }, true);
    q.enqueue(a);
    q.enqueue(b);
    while (f.conns[0]!.capsules.length < 1) await new Promise((r) => setTimeout(r, 5));
    f.conns[0]!.socket.destroy();
    await q.closed;
    assert.deepEqual(seen, [{ code: 'CLOSED', sent: [true, false], cdw10: [1, 2] }]);
    assert.equal(a.done, false, 'the owner decides');
    a.fail(new Error('x'));
    b.fail(new Error('x'));
    await assert.rejects(a.promise);
    await assert.rejects(b.promise);
  });
});
