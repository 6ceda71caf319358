"""Budgets and alerts against a real cluster: a LISTEN client, concurrent writers with rollbacks,
isolation levels, prepared transactions, periods, reprice, row-level security."""
import json
import threading
import uuid

import psycopg
import pytest

from conftest import dsn, one, set_worker_fast, wait_for

# A model of our own at $1 per million input tokens: 1,000 tokens cost $0.001.
MODEL = "it-budget-model"


@pytest.fixture
def calls(fresh_db):
    """An application table of its own (other names than usage_events), tracked, with a monthly
    rollup per organisation and a budget of $1 per organisation and month."""
    with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
        c.execute(f"INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('it', '{MODEL}', 1, 0)")
        c.execute("""CREATE TABLE public.llm_calls (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), org text,
                     member text, llm text NOT NULL, prompt_tok int NOT NULL, completion_tok int NOT NULL, usd numeric)""")
        c.execute("""SELECT llm_cost.track('public.llm_calls', model_column => 'llm', input_tokens_column => 'prompt_tok',
                     output_tokens_column => 'completion_tok', cost_column => 'usd', time_column => 'at')""")
        c.execute("SELECT llm_cost.create_rollup('public.org_monthly', 'public.llm_calls', 'month', '{org}')")
        c.execute("SELECT llm_cost.create_budget('org_cap', 'public.org_monthly', 1.00, '{0.5,0.8,1.0}')")
    return fresh_db


def insert(conn, org, tokens, at=None, model=MODEL):
    if at is None:
        conn.execute("INSERT INTO public.llm_calls (org, member, llm, prompt_tok, completion_tok) VALUES (%s, 'm', %s, %s, 0)", (org, model, tokens))
    else:
        conn.execute("INSERT INTO public.llm_calls (at, org, member, llm, prompt_tok, completion_tok) VALUES (%s, %s, 'm', %s, %s, 0)",
                     (at, org, model, tokens))


def listener(db):
    c = psycopg.connect(dsn(db), autocommit=True)
    c.execute("LISTEN llm_cost_budget")
    return c


ALERT_JSON = """SELECT json_build_object('id', id, 'budget', budget, 'group', "group", 'period_start', period_start,
                                         'threshold', threshold, 'spent_usd', spent_usd, 'limit_usd', limit_usd,
                                         'crossed_at', crossed_at, 'state', CASE WHEN threshold >= 1 THEN 'exceeded' ELSE 'warning' END)::text
                  FROM llm_cost.budget_alerts WHERE id = %s"""


def received(conn, timeout=1.0):
    """The alerts notified: the payload carries the alert's id only; the listener reads the row
    from llm_cost.budget_alerts with its own rights (row security), as docs/budgets.md shows."""
    ids = []
    for n in conn.notifies(timeout=timeout):
        payload = json.loads(n.payload)
        assert set(payload) == {"id"}, payload
        ids.append(payload["id"])
    return [json.loads(conn.execute(ALERT_JSON, (i,)).fetchone()[0]) for i in ids]


def alerts(conn, budget="org_cap"):
    return conn.execute("""SELECT "group"->>'org', threshold::text, spent_usd::numeric(20,3)::text, limit_usd::text FROM llm_cost.budget_alerts
                           WHERE budget = %s ORDER BY 1, threshold""", (budget,)).fetchall()


def test_each_crossing_is_alerted_once_when_its_transaction_commits(calls):
    lis = listener(calls)
    with psycopg.connect(dsn(calls), autocommit=True) as w:
        insert(w, "acme", 400_000)                      # $0.40: below 50%
        assert received(lis, 0.5) == []
        insert(w, "acme", 150_000)                      # $0.55: 50% crossed
        got = received(lis)
        assert [(n["budget"], n["group"], n["threshold"], n["spent_usd"], n["limit_usd"], n["state"]) for n in got] == \
            [("org_cap", {"org": "acme"}, 0.5, 0.55, 1.00, "warning")]
        insert(w, "acme", 10_000)                       # still between 50% and 80%: nothing new
        assert received(lis, 0.5) == []
        insert(w, "other", 2_000_000)                   # another org jumps past every threshold at once
        got = received(lis)
        assert sorted((n["group"]["org"], n["threshold"]) for n in got) == [("other", 0.5), ("other", 0.8), ("other", 1.0)]
        assert {n["state"] for n in got if n["threshold"] == 1.0} == {"exceeded"}
        # A rolled-back insert alerts nothing, though it crossed 80% and 100% while it lasted.
        w.execute("BEGIN")
        insert(w, "acme", 900_000)
        w.execute("ROLLBACK")
        assert received(lis, 0.5) == []
        # So does a savepoint rolled back inside a committed transaction.
        w.execute("BEGIN")
        w.execute("SAVEPOINT s")
        insert(w, "acme", 900_000)
        w.execute("ROLLBACK TO SAVEPOINT s")
        insert(w, "acme", 1_000)
        w.execute("COMMIT")
        assert received(lis, 0.5) == []
        assert alerts(w) == [("acme", "0.5", "0.550", "1.00"), ("other", "0.5", "2.000", "1.00"), ("other", "0.8", "2.000", "1.00"),
                             ("other", "1.0", "2.000", "1.00")]
        # Status of the current period.
        rows = w.execute("""SELECT "group"->>'org', spent_usd::numeric(20,3)::text, limit_usd::text, remaining_usd::numeric(20,3)::text, used_pct::text, state
                            FROM llm_cost.budget_status WHERE budget = 'org_cap' ORDER BY 1""").fetchall()
        assert rows == [("acme", "0.561", "1.00", "0.439", "56.10", "warning"), ("other", "2.000", "1.00", "0.000", "200.00", "exceeded")]
    lis.close()


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_sixteen_concurrent_writers_with_rollbacks_alert_each_threshold_exactly_once(calls, isolation):
    """Each writer alone stays below the thresholds it helps to cross; half the transactions roll
    back. Every threshold the committed spend reached is alerted once, none other."""
    lis = listener(calls)
    writers, rounds = 16, 6
    barrier = threading.Barrier(writers)
    committed = [0] * writers
    errors = []

    def work(i):
        try:
            with psycopg.connect(dsn(calls)) as c:
                c.execute(f"SET default_transaction_isolation = '{isolation}'")
                c.commit()
                for r in range(rounds):
                    barrier.wait()
                    insert(c, "acme", 25_000 + i)           # $0.025...: together about $0.2 a round
                    if (i + r) % 2:
                        c.rollback()
                    else:
                        c.commit()
                        committed[i] += 25_000 + i
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
            barrier.abort()

    set_worker_fast(True)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        total = sum(committed)                                   # tokens = micro-dollars
        expected = [t for t in ("0.5", "0.8", "1.0") if total >= float(t) * 1_000_000]
        # A crossing only the sum of writers that committed together makes is recorded by the
        # background worker (every second here): wait for it, then a little longer for extras.
        with psycopg.connect(dsn(calls), autocommit=True) as c:
            assert wait_for(lambda: one(c, "SELECT count(*) FROM llm_cost.budget_alerts") >= len(expected), timeout=20)
        got = received(lis, 3.0)
    finally:
        set_worker_fast(False)
    with psycopg.connect(dsn(calls), autocommit=True) as c:
        assert one(c, "SELECT sum(usd) * 1000000 FROM public.llm_calls") == total
        rows = alerts(c)
    assert len(expected) == 3, total                         # the run crossed every threshold
    assert [r[1] for r in rows] == expected
    assert sorted(str(n["threshold"]) for n in got) == expected
    # Each alert's recorded spend is the committed spend at its crossing: at least the threshold.
    for org, t, spent, limit in rows:
        assert float(spent) >= float(t) * float(limit)
    lis.close()


def test_a_new_period_starts_clean_and_periods_are_alerted_apart(calls):
    lis = listener(calls)
    with psycopg.connect(dsn(calls), autocommit=True) as w:
        insert(w, "acme", 900_000, at="2026-10-15 12:00+00")    # October: 90%
        got = received(lis)
        assert sorted((n["period_start"][:10], n["threshold"]) for n in got) == [("2026-10-01", 0.5), ("2026-10-01", 0.8)]
        insert(w, "acme", 600_000, at="2026-11-02 12:00+00")    # November starts from zero: 60%
        got = received(lis)
        assert [(n["period_start"][:10], n["threshold"]) for n in got] == [("2026-11-01", 0.5)]
        # The current period (now) has not been touched: the status shows nothing spent for acme.
        assert one(w, "SELECT count(*) FROM llm_cost.budget_status WHERE budget = 'org_cap'") == 0
        insert(w, "acme", 100_000)
        assert received(lis, 0.5) == []
        assert one(w, "SELECT spent_usd::numeric(20,3)::text FROM llm_cost.budget_status WHERE budget = 'org_cap'") == "0.100"
    lis.close()


def test_reprice_that_moves_spend_across_a_threshold_alerts(calls):
    lis = listener(calls)
    with psycopg.connect(dsn(calls), autocommit=True) as w:
        insert(w, "acme", 700_000, model="it-budget-unknown")   # unpriced: no spend yet
        assert received(lis, 0.5) == []
        w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('it', 'it-budget-unknown', 1)")
        assert one(w, "SELECT rows_changed FROM llm_cost.reprice('public.llm_calls')") == 1
        got = received(lis)
        assert [(n["threshold"], n["spent_usd"]) for n in got] == [(0.5, 0.7)]
        # Another model priced later: repricing crosses 80% and 100% at once.
        insert(w, "acme", 500_000, model="it-budget-later")
        assert received(lis, 0.5) == []
        w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('it', 'it-budget-later', 1)")
        w.execute("BEGIN")
        assert one(w, "SELECT rows_changed FROM llm_cost.reprice('public.llm_calls')") == 1
        assert received(lis, 0.5) == []                          # not before the reprice commits
        w.execute("COMMIT")
        got = received(lis)
        assert sorted(n["threshold"] for n in got) == [0.8, 1.0]
        assert alerts(w) == [("acme", "0.5", "0.700", "1.00"), ("acme", "0.8", "1.200", "1.00"), ("acme", "1.0", "1.200", "1.00")]
    lis.close()


def test_group_limits_filters_and_platform_wide_budgets(calls):
    lis = listener(calls)
    with psycopg.connect(dsn(calls), autocommit=True) as w:
        w.execute("SELECT llm_cost.set_budget_limit('org_cap', '{\"org\": \"big\"}', 10)")
        w.execute("SELECT llm_cost.create_rollup('public.all_monthly', 'public.llm_calls', 'month', '{}')")
        w.execute("SELECT llm_cost.create_budget('platform', 'public.all_monthly', 2, '{1}')")
        w.execute("SELECT llm_cost.create_budget('only_acme', 'public.org_monthly', 0.1, '{1}', '{\"org\": \"acme\"}', hard => true)")
        insert(w, "big", 1_500_000)                   # 15% of its own $10
        insert(w, "acme", 150_000)                    # 15% of org_cap, 150% of only_acme
        got = received(lis)
        assert sorted((n["budget"], json.dumps(n["group"]), n["threshold"]) for n in got) == [("only_acme", '{"org": "acme"}', 1)]
        insert(w, "small", 600_000)                   # platform total 2.25 > 2; small 60%
        got = received(lis)
        assert sorted((n["budget"], json.dumps(n["group"]), n["threshold"]) for n in got) == \
            [("org_cap", '{"org": "small"}', 0.5), ("platform", "{}", 1)]
        rows = w.execute("""SELECT budget, "group"::text, spent_usd::numeric(20,3)::text, limit_usd::text, state FROM llm_cost.budget_status
                            ORDER BY budget, "group"::text""").fetchall()
        assert rows == [("only_acme", '{"org": "acme"}', "0.150", "0.1", "exceeded"),
                        ("org_cap", '{"org": "acme"}', "0.150", "1.00", "ok"),
                        ("org_cap", '{"org": "big"}', "1.500", "10", "ok"),
                        ("org_cap", '{"org": "small"}', "0.600", "1.00", "warning"),
                        ("platform", "{}", "2.250", "2", "exceeded")]
        # Pre-flight: soft budgets always allow; the hard one refuses past its limit.
        assert w.execute("SELECT allowed, spent_usd::numeric(20,3)::text, limit_usd::text, remaining_usd::numeric(20,3)::text FROM llm_cost.check_budget('org_cap', '{\"org\": \"acme\"}', 5)").fetchone() == \
            (True, "0.150", "1.00", "0.850")
        assert w.execute("SELECT allowed, remaining_usd::numeric(20,3)::text FROM llm_cost.check_budget('only_acme', '{\"org\": \"acme\"}')").fetchone() == (False, "0.000")
        assert w.execute("SELECT allowed, limit_usd FROM llm_cost.check_budget('only_acme', '{\"org\": \"big\"}', 100)").fetchone() == (True, None)
        # Inserts are never refused for being over budget.
        insert(w, "acme", 1_000_000)
        assert one(w, "SELECT count(*) FROM public.llm_calls WHERE org = 'acme'") == 2
        # Dropping a budget drops its limits and alerts; dropping the rollup drops its budgets.
        w.execute("SELECT llm_cost.drop_budget('only_acme')")
        assert one(w, "SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'only_acme'") == 0
        w.execute("SELECT llm_cost.drop_rollup('public.all_monthly')")
        assert one(w, "SELECT count(*) FROM llm_cost.budgets WHERE name = 'platform'") == 0
        received(lis, 0.3)
        insert(w, "acme", 10)                         # writers go on without the dropped budgets
        assert received(lis, 0.5) == []
    lis.close()


def test_prepared_transactions_record_the_alert_without_notify(calls):
    lis = listener(calls)
    gid = "it_budget_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dsn(calls), autocommit=True) as w:
        w.execute("BEGIN")
        insert(w, "acme", 600_000)
        w.execute(f"PREPARE TRANSACTION '{gid}'")
        assert one(w, "SELECT count(*) FROM llm_cost.budget_alerts") == 0
        w.execute(f"COMMIT PREPARED '{gid}'")
        assert alerts(w) == [("acme", "0.5", "0.600", "1.00")]
        assert received(lis, 0.5) == []
    lis.close()


def test_readers_see_the_budgets_of_their_own_groups(calls):
    with psycopg.connect(dsn(calls), autocommit=True) as c:
        c.execute("SELECT llm_cost.create_rollup('public.member_monthly', 'public.llm_calls', 'month', '{member}')")
        c.execute("SELECT llm_cost.enable_row_security('public.member_monthly', 'member')")
        c.execute("GRANT SELECT ON public.member_monthly, public.member_monthly_stripes TO llm_cost_reader")
        c.execute("SELECT llm_cost.create_budget('member_cap', 'public.member_monthly', 0.5)")
        c.execute("INSERT INTO public.llm_calls (org, member, llm, prompt_tok, completion_tok) VALUES ('acme', 'ann', %s, 300000, 0), ('acme', 'bob', %s, 600000, 0)", (MODEL, MODEL))
        c.execute("SELECT llm_cost.set_budget_limit('member_cap', '{\"member\": \"bob\"}', 5)")
        c.execute("SELECT llm_cost.set_budget_limit('member_cap', '{\"member\": \"cid\"}', 7)")
        role = "it_reader_" + uuid.uuid4().hex[:6]
        c.execute(f"CREATE ROLE {role} LOGIN IN ROLE llm_cost_reader")
        try:
            with psycopg.connect(dsn(calls, role), autocommit=True) as r:
                r.execute("SELECT set_config('llm_cost.principal', 'ann', false)")
                assert r.execute("SELECT budget, \"group\"->>'member', spent_usd::numeric(20,3)::text FROM llm_cost.budget_status").fetchall() == \
                    [("member_cap", "ann", "0.300")]
                assert r.execute("SELECT \"group\"->>'member', threshold::text FROM llm_cost.budget_alerts").fetchall() == [("ann", "0.5")]
                assert r.execute("SELECT count(*) FROM llm_cost.budget_limits").fetchone() == (0,)
                assert r.execute("SELECT allowed, spent_usd::numeric(20,3)::text FROM llm_cost.check_budget('member_cap', '{\"member\": \"ann\"}')").fetchone() == (True, "0.300")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT * FROM llm_cost.check_budget('member_cap', '{\"member\": \"bob\"}')")
                # Not the rollup's owner: cannot manage its budgets, nor write the tables.
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT llm_cost.create_budget('mine', 'public.member_monthly', 1)")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT llm_cost.drop_budget('member_cap')")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT llm_cost._budget_write('drop', '{\"budget_id\": 1001}')")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("DELETE FROM llm_cost.budget_alerts")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("INSERT INTO llm_cost.budget_alerts (budget_id, budget, \"group\", period_start, threshold, spent_usd, limit_usd) VALUES (1001, 'x', '{}', now(), 1, 1, 1)")
                r.execute("SELECT set_config('llm_cost.principal', 'bob', false)")
                assert r.execute("SELECT \"group\"->>'member', limit_usd::text, state FROM llm_cost.budget_status").fetchall() == [("bob", "5", "ok")]
                assert r.execute("SELECT \"group\"->>'member', limit_usd::text FROM llm_cost.budget_limits").fetchall() == [("bob", "5")]
            # Admins see every group, the one with only a limit of its own included.
            c.execute(f"GRANT llm_cost_admin TO {role}")
            with psycopg.connect(dsn(calls, role), autocommit=True) as r:
                assert r.execute("SELECT \"group\"->>'member', spent_usd::numeric(20,3)::text FROM llm_cost.budget_status WHERE budget = 'member_cap' ORDER BY 1").fetchall() == \
                    [("ann", "0.300"), ("bob", "0.600"), ("cid", "0.000")]
        finally:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


def test_a_crossing_no_writer_saw_is_recorded_by_the_background_worker(calls):
    """A prepared transaction's spend is not visible to a writer that commits meanwhile, and
    COMMIT PREPARED checks nothing: only the sum crosses 50%. The worker records it, once."""
    lis = listener(calls)
    gid = "it_budget_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dsn(calls), autocommit=True) as a, psycopg.connect(dsn(calls), autocommit=True) as b:
        a.execute("BEGIN")
        insert(a, "acme", 300_000)
        a.execute(f"PREPARE TRANSACTION '{gid}'")
        insert(b, "acme", 300_000)                  # sees its own $0.30 only
        a.execute(f"COMMIT PREPARED '{gid}'")
        assert received(lis, 1.0) == []
        assert one(a, "SELECT count(*) FROM llm_cost.budget_alerts") == 0
        set_worker_fast(True)
        try:
            assert wait_for(lambda: one(a, "SELECT count(*) FROM llm_cost.budget_alerts") == 1, timeout=20)
            got = received(lis, 3.0)
        finally:
            set_worker_fast(False)
        assert [(n["group"], n["threshold"], n["spent_usd"]) for n in got] == [({"org": "acme"}, 0.5, 0.6)]
        assert alerts(a) == [("acme", "0.5", "0.600", "1.00")]
    lis.close()


def test_one_rule_says_who_sees_a_groups_budget_and_anomalies(calls):
    """budget_limits, budget_alerts and anomaly_alerts ask one rule (llm_cost._rollup_group_visible):
    admins; the owner of the rollup's table of sums; a reader of the rollup, all groups without
    row security on it, with it only groups naming them in the owner column; nobody else."""
    with psycopg.connect(dsn(calls), autocommit=True) as c:
        c.execute("SELECT llm_cost.create_rollup('public.org_daily', 'public.llm_calls', 'day', '{org}')")
        c.execute("SELECT llm_cost.set_budget_limit('org_cap', '{\"org\": \"acme\"}', 5)")
        c.execute("SELECT llm_cost.set_budget_limit('org_cap', '{\"org\": \"zeta\"}', 7)")
        c.execute("SELECT llm_cost.watch_anomalies('vis_watch', 'public.org_daily', '{org}')")
        watch = one(c, "SELECT id FROM llm_cost.anomaly_watches WHERE name = 'vis_watch'")
        budget_id = one(c, "SELECT id FROM llm_cost.budgets WHERE name = 'org_cap'")
        tag = uuid.uuid4().hex[:6]
        reader, owner, stranger = f"it_vis_r_{tag}", f"it_vis_o_{tag}", f"it_vis_s_{tag}"
        for role in (reader, owner, stranger):
            c.execute(f"CREATE ROLE {role} LOGIN IN ROLE llm_cost_reader")
        c.execute(f"GRANT SELECT ON public.org_monthly, public.org_daily TO {reader}")
        # Owning the table of sums is owning the rollup, for this rule.
        c.execute(f"ALTER TABLE public.org_monthly_stripes OWNER TO {owner}")
        c.execute(f"ALTER TABLE public.org_daily_stripes OWNER TO {owner}")

        def seen(role, principal=None):
            with psycopg.connect(dsn(calls, role), autocommit=True) as r:
                if principal is not None:
                    r.execute("SELECT set_config('llm_cost.principal', %s, false)", (principal,))
                limits = [g for (g,) in r.execute("""SELECT "group"->>'org' FROM llm_cost.budget_limits ORDER BY 1""")]
                anomalies = [one(r, "SELECT llm_cost._anomaly_group_visible(%s, %s::jsonb)", watch, json.dumps(g))
                             for g in ({"org": "acme"}, {"org": "zeta"}, {})]
                budget = [one(r, "SELECT llm_cost._budget_group_visible(%s, %s::jsonb)", b, '{"org": "acme"}')
                          for b in (budget_id, -1)]
                return limits, anomalies, budget

        try:
            assert seen(stranger) == ([], [False, False, False], [False, False])
            assert seen(reader) == (["acme", "zeta"], [True, True, True], [True, False])
            assert seen(owner) == (["acme", "zeta"], [True, True, True], [True, False])
            c.execute("SELECT llm_cost.enable_row_security('public.org_monthly', 'org')")
            c.execute("SELECT llm_cost.enable_row_security('public.org_daily', 'org')")
            # Under row security a reader sees the groups that name it, not the whole ({}).
            assert seen(reader, "acme") == (["acme"], [True, False, False], [True, False])
            assert seen(reader, "zeta") == (["zeta"], [False, True, False], [False, False])
            assert seen(reader) == ([], [False, False, False], [False, False])
            assert seen(owner) == (["acme", "zeta"], [True, True, True], [True, False])
            assert seen(stranger, "acme") == ([], [False, False, False], [False, False])
            c.execute(f"GRANT llm_cost_admin TO {stranger}")
            assert seen(stranger) == (["acme", "zeta"], [True, True, True], [True, True])
        finally:
            c.execute("SELECT llm_cost.drop_anomaly_watch('vis_watch')")
            for role in (reader, owner, stranger):
                c.execute(f"REASSIGN OWNED BY {role} TO current_user")
                c.execute(f"DROP OWNED BY {role}")
                c.execute(f"DROP ROLE {role}")
