"""Trust (issue #25): what a listener without rights learns from NOTIFY, retention periods that
say their unit, rows with names of any length. (The hostile-namespace fixture, the dashboard's
tokens and dump/restore have files of their own.)"""
import json
import uuid

import psycopg
import pytest

from conftest import admin, dsn, one


@pytest.fixture
def db(fresh_db):
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("""CREATE TABLE public.calls (at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                                input_tokens int, output_tokens int, cost_usd numeric)""")
        c.execute("SELECT llm_cost.track('public.calls', time_column => 'at')")
    return fresh_db


def test_a_listener_without_rights_learns_only_an_alert_id(db):
    role = "it_listener_" + uuid.uuid4().hex[:6]
    with admin(db) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute("SELECT llm_cost.create_rollup('public.calls_daily', 'public.calls', 'day', '{team}')")
        c.execute("SELECT llm_cost.create_budget('team_cap', 'public.calls_daily', 1, '{0.5,1}')")
    try:
        lis = psycopg.connect(dsn(db, role), autocommit=True)
        lis.execute("LISTEN llm_cost_budget")
        with admin(db) as w:
            w.execute("INSERT INTO public.calls (team, model, input_tokens, output_tokens) VALUES ('globex-secret-team', 'gpt-4o', 400000, 0)")
        payloads = [n.payload for n in lis.notifies(timeout=2.0)]
        assert len(payloads) == 2
        for p in payloads:
            assert set(json.loads(p)) == {"id"}, p
            assert "globex" not in p and "spent" not in p and "0.9" not in p and "team_cap" not in p
        # Reading the alert needs the rights to see its group: none here.
        assert one(lis, "SELECT count(*) FROM llm_cost.budget_alerts") == 0
        lis.close()
        with admin(db) as c:
            ids = sorted(json.loads(p)["id"] for p in payloads)
            assert [r[0] for r in c.execute("SELECT id FROM llm_cost.budget_alerts ORDER BY id")] == ids
    finally:
        with admin(db) as c:
            c.execute(f"DROP OWNED BY {role}")
        with admin() as a:
            a.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("keep, hint", [
    ("30", "'30 days'"), (" 7 ", "'7 days'"), ("1.5", "'1.5 days'"), ("+12", "'+12 days'"),
    (30, "'30 days'"), (2.5, "'2.5 days'"),   # numbers, not strings
])
def test_a_retention_period_without_a_unit_is_refused_with_the_spelling_meant(db, keep, hint):
    with admin(db) as c:
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT llm_cost.set_retention('public.calls', %s)" if isinstance(keep, str)
                      else f"SELECT llm_cost.set_retention('public.calls', {keep})", (keep,) if isinstance(keep, str) else None)
        assert e.value.sqlstate == "22023"
        assert "no unit" in e.value.diag.message_primary
        assert hint in e.value.diag.message_hint
        assert one(c, "SELECT count(*) FROM llm_cost.retention_policies") == 0


@pytest.mark.parametrize("keep", ["0 days", "-5 days", "59 minutes", "30 seconds", "1 day -25 hours"])
def test_zero_negative_and_sub_hour_periods_are_refused(db, keep):
    with admin(db) as c:
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT llm_cost.set_retention('public.calls', %s)", (keep,))
        assert e.value.sqlstate == "22023", e.value
        assert e.value.diag.message_hint
        # The same through an interval value.
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT llm_cost.set_retention('public.calls', %s::interval)", (keep,))
        assert e.value.sqlstate == "22023"
        assert one(c, "SELECT count(*) FROM llm_cost.retention_policies") == 0


def test_short_periods_need_allow_short_and_units_are_kept(db):
    with admin(db) as c:
        c.execute("SELECT llm_cost.set_retention('public.calls', '30 seconds', allow_short => true)")
        assert one(c, "SELECT keep::text FROM llm_cost.retention_policies") == "00:00:30"
        c.execute("SELECT llm_cost.set_retention('public.calls', '90 days')")
        assert one(c, "SELECT keep::text FROM llm_cost.retention_policies") == "90 days"
        c.execute("SELECT llm_cost.set_retention('public.calls', interval '2 hours')")
        assert one(c, "SELECT keep::text FROM llm_cost.retention_policies") == "02:00:00"
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT llm_cost.set_retention('public.calls', 'thirty days')")
        assert e.value.sqlstate == "22007"


@pytest.mark.parametrize("length", [3200, 100_000])
def test_a_long_unknown_model_name_is_stored_and_counted(db, length):
    import base64, os
    tail = base64.b64encode(os.urandom(length)).decode()[: length - 165]   # incompressible
    name = "m" * 160 + tail + "-long"
    other = "m" * 160 + tail + "-lonG"   # same start, another name: its own line
    with admin(db) as c:
        c.execute("SELECT llm_cost.create_rollup('public.calls_by_team', 'public.calls', 'day', '{team}')")
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        c.execute("INSERT INTO public.calls (team, model, input_tokens, output_tokens) VALUES ('a', %s, 1, 1), ('a', %s, 1, 1), ('a', %s, 1, 1)",
                  (name, name, other))
        assert one(c, "SELECT count(*) FROM public.calls WHERE model = %s", name) == 2
        assert one(c, "SELECT count(*) FROM public.calls WHERE cost_usd IS NULL") == 3
        assert one(c, "SELECT unpriced_requests FROM public.calls_by_team") == 3
        rows = c.execute("SELECT model, rows FROM llm_cost.unpriced_models ORDER BY rows DESC").fetchall()
        assert [r[1] for r in rows] == [2, 1]
        assert all(len(m) < 250 and m.startswith("m" * 160 + "…") for m, _ in rows)
        # The WARNING names the model by its start, never the whole name.
        warned = [m for m in notices if "no price for model" in m]
        assert warned and all(len(m) < 400 for m in warned), [len(m) for m in warned]
        assert f"({len(name)} characters)" in warned[0]


def incompressible(n):
    import base64, os
    return base64.b64encode(os.urandom(n)).decode()[:n]


def test_long_values_in_usage_events_keep_the_row(fresh_db):
    model, tenant = incompressible(4000), incompressible(1500)
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = error")
        c.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) VALUES (%s, 'u', %s, 1, 1), (%s, 'u', 'gpt-4o', 1000, 0)",
                  (tenant, model, tenant))
        with c.cursor().copy("COPY llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
            cp.write_row((tenant, "u", model, 1, 1))
            cp.write_row(("t", "u", "y" * 1_000_000, 1, 1))     # a 1 MB name
        assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE model = %s AND tenant_id = %s", model, tenant) == 2
        assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE model = %s", "y" * 1_000_000) == 1
        assert one(c, "SELECT sum(requests) FROM llm_cost.usage_daily") == 4
        assert one(c, "SELECT sum(unpriced_requests) FROM llm_cost.usage_daily") == 3
        # The rollup keys the long tenant by its start and the md5 of the whole value.
        assert one(c, "SELECT count(*) FROM llm_cost.usage_daily WHERE tenant_id = %s", tenant[:160] + "…" + one(c, "SELECT md5(%s)", tenant)) >= 1
        assert one(c, "SELECT sum(rows) FROM llm_cost.unpriced_models") == 3
        # The model index finds rows by the start of the name.
        c.execute("SET enable_seqscan = off")
        assert one(c, "SELECT count(*) FROM llm_cost.usage_events WHERE left(model, 200) = left(%s, 200) AND model = %s", model, model) == 2


def test_long_group_values_roll_up_the_same_by_trigger_copy_and_rebuild(db):
    base = incompressible(3000)
    a, b = base + "-a", base + "-b"          # the same start: two groups all the same
    short = "s" * 200                        # at the limit: kept as it is
    with admin(db) as c:
        c.execute("SET client_min_messages = error")
        c.execute("SELECT llm_cost.create_rollup('public.calls_team', 'public.calls', 'day', '{team,model}')")
        c.execute("SELECT llm_cost.create_budget('long_cap', 'public.calls_team', 1, '{1}')")
        c.execute("INSERT INTO public.calls (team, model, input_tokens, output_tokens) VALUES (%s, 'gpt-4o', 1000000, 0), (%s, 'gpt-4o', 1, 0), (%s, 'gpt-4o', 2, 0)",
                  (a, b, short))
        with c.cursor().copy("COPY public.calls (team, model, input_tokens, output_tokens) FROM STDIN") as cp:
            cp.write_row((a, "gpt-4o", 5, 0))
            cp.write_row((b, incompressible(2500), 5, 0))
        q = "SELECT string_agg(length(team) || ':' || right(team, 33) || ':' || requests || ':' || input_tokens, ',' ORDER BY team, requests) FROM public.calls_team"
        by_trigger = one(c, q)
        assert one(c, "SELECT count(*) FROM public.calls_team") == 4
        assert one(c, "SELECT sum(requests) FROM public.calls_team") == 5
        assert one(c, "SELECT requests FROM public.calls_team WHERE team = %s", short) == 1
        assert one(c, "SELECT max(length(team)) FROM public.calls_team") == 200
        assert one(c, "SELECT max(octet_length(model)) FROM public.calls_team") < 400
        # The budget's alert (its group as jsonb in a unique key) is recorded for the long group.
        assert one(c, "SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'long_cap'") == 1
        # check_budget with the full value finds the group's spend (the same bounded key).
        spent = one(c, "SELECT spent_usd FROM llm_cost.check_budget('long_cap', jsonb_build_object('team', %s::text, 'model', 'gpt-4o'))", a)
        assert spent == one(c, "SELECT cost_usd FROM public.calls_team WHERE team = left(%s, 160) || '…' || md5(%s) AND model = 'gpt-4o'", a, a)
        assert spent > 2
        # The SQL path (rebuild from the raw rows) keys them the same way.
        c.execute("SELECT llm_cost.rebuild_rollup('public.calls_team')")
        assert one(c, q) == by_trigger


def test_a_varchar_with_a_length_is_grouped_as_it_is(db):
    label = "\U0001F600" * 80                 # 80 characters, 320 bytes: fits varchar(80), never bounded
    with admin(db) as c:
        c.execute("ALTER TABLE public.calls ADD COLUMN label varchar(80)")
        c.execute("SELECT llm_cost.create_rollup('public.calls_label', 'public.calls', 'day', '{label}')")
        c.execute("INSERT INTO public.calls (label, model, input_tokens, output_tokens) VALUES (%s, 'gpt-4o', 1, 0), (%s, 'gpt-4o', 2, 0)", (label, label))
        assert c.execute("SELECT label, requests, input_tokens FROM public.calls_label").fetchall() == [(label, 2, 3)]
        c.execute("SELECT llm_cost.rebuild_rollup('public.calls_label')")
        assert c.execute("SELECT label, requests, input_tokens FROM public.calls_label").fetchall() == [(label, 2, 3)]


def test_a_null_retention_period_is_refused_whatever_its_type(db):
    with admin(db) as c:
        for arg in ("NULL", "NULL::numeric", "NULL::interval", "NULL::text"):
            with pytest.raises(psycopg.Error) as e:
                c.execute(f"SELECT llm_cost.set_retention('public.calls', {arg})")
            assert e.value.sqlstate == "22004", arg
