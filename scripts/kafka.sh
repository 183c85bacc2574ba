#!/usr/bin/env bash
# The local services' scripts ship with the package (cqrskit/_services, run by
# `cqrskit services`); this runs kafka.sh for this repository, data in .services/.
here="$(cd "$(dirname "$0")/.." && pwd)"
export CQRSKIT_SERVICES_DIR="${CQRSKIT_SERVICES_DIR:-$here/.services}"
exec bash "$here/cqrskit/_services/kafka.sh" "$@"
