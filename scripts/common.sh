# Shared helpers for the scripts in this folder. Source it; do not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN="$(/usr/bin/pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Run a command as root (directly, or through sudo for a normal user).
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Run a command as the postgres OS user (initdb refuses root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"
    elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
    else sudo -u postgres "$@"; fi
}

# A directory owned by postgres, created if missing; parents must be traversable by postgres.
postgres_dir() {
    as_root install -d -o postgres -g postgres -m 0700 "$1"
}

# A TCP port nobody listens on.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Gives the installed llm_cost.so a new file: a copy renamed over it. cargo pgrx writes the
# library in place; a server that has the old file mapped (a running demo or test cluster
# preloads it) crashes when that file is rewritten under it. After this, the file it maps is no
# longer the one at that path, and keeps its contents until the server lets it go.
detach_installed_library() {
    local lib
    lib="$(/usr/bin/pg_config --pkglibdir)/llm_cost.so"
    [ -f "$lib" ] || return 0
    as_root cp -p "$lib" "$lib.new.$$"
    as_root mv -f "$lib.new.$$" "$lib"
}

# Builds and installs the extension into the system PostgreSQL 15 (release build).
install_extension() {
    log "building and installing llm_cost (release)"
    detach_installed_library
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$ROOT" && cargo pgrx install --release --pg-config /usr/bin/pg_config >/dev/null)
    else
        (cd "$ROOT" && cargo pgrx install --release --sudo --pg-config /usr/bin/pg_config >/dev/null)
    fi
}

# A Python virtualenv under target/ with the test and benchmark client libraries.
py_env() {
    local venv="$ROOT/target/venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import psycopg, pytest, genai_prices' 2>/dev/null; then
        log "creating $venv (psycopg, pytest, genai-prices: the catalog's dataset, for the sample check and scripts/gen_prices.py)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "psycopg[binary]==3.2.*" "pytest==8.*" "genai-prices==0.2.3" >/dev/null
    fi
    echo "$venv/bin/python"
}
