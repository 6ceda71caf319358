-- llm_cost 0.5.0 -> 0.6.0: trust. Internal SQL runs with search_path pinned (the library);
-- NOTIFY llm_cost_budget carries the alert's id only; set_retention refuses periods without a
-- unit or under one hour; long model names are counted under a bounded key; the two SQL
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

CREATE OR REPLACE FUNCTION llm_cost._record_unpriced(p_table oid, p_model text, p_rows bigint, p_first timestamptz, p_last timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO llm_cost.unpriced_stats AS s (log_table, model, rows, first_seen, last_seen, stripe)
    -- A model name longer than 200 characters is counted under its first 160, an ellipsis and
    -- the md5 of the whole name (a btree key has a size limit; the row keeps the full name).
    SELECT x.t, CASE WHEN pg_catalog.char_length(p_model) > 200
                     THEN pg_catalog.left(p_model, 160) || '…' || pg_catalog.md5(p_model) ELSE p_model END,
           p_rows, p_first, p_last, x.stripe
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
