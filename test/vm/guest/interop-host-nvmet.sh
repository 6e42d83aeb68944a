#!/bin/bash
# Guest side of test/interop-host-nvmet.test.ts: tsblk's NVMe/TCP host against the kernel's
# nvmet-tcp target, in one boot.
#  1. nvmet through configfs: subsystem NQN (model, serial and a CNTLID range of our own) with
#     namespace 1 = a file on tmpfs (file backend, 4 KiB blocks: tmpfs's block size) and
#     namespace 2 = a brd RAM disk (block backend, 512-byte blocks), port 1 = tcp ADDR:PORT;
#  2. the kernel host through nvme-cli, for reference: discover, connect, id-ctrl and id-ns of
#     both namespaces as JSON (files in OUT), the block devices' sizes; it stays connected;
#  3. host-io.mjs (one node process): the tsblk CLI and library — identify (while the kernel
#     host is connected), then `nvme disconnect`, then tsblk's own I/O, copies and the bad NQN;
#  4. `node bin/tsblk.js connect` to a subsystem nvmet lacks, as its own process (exit code);
#  5. the backing store of every region host-io.mjs touched, read here with dd and sha256sum
#     (REGIONS), and nvmet's kernel log lines.
# Prints `fact: K=V` lines; keeps going after a failed step; exits 0 when it reached the end.
#
# env: NQN, BAD_NQN, OUT (directory shared with the host), PLAN (JSON for host-io.mjs),
#      REGIONS ("KEY:NSID:OFFSET:LENGTH ..." in bytes), MODEL, SERIAL, CNTLID_MIN, CNTLID_MAX,
#      NS1_MIB, NS2_MIB
set -u
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/lib.sh"
PROJECT=$(readlink -f "$HERE/../../..")
ADDR=127.0.0.1
PORT=4420
NS1_FILE=/tmp/nvmet-ns1.img
NS2_DEV=/dev/ram0
uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
part() { # part NAME: how long the part that just ended took (fact part_NAME_s)
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}

section "modules, backing stores"
run modprobe -a nvmet nvmet-tcp nvme-tcp || exit 1
# No udev, and the kernel's own request for a module fails in this guest: load the crc32c that
# NVMe/TCP digests ask for by name. Without it nvmet-tcp 6.12.117 closes a
# connection whose ICReq asks for digests, and then oopses (NULL pointer dereference in
# nvmet_tcp_release_queue_work): the guest kernel panics.
run modprobe crc32c_generic || exit 1
modprobe crc32c-intel 2>/dev/null # faster where the CPU model has SSE 4.2; optional
run modprobe brd rd_nr=1 rd_size=$((NS2_MIB * 1024)) || exit 1
wait_for $NS2_DEV || { echo "no $NS2_DEV"; exit 1; }
truncate -s "${NS1_MIB}M" $NS1_FILE || exit 1
part modules

section "nvmet: $NQN, namespace 1 = $NS1_FILE, namespace 2 = $NS2_DEV, port 1 = tcp $ADDR:$PORT"
S=/sys/kernel/config/nvmet/subsystems/$NQN
nvmet_setup $NS1_FILE "$NQN" 1 $ADDR $PORT || { echo "nvmet_setup failed"; exit 1; }
nvmet_add_ns "$NQN" 2 $NS2_DEV || { echo "namespace 2 failed"; exit 1; }
# before any host connects (nvmet refuses changes once the subsystem was identified)
echo -n "$MODEL" >"$S/attr_model"
fact set_model_rc $?
echo -n "$SERIAL" >"$S/attr_serial"
fact set_serial_rc $?
echo "$CNTLID_MIN" >"$S/attr_cntlid_min" && echo "$CNTLID_MAX" >"$S/attr_cntlid_max"
fact set_cntlid_range_rc $?
fact nvmet_ns1_path "$(cat "$S/namespaces/1/device_path")"
fact nvmet_ns2_path "$(cat "$S/namespaces/2/device_path")"
fact nvmet_firmware "$(cat "$S/attr_firmware" 2>/dev/null || echo none)"
fact nvmet_inline_data_size "$(cat /sys/kernel/config/nvmet/ports/1/param_inline_data_size 2>/dev/null)"
wait_port $PORT 100 && fact nvmet_listening "$(ss -Hltn "sport = :$PORT" | awk '{print $4}')"
part nvmet

section "the kernel host (nvme-cli), for reference"
out=$(nvme discover -t tcp -a $ADDR -s $PORT -o json 2>&1 >"$OUT/nvme-discover.json")
fact nvme_discover_rc $?
echo "$out"
run nvme connect -t tcp -a $ADDR -s $PORT -n "$NQN"
fact nvme_connect_rc $?
CTRL=$(nvme_ctrl_for_nqn "$NQN")
fact nvme_ctrl "${CTRL:-none}"
nvme id-ctrl "${CTRL:-/dev/null}" -o json >"$OUT/nvme-id-ctrl.json"
fact nvme_id_ctrl_rc $?
for nsid in 1 2; do
  nvme id-ns "${CTRL:-/dev/null}" -n $nsid -o json >"$OUT/nvme-id-ns-$nsid.json"
  fact "nvme_id_ns_${nsid}_rc" $?
  # the kernel's own decode of the namespace: block size and size of its block device
  for _ in $(seq 100); do dev=$(nvme_ns_for_nqn_nsid "$NQN" $nsid) && [[ -b $dev ]] && break; sleep 0.1; done
  fact "kernel_ns${nsid}_lbs" "$(blockdev --getss "${dev:-/dev/null}" 2>&1)"
  fact "kernel_ns${nsid}_bytes" "$(blockdev --getsize64 "${dev:-/dev/null}" 2>&1)"
done
fact nvme_cntlid "$(cat "/sys/class/nvme/${CTRL#/dev/}/cntlid" 2>/dev/null)"
part kernel_host

section "tsblk: host-io.mjs (CLI identify, kernel host disconnect, I/O, copy, bad NQN)"
# tsblk reads /etc/nvme/hostnqn like nvme-cli: both hosts have the same host NQN
fact hostnqn "$(cat /etc/nvme/hostnqn 2>/dev/null || echo none)"
cd "$PROJECT" || exit 1
# a generous bound: the process must end by itself (nothing left open), well before this
timeout -k 5 300 node "$HERE/host-io.mjs"
fact host_io_rc $?
part tsblk

section "tsblk as a user runs it (bin/tsblk.js, its own process): a subsystem nvmet does not have"
t0=$(uptime_s)
err=$(timeout -k 5 60 node bin/tsblk.js connect $ADDR:$PORT --nqn "$BAD_NQN" 2>&1 >/dev/null)
fact bad_nqn_process_rc $?
fact bad_nqn_process_stderr "$err"
fact bad_nqn_process_seconds "$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN {printf "%.1f", b - a}')"
part tsblk_process

section "the backing store, read in the guest"
for region in $REGIONS; do
  IFS=: read -r key nsid off len <<<"$region"
  if [[ $nsid == 1 ]]; then # the file: nvmet wrote through the page cache
    h=$(dd if=$NS1_FILE bs=1M skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none | sha)
  else # brd: nvmet's bios bypass the block device's page cache, so read direct
    h=$(dd if=$NS2_DEV bs=1M skip="$off" count="$len" iflag=direct,skip_bytes,count_bytes status=none | sha)
  fi
  fact "backing_${key}_sha256" "$h"
done
part backing

section "kernel log"
dmesg | grep -E 'nvmet' | tail -n 40
fact nvmet_log_bad_nqn "$(dmesg | grep -F "$BAD_NQN" | tail -n 1 | sed 's/^\[[ 0-9.]*\] //')"
fact nvmet_log_bad_nqn_count "$(dmesg | grep -cF "invalid subsystem $BAD_NQN")"
echo "guest script done"
