-- llm_cost.import_prices: load a price document (genai-prices data.json, LiteLLM's price map,
-- OpenRouter's /api/v1/models) into the catalog as origin 'import' rows, with history.

CREATE FUNCTION llm_cost.import_prices(
    doc        jsonb,
    format     text        DEFAULT 'auto',
    valid_from timestamptz DEFAULT now(),
    dry_run    boolean     DEFAULT false)
RETURNS TABLE (provider text, model text, status text, detail text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    parsed   jsonb;
    m        jsonb;
    fmt      text;
    src      text;
    cur      text[];
    want     text[];
    cur_from text;
    any_rows boolean;
    start_at timestamptz;
    hosts    jsonb;
    dups     bigint[];
    ord      bigint;
BEGIN
    IF doc IS NULL THEN
        RAISE EXCEPTION 'llm_cost.import_prices: doc must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF valid_from IS NULL OR NOT isfinite(valid_from) THEN
        RAISE EXCEPTION 'llm_cost.import_prices: valid_from must be a finite timestamp (got %)', coalesce(valid_from::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    parsed := llm_cost._price_document(doc, coalesce(format, 'auto'), to_char(valid_from AT TIME ZONE 'UTC', 'YYYY-MM-DD'));
    fmt := parsed ->> 'format';
    src := CASE fmt WHEN 'genai-prices' THEN 'genai-prices data.json (MIT), imported'
                    WHEN 'litellm' THEN 'LiteLLM model_prices_and_context_window.json (MIT), imported'
                    ELSE 'OpenRouter /api/v1/models, imported' END;

    -- New providers of a genai-prices document (existing ones are left as they are).
    IF NOT dry_run THEN
        INSERT INTO llm_cost.providers AS pr (provider, name, pricing_url, model_match, provider_match, fallback_providers, data_from, origin)
        SELECT lower(p ->> 'provider'), p ->> 'name', p ->> 'pricing_url',
               nullif(p -> 'model_match', 'null'), nullif(p -> 'provider_match', 'null'),
               ARRAY(SELECT jsonb_array_elements_text(p -> 'fallback_providers')), src, 'import'
          FROM jsonb_array_elements(parsed -> 'providers') p
        ON CONFLICT ON CONSTRAINT providers_pkey DO NOTHING;
    END IF;

    -- The catalog provider of each provider value, looked up once: every write below invalidates
    -- the cached catalog, and looking it up again per model would reload it per model.
    SELECT coalesce(jsonb_object_agg(v, coalesce(llm_cost.provider_id(v), lower(v))), '{}') INTO hosts
      FROM (SELECT DISTINCT x ->> 'provider' AS v FROM jsonb_array_elements(parsed -> 'models') x
             WHERE coalesce(x ->> 'provider', '') <> '') d;

    -- Two entries of the document for one catalog model (LiteLLM's `gpt-4o` and `openai/gpt-4o`,
    -- `bedrock/…` and `bedrock_converse/…`): the first one counts, so a second import changes nothing.
    SELECT array_agg(d.n) INTO dups
      FROM (SELECT e.n, row_number() OVER (PARTITION BY coalesce(hosts ->> (e.x ->> 'provider'), lower(e.x ->> 'provider')), lower(e.x ->> 'model')
                                           ORDER BY e.n) AS rn
              FROM jsonb_array_elements(parsed -> 'models') WITH ORDINALITY AS e(x, n)
             WHERE e.x ->> 'skip' IS NULL) d
     WHERE d.rn > 1;

    FOR m, ord IN SELECT e.x, e.n FROM jsonb_array_elements(parsed -> 'models') WITH ORDINALITY AS e(x, n) LOOP
        provider := coalesce(hosts ->> (m ->> 'provider'), lower(m ->> 'provider'));
        model := m ->> 'model';
        IF ord = ANY (dups) THEN
            status := 'skipped';
            detail := 'the document prices this model in an earlier entry';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF m ->> 'skip' IS NOT NULL THEN
            status := 'skipped';
            detail := m ->> 'skip';
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- The document's rows and the catalog's rows in effect at valid_from (imported ones if
        -- any, else shipped ones; your own rows are not compared: they keep winning), as text.
        SELECT array_agg(t ORDER BY t) INTO want
          FROM (SELECT concat_ws('|', r ->> 'service_tier', r ->> 'min_input_tokens',
                                 coalesce(trim_scale((r ->> 'input')::numeric)::text, '-'),
                                 coalesce(trim_scale((r ->> 'output')::numeric)::text, '-'),
                                 coalesce(trim_scale((r ->> 'cache_read')::numeric)::text, '-'),
                                 coalesce(trim_scale((r ->> 'cache_write_5m')::numeric)::text, '-'),
                                 coalesce(trim_scale((r ->> 'cache_write_1h')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'input_audio')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'cache_read_audio')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'output_audio')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'input_image')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'cache_read_image')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'output_image')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'web_search_per_1k')::numeric)::text, '-'),
                                 coalesce(trim_scale((r -> 'extra' ->> 'request_per_1k')::numeric)::text, '-'),
                                 coalesce(r ->> 'time_of_day_from', '-'), coalesce(r ->> 'time_of_day_to', '-')) AS t
                  FROM jsonb_array_elements(m -> 'rows') r) d;
        SELECT array_agg(t ORDER BY t), min(o) INTO cur, cur_from
          FROM (SELECT concat_ws('|', x.service_tier, x.min_input_tokens,
                                 coalesce(trim_scale(x.input_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.output_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.cache_read_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.cache_write_5m_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.cache_write_1h_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.input_audio_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.cache_read_audio_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.output_audio_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.input_image_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.cache_read_image_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.output_image_usd_per_mtok)::text, '-'),
                                 coalesce(trim_scale(x.web_search_usd_per_1k)::text, '-'),
                                 coalesce(trim_scale(x.request_usd_per_1k)::text, '-'),
                                 coalesce(x.time_of_day_from::text, '-'), coalesce(x.time_of_day_to::text, '-')) AS t,
                       x.origin AS o
                  FROM llm_cost.model_prices x
                 WHERE x.provider = import_prices.provider AND lower(x.model) = lower(import_prices.model)
                   AND x.valid_from <= import_prices.valid_from AND import_prices.valid_from < x.valid_to
                   AND x.origin = (SELECT CASE WHEN bool_or(y.origin = 'import') THEN 'import' ELSE 'llm_cost' END
                                     FROM llm_cost.model_prices y
                                    WHERE y.provider = import_prices.provider AND lower(y.model) = lower(import_prices.model)
                                      AND y.origin <> 'user'
                                      AND y.valid_from <= import_prices.valid_from AND import_prices.valid_from < y.valid_to)) d;
        IF cur IS NOT DISTINCT FROM want THEN
            status := 'unchanged';
            detail := format('same prices as the %s rows in effect', CASE cur_from WHEN 'import' THEN 'imported' ELSE 'shipped' END);
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT EXISTS (SELECT FROM llm_cost.model_prices y
                        WHERE y.provider = import_prices.provider AND lower(y.model) = lower(import_prices.model) AND y.origin <> 'user')
          INTO any_rows;
        IF cur IS NULL AND NOT any_rows THEN
            -- A model the catalog did not know: its price applies to earlier calls too.
            status := 'added';
            start_at := '-infinity';
            detail := concat_ws('; ', format('%s row(s)', jsonb_array_length(m -> 'rows')), m ->> 'note');
        ELSE
            status := 'changed';
            start_at := import_prices.valid_from;
            detail := concat_ws('; ', format('from %s: %s (was %s)', import_prices.valid_from,
                                              array_to_string(want, ', '), coalesce(array_to_string(cur, ', '), 'no price')),
                                m ->> 'note');
        END IF;
        IF NOT dry_run THEN
            -- History: imported rows still open at valid_from end there; later ones are replaced.
            DELETE FROM llm_cost.model_prices x
             WHERE x.origin = 'import' AND x.provider = import_prices.provider AND lower(x.model) = lower(import_prices.model)
               AND x.valid_from >= start_at;
            UPDATE llm_cost.model_prices x SET valid_to = start_at
             WHERE x.origin = 'import' AND x.provider = import_prices.provider AND lower(x.model) = lower(import_prices.model)
               AND x.valid_from < start_at AND x.valid_to > start_at;
            INSERT INTO llm_cost.model_prices (provider, model, mode, min_input_tokens, service_tier, input_usd_per_mtok,
                   output_usd_per_mtok, cache_read_usd_per_mtok, cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok,
                   valid_from, valid_to, match_rule, data_from, checked_on, note, origin,
                   input_audio_usd_per_mtok, cache_read_audio_usd_per_mtok, output_audio_usd_per_mtok, input_image_usd_per_mtok, cache_read_image_usd_per_mtok, output_image_usd_per_mtok, web_search_usd_per_1k, request_usd_per_1k,
                   time_of_day_from, time_of_day_to)
            SELECT import_prices.provider, import_prices.model, 'chat', (r ->> 'min_input_tokens')::bigint, r ->> 'service_tier',
                   (r ->> 'input')::numeric, (r ->> 'output')::numeric, (r ->> 'cache_read')::numeric,
                   (r ->> 'cache_write_5m')::numeric, (r ->> 'cache_write_1h')::numeric,
                   start_at, 'infinity', nullif(m -> 'match_rule', 'null'), src, current_date, m ->> 'note', 'import',
                   (r -> 'extra' ->> 'input_audio')::numeric, (r -> 'extra' ->> 'cache_read_audio')::numeric, (r -> 'extra' ->> 'output_audio')::numeric, (r -> 'extra' ->> 'input_image')::numeric, (r -> 'extra' ->> 'cache_read_image')::numeric, (r -> 'extra' ->> 'output_image')::numeric, (r -> 'extra' ->> 'web_search_per_1k')::numeric, (r -> 'extra' ->> 'request_per_1k')::numeric,
                   (r ->> 'time_of_day_from')::time, (r ->> 'time_of_day_to')::time
              FROM jsonb_array_elements(m -> 'rows') r;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

COMMENT ON FUNCTION llm_cost.import_prices(jsonb, text, timestamptz, boolean) IS
'Loads a price document into the catalog: genai-prices data.json, LiteLLM''s model_prices_and_context_window.json or OpenRouter''s /api/v1/models response (format auto detects which). Per-modality prices, web-search and request fees and (genai-prices) time-of-day prices come along. One row per model: added (a model the catalog did not know: priced from -infinity), changed (imported rows from valid_from; the rows before are kept as history and logged rows keep their cost until llm_cost.reprice), unchanged, or skipped with the reason. Imported rows have origin ''import'': they win over shipped rows, and your own rows (origin ''user'') win over them. Idempotent; dry_run reports without writing; a malformed document is refused whole (22023) with the JSON path of the problem.';

REVOKE ALL ON FUNCTION llm_cost.import_prices(jsonb, text, timestamptz, boolean) FROM PUBLIC;
