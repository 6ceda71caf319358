#!/usr/bin/env bash
# Benchmarks: installs the release build, starts a scratch cluster (target/bench-cluster) and
# runs bench/bench.py, which writes bench/results.md. Every figure is a ratio against a baseline
# measured in the same run.   scripts/bench.sh [section ...]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$ROOT/scripts/setup.sh"
install_extension
PY=$(py_env)
export LLM_COST_CLUSTER="$ROOT/target/bench-cluster"
"$ROOT/scripts/cluster.sh" stop
"$ROOT/scripts/cluster.sh" start >/dev/null
trap '"$ROOT/scripts/cluster.sh" stop' EXIT
(cd "$ROOT" && "$PY" bench/bench.py "$@")
