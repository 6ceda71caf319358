"""Adoption (issue #28) where one session is not enough: the backfill procedure commits batch by
batch (progress, locks held for one batch, writers go on), resumes after an interruption, and
leaves rollups equal to GROUP BY; a hand-kept summary replaced by a rollup and a compatibility
view keeps its GraphQL readers (a real PostGraphile, the same query before and after)."""
import json
import socket
import threading
import time
import urllib.request
from decimal import Decimal

import psycopg
import pytest

from conftest import DATA, ROOT, admin, dsn, one, port, server

POSTGRAPHILE = ROOT / "tests" / "graphql" / "node_modules" / ".bin" / "postgraphile"


def history_table(c, name, rows, cost_type="numeric(12,8) NOT NULL DEFAULT 0"):
    c.execute(f"""CREATE TABLE {name} (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, team text NOT NULL,
                                       model text NOT NULL, input_tokens int NOT NULL, output_tokens int NOT NULL,
                                       cost {cost_type})""")
    # Every 7th row names a model without a price; every 11th brings its own cost (an SDK's).
    c.execute(f"""INSERT INTO {name} (created_at, team, model, input_tokens, output_tokens{', cost' if 'NOT NULL' in cost_type else ''})
                  SELECT '2026-11-01'::timestamptz + i * interval '1 minute', 't' || (i % 5),
                         CASE WHEN i % 7 = 0 THEN 'no-such-model-' || (i % 3) WHEN i % 2 = 0 THEN 'gpt-4o' ELSE 'claude-sonnet-4-5' END,
                         100 + i, 10 + i % 50{', CASE WHEN i % 11 = 0 THEN 0.0123 ELSE 0 END' if 'NOT NULL' in cost_type else ''}
                    FROM generate_series(1, {rows}) i""")


def test_backfill_commits_batch_by_batch_with_progress_and_exact_rollups(fresh_db):
    with admin(fresh_db) as c:
        history_table(c, "public.hist", 3000)
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT llm_cost.track('public.hist', cost_column => 'cost', time_column => 'created_at')")
        # A rollup made before the backfill: it counts the history as unpriced (never $0) until
        # the backfill prices it, then agrees with the rows.
        c.execute("SELECT llm_cost.create_rollup('public.hist_before', 'public.hist', 'month', '{}')")
        assert c.execute("SELECT requests, unpriced_requests, cost_usd FROM public.hist_before").fetchall() == [(3000, 3000, None)]
        c.execute("SELECT llm_cost.create_rollup('public.hist_daily', 'public.hist', 'day', '{team, model}')")
        c.execute("SET client_min_messages = notice")
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        xid_before = one(c, "SELECT pg_catalog.txid_current()")
        c.execute("CALL llm_cost.backfill('public.hist', batch_rows => 300)")
        xid_after = one(c, "SELECT pg_catalog.txid_current()")
        progress = [n for n in notices if n.startswith("llm_cost.backfill")]
        assert len(progress) >= 5, progress
        # One transaction (xid) per batch that wrote: it committed as it went.
        assert xid_after - xid_before >= len(progress) - 1
        assert progress[-1].startswith("llm_cost.backfill public.hist: 3000 rows priced (")
        assert one(c, "SELECT count(*) FROM public.hist WHERE cost_source IS NULL") == 0
        # The rule: the SDK's own costs kept, unknown models unpriced (and listed), the rest estimated.
        assert c.execute("SELECT cost_source, count(*) FROM public.hist GROUP BY 1 ORDER BY 1").fetchall() == [
            ("estimated", 3000 - 3000 // 11 - (3000 // 7 - 3000 // 77)),
            ("provided", 3000 // 11),                    # an unknown model with its own cost too
            ("unpriced", 3000 // 7 - 3000 // 77)]
        assert one(c, "SELECT sum(rows) FROM llm_cost.unpriced_models WHERE log_table = 'public.hist'::regclass") == 3000 // 7 - 3000 // 77
        # Each row priced at its own event time, as an INSERT then would have been.
        assert one(c, """SELECT count(*) FROM public.hist
                          WHERE cost_source = 'estimated'
                            AND cost <> round(llm_cost.estimate_cost(model, input_tokens, output_tokens, at => created_at), 8)""") == 0
        # The rollup made before, and one made now, equal GROUP BY over the rows.
        c.execute("SELECT llm_cost.create_rollup('public.hist_team', 'public.hist', 'month', '{team}')")
        for rollup, keys in (("public.hist_daily", "team, model"), ("public.hist_team", "team")):
            diff = one(c, f"""SELECT count(*) FROM (
                (SELECT {keys}, sum(requests), sum(cost_usd), sum(unpriced_requests) FROM {rollup} GROUP BY {keys}
                 EXCEPT SELECT {keys}, count(*), sum(cost) FILTER (WHERE cost_source <> 'unpriced'),
                               count(*) FILTER (WHERE cost_source = 'unpriced')
                          FROM public.hist GROUP BY {keys})) d""")
            assert diff == 0, rollup
        assert c.execute("SELECT requests, unpriced_requests, cost_usd FROM public.hist_before").fetchone() == \
            c.execute("SELECT count(*), count(*) FILTER (WHERE cost_source = 'unpriced'), "
                      "sum(cost) FILTER (WHERE cost_source <> 'unpriced') FROM public.hist").fetchone()
        # Nothing left: a second run prices nothing.
        notices.clear()
        c.execute("CALL llm_cost.backfill('public.hist', batch_rows => 300)")
        assert all(" 0 rows priced" in n for n in notices if n.startswith("llm_cost.backfill")), notices


def test_backfill_holds_locks_for_one_batch_and_writers_go_on(fresh_db):
    with admin(fresh_db) as c:
        history_table(c, "public.busy", 4000, cost_type="numeric")
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT llm_cost.track('public.busy', cost_column => 'cost')")
    done = threading.Event()
    errors = []

    def run_backfill():
        try:
            with psycopg.connect(dsn(fresh_db), autocommit=True) as b:
                b.execute("SET client_min_messages = warning")
                b.execute("CALL llm_cost.backfill('public.busy', batch_rows => 200)")
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=run_backfill)
    t.start()
    waits = []
    with psycopg.connect(dsn(fresh_db), autocommit=True) as w:
        w.execute("SET lock_timeout = '5s'")
        # Writers insert and update a row of the first batch (committed early) while it runs.
        while not done.is_set():
            t0 = time.monotonic()
            w.execute("INSERT INTO public.busy (created_at, team, model, input_tokens, output_tokens) "
                      "VALUES (now(), 'w', 'gpt-4o', 10, 10)")
            waits.append(time.monotonic() - t0)
            time.sleep(0.01)
    t.join()
    assert not errors, errors
    with admin(fresh_db) as c:
        assert one(c, "SELECT count(*) FROM public.busy WHERE cost IS NULL AND model NOT LIKE 'no-such-model%'") == 0
        assert one(c, "SELECT count(*) FROM public.busy WHERE team = 'w' AND cost IS NULL") == 0
    # Inserts never wait for the backfill (it locks rows of one batch, never the table).
    assert max(waits) < 2.0, max(waits)


def test_backfill_resumes_after_an_interruption_and_refuses_what_it_cannot_do(fresh_db):
    with admin(fresh_db) as c:
        history_table(c, "public.big", 2000)
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT llm_cost.track('public.big', cost_column => 'cost')")
        # Interrupted (a statement timeout) after some batches committed: those stay priced.
        c.execute("SET statement_timeout = '150ms'")
        c.execute("SELECT pg_catalog.pg_sleep(0)")
        try:
            c.execute("CALL llm_cost.backfill('public.big', batch_rows => 20)")
        except psycopg.errors.QueryCanceled:
            pass
        c.execute("RESET statement_timeout")
        c.execute("CALL llm_cost.backfill('public.big')")
        assert one(c, "SELECT count(*) FROM public.big WHERE cost_source IS NULL") == 0
        # Inside a transaction block it cannot commit: track(..., backfill => true) is the way there.
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            with c.transaction():
                c.execute("CALL llm_cost.backfill('public.big')")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            c.execute("CALL llm_cost.backfill('pg_catalog.pg_class')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("CALL llm_cost.backfill('public.big', batch_rows => 0)")
        c.execute("CREATE ROLE it_not_owner_bf")
        c.execute("GRANT USAGE ON SCHEMA llm_cost TO it_not_owner_bf")
        c.execute("GRANT SELECT, UPDATE ON public.big TO it_not_owner_bf")
        c.execute("SET ROLE it_not_owner_bf")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CALL llm_cost.backfill('public.big')")
        # Nor through the step it uses.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT llm_cost._backfill_step('public.big'::regclass::oid, '{\"part\": 0, \"from\": 0, \"to\": 1}')")
        c.execute("RESET ROLE")
        c.execute("DROP OWNED BY it_not_owner_bf")
        c.execute("DROP ROLE it_not_owner_bf")


def gql(url, q):
    req = urllib.request.Request(url, data=json.dumps({"query": q}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    if body.get("errors"):
        raise AssertionError(body["errors"])
    return body["data"]


SUMMARY = """{ allApiUsageSummaries(orderBy: [PERIOD_START_ASC, TOTAL_TOKENS_ASC]) {
                 nodes { contributorId periodStart periodEnd totalRequests totalInputTokens totalTokens } } }"""


def test_a_summary_table_replaced_by_a_rollup_keeps_its_graphql_readers(fresh_db):
    if not POSTGRAPHILE.exists():
        pytest.fail("PostGraphile is not installed: run scripts/test.sh (it runs npm ci in tests/graphql)")
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute((DATA / "api_usage_log.sql").read_text())
        c.execute("""INSERT INTO public.contributor (id, handle) VALUES ('00000000-0000-0000-0000-00000000000a', 'ada'),
                                                                         ('00000000-0000-0000-0000-00000000000b', 'bob')""")
        c.execute("""INSERT INTO public.api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at) VALUES
            ('00000000-0000-0000-0000-00000000000a', 'claude', 'claude-sonnet-4-5', 'summarize', 10000, 1000, '2026-10-30 10:00+00'),
            ('00000000-0000-0000-0000-00000000000a', 'Anthropic', 'claude-sonnet-4-5', 'summarize', 20000, 1000, '2026-11-01 10:00+00'),
            ('00000000-0000-0000-0000-00000000000b', 'claude', 'claude-haiku-4-5', 'moderate', 2000, 10, '2026-11-01 11:00+00'),
            (NULL, 'claude', 'claude-haiku-4-5', 'digest', 50000, 5000, '2026-11-02 00:00+00')""")
        # The summary as the app's trigger kept it (one provider spelling: 'claude').
        c.execute("""INSERT INTO public.api_usage_summary (contributor_id, period_start, period_end, provider, total_requests,
                                                           total_input_tokens, total_output_tokens, total_tokens)
                     SELECT contributor_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
                            (date_trunc('month', created_at AT TIME ZONE 'UTC') + interval '1 month - 1 day')::date,
                            'anthropic', count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens)
                       FROM public.api_usage_log GROUP BY 1, 2, 3""")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    http_port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{http_port}/graphql"

    def serve():
        return server([str(POSTGRAPHILE), "-c", f"postgres://postgres@127.0.0.1:{port()}/{fresh_db}", "-s", "public",
                       "-n", "127.0.0.1", "-p", str(http_port), "--disable-query-log"],
                      lambda: gql(url, "{ __typename }"), "postgraphile-adoption.log", cwd=ROOT / "tests" / "graphql")

    with serve():
        before = gql(url, SUMMARY)["allApiUsageSummaries"]["nodes"]
    assert len(before) == 4
    # The migration of docs/migrating.md.
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("ALTER TABLE public.api_usage_log ADD COLUMN priced_provider text")
        c.execute("""SELECT llm_cost.track('public.api_usage_log', provider_column => 'provider',
                                           priced_provider_column => 'priced_provider', add_cost_column => true, backfill => true)""")
        with c.transaction():
            c.execute("ALTER TABLE public.api_usage_summary RENAME TO api_usage_summary_old")
            c.execute("SELECT llm_cost.create_rollup('public.api_usage_monthly', 'public.api_usage_log', 'month', '{contributor_id, provider}')")
            c.execute("""CREATE VIEW public.api_usage_summary AS
                         SELECT contributor_id, (period_start AT TIME ZONE 'UTC')::date AS period_start,
                                (period_end AT TIME ZONE 'UTC')::date - 1 AS period_end, provider,
                                requests::integer AS total_requests, input_tokens AS total_input_tokens,
                                output_tokens AS total_output_tokens, input_tokens + output_tokens AS total_tokens,
                                cost_usd, last_seen AS updated_at
                           FROM public.api_usage_monthly""")
            c.execute("DROP TABLE public.api_usage_summary_old")
        # A new call after the switch: the view follows in the inserting transaction.
        c.execute("""INSERT INTO public.api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at)
                     VALUES ('00000000-0000-0000-0000-00000000000b', 'Anthropic', 'claude-haiku-4-5', 'moderate', 1000, 10, '2026-11-03 00:00+00')""")
    with serve():
        after = gql(url, SUMMARY)["allApiUsageSummaries"]["nodes"]
        costs = gql(url, "{ allApiUsageSummaries { nodes { costUsd } } }")["allApiUsageSummaries"]["nodes"]
    # The same query, the same fields; bob's November row has the new call.
    want = [dict(r) for r in before]
    for r in want:
        if r["contributorId"] == "00000000-0000-0000-0000-00000000000b":
            r["totalRequests"] += 1
            r["totalInputTokens"] = str(int(r["totalInputTokens"]) + 1000)
            r["totalTokens"] = str(int(r["totalTokens"]) + 1010)
    assert after == want
    assert sum(Decimal(r["costUsd"]) for r in costs) == Decimal("0.045") + Decimal("0.075") + Decimal("0.00205") \
        + Decimal("0.075") + Decimal("0.00105")
