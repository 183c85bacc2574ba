#!/usr/bin/env bash
# promtool, to check and unit-test ops/prometheus/alerts.yml: prints its path.
#
#   scripts/promtool.sh
#
# One on PATH is used as it is. Otherwise it comes from Debian's prometheus
# package, downloaded (not installed: that would start a Prometheus server)
# and unpacked once into $CACHE_DIR/promtool.
SERVICE_NAME=promtool
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

if command -v promtool >/dev/null; then
    command -v promtool
    exit 0
fi

PROMTOOL_CACHE="$CACHE_DIR/promtool"
tool="$PROMTOOL_CACHE/promtool"
if [[ -x "$tool" ]]; then
    echo "$tool"
    exit 0
fi

command -v apt-get >/dev/null || die "no promtool on PATH and no apt-get to fetch Debian's prometheus package"
if [[ -z "$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]]; then
    [[ $(id -u) -eq 0 ]] || die "apt knows no prometheus package; run 'apt-get update' as root"
    apt-get update -qq >/dev/null || die "apt-get update failed"
fi
mkdir -p "$PROMTOOL_CACHE"
tmp="$(mktemp -d "$PROMTOOL_CACHE/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) ||
    die "could not download Debian's prometheus package (apt-get download prometheus)"
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool ||
    die "the prometheus package holds no usr/bin/promtool"
mv "$tmp/usr/bin/promtool" "$tool"
"$tool" --version >/dev/null 2>&1 || die "$tool does not run"
echo "$tool"
