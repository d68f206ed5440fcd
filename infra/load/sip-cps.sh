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

log() { printf '==> %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "$1 is required ($2)" >&2; exit 1; }; }
need sipp "Debian package sip-tester"
need python3 "Debian package python3"
need curl "Debian package curl"

# --- build ------------------------------------------------------------------------------
if [[ -n "${DIALTONE_BIN:-}" ]]; then
  BIN="$DIALTONE_BIN"
else
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  if ((BUILD)); then
    log "building dialtone (release)"
    (cd "$ROOT" && cargo build --release -p dialtone >&2)
  fi
  BIN="$TARGET_DIR/release/dialtone"
fi
[[ -x "$BIN" ]] || { echo "no dialtone binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/sip-cps.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { # a port free for UDP and TCP on 127.0.0.1
  python3 - <<'PY'
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
PY
}

# --- the TwiML app ------------------------------------------------------------------------
APP_PORT=$(free_port)
cat >"$WORK/app.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say><Hangup/></Response>'

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the webhook client reuses connections
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK would add 40 ms to every webhook (and to every INVITE→200).
    disable_nagle_algorithm = True

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(TWIML)))
        self.end_headers()
        self.wfile.write(TWIML)

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
PY
python3 "$WORK/app.py" "$APP_PORT" &
PIDS+=($!)

# --- dialtone serve -----------------------------------------------------------------------
SIP_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$WORK/dialtone.toml" <<EOF
data_dir = "$WORK/data"
sip_addr = "127.0.0.1:$SIP_PORT"
http_addr = "127.0.0.1:$HTTP_PORT"
rtp_ports = "20000-39999"
public_ip = "127.0.0.1"
node_id = "load"
EOF
log "starting dialtone serve (SIP 127.0.0.1:$SIP_PORT, HTTP 127.0.0.1:$HTTP_PORT)"
RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --config "$WORK/dialtone.toml" >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
for _ in $(seq 1 300); do
  [[ -s "$WORK/serve.out" ]] && break
  kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.2
done
ACCOUNT=$(head -n1 "$WORK/serve.out")
read -r AC TOKEN < <(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a["account_sid"], a["auth_token"])' "$ACCOUNT")
for _ in $(seq 1 150); do
  curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break
  sleep 0.2
done
NUMBER="+15550001000"
curl -fsS -u "$AC:$TOKEN" \
  --data-urlencode "PhoneNumber=$NUMBER" \
  --data-urlencode "VoiceUrl=http://127.0.0.1:$APP_PORT/voice" \
  "http://127.0.0.1:$HTTP_PORT/2010-04-01/Accounts/$AC/IncomingPhoneNumbers.json" >/dev/null
sleep 1 # the number directory catches up from the log

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
