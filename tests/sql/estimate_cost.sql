-- estimate_cost: the cost of one call in USD, exact (numeric), from the shipped catalog.
-- (Moved from the #[pg_test]s of src/features/pricing_sql.rs.)

-- Claude Sonnet 4.5: 100k in, 1M out is below the 200k tier (0.3 + 15); a 1M-token prompt is
-- above it: Anthropic charges 6 / 22.50 for the whole call.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 100000, 1000000);
SELECT llm_cost.estimate_cost('anthropic/claude-sonnet-4-5-20250929', 100000, 1000000);
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000000, 1000000);
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 200000, 0);
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 200001, 0);

-- The names of issue #15, each at its host's published price (USD for 1M in + 1M out); the
-- last three were mispriced once, each is at its own price now.
SELECT name, llm_cost.estimate_cost(name, 1000000, 1000000) AS usd
  FROM unnest(ARRAY['anthropic/claude-3-sonnet', 'google/gemini-pro', 'google/gemini-pro-1.5',
                    'meta-llama/llama-3.3-70b-instruct', 'qwen/qwen3-235b-a22b', 'x-ai/grok-4',
                    'deepseek/deepseek-r1', 'moonshotai/kimi-k2', 'z-ai/glm-4.6', 'openai/gpt-oss-120b',
                    'gpt-4', 'gemini-1.5-pro', 'o3-pro', 'claude-3-5-haiku-latest', 'gpt-3.5-turbo-0125',
                    'gpt-4o-2024-05-13', 'mistralai/mistral-large', 'groq/llama-3.3-70b-versatile',
                    'mistral-large-latest']) AS name;

-- A snapshot nothing covers stays unpriced rather than priced as its undated name.
SELECT llm_cost.estimate_cost('gpt-4o-2099-01-01', 1, 1);

-- Hosts from the provider argument; a provider that lists no model of that name leaves the
-- decision to the name.
SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 0, provider => 'azure');
SELECT llm_cost.estimate_cost('llama-3.3-70b-versatile', 1000000, 0, provider => 'openai');
SELECT llm_cost.estimate_cost('us.anthropic.claude-sonnet-4-5-20250929-v1:0', 1000000, 0, provider => 'anthropic');

-- Service tiers; an unknown one is 22023.
SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 1000000, service_tier => 'batch');
SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 1000000, service_tier => 'default');
SELECT llm_cost.estimate_cost('gpt-4o', 1, 1, service_tier => 'turbo');

-- Unknown models are NULL, never $0; NULL arguments give NULL.
SELECT llm_cost.estimate_cost('no-such-model', 1, 1);
SELECT llm_cost.estimate_cost(NULL, 1, 1);
SELECT llm_cost.estimate_cost('gpt-4o', NULL, 1);

-- Negative counts are 22023, naming the argument.
SELECT llm_cost.estimate_cost('gpt-4o', -1, 1);
SELECT llm_cost.estimate_cost('gpt-4o', 1, -1);
SELECT llm_cost.explain_cost('gpt-4o', 1, 1, 0, -3);

-- bigint's maximum everywhere does not overflow: (15 + 75 + 1.5 + 18.75) * (2^63-1) / 1e6.
SELECT llm_cost.estimate_cost('claude-opus-4-1-20250805', 9223372036854775807, 9223372036854775807,
                              9223372036854775807, 9223372036854775807) AS usd,
       llm_cost.estimate_cost('claude-opus-4-1-20250805', 9223372036854775807, 9223372036854775807,
                              9223372036854775807, 9223372036854775807) * 1000000 = 110.25 * 9223372036854775807::numeric AS exact;

-- Cache tokens: Anthropic's cache read 0.3, write 3.75 per 1M. A model with no cache price: the
-- input price (1) applies to both.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000, 500, 20000, 4000);
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-nocache', 1, 2);
SELECT llm_cost.estimate_cost('acme-nocache', 0, 0, 100000, 100000);

-- Long-context tiers: gpt-5.4 is 2.5 / 15 up to 272k prompt tokens, 5 / 22.5 above; cached
-- prompt tokens count towards the tier.
SELECT llm_cost.estimate_cost('gpt-5.4', 272000, 0);
SELECT llm_cost.estimate_cost('gpt-5.4', 272001, 1000000);
SELECT llm_cost.estimate_cost('gpt-5.4', 200000, 0, 72001);
