// discover() against tsblk's target (discovery listener and I/O listener), and the GENCTR
// re-read loop of readDiscoveryLog against a scripted log page.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AdrFam, encodeDiscoveryLog, SubType, TrType, type DiscoveryEntry } from '../nvme/log-page.js';
import { startTcpTarget, TCP_TEST_NQN } from '../target/tcp/testing/fixture.js';
import { discover, DISCOVERY_MAX_RETRIES, readDiscoveryLog } from './discovery.js';
import { HostError } from './errors.js';

describe('discover()', () => {
  it("returns the target's discovery log entries and disconnects", async () => {
    const f = await startTcpTarget({ discovery: true });
    try {
      for (const address of [f.discoveryAddress, f.address]) {
        const entries = await discover({ address, connectTimeoutMs: 2000 });
        const io = entries.filter((e) => e.subtype === SubType.NVME);
        assert.deepEqual(io, [
          {
            trtype: TrType.TCP,
            adrfam: AdrFam.IP4,
            subtype: SubType.NVME,
            treq: 0,
            portid: f.io.portid,
            cntlid: 0xffff,
            asqsz: 32,
            eflags: 0,
            trsvcid: String(f.address.port),
            subnqn: TCP_TEST_NQN,
            traddr: '127.0.0.1',
            sectype: 0,
          },
        ]);
      }
      // Every connection of the discovery controllers is gone.
      for (let i = 0; i < 100 && f.transport.connections.size > 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(f.transport.connections.size, 0);
    } finally {
      await f.close();
    }
  });

  it('with digests too', async () => {
    const f = await startTcpTarget({ discovery: true });
    try {
      const entries = await discover({ address: f.discoveryAddress, headerDigest: true, dataDigest: true });
      assert.ok(entries.some((e) => e.subnqn === TCP_TEST_NQN && e.trsvcid === String(f.address.port)));
    } finally {
      await f.close();
    }
  });

  it('fails with CONNECT when nothing listens', async () => {
    const f = await startTcpTarget();
    const address = f.address;
    await f.close();
    await assert.rejects(discover({ address }), (e) => HostError.is(e) && e.code === 'CONNECT');
  });
});

/** A discovery log page that changes GENCTR `changes` times, as the reads go. */
function scriptedLog(changes: number) {
  const entry = (portid: number): DiscoveryEntry => ({
    portid,
    trsvcid: '4420',
    subnqn: TCP_TEST_NQN,
    traddr: '10.0.0.1',
  });
  let gen = 1;
  let headerReads = 0;
  const calls: Array<{ lpo: number; length: number }> = [];
  return {
    calls,
    ctrl: {
      name: 'scripted',
      async getLogPage(_lid: number, length: number, opts: { lpo?: number } = {}): Promise<Buffer> {
        const lpo = opts.lpo ?? 0;
        calls.push({ lpo, length });
        if (lpo === 0 && headerReads++ > 0 && gen <= changes) gen++; // changed since the first read
        const page = encodeDiscoveryLog(gen, [entry(gen), entry(gen + 100)]);
        const out = Buffer.alloc(length);
        page.copy(out, 0, lpo, lpo + length);
        return out;
      },
    },
  };
}

describe('readDiscoveryLog', () => {
  it('reads the header, the records, the header again; re-reads while GENCTR changed', async () => {
    const s = scriptedLog(2);
    const entries = await readDiscoveryLog(s.ctrl);
    assert.deepEqual(
      entries.map((e) => e.portid),
      [3, 103],
    );
    assert.deepEqual(s.calls, [
      { lpo: 0, length: 1024 },
      { lpo: 1024, length: 2048 },
      { lpo: 0, length: 1024 },
      { lpo: 1024, length: 2048 },
      { lpo: 0, length: 1024 },
      { lpo: 1024, length: 2048 },
      { lpo: 0, length: 1024 },
    ]);
  });

  it('gives up with PROTOCOL when GENCTR keeps changing', async () => {
    const s = scriptedLog(1000);
    await assert.rejects(
      readDiscoveryLog(s.ctrl),
      (e) => HostError.is(e) && e.code === 'PROTOCOL' && /changed/.test(e.message),
    );
    assert.equal(s.calls.filter((c) => c.lpo === 1024).length, DISCOVERY_MAX_RETRIES);
  });
});
