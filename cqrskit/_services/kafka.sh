#!/usr/bin/env bash
# Local Apache Kafka for the tests and the demo: one node in KRaft mode
# (combined broker + controller, no ZooKeeper) on 127.0.0.1, run on the JVM
# from the jars on Maven Central.
#
#   kafka.sh start     start it (idempotent), wait until the admin API answers
#   kafka.sh stop      SIGTERM, then SIGKILL after 60 s (idempotent)
#   kafka.sh status    exit 0 when up, 3 when down
#   kafka.sh version   the pinned Kafka version
#
# Files:
#   ~/.cache/cqrskit/kafka-<version>/lib   broker classpath (copied from ~/.m2 by
#                                          mvn, see kafka/pom.xml)
#   .services/kafka/server.properties      generated on every start
#   .services/kafka/data                   log.dirs (KRaft metadata and topics)
#   .services/kafka/kafka.log              broker log (previous run: kafka.log.1)
#   .services/kafka.pid
#
# Broker settings worth knowing (see write_config):
#   auto.create.topics.enable=false  topics must be created explicitly (admin
#                                    API), as on most production clusters
#   num.partitions=3                 default for topics created without a count,
#                                    so ordering per key is actually exercised
#   replication factors 1, group.initial.rebalance.delay.ms=0, and single-
#   partition internal topics (__consumer_offsets, __transaction_state) so the
#   first consumer group or transaction does not create 50 partitions.
#
# Environment: CQRSKIT_KAFKA_PORT (default 9092), CQRSKIT_KAFKA_CONTROLLER_PORT
# (default port + 1), CQRSKIT_KAFKA_HEAP (default "-Xms256m -Xmx512m"),
# CQRSKIT_KAFKA_START_TIMEOUT (seconds, default 90), JAVA_HOME.
#
# After a crash or kill -9, start takes ~15 s instead of ~5 s: the controller
# waits out the dead broker's session (broker.session.timeout.ms, 9 s).
#
# Changing KAFKA_VERSION fetches the new jars on the next start; an upgrade
# keeps the data, a downgrade may need `rm -rf .services/kafka`.

KAFKA_VERSION=4.3.1

SERVICE_NAME=kafka
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

KAFKA_PORT="${CQRSKIT_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${CQRSKIT_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
ADDRESS="127.0.0.1:$KAFKA_PORT"
START_TIMEOUT="${CQRSKIT_KAFKA_START_TIMEOUT:-90}"
read -r -a HEAP_OPTS <<<"${CQRSKIT_KAFKA_HEAP:--Xms256m -Xmx512m}"

POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIB_DIR="$KAFKA_HOME/lib"
LIB_MARKER="$LIB_DIR/.complete"

STATE_DIR="$SERVICES_DIR/kafka"
DATA_DIR="$STATE_DIR/data"
CONFIG="$STATE_DIR/server.properties"
LOG4J_CONFIG="$STATE_DIR/log4j2.properties"
TOOLS_LOG4J_CONFIG="$STATE_DIR/tools-log4j2.properties"
ADMIN_CONFIG="$STATE_DIR/admin.properties"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
PORT_FILE="$STATE_DIR/port"
LOGFILE="$STATE_DIR/kafka.log"
PIDFILE="$SERVICES_DIR/kafka.pid"

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# Short-lived tool JVMs (storage format, health check): small heap, quick start.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$TOOLS_LOG4J_CONFIG")

up_message() { echo "kafka: up at $ADDRESS (Kafka $KAFKA_VERSION, KRaft)"; }

# Serialise start and stop (parallel test workers may all call start).
take_lock() {
    command -v flock >/dev/null || return 0
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 600 9 || die "another kafka.sh has held $STATE_DIR/.lock for 10 minutes"
}

# running_cmdline: the command line of the process in the pid file.
running_cmdline() {
    pid_alive "$PIDFILE" || return 1
    tr '\0' ' ' <"/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null
}

# ours_running: the pid file names a live process that is our broker (guards
# against a stale pid file whose pid now belongs to something else).
ours_running() {
    local cmdline
    cmdline="$(running_cmdline)" || return 1
    [[ "$cmdline" == *"kafka.Kafka $CONFIG"* ]]
}

# kafka_answers PORT: something on 127.0.0.1:PORT answers a Kafka ApiVersions
# request (v0, correlation id 42) with our correlation id. Pure bash, ~10 ms.
kafka_answers() {
    local reply
    # shellcheck disable=SC2016  # the inner script is expanded by the inner bash
    reply="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x04ping" >&3
        head -c 10 <&3 | od -An -tx1' _ "$1" 2>/dev/null)" || return 1
    local -a bytes
    read -r -a bytes <<<"$reply"
    [[ "${bytes[*]:4:4}" == "00 00 00 2a" ]]
}

# describe_port PORT: who listens there, when ss can tell.
describe_port() {
    local who=""
    if command -v ss >/dev/null; then
        who="$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n 1 || true)"
    fi
    echo "${who:-unknown process}"
}

check_java() {
    command -v "$JAVA" >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17 or newer; set JAVA_HOME or PATH)"
    local version major
    version="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
    major="${version%%.*}"
    [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] ||
        die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is version '${version:-unknown}'"
}

# Fetch the broker's runtime classpath once per version (and pom); later runs
# do not even start Maven. Maven's ~/.m2 keeps the downloads.
ensure_lib() {
    local want
    want="kafka_2.13 $KAFKA_VERSION pom $(sha256sum "$POM" | cut -c1-16)"
    if [[ -f "$LIB_MARKER" && "$(cat "$LIB_MARKER")" == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: it is needed once to fetch the Kafka jars from Maven Central"
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR"
    mkdir -p "$KAFKA_HOME"
    local tmp="$KAFKA_HOME/lib.tmp.$$" mvnlog="$KAFKA_HOME/mvn.log"
    rm -rf "$tmp"
    if ! mvn -B -Dstyle.color=never -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$mvnlog" 2>&1; then
        rm -rf "$tmp"
        die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies (log: $mvnlog)" "$mvnlog"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] ||
        die "mvn succeeded but $tmp has no kafka_2.13-$KAFKA_VERSION.jar" "$mvnlog"
    echo "$want" >"$tmp/.complete"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
}

write_config() {
    mkdir -p "$DATA_DIR"
    cat >"$CONFIG" <<EOF
# Generated by kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# Topics: created explicitly by the application (admin API), 3 partitions by default.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# Internal topics on a single node: replication factor 1, few partitions.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Tests: consumer groups rebalance at once.
group.initial.rebalance.delay.ms=0

# A 2-core machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
EOF

    cat >"$LOG4J_CONFIG" <<'EOF'
# Broker logging (generated by kafka.sh): stdout, which the script sends to kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF

    cat >"$TOOLS_LOG4J_CONFIG" <<'EOF'
# Command-line tools run by kafka.sh: warnings and errors on stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF

    cat >"$ADMIN_CONFIG" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=15000
EOF
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not
# starting with '-' (as org.apache.kafka.common.Uuid.randomUuid does).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

# Format the storage once (static quorum: node 1 is the only voter).
format_storage() {
    [[ -f "$DATA_DIR/meta.properties" ]] && return 0
    [[ -s "$CLUSTER_ID_FILE" ]] || new_cluster_id >"$CLUSTER_ID_FILE"
    local cluster_id formatlog="$STATE_DIR/format.log"
    cluster_id="$(cat "$CLUSTER_ID_FILE")"
    say "formatting $DATA_DIR (cluster id $cluster_id)"
    if ! "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
        --config "$CONFIG" --cluster-id "$cluster_id" --ignore-formatted >"$formatlog" 2>&1; then
        die "formatting the Kafka storage in $DATA_DIR failed" "$formatlog"
    fi
}

launch() {
    [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
    rm -f "$PIDFILE"
    echo "$KAFKA_PORT" >"$PORT_FILE"
    local -a jvm=("${HEAP_OPTS[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$LOG4J_CONFIG" "-Dkafka.logs.dir=$STATE_DIR")
    say "starting Kafka $KAFKA_VERSION on $ADDRESS (log: $LOGFILE)"
    # New session (setsid), immune to hangups (nohup); the inner shell writes
    # its own pid, which exec hands over to java. fd 9 (the lock) is closed.
    # shellcheck disable=SC2016  # $$ and $1 belong to the inner shell
    setsid bash -c 'echo $$ >"$1"; shift; exec nohup "$@"' _ "$PIDFILE" \
        "$JAVA" "${jvm[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$CONFIG" \
        </dev/null >>"$LOGFILE" 2>&1 9>&- &
    wait_until 10 "the broker's pid file" test -s "$PIDFILE" ||
        die "the broker did not start (no pid in $PIDFILE)" "$LOGFILE"
}

# admin_check: the admin API lists topics (the broker serves KRaft metadata).
admin_check() {
    timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIB_DIR/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$ADDRESS" --command-config "$ADMIN_CONFIG" --list \
        >"$STATE_DIR/healthcheck.log" 2>&1
}

# fail MESSAGE: stop the half-started broker, then die with the log tail.
fail() {
    if ours_running; then stop_pid "$PIDFILE" kafka >&2; fi
    die "$1" "$LOGFILE"
}

wait_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT))
    # 1. the broker answers Kafka requests on its port (cheap, polled)
    until kafka_answers "$KAFKA_PORT"; do
        ours_running || { rm -f "$PIDFILE"; die "the broker exited during start-up" "$LOGFILE"; }
        ((SECONDS < deadline)) || fail "the broker did not answer on $ADDRESS within ${START_TIMEOUT}s"
        sleep 0.5
    done
    # 2. the admin API works (one JVM; the admin client retries inside)
    until admin_check; do
        ours_running || { rm -f "$PIDFILE"; die "the broker exited during start-up" "$LOGFILE"; }
        ((SECONDS < deadline)) ||
            fail "the broker answers on $ADDRESS but the admin API (TopicCommand --list) failed for ${START_TIMEOUT}s: $(tail -n 1 "$STATE_DIR/healthcheck.log")"
        sleep 1
    done
}

cmd_start() {
    take_lock
    if ours_running; then
        local running_port
        running_port="$(cat "$PORT_FILE" 2>/dev/null || echo "?")"
        [[ "$running_port" == "$KAFKA_PORT" ]] ||
            die "our broker is running on 127.0.0.1:$running_port, not $KAFKA_PORT; run 'kafka.sh stop' first"
        [[ "$(running_cmdline)" == *"$LIB_DIR/"* ]] ||
            die "our broker is running another Kafka version (not $KAFKA_VERSION); run 'kafka.sh stop' first"
        if ! kafka_answers "$KAFKA_PORT"; then
            say "the broker (pid $(cat "$PIDFILE")) is running but not answering yet; waiting"
            wait_healthy
        fi
        up_message
        return 0
    fi
    if [[ -f "$PIDFILE" ]] && ! pid_alive "$PIDFILE"; then
        say "removing stale pid file $PIDFILE"
        rm -f "$PIDFILE"
    fi
    local port
    for port in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "127.0.0.1:$port is already in use by a process this script did not start ($(describe_port "$port")); stop it or set CQRSKIT_KAFKA_PORT"
        fi
    done
    check_java
    ensure_lib
    write_config
    format_storage
    launch
    wait_healthy
    up_message
}

cmd_stop() {
    take_lock
    if ! ours_running; then
        if [[ -f "$PIDFILE" ]] && ! pid_alive "$PIDFILE"; then
            say "removing stale pid file $PIDFILE"
            rm -f "$PIDFILE"
        fi
        say "kafka is not running"
        return 0
    fi
    stop_pid "$PIDFILE" kafka
}

cmd_status() {
    if ours_running; then
        local pid running_port
        pid="$(cat "$PIDFILE")"
        running_port="$(cat "$PORT_FILE" 2>/dev/null || echo "?")"
        if [[ "$running_port" != "$KAFKA_PORT" ]]; then
            echo "kafka: down at $ADDRESS (our broker, pid $pid, runs on 127.0.0.1:$running_port)"
            return 3
        fi
        if kafka_answers "$KAFKA_PORT"; then
            echo "kafka: up at $ADDRESS (pid $pid, Kafka $KAFKA_VERSION, KRaft)"
            return 0
        fi
        echo "kafka: down at $ADDRESS (pid $pid is running but does not answer: starting or stuck; log: $LOGFILE)"
        return 3
    fi
    if port_open "$KAFKA_PORT"; then
        echo "kafka: down ($ADDRESS is taken by a process this script did not start: $(describe_port "$KAFKA_PORT"))"
    else
        echo "kafka: down ($ADDRESS)"
    fi
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status)
        rc=0
        cmd_status || rc=$?
        exit "$rc"
        ;;
    version) echo "$KAFKA_VERSION" ;;
    *)
        echo "usage: $0 start|stop|status|version" >&2
        exit 2
        ;;
esac
