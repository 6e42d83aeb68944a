// NBD URIs as printed by `tsblk nbd` and `tsblk serve`: the forms libnbd and qemu accept.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatNbdUri } from './uri.js';

test('TCP: host, port and export name; the default export is the bare authority', () => {
  assert.equal(formatNbdUri({ host: '127.0.0.1', port: 10809 }, 'ram0'), 'nbd://127.0.0.1:10809/ram0');
  assert.equal(formatNbdUri({ host: '127.0.0.1', port: 10809 }, ''), 'nbd://127.0.0.1:10809');
  assert.equal(formatNbdUri({ host: '::1', port: 7000 }, 'a'), 'nbd://[::1]:7000/a');
});

test('TLS required: nbds', () => {
  assert.equal(formatNbdUri({ host: '10.0.0.1', port: 10809 }, 'disk', true), 'nbds://10.0.0.1:10809/disk');
  assert.equal(
    formatNbdUri({ path: '/run/nbd.sock' }, 'disk', true),
    'nbds+unix:///disk?socket=/run/nbd.sock',
  );
});

test('unix sockets: nbd+unix with the socket in the query', () => {
  assert.equal(formatNbdUri({ path: '/tmp/x.sock' }, 'ram0'), 'nbd+unix:///ram0?socket=/tmp/x.sock');
  assert.equal(formatNbdUri({ path: '/tmp/x.sock' }, ''), 'nbd+unix:///?socket=/tmp/x.sock');
});

test('names: "/" stays literal, reserved characters are percent-encoded', () => {
  assert.equal(
    formatNbdUri({ host: '127.0.0.1', port: 1 }, 'vm/disk 1?#'),
    'nbd://127.0.0.1:1/vm/disk%201%3F%23',
  );
});
