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
        ('text-embedding-3-small',                          250000,       0,     0,    0),
        ('my-fine-tuned-model',                               1000,    1000,     0,    0)
       ) AS c(model, input_tokens, output_tokens, cache_read, cache_write);
