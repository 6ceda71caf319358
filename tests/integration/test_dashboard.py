"""The dashboard (dashboard/) in a real browser: Chromium, headless, driven by puppeteer-core.
The page reads GraphQL only; every figure on it must equal the SQL views read with the same
rights (an admin token sees everything, a user token its own rows). The admin page's screenshot
is the one the README shows (docs/dashboard.png)."""
import json
import os
import shutil
import socket
import subprocess
import urllib.request

import psycopg
import pytest

from conftest import ROOT, dsn, port, server

DASH = ROOT / "dashboard"
SECRET = "llm-cost-dashboard-test-secret-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def token(role, user=None):
    out = subprocess.run(["node", str(DASH / "token.js"), SECRET, role, *([user] if user else [])],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


SEED = """
SELECT llm_cost.create_budget('user_monthly_cap', 'llm_cost.usage_monthly', 0.05, '{0.5,0.8,1.0}');
INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens)
SELECT greatest(date_trunc('month', now(), 'UTC'), now() - (g % 4) * interval '1 day' - (g % 7) * interval '1 minute'),
       (ARRAY['acme', 'globex'])[1 + g % 2], 'user-' || (g % 4),
       (ARRAY['chat', 'search', 'summarize'])[1 + g % 3],
       (ARRAY['claude-sonnet-4-5', 'gpt-4o-mini', 'openai/gpt-4o-mini', 'models/gemini-2.5-flash', 'gemini-2.5-flash', 'my-fine-tuned-model'])[1 + g % 6],
       1000 + (g * 37) % 4000, (g * 13) % 900, CASE WHEN g % 3 = 0 THEN 2000 ELSE 0 END
  FROM generate_series(1, 120) g;
INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens)
VALUES (now() - interval '20 days', 'acme', 'user-1', 'chat', 'gpt-4o', 1000000, 10000);
-- More groups than the page lists (it shows the 100 most expensive).
INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens)
SELECT greatest(date_trunc('month', now(), 'UTC'), now() - interval '1 hour'), 'globex', 'user-2', 'bulk-' || g, 'gpt-4o-mini', 100 * g, 10
  FROM generate_series(1, 110) g;
"""


@pytest.fixture(scope="module")
def dashboard(dbname):
    if not (DASH / "node_modules" / "puppeteer-core").exists() or not os.path.exists(CHROMIUM):
        pytest.fail("the dashboard test needs dashboard/node_modules (npm ci) and chromium: run scripts/test.sh, which installs both")
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        # As scripts/demo.sql makes llm_cost_dashboard: NOINHERIT, never a member of llm_cost_admin.
        c.execute("""DO $$ BEGIN
                       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_dashboard') THEN CREATE ROLE it_dashboard LOGIN NOINHERIT; END IF;
                       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llm_cost_anonymous') THEN CREATE ROLE llm_cost_anonymous NOLOGIN; END IF;
                     END $$""")
        c.execute("GRANT llm_cost_anonymous, llm_cost_reader, llm_cost_auditor TO it_dashboard")
        c.execute(SEED)
    http_port = free_port()
    env = {**os.environ, "DATABASE_URL": f"postgres://it_dashboard@127.0.0.1:{port()}/{dbname}", "JWT_SECRET": SECRET,
           "PORT": str(http_port)}
    url = f"http://127.0.0.1:{http_port}/"
    with server(["node", str(DASH / "server.js")], lambda: urllib.request.urlopen(url, timeout=2).read(), "dashboard.log",
                env=env, cwd=DASH):
        yield url


def browse(url, tok, shot, extra="", width=1440):
    out = subprocess.run(["node", str(DASH / "test" / "check.js"), f"{url}#token={tok}{extra}", str(shot), CHROMIUM, str(width)],
                         capture_output=True, text=True, timeout=180, cwd=DASH)
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout.strip().splitlines()[-1])


def n(v):
    return f"{int(v):,}"


def expected(dbname, role, user=None, rollup=None, since=None, until=None, filt=None):
    """What the page must show, from the SQL views and report functions, with the token's rights
    (rollup: the one the range panels read, by default the first; since/until: the range as UTC
    days, until inclusive, by default this month; filt: the filter, a dict of group columns)."""
    with psycopg.connect(dsn(dbname)) as c:
        c.execute(f"SET ROLE {role}")
        c.execute("SELECT set_config('jwt.claims.user_id', %s, false)", (user or "",))
        q = lambda sql: c.execute(sql).fetchall()  # noqa: E731
        fc = "llm_cost.format_cost"
        e = {}
        for period, cost, req, avg, unp, since_day in q(f"""SELECT period, {fc}(cost_usd), requests,
                                                    CASE WHEN requests > unpriced_requests THEN {fc}(cost_usd / (requests - unpriced_requests)) ELSE '–' END,
                                                    unpriced_requests, to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM llm_cost.spend_summary"""):
            e.update({f"card:{period}:cost": cost, f"card:{period}:requests": n(req), f"card:{period}:avg": avg,
                      f"card:{period}:unpriced": n(unp), f"card:{period}:since": f"since {since_day} (UTC)"})
        for model, rows in q("SELECT model, rows FROM llm_cost.unpriced_models"):
            e[f"unpriced:{model}:rows"] = n(rows)
        for budget, group, spent, limit, used, state, proj in q(f"""SELECT budget, "group"::text, {fc}(spent_usd), {fc}(limit_usd), used_pct, state,
                                                                      coalesce({fc}(projected_usd), '–')
                                                               FROM llm_cost.budget_status"""):
            k = f"budget:{budget}/{json.dumps(json.loads(group), separators=(',', ':'))}"
            e.update({f"{k}:spent": spent, f"{k}:limit": limit, f"{k}:used": f"{used}%", f"{k}:state": state, f"{k}:projected": proj})
        for aid, threshold, spent, kind in q(f"SELECT id, threshold, {fc}(spent_usd), kind FROM llm_cost.budget_alerts ORDER BY id DESC LIMIT 10"):
            e.update({f"alert:{aid}:threshold": "on track to exceed" if kind == "projected" else f"{round(float(threshold) * 100)}%",
                      f"alert:{aid}:spent": spent})
        for aid, spent, base, score in q(f"SELECT id, {fc}(spent_usd), {fc}(baseline_usd), coalesce(score::text, 'new') FROM llm_cost.anomaly_alerts ORDER BY id DESC LIMIT 10"):
            e.update({f"anomaly:{aid}:spent": spent, f"anomaly:{aid}:baseline": base, f"anomaly:{aid}:score": score})
        name = rollup or q("SELECT rollup::text FROM llm_cost.rollups ORDER BY id LIMIT 1")[0][0]
        e.update(range_figures(c, name, since, until, filt or {}))
        # The latest requests of usage_events: the filters apply when the rollup reads it.
        source = q(f"SELECT source::text FROM llm_cost.rollups WHERE rollup::text = '{name}'")[0][0]
        cond = " AND ".join(f"{k} IS NOT DISTINCT FROM %s" for k in (filt or {})) if source == "llm_cost.usage_events" else ""
        vals = [None if v == "" else v for v in (filt or {}).values()] if cond else []
        for rid, model, priced, tokens, cost in c.execute(f"""SELECT id, model, coalesce(priced_model, ''), total_tokens, {fc}(cost_usd)
                                                               FROM llm_cost.usage_events {'WHERE ' + cond if cond else ''}
                                                              ORDER BY occurred_at DESC, id DESC LIMIT 10""", vals).fetchall():
            e.update({f"last:{rid}:model": model, f"last:{rid}:priced": priced, f"last:{rid}:tokens": n(tokens), f"last:{rid}:cost": cost})
        c.rollback()
    return e


def gk(group):
    return json.dumps(json.loads(group) if isinstance(group, str) else group, separators=(',', ':'))


def range_figures(c, name, since, until, filt):
    """The range panels: llm_cost's report functions over rollup `name`, [since, until] (UTC
    days, until inclusive; default this month), filtered by `filt` (as the page passes it)."""
    q = lambda sql, *a: c.execute(sql, a).fetchall()  # noqa: E731
    fc = "llm_cost.format_cost"
    frm, to = q("""SELECT coalesce(%s::date, date_trunc('month', now() AT TIME ZONE 'UTC')::date),
                          coalesce(%s::date, (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month - 1 day')::date)""",
                since, until)[0]
    frm_ts, to_ts = f"{frm}T00:00:00Z", f"{to + __import__('datetime').timedelta(days=1)}T00:00:00Z"
    f = json.dumps({k: (None if v == "" else v) for k, v in filt.items()})
    r = q("SELECT rollup::text, group_by, grain FROM llm_cost.rollups WHERE rollup::text = %s", name)[0]
    by = ["model"] if "model" in r[1] else r[1][:1]
    rk = f"r:{name}"
    e = {}
    args = (name, frm_ts, to_ts, f)
    req, cost, unp, errs, errc, lat, latmax = q("""SELECT requests, cost_usd, unpriced_requests, error_requests, error_cost_usd, latency_ms_avg, latency_ms_max
                                                    FROM llm_cost.spend_by(%s::regclass, '{}', %s, %s, %s::jsonb)""", *args)[0]
    priced = (req or 0) - (unp or 0)
    e[f"{rk}:cost"] = q(f"SELECT {fc}(%s::numeric)", cost)[0][0] if req else "$0.00"
    e[f"{rk}:requests"] = n(req or 0)
    e[f"{rk}:avg"] = q(f"SELECT {fc}(%s::numeric / %s)", cost, priced)[0][0] if priced else "–"
    e[f"{rk}:unpriced"] = n(unp or 0)
    net = q("SELECT net_cache_savings_usd FROM llm_cost.cache_savings_by(%s::regclass, '{}', %s, %s, %s::jsonb)", *args)[0][0]
    e[f"{rk}:cache-net"] = q(f"SELECT {fc}(coalesce(%s::numeric, 0))", net)[0][0]
    e[f"{rk}:error-cost"] = "–" if errs is None else q(f"SELECT {fc}(coalesce(%s::numeric, 0))", errc)[0][0]
    e[f"{rk}:errors"] = "–" if errs is None else n(errs)
    e[f"{rk}:latency-avg"] = "–" if lat is None else f"{lat} ms"
    e[f"{rk}:latency-max"] = "–" if latmax is None else f"{n(latmax)} ms"
    for start, reqs, c_, u in q(f"""SELECT to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI'), requests, {fc}(cost_usd), unpriced_requests
                                      FROM llm_cost.spend_trend(%s::regclass, %s, %s, %s::jsonb)""", *args):
        k = f"{rk}:trend:{start}"
        e.update({f"{k}:requests": n(reqs), f"{k}:cost": c_, f"{k}:unpriced": n(u)})
    for group, reqs, c_, u in q(f"""SELECT "group"::text, requests, {fc}(cost_usd), unpriced_requests
                                      FROM llm_cost.spend_by(%s::regclass, %s, %s, %s, %s::jsonb) LIMIT 100""", name, r[1], frm_ts, to_ts, f):
        k = f"rollup:{name}/{gk(group)}"
        e.update({f"{k}:requests": n(reqs), f"{k}:cost": c_, f"{k}:unpriced": n(u)})
    bargs = (name, by, frm_ts, to_ts, f)
    for group, npr, p50, p90, p99, mx in q(f"""SELECT "group"::text, priced_requests, {fc}(cost_usd[1]), {fc}(cost_usd[2]), {fc}(cost_usd[3]), {fc}(max_usd)
                                                FROM llm_cost.cost_percentiles(%s::regclass, %s, %s, %s, filter => %s::jsonb)""", *bargs):
        k = f"{rk}:pct:{gk(group)}"
        e.update({f"{k}:n": n(npr), f"{k}:p50": p50, f"{k}:p90": p90, f"{k}:p99": p99, f"{k}:max": mx})
    for group, reads, saved, extra, net_ in q(f"""SELECT "group"::text, cache_read_tokens, {fc}(cache_savings_usd), {fc}(cache_write_extra_usd), {fc}(net_cache_savings_usd)
                                                  FROM llm_cost.cache_savings_by(%s::regclass, %s, %s, %s, %s::jsonb)
                                                 WHERE cache_read_tokens <> 0 OR cache_write_extra_usd <> 0 OR cache_savings_usd <> 0""", *bargs):
        k = f"{rk}:cache:{gk(group)}"
        e.update({f"{k}:reads": n(reads), f"{k}:saved": saved, f"{k}:extra": extra, f"{k}:net": net_})
    for group, reqs, lat_, lmax, errs_, errc_ in q(f"""SELECT "group"::text, requests, latency_ms_avg, latency_ms_max, error_requests, {fc}(error_cost_usd)
                                                      FROM llm_cost.spend_by(%s::regclass, %s, %s, %s, %s::jsonb)""", *bargs):
        k = f"{rk}:lat:{gk(group)}"
        e.update({f"{k}:requests": n(reqs), f"{k}:avg": "–" if lat_ is None else f"{lat_} ms", f"{k}:max": "–" if lmax is None else f"{n(lmax)} ms",
                  f"{k}:errors": "–" if errs_ is None else n(errs_), f"{k}:error-cost": "–" if errs_ is None else errc_})
    for group, spent, proj in q(f"""SELECT "group"::text, {fc}(spent_usd), coalesce({fc}(projected_usd), '–')
                                      FROM llm_cost.spend_forecast(%s::regclass, %s, filter => %s::jsonb)""", name, by, f):
        k = f"{rk}:fc:{gk(group)}"
        e.update({f"{k}:spent": spent, f"{k}:projected": proj})
    for group, reqs, spent, base, score in q(f"""SELECT "group"::text, requests, {fc}(spent_usd), {fc}(baseline_usd), coalesce(score::text, 'new')
                                                 FROM llm_cost.spend_anomalies(%s::regclass, %s, filter => %s::jsonb)""", name, by, f):
        k = f"{rk}:anom:{gk(group)}"
        e.update({f"{k}:requests": n(reqs), f"{k}:spent": spent, f"{k}:baseline": base, f"{k}:score": score})
    for group, reqs, prov, lst, diff in q(f"""SELECT "group"::text, provided_requests, {fc}(provided_cost_usd), {fc}(list_cost_usd),
                                                     {fc}(difference_usd) || coalesce(' (' || difference_pct || '%%)', '')
                                                FROM llm_cost.provided_vs_list(%s::regclass, %s, %s, %s, %s::jsonb)""", *bargs):
        k = f"{rk}:rec:{gk(group)}"
        e.update({f"{k}:requests": n(reqs), f"{k}:provided": prov, f"{k}:list": lst, f"{k}:diff": diff})
    # The top 10 of each group column.
    for col in r[1]:
        for group, reqs, c_, u in q(f"""SELECT "group"::text, requests, {fc}(cost_usd), unpriced_requests
                                          FROM llm_cost.spend_by(%s::regclass, %s, %s, %s, %s::jsonb) LIMIT 10""", name, [col], frm_ts, to_ts, f):
            v = json.loads(group)[col]
            k = f"top:{col}/{'' if v is None else v}"
            e.update({f"{k}:requests": n(reqs), f"{k}:cost": c_, f"{k}:unpriced": n(u)})
    return e


def money_value(text):
    from decimal import Decimal
    return Decimal(text.replace("$", "").replace(",", "")) if text.startswith(("$", "-$")) else None


def check(page, want):
    assert page["state"] == {"ready": "1", "error": None}, page["state"]
    assert page["problems"] == []
    got = page["figures"]
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))

    def same(k):
        if got[k] == want[k]:
            return True
        # A projection moves with the clock (the page and SQL read it a few seconds apart).
        if k.endswith(":projected"):
            a, b = money_value(got[k]), money_value(want[k])
            return a is not None and b is not None and abs(a - b) <= max(abs(b) / 100, __import__("decimal").Decimal("0.01"))
        return False
    wrong = {k: (got[k], want[k]) for k in want if k in got and not same(k)}
    assert not missing and not extra and not wrong, f"missing {missing[:10]}, extra {extra[:10]}, wrong {dict(list(wrong.items())[:10])}"
    assert all(ch["drawn"] and ch["width"] > 0 for ch in page["charts"]), page["charts"]


def test_admin_sees_every_figure_as_the_sql_views_say(dashboard, dbname):
    page = browse(dashboard, token("llm_cost_auditor"), ROOT / "docs" / "dashboard.png")
    want = expected(dbname, "llm_cost_auditor")
    check(page, want)
    # The page shows what matters: spellings merged, the unpriced model as unpriced, budgets.
    figures = page["figures"]
    # Spellings merged: gpt-4o-mini and openai/gpt-4o-mini are one model in the rollup.
    assert "top:model/gpt-4o-mini:cost" in figures and not any(k.startswith("top:model/openai/") for k in figures)
    assert figures["top:model/my-fine-tuned-model:cost"] == "unpriced"
    assert any(k.startswith("top:tenant_id/acme:") for k in figures) and any(k.startswith("top:feature/chat:") for k in figures)
    assert figures["unpriced:my-fine-tuned-model:rows"] == "20"
    assert any(k.startswith("budget:user_monthly_cap/") for k in figures)
    assert any(k.startswith("alert:") for k in figures)
    assert len([k for k in figures if k.startswith("last:") and k.endswith(":cost")]) == 10
    assert len([k for k in figures if k.startswith("rollup:") and k.endswith(":requests")]) == 100
    assert (ROOT / "docs" / "dashboard.png").stat().st_size > 20_000


def test_any_rollup_the_token_may_read_including_an_applications_own(dashboard, dbname):
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("""CREATE TABLE IF NOT EXISTS public.dash_calls (created_at timestamptz NOT NULL DEFAULT now(), team text,
                                                                model text NOT NULL, input_tokens int NOT NULL,
                                                                output_tokens int NOT NULL, cost_cents bigint)""")
        c.execute("INSERT INTO public.dash_calls (created_at, team, model, input_tokens, output_tokens) "
                  "VALUES (now() - interval '1 hour', 'red', 'claude-sonnet-4-5', 100000, 100000), "
                  "(now(), 'blue', 'gpt-4o', 20000, 1000), (now(), 'blue', 'no-such-model', 1, 1)")
        c.execute("SELECT llm_cost.track('public.dash_calls', cost_column => 'cost_cents', cost_unit => 'cents', backfill => true)")
        if not c.execute("SELECT to_regclass('public.dash_calls_daily')").fetchone()[0]:
            c.execute("SELECT llm_cost.create_rollup('public.dash_calls_daily', 'public.dash_calls', 'day', '{team}')")
        c.execute("GRANT SELECT ON public.dash_calls_daily, public.dash_calls_daily_stripes TO llm_cost_auditor")
    page = browse(dashboard, token("llm_cost_auditor"), ROOT / "target" / "dashboard-rollup.png", extra="&rollup=dash_calls_daily")
    check(page, expected(dbname, "llm_cost_auditor", rollup="dash_calls_daily"))
    figures = page["figures"]
    # The application's own table, in integer cents: $0.30 + $1.50 for red (an exact USD sum).
    assert figures["rollup:dash_calls_daily/{\"team\":\"red\"}:cost"] == "$1.80"
    assert figures["rollup:dash_calls_daily/{\"team\":\"blue\"}:unpriced"] == "1"
    # A user token may not read it: the panel says so and shows no figure of it.
    page = browse(dashboard, token("llm_cost_reader", "user-1"), ROOT / "target" / "dashboard-rollup-user.png",
                  extra="&rollup=dash_calls_daily")
    assert not any(k.startswith("rollup:dash_calls_daily") for k in page["figures"])


def test_a_user_token_sees_only_its_own_spend(dashboard, dbname):
    page = browse(dashboard, token("llm_cost_reader", "user-1"), ROOT / "target" / "dashboard-user-1.png")
    want = expected(dbname, "llm_cost_reader", "user-1")
    check(page, want)
    admin_page = expected(dbname, "llm_cost_auditor")
    assert page["figures"]["card:this month:requests"] != admin_page["card:this month:requests"]
    # Every budget row and every user row on the page is user-1's.
    assert all('"user_id":"user-1"' in k for k in page["figures"] if k.startswith("budget:"))
    users = [k.split(":")[1] for k in page["figures"] if k.startswith("top:user_id/")]
    assert users and all(u == "user_id/user-1" for u in users), users


@pytest.mark.parametrize("role,user", [("llm_cost_auditor", None), ("llm_cost_reader", "user-2")])
def test_a_phone_sees_the_same_figures_and_nothing_wider_than_the_screen(dashboard, dbname, role, user):
    """390 px wide: every figure as at 1440 px (and as SQL says), one column, no part of the page
    wider than the screen (a wide table scrolls inside its box)."""
    shot = ROOT / "docs" / "dashboard-mobile.png" if user is None else ROOT / "target" / "dashboard-mobile-user.png"
    page = browse(dashboard, token(role, user), shot, width=390)
    check(page, expected(dbname, role, user))
    assert page["layout"]["viewport"] == 390 and page["layout"]["page"] <= 390 and page["layout"]["wider"] == [], page["layout"]
    wide = browse(dashboard, token(role, user), ROOT / "target" / "dashboard-wide-check.png", width=1440)
    assert wide["layout"]["page"] <= 1440 and wide["layout"]["wider"] == [], wide["layout"]
    assert {k: v for k, v in page["figures"].items() if not k.endswith(":projected")} == \
        {k: v for k, v in wide["figures"].items() if not k.endswith(":projected")}


def test_range_and_filters_apply_to_every_range_panel(dashboard, dbname):
    """A custom range and a filter (in the URL as the controls write it) reach every panel of the
    top half: the figures equal the report functions called with the same range and filter; the
    CSV export of a table holds its rows."""
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens,
                                                        cache_read_tokens, cache_write_tokens, latency_ms, error, cost_usd, cost_source)
                     VALUES (now() - interval '40 days', 'acme', 'user-1', 'chat', 'claude-sonnet-4-5', 5000, 300, 20000, 4000, 850, NULL, NULL, NULL),
                            (now() - interval '40 days', 'acme', 'user-2', 'chat', 'gpt-4o', 1000, 100, 0, 0, 1200, 'timeout', NULL, NULL),
                            (now() - interval '39 days', 'globex', 'user-3', 'search', 'gpt-4o', 100000, 1000, 0, 0, 400, NULL, 0.31, 'provided')""")
        since, until = c.execute("SELECT (now() - interval '45 days')::date::text, (now() - interval '35 days')::date::text").fetchone()
    tok = token("llm_cost_auditor")
    page = browse(dashboard, tok, ROOT / "target" / "dashboard-range.png", extra=f"&from={since}&to={until}")
    want = expected(dbname, "llm_cost_auditor", since=since, until=until)
    check(page, want)
    rk = "r:llm_cost.usage_daily"
    figures = page["figures"]
    assert figures[f"{rk}:requests"] == "3"
    assert any(k.startswith(f"{rk}:cache:") for k in figures) and any(k.startswith(f"{rk}:rec:") for k in figures)
    assert figures[f"{rk}:errors"] == "1" and figures[f"{rk}:latency-max"] == "1,200 ms"
    page = browse(dashboard, tok, ROOT / "target" / "dashboard-filter.png", extra=f"&from={since}&to={until}&f.tenant_id=acme")
    check(page, expected(dbname, "llm_cost_auditor", since=since, until=until, filt={"tenant_id": "acme"}))
    assert page["figures"][f"{rk}:requests"] == "2"
    assert not any("globex" in k for k in page["figures"] if k.startswith(("rollup:", rk, "top:")))
    assert any(k.startswith("top:tenant_id/acme:") for k in page["figures"])
    lines = page["csv"].strip().splitlines()
    assert lines[0] == "group,requests,cost,unpriced" and len(lines) == 1 + len([k for k in page["figures"] if k.startswith("rollup:") and k.endswith(":requests")])
    assert page["csvButtons"] >= 10


def test_money_is_formatted_exactly_like_format_cost(dashboard, dbname):
    page = browse(dashboard, token("llm_cost_auditor"), ROOT / "target" / "dashboard-format.png")
    with psycopg.connect(dsn(dbname)) as c:
        for value, shown in page["formats"].items():
            assert shown == c.execute("SELECT llm_cost.format_cost(%s::numeric)", (value,)).fetchone()[0], value


def test_without_a_token_the_page_says_so(dashboard):
    page = browse(dashboard.rstrip("/") + "/", "", ROOT / "target" / "dashboard-none.png")
    assert page["state"]["ready"] == "error" and "token" in page["state"]["error"]
    assert not any(k.startswith(("card:", "top:")) for k in page["figures"])


def forged(claims, secret=SECRET):
    import base64, hashlib, hmac, time
    b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()  # noqa: E731
    claims = {"aud": "postgraphile", "exp": int(time.time()) + 3600, **claims}
    body = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}"
    sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"{body}.{sig}"


def gql(url, query, tok=None):
    req = urllib.request.Request(url.rstrip("/") + "/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {tok}"} if tok is not None else {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


COUNT = "{ allUsageEvents { totalCount } }"


def test_the_api_answers_nothing_without_a_valid_token(dashboard, dbname):
    import time
    status, body = gql(dashboard, COUNT, tok=None)
    assert status == 401 and "token" in body["errors"][0]["message"]
    for bad in [
        forged({"role": "llm_cost_auditor"}, secret="another-secret-of-the-same-length-0123456789"),  # forged
        forged({"role": "llm_cost_auditor", "exp": int(time.time()) - 5}),                          # expired
        forged({"role": "llm_cost_admin"}),                  # a role the dashboard may not take
        forged({"role": "postgres"}),
        forged({"role": "llm_cost_auditor", "aud": "someone-else"}),
        "not.a.token", "",
    ]:
        status, body = gql(dashboard, COUNT, tok=bad)
        assert status == 401, (bad, status, body)
    # A valid token works, and sees what its role may see.
    status, body = gql(dashboard, COUNT, tok=token("llm_cost_auditor"))
    assert status == 200, body
    with psycopg.connect(dsn(dbname)) as c:
        assert body["data"]["allUsageEvents"]["totalCount"] == c.execute("SELECT count(*) FROM llm_cost.usage_events").fetchone()[0]


def test_a_token_for_another_user_sees_only_that_users_rows(dashboard, dbname):
    for user in ("user-1", "user-2"):
        status, body = gql(dashboard, "{ allUsageEvents { nodes { userId } } }", tok=token("llm_cost_reader", user))
        assert status == 200, body
        users = {n["userId"] for n in body["data"]["allUsageEvents"]["nodes"]}
        assert users == {user}


def test_the_api_has_no_mutations_and_limits_depth(dashboard, dbname):
    tok = token("llm_cost_auditor")
    status, body = gql(dashboard, "{ __schema { mutationType { name } } }", tok=tok)
    assert status == 200 and body["data"]["__schema"]["mutationType"] is None, body
    with psycopg.connect(dsn(dbname)) as c:
        prices = c.execute("SELECT count(*) FROM llm_cost.model_prices").fetchone()[0]
        events = c.execute("SELECT count(*) FROM llm_cost.usage_events").fetchone()[0]
    for m in ['mutation { createModelPrice(input: {modelPrice: {provider: "x", model: "free", inputUsdPerMtok: "0", outputUsdPerMtok: "0"}}) { clientMutationId } }',
              'mutation { deleteUsageEventById(input: {id: "1"}) { clientMutationId } }']:
        status, body = gql(dashboard, m, tok=tok)
        assert body.get("errors"), body
    with psycopg.connect(dsn(dbname)) as c:
        assert c.execute("SELECT count(*) FROM llm_cost.model_prices").fetchone()[0] == prices
        assert c.execute("SELECT count(*) FROM llm_cost.usage_events").fetchone()[0] == events
    deep = "{ a: allUsageEvents { nodes { " * 1 + "id } } }"
    assert gql(dashboard, deep, tok=tok)[0] == 200
    deep = "{ " + "a: query { " * 9 + "nodeId" + " }" * 9 + " }"
    status, body = gql(dashboard, deep, tok=tok)
    assert status == 400 and "depth" in body["errors"][0]["message"], body


@pytest.mark.parametrize("login", ["postgres", "it_dashboard_admin"])
def test_the_server_refuses_a_login_with_more_than_read_rights(dbname, login):
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        c.execute("""DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_dashboard_admin') THEN
                       CREATE ROLE it_dashboard_admin LOGIN NOINHERIT; END IF; END $$""")
        c.execute("GRANT llm_cost_reader, llm_cost_admin TO it_dashboard_admin")
    env = {**os.environ, "DATABASE_URL": f"postgres://{login}@127.0.0.1:{port()}/{dbname}", "JWT_SECRET": SECRET,
           "PORT": str(free_port())}
    out = subprocess.run(["node", str(DASH / "server.js")], env=env, cwd=DASH, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refusing to serve" in out.stderr
    assert ("superuser" if login == "postgres" else "llm_cost_admin") in out.stderr
