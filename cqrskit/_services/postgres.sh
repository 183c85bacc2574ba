#!/usr/bin/env bash
# PostgreSQL for development and tests: Debian's server binaries, our own
# cluster (initdb) under .services/, run as the `postgres` system user.
#
#   postgres.sh start|stop|status|version
#
# We do not use Debian's default cluster: its configuration belongs to the
# machine, ours to the project (port, socket dir, auth, a database and role
# for cqrskit), and a throwaway data dir is what tests want.
SERVICE_NAME=postgres
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

PG_PORT="${CQRSKIT_POSTGRES_PORT:-5432}"
PG_USER=cqrskit
PG_PASSWORD=cqrskit
PG_DB=cqrskit
OS_USER=postgres

pg_bindir() {
    local dir
    dir="$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$dir" ]] && dirname "$dir"
}

install_server() {
    if [[ -z "$(pg_bindir)" ]]; then
        say "installing Debian's postgresql package"
        if [[ $(id -u) -ne 0 ]]; then
            die "PostgreSQL server binaries are missing; run 'apt-get install postgresql' as root"
        fi
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        # Debian's package starts its own cluster on 5432; ours takes that port.
        pg_ctlcluster --mode fast "$(basename "$(dirname "$(pg_bindir)")")" main stop 2>/dev/null || true
    fi
}

# The data directory must be reachable by the postgres user; a checkout under
# a private home directory is not, so we fall back to /var/lib.
runtime_dir() {
    if runuser -u "$OS_USER" -- test -x "$SERVICES_DIR" 2>/dev/null &&
        runuser -u "$OS_USER" -- test -r "$SERVICES_DIR" 2>/dev/null; then
        echo "$SERVICES_DIR/postgres"
    else
        echo "/var/lib/cqrskit/$(printf '%s' "$PROJECT_DIR" | md5sum | cut -c1-12)/postgres"
    fi
}

PG_HOME="$(runtime_dir)"
PG_DATA="$PG_HOME/data"
PG_RUN="$PG_HOME/run"
PG_LOG="$PG_HOME/postgres.log"

as_pg() { runuser -u "$OS_USER" -- "$@"; }

healthy() {
    PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
        -tAc 'select 1' 2>/dev/null | grep -qx 1
}

server_version() {
    PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
        -tAc 'show server_version' 2>/dev/null | cut -d' ' -f1
}

running() { [[ -f "$PG_DATA/postmaster.pid" ]] && as_pg "$(pg_bindir)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

init_cluster() {
    local bindir="$1"
    mkdir -p "$PG_HOME" "$PG_RUN"
    chown -R "$OS_USER:" "$PG_HOME"
    say "initialising a new cluster in $PG_DATA"
    local pwfile="$PG_HOME/.pw"
    echo "$PG_PASSWORD" >"$pwfile"
    chown "$OS_USER:" "$pwfile"
    as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 --pwfile="$pwfile" >"$PG_HOME/initdb.log" 2>&1 ||
        die "initdb failed" "$PG_HOME/initdb.log"
    rm -f "$pwfile"
    cat >>"$PG_DATA/postgresql.conf" <<EOF
# cqrskit development settings
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 256MB
max_prepared_transactions = 50
log_min_messages = warning
EOF
}

create_role_and_db() {
    local sql
    sql="DO \$\$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
             CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
           END IF;
         END \$\$;"
    as_pg psql -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres -qtAc "$sql" >/dev/null
    if ! as_pg psql -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -qx 1; then
        as_pg psql -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres -qc \
            "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
    fi
}

start() {
    if healthy; then
        say "up at postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB (PostgreSQL $(server_version))"
        return 0
    fi
    install_server
    local bindir
    bindir="$(pg_bindir)"
    [[ -f "$PG_DATA/PG_VERSION" ]] || init_cluster "$bindir"
    if ! running; then
        if port_open "$PG_PORT"; then
            die "port $PG_PORT is taken by another server (is Debian's own cluster running? 'pg_lsclusters'); stop it or set CQRSKIT_POSTGRES_PORT"
        fi
        mkdir -p "$PG_RUN"
        chown "$OS_USER:" "$PG_RUN"
        say "starting PostgreSQL ($bindir)"
        as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null ||
            die "PostgreSQL did not start" "$PG_LOG"
    fi
    wait_until 60 "PostgreSQL to accept connections" \
        as_pg "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" ||
        die "PostgreSQL does not accept connections on 127.0.0.1:$PG_PORT" "$PG_LOG"
    create_role_and_db
    healthy || die "cannot log in as $PG_USER to database $PG_DB" "$PG_LOG"
    say "up at postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB (PostgreSQL $(server_version))"
}

stop() {
    if ! running; then
        say "postgres is not running"
        return 0
    fi
    as_pg "$(pg_bindir)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null ||
        die "PostgreSQL did not stop" "$PG_LOG"
    say "postgres stopped"
}

status() {
    if healthy; then
        say "up at postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB (PostgreSQL $(server_version))"
    else
        say "down (expected at 127.0.0.1:$PG_PORT)"
        return 3
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
version) "$(pg_bindir)/postgres" --version 2>/dev/null | awk '{print $3}' ;;
*)
    echo "usage: $0 start|stop|status|version" >&2
    exit 2
    ;;
esac
