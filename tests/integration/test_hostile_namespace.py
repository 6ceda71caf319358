"""Hostile namespaces (issue #25): ordinary roles shadow every built-in type, function and
operator name that llm_cost's SQL uses, in pg_temp and in public, with objects that record who
ran them; then every public entry point and the background worker run. A shadow that ever runs
means some statement of llm_cost resolved a name through a path a caller controls: the test
fails, as it does if any role's rights changed.

The names are derived from the code (string literals of src/ and the SQL of sql/, intersected
with what pg_catalog has), so a new statement is covered without editing this test."""
import glob
import re
import time
import uuid

import psycopg
import pytest

from conftest import ROOT, admin, dsn, one, set_worker_fast, wait_for

# Types we always shadow (the ones the attacks used) besides those found in the code.
ALWAYS_TYPES = {"oid", "int8", "int4", "int2", "text", "jsonb", "json", "numeric", "regclass", "bool", "name",
                "timestamptz", "timestamp", "interval", "date", "float8", "bigint", "integer", "boolean", "varchar"}
OPERATORS = ["=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "||", "->", "->>", "?", "~", "~~", "@>"]
# Argument types of the operator and function variants we create where pg_catalog has no exact match.
ARG_TYPES = ["oid", "regclass", "text", "int8", "int4", "int2", "numeric", "jsonb", "timestamptz", "name", "bool",
             "regtype", "regnamespace", "regprocedure", "interval", "varchar"]


def code_text():
    parts = []
    for f in glob.glob(str(ROOT / "src" / "**" / "*.rs"), recursive=True):
        s = open(f).read()
        m = re.search(r"^(pub )?mod tests", s, re.M)
        parts.append(s[: m.start()] if m else s)
    for f in glob.glob(str(ROOT / "sql" / "*.sql")):
        if "llm_cost--" in f or f.endswith("prices.sql"):
            continue
        parts.append(open(f).read())
    return "\n".join(parts)


def names_from_code(c):
    text = code_text()
    cand_types = set(re.findall(r"::\s*(?:pg_catalog\.)?\"?([a-z_][a-z0-9_]*)", text))
    cand_types |= set(re.findall(r"\bAS\s+(?:pg_catalog\.)?([a-z_][a-z0-9_]*)\s*\)", text, re.I))
    cand_types = {t.lower() for t in cand_types} | ALWAYS_TYPES
    types = [r[0] for r in c.execute(
        """SELECT DISTINCT t FROM unnest(%s::text[]) t
            WHERE pg_catalog.to_regtype('pg_catalog.' || pg_catalog.quote_ident(t)) IS NOT NULL
              AND (SELECT typtype FROM pg_catalog.pg_type WHERE oid = pg_catalog.to_regtype('pg_catalog.' || pg_catalog.quote_ident(t))) IN ('b', 'r', 'm')
            ORDER BY 1""", (sorted(cand_types),)).fetchall()]
    # 'bigint' and friends are SQL keywords for int8 etc.: their domains cannot be made; the
    # catalog names are in the list.
    cand_fns = set(re.findall(r"(?<![.\w\"])([a-z_][a-z0-9_]*)\s*\(", text))
    fns = [r[0] for r in c.execute(
        """SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proname = ANY(%s::pg_catalog.name[])
              AND p.prokind = 'f' AND p.pronargs BETWEEN 1 AND 3 ORDER BY 1""", (sorted(cand_fns),)).fetchall()]
    return types, fns


SETUP_LOG = """
CREATE TABLE IF NOT EXISTS public.hostile_log (at timestamptz DEFAULT clock_timestamp(), who text, session_who text, what text);
GRANT INSERT, SELECT ON public.hostile_log TO PUBLIC;
CREATE OR REPLACE FUNCTION public.hostile_hit(what text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.hostile_log (who, session_who, what) VALUES (current_user, session_user, what);
    RETURN true;
END $f$;
GRANT EXECUTE ON FUNCTION public.hostile_hit(text) TO PUBLIC;
"""


def shadow_public(c, types, fns):
    """As the database owner: operators and function variants in public that pg_catalog has no
    exact match for (oid = regclass, format(text, regclass), ...)."""
    made = 0
    c.execute("SET search_path = pg_catalog, pg_temp")
    # Operators.
    rows = c.execute(
        """SELECT o, l, r FROM unnest(%s::text[]) o, unnest(%s::text[]) l, unnest(%s::text[]) r
            WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_operator x
                               WHERE x.oprname = o AND x.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace
                                 AND x.oprleft = pg_catalog.to_regtype(l) AND x.oprright = pg_catalog.to_regtype(r))""",
        (OPERATORS, ARG_TYPES, ARG_TYPES)).fetchall()
    for i, (op, l, r) in enumerate(rows):
        fn = f"public.hostile_op_{i}"
        c.execute(f"""CREATE FUNCTION {fn}(a pg_catalog.{l}, b pg_catalog.{r}) RETURNS boolean LANGUAGE sql
                      AS $f$ SELECT public.hostile_hit('operator {op}({l}, {r})') $f$""")
        c.execute(f"CREATE OPERATOR public.{op} (LEFTARG = pg_catalog.{l}, RIGHTARG = pg_catalog.{r}, FUNCTION = {fn})")
        made += 1
    # Function variants: each pg_catalog signature with one argument replaced by another type.
    sigs = c.execute(
        """SELECT p.proname::text, p.proargtypes::pg_catalog.oid[]::pg_catalog.regtype[]::text[]
             FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proname = ANY(%s::pg_catalog.name[])
              AND p.prokind = 'f' AND p.pronargs BETWEEN 1 AND 3 AND p.provariadic = 0""", (fns,)).fetchall()
    seen = set()
    for name, args in sigs:
        if any(a in ("\"any\"", "anyelement", "anyarray", "anynonarray", "anyenum", "anyrange", "anymultirange",
                     "anycompatible", "anycompatiblearray", "internal", "cstring", "record", "trigger") for a in args):
            continue
        for pos in range(len(args)):
            for t in ARG_TYPES:
                v = list(args)
                v[pos] = t
                key = (name, tuple(v))
                if key in seen:
                    continue
                seen.add(key)
                exists = one(c, "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
                             f"pg_catalog.{name}({', '.join(v)})")
                if exists:
                    continue
                params = ", ".join(f"pg_catalog.{x}" if re.match(r"^[a-z_0-9]+$", x) else x for x in v)
                try:
                    c.execute(f"""CREATE FUNCTION public."{name}"({params}) RETURNS text LANGUAGE sql
                                  AS $f$ SELECT public.hostile_hit('function {name}({", ".join(v)})')::pg_catalog.text $f$""")
                    made += 1
                except psycopg.Error:
                    pass
    c.execute("RESET search_path")
    return made


def shadow_temp(c, types):
    """In this session's pg_temp: a domain for every type name, whose check records who runs it."""
    for t in types:
        c.execute(f"""DO $d$ BEGIN
                        EXECUTE 'CREATE DOMAIN pg_temp.{t} AS pg_catalog.{t} CHECK (public.hostile_hit(''domain pg_temp.{t}''))';
                      EXCEPTION WHEN others THEN NULL; END $d$""")
    return one(c, "SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema()")


RIGHTS = """SELECT pg_catalog.string_agg(rolname || ':' || rolsuper || rolcreaterole || rolcreatedb || rolbypassrls || rolreplication, ',' ORDER BY rolname)
              || ' / ' || coalesce((SELECT pg_catalog.string_agg(m.roleid::regrole::text || '>' || m.member::regrole::text, ',' ORDER BY 1)
                                      FROM pg_catalog.pg_auth_members m), '')
              || ' / ' || (SELECT datdba::regrole::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
              FROM pg_catalog.pg_roles"""


def try_run(c, sql, ok_errors=False):
    try:
        cur = c.execute(sql)
        return cur.fetchall() if cur.description else None
    except psycopg.Error as e:
        if not ok_errors:
            raise
        return e.sqlstate


@pytest.fixture
def hostile_db():
    tag = uuid.uuid4().hex[:6]
    db = f"it_hostile_{tag}"
    roles = {k: f"h_{k}_{tag}" for k in ("dbowner", "nobody", "writer", "reader", "owner", "admin")}
    with admin() as a:
        a.execute(f"CREATE ROLE {roles['dbowner']} LOGIN")
        for k in ("nobody", "writer", "reader", "owner", "admin"):
            a.execute(f"CREATE ROLE {roles[k]} LOGIN")
        a.execute(f"CREATE DATABASE {db} OWNER {roles['dbowner']}")
    with admin(db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION llm_cost")
        c.execute(f"GRANT llm_cost_writer TO {roles['writer']}")
        c.execute(f"GRANT llm_cost_reader TO {roles['reader']}")
        c.execute(f"GRANT llm_cost_admin TO {roles['admin']}")
        c.execute(f"CREATE SCHEMA app AUTHORIZATION {roles['owner']}")
        c.execute(f"GRANT USAGE ON SCHEMA app TO {roles['writer']}, {roles['reader']}")
        c.execute(SETUP_LOG)
    try:
        yield db, roles
    finally:
        set_worker_fast(False)
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            for r in roles.values():
                a.execute(f"DROP ROLE IF EXISTS {r}")


def test_no_shadow_runs_and_no_role_gains_rights(hostile_db):
    db, roles = hostile_db
    sessions = {k: psycopg.connect(dsn(db, r), autocommit=True) for k, r in roles.items()}
    with admin(db) as su:
        su.execute("SET search_path = pg_catalog, pg_temp")
        rights_before = one(su, RIGHTS)
        types, fns = names_from_code(su)
    assert {"oid", "int8", "text", "jsonb", "regclass"} <= set(types), types
    assert {"format", "array_length", "jsonb_build_object"} <= set(fns), fns

    # The database owner (CREATE on public in PostgreSQL 15) shadows operators and functions.
    made = shadow_public(sessions["dbowner"], types, fns)
    assert made > 500, made
    # The owner's table, tracked, with a rollup, a budget and a retention policy.
    o = sessions["owner"]
    o.execute("SET client_min_messages = warning")
    o.execute("""CREATE TABLE app.calls (id bigserial, created_at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                          input_tokens int, output_tokens int, usage jsonb, cost_usd numeric, cost_source text)""")
    o.execute(f"GRANT INSERT, SELECT ON app.calls TO {roles['writer']}")
    o.execute(f"GRANT USAGE ON SEQUENCE app.calls_id_seq TO {roles['writer']}")
    # Every session shadows every type in its own pg_temp first.
    for k, s in sessions.items():
        s.execute("SET client_min_messages = warning")
        assert shadow_temp(s, types) >= len(types) * 0.8, k

    # The shadows are live: the statements of the attacks, run the unpinned way (the
    # caller's path), do run them. (Then the log is emptied: from here on nothing may run them.)
    n = sessions["nobody"]
    n.execute("SELECT '1'::oid, '{}'::jsonb, 1::int8")
    n.execute("SELECT c.oid = 'pg_catalog.pg_class'::pg_catalog.regclass FROM pg_catalog.pg_class c LIMIT 1")
    with admin(db) as su:
        su.execute("SET search_path = pg_catalog, pg_temp")
        control = {r[0] for r in su.execute("SELECT what FROM public.hostile_log")}
        assert {"domain pg_temp.oid", "domain pg_temp.jsonb", "domain pg_temp.int8", "operator =(oid, regclass)"} <= control, control
        su.execute("TRUNCATE public.hostile_log")

    def call(role, sql, ok_errors=False):
        return try_run(sessions[role], sql, ok_errors)

    # The table owner: track, rollups, budgets, retention, reprice, rebuild, row security.
    call("owner", "SELECT llm_cost.track('app.calls', usage_column => 'usage')")
    call("owner", "SELECT llm_cost.create_rollup('app.calls_daily', 'app.calls', 'day', '{team}')")
    call("owner", "SELECT llm_cost.create_rollup('app.calls_model', 'app.calls', 'month', '{model}')")
    call("owner", "SELECT llm_cost.create_budget('h_cap', 'app.calls_daily', 1, '{0.5,1}')")
    call("owner", "SELECT llm_cost.set_budget_limit('h_cap', '{\"team\": \"b\"}', 2)")
    call("owner", "SELECT llm_cost.set_retention('app.calls', '30 days')")
    call("owner", "SELECT llm_cost.enable_row_security('app.calls_daily', 'team')")
    # 0.12.0: an anomaly watch, run by the background worker (the bootstrap superuser) below.
    call("owner", "SELECT llm_cost.watch_anomalies('h_watch', 'app.calls_daily', '{team}', periods => 3, threshold => 0.1, min_requests => 0)")
    # 0.9.0: history priced (in track() and by the procedure, batch by batch), an integer cost
    # column in microcents, priced providers, a usage-only table with an error response and a
    # missing usage, a rollup named the way CREATE VIEW names it, reports over a rollup.
    with admin(db) as su:
        # (made with the built-in types, then given to the owner: its session's names are shadowed)
        su.execute("SET search_path = pg_catalog, pg_temp")
        su.execute("""CREATE TABLE app.hist (id bigserial, created_at timestamptz NOT NULL, provider text, model text NOT NULL,
                                              input_tokens int NOT NULL, output_tokens int NOT NULL, cost_mc bigint NOT NULL DEFAULT 0,
                                              pp text)""")
        su.execute("""CREATE TABLE app.raw (created_at timestamptz NOT NULL DEFAULT now(), model text NOT NULL,
                                             usage jsonb, cost_usd numeric)""")
        su.execute(f"ALTER TABLE app.hist OWNER TO {roles['owner']}")
        su.execute(f"ALTER TABLE app.raw OWNER TO {roles['owner']}")
        su.execute("""INSERT INTO app.hist (created_at, provider, model, input_tokens, output_tokens)
                      SELECT '2026-11-01'::timestamptz + i * interval '1 hour', 'Claude', 'claude-sonnet-4-5', 1000, 100
                        FROM generate_series(1, 40) i""")
        su.execute("""INSERT INTO app.raw (model, usage) VALUES ('gpt-4o', '{"prompt_tokens": 10, "completion_tokens": 1}'),
                        ('gpt-4o', '{"type": "error", "error": {"type": "overloaded_error"}}'), ('gpt-4o', NULL)""")
    call("owner", "SELECT llm_cost.track('app.hist', provider_column => 'provider', cost_column => 'cost_mc', "
                  "cost_unit => 'microcents', priced_provider_column => 'pp')")
    call("owner", "CALL llm_cost.backfill('app.hist', batch_rows => 10)")
    call("owner", "SELECT llm_cost.track('app.raw', usage_column => 'usage', backfill => true)")
    call("owner", "SET search_path = app, public")
    call("owner", "SELECT llm_cost.create_rollup('hist_daily', 'app.hist', 'day', '{provider}')")
    call("owner", "SELECT llm_cost.create_budget('hist_cap', 'hist_daily', 1)")
    call("owner", "RESET search_path")
    # A writer: INSERT (multi-row), crossing the budget at commit (the alert as the extension
    # owner), an unknown model, COPY; the usage_events log too.
    call("writer", """INSERT INTO app.calls (created_at, team, model, input_tokens, output_tokens) VALUES
                        (now() - interval '40 days', 'a', 'gpt-4o', 100, 10),
                        (now(), 'a', 'gpt-4o', 1000000, 0), (now(), 'b', 'h-unknown-model', 1, 1)""")
    call("writer", """INSERT INTO app.calls (team, model, usage) VALUES
                        ('a', 'claude-sonnet-4-5', '{"input_tokens": 50, "cache_read_input_tokens": 1800, "output_tokens": 503}')""")
    # 0.8.0: a usage object with per-modality lists (read in place from jsonb), searches, a
    # time-of-day model at its event time.
    call("writer", """INSERT INTO app.calls (team, model, usage) VALUES
                        ('a', 'gemini-2.5-flash', '{"promptTokenCount": 100, "candidatesTokenCount": 5,
                          "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 40}]}'),
                        ('a', 'claude-sonnet-4-5', '{"input_tokens": 5, "output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}')""")
    call("writer", """INSERT INTO app.calls (created_at, team, model, input_tokens, output_tokens) VALUES
                        ('2026-12-01 02:00+00', 'a', 'deepseek-v4-pro', 10, 10)""")
    w = sessions["writer"]
    with w.cursor().copy("COPY app.calls (team, model, input_tokens, output_tokens) FROM STDIN") as cp:
        for i in range(5):
            cp.write_row(("c", "gpt-4o-mini" if i % 2 else "h-copy-unknown", 100 * i, 10))
    call("writer", """INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens)
                        VALUES ('t', 'u', 'gpt-4o', 1000, 100), ('t', 'u', 'h-unknown-2', 1, 1)""")
    with w.cursor().copy("COPY llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
        cp.write_row(("t", "u2", "gpt-4o", 10, 10))
    # Anyone: estimates, budgets, reports they may read, the unknown models.
    for role in ("nobody", "writer", "reader", "owner"):
        call(role, "SELECT llm_cost.estimate_cost('gpt-4o', 1000, 100)")
        call(role, "SELECT llm_cost.estimate_cost('gpt-4o', '{\"prompt_tokens\": 10, \"completion_tokens\": 3}')")
        call(role, "SELECT * FROM llm_cost.explain_cost('claude-sonnet-4-5', 300000, 10)")
        call(role, "SELECT * FROM llm_cost.explain_cost('deepseek-v4-pro', 10, 10, input_audio_tokens => 1, web_searches => 1)")
        call(role, "SELECT * FROM llm_cost.usage_tokens('{\"usage\": {\"billed_units\": {\"input_tokens\": 5}}}')")
        call(role, "SELECT llm_cost.resolve_model('openai/gpt-4o')")
        call(role, "SELECT * FROM llm_cost.check_budget('h_cap', '{\"team\": \"a\"}', 0.5)", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.budget_status", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.unpriced_models")
        call(role, "SELECT * FROM llm_cost.budget_alerts")
        call(role, "SELECT * FROM llm_cost.spend_summary", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.usage_daily", ok_errors=True)
        call(role, "SELECT * FROM app.calls_daily", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.run_retention()", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.reprice('app.calls')", ok_errors=True)
        call(role, "SELECT llm_cost.rebuild_rollup('app.calls_daily')", ok_errors=True)
        call(role, "SELECT llm_cost.fold_rollup('app.calls_daily')", ok_errors=True)
        call(role, "SELECT llm_cost._as_table_owner('fold_rollup', 'app.calls_daily_stripes'::regclass::oid, '{\"rollup\": 1}')", ok_errors=True)
        call(role, "SELECT llm_cost.distribute_rollups('app.calls')", ok_errors=True)
        call(role, "SELECT llm_cost.track('app.calls')", ok_errors=True)
        call(role, "SELECT llm_cost.create_budget('x_cap', 'app.calls_daily', 1)", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.spend_by('app.hist_daily', '{provider}', '2026-01-01', 'infinity')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.spend_trend('app.calls_daily')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.rollup_summary('app.calls_model')", ok_errors=True)
        # 0.11.0: insights over rollups (a security_invoker one read from its table of sums,
        # and views), filters, per-call cache savings, forecasts, anomalies.
        call(role, "SELECT * FROM llm_cost.spend_by('app.calls_daily', '{team}', filter => '{\"team\": [\"a\", null]}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.cost_percentiles('app.calls_daily', '{team}', percentiles => '{0.5,0.99}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.cost_percentiles('app.calls_model', '{model}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.cache_savings_by('app.calls_daily', '{team}', filter => '{\"team\": \"a\"}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.provided_vs_list('app.calls_model', '{model}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.spend_forecast('app.calls_daily', '{team}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.spend_anomalies('app.calls_daily', '{team}', min_requests => 0)", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.spend_trend('app.calls_daily', filter => '{\"team\": \"b\"}')", ok_errors=True)
        call(role, "SELECT llm_cost.cache_savings('claude-sonnet-4-5', 50, 5, 1800, 200), llm_cost.cache_write_extra('claude-sonnet-4-5', 50, 5, 1800, 200)")
        call(role, "SELECT * FROM llm_cost.run_rate_forecast(10, now() - interval '1 day', now() + interval '1 day', 30)")
        call(role, "SELECT llm_cost.histogram_cost_at_rank(cost_histogram, 1), llm_cost.histogram_requests(cost_histogram) FROM llm_cost.usage_daily", ok_errors=True)
        call(role, "SELECT llm_cost.priced_provider('claude-sonnet-4-5', 'Claude'), llm_cost.format_cost(1530, 'microcents')")
        call(role, "CALL llm_cost.backfill('app.hist')", ok_errors=True)
        # 0.12.0: anomaly watches and their alerts, the histogram aggregate.
        call(role, "SELECT llm_cost.watch_anomalies('x_watch', 'app.calls_daily', filter => '{\"team\": \"a\"}')", ok_errors=True)
        call(role, "SELECT * FROM llm_cost.anomaly_alerts")
        call(role, "SELECT * FROM llm_cost.anomaly_watches")
        call(role, "SELECT llm_cost._anomaly_sweep(1001)", ok_errors=True)
        call(role, "SELECT llm_cost.cost_histogram_sum(cost_histogram) FROM app.calls_daily", ok_errors=True)
        call(role, "SELECT llm_cost.citus_setup()", ok_errors=True)
        call(role, "SELECT llm_cost.distribute_usage_events()", ok_errors=True)
        if role != "owner":
            call(role, "SELECT llm_cost.drop_anomaly_watch('h_watch')", ok_errors=True)
    # The owner again: reprice after a price appears, rebuild, run retention now, drop things.
    call("admin", "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('house', 'h-unknown-model', 1, 2)")
    call("admin", """INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, time_of_day_from, time_of_day_to)
                     VALUES ('house', 'h-unknown-model', 3, 4, '22:00', '06:00')""")
    call("admin", "SELECT count(*) FROM llm_cost.import_prices('{\"providers\": []}'::pg_catalog.jsonb, dry_run => true)", ok_errors=True)
    call("owner", "SELECT * FROM llm_cost.reprice('app.calls')")
    call("owner", "SELECT llm_cost.rebuild_rollup('app.calls_daily')")
    call("owner", "SELECT llm_cost.fold_rollup('app.calls_daily', now() + interval '2 days')")
    call("owner", "SELECT * FROM llm_cost.run_retention()")
    call("owner", "SELECT llm_cost.distribute_rollups('app.calls')", ok_errors=True)
    assert one(sessions["owner"], "SELECT count(*) FROM app.calls") == 11  # 12 rows, the 40-day-old one purged
    # The background worker (the bootstrap superuser) purges and sweeps budgets in this database.
    call("writer", "INSERT INTO app.calls (created_at, team, model, input_tokens, output_tokens) VALUES (now() - interval '50 days', 'a', 'gpt-4o', 1, 1)")
    set_worker_fast(True)
    assert wait_for(lambda: one(sessions["owner"], "SELECT count(*) FROM app.calls WHERE created_at < now() - interval '45 days'") == 0, 30)
    time.sleep(2.5)  # another round or two, budgets swept
    set_worker_fast(False)
    with admin(db) as su:
        alerts = one(su, "SELECT count(*) FROM llm_cost.budget_alerts")
        # The worker ran the owner's anomaly watch (as the owner): today's spend of every team
        # is far above its (empty) last three days.
        assert one(su, "SELECT count(*) FROM llm_cost.anomaly_alerts WHERE watch = 'h_watch'") > 0
    call("owner", "SELECT llm_cost.drop_anomaly_watch('h_watch')")
    call("owner", "SELECT llm_cost.drop_budget('h_cap')")
    call("owner", "SELECT llm_cost.drop_rollup('app.calls_model')")
    call("owner", "SELECT llm_cost.drop_retention('app.calls')")
    call("owner", "SELECT llm_cost.untrack('app.calls')", ok_errors=True)

    for s in sessions.values():
        s.close()
    with admin(db) as su:
        su.execute("SET search_path = pg_catalog, pg_temp")
        hits = su.execute("SELECT who, session_who, what FROM public.hostile_log ORDER BY at").fetchall()
        assert hits == [], f"{len(hits)} shadow(s) ran: {hits[:20]}"
        assert one(su, RIGHTS) == rights_before
        # The things above really happened (the test drove llm_cost, not only errors).
        assert alerts >= 1
        assert one(su, "SELECT count(*) FROM llm_cost.usage_events") == 3
        # 0.9.0's statements did their work: the history priced in microcents with the provider
        # normalised, the usage-only table's rows stored (an error response at $0, no usage unpriced).
        assert su.execute("SELECT count(*), sum(cost_mc), min(pp), max(pp), count(*) FILTER (WHERE cost_source = 'estimated') "
                          "FROM app.hist").fetchone() == (40, 40 * 450000, "anthropic", "anthropic", 40)
        assert su.execute("SELECT array_agg(cost_usd::text ORDER BY cost_usd NULLS LAST) FROM app.raw").fetchone()[0] == ["0", "0.000035", None]
        assert one(su, "SELECT sum(requests) FROM app.hist_daily") == 40
        assert one(su, "SELECT count(*) FROM llm_cost.retention_runs") >= 2
