#!/usr/bin/env bash
# Starts a local Dialtone cluster on loopback addresses, its state in DIR:
#
#   127.0.0.2:5060   Kamailio, the SIP load balancer (infra/kamailio/dialtone.cfg)
#   127.0.0.3        voice-1  (--roles edge,voice,media; SIP :5060, /healthz /metrics :8080)
#   127.0.0.4        voice-2  (the same)
#   127.0.0.5:8080   api-1    (--roles api,projector,callbacks: REST API, console, streams)
#   127.0.0.6:9092   the Kafka-compatible broker (Tansu, memory storage) holding the log
#   127.0.0.7:5432   PostgreSQL (initdb in DIR/postgres): the shared read models api-1
#                    writes (database `dialtone`, user `dialtone`, trust on loopback)
#
# Returns once every part is healthy and prints, as NAME=value lines:
#   SIP=127.0.0.2:5060  API=http://127.0.0.5:8080  PG=postgres://dialtone@127.0.0.7:5432/dialtone
#   KAFKA=127.0.0.6:9092  AC=AC…  TOKEN=…
#
#   infra/cluster/up.sh DIR      DIR must be new or empty (the broker keeps the log in
#                                memory: a cluster does not outlive down.sh)
#   infra/cluster/down.sh DIR    stops all of it
#
# Environment: DIALTONE_BIN (the binary; default target/release/dialtone, built if missing),
# CLUSTER_NET (the first three octets, default 127.0.0).
set -euo pipefail

DIR="${1:?usage: infra/cluster/up.sh DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NET="${CLUSTER_NET:-127.0.0}"
KAMAILIO_ADDR="$NET.2:5060"
KAFKA_ADDR="$NET.6:9092"
API_HOST="$NET.5"
PG_HOST="$NET.7"
PG_URL="postgres://dialtone@$PG_HOST:5432/dialtone"

say() { printf 'up.sh: %s\n' "$*" >&2; }
die() { printf 'up.sh: error: %s\n' "$*" >&2; exit 1; }
command -v kamailio >/dev/null || die "kamailio is required (apt install kamailio)"
command -v curl >/dev/null || die "curl is required (apt install curl)"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[[ -x "$PG_BIN/postgres" ]] || die "PostgreSQL is required (apt install postgresql)"

if [[ -d "$DIR" && -n "$(ls -A "$DIR" 2>/dev/null)" ]]; then
  die "$DIR is not empty: stop that cluster with infra/cluster/down.sh $DIR and remove it, or use another DIR"
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

if [[ -n "${DIALTONE_BIN:-}" ]]; then
  BIN="$DIALTONE_BIN"
else
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/dialtone"
  if [[ ! -x "$BIN" ]]; then
    say "building dialtone (release)"
    (cd "$ROOT" && cargo build --release -p dialtone >&2)
  fi
fi
[[ -x "$BIN" ]] || die "no dialtone binary at $BIN"

# Whatever fails from here stops what was started.
trap 'status=$?; if ((status != 0)); then say "start failed; stopping what started"; "$ROOT/infra/cluster/down.sh" "$DIR" >&2 || true; fi' EXIT

# --- the log ----------------------------------------------------------------------------
say "starting the broker at $KAFKA_ADDR"
DIALTONE_BROKER_DIR="$DIR/broker" DIALTONE_KAFKA_ADDR="$KAFKA_ADDR" "$ROOT/infra/kafka.sh" start >&2

# --- the shared read models ----------------------------------------------------------------
# PostgreSQL refuses to run as root: as root, its files and process belong to `postgres`.
as_pg() { if (($(id -u) == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$DIR/postgres"
if (($(id -u) == 0)); then
  chown postgres: "$DIR/postgres"
  as_pg test -x "$DIR/postgres" || die "the postgres user cannot reach $DIR (make its parents world-executable)"
fi
say "starting PostgreSQL at $PG_HOST:5432"
as_pg "$PG_BIN/initdb" -D "$DIR/postgres/data" -U dialtone --auth=trust -E UTF8 --locale=C >"$DIR/postgres/initdb.log" 2>&1 \
  || { tail -n 20 "$DIR/postgres/initdb.log" >&2; die "initdb failed"; }
as_pg "$PG_BIN/pg_ctl" -D "$DIR/postgres/data" -l "$DIR/postgres/postgres.log" -w -t 60 \
  -o "-c listen_addresses=$PG_HOST -p 5432 -c unix_socket_directories=''" start >&2 \
  || { tail -n 20 "$DIR/postgres/postgres.log" >&2; die "PostgreSQL did not start"; }
"$PG_BIN/psql" -q -h "$PG_HOST" -p 5432 -U dialtone -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE dialtone" >&2

# --- the nodes --------------------------------------------------------------------------
# One secret for the whole cluster: tokens and signatures verify on every node.
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$DIR/secret"
chmod 600 "$DIR/secret"
export DIALTONE_SECRET="$(cat "$DIR/secret")"

# write_config NAME HOST ROLES RTP_LOW [READ_MODELS]
write_config() {
  local name=$1 host=$2 roles=$3 rtp_low=$4 read_models=${5:-sqlite}
  mkdir -p "$DIR/$name"
  cat >"$DIR/$name/dialtone.toml" <<TOML
node_id = "$name"
roles = "$roles"
read_models = "$read_models"
data_dir = "$DIR/$name/data"
log = "kafka://$KAFKA_ADDR"
sip_addr = "$host:5060"
http_addr = "$host:8080"
public_ip = "$host"
public_url = "http://$API_HOST:8080"
rtp_ports = "$rtp_low-$((rtp_low + 999))"

[kafka]
topic_prefix = "cluster"
partitions = 4
TOML
}

# start_node NAME: runs `serve` in the background, its pid in DIR/NAME/pid.
start_node() {
  local name=$1
  setsid "$BIN" serve --config "$DIR/$name/dialtone.toml" \
    </dev/null >"$DIR/$name/stdout" 2>"$DIR/$name/serve.log" &
  echo $! >"$DIR/$name/pid"
}

wait_healthy() { # NAME HOST
  local name=$1 host=$2
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://$host:8080/healthz" 2>/dev/null; then return 0; fi
    kill -0 "$(cat "$DIR/$name/pid")" 2>/dev/null || { tail -n 20 "$DIR/$name/serve.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  tail -n 20 "$DIR/$name/serve.log" >&2
  die "$name is not healthy after 60 s"
}

write_config api-1 "$API_HOST" "api,projector,callbacks" 40000 "$PG_URL"
write_config voice-1 "$NET.3" "edge,voice,media" 41000
write_config voice-2 "$NET.4" "edge,voice,media" 42000

# The API node first: on the empty log it creates the cluster's account and prints it once.
say "starting api-1 at http://$API_HOST:8080"
start_node api-1
for _ in $(seq 1 600); do
  [[ -s "$DIR/api-1/stdout" ]] && break
  kill -0 "$(cat "$DIR/api-1/pid")" 2>/dev/null || { tail -n 20 "$DIR/api-1/serve.log" >&2; die "api-1 exited"; }
  sleep 0.1
done
[[ -s "$DIR/api-1/stdout" ]] || die "api-1 printed no account"
head -n 1 "$DIR/api-1/stdout" >"$DIR/account.json"
chmod 600 "$DIR/account.json"
wait_healthy api-1 "$API_HOST"

for n in 1 2; do
  say "starting voice-$n at $NET.$((n + 2)):5060"
  start_node "voice-$n"
done
wait_healthy voice-1 "$NET.3"
wait_healthy voice-2 "$NET.4"

# --- the SIP load balancer ----------------------------------------------------------------
mkdir -p "$DIR/kamailio"
cat >"$DIR/kamailio/dispatcher.list" <<LIST
1 sip:$NET.3:5060 0 0 duid=voice-1
1 sip:$NET.4:5060 0 0 duid=voice-2
LIST
say "starting kamailio at $KAMAILIO_ADDR"
setsid kamailio -DD -E -f "$ROOT/infra/kamailio/dialtone.cfg" \
  -l "udp:$KAMAILIO_ADDR" -l "tcp:$KAMAILIO_ADDR" \
  -A "DISPATCHER_LIST=\"$DIR/kamailio/dispatcher.list\"" \
  -P "$DIR/kamailio/kamailio.pid" -Y "$DIR/kamailio" -m 64 -M 8 \
  </dev/null >/dev/null 2>"$DIR/kamailio/kamailio.log" &
echo $! >"$DIR/kamailio/pid"

# Healthy: Kamailio answers OPTIONS, and has seen both voice nodes answer theirs.
python3 - "$KAMAILIO_ADDR" <<'PY' || { tail -n 20 "$DIR/kamailio/kamailio.log" >&2; die "kamailio does not answer"; }
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + 20
while time.time() < deadline:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0)); s.settimeout(0.3)
    me = "%s:%d" % s.getsockname()
    s.sendto((f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-up{time.time_ns()}\r\n"
              f"From: <sip:up@{me}>;tag=up\r\nTo: <sip:{host}:{port}>\r\nCall-ID: up-{time.time_ns()}\r\n"
              "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), (host, int(port)))
    try:
        if s.recv(4096).startswith(b"SIP/2.0 200"):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
sleep 2 # two probe rounds (ds_ping_interval 1 s): both voice nodes are in rotation

AC=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["account_sid"])' "$DIR/account.json")
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["auth_token"])' "$DIR/account.json")
{
  echo "SIP=$KAMAILIO_ADDR"
  echo "API=http://$API_HOST:8080"
  echo "PG=$PG_URL"
  echo "KAFKA=$KAFKA_ADDR"
  echo "AC=$AC"
  echo "TOKEN=$TOKEN"
} | tee "$DIR/cluster.env"
say "cluster up; stop it with infra/cluster/down.sh $DIR"
