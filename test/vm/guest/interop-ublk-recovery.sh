#!/bin/bash
# Guest side of test/interop-ublk-recovery.test.ts: ublk user recovery, one boot.
#  1. `tsblk ublk add ram:128M --recoverable --queues 2`: the RAM is a file on /dev/shm (a
#     tmpfs), so it outlives the server process;
#  2. a writer writes blocks 0..N-1 one at a time with O_DIRECT, logging each acknowledged
#     block; the server is killed with SIGKILL mid-way;
#  3. `tsblk ublk list --json` shows the device quiesced, its server gone;
#  4. `tsblk ublk recover 0` (the RAM file by default): the writer (whose write was waiting) finishes without
#     an error; every block reads back as written;
#  5. ext4 on the device, files written and synced, SIGKILL, recover, the files read back,
#     umount, fsck -fn clean;
#  6. SIGTERM: the recovered server exits 0 and removes /dev/ublkb0 and its RAM file.
# env: BLOCKS (default 100), TSBLK_CMD (default "node <project>/bin/tsblk.js")
set -u
HERE=$(dirname "$(readlink -f "$0")")
PROJECT=$(cd "$HERE/../../.." && pwd)
source "$HERE/lib.sh"
BLOCKS=${BLOCKS:-100}
# shellcheck disable=SC2206
TSBLK=(${TSBLK_CMD:-node $PROJECT/bin/tsblk.js})
DEV=/dev/ublkb0
RAM=/dev/shm/tsblk-ublk-0.img
MNT=/mnt/ublk-rec
sha() { sha256sum "$@" | cut -d' ' -f1; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
part() {
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}

# start LOG ARGS...: a tsblk ublk server in the background (SERVER_PID), waits for its first line
start() {
  local log=$1
  shift
  "${TSBLK[@]}" ublk "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  local n=900
  until grep -q '^/dev/ublkb' "$log" 2>/dev/null || ! kill -0 $SERVER_PID 2>/dev/null || [[ $n -le 0 ]]; do
    sleep 0.1
    n=$((n - 1))
  done
  cat "$log"
  grep -q '^/dev/ublkb' "$log"
}

state() { "${TSBLK[@]}" ublk list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s).devices[0];console.log(d?`${d.state} ${d.serverRunning}`:"none")})'; }

section "setup"
modprobe ublk_drv
run modprobe -a ext4 crc32c_generic
mkdir -p /dev/shm $MNT
mount -t tmpfs -o size=160M tmpfs /dev/shm

part setup

section "add --recoverable"
start /tmp/rec1.log add ram:128M --recoverable --queues 2 --depth 32 && fact add_ready yes || fact add_ready no
fact add_flags "$(grep -m1 '^  ublk device' /tmp/rec1.log)"
fact ram_file "$([[ -f $RAM ]] && stat -c %s $RAM || echo missing)"

part add

section "writer, SIGKILL, recover"
: >/tmp/acked.log
(
  for ((i = 0; i < BLOCKS; i++)); do
    pattern "$i" 1 4096 | dd of=$DEV bs=4096 seek="$i" oflag=direct conv=notrunc status=none || exit 1
    echo "$i" >>/tmp/acked.log
  done
) &
WRITER=$!
until [[ $(wc -l </tmp/acked.log) -ge 30 ]] || ! kill -0 $WRITER 2>/dev/null; do sleep 0.05; done
kill -KILL $SERVER_PID
wait $SERVER_PID 2>/dev/null
fact acked_at_kill "$(wc -l </tmp/acked.log)"
sleep 1
fact state_after_kill "$(state)"
fact writer_waiting "$(kill -0 $WRITER 2>/dev/null && echo yes || echo no)"
start /tmp/rec2.log recover 0 && fact recover_ready yes || fact recover_ready no
fact state_after_recover "$(state)"
wait $WRITER
fact writer_rc $?
fact acked_total "$(wc -l </tmp/acked.log)"
fact blocks_sha "$(dd if=$DEV bs=4096 count="$BLOCKS" iflag=direct status=none | sha)"

part crash1

section "ext4 across a crash"
run mkfs.ext4 -q -F $DEV
fact mkfs_rc $?
run mount -t ext4 $DEV $MNT 2>&1
fact mount_rc $?
pattern 1000 512 4096 >$MNT/a.bin
pattern 2000 3 4096 | head -c 10000 >$MNT/b.bin
sync
fact files_synced "$(ls $MNT | grep -c '\.bin$')"
kill -KILL $SERVER_PID
wait $SERVER_PID 2>/dev/null
# the filesystem stays mounted: new writes wait for the recovered server
pattern 3000 256 4096 >$MNT/c.bin &
LATE=$!
sleep 1
fact state_after_kill2 "$(state)"
start /tmp/rec3.log recover 0 && fact recover2_ready yes || fact recover2_ready no
wait $LATE
fact late_write_rc $?
sync
for f in a b c; do fact "sha_$f" "$(sha <$MNT/$f.bin)"; done
run umount $MNT
fact umount_rc $?
run fsck.ext4 -fn $DEV
fact fsck_rc $?

part crash2

section "stop"
kill -TERM $SERVER_PID
wait $SERVER_PID
fact stop_exit $?
sleep 0.2
fact block_gone "$([[ -e $DEV ]] && echo no || echo yes)"
fact ram_gone "$([[ -e $RAM ]] && echo no || echo yes)"
umount /dev/shm
part stop
echo "guest script done"
