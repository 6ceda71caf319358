"""End to end through a real GraphQL server: PostGraphile 4 (npm, installed by scripts/test.sh)
on loopback, reading the daily rollup under row-level security."""
import base64
import hashlib
import hmac
import json
import socket
import time
import urllib.request
from decimal import Decimal

import psycopg
import pytest

from conftest import ROOT, dsn, port, server

POSTGRAPHILE = ROOT / "tests" / "graphql" / "node_modules" / ".bin" / "postgraphile"
SECRET = "llm-cost-test-secret"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"aud": "postgraphile", "exp": int(time.time()) + 600, **claims}).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def graphql(dbname):
    if not POSTGRAPHILE.exists():
        pytest.fail("PostGraphile is not installed: run scripts/test.sh (it runs npm ci in tests/graphql)")
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_graphql') THEN CREATE ROLE it_graphql LOGIN; END IF; END $$")
        c.execute("GRANT llm_cost_reader, llm_cost_admin TO it_graphql")
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens) VALUES
                       ('2026-11-20 10:00+00', 'acme', 'user-a', 'chat', 'claude-sonnet-4-5', 100000, 1000000),
                       ('2026-11-20 11:00+00', 'acme', 'user-a', 'chat', 'claude-sonnet-4-5', 1234, 567),
                       ('2026-11-20 12:00+00', 'acme', 'user-b', 'chat', 'gpt-4o', 1000000, 0),
                       ('2026-11-20 13:00+00', 'acme', NULL, 'batch', 'gpt-4o-mini', 1000000, 0)""")
        # A per-user monthly budget on an application's own table (current period: now).
        c.execute("""CREATE TABLE public.gql_calls (created_at timestamptz NOT NULL DEFAULT now(), user_id text, model text,
                                                    input_tokens int, output_tokens int, cost_usd numeric);
                     SELECT llm_cost.track('public.gql_calls');
                     SELECT llm_cost.create_rollup('public.gql_user_monthly', 'public.gql_calls', 'month', '{user_id}');
                     SELECT llm_cost.enable_row_security('public.gql_user_monthly', 'user_id');
                     GRANT SELECT ON public.gql_user_monthly, public.gql_user_monthly_stripes TO llm_cost_reader;
                     SELECT llm_cost.create_budget('user_monthly_cap', 'public.gql_user_monthly', 2, '{0.5,1}')""")
        c.execute("""INSERT INTO public.gql_calls (user_id, model, input_tokens, output_tokens)
                     VALUES ('user-a', 'gpt-4o', 1000000, 0), ('user-b', 'gpt-4o', 500000, 0)""")
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}/graphql"
    with server([str(POSTGRAPHILE), "-c", f"postgres://it_graphql@127.0.0.1:{port()}/{dbname}", "-s", "llm_cost", "--include-extension-resources",
                 "-n", "127.0.0.1", "-p", str(http_port), "--jwt-secret", SECRET, "--default-role", "llm_cost_reader",
                 "--disable-query-log", "--extended-errors", "hint,detail,errcode"],
                lambda: query(url, "{ __typename }"), "postgraphile.log", cwd=ROOT / "tests" / "graphql"):
        yield url


def query(url, q, token=None):
    req = urllib.request.Request(url, data=json.dumps({"query": q}).encode(),
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    if body.get("errors"):
        raise AssertionError(body["errors"])
    return body["data"]


DAILY = "{ allUsageDailies(orderBy: [USER_ID_ASC, MODEL_ASC]) { nodes { periodStart userId model requests costUsd totalTokens } } }"


def test_user_sees_only_own_rows(graphql):
    rows = query(graphql, DAILY, jwt({"role": "llm_cost_reader", "user_id": "user-a"}))["allUsageDailies"]["nodes"]
    assert [(r["userId"], r["model"], int(r["requests"])) for r in rows] == [("user-a", "claude-sonnet-4-5", 2)]
    # Money is an exact decimal string, not a float.
    assert isinstance(rows[0]["costUsd"], str)
    assert Decimal(rows[0]["costUsd"]) == Decimal("15.3") + Decimal("0.003702") + Decimal("0.008505")
    rows = query(graphql, DAILY, jwt({"role": "llm_cost_reader", "user_id": "user-b"}))["allUsageDailies"]["nodes"]
    assert [(r["userId"], Decimal(r["costUsd"])) for r in rows] == [("user-b", Decimal("2.5"))]


def test_admin_sees_all_rows_including_platform_ones(graphql):
    rows = query(graphql, DAILY, jwt({"role": "llm_cost_admin", "user_id": "boss"}))["allUsageDailies"]["nodes"]
    assert sorted((r["userId"] or "-") for r in rows) == ["-", "user-a", "user-b"]
    assert sum(Decimal(r["costUsd"]) for r in rows) == Decimal("15.312207") + Decimal("2.5") + Decimal("0.15")


def test_unauthenticated_sees_nothing(graphql):
    assert query(graphql, DAILY)["allUsageDailies"]["nodes"] == []
    # A forged token is refused outright.
    bad = jwt({"role": "llm_cost_admin"})[:-4] + "AAAA"
    with pytest.raises(Exception):
        query(graphql, DAILY, bad)


def test_generated_schema_reads_well(graphql):
    t = query(graphql, '{ __type(name: "UsageDaily") { description fields { name description } } }')["__type"]
    assert t["description"].startswith("LLM usage and cost per tenant_id, user_id, feature, provider, model per day")
    assert "@primaryKey" not in t["description"]
    fields = {f["name"]: f["description"] for f in t["fields"]}
    for name in ["periodStart", "periodEnd", "tenantId", "userId", "feature", "provider", "model", "requests",
                 "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "totalTokens", "costUsd",
                 "unpricedRequests", "errorRequests", "latencyMsSum", "latencyMsMax", "firstSeen", "lastSeen", "rowKey"]:
        assert name in fields, name
    assert fields["costUsd"].startswith("Cost in USD, exact")
    # The view's key becomes a by-key lookup.
    root = query(graphql, '{ __schema { queryType { fields { name } } } }')["__schema"]["queryType"]["fields"]
    names = {f["name"] for f in root}
    assert "usageDailyByRowKey" in names
    assert "allUsageMonthlies" in names and "allModelPrices" in names
    # Stripe tables stay out of the API.
    assert not any(n.startswith("allUsageDailyStripe") for n in names)
    # By-key lookup of a platform-wide row (NULL user) as admin.
    admin = jwt({"role": "llm_cost_admin"})
    key = query(graphql, '{ allUsageDailies(condition: {feature: "batch"}) { nodes { rowKey } } }', admin)["allUsageDailies"]["nodes"][0]["rowKey"]
    row = query(graphql, '{ usageDailyByRowKey(rowKey: %s) { userId model costUsd } }' % json.dumps(key), admin)["usageDailyByRowKey"]
    assert row == {"userId": None, "model": "gpt-4o-mini", "costUsd": "0.15"}


BUDGETS = """{ allBudgetStatuses(orderBy: [GROUP_ASC]) { nodes { budget group spentUsd limitUsd remainingUsd usedPct state } }
               allBudgetAlerts(orderBy: [GROUP_ASC, THRESHOLD_ASC]) { nodes { budget group threshold spentUsd limitUsd } } }"""


def test_budgets_are_readable_and_each_user_sees_only_their_own(graphql):
    mine = query(graphql, BUDGETS, jwt({"role": "llm_cost_reader", "user_id": "user-a"}))
    assert [(n["budget"], json.loads(n["group"]) if isinstance(n["group"], str) else n["group"], n["spentUsd"], n["limitUsd"], n["state"])
            for n in mine["allBudgetStatuses"]["nodes"]] == [("user_monthly_cap", {"user_id": "user-a"}, "2.5", "2", "exceeded")]
    assert [(n["threshold"], n["spentUsd"]) for n in mine["allBudgetAlerts"]["nodes"]] == [("0.5", "2.5"), ("1", "2.5")]
    other = query(graphql, BUDGETS, jwt({"role": "llm_cost_reader", "user_id": "user-b"}))
    assert [(n["spentUsd"], n["usedPct"], n["state"]) for n in other["allBudgetStatuses"]["nodes"]] == [("1.25", "62.50", "warning")]
    assert [n["threshold"] for n in other["allBudgetAlerts"]["nodes"]] == ["0.5"]
    nobody = query(graphql, BUDGETS, jwt({"role": "llm_cost_reader", "user_id": "user-z"}))
    assert nobody["allBudgetStatuses"]["nodes"] == [] and nobody["allBudgetAlerts"]["nodes"] == []
    everything = query(graphql, BUDGETS, jwt({"role": "llm_cost_admin", "user_id": "boss"}))
    assert len(everything["allBudgetStatuses"]["nodes"]) == 2 and len(everything["allBudgetAlerts"]["nodes"]) == 3
    # Described in the schema; the management functions stay out of it.
    t = query(graphql, '{ __type(name: "BudgetStatus") { description fields { name description } } }')["__type"]
    assert t["description"].startswith("Every budget for each group you may see")
    fields = {f["name"]: f["description"] for f in t["fields"]}
    assert fields["remainingUsd"].startswith("Limit minus spend") and fields["state"].startswith("ok, warning")
    t = query(graphql, '{ __type(name: "BudgetAlert") { description } }')["__type"]
    assert "NOTIFY llm_cost_budget" in t["description"]
    mutations = query(graphql, '{ __schema { mutationType { fields { name } } } }')["__schema"]["mutationType"]
    names = {f["name"] for f in (mutations or {}).get("fields", [])}
    assert not any("budget" in n.lower() for n in names), names
