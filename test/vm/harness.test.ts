// The guest harness's pieces that need no guest: the initramfs archive and module order, the
// PVH note check, the peer check's CI policy, and the guest-output facts parser.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newcArchive, resolveModules } from './initramfs.js';
import { hasPvhNote } from './kernel.js';
import { checkPeers, interopSkip } from './peers.js';
import { GuestFacts } from './report.js';
import { VmError } from './vm-error.js';

test('newcArchive writes 4-byte aligned newc entries and a trailer', () => {
  const a = newcArchive([
    { name: 'bin', mode: 0o40755 },
    { name: 'init', mode: 0o100755, data: Buffer.from('#!/bin/sh\n') },
  ]);
  assert.equal(a.length % 4, 0);
  // walk the archive the way the kernel does
  const names: string[] = [];
  let p = 0;
  while (p < a.length) {
    assert.equal(a.toString('latin1', p, p + 6), '070701', `magic at ${p}`);
    const field = (i: number) => parseInt(a.toString('latin1', p + 6 + i * 8, p + 14 + i * 8), 16);
    const size = field(6);
    const namesize = field(11);
    const name = a.toString('latin1', p + 110, p + 110 + namesize - 1);
    names.push(name);
    if (name === 'init') {
      assert.equal(field(1), 0o100755);
      const start = (p + 110 + namesize + 3) & ~3;
      assert.equal(a.toString('latin1', start, start + size), '#!/bin/sh\n');
    }
    p = (((p + 110 + namesize + 3) & ~3) + size + 3) & ~3;
    if (name === 'TRAILER!!!') break;
  }
  assert.deepEqual(names, ['bin', 'init', 'TRAILER!!!']);
});

test('resolveModules loads dependencies first, skips built-ins, names a missing module', () => {
  const dep = [
    'kernel/fs/netfs/netfs.ko.xz:',
    'kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz',
    'kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
    'kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
    'kernel/fs/overlayfs/overlay.ko.xz:',
  ].join('\n');
  const builtin = 'kernel/fs/configfs/configfs.ko\n';
  assert.deepEqual(resolveModules(dep, builtin, ['9p', '9pnet_virtio', 'overlay', 'configfs']), [
    'kernel/fs/netfs/netfs.ko.xz',
    'kernel/net/9p/9pnet.ko.xz',
    'kernel/fs/9p/9p.ko.xz',
    'kernel/net/9p/9pnet_virtio.ko.xz',
    'kernel/fs/overlayfs/overlay.ko.xz',
  ]);
  assert.throws(
    () => resolveModules(dep, builtin, ['nvme-tcp']),
    (e: unknown) => e instanceof VmError && e.code === 'missing-peer' && /nvme-tcp/.test(e.message),
  );
});

/** A minimal ELF64 with one PT_NOTE holding one note. */
function elfWithNote(name: string, type: number): Buffer {
  const nameBuf = Buffer.from(`${name}\0`);
  const namePadded = Buffer.concat([nameBuf, Buffer.alloc((4 - (nameBuf.length % 4)) % 4)]);
  const note = Buffer.concat([Buffer.alloc(12), namePadded, Buffer.alloc(4)]);
  note.writeUInt32LE(nameBuf.length, 0);
  note.writeUInt32LE(4, 4);
  note.writeUInt32LE(type, 8);
  const elf = Buffer.alloc(64 + 56);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELFCLASS64
  elf.writeBigUInt64LE(64n, 0x20); // e_phoff
  elf.writeUInt16LE(56, 0x36); // e_phentsize
  elf.writeUInt16LE(1, 0x38); // e_phnum
  elf.writeUInt32LE(4, 64); // p_type = PT_NOTE
  elf.writeBigUInt64LE(120n, 64 + 8); // p_offset
  elf.writeBigUInt64LE(BigInt(note.length), 64 + 0x20); // p_filesz
  return Buffer.concat([elf, note]);
}

test('hasPvhNote finds the Xen PHYS32_ENTRY note and nothing else', () => {
  assert.equal(hasPvhNote(elfWithNote('Xen', 18)), true);
  assert.equal(hasPvhNote(elfWithNote('Xen', 17)), false);
  assert.equal(hasPvhNote(elfWithNote('GNU', 18)), false);
  assert.equal(hasPvhNote(Buffer.from('MZ not an ELF at all, a bzImage')), false);
});

test('interopSkip: skip with the reason outside CI, never under CI=true', () => {
  const saved = { CI: process.env.CI, SKIP: process.env.TSBLK_SKIP_INTEROP };
  try {
    const missing = {
      ok: false,
      missing: ['qemu-system-x86_64 (package qemu-system-x86)'],
      reason: 'interop peers missing: qemu',
    };
    delete process.env.TSBLK_SKIP_INTEROP;
    process.env.CI = 'true';
    assert.equal(interopSkip(missing), false);
    process.env.TSBLK_SKIP_INTEROP = '1';
    assert.equal(interopSkip(missing), false, 'CI ignores TSBLK_SKIP_INTEROP');
    delete process.env.CI;
    assert.equal(interopSkip(missing), 'TSBLK_SKIP_INTEROP=1');
    delete process.env.TSBLK_SKIP_INTEROP;
    assert.equal(interopSkip(missing), 'interop peers missing: qemu');
    assert.equal(interopSkip({ ok: true, missing: [], reason: '' }), false);
  } finally {
    for (const [k, v] of [
      ['CI', saved.CI],
      ['TSBLK_SKIP_INTEROP', saved.SKIP],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('checkPeers names a missing tool with its Debian package', () => {
  const c = checkPeers(['tsblk-no-such-tool']);
  assert.equal(c.ok, false);
  assert.ok(c.missing.includes('tsblk-no-such-tool (package tsblk-no-such-tool)'), c.missing.join(', '));
  assert.match(c.reason, /scripts\/install-peers\.sh/);
});

test('GuestFacts reads facts and failed checks, and quotes the output for a missing fact', () => {
  const f = new GuestFacts(
    'fact: a=1\nnoise\nfact: a=2\nfact: list_row=/dev/x  y = z\ncheck FAILED: it\ncheck ok: fine\n',
  );
  assert.equal(f.get('a'), '2');
  assert.deepEqual(f.all('a'), ['1', '2']);
  assert.equal(f.get('list_row'), '/dev/x  y = z');
  assert.deepEqual(f.all('none'), []);
  assert.deepEqual(f.failedChecks(), ['check FAILED: it']);
  assert.throws(() => f.get('missing'), /no fact 'missing'.*\n[\s\S]*check ok: fine/);
});
