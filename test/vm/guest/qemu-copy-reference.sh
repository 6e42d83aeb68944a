#!/bin/bash
# The Copy reference: writes a known pattern on an NVMe namespace, runs `nvme copy` for each
# COPY given, and prints the sha256 of every destination region afterwards. Run it on QEMU's
# emulated controller (the reference) and, unchanged, on the tsblk target: for the same namespace
# size and block size, a correct Copy gives the same `sha256=` on every `ref: copy` line.
#
# usage: qemu-copy-reference.sh [options] DEVICE COPY...
#   DEVICE   the namespace block device, e.g. /dev/nvme0n1
#   COPY     DST=SLBA+NLB[,SLBA+NLB...]: copy the source ranges, concatenated in order, to
#            DST. LBAs are logical blocks, NLB is a count (1-based; nvme-cli's --blocks is
#            0's based, this script converts). A negative LBA counts from the end (-1 = last).
#   --pattern-blocks N   blocks 0..N-1 hold the pattern (default 1024)
#   --area-blocks N      blocks 0..N-1 are initialised: pattern, then zeros (default 8192)
#   --tail-blocks N      the last N blocks hold the pattern too (default 8)
#
# Block i of the pattern is the text "LBA <i as %08d> " repeated to the block size
# (test/vm/copy-reference.ts generates the same, to predict every sha256). Copies run in the
# order given, so a later copy sees what earlier ones wrote; zero-filled destinations inside
# the area make each result independent of what the namespace held before.
#
# Output, one line per fact (test/vm/copy-reference.ts parses it):
#   ref: device=DEV lbs=N nsze=N pattern_blocks=N area_blocks=N tail_blocks=N
#   ref: id oncs=0x.. ocfs=0x.. mssrl=N mcl=N msrc=N
#   ref: init area_sha256=H tail_sha256=H
#   ref: copy K dst=LBA ranges=SLBA+NLB,... blocks=N rc=N status=0x.. verdict=V sha256=H expected=H before=H
#   ref: copy K says: <nvme-cli's message>
#   ref: final area_sha256=H tail_sha256=H
#   ref: done copies=N
# verdict: copied (destination = the sources as they were before the copy), unchanged, or
# partial (anything else). status: nvme-cli's status in hex (0x0 = success), or "error" when
# nvme-cli failed without one. Exit status 0 once every copy ran (whatever their statuses).
set -u
source "$(dirname "$(readlink -f "$0")")/lib.sh"

PATTERN_BLOCKS=1024
AREA_BLOCKS=8192
TAIL_BLOCKS=8
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --pattern-blocks) PATTERN_BLOCKS=$2; shift 2 ;;
    --area-blocks) AREA_BLOCKS=$2; shift 2 ;;
    --tail-blocks) TAIL_BLOCKS=$2; shift 2 ;;
    *) echo "qemu-copy-reference: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ $# -lt 1 ]]; then
  echo "usage: qemu-copy-reference.sh [--pattern-blocks N] [--area-blocks N] [--tail-blocks N] DEVICE COPY..." >&2
  exit 2
fi
DEV=$1
shift
[[ -b $DEV ]] || { echo "qemu-copy-reference: $DEV is not a block device" >&2; exit 1; }
if [[ $PATTERN_BLOCKS -gt $AREA_BLOCKS ]]; then
  echo "qemu-copy-reference: --pattern-blocks must not exceed --area-blocks" >&2
  exit 2
fi

LBS=$(blockdev --getss "$DEV") || exit 1
NSZE=$(($(blockdev --getsize64 "$DEV") / LBS))
echo "ref: device=$DEV lbs=$LBS nsze=$NSZE pattern_blocks=$PATTERN_BLOCKS area_blocks=$AREA_BLOCKS tail_blocks=$TAIL_BLOCKS"
if [[ $NSZE -lt $((AREA_BLOCKS + TAIL_BLOCKS)) ]]; then
  echo "qemu-copy-reference: $DEV has $NSZE blocks, fewer than area + tail" >&2
  exit 1
fi

# what the controller advertises (nvme-cli prints decimal or 0x.. values)
ctrl_out=$(nvme id-ctrl "$DEV" 2>&1)
ns_out=$(nvme id-ns "$DEV" 2>&1)
echo "ref: id oncs=$(nvme_field "$ctrl_out" oncs) ocfs=$(nvme_field "$ctrl_out" ocfs)" \
  "mssrl=$(nvme_field "$ns_out" mssrl) mcl=$(nvme_field "$ns_out" mcl) msrc=$(nvme_field "$ns_out" msrc)"

# initialise: zeros over the area, the pattern at its start and on the tail
TAIL=$((NSZE - TAIL_BLOCKS))
head -c $((AREA_BLOCKS * LBS)) /dev/zero | write_blocks "$DEV" 0 "$LBS" || exit 1
pattern 0 "$PATTERN_BLOCKS" "$LBS" | write_blocks "$DEV" 0 "$LBS" || exit 1
pattern "$TAIL" "$TAIL_BLOCKS" "$LBS" | write_blocks "$DEV" "$TAIL" "$LBS" || exit 1
area_sha() { read_blocks "$DEV" 0 "$AREA_BLOCKS" "$LBS" | sha; }
tail_sha() { read_blocks "$DEV" "$TAIL" "$TAIL_BLOCKS" "$LBS" | sha; }
echo "ref: init area_sha256=$(area_sha) tail_sha256=$(tail_sha)"

lba() { # resolve a negative LBA against the namespace size
  if [[ $1 == -* ]]; then echo $((NSZE + $1)); else echo $(($1)); fi
}

k=0
for spec in "$@"; do
  k=$((k + 1))
  if [[ ! $spec =~ ^-?[0-9]+=-?[0-9]+\+[0-9]+(,-?[0-9]+\+[0-9]+)*$ ]]; then
    echo "qemu-copy-reference: copy $k: bad spec '$spec' (want DST=SLBA+NLB[,SLBA+NLB...])" >&2
    exit 2
  fi
  dst=$(lba "${spec%%=*}")
  slbs="" nlbs="" ranges="" total=0 readable=1
  expected_file=$(mktemp)
  IFS=, read -r -a parts <<<"${spec#*=}"
  for r in "${parts[@]}"; do
    s=$(lba "${r%%+*}")
    n=${r##*+}
    slbs+=${slbs:+,}$s
    nlbs+=${nlbs:+,}$((n - 1))
    ranges+=${ranges:+,}$s+$n
    total=$((total + n))
    if [[ $n -lt 1 || $s -lt 0 || $((s + n)) -gt $NSZE ]]; then readable=0; else
      read_blocks "$DEV" "$s" "$n" "$LBS" >>"$expected_file"
    fi
  done
  before=$(read_blocks "$DEV" "$dst" "$total" "$LBS" 2>/dev/null | sha)
  if [[ $readable == 1 ]]; then expected=$(sha <"$expected_file"); else expected=n/a; fi
  rm -f "$expected_file"

  rc=0
  out=$(nvme copy "$DEV" --sdlba="$dst" --slbs="$slbs" --blocks="$nlbs" 2>&1) || rc=$?
  if [[ $rc -eq 0 ]]; then status=0x0
  elif [[ $out =~ \((0x[0-9a-fA-F]+)\) ]]; then status=${BASH_REMATCH[1]}
  else status=error; fi
  after=$(read_blocks "$DEV" "$dst" "$total" "$LBS" 2>/dev/null | sha)
  if [[ $after == "$expected" ]]; then verdict=copied
  elif [[ $after == "$before" ]]; then verdict=unchanged
  else verdict=partial; fi
  echo "ref: copy $k dst=$dst ranges=$ranges blocks=$total rc=$rc status=$status verdict=$verdict sha256=$after expected=$expected before=$before"
  echo "ref: copy $k says: ${out//$'\n'/ | }"
done
echo "ref: final area_sha256=$(area_sha) tail_sha256=$(tail_sha)"
echo "ref: done copies=$k"
