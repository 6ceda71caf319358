-- llm_cost 0.10.0 -> 0.11.0: insights. Every table of sums, and every rollup view, gains what
-- prompt caching saved and cost extra at list price (cache_savings_usd, cache_write_extra_usd,
-- net_cache_savings_usd in the view), the cost of failed calls (error_cost_usd, where the
-- source has an error column) and, for calls whose cost the application provided, their list-
-- price estimate (provided_requests, provided_cost_usd, provided_list_usd), and the distribution
-- of per-request costs (cost_histogram, max_request_cost_usd). New reports:
-- llm_cost.cost_percentiles(), llm_cost.cache_savings_by(), llm_cost.provided_vs_list(); spend_by() gains error_cost_usd;
-- per call: llm_cost.cache_savings(), llm_cost.cache_write_extra(). Forecast: budget_status
-- (and each rollup's budget view) gains projected_usd and projected_exceed_at
-- (llm_cost.run_rate_forecast); llm_cost.spend_forecast() per rollup. Anomalies:
-- llm_cost.spend_anomalies(). Budgets: create_budget(alert_on_projection => true) alerts a group
-- on track to exceed its limit once per period (budget_alerts.kind = 'projected').
--
-- The new columns of existing rollups are computed here from the raw rows still present (the
-- other columns are left as they are): periods whose raw rows were purged before this update
-- read 0 in them. Takes a SHARE ROW EXCLUSIVE lock on each tracked source with rollups while
-- it reads it.

-- Budgets may alert when a group is on track to exceed its limit; alerts say which kind they are.
ALTER TABLE llm_cost.budgets ADD COLUMN alert_on_projection boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN llm_cost.budgets.alert_on_projection IS 'Whether a group on track to exceed its limit is alerted (once per period): spend at its run rate since the period began reaches the limit before the period ends, at least a tenth of the period in, the limit not reached yet.';
ALTER TABLE llm_cost.budget_alerts ADD COLUMN kind text NOT NULL DEFAULT 'spent' CHECK (kind IN ('spent', 'projected'));
ALTER TABLE llm_cost.budget_alerts DROP CONSTRAINT budget_alerts_budget_id_group_period_start_threshold_key,
    ADD CONSTRAINT budget_alerts_budget_id_group_period_start_threshold_kind_key UNIQUE (budget_id, "group", period_start, threshold, kind);
COMMENT ON COLUMN llm_cost.budget_alerts.kind IS 'spent: spend reached the threshold; projected: spend at its run rate will reach the limit (threshold 1) before the period ends (budgets with alert_on_projection).';

-- The shipped rollups' views are re-created below with the others, once their tables of sums
-- have the new columns.
-- @manual llm_cost.usage_daily
-- @manual llm_cost.usage_monthly

-- @generated

-- Adds up the cost histograms of a rollup (sql/rollups.sql).
CREATE AGGREGATE llm_cost.cost_histogram_sum(bigint[]) (
    SFUNC = llm_cost._hist_add, STYPE = bigint[], INITCOND = '{}',
    COMBINEFUNC = llm_cost._hist_add, PARALLEL = SAFE
);
COMMENT ON AGGREGATE llm_cost.cost_histogram_sum(bigint[]) IS
'Adds up cost histograms (the cost_histogram column of a rollup): read them with llm_cost.histogram_cost_at_rank() or llm_cost.cost_percentiles().';

DO $upgrade$
DECLARE
    r llm_cost.rollups;
    c record;
    added text[] := ARRAY['cache_savings_usd', 'cache_write_extra_usd', 'error_cost_usd',
                          'provided_requests', 'provided_cost_usd', 'provided_list_usd', 'cost_hist',
                          'max_request_cost_usd'];
    lay record;
    x text;
    keys text;
    src text;
    view_name text;
    stripes_name text;
    member boolean;
BEGIN
    FOR r IN SELECT * FROM llm_cost.rollups ORDER BY id LOOP
        -- Qualified names: the view is re-created by a function whose search_path is pg_catalog.
        SELECT format('%I.%I', n.nspname, k.relname) INTO view_name
          FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = r.rollup;
        SELECT format('%I.%I', n.nspname, k.relname) INTO stripes_name
          FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = r.stripes;
        FOREACH x IN ARRAY added LOOP
            SELECT * INTO lay FROM llm_cost._sums_layout() y WHERE y.name = x;
            IF lay.not_null THEN
                EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s NOT NULL DEFAULT %L', stripes_name, x, lay.sql_type,
                               CASE WHEN lay.sql_type LIKE '%[]' THEN '{}' ELSE '0' END);
                EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', stripes_name, x);
            ELSE
                EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s', stripes_name, x, lay.sql_type);
            END IF;
        END LOOP;
        -- A script may replace only its extension's objects: a rollup of yours joins it meanwhile.
        member := EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = r.rollup
                             AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e');
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost ADD VIEW %s', view_name);
        END IF;
        IF r.source IS NOT NULL THEN
            SELECT * INTO c FROM llm_cost._rollup_source_columns(r.source);
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', r.source::oid::pg_catalog.regclass);
            -- The sums of the new columns only, added into stripe 0 (the others add 0).
            -- (the SELECT's group columns by position: g1, g2, ...)
            keys := (SELECT coalesce(string_agg(format('x.g%s, ', o), '' ORDER BY o), '')
                       FROM generate_series(1, coalesce(array_length(llm_cost._rollup_keys(r), 1), 0)) o);
            -- The raw rows are read first (a MATERIALIZED CTE) and summed here: on a Citus
            -- coordinator the workers still run the SQL of 0.10.0 until this update reaches
            -- them, so neither the sums nor the merge may call a function of 0.11.0 there. The
            -- merge sets the new columns (they are 0, '{}' or NULL in every row now: just
            -- added, and the source is locked) and leaves the others alone.
            src := format('WITH raw AS MATERIALIZED (SELECT * FROM %s) '
                          'INSERT INTO %s AS s (period_start, %sstripe, %s) '
                          'SELECT x.period_start, %s0 AS stripe, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL::bigint, '
                          'NULL::timestamptz, NULL::timestamptz, x.cache_savings_usd, x.cache_write_extra_usd, x.error_cost_usd, '
                          'x.provided_requests, x.provided_cost_usd, x.provided_list_usd, x.cost_hist, x.max_request_cost_usd '
                          'FROM (%s) x(period_start, %s%s) '
                          'ON CONFLICT (period_start, %sstripe) DO UPDATE SET %s',
                          r.source::oid::pg_catalog.regclass, stripes_name,
                          (SELECT coalesce(string_agg(format('%I, ', k), '' ORDER BY o), '') FROM unnest(llm_cost._rollup_keys(r)) WITH ORDINALITY u(k, o)),
                          (SELECT string_agg(format('%I', l.name), ', ' ORDER BY l.ord) FROM llm_cost._sums_layout() l WHERE l.ord > 2),
                          keys, llm_cost._rollup_select(r, 'raw', '1', '0'),
                          replace(keys, 'x.', ''),
                          (SELECT string_agg(format('%I', l.name), ', ' ORDER BY l.ord) FROM llm_cost._sums_layout() l WHERE l.ord > 1),
                          (SELECT coalesce(string_agg(format('%I, ', k), '' ORDER BY o), '') FROM unnest(llm_cost._rollup_keys(r)) WITH ORDINALITY u(k, o)),
                          (SELECT string_agg(format('%1$I = excluded.%1$I', a), ', ') FROM unnest(added) a));
            EXECUTE src;
            EXECUTE llm_cost._rollup_view_sql(view_name, stripes_name, r.grain, r.time_zone, r.group_by,
                                              c.error_col IS NOT NULL, c.latency_col IS NOT NULL);
        ELSE
            EXECUTE llm_cost._rollup_view_sql(view_name, stripes_name, r.grain, r.time_zone, r.group_by,
                                              EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = r.rollup AND a.attname = 'error_requests' AND NOT a.attisdropped),
                                              EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = r.rollup AND a.attname = 'latency_ms_sum' AND NOT a.attisdropped));
        END IF;
        PERFORM llm_cost._rollup_comment(r);
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost DROP VIEW %s', view_name);
        END IF;
    END LOOP;
END $upgrade$;

-- The budget view of each rollup with budgets gains the forecast columns of budget_status.
DO $budget_views$
DECLARE
    rid regclass;
    v regclass;
    member boolean;
BEGIN
    FOR rid IN SELECT DISTINCT b.rollup FROM llm_cost.budgets b LOOP
        v := pg_catalog.to_regclass(llm_cost._budget_view_name(rid));
        CONTINUE WHEN v IS NULL;
        member := EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = v
                             AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e');
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost ADD VIEW %s', v);
        END IF;
        PERFORM llm_cost._budget_view(rid);
        IF NOT member THEN
            EXECUTE format('ALTER EXTENSION llm_cost DROP VIEW %s', v);
        END IF;
    END LOOP;
END $budget_views$;

-- budget_status, re-created above with the forecast columns: its options and column comments.
ALTER VIEW llm_cost.budget_status SET (security_invoker = true);
COMMENT ON COLUMN llm_cost.budget_status.projected_usd IS 'Spend at the end of the period if it goes on at the rate since the period began (llm_cost.run_rate_forecast).';
COMMENT ON COLUMN llm_cost.budget_status.projected_exceed_at IS 'When spend reaches the limit at that rate, if before the period ends (NULL: it does not, or it already has).';
