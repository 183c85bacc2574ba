#!/usr/bin/env bash
# Run a real single-node Elasticsearch 8.x on 127.0.0.1:9200 (transport 9300),
# without security, for the tests and the demo.
#
#   elasticsearch.sh start     idempotent; waits for a yellow/green cluster
#   elasticsearch.sh stop      SIGTERM, then SIGKILL after 60 s; idempotent
#   elasticsearch.sh status    exit 0 when up, 3 when down
#   elasticsearch.sh version   the pinned Elasticsearch version
#
# The server is Maven Central's runnable zip
# org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip,
# run on the installed JDK (17+). That zip carries only the modules
# transport-netty4, x-pack-core, x-pack-security and apm: the core APIs work
# (mappings, search, aggregations, bulk, aliases, versioning, point in time),
# but there is no lang-painless (no scripts) and no reindex module (no
# _reindex, _update_by_query, _delete_by_query). Elastic does not publish the
# 8.x modules on Maven Central, so they cannot be added here.
#
# Elasticsearch refuses to run as root, so it runs as the system user
# $ES_USER (created when missing). Its runtime directory holds a hard-linked
# copy of the unpacked server, its config, data and logs, and is owned by
# that user:
#   $SERVICES_DIR/elasticsearch           when that user can reach it, or else
#   /var/lib/cqrskit-es/<hash of $SERVICES_DIR>, with
#   $SERVICES_DIR/elasticsearch a symlink to it (no permission of an existing
#   directory such as /root is changed).
# Downloads and the unpacked server are kept in $CACHE_DIR/elasticsearch.
#
# Environment: CQRSKIT_ES_HEAP (default 512m), CQRSKIT_ES_START_TIMEOUT
# (seconds, default 120), CQRSKIT_MAVEN_REPO (default Maven Central).

ES_VERSION="8.19.21"

SERVICE_NAME=elasticsearch
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

# Run as root (the usual case here): Elasticsearch runs as $ES_USER. Run as
# anyone else: it runs as that user.
if ((EUID == 0)); then ES_USER="cqrskit-es"; else ES_USER="$(id -un)"; fi
ES_HTTP_PORT=9200
ES_TRANSPORT_PORT=9300
ES_URL="http://127.0.0.1:$ES_HTTP_PORT"
ES_CLUSTER_NAME="cqrskit-dev"
ES_HEAP="${CQRSKIT_ES_HEAP:-512m}"
ES_START_TIMEOUT="${CQRSKIT_ES_START_TIMEOUT:-120}"
MAVEN_REPO="${CQRSKIT_MAVEN_REPO:-https://repo1.maven.org/maven2}"
ES_ARTIFACT_PATH="org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"

PIDFILE="$SERVICES_DIR/elasticsearch.pid"
LOCKFILE="$SERVICES_DIR/elasticsearch.lock"
LINK_DIR="$SERVICES_DIR/elasticsearch"
FALLBACK_BASE="/var/lib/cqrskit-es"
ES_CACHE="$CACHE_DIR/elasticsearch"

# --- helpers ------------------------------------------------------------------

# The runtime directory in use, canonical: $SERVICES_DIR/elasticsearch, or the
# target of that symlink when the fallback was chosen before.
run_dir() { readlink -m "$LINK_DIR"; }

server_log() { printf '%s/logs/%s.log\n' "$(run_dir)" "$ES_CLUSTER_NAME"; }

as_es() {
    if ((EUID == 0)); then
        setpriv --reuid="$ES_USER" --regid="$ES_USER" --init-groups -- "$@"
    else
        "$@"
    fi
}

# own [-R] PATH...: give PATH to $ES_USER (only root needs to, and can).
own() { ((EUID != 0)) || chown "$@"; }

# is_our_es PID: the process is an Elasticsearch server run from our runtime dir.
is_our_es() {
    local pid="$1" cmd
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *org.elasticsearch.bootstrap.Elasticsearch* &&
        "$cmd" == *"-Des.path.home=$(run_dir)/home-"* ]]
}

# our_pid: print the pid of our running server, or fail. The server's own pid
# file in the runtime dir backs up $PIDFILE; a stale $PIDFILE is removed.
our_pid() {
    local pid
    if [[ -f "$PIDFILE" ]]; then
        pid="$(cat "$PIDFILE" 2>/dev/null || true)"
        if is_our_es "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
        say "removing stale pid file (pid ${pid:-?} is not our Elasticsearch)" >&2
        rm -f "$PIDFILE"
    fi
    pid="$(cat "$(run_dir)/run/es.pid" 2>/dev/null || true)"
    if is_our_es "$pid"; then
        printf '%s\n' "$pid" >"$PIDFILE"
        printf '%s\n' "$pid"
        return 0
    fi
    return 1
}

# healthy [TIMEOUT]: the cluster reports yellow or green within TIMEOUT (default 1s).
healthy() {
    local body
    body="$(curl -sf --max-time 10 \
        "$ES_URL/_cluster/health?wait_for_status=yellow&wait_for_no_initializing_shards=true&timeout=${1:-1s}" 2>/dev/null)" || return 1
    [[ "$body" == *\"timed_out\":false* && "$body" =~ \"status\":\"(green|yellow)\" ]]
}

# server_version: the version the node reports. (GET / is the rest-root module,
# which this zip lacks: it answers 405, so ask the nodes API.)
server_version() {
    local body
    body="$(curl -sf --max-time 5 "$ES_URL/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null)" || return 1
    [[ "$body" =~ \"version\":\"([^\"]+)\" ]] && printf '%s\n' "${BASH_REMATCH[1]}"
}

print_up() { printf 'elasticsearch: up at %s (Elasticsearch %s)\n' "$ES_URL" "$(server_version || echo '?')"; }

# who_listens PORT: a description of the process listening on 127.0.0.1:PORT.
who_listens() {
    local line
    line="$(ss -ltnpH "sport = :$1" 2>/dev/null | head -n 1)" || true
    if [[ "$line" =~ pid=([0-9]+) ]]; then
        printf 'pid %s: %s' "${BASH_REMATCH[1]}" \
            "$(tr '\0' ' ' <"/proc/${BASH_REMATCH[1]}/cmdline" 2>/dev/null | cut -c1-200)"
    else
        printf 'unknown process'
    fi
}

with_lock() {
    exec 9>"$LOCKFILE"
    flock -w 300 9 || die "another elasticsearch.sh is still busy (lock $LOCKFILE)"
}

# --- preparation (cold path) --------------------------------------------------

ensure_user() {
    ((EUID == 0)) || return 0
    id -u "$ES_USER" >/dev/null 2>&1 && return 0
    say "creating system user $ES_USER"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "cqrskit local Elasticsearch" "$ES_USER" ||
        die "could not create user $ES_USER"
}

# java_home: sets JHOME to the JDK to run Elasticsearch with.
java_home() {
    local home="${ES_JAVA_HOME:-${JAVA_HOME:-}}" java
    if [[ -z "$home" ]]; then
        java="$(command -v java)" || die "no java on PATH; install a JDK 17+ (apt-get install openjdk-17-jdk-headless)"
        home="$(dirname "$(dirname "$(readlink -f "$java")")")"
    fi
    [[ -x "$home/bin/java" ]] || die "no $home/bin/java (set ES_JAVA_HOME or JAVA_HOME to a JDK 17+)"
    JHOME="$home"
}

fetch_zip() {
    local zip="$ES_CACHE/elasticsearch-$ES_VERSION.zip" m2 want got
    mkdir -p "$ES_CACHE"
    if [[ ! -f "$zip.sha1" ]]; then
        curl -fsSL --retry 3 --connect-timeout 20 -o "$zip.sha1.part" "$MAVEN_REPO/$ES_ARTIFACT_PATH.sha1" ||
            die "could not download $MAVEN_REPO/$ES_ARTIFACT_PATH.sha1"
        mv "$zip.sha1.part" "$zip.sha1"
    fi
    want="$(head -c 40 "$zip.sha1")"
    if [[ -f "$zip" ]]; then
        got="$(sha1sum "$zip" | cut -c1-40)"
        [[ "$got" == "$want" ]] && return 0
        say "cached $zip has sha1 $got, expected $want; downloading again"
        rm -f "$zip"
    fi
    m2="$HOME/.m2/repository/$ES_ARTIFACT_PATH"
    if [[ -f "$m2" && "$(sha1sum "$m2" | cut -c1-40)" == "$want" ]]; then
        say "using $m2"
        cp "$m2" "$zip"
        return 0
    fi
    say "downloading Elasticsearch $ES_VERSION from $MAVEN_REPO"
    curl -fSL --retry 3 --connect-timeout 20 --progress-bar -o "$zip.part" "$MAVEN_REPO/$ES_ARTIFACT_PATH" ||
        die "could not download $MAVEN_REPO/$ES_ARTIFACT_PATH"
    got="$(sha1sum "$zip.part" | cut -c1-40)"
    [[ "$got" == "$want" ]] || { rm -f "$zip.part"; die "sha1 mismatch for the downloaded zip: got $got, expected $want"; }
    mv "$zip.part" "$zip"
}

# unpack_server: unpack the server once per version into $ES_CACHE/elasticsearch-$ES_VERSION.
unpack_server() {
    local dir="$ES_CACHE/elasticsearch-$ES_VERSION" tmp
    if [[ ! -f "$dir/.cqrskit-unpacked-$ES_VERSION" ]]; then
        fetch_zip
        say "unpacking into $dir"
        tmp="$ES_CACHE/.unpack.$$"
        rm -rf "$tmp" "$dir"
        unzip -q "$ES_CACHE/elasticsearch-$ES_VERSION.zip" -d "$tmp" || die "could not unzip $ES_CACHE/elasticsearch-$ES_VERSION.zip"
        mv "$tmp/elasticsearch-$ES_VERSION" "$dir"
        rm -rf "$tmp"
        touch "$dir/.cqrskit-unpacked-$ES_VERSION"
    fi
}

# prepare_run_dir: make the runtime dir (see the header); sets RUN to its canonical path.
prepare_run_dir() {
    local dir key
    if [[ -L "$LINK_DIR" ]]; then
        dir="$(readlink -f "$LINK_DIR")"
        mkdir -p "$dir"
    else
        mkdir -p "$LINK_DIR"
        own "$ES_USER:$ES_USER" "$LINK_DIR"
        if as_es test -w "$LINK_DIR" -a -x "$LINK_DIR"; then
            dir="$LINK_DIR"
        elif [[ -n "$(ls -A "$LINK_DIR")" ]]; then
            die "$LINK_DIR exists but user $ES_USER cannot reach it (a parent directory is not traversable); remove it to let this script use $FALLBACK_BASE instead"
        else
            key="$(printf '%s' "$(readlink -f "$SERVICES_DIR")" | sha1sum | cut -c1-12)"
            dir="$FALLBACK_BASE/$key"
            say "user $ES_USER cannot traverse the path to $SERVICES_DIR; using $dir (linked from $LINK_DIR)"
            mkdir -p "$FALLBACK_BASE"
            chmod 755 "$FALLBACK_BASE"
            # No link means a new $SERVICES_DIR at the same path: start afresh.
            rm -rf "$dir"
            mkdir -p "$dir"
            rmdir "$LINK_DIR"
            ln -s "$dir" "$LINK_DIR"
        fi
    fi
    own "$ES_USER:$ES_USER" "$dir"
    as_es test -w "$dir" || die "user $ES_USER cannot write to $dir"
    RUN="$(run_dir)"
}

# install_home RUN_DIR: a hard-linked (else copied) read-only copy of the server.
install_home() {
    local run="$1" src home="$1/home-$ES_VERSION" old
    if [[ ! -f "$home/.cqrskit-ready" ]]; then
        unpack_server
        src="$ES_CACHE/elasticsearch-$ES_VERSION"
        rm -rf "$home" "$home.tmp"
        cp -al "$src" "$home.tmp" 2>/dev/null || cp -a "$src" "$home.tmp"
        own -R root:root "$home.tmp"
        chmod -R a+rX,go-w "$home.tmp"
        mv "$home.tmp" "$home"
        touch "$home/.cqrskit-ready"
    fi
    for old in "$run"/home-*; do
        [[ "$old" == "$home" || ! -d "$old" ]] || rm -rf "$old"
    done
}

write_config() {
    local run="$1" home="$1/home-$ES_VERSION" conf="$1/config"
    mkdir -p "$conf/jvm.options.d" "$run/data" "$run/logs" "$run/tmp" "$run/run"
    # The stock files (jvm.options, log4j2.properties, roles...), then ours.
    # The keystore Elasticsearch creates in $conf is kept.
    cp -f "$home/config/log4j2.properties" "$conf/"
    # The stock GC log goes to a relative path with 32 x 64 MB files: keep 4 x 16 MB in logs/.
    sed "s|^-Xlog:gc.*|-Xlog:gc*,gc+age=trace,safepoint:file=$run/logs/gc.log:utctime,level,pid,tags:filecount=4,filesize=16m|" \
        "$home/config/jvm.options" >"$conf/jvm.options"
    find "$home/config" -maxdepth 1 -type f ! -name elasticsearch.yml -exec cp -n {} "$conf/" \;
    {
        echo "# Written by elasticsearch.sh on each start; edits are lost."
        echo "cluster.name: $ES_CLUSTER_NAME"
        echo "node.name: cqrskit-es-1"
        echo "network.host: 127.0.0.1"
        echo "http.port: $ES_HTTP_PORT"
        echo "transport.port: $ES_TRANSPORT_PORT"
        echo "discovery.type: single-node"
        echo "path.data: $run/data"
        echo "path.logs: $run/logs"
        echo "# The disk may be nearly full on a developer's machine: never block writes for it."
        echo "cluster.routing.allocation.disk.threshold_enabled: false"
        echo "# Tests clean up with wildcards (DELETE /test-*)."
        echo "action.destructive_requires_name: false"
        if [[ -d "$home/modules/x-pack-security" ]]; then
            echo "xpack.security.enabled: false"
        fi
        if [[ -d "$home/modules/ingest-geoip" ]]; then
            echo "ingest.geoip.downloader.enabled: false"
        fi
        if [[ -d "$home/modules/x-pack-ml" ]]; then
            echo "xpack.ml.enabled: false"
        fi
    } >"$conf/elasticsearch.yml"
    {
        echo "# Written by elasticsearch.sh: a small heap, the machine has 2 cores."
        echo "-Xms$ES_HEAP"
        echo "-Xmx$ES_HEAP"
        echo "-XX:HeapDumpPath=$run/logs"
        echo "-XX:ErrorFile=$run/logs/hs_err_pid%p.log"
    } >"$conf/jvm.options.d/cqrskit.options"
    own -R "$ES_USER:$ES_USER" "$conf" "$run/data" "$run/logs" "$run/tmp" "$run/run"
}

check_max_map_count() {
    local n
    n="$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)"
    if ((n < 262144)); then
        say "note: vm.max_map_count is $n (< 262144); fine for a single node on loopback (bootstrap checks are not enforced), raise it with 'sysctl -w vm.max_map_count=262144' if Elasticsearch logs mmap failures"
    fi
}

# fail_start MESSAGE LOG_OFFSET: die with the launcher's output and what the
# server logged during this start (its log from byte LOG_OFFSET on).
fail_start() {
    local run log excerpt
    run="$(run_dir)"
    log="$(server_log)"
    excerpt="$run/logs/last-failed-start.log"
    if [[ -s "$run/logs/launcher.log" ]]; then
        say "launcher output ($run/logs/launcher.log):" >&2
        tail -n 25 "$run/logs/launcher.log" >&2
    fi
    if [[ -f "$log" ]]; then
        tail -c +$(($2 + 1)) "$log" >"$excerpt" 2>/dev/null || true
    fi
    if [[ -s "$excerpt" ]]; then
        die "$1 (full server log: $log)" "$excerpt"
    fi
    die "$1 (the server wrote nothing to $log)"
}

# --- commands -----------------------------------------------------------------

cmd_start() {
    local pid run jhome deadline log_offset t0=$SECONDS
    with_lock
    if pid="$(our_pid)"; then
        if healthy 1s || healthy "${ES_START_TIMEOUT}s"; then
            print_up
            return 0
        fi
        die "Elasticsearch (pid $pid) is running but $ES_URL/_cluster/health did not report yellow/green within ${ES_START_TIMEOUT}s" "$(server_log)"
    fi
    if port_open "$ES_HTTP_PORT"; then
        die "port $ES_HTTP_PORT is taken by something that is not ours ($(who_listens "$ES_HTTP_PORT")); stop it first"
    fi
    if port_open "$ES_TRANSPORT_PORT"; then
        die "transport port $ES_TRANSPORT_PORT is taken by something that is not ours ($(who_listens "$ES_TRANSPORT_PORT")); stop it first"
    fi

    [[ "$ES_HEAP" =~ ^[1-9][0-9]*[kmgKMG]$ ]] || die "CQRSKIT_ES_HEAP must look like 512m or 1g, not '$ES_HEAP'"
    [[ "$ES_START_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "CQRSKIT_ES_START_TIMEOUT must be a number of seconds, not '$ES_START_TIMEOUT'"
    ensure_user
    java_home
    jhome="$JHOME"
    as_es "$jhome/bin/java" -version >/dev/null 2>&1 ||
        die "user $ES_USER cannot run $jhome/bin/java (is it under a directory only root can enter?)"
    prepare_run_dir
    run="$RUN"
    install_home "$run"
    write_config "$run"
    check_max_map_count

    say "starting Elasticsearch $ES_VERSION as user $ES_USER (heap $ES_HEAP, runtime dir $run)"
    rm -f "$run/run/es.pid" "$run/logs/last-failed-start.log"
    log_offset="$(stat -c %s "$(server_log)" 2>/dev/null || echo 0)"
    # -d daemonizes once the node has started; the launcher's own output
    # (startup errors) goes to logs/launcher.log.
    if ! (cd "$run/logs" && ulimit -n "$(ulimit -Hn)" && as_es env -i \
        PATH="/usr/local/bin:/usr/bin:/bin" \
        HOME="$run" \
        LANG=C.UTF-8 \
        ES_JAVA_HOME="$jhome" \
        ES_PATH_CONF="$run/config" \
        ES_TMPDIR="$run/tmp" \
        timeout "$ES_START_TIMEOUT" "$run/home-$ES_VERSION/bin/elasticsearch" -d -p "$run/run/es.pid" \
        >"$run/logs/launcher.log" 2>&1 9>&-); then
        pid="$(cat "$run/run/es.pid" 2>/dev/null || true)"
        if is_our_es "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fail_start "Elasticsearch failed to start (the launcher exited non-zero or ran past ${ES_START_TIMEOUT}s)" "$log_offset"
    fi
    pid="$(cat "$run/run/es.pid" 2>/dev/null || true)"
    is_our_es "$pid" || fail_start "Elasticsearch exited right after starting" "$log_offset"
    printf '%s\n' "$pid" >"$PIDFILE"

    deadline=$((t0 + ES_START_TIMEOUT))
    until healthy 2s; do
        is_our_es "$pid" || { rm -f "$PIDFILE"; fail_start "Elasticsearch (pid $pid) died while starting" "$log_offset"; }
        if ((SECONDS >= deadline)); then
            fail_start "Elasticsearch (pid $pid) started but $ES_URL/_cluster/health did not report yellow/green within ${ES_START_TIMEOUT}s; it is left running, stop it with $0 stop" "$log_offset"
        fi
        sleep 0.5
    done
    say "ready in $((SECONDS - t0))s"
    print_up
}

cmd_stop() {
    with_lock
    if ! our_pid >/dev/null; then
        rm -f "$PIDFILE"
        say "elasticsearch is not running"
        return 0
    fi
    stop_pid "$PIDFILE" elasticsearch
    rm -f "$(run_dir)/run/es.pid"
}

cmd_status() {
    local pid
    if pid="$(our_pid 2>/dev/null)"; then
        if curl -sf --max-time 3 "$ES_URL/_cluster/health" >/dev/null 2>&1; then
            print_up
            return 0
        fi
        printf 'elasticsearch: down at %s (process %s is running but does not answer yet)\n' "$ES_URL" "$pid"
        return 3
    fi
    if port_open "$ES_HTTP_PORT"; then
        printf 'elasticsearch: down (port %s is taken by something not ours: %s)\n' "$ES_HTTP_PORT" "$(who_listens "$ES_HTTP_PORT")"
        return 3
    fi
    printf 'elasticsearch: down (%s)\n' "$ES_URL"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    version) printf '%s\n' "$ES_VERSION" ;;
    *)
        echo "usage: $0 start|stop|status|version" >&2
        exit 2
        ;;
esac
