# Shared shell functions for the local service scripts. Source, do not run.
#
# These scripts ship inside the cqrskit package: `cqrskit services up|down|status`
# runs them for a project, and the repository's scripts/*.sh run them for it.
#
# Layout:
#   $SERVICES_DIR (CQRSKIT_SERVICES_DIR; default ./.services): data, logs, pid files
#   $CACHE_DIR    (default ~/.cache/cqrskit): downloads and unpacked servers,
#                 kept between runs and between clones
#   ~/.m2         Maven's own repository, where Maven Central artifacts land

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${CQRSKIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cqrskit}"
SERVICES_DIR="${CQRSKIT_SERVICES_DIR:-$PWD/.services}"
mkdir -p "$SERVICES_DIR" "$CACHE_DIR"
SERVICES_DIR="$(cd "$SERVICES_DIR" && pwd -P)"
# The project the services belong to: the folder holding its .services.
PROJECT_DIR="$(dirname "$SERVICES_DIR")"

say() { printf '[%s] %s\n' "${SERVICE_NAME:-services}" "$*"; }

# die MESSAGE [LOGFILE]: print the message and the tail of the log, exit 1.
die() {
    printf '[%s] ERROR: %s\n' "${SERVICE_NAME:-services}" "$1" >&2
    if [[ $# -ge 2 && -f "$2" ]]; then
        printf '[%s] last lines of %s:\n' "${SERVICE_NAME:-services}" "$2" >&2
        tail -n 40 "$2" >&2
    fi
    exit 1
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_until TIMEOUT_SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s
# until it succeeds; return 1 after the timeout.
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "gave up waiting for $what after ${timeout}s"
            return 1
        fi
        sleep 0.5
    done
}

# pid_alive PIDFILE: true when the pid file names a running process.
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME: SIGTERM, wait up to 60 s, then SIGKILL.
stop_pid() {
    local pidfile="$1" name="$2"
    if ! pid_alive "$pidfile"; then
        say "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 60 "$name to stop" bash -c "! kill -0 $pid"; then
        say "$name did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    say "$name stopped"
}
