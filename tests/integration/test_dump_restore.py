"""pg_dump / restore keeps what the DBA added: own prices and aliases, tracked tables, their rows
and costs, rollups (their sums included), retention policies."""
import os
import subprocess
import uuid
from decimal import Decimal

import psycopg

from conftest import DATA, dsn, one, port

PG_BIN = subprocess.run(["/usr/bin/pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()

STATE = [
    ("user prices", "SELECT string_agg(provider || '/' || model || '=' || input_usd_per_mtok, ',' ORDER BY id) FROM llm_cost.model_prices WHERE origin = 'user'"),
    ("shipped prices", "SELECT count(*) FROM llm_cost.model_prices WHERE origin = 'llm_cost'"),
    ("aliases", "SELECT string_agg(alias || '=' || model, ',' ORDER BY alias) FROM llm_cost.model_aliases"),
    ("tracked", "SELECT string_agg(log_table::text, ',' ORDER BY log_table::text) FROM llm_cost.tracked_tables"),
    ("events", "SELECT count(*) || '/' || sum(cost_usd) || '/' || string_agg(DISTINCT cost_source, ',') FROM llm_cost.usage_events"),
    ("daily", "SELECT sum(requests) || '/' || sum(cost_usd) FROM llm_cost.usage_daily"),
    ("app rows", "SELECT count(*) || '/' || sum(cost_usd) FROM api_usage_log"),
    ("app rollup", "SELECT string_agg(provider || '=' || requests || '/' || cost_usd, ',' ORDER BY provider) FROM app_monthly"),
    ("rollups", "SELECT string_agg(rollup::text, ',' ORDER BY rollup::text) FROM llm_cost.rollups"),
    ("retention", "SELECT string_agg(log_table::text || '=' || keep, ',') FROM llm_cost.retention_policies"),
    ("unpriced", "SELECT string_agg(model || '=' || rows, ',') FROM llm_cost.unpriced_models"),
    ("budgets", "SELECT string_agg(name || '=' || limit_usd || '/' || thresholds::text || '/' || rollup::text, ',') FROM llm_cost.budgets"),
    ("budget limits", "SELECT string_agg(\"group\"::text || '=' || limit_usd, ',') FROM llm_cost.budget_limits"),
    ("budget alerts", "SELECT string_agg(budget || ' ' || \"group\"::text || ' ' || threshold, ',' ORDER BY id) FROM llm_cost.budget_alerts"),
]


def state(c):
    return {name: one(c, q) for name, q in STATE}


def test_dump_and_restore(connect, dbname):
    c = connect()
    c.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, note) VALUES ('acme', 'acme-private', 0.7, 2.1, 'negotiated')")
    c.execute("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('house', 'acme-private')")
    c.execute((DATA / "api_usage_log.sql").read_text())
    c.execute("SELECT llm_cost.track('api_usage_log', provider_column => 'provider', add_cost_column => true)")
    c.execute("SELECT llm_cost.create_rollup('app_monthly', 'api_usage_log', 'month', '{provider}')")
    c.execute("SELECT llm_cost.create_budget('app_cap', 'app_monthly', 1, '{0.5,1}')")
    c.execute("SELECT llm_cost.set_budget_limit('app_cap', '{\"provider\": \"openai\"}', 100)")
    c.execute("INSERT INTO api_usage_log (model, endpoint, input_tokens, output_tokens) VALUES ('house', '/x', 1000000, 1000000), ('gpt-4o', '/y', 1000, 10)")
    c.execute("""INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens, cost_usd) VALUES
                   ('t', 'u', 'claude-sonnet-4-5', 1000, 100, NULL), ('t', 'u', 'gpt-4o', 1000, 100, 0.42), ('t', 'u', 'mystery', 1, 1, NULL)""")
    c.execute("SELECT llm_cost.set_retention('api_usage_log', '400 days')")
    # A purged raw row stays in the rollup; the restore must keep that too.
    c.execute("DELETE FROM api_usage_log WHERE endpoint = '/y'")
    before = state(c)
    assert before["user prices"] == "acme/acme-private=0.7"
    assert before["app rollup"] == "claude=2/2.8026"
    assert before["budget alerts"] == 'app_cap {"provider": "claude"} 0.5,app_cap {"provider": "claude"} 1'

    # A user rollup of the extension's own log, as well (its table of sums is the user's).
    c.execute("SELECT llm_cost.create_rollup('public.tenant_monthly', 'llm_cost.usage_events', 'month', '{tenant_id}')")
    c.execute("""INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens)
                 VALUES ('t2', 'u', 'gpt-4o', 2000, 10), ('t2', 'u', 'mystery', 5, 5)""")
    # A price changes after the rows were logged: a restore must keep the logged costs.
    c.execute("UPDATE llm_cost.model_prices SET input_usd_per_mtok = 99 WHERE origin = 'user' AND model = 'acme-private'")
    before = state(c)
    before["tenant rollup"] = one(c, "SELECT string_agg(tenant_id || '=' || requests || '/' || cost_usd || '/' || unpriced_requests, ',' ORDER BY tenant_id) FROM public.tenant_monthly")
    assert before["tenant rollup"] == "t=3/0.4245/1,t2=2/0.0051/1"
    assert before["unpriced"] == "mystery=2"

    base = ["-h", "127.0.0.1", "-p", str(port()), "-U", "postgres"]
    plain = subprocess.run([f"{PG_BIN}/pg_dump", *base, "-d", dbname], capture_output=True, text=True, check=True).stdout
    custom = subprocess.run([f"{PG_BIN}/pg_dump", *base, "-Fc", "-d", dbname], capture_output=True, check=True).stdout
    schema = subprocess.run([f"{PG_BIN}/pg_dump", *base, "--schema-only", "-d", dbname], capture_output=True, text=True, check=True).stdout
    data = subprocess.run([f"{PG_BIN}/pg_dump", *base, "--data-only", "-d", dbname], capture_output=True, text=True, check=True).stdout

    def restored(how):
        target = "it_restored_" + uuid.uuid4().hex[:8]
        with psycopg.connect(dsn("postgres"), autocommit=True) as a:
            a.execute(f"CREATE DATABASE {target}")
        # No session_replication_role, no --disable-triggers: a plain restore as DBAs run it.
        if how == "plain":
            r = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *base, "-d", target],
                               input=plain, capture_output=True, text=True)
        elif how == "custom":
            r = subprocess.run([f"{PG_BIN}/pg_restore", "--exit-on-error", *base, "-d", target], input=custom, capture_output=True)
        else:  # schema first, then --data-only into that existing database
            r = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *base, "-d", target],
                               input=schema, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-3000:]
            r = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *base, "-d", target],
                               input=data, capture_output=True, text=True)
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
        assert r.returncode == 0, f"{how}: {err[-3000:]}"
        return target

    for how in ("plain", "custom", "data-only"):
        target = restored(how)
        try:
            with psycopg.connect(dsn(target), autocommit=True) as d:
                after = state(d)
                after["tenant rollup"] = one(d, "SELECT string_agg(tenant_id || '=' || requests || '/' || cost_usd || '/' || unpriced_requests, ',' ORDER BY tenant_id) FROM public.tenant_monthly")
                assert after == before, how
                # Row security policies come back too.
                assert one(d, "SELECT count(*) FROM pg_policies WHERE schemaname = 'llm_cost' AND tablename = 'usage_events'") == \
                    one(c, "SELECT count(*) FROM pg_policies WHERE schemaname = 'llm_cost' AND tablename = 'usage_events'")
                # And it keeps working: new rows are priced with the restored private price and rolled up.
                d.execute("INSERT INTO api_usage_log (model, endpoint, input_tokens, output_tokens) VALUES ('house', '/z', 1000000, 0)")
                assert one(d, "SELECT cost_usd FROM api_usage_log WHERE endpoint = '/z'") == Decimal("99")
                assert one(d, "SELECT requests FROM app_monthly WHERE provider = 'claude'") == 3
                d.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) VALUES ('t2', 'u', 'mystery', 1, 1)")
                assert one(d, "SELECT requests FROM public.tenant_monthly WHERE tenant_id = 't2'") == 3
                assert one(d, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'mystery'") == 3
        finally:
            with psycopg.connect(dsn("postgres"), autocommit=True) as a:
                a.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
