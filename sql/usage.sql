-- Usage logs: the extension's own log table, tracking of application tables, unpriced models.

-------------------------------------------------------------------------------------------------
-- Tracked tables
-------------------------------------------------------------------------------------------------
CREATE TABLE llm_cost.tracked_tables (
    log_table                 regclass    PRIMARY KEY,
    model_column              text        NOT NULL,
    input_tokens_column       text,
    output_tokens_column      text,
    cache_read_tokens_column  text,
    cache_write_tokens_column text,
    cost_column               text        NOT NULL,
    cost_source_column        text,
    cost_default              numeric,
    time_column               text,
    provider_column           text,
    tracked_at                timestamptz NOT NULL DEFAULT now(),
    tracked_by                name        NOT NULL DEFAULT current_user,
    time_zone                 text        NOT NULL DEFAULT 'UTC',
    service_tier_column       text,
    cache_write_1h_tokens_column text,
    usage_column              text,
    priced_model_column       text,
    input_audio_tokens_column text,
    cache_read_audio_tokens_column text,
    output_audio_tokens_column text,
    input_image_tokens_column text,
    cache_read_image_tokens_column text,
    output_image_tokens_column text,
    web_searches_column text,
    cost_unit                 text CHECK (cost_unit IN ('cents', 'usd_micros', 'microcents')),
    priced_provider_column    text
);
COMMENT ON TABLE llm_cost.tracked_tables IS 'Usage-log tables whose rows llm_cost prices, and how their columns map onto a call. Written by llm_cost.track() / llm_cost.untrack().';
COMMENT ON COLUMN llm_cost.tracked_tables.log_table IS 'The tracked table.';
COMMENT ON COLUMN llm_cost.tracked_tables.model_column IS 'Column with the model name as the application sent it.';
COMMENT ON COLUMN llm_cost.tracked_tables.input_tokens_column IS 'Column with uncached input tokens (NULL: the table keeps only the usage object).';
COMMENT ON COLUMN llm_cost.tracked_tables.output_tokens_column IS 'Column with output tokens (NULL: the table keeps only the usage object).';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_unit IS 'Unit of an integer cost column: cents, usd_micros or microcents (the trigger rounds half up to a whole unit); NULL: a numeric column in USD.';
COMMENT ON COLUMN llm_cost.tracked_tables.priced_provider_column IS 'text column the trigger fills with the provider the row was priced at, as the providers table names it (Anthropic, claude: anthropic), or NULL: rollups group by it where they group by the provider column.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_read_tokens_column IS 'Column with cache-read tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_write_tokens_column IS 'Column with cache-write tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_column IS 'Column the trigger fills with the cost: numeric in USD, or an integer in cost_unit.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_write_1h_tokens_column IS 'Column with tokens written to the 1-hour prompt cache, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.usage_column IS 'jsonb or json column with the provider''s usage object, or NULL: when a row has one, the counts (and a cost the provider reported) come from it.';
COMMENT ON COLUMN llm_cost.tracked_tables.input_audio_tokens_column IS 'Column with the audio tokens among the uncached input tokens (billed at the model''s audio input price), or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_read_audio_tokens_column IS 'Column with the audio tokens among the cache-read tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.output_audio_tokens_column IS 'Column with the audio tokens among the output tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.input_image_tokens_column IS 'Column with the image tokens among the uncached input tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cache_read_image_tokens_column IS 'Column with the image tokens among the cache-read tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.output_image_tokens_column IS 'Column with the image tokens among the output tokens, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.web_searches_column IS 'Column with the number of web searches the call made (billed at the model''s search fee), or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.priced_model_column IS 'text column the trigger fills with the catalog model the row was priced as (the name as sent when none matches), or NULL: rollups group by it where they group by the model column.';
COMMENT ON COLUMN llm_cost.tracked_tables.service_tier_column IS 'Column with the call''s service tier (standard, batch, flex, priority, fast; NULL is standard), or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_source_column IS 'Column that says how each cost came to be: estimated, provided or unpriced (cost_source by default; track() adds one to a table whose cost column is NOT NULL or integer).';
COMMENT ON COLUMN llm_cost.tracked_tables.cost_default IS 'The cost column''s default; without a cost_source column, a cost equal to it means "not provided".';
COMMENT ON COLUMN llm_cost.tracked_tables.time_column IS 'Event-time column that picks the price; NULL: the transaction''s start time.';
COMMENT ON COLUMN llm_cost.tracked_tables.provider_column IS 'Provider column filled from the model when empty, or NULL.';
COMMENT ON COLUMN llm_cost.tracked_tables.tracked_at IS 'When track() was called.';
COMMENT ON COLUMN llm_cost.tracked_tables.tracked_by IS 'Who called track().';
COMMENT ON COLUMN llm_cost.tracked_tables.time_zone IS 'Zone in which a timestamp (without time zone) or date time column is read, whatever the writing session''s TimeZone (UTC unless track() was told another).';

-- The tracked time column of p_table as timestamptz, as SQL over the alias p_alias: a timestamp
-- (without time zone) or date column is read in the table's time_zone, never in the session's
-- TimeZone (the cost trigger and the rollups in src/ read it the same way).
CREATE FUNCTION llm_cost._event_time_sql(p_table regclass, p_alias text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    typ oid;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_table;
    IF t.time_column IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT atttypid INTO typ FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = t.time_column AND NOT attisdropped;
    IF typ = 'timestamptz'::regtype THEN
        RETURN format('%s.%I', p_alias, t.time_column);
    END IF;
    RETURN format('(%s.%I::timestamp AT TIME ZONE %L)', p_alias, t.time_column, t.time_zone);
END $$;

-- A timestamptz as a literal of p_table's time column type, to compare the column itself with
-- (its indexes stay usable): for timestamp and date columns, the local time in the table's zone.
CREATE FUNCTION llm_cost._event_time_literal(p_table regclass, p_at timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    typ oid;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_table;
    SELECT atttypid INTO typ FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = t.time_column AND NOT attisdropped;
    IF typ IS NULL OR typ = 'timestamptz'::regtype THEN
        RETURN format('%L::timestamptz', p_at);
    END IF;
    RETURN format('%L::timestamp', p_at AT TIME ZONE t.time_zone);
END $$;

-- Everybody may read the mapping; only track() and untrack() write it (src/features/registry.rs), for
-- tables their caller owns.
GRANT SELECT ON llm_cost.tracked_tables TO PUBLIC;

-------------------------------------------------------------------------------------------------
-- Unpriced models
-------------------------------------------------------------------------------------------------
-- Whether the current role may see what llm_cost records about a table's rows (unknown models,
-- retention runs): its owners, llm_cost_admin, superusers and BYPASSRLS roles, and roles that
-- may read every row of it (SELECT on a table without row-level security).
CREATE FUNCTION llm_cost._may_see_table(p_table oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
                            OR (pg_catalog.has_table_privilege(current_user, c.oid, 'SELECT') AND NOT c.relrowsecurity)
                       FROM pg_catalog.pg_class c WHERE c.oid = p_table), false)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE (r.rolname IN ('llm_cost_admin', 'llm_cost_auditor') AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
                       OR (r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls)))
$$;

CREATE TABLE llm_cost.unpriced_stats (
    log_table  regclass    NOT NULL,
    model      text        NOT NULL,
    rows       bigint      NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    stripe     integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (log_table, model, stripe)
);
COMMENT ON TABLE llm_cost.unpriced_stats IS 'Rows stored without a price, per table and model name; read it through llm_cost.unpriced_models.';
COMMENT ON COLUMN llm_cost.unpriced_stats.stripe IS '0, or on a Citus worker the writing backend''s rollup stripe: writers of several workers never wait for each other''s line (a distributed deadlock).';
-- Model and table names and counts describe rows: a role sees the lines of the tables whose
-- rows it may all read (llm_cost._may_see_table).
ALTER TABLE llm_cost.unpriced_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY unpriced_stats_read ON llm_cost.unpriced_stats FOR SELECT USING (llm_cost._may_see_table(log_table));
GRANT SELECT ON llm_cost.unpriced_stats TO PUBLIC;

-- Called by the statement trigger with one row per (table, model) of a statement, as the
-- extension's owner (src/features/pricing/usage.rs; writers of a tracked table need not own it, and nobody else
-- may call it). Only tracked tables count.
CREATE FUNCTION llm_cost._record_unpriced(p_table oid, p_model text, p_rows bigint, p_first timestamptz, p_last timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO llm_cost.unpriced_stats AS s (log_table, model, rows, first_seen, last_seen, stripe)
    SELECT x.t, p_model, p_rows, p_first, p_last, x.stripe
      FROM (SELECT CASE WHEN tracked THEN p_table::regclass
                        -- A shard of a Citus distributed table (on a worker, whose registry is
                        -- empty): counted under the distributed table, which
                        -- llm_cost.unpriced_models on the coordinator gathers (only looked up
                        -- for a table the registry does not know).
                        ELSE (SELECT sh.logical FROM llm_cost._citus_shard_logical(p_table) sh) END AS t,
                   -- On a worker each writing backend has a line of its own: one distributed
                   -- transaction holds the lines it wrote on several workers until its commit,
                   -- so a shared line would make writers wait for each other across workers, in
                   -- any order.
                   CASE WHEN tracked THEN 0 ELSE llm_cost._stripe() END AS stripe
              FROM (SELECT EXISTS (SELECT 1 FROM llm_cost.tracked_tables t WHERE t.log_table = p_table) AS tracked) k) x
     WHERE x.t IS NOT NULL AND p_rows <> 0
    ON CONFLICT (log_table, model, stripe) DO UPDATE
       SET rows = s.rows + excluded.rows,
           first_seen = least(s.first_seen, excluded.first_seen),
           last_seen = greatest(s.last_seen, excluded.last_seen);
$$;
REVOKE ALL ON FUNCTION llm_cost._record_unpriced(oid, text, bigint, timestamptz, timestamptz) FROM PUBLIC;

-- The unpriced counts of this node and, on a Citus coordinator, those the workers recorded for
-- the shards of distributed tables (asked with the reader's rights: each node's row security).
CREATE FUNCTION llm_cost._unpriced_stats_all()
RETURNS TABLE (log_table regclass, model text, rows bigint, first_seen timestamptz, last_seen timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w record;
    remote jsonb := '[]';
BEGIN
    IF llm_cost._citus_coordinator() THEN
        FOR w IN SELECT * FROM pg_catalog.run_command_on_workers(
                   $c$SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object('t', pg_catalog.format('%I.%I', n.nspname, c.relname),
                        'm', s.model, 'n', s.rows, 'f', s.first_seen, 'l', s.last_seen)), '[]')
                        FROM llm_cost.unpriced_stats s JOIN pg_catalog.pg_class c ON c.oid = s.log_table
                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace$c$) LOOP
            IF w.success THEN
                remote := remote || w.result::jsonb;
            ELSE
                RAISE WARNING 'llm_cost.unpriced_models: worker %:% did not answer: %', w.nodename, w.nodeport, w.result;
            END IF;
        END LOOP;
    END IF;
    RETURN QUERY
    SELECT x.log_table, x.model, sum(x.rows)::bigint, min(x.first_seen), max(x.last_seen)
      FROM (SELECT s.log_table, s.model, s.rows, s.first_seen, s.last_seen FROM llm_cost.unpriced_stats s
            UNION ALL
            SELECT pg_catalog.to_regclass(e ->> 't'), e ->> 'm', (e ->> 'n')::bigint, (e ->> 'f')::timestamptz, (e ->> 'l')::timestamptz
              FROM pg_catalog.jsonb_array_elements(remote) e) x
     WHERE x.log_table IS NOT NULL
     GROUP BY x.log_table, x.model
    HAVING sum(x.rows) > 0;
END $$;

CREATE VIEW llm_cost.unpriced_models AS
SELECT s.model,
       s.log_table,
       s.rows,
       s.first_seen,
       s.last_seen,
       llm_cost.resolve_model(s.model) AS resolves_to_now,
       llm_cost.provider_of(s.model)   AS provider_guess
  FROM llm_cost._unpriced_stats_all() s
 ORDER BY s.rows DESC, s.model;
COMMENT ON VIEW llm_cost.unpriced_models IS 'Every model name with rows stored without a price: how many rows, first and last event time. resolves_to_now is set once a price or alias exists; then run llm_cost.reprice(): the rows it prices leave this list. Lists the tables whose rows the reader may all read (their owners, llm_cost_admin, tables readable without row-level security).';
ALTER VIEW llm_cost.unpriced_models SET (security_invoker = true);
GRANT SELECT ON llm_cost.unpriced_models TO PUBLIC;

-------------------------------------------------------------------------------------------------
-- track() / untrack()
-------------------------------------------------------------------------------------------------
-- Decimal places of a US dollar in one unit of an integer cost column; 22023 for an unknown unit.
CREATE FUNCTION llm_cost._cost_unit_scale(p_unit text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE lower(trim(p_unit))
        WHEN 'usd' THEN RETURN 0;
        WHEN 'cents' THEN RETURN 2;
        WHEN 'usd_micros' THEN RETURN 6;
        WHEN 'microcents' THEN RETURN 8;
        ELSE RAISE EXCEPTION 'unknown cost unit "%"', p_unit USING ERRCODE = 'invalid_parameter_value',
                   HINT = 'Cost units are usd (numeric columns), cents, usd_micros (millionths of a dollar) and microcents (millionths of a cent).';
    END CASE;
END $$;

CREATE FUNCTION llm_cost._column(p_table regclass, p_column text, p_role text,
                                 p_types regtype[], p_writable boolean)
RETURNS pg_catalog.pg_attribute
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a pg_catalog.pg_attribute;
BEGIN
    SELECT * INTO a FROM pg_catalog.pg_attribute
     WHERE attrelid = p_table AND attname = p_column AND attnum > 0 AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" (the % column) does not exist in table %', p_column, p_role, p_table
              USING ERRCODE = 'undefined_column',
                    HINT = format('Name the %s column with the %s argument of llm_cost.track().', p_role,
                                  replace(p_role, ' ', '_') || '_column');
    END IF;
    IF NOT a.atttypid = ANY (p_types::oid[]) THEN
        RAISE EXCEPTION 'column "%" of table % has type %, but the % column must be one of %',
              p_column, p_table, format_type(a.atttypid, a.atttypmod), p_role, array_to_string(p_types, ', ')
              USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF a.attgenerated <> '' THEN
        RAISE EXCEPTION 'column "%" of table % is a generated column and cannot be the % column', p_column, p_table, p_role
              USING ERRCODE = 'invalid_column_definition',
                    HINT = 'Generated columns are computed after BEFORE triggers run; map the columns they are computed from.';
    END IF;
    RETURN a;
END $$;

CREATE FUNCTION llm_cost.track(
    log_table                 regclass,
    model_column              text    DEFAULT 'model',
    input_tokens_column       text    DEFAULT 'input_tokens',
    output_tokens_column      text    DEFAULT 'output_tokens',
    cache_read_tokens_column  text    DEFAULT NULL,
    cache_write_tokens_column text    DEFAULT NULL,
    cost_column               text    DEFAULT 'cost_usd',
    time_column               text    DEFAULT 'created_at',
    provider_column           text    DEFAULT NULL,
    add_cost_column           boolean DEFAULT false,
    time_zone                 text    DEFAULT 'UTC',
    service_tier_column       text    DEFAULT NULL,
    cache_write_1h_tokens_column text DEFAULT NULL,
    usage_column              text    DEFAULT NULL,
    priced_model_column       text    DEFAULT NULL,
    input_audio_tokens_column text DEFAULT NULL,
    cache_read_audio_tokens_column text DEFAULT NULL,
    output_audio_tokens_column text DEFAULT NULL,
    input_image_tokens_column text DEFAULT NULL,
    cache_read_image_tokens_column text DEFAULT NULL,
    output_image_tokens_column text DEFAULT NULL,
    web_searches_column text DEFAULT NULL,
    cost_source_column        text    DEFAULT NULL,
    cost_unit                 text    DEFAULT NULL,
    priced_provider_column    text    DEFAULT NULL,
    backfill                  boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel            pg_catalog.pg_class;
    ints           regtype[] := ARRAY['smallint', 'integer', 'bigint']::regtype[];
    texts          regtype[] := ARRAY['text', 'character varying', 'character']::regtype[];
    cost_att       pg_catalog.pg_attribute;
    source_col     text;
    default_expr   text;
    default_value  numeric;
    prec           int;
    scale          int;
    unit_scale     int;
    update_cols    text[];
    was_tracked    boolean;
    added          text[] := '{}';
    history        boolean := false;
    filled         jsonb;
    msg            text;
    unmapped       text[];
BEGIN
    IF log_table IS NULL THEN
        RAISE EXCEPTION 'llm_cost.track: log_table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid = log_table;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', log_table USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to track it', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Citus: a distributed table is priced on the workers, which need the catalog.
    PERFORM llm_cost._citus_require_catalog(log_table, 'track');
    IF model_column IS NULL OR cost_column IS NULL THEN
        RAISE EXCEPTION 'llm_cost.track: model_column and cost_column are required'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- A table that keeps the provider's usage object may have no token columns: the default
    -- names are then left unmapped (a name given otherwise must exist).
    IF usage_column IS NOT NULL THEN
        IF input_tokens_column = 'input_tokens' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                WHERE attrelid = log_table AND attname = 'input_tokens' AND NOT attisdropped) THEN
            input_tokens_column := NULL;
        END IF;
        IF output_tokens_column = 'output_tokens' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                WHERE attrelid = log_table AND attname = 'output_tokens' AND NOT attisdropped) THEN
            output_tokens_column := NULL;
        END IF;
    ELSIF input_tokens_column IS NULL OR output_tokens_column IS NULL THEN
        RAISE EXCEPTION 'llm_cost.track: input_tokens_column and output_tokens_column are required unless usage_column names the provider''s usage object'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    time_zone := coalesce(time_zone, 'UTC');
    PERFORM now() AT TIME ZONE time_zone;  -- rejects an unknown time zone (22023)
    was_tracked := EXISTS (SELECT 1 FROM llm_cost.tracked_tables t WHERE t.log_table = track.log_table);

    PERFORM llm_cost._column(log_table, model_column, 'model', texts, false);
    IF input_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, input_tokens_column, 'input tokens', ints, false);
    END IF;
    IF output_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, output_tokens_column, 'output tokens', ints, false);
    END IF;
    IF cache_read_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, cache_read_tokens_column, 'cache read tokens', ints, false);
    END IF;
    IF cache_write_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, cache_write_tokens_column, 'cache write tokens', ints, false);
    END IF;
    IF time_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, time_column, 'time', ARRAY['timestamptz', 'timestamp', 'date']::regtype[], false);
    END IF;
    IF provider_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, provider_column, 'provider', texts, true);
    END IF;
    IF service_tier_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, service_tier_column, 'service tier', texts, false);
    END IF;
    IF cache_write_1h_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, cache_write_1h_tokens_column, 'cache write (1 hour) tokens', ints, false);
    END IF;
    IF usage_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, usage_column, 'usage', ARRAY['jsonb', 'json']::regtype[], false);
    END IF;
    IF input_audio_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, input_audio_tokens_column, 'input audio tokens', ints, false);
    END IF;
    IF cache_read_audio_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, cache_read_audio_tokens_column, 'cache read audio tokens', ints, false);
    END IF;
    IF output_audio_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, output_audio_tokens_column, 'output audio tokens', ints, false);
    END IF;
    IF input_image_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, input_image_tokens_column, 'input image tokens', ints, false);
    END IF;
    IF cache_read_image_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, cache_read_image_tokens_column, 'cache read image tokens', ints, false);
    END IF;
    IF output_image_tokens_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, output_image_tokens_column, 'output image tokens', ints, false);
    END IF;
    IF web_searches_column IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, web_searches_column, 'web searches', ints, false);
    END IF;
    IF priced_model_column IS NOT NULL THEN
        IF priced_model_column = model_column THEN
            RAISE EXCEPTION 'llm_cost.track: priced_model_column must not be the model column: the name as sent stays in the row'
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM llm_cost._column(log_table, priced_model_column, 'priced model', ARRAY['text']::regtype[], true);
    END IF;
    IF priced_provider_column IS NOT NULL THEN
        IF priced_provider_column = provider_column THEN
            RAISE EXCEPTION 'llm_cost.track: priced_provider_column must not be the provider column: the value as sent stays in the row'
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM llm_cost._column(log_table, priced_provider_column, 'priced provider', ARRAY['text']::regtype[], true);
    END IF;

    IF add_cost_column AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                                        WHERE attrelid = log_table AND attname = cost_column AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I numeric CHECK (%I >= 0)', log_table, cost_column, cost_column);
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', log_table, cost_column, 'Cost of the call in USD, filled by llm_cost.');
        added := added || cost_column;
        cost_unit := coalesce(cost_unit, 'usd');
    END IF;
    -- The cost column: numeric in USD, or an integer type in a stated unit.
    cost_att := llm_cost._column(log_table, cost_column, 'cost', ARRAY['numeric', 'smallint', 'integer', 'bigint']::regtype[], true);
    IF cost_att.atttypid = 'numeric'::regtype THEN
        IF cost_unit IS NOT NULL AND llm_cost._cost_unit_scale(cost_unit) <> 0 THEN
            RAISE EXCEPTION 'cost column "%" of table % is numeric: llm_cost writes numeric costs in USD', cost_column, log_table
                  USING ERRCODE = 'invalid_parameter_value',
                        HINT = 'Leave cost_unit out for a numeric column; cost_unit is for integer columns (microcents, cents, usd_micros).';
        END IF;
        cost_unit := NULL;
        IF cost_att.atttypmod >= 4 THEN
            prec := ((cost_att.atttypmod - 4) >> 16) & 65535;
            scale := (cost_att.atttypmod - 4) & 65535;
            IF scale < 6 OR prec - scale < 3 THEN
                RAISE EXCEPTION 'cost column "%" of table % is %, which cannot hold LLM call costs', cost_column, log_table,
                      format_type(cost_att.atttypid, cost_att.atttypmod)
                      USING ERRCODE = 'datatype_mismatch',
                            DETAIL = 'A cost column needs at least 6 decimal places (calls cost fractions of a cent) and 3 integer digits.',
                            HINT = format('ALTER TABLE %s ALTER COLUMN %I TYPE numeric', log_table, cost_column);
            END IF;
        END IF;
    ELSE
        IF cost_unit IS NULL THEN
            RAISE EXCEPTION 'cost column "%" of table % is %: say which unit it counts', cost_column, log_table,
                  format_type(cost_att.atttypid, cost_att.atttypmod)
                  USING ERRCODE = 'invalid_parameter_value',
                        HINT = 'Pass cost_unit => ''microcents'' (millionths of a cent), ''usd_micros'' (millionths of a dollar) or ''cents''.';
        END IF;
        unit_scale := llm_cost._cost_unit_scale(cost_unit);
        IF unit_scale = 0 THEN
            RAISE EXCEPTION 'an integer cost column cannot count whole dollars' USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass cost_unit => ''microcents'', ''usd_micros'' or ''cents''.';
        END IF;
        cost_unit := lower(cost_unit);
    END IF;

    -- The column that says how each cost came to be (estimated, provided, unpriced).
    IF cost_source_column IS NULL THEN
        SELECT attname INTO source_col FROM pg_catalog.pg_attribute
         WHERE attrelid = log_table AND attname = 'cost_source' AND NOT attisdropped
           AND atttypid IN ('text'::regtype, 'varchar'::regtype) AND attgenerated = '';
    ELSE
        source_col := cost_source_column;
    END IF;
    IF source_col IS NULL AND (cost_att.attnotnull OR cost_unit IS NOT NULL OR cost_column = ANY (added)) THEN
        -- A NOT NULL (or integer) cost column cannot say "unpriced" by itself: a cost_source
        -- column does (an unpriced row keeps the column default, marked unpriced).
        source_col := 'cost_source';
    END IF;
    IF source_col IS NULL AND NOT was_tracked THEN
        -- Rows logged before tracking need one too: it tells the rows backfill has priced (and
        -- counted in unpriced_models) from those it has not.
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s s WHERE s.%I IS NULL)', log_table, cost_column) INTO history;
        IF history THEN
            source_col := 'cost_source';
        END IF;
        history := false;
    END IF;
    IF source_col IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                                               WHERE attrelid = log_table AND attname = source_col AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I text CHECK (%I IN (''estimated'', ''provided'', ''unpriced''))',
                       log_table, source_col, source_col);
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', log_table, source_col,
                       'estimated (from the llm_cost catalog), provided (by the application) or unpriced (no price for the model); filled by llm_cost.');
        added := added || source_col;
    END IF;
    IF source_col IS NOT NULL THEN
        PERFORM llm_cost._column(log_table, source_col, 'cost source', ARRAY['text', 'character varying']::regtype[], true);
    END IF;

    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO default_expr
      FROM pg_catalog.pg_attrdef d WHERE d.adrelid = log_table AND d.adnum = cost_att.attnum;
    IF default_expr IS NOT NULL THEN
        EXECUTE format('SELECT (%s)::numeric', default_expr) INTO default_value;
    END IF;

    -- Rollups that group by the provider column read the priced provider column once it is
    -- mapped: every row must then have one, or old rows would be subtracted from groups they
    -- were never added to.
    IF priced_provider_column IS NOT NULL AND provider_column IS NOT NULL AND pg_catalog.to_regclass('llm_cost.rollups') IS NOT NULL
       AND priced_provider_column IS DISTINCT FROM (SELECT t.priced_provider_column FROM llm_cost.tracked_tables t
                                                     WHERE t.log_table = track.log_table) THEN
        IF EXISTS (SELECT 1 FROM llm_cost.rollups r WHERE r.source = log_table AND provider_column = ANY (r.group_by)) THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s s WHERE s.%I IS NULL AND s.%I IS NOT NULL)', log_table,
                           priced_provider_column, provider_column) INTO history;
            IF history THEN
                RAISE EXCEPTION 'rollups of % group by %, and rows logged before have no % yet', log_table, provider_column, priced_provider_column
                      USING ERRCODE = 'object_not_in_prerequisite_state',
                            HINT = format('Fill it with the value the rollups summed them under first (UPDATE %s SET %I = %I WHERE %I IS NULL), or drop those rollups, track(), and create them again.',
                                          log_table, priced_provider_column, provider_column, priced_provider_column);
            END IF;
            history := false;
        END IF;
    END IF;

    -- Rows already in the table (logged before tracking): priced now (backfill => true), else
    -- the caller is told how to price them.
    IF NOT was_tracked THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s s WHERE %s)', log_table,
                       CASE WHEN source_col IS NOT NULL THEN format('s.%I IS NULL', source_col)
                            ELSE format('s.%I IS NULL', cost_column) END) INTO history;
    END IF;

    -- (Re)create the triggers.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = log_table AND tgname = 'llm_cost_price') THEN
        EXECUTE format('DROP TRIGGER llm_cost_price ON %s', log_table);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = log_table AND tgname = 'llm_cost_unpriced') THEN
        EXECUTE format('DROP TRIGGER llm_cost_unpriced ON %s', log_table);
    END IF;
    update_cols := array_remove(ARRAY[model_column, input_tokens_column, output_tokens_column, cache_read_tokens_column,
                                      cache_write_tokens_column, cost_column, time_column, cache_write_1h_tokens_column,
                                      usage_column, input_audio_tokens_column, cache_read_audio_tokens_column,
                                      output_audio_tokens_column, input_image_tokens_column, cache_read_image_tokens_column,
                                      output_image_tokens_column, web_searches_column], NULL);
    EXECUTE format('CREATE TRIGGER llm_cost_price BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION llm_cost.usage_cost_trigger(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(update_cols) c), log_table,
                   model_column, coalesce(input_tokens_column, ''), coalesce(output_tokens_column, ''),
                   coalesce(cache_read_tokens_column, ''), coalesce(cache_write_tokens_column, ''),
                   cost_column, coalesce(time_column, ''), coalesce(provider_column, ''),
                   coalesce(source_col, ''), coalesce(default_value::text, ''), time_zone,
                   coalesce(service_tier_column, ''), coalesce(cache_write_1h_tokens_column, ''), coalesce(usage_column, ''),
                   coalesce(priced_model_column, ''), coalesce(input_audio_tokens_column, ''),
                   coalesce(cache_read_audio_tokens_column, ''), coalesce(output_audio_tokens_column, ''),
                   coalesce(input_image_tokens_column, ''), coalesce(cache_read_image_tokens_column, ''),
                   coalesce(output_image_tokens_column, ''), coalesce(web_searches_column, ''),
                   coalesce(unit_scale::text, ''), coalesce(priced_provider_column, ''));
    EXECUTE format('CREATE TRIGGER llm_cost_unpriced AFTER INSERT OR UPDATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION llm_cost.usage_statement_end()', log_table);

    PERFORM llm_cost._registry_put('tracked_tables',
        pg_catalog.jsonb_build_object('log_table', log_table::oid, 'model_column', model_column,
            'input_tokens_column', input_tokens_column, 'output_tokens_column', output_tokens_column,
            'cache_read_tokens_column', cache_read_tokens_column, 'cache_write_tokens_column', cache_write_tokens_column,
            'cost_column', cost_column, 'cost_source_column', source_col, 'cost_default', default_value,
            'time_column', time_column, 'provider_column', provider_column, 'tracked_at', now(), 'time_zone', time_zone,
            'service_tier_column', service_tier_column, 'cache_write_1h_tokens_column', cache_write_1h_tokens_column,
            'usage_column', usage_column, 'priced_model_column', priced_model_column)
        || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'input_audio_tokens_column', input_audio_tokens_column, 'cache_read_audio_tokens_column', cache_read_audio_tokens_column,
            'output_audio_tokens_column', output_audio_tokens_column, 'input_image_tokens_column', input_image_tokens_column,
            'cache_read_image_tokens_column', cache_read_image_tokens_column, 'output_image_tokens_column', output_image_tokens_column,
            'web_searches_column', web_searches_column, 'cost_unit', cost_unit, 'priced_provider_column', priced_provider_column)));
    -- The rollup trigger of a Citus distributed table carries the column mapping.
    IF pg_catalog.to_regclass('llm_cost.rollups') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM llm_cost.rollups r WHERE r.source = log_table) THEN
            PERFORM llm_cost._rollup_refresh_triggers(log_table);
        END IF;
    END IF;

    -- Columns whose names say what they hold but which the mapping leaves out: their values do
    -- not change the price. Said, never guessed: whether input_tokens includes the cached tokens
    -- is the application's convention (Anthropic's excludes them, OpenAI's prompt_tokens include them).
    SELECT pg_catalog.array_agg(format('%I (%s => %L)', a.attname, c.arg, a.attname) ORDER BY c.ord, a.attnum)
      INTO unmapped
      FROM (VALUES (1, 'cache_read_tokens_column', cache_read_tokens_column IS NULL AND usage_column IS NULL,
                    ARRAY['cache_read_tokens', 'cache_read_input_tokens', 'cached_tokens', 'cached_input_tokens', 'cache_hit_tokens'], 'i'),
                   (2, 'cache_write_tokens_column', cache_write_tokens_column IS NULL AND usage_column IS NULL,
                    ARRAY['cache_write_tokens', 'cache_creation_input_tokens', 'cache_creation_tokens', 'cache_write_input_tokens'], 'i'),
                   (3, 'cache_write_1h_tokens_column', cache_write_1h_tokens_column IS NULL AND usage_column IS NULL,
                    ARRAY['cache_write_1h_tokens', 'cache_creation_1h_input_tokens'], 'i'),
                   (4, 'provider_column', provider_column IS NULL, ARRAY['provider', 'llm_provider', 'model_provider'], 't'),
                   (5, 'service_tier_column', service_tier_column IS NULL, ARRAY['service_tier'], 't'),
                   (6, 'web_searches_column', web_searches_column IS NULL, ARRAY['web_searches', 'web_search_requests'], 'i'),
                   (7, 'usage_column', usage_column IS NULL,
                    ARRAY['usage', 'usage_json', 'raw_usage'], 'j')) c(ord, arg, open, names, kind)
      JOIN pg_catalog.pg_attribute a
        ON a.attrelid = log_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY (c.names)
       AND a.atttypid = ANY (CASE c.kind WHEN 'i' THEN ints::oid[] WHEN 't' THEN texts::oid[]
                                         ELSE ARRAY['jsonb', 'json']::regtype[]::oid[] END)
     WHERE c.open
       -- (a column the mapping already uses for another role is not left out)
       AND NOT a.attname::text = ANY (pg_catalog.array_remove(ARRAY[model_column, input_tokens_column, output_tokens_column, cache_read_tokens_column,
                                            cache_write_tokens_column, cost_column, time_column, provider_column,
                                            service_tier_column, cache_write_1h_tokens_column, usage_column, priced_model_column,
                                            input_audio_tokens_column, cache_read_audio_tokens_column, output_audio_tokens_column,
                                            input_image_tokens_column, cache_read_image_tokens_column, output_image_tokens_column,
                                            web_searches_column, source_col, priced_provider_column]::text[], NULL));
    IF unmapped IS NOT NULL THEN
        RAISE NOTICE 'llm_cost.track: % has %: %', log_table,
              CASE WHEN cardinality(unmapped) > 1 THEN 'columns the mapping leaves out' ELSE 'a column the mapping leaves out' END,
              array_to_string(unmapped, ', ')
              USING DETAIL = CASE WHEN cardinality(unmapped) > 1 THEN 'Their values do not' ELSE 'Its values do not' END
                             || ' change the price of a row.',
                    HINT = CASE WHEN cardinality(unmapped) > 1 THEN 'To price by them, call llm_cost.track() again with the arguments shown.'
                                ELSE 'To price by it, call llm_cost.track() again with the argument shown.' END
                        || CASE WHEN array_to_string(unmapped, ' ') LIKE '%cache\_%\_column =>%'
                                THEN ' A cache column needs input tokens that exclude the cached ones (as Anthropic counts them; OpenAI''s prompt_tokens include them).'
                                ELSE '' END;
    END IF;

    msg := format('tracking %s: %s -> %s (%s)', log_table, model_column, cost_column,
                  coalesce(cost_unit, 'USD'));
    IF source_col IS NOT NULL THEN
        msg := msg || format(', %s says estimated/provided/unpriced', source_col);
    END IF;
    IF cardinality(added) > 0 THEN
        msg := msg || format('; added column%s %s', CASE WHEN cardinality(added) > 1 THEN 's' ELSE '' END,
                             array_to_string(added, ', '));
    END IF;
    IF backfill AND source_col IS NOT NULL THEN
        -- (also for a table tracked before: whatever it holds that llm_cost has not priced; a
        -- table without a cost_source column has none: track() adds one to a table with such rows)
        filled := llm_cost._backfill_all(log_table, 10000, false);
        msg := msg || format('; %s existing row%s priced (%s unpriced)', filled ->> 'rows',
                             CASE WHEN filled ->> 'rows' = '1' THEN '' ELSE 's' END, filled ->> 'unpriced');
    ELSIF history THEN
        RAISE NOTICE 'table % has rows logged before it was tracked: they are not priced yet', log_table
              USING HINT = format('Price them with CALL llm_cost.backfill(%L) (in batches, committing as it goes), or track(..., backfill => true) in this transaction.', log_table::text);
        msg := msg || '; existing rows not priced yet: CALL llm_cost.backfill(...)';
    END IF;
    IF unmapped IS NOT NULL THEN
        msg := msg || '; not mapped: ' || (SELECT string_agg(pg_catalog.split_part(u, ' (', 1), ', ') FROM unnest(unmapped) u);
    END IF;
    RETURN msg;
END $$;

COMMENT ON FUNCTION llm_cost.track(regclass, text, text, text, text, text, text, text, text, boolean, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, boolean) IS
'Prices every row inserted into (or updated in) an existing usage-log table: checks the column mapping now, then installs the llm_cost triggers; returns what it set up. Calling it again replaces the mapping. cost_column: numeric in USD, or an integer column in cost_unit (microcents, usd_micros, cents; rounded half up). cost_source_column: a text column that says estimated, provided or unpriced (default: cost_source if the table has one; added when the cost column is NOT NULL or integer). A timestamp (without time zone) or date time column is read in time_zone (UTC by default), whatever the writer''s TimeZone. A non-empty provider_column value names the host whose price applies (openrouter, bedrock, azure, ...); an empty one is filled with the resolved provider; priced_provider_column is filled with the provider as the providers table names it (Anthropic, claude: anthropic). service_tier_column: batch, flex, priority, fast or standard (NULL). usage_column: a jsonb or json column with the provider''s usage object: the counts come from it and are written into the mapped token columns (which are then optional); an error response costs $0, a row without usage in a table without token columns is unpriced. priced_model_column: a text column filled with the catalog model the row was priced as. Modality and web search columns: billed at the model''s modality prices and search fee. Columns named like a role of the mapping (cache_read_tokens, cache_creation_input_tokens, provider, service_tier, web_searches, usage, ...) that it leaves out are named in a NOTICE and after "not mapped:" in the sentence returned: their values do not change the price. backfill => true prices the rows already in the table in this transaction (else CALL llm_cost.backfill()).';

CREATE FUNCTION llm_cost.untrack(log_table regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner oid;
BEGIN
    SELECT relowner INTO owner FROM pg_catalog.pg_class WHERE oid = log_table;
    IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to untrack it', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Its rollups go with it (drop them first with llm_cost.drop_rollup to choose otherwise).
    PERFORM llm_cost.drop_rollup(r.rollup) FROM llm_cost.rollups r WHERE r.source = log_table;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = log_table AND tgname = 'llm_cost_price') THEN
        EXECUTE format('DROP TRIGGER llm_cost_price ON %s', log_table);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = log_table AND tgname = 'llm_cost_unpriced') THEN
        EXECUTE format('DROP TRIGGER llm_cost_unpriced ON %s', log_table);
    END IF;
    PERFORM llm_cost._registry_delete('tracked_tables', log_table::oid);
    RETURN true;
END $$;
COMMENT ON FUNCTION llm_cost.untrack(regclass) IS
'Stops pricing a table: drops the llm_cost triggers, its rollups and everything llm_cost recorded about it. Columns added by track(add_cost_column => true) stay, with their data.';

-- Removes what llm_cost keeps about a table (untrack through llm_cost._registry_delete, or the
-- table was dropped). Only the extension's owner may execute it.
CREATE FUNCTION llm_cost._forget_table(p_table oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM llm_cost.retention_policies WHERE log_table = p_table;
    DELETE FROM llm_cost.unpriced_stats WHERE log_table = p_table;
    DELETE FROM llm_cost.tracked_tables WHERE log_table = p_table;
END $$;
REVOKE ALL ON FUNCTION llm_cost._forget_table(oid) FROM PUBLIC;

-- A dropped table leaves nothing behind. Citus's functions that re-create a table under the same
-- name (alter_distributed_table, undistribute_table, alter_table_set_access_method) drop the old
-- one: for a table llm_cost tracks or rolls up, that is refused before anything changes (the
-- registry would lose the table, its rollups, budgets and retention policy).
CREATE FUNCTION llm_cost._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    obj record;
    citus_fn text;
    hit text;
BEGIN
    -- Nothing to do while the extension itself is being dropped.
    IF pg_catalog.to_regclass('llm_cost.rollups') IS NULL THEN
        RETURN;
    END IF;
    citus_fn := pg_catalog.substring(pg_catalog.lower(pg_catalog.current_query()),
                                     '\m(alter_distributed_table|undistribute_table|alter_table_set_access_method)\s*\(');
    IF citus_fn IS NOT NULL THEN
        SELECT pg_catalog.string_agg(DISTINCT pg_catalog.quote_ident(o.schema_name) || '.' || pg_catalog.quote_ident(o.object_name), ', ') INTO hit
          FROM pg_catalog.pg_event_trigger_dropped_objects() o
         WHERE o.object_type IN ('table', 'view') AND NOT o.is_temporary
           AND (EXISTS (SELECT 1 FROM llm_cost.tracked_tables t WHERE t.log_table = o.objid)
                OR EXISTS (SELECT 1 FROM llm_cost.rollups r WHERE r.rollup = o.objid OR r.stripes = o.objid));
        IF hit IS NOT NULL THEN
            RAISE EXCEPTION 'llm_cost: Citus''s % re-creates %, which llm_cost tracks or rolls up: llm_cost would lose the table, its rollups, budgets and retention policy', citus_fn, hit
                  USING ERRCODE = 'feature_not_supported',
                        HINT = 'Nothing was changed. To change it anyway: llm_cost.untrack() the table (its rollups go with it), run the Citus function, then track() it and create_rollup() again (rollups backfill from the rows); budgets and retention policies are set again after.';
        END IF;
    END IF;
    FOR obj IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects()
                WHERE object_type IN ('table', 'view') AND NOT is_temporary LOOP
        PERFORM llm_cost._rollups_on_drop(obj.objid, obj.schema_name, obj.object_name);
        PERFORM llm_cost._forget_table(obj.objid);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION llm_cost._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER llm_cost_sql_drop ON sql_drop EXECUTE FUNCTION llm_cost._on_sql_drop();

-------------------------------------------------------------------------------------------------
-- The extension's own log table
-------------------------------------------------------------------------------------------------
CREATE TABLE llm_cost.usage_events (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at        timestamptz NOT NULL DEFAULT now(),
    tenant_id          text,
    user_id            text,
    feature            text,
    provider           text,
    model              text        NOT NULL,
    input_tokens       bigint      NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      bigint      NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  bigint      NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens bigint      NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    total_tokens       bigint      GENERATED ALWAYS AS (input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) STORED,
    cost_usd           numeric     CHECK (cost_usd >= 0),
    cost_source        text        CHECK (cost_source IN ('estimated', 'provided', 'unpriced')),
    latency_ms         integer     CHECK (latency_ms >= 0),
    error              text,
    metadata           jsonb,
    service_tier       text,
    cache_write_1h_tokens bigint   NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
    usage              jsonb,
    priced_model       text,
    priced_provider    text
);
CREATE INDEX usage_events_occurred_at_idx ON llm_cost.usage_events (occurred_at);
CREATE INDEX usage_events_tenant_idx ON llm_cost.usage_events (tenant_id, occurred_at);
CREATE INDEX usage_events_user_idx ON llm_cost.usage_events (user_id, occurred_at);
-- Model names come from callers and have no length limit: the index keys their first 200
-- characters (a btree refuses a key over about 2.7 kB, which would refuse the row). Query it
-- with WHERE left(model, 200) = left('gpt-4o', 200) (AND model = 'gpt-4o' for long names).
CREATE INDEX usage_events_model_idx ON llm_cost.usage_events (pg_catalog.left(model, 200), occurred_at);
CREATE INDEX usage_events_unpriced_idx ON llm_cost.usage_events (occurred_at) WHERE cost_source = 'unpriced';

COMMENT ON TABLE llm_cost.usage_events IS 'One row per LLM call. INSERT or COPY rows with plain SQL; llm_cost fills cost_usd and cost_source from the price catalog at occurred_at, in the same transaction.';
COMMENT ON COLUMN llm_cost.usage_events.id IS 'Row id.';
COMMENT ON COLUMN llm_cost.usage_events.occurred_at IS 'When the call happened; picks the price valid then. Defaults to now().';
COMMENT ON COLUMN llm_cost.usage_events.tenant_id IS 'Customer, organisation or workspace the call is billed to.';
COMMENT ON COLUMN llm_cost.usage_events.user_id IS 'End user who caused the call.';
COMMENT ON COLUMN llm_cost.usage_events.feature IS 'Endpoint, task type or operation that made the call.';
COMMENT ON COLUMN llm_cost.usage_events.provider IS 'Provider or host the call went to (openai, openrouter, bedrock, azure, groq, ...): when set, the call is priced at that host''s price; filled from the model when left NULL or empty.';
COMMENT ON COLUMN llm_cost.usage_events.model IS 'Model name as the application sent it (any spelling llm_cost.resolve_model understands).';
COMMENT ON COLUMN llm_cost.usage_events.input_tokens IS 'Uncached input tokens (OpenAI: prompt_tokens - cached_tokens; Anthropic: input_tokens).';
COMMENT ON COLUMN llm_cost.usage_events.output_tokens IS 'Output tokens, reasoning tokens included.';
COMMENT ON COLUMN llm_cost.usage_events.cache_read_tokens IS 'Prompt tokens read from the cache (OpenAI: cached_tokens; Anthropic: cache_read_input_tokens).';
COMMENT ON COLUMN llm_cost.usage_events.cache_write_tokens IS 'Prompt tokens written to the cache (Anthropic: cache_creation_input_tokens).';
COMMENT ON COLUMN llm_cost.usage_events.total_tokens IS 'input + output + cache read + cache write (5-minute) tokens (generated; 1-hour cache writes are in cache_write_1h_tokens).';
COMMENT ON COLUMN llm_cost.usage_events.cost_usd IS 'Cost in USD, exact: estimated from the catalog, or as provided by the application; NULL when unpriced.';
COMMENT ON COLUMN llm_cost.usage_events.cost_source IS 'estimated (from the catalog), provided (given by the application) or unpriced (unknown model).';
COMMENT ON COLUMN llm_cost.usage_events.latency_ms IS 'Latency of the call in milliseconds.';
COMMENT ON COLUMN llm_cost.usage_events.error IS 'Error of a failed call; NULL when the call succeeded.';
COMMENT ON COLUMN llm_cost.usage_events.metadata IS 'Anything else, as JSON.';
COMMENT ON COLUMN llm_cost.usage_events.cache_write_1h_tokens IS 'Prompt tokens written to the 1-hour cache (Anthropic: cache_creation.ephemeral_1h_input_tokens), priced at the 1-hour price. Not in total_tokens.';
COMMENT ON COLUMN llm_cost.usage_events.usage IS 'The provider''s usage object as returned (OpenAI, Anthropic, Gemini, Bedrock, DeepSeek, OpenRouter, LiteLLM), if you have it: the token columns are then filled from it, and a cost it reports (OpenRouter) is kept as provided.';
COMMENT ON COLUMN llm_cost.usage_events.priced_model IS 'Filled by llm_cost: the catalog model the call was priced as (gpt-4o-mini for openai/gpt-4o-mini), or the name as sent when no model matches. Rollups and reports group by it; model keeps what the application sent.';
COMMENT ON COLUMN llm_cost.usage_events.priced_provider IS 'Filled by llm_cost: the provider the call was priced at, as the providers table names it (anthropic for Anthropic or claude); provider keeps what the application sent. Rollups grouping by provider group by it.';
COMMENT ON COLUMN llm_cost.usage_events.service_tier IS 'Service tier of the call: batch, flex, priority, fast; NULL (or standard, default, auto) for the standard price.';

SELECT pg_catalog.pg_extension_config_dump('llm_cost.usage_events', '');
SELECT pg_catalog.pg_extension_config_dump('llm_cost.usage_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm_cost.tracked_tables', 'WHERE log_table <> ''llm_cost.usage_events''::regclass');
SELECT pg_catalog.pg_extension_config_dump('llm_cost.unpriced_stats', '');

SELECT llm_cost.track('llm_cost.usage_events',
                      cache_read_tokens_column  => 'cache_read_tokens',
                      cache_write_tokens_column => 'cache_write_tokens',
                      time_column               => 'occurred_at',
                      provider_column           => 'provider',
                      service_tier_column       => 'service_tier',
                      cache_write_1h_tokens_column => 'cache_write_1h_tokens',
                      priced_model_column       => 'priced_model',
                      usage_column              => 'usage',
                      priced_provider_column    => 'priced_provider');
