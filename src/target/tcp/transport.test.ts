// TcpTransport options: the sizes it announces (IOCCSZ, MDTS, MAXH2CDATA) and the values it
// refuses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError } from '../../block/errors.js';
import { Target } from '../target.js';
import { TcpTransport } from './transport.js';

const KiB = 1024;
const MiB = 1024 * KiB;

test('defaults: 16 KiB in-capsule, 8 KiB on the admin queue, 4 MiB commands, MAXH2CDATA = min(4 MiB, MDTS)', () => {
  const t = new TcpTransport(new Target());
  assert.equal(t.type, 'tcp');
  assert.equal(t.inlineDataSize, 16 * KiB);
  assert.equal(t.adminInlineDataSize, 8 * KiB);
  assert.equal(t.maxDataTransferBytes, 4 * MiB);
  assert.equal(t.maxH2CData, 1 * MiB, 'the target MDTS (1 MiB) is the smaller');
  assert.equal(t.c2hDataChunk, 128 * KiB);
  assert.equal(t.maxR2TPerCommand, 16);
  assert.equal(t.dataDigestError, 'fail-command');
  assert.equal(new TcpTransport(new Target({ maxDataTransferBytes: 16 * MiB })).maxH2CData, 4 * MiB);
  assert.equal(new TcpTransport(new Target({ maxDataTransferBytes: 256 * KiB })).maxH2CData, 256 * KiB);
  assert.equal(new TcpTransport(new Target(), { maxDataTransferBytes: 64 * KiB }).maxH2CData, 64 * KiB);
});

test('refuses sizes a host could not use, with EINVAL naming the option', () => {
  const target = new Target();
  const bad: Array<[object, RegExp]> = [
    [{ inlineDataSize: 1000 }, /inlineDataSize 1000 must be a multiple of 16/],
    [{ inlineDataSize: -16 }, /inlineDataSize/],
    [{ maxH2CDataBytes: 2048 }, /maxH2CDataBytes 2048 must be an integer in 4096/],
    [{ maxH2CDataBytes: 4098 }, /maxH2CDataBytes 4098 must be a multiple of 4/],
    [{ maxH2CDataBytes: 8 * MiB }, /maxH2CDataBytes/],
    [{ maxDataTransferBytes: 512 }, /maxDataTransferBytes/],
    [{ c2hDataChunkBytes: 0 }, /c2hDataChunkBytes/],
    [{ maxR2TPerCommand: 0 }, /maxR2TPerCommand/],
    [{ dataDigestError: 'ignore' }, /dataDigestError/],
  ];
  for (const [opts, msg] of bad)
    assert.throws(
      () => new TcpTransport(target, opts as never),
      (e: unknown) => BlockError.is(e) && e.code === 'EINVAL' && msg.test(e.message),
      JSON.stringify(opts),
    );
});
