# shellcheck shell=bash
# Helpers for guest-side scripts (source it). The guest has no udev: load modules with
# modprobe and wait for /dev nodes yourself.
#
# Output conventions the TypeScript tests parse (test/vm/report.ts):
#   fact: KEY=VALUE     one fact per line (VALUE runs to the end of the line)
#   check ok: WHAT / check FAILED: WHAT
#   ==== SECTION ====   a heading; `$ cmd` echoes a command, `[exit N]` its status

section() { printf '\n==== %s ====\n' "$*"; }
fact() { printf 'fact: %s=%s\n' "$1" "$2"; }

# run CMD...: echo the command, run it, print its exit status; returns that status
run() {
  printf '$ %s\n' "$*"
  local rc=0
  "$@" || rc=$?
  printf '[exit %d]\n' "$rc"
  return $rc
}

FAILS=0
# check WHAT CMD...: runs CMD (quietly), prints whether it held, counts failures
check() {
  local what=$1
  shift
  if "$@"; then echo "check ok: $what"; else
    echo "check FAILED: $what"
    FAILS=$((FAILS + 1))
  fi
}

# wait_for PATH [TENTHS]: wait until PATH exists (default 10 s)
wait_for() {
  local path=$1 n=${2:-100}
  while [[ ! -e $path && $n -gt 0 ]]; do
    sleep 0.1
    n=$((n - 1))
  done
  [[ -e $path ]]
}

# port_listening PORT [ADDR]: something listens on ADDR:PORT (TCP)
port_listening() {
  local out
  out=$(ss -Hltn "sport = :$1" 2>/dev/null) || return 1
  [[ -n $out && ( -z ${2:-} || $out == *"$2:$1"* ) ]]
}

# wait_port PORT [TENTHS]: wait until something listens on PORT (default 30 s)
wait_port() {
  local n=${2:-300}
  until port_listening "$1"; do
    n=$((n - 1))
    [[ $n -gt 0 ]] || return 1
    sleep 0.1
  done
}

# --- NVMe ------------------------------------------------------------------------------

# nvme_ns_for_nqn NQN: the namespace block device of subsystem NQN (e.g. /dev/nvme1n1).
# With native multipath (Debian: on) the node is the subsystem's head nvme<S>n<N>.
nvme_ns_for_nqn() {
  local s c ns
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn" 2>/dev/null) == "$1" ]] || continue
    for ns in "$s"/nvme*n*; do
      [[ -e $ns ]] && { echo "/dev/${ns##*/}"; return 0; }
    done
  done
  for c in /sys/class/nvme/nvme*; do
    [[ $(cat "$c/subsysnqn" 2>/dev/null) == "$1" ]] || continue
    for ns in "$c"/nvme*n*; do
      [[ -e $ns && ${ns##*/} != *c*n* ]] && { echo "/dev/${ns##*/}"; return 0; }
    done
  done
  return 1
}

# nvme_ctrl_for_nqn NQN: the controller character device (e.g. /dev/nvme1)
nvme_ctrl_for_nqn() {
  local c
  for c in /sys/class/nvme/nvme*; do
    [[ $(cat "$c/subsysnqn" 2>/dev/null) == "$1" ]] && { echo "/dev/${c##*/}"; return 0; }
  done
  return 1
}

# wait_ns_for_nqn NQN [TENTHS]: wait for the namespace of NQN, print it
wait_ns_for_nqn() {
  local n=${2:-100} ns
  until ns=$(nvme_ns_for_nqn "$1") && [[ -b $ns ]]; do
    n=$((n - 1))
    [[ $n -gt 0 ]] || return 1
    sleep 0.1
  done
  echo "$ns"
}

# nvme_field OUTPUT FIELD: the value of "FIELD : value" in nvme id-ctrl/id-ns text output
nvme_field() {
  awk -v f="$2" '$1 == f && $2 == ":" { print $3; exit }' <<<"$1"
}

# nvmet_setup BDEV NQN [PORTID] [ADDR] [SVCID]: export BDEV as namespace 1 of subsystem NQN
# (any host allowed) on an NVMe/TCP port of the kernel target, through configfs
nvmet_setup() {
  local bdev=$1 nqn=$2 portid=${3:-1} addr=${4:-127.0.0.1} svcid=${5:-4420}
  local cfs=/sys/kernel/config/nvmet
  local s=$cfs/subsystems/$nqn p=$cfs/ports/$portid
  modprobe -a nvmet nvmet-tcp || return 1
  mkdir "$s" || return 1
  echo 1 >"$s/attr_allow_any_host"
  mkdir "$s/namespaces/1"
  echo -n "$bdev" >"$s/namespaces/1/device_path"
  echo 1 >"$s/namespaces/1/enable" || return 1
  mkdir "$p"
  echo tcp >"$p/addr_trtype"
  echo ipv4 >"$p/addr_adrfam"
  echo "$addr" >"$p/addr_traddr"
  echo "$svcid" >"$p/addr_trsvcid"
  ln -s "$s" "$p/subsystems/$nqn"
}

# nvmet_teardown NQN [PORTID]: undo nvmet_setup
nvmet_teardown() {
  local nqn=$1 portid=${2:-1} cfs=/sys/kernel/config/nvmet
  rm -f "$cfs/ports/$portid/subsystems/$nqn"
  rmdir "$cfs/ports/$portid" 2>/dev/null
  echo 0 >"$cfs/subsystems/$nqn/namespaces/1/enable" 2>/dev/null
  rmdir "$cfs/subsystems/$nqn/namespaces/1" 2>/dev/null
  rmdir "$cfs/subsystems/$nqn" 2>/dev/null
}

# --- data patterns ---------------------------------------------------------------------

# pattern FIRST COUNT BS: the reference content of blocks FIRST..FIRST+COUNT-1 on stdout.
# Block i is the text "LBA <i as %08d> " repeated and cut to BS bytes (test/vm/copy-reference.ts
# has the same generator).
pattern() {
  awk -v first="$1" -v count="$2" -v bs="$3" 'BEGIN {
    for (i = first; i < first + count; i++) {
      s = sprintf("LBA %08d ", i); b = s
      while (length(b) < bs) b = b b
      printf "%s", substr(b, 1, bs)
    }
  }'
}

# read_blocks DEV FIRST COUNT BS: blocks from DEV, bypassing the page cache (a Copy done by the
# controller does not invalidate cached pages)
read_blocks() {
  # large direct reads (byte offsets), not one I/O per block: each I/O is slow under TCG
  dd if="$1" bs=1M skip=$(($2 * $4)) count=$(($3 * $4)) iflag=direct,skip_bytes,count_bytes status=none
}

# write_blocks DEV FIRST BS: stdin to DEV at block FIRST, direct, in large writes
write_blocks() {
  dd of="$1" bs=1M seek=$(($2 * $3)) iflag=fullblock oflag=direct,seek_bytes status=none
}

# sha256 of stdin, hex only
sha() {
  local h
  h=$(sha256sum) || return 1
  echo "${h%% *}"
}

# nvmet_add_ns NQN NSID PATH: one more namespace in a subsystem nvmet_setup made; PATH is a
# block device or a regular file (nvmet's file backend)
nvmet_add_ns() {
  local ns=/sys/kernel/config/nvmet/subsystems/$1/namespaces/$2
  mkdir "$ns" || return 1
  echo -n "$3" >"$ns/device_path" || return 1
  echo 1 >"$ns/enable"
}

# nvme_ns_for_nqn_nsid NQN NSID: the kernel host's block device of namespace NSID of subsystem NQN
nvme_ns_for_nqn_nsid() {
  local s ns
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn" 2>/dev/null) == "$1" ]] || continue
    for ns in "$s"/nvme*n*; do
      [[ -e $ns/nsid && $(cat "$ns/nsid") == "$2" ]] && { echo "/dev/${ns##*/}"; return 0; }
    done
  done
  return 1
}
