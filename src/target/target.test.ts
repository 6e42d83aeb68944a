import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode } from '../block/errors.js';
import { DISCOVERY_NQN } from './subsystem.js';
import { Target } from './target.js';
import { LoopHost } from './testing/loop.js';
import { FaultDevice } from '../devices/fault.js';
import { NQN, ram, write } from './testing/fixtures.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return BlockError.is(err) ? err.code : 'not a BlockError';
  }
  return undefined;
}

test('target options and ports are validated', () => {
  assert.equal(
    code(() => new Target({ maxQueueSize: 8 })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Target({ maxDataTransferBytes: 3 * 4096 })),
    ErrorCode.EINVAL,
  );
  const t = new Target();
  assert.equal(
    code(() => t.addPort({ portid: 1, adrfam: 'ipv5' as 'ipv4', traddr: 'x', trsvcid: '1' })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => t.addPort({ portid: 70000, adrfam: 'ipv4', traddr: 'x', trsvcid: '1' })),
    ErrorCode.EINVAL,
  );
  t.addPort({ portid: 1, adrfam: 'ipv4', traddr: '0.0.0.0', trsvcid: '4420' });
  assert.equal(
    code(() => t.addPort({ portid: 1, adrfam: 'ipv4', traddr: 'x', trsvcid: '1' })),
    ErrorCode.EINVAL,
  );
  assert.equal(t.removePort(1), true);
  assert.equal(t.removePort(1), false);
});

test('subsystems: unique NQNs, the discovery NQN is reserved, lookup includes discovery', () => {
  const t = new Target({ subsystems: [{ nqn: NQN }] });
  assert.equal(
    code(() => t.addSubsystem({ nqn: NQN })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => t.addSubsystem({ nqn: DISCOVERY_NQN })),
    ErrorCode.EINVAL,
  );
  assert.equal(t.subsystem(DISCOVERY_NQN), t.discovery);
  assert.deepEqual(
    t.subsystems.map((s) => s.nqn),
    [NQN],
  );
  assert.equal(
    code(() => t.addNamespace('nqn.none', { nsid: 1, device: ram(1 << 20) })),
    ErrorCode.EINVAL,
  );
});

test('removeSubsystem deletes its controllers; shutdown deletes every controller', async () => {
  const t = new Target({
    subsystems: [{ nqn: NQN, namespaces: [{ nsid: 1, device: ram(1 << 20) }] }, { nqn: NQN + '2' }],
  });
  const host = new LoopHost(t);
  const a = await host.connectController(NQN, { ioQueues: 1 });
  const b = await host.connectController(NQN + '2');
  const d = await host.connectController(DISCOVERY_NQN);
  await t.removeSubsystem(NQN);
  assert.equal(a.controller.live, false);
  assert.equal(a.io[0]!.queue.closed, true);
  assert.equal(t.subsystem(NQN), undefined);
  assert.equal(t.controllers.length, 2);
  await t.shutdown();
  assert.equal(b.controller.live, false);
  assert.equal(d.controller.live, false);
  assert.equal(t.controllers.length, 0);
});

test('shutdown resolves only after the commands still running have finished', async () => {
  const slow = new FaultDevice(ram(1 << 20), { delays: { write: { ms: 30 } } });
  const t = new Target({ subsystems: [{ nqn: NQN, namespaces: [{ nsid: 1, device: slow }] }] });
  const host = new LoopHost(t);
  const c = await host.connectController(NQN, { ioQueues: 1 });
  void write(c.io[0]!, 1, 0, Buffer.alloc(512, 7));
  await new Promise((r) => setImmediate(r));
  await t.shutdown();
  assert.equal(c.controller.live, false);
  const b = Buffer.alloc(512);
  await slow.read(0, b);
  assert.equal(b[0], 7, 'the write that was running completed before shutdown resolved');
});
