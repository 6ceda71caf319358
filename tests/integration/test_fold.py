"""Folding the rows of sums of closed periods (llm_cost.fold_rollup and the background worker):
every sum stays what it was, one row per group is left, and neither writers nor the fold wait."""
import random
import threading
import time
import uuid

import psycopg
import pytest

from conftest import admin, dsn, one, set_worker_fast, wait_for

# The application's own log and rollup (names of its own), next to usage_events' two rollups.
SETUP = """
CREATE SCHEMA ops;
CREATE TABLE ops."Agent Calls" (id bigserial PRIMARY KEY, at timestamptz NOT NULL, squad text, model text NOT NULL,
                                input_tokens int NOT NULL, output_tokens int NOT NULL, cache_read_tokens int NOT NULL DEFAULT 0,
                                latency_ms int, error text, cost_usd numeric);
SELECT llm_cost.track('ops."Agent Calls"', time_column => 'at', cache_read_tokens_column => 'cache_read_tokens');
SELECT llm_cost.create_rollup('ops.squad_daily', 'ops."Agent Calls"', 'day', '{squad,model}');
"""

# The rollup against a GROUP BY over the raw rows, every column a writer fills.
MISMATCH = """
WITH truth AS (
    SELECT date_trunc('day', at, 'UTC') AS p, squad, model, count(*)::bigint AS n, sum(input_tokens)::bigint AS i,
           sum(output_tokens)::bigint AS o, sum(cache_read_tokens)::bigint AS cr, sum(cost_usd) AS cost,
           count(error)::bigint AS errors, coalesce(sum(cost_usd) FILTER (WHERE error IS NOT NULL), 0) AS error_cost,
           coalesce(sum(latency_ms), 0)::bigint AS lat, max(latency_ms)::bigint AS latmax,
           min(at) AS first_seen, max(at) AS last_seen, max(cost_usd) AS max_cost
      FROM ops."Agent Calls" GROUP BY 1, 2, 3),
mine AS (
    SELECT period_start, squad, model, requests, input_tokens, output_tokens, cache_read_tokens, cost_usd, error_requests,
           error_cost_usd, latency_ms_sum, latency_ms_max,
           first_seen, last_seen, max_request_cost_usd
      FROM ops.squad_daily)
SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
     + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)
"""

INSERT = """INSERT INTO ops."Agent Calls" (at, squad, model, input_tokens, output_tokens, cache_read_tokens, latency_ms, error)
            VALUES (date_trunc('day', now()) - %s * interval '1 day' + %s * interval '1 second', %s, %s, %s, %s, %s, %s, %s)"""

MODELS = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"]


def write_from_sessions(dbname, sessions, rows_each, days, seed=1):
    """`sessions` connections each insert `rows_each` rows over today and the `days` days before:
    each writes into its own row of every group it touches."""
    def one_session(k):
        rnd = random.Random(seed * 100 + k)
        with psycopg.connect(dsn(dbname), autocommit=True) as c:
            for _ in range(rows_each):
                c.execute(INSERT, (rnd.randint(0, days), rnd.randint(0, 86000), f"squad {rnd.randint(1, 4)}",
                                   rnd.choice(MODELS), rnd.randint(1, 9000), rnd.randint(0, 900), rnd.choice([0, 0, 2000]),
                                   rnd.randint(20, 4000), "timeout" if rnd.random() < 0.1 else None))
    threads = [threading.Thread(target=one_session, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def ops_db(fresh_db):
    with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
        c.execute(SETUP)
    return fresh_db


def test_a_fold_keeps_every_sum_and_leaves_one_row_per_group(ops_db):
    write_from_sessions(ops_db, sessions=6, rows_each=60, days=4)
    with psycopg.connect(dsn(ops_db), autocommit=True) as c:
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens)
                     SELECT now() - interval '40 days', 'acme', 'u1', 'gpt-4o', 1000, 10""")
        per_group = """SELECT count(*) FROM (SELECT period_start, squad, model FROM ops.squad_daily_stripes
                        WHERE period_start < date_trunc('day', now()) GROUP BY 1, 2, 3 HAVING count(*) > 1) g"""
        assert one(c, per_group) > 0, "several writers should have left several rows per group"
        before = c.execute("SELECT * FROM ops.squad_daily ORDER BY 1, 3, 4").fetchall()
        today = c.execute("SELECT stripe, requests FROM ops.squad_daily_stripes WHERE period_start = date_trunc('day', now()) "
                          "ORDER BY squad, model, stripe").fetchall()
        rows = one(c, "SELECT count(*) FROM ops.squad_daily_stripes")
        groups = one(c, "SELECT count(*) FROM ops.squad_daily WHERE period_start < date_trunc('day', now())")
        removed = one(c, "SELECT llm_cost.fold_rollup('ops.squad_daily')")
        # Every closed period: one row per group, in stripe 0; today (still written) as it was.
        assert one(c, per_group) == 0
        assert one(c, "SELECT count(*) FROM ops.squad_daily_stripes WHERE period_start < date_trunc('day', now()) AND stripe <> 0") == 0
        assert one(c, "SELECT count(*) FROM ops.squad_daily_stripes WHERE period_start < date_trunc('day', now())") == groups
        assert removed == rows - one(c, "SELECT count(*) FROM ops.squad_daily_stripes") > 0
        assert c.execute("SELECT stripe, requests FROM ops.squad_daily_stripes WHERE period_start = date_trunc('day', now()) "
                         "ORDER BY squad, model, stripe").fetchall() == today
        # The same sums, to the last digit, histograms, maxima and first/last seen included.
        assert c.execute("SELECT * FROM ops.squad_daily ORDER BY 1, 3, 4").fetchall() == before
        assert one(c, MISMATCH) == 0
        assert one(c, "SELECT llm_cost.fold_rollup('ops.squad_daily')") == 0
        # A late row for a group of a closed day opens a row of its own; the next fold takes it in.
        days, squad, model = c.execute("SELECT extract(day FROM date_trunc('day', now()) - period_start)::int, squad, model "
                                       "FROM ops.squad_daily WHERE period_start < date_trunc('day', now()) LIMIT 1").fetchone()
        c.execute(INSERT, (days, 5, squad, model, 100, 10, 0, 30, None))
        assert one(c, "SELECT llm_cost.fold_rollup('ops.squad_daily')") == 1
        assert one(c, per_group) == 0 and one(c, MISMATCH) == 0
        # usage_events' own rollups, months included (before => a day of next month folds this one).
        monthly = c.execute("SELECT * FROM llm_cost.usage_monthly ORDER BY 1, 3, 4").fetchall()
        c.execute("SELECT llm_cost.fold_rollup('llm_cost.usage_monthly', date_trunc('month', now()) + interval '40 days')")
        assert c.execute("SELECT * FROM llm_cost.usage_monthly ORDER BY 1, 3, 4").fetchall() == monthly
        # since/before bound the periods folded; NULLs are refused.
        c.execute(INSERT, (3, 5, "squad 9", "gpt-4o", 100, 10, 0, 30, None))
        c.execute(INSERT, (1, 5, "squad 9", "gpt-4o", 100, 10, 0, 30, None))
        assert one(c, "SELECT llm_cost.fold_rollup('ops.squad_daily', since => date_trunc('day', now()) - interval '2 days')") == 0
        assert one(c, "SELECT count(*) FROM ops.squad_daily_stripes WHERE stripe <> 0 AND period_start < date_trunc('day', now())") == 1
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SELECT llm_cost.fold_rollup('ops.squad_daily', NULL)")
        with pytest.raises(psycopg.errors.UndefinedObject):
            c.execute("SELECT llm_cost.fold_rollup('ops.\"Agent Calls\"')")


def test_only_who_has_the_table_of_sums_owners_rights_folds(ops_db):
    role = f"fold_{uuid.uuid4().hex[:8]}"
    with admin(ops_db) as a:
        a.execute(f"CREATE ROLE {role} LOGIN")
        a.execute(f"GRANT USAGE ON SCHEMA ops TO {role}; GRANT SELECT ON ops.squad_daily, ops.squad_daily_stripes TO {role}")
        a.execute(f"GRANT llm_cost_reader TO {role}")
    try:
        write_from_sessions(ops_db, sessions=2, rows_each=20, days=2)
        with psycopg.connect(dsn(ops_db, role), autocommit=True) as c:
            for sql in ("SELECT llm_cost.fold_rollup('ops.squad_daily')",
                        "SELECT llm_cost.fold_rollup('llm_cost.usage_daily')",
                        "SELECT llm_cost._as_table_owner('fold_rollup', 'ops.squad_daily_stripes'::regclass::oid, "
                        "jsonb_build_object('rollup', 'ops.squad_daily'::regclass::oid, 'before', now(), 'since', '-infinity', 'max_periods', 1))"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(sql)
        # Handing the table of sums to the role lets it fold that rollup, as itself.
        with admin(ops_db) as a:
            a.execute(f"ALTER TABLE ops.squad_daily_stripes OWNER TO {role}")
        with psycopg.connect(dsn(ops_db, role), autocommit=True) as c:
            assert one(c, "SELECT llm_cost.fold_rollup('ops.squad_daily')") >= 0
            assert one(c, "SELECT count(*) FROM ops.squad_daily_stripes WHERE stripe <> 0 AND period_start < date_trunc('day', now())") == 0
        with psycopg.connect(dsn(ops_db), autocommit=True) as c:
            assert one(c, MISMATCH) == 0
    finally:
        with admin(ops_db) as a:
            a.execute(f"ALTER TABLE ops.squad_daily_stripes OWNER TO postgres")
            a.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_folds_while_writers_write_and_roll_back_stay_exact_and_nobody_waits(ops_db):
    """Writers into the periods being folded (the current one included: before => tomorrow),
    some rolling back, one holding a row in a prepared transaction, while another session folds
    over and over: no error, no wait past the timeouts, and the rollup equals the raw rows."""
    stop = time.monotonic() + 8
    errors, counts = [], {"commits": 0, "rollbacks": 0, "folds": 0}
    lock = threading.Lock()
    gid = f"fold_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn(ops_db)) as p:
        p.execute(INSERT, (1, 7, "squad 1", "gpt-4o", 1000, 100, 0, 30, None))
        p.execute(f"PREPARE TRANSACTION '{gid}'")

    def writer(k):
        rnd = random.Random(k)
        try:
            with psycopg.connect(dsn(ops_db)) as c:
                c.execute("SET statement_timeout = '5s'")
                c.commit()
                while time.monotonic() < stop:
                    for _ in range(rnd.randint(1, 3)):
                        c.execute(INSERT, (rnd.randint(0, 2), rnd.randint(0, 86000), f"squad {rnd.randint(1, 2)}",
                                           rnd.choice(MODELS), rnd.randint(1, 9000), rnd.randint(0, 900), rnd.choice([0, 2000]),
                                           rnd.randint(20, 4000), "x" if rnd.random() < 0.1 else None))
                    if rnd.random() < 0.2:
                        c.rollback()
                        with lock:
                            counts["rollbacks"] += 1
                    else:
                        c.commit()
                        with lock:
                            counts["commits"] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def folder():
        try:
            with psycopg.connect(dsn(ops_db), autocommit=True) as c:
                c.execute("SET statement_timeout = '5s'")
                while time.monotonic() < stop:
                    c.execute("SELECT llm_cost.fold_rollup('ops.squad_daily', now() + interval '1 day')")
                    with lock:
                        counts["folds"] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)] + [threading.Thread(target=folder)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        with psycopg.connect(dsn(ops_db), autocommit=True) as c:
            c.execute(f"ROLLBACK PREPARED '{gid}'")
    assert errors == []
    assert counts["commits"] > 50 and counts["rollbacks"] > 5 and counts["folds"] > 5, counts
    with psycopg.connect(dsn(ops_db), autocommit=True) as c:
        assert one(c, MISMATCH) == 0
        # The prepared transaction's row was left where it was; once it commits, the sums are exact.
        c.execute(f"COMMIT PREPARED '{gid}'")
        assert one(c, MISMATCH) == 0
        c.execute("SELECT llm_cost.fold_rollup('ops.squad_daily', now() + interval '1 day')")
        assert one(c, "SELECT count(*) FROM ops.squad_daily_stripes") == one(c, "SELECT count(*) FROM ops.squad_daily")
        assert one(c, MISMATCH) == 0


def test_the_worker_folds_the_closed_periods_of_every_rollup(ops_db):
    write_from_sessions(ops_db, sessions=4, rows_each=30, days=3, seed=7)
    # The oldest closed day holds a row a prepared transaction keeps locked: the worker leaves it
    # and goes on to the later days (it does not fold that day over and over).
    gid = f"foldw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn(ops_db)) as p:
        p.execute(INSERT, (5, 7, "squad 1", "gpt-4o", 1000, 100, 0, 30, None))
        p.commit()
        p.execute(INSERT, (5, 9, "squad 1", "gpt-4o", 1000, 100, 0, 30, None))  # (updates its committed row)
        p.execute(f"PREPARE TRANSACTION '{gid}'")
    with psycopg.connect(dsn(ops_db), autocommit=True) as c:
        c.execute(INSERT, (5, 8, "squad 1", "gpt-4o", 1000, 100, 0, 30, None))
        later = "period_start < date_trunc('day', now()) AND period_start > date_trunc('day', now()) - interval '5 days'"
        closed_rows = f"SELECT count(*) FROM ops.squad_daily_stripes WHERE {later}"
        closed_groups = f"SELECT count(*) FROM ops.squad_daily WHERE {later}"
        assert one(c, closed_rows) > one(c, closed_groups)
        before = c.execute("SELECT * FROM ops.squad_daily ORDER BY 1, 3, 4").fetchall()
        # A fold (or rebuild) of the rollup in progress elsewhere: the worker passes it by.
        busy = psycopg.connect(dsn(ops_db))
        busy.execute("SELECT llm_cost.fold_rollup('ops.squad_daily', '2000-01-01')")
        with admin() as a:
            a.execute("ALTER SYSTEM SET llm_cost.fold_rollups = on")
        set_worker_fast(True)
        try:
            time.sleep(3)  # a few rounds
            assert one(c, closed_rows) > one(c, closed_groups)
            assert one(c, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()") == 0
            busy.commit()
            busy.close()
            assert wait_for(lambda: one(c, closed_rows) == one(c, closed_groups), 30)
        finally:
            with admin() as a:
                a.execute("ALTER SYSTEM RESET llm_cost.fold_rollups")
            set_worker_fast(False)
            c.execute(f"ROLLBACK PREPARED '{gid}'")
        assert c.execute("SELECT * FROM ops.squad_daily ORDER BY 1, 3, 4").fetchall() == before
        assert one(c, MISMATCH) == 0
