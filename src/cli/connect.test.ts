import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderControllerSummary, type ControllerSummary } from './connect.js';

const base: ControllerSummary = {
  address: '[::1]:4420',
  subnqn: 'nqn.2026-11.io.tsblk:x',
  hostnqn: 'nqn.2026-11.io.tsblk:h',
  cntlid: 7,
  model: 'm',
  serial: 's',
  firmware: 'f',
  version: '1.4.0',
  ioQueues: { asked: 4, granted: 2 },
  queueSize: 64,
  mdts: 0,
  maxDataTransferBytes: 0,
  keepAliveTimeoutMs: 0,
  keepAliveGranularityMs: 0,
  copy: { supported: false, ocfs: 0, formatsOffered: [], formatsUsable: [] },
  namespaces: [],
};

test('connect summary: no copy, no MDTS limit, no keep-alive, no namespaces', () => {
  assert.equal(
    renderControllerSummary(base),
    [
      'connected to nqn.2026-11.io.tsblk:x at [::1]:4420 (host NQN nqn.2026-11.io.tsblk:h)',
      'controller',
      '  cntlid        7',
      '  model         m',
      '  serial        s',
      '  firmware      f',
      '  version       NVMe 1.4.0',
      '  I/O queues    2 granted (4 asked), 64 entries each',
      '  max transfer  no limit (MDTS 0)',
      '  keep-alive    off (KATO 0)',
      '  copy          not supported (ONCS Copy clear): copies through this controller are emulated',
      'namespaces (0)',
      '',
    ].join('\n'),
  );
});

test('connect summary: copy formats without cross-namespace, a namespace without copy limits', () => {
  const out = renderControllerSummary({
    ...base,
    copy: { supported: true, ocfs: 0x5, formatsOffered: [0, 2], formatsUsable: [0] },
    namespaces: [
      { nsid: 1, size: 1 << 30, blocks: 1 << 18, logicalBlockSize: 4096, copy: null },
      {
        nsid: 5,
        size: 4096,
        blocks: 1,
        logicalBlockSize: 4096,
        copy: { mssrl: 1, mcl: 1, msrc: 0, maxRangeBytes: 4096, maxHwBytes: 4096, maxRanges: 1 },
      },
    ],
  });
  assert.match(out, /^ {2}copy {10}NVMe Copy; formats offered 0,2 \(OCFS 0x5\), used 0$/m);
  assert.ok(
    out.endsWith(
      [
        'namespaces (2)',
        '  nsid  size                block size  copy limits',
        '  1     1073741824 (1 GiB)  4096        no copy',
        '  5     4096 (4 KiB)        4096        range 4 KiB, copy 4 KiB, 1 ranges (MSSRL 1, MCL 1, MSRC 0)',
        '',
      ].join('\n'),
    ),
    out,
  );
});
