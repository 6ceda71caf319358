"""Issue #16 through a real session: COPY and INSERT of rows that carry the provider's usage object
price the same, fill the same token columns, keep a reported cost as provided, and a bad object
rejects the whole COPY."""
import json
from decimal import Decimal

import psycopg
import pytest

from conftest import one

ROWS = [
    ("claude-sonnet-4-5", None, {"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503,
                                  "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000}}),
    ("gpt-4o", None, {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}),
    ("gemini-2.5-flash", None, {"usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 700, "cachedContentTokenCount": 1000}}),
    ("anthropic/claude-3.7-sonnet", "openrouter", {"prompt_tokens": 194, "completion_tokens": 2, "cost": 0.95, "prompt_tokens_details": {"cached_tokens": 100}}),
    ("deepseek-chat", None, {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}),
]
WANT = {
    "claude-sonnet-4-5": ("0.020415", "estimated", (50, 503, 1800, 48, 2000)),
    "gpt-4o": ("0.005615", "estimated", (86, 300, 1920, 0, 0)),
    "gemini-2.5-flash": ("0.00259", "estimated", (200, 1000, 1000, 0, 0)),
    "anthropic/claude-3.7-sonnet": ("0.95", "provided", (94, 2, 100, 0, 0)),
    "deepseek-chat": ("0.0000826", "estimated", (200, 10, 800, 0, 0)),
}


@pytest.fixture
def tables(connect):
    c = connect()
    for t in ("uo_copy", "uo_insert"):
        c.execute(f"""CREATE TABLE {t} (created_at timestamptz NOT NULL DEFAULT now(), model text, provider text,
                       input_tokens int, output_tokens int, cache_read_tokens int, cache_write_tokens int, cache_write_1h_tokens int,
                       cost_usd numeric, cost_source text, usage jsonb)""")
        c.execute(f"""SELECT llm_cost.track('{t}', cache_read_tokens_column => 'cache_read_tokens', cache_write_tokens_column => 'cache_write_tokens',
                       cache_write_1h_tokens_column => 'cache_write_1h_tokens', provider_column => 'provider', usage_column => 'usage')""")
    yield c
    c.execute("DROP TABLE uo_copy, uo_insert")


def state(c, t):
    rows = c.execute(f"""SELECT model, cost_usd::text, cost_source, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens
                          FROM {t} ORDER BY model""").fetchall()
    return {r[0]: (r[1], r[2], tuple(r[3:])) for r in rows}


def test_copy_and_insert_price_usage_objects_alike(tables):
    c = tables
    with c.cursor() as cur:
        with cur.copy("COPY uo_copy (model, provider, usage) FROM STDIN") as cp:
            for model, provider, usage in ROWS:
                cp.write_row((model, provider, json.dumps(usage)))
    for model, provider, usage in ROWS:
        c.execute("INSERT INTO uo_insert (model, provider, usage) VALUES (%s, %s, %s)", (model, provider, json.dumps(usage)))
    assert state(c, "uo_copy") == WANT
    assert state(c, "uo_insert") == WANT


def test_a_bad_usage_object_rejects_the_whole_copy(tables):
    c = tables
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        with c.cursor() as cur:
            with cur.copy("COPY uo_copy (model, usage) FROM STDIN") as cp:
                cp.write_row(("gpt-4o", json.dumps({"prompt_tokens": 10, "completion_tokens": 1})))
                cp.write_row(("gpt-4o", json.dumps({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "many"}})))
    assert '$.prompt_tokens_details.cached_tokens: must be a non-negative integer token count (got "many")' in str(e.value)
    assert one(c, "SELECT count(*) FROM uo_copy") == 0


def test_usage_events_takes_the_usage_object(connect):
    c = connect()
    c.execute("""INSERT INTO llm_cost.usage_events (tenant_id, model, usage) VALUES ('uo', 'claude-sonnet-4-5', %s)""", (json.dumps(ROWS[0][2]),))
    row = c.execute("""SELECT cost_usd, input_tokens, cache_write_tokens, cache_write_1h_tokens, provider FROM llm_cost.usage_events
                        WHERE tenant_id = 'uo'""").fetchone()
    assert row == (Decimal("0.020415"), 50, 48, 2000, "anthropic")
    # The daily rollup has the exact cost.
    assert one(c, "SELECT sum(cost_usd) FROM llm_cost.usage_daily WHERE tenant_id = 'uo'") == Decimal("0.020415")
