import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { TLSSocket } from 'node:tls';

import { adoptForDirectReads, type DirectReader } from './direct-socket.js';

/** A connected pair over loopback TCP: the server side arrives paused (as NbdServer's do). */
async function pair(): Promise<{ client: Socket; accepted: Socket; server: Server }> {
  const server = createServer({ pauseOnConnect: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  return { client, accepted: (await accepted)[0], server };
}

/** Collects what arrives, into buffers of `size` bytes it hands out one after another. */
function collector(size: number) {
  const given: Uint8Array[] = [];
  const got: Buffer[] = [];
  const reader: DirectReader = {
    buffer: () => {
      const b = new Uint8Array(size);
      given.push(b);
      return b;
    },
    received: (n, buf) => {
      assert.ok(given.includes(buf), 'bytes land in a buffer the reader gave');
      got.push(Buffer.from(buf.subarray(0, n)));
      return true;
    },
  };
  return { reader, given, got, bytes: () => Buffer.concat(got) };
}

test('adopted socket: bytes already received come back as pending, the rest lands in the reader buffers', async () => {
  const { client, accepted, server } = await pair();
  // Bytes that reach the old socket before adoption (the handshake's socket reads them).
  accepted.resume();
  client.write(Buffer.from('early'));
  await once(accepted, 'readable').catch(() => undefined);
  accepted.pause();
  const c = collector(8);
  const adopted = adoptForDirectReads(accepted, c.reader);
  assert.ok(adopted, 'a plain TCP socket can be adopted on this Node');
  assert.notEqual(adopted.socket, accepted);
  assert.equal(Buffer.concat(adopted.pending).toString(), 'early');
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
  client.write(body);
  adopted.socket.resume();
  while (c.bytes().length < body.length) await new Promise((r) => setTimeout(r, 5));
  assert.ok(c.bytes().equals(body), 'every byte, in order');
  assert.ok(
    c.got.every((g) => g.length <= 8),
    'each read filled at most the buffer given',
  );
  // Writing and EOF work on the new socket; the old one is destroyed when it closes.
  const echoed = once(client, 'data');
  adopted.socket.write('pong');
  assert.equal(String((await echoed)[0]), 'pong');
  const ended = once(adopted.socket, 'end');
  client.end();
  await ended;
  adopted.socket.end();
  await once(adopted.socket, 'close');
  await new Promise((r) => setImmediate(r));
  assert.equal(accepted.destroyed, true, 'the old socket is destroyed with the new one');
  server.close();
});

test('received() returning false pauses reading until resume()', async () => {
  const { client, accepted, server } = await pair();
  let calls = 0;
  const buf = new Uint8Array(4);
  const adopted = adoptForDirectReads(accepted, {
    buffer: () => buf,
    received: () => {
      calls++;
      return false;
    },
  })!;
  adopted.socket.resume();
  client.write(Buffer.alloc(64, 1));
  while (calls === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 1, 'one read, then paused');
  adopted.socket.resume();
  while (calls < 2) await new Promise((r) => setTimeout(r, 5));
  client.destroy();
  adopted.socket.destroy();
  server.close();
});

test('not adopted: a TLS socket, a socket with writes queued, a destroyed socket', async () => {
  const c = collector(16);
  const { client, accepted, server } = await pair();
  const tls = new TLSSocket(accepted, { isServer: false });
  assert.equal(adoptForDirectReads(tls, c.reader), undefined, 'TLS keeps its own reads');
  tls.destroy();
  client.destroy();

  const p2 = await pair();
  // A write that cannot go out yet stays queued in the socket: moving its handle could lose it.
  p2.accepted.cork();
  p2.accepted.write('queued');
  assert.equal(adoptForDirectReads(p2.accepted, c.reader), undefined);
  p2.accepted.destroy();
  assert.equal(adoptForDirectReads(p2.accepted, c.reader), undefined, 'destroyed');
  p2.client.destroy();
  server.close();
  p2.server.close();
});
