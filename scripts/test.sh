#!/usr/bin/env bash
# The tests: set-up, unit tests of the pure-Rust core, #[pg_test]s in a pgrx-managed server,
# then integration tests (several sessions, roles, the worker) against a scratch cluster.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$ROOT/scripts/setup.sh"

log "layers: no upward import, no circle (scripts/check_layers.py)"
python3 "$ROOT/scripts/check_layers.py"

log "unit tests (no server): the core crate, then the extension's plain-Rust tests"
(cd "$ROOT" && cargo test -p llm_cost_core --quiet)
(cd "$ROOT" && cargo test -p llm_cost --lib --quiet -- --skip ::pg_)

log "pg_tests: cargo pgrx test pg15"
PGDATA_TEST="$ROOT/target/pgrx-test-data"
postgres_dir "$PGDATA_TEST"
# cargo pgrx test installs the debug build over the system's llm_cost.so: never in place under
# a running cluster that has it loaded.
detach_installed_library
(cd "$ROOT" && cargo pgrx test pg15 --runas postgres --pgdata "$PGDATA_TEST")

log "integration tests against a scratch cluster"
PY=$(py_env)
if [ ! -x "$ROOT/tests/graphql/node_modules/.bin/postgraphile" ]; then
    log "npm ci (PostGraphile for the GraphQL end-to-end test)"
    (cd "$ROOT/tests/graphql" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! -d "$ROOT/dashboard/node_modules/puppeteer-core" ] || [ ! -d "$ROOT/dashboard/node_modules/chart.js" ]; then
    log "npm ci (the dashboard and puppeteer-core for its browser test)"
    (cd "$ROOT/dashboard" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if ! command -v chromium >/dev/null 2>&1; then
    log "apt-get install chromium (the dashboard's browser test)"
    if [ "$(id -u)" -eq 0 ]; then APT=(env DEBIAN_FRONTEND=noninteractive); else APT=(sudo env DEBIAN_FRONTEND=noninteractive); fi
    "${APT[@]}" apt-get update -qq
    "${APT[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi
export LLM_COST_CLUSTER="$ROOT/target/it-cluster"
# A subscription to a publication of this cluster (logical replication), prepared transactions.
# The worker folds no rows of sums unless a test asks (tests count them; tests/integration/test_fold.py).
export LLM_COST_CLUSTER_CONF="wal_level = logical
max_prepared_transactions = 10
llm_cost.fold_rollups = off"
trap '"$ROOT/scripts/cluster.sh" stop' EXIT
"$ROOT/scripts/cluster.sh" stop
# pg_tests installed the debug build of the extension; restart so the preloaded library is fresh.
"$ROOT/scripts/cluster.sh" start >/dev/null
log "SQL tests: tests/sql/*.sql against tests/expected/*.out (scripts/regress.py)"
"$PY" "$ROOT/scripts/regress.py"
log "doc tests: every SQL block of README.md and docs/ and the results they show (scripts/doctest.py)"
"$PY" "$ROOT/scripts/doctest.py"
(cd "$ROOT" && "$PY" -m pytest -q tests/integration "$@")
log "Citus tests (skipped, saying why, where Citus is not installed)"
(cd "$ROOT" && "$PY" -m pytest -q -rs tests/citus)
log "all tests passed"
