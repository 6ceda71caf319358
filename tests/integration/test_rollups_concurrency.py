"""Rollups under concurrency: exact after committed and rolled-back transactions, and writers of
the same group never wait for each other."""
import os
import random
import threading
import time
from decimal import Decimal

import psycopg
import pytest

from conftest import DATA, dsn, one

SECONDS = float(os.environ.get("LLM_COST_CONCURRENCY_SECONDS", "60"))

MISMATCH = """
WITH truth AS (
    SELECT date_trunc('day', occurred_at, 'UTC') AS period_start, tenant_id, user_id, feature, provider, priced_model AS model,
           count(*)::bigint AS requests, sum(input_tokens)::bigint AS i, sum(output_tokens)::bigint AS o,
           sum(cache_read_tokens)::bigint AS cr, sum(cost_usd) AS cost,
           count(*) FILTER (WHERE cost_source = 'unpriced')::bigint AS unpriced, count(error)::bigint AS errors,
           coalesce(sum(latency_ms), 0)::bigint AS lat, max(latency_ms)::bigint AS latmax
      FROM llm_cost.usage_events GROUP BY 1, 2, 3, 4, 5, 6),
mine AS (
    SELECT period_start, tenant_id, user_id, feature, provider, model, requests, input_tokens, output_tokens,
           cache_read_tokens, cost_usd, unpriced_requests, error_requests, latency_ms_sum, latency_ms_max
      FROM llm_cost.usage_daily)
SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
     + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)
"""

MISMATCH_MONTHLY = """
WITH truth AS (SELECT date_trunc('month', occurred_at, 'UTC') AS p, tenant_id, user_id, count(*)::bigint AS n,
                      sum(cost_usd) AS cost FROM llm_cost.usage_events GROUP BY 1, 2, 3),
     mine AS (SELECT period_start, tenant_id, user_id, requests, cost_usd FROM llm_cost.usage_monthly)
SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
     + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)
"""


def test_sixteen_writers_one_group_committed_and_rolled_back(dbname, connect):
    stop = time.monotonic() + SECONDS
    stats = {"commits": 0, "rollbacks": 0, "errors": []}
    lock = threading.Lock()

    def writer(seed):
        rnd = random.Random(seed)
        try:
            with psycopg.connect(dsn(dbname)) as c:
                while time.monotonic() < stop:
                    n = rnd.randint(1, 5)
                    rows = [("acme", f"u{rnd.randint(1, 3)}", "chat", "claude-sonnet-4-5", rnd.randint(1, 5000),
                             rnd.randint(0, 800), rnd.randint(0, 2000), rnd.randint(50, 3000),
                             "boom" if rnd.random() < 0.05 else None) for _ in range(n)]
                    if rnd.random() < 0.1:   # some unpriced rows too
                        rows.append(("acme", "u1", "chat", "mystery-model", 10, 10, 0, 100, None))
                    with c.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens,"
                            " output_tokens, cache_read_tokens, latency_ms, error) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                            rows)
                        if rnd.random() < 0.25:
                            c.rollback()
                            with lock:
                                stats["rollbacks"] += 1
                        else:
                            c.commit()
                            with lock:
                                stats["commits"] += 1
        except Exception as e:  # reported below
            with lock:
                stats["errors"].append(repr(e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats["errors"] == []
    assert stats["commits"] > 100 and stats["rollbacks"] > 10, stats
    c = connect()
    assert one(c, MISMATCH) == 0
    assert one(c, MISMATCH_MONTHLY) == 0
    # Many backends wrote the same group, each into its own stripe.
    assert one(c, "SELECT count(DISTINCT stripe) FROM llm_cost.usage_daily_stripes WHERE model = 'claude-sonnet-4-5'") >= 8
    total = one(c, "SELECT sum(cost_usd) FROM llm_cost.usage_events")
    assert one(c, "SELECT sum(cost_usd) FROM llm_cost.usage_daily") == total
    assert one(c, "SELECT sum(cost_usd) FROM llm_cost.usage_monthly") == total
    print(f"\n{stats['commits']} commits, {stats['rollbacks']} rollbacks in {SECONDS:.0f}s; total cost {total}")


def test_writers_of_one_group_do_not_wait_for_each_other(connect):
    a = connect(autocommit=False)
    b = connect(autocommit=False)
    a.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens) VALUES ('solo', 'u', 'gpt-4o', 1)")
    # a holds its transaction open; b writes the very same group and must not block on a.
    b.execute("SET LOCAL lock_timeout = '2s'")
    b.execute("SET LOCAL statement_timeout = '5s'")
    t0 = time.monotonic()
    b.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens) VALUES ('solo', 'u', 'gpt-4o', 2)")
    b.commit()
    assert time.monotonic() - t0 < 1.0
    a.commit()
    c = connect()
    assert one(c, "SELECT requests FROM llm_cost.usage_daily WHERE tenant_id = 'solo'") == 2


def test_one_writer_of_one_group_keeps_its_row_on_one_page(fresh_db):
    """A row of sums is reached by its remembered position, never by a scan, so nothing else
    prunes its page: llm_cost prunes it before the page fills up, and every update stays on it
    (HOT). Without that each ~7 statements moved the row to a new page (the table grew by one page
    per few statements, and each move inserted index entries)."""
    c = psycopg.connect(dsn(fresh_db), autocommit=True)
    n = 400
    # Pruning removes only versions no snapshot can see: a session of this database holding an
    # old one meanwhile (autovacuum analyzing the new database's tables, the background worker's
    # round) rightly makes the row move. So each attempt writes its own group and counts the pages
    # the tables grew by (reading the row would prune its page: that is what a scan does); when
    # pruning does not work the row moves to a new page every ~7 updates in every attempt.
    size = "SELECT pg_relation_size('llm_cost.{}') / current_setting('block_size')::int"
    grew = {}
    for attempt in range(3):
        tenant = f"pages{attempt}"
        before = {t: one(c, size.format(t)) for t in ("usage_daily_stripes", "usage_monthly_stripes")}
        for i in range(n):
            c.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) "
                      "VALUES (%s, 'u1', 'chat', 'claude-sonnet-4-5', %s, %s)", (tenant, 1000 + i * 37 % 5000, i % 700))
        grew[tenant] = {t: one(c, size.format(t)) - b for t, b in before.items()}
        assert one(c, "SELECT requests FROM llm_cost.usage_daily WHERE tenant_id = %s", tenant) == n
        assert one(c, "SELECT llm_cost.histogram_requests(cost_histogram) FROM llm_cost.usage_monthly WHERE tenant_id = %s", tenant) == n
        assert one(c, "SELECT (SELECT sum(cost_usd) FROM llm_cost.usage_events WHERE tenant_id = %s)"
                      "     = (SELECT cost_usd FROM llm_cost.usage_daily WHERE tenant_id = %s)", tenant, tenant)
        if all(g <= 1 for g in grew[tenant].values()):
            break
    assert any(all(g <= 1 for g in by_table.values()) for by_table in grew.values()), \
        f"pages the tables grew by while one row was updated {n} times, per attempt: {grew}"
    # A histogram of hundreds of buckets (a row of sums past 2 kB: its histogram is stored
    # compressed or out of line) still merges exactly, statement after statement.
    for i in range(500):
        c.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) "
                  "VALUES ('wide', 'u1', 'chat', 'claude-sonnet-4-5', %s, 0)", (int(1.035 ** i),))
    assert one(c, "SELECT array_length(cost_histogram, 1) / 2 FROM llm_cost.usage_daily WHERE tenant_id = 'wide'") > 250
    assert one(c, """SELECT (SELECT llm_cost.cost_histogram_sum(llm_cost._hist_of(cost_usd, 1)) FROM llm_cost.usage_events WHERE tenant_id = 'wide')
                          = (SELECT cost_histogram FROM llm_cost.usage_daily WHERE tenant_id = 'wide')""")
    stored, plain = c.execute("SELECT pg_column_size(cost_hist), pg_column_size(cost_hist || '{}'::bigint[]) "
                              "FROM llm_cost.usage_daily_stripes WHERE tenant_id = 'wide'").fetchone()
    assert stored < plain, (stored, plain)   # it was stored compressed: the merge read it detoasted
    c.close()


def test_a_writer_whose_rows_of_sums_were_truncated_away_writes_them_anew(fresh_db):
    """A writer reaches its rows of sums by the positions it remembers, checked against the size
    of the table it last learned (no lseek per statement). VACUUM truncating the table under
    those positions (here after the rows of sums were deleted) must not send it to a block that
    no longer exists: the truncation's invalidation drops the size it learned."""
    a = psycopg.connect(dsn(fresh_db), autocommit=True)
    b = psycopg.connect(dsn(fresh_db), autocommit=True)
    groups = 300

    def write_all(tokens):
        for i in range(groups):
            a.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) "
                      "VALUES ('trunc', %s, 'chat', 'gpt-4o', %s, 10)", (f"u{i:03d}", tokens + i))

    write_all(1000)
    pages = one(b, "SELECT pg_relation_size('llm_cost.usage_daily_stripes') / current_setting('block_size')::int")
    assert pages >= 10, pages   # the remembered positions are spread over many blocks
    b.execute("DELETE FROM llm_cost.usage_daily_stripes")
    b.execute("DELETE FROM llm_cost.usage_monthly_stripes")
    b.execute("VACUUM llm_cost.usage_daily_stripes, llm_cost.usage_monthly_stripes")
    assert one(b, "SELECT pg_relation_size('llm_cost.usage_daily_stripes')") == 0   # truncated: else this tests nothing
    b.execute("DELETE FROM llm_cost.usage_events")
    write_all(5000)
    assert one(b, "SELECT count(*) FROM llm_cost.usage_daily WHERE tenant_id = 'trunc'") == groups
    assert one(b, "SELECT count(*) FROM llm_cost.usage_daily WHERE tenant_id = 'trunc' AND requests <> 1") == 0
    assert one(b, """SELECT count(*) FROM llm_cost.usage_daily d JOIN (
                         SELECT user_id, sum(cost_usd) AS cost, sum(input_tokens) AS i FROM llm_cost.usage_events GROUP BY 1) e
                       USING (user_id)
                      WHERE d.cost_usd = e.cost AND d.input_tokens = e.i""") == groups
    # ... and again, now that its rows are back: the updates find them.
    write_all(7000)
    assert one(b, "SELECT sum(requests) FROM llm_cost.usage_monthly WHERE tenant_id = 'trunc'") == 2 * groups
    assert one(b, "SELECT (SELECT sum(cost_usd) FROM llm_cost.usage_events) = (SELECT sum(cost_usd) FROM llm_cost.usage_daily)")
    a.close()
    b.close()


def test_an_expression_index_put_on_a_table_of_sums_is_refused_at_the_next_write(fresh_db):
    """Writers open a table of sums' indexes only when a write needs them (a HOT update of a
    remembered row needs none), after checking them all once per definition. An index llm_cost
    cannot maintain, created by another session after this one's writes, is still refused at
    this session's very next write, however HOT."""
    a = psycopg.connect(dsn(fresh_db), autocommit=True)
    b = psycopg.connect(dsn(fresh_db), autocommit=True)
    insert = ("INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) "
              "VALUES ('ix', 'u1', 'chat', 'gpt-4o', 100, 10)")
    for _ in range(3):
        a.execute(insert)
    b.execute("CREATE INDEX sums_lower_user ON llm_cost.usage_daily_stripes (lower(user_id))")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        a.execute(insert)
    assert "sums_lower_user" in e.value.diag.message_primary
    b.execute("DROP INDEX llm_cost.sums_lower_user")
    a.execute(insert)
    b.execute("CREATE INDEX sums_by_user ON llm_cost.usage_daily_stripes (user_id)")   # a plain one is kept up
    for _ in range(2):
        a.execute(insert)
    a.execute(insert.replace("'u1'", "'u2'"))
    assert one(b, "SELECT requests FROM llm_cost.usage_daily WHERE user_id = 'u1'") == 6
    b.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in b.execute(
        "EXPLAIN SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u2'").fetchall())
    assert "sums_by_user" in plan, plan
    assert one(b, "SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u2'") == 1   # the new row's entry
    assert one(b, "SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u1'") == 1
    a.close()
    b.close()


def test_shared_schema_rollups_from_several_sessions(connect):
    c = connect()
    c.execute((DATA / "api_usage_log.sql").read_text())
    c.execute("SELECT llm_cost.track('api_usage_log', provider_column => 'provider', add_cost_column => true)")
    c.execute("SELECT llm_cost.create_rollup('monthly_by_contributor', 'api_usage_log', 'month', '{contributor_id,provider}')")
    c.execute("SELECT llm_cost.create_rollup('monthly_platform', 'api_usage_log', 'month', '{}')")
    ids = [one(c, "INSERT INTO contributor (handle) VALUES (%s) RETURNING id", f"h{i}") for i in range(4)]
    sessions = [connect() for _ in range(4)]

    def work(i):
        s = sessions[i]
        with s.cursor() as cur:
            for k in range(200):
                cur.execute("INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens)"
                            " VALUES (%s, %s, %s, '/e', %s, %s)",
                            (ids[(i + k) % 4] if k % 5 else None, "claude" if k % 2 else "openai",
                             "claude-sonnet-4-5" if k % 2 else "gpt-4o", 100 + k, 10 + k))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    diff = one(c, """
        WITH truth AS (SELECT date_trunc('month', created_at, 'UTC') AS p, contributor_id, provider, count(*)::bigint AS n,
                              sum(input_tokens)::bigint AS i, sum(output_tokens)::bigint AS o, sum(cost_usd) AS cost
                         FROM api_usage_log GROUP BY 1, 2, 3),
             mine AS (SELECT period_start, contributor_id, provider, requests, input_tokens, output_tokens, cost_usd
                        FROM monthly_by_contributor)
        SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
             + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)""")
    assert diff == 0
    assert one(c, "SELECT requests FROM monthly_platform") == 800
    assert one(c, "SELECT cost_usd FROM monthly_platform") == one(c, "SELECT sum(cost_usd) FROM api_usage_log")


def test_own_rollup_on_usage_events(connect):
    c = connect()
    c.execute("SELECT llm_cost.create_rollup('public.hourly_by_feature', 'llm_cost.usage_events', 'hour', '{feature}')")
    c.execute("INSERT INTO llm_cost.usage_events (feature, model, input_tokens) VALUES ('own', 'gpt-4o', 1000000)")
    assert one(c, "SELECT cost_usd FROM public.hourly_by_feature WHERE feature = 'own'") == Decimal("2.5")
    # The default rollups are still fed.
    assert one(c, "SELECT cost_usd FROM llm_cost.usage_daily WHERE feature = 'own'") == Decimal("2.5")
    c.execute("SELECT llm_cost.drop_rollup('public.hourly_by_feature')")
    c.execute("INSERT INTO llm_cost.usage_events (feature, model, input_tokens) VALUES ('own', 'gpt-4o', 1000000)")
    assert one(c, "SELECT cost_usd FROM llm_cost.usage_daily WHERE feature = 'own'") == Decimal("5.0")


def test_copy_and_rows_straight_into_a_partition(connect):
    """COPY from a client takes the fast path (no WHEN clause per row) while another session
    inserts into the same groups; rows inserted straight into a partition, whose statement
    triggers are not the root's, are written before commit."""
    c = connect()
    c.execute("CREATE TABLE part_log (occurred_at timestamptz NOT NULL, tenant_id text, model text, "
              "input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (occurred_at)")
    c.execute("CREATE TABLE part_log_2026 PARTITION OF part_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    c.execute("SELECT llm_cost.track('part_log', time_column => 'occurred_at')")
    c.execute("SELECT llm_cost.create_rollup('part_daily', 'part_log', 'day', '{tenant_id,model}')")
    other = connect()
    stop = threading.Event()

    def insert_meanwhile():
        while not stop.is_set():
            other.execute("INSERT INTO part_log (occurred_at, tenant_id, model, input_tokens, output_tokens) "
                          "VALUES ('2026-03-01 12:00+00', 't1', 'gpt-4o', 7, 7)")
    t = threading.Thread(target=insert_meanwhile)
    t.start()
    try:
        rows = "".join(f"2026-03-0{1 + i % 3} 10:00+00\tt{i % 5}\t{['gpt-4o', 'claude-sonnet-4-5'][i % 2]}\t{i}\t{i % 9}\n"
                       for i in range(20000))
        with c.cursor() as cur:
            with cur.copy("COPY part_log (occurred_at, tenant_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write(rows)
    finally:
        stop.set()
        t.join()
    assert one(c, "SELECT copy_rows FROM llm_cost._rollup_paths()") == 20000
    # Straight into the partition, in autocommit: no statement trigger of the root fires.
    d = connect()
    d.execute("INSERT INTO part_log_2026 (occurred_at, tenant_id, model, input_tokens, output_tokens) "
              "VALUES ('2026-03-02 08:00+00', 'direct', 'gpt-4o', 1000000, 0)")
    assert one(connect(), "SELECT cost_usd FROM part_daily WHERE tenant_id = 'direct'") == Decimal("2.5")
    diff = one(c, """
        WITH truth AS (SELECT date_trunc('day', occurred_at, 'UTC') AS p, tenant_id, model, count(*)::bigint AS n,
                              sum(input_tokens)::bigint AS i, sum(output_tokens)::bigint AS o, sum(cost_usd) AS cost
                         FROM part_log GROUP BY 1, 2, 3),
             mine AS (SELECT period_start, tenant_id, model, requests, input_tokens, output_tokens, cost_usd FROM part_daily)
        SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
             + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)""")
    assert diff == 0


COPY_MISMATCH = """
WITH truth AS (SELECT date_trunc('day', created_at, 'UTC') AS p, contributor, model, count(*)::bigint AS n,
                      sum(input_tokens)::bigint AS i, sum(output_tokens)::bigint AS o, sum(cost_usd) AS cost,
                      count(*) FILTER (WHERE cost_source = 'unpriced')::bigint AS unpriced
                 FROM copy_log GROUP BY 1, 2, 3),
     mine AS (SELECT period_start, contributor, model, requests, input_tokens, output_tokens, cost_usd, unpriced_requests
                FROM copy_daily)
SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
     + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)
"""

WRONG_COST = """
SELECT count(*) FROM copy_log
 WHERE cost_usd IS DISTINCT FROM llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, created_at)
    OR cost_source IS DISTINCT FROM CASE WHEN llm_cost.resolve_model(model) IS NULL THEN 'unpriced' ELSE 'estimated' END
"""


def test_copy_from_a_client_is_priced_without_the_row_trigger(connect):
    """COPY FROM STDIN into a plain tracked table takes the COPY path (no row trigger, so
    PostgreSQL keeps its batched inserts): every row priced as the trigger would, rollups exact.
    It stays exact while another session inserts into the same groups and keeps invalidating the
    table's relation cache entry (ANALYZE), and after a COPY that fails or is rolled back the
    session's triggers are intact."""
    c = connect()
    c.execute("CREATE TABLE copy_log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), "
              "contributor text, model text NOT NULL, input_tokens int NOT NULL, output_tokens int NOT NULL, "
              "cost_usd numeric, cost_source text)")
    c.execute("SELECT llm_cost.track('copy_log')")
    c.execute("SELECT llm_cost.create_rollup('copy_daily', 'copy_log', 'day', '{contributor,model}')")
    c.execute("SELECT llm_cost.create_rollup('copy_total', 'copy_log', 'month', '{}')")
    models = ["gpt-4o", "claude-sonnet-4-5", "openrouter/google/gemini-2.5-flash", "not-a-model"]

    def rows(n, start=0):
        return "".join(f"2026-04-0{1 + i % 3} 10:00+00\tc{i % 7}\t{models[i % 4]}\t{i}\t{i % 97}\n" for i in range(start, start + n))

    def copy(conn, data):
        with conn.cursor() as cur:
            with cur.copy("COPY copy_log (created_at, contributor, model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write(data)

    copy(c, rows(30000))
    assert one(c, "SELECT copy_priced_rows FROM llm_cost._rollup_paths()") == 30000
    assert one(c, "SELECT trigger_rows FROM llm_cost._rollup_paths()") == 0
    assert one(c, WRONG_COST) == 0
    assert one(c, COPY_MISMATCH) == 0
    assert one(c, "SELECT requests FROM copy_total") == 30000

    # Meanwhile: another session inserts into the same groups and runs ANALYZE (each one
    # invalidates the table's relation cache entry in every session, this COPY's too).
    other = connect()
    stop = threading.Event()

    def meanwhile():
        i = 0
        while not stop.is_set():
            other.execute("INSERT INTO copy_log (created_at, contributor, model, input_tokens, output_tokens) "
                          "VALUES ('2026-04-01 11:00+00', 'c1', 'gpt-4o', 1000, 10)")
            if i % 5 == 0:
                other.execute("ANALYZE copy_log")
            i += 1
    t = threading.Thread(target=meanwhile)
    t.start()
    try:
        for k in range(5):
            copy(c, rows(20000, 30000 + k * 20000))
    finally:
        stop.set()
        t.join()
    assert one(c, WRONG_COST) == 0
    assert one(c, COPY_MISMATCH) == 0
    assert one(c, "SELECT requests FROM copy_total") == one(c, "SELECT count(*) FROM copy_log")

    # A COPY that fails at row 15,000 stores nothing and counts nothing; one rolled back neither.
    before = one(c, "SELECT requests FROM copy_total")
    bad = rows(20000).replace("\t14999\t", "\t-1\t")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="input_tokens must not be negative"):
        copy(c, bad)
    t2 = connect(autocommit=False)
    copy(t2, rows(1000))
    t2.rollback()
    assert one(c, "SELECT requests FROM copy_total") == before == one(c, "SELECT count(*) FROM copy_log")
    # The failed COPY's session still prices INSERTs through the trigger.
    c.execute("INSERT INTO copy_log (created_at, contributor, model, input_tokens, output_tokens) "
              "VALUES ('2026-04-02 09:00+00', 'after', 'gpt-4o', 1000000, 0)")
    assert one(c, "SELECT cost_usd::text || ' ' || cost_source FROM copy_log WHERE contributor = 'after'") == "2.5 estimated"
    assert one(c, "SELECT trigger_rows FROM llm_cost._rollup_paths()") == 1
    assert one(c, COPY_MISMATCH) == 0
