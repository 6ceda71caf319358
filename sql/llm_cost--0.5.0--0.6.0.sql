-- llm_cost 0.5.0 -> 0.6.0: trust. Internal SQL runs with search_path pinned (the library);
-- NOTIFY llm_cost_budget carries the alert's id only; set_retention refuses periods without a
-- unit or under one hour; long names are keyed bounded (the library, and _rollup_select); the two SQL
-- functions without SET search_path get it. A restore (pg_dump's session settings, run by the
-- table's owner) stores rows as dumped: that is in the library.
\echo Use "ALTER EXTENSION llm_cost UPDATE TO '0.6.0'" to load this file. \quit


CREATE OR REPLACE FUNCTION llm_cost._valid_price(p numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT p >= 0::pg_catalog.numeric AND p < 1000000::pg_catalog.numeric AND pg_catalog.scale(p) <= 10 $$;

CREATE OR REPLACE FUNCTION llm_cost._stripes_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['period_start', 'stripe', 'requests', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                 'cache_write_tokens', 'cost_usd', 'unpriced_requests', 'error_requests', 'latency_ms_sum',
                 'latency_ms_max', 'first_seen', 'last_seen']
$$;

DROP FUNCTION llm_cost.set_retention(regclass, interval);

CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep interval, allow_short boolean DEFAULT false)
RETURNS llm_cost.retention_policies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t llm_cost.tracked_tables;
    result llm_cost.retention_policies;
BEGIN
    IF log_table IS NULL OR keep IS NULL OR allow_short IS NULL THEN
        RAISE EXCEPTION 'llm_cost.set_retention: log_table, keep and allow_short must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF keep <= interval '0' THEN
        RAISE EXCEPTION 'keep must be a positive interval, not %', keep USING ERRCODE = 'invalid_parameter_value',
              HINT = pg_catalog.format('Rows older than keep are deleted: did you mean %L?',
                                       pg_catalog.ltrim(pg_catalog.replace(keep::text, '-', ''), '@ '));
    END IF;
    IF keep < interval '1 hour' AND NOT allow_short THEN
        RAISE EXCEPTION 'keep of % would delete every row older than that; retention periods under one hour are refused', keep
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = pg_catalog.format('Write the unit, e.g. %L. For a test, pass allow_short => true.',
                        CASE WHEN keep < interval '1 minute' AND pg_catalog.date_part('epoch', keep) >= 1
                             THEN pg_catalog.floor(pg_catalog.date_part('epoch', keep))::pg_catalog.int8 || ' days' ELSE '1 hour' END);
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
COMMENT ON FUNCTION llm_cost.set_retention(regclass, interval, boolean) IS 'Keeps raw rows of a tracked table for `keep`; older ones are purged (rollups are kept). Periods under one hour need allow_short => true.';

-- The spelling most callers use, set_retention('t', '90 days'): a bare number ('30', which
-- PostgreSQL reads as 30 seconds) is refused with the unit that was probably meant.
CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep text, allow_short boolean DEFAULT false)
RETURNS llm_cost.retention_policies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF keep IS NULL THEN
        RETURN llm_cost.set_retention(log_table, NULL::pg_catalog.interval, allow_short);
    END IF;
    IF pg_catalog.btrim(keep) ~ '^[+-]?[0-9]+([.][0-9]*)?$' THEN
        RAISE EXCEPTION 'keep % has no unit (PostgreSQL would read it as % seconds)', pg_catalog.quote_literal(keep), pg_catalog.btrim(keep)
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = pg_catalog.format('Write the unit: %L, %L or %L.', pg_catalog.btrim(keep) || ' days',
                                             pg_catalog.btrim(keep) || ' months', pg_catalog.btrim(keep) || ' hours');
    END IF;
    RETURN llm_cost.set_retention(log_table, keep::pg_catalog.interval, allow_short);
END $$;
COMMENT ON FUNCTION llm_cost.set_retention(regclass, text, boolean) IS 'Keeps raw rows of a tracked table for `keep` (an interval with its unit, e.g. ''90 days''); older ones are purged (rollups are kept). Periods under one hour need allow_short => true.';

-- llm_cost_auditor: sees every row (is_admin), writes nothing: the dashboard's "everything" role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llm_cost_auditor') THEN
        CREATE ROLE llm_cost_auditor NOLOGIN;
    END IF;
END $$;
GRANT llm_cost_reader TO llm_cost_auditor;

CREATE OR REPLACE FUNCTION llm_cost.is_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_has_role(current_user, 'llm_cost_admin', 'MEMBER')
        OR pg_catalog.pg_has_role(current_user, 'llm_cost_auditor', 'MEMBER')
$$;
COMMENT ON FUNCTION llm_cost.is_admin() IS 'True when the current role is a member of llm_cost_admin or llm_cost_auditor (sees all rows; what it may change is up to its grants: an auditor has a reader''s).';

-- An auditor sees every table's unknown models and retention runs, as an admin does.
CREATE OR REPLACE FUNCTION llm_cost._may_see_table(p_table oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
                            OR (pg_catalog.has_table_privilege(current_user, c.oid, 'SELECT') AND NOT c.relrowsecurity)
                       FROM pg_catalog.pg_class c WHERE c.oid = p_table), false)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE (r.rolname IN ('llm_cost_admin', 'llm_cost_auditor') AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'))
                       OR (r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls)))
$$;

-- NOTIFY llm_cost_budget carries the alert's id only (the library sends it).
COMMENT ON TABLE llm_cost.budget_alerts IS E'@omit create,update,delete\nOne row each time a group''s spend in a period reached a threshold of its budget: written in the transaction whose spend completed the crossing, which also sends NOTIFY llm_cost_budget with {"id": <this row''s id>} when it commits.';

-- Long text group values are keyed bounded (as the library's row trigger does).
CREATE OR REPLACE FUNCTION llm_cost._rollup_select(r llm_cost.rollups, p_from text, p_sign text, p_stripe text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    period text;
    gcols text := '';
    keys text[] := llm_cost._rollup_keys(r);
    n int := coalesce(array_length(keys, 1), 0);
    at text;
    col text;
BEGIN
    SELECT * INTO c FROM llm_cost._rollup_source_columns(r.source);
    at := llm_cost._event_time_sql(r.source, 't');
    period := format('date_trunc(%L, %s, %L)', r.grain, at, r.time_zone);
    FOR i IN 1 .. n LOOP
        col := llm_cost._rollup_group_column(r.source, keys[i]);
        -- A text value longer than 200 bytes is keyed as its first 160 characters, '…' and the
        -- md5 of the whole (the btree key of the sums has a size limit), exactly as the row
        -- trigger keys it (src/features/rollups.rs, group_value).
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = r.source AND a.attname = col AND NOT a.attisdropped
                      AND (a.atttypid = 'pg_catalog.text'::pg_catalog.regtype
                           OR (a.atttypid = 'pg_catalog.varchar'::pg_catalog.regtype AND a.atttypmod < 0))) THEN
            gcols := gcols || format(', CASE WHEN pg_catalog.octet_length(t.%1$I) > 200 THEN pg_catalog.left(t.%1$I, 160) '
                                     'OPERATOR(pg_catalog.||) ''…'' OPERATOR(pg_catalog.||) pg_catalog.md5(t.%1$I) ELSE t.%1$I END', col);
        ELSE
            gcols := gcols || format(', t.%I', col);
        END IF;
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

-- usage_events: the model index keys the first 200 characters (model names of any length).
DROP INDEX llm_cost.usage_events_model_idx;
CREATE INDEX usage_events_model_idx ON llm_cost.usage_events (pg_catalog.left(model, 200), occurred_at);

-- set_retention('t', 30): a number is no period. Refused with the spelling meant (without this
-- overload the call would fail as "function does not exist").
CREATE FUNCTION llm_cost.set_retention(log_table regclass, keep numeric, allow_short boolean DEFAULT false)
RETURNS llm_cost.retention_policies
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF keep IS NULL THEN
        RETURN llm_cost.set_retention(log_table, NULL::pg_catalog.interval, allow_short);
    END IF;
    RAISE EXCEPTION 'keep % has no unit (a number is not a period)', keep
          USING ERRCODE = 'invalid_parameter_value',
                HINT = pg_catalog.format('Write the unit: %L, %L or %L.', keep || ' days', keep || ' months', keep || ' hours');
END $$;
COMMENT ON FUNCTION llm_cost.set_retention(regclass, numeric, boolean) IS 'Refuses a number: write the period with its unit, e.g. ''90 days''.';

-- Policies made before 0.6.0 with a period under one hour (e.g. set_retention('t', '30'), read
-- as 30 seconds) are kept, but named here: nothing is changed behind the DBA's back.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT log_table, keep FROM llm_cost.retention_policies WHERE keep < interval '1 hour' LOOP
        RAISE WARNING 'llm_cost: the retention policy of % keeps rows for only %', p.log_table, p.keep
              USING HINT = pg_catalog.format('If that was meant as days: SELECT llm_cost.set_retention(%L, %L);',
                                             p.log_table::text, pg_catalog.floor(pg_catalog.date_part('epoch', p.keep))::pg_catalog.int8 || ' days');
    END LOOP;
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
