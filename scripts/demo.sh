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

# The dashboard: PostGraphile and one page on loopback, next to the cluster (stopped with it).
DASH="$ROOT/dashboard"
if [ ! -d "$DASH/node_modules/postgraphile" ] || [ ! -d "$DASH/node_modules/chart.js" ]; then
    log "npm ci (the dashboard: PostGraphile, Chart.js)"
    (cd "$DASH" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
fi
RUN="${LLM_COST_CLUSTER:-$ROOT/target/cluster}"
secret=$(node -e "console.log(require('crypto').randomBytes(32).toString('hex'))")
dport=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
(cd "$DASH" || exit 1
 DATABASE_URL="postgres://llm_cost_dashboard@127.0.0.1:$port/$DB" JWT_SECRET="$secret" PORT="$dport" \
     nohup node server.js >"$RUN/dashboard.log" 2>&1 &
 echo $! >"$RUN/dashboard.pid")
(umask 077; echo "$secret" >"$RUN/dashboard.secret")
for _ in $(seq 1 60); do
    node -e "require('http').get('http://127.0.0.1:$dport/', () => process.exit(0)).on('error', () => process.exit(1))" && break
    sleep 0.5
done
admin_token=$(node "$DASH/token.js" "$secret" llm_cost_auditor)
user_token=$(node "$DASH/token.js" "$secret" llm_cost_reader user-1)

cat <<MSG

Dashboard (open in a browser on this machine; the token in the URL decides what you see):
  everything (auditor): http://127.0.0.1:$dport/#token=$admin_token
  one user (user-1):    http://127.0.0.1:$dport/#token=$user_token
  GraphQL:              http://127.0.0.1:$dport/graphql (Authorization: Bearer <token>; none: 401)
  More tokens:          node dashboard/token.js <secret> llm_cost_reader <user_id> [days]   (secret: $RUN/dashboard.secret)
  From another machine: ssh -L $dport:127.0.0.1:$dport <this host>, then the same URLs.

Connect:  psql -h 127.0.0.1 -p $port -U postgres -d $DB
Stop:     scripts/cluster.sh stop      (stops the dashboard too)
MSG
