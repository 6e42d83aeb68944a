#!/bin/bash
# Guest side of test/interop-kernel-nvmet.test.ts, one boot for both parts:
#  1. the kernel's NVMe/TCP target (nvmet-tcp, configured through configfs) on 127.0.0.1:4420
#     over a brd RAM disk, used by the kernel's NVMe/TCP host through nvme-cli: discover,
#     connect, list, id-ctrl, id-ns, dd write + read back, fio crc32c verify, disconnect;
#  2. QEMU's emulated NVMe controller (the Copy reference): qemu-copy-reference.sh with COPIES.
# Prints facts (`fact: K=V`) for the test to assert; exits 0 when every step ran.
#
# env: NQN (default nqn.2024-01.io.tsblk:interop-nvmet), QEMU_NQN (subsystem NQN of QEMU's
#      controller; unset = skip part 2), COPIES (space-separated COPY specs for part 2)
set -u
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/lib.sh"
NQN=${NQN:-nqn.2024-01.io.tsblk:interop-nvmet}
ADDR=127.0.0.1
PORT=4420
BRD_MIB=64
t_start=$(cut -d' ' -f1 /proc/uptime)
fact guest_uptime_at_start "$t_start"

section "modules"
run modprobe -a nvmet nvmet-tcp nvme-tcp || exit 1
run modprobe brd rd_nr=1 rd_size=$((BRD_MIB * 1024)) || exit 1
wait_for /dev/ram0 || { echo "no /dev/ram0"; exit 1; }
fact modules_loaded_at "$(cut -d' ' -f1 /proc/uptime)"

section "nvmet: subsystem $NQN, namespace 1 = /dev/ram0, port 1 = tcp $ADDR:$PORT"
nvmet_setup /dev/ram0 "$NQN" 1 "$ADDR" "$PORT" || { echo "nvmet_setup failed"; exit 1; }
wait_port $PORT 100 && fact nvmet_listening "$(ss -Hltn "sport = :$PORT" | awk '{print $4}')"

section "nvme discover"
disc=$(nvme discover -t tcp -a $ADDR -s $PORT 2>&1)
fact discover_rc $?
echo "$disc"
# one fact per discovery log entry: "subtype|traddr|trsvcid|subnqn" (fields come in any order)
awk -F': +' 'function flush() { if (nqn != "") print "fact: discover_entry=" st "|" ta "|" sv "|" nqn; st = ta = sv = nqn = "" }
  /^=====Discovery Log Entry/ { flush() } $1 == "subtype" { st = $2 } $1 == "traddr" { ta = $2 }
  $1 == "trsvcid" { sv = $2 } $1 == "subnqn" { nqn = $2 } END { flush() }' <<<"$disc"

section "nvme connect"
run nvme connect -t tcp -a $ADDR -s $PORT -n "$NQN"
fact connect_rc $?
NS=$(wait_ns_for_nqn "$NQN") || { echo "namespace of $NQN never appeared"; exit 1; }
CTRL=$(nvme_ctrl_for_nqn "$NQN")
fact ns "$NS"
fact ctrl "$CTRL"
fact ctrl_transport "$(cat /sys/class/nvme/"${CTRL#/dev/}"/transport)"
fact ctrl_address "$(cat /sys/class/nvme/"${CTRL#/dev/}"/address)"

section "nvme list"
list=$(nvme list 2>&1)
echo "$list"
grep -F "$NS " <<<"$list" | sed 's/^/fact: list_row=/'

section "nvme id-ctrl / id-ns"
idc=$(nvme id-ctrl "$CTRL" 2>&1)
fact id_ctrl_rc $?
fact id_ctrl_mn "$(awk -F' : ' '$1 ~ /^mn/ {print $2; exit}' <<<"$idc" | sed 's/ *$//')"
fact id_ctrl_subnqn "$(awk -F' : ' '$1 ~ /^subnqn/ {print $2; exit}' <<<"$idc" | sed 's/ *$//')"
fact id_ctrl_oncs "$(nvme_field "$idc" oncs)"
idn=$(nvme id-ns "$NS" 2>&1)
fact id_ns_rc $?
fact id_ns_nsze "$(nvme_field "$idn" nsze)"
LBS=$(blockdev --getss "$NS")
fact lbs "$LBS"
fact size_bytes "$(blockdev --getsize64 "$NS")"

section "dd: write a pattern through nvme-tcp, read it back"
NBLK=$(($(blockdev --getsize64 "$NS") / LBS))
# 1 MiB at 1 MiB, and the last 8 blocks of the namespace
pattern 2048 2048 "$LBS" >/tmp/w1.bin
pattern $((NBLK - 8)) 8 "$LBS" >/tmp/w2.bin
write_blocks "$NS" 2048 "$LBS" </tmp/w1.bin
fact dd_write1_rc $?
write_blocks "$NS" $((NBLK - 8)) "$LBS" </tmp/w2.bin
fact dd_write2_rc $?
fact written_sha256 "$(cat /tmp/w1.bin /tmp/w2.bin | sha)"
fact read_sha256 "$({ read_blocks "$NS" 2048 2048 "$LBS"; read_blocks "$NS" $((NBLK - 8)) 8 "$LBS"; } | sha)"

section "fio: 4 KiB random writes at QD16, then verify (crc32c)"
fio_out=$(fio --name=verify --filename="$NS" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
  --iodepth=16 --offset=16M --size=8M --verify=crc32c --do_verify=1 --verify_fatal=1 \
  --verify_state_save=0 --randrepeat=0 --minimal 2>&1)
fact fio_rc $?
echo "$fio_out"
# terse format (v3): field 5 = error, 6 = KiB read, 47 = KiB written
fact fio_error "$(awk -F';' 'NF > 50 {print $5; exit}' <<<"$fio_out")"
fact fio_read_kb "$(awk -F';' 'NF > 50 {print $6; exit}' <<<"$fio_out")"
fact fio_write_kb "$(awk -F';' 'NF > 50 {print $47; exit}' <<<"$fio_out")"

section "nvme disconnect"
disc_out=$(nvme disconnect -n "$NQN" 2>&1)
fact disconnect_rc $?
fact disconnect_output "$disc_out"
for _ in $(seq 50); do [[ -e $NS ]] || break; sleep 0.1; done
fact ns_gone_after_disconnect "$([[ -e $NS ]] && echo no || echo yes)"
# the writes went through the target to its backing device
fact brd_sha256 "$({ read_blocks /dev/ram0 2048 2048 "$LBS"; read_blocks /dev/ram0 $((NBLK - 8)) 8 "$LBS"; } | sha)"
nvmet_teardown "$NQN" 1
fact nvmet_port_closed "$(port_listening $PORT && echo no || echo yes)"
t_nvmet=$(cut -d' ' -f1 /proc/uptime)
fact nvmet_part_seconds "$(awk -v a="$t_start" -v b="$t_nvmet" 'BEGIN {printf "%.1f", b - a}')"

if [[ -n ${QEMU_NQN:-} ]]; then
  section "QEMU's emulated NVMe controller: Copy reference"
  run modprobe nvme
  QNS=$(wait_ns_for_nqn "$QEMU_NQN" 150) || { echo "QEMU's namespace ($QEMU_NQN) never appeared"; exit 1; }
  fact qemu_ns "$QNS"
  # shellcheck disable=SC2086 # COPIES is a space-separated list
  bash "$HERE/qemu-copy-reference.sh" "$QNS" ${COPIES:-}
  fact reference_rc $?
  t_end=$(cut -d' ' -f1 /proc/uptime)
  fact qemu_part_seconds "$(awk -v a="$t_nvmet" -v b="$t_end" 'BEGIN {printf "%.1f", b - a}')"
fi
echo "guest script done"
