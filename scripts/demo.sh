#!/usr/bin/env bash
# The main job: set up, build, install, start a scratch cluster with llm_cost preloaded,
# create the extension, log sample LLM calls and print what they cost.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$ROOT/scripts/setup.sh"
install_extension
log "starting the scratch cluster"
# Restart: the library is preloaded, so a running cluster would keep the previous build.
"$ROOT/scripts/cluster.sh" stop
port=$("$ROOT/scripts/cluster.sh" start)
DB=llm_cost_demo
PGOPTIONS="-c client_min_messages=warning" "$ROOT/scripts/cluster.sh" psql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$ROOT/scripts/cluster.sh" psql -d "$DB" -f "$ROOT/scripts/demo.sql"

cat <<MSG

Connect:  psql -h 127.0.0.1 -p $port -U postgres -d $DB
Stop:     scripts/cluster.sh stop
MSG
