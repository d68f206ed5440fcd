#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer's:
#   1. installs what the tests need (apt packages; idempotent),
#   2. starts a local Kafka-compatible broker (Tansu),
#   3. runs every test of the workspace (both log backends),
#   4. stops the broker, even when tests fail.
# Usage: ./infra/test.sh [extra args for cargo nextest / cargo test]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- 1. system packages ---------------------------------------------------------------
packages=(sip-tester espeak-ng kamailio postgresql sqlite3 build-essential pkg-config python3 python3-pip python3-venv chromium curl ca-certificates procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }

# --- Python packages of the tests, in a virtualenv (Debian's Python is externally managed) ---
venv="infra/.venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
if ! cmp -s infra/test-requirements.txt "$venv/requirements.installed"; then
  log "installing the tests' Python packages"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r infra/test-requirements.txt
  cp infra/test-requirements.txt "$venv/requirements.installed"
fi
export DIALTONE_PYTHON="$PWD/$venv/bin/python"

# --- 2. broker ----------------------------------------------------------------------------
log "starting the local Kafka-compatible broker"
./infra/kafka.sh start
trap 'log "stopping the broker"; ./infra/kafka.sh stop || true' EXIT
export DIALTONE_KAFKA_BROKERS="${DIALTONE_KAFKA_BROKERS:-127.0.0.1:9092}"

# --- 3. tests -----------------------------------------------------------------------------
export RUST_BACKTRACE=1
if cargo nextest --version >/dev/null 2>&1; then
  log "running the workspace tests (cargo nextest)"
  cargo nextest run --workspace --features dialtone-events/kafka --profile ci "$@"
else
  log "running the workspace tests (cargo test)"
  cargo test --workspace --features dialtone-events/kafka "$@"
fi
log "all tests passed"
