// Is everything an interop test needs installed? The guest runs the host's own userland (the
// host's / is its root), so a tool the guest script calls must be installed on the host.
// scripts/install-peers.sh installs all of it on Debian 12.
//
// Policy (docs/interop.md): under CI=true a missing peer fails the test; elsewhere the test is
// skipped with the reason, and TSBLK_SKIP_INTEROP=1 skips interop tests on purpose.

import { accessSync, constants, closeSync, openSync, readSync } from 'node:fs';
import { findGuestKernel, type GuestKernel } from './kernel.js';

/** The guest's PATH: the host's tools are found the same way inside the guest. */
export const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface PeerCheck {
  ok: boolean;
  /** one entry per missing piece, e.g. "qemu-system-x86_64 (package qemu-system-x86)" */
  missing: string[];
  kernel?: GuestKernel;
  /** one sentence for a skip or a failure message */
  reason: string;
}

/** Debian package of each tool, for the message. */
const PACKAGE_OF: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  xz: 'xz-utils',
  zstd: 'zstd',
  nvme: 'nvme-cli',
  fio: 'fio',
  'mkfs.ext4': 'e2fsprogs',
  ss: 'iproute2',
  modprobe: 'kmod',
  node: 'nodejs',
};

/** Absolute path of `tool` on the guest's PATH, or undefined. */
export function which(tool: string): string | undefined {
  for (const dir of GUEST_PATH.split(':')) {
    try {
      accessSync(`${dir}/${tool}`, constants.X_OK);
      return `${dir}/${tool}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** True for an ELF executable without a PT_INTERP program header (statically linked). */
function isStaticElf(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const b = Buffer.alloc(4096);
    const n = readSync(fd, b, 0, b.length, 0);
    if (n < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
    const phoff = Number(b.readBigUInt64LE(0x20));
    const size = b.readUInt16LE(0x36);
    const count = b.readUInt16LE(0x38);
    for (let i = 0; i < count && phoff + (i + 1) * size <= n; i++) {
      if (b.readUInt32LE(phoff + i * size) === 3 /* PT_INTERP */) return false;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Checks QEMU, the guest kernel, static busybox, the decompressors the harness uses, and
 * `tools` (commands the guest script runs, e.g. ['nvme', 'fio']).
 */
export function checkPeers(tools: readonly string[] = []): PeerCheck {
  const missing: string[] = [];
  for (const t of ['qemu-system-x86_64', 'xz', 'zstd', ...tools]) {
    if (!which(t)) missing.push(`${t} (package ${PACKAGE_OF[t] ?? t})`);
  }
  const kernel = findGuestKernel();
  if (!kernel) {
    const want = process.env.TSBLK_VM_KERNEL ?? '6.12.*';
    missing.push(
      `guest kernel /boot/vmlinuz-${want} with /lib/modules/<version> (package linux-image-6.12-amd64)`,
    );
  }
  if (!isStaticElf('/bin/busybox')) missing.push('static /bin/busybox (package busybox-static)');
  const reason = missing.length
    ? `interop peers missing: ${missing.join(', ')}; install them with scripts/install-peers.sh (as root)`
    : 'all interop peers present';
  return { ok: missing.length === 0, missing, ...(kernel ? { kernel } : {}), reason };
}

/**
 * The `skip` option for an interop test's describe(): a reason to skip outside CI (peers
 * missing, or TSBLK_SKIP_INTEROP=1), `false` otherwise. Under CI=true it is always `false`,
 * so a missing peer reaches the test's `before` hook and fails (see `assertPeers`).
 */
export function interopSkip(check: PeerCheck): string | false {
  if (process.env.CI === 'true') return false;
  if (process.env.TSBLK_SKIP_INTEROP === '1') return 'TSBLK_SKIP_INTEROP=1';
  return check.ok ? false : check.reason;
}

/** Throws when a peer is missing: call first in the interop test's `before` hook. */
export function assertPeers(check: PeerCheck): void {
  if (!check.ok) throw new Error(check.reason);
}
