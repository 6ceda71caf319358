-- Accounting (0.8.0): cache writes, provider usage shapes, modality prices, search and request
-- fees, time-of-day prices. Each cost is also what genai-prices 0.2.3 computes for the same call
-- (checked by hand when this file was written; tests/catalog/sample_check.py compares a sample of
-- the whole catalog in CI).

-- OpenAI cache writes (gpt-5.6): prompt_tokens counts the tokens written to the cache; they are
-- billed at the cache-write price, not as input. Above 272k prompt tokens the tier prices apply:
-- 50000*4 + 100000*0.4 (cached) + 150000*5 (written) + 1000*18 = 1.008 USD.
SELECT llm_cost.estimate_cost('gpt-5.6-terra', '{"prompt_tokens": 300000, "completion_tokens": 1000,
  "prompt_tokens_details": {"cached_tokens": 100000, "cache_write_tokens": 150000}}', at => '2026-12-01') AS chat,
       llm_cost.estimate_cost('gpt-5.6-terra', '{"input_tokens": 300000, "output_tokens": 1000,
  "input_tokens_details": {"cached_tokens": 100000, "cache_write_tokens": 150000}}', at => '2026-12-01') AS responses,
       llm_cost.estimate_cost('gpt-5.6-terra', 50000, 1000, 100000, 150000, at => '2026-12-01') AS counts;
-- At the flex tier too.
SELECT llm_cost.estimate_cost('gpt-5.6-terra', '{"prompt_tokens": 3000, "completion_tokens": 100,
  "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500}}', at => '2026-12-01', service_tier => 'flex') AS flex;

-- DeepSeek with an OpenAI-shaped usage (as LiteLLM normalises it): cached_tokens are cache hits.
-- 400*0.28 + 600*0.028 + 200*0.42 per 1M.
SELECT llm_cost.estimate_cost('deepseek-chat', '{"prompt_tokens": 1000, "completion_tokens": 200,
  "prompt_tokens_details": {"cached_tokens": 600}}', provider => 'deepseek') AS openai_shape,
       llm_cost.estimate_cost('deepseek-chat', '{"prompt_tokens": 1000, "completion_tokens": 200,
  "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400}') AS native;

-- xAI: reasoning tokens are outside completion_tokens (total = prompt + completion + reasoning);
-- cache reads are cached_tokens (OpenAI shape) or cached_prompt_text_tokens (native shape).
SELECT (llm_cost.usage_tokens(u, 'xai')).output_tokens, llm_cost.estimate_cost('grok-4', u, provider => 'xai')
  FROM (VALUES ('{"prompt_tokens": 37, "completion_tokens": 530, "total_tokens": 800,
    "prompt_tokens_details": {"text_tokens": 37, "cached_tokens": 6},
    "completion_tokens_details": {"reasoning_tokens": 233}}'::jsonb),
    ('{"prompt_tokens": 100, "completion_tokens": 20, "reasoning_tokens": 50, "cached_prompt_text_tokens": 60, "total_tokens": 170}')) v(u);

-- Cohere bills billed_units (v2 chat: usage.billed_units; v1: meta.billed_units).
SELECT input_tokens, output_tokens, format, ignored_keys
  FROM llm_cost.usage_tokens('{"usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418}, "tokens": {"input_tokens": 71, "output_tokens": 418}, "cached_tokens": 0}}');
SELECT llm_cost.estimate_cost('command-r-plus', '{"meta": {"billed_units": {"input_tokens": 1000, "output_tokens": 500}}}', provider => 'cohere');

-- Audio at audio prices (gpt-realtime-mini: text 0.6/2.4, cached 0.06; audio 10/20, cached 0.3):
-- the Realtime API says how much of each modality was cached.
SELECT input_tokens, cache_read_tokens, input_audio_tokens, cache_read_audio_tokens, output_audio_tokens, format
  FROM (VALUES ('{"total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300,
    "input_token_details": {"text_tokens": 500, "audio_tokens": 700, "cached_tokens": 500,
      "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 300}},
    "output_token_details": {"text_tokens": 100, "audio_tokens": 200}}'::jsonb)) v(u), llm_cost.usage_tokens(u);
-- 300*0.6 + 400*10 + 200*0.06 + 300*0.3 + 100*2.4 + 200*20 per 1M = 0.008522
SELECT llm_cost.estimate_cost('gpt-realtime-mini', '{"total_tokens": 1500, "input_tokens": 1200, "output_tokens": 300,
    "input_token_details": {"text_tokens": 500, "audio_tokens": 700, "cached_tokens": 500,
      "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 300}},
    "output_token_details": {"text_tokens": 100, "audio_tokens": 200}}') AS realtime,
       llm_cost.estimate_cost('gpt-realtime-mini', 700, 300, 500, input_audio_tokens => 400, cache_read_audio_tokens => 300,
                              output_audio_tokens => 200) AS counts;
-- Gemini 2.5 Flash: audio input at 1.00 (text 0.30), cached audio at 0.10 (text 0.03).
-- 600*0.3 + 300*1 + 200*0.03 + 100*0.1 + 100*2.5 per 1M = 0.000746
SELECT llm_cost.estimate_cost('gemini-2.5-flash', '{"promptTokenCount": 1200, "candidatesTokenCount": 100, "cachedContentTokenCount": 300,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 800}, {"modality": "AUDIO", "tokenCount": 400}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 200}, {"modality": "AUDIO", "tokenCount": 100}]}') AS gemini_audio;
-- genai-prices' own example (0.0012873): 1892 text + 21 audio uncached, 12110 text + 129 audio
-- cached, 129 out (thinking included; 10 audio at the output price, Flash has no audio output price).
SELECT llm_cost.estimate_cost('gemini-2.5-flash', '{"usageMetadata": {"promptTokenCount": 14152, "candidatesTokenCount": 60,
    "totalTokenCount": 14271, "cachedContentTokenCount": 12239, "trafficType": "ON_DEMAND",
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 14002}, {"modality": "AUDIO", "tokenCount": 150}],
    "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 129}, {"modality": "TEXT", "tokenCount": 12110}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 50}, {"modality": "AUDIO", "tokenCount": 10}],
    "thoughtsTokenCount": 69}, "modelVersion": "gemini-2.5-flash"}') AS gemini_cached_audio;
-- gpt-4o-audio-preview: audio 40/80 (prices/curated_modalities.csv; the dataset has text prices
-- only): 500*2.5 + 500*40 + 200*10 + 800*80 per 1M = 0.08725.
SELECT llm_cost.estimate_cost('gpt-4o-audio-preview-2025-06-03', '{"prompt_tokens": 1000, "completion_tokens": 1000,
    "prompt_tokens_details": {"audio_tokens": 500, "cached_tokens": 0}, "completion_tokens_details": {"audio_tokens": 800}}') AS openai_audio;
-- Without modality prices, audio tokens cost what text tokens cost.
SELECT llm_cost.estimate_cost('gpt-4o-mini', 1000, 100, input_audio_tokens => 1000) = llm_cost.estimate_cost('gpt-4o-mini', 1000, 100) AS same;
-- Parts larger than their count are refused.
SELECT llm_cost.estimate_cost('gpt-realtime-mini', 100, 10, input_audio_tokens => 60, input_image_tokens => 50);

-- Web searches (Anthropic: 10 USD per 1,000) and request fees (Perplexity sonar-pro: 14 USD per
-- 1,000 calls): 1000*3 + 100*15 per 1M + 2*0.01 = 0.0245; 1000*3 + 1000*15 per 1M + 0.014 = 0.032.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', '{"input_tokens": 1000, "output_tokens": 100,
    "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1}}') AS anthropic_search,
       llm_cost.estimate_cost('claude-sonnet-4-5', 1000, 100, web_searches => 2) AS counts,
       llm_cost.estimate_cost('sonar-pro', 1000, 1000) AS perplexity_request;
-- OpenAI's web searches are output items of a whole Responses response: 100*2.5 + 20*10 per 1M
-- + 2 searches at 10 USD per 1,000 = 0.02045.
SELECT llm_cost.estimate_cost('gpt-4o', '{"id": "resp_1", "output": [{"type": "web_search_call", "status": "completed"},
    {"type": "web_search_call", "status": "completed"}, {"type": "message", "content": []}],
    "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20}}') AS openai_searches;
SELECT e->'fees' AS fees, e->'cost_usd' AS cost
  FROM llm_cost.explain_cost('sonar-pro', '{"prompt_tokens": 1000, "completion_tokens": 990, "citation_tokens": 10,
    "num_search_queries": 1, "search_context_size": "low"}') e;

-- The tier the call was billed at, as the usage (Anthropic) or the response (OpenAI) says:
-- batch 1000*1.5 + 100*7.5 per 1M = 0.00225; flex 0.025/0.2: 0.225. An argument wins.
SELECT llm_cost.estimate_cost('claude-sonnet-4-5', '{"input_tokens": 1000, "output_tokens": 100, "service_tier": "batch"}',
                              at => '2026-12-01') AS anthropic_batch,
       llm_cost.estimate_cost('gpt-5-nano', '{"id": "chatcmpl-1", "service_tier": "flex",
                                "usage": {"prompt_tokens": 1000000, "completion_tokens": 1000000}}', at => '2026-12-01') AS openai_flex,
       llm_cost.estimate_cost('gpt-5-nano', '{"id": "chatcmpl-1", "service_tier": "flex",
                                "usage": {"prompt_tokens": 1000000, "completion_tokens": 1000000}}', at => '2026-12-01',
                              service_tier => 'standard') AS argument_wins;

-- Time-of-day prices: DeepSeek V4 Pro costs 1.32/3.96 in its peak windows (01:00-04:00 and
-- 06:00-10:00 UTC) and 0.66/1.98 the rest of the day; the row's event time decides.
SELECT h, llm_cost.estimate_cost('deepseek-v4-pro', 1000000, 1000000, at => '2026-12-01 00:00+00'::timestamptz + h * interval '1 hour') AS cost
  FROM generate_series(0, 23, 3) h;
SELECT e->'time_of_day' AS time_of_day, e->'prices_usd_per_mtok'->'input' AS input
  FROM llm_cost.explain_cost('deepseek-v4-pro', 1, 1, at => '2026-12-01 12:00+00') e;
SELECT e->'time_of_day' AS time_of_day, e->'prices_usd_per_mtok'->'input' AS input
  FROM llm_cost.explain_cost('deepseek-v4-pro', 1, 1, at => '2026-12-01 09:59:59+00') e;

-- A tracked table maps the optional columns; the trigger bills the row's hour.
CREATE TABLE voice_log (
    created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int,
    audio_in int, audio_out int, searches int, cost_usd numeric);
SELECT llm_cost.track('voice_log', input_audio_tokens_column => 'audio_in', output_audio_tokens_column => 'audio_out',
                      web_searches_column => 'searches');
SELECT log_table, input_audio_tokens_column, output_audio_tokens_column, web_searches_column
  FROM llm_cost.tracked_tables WHERE log_table = 'voice_log'::regclass;
INSERT INTO voice_log VALUES
    ('2026-12-01 12:00+00', 'gpt-realtime-mini', 1000, 1000, 500, 1000, 0, NULL),
    ('2026-12-01 12:00+00', 'claude-sonnet-4-5', 1000, 100, 0, 0, 2, NULL),
    ('2026-12-01 02:00+00', 'deepseek-v4-pro', 1000000, 1000000, 0, 0, 0, NULL),
    ('2026-12-01 14:00+00', 'deepseek-v4-pro', 1000000, 1000000, 0, 0, 0, NULL);
COPY voice_log FROM stdin;
2026-12-01 07:30:00+00	deepseek-v4-pro	1000000	1000000	0	0	0	\N
\.
SELECT created_at, model, cost_usd FROM voice_log ORDER BY created_at, model;
INSERT INTO voice_log VALUES ('2026-12-01 12:00+00', 'gpt-realtime-mini', 10, 10, 11, 0, 0, NULL);
-- In a tracked table with a usage column, the usage's tier applies when the tier column is NULL.
INSERT INTO llm_cost.usage_events (occurred_at, model, usage, service_tier) VALUES
    ('2026-12-01 12:00+00', 'claude-sonnet-4-5', '{"input_tokens": 1000, "output_tokens": 100, "service_tier": "batch"}', NULL),
    ('2026-12-01 12:00+00', 'claude-sonnet-4-5', '{"input_tokens": 1000, "output_tokens": 100, "service_tier": "batch"}', 'standard')
RETURNING service_tier, cost_usd;
-- A usage column is read in place (binary jsonb): Gemini's per-modality lists and OpenAI's
-- web_search_call items give the same costs as above.
INSERT INTO llm_cost.usage_events (occurred_at, model, usage) VALUES
    ('2026-12-01 12:00+00', 'gemini-2.5-flash', '{"usageMetadata": {"promptTokenCount": 14152, "candidatesTokenCount": 60,
        "cachedContentTokenCount": 12239, "thoughtsTokenCount": 69,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 14002}, {"modality": "AUDIO", "tokenCount": 150}],
        "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 129}, {"modality": "TEXT", "tokenCount": 12110}],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 50}, {"modality": "AUDIO", "tokenCount": 10}]}}'),
    ('2026-12-01 12:00+00', 'gpt-4o', '{"id": "resp_1", "output": [{"type": "web_search_call"}, {"type": "web_search_call"}],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20}}')
RETURNING model, input_tokens, cache_read_tokens, output_tokens, cost_usd;
-- estimate_cost's NULLs: a NULL count or time gives NULL (a bad count is an error first); a NULL
-- provider or tier is none / standard.
SELECT llm_cost.estimate_cost('gpt-4o', 1, 1, at => NULL) IS NULL AS null_at,
       llm_cost.estimate_cost('gpt-4o', 1, 1, web_searches => NULL) IS NULL AS null_count,
       llm_cost.estimate_cost('gpt-4o', 1000000, 0, provider => NULL, service_tier => NULL) AS null_provider_and_tier;
SELECT llm_cost.estimate_cost('gpt-4o', -1, 1, at => NULL);
-- Bad input: a negative modality count or search count, parts larger than their count, a bad
-- count in a usage object (named by its path), in a tracked table (the statement is refused
-- whole). An unknown model is NULL whatever its searches.
SELECT llm_cost.estimate_cost('gpt-4o', 10, 10, web_searches => -1);
SELECT llm_cost.estimate_cost('gpt-4o', 10, 10, output_audio_tokens => 11);
SELECT llm_cost.estimate_cost('gpt-4o', '{"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"audio_tokens": -2}}');
SELECT llm_cost.estimate_cost('llm-cost-unknown-x', 10, 10, web_searches => 1) IS NULL AS unknown_is_null;
INSERT INTO voice_log VALUES ('2026-12-02 12:00+00', 'claude-sonnet-4-5', 10, 10, 0, 0, 1, NULL),
                             ('2026-12-02 12:00+00', 'claude-sonnet-4-5', 10, 10, 0, 0, -1, NULL);
SELECT count(*) FROM voice_log WHERE created_at = '2026-12-02 12:00+00';

-- Your own time-of-day prices: windows of one model may not overlap each other (a window across
-- midnight included); a window over an all-day row is how a peak price is written.
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-tod', 1, 1);
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, time_of_day_from, time_of_day_to)
     VALUES ('acme', 'acme-tod', 2, 2, '22:00', '06:00');
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, time_of_day_from, time_of_day_to)
     VALUES ('acme', 'acme-tod', 3, 3, '05:00', '07:00');
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, time_of_day_from, time_of_day_to)
     VALUES ('acme', 'acme-tod', 3, 3, '06:00', '07:00');
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, time_of_day_from)
     VALUES ('acme', 'acme-tod', 3, 3, '06:00');
SELECT h, llm_cost.estimate_cost('acme-tod', 1000000, 0, at => '2026-12-01 00:00+00'::timestamptz + h * interval '1 hour') AS cost
  FROM (VALUES (1), (6), (12), (23)) v(h);
