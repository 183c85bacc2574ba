#!/usr/bin/env bash
# Start, stop or inspect all three local services.
#
#   services.sh start|stop|status
#
# `start` runs the three start scripts in parallel (Elasticsearch and Kafka
# spend most of their start-up waiting on the JVM) and fails if any failed,
# after printing that service's own error and log tail.
SERVICE_NAME=services
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SERVICES=(postgres kafka elasticsearch)
HERE="$(dirname "$0")"

start_all() {
    local started=$SECONDS pids=() failed=()
    for s in "${SERVICES[@]}"; do
        bash "$HERE/$s.sh" start &
        pids+=($!)
    done
    for i in "${!SERVICES[@]}"; do
        wait "${pids[$i]}" || failed+=("${SERVICES[$i]}")
    done
    if ((${#failed[@]})); then
        die "failed to start: ${failed[*]} (see the messages above)"
    fi
    say "all services up in $((SECONDS - started))s"
}

status_all() {
    local rc=0
    for s in "${SERVICES[@]}"; do
        bash "$HERE/$s.sh" status || rc=3
    done
    return $rc
}

case "${1:-}" in
start) start_all ;;
stop) for s in "${SERVICES[@]}"; do bash "$HERE/$s.sh" stop; done ;;
status) status_all ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
