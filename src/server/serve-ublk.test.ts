// tsblk serve with a config's `ublk` section. On a machine without ublk (the project's CI
// host: no /dev/ublk-control) the start must fail with the reason and leave nothing open; on
// one with ublk (the QEMU guest) the device must appear and be gone after close(). The guest
// run of the CLI is in test/interop-ublk.test.ts.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';

import { ublkUnavailable } from '../export/ublk/device.js';
import { parseConfig } from './config.js';
import { ConfigError } from './config-error.js';
import { Server } from './serve.js';

const config = parseConfig(
  {
    devices: { disk: { type: 'ram', size: '16M' } },
    ublk: { exports: [{ device: 'disk', queues: 1, depth: 16 }] },
  },
  { source: 'site.json' },
);

test('serve with a ublk section: the device appears, or the start fails saying why ublk cannot run here', async () => {
  const why = ublkUnavailable();
  if (why !== undefined) {
    await assert.rejects(
      Server.start({ config, discovery: false }),
      (e: unknown) => ConfigError.is(e) && e.message === `site.json: ublk: cannot serve ublk devices: ${why}`,
    );
    return;
  }
  const s = await Server.start({ config, discovery: false });
  assert.equal(s.ublk.length, 1);
  assert.equal(s.ports.length, 0, 'ublk only: no NVMe/TCP listeners');
  const path = s.ublk[0]!.blockPath;
  assert.ok(existsSync(path), `${path} exists`);
  const report = await s.close();
  assert.deepEqual(report.errors, []);
  assert.equal(existsSync(path), false, `${path} is gone after close`);
});
