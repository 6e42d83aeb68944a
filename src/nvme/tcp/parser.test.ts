// Builder → parser round trips for every PDU type, with and without digests, with padding,
// whole and split at every byte; zero-copy delivery; the Linux host's CapsuleCmd by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildCapsuleCmd, buildH2CData, buildICReq } from './builder.js';
import { crc32cTs } from './digest.js';
import { PduParser } from './parser.js';
import { pduDirection, PduType, type CapsuleCmdPdu, type H2CDataPdu, type ICReqPdu } from './pdu.js';
import { cut, feed, LINKS, newParser, samples, type Link } from './testing/streams.js';

const describeLink = (l: Link) =>
  `hdgst ${l.headerDigest ? 'on' : 'off'}, ddgst ${l.dataDigest ? 'on' : 'off'}, pda ${l.pda}`;

describe('round trips: builder → parser', () => {
  for (const direction of ['h2c', 'c2h'] as const) {
    for (const link of LINKS) {
      it(`${direction}, ${describeLink(link)}: every PDU type, whole, split at every byte, and byte by byte`, () => {
        const list = samples(direction, link);
        const stream = Buffer.concat(list.map((s) => s.bytes));
        const expect = list.map((s) => s.expect);
        const types = Object.values(PduType).filter((t) => pduDirection(t) === direction);
        assert.deepEqual(
          [...new Set(expect.map((p) => p.type))].sort(),
          types.sort(),
          'every type of this direction',
        );

        const whole = newParser(direction);
        assert.deepEqual(feed(whole, [stream], link), expect);
        assert.equal(whole.bufferedBytes, 0);
        assert.equal(whole.inProgress, false);

        for (let k = 1; k < stream.length; k++) {
          assert.deepEqual(feed(newParser(direction), cut(stream, [k]), link), expect, `split at byte ${k}`);
        }
        const bytes = [...stream].map((b) => Buffer.from([b]));
        assert.deepEqual(feed(newParser(direction), bytes, link), expect, 'one byte at a time');
      });
    }
  }
});

describe('data delivery', () => {
  const link: Link = { headerDigest: true, dataDigest: true, pda: 0 };

  function h2cStream(data: Buffer): Buffer {
    return Buffer.concat([
      ...buildICReq({ dgst: 3 }),
      ...buildH2CData(link, { cccid: 1, ttag: 2, datao: 0, last: true }, data),
    ]);
  }

  it('data that sits in one chunk is a view into that chunk, not a copy', () => {
    const data = Buffer.alloc(4096, 0x5a);
    const chunk = h2cStream(data);
    const [, pdu] = feed(newParser('h2c'), [chunk], link) as [ICReqPdu, H2CDataPdu];
    assert.equal(pdu.data.buffer, chunk.buffer, 'same memory');
    assert.equal(pdu.data.byteOffset, chunk.byteOffset + 128 + 28);
    assert.deepEqual(pdu.data, data);
  });

  it('data split across chunks is copied once into its own buffer', () => {
    const data = Buffer.alloc(4096, 0x5a);
    const stream = h2cStream(data);
    const chunks = cut(stream, [128 + 28 + 1000, 128 + 28 + 3000]).map((c) => Buffer.from(c));
    const [, pdu] = feed(newParser('h2c'), chunks, link) as [ICReqPdu, H2CDataPdu];
    for (const c of chunks) assert.notEqual(pdu.data.buffer, c.buffer);
    assert.deepEqual(pdu.data, data);
  });

  it('the SQE is a copy that does not keep the socket chunk alive', () => {
    const stream = Buffer.concat([
      ...buildICReq(),
      ...buildCapsuleCmd({ headerDigest: false, dataDigest: false }, Buffer.alloc(64, 9)),
    ]);
    const chunk = Buffer.alloc(stream.length); // its own memory, not Node's shared pool
    stream.copy(chunk);
    const [, pdu] = feed(newParser('h2c'), [chunk], { headerDigest: false, dataDigest: false, pda: 0 }) as [
      ICReqPdu,
      CapsuleCmdPdu,
    ];
    assert.notEqual(pdu.sqe.buffer, chunk.buffer);
    assert.deepEqual(pdu.sqe, Buffer.alloc(64, 9));
  });

  it('a partial PDU waits: next() returns undefined until the last byte arrives', () => {
    const stream = h2cStream(Buffer.alloc(100, 1));
    const p = newParser('h2c');
    assert.equal(p.next(), undefined, 'nothing pushed');
    p.push(stream.subarray(0, 128));
    assert.equal(p.next()?.type, PduType.ICReq);
    p.configure({ headerDigest: true, dataDigest: true });
    p.push(stream.subarray(128, stream.length - 1));
    assert.equal(p.next(), undefined);
    assert.equal(p.inProgress, true);
    assert.equal(p.bufferedBytes, 3, 'only the digest bytes that arrived are still queued');
    p.push(stream.subarray(stream.length - 1));
    assert.equal(p.next()?.type, PduType.H2CData);
    assert.equal(p.inProgress, false);
  });

  it('a data digest mismatch is reported on the PDU, and the next PDU still parses', () => {
    const good = buildH2CData(link, { cccid: 1, ttag: 2, datao: 0, last: false }, Buffer.alloc(64, 1));
    const bad = Buffer.concat(good);
    bad.writeUInt32LE(bad.readUInt32LE(bad.length - 4) ^ 1, bad.length - 4);
    const stream = Buffer.concat([...buildICReq({ dgst: 3 }), bad, ...good]);
    const pdus = feed(newParser('h2c'), [stream], link) as H2CDataPdu[];
    assert.equal(pdus.length, 3);
    assert.equal(pdus[1]!.dataDigestError, true);
    assert.equal(pdus[2]!.dataDigestError, false);
  });
});

describe('configuration', () => {
  it('established: true skips the IC exchange', () => {
    const p = new PduParser({ direction: 'h2c', established: true });
    p.push(Buffer.concat(buildCapsuleCmd({ headerDigest: false, dataDigest: false }, Buffer.alloc(64))));
    assert.equal(p.next()?.type, PduType.CapsuleCmd);
  });

  it('the IC PDU marks the connection established; settings apply from the next header on', () => {
    const p = new PduParser({ direction: 'h2c' });
    assert.equal(p.established, false);
    p.push(Buffer.concat(buildICReq({ dgst: 1 })));
    p.next();
    assert.equal(p.established, true);
    p.configure({ headerDigest: true, maxInCapsuleData: 16384 });
    assert.equal(p.settings.headerDigest, true);
    assert.equal(p.settings.maxInCapsuleData, 16384);
    assert.equal(p.settings.dataDigest, false, 'left alone');
    p.push(
      Buffer.concat(
        buildCapsuleCmd({ headerDigest: true, dataDigest: false }, Buffer.alloc(64), Buffer.alloc(16384)),
      ),
    );
    assert.equal((p.next() as CapsuleCmdPdu).data?.length, 16384);
  });

  it('bad settings are refused', () => {
    assert.throws(() => new PduParser({ direction: 'x' as 'h2c' }), /direction must be 'h2c' or 'c2h'/);
    assert.throws(() => new PduParser({ direction: 'h2c', pda: 32 }), /pda: 32 is outside 0\.\.31/);
    assert.throws(() => new PduParser({ direction: 'c2h', maxC2HData: -1 }), /maxC2HData/);
  });
});

describe('what the Linux host sends (bytes laid out by hand from nvme-tcp.h and nvme.h)', () => {
  // nvme_tcp_init_connection: ICReq with hpda 0, maxr2t 0 and both digests asked for (-g -G).
  const icreq = Buffer.alloc(128);
  icreq.set([0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00]); // type, flags, hlen 128, pdo 0, plen 128
  icreq.set([0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00], 8); // pfv 0, hpda 0, digest 3, maxr2t 0

  // nvme_tcp_setup_cmd_pdu + nvme_tcp_set_sg_inline: a 4 KiB Write with in-capsule data.
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x01; // opcode: nvme_cmd_write
  sqe[1] = 0x40; // flags: NVME_CMD_SGL_METABUF (SGLs for data)
  sqe.writeUInt16LE(0x002a, 2); // command_id
  sqe.writeUInt32LE(1, 4); // nsid
  sqe.writeBigUInt64LE(0n, 24); // dptr.sgl.addr = icdoff 0
  sqe.writeUInt32LE(4096, 32); // dptr.sgl.length
  sqe[39] = 0x01; // dptr.sgl.type = NVME_SGL_FMT_DATA_DESC << 4 | NVME_SGL_FMT_OFFSET
  sqe.writeUInt32LE(0x10, 40); // cdw10: slba low
  sqe.writeUInt32LE(7, 48); // cdw12: nlb 7 (8 blocks of 512)
  const data = Buffer.alloc(4096);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const header = Buffer.alloc(72);
  header.set([0x04, 0x03, 72, 76]); // CapsuleCmd, HDGSTF|DDGSTF, hlen 72, pdo = hlen + hdgst
  header.writeUInt32LE(72 + 4 + 4096 + 4, 4); // plen: header, header digest, data, data digest
  header.set(sqe, 8);
  const hdgst = Buffer.alloc(4);
  hdgst.writeUInt32LE(crc32cTs(header));
  const ddgst = Buffer.alloc(4);
  ddgst.writeUInt32LE(crc32cTs(data));
  const capsule = Buffer.concat([header, hdgst, data, ddgst]);

  // nvme_tcp_submit_async_event: no data, so no DDGSTF and pdo 0 even with data digests on.
  const aer = Buffer.alloc(76);
  aer.set([0x04, 0x01, 72, 0]);
  aer.writeUInt32LE(76, 4);
  aer[8] = 0x0c; // nvme_admin_async_event
  aer[9] = 0x40;
  aer.writeUInt16LE(31, 10);
  aer[8 + 39] = 0x5a; // NVME_TRANSPORT_SGL_DATA_DESC << 4 | NVME_SGL_FMT_TRANSPORT_A
  aer.writeUInt32LE(crc32cTs(aer.subarray(0, 72)), 72);

  it('parses the ICReq, the Write capsule with its data and the AER capsule, in pieces', () => {
    const stream = Buffer.concat([icreq, capsule, aer]);
    const link: Link = { headerDigest: true, dataDigest: true, pda: 0 };
    for (const chunks of [[stream], cut(stream, [5, 128, 131, 200, 1500, 4200]), cut(stream, [4300])]) {
      const pdus = feed(new PduParser({ direction: 'h2c' }), chunks, link);
      assert.deepEqual(pdus, [
        { type: PduType.ICReq, flags: 0, pfv: 0, hpda: 0, dgst: 3, maxr2t: 0 },
        { type: PduType.CapsuleCmd, flags: 3, sqe, data, dataDigestError: false },
        {
          type: PduType.CapsuleCmd,
          flags: 1,
          sqe: aer.subarray(8, 72),
          data: undefined,
          dataDigestError: false,
        },
      ]);
    }
  });

  it('our builder produces the same bytes as the Linux host for that capsule', () => {
    assert.deepEqual(
      Buffer.concat(buildCapsuleCmd({ headerDigest: true, dataDigest: true }, sqe, data)),
      capsule,
    );
    assert.deepEqual(Buffer.concat(buildICReq({ dgst: 3 })), icreq);
  });
});
