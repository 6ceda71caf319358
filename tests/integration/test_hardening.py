"""Hardening (issue #13) checks that need several sessions, the worker, the launcher, the
installed files or a real commit: the scratch cluster of scripts/test.sh (llm_cost preloaded)."""
import difflib
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from conftest import ROOT, admin, dsn, one, port, set_worker_fast, wait_for

CURRENT_VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)

LAUNCHER = "llm_cost retention launcher"


@pytest.fixture
def fast_worker():
    set_worker_fast(True)
    yield
    set_worker_fast(False)


def test_worker_purges_as_the_table_owner(connect, fast_worker):
    """Item 2, through the background worker (a superuser): the owner's BEFORE DELETE trigger
    runs as the owner, so its ALTER ROLE ... SUPERUSER never runs with the worker's rights."""
    c = connect()
    role = "it_evil_" + uuid.uuid4().hex[:6]
    c.execute(f"CREATE ROLE {role} NOLOGIN")
    c.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    c.execute(f"SET ROLE {role}")
    c.execute(f"""CREATE TABLE {role}.calls (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric);
                  CREATE TABLE {role}.seen (who text);
                  CREATE FUNCTION {role}.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
                  BEGIN
                      INSERT INTO {role}.seen VALUES (current_user);
                      IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                          EXECUTE 'ALTER ROLE {role} SUPERUSER';
                      END IF;
                      RETURN OLD;
                  END $f$;
                  CREATE TRIGGER grab BEFORE DELETE ON {role}.calls FOR EACH ROW EXECUTE FUNCTION {role}.grab();
                  SELECT llm_cost.track('{role}.calls');
                  INSERT INTO {role}.calls SELECT now() - interval '10 days', 'gpt-4o', 1, 1 FROM generate_series(1, 3);
                  INSERT INTO {role}.calls VALUES (now(), 'gpt-4o', 1, 1);""")
    # The owner sets its own policy (item 3: no superuser needed).
    c.execute(f"SELECT llm_cost.set_retention('{role}.calls', '1 day')")
    c.execute("RESET ROLE")
    assert wait_for(lambda: one(c, f"SELECT count(*) FROM {role}.calls") == 1)
    assert one(c, f"SELECT string_agg(DISTINCT who, ',') FROM {role}.seen") == role
    assert one(c, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", role) is False
    assert wait_for(lambda: one(c, f"SELECT rows_deleted FROM llm_cost.retention_last_runs WHERE table_name = '{role}.calls'") == 3)
    c.execute(f"DROP SCHEMA {role} CASCADE")
    c.execute(f"DROP ROLE {role}")


def test_launcher_holds_no_database_open():
    """Item 16: the launcher is connected to no database (DROP DATABASE postgres works, and a
    cluster without that database keeps its launcher)."""
    with admin() as c:
        assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s", LAUNCHER) == 1)
        assert one(c, "SELECT datid IS NULL FROM pg_stat_activity WHERE backend_type = %s", LAUNCHER) is True
    # A database named postgres can go and come back while the launcher runs.
    with admin("template1") as t:
        t.execute("DROP DATABASE postgres WITH (FORCE)")
        try:
            time.sleep(1)
            assert one(t, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s", LAUNCHER) == 1
        finally:
            t.execute("CREATE DATABASE postgres TEMPLATE template0")


def test_terminated_launcher_comes_back(fast_worker):
    """Item 18: pg_terminate_backend on the launcher: it returns after its restart interval."""
    with admin() as c:
        assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s", LAUNCHER) == 1)
        pid = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = %s", LAUNCHER)
        c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid) == 0, timeout=10)
        assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s AND pid <> %s",
                                    LAUNCHER, pid) == 1, timeout=30)


def test_partition_drop_never_queues_inserts_behind_a_reader(connect):
    """Item 14: a reader holds the table; retention's partition drop gives up within
    llm_cost.retention_lock_timeout (recorded), inserts go on, and the next run drops it."""
    # The background worker must not purge this table meanwhile (its round could drop the
    # partition between the reader's end and the second run_retention below).
    with admin() as a:
        a.execute("ALTER SYSTEM SET llm_cost.retention_enabled = off")
        a.execute("SELECT pg_reload_conf()")
    time.sleep(1.5)  # a worker round already under way ends
    try:
        _partition_drop_never_queues_inserts_behind_a_reader(connect)
    finally:
        with admin() as a:
            a.execute("ALTER SYSTEM RESET llm_cost.retention_enabled")
            a.execute("SELECT pg_reload_conf()")


def _partition_drop_never_queues_inserts_behind_a_reader(connect):
    c = connect()
    c.execute("""CREATE TABLE plog (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric)
                   PARTITION BY RANGE (created_at);
                 CREATE TABLE plog_2020 PARTITION OF plog FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
                 CREATE TABLE plog_now PARTITION OF plog FOR VALUES FROM ('2021-01-01') TO ('2200-01-01');
                 SELECT llm_cost.track('plog');
                 INSERT INTO plog VALUES ('2020-06-01', 'gpt-4o', 1, 1), (now(), 'gpt-4o', 1, 1);
                 SELECT llm_cost.set_retention('plog', '30 days');""")
    reader = connect(autocommit=False)
    reader.execute("SELECT count(*) FROM plog")  # holds AccessShareLock until it ends
    stop = threading.Event()
    waits = []

    def insert_loop():
        with psycopg.connect(c.info.dsn, autocommit=True) as w:
            while not stop.is_set():
                t = time.monotonic()
                w.execute("INSERT INTO plog VALUES (now(), 'gpt-4o', 1, 1)")
                waits.append(time.monotonic() - t)

    th = threading.Thread(target=insert_loop)
    th.start()
    try:
        time.sleep(0.3)
        runner = connect()
        runner.execute("SET statement_timeout = '20s'")
        t = time.monotonic()
        row = runner.execute("SELECT partitions_dropped, partitions_skipped, error FROM llm_cost.run_retention()").fetchone()
        took = time.monotonic() - t
        time.sleep(0.3)
    finally:
        stop.set()
        th.join()
    assert row == (0, 1, None), row
    assert took < 5, took
    assert len(waits) > 10 and max(waits) < 2.0, (len(waits), max(waits))
    assert one(c, "SELECT partitions_skipped FROM llm_cost.retention_last_runs WHERE table_oid = 'plog'::regclass") == 1
    assert one(c, "SELECT count(*) FROM pg_class WHERE relname = 'plog_2020'") == 1
    reader.rollback()
    assert c.execute("SELECT partitions_dropped, partitions_skipped FROM llm_cost.run_retention()").fetchone() == (1, 0)
    assert one(c, "SELECT count(*) FROM pg_class WHERE relname = 'plog_2020'") == 0
    c.execute("DROP TABLE plog")


def test_rebuild_in_the_transaction_that_inserted_straight_into_a_partition(connect):
    """Item 7: rows inserted straight into a partition, then rebuild_rollup, then COMMIT: each
    row counted once."""
    c = connect()
    c.execute("""CREATE TABLE pp (created_at timestamptz NOT NULL, team text, model text, input_tokens int, output_tokens int, cost_usd numeric)
                   PARTITION BY RANGE (created_at);
                 CREATE TABLE pp_2026 PARTITION OF pp FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
                 SELECT llm_cost.track('pp');
                 SELECT llm_cost.create_rollup('pp_daily', 'pp', 'day', '{team}');""")
    t = connect(autocommit=False)
    t.execute("INSERT INTO pp_2026 VALUES ('2026-03-01 10:00+00', 'a', 'gpt-4o', 1000000, 0), ('2026-03-02 10:00+00', 'b', 'gpt-4o', 0, 1000000)")
    t.execute("SELECT llm_cost.rebuild_rollup('pp_daily')")
    t.execute("INSERT INTO pp_2026 VALUES ('2026-03-01 11:00+00', 'a', 'gpt-4o', 1000000, 0)")
    t.commit()
    rows = c.execute("SELECT team, requests, cost_usd FROM pp_daily ORDER BY team").fetchall()
    assert [(r[0], r[1], str(r[2])) for r in rows] == [("a", 2, "5.0"), ("b", 1, "10")], rows
    truth = c.execute("SELECT team, count(*), sum(cost_usd) FROM pp GROUP BY team ORDER BY team").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == truth


def test_installing_never_rewrites_a_loaded_library_in_place(connect):
    """Item 19: scripts give the installed library a new file (a copy renamed over it) before
    cargo pgrx writes there, so running servers keep the file they mapped."""
    c = connect()
    libdir = subprocess.run(["/usr/bin/pg_config", "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
    lib = pathlib.Path(libdir) / "llm_cost.so"
    before = lib.stat()
    data = lib.read_bytes()
    subprocess.run(["bash", "-c", f"source '{ROOT}/scripts/common.sh' && detach_installed_library"], check=True)
    after = lib.stat()
    assert after.st_ino != before.st_ino
    assert lib.read_bytes() == data
    # The preloaded cluster is unharmed, old and new sessions alike.
    assert str(one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0)")) == "2.5"
    with admin() as a:
        assert str(one(a, "SELECT 1")) == "1"
    # Every script that installs detaches first.
    for script, install in (("scripts/test.sh", "&& cargo pgrx test"), ("scripts/common.sh", "&& cargo pgrx install")):
        text = (ROOT / script).read_text()
        assert text.index("detach_installed_library\n") < text.index(install), script


# --- upgrade: ALTER EXTENSION llm_cost UPDATE from 0.1.0 equals a fresh install ---------------

DESCRIBE = [
    ("functions", """SELECT p.oid::regprocedure::text, pg_get_function_result(p.oid), p.prosecdef, p.provolatile, p.proparallel,
                            p.proisstrict, p.proconfig::text, p.proacl::text, md5(p.prosrc), obj_description(p.oid, 'pg_proc')
                       FROM pg_proc p WHERE p.pronamespace = 'llm_cost'::regnamespace ORDER BY 1"""),
    ("relations", """SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text, c.reloptions::text,
                            pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'), c.relreplident
                       FROM pg_class c WHERE c.relnamespace = 'llm_cost'::regnamespace ORDER BY 1"""),
    ("columns", """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                          pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum), a.attacl::text, a.attgenerated, a.attidentity
                     FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                    WHERE c.relnamespace = 'llm_cost'::regnamespace ORDER BY 1, 2"""),
    ("constraints", """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                        WHERE connamespace = 'llm_cost'::regnamespace ORDER BY 1, 2"""),
    ("indexes", "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'llm_cost' ORDER BY 1, 2"),
    ("policies", """SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies
                     WHERE schemaname = 'llm_cost' ORDER BY 1, 2"""),
    ("views", """SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
                  WHERE c.relnamespace = 'llm_cost'::regnamespace AND c.relkind = 'v' ORDER BY 1"""),
    ("triggers", """SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled FROM pg_trigger t
                     JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND c.relnamespace = 'llm_cost'::regnamespace ORDER BY 1, 2"""),
    ("event triggers", "SELECT evtname, evtevent, evtfoid::regproc::text, evttags::text, evtenabled FROM pg_event_trigger ORDER BY 1"),
    ("extension", """SELECT extversion, (SELECT array_agg(x::regclass::text ORDER BY x::regclass::text) FROM unnest(extconfig) x)::text,
                            array_length(extcondition, 1) FROM pg_extension WHERE extname = 'llm_cost'"""),
    ("members", """SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
                    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
                      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'llm_cost') ORDER BY 1"""),
    # Shipped prices in effect now (an updated install also keeps the older prices as history).
    ("data", """SELECT 'model_prices', count(*)::text, md5(string_agg((p.provider, p.model, p.mode, p.min_input_tokens, p.service_tier,
                       p.input_usd_per_mtok, p.output_usd_per_mtok, p.cache_read_usd_per_mtok, p.cache_write_5m_usd_per_mtok,
                       p.cache_write_1h_usd_per_mtok, p.valid_to, p.source_url, p.data_from, p.origin, p.match_rule,
                       p.input_audio_usd_per_mtok, p.cache_read_audio_usd_per_mtok, p.output_audio_usd_per_mtok,
                       p.input_image_usd_per_mtok, p.cache_read_image_usd_per_mtok, p.output_image_usd_per_mtok,
                       p.web_search_usd_per_1k, p.request_usd_per_1k, p.time_of_day_from, p.time_of_day_to)::text, ','
                       ORDER BY p.provider, p.model, p.service_tier, p.min_input_tokens, p.valid_from, p.time_of_day_from NULLS FIRST))
                  FROM llm_cost.model_prices p WHERE p.valid_to > now()
                UNION ALL SELECT 'providers', count(*)::text, md5(string_agg(v::text, ',' ORDER BY v.provider)) FROM llm_cost.providers v
                UNION ALL SELECT 'model_aliases', count(*)::text, md5(string_agg(a::text, ',' ORDER BY a.alias)) FROM llm_cost.model_aliases a
                UNION ALL SELECT 'tracked_tables', count(*)::text, string_agg(concat_ws(' ', log_table, model_column, cost_column, cost_source_column, time_column, provider_column, tracked_by, service_tier_column), ',')
                            FROM llm_cost.tracked_tables
                UNION ALL SELECT 'rollups', count(*)::text, string_agg(concat_ws(' ', id, rollup, stripes, source, grain, group_by, time_zone, created_by), ',' ORDER BY id)
                            FROM llm_cost.rollups
                UNION ALL SELECT 'row_security', count(*)::text, string_agg(concat_ws(' ', rel, target, owner_column), ',' ORDER BY rel::text)
                            FROM llm_cost.row_security"""),
]


def describe(db):
    out = []
    with admin(db) as c:
        for name, sql in DESCRIBE:
            for row in c.execute(sql).fetchall():
                line = f"{name}: " + " | ".join("NULL" if v is None else str(v) for v in row)
                # The test build (cargo pgrx test) also installs its pg_tests in schema tests.
                if not line.startswith(("members: function tests.", "members: schema tests")):
                    out.append(line)
    return out


def install_base_script():
    """The 0.1.0 install script (releases since ship only update scripts from it), installed as
    the update-script generator installs it (scripts/gen_upgrade.py)."""
    spec = importlib.util.spec_from_file_location("gen_upgrade", ROOT / "scripts" / "gen_upgrade.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.install_base_script(current=CURRENT_VERSION)


def test_a_0_4_0_database_with_budgets_works_under_the_new_library_before_its_update():
    """Between installing this library and ALTER EXTENSION UPDATE, a database keeps the SQL of
    0.4.0: budgeted writes, their alerts, check_budget and unpriced_models keep working (the
    library must not call SQL that only 0.5.0 has), and then the update."""
    install_base_script()
    db = "it_04_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {db}")
    try:
        with admin(db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost VERSION '0.4.0'")
            c.execute("""CREATE TABLE public.b_log (at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                                    input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
                         SELECT llm_cost.track('public.b_log', time_column => 'at');
                         SELECT llm_cost.create_rollup('public.b_daily', 'public.b_log', 'day', '{team}');
                         SELECT llm_cost.create_budget('b_cap', 'public.b_daily', 2, '{1}');""")
            c.execute("INSERT INTO public.b_log (team, model, input_tokens, output_tokens) VALUES ('x', 'gpt-4o', 1000000, 0), ('x', 'b-unknown', 1, 1)")
            assert one(c, "SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'b_cap'") == 1
            assert str(one(c, """SELECT spent_usd FROM llm_cost.check_budget('b_cap', '{"team": "x"}')""")) == "2.5"
            assert one(c, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'b-unknown'") == 1
            c.execute("ALTER EXTENSION llm_cost UPDATE")
            assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'") == CURRENT_VERSION
            c.execute("INSERT INTO public.b_log (team, model, input_tokens, output_tokens) VALUES ('x', 'gpt-4o', 1000000, 0), ('x', 'b-unknown', 1, 1)")
            assert str(one(c, """SELECT spent_usd FROM llm_cost.check_budget('b_cap', '{"team": "x"}')""")) == "5.0"
            assert one(c, "SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'b_cap'") == 1
            assert one(c, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'b-unknown'") == 2
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_update_from_0_5_0_keeps_stored_costs_and_reprice_applies_the_new_rules():
    """Issue #27: the update to the accounting release re-prices nothing by itself (logged rows
    and their rollups keep their cost); llm_cost.reprice() then applies the new rules: the hour's
    time-of-day price, cache writes at the cache-write price, web-search fees."""
    install_base_script()
    db = "it_05_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {db}")
    try:
        with admin(db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost VERSION '0.5.0'")
            c.execute("""CREATE TABLE public.a_log (at timestamptz NOT NULL, model text, input_tokens int, output_tokens int,
                                                    cache_read_tokens int, cache_write_tokens int, usage jsonb, cost_usd numeric, cost_source text);
                         SELECT llm_cost.track('public.a_log', time_column => 'at', usage_column => 'usage',
                                               cache_read_tokens_column => 'cache_read_tokens', cache_write_tokens_column => 'cache_write_tokens');
                         SELECT llm_cost.create_rollup('public.a_daily', 'public.a_log', 'day', '{model}');""")
            # Rows as 0.5.0 priced them (this library prices by the new rules already: the costs
            # 0.5.0 stored are written with the price trigger off, the rollup trigger on): the
            # DeepSeek row at its one all-day price, the cache writes as input, no search fee.
            c.execute("ALTER TABLE public.a_log DISABLE TRIGGER llm_cost_price")
            c.execute("""INSERT INTO public.a_log (at, model, usage, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, cost_source) VALUES
                ('2026-12-01 14:00+00', 'deepseek-v4-pro', '{"prompt_tokens": 1000000, "completion_tokens": 1000000, "prompt_cache_hit_tokens": 0}', 1000000, 1000000, 0, 0, 5.28, 'estimated'),
                ('2026-12-01 12:00+00', 'gpt-5.6-terra', '{"prompt_tokens": 300000, "completion_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 100000, "cache_write_tokens": 150000}}', 200000, 1000, 100000, 0, 0.858, 'estimated'),
                ('2026-12-01 12:00+00', 'claude-sonnet-4-5', '{"input_tokens": 1000, "output_tokens": 100, "server_tool_use": {"web_search_requests": 2}}', 1000, 100, 0, 0, 0.0045, 'estimated')""")
            c.execute("ALTER TABLE public.a_log ENABLE TRIGGER llm_cost_price")
            before = c.execute("SELECT model, cost_usd::text, cost_source FROM public.a_log ORDER BY model").fetchall()
            sums = c.execute("SELECT model, cost_usd::text FROM public.a_daily ORDER BY model").fetchall()
            assert dict(sums) == {"deepseek-v4-pro": "5.28", "gpt-5.6-terra": "0.858", "claude-sonnet-4-5": "0.0045"}, sums
            # This library under the 0.5.0 declarations (9 arguments, the same symbol): estimates work.
            assert str(one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0)")) == "2.5"
            assert str(one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0, service_tier => 'batch', at => '2026-12-01')")) == "1.25"
            assert one(c, "SELECT llm_cost.estimate_cost('gpt-4o', NULL, 0)") is None
            c.execute("ALTER EXTENSION llm_cost UPDATE")
            assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'") == CURRENT_VERSION
            assert c.execute("SELECT model, cost_usd::text, cost_source FROM public.a_log ORDER BY model").fetchall() == before
            assert c.execute("SELECT model, cost_usd::text FROM public.a_daily ORDER BY model").fetchall() == sums
            # A new row is priced by the new rules at once; the old ones when the DBA asks.
            c.execute("""INSERT INTO public.a_log (at, model, usage) VALUES
                ('2026-12-02 14:00+00', 'deepseek-v4-pro', '{"prompt_tokens": 1000000, "completion_tokens": 1000000}')""")
            assert str(one(c, "SELECT cost_usd FROM public.a_log WHERE at = '2026-12-02 14:00+00'")) == "2.64"
            c.execute("SELECT llm_cost.reprice('public.a_log')")
            after = dict(c.execute("SELECT model || ' ' || at::date, cost_usd::text FROM public.a_log").fetchall())
            assert after == {"deepseek-v4-pro 2026-12-01": "2.64", "deepseek-v4-pro 2026-12-02": "2.64",
                             "gpt-5.6-terra 2026-12-01": "1.008", "claude-sonnet-4-5 2026-12-01": "0.0245"}, after
            assert one(c, """SELECT count(*) FROM (SELECT model, sum(cost_usd) s FROM public.a_log GROUP BY model) g
                               JOIN (SELECT model, sum(cost_usd) s FROM public.a_daily GROUP BY model) r USING (model)
                              WHERE g.s = r.s""") == 3
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_update_from_0_1_0_equals_a_fresh_install():
    install_base_script()
    up, fresh = "it_up_" + uuid.uuid4().hex[:8], "it_fresh_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {up}")
        a.execute(f"CREATE DATABASE {fresh}")
    try:
        with admin(up) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost VERSION '0.1.0'")
            # A shipped price that the new catalog changes (gpt-4o at 9 instead of 2.5): the update
            # keeps it as history until the release date.
            c.execute("""ALTER TABLE llm_cost.model_prices DISABLE TRIGGER model_prices_protect_shipped;
                         UPDATE llm_cost.model_prices SET input_usd_per_mtok = 9 WHERE origin = 'llm_cost' AND model = 'gpt-4o';
                         ALTER TABLE llm_cost.model_prices ENABLE TRIGGER model_prices_protect_shipped;""")
            # Something in it already: a tracked table with a rollup, rows, a policy.
            c.execute("""INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 0);
                         INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, note)
                              VALUES ('acme', 'acme-house', 1, 2, 'negotiated');
                         INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('house-llm', 'acme-house');
                         CREATE TABLE public.app_log (created_at timestamptz NOT NULL DEFAULT now(), model text, input_tokens int, output_tokens int, cost_usd numeric);
                         SELECT llm_cost.track('public.app_log');
                         SELECT llm_cost.create_rollup('public.app_daily', 'public.app_log', 'day', '{}');
                         SELECT llm_cost.set_retention('public.app_log', '30');""")
            # ('30' was 30 seconds before 0.6.0: the update names such a policy in a WARNING.)
            warnings = []
            c.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.message_primary, d.message_hint)))
            c.execute("ALTER EXTENSION llm_cost UPDATE")
            assert any(w[0] == "WARNING" and "public.app_log" in w[1] and "00:00:30" in w[1] and "'30 days'" in (w[2] or "")
                       for w in warnings), warnings
            c.execute("SELECT llm_cost.set_retention('public.app_log', '90 days')")
            assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'") == CURRENT_VERSION
            # Your prices and aliases are kept and still win; the logged row keeps its cost.
            assert str(one(c, "SELECT llm_cost.estimate_cost('house-llm', 1000000, 1000000)")) == "3"
            assert str(one(c, "SELECT cost_usd FROM llm_cost.usage_events WHERE model = 'gpt-4o'")) == "9"
            # The shipped prices are the new catalog's; a changed one keeps its old price as history.
            assert one(c, "SELECT count(*) FROM llm_cost.model_prices WHERE origin = 'llm_cost' AND valid_to = 'infinity'") > 2000
            assert str(one(c, "SELECT llm_cost.estimate_cost('mistralai/mistral-large', 1000000, 1000000)")) == "8"
            assert str(one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0, at => '2026-11-01')")) == "9"
            assert str(one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0, at => '2026-12-02')")) == "2.5"
            assert one(c, """SELECT count(*) FROM llm_cost.model_prices WHERE origin = 'llm_cost' AND id > 900000
                              AND valid_to = '2026-12-02 00:00:00+00' AND model = 'gpt-4o'""") == 1
            # Every table tracked before keeps its trigger working and its mapping.
            assert one(c, "SELECT count(*) FROM llm_cost.tracked_tables") == 2
            # (the 0.1.0 -> 0.2.0 step re-made its trigger with the time zone argument, with this library)
            assert one(c, "SELECT tgnargs FROM pg_trigger WHERE tgname = 'llm_cost_price' AND tgrelid = 'public.app_log'::regclass") == 11
            c.execute("""DELETE FROM llm_cost.model_aliases; DELETE FROM llm_cost.model_prices WHERE origin = 'user';""")
            # The updated install works: rows priced, sums kept, retention runs as the owner.
            c.execute("INSERT INTO public.app_log (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1000000, 0)")
            assert str(one(c, "SELECT cost_usd FROM public.app_daily")) == "2.5"
            assert one(c, "SELECT count(*) FROM llm_cost.run_retention() WHERE error IS NULL") == 1
            assert str(one(c, "SELECT sum(cost_usd) FROM llm_cost.usage_daily")) == "9"
            # Budgets (0.4.0) work on a rollup made before the update.
            c.execute("SELECT llm_cost.create_budget('up_cap', 'public.app_daily', 2, '{1}')")
            c.execute("INSERT INTO public.app_log (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 0)")
            assert one(c, "SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'up_cap'") == 1
            assert one(c, "SELECT state FROM llm_cost.budget_status WHERE budget = 'up_cap'") == "exceeded"
            c.execute("SELECT llm_cost.drop_budget('up_cap')")
            # 0.4.0: rows logged before have their priced model; your rollup views (not members of
            # the extension) were given the NULL-when-unpriced cost and stay yours.
            assert one(c, "SELECT string_agg(DISTINCT priced_model, ',') FROM llm_cost.usage_events") == "gpt-4o"
            assert "unpriced_requests" in one(c, "SELECT pg_get_viewdef('public.app_daily')").split("CASE")[1]
            assert one(c, "SELECT count(*) FROM pg_depend WHERE objid = 'public.app_daily'::regclass AND deptype = 'e'") == 0
            # 0.5.0: unpriced_models reads every node's counts (one here) and still lists this one's.
            c.execute("INSERT INTO public.app_log (model, input_tokens, output_tokens) VALUES ('up-unknown-model', 1, 1)")
            assert one(c, "SELECT rows FROM llm_cost.unpriced_models WHERE model = 'up-unknown-model'") == 1
            c.execute("""SELECT llm_cost.drop_retention('public.app_log'); SELECT llm_cost.untrack('public.app_log');
                         DROP TABLE public.app_log; DELETE FROM llm_cost.usage_events; TRUNCATE llm_cost.retention_runs;""")
        with admin(fresh) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost")
        a_desc, b_desc = describe(up), describe(fresh)
        diff = list(difflib.unified_diff(b_desc, a_desc, "fresh", "updated", lineterm="", n=0))
        assert not diff, "\n".join(diff[:80])
        # And what pg_dump --schema-only writes for each (the extension and its configuration).
        dumps = []
        for db in (fresh, up):
            out = subprocess.run(["/usr/bin/pg_dump", "--schema-only", "-h", "127.0.0.1", "-p", str(port()), "-U", "postgres", db],
                                 capture_output=True, text=True, check=True).stdout
            # (\restrict lines carry a random key per dump)
            dumps.append([l for l in out.splitlines() if not l.startswith(("--", "\\restrict", "\\unrestrict")) and l.strip()])
        diff = list(difflib.unified_diff(dumps[0], dumps[1], "fresh", "updated", lineterm="", n=0))
        assert not diff, "\n".join(diff[:80])
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {up} WITH (FORCE)")
            a.execute(f"DROP DATABASE IF EXISTS {fresh} WITH (FORCE)")


def test_logical_replication_subscriber_ends_with_the_same_rollups():
    """Item 13: CREATE PUBLICATION ... FOR ALL TABLES on a database with llm_cost; a subscriber
    (another database of this cluster, slot made beforehand) ends with the same rollups after
    inserts from several sessions, reprice, rebuild_rollup and retention on the publisher."""
    tag = uuid.uuid4().hex[:8]
    pub_db, sub_db, slot = f"it_pub_{tag}", f"it_sub_{tag}", f"it_slot_{tag}"
    with admin() as a:
        a.execute(f"CREATE DATABASE {pub_db}")
        a.execute(f"CREATE DATABASE {sub_db}")
    opened = []

    def session(db):
        c = admin(db)
        opened.append(c)
        c.execute("SET client_min_messages = warning")
        return c

    try:
        pub, s = session(pub_db), session(sub_db)
        assert one(pub, "SHOW wal_level") == "logical"
        pub.execute("CREATE EXTENSION llm_cost")
        s.execute("CREATE EXTENSION llm_cost")
        pub.execute(f"CREATE PUBLICATION it_pub_{tag} FOR ALL TABLES")
        pub.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        s.execute(f"""CREATE SUBSCRIPTION it_sub_{tag} CONNECTION 'host=127.0.0.1 port={pub.info.port} dbname={pub_db} user=postgres'
                      PUBLICATION it_pub_{tag} WITH (create_slot = false, slot_name = '{slot}', copy_data = false)""")
        # Writers on the publisher: several sessions, the same groups.
        for _ in range(3):
            w = session(pub_db)
            w.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens)
                         SELECT now() - (g % 5) * interval '1 day', 't' || (g % 2), 'u' || (g % 3), 'gpt-4o', 1000 * g, 10 * g
                           FROM generate_series(1, 200) g""")
            w.execute("INSERT INTO llm_cost.usage_events (occurred_at, model, input_tokens, output_tokens) VALUES (now() - interval '400 days', 'it-later-model', 5, 5)")
        # Reprice (UPDATEs through the triggers), rebuild (DELETE + INSERT), retention (DELETE).
        pub.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'it-later-model', 1, 2)")
        assert pub.execute("SELECT rows_changed FROM llm_cost.reprice('llm_cost.usage_events')").fetchone()[0] == 3
        pub.execute("SELECT llm_cost.rebuild_rollup('llm_cost.usage_daily', now() - interval '2 days', now())")
        pub.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')")
        assert one(pub, "SELECT rows_deleted FROM llm_cost.run_retention()") == 3
        # Folding closed periods (DELETE + INSERT of rows of sums) replicates; the subscriber's
        # own copy is refused a fold of its own (it would lose the publisher's later changes).
        assert one(pub, "SELECT llm_cost.fold_rollup('llm_cost.usage_daily')") > 0
        w.execute("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens) "
                  "VALUES (now() - interval '2 days', 't1', 'u1', 'gpt-4o', 7, 7)")
        assert one(pub, "SELECT llm_cost.fold_rollup('llm_cost.usage_daily')") > 0
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            s.execute("SELECT llm_cost.fold_rollup('llm_cost.usage_daily')")
        want = pub.execute("SELECT * FROM llm_cost.usage_daily ORDER BY row_key").fetchall()
        want_m = pub.execute("SELECT * FROM llm_cost.usage_monthly ORDER BY row_key").fetchall()
        assert len(want) > 10
        lsn = one(pub, "SELECT pg_current_wal_lsn()::text")
        assert wait_for(lambda: one(pub, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s", lsn, slot)
                        and s.execute("SELECT * FROM llm_cost.usage_daily ORDER BY row_key").fetchall() == want, timeout=60)
        assert one(s, f"SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'it_sub_{tag}'") == 0
        assert s.execute("SELECT * FROM llm_cost.usage_monthly ORDER BY row_key").fetchall() == want_m
        assert one(s, "SELECT count(*) FROM llm_cost.usage_events") == 601
        s.execute(f"ALTER SUBSCRIPTION it_sub_{tag} DISABLE")
        s.execute(f"ALTER SUBSCRIPTION it_sub_{tag} SET (slot_name = NONE)")
        s.execute(f"DROP SUBSCRIPTION it_sub_{tag}")
    finally:
        for c in opened:
            c.close()
        with admin() as a:
            a.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active", (slot,))
            a.execute(f"DROP DATABASE IF EXISTS {sub_db} WITH (FORCE)")
            a.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            a.execute(f"DROP DATABASE IF EXISTS {pub_db} WITH (FORCE)")


def test_prepared_transactions_never_make_writers_wait(connect):
    """Item 12: after PREPARE TRANSACTION of an insert, the next inserts into the same group (by
    the preparing session itself, and by a later session in the same backend slot) do not wait
    for it; COMMIT PREPARED and ROLLBACK PREPARED leave exact totals. Once the prepared
    transaction has ended, the slot's own row takes the sums again: no row per statement."""
    c = connect()
    assert int(one(c, "SHOW max_prepared_transactions")) > 0
    c.execute("CREATE TABLE xa_log (created_at timestamptz NOT NULL DEFAULT '2026-11-02 10:00+00', team text, model text, input_tokens int, output_tokens int, cost_usd numeric)")
    c.execute("SELECT llm_cost.track('xa_log'); SELECT llm_cost.create_rollup('xa_daily', 'xa_log', 'day', '{team}')")
    ins = "INSERT INTO xa_log (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1000000, 0)"
    stripes = "SELECT array_agg(stripe ORDER BY stripe) FROM xa_daily_stripes"
    for i, finish in enumerate(["COMMIT PREPARED", "ROLLBACK PREPARED"]):
        gid = f"it_xa_{uuid.uuid4().hex[:8]}"
        a = connect()
        a.execute("SET statement_timeout = '5s'")
        slot = one(a, "SELECT llm_cost._stripe()")
        a.execute("BEGIN")
        a.execute(ins)
        a.execute(f"PREPARE TRANSACTION '{gid}'")
        # The preparing session itself, at once: its group's row is held, another stripe takes it.
        a.execute(ins)
        assert one(a, "SELECT llm_cost._stripe()") == slot
        assert one(c, f"SELECT count(*) FROM xa_daily_stripes WHERE stripe % 262144 = {slot} AND stripe > {slot}") >= 1
        a.close()
        # Whoever gets that backend slot next.
        found = False
        for _ in range(10):
            b = connect()
            b.execute("SET statement_timeout = '5s'")
            if one(b, "SELECT llm_cost._stripe()") == slot:
                b.execute(ins)
                found = True
                break
        assert found, "no session got the slot back"
        c.execute(f"{finish} '{gid}'")
        # Committed: the prepared row and the two later ones; rolled back: only the later two.
        assert one(c, "SELECT count(*) FROM xa_log") == [3, 10][i]
        truth = c.execute("SELECT count(*), sum(cost_usd) FROM xa_log").fetchone()
        assert c.execute("SELECT sum(requests), sum(cost_usd) FROM xa_daily").fetchone() == truth
        # Prepared transactions that end at once (two-phase commit as Citus runs it): the slot's
        # own row is updated every time, no row is added.
        before = one(c, stripes)
        for _ in range(5):
            b.execute("BEGIN")
            b.execute(ins)
            gid2 = f"it_xa_{uuid.uuid4().hex[:8]}"
            b.execute(f"PREPARE TRANSACTION '{gid2}'")
            c.execute(f"COMMIT PREPARED '{gid2}'")
        assert one(c, stripes) == before
        b.close()
    assert one(c, "SELECT count(*) FROM xa_log") == 3 + 2 + 10
    truth = c.execute("SELECT count(*), sum(cost_usd) FROM xa_log").fetchone()
    assert c.execute("SELECT sum(requests), sum(cost_usd) FROM xa_daily").fetchone() == truth
    c.execute("DROP TABLE xa_log")


def test_writers_bulk_load_with_copy_without_reading_rows(connect):
    """Item 5: llm_cost_writer COPYs into llm_cost.usage_events (row-level security on) from the
    client; rows are priced and summed, and processed as the writer (not the owner); the writer
    still reads nothing, and COPY stays refused where it could differ from INSERT."""
    c = connect()
    tag = uuid.uuid4().hex[:6]
    w, nobody = f"it_w_{tag}", f"it_n_{tag}"
    c.execute(f"CREATE ROLE {w} LOGIN IN ROLE llm_cost_writer; CREATE ROLE {nobody} LOGIN")
    try:
        c.execute("DELETE FROM llm_cost.usage_events")
        before = one(c, "SELECT coalesce(sum(requests), 0) FROM llm_cost.usage_daily")
        writer = connect(user=w)
        data = "".join(f"t1\tu{i % 3}\tgpt-4o\t{1000 * i}\t{i}\n" for i in range(1, 501))
        with writer.cursor() as cur:
            with cur.copy("COPY llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write(data)
        assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE cost_source = 'estimated' AND cost_usd = llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, occurred_at)") == 500
        assert one(c, "SELECT sum(requests) FROM llm_cost.usage_daily") == before + 500
        assert one(writer, "SELECT current_user") == w
        # Still no reading.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            writer.execute("SELECT count(*) FROM llm_cost.usage_events")
        # Where COPY could differ from INSERT it stays refused: a WHERE clause of the
        # application's, a server-side file.
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.FeatureNotSupported)):
            with writer.cursor() as cur:
                with cur.copy("COPY llm_cost.usage_events (model, input_tokens, output_tokens) FROM STDIN WHERE input_tokens > 0") as cp:
                    cp.write("gpt-4o\t1\t1\n")
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.FeatureNotSupported)):
            writer.execute("COPY llm_cost.usage_events (model, input_tokens, output_tokens) FROM '/etc/hostname'")
        # A role without INSERT: refused as before.
        other = connect(user=nobody)
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.FeatureNotSupported)):
            with other.cursor() as cur:
                with cur.copy("COPY llm_cost.usage_events (model, input_tokens, output_tokens) FROM STDIN") as cp:
                    cp.write("gpt-4o\t1\t1\n")
        # Rows are processed as the writer: a default of current_user records the writer.
        c.execute(f"""CREATE TABLE rls_log (created_at timestamptz NOT NULL DEFAULT now(), by_whom name DEFAULT current_user,
                                            model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
                      SELECT llm_cost.track('rls_log');
                      SELECT llm_cost.enable_row_security('rls_log', 'by_whom');
                      GRANT INSERT ON rls_log TO {w};""")
        with writer.cursor() as cur:
            with cur.copy("COPY rls_log (model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write("gpt-4o\t1000000\t0\n")
        assert c.execute("SELECT by_whom::text, cost_usd::text FROM rls_log").fetchone() == (w, "2.5")
        # A restrictive INSERT policy: COPY could let rows through that INSERT refuses: refused.
        c.execute("CREATE POLICY only_small ON rls_log AS RESTRICTIVE FOR INSERT WITH CHECK (input_tokens < 10)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            with writer.cursor() as cur:
                with cur.copy("COPY rls_log (model, input_tokens, output_tokens) FROM STDIN") as cp:
                    cp.write("gpt-4o\t1000000\t0\n")
        c.execute("DROP TABLE rls_log")
    finally:
        c.execute("DELETE FROM llm_cost.usage_events")
        for conn_user in (w, nobody):
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (conn_user,))
        c.execute(f"DROP OWNED BY {w}; DROP ROLE {w}; DROP ROLE {nobody}")


def test_every_database_gets_its_turn_with_few_worker_slots():
    """Item 17: a cluster of its own with max_worker_processes = 4 (the launcher takes one: three
    workers per round) and 12 databases with policies: every database is purged within a few
    rounds, and the databases left over in a round are logged."""
    env = dict(os.environ, LLM_COST_CLUSTER=str(ROOT / "target" / "it-slots-cluster"),
               LLM_COST_CLUSTER_CONF="max_worker_processes = 4\nllm_cost.retention_naptime = 1\n"
                                     "llm_cost.retention_batch_delay = 0\nlog_min_messages = log")
    script = str(ROOT / "scripts" / "cluster.sh")
    port = int(subprocess.run([script, "start"], env=env, capture_output=True, text=True, check=True).stdout.strip())
    log = ROOT / "target" / "it-slots-cluster" / "run" / "postgres.log"

    def connect_to(db):
        return psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={db}", autocommit=True)

    try:
        names = [f"slots_{i:02d}" for i in range(12)]
        with connect_to("postgres") as a:
            for n in names:
                a.execute(f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")
                a.execute(f"CREATE DATABASE {n}")
        for n in names:
            with connect_to(n) as c:
                c.execute("SET client_min_messages = warning")
                c.execute("CREATE EXTENSION llm_cost")
                c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, model, input_tokens, output_tokens)
                             SELECT now() - interval '100 days', 'gpt-4o', 1, 1 FROM generate_series(1, 50)""")
                c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '30 days')")

        def purged():
            left = 0
            for n in names:
                with connect_to(n) as c:
                    left += one(c, "SELECT count(*) FROM llm_cost.usage_events")
            return left == 0

        assert wait_for(purged, timeout=60, step=1.0)
        assert "no free background worker slot (max_worker_processes) for database(s)" in log.read_text()
    finally:
        subprocess.run([script, "stop"], env=env, check=False)
        shutil.rmtree(ROOT / "target" / "it-slots-cluster", ignore_errors=True)
