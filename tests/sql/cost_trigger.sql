-- The cost trigger on llm_cost.usage_events: every INSERT and UPDATE priced in the statement.
-- (Moved from the #[pg_test]s of src/features/usage.rs.)

-- Estimated from the catalog, or provided by the application (0 too) and kept.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('claude-sonnet-4-5', 100000, 1000000);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd, feature) VALUES ('claude-sonnet-4-5', 100000, 1000000, 0.5, 'given');
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd, feature) VALUES ('gpt-4o', 10, 10, 0, 'free');
-- An explicit provider is kept; the row's provider picks the host's price; a service tier the
-- batch price.
INSERT INTO llm_cost.usage_events (model, provider, service_tier, input_tokens, output_tokens, feature)
VALUES ('gpt-4o', 'azure', NULL, 1000000, 0, 'az'), ('gpt-4o', NULL, 'batch', 1000000, 0, 'batch'),
       ('llama-3.3-70b-versatile', 'openai', NULL, 1000000, 1000000, 'vendor-as-host');
-- A row that says its cost is an estimate keeps that only if the cost is exactly ours (rows an
-- UPDATE moves to another partition arrive so); any other cost is provided.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd, cost_source, feature)
VALUES ('claude-sonnet-4-5', 100000, 1000000, 15.3000, 'estimated', 'ours'),
       ('claude-sonnet-4-5', 100000, 1000000, 17, 'estimated', 'theirs');
SELECT feature, model, provider, cost_usd, cost_source FROM llm_cost.usage_events ORDER BY id;
INSERT INTO llm_cost.usage_events (model, service_tier, input_tokens, output_tokens) VALUES ('gpt-4o', 'turbo', 1, 1);
DELETE FROM llm_cost.usage_events;

-- Multi-row VALUES and INSERT ... SELECT: every row priced.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
VALUES ('claude-sonnet-4-5', 1000, 500, 20000, 4000), ('gpt-4o', 1000000, 0, 0, 0), ('gemini-2.5-pro', 300000, 0, 0, 0);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) SELECT 'gpt-4o-mini', i, i FROM generate_series(1, 1000) i;
-- sum(i) = 500500 tokens each at 0.15 and 0.6 per 1M.
SELECT model = 'gpt-4o-mini' AS mini, count(*), sum(cost_usd), count(*) FILTER (WHERE cost_source = 'estimated') AS estimated
  FROM llm_cost.usage_events GROUP BY 1 ORDER BY 1;
DELETE FROM llm_cost.usage_events;

-- An unknown model: stored unpriced (cost NULL, never $0), listed in unpriced_models. Another
-- trigger's caught error (an aborted subtransaction) in the same statement does not take the
-- statement's unknown models out of the list; a rolled-back savepoint takes out its own rows only.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) SELECT 'mystery-model', 10, 10 FROM generate_series(1, 3);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('mystery-model', 1, 1), ('gpt-4o', 1, 1);
SELECT model, cost_usd, cost_source, count(*) FROM llm_cost.usage_events GROUP BY 1, 2, 3 ORDER BY 1;
SELECT model, rows FROM llm_cost.unpriced_models WHERE log_table = 'llm_cost.usage_events'::regclass;
CREATE FUNCTION catch_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END; RETURN NULL; END $$;
CREATE TRIGGER catch_all AFTER INSERT ON llm_cost.usage_events FOR EACH ROW EXECUTE FUNCTION catch_all();
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) SELECT 'mystery-model', 1, 1 FROM generate_series(1, 5);
DO $$ BEGIN
  BEGIN
    INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('mystery-model', 1, 1);
    RAISE EXCEPTION 'undo';
  EXCEPTION WHEN others THEN NULL; END;
  INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('mystery-model', 1, 1);
END $$;
SELECT model, rows FROM llm_cost.unpriced_models WHERE model = 'mystery-model';
SELECT count(*) FROM llm_cost.usage_events WHERE model = 'mystery-model';
DROP TRIGGER catch_all ON llm_cost.usage_events;
DELETE FROM llm_cost.usage_events;

-- llm_cost.strict: an unpriced row rejects the statement.
BEGIN;
SET LOCAL llm_cost.strict = on;
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1), ('mystery', 1, 1);
ROLLBACK;

-- Bad input rejects the statement whole, with the SQLSTATE and the column.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1), ('gpt-4o', -5, 1);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1), (NULL, 1, 1);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, -0.01);
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, 'NaN');
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cache_write_tokens) SELECT 'gpt-4o', 1, 1, 1 - i FROM generate_series(1, 3) i;
SELECT count(*) FROM llm_cost.usage_events;

-- An UPDATE re-estimates an estimated cost, never a provided one; setting the cost makes it
-- provided, setting it to NULL asks for an estimate again; the event time picks the price.
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, feature) VALUES ('gpt-4o', 1000000, 0, 'est');
INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, feature, cost_usd) VALUES ('gpt-4o', 1000000, 0, 'prov', 7);
UPDATE llm_cost.usage_events SET input_tokens = 2000000;
SELECT feature, cost_usd, cost_source FROM llm_cost.usage_events ORDER BY feature;
-- 2M prompt tokens: above Anthropic's 200k tier (6 per 1M).
UPDATE llm_cost.usage_events SET model = 'claude-sonnet-4-5' WHERE feature = 'est';
SELECT feature, cost_usd, cost_source FROM llm_cost.usage_events WHERE feature = 'est';
UPDATE llm_cost.usage_events SET cost_usd = 1 WHERE feature = 'est';
SELECT feature, cost_usd, cost_source FROM llm_cost.usage_events WHERE feature = 'est';
UPDATE llm_cost.usage_events SET cost_usd = NULL WHERE feature = 'est';
SELECT feature, cost_usd, cost_source FROM llm_cost.usage_events WHERE feature = 'est';
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, valid_from, valid_to)
VALUES ('acme', 'acme-h', 10, '-infinity', '2026-01-01'), ('acme', 'acme-h', 1, '2026-01-01', 'infinity');
INSERT INTO llm_cost.usage_events (model, input_tokens, occurred_at, feature) VALUES ('acme-h', 1000000, '2025-06-01', 'hist');
SELECT feature, cost_usd FROM llm_cost.usage_events WHERE feature = 'hist';
UPDATE llm_cost.usage_events SET occurred_at = '2026-06-01' WHERE feature = 'hist';
SELECT feature, cost_usd FROM llm_cost.usage_events WHERE feature = 'hist';
