# Sourced by the load scripts: `ladder TARGET SCENARIO [ALIVE]` runs sipp's SCENARIO against
# TARGET (host:port) at each rate of $RATES for $DURATION seconds, printing one line per rate,
# and stops at the first rate with a failed call, one sipp could not generate, or one whose
# p99 INVITE→200 is over $MAX_P99 (when > 0). ALIVE, a shell command, is checked after every
# rate (the system under test still runs). Sets best_rate and best_p99 (the highest rate with
# zero failures and its p99). Expects WORK, RATES, DURATION, MAX_P99, NUMBER, log, free_port;
# SIPP_LOCAL_IP (default 127.0.0.1) is the address sipp sends from.

# p99 of the INVITE→200 times (rtd 1) that sipp dumped with -trace_rtt in DIR.
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

ladder() {
  local target=$1 scenario=$2 alive=${3:-true}
  local rate dir calls start code elapsed stat ok failed p
  best_rate=0
  best_p99="n/a"
  for rate in $RATES; do
    dir="$WORK/$(echo "$target" | tr ':.' '__')-rate-$rate"
    mkdir -p "$dir"
    calls=$((rate * DURATION))
    log "$target: rate $rate calls/s, $calls calls"
    start=$(date +%s.%N)
    set +e
    (cd "$dir" && sipp -sf "$scenario" -key dialed "$NUMBER" -t u1 \
        -i "${SIPP_LOCAL_IP:-127.0.0.1}" -p "$(free_port)" -mp "$(free_port)" \
        -r "$rate" -rp 1000 -m "$calls" -l $((rate * 20 + 100)) \
        -recv_timeout 15000 -timeout $((DURATION * 3 + 60))s -timeout_error \
        -max_recv_loops 10000 -max_sched_loops 10000 \
        -trace_stat -fd 1 -trace_rtt -rtt_freq 1 -trace_err -nostdin \
        "$target" >sipp.out 2>sipp.err)
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
    printf 'target=%s rate=%s calls=%s successful=%s failed=%s sipp_exit=%s p99_invite_to_200_ms=%s wall_s=%.1f\n' \
      "$target" "$rate" "$calls" "$ok" "$failed" "$code" "$p" "$elapsed"
    if [[ "$code" -ne 0 || "$failed" != 0 || "$ok" != "$calls" ]]; then
      log "failed calls at $rate calls/s: stopping"
      break
    fi
    # Calls last ~1.5 s: the wall time is DURATION plus that. If it is much longer, sipp (or
    # the machine) could not generate the rate: stop there too.
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
    eval "$alive" || break
    sleep 3 # let the previous rate's calls finish
  done
}
