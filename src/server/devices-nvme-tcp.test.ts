// DeviceSet with nvme-tcp devices against an in-process tsblk target: one association per
// (address, subsystem NQN, host NQN), shared by the namespaces opened through it, and
// disconnected by closeAll().

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../block/errors.js';
import type { NvmeController } from '../host/controller.js';
import { RemoteNamespace } from '../host/remote-namespace.js';
import { parseConfig } from './config.js';
import { DeviceSet } from './devices.js';
import { Server } from './serve.js';

const NQN = 'nqn.2026-11.io.tsblk:devset';

describe('DeviceSet: nvme-tcp devices', () => {
  let server: Server;
  let url: string;
  let port: number;

  before(async () => {
    server = await Server.start({
      config: parseConfig({
        subsystems: { [NQN]: { namespaces: [{ device: 'ram:4M,name=d1' }, { device: 'ram:4M,name=d2' }] } },
      }),
      listen: [{ address: '127.0.0.1', port: 0 }],
      discovery: false,
    });
    port = server.listeners[0]!.port;
    url = `nvme-tcp://127.0.0.1:${port}/${NQN}`;
  });
  after(() => server.close());

  const liveControllers = () => server.target.controllers.filter((c) => c.live).length;

  it('namespaces of one (address, NQN, host NQN) share one controller; closeAll disconnects it', async () => {
    const config = parseConfig({
      devices: { r2: { type: 'nvme-tcp', address: `127.0.0.1:${port}`, subnqn: NQN, nsid: 2 } },
    });
    const set = new DeviceSet(config, { controller: { keepAliveTimeoutMs: 2000 } });
    let controllers: NvmeController[];
    try {
      const n1 = await set.open(`${url}/1`);
      const n2 = await set.open(`${url}/2`);
      const r2 = await set.open('r2');
      const n1again = await set.open(`nvme-tcp://127.0.0.1:${port}/${NQN}/1?hdgst=off`);
      const named = await set.open(`${url}/1?name=first`);
      const other = await set.open(`${url}/1?hostnqn=nqn.2026-11.io.tsblk:another-host`);
      assert.ok(
        n1 instanceof RemoteNamespace && n2 instanceof RemoteNamespace && other instanceof RemoteNamespace,
      );
      assert.ok(named instanceof RemoteNamespace);
      assert.equal(n1.parent, n2.parent, 'one association for both namespaces');
      assert.ok(r2 instanceof RemoteNamespace);
      assert.equal(r2.name, 'r2', 'a config device is named by its key');
      assert.equal(r2.parent, n2.parent, 'and reaches its namespace through the same association');
      assert.equal(n1again, n1, 'another spec text for the same namespace is the same device');
      assert.equal(named.name, 'first');
      assert.notEqual(named, n1);
      assert.equal(named.parent, n1.parent);
      assert.notEqual(other.parent, n1.parent, 'another host NQN is another association');
      assert.ok(n2.canCopyFrom(n1), 'namespaces of one controller copy together');
      assert.ok(!n2.canCopyFrom(other), 'not across associations');
      controllers = await set.controllers.controllers();
      assert.equal(controllers.length, 2);
      assert.equal(
        controllers[0]!.options.keepAliveTimeoutMs,
        2000,
        'DeviceSet options reach the controller',
      );
      assert.equal(liveControllers(), 2);
      assert.equal(set.opened.length, 5, 'n1, n2, r2, named, other');
      // The last block of namespace 2, through the shared association.
      await n2.write(4 * 1024 * 1024 - 512, new Uint8Array(512).fill(0x6b));
      const back = new Uint8Array(512);
      await r2.read(4 * 1024 * 1024 - 512, back);
      assert.equal(back[511], 0x6b);
    } finally {
      await set.closeAll();
    }
    for (const c of controllers) assert.equal(c.state, 'deleted');
    assert.equal(liveControllers(), 0);
    assert.equal((await set.controllers.controllers()).length, 0);
  });

  it('a namespace the controller does not have: ENODEV naming the active ones; nothing left connected', async () => {
    const set = new DeviceSet();
    try {
      await assert.rejects(set.open(`${url}/7`), {
        code: ErrorCode.ENODEV,
        message: `ENODEV: ${NQN}@127.0.0.1:${port}: no active namespace 7 (active: 1, 2)`,
      });
    } finally {
      await set.closeAll();
    }
    assert.equal(liveControllers(), 0);
  });

  it('a failed connect is not kept: the next open tries again', async () => {
    const set = new DeviceSet();
    try {
      await assert.rejects(set.open(`nvme-tcp://127.0.0.1:${port}/nqn.2026-11.io.tsblk:none/1`), {
        code: 'CONNECT',
        message: new RegExp(
          `^cannot connect to nqn\\.2026-11\\.io\\.tsblk:none at 127\\.0\\.0\\.1:${port} \\(host NQN [^)]+\\): Connect \\(queue 0\\) refused: `,
        ),
      });
      assert.equal((await set.controllers.controllers()).length, 0);
      const ns = await set.open(`${url}/1`);
      assert.equal(ns.size, 4 * 1024 * 1024);
    } finally {
      await set.closeAll();
    }
    assert.equal(liveControllers(), 0);
  });
});
