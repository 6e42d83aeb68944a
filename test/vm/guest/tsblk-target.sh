#!/bin/bash
# Runs the tsblk NVMe/TCP target inside the guest, in the background.
#
#   tsblk-target.sh start [CONFIG.json]   start `tsblk serve [CONFIG]`, wait until it listens
#   tsblk-target.sh stop                  SIGTERM (graceful shutdown), wait, report its exit status
#   tsblk-target.sh status                running or not; the ports it listens on
#   tsblk-target.sh log                   its stdout/stderr so far
#
# How it is started: with dist/ built (npm run build), `node bin/tsblk.js serve`; else
# `node --import tsx src/cli/main.ts serve` (slower to start under TCG: tsx compiles first).
# TSBLK_TARGET_MODE=dist|src forces one; TSBLK_TARGET_CMD="node other.js serve" runs that command
# line instead (split on whitespace; to check this script, or to run another build).
#
# env:
#   TSBLK_TARGET_PORTS  TCP ports that must be listening before `start` returns (default 4420;
#                       "4420 8009" to wait for discovery as well)
#   TSBLK_TARGET_WAIT   seconds to wait for them (default 90: node under TCG is ~20x slower)
#   TSBLK_TARGET_STOP_WAIT  seconds `stop` waits after SIGTERM before SIGKILL (default 30)
#   TSBLK_TARGET_ARGS   extra arguments after `serve` (split on whitespace)
#   TSBLK_TARGET_ENV    extra environment, e.g. "TSBLK_NO_NATIVE=1" (split on whitespace)
# Files (guest tmpfs): /run/tsblk-target/{pid,status,log}
#
# Exit status: start: 0 once listening, 1 if it exited or did not listen in time (log printed);
# stop: the target's own exit status (0 = clean shutdown), 1 if it had to be killed.
set -u
PROJECT=$(cd "$(dirname "$(readlink -f "$0")")/../../.." && pwd)
source "$PROJECT/test/vm/guest/lib.sh"
STATE=/run/tsblk-target
PIDFILE=$STATE/pid
STATUSFILE=$STATE/status
LOG=$STATE/log
PORTS=${TSBLK_TARGET_PORTS:-4420}

running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
show_log() {
  echo "---- tsblk target log ($LOG) ----"
  cat "$LOG" 2>/dev/null
  echo "---- end of log ----"
}

start() {
  if running; then
    echo "tsblk-target: already running (pid $(cat "$PIDFILE"))" >&2
    return 1
  fi
  mkdir -p $STATE
  rm -f "$PIDFILE" "$STATUSFILE"
  local mode=${TSBLK_TARGET_MODE:-}
  [[ -n ${TSBLK_TARGET_CMD:-} ]] && mode=cmd
  if [[ -z $mode ]]; then
    if [[ -f $PROJECT/dist/cli/main.js ]]; then mode=dist; else mode=src; fi
  fi
  local cmd
  case $mode in
    cmd) read -r -a cmd <<<"$TSBLK_TARGET_CMD" ;;
    dist) cmd=(node "$PROJECT/bin/tsblk.js" serve) ;;
    src) cmd=(node --import tsx "$PROJECT/src/cli/main.ts" serve) ;;
    *) echo "tsblk-target: TSBLK_TARGET_MODE must be dist or src" >&2; return 2 ;;
  esac
  [[ $# -gt 0 ]] && cmd+=("$1")
  # shellcheck disable=SC2206 # split on whitespace on purpose
  [[ -n ${TSBLK_TARGET_ARGS:-} ]] && cmd+=(${TSBLK_TARGET_ARGS})
  local envs=()
  # shellcheck disable=SC2206
  [[ -n ${TSBLK_TARGET_ENV:-} ]] && envs=(${TSBLK_TARGET_ENV})
  local t0
  t0=$(uptime_s)
  echo "tsblk-target: starting: ${envs[*]:+${envs[*]} }${cmd[*]}"
  # The wrapper records the exit status; `env` execs node, so the recorded pid is node's and a
  # signal from `stop` reaches node itself. cwd = the project, so `--import tsx` resolves. The
  # wrapper keeps none of our stdio open: `$(tsblk-target.sh start)` must not wait for it.
  (
    cd "$PROJECT" || exit 1
    env "${envs[@]}" "${cmd[@]}" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait $!
    echo $? >"$STATUSFILE"
  ) >/dev/null 2>&1 </dev/null &
  disown
  local n=0 limit=$((${TSBLK_TARGET_WAIT:-90} * 10)) p all
  until [[ -s $PIDFILE ]]; do sleep 0.05; done
  while :; do
    all=1
    for p in $PORTS; do port_listening "$p" || all=0; done
    [[ $all == 1 ]] && break
    if [[ -e $STATUSFILE ]] || ! running; then
      echo "tsblk-target: exited with status $(cat "$STATUSFILE" 2>/dev/null || echo '?') before listening on $PORTS" >&2
      show_log >&2
      return 1
    fi
    n=$((n + 1))
    if [[ $n -ge $limit ]]; then
      echo "tsblk-target: not listening on $PORTS after ${TSBLK_TARGET_WAIT:-90} s" >&2
      show_log >&2
      return 1
    fi
    sleep 0.1
  done
  echo "tsblk-target: listening on $PORTS (pid $(cat "$PIDFILE"), $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN {printf "%.1f", b - a}') s)"
}

stop() {
  if ! running; then
    if [[ -e $STATUSFILE ]]; then
      echo "tsblk-target: had already exited with status $(cat "$STATUSFILE")"
      return "$(cat "$STATUSFILE")"
    fi
    echo "tsblk-target: not running" >&2
    return 1
  fi
  local pid n=0 limit=$((${TSBLK_TARGET_STOP_WAIT:-30} * 10))
  pid=$(cat "$PIDFILE")
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    n=$((n + 1))
    if [[ $n -ge $limit ]]; then
      echo "tsblk-target: still running ${TSBLK_TARGET_STOP_WAIT:-30} s after SIGTERM; killing it" >&2
      kill -KILL "$pid"
      show_log >&2
      return 1
    fi
    sleep 0.1
  done
  for _ in $(seq 20); do [[ -e $STATUSFILE ]] && break; sleep 0.05; done
  local status
  status=$(cat "$STATUSFILE" 2>/dev/null || echo 1)
  echo "tsblk-target: stopped, exit status $status"
  return "$status"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) stop ;;
  status)
    if running; then
      echo "tsblk-target: running (pid $(cat "$PIDFILE")); listening: $(ss -Hltn | awk '{print $4}' | tr '\n' ' ')"
    else
      echo "tsblk-target: not running; last exit status $(cat "$STATUSFILE" 2>/dev/null || echo none)"
      exit 1
    fi
    ;;
  log) show_log ;;
  *)
    echo "usage: tsblk-target.sh start [CONFIG.json] | stop | status | log" >&2
    exit 2
    ;;
esac
