#!/bin/bash
# Guest side of test/interop-ublk.test.ts: `tsblk ublk add` (dist/, through bin/tsblk.js)
# exporting a RAM device as /dev/ublkb0 through the kernel's ublk_drv, one boot:
#  1. modprobe ublk_drv; `tsblk ublk add ram:SIZE --queues QUEUES --depth DEPTH` in the
#     background; `tsblk ublk list --json` shows it with the server's pid;
#  2. what the kernel made of it: size, block sizes, hardware queues, queue limits;
#  3. a pattern written with dd (1 MiB direct), read back buffered and direct (4 KiB and
#     128 KiB O_DIRECT): every sha256 equal to the pattern's;
#  4. blkdiscard (DISCARD) and blkdiscard -z (WRITE_ZEROES) over patterns: zeroes read back;
#  5. fio randwrite + crc32c verify, 4 KiB and 128 KiB, 2 jobs, libaio QD 32;
#  6. ext4: mkfs, mount, three pattern files, sync, umount, fsck -fn, mount again, sha256;
#  7. SIGTERM: the server exits 0 and /dev/ublkb0 and /dev/ublkc0 are gone;
#  8. a second server, deleted from another process with `tsblk ublk del 0`: it exits 0 by
#     itself, both nodes are gone, `tsblk ublk list` shows nothing.
# Prints facts (`fact: K=V`, test/vm/report.ts); keeps going after a failed step; prints
# "guest script done" at the end.
#
# env: SIZE (bytes, default 268435456), QUEUES (default 2), DEPTH (default 64),
#      TSBLK_CMD (default "node <project>/bin/tsblk.js"; split on whitespace)
set -u
HERE=$(dirname "$(readlink -f "$0")")
PROJECT=$(cd "$HERE/../../.." && pwd)
source "$HERE/lib.sh"
SIZE=${SIZE:-268435456}
QUEUES=${QUEUES:-2}
DEPTH=${DEPTH:-64}
# shellcheck disable=SC2206 # split on whitespace on purpose
TSBLK=(${TSBLK_CMD:-node $PROJECT/bin/tsblk.js})
DEV=/dev/ublkb0
LOG=/tmp/ublk-add.log
LOG2=/tmp/ublk-add2.log
MNT=/mnt/ublk
MiB=1048576

uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
part() {
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}
sha() { sha256sum "$@" | cut -d' ' -f1; }
zero_sha() { head -c "$1" /dev/zero | sha; }
# dev_sha OFF_MIB LEN_MIB [DD_FLAGS...]: sha256 of a device range
dev_sha() {
  local off=$1 len=$2
  shift 2
  dd if=$DEV bs=1M skip="$off" count="$len" status=none "$@" | sha
}
# wait_exit PID SECONDS: wait for a background server; SIGKILL it after SECONDS (a hang must
# not eat the guest's time limit); returns its exit status
wait_exit() {
  local pid=$1 n=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null && [[ $n -gt 0 ]]; do
    sleep 0.1
    n=$((n - 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "server $pid still running after $2 s: SIGKILL"
    kill -KILL "$pid"
  fi
  wait "$pid"
}
# start_server LOG: `tsblk ublk add` in the background (SERVER_PID = node's pid); waits until
# its first line (the block device) is printed or it exits
start_server() {
  "${TSBLK[@]}" ublk add "ram:$SIZE" --queues "$QUEUES" --depth "$DEPTH" >"$1" 2>&1 &
  SERVER_PID=$!
  local n=900
  until grep -q '^/dev/ublkb' "$1" 2>/dev/null || ! kill -0 $SERVER_PID 2>/dev/null || [[ $n -le 0 ]]; do
    sleep 0.1
    n=$((n - 1))
  done
  cat "$1"
  grep -q '^/dev/ublkb' "$1"
}

section "ublk_drv"
modprobe ublk_drv
fact modprobe_rc $?
# ext4 is a module in Debian's kernel: mount fails with status 32 without it
run modprobe -a ext4 crc32c_generic
[[ -c /dev/ublk-control ]] && fact control_dev yes || fact control_dev no

section "server: ${TSBLK[*]} ublk add ram:$SIZE --queues $QUEUES --depth $DEPTH"
start_server "$LOG" && fact server_ready yes || fact server_ready no
fact ready_line "$(head -n 1 "$LOG")"
fact size_line "$(sed -n 2p "$LOG")"
fact info_line "$(grep -m1 '^  ublk device' "$LOG")"
fact server_pid "$SERVER_PID"
part start

section "tsblk ublk list"
"${TSBLK[@]}" ublk list --json >/tmp/list.json 2>&1
fact list_rc $?
cat /tmp/list.json
fact list_json "$(tr -d '\n' </tmp/list.json)"
part list

section "what the kernel sees"
fact block_dev "$([[ -b $DEV ]] && echo yes || echo no)"
fact char_dev "$([[ -c /dev/ublkc0 ]] && echo yes || echo no)"
Q=/sys/block/ublkb0/queue
fact size "$(blockdev --getsize64 $DEV 2>&1)"
fact lbs "$(blockdev --getss $DEV 2>&1)"
fact pbs "$(blockdev --getpbsz $DEV 2>&1)"
fact hw_queues "$(ls -d /sys/block/ublkb0/mq/*/ 2>/dev/null | wc -l)"
fact max_sectors_kb "$(cat $Q/max_sectors_kb)"
fact discard_max "$(cat $Q/discard_max_bytes)"
fact discard_granularity "$(cat $Q/discard_granularity)"
fact write_zeroes_max "$(cat $Q/write_zeroes_max_bytes)"
fact write_cache "$(cat $Q/write_cache)"
fact fua "$(cat $Q/fua 2>/dev/null)"
fact rotational "$(cat $Q/rotational)"
fact ro "$(cat /sys/block/ublkb0/ro)"
part sysfs

section "data: dd, O_DIRECT 4 KiB and 128 KiB"
head -c $((8 * MiB)) /dev/urandom >/tmp/pattern
P_SHA=$(sha /tmp/pattern)
fact pattern_sha "$P_SHA"
run dd if=/tmp/pattern of=$DEV bs=1M seek=8 oflag=direct status=none
fact dd_write_rc $?
blockdev --flushbufs $DEV
fact buffered_sha "$(dev_sha 8 8)"
fact direct4k_sha "$(dd if=$DEV bs=4k skip=$((8 * 256)) count=$((8 * 256)) iflag=direct status=none | sha)"
fact direct128k_sha "$(dd if=$DEV bs=128k skip=$((8 * 8)) count=$((8 * 8)) iflag=direct status=none | sha)"
# writes at 4 KiB and 128 KiB O_DIRECT, read back at 1 MiB
dd if=/tmp/pattern of=$DEV bs=4k seek=$((24 * 256)) oflag=direct status=none
fact write4k_rc $?
dd if=/tmp/pattern of=$DEV bs=128k seek=$((40 * 8)) oflag=direct status=none
fact write128k_rc $?
fact write4k_sha "$(dev_sha 24 8 iflag=direct)"
fact write128k_sha "$(dev_sha 40 8 iflag=direct)"
# the last block of the device
head -c 4096 /tmp/pattern >/tmp/last
dd if=/tmp/last of=$DEV bs=4k seek=$((SIZE / 4096 - 1)) oflag=direct status=none
fact last_block_match "$(dd if=$DEV bs=4k skip=$((SIZE / 4096 - 1)) iflag=direct status=none | cmp -s - /tmp/last && echo yes || echo no)"
part data

section "discard and write zeroes"
run blkdiscard -o $((8 * MiB)) -l $((4 * MiB)) $DEV
fact blkdiscard_rc $?
fact discarded_sha "$(dev_sha 8 4 iflag=direct)"
fact zero4_sha "$(zero_sha $((4 * MiB)))"
fact kept_sha "$(dev_sha 12 4 iflag=direct)"
fact pattern_tail_sha "$(tail -c $((4 * MiB)) /tmp/pattern | sha)"
run blkdiscard -z -o $((24 * MiB)) -l $((4 * MiB)) $DEV
fact zeroout_rc $?
fact zeroed_sha "$(dev_sha 24 4 iflag=direct)"
part discard

section "fio verify"
for bs in 4k 128k; do
  run fio --name=verify --filename=$DEV --direct=1 --ioengine=libaio --iodepth=32 --numjobs=2 --verify_state_save=0 \
    --rw=randwrite --bs=$bs --size=8M --offset_increment=16M --offset=0 --verify=crc32c \
    --do_verify=1 --verify_fatal=1 --group_reporting --output-format=terse --terse-version=3 >/tmp/fio-$bs.out 2>&1
  fact "fio_${bs}_rc" $?
  tail -n 5 /tmp/fio-$bs.out
done
part fio

section "ext4 on $DEV"
run mkfs.ext4 -F -L tsblk-ublk $DEV >/tmp/mkfs.log 2>&1
fact mkfs_rc $?
cat /tmp/mkfs.log
mkdir -p $MNT
run mount -t ext4 $DEV $MNT 2>&1
rc=$?
fact mount_rc $rc
[[ $rc -eq 0 ]] || dmesg | tail -n 15
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
fact umount2_rc $?
part ext4

section "stop: SIGTERM"
kill -TERM $SERVER_PID
wait_exit $SERVER_PID 60
fact server_exit $?
cat "$LOG"
fact stopped_line "$(grep 'stopped ublk device' "$LOG")"
sleep 0.2
fact block_gone "$([[ -e $DEV ]] && echo no || echo yes)"
fact char_gone "$([[ -e /dev/ublkc0 ]] && echo no || echo yes)"
part stop

section "tsblk serve with a ublk section"
cat >/tmp/ublk-serve.json <<'JSON'
{ "devices": { "disk": { "type": "ram", "size": "64M" } },
  "ublk": { "exports": [ { "device": "disk", "queues": 2, "depth": 32 } ] } }
JSON
"${TSBLK[@]}" serve /tmp/ublk-serve.json >/tmp/ublk-serve.log 2>&1 &
SERVE_PID=$!
n=900
until grep -q '^  ublk device' /tmp/ublk-serve.log 2>/dev/null || ! kill -0 $SERVE_PID 2>/dev/null || [[ $n -le 0 ]]; do
  sleep 0.1
  n=$((n - 1))
done
cat /tmp/ublk-serve.log
fact serve_ublk_line "$(grep -m1 '^  ublk device' /tmp/ublk-serve.log)"
if [[ -b $DEV ]]; then
  fact serve_block_size "$(blockdev --getsize64 $DEV)"
  pattern 300 256 4096 | dd of=$DEV bs=1M oflag=direct status=none
  fact serve_data_sha "$(dev_sha 0 1 iflag=direct)"
fi
kill -TERM $SERVE_PID
wait_exit $SERVE_PID 60
fact serve_exit $?
sleep 0.2
fact serve_block_gone "$([[ -e $DEV ]] && echo no || echo yes)"
part serve

section "second server, deleted with tsblk ublk del 0"
start_server "$LOG2" && fact server2_ready yes || fact server2_ready no
fact ready2_line "$(head -n 1 "$LOG2")"
timeout 60 "${TSBLK[@]}" ublk del 0 >/tmp/del.out 2>&1
fact del_rc $?
cat /tmp/del.out
fact del_line "$(tail -n 1 /tmp/del.out)"
wait_exit $SERVER_PID 30
fact server2_exit $?
cat "$LOG2"
fact outside_line "$(grep 'stopped from outside' "$LOG2")"
sleep 0.2
fact block2_gone "$([[ -e $DEV ]] && echo no || echo yes)"
fact char2_gone "$([[ -e /dev/ublkc0 ]] && echo no || echo yes)"
fact list_after "$("${TSBLK[@]}" ublk list 2>&1)"
part del
dmesg | grep -i ublk | tail -n 20
echo "guest script done"
