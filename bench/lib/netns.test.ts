// bench/lib/netns: the namespaces, addresses, shaping and counters exist while the pair
// lives, and nothing is left after teardown — also when the body throws and when a child
// still runs inside a namespace. Without root or iproute2, create() must refuse clearly.
//
//   node --import tsx --test bench/lib/netns.test.ts      (as root; a few seconds)

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';

import { NetnsPair, NetnsUnavailableError, netnsUnavailableReason, wireDelta } from './netns.js';

const unavailable = netnsUnavailableReason();

function namespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').map((l) => l.split(' ')[0] ?? '');
}

if (unavailable !== undefined) {
  test('without root or iproute2, create() refuses with NetnsUnavailableError', async () => {
    await assert.rejects(NetnsPair.create(), (err: unknown) => {
      assert.ok(err instanceof NetnsUnavailableError);
      assert.equal(err.message, unavailable);
      return true;
    });
  });
} else {
  test('a shaped pair: namespaces, addresses, tbf at the rate, counters that see a TCP transfer; gone after teardown', async () => {
    let names: string[] = [];
    await NetnsPair.with({}, async (pair) => {
      names = [pair.target.ns, pair.host.ns];
      for (const n of names) assert.ok(namespaces().includes(n), `${n} exists`);
      const addr = JSON.parse(
        execFileSync('ip', ['-n', pair.target.ns, '-j', 'addr', 'show', 'dev', pair.target.veth], {
          encoding: 'utf8',
        }),
      ) as { addr_info: { local: string; prefixlen: number }[] }[];
      assert.deepEqual(
        addr[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
        ['10.231.0.1/30'],
      );
      for (const end of [pair.target, pair.host]) {
        const q = JSON.parse(
          execFileSync('tc', ['-n', end.ns, '-j', 'qdisc', 'show', 'dev', end.veth], { encoding: 'utf8' }),
        ) as { kind: string; root?: boolean; options: { rate: number } }[];
        const root = q.find((x) => x.root);
        assert.equal(root?.kind, 'tbf');
        assert.equal(root.options.rate, 1e9 / 8, 'tc reports the rate in bytes per second');
      }
      const before = pair.readWire();
      const bytes = 2 * 1024 * 1024;
      const r = await pair.measureTcp('host→target', bytes);
      const d = wireDelta(before, pair.readWire());
      assert.equal(r.bytes, bytes);
      assert.ok(d.hostToTarget.frameBytes > bytes, 'the data and its headers were counted host→target');
      assert.ok(d.hostToTarget.linkBytes > bytes);
      assert.ok(d.targetToHost.frameBytes < bytes / 10, 'only ACKs came back');
    });
    for (const n of names) assert.ok(!namespaces().includes(n), `${n} removed`);
  });

  test('teardown after the body throws also stops a child still running inside a namespace', async () => {
    let names: string[] = [];
    let exited: Promise<unknown> | undefined;
    await assert.rejects(
      NetnsPair.with({}, async (pair) => {
        names = [pair.target.ns, pair.host.ns];
        const child = pair.spawn('target', ['sleep', '60']);
        exited = once(child, 'exit');
        throw new Error('body failed');
      }),
      /body failed/,
    );
    const [code, signal] = (await exited) as [number | null, string | null];
    assert.equal(code, null);
    assert.equal(signal, 'SIGTERM');
    for (const n of names) assert.ok(!namespaces().includes(n), `${n} removed`);
  });
}
