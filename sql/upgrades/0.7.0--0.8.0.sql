-- llm_cost 0.7.0 -> 0.8.0: accounting. Every token, search and hour billed the way the provider
-- bills it: per-modality prices (audio and image tokens in, cached and out), web-search and
-- per-request fees, time-of-day prices chosen by the call's event time (DeepSeek's peak hours),
-- and usage objects read as each provider documents them (OpenAI cache writes, DeepSeek's
-- OpenAI-shaped cached_tokens, xAI reasoning and cache reads, Perplexity, Cohere billed_units,
-- the Realtime API, Gemini's per-modality lists, Anthropic web searches).
--
-- Stored costs are not touched: rows logged before keep the cost they were given. Run
-- llm_cost.reprice(table) to price them again with the new catalog and rules.

-------------------------------------------------------------------------------------------------
-- The catalog's new prices (sql/catalog.sql)
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.model_prices
    ADD COLUMN input_audio_usd_per_mtok      numeric,
    ADD COLUMN cache_read_audio_usd_per_mtok numeric,
    ADD COLUMN output_audio_usd_per_mtok     numeric,
    ADD COLUMN input_image_usd_per_mtok      numeric,
    ADD COLUMN cache_read_image_usd_per_mtok numeric,
    ADD COLUMN output_image_usd_per_mtok     numeric,
    ADD COLUMN web_search_usd_per_1k         numeric,
    ADD COLUMN request_usd_per_1k            numeric,
    ADD COLUMN time_of_day_from              time,
    ADD COLUMN time_of_day_to                time,
    ADD CONSTRAINT model_prices_extra_price_range CHECK (
        (input_audio_usd_per_mtok IS NULL OR llm_cost._valid_price(input_audio_usd_per_mtok))
        AND (cache_read_audio_usd_per_mtok IS NULL OR llm_cost._valid_price(cache_read_audio_usd_per_mtok))
        AND (output_audio_usd_per_mtok IS NULL OR llm_cost._valid_price(output_audio_usd_per_mtok))
        AND (input_image_usd_per_mtok IS NULL OR llm_cost._valid_price(input_image_usd_per_mtok))
        AND (cache_read_image_usd_per_mtok IS NULL OR llm_cost._valid_price(cache_read_image_usd_per_mtok))
        AND (output_image_usd_per_mtok IS NULL OR llm_cost._valid_price(output_image_usd_per_mtok))
        AND (web_search_usd_per_1k IS NULL OR llm_cost._valid_price(web_search_usd_per_1k))
        AND (request_usd_per_1k IS NULL OR llm_cost._valid_price(request_usd_per_1k))),
    ADD CONSTRAINT model_prices_time_of_day CHECK (
        (time_of_day_from IS NULL) = (time_of_day_to IS NULL) AND (time_of_day_from IS NULL OR time_of_day_from <> time_of_day_to));
COMMENT ON COLUMN llm_cost.model_prices.input_audio_usd_per_mtok IS 'USD per 1M uncached audio input tokens. NULL: audio input is charged at the input price.';
COMMENT ON COLUMN llm_cost.model_prices.cache_read_audio_usd_per_mtok IS 'USD per 1M audio tokens read from the prompt cache. NULL: the cache-read price applies.';
COMMENT ON COLUMN llm_cost.model_prices.output_audio_usd_per_mtok IS 'USD per 1M audio output tokens. NULL: the output price applies.';
COMMENT ON COLUMN llm_cost.model_prices.input_image_usd_per_mtok IS 'USD per 1M uncached image input tokens. NULL: the input price applies.';
COMMENT ON COLUMN llm_cost.model_prices.cache_read_image_usd_per_mtok IS 'USD per 1M image tokens read from the prompt cache. NULL: the cache-read price applies.';
COMMENT ON COLUMN llm_cost.model_prices.output_image_usd_per_mtok IS 'USD per 1M image output tokens. NULL: the output price applies.';
COMMENT ON COLUMN llm_cost.model_prices.web_search_usd_per_1k IS 'USD per 1,000 web searches the call made (Anthropic server_tool_use.web_search_requests, Perplexity num_search_queries, estimate_cost''s web_searches). NULL: no search fee.';
COMMENT ON COLUMN llm_cost.model_prices.request_usd_per_1k IS 'USD per 1,000 calls: a fee charged once per call (Perplexity). NULL: none.';
COMMENT ON COLUMN llm_cost.model_prices.time_of_day_from IS 'Time-of-day price: the row applies from this UTC time of day (inclusive) to time_of_day_to (exclusive; a window may cross midnight), every day of its validity, and there beats the all-day rows of the same origin (DeepSeek''s peak and off-peak rates). NULL: all day.';
COMMENT ON COLUMN llm_cost.model_prices.time_of_day_to IS 'End (exclusive, UTC) of a time-of-day price''s daily window; NULL with time_of_day_from.';

-------------------------------------------------------------------------------------------------
-- Tracked tables map optional modality and search columns; usage objects say them (sql/usage.sql,
-- sql/usage_objects.sql)
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.tracked_tables
    ADD COLUMN input_audio_tokens_column text,
    ADD COLUMN cache_read_audio_tokens_column text,
    ADD COLUMN output_audio_tokens_column text,
    ADD COLUMN input_image_tokens_column text,
    ADD COLUMN cache_read_image_tokens_column text,
    ADD COLUMN output_image_tokens_column text,
    ADD COLUMN web_searches_column text;
COMMENT ON COLUMN llm_cost.tracked_tables.input_audio_tokens_column IS 'Column with the audio tokens among the uncached input tokens (billed at the model''s audio input price), or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_read_audio_tokens_column IS 'Column with the audio tokens among the cache-read tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.output_audio_tokens_column IS 'Column with the audio tokens among the output tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.input_image_tokens_column IS 'Column with the image tokens among the uncached input tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_read_image_tokens_column IS 'Column with the image tokens among the cache-read tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.output_image_tokens_column IS 'Column with the image tokens among the output tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.web_searches_column IS 'Column with the number of web searches the call made (billed at the model''s search fee), or NULL.';

ALTER TYPE llm_cost.usage_counts
    ADD ATTRIBUTE input_audio_tokens bigint,
    ADD ATTRIBUTE cache_read_audio_tokens bigint,
    ADD ATTRIBUTE output_audio_tokens bigint,
    ADD ATTRIBUTE input_image_tokens bigint,
    ADD ATTRIBUTE cache_read_image_tokens bigint,
    ADD ATTRIBUTE output_image_tokens bigint,
    ADD ATTRIBUTE web_searches bigint;

-- @generated

-------------------------------------------------------------------------------------------------
-- The shipped catalog, refreshed (sql/prices.sql of 0.8.0). Shipped rows of 0.7.0 are replaced;
-- the 0.2.0 prices kept as history (ids above 900000, valid until 2026-12-02) stay, and the new
-- rows of their models start where they end, as in 0.3.0. Your rows, imported rows and aliases
-- are not touched; logged costs are not touched.
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.model_prices DISABLE TRIGGER model_prices_protect_shipped, DISABLE TRIGGER model_prices_no_overlap;
ALTER TABLE llm_cost.providers DISABLE TRIGGER providers_protect_shipped;
DELETE FROM llm_cost.model_prices WHERE origin = 'llm_cost' AND id <= 900000;
DELETE FROM llm_cost.providers WHERE origin = 'llm_cost';
-- @shipped_catalog
UPDATE llm_cost.model_prices n SET valid_from = '2026-12-02 00:00:00+00'
 WHERE n.origin = 'llm_cost' AND n.id <= 900000 AND n.service_tier = 'standard' AND n.valid_from < '2026-12-02 00:00:00+00'
   AND EXISTS (SELECT FROM llm_cost.model_prices o
                WHERE o.origin = 'llm_cost' AND o.id > 900000 AND o.provider = n.provider AND lower(o.model) = lower(n.model));
ALTER TABLE llm_cost.model_prices ENABLE TRIGGER model_prices_protect_shipped, ENABLE TRIGGER model_prices_no_overlap;
ALTER TABLE llm_cost.providers ENABLE TRIGGER providers_protect_shipped;

-- The extension's own log table: its trigger gets the arguments of 0.8.0 (none of the new columns
-- mapped), as a fresh install has it.
SELECT llm_cost.track('llm_cost.usage_events',
                      cache_read_tokens_column  => 'cache_read_tokens',
                      cache_write_tokens_column => 'cache_write_tokens',
                      time_column               => 'occurred_at',
                      provider_column           => 'provider',
                      service_tier_column       => 'service_tier',
                      cache_write_1h_tokens_column => 'cache_write_1h_tokens',
                      priced_model_column       => 'priced_model',
                      usage_column              => 'usage');
