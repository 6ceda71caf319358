#!/usr/bin/env bash
# A scratch PostgreSQL 15 cluster under target/, run by the postgres OS user, on a free port,
# with llm_cost in shared_preload_libraries.
#   scripts/cluster.sh start        initdb if needed, start, print the port
#   scripts/cluster.sh stop         stop it
#   scripts/cluster.sh psql ARGS    psql to it as postgres
# The cluster lives in $LLM_COST_CLUSTER (default target/cluster); $LLM_COST_CLUSTER_CONF adds
# settings (the tests' cluster: logical replication and prepared transactions).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cmd="${1:-start}"
shift || true
DIR="${LLM_COST_CLUSTER:-$ROOT/target/cluster}"
DATA="$DIR/data"

port_of() { cat "$DIR/port"; }

case "$cmd" in
start)
    install -d -m 0755 "$DIR"
    postgres_dir "$DIR/run"
    if [ -f "$DIR/port" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        port_of; exit 0
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        postgres_dir "$DATA"
        as_postgres "$PG_BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    port=$(free_port)
    echo "$port" > "$DIR/port"
    as_postgres tee "$DATA/conf.d.llm_cost.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR/run'
shared_preload_libraries = 'llm_cost'
max_connections = 100
max_worker_processes = 32
shared_buffers = 512MB
log_min_messages = warning
${LLM_COST_CLUSTER_CONF:-}
CONF
    grep -q "conf.d.llm_cost.conf" "$DATA/postgresql.conf" || \
        echo "include 'conf.d.llm_cost.conf'" | as_postgres tee -a "$DATA/postgresql.conf" >/dev/null
    as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$DIR/run/postgres.log" -w -t 60 start >/dev/null
    port_of
    ;;
stop)
    # The demo's dashboard runs next to the cluster and stops with it.
    if [ -f "$DIR/dashboard.pid" ]; then
        kill "$(cat "$DIR/dashboard.pid")" 2>/dev/null || true
        rm -f "$DIR/dashboard.pid"
    fi
    if as_postgres test -f "$DATA/postmaster.pid"; then as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true; fi
    ;;
psql)
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port_of)" -U postgres "$@"
    ;;
port) port_of ;;
*) echo "usage: $0 start|stop|psql|port" >&2; exit 2 ;;
esac
