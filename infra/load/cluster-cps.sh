#!/usr/bin/env bash
# Calls per second through Kamailio: to one voice node, to two, and Kamailio's own
# forwarding rate (to a sipp callee that answers and hangs up like Dialtone) as the upper
# bound. Starts a local cluster with infra/cluster/up.sh in a temporary DIR (broker,
# Kamailio, two voice nodes on Kafka, an API node), a second Kamailio in front of voice-1
# only and a third in front of the sipp callee, then climbs the same rate ladder as
# sip-cps.sh (infra/load/ladder.sh) on each. Prints one line per rate, the machine, and:
#   one_node_cps=N two_nodes_cps=M ratio=M/N kamailio_cps=K
#
# On a machine with fewer cores than processes (2 here: broker, Kamailio, three nodes, sipp)
# the ratio measures the cluster's overhead, not its scale: two nodes share the same cores.
#
# Usage: infra/load/cluster-cps.sh [--rates "50 100 200 …"] [--duration SECONDS] [--max-p99-ms N]
# Environment: DIALTONE_BIN (skip the release build), KEEP_WORKDIR=1 (keep logs and traces).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UAC="$ROOT/infra/load/sip-cps-uac.xml"
UAS="$ROOT/infra/load/cluster-cps-uas.xml"
TWIML='<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say><Hangup/></Response>'
RATES="50 100 200 300 400 600 800 1000 1200 1500 2000 2500 3000"
DURATION=10
MAX_P99=0
while (($#)); do
  case "$1" in
    --rates) RATES="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --max-p99-ms) MAX_P99="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '==> %s\n' "$*" >&2; }
for tool in sipp kamailio python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/cluster-cps.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$ROOT/infra/cluster/down.sh" "$WORK/cluster" >/dev/null 2>&1 || true
  if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

source "$ROOT/infra/load/app.sh"
source "$ROOT/infra/load/ladder.sh"

log "starting the cluster"
RUST_LOG="${RUST_LOG:-warn}" "$ROOT/infra/cluster/up.sh" "$WORK/cluster" >"$WORK/cluster.env"
# shellcheck disable=SC1091
source "$WORK/cluster.env"
NUMBER="+15550001000"
curl -fsS -u "$AC:$TOKEN" \
  --data-urlencode "PhoneNumber=$NUMBER" \
  --data-urlencode "VoiceUrl=http://127.0.0.1:$APP_PORT/voice" \
  "$API/2010-04-01/Accounts/$AC/IncomingPhoneNumbers.json" >/dev/null
sleep 2 # the voice nodes learn the number from the log

# kamailio_in_front NAME LISTEN DEFINE DESTINATION…: another Kamailio with the cluster's
# config (DEFINE: an extra -A, such as NO_PROBES for a callee that cannot answer OPTIONS).
kamailio_in_front() {
  local name=$1 listen=$2 define=$3
  shift 3
  mkdir -p "$WORK/$name"
  for destination in "$@"; do echo "1 sip:$destination 0 0"; done >"$WORK/$name/dispatcher.list"
  kamailio -DD -E -f "$ROOT/infra/kamailio/dialtone.cfg" -l "udp:$listen" \
    -A "DISPATCHER_LIST=\"$WORK/$name/dispatcher.list\"" -A "$define" -P "$WORK/$name/pid" -Y "$WORK/$name" \
    -m 256 -M 16 </dev/null >/dev/null 2>"$WORK/$name/kamailio.log" &
  PIDS+=($!)
}
kamailio_in_front one-node 127.0.0.2:5070 WITH_PROBES 127.0.0.3:5060
# The sipp callee for Kamailio's own rate.
(cd "$WORK" && sipp -sf "$UAS" -i 127.0.0.7 -p 5060 -mp "$(free_port)" -nostdin -bg \
   -trace_err >/dev/null 2>&1) || true
sleep 0.5
UAS_PID=$(pgrep -f "sipp -sf $UAS" | head -n1 || true)
[[ -n "$UAS_PID" ]] && PIDS+=("$UAS_PID")
kamailio_in_front callee 127.0.0.2:5080 NO_PROBES 127.0.0.7:5060
sleep 3 # the probes of the new Kamailios

SIPP_LOCAL_IP=127.0.0.1
nodes_alive='for n in voice-1 voice-2; do curl -fs -o /dev/null "http://127.0.0.$(( ${n#voice-} + 2 )):8080/healthz" || { log "$n is unhealthy"; false; }; done'

ladder 127.0.0.2:5070 "$UAC" "$nodes_alive"
one=$best_rate
ladder "$SIP" "$UAC" "$nodes_alive"
two=$best_rate
ladder 127.0.0.2:5080 "$UAC"
kamailio=$best_rate

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: cpu=\"$cpu\" cores=$(nproc) mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) kernel=$(uname -r)"
ratio=$(python3 -c "import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); print(f'{b / a:.2f}' if a else 'n/a')" "$one" "$two")
echo "one_node_cps=$one two_nodes_cps=$two ratio=$ratio kamailio_cps=$kamailio"
