"""The retention background worker (llm_cost preloaded in the scratch cluster)."""
import re
import time
import uuid

import psycopg
import pytest

from conftest import CLUSTER, admin, dsn, one, set_worker_fast, wait_for


@pytest.fixture(scope="module", autouse=True)
def fast_worker():
    set_worker_fast(True)
    with admin() as c:
        c.execute("ALTER SYSTEM SET llm_cost.retention_batch_size = 5000")
        c.execute("SELECT pg_reload_conf()")
    yield
    set_worker_fast(False)
    with admin() as c:
        c.execute("ALTER SYSTEM RESET llm_cost.retention_batch_size")
        c.execute("SELECT pg_reload_conf()")


def fill(c, old, new, tenant="t"):
    c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens)
                 SELECT now() - interval '200 days' - (g %% 50) * interval '1 day', %s, 'u' || (g %% 10), 'gpt-4o-mini', 1000, 100
                   FROM generate_series(1, %s) g""", (tenant, old))
    c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens)
                 SELECT now() - (g %% 20) * interval '1 hour', %s, 'u' || (g %% 10), 'gpt-4o-mini', 1000, 100
                   FROM generate_series(1, %s) g""", (tenant, new))


def test_launcher_is_running():
    with admin() as c:
        assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llm_cost retention launcher'") == 1)


def test_worker_purges_old_rows_keeps_new_rows_and_rollups(connect):
    c = connect()
    fill(c, 20000, 500)
    before = c.execute("SELECT sum(requests), sum(cost_usd) FROM llm_cost.usage_daily").fetchone()
    c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'") == 0)
    assert one(c, "SELECT count(*) FROM llm_cost.usage_events") == 500
    assert c.execute("SELECT sum(requests), sum(cost_usd) FROM llm_cost.usage_daily").fetchone() == before
    assert wait_for(lambda: one(c, "SELECT sum(rows_deleted) FROM llm_cost.retention_runs WHERE run_by = 'worker'") == 20000)
    assert one(c, "SELECT count(*) FROM llm_cost.retention_runs WHERE error IS NOT NULL") == 0
    c.execute("SELECT llm_cost.drop_retention('llm_cost.usage_events')")


def test_database_that_creates_the_extension_later_is_served():
    name = "it_late_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {name}")
    try:
        time.sleep(2)  # a few rounds without the extension
        with psycopg.connect(dsn(name), autocommit=True) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost")
            fill(c, 3000, 10)
            c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '30 days')")
            assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events") == 10)
            # Dropping the extension: the database is left alone, and can itself be dropped.
            c.execute("DROP EXTENSION llm_cost")
    finally:
        with admin() as a:
            # Without FORCE: no worker may keep the database busy between runs.
            assert wait_for(lambda: _try_drop(a, name), timeout=20)


def _try_drop(a, name):
    try:
        a.execute(f"DROP DATABASE IF EXISTS {name}")
        return True
    except psycopg.errors.ObjectInUse:
        return False


def test_sigterm_stops_a_large_purge_promptly_and_the_next_run_finishes(connect):
    c = connect()
    with admin() as a:
        a.execute("ALTER SYSTEM SET llm_cost.retention_batch_size = 500")
        a.execute("SELECT pg_reload_conf()")
    fill(c, 150000, 100, tenant="big")
    c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')")
    # Wait until a worker is purging this database.
    assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events") < 140000, timeout=30, step=0.05)
    pid = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llm_cost retention worker' AND datname = current_database()")
    assert pid is not None
    t0 = time.monotonic()
    c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid) == 0, timeout=5, step=0.02)
    stopped_in = time.monotonic() - t0
    assert stopped_in < 1.0, stopped_in
    remaining = one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'")
    assert remaining > 0  # it really was interrupted mid-purge
    with admin() as a:
        a.execute("ALTER SYSTEM SET llm_cost.retention_batch_size = 20000")
        a.execute("SELECT pg_reload_conf()")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'") == 0, timeout=60)
    assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'big'") == 100
    c.execute("SELECT llm_cost.drop_retention('llm_cost.usage_events')")


def test_failing_and_dropped_tables_do_not_break_the_worker(connect):
    c = connect()
    c.execute("CREATE TABLE doomed (created_at timestamptz, model text, input_tokens int, output_tokens int, cost_usd numeric)")
    c.execute("SELECT llm_cost.track('doomed')")
    c.execute("SELECT llm_cost.set_retention('doomed', '1 day')")
    c.execute("DROP TABLE doomed")
    assert one(c, "SELECT count(*) FROM llm_cost.retention_policies WHERE log_table::text = 'doomed'") == 0
    # A table whose purge fails: the error is recorded, the next run tries again.
    c.execute("CREATE TABLE stubborn (created_at timestamptz, model text, input_tokens int, output_tokens int, cost_usd numeric)")
    c.execute("SELECT llm_cost.track('stubborn')")
    c.execute("INSERT INTO stubborn VALUES (now() - interval '10 days', 'gpt-4o', 1, 1)")
    c.execute("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'not today'; END $$;
                 CREATE TRIGGER refuse BEFORE DELETE ON stubborn FOR EACH ROW EXECUTE FUNCTION refuse()""")
    c.execute("SELECT llm_cost.set_retention('stubborn', '1 day')")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.retention_runs WHERE table_name = 'public.stubborn' AND error LIKE '%not today%'") >= 1)
    c.execute("DROP TRIGGER refuse ON stubborn")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM stubborn") == 0)
    # (the run is recorded after its last batch commits: the rows may be gone a moment before)
    assert wait_for(lambda: one(c, "SELECT error IS NULL FROM llm_cost.retention_last_runs WHERE table_name = 'public.stubborn'") is True)
    c.execute("DROP TABLE stubborn")


def _purge_wal(c, tenant, rows):
    """WAL bytes the whole cluster wrote while the worker purged `rows` old rows of `tenant`
    (their pages last written before a checkpoint, as old rows are)."""
    fill(c, rows, 10, tenant=tenant)
    c.execute("CHECKPOINT")
    start = one(c, "SELECT pg_current_wal_insert_lsn()")
    c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'") == 0, timeout=60)
    wal = one(c, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)::bigint", start)
    c.execute("SELECT llm_cost.drop_retention('llm_cost.usage_events')")
    return wal


def test_the_purge_compresses_its_own_wal_where_the_server_does_not(connect):
    """A purge first touches every page of old rows after a checkpoint: full-page images, most
    of its WAL. With `llm_cost.retention_wal_compression` set (opt-in) the worker compresses them
    (its own session only) where the server's wal_compression is off; with it off (the default)
    they stay as they are."""
    c = connect()
    # Nothing else may write WAL meanwhile: no autovacuum of this table (the earlier tests of
    # this module left dead rows in it), and none still running in this database.
    c.execute("ALTER TABLE llm_cost.usage_events SET (autovacuum_enabled = off)")
    assert wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                                   "AND datname = current_database()") == 0, timeout=60)
    c.execute("VACUUM llm_cost.usage_events")
    algo = "lz4" if one(c, "SELECT 'lz4' = ANY (enumvals) FROM pg_catalog.pg_settings WHERE name = 'wal_compression'") else "pglz"
    assert one(c, "SHOW wal_compression") == "off"
    try:
        with admin() as a:
            assert one(a, "SHOW llm_cost.retention_wal_compression") == "off"  # the default
        plain = _purge_wal(c, "walplain", 40000)
        with admin() as a:
            a.execute(f"ALTER SYSTEM SET llm_cost.retention_wal_compression = {algo}")
            a.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        packed = _purge_wal(c, "walpacked", 40000)
    finally:
        c.execute("ALTER TABLE llm_cost.usage_events RESET (autovacuum_enabled)")
        with admin() as a:
            a.execute("ALTER SYSTEM RESET llm_cost.retention_wal_compression")
            a.execute("SELECT pg_reload_conf()")
    assert plain > 3_000_000, plain  # the purge's page images are there to compress
    assert packed < 0.7 * plain, (packed, plain)
    # The server's setting, and every other session's, is untouched.
    assert one(c, "SHOW wal_compression") == "off"
    with admin() as a:
        assert one(a, "SHOW wal_compression") == "off"


def test_a_wal_compression_this_server_cannot_take_leaves_the_purge_as_it_was(connect):
    """A value `wal_compression` refuses (a typo, or an algorithm this build lacks) is a WARNING
    in the worker's log: the purge runs uncompressed and records no error."""
    c = connect()
    log = CLUSTER / "run" / "postgres.log"
    log_from = log.stat().st_size
    try:
        with admin() as a:
            a.execute("ALTER SYSTEM SET llm_cost.retention_wal_compression = 'lz5'")
            a.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        fill(c, 3000, 7, tenant="typo")
        since = one(c, "SELECT now()")
        c.execute("SELECT llm_cost.set_retention('llm_cost.usage_events', '90 days')")
        assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at < now() - interval '90 days'") == 0)
        assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'typo'") == 7
        assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.retention_runs WHERE run_by = 'worker' AND started_at >= %s", since) > 0)
        assert one(c, "SELECT count(*) FROM llm_cost.retention_runs WHERE started_at >= %s AND error IS NOT NULL", since) == 0
        with open(log, "rb") as f:
            f.seek(log_from)
            text = f.read().decode(errors="replace")
        assert re.search(r'WARNING:\s+invalid value for parameter "wal_compression": "lz5"', text), text[-2000:]
        c.execute("SELECT llm_cost.drop_retention('llm_cost.usage_events')")
    finally:
        with admin() as a:
            a.execute("ALTER SYSTEM RESET llm_cost.retention_wal_compression")
            a.execute("SELECT pg_reload_conf()")
