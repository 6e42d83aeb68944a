// Keep-alive over TCP: when a controller's keep-alive timer expires, the transport closes
// every connection of that controller (admin and I/O) and nothing else. Time is a FakeClock,
// so expiry is a step, not a sleep.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isSuccess } from '../src/nvme/status.js';
import { FakeClock } from '../src/target/testing/fake-clock.js';
import { startTcpTarget, TCP_TEST_NQN, type TcpFixture } from '../src/target/tcp/testing/fixture.js';
import { TcpHostController } from '../src/target/tcp/testing/host.js';
import type { TcpQueue } from '../src/target/tcp/queue.js';

describe('keep-alive expiry over TCP', () => {
  const clock = new FakeClock();
  let f: TcpFixture;
  let other: TcpHostController;
  before(async () => {
    f = await startTcpTarget({ target: { clock } });
    other = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, kato: 0 });
  });
  after(async () => {
    await other.close();
    await f.close();
  });

  it('closes the admin and every I/O connection of the expired controller only', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, kato: 2000, ioQueues: 2 });
    const ctrl = f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)!;
    assert.equal(ctrl.kato, 2);
    const serverSide = [...ctrl.queues.values()].map((q) => (q.context as TcpQueue).closed);
    assert.equal(serverSide.length, 3);
    // The connect sequence counts as traffic: one more period (traffic-based keep-alive)...
    clock.advance(2000);
    assert.equal(ctrl.live, true);
    // ...then a period with no command at all.
    clock.advance(2000);
    assert.equal(ctrl.live, false);
    await Promise.all([c.admin.closed, ...c.io.map((q) => q.closed), ...serverSide]);
    assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid), undefined);
    assert.equal(f.transport.connections.size, 1 + other.io.length, 'only the other controller is connected');
    const r = await other.read(1, 0, 1);
    assert.ok(isSuccess(r.cqe.status));
  });

  it('Keep Alive commands keep the controller', async () => {
    const c = await TcpHostController.connect(f.address, { subnqn: TCP_TEST_NQN, kato: 2000 });
    try {
      for (let i = 0; i < 5; i++) {
        assert.ok(isSuccess((await c.keepAlive()).cqe.status));
        clock.advance(1900);
      }
      assert.equal(f.target.subsystem(TCP_TEST_NQN)!.controller(c.cntlid)?.live, true);
      assert.equal(c.admin.isClosed, false);
    } finally {
      await c.close();
    }
  });
});
