"""Insights (issue #30): cache savings, the cost of failed calls and provided-vs-list sums in the
rollups, checked against a GROUP BY over the raw rows; the update from 0.10.0 fills them for
rollups made before it, and the library writes a 0.10.0 table of sums until the update."""
import importlib.util
import re
import uuid

import psycopg
import pytest

from conftest import ROOT, admin, one

CURRENT_VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)

# A table of the shape users bring: integer microcents, no cost_source column, an error column,
# a provider the rollup groups by.
APP_TABLE = """
CREATE TABLE public.ins_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL, team text, vendor text, model text,
    prompt_tokens int, completion_tokens int, cached_tokens int, cache_created int,
    cost_microcents bigint NOT NULL DEFAULT 0, error_message text);
SELECT llm_cost.track('public.ins_log', time_column => 'at', input_tokens_column => 'prompt_tokens',
                      output_tokens_column => 'completion_tokens', cache_read_tokens_column => 'cached_tokens',
                      cache_write_tokens_column => 'cache_created', cost_column => 'cost_microcents',
                      cost_unit => 'microcents');
"""

# Rows: estimated (with and without cache tokens), provided (a provider's reported cost, in
# microcents), failed, unknown model, rounding to microcents.
APP_ROWS = """
INSERT INTO public.ins_log (at, team, vendor, model, prompt_tokens, completion_tokens, cached_tokens, cache_created, error_message)
SELECT '2026-11-0%s 10:00+00'::timestamptz + (i || ' minutes')::interval, 'team-' || (i %% 3), 'v' || (i %% 2),
       (ARRAY['claude-sonnet-4-5', 'gpt-4o', 'gpt-4o-mini', 'no-such-model-x'])[1 + i %% 4],
       100 + i * 7, 20 + i, (i * 131) %% 5000, CASE WHEN i %% 5 = 0 THEN 1000 + i ELSE 0 END,
       CASE WHEN i %% 7 = 0 THEN 'overloaded' END
  FROM generate_series(1, 200) i;
INSERT INTO public.ins_log (at, team, vendor, model, prompt_tokens, completion_tokens, cached_tokens, cache_created, cost_microcents)
SELECT '2026-11-0%s 12:00+00'::timestamptz + (i || ' minutes')::interval, 'team-' || (i %% 3), 'v1',
       (ARRAY['gpt-4o', 'claude-sonnet-4-5'])[1 + i %% 2], 1000 * i, 10 * i, 0, 0, 123457 * i
  FROM generate_series(1, 20) i;
"""

# The same figures from the raw rows: list prices by model name at each row's time.
RAW = """
WITH r AS (
  SELECT t.*, t.cost_microcents * 0.00000001 AS cost,
         llm_cost.estimate_cost(t.model, t.prompt_tokens, t.completion_tokens, t.cached_tokens, t.cache_created, t.at) AS list,
         round(llm_cost.estimate_cost(t.model, t.prompt_tokens, t.completion_tokens, t.cached_tokens, t.cache_created, t.at) * 100000000) AS list_units
    FROM public.ins_log t),
c AS (
  -- llm_cost_core::ledger::classify: exactly the estimate is estimated, else the column
  -- default (0) is unpriced, else provided.
  SELECT r.*, CASE WHEN r.list_units = r.cost_microcents THEN 'estimated'
                   WHEN r.cost_microcents = 0 THEN 'unpriced' ELSE 'provided' END AS stored
    FROM r)
SELECT date_trunc('day', at, 'UTC') AS day, team, count(*)::bigint AS requests, sum(cost) AS cost_usd,
       coalesce(sum(llm_cost.cache_savings(model, prompt_tokens, completion_tokens, cached_tokens, cache_created, at)) FILTER (WHERE stored <> 'unpriced'), 0) AS savings,
       coalesce(sum(llm_cost.cache_write_extra(model, prompt_tokens, completion_tokens, cached_tokens, cache_created, at)) FILTER (WHERE stored <> 'unpriced'), 0) AS write_extra,
       coalesce(sum(cost) FILTER (WHERE error_message IS NOT NULL), 0) AS error_cost,
       count(*) FILTER (WHERE stored = 'provided' AND list IS NOT NULL)::bigint AS provided,
       coalesce(sum(cost) FILTER (WHERE stored = 'provided' AND list IS NOT NULL), 0) AS provided_cost,
       coalesce(sum(list) FILTER (WHERE stored = 'provided'), 0) AS provided_list
  FROM c GROUP BY 1, 2 ORDER BY 1, 2"""

ROLLUP = """
SELECT period_start, team, sum(requests)::bigint, sum(cost_usd), sum(cache_savings_usd), sum(cache_write_extra_usd),
       sum(error_cost_usd), sum(provided_requests)::bigint, sum(provided_cost_usd), sum(provided_list_usd)
  FROM public.ins_daily GROUP BY 1, 2 ORDER BY 1, 2"""


def numbers(rows):
    """Rows as lists (Decimal compares as a number: 0.0100 = 0.01)."""
    return [tuple(r) for r in rows]


def test_new_sums_equal_a_group_by_over_the_raw_rows(connect):
    c = connect()
    c.execute("SET client_min_messages = warning")
    c.execute("DROP TABLE IF EXISTS public.ins_log CASCADE")
    c.execute(APP_TABLE)
    c.execute(APP_ROWS % (1, 1))
    # A rollup made after rows exist (backfilled in SQL), then rows added by the row path, COPY
    # and an UPDATE that moves rows between groups.
    c.execute("SELECT llm_cost.create_rollup('public.ins_daily', 'public.ins_log', 'day', '{team,vendor}')")
    c.execute(APP_ROWS % (2, 2))
    with c.cursor().copy("COPY public.ins_log (at, team, vendor, model, prompt_tokens, completion_tokens, cached_tokens, cache_created, error_message) FROM STDIN") as cp:
        for i in range(60):
            cp.write_row(("2026-11-03 09:00+00", f"team-{i % 3}", "v0", ["claude-sonnet-4-5", "gpt-4o"][i % 2],
                          500 + i, 40, 3000 + i, 200 if i % 3 == 0 else 0, "boom" if i % 4 == 0 else None))
    c.execute("UPDATE public.ins_log SET error_message = 'late failure', team = 'team-9' WHERE id % 11 = 0")
    raw = numbers(c.execute(RAW).fetchall())
    rolled = numbers(c.execute(ROLLUP).fetchall())
    assert raw == rolled
    # Not a vacuous check: each new figure is non-zero somewhere.
    totals = c.execute("""SELECT sum(cache_savings_usd), sum(cache_write_extra_usd), sum(error_cost_usd),
                                 sum(provided_requests), sum(provided_cost_usd) - sum(provided_list_usd)
                            FROM public.ins_daily""").fetchone()
    assert all(v != 0 for v in totals), totals
    assert one(c, "SELECT sum(provided_requests) FROM public.ins_daily") == 40
    # A rebuild (SQL over the raw rows) gives the same sums as the row path kept.
    c.execute("SELECT llm_cost.rebuild_rollup('public.ins_daily')")
    assert numbers(c.execute(ROLLUP).fetchall()) == raw
    # The reports read them: cache savings per team, provided vs list per vendor.
    by_team = {r[0]["team"]: r for r in c.execute("SELECT * FROM llm_cost.cache_savings_by('public.ins_daily', '{team}')").fetchall()}
    for day_team in c.execute("SELECT team, sum(savings) - sum(write_extra) FROM (" + RAW + ") x GROUP BY 1").fetchall():
        assert by_team[day_team[0]][7] == day_team[1]
    rec = c.execute("SELECT provided_requests, provided_cost_usd - list_cost_usd, difference_usd FROM llm_cost.provided_vs_list('public.ins_daily')").fetchone()
    assert rec[0] == 40 and rec[1] == rec[2]
    err = c.execute("SELECT sum(error_cost_usd) FROM llm_cost.spend_by('public.ins_daily', '{team}')").fetchone()[0]
    assert err == c.execute("SELECT sum(error_cost) FROM (" + RAW + ") x").fetchone()[0]
    c.execute("SELECT llm_cost.drop_rollup('public.ins_daily'); SELECT llm_cost.untrack('public.ins_log'); DROP TABLE public.ins_log")


def test_cache_savings_per_call():
    """The per-call functions: at list price, 0 without cache tokens, NULL for a model without a
    price, 22023 for a negative count."""
    with admin() as a:
        db = "it_ins_" + uuid.uuid4().hex[:8]
        a.execute(f"CREATE DATABASE {db}")
    try:
        with admin(db) as c:
            c.execute("CREATE EXTENSION llm_cost")
            # claude-sonnet-4-5: input $3, cache read $0.30, cache write $3.75 per million.
            assert str(one(c, "SELECT llm_cost.cache_savings('claude-sonnet-4-5', 50, 500, 1800, 2048, '2026-11-01')")) == "0.00486"
            assert str(one(c, "SELECT llm_cost.cache_write_extra('claude-sonnet-4-5', 50, 500, 1800, 2048, '2026-11-01')")) == "0.001536"
            assert str(one(c, "SELECT llm_cost.cache_savings('gpt-4o', 1000, 10)")) == "0"
            assert one(c, "SELECT llm_cost.cache_savings('no-such-model-x', 1000, 10, 500)") is None
            try:
                c.execute("SELECT llm_cost.cache_savings('gpt-4o', 1000, 10, -1)")
                raise AssertionError("a negative count was accepted")
            except Exception as e:  # noqa: BLE001
                assert getattr(e, "sqlstate", None) == "22023", e
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def install_base_script():
    spec = importlib.util.spec_from_file_location("gen_upgrade", ROOT / "scripts" / "gen_upgrade.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.install_base_script(current=CURRENT_VERSION)


def test_update_from_0_10_0_fills_the_new_sums_from_the_raw_rows():
    """A 0.10.0 database keeps writing its rollups under this library before its update (the
    tables of sums lack the new columns); the update adds them, computed from the raw rows still
    there, and leaves the other sums as they were (a purged period keeps its cost)."""
    install_base_script()
    db = "it_010_" + uuid.uuid4().hex[:8]
    with admin() as a:
        a.execute(f"CREATE DATABASE {db}")
    try:
        with admin(db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION llm_cost VERSION '0.10.0'")
            c.execute(APP_TABLE)
            c.execute("SELECT llm_cost.create_rollup('public.ins_daily', 'public.ins_log', 'day', '{team,vendor}')")
            # Written under this library while the SQL is 0.10.0's.
            c.execute(APP_ROWS % (1, 1))
            c.execute(APP_ROWS % (2, 2))
            c.execute("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cache_read_tokens, occurred_at) "
                      "VALUES ('claude-sonnet-4-5', 100, 10, 5000, '2026-11-02 08:00+00')")
            assert one(c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.ins_daily_stripes'::regclass AND attname = 'cache_savings_usd'") == 0
            before = c.execute("SELECT period_start, team, vendor, requests, cost_usd FROM public.ins_daily ORDER BY 1, 2, 3").fetchall()
            # Day 1's raw rows are purged (the rollup keeps them).
            c.execute("DELETE FROM public.ins_log WHERE at < '2026-11-02'")
            c.execute("ALTER EXTENSION llm_cost UPDATE")
            assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'") == CURRENT_VERSION
            assert c.execute("SELECT period_start, team, vendor, requests, cost_usd FROM public.ins_daily ORDER BY 1, 2, 3").fetchall() == before
            raw = numbers(c.execute(RAW).fetchall())
            rolled = numbers(c.execute(ROLLUP).fetchall())
            # Day 2: the new sums from the raw rows; day 1 (purged): 0, its cost kept.
            assert [r[:2] + r[4:] for r in rolled if r[0].day == 2] == [r[:2] + r[4:] for r in raw]
            assert [r[4:] for r in rolled if r[0].day == 1] == [(0,) * 6] * 3
            # The histograms too: day 2's equal a rebuild of day 2 from its raw rows.
            hist = "SELECT team, vendor, cost_histogram, max_request_cost_usd FROM public.ins_daily WHERE period_start = '2026-11-02' ORDER BY 1, 2"
            updated = c.execute(hist).fetchall()
            assert any(r[2] for r in updated)
            c.execute("SELECT llm_cost.rebuild_rollup('public.ins_daily', '2026-11-02', '2026-11-03')")
            assert c.execute(hist).fetchall() == updated
            # The shipped rollups got them too (usage_events was not purged).
            assert str(one(c, "SELECT sum(cache_savings_usd) FROM llm_cost.usage_daily")) == \
                str(one(c, "SELECT llm_cost.cache_savings('claude-sonnet-4-5', 100, 10, 5000, 0, '2026-11-02 08:00+00')"))
            # New rows after the update add to them.
            c.execute(APP_ROWS % (2, 2))
            assert one(c, "SELECT sum(provided_requests) FROM public.ins_daily WHERE period_start = '2026-11-02'") == 40
    finally:
        with admin() as a:
            a.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_forecast_and_budget_projection(connect):
    """Run-rate forecast: projected = spent x period length / elapsed; the budget view says when
    the limit is reached at that rate."""
    c = connect()
    c.execute("SET client_min_messages = warning")
    # Half of a 30-day period gone, $40 spent: $80 projected; a $60 limit is reached at 3/4.
    row = c.execute("""SELECT * FROM llm_cost.run_rate_forecast(40, '2026-11-01 00:00+00', '2026-12-01 00:00+00', 60,
                                                               '2026-11-16 00:00+00')""").fetchone()
    assert str(row[0]) == "80.00000000" and row[1].isoformat() == "2026-11-23T12:00:00+00:00", row
    # Past the limit already, or never reaching it: no crossing time; before the period: nothing.
    assert c.execute("SELECT projected_exceed_at FROM llm_cost.run_rate_forecast(70, '2026-11-01', '2026-12-01', 60, '2026-11-16')").fetchone()[0] is None
    assert c.execute("SELECT projected_exceed_at FROM llm_cost.run_rate_forecast(10, '2026-11-01', '2026-12-01', 60, '2026-11-16')").fetchone()[0] is None
    assert c.execute("SELECT projected_usd FROM llm_cost.run_rate_forecast(10, '2026-11-01', '2026-12-01', 60, '2026-10-16')").fetchone()[0] is None
    # Non-finite amounts or times are refused (22023), a histogram that is not one too.
    for bad in ("'NaN', '2026-11-01', '2026-12-01'", "10, '2026-11-01', '2026-12-01', 'Infinity'", "10, '-infinity', '2026-12-01'"):
        try:
            c.execute(f"SELECT * FROM llm_cost.run_rate_forecast({bad})")
            raise AssertionError(bad)
        except psycopg.Error as e:
            assert e.sqlstate == "22023", (bad, e)
    for bad in ("'{1,2,3}'", "'{5000,1}'", "'{-1,1}'"):
        try:
            c.execute(f"SELECT llm_cost.histogram_cost_at_rank({bad}::bigint[], 1)")
            raise AssertionError(bad)
        except psycopg.Error as e:
            assert e.sqlstate == "22023", (bad, e)
    c.execute("DROP TABLE IF EXISTS public.fc_log CASCADE")
    c.execute("""CREATE TABLE public.fc_log (at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                             input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
                 SELECT llm_cost.track('public.fc_log', time_column => 'at');
                 SELECT llm_cost.create_rollup('public.fc_monthly', 'public.fc_log', 'month', '{team}');
                 SELECT llm_cost.create_budget('fc_cap', 'public.fc_monthly', 1000, '{0.5}');""")
    c.execute("INSERT INTO public.fc_log (team, model, input_tokens, output_tokens) VALUES ('t1', 'gpt-4o', 4000000, 0), ('t2', 'gpt-4o', 1000, 0)")
    with c.transaction():
        rows = c.execute("""SELECT "group"->>'team', spent_usd, projected_usd, projected_exceed_at,
                                   projected_usd = round(spent_usd * EXTRACT(epoch FROM period_end - period_start)
                                                         / EXTRACT(epoch FROM now() - period_start), 8)
                              FROM llm_cost.budget_status WHERE budget = 'fc_cap' ORDER BY 1""").fetchall()
        assert [r[0] for r in rows] == ["t1", "t2"] and all(r[4] for r in rows), rows
        assert rows[0][1] == 10 and rows[0][2] >= 10
        # The rollup's own budget view has the same columns.
        assert c.execute("SELECT team, projected_usd FROM public.fc_monthly_budget_status ORDER BY 1").fetchall() == [(r[0], r[2]) for r in rows]
        fc = c.execute("SELECT \"group\"->>'team', spent_usd, projected_usd FROM llm_cost.spend_forecast('public.fc_monthly', '{team}') ORDER BY 1").fetchall()
        assert fc == [(r[0], r[1], r[2]) for r in rows], (fc, rows)
    c.execute("SELECT llm_cost.drop_budget('fc_cap'); SELECT llm_cost.drop_rollup('public.fc_monthly'); "
              "SELECT llm_cost.untrack('public.fc_log'); DROP TABLE public.fc_log")


def test_anomalies_follow_the_stated_rule(connect):
    """spend_anomalies lists exactly the groups whose spend today exceeds median + 3 x spread of
    their last 14 days (spread = 1.4826 x MAD, at least 10% of the median), with enough calls."""
    import statistics
    c = connect()
    c.execute("SET client_min_messages = warning")
    c.execute("DROP TABLE IF EXISTS public.an_log CASCADE")
    c.execute("""CREATE TABLE public.an_log (at timestamptz NOT NULL, team text, model text, input_tokens int,
                                             output_tokens int, cost_usd numeric, cost_source text);
                 SELECT llm_cost.track('public.an_log', time_column => 'at');
                 SELECT llm_cost.create_rollup('public.an_daily', 'public.an_log', 'day', '{team}');""")
    # Days 1..14 of November as the baseline; the 15th is "today" (at => 2026-11-15 18:00).
    # steady: 20 calls a day of $0.01 each (provided), today the same; spiky: ~$0.2 a day, today $5;
    # quiet: nothing before, today 12 calls; few: a spike of 3 calls only; gap: days missing (0).
    rows = []
    for d in range(1, 15):
        rows += [(f"2026-11-{d:02d} 10:00+00", "steady", "0.01")] * 20
        rows += [(f"2026-11-{d:02d} 11:00+00", "spiky", str(0.18 + 0.01 * (d % 5)))] * 10
        if d % 2 == 0:
            rows += [(f"2026-11-{d:02d} 12:00+00", "gap", "0.05")] * 10
    rows += [("2026-11-15 10:00+00", "steady", "0.01")] * 20
    rows += [("2026-11-15 11:00+00", "spiky", "0.5")] * 10
    rows += [("2026-11-15 12:00+00", "quiet", "0.02")] * 12
    rows += [("2026-11-15 13:00+00", "few", "9")] * 3
    rows += [("2026-11-15 14:00+00", "gap", "0.3")] * 10
    with c.cursor().copy("COPY public.an_log (at, team, model, input_tokens, output_tokens, cost_usd, cost_source) FROM STDIN") as cp:
        for at, team, cost in rows:
            cp.write_row((at, team, "gpt-4o", 1, 1, cost, "provided"))
    got = c.execute("""SELECT "group"->>'team', spent_usd, baseline_usd, spread_usd, score
                         FROM llm_cost.spend_anomalies('public.an_daily', '{team}', at => '2026-11-15 18:00+00')
                        ORDER BY 1""").fetchall()
    # The rule in Python, over the raw rows.
    from decimal import Decimal
    daily = {}
    for at, team, cost in rows:
        daily[(team, int(at[8:10]))] = daily.get((team, int(at[8:10])), Decimal(0)) + Decimal(cost)
    expect = []
    for team in sorted({t for t, _ in daily}):
        today = daily.get((team, 15), Decimal(0))
        n = sum(1 for r in rows if r[1] == team and r[0].startswith("2026-11-15"))
        past = [daily.get((team, d), Decimal(0)) for d in range(1, 15)]
        m = Decimal(statistics.median(past))
        spread = max(Decimal("1.4826") * Decimal(statistics.median([abs(p - m) for p in past])), Decimal("0.1") * m)
        if n >= 10 and today > m + 3 * spread:
            expect.append((team, today, m.quantize(Decimal("0.00000001")), spread.quantize(Decimal("0.00000001"))))
    assert [g[:4] for g in got] == expect, (got, expect)
    assert [g[0] for g in got] == ["gap", "quiet", "spiky"], got
    assert dict((g[0], g[4]) for g in got)["quiet"] is None  # zero baseline, zero spread
    # Bad arguments: a clear error.
    for bad in ("periods => 2", "threshold => 0", "min_requests => -1", "threshold => 'NaN'", "threshold => 'Infinity'"):
        try:
            c.execute(f"SELECT * FROM llm_cost.spend_anomalies('public.an_daily', '{{team}}', {bad})")
            raise AssertionError(bad)
        except Exception as e:  # noqa: BLE001
            assert getattr(e, "sqlstate", None) == "22023", e
    c.execute("SELECT llm_cost.drop_rollup('public.an_daily'); SELECT llm_cost.untrack('public.an_log'); DROP TABLE public.an_log")


def test_cost_percentiles_within_the_stated_bound(connect):
    """p50/p90/p99 per group from the rollup's histograms are within 1/32 of the exact
    nearest-rank percentiles over the raw rows (percentile_disc); the maximum is exact. Rows come
    by INSERT, COPY and an UPDATE that changes costs (the histogram takes the old cost away)."""
    import random
    rnd = random.Random(30)
    c = connect()
    c.execute("SET client_min_messages = warning")
    c.execute("DROP TABLE IF EXISTS public.pc_log CASCADE")
    c.execute("""CREATE TABLE public.pc_log (id bigserial, at timestamptz NOT NULL, team text, model text, input_tokens int,
                                             output_tokens int, cost_usd numeric, cost_source text);
                 SELECT llm_cost.track('public.pc_log', time_column => 'at');
                 SELECT llm_cost.create_rollup('public.pc_daily', 'public.pc_log', 'day', '{team}');""")
    rows = []
    for i in range(3000):
        team = ["a", "b", "c"][i % 3]
        # log-normal-ish costs from $0.00001 to ~$20, a few free calls, some estimated by llm_cost.
        cost = None if i % 10 == 0 else f"{rnd.lognormvariate(-6, 2.2):.10f}" if i % 97 else "0"
        rows.append((f"2026-11-{1 + i % 5:02d} 10:00+00", team, "gpt-4o" if cost is None else "x-provided",
                     rnd.randint(1, 5000), rnd.randint(1, 500), cost, None if cost is None else "provided"))
    c.cursor().executemany("INSERT INTO public.pc_log (at, team, model, input_tokens, output_tokens, cost_usd, cost_source) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows[:1500])
    with c.cursor().copy("COPY public.pc_log (at, team, model, input_tokens, output_tokens, cost_usd, cost_source) FROM STDIN") as cp:
        for r in rows[1500:]:
            cp.write_row(r)
    c.execute("UPDATE public.pc_log SET cost_usd = cost_usd * 3 WHERE id % 13 = 0 AND cost_source = 'provided'")
    # An unknown model stays out of the distribution (unpriced).
    c.execute("INSERT INTO public.pc_log (at, team, model, input_tokens, output_tokens) VALUES ('2026-11-01 11:00+00', 'a', 'no-such-model-q', 1, 1)")
    got = c.execute("""SELECT "group"->>'team', priced_requests, cost_usd, max_usd
                         FROM llm_cost.cost_percentiles('public.pc_daily', '{team}', percentiles => '{0.5,0.9,0.99,1}') ORDER BY 1""").fetchall()
    exact = c.execute("""SELECT team, count(*), ARRAY[percentile_disc(0.5) WITHIN GROUP (ORDER BY cost_usd),
                                                    percentile_disc(0.9) WITHIN GROUP (ORDER BY cost_usd),
                                                    percentile_disc(0.99) WITHIN GROUP (ORDER BY cost_usd),
                                                    percentile_disc(1) WITHIN GROUP (ORDER BY cost_usd)], max(cost_usd)
                           FROM public.pc_log WHERE cost_source <> 'unpriced' GROUP BY 1 ORDER BY 1""").fetchall()
    assert [(g[0], g[1], g[3]) for g in got] == [(e[0], e[1], e[3]) for e in exact]
    for g, e in zip(got, exact):
        for est, true in zip(g[2], e[2]):
            assert abs(est - true) * 32 <= true, (g[0], est, true)
    # Over several periods and every group at once, and a period range.
    total = c.execute("SELECT priced_requests FROM llm_cost.cost_percentiles('public.pc_daily')").fetchone()[0]
    assert total == sum(e[1] for e in exact)
    one_day = c.execute("SELECT priced_requests FROM llm_cost.cost_percentiles('public.pc_daily', '{}', '2026-11-02', '2026-11-03')").fetchone()[0]
    assert one_day == c.execute("SELECT count(*) FROM public.pc_log WHERE at::date = '2026-11-02' AND cost_source <> 'unpriced'").fetchone()[0]
    # A rebuild from the raw rows gives the same histograms.
    before = c.execute("SELECT team, cost_histogram, max_request_cost_usd FROM public.pc_daily ORDER BY period_start, team").fetchall()
    c.execute("SELECT llm_cost.rebuild_rollup('public.pc_daily')")
    assert c.execute("SELECT team, cost_histogram, max_request_cost_usd FROM public.pc_daily ORDER BY period_start, team").fetchall() == before
    try:
        c.execute("SELECT * FROM llm_cost.cost_percentiles('public.pc_daily', percentiles => '{0.5,1.5}')")
        raise AssertionError("accepted")
    except Exception as e:  # noqa: BLE001
        assert getattr(e, "sqlstate", None) == "22023", e
    c.execute("SELECT llm_cost.drop_rollup('public.pc_daily'); SELECT llm_cost.untrack('public.pc_log'); DROP TABLE public.pc_log")


def test_a_budget_alerts_once_when_a_group_is_on_track_to_exceed(connect):
    """create_budget(alert_on_projection => true): a group whose spend at its rate since the
    period began reaches the limit before the period ends is alerted once (kind projected, at
    commit), not before a tenth of the period is gone, not for spend off that track; crossing the
    limit itself is alerted as before."""
    import pytest
    c = connect()
    c.execute("SET client_min_messages = warning")
    # A period at least a tenth gone and not nearly over, whatever the time of day the test runs.
    frac = lambda grain: float(c.execute(  # noqa: E731
        f"SELECT EXTRACT(epoch FROM now() - date_trunc('{grain}', now(), 'UTC')) / EXTRACT(epoch FROM interval '1 {grain}')").fetchone()[0])
    grain = next((g for g in ("day", "hour", "week", "month") if 0.12 <= frac(g) <= 0.95), None)
    if grain is None:
        pytest.skip("no UTC day, hour, week or month is between 12% and 95% gone right now (a projection needs a tenth of the period)")
    c.execute("DROP TABLE IF EXISTS public.pj_log CASCADE")
    c.execute(f"""CREATE TABLE public.pj_log (at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                              input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
                  SELECT llm_cost.track('public.pj_log', time_column => 'at');
                  SELECT llm_cost.create_rollup('public.pj_sums', 'public.pj_log', '{grain}', '{{team}}');""")
    msg = c.execute("SELECT llm_cost.create_budget('pj_cap', 'public.pj_sums', 100, '{1}', alert_on_projection => true)").fetchone()[0]
    assert msg.endswith("alerts when on track to exceed"), msg
    c.execute("SELECT llm_cost.create_budget('pj_plain', 'public.pj_sums', 100, '{1}')")
    f = frac(grain)
    spend = lambda team, usd: c.execute(  # noqa: E731
        "INSERT INTO public.pj_log (team, model, input_tokens, output_tokens, cost_usd, cost_source) VALUES (%s, 'x', 1, 1, %s, 'provided')",
        (team, usd))
    alerts = lambda: c.execute("""SELECT budget, "group"->>'team', kind, threshold FROM llm_cost.budget_alerts
                                    WHERE budget IN ('pj_cap', 'pj_plain') ORDER BY id""").fetchall()  # noqa: E731
    # Off the track: half of what the rate needs.
    spend("a", round(100 * f * 0.5, 4))
    assert alerts() == []
    # On it (spend > limit x time gone, still under the limit): one alert, the budget without the option none.
    spend("a", round(100 * (f + (1 - f) / 2) - 100 * f * 0.5, 4))
    got = alerts()
    assert [(b, t, k, float(th)) for b, t, k, th in got] == [("pj_cap", "a", "projected", 1.0)], got
    # Once per group and period.
    spend("a", 0.01)
    assert len(alerts()) == 1
    # Another group on its own track.
    spend("b", round(100 * (f + (1 - f) / 2), 4))
    assert [(t, k) for _, t, k, _ in alerts()] == [("a", "projected"), ("b", "projected")]
    # The limit itself: alerted as ever, for both budgets; no second projection.
    spend("a", 100)
    kinds = sorted((b, t, k) for b, t, k, _ in alerts())
    assert kinds == [("pj_cap", "a", "projected"), ("pj_cap", "a", "spent"), ("pj_cap", "b", "projected"), ("pj_plain", "a", "spent")], kinds
    # budget_status shows the same projection the alert used.
    row = c.execute("""SELECT projected_usd >= limit_usd FROM llm_cost.budget_status WHERE budget = 'pj_cap' AND "group"->>'team' = 'b'""").fetchone()
    assert row == (True,)
    c.execute("SELECT llm_cost.drop_budget('pj_cap'); SELECT llm_cost.drop_budget('pj_plain'); "
              "SELECT llm_cost.drop_rollup('public.pj_sums'); SELECT llm_cost.untrack('public.pj_log'); DROP TABLE public.pj_log")


def test_an_anomaly_watch_alerts_once_per_group_and_period(connect):
    """watch_anomalies(): the background worker records each group spend_anomalies() lists, once
    per group and period, in anomaly_alerts and sends NOTIFY llm_cost_anomaly with the id only;
    readers see the alerts of their own groups under the rollup's row security; only the
    rollup's owner may watch it; dropping the rollup drops its watches and alerts."""
    import json
    import time

    from conftest import set_worker_fast, wait_for
    c = connect()
    c.execute("SET client_min_messages = warning")
    suffix = uuid.uuid4().hex[:6]
    ra, rn = f"an_reader_{suffix}", f"an_nobody_{suffix}"
    for r in (ra, rn):
        c.execute(f"CREATE ROLE {r} LOGIN")
    c.execute("DROP TABLE IF EXISTS public.aw_log CASCADE")
    c.execute(f"""CREATE TABLE public.aw_log (at timestamptz NOT NULL, team text, model text, input_tokens int,
                                              output_tokens int, cost_usd numeric, cost_source text);
                  SELECT llm_cost.track('public.aw_log', time_column => 'at');
                  SELECT llm_cost.create_rollup('public.aw_daily', 'public.aw_log', 'day', '{{team, model}}');
                  SELECT llm_cost.enable_row_security('public.aw_daily', 'team');
                  GRANT SELECT ON public.aw_daily TO {ra}, {rn};""")
    # Seven days of steady spend for three teams; today: ra's team and "other" spike, "calm" not.
    rows = []
    for d in range(1, 8):
        for team in (ra, "other", "calm"):
            rows += [(f"{d} days", team, "0.01")] * 5
    rows += [("0 days", ra, "0.5")] * 4 + [("0 days", "other", "0.4")] * 4 + [("0 days", "calm", "0.01")] * 5
    import datetime
    today = c.execute("SELECT date_trunc('day', now(), 'UTC') + interval '1 minute'").fetchone()[0]
    with c.cursor().copy("COPY public.aw_log (at, team, model, input_tokens, output_tokens, cost_usd, cost_source) FROM STDIN") as cp:
        for ago, team, cost in rows:
            at = today - datetime.timedelta(days=int(ago.split()[0]))
            cp.write_row((at, team, "gpt-4o", 1, 1, cost, "provided"))
    # Only the rollup's owner may watch it; bad settings are refused before anything is written.
    r = connect(user=ra)
    try:
        r.execute("SELECT llm_cost.watch_anomalies('aw_x', 'public.aw_daily')")
        raise AssertionError("a reader watched another's rollup")
    except psycopg.Error as e:
        assert e.sqlstate == "42501", e
    for bad, state in (("periods => 2", "22023"), ("threshold => 'NaN'", "22023"), ("\"by\" => '{nope}'", "42703"),
                       ("filter => '{\"nope\": 1}'", "42703"), ("min_requests => -1", "22023"),
                       ("periods => 1001", "22023"), ("threshold => 0", "22023"), ("threshold => -1", "22023"),
                       ("threshold => 'Infinity'", "22023"), ("threshold => 1e6", "22023"), ("\"by\" => '{team,team}'", "22023"),
                       ("\"by\" => NULL", "22004"), ("filter => NULL", "22004"), ("filter => '[1]'", "22023")):
        try:
            c.execute(f"SELECT llm_cost.watch_anomalies('aw_bad', 'public.aw_daily', {bad})")
            raise AssertionError(bad)
        except psycopg.Error as e:
            assert e.sqlstate == state, (bad, e)
    for bad_name in ("''", "'  '", "NULL"):
        try:
            c.execute(f"SELECT llm_cost.watch_anomalies({bad_name}, 'public.aw_daily')")
            raise AssertionError(bad_name)
        except psycopg.Error as e:
            assert e.sqlstate in ("22023", "22004"), (bad_name, e)
    # The bounds themselves are allowed (and dropped again).
    c.execute("SELECT llm_cost.watch_anomalies('aw_edge', 'public.aw_daily', periods => 1000, threshold => 999999.99, min_requests => 0)")
    c.execute("SELECT llm_cost.drop_anomaly_watch('aw_edge')")
    c.execute("SELECT llm_cost.watch_anomalies('aw_edge', 'public.aw_daily', periods => 3, threshold => 0.0001)")
    c.execute("SELECT llm_cost.drop_anomaly_watch('aw_edge')")
    assert one(c, "SELECT count(*) FROM llm_cost.anomaly_watches WHERE name LIKE 'aw_bad%' OR name = 'aw_edge' OR name = ''") == 0
    msg = c.execute("SELECT llm_cost.watch_anomalies('aw_team', 'public.aw_daily', '{team}', periods => 7, min_requests => 3)").fetchone()[0]
    assert msg.startswith("anomaly watch aw_team: groups of public.aw_daily by team whose spend in the current day exceeds the median of their last 7 days by 3 spreads (at least 3 calls)"), msg
    c.execute("SELECT llm_cost.watch_anomalies('aw_all', 'public.aw_daily', periods => 7, threshold => 2, min_requests => 1)")
    try:
        c.execute("SELECT llm_cost.watch_anomalies('aw_team', 'public.aw_daily')")
        raise AssertionError("a second watch of the same name")
    except psycopg.Error as e:
        assert e.sqlstate == "42710", e
    lis = connect()
    lis.execute("LISTEN llm_cost_anomaly")
    expected = c.execute("""SELECT "group"->>'team' FROM llm_cost.spend_anomalies('public.aw_daily', '{team}', 7, 3, 3) ORDER BY 1""").fetchall()
    assert [e[0] for e in expected] == sorted([ra, "other"]), expected
    alerts = lambda: c.execute("""SELECT watch, "group", requests, spent_usd FROM llm_cost.anomaly_alerts
                                   WHERE watch LIKE 'aw_%' ORDER BY watch, "group"->>'team'""").fetchall()  # noqa: E731
    set_worker_fast(True)
    try:
        assert wait_for(lambda: len(alerts()) == 3, 30), alerts()
        got = alerts()
        assert [(w, g) for w, g, _, _ in got] == [("aw_all", {}), ("aw_team", {"team": min(ra, "other")}),
                                                  ("aw_team", {"team": max(ra, "other")})], got
        spent = {(w, g.get("team")): (n, float(s)) for w, g, n, s in got}
        assert spent == {("aw_all", None): (13, 3.65), ("aw_team", ra): (4, 2.0), ("aw_team", "other"): (4, 1.6)}, spent
        # More spend today: still the same three alerts (once per group and period).
        c.execute("INSERT INTO public.aw_log (at, team, model, input_tokens, output_tokens, cost_usd, cost_source) "
                  "VALUES (now(), %s, 'gpt-4o', 1, 1, 5, 'provided')", (ra,))
        time.sleep(3)
        assert len(alerts()) == 3, alerts()
    finally:
        set_worker_fast(False)
    # The notifications: the ids of the alerts, nothing else.
    ids = []
    for n in lis.notifies(timeout=1.0):
        payload = json.loads(n.payload)
        assert set(payload) == {"id"}, payload
        ids.append(payload["id"])
    assert sorted(ids) == sorted(i for (i,) in c.execute("SELECT id FROM llm_cost.anomaly_alerts WHERE watch LIKE 'aw_%'")), ids
    # Row security: the reader (its principal a team) sees the alert of its own team only (not
    # the whole-rollup one, not the other team's); a principal that is no team sees none.
    for role, want in ((ra, [("aw_team", ra)]), (rn, [])):
        r = connect(user=role)
        r.execute(f"SET llm_cost.principal = '{role}'")
        seen = r.execute("""SELECT watch, "group"->>'team' FROM llm_cost.anomaly_alerts WHERE watch LIKE 'aw_%' ORDER BY 1""").fetchall()
        assert seen == want, (role, seen)
        for sql in ("SELECT llm_cost.drop_anomaly_watch('aw_team')", "SELECT llm_cost._anomaly_sweep(1)",
                    "DELETE FROM llm_cost.anomaly_alerts", "INSERT INTO llm_cost.anomaly_watches (name, rollup, \"by\", periods, threshold, min_requests) "
                    "VALUES ('aw_y', 'public.aw_daily', '{}', 3, 1, 0)"):
            try:
                r.execute(sql)
                raise AssertionError(sql)
            except psycopg.Error as e:
                assert e.sqlstate == "42501", (sql, e)
    # Dropping a watch drops its alerts; dropping the rollup drops the rest.
    c.execute("SELECT llm_cost.drop_anomaly_watch('aw_all')")
    assert [w for w, _, _, _ in alerts()] == ["aw_team", "aw_team"]
    c.execute("SELECT llm_cost.drop_rollup('public.aw_daily'); SELECT llm_cost.untrack('public.aw_log'); DROP TABLE public.aw_log")
    assert alerts() == []
    assert one(c, "SELECT count(*) FROM llm_cost.anomaly_watches WHERE name LIKE 'aw_%'") == 0
    for r in (ra, rn):
        c.execute(f"DROP ROLE {r}")


def test_spend_by_equals_a_group_by_over_the_raw_rows(fresh_db):
    """spend_by() (its bigint sums added up as bigints since 0.16.0) against the same figures by
    GROUP BY over usage_events: counts, tokens, cost, the average per priced request, failed calls
    and their cost, the mean latency (over every call, a call without one counting 0: not an
    integer here) and the longest; by two columns, by none, over a range, with a filter."""
    from conftest import dsn
    with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens,
                                                         latency_ms, error)
                     SELECT timestamptz '2026-11-01 00:00+00' + (i % 5) * interval '1 day' + i * interval '1 minute',
                            't' || (i % 3), 'u' || (i % 7), 'chat', (ARRAY['gpt-4o', 'claude-sonnet-4-5', 'no-such-model-y'])[1 + i % 3],
                            100 + i * 13, 7 * i, CASE WHEN i % 4 = 0 THEN NULL ELSE 100 + (i * 37) % 1001 END,
                            CASE WHEN i % 6 = 0 THEN 'timeout' END
                       FROM generate_series(1, 500) i""")
        cols = "requests, total_tokens, cost_usd, avg_cost_per_request_usd, unpriced_requests, error_requests, error_cost_usd, latency_ms_avg, latency_ms_max"
        raw = """SELECT count(*), sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens),
                        sum(cost_usd), round(sum(cost_usd) / nullif(count(cost_usd), 0), 8),
                        count(*) FILTER (WHERE cost_usd IS NULL), count(*) FILTER (WHERE error IS NOT NULL),
                        coalesce(sum(cost_usd) FILTER (WHERE error IS NOT NULL), 0),
                        round(sum(coalesce(latency_ms, 0))::numeric / count(*), 1), max(latency_ms)
                   FROM llm_cost.usage_events WHERE {where} {group}"""
        cases = [
            ("'{tenant_id, model}'", "jsonb_build_object('tenant_id', tenant_id, 'model', model)", "true", "GROUP BY tenant_id, model"),
            ("'{}'", "'{}'::jsonb", "true", ""),
            ("'{user_id}', '2026-11-02', '2026-11-04'", "jsonb_build_object('user_id', user_id)",
             "occurred_at >= '2026-11-02' AND occurred_at < '2026-11-04'", "GROUP BY user_id"),
            ("'{model}', filter => '{\"user_id\": \"u1\"}'", "jsonb_build_object('model', model)", "user_id = 'u1'", "GROUP BY model"),
        ]
        for args, key, where, group in cases:
            got = {r[0]: r[1:] for r in c.execute(f"SELECT \"group\"::text, {cols} FROM llm_cost.spend_by('llm_cost.usage_daily', {args})")}
            want = {r[0]: r[1:] for r in c.execute(f"SELECT ({key})::text, " + raw.format(where=where, group=group)[len("SELECT "):])}
            assert got == want, (args, got, want)
            assert len(got) > 1 or group == ""
            assert any(v[7] is not None and v[7] != v[7].to_integral_value() for v in got.values()), got  # averages with decimals
        # The unknown model's rows are unpriced, and the failed calls cost something.
        assert one(c, "SELECT sum(unpriced_requests) FROM llm_cost.spend_by('llm_cost.usage_daily', '{model}')") > 0
        assert one(c, "SELECT sum(error_cost_usd) FROM llm_cost.spend_by('llm_cost.usage_daily', '{model}')") > 0
        # Tokens past bigint in total (each group's within it): 22003, as sum()::bigint raised.
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens)
                     VALUES ('2026-11-03', 'big1', 'u', 'chat', 'no-such-model-z', 6000000000000000000),
                            ('2026-11-03', 'big2', 'u', 'chat', 'no-such-model-z', 6000000000000000000)""")
        assert one(c, """SELECT total_tokens FROM llm_cost.spend_by('llm_cost.usage_daily', '{tenant_id}', filter => '{"tenant_id": "big1"}')""") \
            == 6000000000000000000
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            c.execute("SELECT * FROM llm_cost.spend_by('llm_cost.usage_daily', '{}')")
