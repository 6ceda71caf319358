-- llm_cost 0.4.0 -> 0.5.0: Citus. Rollups of a distributed table are distributed and
-- co-located with it; unpriced_models gathers the workers' counts; retention and reprice of
-- Citus tables; budgets read distributed sums through Citus. unpriced_stats gains a stripe column.
\echo Use "ALTER EXTENSION llm_cost UPDATE TO '0.5.0'" to load this file. \quit

-- Citus (README "Scaling out with Citus"). llm_cost does not depend on Citus: these helpers read
-- its metadata only where the citus extension is installed, and answer NULL everywhere else.
--
-- On Citus the triggers of a distributed table fire on its shards, on the workers, where
-- llm_cost's registry (tracked_tables, rollups) is empty: the cost trigger carries its mapping in
-- its arguments, and so does the rollup trigger of a distributed source (see
-- llm_cost._rollup_shard_args in sql/rollups.sql): every rollup's table of sums is distributed
-- on the source's distribution column and co-located with it, and a shard's trigger writes the
-- shard of sums next to it (llm_cost._rollup_defs_shard).

-- How Citus holds a table: method 'h' and its distribution column for a hash-distributed table,
-- 'n' for a reference table or a Citus local table (kind says which), NULL columns otherwise.
CREATE FUNCTION llm_cost._citus_distribution(p_rel regclass, OUT method text, OUT dist_col text, OUT kind text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_rel IS NULL OR pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT p.partmethod::text,
                    CASE WHEN p.partmethod = ''h'' THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END,
                    CASE WHEN p.partmethod = ''h'' THEN ''distributed'' WHEN p.repmodel = ''t'' THEN ''reference'' ELSE ''local'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO method, dist_col, kind USING p_rel;
END $$;

-- The distributed table whose shard p_rel is (a shard's name ends in _<shard id>), or NULL.
CREATE FUNCTION llm_cost._citus_shard_logical(p_rel regclass, OUT logical regclass, OUT shard bigint, OUT min_value text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id text;
BEGIN
    IF p_rel IS NULL OR pg_catalog.to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RETURN;
    END IF;
    id := substring((SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = p_rel) FROM '_([0-9]{1,18})$');
    IF id IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT s.logicalrelid, s.shardid, s.shardminvalue FROM pg_catalog.pg_dist_shard s WHERE s.shardid = $1'
       INTO logical, shard, min_value USING id::bigint;
    IF logical IS NOT NULL AND llm_cost._citus_shard_rel(logical, shard) IS DISTINCT FROM p_rel THEN
        logical := NULL; shard := NULL; min_value := NULL;
    END IF;
END $$;

-- The relation of shard p_shard of p_logical on this node, or NULL.
CREATE FUNCTION llm_cost._citus_shard_rel(p_logical regclass, p_shard bigint) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text;
    nsp text := (SELECT quote_ident(x.nspname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace x ON x.oid = c.relnamespace
                  WHERE c.oid = p_logical);
BEGIN
    -- shard_name() qualifies the name only outside the public schema (quoted as identifiers).
    EXECUTE 'SELECT pg_catalog.shard_name($1, $2)' INTO n USING p_logical, p_shard;
    IF n IS NULL OR nsp IS NULL THEN
        RETURN NULL;
    END IF;
    IF left(n, length(nsp) + 1) <> nsp || '.' THEN
        n := nsp || '.' || n;
    END IF;
    RETURN pg_catalog.to_regclass(n);
END $$;

-- Whether this node is a Citus coordinator (with workers to ask).
CREATE FUNCTION llm_cost._citus_coordinator() RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    yes boolean;
BEGIN
    IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator() AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node WHERE groupid <> 0 AND isactive AND noderole = ''primary'')'
       INTO yes;
    RETURN coalesce(yes, false);
END $$;

-- Unpriced counts: a line per writing backend on Citus workers (see the column comment).
ALTER TABLE llm_cost.unpriced_stats ADD COLUMN stripe integer NOT NULL DEFAULT 0;
ALTER TABLE llm_cost.unpriced_stats DROP CONSTRAINT unpriced_stats_pkey, ADD PRIMARY KEY (log_table, model, stripe);
COMMENT ON COLUMN llm_cost.unpriced_stats.stripe IS '0, or on a Citus worker the writing backend''s rollup stripe: writers of several workers never wait for each other''s line (a distributed deadlock).';

CREATE OR REPLACE FUNCTION llm_cost._record_unpriced(p_table oid, p_model text, p_rows bigint, p_first timestamptz, p_last timestamptz)
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
     WHERE x.t IS NOT NULL AND p_rows > 0
    ON CONFLICT (log_table, model, stripe) DO UPDATE
       SET rows = s.rows + excluded.rows,
           first_seen = least(s.first_seen, excluded.first_seen),
           last_seen = greatest(s.last_seen, excluded.last_seen);
$$;
REVOKE ALL ON FUNCTION llm_cost._record_unpriced(oid, text, bigint, timestamptz, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_cost._unpriced_stats_all()
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
     GROUP BY x.log_table, x.model;
END $$;

CREATE OR REPLACE VIEW llm_cost.unpriced_models AS
SELECT s.model,
       s.log_table,
       s.rows,
       s.first_seen,
       s.last_seen,
       llm_cost.resolve_model(s.model) AS resolves_to_now,
       llm_cost.provider_of(s.model)   AS provider_guess
  FROM llm_cost._unpriced_stats_all() s
 ORDER BY s.rows DESC, s.model;
COMMENT ON VIEW llm_cost.unpriced_models IS 'Every model name that was logged without a price: how many rows, first and last event time. resolves_to_now is set once a price or alias exists; then run llm_cost.reprice() to price the stored rows. Lists the tables whose rows the reader may all read (their owners, llm_cost_admin, tables readable without row-level security).';

ALTER VIEW llm_cost.unpriced_models SET (security_invoker = true);

CREATE OR REPLACE FUNCTION llm_cost.track(
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
    -- The rollup trigger of a Citus distributed table carries the column mapping.
    IF pg_catalog.to_regclass('llm_cost.rollups') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM llm_cost.rollups r WHERE r.source = log_table) THEN
            PERFORM llm_cost._rollup_refresh_triggers(log_table);
        END IF;
    END IF;
    RETURN result;
END $$;

CREATE OR REPLACE FUNCTION llm_cost._rollup_keys(r llm_cost.rollups) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.group_by || coalesce((SELECT ARRAY[d.dist_col] FROM llm_cost._citus_distribution(r.stripes) d
                                    WHERE d.dist_col IS NOT NULL AND NOT d.dist_col = ANY (r.group_by)), '{}')
$$;

CREATE OR REPLACE FUNCTION llm_cost._rollup_select(r llm_cost.rollups, p_from text, p_sign text, p_stripe text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    period text;
    gcols text := '';
    keys text[] := llm_cost._rollup_keys(r);
    n int := coalesce(array_length(keys, 1), 0);
    at text;
BEGIN
    SELECT * INTO c FROM llm_cost._rollup_source_columns(r.source);
    at := llm_cost._event_time_sql(r.source, 't');
    period := format('date_trunc(%L, %s, %L)', r.grain, at, r.time_zone);
    FOR i IN 1 .. n LOOP
        gcols := gcols || format(', t.%I', llm_cost._rollup_group_column(r.source, keys[i]));
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

CREATE OR REPLACE FUNCTION llm_cost._rollup_upsert(r llm_cost.rollups, p_select text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    keys text := 'period_start';
    cols text[] := llm_cost._rollup_keys(r);
BEGIN
    FOR i IN 1 .. coalesce(array_length(cols, 1), 0) LOOP
        keys := keys || format(', %I', cols[i]);
    END LOOP;
    RETURN format(
        'INSERT INTO %s AS s (period_start, %s stripe, requests, input_tokens, output_tokens, cache_read_tokens, '
        'cache_write_tokens, cost_usd, unpriced_requests, error_requests, latency_ms_sum, latency_ms_max, first_seen, last_seen) '
        '%s ON CONFLICT (%s, stripe) DO UPDATE SET requests = s.requests + excluded.requests, '
        'input_tokens = s.input_tokens + excluded.input_tokens, output_tokens = s.output_tokens + excluded.output_tokens, '
        'cache_read_tokens = s.cache_read_tokens + excluded.cache_read_tokens, '
        'cache_write_tokens = s.cache_write_tokens + excluded.cache_write_tokens, cost_usd = s.cost_usd + excluded.cost_usd, '
        'unpriced_requests = s.unpriced_requests + excluded.unpriced_requests, '
        'error_requests = s.error_requests + excluded.error_requests, latency_ms_sum = s.latency_ms_sum + excluded.latency_ms_sum, '
        'latency_ms_max = greatest(s.latency_ms_max, excluded.latency_ms_max), '
        'first_seen = least(s.first_seen, excluded.first_seen), last_seen = greatest(s.last_seen, excluded.last_seen)',
        r.stripes,
        (SELECT coalesce(string_agg(format('%I, ', g), ''), '') FROM unnest(cols) g),
        p_select, keys);
END $$;

CREATE OR REPLACE FUNCTION llm_cost._rollup_refresh_triggers(p_source regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    arg text := '';
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS llm_cost_rollup ON %s', p_source);
    IF EXISTS (SELECT 1 FROM llm_cost.rollups WHERE source = p_source) THEN
        -- On a Citus distributed source the trigger fires on the shards, whose node has no
        -- registry: it gets the definitions as its argument, once every table of sums is
        -- distributed with it. Until then (rollups made before the table was distributed) it
        -- has none, and the shards refuse rows rather than leave the rollups short of them
        -- (llm_cost.distribute_rollups).
        IF (SELECT d.method FROM llm_cost._citus_distribution(p_source) d) = 'h'
           AND NOT EXISTS (SELECT 1 FROM llm_cost.rollups x
                            WHERE x.source = p_source
                              AND (SELECT s.method FROM llm_cost._citus_distribution(x.stripes) s) IS DISTINCT FROM 'h') THEN
            arg := pg_catalog.quote_literal(llm_cost._rollup_shard_args(p_source)::text);
        END IF;
        -- On a partitioned source an UPDATE that changes the partition key is a DELETE in one
        -- partition and an INSERT in another: the trigger sees the DELETE too (and ignores every
        -- other one: rollups outlive raw rows).
        EXECUTE format('CREATE TRIGGER llm_cost_rollup AFTER INSERT OR UPDATE%s ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION llm_cost.rollup_row_trigger(%s)',
                       CASE WHEN (SELECT relkind FROM pg_catalog.pg_class WHERE oid = p_source) = 'p'
                            THEN ' OR DELETE' ELSE '' END,
                       p_source, arg);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION llm_cost._rollup_shard_args(p_source regclass) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    c record;
    r llm_cost.rollups;
    keys text[];
    defs jsonb := '[]';
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_source;
    SELECT * INTO c FROM llm_cost._rollup_source_columns(p_source);
    FOR r IN SELECT * FROM llm_cost.rollups WHERE source = p_source ORDER BY id LOOP
        IF (SELECT d.method FROM llm_cost._citus_distribution(r.stripes) d) IS DISTINCT FROM 'h' THEN
            RAISE EXCEPTION 'llm_cost: rollup % of the distributed table % has a table of sums Citus does not distribute (it was created before the table was distributed)', r.rollup, p_source
                  USING ERRCODE = 'object_not_in_prerequisite_state',
                        HINT = 'Call llm_cost.distribute_rollups() on the table (or drop the rollup and create it again).';
        END IF;
        keys := llm_cost._rollup_keys(r);
        defs := defs || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'id', r.id, 'grain', r.grain, 'time_zone', r.time_zone,
            'groups', (SELECT pg_catalog.jsonb_agg(llm_cost._rollup_group_column(p_source, k.k) ORDER BY k.o)
                         FROM unnest(keys) WITH ORDINALITY k(k, o)),
            'stripes', (SELECT format('%I.%I', n.nspname, x.relname) FROM pg_catalog.pg_class x
                          JOIN pg_catalog.pg_namespace n ON n.oid = x.relnamespace WHERE x.oid = r.stripes),
            'stripes_groups', pg_catalog.to_jsonb(keys)));
    END LOOP;
    RETURN pg_catalog.jsonb_build_object(
        'time', c.time_col, 'cost', c.cost_col, 'model', c.model_col, 'cost_source', t.cost_source_column,
        'input', c.tok_in, 'output', c.tok_out, 'cache_read', c.tok_cr, 'cache_write', c.tok_cw,
        'error', c.error_col, 'latency', c.latency_col, 'cost_default', t.cost_default::text,
        'zone', pg_catalog.to_jsonb(t) ->> 'time_zone', 'rollups', defs);
END $$;

CREATE OR REPLACE FUNCTION llm_cost._attnums(p_rel regclass, p_names text[]) RETURNS int2[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT a.attnum FROM unnest(p_names) WITH ORDINALITY n(name, ord)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = p_rel AND a.attname = n.name AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY n.ord)
$$;

CREATE OR REPLACE FUNCTION llm_cost._stripes_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['period_start', 'stripe', 'requests', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                 'cache_write_tokens', 'cost_usd', 'unpriced_requests', 'error_requests', 'latency_ms_sum',
                 'latency_ms_max', 'first_seen', 'last_seen']
$$;

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
        group_attnums := llm_cost._attnums(p_rel, ARRAY(SELECT llm_cost._rollup_group_column(p_source, g.name)
                                                          FROM unnest(r.group_by) WITH ORDINALITY g(name, ord) ORDER BY g.ord));
        time_att := (llm_cost._attnums(p_rel, ARRAY[c.time_col]))[1];
        cost_att := (llm_cost._attnums(p_rel, ARRAY[c.cost_col]))[1];
        model_att := (llm_cost._attnums(p_rel, ARRAY[c.model_col]))[1];
        source_att := (llm_cost._attnums(p_rel, ARRAY[t.cost_source_column]))[1];
        in_att := (llm_cost._attnums(p_rel, ARRAY[c.tok_in]))[1];
        out_att := (llm_cost._attnums(p_rel, ARRAY[c.tok_out]))[1];
        cr_att := (llm_cost._attnums(p_rel, ARRAY[c.tok_cr]))[1];
        cw_att := (llm_cost._attnums(p_rel, ARRAY[c.tok_cw]))[1];
        error_att := (llm_cost._attnums(p_rel, ARRAY[c.error_col]))[1];
        latency_att := (llm_cost._attnums(p_rel, ARRAY[c.latency_col]))[1];
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
        stripes_group_attnums := llm_cost._attnums(r.stripes, r.group_by);
        stripes_attnums := llm_cost._attnums(r.stripes, llm_cost._stripes_columns());
        RETURN NEXT;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION llm_cost._rollup_defs(regclass, regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION llm_cost._rollup_defs_shard(p_rel regclass, p_root regclass, p_defs jsonb)
RETURNS TABLE (id bigint, grain text, time_zone text, group_attnums int2[],
               time_att int2, cost_att int2, model_att int2, source_att int2,
               in_att int2, out_att int2, cr_att int2, cw_att int2, error_att int2, latency_att int2,
               stripes oid, stripes_group_attnums int2[], stripes_attnums int2[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me record;
    d jsonb;
    shell regclass;
    sid bigint;
BEGIN
    SELECT * INTO me FROM llm_cost._citus_shard_logical(p_root);
    IF me.logical IS NULL THEN
        RAISE EXCEPTION 'llm_cost: % is not a shard of a Citus distributed table, but its rollup trigger is one for shards', p_root
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Call llm_cost.create_rollup() again, or drop the trigger llm_cost_rollup of this table.';
    END IF;
    FOR d IN SELECT x FROM pg_catalog.jsonb_array_elements(p_defs -> 'rollups') x LOOP
        id := (d ->> 'id')::bigint; grain := d ->> 'grain'; time_zone := d ->> 'time_zone';
        group_attnums := llm_cost._attnums(p_rel, ARRAY(SELECT x.g FROM pg_catalog.jsonb_array_elements_text(d -> 'groups') WITH ORDINALITY x(g, o) ORDER BY x.o));
        time_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'time']))[1];
        cost_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'cost']))[1];
        model_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'model']))[1];
        source_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'cost_source']))[1];
        in_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'input']))[1];
        out_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'output']))[1];
        cr_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'cache_read']))[1];
        cw_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'cache_write']))[1];
        error_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'error']))[1];
        latency_att := (llm_cost._attnums(p_rel, ARRAY[p_defs ->> 'latency']))[1];
        shell := pg_catalog.to_regclass(d ->> 'stripes');
        sid := NULL;
        -- The argument is the trigger's, which whoever owns the source could write: it may only
        -- name tables of sums of the source's owner (as create_rollup checks on the coordinator).
        IF shell IS NOT NULL AND NOT pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = me.logical),
                                                            (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = shell), 'USAGE') THEN
            RAISE EXCEPTION 'llm_cost: the rollup trigger of % names %, which its owner does not own', me.logical, shell
                  USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF shell IS NOT NULL THEN
            EXECUTE 'SELECT s.shardid FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = $1 AND s.shardminvalue = $2'
               INTO sid USING shell, me.min_value;
        END IF;
        stripes := CASE WHEN sid IS NOT NULL THEN llm_cost._citus_shard_rel(shell, sid) END;
        IF stripes IS NULL THEN
            RAISE EXCEPTION 'llm_cost: rollup % has no shard of its table of sums % next to shard % on this node', id, d ->> 'stripes', p_root
                  USING ERRCODE = 'object_not_in_prerequisite_state',
                        HINT = 'Its table of sums must stay co-located with the source (Citus colocate_with); recreate the rollup.';
        END IF;
        stripes_group_attnums := llm_cost._attnums(stripes, ARRAY(SELECT x.g FROM pg_catalog.jsonb_array_elements_text(d -> 'stripes_groups') WITH ORDINALITY x(g, o) ORDER BY x.o));
        stripes_attnums := llm_cost._attnums(stripes, llm_cost._stripes_columns());
        RETURN NEXT;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION llm_cost._rollup_defs_shard(regclass, regclass, jsonb) FROM PUBLIC;

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
    citus      record;
    dist_typ   text;
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

    -- Citus: the sums of a distributed source are distributed on the same column, co-located
    -- with it (a shard's trigger writes the shard of sums on its own node). A rollup that does
    -- not group by that column keeps it as a key of its sums; the view adds them up.
    SELECT * INTO citus FROM llm_cost._citus_distribution(source);
    IF citus.method IS NOT NULL AND citus.method <> 'h' THEN
        RAISE EXCEPTION 'llm_cost: rollups of a Citus % table are not supported (its triggers fire on every copy of it)', citus.kind
              USING ERRCODE = 'feature_not_supported',
                    HINT = 'Roll up a distributed table (create_distributed_table) or a plain one.';
    END IF;
    IF citus.dist_col IS NOT NULL AND NOT citus.dist_col = ANY (group_by) THEN
        IF citus.dist_col = ANY (reserved) THEN
            RAISE EXCEPTION 'cannot roll up % without grouping by its distribution column "%": a rollup has a column of that name', source, citus.dist_col
                  USING ERRCODE = 'duplicate_column', HINT = 'Add it to group_by.';
        END IF;
        SELECT format_type(a.atttypid, a.atttypmod) INTO dist_typ
          FROM pg_catalog.pg_attribute a WHERE a.attrelid = source AND a.attname = citus.dist_col AND NOT a.attisdropped;
        cols := cols || format('%I %s, ', citus.dist_col, dist_typ);
        keys := keys || format(', %I', citus.dist_col);
    END IF;

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
    IF citus.dist_col IS NOT NULL THEN
        EXECUTE format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
                       stripes_ident, citus.dist_col, source::text);
    END IF;

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
COMMENT ON FUNCTION llm_cost.create_rollup(text, regclass, text, text[], text) IS
'Creates a rollup view (in the source''s schema unless name is qualified) of requests, tokens, cost, unpriced and error requests and latency per period (hour, day, week, month) and group_by columns; backfills it and keeps it exact on every insert and update.';

CREATE OR REPLACE FUNCTION llm_cost.drop_rollup(name regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
BEGIN
    SELECT * INTO r FROM llm_cost.rollups WHERE rollup = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an llm_cost rollup', name USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = name), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to drop it', name USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM llm_cost._registry_delete('rollups', r.rollup::oid);
    -- (The view first: Citus drops a view of a distributed table only before any parallel
    -- command of the transaction, such as the trigger's propagation.)
    EXECUTE format('DROP VIEW %s', r.rollup);
    EXECUTE format('DROP TABLE %s', r.stripes);
    IF r.source IS NOT NULL THEN
        PERFORM llm_cost._rollup_refresh_triggers(r.source);
    END IF;
END $$;
COMMENT ON FUNCTION llm_cost.drop_rollup(regclass) IS 'Drops a rollup: its view, its partial sums and its share of the source''s triggers.';

CREATE OR REPLACE FUNCTION llm_cost._reprice_impl(source regclass, "from" timestamptz, "to" timestamptz,
                                       OUT rows_changed bigint, OUT cost_difference numeric)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    which text;
    cond text;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', source USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF t.time_column IS NULL THEN
        RAISE EXCEPTION 'table % has no time column in its llm_cost tracking', source USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF t.cost_source_column IS NOT NULL THEN
        which := format('s.%I IN (''estimated'', ''unpriced'')', t.cost_source_column);
    ELSE
        -- Without a cost_source column, estimated and provided costs cannot be told apart after
        -- a price change: only unpriced rows (cost NULL or the column default) are re-estimated.
        which := format('(s.%I IS NULL OR s.%I = %s)', t.cost_column, t.cost_column, coalesce(t.cost_default::text, 'NULL'));
        RAISE NOTICE 'table % has no cost_source column: only its unpriced rows are re-estimated', source;
    END IF;
    -- The rows to re-estimate (alias s).
    cond := format('%s AND s.%I >= %s AND s.%I < %s', which, t.time_column, llm_cost._event_time_literal(source, "from"),
                   t.time_column, llm_cost._event_time_literal(source, "to"));
    IF (SELECT d.method FROM llm_cost._citus_distribution(source) d) IS NOT NULL THEN
        -- Citus runs one UPDATE on every shard (no row locks or ctid joins across them): the
        -- table is locked against writers, the old sum read, the rows re-estimated. rows_changed
        -- counts the rows re-estimated.
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', source);
        EXECUTE format('SELECT coalesce(sum(s.%I), 0) FROM %s s WHERE %s', t.cost_column, source, cond) INTO cost_difference;
        EXECUTE format('WITH upd AS (UPDATE %2$s s SET %1$I = NULL WHERE %3$s RETURNING s.%1$I AS new_cost) '
                       'SELECT count(*), coalesce(sum(new_cost), 0) - $1 FROM upd', t.cost_column, source, cond)
           INTO rows_changed, cost_difference USING cost_difference;
        RETURN;
    END IF;
    EXECUTE format(
        'WITH old AS (SELECT s.tableoid AS t, s.ctid AS c, s.%1$I AS old_cost FROM %2$s s WHERE %3$s FOR UPDATE), '
        'upd AS (UPDATE %2$s s SET %1$I = NULL FROM old WHERE s.tableoid = old.t AND s.ctid = old.c RETURNING old.old_cost, s.%1$I AS new_cost) '
        'SELECT count(*) FILTER (WHERE old_cost IS DISTINCT FROM new_cost), coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0) FROM upd',
        t.cost_column, source, cond)
    INTO rows_changed, cost_difference;
END $$;

CREATE OR REPLACE FUNCTION llm_cost.distribute_rollups(source regclass) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
    r llm_cost.rollups;
    n integer := 0;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'llm_cost.distribute_rollups: source must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = source), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to distribute its rollups', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO d FROM llm_cost._citus_distribution(source);
    IF d.method IS DISTINCT FROM 'h' THEN
        RAISE EXCEPTION '% is not a Citus distributed table', source
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Distribute it with create_distributed_table() first.';
    END IF;
    FOR r IN SELECT * FROM llm_cost.rollups x WHERE x.source = distribute_rollups.source ORDER BY x.id LOOP
        CONTINUE WHEN (SELECT s.method FROM llm_cost._citus_distribution(r.stripes) s) IS NOT DISTINCT FROM 'h';
        IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.stripes), 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of % to distribute it', r.stripes USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NOT d.dist_col = ANY (r.group_by) THEN
            RAISE EXCEPTION 'rollup % does not group by "%", the distribution column of %: its sums cannot follow the shards', r.rollup, d.dist_col, source
                  USING ERRCODE = 'feature_not_supported',
                        HINT = 'Drop it with llm_cost.drop_rollup() and create it again: a rollup made on a distributed table keeps that column as a key of its sums.';
        END IF;
        EXECUTE format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)', r.stripes, d.dist_col, source::text);
        EXECUTE format('SELECT pg_catalog.truncate_local_data_after_distributing_table(%L)', r.stripes);
        n := n + 1;
    END LOOP;
    PERFORM llm_cost._rollup_refresh_triggers(source);
    RETURN n;
END $$;
COMMENT ON FUNCTION llm_cost.distribute_rollups(regclass) IS
'Citus: distributes the rollups of a table that was distributed after they were made (their sums move into shards co-located with it) and feeds them from its shards. Each must group by the distribution column. Returns how many it distributed.';

CREATE OR REPLACE FUNCTION llm_cost._purge_batch(p_table regclass, p_time_col text, p_cutoff timestamptz, p_batch integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    cutoff text := llm_cost._event_time_literal(p_table, p_cutoff);  -- in the column's type and zone
BEGIN
    IF (SELECT d.method FROM llm_cost._citus_distribution(p_table) d) IS NOT NULL THEN
        RETURN llm_cost._purge_batch_citus(p_table, p_time_col, cutoff, p_batch);
    END IF;
    IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = p_table) = 'p' THEN
        EXECUTE format('DELETE FROM %1$s WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I LIMIT $1)',
                       p_table, p_time_col, cutoff) USING p_batch;
    ELSE
        EXECUTE format('DELETE FROM %1$s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I LIMIT $1))',
                       p_table, p_time_col, cutoff) USING p_batch;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION llm_cost._purge_batch_citus(p_table regclass, p_time_col text, p_cutoff text, p_batch integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    total bigint := 0;
    upto text;
BEGIN
    LOOP
        EXECUTE format('SELECT %2$I::text FROM %1$s WHERE %2$I < %3$s ORDER BY %2$I OFFSET $1 LIMIT 1', p_table, p_time_col, p_cutoff)
           INTO upto USING p_batch - total;
        IF upto IS NULL THEN
            EXECUTE format('DELETE FROM %1$s WHERE %2$I < %3$s', p_table, p_time_col, p_cutoff);
            GET DIAGNOSTICS n = ROW_COUNT;
            RETURN total + n;
        END IF;
        EXECUTE format('DELETE FROM %1$s WHERE %2$I < %3$s', p_table, p_time_col, pg_catalog.quote_literal(upto));
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            -- More than the rest of the batch share the oldest time: take them all.
            EXECUTE format('DELETE FROM %1$s WHERE %2$I <= %3$s', p_table, p_time_col, pg_catalog.quote_literal(upto));
            GET DIAGNOSTICS n = ROW_COUNT;
        END IF;
        total := total + n;
        EXIT WHEN total >= p_batch;
    END LOOP;
    RETURN total;
END $$;

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
                     'import_prices', 'distribute_rollups'))
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE '@omit%'
    LOOP
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', f.fn, E'@omit\n' || coalesce(f.d, ''));
    END LOOP;
END $$;
