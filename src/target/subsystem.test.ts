import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockError, ErrorCode } from '../block/errors.js';
import { FaultDevice } from '../devices/fault.js';
import { Status } from '../nvme/status.js';
import { CNTLID_MAX, Subsystem } from './subsystem.js';
import { Target } from './target.js';
import { encodeSqe } from '../nvme/command.js';
import { IoOpcode } from '../nvme/opcodes.js';
import { transportSgl } from '../nvme/sgl.js';
import { assertStatus, NQN, ram, read, rw, setup } from './testing/fixtures.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return BlockError.is(err) ? err.code : 'not a BlockError';
  }
  return undefined;
}

test('NQN, serial, model and firmware are validated; the default serial is stable per NQN', () => {
  assert.equal(
    code(() => new Subsystem({ nqn: 'iqn.2024-01.x' })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: 'nqn.with space' })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: 'nqn.' + 'x'.repeat(220) })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: NQN, serial: 'x'.repeat(21) })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: NQN, firmware: '123456789' })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: NQN, copyFormats: 0x10 })),
    ErrorCode.EINVAL,
  );
  assert.equal(
    code(() => new Subsystem({ nqn: NQN, hosts: ['bad host'] })),
    ErrorCode.EINVAL,
  );
  const a = new Subsystem({ nqn: NQN });
  const b = new Subsystem({ nqn: NQN });
  assert.equal(a.serial, b.serial);
  assert.match(a.serial, /^[0-9a-f]{20}$/);
  assert.notEqual(new Subsystem({ nqn: NQN + '2' }).serial, a.serial);
  assert.equal(a.model, 'tsblk');
  assert.equal(a.copyFormats, 0x0f);
});

test('host access: any host without a list, only listed hosts with one, allowAnyHost overrides', () => {
  const h1 = 'nqn.2014-08.org.nvmexpress:uuid:1';
  const open = new Subsystem({ nqn: NQN });
  assert.equal(open.hostAllowed(h1), true);
  const closed = new Subsystem({ nqn: NQN, hosts: [h1] });
  assert.equal(closed.hostAllowed(h1), true);
  assert.equal(closed.hostAllowed(h1 + 'x'), false);
  closed.addHost(h1 + 'x');
  assert.equal(closed.hostAllowed(h1 + 'x'), true);
  assert.equal(closed.removeHost(h1), true);
  assert.equal(closed.hostAllowed(h1), false);
  assert.equal(new Subsystem({ nqn: NQN, hosts: [h1], allowAnyHost: true }).hostAllowed('nqn.other'), true);
});

test('namespaces: duplicate NSIDs refused, listed in NSID order', () => {
  const s = new Subsystem({ nqn: NQN, namespaces: [{ nsid: 9, device: ram(1 << 20) }] });
  s.addNamespace({ nsid: 2, device: ram(1 << 20) });
  assert.deepEqual(
    s.namespaces.map((n) => n.nsid),
    [2, 9],
  );
  assert.equal(
    code(() => s.addNamespace({ nsid: 2, device: ram(1 << 20) })),
    ErrorCode.EINVAL,
  );
  const t = new Target();
  assert.equal(
    code(() => t.discovery.addNamespace({ nsid: 1, device: ram(1 << 20) })),
    ErrorCode.EINVAL,
  );
});

test('controller IDs: round-robin in 1..0xFFEF, wrapping, at most maxControllers', async () => {
  const { host, target } = setup({ subsystem: { maxControllers: 3 } });
  const s = target.subsystem(NQN)!;
  const c1 = await host.connectController(NQN);
  const c2 = await host.connectController(NQN);
  assert.deepEqual([c1.cntlid, c2.cntlid], [1, 2]);
  c1.close();
  const c3 = await host.connectController(NQN);
  assert.equal(c3.cntlid, 3);
  const c4 = await host.connectController(NQN);
  assert.equal(c4.cntlid, 4);
  assert.equal(s.allocateCntlid(), undefined, 'three live controllers');
  c2.close();
  const wrap = new Subsystem({ nqn: NQN });
  for (let i = 1; i < CNTLID_MAX; i++) wrap.allocateCntlid();
  assert.equal(wrap.allocateCntlid(), CNTLID_MAX);
  assert.equal(wrap.allocateCntlid(), 1, 'wraps to 1');
});

test('removing a namespace: new commands fail at once, running ones finish first', async () => {
  const slow = new FaultDevice(ram(1 << 20), { delays: { read: { ms: 30 } } });
  const { host, target } = setup({ namespaces: [{ nsid: 1, device: slow }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const running = read(c.io[0]!, 1, 0, 1);
  await new Promise((r) => setImmediate(r));
  let removed = false;
  const removal = target.removeNamespace(NQN, 1).then(() => (removed = true));
  const late = await read(c.io[0]!, 1, 0, 1);
  assertStatus(late.cqe, Status.INVALID_NS, true);
  assert.equal(removed, false, 'the read is still running');
  assertStatus((await running).cqe, Status.SUCCESS);
  await removal;
  assert.equal(removed, true);
  assert.equal(slow.closed, false, 'the device is not closed by the target');
});

test('a command whose connection dies before its data arrives does not hold the namespace', async () => {
  const { host, target } = setup({ namespaces: [{ nsid: 1, device: ram(1 << 20) }] });
  const c = await host.connectController(NQN, { ioQueues: 1 });
  const q = c.io[0]!;
  const sqe = encodeSqe({ ...rw(IoOpcode.WRITE, 1, 0, 8), cid: 7, flags: 0x40, dptr: transportSgl(4096) });
  const req = target.initRequest(q.queue, sqe);
  assert.equal(req.completed, false, 'waiting for R2T data');
  assert.equal(target.subsystem(NQN)!.namespace(1)!.inflight, 1);
  const responses = q.responses.length;
  q.close();
  assert.equal(req.completed, true);
  assert.equal(q.responses.length, responses, 'no response on a closed queue');
  await target.removeNamespace(NQN, 1);
  await req.execute(); // a late execute does nothing
  assert.equal(req.status.sc, Status.ABORT_QUEUE.sc);
});
