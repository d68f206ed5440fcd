#!/usr/bin/env bash
# Memory per active call of `dialtone serve`.
#
# Starts the release build with a TwiML app that keeps every call up (<Say>Hi</Say>, then a
# long <Pause>, then <Hangup/>: RTP flows both ways the whole time), warms it up with a few
# calls, reads the process's RSS, then holds CALLS concurrent calls with sipp
# (infra/load/sip-cps-uac.xml, the caller streaming no audio) and reads the RSS again once
# `dialtone_calls_active` reports them all. Prints, as its last line:
#   calls=<n> rss_idle_mib=<n> rss_active_mib=<n> kib_per_call=<n>
# preceded by the machine (CPU model, cores).
#
# Usage: infra/load/call-memory.sh [--calls N] [--hold SECONDS] [--no-build]
# Environment: as infra/load/sip-cps.sh (CARGO_TARGET_DIR, DIALTONE_BIN, KEEP_WORKDIR=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCENARIO="$ROOT/infra/load/sip-cps-uac.xml"
CALLS=1000
HOLD=40
BUILD=1
while (($#)); do
  case "$1" in
    --calls) CALLS="$2"; shift 2 ;;
    --hold) HOLD="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
TWIML="<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Hi</Say><Pause length=\"$HOLD\"/><Hangup/></Response>"

source "$ROOT/infra/load/common.sh"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVE_PID/status"; }
active() {
  curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" |
    awk '/^dialtone_calls_active / {printf "%d", $2; found=1} END {if (!found) print 0}'
}
place() { # place N calls at RATE calls/s in the background; the sipp pid in SIPP_PID
  local calls=$1 rate=$2 dir=$3
  mkdir -p "$dir"
  (cd "$dir" && exec sipp -sf "$SCENARIO" -key dialed "$NUMBER" -t u1 \
      -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" \
      -r "$rate" -m "$calls" -l "$calls" -recv_timeout $(((HOLD + 30) * 1000)) \
      -timeout $((HOLD * 2 + 120))s -timeout_error -nostdin -trace_stat -fd 1 \
      "127.0.0.1:$SIP_PORT" >sipp.out 2>sipp.err) &
  SIPP_PID=$!
  PIDS+=("$SIPP_PID")
}
wait_active() { # until dialtone_calls_active reaches $1 (or 60 s pass)
  for _ in $(seq 1 600); do
    (($(active) >= $1)) && return 0
    sleep 0.1
  done
  return 1
}

log "warm-up: 20 calls"
place 20 20 "$WORK/warmup"
wait "$SIPP_PID" || { log "warm-up calls failed"; cat "$WORK/warmup/sipp.err" >&2; exit 1; }
sleep 2
idle=$(rss_kib)
log "idle RSS $((idle / 1024)) MiB; placing $CALLS calls"
place "$CALLS" 200 "$WORK/load"
if ! wait_active "$CALLS"; then
  log "only $(active) of $CALLS calls became active"
  exit 1
fi
sleep 2 # every call is in its <Pause>: buffers and tasks at their steady size
busy=$(rss_kib)
now=$(active)
log "$now calls active, RSS $((busy / 1024)) MiB; waiting for them to end"
wait "$SIPP_PID" || log "some calls failed (see $WORK/load/sipp.err)"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: cpu=\"$cpu\" cores=$(nproc) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) kernel=$(uname -r)"
echo "calls=$now rss_idle_mib=$((idle / 1024)) rss_active_mib=$((busy / 1024)) kib_per_call=$(((busy - idle) / now))"
