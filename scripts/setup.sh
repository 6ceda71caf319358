#!/usr/bin/env bash
# Installs exactly what is missing on a Debian 12 machine: PostgreSQL 15 with server headers,
# clang for bindgen, sudo, cargo-pgrx 0.18.0, and pgrx's configuration for the system pg15.
# Idempotent: a second run checks and returns in seconds.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need=()
for pkg in sudo postgresql-15 postgresql-server-dev-15 libclang-dev clang; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    log "apt-get install ${need[*]}"
    if [ "$(id -u)" -eq 0 ]; then APT=(env DEBIAN_FRONTEND=noninteractive); else APT=(sudo env DEBIAN_FRONTEND=noninteractive); fi
    "${APT[@]}" apt-get update -qq
    "${APT[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q ' 0\.18\.0'; then
    log "cargo install cargo-pgrx 0.18.0 (takes ~11 minutes on 2 cores)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs '^pg15 *= *"/usr/bin/pg_config"' "$PGRX_HOME/config.toml"; then
    log "cargo pgrx init --pg15 /usr/bin/pg_config"
    cargo pgrx init --pg15 /usr/bin/pg_config >/dev/null
fi
log "set-up complete"
