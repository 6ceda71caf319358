-- Report views on llm_cost.usage_events, read from the rollups (never from raw rows), so they
-- stay fast however large the log grows and survive retention. Periods are UTC days/months.

CREATE VIEW llm_cost.spend_summary AS
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

CREATE VIEW llm_cost.spend_by_model AS
SELECT date_trunc('month', period_start, 'UTC') AS month, provider, model,
       sum(requests)::bigint AS requests, sum(total_tokens)::bigint AS total_tokens, sum(cost_usd) AS cost_usd,
       round(sum(cost_usd) / nullif(sum(requests) - sum(unpriced_requests), 0), 8) AS avg_cost_per_request_usd,
       sum(unpriced_requests)::bigint AS unpriced_requests
  FROM llm_cost.usage_daily GROUP BY 1, 2, 3;
COMMENT ON VIEW llm_cost.spend_by_model IS 'Spend per month (UTC), provider and model: the catalog model calls were priced as (openai/gpt-4o-mini and gpt-4o-mini are one model), or the name as sent for a model without a price (cost_usd NULL, counted in unpriced_requests).';
COMMENT ON COLUMN llm_cost.spend_by_model.cost_usd IS 'Cost in USD of the priced calls, exact; NULL when none of them was priced.';
COMMENT ON COLUMN llm_cost.spend_by_model.avg_cost_per_request_usd IS 'Average cost of a priced call.';
COMMENT ON COLUMN llm_cost.spend_by_model.unpriced_requests IS 'Calls stored without a price (unknown model): not in cost_usd.';

CREATE VIEW llm_cost.spend_by_feature AS
SELECT date_trunc('month', period_start, 'UTC') AS month, tenant_id, feature,
       sum(requests)::bigint AS requests, sum(total_tokens)::bigint AS total_tokens, sum(cost_usd) AS cost_usd,
       round(sum(cost_usd) / nullif(sum(requests), 0), 8) AS avg_cost_per_request_usd
  FROM llm_cost.usage_daily GROUP BY 1, 2, 3;
COMMENT ON VIEW llm_cost.spend_by_feature IS 'Spend per month (UTC), tenant and feature.';

CREATE VIEW llm_cost.top_users AS
SELECT period_start AS month, tenant_id, user_id, requests, total_tokens, cost_usd,
       round(cost_usd / nullif(requests, 0), 8) AS avg_cost_per_request_usd,
       rank() OVER (PARTITION BY period_start ORDER BY cost_usd DESC) AS spend_rank
  FROM llm_cost.usage_monthly WHERE user_id IS NOT NULL;
COMMENT ON VIEW llm_cost.top_users IS 'Users ranked by spend per month (UTC); filter spend_rank <= 10 for a top ten.';

CREATE VIEW llm_cost.daily_trend AS
SELECT period_start AS day, sum(requests)::bigint AS requests, sum(total_tokens)::bigint AS total_tokens,
       sum(cost_usd) AS cost_usd, sum(unpriced_requests)::bigint AS unpriced_requests,
       sum(error_requests)::bigint AS error_requests
  FROM llm_cost.usage_daily GROUP BY 1;
COMMENT ON VIEW llm_cost.daily_trend IS '@primaryKey day
Requests, tokens and spend per UTC day.';

CREATE VIEW llm_cost.user_stats AS
WITH per_model AS (
    SELECT tenant_id, user_id, model, sum(requests) AS requests, sum(cost_usd) AS cost_usd
      FROM llm_cost.usage_daily WHERE user_id IS NOT NULL GROUP BY 1, 2, 3)
SELECT tenant_id, user_id, sum(requests)::bigint AS requests, sum(cost_usd) AS cost_usd,
       round(sum(cost_usd) / nullif(sum(requests), 0), 8) AS avg_cost_per_request_usd,
       (array_agg(model ORDER BY requests DESC, cost_usd DESC, model))[1] AS predominant_model
  FROM per_model GROUP BY 1, 2;
COMMENT ON VIEW llm_cost.user_stats IS 'Per user, all time: requests, spend, average cost per request and the model used most (by requests).';

CREATE VIEW llm_cost.feature_stats AS
WITH per_model AS (
    SELECT tenant_id, feature, model, sum(requests) AS requests, sum(cost_usd) AS cost_usd
      FROM llm_cost.usage_daily GROUP BY 1, 2, 3)
SELECT tenant_id, feature, sum(requests)::bigint AS requests, sum(cost_usd) AS cost_usd,
       round(sum(cost_usd) / nullif(sum(requests), 0), 8) AS avg_cost_per_request_usd,
       (array_agg(model ORDER BY requests DESC, cost_usd DESC, model))[1] AS predominant_model
  FROM per_model GROUP BY 1, 2;
COMMENT ON VIEW llm_cost.feature_stats IS 'Per feature, all time: requests, spend, average cost per request and the model used most (by requests).';

GRANT SELECT ON llm_cost.spend_summary, llm_cost.spend_by_model, llm_cost.spend_by_feature, llm_cost.top_users,
                llm_cost.daily_trend, llm_cost.user_stats, llm_cost.feature_stats TO PUBLIC;

-------------------------------------------------------------------------------------------------
-- The reports add up bigint sums with this instead of sum(bigint), whose numeric result they cast
-- back to bigint anyway: a by-value bigint state (int8pl) instead of an int128 state in memory per
-- group and aggregate, about a tenth of a 5,000-group breakdown's time. The same answers: NULL
-- for no rows, NULLs skipped, and a total past bigint is the same error (22003) as the cast's.
CREATE AGGREGATE llm_cost._sum_int8(bigint) (
    SFUNC = pg_catalog.int8pl, STYPE = bigint, COMBINEFUNC = pg_catalog.int8pl, PARALLEL = SAFE
);
COMMENT ON AGGREGATE llm_cost._sum_int8(bigint) IS '@omit
Sum of bigints as a bigint (int8pl): what the reports use for counts and tokens.';

-- Reports over any rollup (of usage_events or of your own tracked table). They read the rollup
-- view with the caller's rights (its row-level security applies) and return the groups as
-- jsonb, since every rollup groups by its own columns. Periods follow the rollup's time zone.
-------------------------------------------------------------------------------------------------

-- The rollup's registry row, or 42P01/42704 with a hint; p_by must be among its group columns.
CREATE FUNCTION llm_cost._report_rollup(p_rollup regclass, p_by text[]) RETURNS llm_cost.rollups
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups;
    bad text;
BEGIN
    IF p_rollup IS NULL THEN
        RAISE EXCEPTION 'rollup must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO r FROM llm_cost.rollups x WHERE x.rollup = p_rollup;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not an llm_cost rollup', p_rollup USING ERRCODE = 'undefined_object',
              HINT = 'See llm_cost.rollups, or create one with llm_cost.create_rollup().';
    END IF;
    SELECT string_agg(quote_literal(b), ', ') INTO bad FROM unnest(p_by) b WHERE NOT b = ANY (r.group_by);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'rollup % does not group by %', p_rollup, bad USING ERRCODE = 'undefined_column',
              HINT = format('Its group columns are %s.', array_to_string(r.group_by, ', '));
    END IF;
    RETURN r;
END $$;

-- What a report reads (as alias v): the rollup view, or, when the view reads its table of sums
-- with the caller's rights anyway (security_invoker, as the shipped rollups and
-- enable_row_security make them) and the caller may read that table, the table of sums itself
-- with the view's column names: the same figures (row-level security applies the same way)
-- without adding the sums up per group first, which is most of the time a report over many
-- groups takes. A row of sums whose calls were all unpriced has no cost (NULL), as a group
-- of the view.
CREATE FUNCTION llm_cost._report_from(r llm_cost.rollups) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gcols text := (SELECT coalesce(string_agg(format('s.%I, ', g), ''), '') FROM unnest(r.group_by) g);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = r.rollup
                      AND 'security_invoker=true' = ANY (coalesce(c.reloptions, '{}')))
       OR NOT pg_catalog.has_table_privilege(r.stripes, 'SELECT') THEN
        RETURN r.rollup::text;
    END IF;
    RETURN format('(SELECT s.period_start, %s'
                  's.requests, s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens, '
                  's.input_tokens + s.output_tokens + s.cache_read_tokens + s.cache_write_tokens AS total_tokens, '
                  'CASE WHEN s.requests > s.unpriced_requests THEN s.cost_usd END AS cost_usd, s.unpriced_requests, '
                  's.error_requests, s.latency_ms_sum, s.latency_ms_max, s.first_seen, s.last_seen, '
                  's.cache_savings_usd, s.cache_write_extra_usd, s.cache_savings_usd - s.cache_write_extra_usd AS net_cache_savings_usd, '
                  's.error_cost_usd, s.provided_requests, s.provided_cost_usd, s.provided_list_usd, '
                  's.cost_hist AS cost_histogram, s.max_request_cost_usd FROM %s s)',
                  gcols, r.stripes);
END $$;

-- The WHERE conditions (" AND ...", over the rollup view as v) of a report's filter: a jsonb
-- object of group columns of the rollup and the value each must have (compared as text), a list
-- of values (any of them), or null (IS NULL). 42703 for a column the rollup does not group by.
CREATE FUNCTION llm_cost._report_where(r llm_cost.rollups, p_filter jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    v jsonb;
    cond text := '';
BEGIN
    IF p_filter IS NULL OR p_filter = '{}'::jsonb THEN
        RETURN '';
    END IF;
    IF jsonb_typeof(p_filter) <> 'object' THEN
        RAISE EXCEPTION 'filter must be a JSON object of group columns and values, not %', p_filter
              USING ERRCODE = 'invalid_parameter_value', HINT = 'For example {"tenant_id": "acme", "model": ["gpt-4o", "gpt-4o-mini"]}.';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_filter) e LOOP
        IF NOT k = ANY (r.group_by) THEN
            RAISE EXCEPTION 'rollup % does not group by %', r.rollup, quote_literal(k) USING ERRCODE = 'undefined_column',
                  HINT = format('Its group columns are %s.', array_to_string(r.group_by, ', '));
        END IF;
        IF jsonb_typeof(v) = 'array' THEN
            cond := cond || format(' AND (v.%I::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[])%s)', k,
                                   ARRAY(SELECT x FROM jsonb_array_elements_text(v) x WHERE x IS NOT NULL),
                                   CASE WHEN v @> '[null]' THEN format(' OR v.%I IS NULL', k) ELSE '' END);
        ELSIF jsonb_typeof(v) = 'null' THEN
            cond := cond || format(' AND v.%I IS NULL', k);
        ELSE
            cond := cond || format(' AND v.%I::pg_catalog.text OPERATOR(pg_catalog.=) %L', k, v #>> '{}');
        END IF;
    END LOOP;
    RETURN cond;
END $$;

CREATE FUNCTION llm_cost.rollup_summary(rollup regclass)
RETURNS TABLE (period text, since timestamptz, requests bigint, total_tokens bigint, cost_usd numeric, unpriced_requests bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, '{}');
    p record;
BEGIN
    FOR p IN SELECT * FROM (VALUES (1, 'today', 'day'), (2, 'this week', 'week'), (3, 'this month', 'month')) v(o, name, unit)
              WHERE r.grain IN ('hour', 'day') OR r.grain = v.unit ORDER BY v.o LOOP
        period := p.name;
        since := date_trunc(p.unit, now(), r.time_zone);
        EXECUTE format('SELECT coalesce(sum(v.requests), 0)::bigint, coalesce(sum(v.total_tokens), 0)::bigint, '
                       'CASE WHEN count(*) = 0 THEN 0 ELSE sum(v.cost_usd) END, coalesce(sum(v.unpriced_requests), 0)::bigint '
                       'FROM %s v WHERE v.period_start >= $1', rollup)
           INTO requests, total_tokens, cost_usd, unpriced_requests USING since;
        RETURN NEXT;
    END LOOP;
END $$;
COMMENT ON FUNCTION llm_cost.rollup_summary(regclass) IS
'Spend today, this week and this month (in the rollup''s time zone) from any rollup: the periods its grain can answer (an hour or day rollup all three, a week or month rollup its own). cost_usd is 0 without calls, NULL when every call was unpriced.';

CREATE FUNCTION llm_cost.spend_by(rollup regclass, by text[], "from" timestamptz DEFAULT '-infinity',
                                  "to" timestamptz DEFAULT 'infinity', filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, requests bigint, total_tokens bigint, cost_usd numeric,
               avg_cost_per_request_usd numeric, unpriced_requests bigint, error_requests bigint,
               error_cost_usd numeric, latency_ms_avg numeric, latency_ms_max bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
    errors boolean := EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = rollup AND a.attname = 'error_cost_usd' AND NOT a.attisdropped);
    latency boolean := EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = rollup AND a.attname = 'latency_ms_sum' AND NOT a.attisdropped);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %s, llm_cost._sum_int8(v.requests), llm_cost._sum_int8(v.total_tokens), sum(v.cost_usd), '
        'round(sum(v.cost_usd) / nullif(llm_cost._sum_int8(v.requests) - llm_cost._sum_int8(v.unpriced_requests), 0)::pg_catalog.numeric, 8), '
        'llm_cost._sum_int8(v.unpriced_requests), %s, %s FROM %s v WHERE v.period_start >= $1 AND v.period_start < $2 %s %s ORDER BY 4 DESC NULLS LAST, 2 DESC, 1',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        CASE WHEN errors THEN 'llm_cost._sum_int8(v.error_requests), sum(v.error_cost_usd)' ELSE 'NULL::bigint, NULL::numeric' END,
        -- (no latency recorded in the range: NULL, not 0)
        CASE WHEN latency THEN 'CASE WHEN max(v.latency_ms_max) IS NOT NULL THEN round(llm_cost._sum_int8(v.latency_ms_sum)::pg_catalog.numeric / nullif(llm_cost._sum_int8(v.requests), 0), 1) END, '
                               'max(v.latency_ms_max)::bigint' ELSE 'NULL::numeric, NULL::bigint' END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN '' ELSE 'GROUP BY ' || keys || ' HAVING llm_cost._sum_int8(v.requests) <> 0' END)
    USING "from", "to";
END $$;
COMMENT ON FUNCTION llm_cost.spend_by(regclass, text[], timestamptz, timestamptz, jsonb) IS
'Spend of any rollup per value of some of its group columns (by => ''{model}'', ''{tenant_id}'', ''{}'' for the total) over periods starting in [from, to), of the groups the filter keeps (a jsonb of group columns and values: {"tenant_id": "acme"}, a list for any of several, null for IS NULL): group (jsonb), requests, tokens, cost (NULL when nothing was priced), average per priced request, unpriced and error requests, cost of the failed calls, mean latency (ms, over every call: one without a latency counts 0) and the longest (NULL when none was recorded); most expensive first (then most calls, then by group). Top N: add LIMIT N.';

CREATE FUNCTION llm_cost.cache_savings_by(rollup regclass, by text[] DEFAULT '{}', "from" timestamptz DEFAULT '-infinity',
                                          "to" timestamptz DEFAULT 'infinity', filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, requests bigint, cache_read_tokens bigint, cache_write_tokens bigint, cost_usd numeric,
               cache_savings_usd numeric, cache_write_extra_usd numeric, net_cache_savings_usd numeric,
               cost_without_cache_usd numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %s, sum(v.requests)::bigint, sum(v.cache_read_tokens)::bigint, sum(v.cache_write_tokens)::bigint, '
        'sum(v.cost_usd), sum(v.cache_savings_usd), sum(v.cache_write_extra_usd), sum(v.net_cache_savings_usd), '
        'sum(v.cost_usd) + sum(v.net_cache_savings_usd) '
        'FROM %s v WHERE v.period_start >= $1 AND v.period_start < $2 %s %s ORDER BY 8 DESC NULLS LAST, 2 DESC',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN '' ELSE 'GROUP BY ' || keys || ' HAVING sum(v.requests) <> 0' END)
    USING "from", "to";
END $$;
COMMENT ON FUNCTION llm_cost.cache_savings_by(regclass, text[], timestamptz, timestamptz, jsonb) IS
'What prompt caching saved, from any rollup, per value of some of its group columns over periods starting in [from, to), at list price: savings of cache reads, extra paid for cache writes, the net saving, and what the calls would have cost without the cache (cost_usd + net saving). Largest net saving first.';

CREATE FUNCTION llm_cost.provided_vs_list(rollup regclass, by text[] DEFAULT '{}', "from" timestamptz DEFAULT '-infinity',
                                          "to" timestamptz DEFAULT 'infinity', filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, provided_requests bigint, provided_cost_usd numeric, list_cost_usd numeric,
               difference_usd numeric, difference_pct numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %s, sum(v.provided_requests)::bigint, sum(v.provided_cost_usd), sum(v.provided_list_usd), '
        'sum(v.provided_cost_usd) - sum(v.provided_list_usd), '
        'round(100 * (sum(v.provided_cost_usd) - sum(v.provided_list_usd)) / nullif(sum(v.provided_list_usd), 0), 2) '
        'FROM %s v WHERE v.period_start >= $1 AND v.period_start < $2 %s %s HAVING sum(v.provided_requests) > 0 '
        'ORDER BY abs(sum(v.provided_cost_usd) - sum(v.provided_list_usd)) DESC, 2 DESC',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN '' ELSE 'GROUP BY ' || keys END)
    USING "from", "to";
END $$;
COMMENT ON FUNCTION llm_cost.provided_vs_list(regclass, text[], timestamptz, timestamptz, jsonb) IS
'Reconciliation, from any rollup: for the calls whose cost the application provided (a provider''s reported cost) and whose model has a list price, per value of some group columns over periods starting in [from, to): how many, their provided cost, their list-price estimate, the difference in USD and in percent of list. Largest difference first.';

CREATE FUNCTION llm_cost.spend_trend(rollup regclass, "from" timestamptz DEFAULT '-infinity',
                                     "to" timestamptz DEFAULT 'infinity', filter jsonb DEFAULT '{}')
RETURNS TABLE (period_start timestamptz, requests bigint, total_tokens bigint, cost_usd numeric,
               unpriced_requests bigint, error_requests bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, '{}');
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT v.period_start, sum(v.requests)::bigint, sum(v.total_tokens)::bigint, sum(v.cost_usd), '
        'sum(v.unpriced_requests)::bigint, %s FROM %s v WHERE v.period_start >= $1 AND v.period_start < $2 %s GROUP BY 1 HAVING sum(v.requests) <> 0 ORDER BY 1',
        CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = rollup AND a.attname = 'error_requests' AND NOT a.attisdropped)
             THEN 'sum(v.error_requests)::bigint' ELSE 'NULL::bigint' END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter))
    USING "from", "to";
END $$;
COMMENT ON FUNCTION llm_cost.spend_trend(regclass, timestamptz, timestamptz, jsonb) IS
'Requests, tokens and spend per period of any rollup (its grain), over periods starting in [from, to), oldest first.';

-- Spend forecast of any rollup's current period per group: the run rate since the period began.
CREATE FUNCTION llm_cost.spend_forecast(rollup regclass, by text[] DEFAULT '{}', at timestamptz DEFAULT now(),
                                        filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, period_start timestamptz, period_end timestamptz, requests bigint, spent_usd numeric,
               projected_usd numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
    p_start timestamptz := date_trunc(r.grain, at, r.time_zone);
    p_end timestamptz := (date_trunc(r.grain, at, r.time_zone) AT TIME ZONE r.time_zone + ('1 ' || r.grain)::interval) AT TIME ZONE r.time_zone;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT g, $1, $2, n, s, (llm_cost.run_rate_forecast(s, $1, $2, NULL, $3)).projected_usd FROM ('
        'SELECT %s AS g, sum(v.requests)::bigint AS n, coalesce(sum(v.cost_usd), 0) AS s FROM %s v WHERE v.period_start = $1 %s %s) x '
        'ORDER BY 6 DESC NULLS LAST',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN '' ELSE 'GROUP BY ' || keys || ' HAVING sum(v.requests) <> 0' END)
    USING p_start, p_end, at;
END $$;
COMMENT ON FUNCTION llm_cost.spend_forecast(regclass, text[], timestamptz, jsonb) IS
'Where the current period (the rollup''s grain, in its time zone, containing `at`) will end, per value of some group columns: spend so far and projected_usd = spend x period length / time elapsed (llm_cost.run_rate_forecast). Largest projection first.';

-- The median of some numbers, exact (the mean of the two middle ones for an even count);
-- NULL for none.
CREATE FUNCTION llm_cost._median(p numeric[]) RETURNS numeric
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT avg(y.x) FROM (SELECT u.x, row_number() OVER (ORDER BY u.x) AS rn, count(*) OVER () AS n
                            FROM unnest(p) u(x)) y
     WHERE y.rn IN ((y.n + 1) / 2, (y.n + 2) / 2)
$$;

-- Groups whose spend in the current period is far above their own recent baseline. The rule:
-- baseline = median of the group's spend over the `periods` complete periods before the current
-- one (a period without calls counts 0); spread = 1.4826 x the median absolute deviation from it,
-- at least 10% of the median; a group is listed when its current spend exceeds baseline +
-- `threshold` x spread and it made at least `min_requests` calls in the current period (a group
-- with a zero baseline and zero spread: any spend at that volume). score = (spend - baseline) / spread.
CREATE FUNCTION llm_cost.spend_anomalies(rollup regclass, by text[] DEFAULT '{}', periods integer DEFAULT 14,
                                         threshold numeric DEFAULT 3, min_requests bigint DEFAULT 10,
                                         at timestamptz DEFAULT now(), filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, period_start timestamptz, requests bigint, spent_usd numeric, baseline_usd numeric,
               spread_usd numeric, score numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
    p_now timestamptz := date_trunc(r.grain, at, r.time_zone);
    p_first timestamptz;
BEGIN
    IF periods IS NULL OR periods < 3 THEN
        RAISE EXCEPTION 'periods must be at least 3, not %', periods USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF threshold IS NULL OR threshold <= 0 OR threshold IN ('NaN', 'Infinity') OR min_requests IS NULL OR min_requests < 0 THEN
        RAISE EXCEPTION 'threshold must be a positive finite number and min_requests not negative, not % and %', threshold, min_requests
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p_first := (p_now AT TIME ZONE r.time_zone - (periods || ' ' || r.grain)::interval) AT TIME ZONE r.time_zone;
    RETURN QUERY EXECUTE format(
        'WITH per AS (SELECT %s AS g, v.period_start AS p, sum(v.requests)::bigint AS n, coalesce(sum(v.cost_usd), 0) AS s
                        FROM %s v WHERE v.period_start >= $1 AND v.period_start <= $2 %s %s),
              past AS (SELECT g.g, coalesce(per.s, 0) AS s
                         FROM (SELECT DISTINCT per.g FROM per WHERE per.p = $2) g
                        CROSS JOIN pg_catalog.generate_series(0, $3 - 1) i
                         LEFT JOIN per ON per.g = g.g
                              AND per.p = ($2 AT TIME ZONE $6 - ((i + 1) || '' '' || $7)::interval) AT TIME ZONE $6),
              base AS (SELECT past.g, llm_cost._median(pg_catalog.array_agg(past.s)) AS m FROM past GROUP BY 1),
              spread AS (SELECT past.g, greatest(1.4826 * llm_cost._median(pg_catalog.array_agg(abs(past.s - base.m))), 0.1 * base.m) AS d
                           FROM past JOIN base USING (g) GROUP BY past.g, base.m)
         SELECT c.g, $2, c.n, c.s, round(b.m, 8), round(d.d, 8), round(CASE WHEN d.d > 0 THEN (c.s - b.m) / d.d END, 2)
           FROM per c JOIN base b ON b.g = c.g JOIN spread d ON d.g = c.g
          WHERE c.p = $2 AND c.n >= $5 AND c.s > b.m + $4 * d.d
          ORDER BY 7 DESC NULLS FIRST, 4 DESC',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN 'GROUP BY v.period_start' ELSE 'GROUP BY v.period_start, ' || keys END)
    USING p_first, p_now, periods, threshold, min_requests, r.time_zone, r.grain;
END $$;
COMMENT ON FUNCTION llm_cost.spend_anomalies(regclass, text[], integer, numeric, bigint, timestamptz, jsonb) IS
'Groups (values of some group columns of any rollup) whose spend in the current period is far above their own baseline: the median of their spend over the `periods` complete periods before (0 for a period without calls); spread = 1.4826 x median absolute deviation, at least 10% of the median; listed when spend > baseline + threshold x spread with at least min_requests calls now. score = (spend - baseline) / spread (NULL: zero baseline and spread).';

-- What a typical request costs, and the outliers: percentiles of the per-request cost of the
-- priced calls, from the rollup's histograms (nearest rank: the cost of the ceil(q x n)-th
-- cheapest call, read as the midpoint of its bucket: within 3.125% of the exact one), and the
-- exact most expensive call.
CREATE FUNCTION llm_cost.cost_percentiles(rollup regclass, by text[] DEFAULT '{}', "from" timestamptz DEFAULT '-infinity',
                                          "to" timestamptz DEFAULT 'infinity', percentiles numeric[] DEFAULT '{0.5,0.9,0.99}',
                                          filter jsonb DEFAULT '{}')
RETURNS TABLE ("group" jsonb, priced_requests bigint, mean_usd numeric, percentile numeric[], cost_usd numeric[], max_usd numeric)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r llm_cost.rollups := llm_cost._report_rollup(rollup, by);
    cols text := (SELECT string_agg(format('%L, v.%I', b, b), ', ') FROM unnest(by) b);
    keys text := (SELECT string_agg(format('v.%I', b), ', ') FROM unnest(by) b);
BEGIN
    IF percentiles IS NULL OR EXISTS (SELECT 1 FROM unnest(percentiles) q WHERE q IS NULL OR q <= 0 OR q > 1) THEN
        RAISE EXCEPTION 'percentiles must be fractions in (0, 1], not %', percentiles USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT x.g, x.n, round(x.s / nullif(x.n, 0), 8), $3, '
        'ARRAY(SELECT llm_cost.histogram_cost_at_rank(x.h, ceil(q.q * x.n)::bigint) FROM unnest($3) WITH ORDINALITY q(q, o) ORDER BY q.o), x.m '
        'FROM (SELECT y.*, llm_cost.histogram_requests(y.h) AS n '
        '        FROM (SELECT %s AS g, llm_cost.cost_histogram_sum(v.cost_histogram) AS h, max(v.max_request_cost_usd) AS m, '
        '                     sum(v.cost_usd) AS s '
        '                FROM %s v WHERE v.period_start >= $1 AND v.period_start < $2 %s %s) y) x '
        'WHERE x.n > 0 ORDER BY x.m DESC NULLS LAST',
        CASE WHEN cols IS NULL THEN '''{}''::pg_catalog.jsonb' ELSE format('pg_catalog.jsonb_build_object(%s)', cols) END,
        llm_cost._report_from(r), llm_cost._report_where(r, filter), CASE WHEN keys IS NULL THEN '' ELSE 'GROUP BY ' || keys END)
    USING "from", "to", percentiles;
END $$;
COMMENT ON FUNCTION llm_cost.cost_percentiles(regclass, text[], timestamptz, timestamptz, numeric[], jsonb) IS
'Per-request cost of the priced calls of any rollup, per value of some group columns over periods starting in [from, to): how many, the mean, the given percentiles (nearest rank, within 3.125% of the exact value: read from the rollup''s log-spaced histograms) and the exact maximum. Most expensive maximum first.';
