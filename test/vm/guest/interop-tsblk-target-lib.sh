# shellcheck shell=bash
# Helpers of interop-tsblk-target.sh (source it after lib.sh): namespaces by NSID, hand-made
# Copy commands through `nvme io-passthru` (descriptor formats nvme-cli 2.3 will not send), and
# a raw NVMe/TCP host in bash (/dev/tcp, printf, od) that connects and then stays silent, to watch
# the target's keep-alive timer — the kernel host always sends keep-alives, so it cannot.
#
# Byte layouts (little-endian), from the NVMe/TCP and NVMe-oF specifications (offsets as in
# libnvme's types.h; ../shared/reference/facts.md):
#   ICReq 128 B: CH {type 00, flags, hlen 128, pdo 0, plen u32 128}, PFV u16, HPDA, DGST, MAXR2T u32
#   CapsuleCmd: CH {type 04, flags, hlen 72, pdo 72, plen u32 72 + data}, SQE 64 B, data
#   Connect SQE: opcode 7Fh, flags 40h (SGL), CID, FCTYPE 01h @4, SGL @24 (offset descriptor,
#     type 01h @39, length @32), RECFMT @40, QID @42, SQSIZE @44, CATTR @46, KATO (ms) @48
#   Connect data 1024 B: HOSTID[16] @0, CNTLID @16 (FFFFh: dynamic), SUBNQN @256, HOSTNQN @512
#   CapsuleResp 24 B: CH 8 B, CQE {DW0 (CNTLID for Connect), DW1, SQHD, SQID, CID, STATUS @14}
#   Copy descriptor format 0/2: 32 B {SNSID u32 @0 (format 2), SLBA u64 @8, NLB u16 @16
#     (0's based), SOPT u16 @22 (format 2)}; format 1/3: 40 B, same first 18 bytes

# --- hex building blocks (plain hex digits, no spaces) --------------------------------------
# (printf and od, not xxd: xxd is not among the packages scripts/install-peers.sh installs)
hex_to_bin() { printf '%b' "$(sed 's/../\\x&/g')"; }
bin_to_hex() { od -An -v -tx1 | tr -d ' \n'; }
hex_zeros() { [[ $1 -gt 0 ]] && printf '%0*d' $(($1 * 2)) 0; return 0; }
hex_u8() { printf '%02x' $(($1 & 255)); }
hex_le16() { printf '%02x%02x' $(($1 & 255)) $((($1 >> 8) & 255)); }
hex_le32() { printf '%02x%02x%02x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
hex_le64() { hex_le32 $(($1 & 0xffffffff)); hex_le32 $((($1 >> 32) & 0xffffffff)); }
# hex_str TEXT LEN: TEXT's bytes, NUL-padded to LEN bytes
hex_str() {
  local h
  h=$(printf '%s' "$1" | bin_to_hex)
  printf '%s' "$h"
  hex_zeros $(($2 - ${#h} / 2))
}

# --- namespaces ----------------------------------------------------------------------------

# ns_for_nqn_nsid NQN NSID: the block device of namespace NSID of subsystem NQN
ns_for_nqn_nsid() {
  local s ns
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn" 2>/dev/null) == "$1" ]] || continue
    for ns in "$s"/nvme*n*; do
      [[ -e $ns/nsid && $(cat "$ns/nsid") == "$2" ]] && { echo "/dev/${ns##*/}"; return 0; }
    done
  done
  return 1
}

# wait_ns_nsid NQN NSID [TENTHS]
wait_ns_nsid() {
  local n=${3:-100} ns
  until ns=$(ns_for_nqn_nsid "$1" "$2") && [[ -b $ns ]]; do
    n=$((n - 1))
    [[ $n -gt 0 ]] || return 1
    sleep 0.1
  done
  echo "$ns"
}

# --- Copy through io-passthru --------------------------------------------------------------

# copy_desc FORMAT SLBA NLB [SNSID [SOPT]]: one source range descriptor (NLB 1-based)
copy_desc() {
  local fmt=$1 slba=$2 nlb=$3 snsid=${4:-0} sopt=${5:-0}
  case $fmt in
    0 | 1) hex_zeros 8 ;;
    *) hex_le32 "$snsid"; hex_zeros 4 ;;
  esac
  hex_le64 "$slba"
  hex_le16 $((nlb - 1))
  case $fmt in
    0) hex_zeros 14 ;;
    1) hex_zeros 22 ;;
    2) hex_zeros 4; hex_le16 "$sopt"; hex_zeros 8 ;;
    3) hex_zeros 4; hex_le16 "$sopt"; hex_zeros 16 ;;
  esac
}

# status_of OUTPUT RC: nvme-cli's status in hex (0x0 on success), or "error"
status_of() {
  if [[ $2 -eq 0 ]]; then echo 0x0
  elif [[ $1 =~ \((0x[0-9a-fA-F]+)\) ]]; then echo "${BASH_REMATCH[1]}"
  else echo error; fi
}

# passthru_copy NAME DEV NSID SDLBA FORMAT NR DESCRIPTORS_HEX: a Copy (opcode 19h) with the
# given descriptor bytes; prints `fact: pt_NAME=STATUS` and nvme-cli's words
passthru_copy() {
  local name=$1 dev=$2 nsid=$3 sdlba=$4 fmt=$5 nr=$6 hex=$7 f rc=0 out
  f=$(mktemp)
  hex_to_bin <<<"$hex" >"$f"
  out=$(nvme io-passthru "$dev" --opcode=0x19 --namespace-id="$nsid" --cdw10=$((sdlba & 0xffffffff)) \
    --cdw11=$((sdlba >> 32)) --cdw12=$(((nr - 1) | (fmt << 8))) --data-len=$((${#hex} / 2)) \
    --input-file="$f" --write 2>&1) || rc=$?
  rm -f "$f"
  echo "pt $name: format $fmt, $nr range(s), $((${#hex} / 2)) bytes → rc $rc: ${out//$'\n'/ | }"
  fact "pt_$name" "$(status_of "$out" "$rc")"
}

# --- a raw NVMe/TCP host -------------------------------------------------------------------
# Commands go in capsules with their data in-capsule (SGL offset descriptor, type 01h); commands
# without data carry Linux's null SGL (type 5Ah, length 0). Only commands whose answer is a
# CapsuleResp are sent (no reads: no C2HData to parse).

RAW_HOSTID=$(head -c 16 /dev/urandom | bin_to_hex)

# raw_sqe OPCODE CID NSID DATA_LEN CDW10 CDW11 CDW12 [CDW13]: a 64-byte SQE. Fabrics commands
# put FCTYPE in byte 4 (the NSID field's first byte) and their fields in CDW10..
raw_sqe() {
  hex_u8 "$1"
  printf '40' # PSDT: SGL
  hex_le16 "$2"
  hex_le32 "$3"
  hex_zeros 16 # CDW2-3, MPTR
  hex_zeros 8
  hex_le32 "$4"
  hex_zeros 3
  if [[ $4 -gt 0 ]]; then printf '01'; else printf '5a'; fi
  hex_le32 "$5"
  hex_le32 "$6"
  hex_le32 "$7"
  hex_le32 "${8:-0}"
  hex_zeros 8
}

# raw_open FD: a TCP connection on file descriptor FD (3..9) and the ICReq/ICResp exchange;
# sets RAW_ICRESP to the answer's PDU type (01 = ICResp). Not in $(...): the descriptor must
# stay open in this shell.
raw_open() {
  RAW_ICRESP=no-connection
  eval "exec $1<>/dev/tcp/127.0.0.1/4420" || return 1
  # ICReq: CH {type 00, flags 0, hlen 128, pdo 0, plen 128}, PFV 0, HPDA 0, DGST 0, MAXR2T 0
  hex_to_bin <<<"0000800080000000$(hex_le16 0)0000$(hex_le32 0)$(hex_zeros 112)" >&"$1"
  local r
  r=$(head -c 128 <&"$1" | bin_to_hex)
  RAW_ICRESP=${r:0:2}
  [[ $RAW_ICRESP == 01 ]]
}

# raw_cmd FD SQE [DATA]: sends a command capsule, reads its CapsuleResp; prints
# "STATUS DW0" (STATUS = the CQE status field >> 1, as nvme-cli prints it), or "no-response"
raw_cmd() {
  local fd=$1 sqe=$2 data=${3:-} pdo=0 r st
  [[ -n $data ]] && pdo=72
  hex_to_bin <<<"040048$(hex_u8 $pdo)$(hex_le32 $((72 + ${#data} / 2)))$sqe$data" >&"$fd"
  r=$(head -c 24 <&"$fd" | bin_to_hex)
  if [[ ${#r} -lt 48 || ${r:0:2} != 05 ]]; then echo no-response; return 1; fi
  st=$((0x${r:46:2}${r:44:2}))
  printf '0x%x %d\n' $((st >> 1)) $((0x${r:22:2}${r:20:2}${r:18:2}${r:16:2}))
}

# raw_connect_data SUBNQN HOSTNQN CNTLID: Connect's 1024 data bytes
raw_connect_data() {
  printf '%s' "$RAW_HOSTID"
  hex_le16 "$3"
  hex_zeros 238
  hex_str "$1" 256
  hex_str "$2" 256
  hex_zeros 256
}

# raw_connect NAME SUBNQN HOSTNQN KATO_MS [WAIT_S]: ICReq, then an admin-queue Connect with
# KATO; then nothing at all (no Property Set, no Keep Alive) until the target closes the
# connection or WAIT_S (default 30) pass. Facts: raw_NAME_icresp (PDU type, 01 = ICResp),
# raw_NAME_status (CQE status >> 1, hex), raw_NAME_cntlid, raw_NAME_closed (yes/no),
# raw_NAME_closed_after_s (seconds from the Connect response to the close).
raw_connect() {
  local name=$1 subnqn=$2 hostnqn=$3 kato=$4 wait=${5:-30} resp t0 t1 rc=0
  raw_open 3
  fact "raw_${name}_icresp" "$RAW_ICRESP"
  [[ $RAW_ICRESP == no-connection ]] && return 1
  # Connect: FCTYPE 01h, RECFMT 0, QID 0, SQSIZE 31, CATTR 0, KATO
  resp=$(raw_cmd 3 "$(raw_sqe 0x7f 1 1 1024 0 31 "$kato")" "$(raw_connect_data "$subnqn" "$hostnqn" 0xffff)")
  t0=$(cut -d' ' -f1 /proc/uptime)
  fact "raw_${name}_status" "${resp%% *}"
  fact "raw_${name}_cntlid" "$(((${resp#* } + 0) & 0xffff))"
  if [[ $resp == no-response ]]; then exec 3<&-; return 1; fi
  timeout "$wait" cat <&3 >/dev/null || rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  exec 3<&-
  fact "raw_${name}_closed" "$([[ $rc -eq 0 ]] && echo yes || echo no)"
  fact "raw_${name}_closed_after_s" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
}

# raw_copy_session SUBNQN HOSTNQN CDFE COPY...: a whole raw host: admin queue (Connect, KATO
# 0; Property Set CC.EN with IOSQES 6 / IOCQES 4; Set Features Host Behavior Support with
# CDFE; Set Features Number of Queues: 1), one I/O queue (Connect QID 1), then each COPY =
# NAME:NSID:SDLBA:FORMAT:NR:DESCRIPTORS_HEX as one Copy command. The Linux host cannot do this:
# its passthrough ioctl refuses Set Features Host Behavior Support (EACCES, even for root).
# Facts: rawhost_connect, rawhost_enable, rawhost_hbs, rawhost_nq, rawhost_io_connect
# (statuses), then pt_NAME per copy.
raw_copy_session() {
  local subnqn=$1 hostnqn=$2 cdfe=$3 resp cntlid spec name nsid sdlba fmt nr desc
  shift 3
  raw_open 3 || { fact rawhost_connect "icresp-$RAW_ICRESP"; exec 3<&-; return 1; }
  resp=$(raw_cmd 3 "$(raw_sqe 0x7f 1 1 1024 0 31 0)" "$(raw_connect_data "$subnqn" "$hostnqn" 0xffff)")
  fact rawhost_connect "${resp%% *}"
  cntlid=$(((${resp#* } + 0) & 0xffff))
  # Property Set (FCTYPE 00h): ATTRIB 0 (4 bytes), OFST 14h (CC), VALUE EN | IOSQES 6 | IOCQES 4
  resp=$(raw_cmd 3 "$(raw_sqe 0x7f 2 0 0 0 0x14 $((1 | 6 << 16 | 4 << 20)) 0)")
  fact rawhost_enable "${resp%% *}"
  # Set Features 16h, 512 bytes: CDFE at bytes 4-5
  resp=$(raw_cmd 3 "$(raw_sqe 0x09 3 0 512 0x16 0 0)" "00000000$(hex_le16 "$cdfe")$(hex_zeros 506)")
  fact rawhost_hbs "${resp%% *}"
  resp=$(raw_cmd 3 "$(raw_sqe 0x09 4 0 0 0x07 0 0)")
  fact rawhost_nq "${resp%% *}"
  raw_open 4 || { fact rawhost_io_connect "icresp-$RAW_ICRESP"; exec 4<&- 3<&-; return 1; }
  resp=$(raw_cmd 4 "$(raw_sqe 0x7f 1 1 1024 $((1 << 16)) 31 0)" "$(raw_connect_data "$subnqn" "$hostnqn" "$cntlid")")
  fact rawhost_io_connect "${resp%% *}"
  local cid=10
  for spec in "$@"; do
    IFS=: read -r name nsid sdlba fmt nr desc <<<"$spec"
    cid=$((cid + 1))
    resp=$(raw_cmd 4 "$(raw_sqe 0x19 $cid "$nsid" $((${#desc} / 2)) $((sdlba & 0xffffffff)) $((sdlba >> 32)) $(((nr - 1) | fmt << 8)))" "$desc")
    echo "raw host copy $name: format $fmt, $nr range(s) → ${resp}"
    fact "pt_$name" "${resp%% *}"
  done
  exec 4<&- 3<&-
}
