-- A table that keeps the provider's raw usage object: the counts come from it and go into the
-- mapped token columns, a reported cost is kept as provided, bad objects reject the statement.
-- (Moved from the #[pg_test]s of src/features/usage.rs.)
CREATE TABLE calls (created_at timestamptz NOT NULL DEFAULT now(), model text, provider text,
                    tin int, tout int, cr int, cw bigint, cw1h bigint, cost_usd numeric, cost_source text, usage jsonb, raw json);
SELECT llm_cost.track('calls', input_tokens_column => 'tin', output_tokens_column => 'tout', cache_read_tokens_column => 'cr',
                      cache_write_tokens_column => 'cw', cache_write_1h_tokens_column => 'cw1h', provider_column => 'provider',
                      usage_column => 'usage') IS NOT NULL AS tracked;
INSERT INTO calls (model, usage) VALUES
  ('claude-sonnet-4-5', '{"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503, "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000}}'),
  ('gpt-4o', '{"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}');
INSERT INTO calls (model, provider, usage) VALUES ('anthropic/claude-3.7-sonnet', 'openrouter', '{"prompt_tokens": 194, "completion_tokens": 2, "cost": 0.95, "prompt_tokens_details": {"cached_tokens": 100}}');
-- Token columns given and no usage object: priced from the columns.
INSERT INTO calls (model, tin, tout) VALUES ('gpt-4o', 1000000, 0);
SELECT model, provider, tin, tout, cr, cw, cw1h, cost_usd, cost_source FROM calls ORDER BY model, tin;
-- An UPDATE of the usage object prices the row again.
UPDATE calls SET usage = '{"prompt_tokens": 1000000, "completion_tokens": 0}' WHERE model = 'gpt-4o' AND tin = 86;
SELECT tin, cr, cost_usd FROM calls WHERE model = 'gpt-4o' AND usage IS NOT NULL;
-- Bad usage: the statement is rejected whole, naming the column and the path.
INSERT INTO calls (model, usage) VALUES ('gpt-4o', '{"prompt_tokens": 3}'), ('gpt-4o', '{"prompt_tokens": 3, "completion_tokens": -1}');
INSERT INTO calls (model, usage) VALUES ('gpt-4o', '{"prompt_tokens": 3000000000}');
SELECT count(*) FROM calls;
-- A cost column with a default (no cost_source column): the reported cost still counts.
CREATE TABLE calls_d (created_at timestamptz NOT NULL DEFAULT now(), model text, provider text, tin int, tout int, cost numeric NOT NULL DEFAULT 0, usage jsonb);
SELECT llm_cost.track('calls_d', input_tokens_column => 'tin', output_tokens_column => 'tout', cost_column => 'cost', provider_column => 'provider', usage_column => 'usage') IS NOT NULL AS tracked;
INSERT INTO calls_d (model, provider, usage) VALUES ('anthropic/claude-3.7-sonnet', 'openrouter', '{"prompt_tokens": 194, "completion_tokens": 2, "cost": 0.95}');
SELECT cost FROM calls_d;
-- A json (not jsonb) column works too; a column of another type is refused.
SELECT llm_cost.track('calls', input_tokens_column => 'tin', output_tokens_column => 'tout', usage_column => 'raw') IS NOT NULL AS tracked;
INSERT INTO calls (model, raw) VALUES ('gemini-2.5-flash', '{"usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 700, "cachedContentTokenCount": 1000}}');
SELECT tin, tout, cost_usd FROM calls WHERE model = 'gemini-2.5-flash';
SELECT llm_cost.track('calls', input_tokens_column => 'tin', output_tokens_column => 'tout', usage_column => 'model') IS NOT NULL AS tracked;
