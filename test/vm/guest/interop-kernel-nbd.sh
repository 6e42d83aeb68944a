#!/bin/bash
# Guest side of test/interop-kernel-nbd.test.ts: the kernel's NBD client (nbd.ko, configured by
# nbd-client 3.24 over netlink) against `tsblk nbd ram:SIZE` on 127.0.0.1, in one boot:
#  1. modprobe nbd (nbds_max=2), ext4; start the server (tsblk-target.sh with TSBLK_TARGET_CMD);
#  2. nbd-client HOST PORT /dev/nbd0 -N NAME: size, block size, the transmission flags the
#     kernel got (debugfs nbd/nbd0/flags), the queue limits they turned into;
#  3. ext4: mkfs (discards the whole device first: TRIM), mount, three pattern files, sync,
#     umount, fsck -fn, mount again, sha256 of every file, umount;
#  4. raw: a 16 MiB pattern at 192 MiB (direct I/O), read back, blkdiscard of it, read back
#     (must be zeroes: the export advertises TRIM and RAM discards read as zeroes); the same
#     with blkdiscard -z (WRITE_ZEROES) on 4 MiB at 224 MiB;
#  5. nbd-client -d: clean disconnect (size 0 afterwards);
#  6. nbd-client ... -C 2 -b 4096: two connections (the export advertises CAN_MULTI_CONN),
#     4096-byte blocks; both TCP connections seen with ss; 8 MiB pattern written and read back
#     direct; nbd-client -d;
#  7. SIGTERM to the server: exit status 0.
# Prints facts (`fact: K=V`, test/vm/report.ts); keeps going after a failed step; prints
# "guest script done" at the end.
#
# env: SIZE (export bytes, default 268435456), NAME (export, default disk), PORT (default
#      10809), SERVER_CMD (the server's command line; default tsblk from dist/. Another NBD
#      server, e.g. "nbdkit -f -i 127.0.0.1 -p 10809 memory size=256M", checks this script.)
set -u
HERE=$(dirname "$(readlink -f "$0")")
PROJECT=$(cd "$HERE/../../.." && pwd)
source "$HERE/lib.sh"
SIZE=${SIZE:-268435456}
NAME=${NAME:-disk}
PORT=${PORT:-10809}
ADDR=127.0.0.1
DEV=/dev/nbd0
SERVER=$HERE/tsblk-target.sh
SERVER_CMD=${SERVER_CMD:-node $PROJECT/bin/tsblk.js nbd ram:$SIZE --listen $ADDR:$PORT --name $NAME -v}
MNT=/tmp/nbd-mnt
RAW_OFF_MIB=192
RAW_MIB=16
ZERO_OFF_MIB=224
ZERO_MIB=4
MC_OFF_MIB=32
MC_MIB=8

uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
# part NAME: how long the part that just ended took (fact part_NAME_s)
part() {
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}
# nbd_facts PREFIX: what the kernel made of the export
nbd_facts() {
  local p=$1 q=/sys/block/nbd0/queue
  fact "${p}_size" "$(blockdev --getsize64 $DEV 2>&1)"
  fact "${p}_lbs" "$(blockdev --getss $DEV 2>&1)"
  fact "${p}_flags" "$(awk '/^Hex:/ {print $2; exit}' /sys/kernel/debug/nbd/nbd0/flags 2>/dev/null)"
  fact "${p}_discard_max" "$(cat $q/discard_max_bytes)"
  fact "${p}_write_zeroes_max" "$(cat $q/write_zeroes_max_bytes)"
  fact "${p}_ro" "$(cat /sys/block/nbd0/ro)"
  fact "${p}_rotational" "$(cat $q/rotational)"
  fact "${p}_write_cache" "$(cat $q/write_cache)"
}
# wait_size N: until /dev/nbd0's size is N bytes (10 s)
wait_size() {
  local n=100
  until [[ $(blockdev --getsize64 $DEV 2>/dev/null) == "$1" ]]; do
    n=$((n - 1))
    [[ $n -gt 0 ]] || return 1
    sleep 0.1
  done
}
# established: TCP connections to the server's port, one line each
established() { ss -Htn state established "( dport = :$PORT )" 2>/dev/null; }

fact guest_uptime_at_start "$(uptime_s)"

section "modules"
run modprobe nbd nbds_max=2
fact modprobe_rc $?
run modprobe -a ext4 crc32c_generic
wait_for $DEV 50
fact nbd_dev "$([[ -b $DEV ]] && echo yes || echo no)"
part modules

section "server: $SERVER_CMD"
TSBLK_TARGET_CMD=$SERVER_CMD TSBLK_TARGET_PORTS=$PORT bash "$SERVER" start
fact server_start_rc $?
bash "$SERVER" log
part server_start

section "nbd-client $ADDR $PORT $DEV -N $NAME"
run nbd-client $ADDR "$PORT" $DEV -N "$NAME"
fact connect_rc $?
wait_size "$SIZE"
nbd_facts c1
fact c1_connections "$(established | wc -l)"
part connect

section "ext4 on $DEV"
run mkfs.ext4 -F -L tsblk-nbd $DEV >/tmp/mkfs.log 2>&1
fact mkfs_rc $?
cat /tmp/mkfs.log
# mke2fs says "Discarding device blocks: ... done" when the device took the whole-device
# discard (progress counters and backspaces in between)
fact mkfs_discard "$(grep -aq 'Discarding device blocks:.*done' /tmp/mkfs.log && echo done || echo no)"
mkdir -p $MNT
run mount -t ext4 $DEV $MNT
fact mount_rc $?
# three files: whole 4 KiB blocks, a 1 MiB + 1 block one, and an odd length (a partial block)
pattern 0 1024 4096 >$MNT/a.bin
pattern 5000 257 4096 >$MNT/b.bin
pattern 9000 3 4096 | head -c 10000 >$MNT/c.bin
fact files_written "$(ls $MNT | grep -c '\.bin$')"
run sync
run umount $MNT
fact umount_rc $?
run fsck.ext4 -fn $DEV
fact fsck_rc $?
run mount -t ext4 -o ro $DEV $MNT
fact remount_rc $?
for f in a b c; do
  fact "sha_$f" "$(sha <$MNT/$f.bin)"
  fact "bytes_$f" "$(stat -c %s $MNT/$f.bin)"
done
run umount $MNT
part ext4

section "raw: pattern at ${RAW_OFF_MIB} MiB, blkdiscard, zeroes"
pattern 0 $((RAW_MIB * 256)) 4096 | write_blocks $DEV $((RAW_OFF_MIB * 256)) 4096
fact raw_write_rc $?
fact raw_sha "$(read_blocks $DEV $((RAW_OFF_MIB * 256)) $((RAW_MIB * 256)) 4096 | sha)"
# -f: the device holds the ext4 made above (blkdiscard would only warn, say so anyway)
run blkdiscard -f -o $((RAW_OFF_MIB << 20)) -l $((RAW_MIB << 20)) $DEV
fact blkdiscard_rc $?
fact discarded_sha "$(read_blocks $DEV $((RAW_OFF_MIB * 256)) $((RAW_MIB * 256)) 4096 | sha)"
# blkdiscard -z: REQ_OP_WRITE_ZEROES → NBD_CMD_WRITE_ZEROES (the export advertises it)
pattern 0 $((ZERO_MIB * 256)) 4096 | write_blocks $DEV $((ZERO_OFF_MIB * 256)) 4096
fact zero_before_sha "$(read_blocks $DEV $((ZERO_OFF_MIB * 256)) $((ZERO_MIB * 256)) 4096 | sha)"
run blkdiscard -f -z -o $((ZERO_OFF_MIB << 20)) -l $((ZERO_MIB << 20)) $DEV
fact zeroout_rc $?
fact zeroed_sha "$(read_blocks $DEV $((ZERO_OFF_MIB * 256)) $((ZERO_MIB * 256)) 4096 | sha)"
part raw

section "nbd-client -d $DEV"
run nbd-client -d $DEV
fact disconnect_rc $?
n=50
while [[ $(cat /sys/block/nbd0/size) != 0 && $n -gt 0 ]]; do sleep 0.1; n=$((n - 1)); done
fact after_disconnect_size "$(cat /sys/block/nbd0/size)"
n=50
while [[ $(established | wc -l) != 0 && $n -gt 0 ]]; do sleep 0.1; n=$((n - 1)); done
fact after_disconnect_connections "$(established | wc -l)"
part disconnect

section "nbd-client $ADDR $PORT $DEV -N $NAME -C 2 -b 4096 (multi-conn)"
run nbd-client $ADDR "$PORT" $DEV -N "$NAME" -C 2 -b 4096
fact mc_connect_rc $?
wait_size "$SIZE"
nbd_facts c2
established
fact c2_connections "$(established | wc -l)"
pattern 100 $((MC_MIB * 256)) 4096 | write_blocks $DEV $((MC_OFF_MIB * 256)) 4096
fact mc_write_rc $?
# read back through a fresh open, direct (both connections carry requests: blk-mq hw queues)
fact mc_sha "$(read_blocks $DEV $((MC_OFF_MIB * 256)) $((MC_MIB * 256)) 4096 | sha)"
# the ext4 files written over the first connection are still on the device: its superblock
fact mc_fs_label "$(blkid -s LABEL -o value $DEV 2>&1)"
run nbd-client -d $DEV
fact mc_disconnect_rc $?
part multi_conn

section "stop the server"
bash "$SERVER" stop
fact server_stop_rc $?
bash "$SERVER" log | tail -n 40
part server_stop

echo "guest script done"
