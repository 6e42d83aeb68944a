#!/bin/busybox sh
# PID 1 of the interop guest (test/vm/vm.ts copies this into the initramfs as /init).
#
# Loads the modules listed in /modules.order (9p, overlay, configfs and their dependencies),
# mounts the host's / read-only over virtio-9p with a tmpfs overlay on top (the guest may write
# anywhere; writes vanish at power-off), mounts the read-write shares listed in the control
# share, chroots into that root and runs /run/tsblkvm/cmd.sh as its child: stdout on hvc0,
# stderr on hvc1 (the kernel console is ttyS0, so no kernel message mixes in). The guest uptime
# when the command starts and ends, and its exit status, go back through the control share;
# then the guest powers off.
export PATH=/bin
/bin/busybox mkdir -p /proc /sys /dev /mnt
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
param() { tr ' ' '\n' </proc/cmdline | sed -n "s/^tsblkvm\.$1=//p" | tail -n 1; }
VERBOSE=$(param verbose)
INTERACTIVE=$(param interactive)
vlog() { [ -n "$VERBOSE" ] && echo "tsblkvm[init]: $* ($(cut -d' ' -f1 /proc/uptime)s)" >/dev/console; }
# virtio consoles appear a little after /init starts
for _ in $(seq 50); do [ -c /dev/hvc0 ] && { [ "$INTERACTIVE" = 1 ] || [ -c /dev/hvc1 ]; } && break; sleep 0.1; done
OUT=/dev/hvc0
ERR=/dev/hvc1
[ -c $OUT ] || { echo "tsblkvm[init]: no /dev/hvc0" >/dev/console; OUT=/dev/console; }
[ "$INTERACTIVE" = 1 ] && ERR=$OUT
[ -c $ERR ] || ERR=$OUT
exec 0</dev/null 1>$OUT 2>$ERR
# raw: no \n -> \r\n translation on the way out
[ "$INTERACTIVE" = 1 ] || for c in $OUT $ERR; do stty -F $c raw -echo -onlcr 2>/dev/null; done
fail() { echo "tsblkvm[init]: $*" >&2; dmesg | tail -n 30 >/dev/console; poweroff -f; sleep 5; reboot -f; }

for m in $(cat /modules.order); do
  insmod /modules/$m.ko 2>/dev/null || [ -d /sys/module/$(echo $m | tr - _) ] || echo "tsblkvm[init]: insmod $m failed" >&2
done
vlog "modules loaded"

MSIZE=$(param msize)
O9="trans=virtio,version=9p2000.L,msize=${MSIZE:-512000}"
mkdir -p /mnt/lower /mnt/upper /mnt/root /mnt/ctl
mount -t 9p -o "$O9,ro,cache=loose" vmroot /mnt/lower || fail "cannot mount the host root (9p)"
mount -t 9p -o "$O9,cache=none" vmctl /mnt/ctl || fail "cannot mount the control share (9p)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/upper
mkdir -p /mnt/upper/u /mnt/upper/w
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/upper/u,workdir=/mnt/upper/w /mnt/root ||
  fail "cannot mount the overlay root"
R=/mnt/root
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
# devtmpfs lacks the links udev would make (bash process substitution needs /dev/fd)
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p $R/run/lock $R/run/tsblkvm
mount -t configfs configfs $R/sys/kernel/config 2>/dev/null || echo "tsblkvm[init]: configfs mount failed" >&2
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mount -o bind /mnt/ctl $R/run/tsblkvm
# read-write shares, lines "tag path"; cache=none: every write reaches the host at once
while read -r tag path; do
  [ -n "$tag" ] || continue
  mkdir -p "$R$path" 2>/dev/null
  mount -t 9p -o "$O9,cache=$(param rwcache)" "$tag" "$R$path" || echo "tsblkvm[init]: cannot mount share $path" >&2
done </mnt/ctl/shares
[ -L $R/etc/mtab ] || ln -sf /proc/self/mounts $R/etc/mtab 2>/dev/null
hostname tsblk-vm 2>/dev/null
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

vlog "running the command"
cut -d' ' -f1 /proc/uptime >/mnt/ctl/started
if [ "$INTERACTIVE" = 1 ]; then
  chroot $R /usr/bin/setsid -w -c /bin/bash /run/tsblkvm/cmd.sh <$OUT >$OUT 2>&1
else
  chroot $R /bin/bash /run/tsblkvm/cmd.sh </dev/null >$OUT 2>$ERR
fi
rc=$?
cut -d' ' -f1 /proc/uptime >/mnt/ctl/finished
vlog "command exited with status $rc"
# Orderly end: stop leftover processes (a background target, a `tee`), then sync and unmount
# the read-write shares so that everything written there reaches the host.
kill -TERM -1 2>/dev/null && sleep 0.2
kill -KILL -1 2>/dev/null && sleep 0.2
sync
while read -r tag path; do [ -n "$tag" ] && umount -l "$R$path" 2>/dev/null; done </mnt/ctl/shares
sync
echo $rc >/mnt/ctl/exit_code
poweroff -f
sleep 5
reboot -f
