-- Adoption: application tables attached with their history and conventions (docs/usage-logs.md,
-- docs/migrating.md). The two schemas of tests/data are real applications' tables, used as they are.

-------------------------------------------------------------------------------------------------
-- 1. A code-review bot's log: NOT NULL DEFAULT 0 cost, costs an agent SDK reports itself, history.
-------------------------------------------------------------------------------------------------
\i tests/data/llm_cost_events.sql
INSERT INTO llm_cost_events (created_at, repo, task_type, model, provider, sdk, input_tokens, output_tokens,
                             cache_read_tokens, cache_write_tokens, estimated_cost_usd, error) VALUES
    ('2026-11-01 10:00+00', 'api', 'review', 'claude-sonnet-4-5', 'anthropic', 'ai', 10000, 1000, 5000, 0, 0, NULL),
    ('2026-11-01 11:00+00', 'api', 'review', 'claude-sonet-4-5', 'anthropic', 'ai', 10000, 1000, 0, 0, 0, NULL),  -- typo
    ('2026-11-02 09:00+00', 'web', 'triage', 'claude-sonnet-4-5', 'anthropic', 'agent', 20000, 2000, 0, 0, 0.0777, NULL),
    ('2026-11-02 09:30+00', 'web', 'triage', 'gpt-4o', 'openai', 'ai', 1000, 100, 0, 0, 0, NULL);
-- Rows logged before track() are not priced by it: it says so.
SELECT llm_cost.track('llm_cost_events', cost_column => 'estimated_cost_usd', provider_column => 'provider',
                      cache_read_tokens_column => 'cache_read_tokens', cache_write_tokens_column => 'cache_write_tokens');
-- The cost column is NOT NULL: track() added cost_source, which says unpriced where the cost stays 0.
SELECT cost_source_column, cost_default FROM llm_cost.tracked_tables WHERE log_table = 'llm_cost_events'::regclass;
-- A rollup made before the backfill follows it.
SELECT llm_cost.create_rollup('events_daily', 'llm_cost_events', 'day', '{repo, model}');
SELECT sum(requests) AS requests, sum(unpriced_requests) AS not_priced_yet, sum(cost_usd) AS cost FROM events_daily;
CALL llm_cost.backfill('llm_cost_events', batch_rows => 2);
SELECT id, model, estimated_cost_usd, cost_source FROM llm_cost_events ORDER BY id;
SELECT model, log_table, rows FROM llm_cost.unpriced_models;
-- Running it again finds nothing left to price.
CALL llm_cost.backfill('llm_cost_events');
-- New rows: left out, the cost is estimated; an explicit $0 marked provided (a failed call an
-- agent SDK reported) is kept; a typo is unpriced, never a silent $0.
INSERT INTO llm_cost_events (created_at, repo, task_type, model, provider, sdk, input_tokens, output_tokens) VALUES
    ('2026-11-03 08:00+00', 'api', 'review', 'gpt-4o', 'openai', 'ai', 1000, 1000);
INSERT INTO llm_cost_events (created_at, repo, task_type, model, provider, sdk, input_tokens, output_tokens,
                             estimated_cost_usd, cost_source, error) VALUES
    ('2026-11-03 08:01+00', 'api', 'review', 'claude-sonnet-4-5', 'anthropic', 'agent', 500, 0, 0, 'provided', 'timeout');
INSERT INTO llm_cost_events (created_at, repo, task_type, model, provider, sdk, input_tokens, output_tokens) VALUES
    ('2026-11-03 08:02+00', 'api', 'review', 'gtp-4o', 'openai', 'ai', 1000, 1000);
SELECT id, model, estimated_cost_usd, cost_source FROM llm_cost_events WHERE id > 4 ORDER BY id;
-- The same rule in COPY.
COPY llm_cost_events (created_at, repo, task_type, model, provider, sdk, input_tokens, output_tokens, estimated_cost_usd, cost_source) FROM stdin;
2026-11-03 09:00:00+00	api	review	gpt-4o	openai	ai	1000	1000	0	\N
2026-11-03 09:01:00+00	api	review	gpt-4o	openai	agent	1000	1000	0	provided
\.
SELECT id, estimated_cost_usd, cost_source FROM llm_cost_events WHERE id > 7 ORDER BY id;
-- An alias for the typo, then reprice(): the rows are priced and leave unpriced_models.
INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('claude-sonet-4-5', 'claude-sonnet-4-5');
SELECT * FROM llm_cost.reprice('llm_cost_events');
SELECT model, rows FROM llm_cost.unpriced_models WHERE log_table = 'llm_cost_events'::regclass;
-- The rollup made before the backfill and one made now both equal GROUP BY over the rows.
SELECT llm_cost.create_rollup('events_by_task', 'llm_cost_events', 'month', '{task_type}');
SELECT (SELECT sum(cost_usd) FROM events_daily) = sum(estimated_cost_usd) AS daily_exact,
       (SELECT sum(cost_usd) FROM events_by_task) = sum(estimated_cost_usd) AS by_task_exact,
       (SELECT sum(unpriced_requests) FROM events_daily) = count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_exact,
       (SELECT sum(error_requests) FROM events_daily) AS errors
  FROM llm_cost_events;
SELECT repo, model, requests, cost_usd, unpriced_requests FROM events_daily ORDER BY period_start, repo, model;
-- Reports work over any rollup.
SELECT * FROM llm_cost.spend_by('events_daily', '{model}');
SELECT * FROM llm_cost.spend_by('events_daily', '{}', '2026-11-02', '2026-11-03');
SELECT * FROM llm_cost.spend_trend('events_daily', '2026-11-01', '2026-11-03');
SELECT * FROM llm_cost.spend_by('events_daily', '{task_type}');
SELECT * FROM llm_cost.spend_by('llm_cost_events', '{model}');

-------------------------------------------------------------------------------------------------
-- 2. Integer cost columns in a stated unit.
-------------------------------------------------------------------------------------------------
CREATE TABLE gen_log (id serial, created_at timestamptz NOT NULL, model text NOT NULL, input_tokens int NOT NULL,
                      output_tokens int NOT NULL, estimated_cost_microcents integer NOT NULL DEFAULT 0);
INSERT INTO gen_log (created_at, model, input_tokens, output_tokens) VALUES ('2026-11-01 10:00+00', 'claude-sonnet-4-5', 1000, 100);
SELECT llm_cost.track('gen_log', cost_column => 'estimated_cost_microcents');
SELECT llm_cost.track('gen_log', cost_column => 'estimated_cost_microcents', cost_unit => 'dollars');
SELECT llm_cost.track('gen_log', cost_column => 'estimated_cost_microcents', cost_unit => 'microcents', backfill => true);
-- $3/MTok in, $15/MTok out: 1000 * 300 + 100 * 1500 microcents. Half a microcent rounds up.
INSERT INTO gen_log (created_at, model, input_tokens, output_tokens) VALUES
    ('2026-11-01 11:00+00', 'claude-sonnet-4-5', 1, 1),
    ('2026-11-01 11:00+00', 'gpt-4o-mini', 1, 0),           -- $0.15/MTok: 15 microcents
    ('2026-11-01 11:00+00', 'gemini-2.0-flash-lite', 1, 0), -- $0.075/MTok: 7.5 -> 8 microcents
    ('2026-11-01 12:00+00', 'no-such-model', 1, 1);
INSERT INTO gen_log (created_at, model, input_tokens, output_tokens, estimated_cost_microcents) VALUES
    ('2026-11-01 12:00+00', 'gpt-4o', 10, 10, 12345);       -- provided, kept
COPY gen_log (created_at, model, input_tokens, output_tokens) FROM stdin;
2026-11-01 13:00:00+00	claude-sonnet-4-5	2000	0
\.
SELECT id, model, estimated_cost_microcents, cost_source, llm_cost.format_cost(estimated_cost_microcents, 'microcents') FROM gen_log ORDER BY id;
SELECT llm_cost.create_rollup('gen_daily', 'gen_log', 'day', '{model}');
SELECT model, requests, cost_usd, unpriced_requests FROM gen_daily ORDER BY model;
SELECT (SELECT sum(cost_usd) FROM gen_daily) = sum(estimated_cost_microcents) * 0.00000001 AS exact FROM gen_log WHERE cost_source <> 'unpriced';
UPDATE gen_log SET input_tokens = 2000 WHERE id = 1;
SELECT estimated_cost_microcents FROM gen_log WHERE id = 1;
SELECT (SELECT sum(cost_usd) FROM gen_daily) = sum(estimated_cost_microcents) * 0.00000001 AS exact FROM gen_log WHERE cost_source <> 'unpriced';
SELECT * FROM llm_cost.reprice('gen_log');
SELECT llm_cost.format_cost(153, 'cents'), llm_cost.format_cost(1234567, 'usd_micros'), llm_cost.format_cost(NULL, 'cents');
SELECT llm_cost.format_cost(1, 'yen');
CREATE TABLE cents_log (created_at timestamptz NOT NULL, model text, input_tokens bigint, output_tokens bigint, cost_cents bigint);
SELECT llm_cost.track('cents_log', cost_column => 'cost_cents', cost_unit => 'cents');
INSERT INTO cents_log VALUES ('2026-11-01', 'claude-sonnet-4-5', 1000000, 1000000, NULL), ('2026-11-01', 'gpt-4o', 1000, 0, NULL);
SELECT model, cost_cents, cost_source FROM cents_log ORDER BY model;
-- Bad input in an integer cost column: a negative provided cost, a cost too large for the column.
INSERT INTO cents_log VALUES ('2026-11-01', 'gpt-4o', 1, 1, -5);
CREATE TABLE small_log (created_at timestamptz NOT NULL, model text, input_tokens bigint, output_tokens bigint, cost_cents smallint);
SELECT llm_cost.track('small_log', cost_column => 'cost_cents', cost_unit => 'cents') IS NOT NULL AS tracked;
INSERT INTO small_log VALUES ('2026-11-01', 'claude-sonnet-4-5', 100000000, 0, NULL);   -- $600: 60000 cents
INSERT INTO small_log VALUES ('2026-11-01', 'claude-sonnet-4-5', 1000, 0, 32767);        -- provided, the column's max
SELECT cost_cents, cost_source FROM small_log;

-------------------------------------------------------------------------------------------------
-- 3. A table that keeps only the provider's usage object.
-------------------------------------------------------------------------------------------------
CREATE TABLE calls (id serial, created_at timestamptz NOT NULL DEFAULT '2026-11-05 10:00+00', model text NOT NULL,
                    usage jsonb, cost_usd numeric);
SELECT llm_cost.track('calls');
SELECT llm_cost.track('calls', usage_column => 'usage');
INSERT INTO calls (model, usage) VALUES
    ('gpt-4o', '{"prompt_tokens": 1000, "completion_tokens": 100}'),
    ('claude-sonnet-4-5', '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'),
    ('gpt-4o', '{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'),
    ('gpt-4o', NULL),
    ('gpt-4o', 'null');
SELECT id, model, cost_usd FROM calls ORDER BY id;
SELECT llm_cost.create_rollup('calls_daily', 'calls', 'day', '{model}');
SELECT model, requests, cost_usd, unpriced_requests FROM calls_daily ORDER BY model;
-- A bad usage object is still refused, whole.
INSERT INTO calls (model, usage) VALUES ('gpt-4o', '{"prompt_tokens": -5, "completion_tokens": 1}'), ('gpt-4o', '{"prompt_tokens": 1}');
SELECT count(*) FROM calls;

-------------------------------------------------------------------------------------------------
-- 4. A discussion platform: uuid owners, a generated total, a provider column with its own
--    spellings, and a summary table it kept by hand (docs/migrating.md).
-------------------------------------------------------------------------------------------------
\i tests/data/api_usage_log.sql
INSERT INTO contributor (id, handle) VALUES ('00000000-0000-0000-0000-00000000000a', 'ada'), ('00000000-0000-0000-0000-00000000000b', 'bob');
INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'claude', 'claude-sonnet-4-5', 'summarize', 10000, 1000, '2026-10-30 10:00+00'),
    ('00000000-0000-0000-0000-00000000000a', 'Anthropic', 'claude-sonnet-4-5', 'summarize', 10000, 1000, '2026-11-01 10:00+00'),
    ('00000000-0000-0000-0000-00000000000b', 'openai', 'gpt-4o', 'moderate', 2000, 10, '2026-11-01 11:00+00'),
    (NULL, 'claude', 'claude-haiku-4-5', 'digest', 50000, 5000, '2026-11-02 00:00+00');
-- The summary the app kept by trigger (here filled by hand as the trigger would have).
INSERT INTO api_usage_summary (contributor_id, period_start, period_end, provider, total_requests, total_input_tokens, total_output_tokens, total_tokens)
SELECT contributor_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date, (date_trunc('month', created_at AT TIME ZONE 'UTC') + interval '1 month - 1 day')::date,
       provider, count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens)
  FROM api_usage_log GROUP BY 1, 2, 3, 4;
-- Tracked with its history: a cost column, and a priced-provider column (claude and Anthropic
-- are one provider; the provider column keeps what the app wrote).
ALTER TABLE api_usage_log ADD COLUMN priced_provider text;
SELECT llm_cost.track('api_usage_log', provider_column => 'provider', priced_provider_column => 'priced_provider',
                      add_cost_column => true, backfill => true);
SELECT provider, priced_provider, cost_usd, cost_source FROM api_usage_log ORDER BY created_at;
SELECT llm_cost.priced_provider('claude-sonnet-4-5', 'Claude'), llm_cost.priced_provider('gpt-4o'), llm_cost.priced_provider('x', 'My-Proxy');
-- A rollup does not take over the existing summary table.
SELECT llm_cost.create_rollup('api_usage_summary', 'api_usage_log', 'month', '{contributor_id, provider}');
-- The migration: the old table renamed, the rollup, then a view with the old name and columns
-- for the app's readers.
BEGIN;
ALTER TABLE api_usage_summary RENAME TO api_usage_summary_old;
SELECT llm_cost.create_rollup('api_usage_monthly', 'api_usage_log', 'month', '{contributor_id, provider}');
CREATE VIEW api_usage_summary AS
SELECT contributor_id, (period_start AT TIME ZONE 'UTC')::date AS period_start,
       ((period_end AT TIME ZONE 'UTC')::date - 1) AS period_end, provider,
       requests::integer AS total_requests, input_tokens AS total_input_tokens, output_tokens AS total_output_tokens,
       input_tokens + output_tokens AS total_tokens, cost_usd, last_seen AS updated_at
  FROM api_usage_monthly;
COMMIT;
SELECT contributor_id, period_start, period_end, provider, total_requests, total_input_tokens, total_tokens, cost_usd
  FROM api_usage_summary ORDER BY period_start, contributor_id NULLS LAST, provider;
-- The old summary's totals, per contributor and month, equal the new view's.
SELECT count(*) AS mismatches FROM (
    SELECT contributor_id, period_start, sum(total_requests) r, sum(total_tokens) t FROM api_usage_summary_old GROUP BY 1, 2
    EXCEPT SELECT contributor_id, period_start, sum(total_requests), sum(total_tokens) FROM api_usage_summary GROUP BY 1, 2) x;
SELECT * FROM llm_cost.spend_by('api_usage_monthly', '{provider}');

-------------------------------------------------------------------------------------------------
-- 5. Names resolve as PostgreSQL users expect.
-------------------------------------------------------------------------------------------------
-- An unqualified rollup name goes where CREATE VIEW would put it (the first schema of
-- search_path), whatever the source's schema; the budget finds it by the same name.
SELECT llm_cost.create_rollup('tenant_monthly', 'llm_cost.usage_events', 'month', '{tenant_id}');
SELECT 'tenant_monthly'::regclass;
SELECT llm_cost.create_budget('cap', 'tenant_monthly', 500);
SELECT llm_cost.create_rollup('tenant_monthly', 'llm_cost.usage_events', 'month', '{tenant_id}');
SELECT period, requests, cost_usd FROM llm_cost.rollup_summary('tenant_monthly');
SELECT * FROM llm_cost.rollup_summary('api_usage_log');
SELECT * FROM llm_cost.spend_by('tenant_monthly', '{user_id}');
SET search_path = '';
SELECT llm_cost.create_rollup('nowhere', 'public.calls', 'day', '{}');
RESET search_path;

-------------------------------------------------------------------------------------------------
-- 6. A priced provider mapped after a rollup grouped by the provider: every row needs one first.
-------------------------------------------------------------------------------------------------
CREATE TABLE prov_log (created_at timestamptz NOT NULL, provider text, model text NOT NULL, input_tokens int NOT NULL,
                       output_tokens int NOT NULL, cost_usd numeric, pp text);
SELECT llm_cost.track('prov_log', provider_column => 'provider') IS NOT NULL AS tracked;
INSERT INTO prov_log VALUES ('2026-11-01', 'Anthropic', 'claude-sonnet-4-5', 1000, 100), ('2026-11-01', NULL, 'gpt-4o', 1000, 100);
SELECT llm_cost.create_rollup('prov_daily', 'prov_log', 'day', '{provider}');
SELECT llm_cost.track('prov_log', provider_column => 'provider', priced_provider_column => 'pp');
UPDATE prov_log SET pp = provider WHERE pp IS NULL;
SELECT llm_cost.track('prov_log', provider_column => 'provider', priced_provider_column => 'pp') IS NOT NULL AS tracked;
INSERT INTO prov_log VALUES ('2026-11-01', 'anthropic', 'claude-sonnet-4-5', 1000, 100), ('2026-11-01', 'claude', 'claude-sonnet-4-5', 1000, 100);
UPDATE prov_log SET input_tokens = 2000 WHERE provider = 'Anthropic';
SELECT provider, requests, cost_usd FROM prov_daily ORDER BY provider;
SELECT count(*) AS mismatches FROM (
    SELECT provider, requests, cost_usd FROM prov_daily
    EXCEPT SELECT pp, count(*), sum(cost_usd) FROM prov_log GROUP BY pp) d;

-- track(..., backfill => true) on a table tracked before prices what it holds unpriced.
CREATE TABLE late (created_at timestamptz NOT NULL, model text NOT NULL, input_tokens int NOT NULL, output_tokens int NOT NULL,
                   cost_usd numeric NOT NULL DEFAULT 0);
INSERT INTO late VALUES ('2026-11-01', 'gpt-4o', 1000, 100);
SELECT llm_cost.track('late');
SELECT llm_cost.track('late', backfill => true);
SELECT cost_usd, cost_source FROM late;
