// Bad input never takes the NBD server down: connections that send random bytes during the
// handshake, or valid-looking request headers with random fields after it, get error
// replies or a disconnect, and a well-behaved client on the same server keeps reading and
// writing the right data throughout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import fc from 'fast-check';
import { RamDevice } from '../src/devices/ram.js';
import { NbdServer } from '../src/export/nbd/server.js';
import { NBD_REQUEST_MAGIC } from '../src/export/nbd/protocol.js';
import { TestNbdClient } from '../src/export/nbd/testing/client.js';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.TSBLK_PROPERTY_RUNS ?? 40);

/** Sends bytes, then waits until the server closes or 300 ms pass; closes our end either way. */
async function throwAt(port: number, chunks: Buffer[]): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.on('data', () => {});
  await once(s, 'connect');
  for (const c of chunks) if (!s.destroyed) s.write(c);
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 300))]);
  s.destroy();
}

/** A fixed-newstyle client preamble (client flags) and a GO for export 'g', then garbage. */
function goFor(name: string): Buffer {
  const n = Buffer.from(name);
  const opt = Buffer.alloc(16 + 4 + n.length + 2);
  opt.writeBigUInt64BE(0x49484156454f5054n, 0);
  opt.writeUInt32BE(7, 8); // NBD_OPT_GO
  opt.writeUInt32BE(4 + n.length + 2, 12);
  opt.writeUInt32BE(n.length, 16);
  n.copy(opt, 20);
  opt.writeUInt16BE(0, 20 + n.length);
  return Buffer.concat([Buffer.from([0, 0, 0, 3]), opt]);
}

test('random handshake bytes and random request headers never disturb a good client', async () => {
  const dev = new RamDevice({ name: 'g', size: 4 * MiB });
  const server = new NbdServer({
    exports: [
      { name: 'g', device: dev, readOnly: false, multiConn: true },
      // Garbage goes to its own export: random headers may be valid TRIMs or zeroes there.
      {
        name: 'junk',
        device: new RamDevice({ name: 'junk', size: 4 * MiB }),
        readOnly: false,
        multiConn: true,
      },
    ],
    handshakeTimeoutMs: 1000,
  });
  const bound = await server.listen({ host: '127.0.0.1', port: 0 });
  const port = bound.port!;
  const good = await TestNbdClient.open({ host: '127.0.0.1', port }, 'g');
  const expected = Buffer.alloc(4 * MiB);
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          // anything at all during the handshake
          fc
            .array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 4 })
            .map((a) => a.map((u) => Buffer.from(u))),
          // a correct GO, then request headers with the right magic and random fields
          fc
            .array(
              fc.record({
                flags: fc.integer({ min: 0, max: 0xffff }),
                type: fc.integer({ min: 0, max: 12 }),
                offset: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
                length: fc.integer({ min: 0, max: 0xffffffff }),
              }),
              { minLength: 1, maxLength: 6 },
            )
            .map((reqs) => [
              goFor('junk'),
              ...reqs.map((r) => {
                const h = Buffer.alloc(28);
                h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
                h.writeUInt16BE(r.flags, 4);
                // writes (1) would carry payloads we do not send: the server then waits
                // for bytes; that is fine (the connection just stays open until we close it)
                h.writeUInt16BE(r.type, 6);
                h.writeBigUInt64BE(7n, 8);
                h.writeBigUInt64BE(r.offset, 16);
                h.writeUInt32BE(r.length, 24);
                return h;
              }),
            ]),
        ),
        fc.integer({ min: 0, max: (4 * MiB) / 4096 - 1 }),
        async (chunks, block) => {
          await throwAt(port, chunks);
          // The good client still works, and the device holds exactly what it wrote.
          const data = Buffer.alloc(4096, block & 0xff);
          assert.equal(await good.write(block * 4096, data), 0);
          data.copy(expected, block * 4096);
          const r = await good.read(block * 4096, 4096);
          assert.equal(r.error, 0);
          assert.deepEqual(r.data, data);
        },
      ),
      { numRuns: RUNS },
    );
    const all = await good.read(0, 4 * MiB);
    assert.deepEqual(all.data, expected, "no stray write reached the good client's export");
    await good.disconnect();
  } finally {
    await server.close(2000);
  }
});
