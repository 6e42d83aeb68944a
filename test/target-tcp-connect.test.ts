// NVMe/TCP target over real sockets: the IC exchange (digests, MAXH2CDATA, alignment), the
// Linux host's connect sequence (Connect, CC.EN, Identify, I/O queues), host access and the
// discovery log on the discovery listener.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RamDevice } from '../src/devices/ram.js';
import { decodeConnectInvalid } from '../src/nvme/fabrics.js';
import {
  Cns,
  CntrlType,
  decodeIdCtrl,
  decodeIdNs,
  decodeNsIdDescs,
  decodeNsList,
  ioccszFor,
  Nidt,
  Oncs,
} from '../src/nvme/identify.js';
import { decodeDiscoveryLog, LogPageId, TrType, AdrFam } from '../src/nvme/log-page.js';
import { sameStatus, Status } from '../src/nvme/status.js';
import { buildCapsuleCmd, buildICReq } from '../src/nvme/tcp/builder.js';
import { DigestOption, ICReqHeader, TcpFes } from '../src/nvme/tcp/pdu.js';
import { DISCOVERY_NQN } from '../src/target/subsystem.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../src/target/tcp/testing/fixture.js';
import {
  connectQueue,
  TcpHostController,
  TcpHostError,
  TcpHostQueue,
  TEST_HOSTNQN,
} from '../src/target/tcp/testing/host.js';

const MiB = 1024 * 1024;

describe('IC exchange', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget()));
  after(() => f.close());

  for (const dgst of [0, 1, 2, 3]) {
    it(`answers ICReq digests 0x${dgst} with ICResp PFV 0, CPDA 0, the same digests, MAXH2CDATA`, async () => {
      const q = await TcpHostQueue.open(f.address, {
        headerDigest: (dgst & DigestOption.HDR_DIGEST_ENABLE) !== 0,
        dataDigest: (dgst & DigestOption.DATA_DIGEST_ENABLE) !== 0,
      });
      try {
        assert.equal(q.icresp.pfv, 0);
        assert.equal(q.icresp.cpda, 0);
        assert.equal(q.icresp.dgst, dgst);
        // min(nvmet's 4 MiB, MDTS): the target's default MDTS is 1 MiB.
        assert.equal(q.icresp.maxh2cdata, MiB);
        assert.equal(f.transport.maxH2CData, MiB);
      } finally {
        q.destroy();
      }
    });
  }

  it('refuses PFV 1 with C2HTermReq FES 6 at the PFV byte and closes', async () => {
    const q = await TcpHostQueue.openRaw(f.address);
    q.sendRaw(buildICReq({ pfv: 1 }));
    await q.closed;
    assert.equal(q.termReqs.length, 1);
    assert.equal(q.termReqs[0]!.fes, TcpFes.UNSUPPORTED_PARAM);
    assert.equal(q.termReqs[0]!.fei, ICReqHeader.offsetOf('pfv'));
  });

  it('refuses HPDA 32 with FES 1 at the HPDA byte', async () => {
    const q = await TcpHostQueue.openRaw(f.address);
    q.sendRaw(buildICReq({ hpda: 32 }));
    await q.closed;
    assert.equal(q.termReqs[0]?.fes, TcpFes.INVALID_PDU_HDR);
    assert.equal(q.termReqs[0]?.fei, ICReqHeader.offsetOf('hpda'));
  });

  it('refuses a capsule before ICReq with a PDU Sequence Error', async () => {
    const q = await TcpHostQueue.openRaw(f.address);
    q.sendRaw(buildCapsuleCmd({ headerDigest: false, dataDigest: false }, Buffer.alloc(64)));
    await q.closed;
    assert.equal(q.termReqs[0]?.fes, TcpFes.PDU_SEQ_ERR);
  });

  it('refuses a second ICReq with a PDU Sequence Error', async () => {
    const q = await TcpHostQueue.open(f.address);
    const err = await new Promise<TcpHostError>((resolve) => {
      void q.closed.then(() => resolve(q.error!));
      q.sendRaw(buildICReq());
    });
    assert.equal(err.code, 'TERM_REQ');
    assert.equal(q.termReqs[0]?.fes, TcpFes.PDU_SEQ_ERR);
  });

  it('aligns C2HData to the host PDU data alignment (HPDA 7 = 32 bytes) with header digests', async () => {
    const c = await TcpHostController.connect(f.address, {
      subnqn: TCP_TEST_NQN,
      hpda: 7,
      headerDigest: true,
    });
    try {
      // The host's parser refuses a PDO that is not a multiple of 32.
      const r = await c.identify(Cns.CTRL);
      assert.ok(sameStatus(r.cqe.status, Status.SUCCESS));
      assert.equal(decodeIdCtrl(r.data!).subnqn, TCP_TEST_NQN);
    } finally {
      await c.close();
    }
  });
});

describe('Connect, Identify and I/O queues over TCP', () => {
  let f: TcpFixture;
  before(
    async () =>
      (f = await startTcpTarget({
        namespaces: [
          { nsid: 1, device: new RamDevice({ size: 64 * MiB }) },
          { nsid: 7, device: new RamDevice({ size: 8 * MiB, logicalBlockSize: 4096 }) },
        ],
        subsystem: { serial: 'TSBLK-TCP-1', model: 'tsblk tcp test' },
      })),
  );
  after(() => f.close());

  for (const digests of [false, true]) {
    it(`connects like the Linux host${digests ? ' with header and data digests' : ''}`, async () => {
      const c = await TcpHostController.connect(f.address, {
        subnqn: TCP_TEST_NQN,
        ioQueues: 2,
        headerDigest: digests,
        dataDigest: digests,
      });
      try {
        const id = c.idCtrl!;
        assert.equal(id.cntlid, c.cntlid);
        assert.equal(id.subnqn, TCP_TEST_NQN);
        assert.equal(id.sn.trim(), 'TSBLK-TCP-1');
        assert.equal(id.mn.trim(), 'tsblk tcp test');
        assert.equal(id.cntrltype, CntrlType.IO);
        // 16 KiB of in-capsule data on I/O queues (nvmet's 4 × PAGE_SIZE), MDTS 1 MiB.
        assert.equal(id.ioccsz, ioccszFor(16 * 1024));
        assert.equal(c.ioInlineDataSize, 16 * 1024);
        assert.equal(id.mdts, 8);
        assert.ok((id.oncs & Oncs.COPY) !== 0, 'ONCS Copy bit');
        assert.equal(c.io.length, 2);
        const ns1 = decodeIdNs((await c.identify(Cns.NS, 1)).data!);
        assert.equal(Number(ns1.nsze), (64 * MiB) / 512);
        const ns7 = decodeIdNs((await c.identify(Cns.NS, 7)).data!);
        assert.equal(Number(ns7.nsze), (8 * MiB) / 4096);
        // The controller the target made is bound to both I/O queue connections.
        const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
        assert.deepEqual([...ctrl.queues.keys()].sort(), [0, 1, 2]);
      } finally {
        await c.close();
      }
    });
  }

  it('answers the namespace scan of the Linux host (active list, identification descriptors)', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, ioQueues: 0 });
    try {
      assert.deepEqual(decodeNsList((await c.identify(Cns.NS_ACTIVE_LIST, 0)).data!), [1, 7]);
      const descs = decodeNsIdDescs((await c.identify(Cns.NS_DESC_LIST, 7)).data!);
      const ns7 = f.target.subsystem(TCP_TEST_NQN)!.namespace(7)!;
      assert.deepEqual(descs.find((d) => d.nidt === Nidt.NGUID)?.nid, ns7.nguid);
      assert.deepEqual(descs.find((d) => d.nidt === Nidt.UUID)?.nid, ns7.uuid);
    } finally {
      await c.close();
    }
  });

  it('sends the Connect of an I/O queue through R2T when it does not fit in the capsule', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, ioQueues: 0 });
    try {
      const q = await TcpHostQueue.open(f.address, { inlineDataSize: 0 });
      const r = await connectQueue(q, {
        subnqn: TCP_TEST_NQN,
        qid: 1,
        size: 32,
        cntlid: c.cntlid,
        hostid: c.hostid,
      });
      assert.ok(sameStatus(r.cqe.status, Status.SUCCESS));
      assert.equal(r.r2ts.length, 1);
      assert.equal(r.r2ts[0]!.r2tl, 1024);
      q.destroy();
    } finally {
      await c.close();
    }
  });

  it('closing the admin queue ends the association and closes its I/O queues', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, ioQueues: 2 });
    const cntlid = c.cntlid;
    c.admin.close();
    await Promise.all(c.io.map((q) => q.closed));
    assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controller(cntlid), undefined);
  });
});

describe('host access', () => {
  const allowed = 'nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555';
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget({ subsystem: { hosts: [allowed] } })));
  after(() => f.close());

  it('refuses a host NQN the subsystem does not list with Connect Invalid Host', async () => {
    const q = await TcpHostQueue.open(f.address);
    try {
      const r = await connectQueue(q, { subnqn: TCP_TEST_NQN, qid: 0, size: 32, hostnqn: TEST_HOSTNQN });
      assert.ok(sameStatus(r.cqe.status, Status.CONNECT_INVALID_HOST));
      assert.equal(decodeConnectInvalid(r.cqe.dw0).where, 'data');
    } finally {
      q.destroy();
    }
  });

  it('admits the listed host', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, hostnqn: allowed });
    assert.equal(c.io.length, 1);
    await c.close();
  });
});

describe('discovery listener', () => {
  let f: TcpFixture;
  before(async () => (f = await startTcpTarget({ discovery: true })));
  after(() => f.close());

  it('serves the discovery log page listing the I/O listener (as nvme discover reads it)', async () => {
    const c = await TcpHostController.connect(f.discoveryAddress, { subnqn: DISCOVERY_NQN });
    try {
      assert.equal(c.idCtrl!.cntrltype, CntrlType.DISCOVERY);
      // nvme-cli reads the 1024-byte header first, then the whole page.
      const head = decodeDiscoveryLog((await c.getLogPage(LogPageId.DISCOVER, 1024)).data!);
      assert.equal(head.numrec, 1);
      const log = decodeDiscoveryLog(
        (await c.getLogPage(LogPageId.DISCOVER, 1024 * (1 + head.numrec))).data!,
      );
      assert.equal(log.genctr, head.genctr);
      const e = log.entries[0]!;
      assert.equal(e.trtype, TrType.TCP);
      assert.equal(e.adrfam, AdrFam.IP4);
      assert.equal(e.portid, f.io.portid);
      assert.equal(e.trsvcid.trim(), String(f.io.port));
      assert.equal(e.traddr.trim(), '127.0.0.1');
      assert.equal(e.subnqn, TCP_TEST_NQN);
      // No entry names the discovery listener itself as a way to the subsystem.
      assert.ok(log.entries.every((x) => x.trsvcid.trim() !== String(f.discovery!.port)));
    } finally {
      await c.close();
    }
  });

  it('does not let hosts reach an NVM subsystem through the discovery listener', async () => {
    const q = await TcpHostQueue.open(f.discoveryAddress);
    try {
      const r = await connectQueue(q, { subnqn: TCP_TEST_NQN, qid: 0, size: 32 });
      assert.ok(sameStatus(r.cqe.status, Status.CONNECT_INVALID_PARAM));
    } finally {
      q.destroy();
    }
  });

  it('also answers discovery on the I/O listener, as nvmet', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: DISCOVERY_NQN });
    const log = decodeDiscoveryLog((await c.getLogPage(LogPageId.DISCOVER, 2048)).data!);
    assert.equal(log.entries[0]?.subnqn, TCP_TEST_NQN);
    await c.close();
  });
});
