-- llm_cost 0.1.0 -> 0.2.0: hardening (issue #13). Checked in CI: an install updated with this
-- script equals a fresh 0.2.0 install (tests/integration/test_hardening.py).
\echo Use "ALTER EXTENSION llm_cost UPDATE TO '0.2.0'" to load this file. \quit

-------------------------------------------------------------------------------------------------
-- New functions of the Rust library
-------------------------------------------------------------------------------------------------
-- llm_cost::features::maintenance::_as_table_owner
CREATE  FUNCTION "_as_table_owner"(
	"action" TEXT, /* & str */
	"table" oid, /* pg_sys :: Oid */
	"args" jsonb /* pgrx :: JsonB */
) RETURNS jsonb /* pgrx :: JsonB */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_as_table_owner_wrapper';

-- llm_cost::features::rollups::_flush_pending_sums
CREATE  FUNCTION "_flush_pending_sums"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_flush_pending_sums_wrapper';

-- llm_cost::features::retention::_preloaded
CREATE  FUNCTION "_preloaded"() RETURNS bool /* bool */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_preloaded_wrapper';

-- llm_cost::features::registry::_registry_delete
CREATE  FUNCTION "_registry_delete"(
	"registry_name" TEXT, /* & str */
	"key" oid /* pg_sys :: Oid */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_registry_delete_wrapper';

-- llm_cost::features::registry::_registry_put
CREATE  FUNCTION "_registry_put"(
	"registry_name" TEXT, /* & str */
	"row" jsonb /* pgrx :: JsonB */
) RETURNS jsonb /* pgrx :: JsonB */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_registry_put_wrapper';

-- llm_cost::features::retention::_retention_drop_partitions
CREATE  FUNCTION "_retention_drop_partitions"(
	"table" oid, /* pg_sys :: Oid */
	"time_col" TEXT, /* & str */
	"cutoff" timestamp with time zone /* pgrx :: datum :: TimestampWithTimeZone */
) RETURNS INT[] /* Vec < i32 > */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_retention_drop_partitions_wrapper';

-- llm_cost::features::retention::_retention_purge_batch
CREATE  FUNCTION "_retention_purge_batch"(
	"table" oid, /* pg_sys :: Oid */
	"time_col" TEXT, /* & str */
	"cutoff" timestamp with time zone, /* pgrx :: datum :: TimestampWithTimeZone */
	"batch" INT /* i32 */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_retention_purge_batch_wrapper';

-- _record_run: a Rust function now (checks the caller's rights over the table).
DROP FUNCTION llm_cost._record_run(oid, text, timestamptz, timestamptz, bigint, integer, text, text);
-- llm_cost::features::retention::_record_run
CREATE  FUNCTION "_record_run"(
	"table" oid, /* pg_sys :: Oid */
	"name" TEXT, /* & str */
	"started" timestamp with time zone, /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"cutoff" timestamp with time zone, /* Option < pgrx :: datum :: TimestampWithTimeZone > */
	"rows" bigint, /* i64 */
	"parts" INT, /* i32 */
	"error" TEXT, /* Option < & str > */
	"by" TEXT, /* & str */
	"skipped" INT DEFAULT 0 /* i32 */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_record_run_wrapper';

-------------------------------------------------------------------------------------------------
-- Registry tables: readable by all, written only through the API (src/registry.rs)
-------------------------------------------------------------------------------------------------
DROP POLICY tracked_tables_read ON llm_cost.tracked_tables;
DROP POLICY tracked_tables_owner ON llm_cost.tracked_tables;
ALTER TABLE llm_cost.tracked_tables DISABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE ON llm_cost.tracked_tables FROM PUBLIC;
DROP POLICY rollups_read ON llm_cost.rollups;
DROP POLICY rollups_owner ON llm_cost.rollups;
ALTER TABLE llm_cost.rollups DISABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE ON llm_cost.rollups FROM PUBLIC;
DROP POLICY retention_policies_read ON llm_cost.retention_policies;
DROP POLICY retention_policies_owner ON llm_cost.retention_policies;
ALTER TABLE llm_cost.retention_policies DISABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE ON llm_cost.retention_policies FROM PUBLIC;
DROP POLICY row_security_read ON llm_cost.row_security;
DROP POLICY row_security_owner ON llm_cost.row_security;
ALTER TABLE llm_cost.row_security DISABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE ON llm_cost.row_security FROM PUBLIC;

-------------------------------------------------------------------------------------------------
-- Usage logs (sql/usage.sql)
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.tracked_tables ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
COMMENT ON COLUMN llm_cost.tracked_tables.time_zone IS 'Zone in which a timestamp (without time zone) or date time column is read, whatever the writing session''s TimeZone (UTC unless track() was told another).';
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
CREATE FUNCTION llm_cost._may_see_table(p_table oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
                            OR (pg_catalog.has_table_privilege(current_user, c.oid, 'SELECT') AND NOT c.relrowsecurity)
                       FROM pg_catalog.pg_class c WHERE c.oid = p_table), false)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE (r.rolname = 'llm_cost_admin' AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
                       OR (r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls)))
$$;
ALTER TABLE llm_cost.unpriced_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY unpriced_stats_read ON llm_cost.unpriced_stats FOR SELECT USING (llm_cost._may_see_table(log_table));
CREATE OR REPLACE FUNCTION llm_cost._record_unpriced(p_table oid, p_model text, p_rows bigint, p_first timestamptz, p_last timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO llm_cost.unpriced_stats AS s (log_table, model, rows, first_seen, last_seen)
    SELECT t.log_table, p_model, p_rows, p_first, p_last
      FROM llm_cost.tracked_tables t WHERE t.log_table = p_table AND p_rows > 0
    ON CONFLICT (log_table, model) DO UPDATE
       SET rows = s.rows + excluded.rows,
           first_seen = least(s.first_seen, excluded.first_seen),
           last_seen = greatest(s.last_seen, excluded.last_seen);
$$;
REVOKE ALL ON FUNCTION llm_cost._record_unpriced(oid, text, bigint, timestamptz, timestamptz) FROM PUBLIC;
COMMENT ON VIEW llm_cost.unpriced_models IS 'Every model name that was logged without a price: how many rows, first and last event time. resolves_to_now is set once a price or alias exists; then run llm_cost.reprice() to price the stored rows. Lists the tables whose rows the reader may all read (their owners, llm_cost_admin, tables readable without row-level security).';
ALTER VIEW llm_cost.unpriced_models SET (security_invoker = true);
DROP FUNCTION llm_cost.track(regclass, text, text, text, text, text, text, text, text, boolean);
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
    time_zone                 text    DEFAULT 'UTC')
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
                                      cache_write_tokens_column, cost_column, time_column], NULL);
    EXECUTE format('CREATE TRIGGER llm_cost_price BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION llm_cost.usage_cost_trigger(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(update_cols) c), log_table,
                   model_column, input_tokens_column, output_tokens_column,
                   coalesce(cache_read_tokens_column, ''), coalesce(cache_write_tokens_column, ''),
                   cost_column, coalesce(time_column, ''), coalesce(provider_column, ''),
                   coalesce(source_col, ''), coalesce(default_value::text, ''), time_zone);
    EXECUTE format('CREATE TRIGGER llm_cost_unpriced AFTER INSERT OR UPDATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION llm_cost.usage_statement_end()', log_table);

    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.tracked_tables, llm_cost._registry_put('tracked_tables',
        pg_catalog.jsonb_build_object('log_table', log_table::oid, 'model_column', model_column,
            'input_tokens_column', input_tokens_column, 'output_tokens_column', output_tokens_column,
            'cache_read_tokens_column', cache_read_tokens_column, 'cache_write_tokens_column', cache_write_tokens_column,
            'cost_column', cost_column, 'cost_source_column', source_col, 'cost_default', default_value,
            'time_column', time_column, 'provider_column', provider_column, 'tracked_at', now(), 'time_zone', time_zone)));
    RETURN result;
END $$;
COMMENT ON FUNCTION llm_cost.track(regclass, text, text, text, text, text, text, text, text, boolean, text) IS
'Prices every row inserted into (or updated in) an existing usage-log table: checks the column mapping now, then installs the llm_cost triggers. Calling it again replaces the mapping. A timestamp (without time zone) or date time column is read in time_zone (UTC by default), whatever the writer''s TimeZone.';
CREATE OR REPLACE FUNCTION llm_cost.untrack(log_table regclass) RETURNS boolean
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
    EXECUTE format('DROP TRIGGER IF EXISTS llm_cost_price ON %s', log_table);
    EXECUTE format('DROP TRIGGER IF EXISTS llm_cost_unpriced ON %s', log_table);
    PERFORM llm_cost._registry_delete('tracked_tables', log_table::oid);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION llm_cost._forget_table(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION llm_cost._on_sql_drop() FROM PUBLIC;

-------------------------------------------------------------------------------------------------
-- Rollups (sql/rollups.sql)
-------------------------------------------------------------------------------------------------
CREATE FUNCTION llm_cost._rebuild_rollup_impl(name regclass, "from" timestamptz, "to" timestamptz)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
    c record;
    n bigint;
    from_p timestamptz;
    to_p timestamptz;
BEGIN
    SELECT * INTO r FROM llm_cost.rollups WHERE rollup = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an llm_cost rollup', name USING ERRCODE = 'undefined_object';
    END IF;
    IF r.source IS NULL THEN
        RAISE EXCEPTION 'the source of rollup % was dropped; nothing to rebuild from', name USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = r.source), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to rebuild its rollups', r.source USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO c FROM llm_cost._rollup_source_columns(r.source);
    -- Whole periods: from the start of the period containing "from" to the end of the one containing "to".
    from_p := CASE WHEN isfinite("from") THEN date_trunc(r.grain, "from", r.time_zone) ELSE "from" END;
    to_p := CASE WHEN NOT isfinite("to") THEN "to"
                 WHEN date_trunc(r.grain, "to", r.time_zone) = "to" THEN "to"
                 ELSE (date_trunc(r.grain, "to", r.time_zone) AT TIME ZONE r.time_zone + ('1 ' || r.grain)::interval) AT TIME ZONE r.time_zone END;
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', r.source);
    -- Sums this transaction's rows left pending (rows inserted straight into a partition are
    -- written at commit) go in first: the DELETE and the recount below then cover them once.
    PERFORM llm_cost._flush_pending_sums();
    EXECUTE format('DELETE FROM %s WHERE period_start >= %L AND period_start < %L', r.stripes, from_p, to_p);
    EXECUTE llm_cost._rollup_upsert(r, llm_cost._rollup_select(r,
        format('(SELECT * FROM %s WHERE %I >= %s AND %I < %s)', r.source, c.time_col, llm_cost._event_time_literal(r.source, from_p),
               c.time_col, llm_cost._event_time_literal(r.source, to_p)), '1', '0'));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
CREATE FUNCTION llm_cost._reprice_impl(source regclass, "from" timestamptz, "to" timestamptz,
                                       OUT rows_changed bigint, OUT cost_difference numeric)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    which text;
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
    EXECUTE format(
        'WITH old AS (SELECT s.tableoid AS t, s.ctid AS c, s.%1$I AS old_cost FROM %2$s s WHERE %3$s AND s.%4$I >= %5$s AND s.%4$I < %6$s FOR UPDATE), '
        'upd AS (UPDATE %2$s s SET %1$I = NULL FROM old WHERE s.tableoid = old.t AND s.ctid = old.c RETURNING old.old_cost, s.%1$I AS new_cost) '
        'SELECT count(*) FILTER (WHERE old_cost IS DISTINCT FROM new_cost), coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0) FROM upd',
        t.cost_column, source, which, t.time_column, llm_cost._event_time_literal(source, "from"), llm_cost._event_time_literal(source, "to"))
    INTO rows_changed, cost_difference;
END $$;
CREATE OR REPLACE FUNCTION llm_cost._rollup_source_columns(p_source regclass,
    OUT time_col text, OUT cost_col text, OUT model_col text, OUT unpriced_expr text,
    OUT tok_in text, OUT tok_out text, OUT tok_cr text, OUT tok_cw text,
    OUT error_col text, OUT latency_col text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
BEGIN
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = p_source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', p_source
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() on it first.';
    END IF;
    IF t.time_column IS NULL THEN
        RAISE EXCEPTION 'table % has no time column in its llm_cost tracking; rollups need one', p_source
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() again with time_column.';
    END IF;
    time_col := t.time_column;
    cost_col := t.cost_column;
    model_col := t.model_column;
    tok_in := t.input_tokens_column;
    tok_out := t.output_tokens_column;
    tok_cr := t.cache_read_tokens_column;
    tok_cw := t.cache_write_tokens_column;
    -- Without a cost_source column, the cost trigger stores NULL or the cost column's default for
    -- a row it cannot price: a cost equal to the default is unpriced unless it is exactly the
    -- row's estimate (src/features/rollups.rs add_row says the same).
    unpriced_expr := CASE WHEN t.cost_source_column IS NOT NULL
                          THEN format('t.%I = ''unpriced''', t.cost_source_column)
                          WHEN t.cost_default IS NULL
                          THEN format('t.%I IS NULL', t.cost_column)
                          ELSE format('(t.%1$I IS NULL OR (t.%1$I = %2$s AND llm_cost.estimate_cost(t.%3$I, coalesce(t.%4$I, 0), coalesce(t.%5$I, 0), %6$s, %7$s, coalesce(%8$s, now()))::%9$s IS DISTINCT FROM t.%1$I))',
                                      t.cost_column, t.cost_default, t.model_column, t.input_tokens_column, t.output_tokens_column,
                                      CASE WHEN t.cache_read_tokens_column IS NULL THEN '0' ELSE format('coalesce(t.%I, 0)', t.cache_read_tokens_column) END,
                                      CASE WHEN t.cache_write_tokens_column IS NULL THEN '0' ELSE format('coalesce(t.%I, 0)', t.cache_write_tokens_column) END,
                                      llm_cost._event_time_sql(p_source, 't'),
                                      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                                        WHERE a.attrelid = p_source AND a.attname = t.cost_column AND NOT a.attisdropped)) END;
    SELECT attname INTO error_col FROM pg_catalog.pg_attribute
     WHERE attrelid = p_source AND attname IN ('error', 'error_message') AND NOT attisdropped ORDER BY attname LIMIT 1;
    SELECT attname INTO latency_col FROM pg_catalog.pg_attribute
     WHERE attrelid = p_source AND attname IN ('latency_ms', 'duration_ms') AND NOT attisdropped
       AND atttypid IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) ORDER BY attname DESC LIMIT 1;
END $$;
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
        gcols := gcols || format(', t.%I', r.group_by[i]);
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
                                 JOIN pg_catalog.pg_attribute a ON a.attrelid = p_rel AND a.attname = g.name ORDER BY g.ord);
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

    -- period_end is derived from period_start in the view.
    EXECUTE format(
        'CREATE VIEW %s AS SELECT s.period_start, '
        '(s.period_start AT TIME ZONE %L + interval %L) AT TIME ZONE %L AS period_end, %s'
        'sum(s.requests)::bigint AS requests, sum(s.input_tokens)::bigint AS input_tokens, '
        'sum(s.output_tokens)::bigint AS output_tokens, sum(s.cache_read_tokens)::bigint AS cache_read_tokens, '
        'sum(s.cache_write_tokens)::bigint AS cache_write_tokens, '
        '(sum(s.input_tokens) + sum(s.output_tokens) + sum(s.cache_read_tokens) + sum(s.cache_write_tokens))::bigint AS total_tokens, '
        'sum(s.cost_usd) AS cost_usd, sum(s.unpriced_requests)::bigint AS unpriced_requests, '
        '%s %s min(s.first_seen) AS first_seen, max(s.last_seen) AS last_seen, '
        'jsonb_build_array(s.period_start%s)::text AS row_key '
        'FROM %s s GROUP BY s.period_start%s HAVING sum(s.requests) <> 0',
        view_ident, time_zone, '1 ' || grain, time_zone, vcols,
        CASE WHEN src.error_col IS NULL THEN '' ELSE 'sum(s.error_requests)::bigint AS error_requests, ' END,
        CASE WHEN src.latency_col IS NULL THEN '' ELSE 'sum(s.latency_ms_sum)::bigint AS latency_ms_sum, max(s.latency_ms_max) AS latency_ms_max, ' END,
        (SELECT coalesce(string_agg(format(', s.%I', x), ''), '') FROM unnest(group_by) x),
        stripes_ident,
        (SELECT coalesce(string_agg(format(', s.%I', x), ''), '') FROM unnest(group_by) x));
    r := pg_catalog.jsonb_populate_record(NULL::llm_cost.rollups, llm_cost._registry_put('rollups',
        pg_catalog.jsonb_build_object('rollup', view_ident::regclass::oid, 'stripes', stripes_ident::regclass::oid,
                                      'source', source::oid, 'grain', grain, 'group_by', group_by, 'time_zone', time_zone)));
    PERFORM llm_cost._rollup_comment(r);

    -- Backfill from the rows already there (stripe 0), then start following new rows.
    EXECUTE llm_cost._rollup_upsert(r, llm_cost._rollup_select(r, source::text, '1', '0'));
    PERFORM llm_cost._rollup_refresh_triggers(source);
    RETURN r.rollup;
END $$;
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
    IF r.source IS NOT NULL THEN
        PERFORM llm_cost._rollup_refresh_triggers(r.source);
    END IF;
    EXECUTE format('DROP VIEW %s', r.rollup);
    EXECUTE format('DROP TABLE %s', r.stripes);
END $$;
CREATE OR REPLACE FUNCTION llm_cost.rebuild_rollup(name regclass, "from" timestamptz DEFAULT '-infinity', "to" timestamptz DEFAULT 'infinity')
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
BEGIN
    SELECT * INTO r FROM llm_cost.rollups WHERE rollup = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an llm_cost rollup', name USING ERRCODE = 'undefined_object';
    END IF;
    IF r.source IS NULL THEN
        RAISE EXCEPTION 'the source of rollup % was dropped; nothing to rebuild from', name USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN (llm_cost._as_table_owner('rebuild_rollup', r.source::oid,
                                     pg_catalog.jsonb_build_object('rollup', name::oid, 'from', "from", 'to', "to")) ->> 'n')::bigint;
END $$;
CREATE OR REPLACE FUNCTION llm_cost.reprice(source regclass, "from" timestamptz DEFAULT '-infinity', "to" timestamptz DEFAULT 'infinity',
                                 OUT rows_changed bigint, OUT cost_difference numeric)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j jsonb;
BEGIN
    IF source IS NULL THEN
        RAISE EXCEPTION 'llm_cost.reprice: source must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    j := llm_cost._as_table_owner('reprice', source::oid, pg_catalog.jsonb_build_object('from', "from", 'to', "to"));
    rows_changed := (j ->> 'rows_changed')::bigint;
    cost_difference := (j ->> 'cost_difference')::numeric;
END $$;
COMMENT ON FUNCTION llm_cost.rebuild_rollup(regclass, timestamptz, timestamptz) IS
'Recomputes the periods of a rollup that start in [from, to) from the raw rows still present; returns the number of summary rows written. Periods whose raw rows were purged come back smaller: rollups are a ledger, rebuild only what you still have. Runs as the source table''s owner (the caller must have its rights).';
COMMENT ON FUNCTION llm_cost.reprice(regclass, timestamptz, timestamptz) IS
'Re-estimates the estimated and unpriced (never provided) costs of rows in [from, to) with the catalog as it is now, fixing every rollup in the same transaction. Returns how many rows changed and by how much the total cost changed (USD). Runs as the table''s owner, under a security-restricted operation (the caller must have its rights).';
REVOKE ALL ON FUNCTION llm_cost._rollup_defs(regclass, regclass) FROM PUBLIC;
-- Stripes tables get a replica identity (logical replication, item 13).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT stripes FROM llm_cost.rollups LOOP
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', r.stripes);
    END LOOP;
END $$;
CREATE FUNCTION llm_cost._on_alter_table() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cmd record;
    r llm_cost.rollups;
    t llm_cost.tracked_tables;
    bad text;
    ints regtype[] := ARRAY['smallint', 'integer', 'bigint']::regtype[];
    texts regtype[] := ARRAY['text', 'character varying', 'character']::regtype[];
    col record;
BEGIN
    IF pg_catalog.to_regclass('llm_cost.rollups') IS NULL THEN
        RETURN;   -- the extension is being dropped or created
    END IF;
    FOR cmd IN SELECT DISTINCT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
                WHERE c.object_type IN ('table', 'table column') LOOP
        FOR r IN SELECT * FROM llm_cost.rollups WHERE source = cmd.objid LOOP
            SELECT string_agg(format('%I (%s, summed as %s)', g.name, format_type(sa.atttypid, sa.atttypmod),
                                     format_type(ta.atttypid, ta.atttypmod)), ', ') INTO bad
              FROM unnest(r.group_by) g(name)
              JOIN pg_catalog.pg_attribute sa ON sa.attrelid = r.source AND sa.attname = g.name AND NOT sa.attisdropped
              JOIN pg_catalog.pg_attribute ta ON ta.attrelid = r.stripes AND ta.attname = g.name AND NOT ta.attisdropped
             WHERE (sa.atttypid, sa.atttypmod) IS DISTINCT FROM (ta.atttypid, ta.atttypmod);
            IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'cannot change the type of a column of % that llm_cost rollup % groups by: %', r.source, r.rollup, bad
                      USING ERRCODE = 'feature_not_supported',
                            HINT = 'Drop the rollup with llm_cost.drop_rollup(), change the column, then create the rollup again (it backfills from the rows).';
            END IF;
        END LOOP;
        SELECT * INTO t FROM llm_cost.tracked_tables WHERE log_table = cmd.objid;
        CONTINUE WHEN NOT FOUND;
        FOR col IN SELECT v.name, v.role, v.types FROM (VALUES
                (t.model_column, 'model', texts), (t.input_tokens_column, 'input tokens', ints),
                (t.output_tokens_column, 'output tokens', ints), (t.cache_read_tokens_column, 'cache read tokens', ints),
                (t.cache_write_tokens_column, 'cache write tokens', ints), (t.cost_column, 'cost', ARRAY['numeric']::regtype[]),
                (t.time_column, 'time', ARRAY['timestamptz', 'timestamp', 'date']::regtype[]), (t.provider_column, 'provider', texts)) v(name, role, types)
             WHERE v.name IS NOT NULL
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.log_table AND a.attname = v.name
                                                                   AND a.attnum > 0 AND NOT a.attisdropped) LOOP
            PERFORM llm_cost._column(t.log_table, col.name, col.role, col.types, false);
        END LOOP;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION llm_cost._on_alter_table() FROM PUBLIC;
CREATE EVENT TRIGGER llm_cost_alter_table ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION llm_cost._on_alter_table();

-------------------------------------------------------------------------------------------------
-- Retention (sql/retention.sql)
-------------------------------------------------------------------------------------------------
ALTER TABLE llm_cost.retention_runs ADD COLUMN partitions_skipped integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN llm_cost.retention_runs.partitions_skipped IS 'Old partitions not dropped because their lock was not free within llm_cost.retention_lock_timeout (a reader held the table); the next run tries again.';
ALTER TABLE llm_cost.retention_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY retention_runs_read ON llm_cost.retention_runs FOR SELECT USING (llm_cost._may_see_table(table_oid));
CREATE OR REPLACE VIEW llm_cost.retention_last_runs AS
SELECT DISTINCT ON (r.table_oid) r.table_name, r.table_oid, r.started_at, r.finished_at, r.cutoff, r.rows_deleted,
       r.partitions_dropped, r.error, r.run_by, p.keep, r.partitions_skipped
  FROM llm_cost.retention_runs r
  LEFT JOIN llm_cost.retention_policies p ON p.log_table = r.table_oid
 ORDER BY r.table_oid, r.started_at DESC;
COMMENT ON VIEW llm_cost.retention_last_runs IS 'The last purge of each table (of the tables whose rows the reader may all read).';
ALTER VIEW llm_cost.retention_last_runs SET (security_invoker = true);
CREATE OR REPLACE FUNCTION llm_cost._purge_batch(p_table regclass, p_time_col text, p_cutoff timestamptz, p_batch integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    cutoff text := llm_cost._event_time_literal(p_table, p_cutoff);  -- in the column's type and zone
BEGIN
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
CREATE OR REPLACE FUNCTION llm_cost.set_retention(log_table regclass, keep interval) RETURNS llm_cost.retention_policies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    result llm_cost.retention_policies;
BEGIN
    IF log_table IS NULL OR keep IS NULL THEN
        RAISE EXCEPTION 'llm_cost.set_retention: log_table and keep must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', keep USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = log_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to set its retention', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO t FROM llm_cost.tracked_tables WHERE tracked_tables.log_table = set_retention.log_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked by llm_cost', log_table
              USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call llm_cost.track() on it first.';
    END IF;
    IF t.time_column IS NULL THEN
        RAISE EXCEPTION 'table % has no time column in its llm_cost tracking; retention needs one', log_table
              USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.retention_policies, llm_cost._registry_put('retention_policies',
        pg_catalog.jsonb_build_object('log_table', log_table::oid, 'keep', keep)));
    IF NOT llm_cost._preloaded() THEN
        RAISE NOTICE 'llm_cost is not in shared_preload_libraries: nothing purges automatically; call llm_cost.run_retention() (e.g. from pg_cron)';
    END IF;
    RETURN result;
END $$;
CREATE OR REPLACE FUNCTION llm_cost.drop_retention(log_table regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = log_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table % to drop its retention', log_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN llm_cost._registry_delete('retention_policies', log_table::oid);
END $$;
DROP FUNCTION llm_cost._drop_old_partitions(regclass, text, timestamptz);
CREATE FUNCTION llm_cost._drop_old_partitions(p_table regclass, p_time_col text, p_cutoff timestamptz,
                                              OUT dropped integer, OUT skipped integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part record;
    upper_bound timestamptz;
    zone text := (SELECT t.time_zone FROM llm_cost.tracked_tables t WHERE t.log_table = p_table);
    typ oid := (SELECT atttypid FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = p_time_col AND NOT attisdropped);
BEGIN
    dropped := 0; skipped := 0;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table pt
                    WHERE pt.partrelid = p_table AND pt.partstrat = 'r' AND pt.partnatts = 1
                      AND pt.partattrs[0] = (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = p_table AND attname = p_time_col)) THEN
        RETURN;
    END IF;
    FOR part IN SELECT c.oid::regclass AS rel, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
                  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = p_table AND c.relkind = 'r' LOOP
        CONTINUE WHEN part.bound = 'DEFAULT';
        -- Bounds of a timestamp or date column are local times in the table's zone.
        upper_bound := CASE WHEN typ = 'timestamptz'::regtype THEN substring(part.bound FROM 'TO \(''([^'']*)''\)')::timestamptz
                            ELSE substring(part.bound FROM 'TO \(''([^'']*)''\)')::timestamp AT TIME ZONE coalesce(zone, 'UTC') END;
        IF upper_bound IS NOT NULL AND upper_bound <= p_cutoff THEN
            BEGIN
                EXECUTE format('DROP TABLE %s', part.rel);
                dropped := dropped + 1;
            EXCEPTION WHEN lock_not_available THEN
                skipped := skipped + 1;
            END;
        END IF;
    END LOOP;
END $$;
CREATE FUNCTION llm_cost._record_run_as_owner(p_table oid, p_name text, p_started timestamptz, p_cutoff timestamptz,
                                              p_rows bigint, p_parts integer, p_error text, p_by text, p_skipped integer)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO llm_cost.retention_runs (table_oid, table_name, started_at, finished_at, cutoff, rows_deleted,
                                         partitions_dropped, error, run_by, partitions_skipped)
    SELECT p_table, p_name, p_started, clock_timestamp(), p_cutoff, p_rows, p_parts, p_error, p_by, p_skipped
     WHERE EXISTS (SELECT 1 FROM llm_cost.retention_policies WHERE log_table = p_table);
    DELETE FROM llm_cost.retention_runs
     WHERE started_at < now() - make_interval(days => greatest(coalesce(nullif(pg_catalog.current_setting('llm_cost.retention_history_days', true), '')::int, 30), 1));
$$;
REVOKE ALL ON FUNCTION llm_cost._record_run_as_owner(oid, text, timestamptz, timestamptz, bigint, integer, text, text, integer) FROM PUBLIC;
DROP FUNCTION llm_cost.run_retention();
CREATE FUNCTION llm_cost.run_retention()
RETURNS TABLE (log_table regclass, cutoff timestamptz, rows_deleted bigint, partitions_dropped integer, error text,
               partitions_skipped integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
    target record;
    started timestamptz;
    n bigint;
    parts integer[];
    batch integer := greatest(coalesce(nullif(pg_catalog.current_setting('llm_cost.retention_batch_size', true), '')::int, 10000), 1);
    caller name := current_user;
BEGIN
    FOR p IN SELECT rp.log_table AS rel, c.relowner
               FROM llm_cost.retention_policies rp JOIN pg_catalog.pg_class c ON c.oid = rp.log_table
              ORDER BY rp.log_table::text LOOP
        CONTINUE WHEN NOT pg_catalog.pg_has_role(caller, p.relowner, 'USAGE');
        started := clock_timestamp();
        log_table := p.rel; rows_deleted := 0; partitions_dropped := 0; partitions_skipped := 0; error := NULL;
        BEGIN
            SELECT * INTO target FROM llm_cost._retention_target(p.rel);
            cutoff := target.cutoff;
            -- Both run as the table's owner under a security-restricted operation.
            parts := llm_cost._retention_drop_partitions(p.rel, target.time_col, target.cutoff);
            partitions_dropped := parts[1]; partitions_skipped := parts[2];
            LOOP
                n := llm_cost._retention_purge_batch(p.rel, target.time_col, target.cutoff, batch);
                rows_deleted := rows_deleted + n;
                EXIT WHEN n < batch;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            error := SQLERRM;
            rows_deleted := 0; partitions_dropped := 0; partitions_skipped := 0;
        END;
        PERFORM llm_cost._record_run(p.rel::oid, p.rel::text, started, cutoff, rows_deleted, partitions_dropped, error,
                                     caller, partitions_skipped);
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION llm_cost.run_retention() IS
'Purges now, in the calling transaction, every table with a retention policy that the caller owns (all for a superuser); returns what it purged. Each purge runs as the table''s owner under a security-restricted operation (as the background worker''s does). The background worker does the same in short transactions.';

-------------------------------------------------------------------------------------------------
-- Security (sql/security.sql)
-------------------------------------------------------------------------------------------------
-- Cost triggers get their time zone argument (timestamp and date time columns are read in UTC,
-- as in a fresh install): track() again with the recorded mapping. A table whose mapping no
-- longer fits keeps its trigger (read as UTC too) and is named in a warning.
DO $$
DECLARE
    t llm_cost.tracked_tables;
BEGIN
    FOR t IN SELECT * FROM llm_cost.tracked_tables ORDER BY log_table::text LOOP
        BEGIN
            PERFORM llm_cost.track(t.log_table, t.model_column, t.input_tokens_column, t.output_tokens_column,
                                   t.cache_read_tokens_column, t.cache_write_tokens_column, t.cost_column,
                                   t.time_column, t.provider_column, false, 'UTC');
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'llm_cost: could not refresh the triggers of %: %', t.log_table, SQLERRM
                  USING HINT = 'Call llm_cost.track() on it again.';
        END;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION llm_cost.enable_row_security(rel regclass, owner_column text) RETURNS llm_cost.row_security
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    target regclass := rel;
    kind "char";
    r llm_cost.rollups;
    result llm_cost.row_security;
BEGIN
    IF rel IS NULL OR owner_column IS NULL THEN
        RAISE EXCEPTION 'llm_cost.enable_row_security: rel and owner_column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO r FROM llm_cost.rollups WHERE rollups.rollup = rel;
    IF FOUND THEN
        target := r.stripes;   -- a rollup view: the policies go on its partial sums
    END IF;
    SELECT relkind INTO kind FROM pg_catalog.pg_class WHERE oid = target;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is neither a table nor an llm_cost rollup', rel USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = target), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to change its row security', rel USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = target AND attname = owner_column
                                                             AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column "%" does not exist in %', owner_column, rel USING ERRCODE = 'undefined_column';
    END IF;
    IF EXISTS (SELECT 1 FROM llm_cost.row_security s WHERE s.rel = enable_row_security.rel) THEN
        RAISE NOTICE 'row security was already enabled on %; its policies are rewritten', rel;
    END IF;
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_owner_read ON %s', target);
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_admin_all ON %s', target);
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_insert ON %s', target);
    -- Owners read their own rows; rows without an owner (platform-wide totals) only admins.
    EXECUTE format('CREATE POLICY llm_cost_owner_read ON %s FOR SELECT USING (%I::text = llm_cost.current_principal())',
                   target, owner_column);
    EXECUTE format('CREATE POLICY llm_cost_admin_all ON %s FOR ALL USING (llm_cost.is_admin()) WITH CHECK (llm_cost.is_admin())', target);
    -- Whoever may INSERT (writers log calls on behalf of any user) still may.
    EXECUTE format('CREATE POLICY llm_cost_insert ON %s FOR INSERT WITH CHECK (true)', target);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    IF target <> rel THEN
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', rel);
    END IF;
    result := pg_catalog.jsonb_populate_record(NULL::llm_cost.row_security, llm_cost._registry_put('row_security',
        pg_catalog.jsonb_build_object('rel', rel::oid, 'target', target::oid, 'owner_column', owner_column)));
    RETURN result;
END $$;
CREATE OR REPLACE FUNCTION llm_cost.disable_row_security(rel regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s llm_cost.row_security;
BEGIN
    SELECT * INTO s FROM llm_cost.row_security WHERE row_security.rel = disable_row_security.rel;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = s.target), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % to change its row security', rel USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_owner_read ON %s', s.target);
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_admin_all ON %s', s.target);
    EXECUTE format('DROP POLICY IF EXISTS llm_cost_insert ON %s', s.target);
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', s.target);
    PERFORM llm_cost._registry_delete('row_security', rel::oid);
    RETURN true;
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
                     'reprice', 'set_retention', 'drop_retention', 'run_retention', 'enable_row_security', 'disable_row_security'))
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE '@omit%'
    LOOP
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', f.fn, E'@omit\n' || coalesce(f.d, ''));
    END LOOP;
END $$;
