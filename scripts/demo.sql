\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION llm_cost;
\pset footer off
\echo
\echo 'Sample calls priced with llm_cost.estimate_cost (USD, exact):'
SELECT c.model                                   AS "model as sent",
       llm_cost.resolve_model(c.model)           AS "catalog model",
       llm_cost.provider_of(c.model)             AS provider,
       c.input_tokens AS "in", c.output_tokens AS "out", c.cache_read AS "cache read", c.cache_write AS "cache write",
       llm_cost.estimate_cost(c.model, c.input_tokens, c.output_tokens, c.cache_read, c.cache_write) AS cost_usd,
       coalesce(llm_cost.format_cost(llm_cost.estimate_cost(c.model, c.input_tokens, c.output_tokens, c.cache_read, c.cache_write)), 'unpriced') AS cost
  FROM (VALUES
        ('claude-sonnet-4-5',                              1000000, 1000000,     0,    0),
        ('us.anthropic.claude-sonnet-4-5-20250929-v1:0',      2400,     650, 18000, 3200),
        ('openai/gpt-4o-2024-08-06',                          1200,     300,   800,    0),
        ('gpt-5.4',                                         300000,    2000,     0,    0),
        ('google/gemini-2.5-flash',                          52000,    1200,     0,    0),
        ('mistral-large-latest',                              8000,    1000,     0,    0),
        ('deepseek-chat',                                    15000,    4000,  9000,    0),
        ('mistralai/mistral-large',                           8000,    1000,     0,    0),
        ('groq/llama-3.3-70b-versatile',                     20000,    3000,     0,    0),
        ('meta-llama/llama-3.3-70b-instruct',                20000,    3000,     0,    0),
        ('text-embedding-3-small',                          250000,       0,     0,    0),
        ('my-fine-tuned-model',                               1000,    1000,     0,    0)
       ) AS c(model, input_tokens, output_tokens, cache_read, cache_write);

\echo
\echo 'Logging 2,000 sample calls into llm_cost.usage_events with plain SQL (INSERT ... SELECT):'
INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens, latency_ms, error)
SELECT now() - (g % 72) * interval '1 hour',
       (ARRAY['acme', 'globex'])[1 + g % 2],
       'user-' || (g % 7),
       (ARRAY['chat', 'search', 'summarize', 'embed'])[1 + g % 4],
       (ARRAY['claude-sonnet-4-5', 'gpt-4o-mini', 'gemini-2.5-flash', 'text-embedding-3-small', 'anthropic/claude-haiku-4-5'])[1 + g % 5],
       500 + (g * 37) % 4000, (g * 13) % 900, CASE WHEN g % 3 = 0 THEN 2000 ELSE 0 END,
       200 + (g * 7) % 3000, CASE WHEN g % 97 = 0 THEN 'rate_limited' END
  FROM generate_series(1, 2000) g;
\echo 'And a batch with COPY FROM (priced as COPY reads each row, so COPY keeps its batched inserts):'
COPY llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM STDIN;
acme	user-1	batch	claude-sonnet-4-5	12000	800	40000
acme	user-2	batch	openai/gpt-4o-mini	3000	450	0
globex	user-3	batch	models/gemini-2.5-flash	90000	2100	0
globex	user-4	batch	my-fine-tuned-model	1000	1000	0
\.
SELECT model, priced_model, provider, input_tokens AS "in", output_tokens AS "out", cache_read_tokens AS "cache read", cost_usd, cost_source
  FROM llm_cost.usage_events WHERE feature = 'batch' ORDER BY id;
\echo
\echo 'Spend (llm_cost.spend_summary):'
SELECT period, requests, total_tokens, cost_usd, llm_cost.format_cost(cost_usd) AS cost FROM llm_cost.spend_summary;
\echo 'By model this month (llm_cost.spend_by_model):'
SELECT provider, model, requests, llm_cost.format_cost(cost_usd) AS cost, unpriced_requests AS unpriced,
       llm_cost.format_cost(avg_cost_per_request_usd) AS avg_per_request
  FROM llm_cost.spend_by_model WHERE month = date_trunc('month', now(), 'UTC') ORDER BY cost_usd DESC NULLS LAST;
\echo 'Top users this month (llm_cost.top_users):'
SELECT spend_rank, tenant_id, user_id, requests, llm_cost.format_cost(cost_usd) AS cost
  FROM llm_cost.top_users WHERE month = date_trunc('month', now(), 'UTC') AND spend_rank <= 5 ORDER BY spend_rank;
\echo 'What prompt caching saved this month, at list price (llm_cost.cache_savings_by):'
SELECT "group"->>'model' AS model, llm_cost.format_cost(cost_usd) AS cost, llm_cost.format_cost(cache_savings_usd) AS "saved by cache reads",
       llm_cost.format_cost(cache_write_extra_usd) AS "cache writes cost", llm_cost.format_cost(net_cache_savings_usd) AS "net saving"
  FROM llm_cost.cache_savings_by('llm_cost.usage_daily', '{model}', date_trunc('month', now(), 'UTC')) WHERE cache_read_tokens + cache_write_tokens > 0;
\echo 'What a request costs this month (llm_cost.cost_percentiles: p50, p90, p99 within 3.125%, the exact max):'
SELECT "group"->>'model' AS model, priced_requests AS requests, llm_cost.format_cost(cost_usd[1]) AS p50, llm_cost.format_cost(cost_usd[2]) AS p90,
       llm_cost.format_cost(cost_usd[3]) AS p99, llm_cost.format_cost(max_usd) AS max
  FROM llm_cost.cost_percentiles('llm_cost.usage_daily', '{model}', date_trunc('month', now(), 'UTC'));
\echo 'Per feature (llm_cost.feature_stats):'
SELECT tenant_id, feature, requests, llm_cost.format_cost(cost_usd) AS cost, predominant_model FROM llm_cost.feature_stats ORDER BY 1, 2;
\echo
\echo 'A monthly budget of $5 per tenant and user, alerted at 50%, 80% and 100% (llm_cost.budget_status):'
SELECT llm_cost.create_budget('user_monthly_cap', 'llm_cost.usage_monthly', 5.00, alert_on_projection => true) AS budget;
INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens)
VALUES ('acme', 'user-1', 'chat', 'claude-sonnet-4-5', 200000, 40000);
SELECT "group"->>'tenant_id' AS tenant, "group"->>'user_id' AS "user", llm_cost.format_cost(spent_usd) AS spent,
       llm_cost.format_cost(limit_usd) AS "limit", used_pct, state, llm_cost.format_cost(projected_usd) AS "projected this month"
  FROM llm_cost.budget_status ORDER BY used_pct DESC LIMIT 5;
SELECT * FROM llm_cost.check_budget('user_monthly_cap', '{"tenant_id": "acme", "user_id": "user-1"}', 0.10);

-- The dashboard connects as this login: NOINHERIT, a member of llm_cost_anonymous (no rights:
-- what a request without a token would get; the server refuses those anyway), llm_cost_reader
-- (a user's token) and llm_cost_auditor (sees every row, writes nothing), never of
-- llm_cost_admin or a superuser, so row-level security applies and nothing can be changed.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_dashboard') THEN CREATE ROLE llm_cost_dashboard LOGIN NOINHERIT; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_anonymous') THEN CREATE ROLE llm_cost_anonymous NOLOGIN; END IF;
END $$;
ALTER ROLE llm_cost_dashboard NOINHERIT;
DO $$ BEGIN
    IF pg_catalog.pg_has_role('llm_cost_dashboard', 'llm_cost_admin', 'MEMBER') THEN REVOKE llm_cost_admin FROM llm_cost_dashboard; END IF;
END $$;
GRANT llm_cost_anonymous, llm_cost_reader, llm_cost_auditor TO llm_cost_dashboard;
