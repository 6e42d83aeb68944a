#!/bin/bash
# Guest side of test/interop-tsblk-target.test.ts, one boot for everything:
#  1. QEMU's emulated NVMe controller (the Copy reference): qemu-copy-reference.sh with COPIES,
#     and hand-made Copy commands (io-passthru) with descriptor formats 0, 1, 2 and 4;
#  2. `tsblk serve CONFIG` (tsblk-target.sh) on 127.0.0.1:4420 + discovery on 8009, driven by
#     the kernel's NVMe/TCP host through nvme-cli:
#     - discover (as the default host and as the allowed host of the restricted subsystem);
#     - copy subsystem: connect, list, id-ctrl, id-ns, the SAME qemu-copy-reference.sh run as on
#       QEMU, the same io-passthru Copies; a raw host enables formats 2/3 (Host Behavior
#       Support CDFE) and sends cross-namespace Copies (format 2) and invalid ones;
#     - data subsystem: connect with 2 I/O queues, fio write + crc32c verify at 4 KiB and
#       128 KiB (2 jobs, QD32), blkdiscard (Dataset Management), ext4: mkfs, mount, files,
#       unmount, fsck, disconnect, reconnect, files intact; connect again with header and data
#       digests (-g -G), fio verify;
#     - restricted subsystem (hosts: [ALLOWED_HOSTNQN]): another host NQN is refused (nvme
#       connect fails, the kernel logs why; a raw Connect sees the status), the allowed one
#       connects;
#     - keep-alive: a raw NVMe/TCP host (interop-tsblk-target-lib.sh) connects with KATO 1 s
#       and then sends nothing; the target must expire the controller and close the connection;
#     - SIGTERM: the target shuts down cleanly (exit status 0).
# Prints facts (`fact: K=V`), `ref-qemu:` / `ref-tsblk:` lines (qemu-copy-reference.sh's `ref:`
# lines, renamed per device); keeps going after a failed step; exits 0 when it reached the end.
#
# env: CONFIG (tsblk serve config, JSON), COPY_NQN, DATA_NQN, RESTRICTED_NQN, ALLOWED_HOSTNQN,
#      ALLOWED_HOSTID, OTHER_HOSTNQN, OTHER_HOSTID, RAW_KATO_HOSTNQN, RAW_COPY_HOSTNQN, QEMU_NQN,
#      COPIES (qemu-copy-reference.sh specs)
set -u
HERE=$(dirname "$(readlink -f "$0")")
source "$HERE/lib.sh"
source "$HERE/interop-tsblk-target-lib.sh"
TARGET="$HERE/tsblk-target.sh"
ADDR=127.0.0.1
PORT=4420
DISC_PORT=8009
LBS=512
uptime_s() { cut -d' ' -f1 /proc/uptime; }
T_LAST=$(uptime_s)
# part NAME: how long the part that just ended took (fact part_NAME_s)
part() {
  local now
  now=$(uptime_s)
  fact "part_$1_s" "$(awk -v a="$T_LAST" -v b="$now" 'BEGIN {printf "%.1f", b - a}')"
  T_LAST=$now
}
connect() { # connect NQN [nvme connect options...]: prints nvme-cli's output, returns its status
  local nqn=$1
  shift
  nvme connect -t tcp -a $ADDR -s $PORT -n "$nqn" "$@" 2>&1
}
disconnect() { # disconnect NQN: and wait until its namespaces are gone
  local nqn=$1 out rc=0
  out=$(nvme disconnect -n "$nqn" 2>&1) || rc=$?
  echo "$out"
  for _ in $(seq 100); do nvme_ns_for_nqn "$nqn" >/dev/null || break; sleep 0.1; done
  return $rc
}
# fio_verify NAME DEV BS SIZE_PER_JOB OFFSET RW: 2 jobs, QD32, write then crc32c verify
fio_verify() {
  local name=$1 dev=$2 bs=$3 size=$4 offset=$5 rw=$6 out rc=0
  out=$(fio --name="$name" --filename="$dev" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
    --iodepth=32 --numjobs=2 --offset="$offset" --offset_increment="$size" --size="$size" \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --randrepeat=0 \
    --group_reporting --minimal 2>&1) || rc=$?
  echo "$out"
  fact "fio_${name}_rc" "$rc"
  # terse format (v3): field 5 = error, 6 = KiB read, 47 = KiB written
  fact "fio_${name}_error" "$(awk -F';' 'NF > 50 {print $5; exit}' <<<"$out")"
  fact "fio_${name}_read_kb" "$(awk -F';' 'NF > 50 {print $6; exit}' <<<"$out")"
  fact "fio_${name}_write_kb" "$(awk -F';' 'NF > 50 {print $47; exit}' <<<"$out")"
}
# discovery_entries OUTPUT KEY: one fact KEY per entry, "subtype|traddr|trsvcid|subnqn"
discovery_entries() {
  awk -F': +' -v key="$2" 'function flush() { if (nqn != "") print "fact: " key "=" st "|" ta "|" sv "|" nqn; st = ta = sv = nqn = "" }
    /^=====Discovery Log Entry/ { flush() } $1 == "subtype" { st = $2 } $1 == "traddr" { ta = $2 }
    $1 == "trsvcid" { sv = $2 } $1 == "subnqn" { nqn = $2 } END { flush() }' <<<"$1"
}
# the io-passthru Copies run on both controllers (name, nsid, sdlba, format, nr, descriptors);
# namespace 1 holds the reference pattern in blocks 0..1023 (qemu-copy-reference.sh)
passthru_common() {
  local dev=$1
  passthru_copy f0_valid "$dev" 1 10200 0 2 "$(copy_desc 0 600 3)$(copy_desc 0 700 2)"
  fact pt_f0_valid_sha256 "$(read_blocks "$dev" 10200 5 $LBS | sha)"
  passthru_copy f1_no_pi "$dev" 1 10300 1 1 "$(copy_desc 1 600 3)"
  passthru_copy f2_not_enabled "$dev" 1 10300 2 1 "$(copy_desc 2 600 3 1)"
  passthru_copy f4_unknown "$dev" 1 10300 4 1 "$(copy_desc 0 600 3)"
  fact pt_untouched_sha256 "$(read_blocks "$dev" 10300 3 $LBS | sha)"
}

fact guest_uptime_at_start "$(uptime_s)"

section "modules"
# no udev: the crypto modules the digests (nvme-tcp) and ext4 ask for by name are loaded here
run modprobe -a nvme-tcp nvme crc32c_generic crc32c-intel ext4 || exit 1
part modules

# ------------------------------------------------------------------------------------------
section "QEMU's emulated NVMe controller: the Copy reference"
QNS=$(wait_ns_for_nqn "$QEMU_NQN" 150) || { echo "QEMU's namespace ($QEMU_NQN) never appeared"; exit 1; }
fact qemu_ns "$QNS"
# shellcheck disable=SC2086 # COPIES is a space-separated list
bash "$HERE/qemu-copy-reference.sh" "$QNS" ${COPIES:-} >/tmp/ref-qemu.txt 2>&1
fact qemu_reference_rc $?
sed 's/^ref: /ref-qemu: /' /tmp/ref-qemu.txt
section "QEMU: Copy through io-passthru"
passthru_common "$QNS" | sed 's/^fact: pt_/fact: qemu_pt_/'
part qemu

# ------------------------------------------------------------------------------------------
section "tsblk serve $CONFIG"
cat "$CONFIG"
echo
# -v: the target logs connections, their close reasons and failed commands (kept for the end)
TSBLK_TARGET_PORTS="$PORT $DISC_PORT" TSBLK_TARGET_ARGS=-v bash "$TARGET" start "$CONFIG"
fact target_start_rc $?
bash "$TARGET" log
fact target_listening "$(ss -Hltn | awk '{print $4}' | sort | tr '\n' ' ')"
part target_start

section "nvme discover (default host, then the restricted subsystem's host)"
disc=$(nvme discover -t tcp -a $ADDR -s $DISC_PORT 2>&1)
fact discover_rc $?
echo "$disc"
discovery_entries "$disc" discover_entry
disc=$(nvme discover -t tcp -a $ADDR -s $DISC_PORT --hostnqn="$ALLOWED_HOSTNQN" --hostid="$ALLOWED_HOSTID" 2>&1)
fact discover_allowed_rc $?
echo "$disc"
discovery_entries "$disc" discover_allowed_entry
part discover

# ------------------------------------------------------------------------------------------
section "copy subsystem: connect, list, identify"
connect "$COPY_NQN"
fact connect_rc $?
NS=$(wait_ns_nsid "$COPY_NQN" 1) || echo "namespace 1 of $COPY_NQN never appeared"
NS2=$(wait_ns_nsid "$COPY_NQN" 2) || echo "namespace 2 of $COPY_NQN never appeared"
NS3=$(wait_ns_nsid "$COPY_NQN" 3) || echo "namespace 3 of $COPY_NQN never appeared"
CTRL=$(nvme_ctrl_for_nqn "$COPY_NQN")
fact ns "${NS:-}"
fact ctrl "${CTRL:-}"
if [[ -n ${CTRL:-} ]]; then
  c=/sys/class/nvme/${CTRL#/dev/}
  fact ctrl_transport "$(cat "$c/transport")"
  fact ctrl_address "$(cat "$c/address")"
  fact ctrl_model "$(sed 's/ *$//' "$c/model")"
fi
list=$(nvme list 2>&1)
echo "$list"
[[ -n ${NS:-} ]] && grep -F "$NS " <<<"$list" | sed 's/^/fact: list_row=/'
idc=$(nvme id-ctrl "${CTRL:-/dev/null}" 2>&1)
fact id_ctrl_rc $?
echo "$idc" | grep -E '^(vid|sn|mn|fr|mdts|cntlid|ver|kas|oncs|ocfs|nn|sgls|subnqn|ioccsz|iorcsz|vwc|maxcmd) '
for f in mn fr subnqn; do
  fact "id_ctrl_$f" "$(awk -F' : ' -v f="$f" '$1 ~ "^" f " " {print $2; exit}' <<<"$idc" | sed 's/ *$//')"
done
for f in oncs ocfs mdts nn vwc kas; do fact "id_ctrl_$f" "$(nvme_field "$idc" $f)"; done
idn=$(nvme id-ns "${NS:-/dev/null}" 2>&1)
fact id_ns_rc $?
echo "$idn" | grep -E '^(nsze|ncap|nuse|nlbaf|flbas|mssrl|mcl|msrc|dlfeat|nmic) |^lbaf'
for f in nsze ncap mssrl mcl msrc; do fact "id_ns_$f" "$(nvme_field "$idn" $f)"; done
fact id_ns_lbaf0 "$(grep -E '^lbaf +0 ' <<<"$idn" | sed 's/  */ /g')"
idn3=$(nvme id-ns "${NS3:-/dev/null}" 2>&1)
fact id_ns3_rc $?
fact id_ns3_lbaf0 "$(grep -E '^lbaf +0 ' <<<"$idn3" | sed 's/  */ /g')"
[[ -n ${NS:-} ]] && fact lbs "$(blockdev --getss "$NS")" && fact size_bytes "$(blockdev --getsize64 "$NS")"
part identify

section "tsblk: the same Copy reference"
if [[ -n ${NS:-} ]]; then
  # shellcheck disable=SC2086
  bash "$HERE/qemu-copy-reference.sh" "$NS" ${COPIES:-} >/tmp/ref-tsblk.txt 2>&1
  fact tsblk_reference_rc $?
  sed 's/^ref: /ref-tsblk: /' /tmp/ref-tsblk.txt
fi
part tsblk_reference

section "tsblk: Copy through io-passthru, Host Behavior Support, cross-namespace Copy"
if [[ -n ${NS:-} && -n ${NS2:-} && -n ${NS3:-} ]]; then
  passthru_common "$NS" | sed 's/^fact: pt_/fact: tsblk_pt_/'
  # namespace 2: "LBA 00005000 ..." in its blocks 0..15 (not a block of namespace 1's pattern)
  pattern 5000 16 $LBS | write_blocks "$NS2" 0 $LBS
  fact ns2_write_rc $?
  # Host Behavior Support (FID 16h), 512 bytes: CDFE (bytes 4-5) bits 2 and 3 enable formats 2
  # and 3. The Linux host refuses to pass this Set Features through (EACCES, even for root: the
  # kernel owns the feature), so a raw host (interop-tsblk-target-lib.sh) sets it on a
  # controller of its own and sends the format 2/3 Copies; the kernel host reads the results.
  hex_to_bin <<<"000000000c$(hex_zeros 507)" >/tmp/hbs.bin
  out=$(nvme set-feature "$CTRL" --feature-id=0x16 --value=0 --data-len=512 --data=/tmp/hbs.bin 2>&1)
  echo "nvme set-feature host behavior (kernel host): rc $?: $out"
  fact hbs_kernel_passthru "$out"
  raw_copy_session "$COPY_NQN" "$RAW_COPY_HOSTNQN" 0x0c \
    "f2_cross:1:10000:2:2:$(copy_desc 2 0 8 2)$(copy_desc 2 8 4 2)" \
    "f2_mixed:1:10100:2:2:$(copy_desc 2 1000 4 1)$(copy_desc 2 0 4 2)" \
    "f2_no_such_ns:1:10400:2:1:$(copy_desc 2 0 4 99)" \
    "f2_4k_ns:1:10400:2:1:$(copy_desc 2 0 1 3)" \
    "f2_over_mssrl:1:10400:2:1:$(copy_desc 2 0 17 1)" \
    "f3_no_pi:1:10400:3:1:$(copy_desc 3 0 4 2)" | sed 's/^fact: pt_/fact: tsblk_pt_/'
  {
    # 12 blocks of namespace 2 (8 + 4) at 10000; 4 blocks of namespace 1, then 4 of namespace
    # 2, at 10100; nothing at 10400
    fact pt_f2_cross_sha256 "$(read_blocks "$NS" 10000 12 $LBS | sha)"
    fact pt_f2_cross_expected "$(pattern 5000 12 $LBS | sha)"
    fact pt_f2_mixed_sha256 "$(read_blocks "$NS" 10100 8 $LBS | sha)"
    fact pt_f2_mixed_expected "$({ pattern 1000 4 $LBS; pattern 5000 4 $LBS; } | sha)"
    fact pt_f2_errors_dst_sha256 "$(read_blocks "$NS" 10400 17 $LBS | sha)"
  } | sed 's/^fact: pt_/fact: tsblk_pt_/'
fi
part tsblk_passthru

section "copy subsystem: disconnect"
disconnect "$COPY_NQN"
fact copy_disconnect_rc $?
part copy_disconnect

# ------------------------------------------------------------------------------------------
section "data subsystem: connect with 2 I/O queues, fio write + crc32c verify"
connect "$DATA_NQN" --nr-io-queues=2
fact data_connect_rc $?
DNS=$(wait_ns_nsid "$DATA_NQN" 1) || echo "the namespace of $DATA_NQN never appeared"
DCTRL=$(nvme_ctrl_for_nqn "$DATA_NQN")
fact data_ns "${DNS:-}"
[[ -n ${DCTRL:-} ]] && fact data_queue_count "$(cat /sys/class/nvme/"${DCTRL#/dev/}"/queue_count)"
if [[ -n ${DNS:-} ]]; then
  fact data_size_bytes "$(blockdev --getsize64 "$DNS")"
  fio_verify 4k "$DNS" 4k 8M 0 randwrite
  part fio_4k
  fio_verify 128k "$DNS" 128k 16M 16M write
  part fio_128k

  section "discard (Dataset Management, deallocate): blkdiscard, then the blocks read as zeroes"
  # the Linux host sends every DSM with a 4 KiB range buffer (256 ranges' worth: NR counts the
  # ranges used), as nvme_setup_discard allocates it; nvmet accepts data longer than the ranges
  out=$(blkdiscard -o $((1 << 20)) -l $((1 << 20)) "$DNS" 2>&1)
  fact discard_rc $?
  echo "$out"
  fact discard_read_sha256 "$(read_blocks "$DNS" 2048 2048 $LBS | sha)"
  fact discard_dmesg "$(dmesg | grep -m1 -E 'I/O Cmd\(0x9\)' | sed 's/^\[[^]]*\] *//')"
  part discard

  section "ext4: mkfs, mount, write files, unmount, fsck"
  mkdir -p /mnt/tsblk
  mk=$(mkfs.ext4 -F "$DNS" 2>&1)
  fact mkfs_rc $?
  echo "$mk"
  # mke2fs tries one discard first and says nothing when it fails; after that: "done" or "failed"
  fact mkfs_discard "$(grep -m1 -o 'Discarding device blocks: .*' <<<"$mk" | grep -oE 'done|failed' | head -n1)"
  mount -t ext4 "$DNS" /mnt/tsblk
  fact mount_rc $?
  (
    cd /mnt/tsblk || exit 1
    head -c $((3 << 20)) /dev/urandom >big1.bin
    head -c $((2 << 20)) /dev/urandom >big2.bin
    mkdir -p small
    for i in $(seq 100); do echo "file $i $(head -c 24 /dev/urandom | bin_to_hex)" >"small/f$i.txt"; done
    sync
    find . -type f | sort | xargs sha256sum >/tmp/ext4-manifest.txt
  )
  fact ext4_files "$(wc -l </tmp/ext4-manifest.txt)"
  fact ext4_manifest_sha256 "$(sha </tmp/ext4-manifest.txt)"
  umount /mnt/tsblk
  fact umount_rc $?
  fsck_out=$(fsck.ext4 -fn "$DNS" 2>&1)
  fact fsck_rc $?
  echo "$fsck_out"
  part ext4_write

  section "ext4: disconnect, reconnect, files intact"
  disconnect "$DATA_NQN"
  fact data_disconnect_rc $?
  connect "$DATA_NQN"
  fact data_reconnect_rc $?
  DNS=$(wait_ns_nsid "$DATA_NQN" 1) || echo "the namespace of $DATA_NQN never came back"
  if [[ -n ${DNS:-} ]]; then
    fsck_out=$(fsck.ext4 -fn "$DNS" 2>&1)
    fact fsck_after_reconnect_rc $?
    echo "$fsck_out"
    mount -t ext4 -o ro "$DNS" /mnt/tsblk
    fact remount_rc $?
    check_out=$(cd /mnt/tsblk && sha256sum -c --quiet /tmp/ext4-manifest.txt 2>&1)
    fact ext4_sha256_check_rc $?
    echo "$check_out"
    fact ext4_files_after "$(cd /mnt/tsblk && find . -type f | wc -l)"
    umount /mnt/tsblk
  fi
  disconnect "$DATA_NQN"
  fact data_disconnect2_rc $?
fi
part ext4_reconnect

section "data subsystem: header and data digests (-g -G)"
connect "$DATA_NQN" -g -G --nr-io-queues=2
fact digest_connect_rc $?
DNS=$(wait_ns_nsid "$DATA_NQN" 1) || echo "the namespace of $DATA_NQN never appeared (digests)"
if [[ -n ${DNS:-} ]]; then
  fio_verify digest_4k "$DNS" 4k 2M 48M randwrite
  fio_verify digest_128k "$DNS" 128k 4M 52M write
fi
# the kernel host fails the connection when the target does not grant a digest it asked for
# (nvme_tcp_init_connection: "header/data digest flag is cleared"), so a live connection here
# means both are on
fact digest_dmesg_errors "$(dmesg | grep -ciE 'digest (flag|error)|hdgst|ddgst')"
disconnect "$DATA_NQN"
fact digest_disconnect_rc $?
part digests

# ------------------------------------------------------------------------------------------
section "restricted subsystem: only $ALLOWED_HOSTNQN"
dmesg -C
out=$(connect "$RESTRICTED_NQN" --hostnqn="$OTHER_HOSTNQN" --hostid="$OTHER_HOSTID")
fact restricted_other_rc $?
echo "$out"
fact restricted_other_ns "$(nvme_ns_for_nqn "$RESTRICTED_NQN" || echo none)"
kmsg=$(dmesg)
echo "$kmsg"
fact restricted_other_kernel_says "$(grep -m1 -iE 'not allowed|invalid host' <<<"$kmsg" | sed 's/^\[[^]]*\] *//')"
raw_connect restricted_other "$RESTRICTED_NQN" "$OTHER_HOSTNQN" 0 5
out=$(connect "$RESTRICTED_NQN" --hostnqn="$ALLOWED_HOSTNQN" --hostid="$ALLOWED_HOSTID")
fact restricted_allowed_rc $?
echo "$out"
RNS=$(wait_ns_nsid "$RESTRICTED_NQN" 1) && fact restricted_allowed_ns "$RNS"
disconnect "$RESTRICTED_NQN"
fact restricted_disconnect_rc $?
part restricted

# ------------------------------------------------------------------------------------------
section "keep-alive: a raw host connects with KATO 1 s, then stays silent"
raw_connect kato "$COPY_NQN" "$RAW_KATO_HOSTNQN" 1000 30
section "the target's log so far"
tlog=$(bash "$TARGET" log)
echo "$tlog" | tail -n 40
# the transport logs why it closes each connection: "... closing: controller N of NQN (host
# HOSTNQN) deleted: keep-alive timer (1 s) expired"
fact target_log_keepalive "$(grep -m1 -F "(host $RAW_KATO_HOSTNQN) deleted: " <<<"$tlog")"
part keepalive

# ------------------------------------------------------------------------------------------
section "tsblk target: SIGTERM"
bash "$TARGET" stop
fact target_stop_rc $?
section "the target's whole log"
bash "$TARGET" log
part target_stop
echo "guest script done"
