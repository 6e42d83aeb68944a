// defaultHostNqn / defaultHostId: the nvme-cli files when present, else an identity derived
// from the machine ID (stable, and different per machine).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultHostId,
  defaultHostNqn,
  machineUuid,
  uuidBytes,
  uuidText,
  type HostIdentityFiles,
} from './host-nqn.js';

describe('host identity', () => {
  let dir: string;
  let files: HostIdentityFiles;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsblk-hostnqn-'));
    files = {
      hostnqn: join(dir, 'hostnqn'),
      hostid: join(dir, 'hostid'),
      machineId: join(dir, 'machine-id'),
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('derives a uuid NQN and host ID from the machine ID when /etc/nvme has neither', () => {
    writeFileSync(files.machineId, '0123456789abcdef0123456789abcdef\n');
    const nqn = defaultHostNqn(files);
    assert.match(
      nqn,
      /^nqn\.2014-08\.org\.nvmexpress:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal(defaultHostNqn(files), nqn, 'stable');
    assert.equal(uuidText(defaultHostId(files)), nqn.split(':uuid:')[1]);
    assert.ok(!nqn.includes('0123456789abcdef'), 'the machine ID itself is not disclosed');
    writeFileSync(files.machineId, 'fedcba9876543210fedcba9876543210\n');
    assert.notEqual(defaultHostNqn(files), nqn, 'another machine, another NQN');
  });

  it('takes /etc/nvme/hostnqn and the UUID inside it', () => {
    writeFileSync(files.hostnqn, 'nqn.2014-08.org.nvmexpress:uuid:5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\n');
    assert.equal(
      defaultHostNqn(files),
      'nqn.2014-08.org.nvmexpress:uuid:5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b',
    );
    assert.equal(uuidText(defaultHostId(files)), '5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
  });

  it('takes /etc/nvme/hostid when present; a non-uuid NQN falls back to the machine UUID', () => {
    writeFileSync(files.hostnqn, 'nqn.2026-01.com.example:host-7');
    assert.equal(defaultHostNqn(files), 'nqn.2026-01.com.example:host-7');
    assert.equal(uuidText(defaultHostId(files)), machineUuid(files));
    writeFileSync(files.hostid, 'A1B2C3D4-0000-4000-8000-00000000000F\n');
    assert.deepEqual(defaultHostId(files), uuidBytes('a1b2c3d4-0000-4000-8000-00000000000f'));
    assert.equal(defaultHostId(files).length, 16);
  });

  it('refuses a malformed UUID', () => {
    assert.throws(() => uuidBytes('not-a-uuid'), RangeError);
  });
});
