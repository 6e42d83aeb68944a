import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { congestionControl, isCongestionName, switchCongestionControl } from './congestion.js';

test('congestionControl reads the sysctl; names are checked before anything is written', () => {
  const now = congestionControl();
  let expected = '?';
  try {
    expected = readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    // no /proc here: '?' is the answer
  }
  assert.equal(now, expected);
  assert.ok(isCongestionName('cubic') && isCongestionName('bbr') && isCongestionName('reno'));
  assert.ok(!isCongestionName('') && !isCongestionName('../x') && !isCongestionName('Cubic'));
  // A name the kernel does not offer is refused without touching the setting.
  assert.throws(
    () => switchCongestionControl('nosuchcc'),
    /--congestion nosuchcc: not available here|ENOENT/,
  );
  assert.equal(congestionControl(), now);
});
