#!/usr/bin/env bash
# Guest side of bench/ublk.ts: the same fio jobs on every target, one target after another, in
# one boot. Each target gets SIZE_MIB, is prefilled with 1 MiB writes (reads then hit data),
# then runs every job of FIO_JOBS (libaio, direct=1, one job, 1 s ramp + RUNTIME s).
# Targets:
#   tsblk         `node bin/tsblk.js ublk add ram:SIZE --queues Q --depth D` (dist/)
#   brd           the kernel's RAM disk (modprobe brd rd_nr=1 rd_size=KiB)
#   loop          losetup over a file on tmpfs, --direct-io=on when the kernel takes it
#   ublksrv-null  with UBLKSRV: `ublk add -t null -q Q -d D` (250 GiB; fio uses SIZE of it)
#   ublksrv-loop  with UBLKSRV: `ublk add -t loop -f FILE -q Q -d D`, the same tmpfs file
# env: SIZE_MIB, RUNTIME, QUEUES, DEPTH, FIO_JOBS ("id rw bs iodepth;..."), UBLKSRV (optional)
# Prints, per job, `fio-json TARGET JOB {fio's JSON on one line}` or `fio-failed TARGET JOB WHY`,
# and `fact: K=V` lines (setup of each target); "guest script done" at the end.
set -u
HERE=$(dirname "$(readlink -f "$0")")
PROJECT=$(cd "$HERE/../../.." && pwd)
source "$HERE/lib.sh"

SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-5}
QUEUES=${QUEUES:-2}
DEPTH=${DEPTH:-128}
FIO_JOBS=${FIO_JOBS:-randread-4k-qd1 randread 4k 1}
UBLKSRV=${UBLKSRV:-}
TMPFS=/run/bench-ublk
IMG=$TMPFS/loop.img

# bench TARGET DEV: prefill DEV, then every job of FIO_JOBS on it
bench() {
  local target=$1 dev=$2 id rw bs qd spec specs
  fact "${target}_dev" "$dev"
  fio --name=prefill --filename="$dev" --direct=1 --ioengine=libaio --rw=write --bs=1M \
    --iodepth=8 --size="${SIZE_MIB}M" --output-format=terse >/dev/null 2>/tmp/fio.err
  fact "${target}_prefill_rc" $?
  IFS=';' read -ra specs <<<"$FIO_JOBS"
  for spec in "${specs[@]}"; do
    read -r id rw bs qd <<<"$spec"
    if fio --name="$id" --filename="$dev" --direct=1 --ioengine=libaio --rw="$rw" --bs="$bs" \
      --iodepth="$qd" --size="${SIZE_MIB}M" --time_based --runtime="$RUNTIME" --ramp_time=1 \
      --norandommap --randrepeat=0 --percentile_list=50:99 \
      --output-format=json --output=/tmp/fio.json >/dev/null 2>/tmp/fio.err; then
      # JSON holds no raw newlines inside strings: joining the lines keeps it valid
      echo "fio-json $target $id $(tr -d '\n' </tmp/fio.json)"
    else
      echo "fio-failed $target $id $(tr '\n' ' ' </tmp/fio.err | head -c 300)"
    fi
  done
}

# wait_exit PID SECONDS: wait for a background process, SIGKILL it after SECONDS; its status
wait_exit() {
  local pid=$1 n=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null && [[ $n -gt 0 ]]; do
    sleep 0.1
    n=$((n - 1))
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  wait "$pid"
}

# ublksrv_dev OUTPUT: /dev/ublkbN from `ublk add`'s "dev id N: ..." line
ublksrv_dev() {
  local id
  id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$1" | head -n1)
  [[ -n $id ]] && wait_for "/dev/ublkb$id" 50 && echo "/dev/ublkb$id"
}

fact guest_cpus "$(nproc)"
fact fio_version "$(fio --version)"
mkdir -p $TMPFS
mount -t tmpfs -o size=$((SIZE_MIB + 16))M tmpfs $TMPFS
modprobe ublk_drv
fact ublk_drv_rc $?

section "tsblk: ublk add ram:${SIZE_MIB}M --queues $QUEUES --depth $DEPTH"
LOG=/tmp/tsblk.log
node "$PROJECT/bin/tsblk.js" ublk add "ram:${SIZE_MIB}M" --queues "$QUEUES" --depth "$DEPTH" >$LOG 2>&1 &
TSBLK_PID=$!
n=900
until grep -q '^/dev/ublkb' $LOG 2>/dev/null || ! kill -0 $TSBLK_PID 2>/dev/null || [[ $n -le 0 ]]; do
  sleep 0.1
  n=$((n - 1))
done
DEV=$(head -n1 $LOG)
if [[ $DEV == /dev/ublkb* && -b $DEV ]]; then
  fact tsblk_ready yes
  fact tsblk_info "$(grep -m1 '^  ublk device' $LOG | sed 's/^ *//')"
  bench tsblk "$DEV"
else
  fact tsblk_ready no
  cat $LOG
fi
kill -TERM $TSBLK_PID 2>/dev/null
wait_exit $TSBLK_PID 30
fact tsblk_exit $?

section "brd: modprobe brd rd_nr=1 rd_size=$((SIZE_MIB * 1024))"
if modprobe brd rd_nr=1 rd_size=$((SIZE_MIB * 1024)) && wait_for /dev/ram0 50; then
  fact brd_ready yes
  bench brd /dev/ram0
  rmmod brd
else
  fact brd_ready no
fi

section "loop: losetup over $IMG (tmpfs)"
modprobe loop
wait_for /dev/loop-control 50
truncate -s "${SIZE_MIB}M" $IMG
LOOP=$(losetup -f --show --direct-io=on $IMG 2>/tmp/losetup.err) || LOOP=$(losetup -f --show $IMG)
fact loop_dio "$(losetup -n -O DIO "$LOOP" 2>/dev/null | tr -d ' ')"
if [[ -b $LOOP ]]; then
  fact loop_ready yes
  bench loop "$LOOP"
  losetup -d "$LOOP"
else
  fact loop_ready no
  cat /tmp/losetup.err
fi

if [[ -n $UBLKSRV ]]; then
  section "ublksrv: $UBLKSRV"
  fact ublksrv_version "$("$UBLKSRV" -v 2>&1 | head -n1)"
  out=$("$UBLKSRV" add -t null -q "$QUEUES" -d "$DEPTH" 2>&1)
  echo "$out"
  fact ublksrv_null_flags "$(grep -m1 -o 'flags 0x.*' <<<"$out")"
  if DEV=$(ublksrv_dev "$out"); then
    fact ublksrv-null_ready yes
    bench ublksrv-null "$DEV"
  else
    fact ublksrv-null_ready no
  fi
  "$UBLKSRV" del -a
  out=$("$UBLKSRV" add -t loop -f $IMG -q "$QUEUES" -d "$DEPTH" 2>&1)
  echo "$out"
  fact ublksrv_loop_flags "$(grep -m1 -o 'flags 0x.*' <<<"$out")"
  fact ublksrv_loop_target "$(grep -m1 -o 'target {.*' <<<"$out")"
  if DEV=$(ublksrv_dev "$out"); then
    fact ublksrv-loop_ready yes
    bench ublksrv-loop "$DEV"
  else
    fact ublksrv-loop_ready no
  fi
  "$UBLKSRV" del -a
fi

umount $TMPFS
echo "guest script done"
