-- The price catalog: your rows, history by event time, aliases, and what it refuses.
-- (Moved from the #[pg_test]s of src/features/pricing_sql.rs.)

-- Price history: the price in effect at the call's time.
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
VALUES ('acme', 'acme-1', 10, 20, '-infinity', '2026-01-01'),
       ('acme', 'acme-1', 1, 2, '2026-01-01', 'infinity');
SELECT llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2025-12-31 23:59:59+00') AS before,
       llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2026-01-01 00:00:00+00') AS after;

-- Rows of one model that overlap in time are refused.
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
VALUES ('acme', 'acme-2', 10, 20, '-infinity', '2026-02-01'),
       ('acme', 'acme-2', 1, 2, '2026-01-01', 'infinity');

-- Your row wins over both shipped tiers; shipped rows are read-only.
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, note)
VALUES ('anthropic', 'claude-sonnet-4-5', 2, 10, 'negotiated');
SELECT llm_cost.estimate_cost('claude-sonnet-4-5-20250929', 1000000, 1000000);
UPDATE llm_cost.model_prices SET input_usd_per_mtok = 0 WHERE id = 3;

-- Prices are 0 to 1,000,000 USD per 1M tokens, with at most 10 decimals.
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'bad', -1);
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'bad', 1000000);
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'bad', 0.00000000001);

-- Aliases take effect within the transaction, whatever the case of the name.
BEGIN;
SELECT llm_cost.resolve_model('house-llm');
INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('house-llm', 'gpt-4o');
SELECT llm_cost.resolve_model('House-LLM');
SELECT llm_cost.estimate_cost('house-llm', 1000000, 0);
ROLLBACK;

-- How names resolve: case, dates, provider prefixes, routers, Bedrock and Vertex spellings.
SELECT name, llm_cost.resolve_model(name) AS model, llm_cost.provider_of(name) AS provider
  FROM unnest(ARRAY['claude-sonnet-4-5', 'CLAUDE-SONNET-4-5-20250929', 'anthropic/claude-sonnet-4-5',
                    'openrouter/anthropic/claude-sonnet-4.5', 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
                    'claude-sonnet-4-5@20250929', 'gpt-4o-2024-08-06', 'google/gemini-2.5-flash',
                    'deepseek-chat', 'gemini-2.5-pro', 'no-such-model', 'zzz']) AS name;
SELECT llm_cost.resolve_model('claude-sonnet-4-5', 'vertex_ai');
SELECT llm_cost.provider_id('bedrock'), llm_cost.provider_id('Together_AI');

-- format_cost: never shows a cost llm_cost could not compute as $0.00.
SELECT llm_cost.format_cost(0), llm_cost.format_cost(0.0012345), llm_cost.format_cost(0.45),
       llm_cost.format_cost(1234.567), llm_cost.format_cost(NULL);

-- explain_cost: how a call was priced, part by part.
SELECT j->>'resolved_model' AS model, j->'price_row'->>'source_url' AS source, j->'parts_usd' AS parts, j->'cost_usd' AS cost_usd
  FROM llm_cost.explain_cost('anthropic/claude-sonnet-4-5', 1000, 500, 20000, 4000) AS j;
SELECT j->>'provider' AS provider, j->'matched'->>'by' AS matched_by, j->'matched'->'rule'->'or'->0 AS first_rule
  FROM llm_cost.explain_cost('mistralai/mistral-large', 1, 1) AS j;
SELECT llm_cost.explain_cost('nope', 1, 1)->'cost_usd' AS cost_usd;
