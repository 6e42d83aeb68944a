// The guest's initramfs: static busybox, test/vm/init.sh as /init, and the few modules /init
// needs before it can reach the host's root (9p over virtio, overlay, configfs), decompressed
// because busybox insmod reads plain .ko files. Written as an uncompressed newc cpio: the
// kernel unpacks it at once, where gunzip would cost time under TCG.
//
// Cached under the cache dir, keyed by kernel version, init script, module list and busybox,
// so a change to any of them builds a new one.

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { GuestKernel } from './kernel.js';
import { VmError } from './vm-error.js';

/** Modules /init loads, in any order (dependencies come from modules.dep). */
export const INITRAMFS_MODULES = ['9p', '9pnet_virtio', 'overlay', 'configfs'] as const;

const BUSYBOX = '/bin/busybox';

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
}

/** One newc archive ("070701" headers, 4-byte alignment, TRAILER!!! at the end). */
export function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const fields = [ino++, e.mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const header = Buffer.from('070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join(''));
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

const moduleName = (path: string) => basename(path).replace(/\.ko(\.[a-z]+)?$/, '');
const normalise = (name: string) => name.replace(/-/g, '_');

/** Module paths (relative to the module dir) to load for `wanted`, dependencies first. */
export function resolveModules(
  modulesDep: string,
  modulesBuiltin: string,
  wanted: readonly string[],
): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon);
    deps.set(
      path,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    byName.set(normalise(moduleName(path)), path);
  }
  const builtin = new Set(
    modulesBuiltin
      .split('\n')
      .filter(Boolean)
      .map((p) => normalise(moduleName(p))),
  );
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string) => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const m of wanted) {
    if (builtin.has(normalise(m))) continue;
    const path = byName.get(normalise(m));
    if (!path)
      throw new VmError('missing-peer', `kernel module ${m} is in neither modules.dep nor modules.builtin`);
    visit(path);
  }
  return order;
}

function decompressModule(path: string): Buffer {
  const tool = path.endsWith('.xz')
    ? 'xz'
    : path.endsWith('.zst')
      ? 'zstd'
      : path.endsWith('.gz')
        ? 'gzip'
        : '';
  if (!tool) return readFileSync(path);
  const r = spawnSync(tool, ['-dc', path], { maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) {
    throw new VmError(
      'missing-peer',
      `cannot decompress ${path} with ${tool}: ${r.error?.message ?? r.stderr.toString().trim()} (run scripts/install-peers.sh)`,
    );
  }
  return r.stdout;
}

/** Path of the cached initramfs for `kernel`, built first when missing. */
export function initramfsFor(kernel: GuestKernel, initScriptPath: string, cacheDir: string): string {
  const init = readFileSync(initScriptPath);
  const bb = statSync(BUSYBOX);
  const dep = join(kernel.moduleDir, 'modules.dep');
  const depSt = statSync(dep);
  const key = createHash('sha256')
    .update(
      [
        kernel.version,
        INITRAMFS_MODULES.join(' '),
        `${bb.size} ${bb.mtimeMs}`,
        `${depSt.size} ${depSt.mtimeMs}`,
      ].join('\n'),
    )
    .update(init)
    .digest('hex')
    .slice(0, 16);
  const out = join(cacheDir, `initramfs-${kernel.version}-${key}.cpio`);
  if (existsSync(out)) return out;

  const builtinPath = join(kernel.moduleDir, 'modules.builtin');
  const modules = resolveModules(
    readFileSync(dep, 'utf8'),
    existsSync(builtinPath) ? readFileSync(builtinPath, 'utf8') : '',
    INITRAMFS_MODULES,
  );
  const entries: CpioEntry[] = [
    { name: 'bin', mode: 0o40755 },
    { name: 'modules', mode: 0o40755 },
    { name: 'bin/busybox', mode: 0o100755, data: readFileSync(BUSYBOX) },
    { name: 'init', mode: 0o100755, data: init },
    { name: 'modules.order', mode: 0o100644, data: Buffer.from(modules.map(moduleName).join('\n') + '\n') },
    ...modules.map((m) => ({
      name: `modules/${moduleName(m)}.ko`,
      mode: 0o100644,
      data: decompressModule(join(kernel.moduleDir, m)),
    })),
  ];
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, newcArchive(entries));
  renameSync(tmp, out); // atomic: concurrent test files may build the same one
  return out;
}
