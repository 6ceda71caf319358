-- Provider usage objects: the disjoint token counts llm_cost prices (crates/llm_cost_core/src/usage_json.rs).

CREATE TYPE llm_cost.usage_counts AS (
    input_tokens          bigint,
    output_tokens         bigint,
    cache_read_tokens     bigint,
    cache_write_5m_tokens bigint,
    cache_write_1h_tokens bigint,
    reasoning_tokens      bigint,
    audio_input_tokens    bigint,
    audio_output_tokens   bigint,
    provided_cost_usd     numeric,
    format                text,
    ignored_keys          text[],
    input_audio_tokens      bigint,
    cache_read_audio_tokens bigint,
    output_audio_tokens     bigint,
    input_image_tokens      bigint,
    cache_read_image_tokens bigint,
    output_image_tokens     bigint,
    web_searches            bigint
);
COMMENT ON TYPE llm_cost.usage_counts IS
'Token counts read from a provider usage object, disjoint: input (uncached), cache read, cache write 5-minute and 1-hour add up to the prompt; output includes reasoning. reasoning, audio_input (uncached and cached) and audio_output are for information. input_audio_tokens (of input), cache_read_audio_tokens (of cache read), output_audio_tokens (of output) and the image counts are priced at the model''s modality prices; web_searches at its search fee. provided_cost_usd: a cost the provider reported (OpenRouter''s cost). ignored_keys: keys llm_cost does not read.';

CREATE FUNCTION llm_cost.usage_tokens(usage jsonb, provider text DEFAULT NULL) RETURNS llm_cost.usage_counts
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT (pg_catalog.jsonb_populate_record(NULL::llm_cost.usage_counts, llm_cost._usage_tokens(usage, provider))).* $$;

COMMENT ON FUNCTION llm_cost.usage_tokens(jsonb, text) IS
'The token counts llm_cost prices, from the usage object of OpenAI Chat Completions or Responses, Anthropic Messages, Gemini usageMetadata, Bedrock Converse, Mistral, DeepSeek, OpenRouter, LiteLLM, xAI, Perplexity, Cohere (billed_units) or the OpenAI Realtime API (a whole response holding "usage" or "usageMetadata" also works). provider: the API it came from, needed only when the shape is ambiguous. A count that is negative, fractional or not a number is 22023 with its JSON path.';
