#!/bin/bash
# Guest side of test/interop-ublk-zoned.test.ts: a zoned tsblk device (zoned over ram, from a
# config file) exported with `node bin/tsblk.js ublk add` (dist/) as /dev/ublkb0, one boot:
#  1. modprobe ublk_drv and f2fs; start the server; the ready output names ZONED;
#  2. sysfs: zoned = host-managed, chunk_sectors, nr_zones, open/active limits, zone append;
#  3. blkzone report: conventional and sequential zones with their start, len, wp, cond;
#  4. sequential O_DIRECT writes move the write pointer and read back; a write above the
#     write pointer fails; blkzone open / close / finish / reset; the last zone;
#  5. mkfs.f2fs -m, mount, a file written, remounted, read back equal;
#  6. SIGTERM: the server exits 0 and /dev/ublkb0 and /dev/ublkc0 are gone.
# Prints facts (`fact: K=V`, test/vm/report.ts); keeps going after a failed step; prints
# "guest script done" at the end.
#
# env: ZONE_MIB (default 4), NR_ZONES (default 64), CONV (default 8), MAX_OPEN, MAX_ACTIVE
set -u
HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(readlink -f "$HERE/../../..")
source "$HERE/lib.sh"
ZONE_MIB=${ZONE_MIB:-4}
NR_ZONES=${NR_ZONES:-64}
CONV=${CONV:-8}
MAX_OPEN=${MAX_OPEN:-12}
MAX_ACTIVE=${MAX_ACTIVE:-14}
DEV=/dev/ublkb0
LOG=/tmp/ublk-zoned.log
MiB=1048576
ZS=$((ZONE_MIB * 2048)) # zone size in sectors

uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
part() {
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}
sha() { sha256sum "$@" | cut -d' ' -f1; }
# zone N: "start len wp cond type" of zone N from blkzone report, numbers in decimal sectors
zone() {
  blkzone report -o $(($1 * ZS)) -c 1 $DEV 2>&1 |
    sed -n 's/.*start: \(0x[0-9a-f]*\), len \(0x[0-9a-f]*\),.*wptr \(0x[0-9a-f]*\).*zcond: *\([0-9]*\).*type: *\([0-9]*\).*/\1 \2 \3 \4 \5/p' |
    while read -r s l w c t; do echo "$((s)) $((l)) $((w)) $c $t"; done
}

section "modules"
modprobe ublk_drv
fact modprobe_rc $?
modprobe f2fs
fact modprobe_f2fs_rc $?
[[ -c /dev/ublk-control ]] && fact control_dev yes || fact control_dev no

section "server"
cat >/tmp/zoned.json <<EOF
{ "devices": { "z": { "type": "zoned", "backing": "ram:$((ZONE_MIB * NR_ZONES))M", "zoneSize": "${ZONE_MIB}M",
  "conventionalZones": $CONV, "maxOpenZones": $MAX_OPEN, "maxActiveZones": $MAX_ACTIVE } } }
EOF
node "$ROOT/bin/tsblk.js" ublk add -c /tmp/zoned.json z --queues 2 --depth 32 >"$LOG" 2>&1 &
SERVER_PID=$!
n=900
until grep -q '^stop with' "$LOG" 2>/dev/null || ! kill -0 $SERVER_PID 2>/dev/null || [[ $n -le 0 ]]; do
  sleep 0.1
  n=$((n - 1))
done
cat "$LOG"
grep -q '^stop with' "$LOG" && fact server_ready yes || fact server_ready no
fact ready_line "$(grep 'ublk device' "$LOG")"
part start

section "what the kernel sees"
fact block_dev "$([[ -b $DEV ]] && echo yes || echo no)"
Q=/sys/block/ublkb0/queue
fact size "$(blockdev --getsize64 $DEV 2>&1)"
fact zoned "$(cat $Q/zoned)"
fact chunk_sectors "$(cat $Q/chunk_sectors)"
fact nr_zones "$(cat $Q/nr_zones)"
fact max_open_zones "$(cat $Q/max_open_zones)"
fact max_active_zones "$(cat $Q/max_active_zones)"
fact zone_append_max_bytes "$(cat $Q/zone_append_max_bytes)"
run blkzone report -c 2 $DEV
run blkzone report -o $((CONV * ZS)) -c 1 $DEV
fact report_lines "$(blkzone report $DEV | grep -c 'start:')"
fact zone_first "$(zone 0)"
fact zone_seq "$(zone $CONV)"
fact zone_last "$(zone $((NR_ZONES - 1)))"
part sysfs

section "sequential writes move the write pointer"
S=$CONV # the first sequential zone
head -c $((2 * MiB)) /dev/urandom >/tmp/pattern
run dd if=/tmp/pattern of=$DEV bs=1M count=1 seek=$((S * ZONE_MIB)) oflag=direct status=none
fact seq_write1_rc $?
fact seq_wp1 "$(zone $S)"
run dd if=/tmp/pattern of=$DEV bs=1M skip=1 count=1 seek=$((S * ZONE_MIB + 1)) oflag=direct status=none
fact seq_write2_rc $?
fact seq_wp2 "$(zone $S)"
fact seq_read_match "$(dd if=$DEV bs=1M skip=$((S * ZONE_MIB)) count=2 iflag=direct status=none | cmp -s - /tmp/pattern && echo yes || echo no)"
# a write above the write pointer (at +3 MiB, the write pointer is at +2 MiB) must fail
run dd if=/tmp/pattern of=$DEV bs=1M count=1 seek=$((S * ZONE_MIB + 3)) oflag=direct status=none
fact bad_write_rc $?
fact bad_write_wp "$(zone $S)"
# 4 KiB writes at the write pointer, then the last 4 KiB of the device
run dd if=/tmp/pattern of=$DEV bs=4k count=4 seek=$(((S + 1) * ZONE_MIB * 256)) oflag=direct status=none
fact seq4k_rc $?
fact seq4k_wp "$(zone $((S + 1)))"
L=$((NR_ZONES - 1))
head -c $((ZONE_MIB * MiB)) /dev/urandom >/tmp/zonefill
run dd if=/tmp/zonefill of=$DEV bs=128k seek=$((L * ZONE_MIB * 8)) oflag=direct status=none
fact last_zone_rc $?
fact last_zone "$(zone $L)"
fact last_block_match "$(dd if=$DEV bs=4k skip=$(((L + 1) * ZONE_MIB * 256 - 1)) count=1 iflag=direct status=none |
  cmp -s - <(tail -c 4096 /tmp/zonefill) && echo yes || echo no)"
part writes

section "zone management"
run blkzone reset -o $((S * ZS)) -c 1 $DEV
fact reset_rc $?
fact reset_zone "$(zone $S)"
fact reset_reads_zero "$(dd if=$DEV bs=1M skip=$((S * ZONE_MIB)) count=1 iflag=direct status=none | cmp -s - <(head -c $MiB /dev/zero) && echo yes || echo no)"
M=$((CONV + 2))
run dd if=/tmp/pattern of=$DEV bs=4k count=1 seek=$((M * ZONE_MIB * 256)) oflag=direct status=none
fact mgmt_write_rc $?
fact implicit_open "$(zone $M)"
run blkzone open -o $((M * ZS)) -c 1 $DEV
fact open_rc $?
fact explicit_open "$(zone $M)"
run blkzone close -o $((M * ZS)) -c 1 $DEV
fact close_rc $?
fact closed "$(zone $M)"
run blkzone finish -o $((M * ZS)) -c 1 $DEV
fact finish_rc $?
fact finished "$(zone $M)"
run blkzone reset $DEV
fact reset_all_rc $?
fact after_reset_all "$(zone $M) | $(zone $L)"
part zones

section "f2fs"
run mkfs.f2fs -f -m $DEV >/tmp/mkfs.out 2>&1
fact mkfs_f2fs_rc $?
tail -n 20 /tmp/mkfs.out
mkdir -p /mnt/z
run mount -t f2fs $DEV /mnt/z
fact mount_rc $?
head -c $((8 * MiB)) /dev/urandom >/tmp/file
cp /tmp/file /mnt/z/file && sync
fact f2fs_write_rc $?
run umount /mnt/z
fact umount_rc $?
run mount -t f2fs $DEV /mnt/z
fact remount_rc $?
fact f2fs_file_match "$(cmp -s /tmp/file /mnt/z/file && echo yes || echo no)"
umount /mnt/z
dmesg | grep -i f2fs | tail -n 10
part f2fs

section "stop"
kill -TERM $SERVER_PID
wait $SERVER_PID
fact server_exit $?
cat "$LOG"
fact stopped_line "$(grep 'stopped ublk device' "$LOG")"
sleep 0.2
fact block_gone "$([[ -e $DEV ]] && echo no || echo yes)"
fact char_gone "$([[ -e /dev/ublkc0 ]] && echo no || echo yes)"
part stop
dmesg | grep -i ublk | tail -n 20
echo "guest script done"
