#!/usr/bin/env bash
# Stops the local cluster infra/cluster/up.sh started in DIR: Kamailio, the nodes (SIGTERM:
# they drain their calls), then PostgreSQL and the broker. Leaves DIR (logs, read models) in place.
set -uo pipefail

DIR="${1:?usage: infra/cluster/down.sh DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[[ -d "$DIR" ]] || { echo "down.sh: no cluster in $DIR" >&2; exit 0; }

stop_pid_file() { # FILE WHAT
  local file=$1 what=$2 pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    echo "down.sh: stopping $what (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$file"
}

stop_pid_file "$DIR/kamailio/pid" kamailio
for node in voice-1 voice-2 api-1; do
  stop_pid_file "$DIR/$node/pid" "$node" &
done
wait
if [[ -f "$DIR/postgres/data/postmaster.pid" ]]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  echo "down.sh: stopping PostgreSQL" >&2
  if (($(id -u) == 0)); then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/postgres/data" -m fast -w stop >&2
  else
    "$PG_BIN/pg_ctl" -D "$DIR/postgres/data" -m fast -w stop >&2
  fi
fi
if [[ -d "$DIR/broker" ]]; then
  DIALTONE_BROKER_DIR="$DIR/broker" "$ROOT/infra/kafka.sh" stop >&2
fi
echo "down.sh: cluster in $DIR stopped" >&2
