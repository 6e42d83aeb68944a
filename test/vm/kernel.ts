// The guest kernel: Debian's 6.12 package on the host (/boot/vmlinuz-<ver> + /lib/modules/<ver>,
// installed by scripts/install-peers.sh). The guest uses the host's module tree through the 9p
// root, so the kernel and its modules always match.
//
// Booting the uncompressed vmlinux through its PVH entry point skips SeaBIOS' Linux loader
// and the in-guest decompression, which costs 1-2 s per boot under TCG. The vmlinux is cut out
// of the bzImage once (the setup header says where the payload is) and cached.

import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';

export interface GuestKernel {
  /** e.g. "6.12.117+deb12-amd64" */
  version: string;
  /** /boot/vmlinuz-<version> (a bzImage) */
  vmlinuz: string;
  /** /lib/modules/<version> */
  moduleDir: string;
}

/** Compares dotted versions numerically ("6.12.117+deb12" > "6.12.9"). */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const d = Number.isInteger(nx) && Number.isInteger(ny) ? nx - ny : x.localeCompare(y);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Finds the guest kernel: `version` if given (or env TSBLK_VM_KERNEL), else the newest 6.12
 * kernel that has both its image and its modules.dep. Undefined when there is none.
 */
export function findGuestKernel(version = process.env.TSBLK_VM_KERNEL): GuestKernel | undefined {
  let names: string[];
  try {
    names = readdirSync('/boot');
  } catch {
    return undefined;
  }
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => (version ? v === version : v.startsWith('6.12.')))
    .filter((v) => existsSync(`/lib/modules/${v}/modules.dep`))
    .sort(compareVersions);
  const v = versions.at(-1);
  if (v === undefined) return undefined;
  return { version: v, vmlinuz: `/boot/vmlinuz-${v}`, moduleDir: `/lib/modules/${v}` };
}

/** Where the compressed kernel sits inside a bzImage (boot protocol >= 2.08). */
function bzImagePayload(image: Buffer): Buffer | undefined {
  if (image.length < 0x260 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const setupSects = image[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const len = image.readUInt32LE(0x24c);
  if (len === 0 || start + len > image.length) return undefined;
  return image.subarray(start, start + len);
}

/** True when `elf` is an ELF64 image with a Xen PHYS32_ENTRY note (type 18): PVH-bootable. */
export function hasPvhNote(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 0x28 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let p = Number(elf.readBigUInt64LE(ph + 8));
    const end = p + Number(elf.readBigUInt64LE(ph + 0x20));
    while (p + 12 <= end && end <= elf.length) {
      const namesz = elf.readUInt32LE(p);
      const descsz = elf.readUInt32LE(p + 4);
      const type = elf.readUInt32LE(p + 8);
      const name = elf.toString('latin1', p + 12, p + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === 18) return true;
      p += 12 + (((namesz + 3) >> 2) << 2) + (((descsz + 3) >> 2) << 2);
    }
  }
  return false;
}

const DECOMPRESSORS: { magic: Buffer; argv: string[] }[] = [
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), argv: ['zstd', '-dcq'] },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), argv: ['xz', '-dcq'] },
  { magic: Buffer.from([0x1f, 0x8b]), argv: ['gzip', '-dcq'] },
];

/**
 * The PVH-bootable vmlinux of `kernel`, extracted once into `cacheDir` (keyed by version, size
 * and mtime of the image). Undefined when it cannot be extracted; the caller boots the bzImage.
 */
export function pvhVmlinux(kernel: GuestKernel, cacheDir: string): string | undefined {
  const st = statSync(kernel.vmlinuz);
  const out = join(cacheDir, `vmlinux-${kernel.version}-${st.size}-${Math.floor(st.mtimeMs)}`);
  if (existsSync(out)) return out;
  if (existsSync(`${out}.nopvh`)) return undefined;
  const payload = bzImagePayload(readFileSync(kernel.vmlinuz));
  const tool = payload && DECOMPRESSORS.find((d) => payload.subarray(0, d.magic.length).equals(d.magic));
  const tmp = `${out}.tmp-${process.pid}`;
  if (payload && tool) {
    const fd = openSync(tmp, 'w');
    // The payload may carry trailing bytes the tool complains about: judge by the output.
    spawnSync(tool.argv[0] as string, tool.argv.slice(1), { input: payload, stdio: ['pipe', fd, 'ignore'] });
    closeSync(fd);
    const head = readFileSync(tmp);
    if (hasPvhNote(head)) {
      renameSync(tmp, out);
      return out;
    }
  }
  if (existsSync(tmp)) unlinkSync(tmp);
  closeSync(openSync(`${out}.nopvh`, 'w'));
  return undefined;
}
