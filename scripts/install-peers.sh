#!/usr/bin/env bash
# Installs the Debian packages the interop tests need (test/vm/, docs/interop.md): QEMU, the
# guest kernel (Debian's 6.12, whose modules give the real peers: nvme-tcp, nvmet-tcp, brd,
# null_blk, ublk_drv, nbd), busybox for the guest's initramfs, the tools run inside the
# guest (nvme-cli, fio, e2fsprogs, f2fs-tools, iproute2, nbd-client), and the NBD clients the
# loopback interop tests run on the host (test/interop-nbd-*.test.ts: libnbd, qemu-img/qemu-io,
# nbdkit).
#
# Debian 12 (bookworm), as root, non-interactive. Idempotent: installs only what is missing and
# runs `apt-get update` at most once. Quiet unless something goes wrong (then apt's output is
# printed). Not root and something missing: says what to install and exits 1.
set -euo pipefail

PKGS=(
  qemu-system-x86                  # qemu-system-x86_64 7.2: TCG guest + the emulated NVMe reference
  linux-image-6.12-amd64           # Debian's 6.12 kernel: /boot/vmlinuz-6.12.* + /lib/modules/6.12.*
  busybox-static                   # PID 1 of the guest's initramfs (must be static)
  kmod cpio gzip xz-utils zstd binutils # modules.dep, initramfs, .ko.xz, vmlinux extraction (readelf)
  nvme-cli fio iproute2 e2fsprogs  # run inside the guest (the guest uses the host's userland)
  util-linux coreutils mawk        # blockdev, dd, sha256sum, awk (pattern generator) in the guest
  nbd-client                       # the kernel's NBD client (nbd.ko) against tsblk's NBD export, in the guest
  libnbd-bin python3-libnbd        # nbdinfo, nbdcopy, and nbdsh's `import nbd` (Debian's /usr/bin/python3)
  qemu-utils                       # qemu-img and qemu-io: QEMU's NBD client (block status, zero, discard)
  nbdkit                           # reference NBD server (memory plugin) for cross-checks
  gnutls-bin                       # certtool: the CA and certificates of the NBD TLS tests
  f2fs-tools                       # mkfs.f2fs -m on a zoned ublk export, in the guest (issue 6)
)

missing=()
for p in "${PKGS[@]}"; do
  # (no `| grep -q` under pipefail: dpkg-query could die of SIGPIPE and look like "missing")
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $st == 'install ok installed' ]] || missing+=("$p")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-peers: missing Debian packages: ${missing[*]} (run this script as root)" >&2
    exit 1
  fi
  echo "install-peers: installing ${missing[*]}"
  log=$(mktemp /tmp/install-peers.XXXXXX)
  export DEBIAN_FRONTEND=noninteractive
  # The guest boots the kernel with its own tiny initramfs (test/vm/initramfs.ts); the host's
  # initrd for it would cost ~40 s to build. Skip it only where nothing boots this machine's
  # kernels (a container, CI): with a bootloader, the new kernel must stay bootable.
  if [[ ! -e /boot/grub && ! -e /boot/efi && ! -e /boot/loader ]] && ! command -v update-grub >/dev/null; then
    export INITRD=No
  fi
  apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  # A fresh machine has no package lists (or old ones): update once, then install. An update
  # that fails for one source (a stale extra repository) may still leave usable lists: judge
  # by the install, and show the whole log if that fails.
  apt-get update -q >"$log" 2>&1 || echo "install-peers: apt-get update reported errors (continuing)" >>"$log"
  if ! apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "install-peers: apt-get failed (log above)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

# The kernel package must have left both halves: the image and its modules.
kver=""
for k in /boot/vmlinuz-6.12.*; do
  [[ -e $k ]] || continue
  v=${k#/boot/vmlinuz-}
  [[ -f /lib/modules/$v/modules.dep ]] && kver=$v
done
if [[ -z $kver ]]; then
  echo "install-peers: no /boot/vmlinuz-6.12.* with /lib/modules/<version>/modules.dep after install" >&2
  exit 1
fi
qv=$(qemu-system-x86_64 --version)
echo "install-peers: ok (guest kernel $kver, ${qv%%$'\n'*})"
