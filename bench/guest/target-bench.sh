#!/bin/bash
# Guest side of bench/target.ts: the same fio jobs through the kernel's NVMe/TCP host against
# (1) the kernel's nvmet-tcp target over a brd RAM disk and (2) the tsblk target over a RAM
# namespace, one after the other in one boot, both on the guest's loopback.
# Prints one line per job: `bench: <target> <job> <fio json, one line>`.
#
# env: SIZE_MIB (default 256), RUNTIME (s, default 8), RAMP (s, default 2), JOBS (job names,
#      default all), TARGETS (default "nvmet tsblk")
set -u
HERE=$(dirname "$(readlink -f "$0")")
PROJECT=$(cd "$HERE/../.." && pwd)
source "$PROJECT/test/vm/guest/lib.sh"
SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-8}
RAMP=${RAMP:-2}
JOBS=${JOBS:-"randread-4k-qd32 randwrite-4k-qd32 read-128k-qd8 write-128k-qd8 randread-4k-qd1"}
TARGETS=${TARGETS:-"nvmet tsblk"}
ADDR=127.0.0.1
PORT=4420

job_args() {
  case $1 in
    randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
    randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    read-128k-qd8) echo "--rw=read --bs=128k --iodepth=8" ;;
    write-128k-qd8) echo "--rw=write --bs=128k --iodepth=8" ;;
    randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
    *) echo "unknown job $1" >&2; return 1 ;;
  esac
}

run_jobs() { # TARGET NQN
  local target=$1 nqn=$2 ns
  run nvme connect -t tcp -a $ADDR -s $PORT -n "$nqn" -i 2 || return 1
  ns=$(wait_ns_for_nqn "$nqn") || { echo "no namespace for $nqn"; return 1; }
  # Fill once so reads hit written data on both targets.
  fio --name=fill --filename="$ns" --direct=1 --ioengine=libaio --rw=write --bs=1m --iodepth=4 \
    --size=${SIZE_MIB}m --output-format=terse >/dev/null 2>&1
  for job in $JOBS; do
    local out
    # shellcheck disable=SC2046
    out=$(fio --name="$job" --filename="$ns" --direct=1 --ioengine=libaio $(job_args "$job") \
      --size=${SIZE_MIB}m --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
      --output-format=json 2>&1) || { echo "fio $job failed: $out"; return 1; }
    printf 'bench: %s %s %s\n' "$target" "$job" "$(tr -d '\n' <<<"$out")"
  done
  run nvme disconnect -n "$nqn"
}

run modprobe -a nvmet nvmet-tcp nvme-tcp || exit 1
for target in $TARGETS; do
  case $target in
    nvmet)
      run modprobe brd rd_nr=1 rd_size=$((SIZE_MIB * 1024)) || exit 1
      wait_for /dev/ram0 || exit 1
      NQN=nqn.2026-11.io.tsblk:bench-nvmet
      nvmet_setup /dev/ram0 "$NQN" 1 $ADDR $PORT || exit 1
      wait_port $PORT 100 || exit 1
      run_jobs nvmet "$NQN" || exit 1
      nvmet_teardown "$NQN" 1 || true
      ;;
    tsblk)
      cat >/tmp/bench-target.json <<JSON
{
  "devices": { "ram0": { "type": "ram", "size": "${SIZE_MIB}M" } },
  "subsystems": {
    "nqn.2026-11.io.tsblk:bench": { "namespaces": [{ "nsid": 1, "device": "ram0" }] }
  },
  "ports": [{ "address": "$ADDR", "port": $PORT }]
}
JSON
      TSBLK_TARGET_PORTS=$PORT bash "$PROJECT/test/vm/guest/tsblk-target.sh" start /tmp/bench-target.json || exit 1
      run_jobs tsblk nqn.2026-11.io.tsblk:bench || { bash "$PROJECT/test/vm/guest/tsblk-target.sh" log; exit 1; }
      bash "$PROJECT/test/vm/guest/tsblk-target.sh" stop || exit 1
      ;;
  esac
done
exit 0
