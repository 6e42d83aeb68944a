#!/usr/bin/env bash
# Guest side of bench/ublk.ts: the same fio jobs on every target, one after another, in one
# boot. Environment: SIZE_MIB, RUNTIME (s per job), UBLKSRV (optional: a ublksrv `ublk`
# binary, for its null and loop targets). Prints one line per job:
#   result <target> <job> <iops> <kib_per_s>
# and `fact` lines (setup status per target). Targets:
#   tsblk   `node bin/tsblk.js ublk add ram:SIZE --queues 2 --depth 128` (from dist/)
#   brd     the kernel's RAM disk (modprobe brd rd_nr=1 rd_size=KiB)
#   loop    losetup over a file on tmpfs (--direct-io=on when the kernel takes it)
#   ublksrv-null, ublksrv-loop (the same tmpfs file) with UBLKSRV
set -u
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-3}
UBLKSRV=${UBLKSRV:-}
TMPFS=/run/bench-ublk
JOBS=(randread-4k-qd1 randwrite-4k-qd1 randread-4k-qd64 randwrite-4k-qd64 read-128k-qd8 write-128k-qd8)

# job_args NAME: fio options of a job
job_args() {
  case $1 in
  randread-4k-qd1) echo --rw=randread --bs=4k --iodepth=1 ;;
  randwrite-4k-qd1) echo --rw=randwrite --bs=4k --iodepth=1 ;;
  randread-4k-qd64) echo --rw=randread --bs=4k --iodepth=64 ;;
  randwrite-4k-qd64) echo --rw=randwrite --bs=4k --iodepth=64 ;;
  read-128k-qd8) echo --rw=read --bs=128k --iodepth=8 ;;
  write-128k-qd8) echo --rw=write --bs=128k --iodepth=8 ;;
  esac
}

# bench TARGET DEV: prefill, then every job; terse v3 fields 8 (read IOPS) 7 (read KiB/s),
# 49 (write IOPS) 48 (write KiB/s)
bench() {
  local target=$1 dev=$2 job out
  fio --name=prefill --filename="$dev" --direct=1 --ioengine=libaio --rw=write --bs=1M \
    --iodepth=4 --size="${SIZE_MIB}M" --output-format=terse >/dev/null 2>&1
  fact "${target}_prefill_rc" $?
  for job in "${JOBS[@]}"; do
    # shellcheck disable=SC2046
    out=$(fio --name="$job" --filename="$dev" --direct=1 --ioengine=libaio $(job_args "$job") \
      --size="${SIZE_MIB}M" --time_based --runtime="$RUNTIME" --ramp_time=1 --norandommap \
      --randrepeat=0 --output-format=terse --terse-version=3 2>/tmp/fio.err)
    if [[ -z $out ]]; then
      echo "fio $job on $target failed: $(head -c 300 /tmp/fio.err)"
      continue
    fi
    awk -F';' -v t="$target" -v j="$job" \
      '{ if (j ~ /write/) print "result", t, j, $49, $48; else print "result", t, j, $8, $7 }' <<<"$out"
  done
}

mkdir -p $TMPFS
mount -t tmpfs -o size=$((SIZE_MIB + 16))M tmpfs $TMPFS
run modprobe ublk_drv

section "tsblk"
node bin/tsblk.js ublk add "ram:${SIZE_MIB}M" --queues 2 --depth 128 >/tmp/tsblk.log 2>&1 &
TSBLK_PID=$!
for _ in $(seq 600); do
  [[ -b /dev/ublkb0 ]] && head -n1 /tmp/tsblk.log | grep -q '^/dev/ublkb' && break
  sleep 0.1
done
if [[ -b /dev/ublkb0 ]]; then
  fact tsblk_ready yes
  bench tsblk /dev/ublkb0
else
  fact tsblk_ready no
  cat /tmp/tsblk.log
fi
kill -TERM $TSBLK_PID
wait $TSBLK_PID
fact tsblk_exit $?

section "brd"
if run modprobe brd rd_nr=1 rd_size=$((SIZE_MIB * 1024)); then
  bench brd /dev/ram0
  rmmod brd
fi

section "loop"
run modprobe loop
for _ in $(seq 50); do [[ -e /dev/loop-control ]] && break; sleep 0.1; done
truncate -s "${SIZE_MIB}M" $TMPFS/loop.img
LOOP=$(losetup -f --show --direct-io=on $TMPFS/loop.img 2>/dev/null)
if [[ -n $LOOP ]]; then
  fact loop_dio on
else
  LOOP=$(losetup -f --show $TMPFS/loop.img)
  fact loop_dio off
fi
fact loop_dev "$LOOP"
if [[ -b $LOOP ]]; then
  bench loop "$LOOP"
  losetup -d "$LOOP"
fi

if [[ -n $UBLKSRV ]]; then
  section "ublksrv"
  if run "$UBLKSRV" add -t null -s $((SIZE_MIB * 1024 * 1024)) -q 2 -d 128; then
    dev=$(ls /dev/ublkb* | head -n1)
    bench ublksrv-null "$dev"
    run "$UBLKSRV" del -a
  fi
  if run "$UBLKSRV" add -t loop -f $TMPFS/loop.img -q 2 -d 128; then
    dev=$(ls /dev/ublkb* | head -n1)
    bench ublksrv-loop "$dev"
    run "$UBLKSRV" del -a
  fi
fi

umount $TMPFS
echo "guest script done"
