# Shared by the load scripts (sourced, not run): builds or finds the release binary, starts a
# threaded TwiML app that answers every webhook with "$TWIML", starts `dialtone serve` on a
# temporary data dir ($WORK) and provisions $NUMBER pointing at the app. Every process
# started here is stopped on exit. Expects ROOT, BUILD and TWIML to be set; sets BIN, WORK,
# APP_PORT, SIP_PORT, HTTP_PORT, SERVE_PID, AC, TOKEN, NUMBER and the helpers log, free_port.

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

source "$ROOT/infra/load/app.sh"

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

