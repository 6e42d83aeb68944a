import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { setImmediate as tick } from 'node:timers/promises';
import { SocketReadError, SocketReader } from './socket-reader.js';

/** A connected localhost pair: `local` is the side under test, `peer` writes to it. */
async function pair(t: {
  after: (fn: () => void) => void;
}): Promise<{ local: net.Socket; peer: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const peer = net.connect(port, '127.0.0.1');
  const [local] = await accepted;
  await once(peer, 'connect');
  server.close();
  peer.on('error', () => {});
  t.after(() => {
    peer.destroy();
    local.destroy();
  });
  return { local, peer };
}

function write(s: net.Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => s.write(data, (err) => (err ? reject(err) : resolve())));
}

test('reads exact byte counts across chunk boundaries', async (t) => {
  const { local, peer } = await pair(t);
  const r = new SocketReader(local);
  await write(peer, 'abc');
  await tick();
  await write(peer, 'defg');
  assert.equal((await r.read(2)).toString(), 'ab');
  assert.equal((await r.read(5)).toString(), 'cdefg');
  const later = r.read(3);
  await write(peer, 'x');
  await tick();
  await write(peer, 'yz!');
  assert.equal((await later).toString(), 'xyz');
  assert.equal((await r.read(1)).toString(), '!');
  assert.equal((await r.read(0)).length, 0);
});

test('pauses the socket whenever no read is waiting', async (t) => {
  const { local, peer } = await pair(t);
  const r = new SocketReader(local);
  assert.equal(local.isPaused(), true);
  const p = r.read(4);
  assert.equal(local.isPaused(), false);
  await write(peer, 'abcdEFGH');
  assert.equal((await p).toString(), 'abcd');
  assert.equal(local.isPaused(), true);
  // What arrived in the same chunk is kept for the next read.
  assert.equal(r.buffered, 4);
  assert.equal((await r.read(4)).toString(), 'EFGH');
});

test('a read waiting when the peer hangs up rejects with kind "end"; buffered bytes are still served first', async (t) => {
  const { local, peer } = await pair(t);
  const r = new SocketReader(local);
  const p = r.read(4);
  await write(peer, 'ab');
  peer.end();
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SocketReadError);
    assert.equal(e.kind, 'end');
    assert.match(e.message, /closed the connection/);
    return true;
  });
  // The two bytes that did arrive are still there; asking for more fails the same way.
  assert.equal((await r.read(2)).toString(), 'ab');
  await assert.rejects(r.read(1), SocketReadError);
});

test('an I/O error fails the waiting read with kind "error" and the message', async (t) => {
  const { local } = await pair(t);
  const r = new SocketReader(local);
  const p = r.read(1);
  local.destroy(new Error('boom'));
  await assert.rejects(
    p,
    (e: unknown) => e instanceof SocketReadError && e.kind === 'error' && /boom/.test(e.message),
  );
  await assert.rejects(r.read(1), (e: unknown) => e instanceof SocketReadError && e.kind === 'error');
});

test('a socket closed without error fails reads with kind "close"', async (t) => {
  const { local } = await pair(t);
  const r = new SocketReader(local);
  const p = r.read(1);
  local.destroy();
  await assert.rejects(p, (e: unknown) => e instanceof SocketReadError && e.kind === 'close');
});

test('a reader made on a destroyed socket fails at once', async (t) => {
  const { local } = await pair(t);
  local.destroy();
  const r = new SocketReader(local);
  await assert.rejects(r.read(1), (e: unknown) => e instanceof SocketReadError && e.kind === 'close');
  r.detach();
});

test('detach returns the unread bytes, removes every listener and leaves the socket paused', async (t) => {
  const { local, peer } = await pair(t);
  const before = ['data', 'end', 'close', 'error'].map((e) => local.listenerCount(e));
  const r = new SocketReader(local);
  const p = r.read(3);
  await write(peer, 'abcREST');
  assert.equal((await p).toString(), 'abc');
  const rest = r.detach();
  assert.equal(rest.toString(), 'REST');
  assert.deepEqual(
    ['data', 'end', 'close', 'error'].map((e) => local.listenerCount(e)),
    before,
  );
  assert.equal(local.isPaused(), true);
  await assert.rejects(r.read(1), (e: unknown) => e instanceof SocketReadError && e.kind === 'detached');
  assert.equal(r.detach().length, 0);
  // Bytes sent after detach reach the next owner, once it resumes the socket (a 'data'
  // listener alone does not restart an explicitly paused stream).
  const got = new Promise<Buffer>((resolve) => local.once('data', resolve));
  local.resume();
  await write(peer, 'next');
  assert.equal((await got).toString(), 'next');
});

test('detach fails a waiting read with kind "detached"', async (t) => {
  const { local } = await pair(t);
  const r = new SocketReader(local);
  const p = r.read(8);
  r.detach();
  await assert.rejects(p, (e: unknown) => e instanceof SocketReadError && e.kind === 'detached');
});

test('a second read while one waits is refused; bad lengths are refused', async (t) => {
  const { local, peer } = await pair(t);
  const r = new SocketReader(local);
  const p = r.read(2);
  await assert.rejects(r.read(1), /already waiting/);
  await assert.rejects(r.read(-1), RangeError);
  await assert.rejects(r.read(1.5), RangeError);
  await write(peer, 'ok');
  assert.equal((await p).toString(), 'ok');
});
