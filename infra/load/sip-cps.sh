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

# --- the runs -------------------------------------------------------------------------------
# p99 of the INVITE→200 times (rtd 1) that sipp dumped with -trace_rtt.
p99() {
  python3 - "$1" <<'PY'
import glob, math, sys
values = []
for f in glob.glob(sys.argv[1] + "/*_rtt.csv"):
    for line in open(f):
        parts = line.strip().split(";")
        if len(parts) >= 3 and parts[2] == "1":
            try:
                values.append(float(parts[1]))
            except ValueError:
                pass
values.sort()
print(round(values[max(0, math.ceil(0.99 * len(values)) - 1)]) if values else "n/a")
PY
}

best_rate=0
best_p99="n/a"
for rate in $RATES; do
  dir="$WORK/rate-$rate"
  mkdir -p "$dir"
  calls=$((rate * DURATION))
  log "rate $rate calls/s: $calls calls"
  start=$(date +%s.%N)
  set +e
  (cd "$dir" && sipp -sf "$SCENARIO" -key dialed "$NUMBER" -t u1 \
      -i 127.0.0.1 -p "$(free_port)" -mp "$(free_port)" \
      -r "$rate" -rp 1000 -m "$calls" -l $((rate * 20 + 100)) \
      -recv_timeout 15000 -timeout $((DURATION * 3 + 60))s -timeout_error \
      -max_recv_loops 10000 -max_sched_loops 10000 \
      -trace_stat -fd 1 -trace_rtt -rtt_freq 1 -trace_err -nostdin \
      "127.0.0.1:$SIP_PORT" >sipp.out 2>sipp.err)
  code=$?
  set -e
  elapsed=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
  stat=$(ls "$dir"/*_.csv 2>/dev/null | head -n1 || true)
  read -r ok failed < <(python3 - "$stat" <<'PY'
import csv, sys
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
    head, last = rows[0], rows[-1]
    print(last[head.index("SuccessfulCall(C)")], last[head.index("FailedCall(C)")])
except Exception:
    print(0, -1)
PY
  )
  p=$(p99 "$dir")
  printf 'rate=%s calls=%s successful=%s failed=%s sipp_exit=%s p99_invite_to_200_ms=%s wall_s=%.1f\n' \
    "$rate" "$calls" "$ok" "$failed" "$code" "$p" "$elapsed"
  if [[ "$code" -ne 0 || "$failed" != 0 || "$ok" != "$calls" ]]; then
    log "failed calls at $rate calls/s: stopping"
    break
  fi
  # Calls last ~1.5 s (Say + hangup): the wall time is DURATION plus that. If it is much
  # longer, sipp (or the machine) could not generate the rate: stop there too.
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) * 1.5 + 5 else 1)" "$elapsed" "$DURATION"; then
    log "the $rate calls/s run took ${elapsed}s: sipp or the machine could not keep the rate; stopping (not counted)"
    break
  fi
  if ((MAX_P99 > 0)) && [[ "$p" != n/a ]] && ((p > MAX_P99)); then
    log "p99 ${p} ms at $rate calls/s is over ${MAX_P99} ms: stopping (not counted)"
    break
  fi
  best_rate=$rate
  best_p99=$p
  kill -0 "$SERVE_PID" 2>/dev/null || { log "dialtone serve died"; tail -50 "$WORK/serve.log" >&2; break; }
  sleep 3 # let the previous rate's calls finish
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: cpu=\"$cpu\" cores=$(nproc) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) kernel=$(uname -r)"
echo "max_cps=$best_rate p99_invite_to_200_ms=$best_p99"
