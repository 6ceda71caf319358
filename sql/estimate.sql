-- llm_cost.estimate_cost with token counts: a version-1 C function written by hand
-- (src/features/pricing/sql.rs, estimate_cost_wrapper: the symbol pgrx gave it before, which every
-- earlier install and update script names), as it is called once per row of a report.
CREATE FUNCTION llm_cost.estimate_cost(
    model                   text,
    input_tokens            bigint,
    output_tokens           bigint,
    cache_read_tokens       bigint      DEFAULT 0,
    cache_write_tokens      bigint      DEFAULT 0,
    at                      timestamptz DEFAULT now(),
    provider                text        DEFAULT NULL,
    service_tier            text        DEFAULT NULL,
    cache_write_1h_tokens   bigint      DEFAULT 0,
    input_audio_tokens      bigint      DEFAULT 0,
    cache_read_audio_tokens bigint      DEFAULT 0,
    output_audio_tokens     bigint      DEFAULT 0,
    input_image_tokens      bigint      DEFAULT 0,
    cache_read_image_tokens bigint      DEFAULT 0,
    output_image_tokens     bigint      DEFAULT 0,
    web_searches            bigint      DEFAULT 0)
RETURNS numeric
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'estimate_cost_wrapper';
