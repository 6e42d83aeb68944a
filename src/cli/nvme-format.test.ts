import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildIdCtrl,
  buildIdNs,
  decodeIdCtrl,
  decodeIdNs,
  encodeFlbas,
  nvmeVersion,
} from '../nvme/identify.js';
import { AdrFam, SubType, Treq } from '../nvme/log-page.js';
import {
  discoveryRecord,
  guidString,
  hex,
  idCtrlJson,
  idNsJson,
  renderDiscovery,
  renderIdCtrl,
  renderIdNs,
} from './nvme-format.js';

const NQN = 'nqn.2026-11.io.tsblk:default';

function ctrl() {
  const buf = buildIdCtrl({
    vid: 0x1b36,
    ssvid: 0x1af4,
    sn: 'TSBLK0001',
    mn: 'tsblk',
    fr: '0.4.0',
    ieee: 0x525400,
    mdts: 5,
    cntlid: 3,
    ver: nvmeVersion(2, 0, 0),
    subnqn: NQN,
    ocfs: 0xf,
    psd: [
      { mp: 2500, enlat: 16, exlat: 4 },
      { mp: 9000, flags: 0x3 },
    ],
  });
  // Fields the builder leaves at zero: a 128-bit capacity and an FGUID.
  buf.writeBigUInt64LE(2n ** 40n, 280); // TNVMCAP low 64 bits
  buf.writeUInt32LE(1, 288); // TNVMCAP bit 64
  Buffer.from('00112233445566778899aabbccddeeff', 'hex').copy(buf, 112);
  return decodeIdCtrl(buf);
}

test('hex is C %#x; GUIDs print 8-4-4-4-12', () => {
  assert.equal(hex(0), '0');
  assert.equal(hex(0n), '0');
  assert.equal(hex(0x1b36), '0x1b36');
  assert.equal(hex(2n ** 40n), '0x10000000000');
  assert.equal(guidString(Buffer.alloc(16, 0xab)), 'abababab-abab-abab-abab-abababababab');
});

test('id-ctrl: nvme-cli field names, order and formats', () => {
  const out = renderIdCtrl(ctrl());
  const lines = out.split('\n');
  assert.equal(lines[0], 'NVME Identify Controller:');
  for (const want of [
    'vid       : 0x1b36',
    'ssvid     : 0x1af4',
    'sn        : TSBLK0001',
    'mn        : tsblk',
    'fr        : 0.4.0',
    'rab       : 6',
    'ieee      : 525400',
    'cmic      : 0x3',
    'mdts      : 5',
    'cntlid    : 0x3',
    'ver       : 0x20000',
    'oaes      : 0x100',
    'rtd3r     : 0',
    'fguid     : 00112233-4455-6677-8899-aabbccddeeff',
    'tnvmcap   : 18446745173221179392',
    'kas       : 10',
    'sqes      : 0x66',
    'cqes      : 0x44',
    'nn        : 1024',
    'oncs      : 0x10c',
    'ocfs      : 0xf',
    'sgls      : 0x100001',
    `subnqn    : ${NQN}`,
    'ioccsz    : 4',
    'msdbd     : 1',
    'ofcs      : 0',
    'ps      0 : mp:25.00W operational enlat:16 exlat:4 rrt:0 rrl:0',
    '            rwt:0 rwl:0 idle_power:- active_power:-',
    '            active_power_workload:-',
    'ps      1 : mp:0.9000W non-operational enlat:0 exlat:0 rrt:0 rrl:0',
  ])
    assert.ok(lines.includes(want), `missing line ${JSON.stringify(want)} in:\n${out}`);
  const keys = lines.slice(1).map((l) => l.split(':')[0]!.trim());
  // The order nvme-cli prints (a sample of the sequence).
  const order = [
    'vid',
    'sn',
    'ieee',
    'mdts',
    'cntlid',
    'ver',
    'oacs',
    'kas',
    'sqes',
    'nn',
    'oncs',
    'ocfs',
    'subnqn',
    'ofcs',
  ];
  const at = order.map((k) => keys.indexOf(k));
  assert.deepEqual(
    [...at].sort((a, b) => a - b),
    at,
  );
  assert.ok(at.every((i) => i >= 0));
  assert.ok(out.endsWith('active_power_workload:-\n'));
});

test('id-ctrl JSON: decoded fields, no reserved ranges, 128-bit values as strings', () => {
  const j = idCtrlJson(ctrl());
  assert.equal(j.vid, 0x1b36);
  assert.equal(j.sn, 'TSBLK0001');
  assert.equal(j.ieee, 0x525400);
  assert.equal(j.subnqn, NQN);
  assert.equal(j.tnvmcap, '18446745173221179392');
  assert.equal(j.fguid, '00112233-4455-6677-8899-aabbccddeeff');
  assert.equal(j.ocfs, 0xf);
  assert.ok(!Object.keys(j).some((k) => k.startsWith('rsvd')));
  assert.equal(j.vs, undefined);
  assert.deepEqual(
    (j.psds as Array<{ mp: number; flags: number }>).map((p) => [p.mp, p.flags]),
    [
      [2500, 0],
      [9000, 3],
    ],
  );
  // Round-trips through JSON.stringify (no bigint left).
  assert.equal(JSON.parse(JSON.stringify(j)).mdts, 5);
});

test('id-ns: the whole nvme-cli form', () => {
  const id = decodeIdNs(
    buildIdNs({
      nsze: 32768n,
      nuse: 100,
      lbaf: [
        { ms: 0, lbads: 9, rp: 0 },
        { ms: 8, lbads: 12, rp: 2 },
      ],
      flbas: encodeFlbas(1),
      dlfeat: 9,
      mssrl: 128,
      mcl: 256,
      msrc: 127,
      nguid: Buffer.from('0123456789abcdef0123456789abcdef', 'hex'),
      eui64: Buffer.from('0200000000000001', 'hex'),
    }),
  );
  assert.equal(
    renderIdNs(id, 1),
    [
      'NVME Identify Namespace 1:',
      'nsze    : 0x8000',
      'ncap    : 0x8000',
      'nuse    : 0x64',
      'nsfeat  : 0',
      'nlbaf   : 1',
      'flbas   : 0x1',
      'mc      : 0',
      'dpc     : 0',
      'dps     : 0',
      'nmic    : 0x1',
      'rescap  : 0',
      'fpi     : 0',
      'dlfeat  : 9',
      'nawun   : 0',
      'nawupf  : 0',
      'nacwu   : 0',
      'nabsn   : 0',
      'nabo    : 0',
      'nabspf  : 0',
      'noiob   : 0',
      'nvmcap  : 0',
      'mssrl   : 128',
      'mcl     : 256',
      'msrc    : 127',
      'kpios   : 0',
      'nulbaf  : 0',
      'kpiodaag: 0',
      'anagrpid: 0',
      'nsattr  : 0',
      'nvmsetid: 0',
      'endgid  : 0',
      'nguid   : 0123456789abcdef0123456789abcdef',
      'eui64   : 0200000000000001',
      'lbaf  0 : ms:0   lbads:9  rp:0',
      'lbaf  1 : ms:8   lbads:12 rp:0x2 (in use)',
      '',
    ].join('\n'),
  );
});

test('id-ns: the preferred-granularity group appears when NSFEAT says it is valid', () => {
  const id = decodeIdNs(buildIdNs({ nsze: 8, npwg: 7, npwa: 7, npdg: 7, npda: 7, nows: 7 }));
  const out = renderIdNs(id, 2);
  assert.ok(out.includes('\nnsfeat  : 0x10\n'));
  assert.match(
    out,
    /^noiob {3}: 0\nnvmcap {2}: 0\nnpwg {4}: 7\nnpwa {4}: 7\nnpdg {4}: 7\nnpda {4}: 7\nnows {4}: 7\nmssrl/m,
  );
  assert.doesNotMatch(renderIdNs(decodeIdNs(buildIdNs({ nsze: 8 })), 2), /npwg/);
});

test('id-ns JSON: bigint as strings, LBA formats as objects', () => {
  const j = idNsJson(decodeIdNs(buildIdNs({ nsze: 2n ** 60n, blockSize: 4096, mssrl: 1, mcl: 2, msrc: 0 })));
  assert.equal(j.nsze, String(2n ** 60n));
  assert.equal(j.ncap, String(2n ** 60n));
  assert.equal(j.nvmcap, '0');
  assert.deepEqual(j.lbafs, [{ ms: 0, ds: 12, rp: 0 }]);
  assert.equal(j.mssrl, 1);
  assert.equal(j.nguid, '00000000000000000000000000000000');
  assert.ok(!('lbaf' in j) && !('vs' in j) && !Object.keys(j).some((k) => k.startsWith('rsvd')));
  assert.doesNotThrow(() => JSON.stringify(j));
});

test('discovery records as nvme discover prints them', () => {
  const entries = [
    { portid: 1, trsvcid: '4420', subnqn: NQN, traddr: '127.0.0.1' },
    {
      adrfam: AdrFam.IP6,
      subtype: SubType.CURRENT_DISCOVERY,
      treq: Treq.NOT_REQUIRED | Treq.DISABLE_SQFLOW,
      eflags: 0x3,
      portid: 2,
      trsvcid: '8009',
      subnqn: 'nqn.2014-08.org.nvmexpress.discovery',
      traddr: '::1',
    },
  ];
  assert.equal(
    renderDiscovery(entries, 5n),
    [
      '',
      'Discovery Log Number of Records 2, Generation counter 5',
      '=====Discovery Log Entry 0======',
      'trtype:  tcp',
      'adrfam:  ipv4',
      'subtype: nvme subsystem',
      'treq:    not specified',
      'portid:  1',
      'trsvcid: 4420',
      `subnqn:  ${NQN}`,
      'traddr:  127.0.0.1',
      'eflags:  none',
      'sectype: none',
      '=====Discovery Log Entry 1======',
      'trtype:  tcp',
      'adrfam:  ipv6',
      'subtype: current discovery subsystem',
      'treq:    not required, sq flow control disable supported',
      'portid:  2',
      'trsvcid: 8009',
      'subnqn:  nqn.2014-08.org.nvmexpress.discovery',
      'traddr:  ::1',
      'eflags:  explicit discovery connections, duplicate discovery information',
      'sectype: none',
      '',
    ].join('\n'),
  );
  assert.equal(renderDiscovery([]), '\nDiscovery Log Number of Records 0\n');
  assert.equal(
    discoveryRecord({ trtype: 0x7, portid: 1, trsvcid: '', subnqn: NQN, traddr: '' }).trtype,
    'unrecognized',
  );
  assert.equal(discoveryRecord({ portid: 1, trsvcid: '', subnqn: NQN, traddr: '' }).adrfam, '');
});
