-- llm_cost 0.3.0 -> 0.4.0: budgets and alerts; the priced model; reports that never show
-- unpriced calls as $0.00. Leaves the database as a fresh 0.4.0 install (checked by
-- tests/integration/test_hardening.py), with its data.
\echo Use "ALTER EXTENSION llm_cost UPDATE TO '0.4.0'" to load this file. \quit


-- The library's new and changed functions.

-- llm_cost::features::budgets::_budgets_changed
CREATE FUNCTION llm_cost."_budgets_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_budgets_changed_wrapper';

-- llm_cost::features::budgets::_budget_write
CREATE FUNCTION llm_cost."_budget_write"(
	"op" TEXT, /* & str */
	"args" jsonb /* pgrx :: JsonB */
) RETURNS jsonb /* Option < pgrx :: JsonB > */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_budget_write_wrapper';

-- llm_cost::features::budgets::check_budget
CREATE FUNCTION llm_cost."check_budget"(
	"name" TEXT, /* Option < & str > */
	"group" jsonb DEFAULT '{}', /* Option < pgrx :: JsonB > */
	"estimated_cost" NUMERIC DEFAULT 0 /* Option < pgrx :: AnyNumeric > */
) RETURNS TABLE (
	"allowed" bool,  /* bool */
	"spent_usd" NUMERIC,  /* pgrx :: AnyNumeric */
	"limit_usd" NUMERIC,  /* Option < pgrx :: AnyNumeric > */
	"remaining_usd" NUMERIC,  /* Option < pgrx :: AnyNumeric > */
	"period_end" timestamp with time zone  /* pgrx :: datum :: TimestampWithTimeZone */
)
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_budget_wrapper';

-- llm_cost::features::budgets::_budget_sweep
CREATE FUNCTION llm_cost."_budget_sweep"() RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_budget_sweep_wrapper';

-- llm_cost::features::pricing_sql::priced_model
CREATE FUNCTION llm_cost."priced_model"(
	"model" TEXT, /* & str */
	"provider" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'priced_model_wrapper';

-- llm_cost::features::pricing_sql::format_cost
CREATE OR REPLACE FUNCTION llm_cost."format_cost"(
	"cost" NUMERIC /* Option < AnyNumeric > */
) RETURNS TEXT /* String */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'format_cost_wrapper';


-------------------------------------------------------------------------------------------------
-- The priced model: a column the cost trigger fills, that rollups group by where they group by
-- the model column.
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.tracked_tables ADD COLUMN priced_model_column text;
COMMENT ON COLUMN llm_cost.tracked_tables.priced_model_column IS 'text column the trigger fills with the catalog model the row was priced as (the name as sent when none matches), or NULL: rollups group by it where they group by the model column.';

ALTER TABLE llm_cost.usage_events ADD COLUMN priced_model text;
COMMENT ON COLUMN llm_cost.usage_events.priced_model IS 'Filled by llm_cost: the catalog model the call was priced as (gpt-4o-mini for openai/gpt-4o-mini), or the name as sent when no model matches. Rollups and reports group by it; model keeps what the application sent.';

DROP FUNCTION llm_cost.track(regclass, text, text, text, text, text, text, text, text, boolean, text, text, text, text);
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
    priced_model_column       text    DEFAULT NULL)
RETURNS llm_cost.tracked_tables
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
    update_cols    text[];
    result         llm_cost.tracked_tables;
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
    IF model_column IS NULL OR input_tokens_column IS NULL OR output_tokens_column IS NULL OR cost_column IS NULL THEN
        RAISE EXCEPTION 'llm_cost.track: model_column, input_tokens_column, output_tokens_column and cost_column are required'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    time_zone := coalesce(time_zone, 'UTC');
    PERFORM now() AT TIME ZONE time_zone;  -- rejects an unknown time zone (22023)

    PERFORM llm_cost._column(log_table, model_column, 'model', texts, false);
    PERFORM llm_cost._column(log_table, input_tokens_column, 'input tokens', ints, false);
    PERFORM llm_cost._column(log_table, output_tokens_column, 'output tokens', ints, false);
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
    IF priced_model_column IS NOT NULL THEN
        IF priced_model_column = model_column THEN
            RAISE EXCEPTION 'llm_cost.track: priced_model_column must not be the model column: the name as sent stays in the row'
                  USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM llm_cost._column(log_table, priced_model_column, 'priced model', ARRAY['text']::regtype[], true);
    END IF;

    IF add_cost_column AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                                        WHERE attrelid = log_table AND attname = cost_column AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I numeric CHECK (%I >= 0)', log_table, cost_column, cost_column);
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', log_table, cost_column, 'Cost of the call in USD, filled by llm_cost.');
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                        WHERE attrelid = log_table AND attname = 'cost_source' AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN cost_source text CHECK (cost_source IN (''estimated'', ''provided'', ''unpriced''))', log_table);
            EXECUTE format('COMMENT ON COLUMN %s.cost_source IS %L', log_table,
                           'estimated (from the llm_cost catalog), provided (by the application) or unpriced (unknown model).');
        END IF;
    END IF;
    cost_att := llm_cost._column(log_table, cost_column, 'cost', ARRAY['numeric']::regtype[], true);
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

    SELECT attname INTO source_col FROM pg_catalog.pg_attribute
     WHERE attrelid = log_table AND attname = 'cost_source' AND NOT attisdropped
       AND atttypid IN ('text'::regtype, 'varchar'::regtype) AND attgenerated = '';

    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO default_expr
      FROM pg_catalog.pg_attrdef d WHERE d.adrelid = log_table AND d.adnum = cost_att.attnum;
    IF default_expr IS NOT NULL THEN
        EXECUTE format('SELECT (%s)::numeric', default_expr) INTO default_value;
    END IF;

    -- (Re)create the triggers.
    EXECUTE format('DROP TRIGGER IF EXISTS llm_cost_price ON %s', log_table);
    EXECUTE format('DROP TRIGGER IF EXISTS llm_cost_unpriced ON %s', log_table);
    update_cols := array_remove(ARRAY[model_column, input_tokens_column, output_tokens_column, cache_read_tokens_column,
                                      cache_write_tokens_column, cost_column, time_column, cache_write_1h_tokens_column,
                                      usage_column], NULL);
    EXECUTE format('CREATE TRIGGER llm_cost_price BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION llm_cost.usage_cost_trigger(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(update_cols) c), log_table,
                   model_column, input_tokens_column, output_tokens_column,
                   coalesce(cache_read_tokens_column, ''), coalesce(cache_write_tokens_column, ''),
                   cost_column, coalesce(time_column, ''), coalesce(provider_column, ''),
                   coalesce(source_col, ''), coalesce(default_value::text, ''), time_zone,
                   coalesce(service_tier_column, ''), coalesce(cache_write_1h_tokens_column, ''), coalesce(usage_column, ''),
                   coalesce(priced_model_column, ''));
    EXECUTE format('CREATE TRIGGER llm_cost_unpriced AFTER INSERT OR UPDATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION llm_cost.usage_statement_end()', log_table);

    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.tracked_tables, llm_cost._registry_put('tracked_tables',
        pg_catalog.jsonb_build_object('log_table', log_table::oid, 'model_column', model_column,
            'input_tokens_column', input_tokens_column, 'output_tokens_column', output_tokens_column,
            'cache_read_tokens_column', cache_read_tokens_column, 'cache_write_tokens_column', cache_write_tokens_column,
            'cost_column', cost_column, 'cost_source_column', source_col, 'cost_default', default_value,
            'time_column', time_column, 'provider_column', provider_column, 'tracked_at', now(), 'time_zone', time_zone,
            'service_tier_column', service_tier_column, 'cache_write_1h_tokens_column', cache_write_1h_tokens_column,
            'usage_column', usage_column, 'priced_model_column', priced_model_column)));
    RETURN result;
END $$;

COMMENT ON FUNCTION llm_cost.track(regclass, text, text, text, text, text, text, text, text, boolean, text, text, text, text, text) IS
'Prices every row inserted into (or updated in) an existing usage-log table: checks the column mapping now, then installs the llm_cost triggers. Calling it again replaces the mapping. A timestamp (without time zone) or date time column is read in time_zone (UTC by default), whatever the writer''s TimeZone. A non-empty provider_column value names the host whose price applies (openrouter, bedrock, azure, ...); an empty one is filled with the resolved provider. service_tier_column: batch, flex, priority, fast or standard (NULL). usage_column: a jsonb or json column with the provider''s usage object (OpenAI, Anthropic, Gemini, Bedrock, DeepSeek, OpenRouter, LiteLLM): the counts come from it and are written into the mapped token columns; a cost the provider reported (OpenRouter) is kept as provided. priced_model_column: a text column filled with the catalog model the row was priced as (openai/gpt-4o-mini and gpt-4o-mini both give gpt-4o-mini; an unknown name stays as sent): rollups that group by the model column group by it.';


-- Shards of the catalog (Citus reference tables) take what the table itself accepted.

CREATE OR REPLACE FUNCTION llm_cost._model_prices_protect_shipped() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A copy of the table (a shard of the catalog made a Citus reference table) takes what the
    -- table itself accepted.
    IF TG_TABLE_NAME <> 'model_prices' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'row % of llm_cost.model_prices ships with the extension and cannot be changed', OLD.id
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Insert your own row for this model instead (origin ''user''): it overrides the shipped price wherever it is valid.';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'only the extension inserts rows with origin ''llm_cost'''
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Leave origin at its default, ''user''.';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'a row cannot be turned into a shipped row' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;


CREATE OR REPLACE FUNCTION llm_cost._providers_protect_shipped() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME <> 'providers' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'provider % ships with the extension and cannot be changed', OLD.provider
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Add your own provider row, or your own price rows for the models you need.';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.origin = 'llm_cost' THEN
        RAISE EXCEPTION 'only the extension writes providers with origin ''llm_cost''' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;


-- The source column a rollup group column is read from: the model column of a table that maps a
-- priced model column is read from that one (the catalog model the row was priced as), so that
-- the spellings of one model count as one group.
CREATE FUNCTION llm_cost._rollup_group_column(p_source regclass, p_col text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT t.priced_model_column FROM llm_cost.tracked_tables t
                      WHERE t.log_table = p_source AND t.model_column = p_col AND t.priced_model_column IS NOT NULL), p_col)
$$;


CREATE OR REPLACE FUNCTION llm_cost._rollup_select(r llm_cost.rollups, p_from text, p_sign text, p_stripe text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    period text;
    gcols text := '';
    n int := coalesce(array_length(r.group_by, 1), 0);
    at text;
BEGIN
    SELECT * INTO c FROM llm_cost._rollup_source_columns(r.source);
    at := llm_cost._event_time_sql(r.source, 't');
    period := format('date_trunc(%L, %s, %L)', r.grain, at, r.time_zone);
    FOR i IN 1 .. n LOOP
        gcols := gcols || format(', t.%I', llm_cost._rollup_group_column(r.source, r.group_by[i]));
    END LOOP;
    RETURN format(
        'SELECT %s AS period_start%s, %s AS stripe, %s AS requests, %s AS input_tokens, %s AS output_tokens, '
        '%s AS cache_read_tokens, %s AS cache_write_tokens, %s AS cost_usd, %s AS unpriced_requests, '
        '%s AS error_requests, %s AS latency_ms_sum, max(%s) AS latency_ms_max, '
        'min(%s) AS first_seen, max(%s) AS last_seen FROM %s t GROUP BY 1%s',
        period, gcols, p_stripe,
        format('%s * count(*)', p_sign),
        format('%s * coalesce(sum(t.%I), 0)', p_sign, c.tok_in),
        format('%s * coalesce(sum(t.%I), 0)', p_sign, c.tok_out),
        CASE WHEN c.tok_cr IS NULL THEN '0' ELSE format('%s * coalesce(sum(t.%I), 0)', p_sign, c.tok_cr) END,
        CASE WHEN c.tok_cw IS NULL THEN '0' ELSE format('%s * coalesce(sum(t.%I), 0)', p_sign, c.tok_cw) END,
        format('%s * coalesce(sum(t.%I), 0)', p_sign, c.cost_col),
        format('%s * count(*) FILTER (WHERE %s)', p_sign, c.unpriced_expr),
        CASE WHEN c.error_col IS NULL THEN '0' ELSE format('%s * count(t.%I)', p_sign, c.error_col) END,
        CASE WHEN c.latency_col IS NULL THEN '0' ELSE format('%s * coalesce(sum(t.%I), 0)', p_sign, c.latency_col) END,
        CASE WHEN c.latency_col IS NULL THEN 'NULL::int' ELSE format('t.%I', c.latency_col) END,
        at, at, p_from,
        (SELECT string_agg(format(', %s', i + 1), '') FROM generate_series(1, n) i));
END $$;


CREATE OR REPLACE FUNCTION llm_cost._rollup_defs(p_source regclass, p_rel regclass)
RETURNS TABLE (id bigint, grain text, time_zone text, group_attnums int2[],
               time_att int2, cost_att int2, model_att int2, source_att int2,
               in_att int2, out_att int2, cr_att int2, cw_att int2, error_att int2, latency_att int2,
               stripes oid, stripes_group_attnums int2[], stripes_attnums int2[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
    c record;
    t llm_cost.tracked_tables;
    bad text;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_source;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO c FROM llm_cost._rollup_source_columns(p_source);
    FOR r IN SELECT * FROM llm_cost.rollups WHERE rollups.source = p_source ORDER BY rollups.id LOOP
        id := r.id; grain := r.grain; time_zone := r.time_zone;
        group_attnums := ARRAY(SELECT a.attnum FROM unnest(r.group_by) WITH ORDINALITY g(name, ord)
                                 JOIN pg_catalog.pg_attribute a ON a.attrelid = p_rel
                                  AND a.attname = llm_cost._rollup_group_column(p_source, g.name) ORDER BY g.ord);
        time_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.time_col);
        cost_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.cost_col);
        model_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.model_col);
        source_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = t.cost_source_column);
        in_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.tok_in);
        out_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.tok_out);
        cr_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.tok_cr);
        cw_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.tok_cw);
        error_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.error_col);
        latency_att := (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_rel AND attname = c.latency_col);
        -- A group column whose type no longer matches the stripes table's (ALTER TABLE ... TYPE
        -- past the event trigger): never write its values as the other type.
        SELECT string_agg(format('%I (%s in %s, %s in %s)', g.name, format_type(sa.atttypid, sa.atttypmod), p_rel,
                                 format_type(ta.atttypid, ta.atttypmod), r.stripes), ', ') INTO bad
          FROM unnest(r.group_by) g(name)
          JOIN pg_catalog.pg_attribute sa ON sa.attrelid = p_rel AND sa.attname = g.name AND NOT sa.attisdropped
          JOIN pg_catalog.pg_attribute ta ON ta.attrelid = r.stripes AND ta.attname = g.name AND NOT ta.attisdropped
         WHERE (sa.atttypid, sa.atttypmod) IS DISTINCT FROM (ta.atttypid, ta.atttypmod);
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'llm_cost: rollup % groups by columns whose type differs from its table of sums: %', r.rollup, bad
                  USING ERRCODE = 'datatype_mismatch',
                        HINT = 'Drop the rollup with llm_cost.drop_rollup() and create it again.';
        END IF;
        stripes := r.stripes;
        stripes_group_attnums := ARRAY(SELECT a.attnum FROM unnest(r.group_by) WITH ORDINALITY g(name, ord)
                                         JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = g.name
                                         AND NOT a.attisdropped ORDER BY g.ord);
        stripes_attnums := ARRAY(SELECT a.attnum FROM unnest(ARRAY['period_start', 'stripe', 'requests', 'input_tokens',
                                         'output_tokens', 'cache_read_tokens', 'cache_write_tokens', 'cost_usd',
                                         'unpriced_requests', 'error_requests', 'latency_ms_sum', 'latency_ms_max',
                                         'first_seen', 'last_seen']) WITH ORDINALITY g(name, ord)
                                   JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = g.name
                                   AND NOT a.attisdropped ORDER BY g.ord);
        RETURN NEXT;
    END LOOP;
END $$;


-- The rollup view over its stripes (CREATE OR REPLACE, keeping the options of an existing
-- view such as security_invoker). period_end is derived from period_start. cost_usd is the sum
-- of the rows' costs as SUM over the raw rows gives it: NULL when no row of the group is priced.
CREATE FUNCTION llm_cost._rollup_view_sql(p_view text, p_stripes text, p_grain text, p_zone text, p_group_by text[],
                                          p_errors boolean, p_latency boolean)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    opts text[];
    vcols text := (SELECT coalesce(string_agg(format('s.%I, ', x), ''), '') FROM unnest(p_group_by) x);
    gcols text := (SELECT coalesce(string_agg(format(', s.%I', x), ''), '') FROM unnest(p_group_by) x);
BEGIN
    SELECT c.reloptions INTO opts FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(p_view);
    RETURN format(
        'CREATE OR REPLACE VIEW %s%s AS SELECT s.period_start, '
        '(s.period_start AT TIME ZONE %L + interval %L) AT TIME ZONE %L AS period_end, %s'
        'sum(s.requests)::bigint AS requests, sum(s.input_tokens)::bigint AS input_tokens, '
        'sum(s.output_tokens)::bigint AS output_tokens, sum(s.cache_read_tokens)::bigint AS cache_read_tokens, '
        'sum(s.cache_write_tokens)::bigint AS cache_write_tokens, '
        '(sum(s.input_tokens) + sum(s.output_tokens) + sum(s.cache_read_tokens) + sum(s.cache_write_tokens))::bigint AS total_tokens, '
        'CASE WHEN sum(s.requests) > sum(s.unpriced_requests) THEN sum(s.cost_usd) END AS cost_usd, '
        'sum(s.unpriced_requests)::bigint AS unpriced_requests, '
        '%s %s min(s.first_seen) AS first_seen, max(s.last_seen) AS last_seen, '
        'jsonb_build_array(s.period_start%s)::text AS row_key '
        'FROM %s s GROUP BY s.period_start%s HAVING sum(s.requests) <> 0',
        p_view, CASE WHEN opts IS NULL THEN '' ELSE ' WITH (' || array_to_string(opts, ', ') || ')' END,
        p_zone, '1 ' || p_grain, p_zone, vcols,
        CASE WHEN p_errors THEN 'sum(s.error_requests)::bigint AS error_requests, ' ELSE '' END,
        CASE WHEN p_latency THEN 'sum(s.latency_ms_sum)::bigint AS latency_ms_sum, max(s.latency_ms_max) AS latency_ms_max, ' ELSE '' END,
        gcols, p_stripes, gcols);
END $$;


CREATE OR REPLACE FUNCTION llm_cost.create_rollup(name text, source regclass, grain text, group_by text[],
                                       time_zone text DEFAULT 'UTC')
RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src_owner  oid;
    src_nsp    text;
    parts      text[];
    v_schema   text;
    v_name     text;
    view_ident text;
    stripes_ident text;
    g          text;
    att        record;
    cols       text := '';
    keys       text := 'period_start';
    vcols      text := '';
    src        record;
    r          llm_cost.rollups;
    reserved   text[] := ARRAY['period_start', 'period_end', 'stripe', 'requests', 'input_tokens', 'output_tokens',
                               'cache_read_tokens', 'cache_write_tokens', 'total_tokens', 'cost_usd', 'unpriced_requests',
                               'error_requests', 'latency_ms_sum', 'latency_ms_max', 'first_seen', 'last_seen'];
BEGIN
    IF name IS NULL OR source IS NULL OR grain IS NULL OR group_by IS NULL THEN
        RAISE EXCEPTION 'llm_cost.create_rollup: name, source, grain and group_by must not be NULL'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF current_setting('server_version_num')::int < 150000 THEN
        RAISE EXCEPTION 'llm_cost rollups need PostgreSQL 15 or later' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF grain NOT IN ('hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'grain must be hour, day, week or month, not "%"', grain USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM now() AT TIME ZONE time_zone;  -- rejects an unknown time zone
    SELECT c.relowner, n.nspname INTO src_owner, src_nsp
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF NOT pg_catalog.pg_has_role(current_user, src_owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to create a rollup on it', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO src FROM llm_cost._rollup_source_columns(source);

    parts := parse_ident(name);
    IF array_length(parts, 1) = 1 THEN
        v_schema := src_nsp; v_name := parts[1];
    ELSIF array_length(parts, 1) = 2 THEN
        v_schema := parts[1]; v_name := parts[2];
    ELSE
        RAISE EXCEPTION 'invalid rollup name "%"', name USING ERRCODE = 'invalid_name';
    END IF;
    view_ident := format('%I.%I', v_schema, v_name);
    stripes_ident := format('%I.%I', v_schema, left(v_name || '_stripes', 63));

    IF array_length(group_by, 1) IS NOT NULL AND
       (SELECT count(DISTINCT x) FROM unnest(group_by) x) <> array_length(group_by, 1) THEN
        RAISE EXCEPTION 'group_by lists a column twice: %', group_by USING ERRCODE = 'duplicate_column';
    END IF;
    FOREACH g IN ARRAY group_by LOOP
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS typ INTO att
          FROM pg_catalog.pg_attribute a WHERE a.attrelid = source AND a.attname = g AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'group_by column "%" does not exist in table %', g, source USING ERRCODE = 'undefined_column';
        END IF;
        IF g = ANY (reserved) THEN
            RAISE EXCEPTION 'cannot group by "%": a rollup has a column of that name', g USING ERRCODE = 'duplicate_column';
        END IF;
        cols := cols || format('%I %s, ', g, att.typ);
        keys := keys || format(', %I', g);
        vcols := vcols || format('s.%I, ', g);
    END LOOP;

    -- No writer may slip in between the backfill and the triggers.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', source);

    EXECUTE format('CREATE TABLE %s (period_start timestamptz NOT NULL, %s'
                   'stripe int NOT NULL, requests bigint NOT NULL, input_tokens bigint NOT NULL, output_tokens bigint NOT NULL, '
                   'cache_read_tokens bigint NOT NULL, cache_write_tokens bigint NOT NULL, cost_usd numeric NOT NULL, '
                   'unpriced_requests bigint NOT NULL, error_requests bigint NOT NULL, latency_ms_sum bigint NOT NULL, '
                   'latency_ms_max bigint, first_seen timestamptz, last_seen timestamptz, '
                   'UNIQUE NULLS NOT DISTINCT (%s, stripe)) WITH (fillfactor = 10)', stripes_ident, cols, keys);
    -- No key of NOT NULL columns exists (group columns may be NULL): logical replication
    -- identifies a row by all its columns. It only costs anything with wal_level = logical.
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', stripes_ident);
    EXECUTE format('COMMENT ON TABLE %s IS %L', stripes_ident,
                   E'@omit\nPartial sums behind the llm_cost rollup ' || view_ident || E' (one row per period, group and writing backend). Read the rollup, not this table.');

    EXECUTE llm_cost._rollup_view_sql(view_ident, stripes_ident, grain, time_zone, group_by,
                                      src.error_col IS NOT NULL, src.latency_col IS NOT NULL);
    r := pg_catalog.jsonb_populate_record(NULL::llm_cost.rollups, llm_cost._registry_put('rollups',
        pg_catalog.jsonb_build_object('rollup', view_ident::regclass::oid, 'stripes', stripes_ident::regclass::oid,
                                      'source', source::oid, 'grain', grain, 'group_by', group_by, 'time_zone', time_zone)));
    PERFORM llm_cost._rollup_comment(r);

    -- Backfill from the rows already there (stripe 0), then start following new rows.
    EXECUTE llm_cost._rollup_upsert(r, llm_cost._rollup_select(r, source::text, '1', '0'));
    PERFORM llm_cost._rollup_refresh_triggers(source);
    RETURN r.rollup;
END $$;



-- Rows logged before: their priced model (without moving rollup sums: the mapping is not on yet).
ALTER TABLE llm_cost.usage_events DISABLE TRIGGER llm_cost_rollup;
UPDATE llm_cost.usage_events SET priced_model = llm_cost.priced_model(model, provider);
ALTER TABLE llm_cost.usage_events ENABLE TRIGGER llm_cost_rollup;
SELECT llm_cost.track('llm_cost.usage_events',
                      cache_read_tokens_column  => 'cache_read_tokens',
                      cache_write_tokens_column => 'cache_write_tokens',
                      time_column               => 'occurred_at',
                      provider_column           => 'provider',
                      service_tier_column       => 'service_tier',
                      cache_write_1h_tokens_column => 'cache_write_1h_tokens',
                      priced_model_column       => 'priced_model',
                      usage_column              => 'usage');

-- Every rollup view: cost_usd NULL when no row of the group is priced (its options kept).
DO $$
DECLARE
    r llm_cost.rollups;
    member boolean;
BEGIN
    FOR r IN SELECT * FROM llm_cost.rollups ORDER BY id LOOP
        -- A script may replace only its extension's objects: a rollup of yours joins it meanwhile.
        member := EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = r.rollup
                             AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e');
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost ADD VIEW %s', r.rollup);
        END IF;
        EXECUTE llm_cost._rollup_view_sql(
            (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = r.rollup),
            (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = r.stripes),
            r.grain, r.time_zone, r.group_by,
            EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = r.rollup AND attname = 'error_requests' AND NOT attisdropped),
            EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = r.rollup AND attname = 'latency_ms_sum' AND NOT attisdropped));
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost DROP VIEW %s', r.rollup);
        END IF;
    END LOOP;
END $$;

-- Reports: unpriced calls are counted, never $0.00.
CREATE OR REPLACE VIEW llm_cost.spend_summary AS
SELECT 'today'::text AS period, date_trunc('day', now(), 'UTC') AS since,
       coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
       CASE WHEN count(*) = 0 THEN 0 ELSE sum(cost_usd) END AS cost_usd, coalesce(sum(unpriced_requests), 0)::bigint AS unpriced_requests
  FROM llm_cost.usage_daily WHERE period_start >= date_trunc('day', now(), 'UTC')
UNION ALL
SELECT 'this week', date_trunc('week', now(), 'UTC'),
       coalesce(sum(requests), 0)::bigint, coalesce(sum(total_tokens), 0)::bigint, CASE WHEN count(*) = 0 THEN 0 ELSE sum(cost_usd) END,
       coalesce(sum(unpriced_requests), 0)::bigint
  FROM llm_cost.usage_daily WHERE period_start >= date_trunc('week', now(), 'UTC')
UNION ALL
SELECT 'this month', date_trunc('month', now(), 'UTC'),
       coalesce(sum(requests), 0)::bigint, coalesce(sum(total_tokens), 0)::bigint, CASE WHEN count(*) = 0 THEN 0 ELSE sum(cost_usd) END,
       coalesce(sum(unpriced_requests), 0)::bigint
  FROM llm_cost.usage_monthly WHERE period_start >= date_trunc('month', now(), 'UTC');
COMMENT ON VIEW llm_cost.spend_summary IS '@primaryKey period
Spend today, this week (from Monday) and this month, in UTC.';
COMMENT ON COLUMN llm_cost.spend_summary.period IS 'today, this week or this month.';
COMMENT ON COLUMN llm_cost.spend_summary.since IS 'Start of the period.';
COMMENT ON COLUMN llm_cost.spend_summary.cost_usd IS 'Cost in USD of the priced calls, exact (0 without calls, NULL when every call was unpriced).';
CREATE OR REPLACE VIEW llm_cost.spend_by_model AS
SELECT date_trunc('month', period_start, 'UTC') AS month, provider, model,
       sum(requests)::bigint AS requests, sum(total_tokens)::bigint AS total_tokens, sum(cost_usd) AS cost_usd,
       round(sum(cost_usd) / nullif(sum(requests) - sum(unpriced_requests), 0), 8) AS avg_cost_per_request_usd,
       sum(unpriced_requests)::bigint AS unpriced_requests
  FROM llm_cost.usage_daily GROUP BY 1, 2, 3;
COMMENT ON VIEW llm_cost.spend_by_model IS 'Spend per month (UTC), provider and model: the catalog model calls were priced as (openai/gpt-4o-mini and gpt-4o-mini are one model), or the name as sent for a model without a price (cost_usd NULL, counted in unpriced_requests).';
COMMENT ON COLUMN llm_cost.spend_by_model.cost_usd IS 'Cost in USD of the priced calls, exact; NULL when none of them was priced.';
COMMENT ON COLUMN llm_cost.spend_by_model.avg_cost_per_request_usd IS 'Average cost of a priced call.';
COMMENT ON COLUMN llm_cost.spend_by_model.unpriced_requests IS 'Calls stored without a price (unknown model): not in cost_usd.';
ALTER VIEW llm_cost.spend_summary SET (security_invoker = true);
ALTER VIEW llm_cost.spend_by_model SET (security_invoker = true);



-------------------------------------------------------------------------------------------------
-- Budgets (sql/budgets.sql)
-------------------------------------------------------------------------------------------------
-- Budgets: spend limits on a rollup's groups, alerts when spend crosses a threshold, and a
-- pre-flight check (src/features/budgets.rs).
--
-- A budget sits on a rollup: every group of the rollup gets the limit in each period of the
-- rollup's grain and time zone (a new period starts at zero by construction: no reset job).
-- Spend is the rollup's exact cost, kept in the inserting transaction. Before a transaction that
-- added spend to a budgeted group commits, llm_cost reads the group's spend with a fresh snapshot
-- (every committed transaction and this one) and records each threshold reached in
-- budget_alerts, once per (budget, group, period, threshold), under the group's lock; the NOTIFY
-- is delivered when the transaction commits. A crossing only the sum of writers that committed
-- together makes is recorded by the background worker within one naptime (docs/budgets.md).

CREATE FUNCTION llm_cost._valid_thresholds(t numeric[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t IS NOT NULL AND cardinality(t) BETWEEN 1 AND 20
       AND NOT EXISTS (SELECT 1 FROM unnest(t) x WHERE x IS NULL OR x = 'NaN' OR x <= 0 OR x > 10)
       AND t = ARRAY(SELECT DISTINCT x FROM unnest(t) x ORDER BY x)
$$;
COMMENT ON FUNCTION llm_cost._valid_thresholds(numeric[]) IS '@omit
Thresholds are 1 to 20 distinct fractions of the limit in (0, 10], in ascending order.';

CREATE TABLE llm_cost.budgets (
    id          bigint      GENERATED BY DEFAULT AS IDENTITY (START WITH 1001) PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name <> ''),
    rollup      regclass    NOT NULL REFERENCES llm_cost.rollups (rollup) ON DELETE CASCADE,
    limit_usd   numeric     NOT NULL CHECK (limit_usd > 0 AND limit_usd < 1e15),
    thresholds  numeric[]   NOT NULL CHECK (llm_cost._valid_thresholds(thresholds)),
    filter      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(filter) = 'object'),
    hard        boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL DEFAULT current_user
);
COMMENT ON TABLE llm_cost.budgets IS E'@omit create,update,delete\nSpend limits: each budget gives every group of its rollup (those its filter selects) limit_usd per period of the rollup. Change them with create_budget(), set_budget_limit() and drop_budget().';
COMMENT ON COLUMN llm_cost.budgets.name IS 'The budget''s name (check_budget, set_budget_limit and drop_budget take it).';
COMMENT ON COLUMN llm_cost.budgets.rollup IS 'The rollup whose groups and periods the budget follows.';
COMMENT ON COLUMN llm_cost.budgets.limit_usd IS 'Limit per group and period, in USD, unless set_budget_limit() gave the group its own.';
COMMENT ON COLUMN llm_cost.budgets.thresholds IS 'Fractions of the limit whose crossing is alerted once per group and period (1.0 = the limit).';
COMMENT ON COLUMN llm_cost.budgets.filter IS 'Group column values the budget is limited to ({} = every group).';
COMMENT ON COLUMN llm_cost.budgets.hard IS 'A hard budget makes check_budget() answer allowed = false once spend plus the estimate exceeds the limit. Inserts are never refused.';
GRANT SELECT ON llm_cost.budgets TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('llm_cost.budgets', '');

CREATE TABLE llm_cost.budget_limits (
    budget_id   bigint   NOT NULL REFERENCES llm_cost.budgets (id) ON DELETE CASCADE,
    "group"     jsonb    NOT NULL CHECK (jsonb_typeof("group") = 'object'),
    limit_usd   numeric  NOT NULL CHECK (limit_usd > 0 AND limit_usd < 1e15),
    PRIMARY KEY (budget_id, "group")
);
COMMENT ON TABLE llm_cost.budget_limits IS E'@omit create,update,delete\nLimits of single groups that differ from their budget''s (set_budget_limit). "group" holds every group column, its value as text.';
SELECT pg_catalog.pg_extension_config_dump('llm_cost.budget_limits', '');

CREATE TABLE llm_cost.budget_alerts (
    id            bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    budget_id     bigint      NOT NULL REFERENCES llm_cost.budgets (id) ON DELETE CASCADE,
    budget        text        NOT NULL,
    "group"       jsonb       NOT NULL,
    period_start  timestamptz NOT NULL,
    threshold     numeric     NOT NULL,
    spent_usd     numeric     NOT NULL,
    limit_usd     numeric     NOT NULL,
    crossed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (budget_id, "group", period_start, threshold)
);
COMMENT ON TABLE llm_cost.budget_alerts IS E'@omit create,update,delete\nOne row each time a group''s spend in a period reached a threshold of its budget: written in the transaction whose spend completed the crossing, which also sends NOTIFY llm_cost_budget with this row as JSON when it commits.';
COMMENT ON COLUMN llm_cost.budget_alerts.budget IS 'The budget''s name.';
COMMENT ON COLUMN llm_cost.budget_alerts."group" IS 'The group: its rollup''s group columns and their values as text ({} for a platform-wide budget).';
COMMENT ON COLUMN llm_cost.budget_alerts.period_start IS 'Start of the period whose spend crossed the threshold.';
COMMENT ON COLUMN llm_cost.budget_alerts.threshold IS 'The fraction of the limit reached (1.0 = the limit).';
COMMENT ON COLUMN llm_cost.budget_alerts.spent_usd IS 'Spend of the group in the period when the crossing committed.';
COMMENT ON COLUMN llm_cost.budget_alerts.limit_usd IS 'The group''s limit at that time.';
COMMENT ON COLUMN llm_cost.budget_alerts.crossed_at IS 'When the crossing transaction was committing.';
SELECT pg_catalog.pg_extension_config_dump('llm_cost.budget_alerts', '');
SELECT pg_catalog.pg_extension_config_dump('llm_cost.budgets_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('llm_cost.budget_alerts_id_seq', '');

-- Budget definitions go stale in every backend when these change (src/features/budgets.rs).
CREATE TRIGGER budgets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.budgets
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost._budgets_changed();
CREATE TRIGGER budget_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.budget_limits
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost._budgets_changed();

-- Who sees a group's budget: admins, the rollup's owner, and whoever may read the rollup, under
-- its row security (the group's owner column must be the reader).
CREATE FUNCTION llm_cost._budget_group_visible(p_budget bigint, p_group jsonb) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT llm_cost.is_admin() OR EXISTS (
        SELECT 1 FROM llm_cost.budgets b JOIN llm_cost.rollups r ON r.rollup = b.rollup
         WHERE b.id = p_budget
           AND (pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.stripes), 'USAGE')
                OR (pg_catalog.has_table_privilege(current_user, b.rollup, 'SELECT')
                    AND (NOT EXISTS (SELECT 1 FROM llm_cost.row_security s WHERE s.rel = b.rollup)
                         OR EXISTS (SELECT 1 FROM llm_cost.row_security s
                                     WHERE s.rel = b.rollup AND p_group ->> s.owner_column = llm_cost.current_principal())))))
$$;
COMMENT ON FUNCTION llm_cost._budget_group_visible(bigint, jsonb) IS '@omit
Whether the current role may see the budget of this group: admins, the rollup''s owner, readers of the rollup under its row security.';

ALTER TABLE llm_cost.budget_limits ENABLE ROW LEVEL SECURITY;
CREATE POLICY llm_cost_read ON llm_cost.budget_limits FOR SELECT USING (llm_cost._budget_group_visible(budget_id, "group"));
GRANT SELECT ON llm_cost.budget_limits TO PUBLIC;
ALTER TABLE llm_cost.budget_alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY llm_cost_read ON llm_cost.budget_alerts FOR SELECT USING (llm_cost._budget_group_visible(budget_id, "group"));
GRANT SELECT ON llm_cost.budget_alerts TO PUBLIC;

-- The rollup of a budget, with the checks every management function makes.
CREATE FUNCTION llm_cost._budget_rollup(p_rollup regclass) RETURNS llm_cost.rollups
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
BEGIN
    SELECT * INTO r FROM llm_cost.rollups WHERE rollup = p_rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an llm_cost rollup', p_rollup USING ERRCODE = 'undefined_object',
              HINT = 'Budgets sit on a rollup: see llm_cost.rollups, or create one with llm_cost.create_rollup().';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.stripes), 'USAGE')
       OR NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.rollup), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of rollup % to manage its budgets', p_rollup USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN r;
END $$;
COMMENT ON FUNCTION llm_cost._budget_rollup(regclass) IS '@omit';

-- A group given as jsonb, checked against the rollup's group columns and normalized: every key a
-- group column (42703), values scalars written as text. p_all: every group column must be given.
CREATE FUNCTION llm_cost._budget_group(r llm_cost.rollups, p_group jsonb, p_what text, p_all boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    v jsonb;
    result jsonb := '{}';
BEGIN
    IF p_group IS NULL OR jsonb_typeof(p_group) <> 'object' THEN
        RAISE EXCEPTION '%: a JSON object of group columns and values is expected, got %', p_what, coalesce(p_group::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(p_group) LOOP
        IF NOT k = ANY (r.group_by) THEN
            RAISE EXCEPTION '%: "%" is not a group column of rollup % (its group columns: %)', p_what, k, r.rollup,
                  CASE WHEN r.group_by = '{}' THEN 'none' ELSE array_to_string(r.group_by, ', ') END
                  USING ERRCODE = 'undefined_column';
        END IF;
        IF jsonb_typeof(v) IN ('object', 'array') THEN
            RAISE EXCEPTION '%: the value of "%" must be a string, number, boolean or null', p_what, k USING ERRCODE = 'invalid_parameter_value';
        END IF;
        result := result || jsonb_build_object(k, p_group ->> k);
    END LOOP;
    IF p_all THEN
        FOREACH k IN ARRAY r.group_by LOOP
            IF NOT p_group ? k THEN
                RAISE EXCEPTION '%: the group must give every group column of rollup %; "%" is missing', p_what, r.rollup, k
                      USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
    RETURN result;
END $$;
COMMENT ON FUNCTION llm_cost._budget_group(llm_cost.rollups, jsonb, text, boolean) IS '@omit';

CREATE FUNCTION llm_cost._budget_amount(p_limit numeric, p_what text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_limit IS NULL OR p_limit = 'NaN' OR p_limit <= 0 OR p_limit >= 1e15 THEN
        RAISE EXCEPTION '%: the limit must be a positive amount in USD below 10^15, got %', p_what, coalesce(p_limit::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_limit;
END $$;
COMMENT ON FUNCTION llm_cost._budget_amount(numeric, text) IS '@omit';

CREATE FUNCTION llm_cost.create_budget(name text, rollup regclass, limit_usd numeric,
                                       thresholds numeric[] DEFAULT '{0.5,0.8,1.0}', filter jsonb DEFAULT '{}',
                                       hard boolean DEFAULT false)
RETURNS llm_cost.budgets
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
    t numeric[];
    f jsonb;
    result llm_cost.budgets;
BEGIN
    IF name IS NULL OR rollup IS NULL OR hard IS NULL THEN
        RAISE EXCEPTION 'llm_cost.create_budget: name, rollup and hard must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF btrim(name) = '' THEN
        RAISE EXCEPTION 'llm_cost.create_budget: a budget needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := llm_cost._budget_rollup(rollup);
    PERFORM llm_cost._budget_amount(limit_usd, 'llm_cost.create_budget');
    IF thresholds IS NULL OR cardinality(thresholds) = 0
       OR EXISTS (SELECT 1 FROM unnest(thresholds) x WHERE x IS NULL OR x = 'NaN' OR x <= 0 OR x > 10) THEN
        RAISE EXCEPTION 'llm_cost.create_budget: thresholds are fractions of the limit in (0, 10] (0.8 = 80%%, 1 = the limit), got %',
              coalesce(thresholds::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    t := ARRAY(SELECT DISTINCT x FROM unnest(thresholds) x ORDER BY x);
    IF cardinality(t) > 20 THEN
        RAISE EXCEPTION 'llm_cost.create_budget: at most 20 thresholds' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    f := llm_cost._budget_group(r, coalesce(filter, '{}'), 'llm_cost.create_budget filter', false);
    IF EXISTS (SELECT 1 FROM llm_cost.budgets b WHERE b.name = create_budget.name) THEN
        RAISE EXCEPTION 'budget "%" already exists', name USING ERRCODE = 'duplicate_object',
              HINT = 'Drop it with llm_cost.drop_budget() first, or choose another name.';
    END IF;
    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.budgets, llm_cost._budget_write('create',
        pg_catalog.jsonb_build_object('name', name, 'rollup', rollup::oid, 'limit_usd', limit_usd, 'thresholds', t,
                                      'filter', f, 'hard', hard)));
    PERFORM llm_cost._budget_view(rollup);
    RETURN result;
END $$;
COMMENT ON FUNCTION llm_cost.create_budget(text, regclass, numeric, numeric[], jsonb, boolean) IS '@omit
A spend limit of limit_usd for every group of the rollup (those the filter selects, e.g. {"tenant_id": "acme"}) in each of its periods. Each threshold (a fraction of the limit) crossed by a group in a period is alerted once: a row in llm_cost.budget_alerts and NOTIFY llm_cost_budget when the crossing transaction commits. hard: check_budget() answers allowed = false once spend plus the estimate exceeds the limit. Only the rollup''s owner may.';

CREATE FUNCTION llm_cost.set_budget_limit(name text, "group" jsonb, limit_usd numeric) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b llm_cost.budgets;
    r llm_cost.rollups;
    g jsonb;
BEGIN
    SELECT * INTO b FROM llm_cost.budgets WHERE budgets.name = set_budget_limit.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'budget "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    r := llm_cost._budget_rollup(b.rollup);
    g := llm_cost._budget_group(r, "group", 'llm_cost.set_budget_limit', true);
    IF limit_usd IS NOT NULL THEN
        PERFORM llm_cost._budget_amount(limit_usd, 'llm_cost.set_budget_limit');
    END IF;
    PERFORM llm_cost._budget_write('limit', pg_catalog.jsonb_build_object('budget_id', b.id, 'group', g, 'limit_usd', limit_usd));
END $$;
COMMENT ON FUNCTION llm_cost.set_budget_limit(text, jsonb, numeric) IS '@omit
Gives one group (every group column, e.g. {"tenant_id": "acme"}) its own limit in budget name; NULL goes back to the budget''s limit.';

CREATE FUNCTION llm_cost.drop_budget(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b llm_cost.budgets;
BEGIN
    SELECT * INTO b FROM llm_cost.budgets WHERE budgets.name = drop_budget.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'budget "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM llm_cost._budget_rollup(b.rollup);
    PERFORM llm_cost._budget_write('drop', pg_catalog.jsonb_build_object('budget_id', b.id));
END $$;
COMMENT ON FUNCTION llm_cost.drop_budget(text) IS '@omit
Drops a budget with its group limits and alerts.';

-- Every visible group's budget in the current period: the groups with spend in it, those with a
-- limit of their own, and the single group of a platform-wide budget. Runs with the reader's
-- rights: the rollup's row security decides which groups are seen.
CREATE FUNCTION llm_cost._budget_status()
RETURNS TABLE (budget text, rollup regclass, "group" jsonb, period_start timestamptz, period_end timestamptz,
               spent_usd numeric, limit_usd numeric, remaining_usd numeric, used_pct numeric, state text,
               hard boolean, thresholds numeric[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b llm_cost.budgets;
    r llm_cost.rollups;
    p_start timestamptz;
    p_end timestamptz;
    gexpr text;
    fspent text;
    flimit text;
    k text;
BEGIN
    FOR b IN SELECT * FROM llm_cost.budgets ORDER BY budgets.name LOOP
        SELECT * INTO r FROM llm_cost.rollups WHERE rollups.rollup = b.rollup;
        CONTINUE WHEN NOT FOUND OR NOT pg_catalog.has_table_privilege(b.rollup, 'SELECT');
        p_start := date_trunc(r.grain, now(), r.time_zone);
        p_end := (p_start AT TIME ZONE r.time_zone + ('1 ' || r.grain)::interval) AT TIME ZONE r.time_zone;
        gexpr := CASE WHEN r.group_by = '{}' THEN '''{}''::jsonb'
                      ELSE 'jsonb_build_object(' || (SELECT string_agg(format('%L, v.%I::text', g, g), ', ') FROM unnest(r.group_by) g) || ')' END;
        fspent := 'true';
        flimit := 'true';
        FOR k IN SELECT jsonb_object_keys(b.filter) LOOP
            fspent := fspent || format(' AND v.%I::text IS NOT DISTINCT FROM %L', k, b.filter ->> k);
            flimit := flimit || format(' AND l."group" ->> %L IS NOT DISTINCT FROM %L', k, b.filter ->> k);
        END LOOP;
        RETURN QUERY EXECUTE format(
            'WITH spent AS (SELECT %s AS g, sum(v.cost_usd) AS spent FROM %s v WHERE v.period_start = $1 AND %s GROUP BY 1),
                  lim AS (SELECT l."group" AS g, l.limit_usd FROM llm_cost.budget_limits l WHERE l.budget_id = $2 AND %s),
                  groups AS (SELECT g FROM spent UNION SELECT g FROM lim UNION SELECT ''{}''::jsonb WHERE $7)
             SELECT $3, $4, gr.g, $1, $5, x.spent, x.lim, greatest(x.lim - x.spent, 0), round(100 * x.spent / x.lim, 2),
                    CASE WHEN x.spent >= x.lim THEN ''exceeded'' WHEN x.spent >= x.lim * $8[1] THEN ''warning'' ELSE ''ok'' END,
                    $9, $8
               FROM groups gr LEFT JOIN spent s ON s.g = gr.g LEFT JOIN lim l ON l.g = gr.g,
                    LATERAL (SELECT coalesce(s.spent, 0) AS spent, coalesce(l.limit_usd, $6) AS lim) x
              ORDER BY gr.g',
            gexpr, b.rollup, fspent, flimit)
        USING p_start, b.id, b.name, b.rollup, p_end, b.limit_usd, r.group_by = '{}', b.thresholds, b.hard;
    END LOOP;
END $$;
COMMENT ON FUNCTION llm_cost._budget_status() IS '@omit';

CREATE VIEW llm_cost.budget_status WITH (security_invoker = true) AS
SELECT budget, rollup, "group", period_start, period_end, spent_usd, limit_usd, remaining_usd, used_pct, state, hard, thresholds
  FROM llm_cost._budget_status();
COMMENT ON VIEW llm_cost.budget_status IS 'Every budget for each group you may see, in the current period of its rollup: spend, limit, what remains and its state. Row-level security follows the rollup''s.';
COMMENT ON COLUMN llm_cost.budget_status.budget IS 'The budget''s name.';
COMMENT ON COLUMN llm_cost.budget_status.rollup IS 'The rollup the budget follows.';
COMMENT ON COLUMN llm_cost.budget_status."group" IS 'The group: the rollup''s group columns and their values as text ({} for a platform-wide budget).';
COMMENT ON COLUMN llm_cost.budget_status.period_start IS 'Start of the current period (the rollup''s grain, in its time zone).';
COMMENT ON COLUMN llm_cost.budget_status.period_end IS 'End of the current period: spend starts again from zero then.';
COMMENT ON COLUMN llm_cost.budget_status.spent_usd IS 'Spend of the group in the current period (USD, exact).';
COMMENT ON COLUMN llm_cost.budget_status.limit_usd IS 'The group''s limit (its own, else the budget''s).';
COMMENT ON COLUMN llm_cost.budget_status.remaining_usd IS 'Limit minus spend, 0 once the limit is reached.';
COMMENT ON COLUMN llm_cost.budget_status.used_pct IS 'Spend as a percentage of the limit.';
COMMENT ON COLUMN llm_cost.budget_status.state IS 'ok, warning (the lowest threshold reached) or exceeded (spend reached the limit).';
COMMENT ON COLUMN llm_cost.budget_status.hard IS 'Whether check_budget() refuses calls past the limit.';
COMMENT ON COLUMN llm_cost.budget_status.thresholds IS 'The fractions of the limit that are alerted.';
GRANT SELECT ON llm_cost.budget_status TO PUBLIC;

-- Each rollup with budgets also gets a view of its own, next to it: <rollup>_budget_status, its
-- budgets with the rollup's group columns as columns of their types (budget_status has them in
-- "group"). Made by create_budget as the caller (the rollup's owner: the view is theirs), dropped
-- when the rollup's last budget goes.
CREATE FUNCTION llm_cost._budget_view_name(p_rollup regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%I.%I', n.nspname, left(c.relname, 63 - length('_budget_status')) || '_budget_status')
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_rollup
$$;
COMMENT ON FUNCTION llm_cost._budget_view_name(regclass) IS '@omit';

CREATE FUNCTION llm_cost._budget_view(p_rollup regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
    v text := llm_cost._budget_view_name(p_rollup);
    existing regclass;
    cols text;
BEGIN
    IF v IS NULL THEN
        RETURN;
    END IF;
    -- Only for whoever has the rollup owner's rights (create_budget's caller, or llm_cost when
    -- budgets are deleted).
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = p_rollup), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of rollup % to change its budget view', p_rollup USING ERRCODE = 'insufficient_privilege';
    END IF;
    existing := pg_catalog.to_regclass(v);
    -- Only a view llm_cost made (it reads budget_status) for the rollup's owner is replaced or dropped.
    IF existing IS NOT NULL AND (NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite w ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
            WHERE w.ev_class = existing AND d.refobjid = 'llm_cost.budget_status'::regclass)
        OR (SELECT relowner FROM pg_catalog.pg_class WHERE oid = existing) <> (SELECT relowner FROM pg_catalog.pg_class WHERE oid = p_rollup)) THEN
        RAISE NOTICE '% exists and is not the llm_cost budget view of %: left as it is', v, p_rollup;
        RETURN;
    END IF;
    SELECT * INTO r FROM llm_cost.rollups WHERE rollup = p_rollup;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM llm_cost.budgets b WHERE b.rollup = p_rollup) THEN
        IF existing IS NOT NULL THEN
            EXECUTE format('DROP VIEW %s', existing);
        END IF;
        RETURN;
    END IF;
    SELECT string_agg(format('(s."group" ->> %L)::%s AS %I, ', x.g, format_type(a.atttypid, a.atttypmod), x.g), '' ORDER BY x.o) INTO cols
      FROM unnest(r.group_by) WITH ORDINALITY x(g, o)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = r.stripes AND a.attname = x.g AND NOT a.attisdropped;
    BEGIN
        EXECUTE format('CREATE OR REPLACE VIEW %s WITH (security_invoker = true) AS SELECT s.budget, %s'
                       's.period_start, s.period_end, s.spent_usd, s.limit_usd, s.remaining_usd, s.used_pct, s.state, s.hard, '
                       's.thresholds, s."group" FROM llm_cost.budget_status s WHERE s.rollup::oid = %s',
                       v, coalesce(cols, ''), p_rollup::oid);
        EXECUTE format('COMMENT ON VIEW %s IS %L', v,
                       format('The budgets of llm_cost rollup %s in its current period, with its group columns: llm_cost.budget_status for this rollup. Made by create_budget, dropped with the last budget.', p_rollup));
    EXCEPTION WHEN insufficient_privilege THEN
        -- No CREATE on the rollup's schema: the budget works without its view.
        RAISE NOTICE 'no view % (%): read llm_cost.budget_status', v, SQLERRM;
    END;
END $$;
COMMENT ON FUNCTION llm_cost._budget_view(regclass) IS '@omit';

CREATE FUNCTION llm_cost._budgets_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r regclass;
BEGIN
    FOR r IN SELECT DISTINCT g.rollup FROM gone g WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = g.rollup) LOOP
        PERFORM llm_cost._budget_view(r);
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION llm_cost._budgets_deleted() IS '@omit';
CREATE TRIGGER budgets_deleted AFTER DELETE ON llm_cost.budgets REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost._budgets_deleted();

COMMENT ON FUNCTION llm_cost.check_budget(text, jsonb, numeric) IS 'Pre-flight check before an LLM call: whether a group may spend estimated_cost more in budget name (allowed is false only for a hard budget once spend plus the estimate exceeds the limit), its spend, limit and what remains in the current period, and when the period ends. group names every group column of the budget''s rollup ({} for a platform-wide budget). For whoever may read the rollup (under its row security) or insert into its source table.';
COMMENT ON FUNCTION llm_cost._budget_write(text, jsonb) IS '@omit';
REVOKE ALL ON FUNCTION llm_cost._budget_sweep() FROM PUBLIC;
COMMENT ON FUNCTION llm_cost._budget_sweep() IS '@omit
The background worker''s pass: records the crossings no committing writer saw.';


-- GraphQL layers: internal helpers and management functions stay out of the generated API
-- (PostGraphile's @omit smart tag; they remain plain SQL functions).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn, pg_catalog.obj_description(p.oid, 'pg_proc') AS d
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'llm_cost'::regnamespace AND p.prokind = 'f'
                AND p.prorettype <> 'trigger'::regtype AND p.prorettype <> 'event_trigger'::regtype
                AND (p.proname LIKE '\_%' OR p.proname IN ('track', 'untrack', 'create_rollup', 'drop_rollup', 'rebuild_rollup',
                     'reprice', 'set_retention', 'drop_retention', 'run_retention', 'enable_row_security', 'disable_row_security',
                     'import_prices'))
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE '@omit%'
    LOOP
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', f.fn, E'@omit\n' || coalesce(f.d, ''));
    END LOOP;
END $$;
