#!/usr/bin/env bash
# SIP calls-per-second benchmark of `dialtone serve`.
#
# Builds dialtone in release, starts a tiny threaded TwiML app (<Say>Hi</Say><Hangup/>),
# starts `dialtone serve` on a temporary data dir, provisions a number pointing at the app,
# then runs sipp (infra/load/sip-cps-uac.xml: INVITE → 200 → ACK → BYE from Dialtone → 200)
# at increasing rates, each for DURATION seconds. It stops at the first rate with a failed
# call (or that sipp itself cannot generate), and prints, as its last line:
#   max_cps=<highest rate with zero failed calls> p99_invite_to_200_ms=<p99 at that rate>
# preceded by one line per rate and the machine (CPU model, cores).
#
# Usage: infra/load/sip-cps.sh [--rates "50 100 200 …"] [--duration SECONDS] [--no-build]
#                              [--max-p99-ms N]   (also stop at the first rate whose p99 is over N)
# Environment: CARGO_TARGET_DIR (where the release build goes), DIALTONE_BIN (use this
# binary, skip the build), KEEP_WORKDIR=1 (keep logs and sipp traces).
#
# Everything runs on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCENARIO="$ROOT/infra/load/sip-cps-uac.xml"
TWIML='<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say><Hangup/></Response>'
RATES="50 100 200 400 600 800 1000 1200 1500 2000 2500 3000"
DURATION=10
BUILD=1
MAX_P99=0
while (($#)); do
  case "$1" in
    --rates) RATES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --max-p99-ms) MAX_P99="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

source "$ROOT/infra/load/common.sh"

source "$ROOT/infra/load/ladder.sh"
ladder "127.0.0.1:$SIP_PORT" "$SCENARIO" 'kill -0 "$SERVE_PID" 2>/dev/null || { log "dialtone serve died"; tail -50 "$WORK/serve.log" >&2; false; }'

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: cpu=\"$cpu\" cores=$(nproc) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) kernel=$(uname -r)"
echo "max_cps=$best_rate p99_invite_to_200_ms=$best_p99"
