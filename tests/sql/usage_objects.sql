-- Usage objects: each provider's documented usage, priced by hand (USD per 1M tokens from the
-- catalog: gpt-4o 2.5 / 10 / cache 1.25, gpt-5 1.25 / 10 / 0.125, Sonnet 4.5 3 / 15 / 0.3 /
-- writes 3.75 (5m) and 6 (1h), Gemini 2.5 Flash 0.3 / 2.5 / 0.03, Bedrock Claude 3.7 Sonnet 3 /
-- 15 / 0.3 / 3.75, DeepSeek chat 0.28 / 0.42 / 0.028, Mistral Small 0.15 / 0.6, OpenRouter's
-- Claude 3.7 Sonnet 3 / 15 with no cache price). (Moved from src/features/pricing_sql.rs.)

-- OpenAI Chat Completions: prompt_tokens includes the 1,920 cached ones (not counted twice):
-- 86 * 2.5 + 1920 * 1.25 + 300 * 10 = 5615 (millionths).
SELECT llm_cost.estimate_cost('gpt-4o', '{"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306, "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}');
-- A whole response with its usage inside.
SELECT llm_cost.estimate_cost('gpt-4o', '{"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}}');
-- OpenAI Responses: 26 * 1.25 + 10 * 0.125 + 87 * 10 (reasoning included) = 903.75.
SELECT llm_cost.estimate_cost('gpt-5', '{"input_tokens": 36, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 123}');
-- Anthropic: input excludes cache reads and writes; 1-hour writes at 6, not 3.75:
-- 50 * 3 + 503 * 15 + 1800 * 0.3 + 48 * 3.75 + 2000 * 6 = 20415. The same with the counts given.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', '{"input_tokens": 50, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 1800, "output_tokens": 503, "cache_creation": {"ephemeral_5m_input_tokens": 48, "ephemeral_1h_input_tokens": 2000}, "service_tier": "standard"}');
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 50, 503, 1800, 48, cache_write_1h_tokens => 2000);
-- Gemini: thinking is output: 200 * 0.3 + 1000 * 0.03 + (300 + 700) * 2.5 = 2590.
SELECT llm_cost.estimate_cost('gemini-2.5-flash', '{"usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 300, "thoughtsTokenCount": 700, "cachedContentTokenCount": 1000, "totalTokenCount": 2200}}');
-- Bedrock Converse: 30 * 3 + 628 * 15 + 100 * 0.3 + 20 * 3.75 = 9615.
SELECT llm_cost.estimate_cost('us.anthropic.claude-3-7-sonnet-20250219-v1:0', '{"inputTokens": 30, "outputTokens": 628, "totalTokens": 778, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}');
-- DeepSeek: 200 * 0.28 + 800 * 0.028 + 10 * 0.42 = 82.6.
SELECT llm_cost.estimate_cost('deepseek-chat', '{"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010, "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}');
-- Mistral: 12 * 0.15 + 34 * 0.6 = 22.2.
SELECT llm_cost.estimate_cost('mistral-small-latest', '{"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}', provider => 'mistral');
-- OpenRouter: its cost is a provided cost (kept by the trigger); the estimate:
-- 94 * 3 + 100 * 3 (no cache price: input) + 2 * 15 = 612.
SELECT llm_cost.estimate_cost('anthropic/claude-3.7-sonnet', '{"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95, "is_byok": false, "prompt_tokens_details": {"cached_tokens": 100}}', provider => 'openrouter');
-- LiteLLM's standard logging payload: 500 * 3 + 2000 * 0.3 + 500 * 3.75 + 20 * 15 = 4275.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', '{"id": "x", "call_type": "completion", "prompt_tokens": 3000, "completion_tokens": 20, "total_tokens": 3020, "response_cost": 0.0043, "metadata": {"usage_object": {"prompt_tokens": 3000, "completion_tokens": 20, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 2000}}}');

-- usage_tokens: the counts, the reported cost, the keys llm_cost does not read.
SELECT * FROM llm_cost.usage_tokens('{"prompt_tokens": 194, "completion_tokens": 2, "cost": 0.95, "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 1}, "brand_new": 1}');
SELECT j->'usage'->'input_tokens' AS input_tokens, j->'usage'->'from_usage_object'->'ignored_keys' AS ignored_keys
  FROM llm_cost.explain_cost('gpt-4o', '{"prompt_tokens": 10, "completion_tokens": 1, "surprise": {"a": 1}}') AS j;

-- Bad input is 22023 with the JSON path of the value.
SELECT llm_cost.estimate_cost('gpt-4o', '{"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 1.5}}'::jsonb);
SELECT llm_cost.estimate_cost('gpt-4o', '{"input_tokens": -3, "output_tokens": 1}'::jsonb);
SELECT llm_cost.estimate_cost('gpt-4o', '{"usageMetadata": {"promptTokenCount": "12"}}'::jsonb);
SELECT llm_cost.estimate_cost('gpt-4o', '{"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}'::jsonb);
-- An object two shapes could read is ambiguous until the provider is named; one llm_cost does
-- not know is refused.
SELECT * FROM llm_cost.usage_tokens('{"prompt_tokens": 10, "input_tokens": 10, "output_tokens": 2}');
SELECT input_tokens FROM llm_cost.usage_tokens('{"prompt_tokens": 10, "input_tokens": 10, "output_tokens": 2}', 'anthropic');
SELECT * FROM llm_cost.usage_tokens('{"tokens": 10}');
-- NULL in, NULL out.
SELECT llm_cost.estimate_cost('gpt-4o', NULL::jsonb);
SELECT (llm_cost.usage_tokens(NULL)).input_tokens;
-- The 1-hour argument is checked like the others; NULL in it is NULL.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1, 1, cache_write_1h_tokens => -2);
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1, 1, cache_write_1h_tokens => NULL);
-- import_prices: no document, a time that is not one.
SELECT * FROM llm_cost.import_prices(NULL);
SELECT * FROM llm_cost.import_prices('{"data": []}', valid_from => 'infinity');
