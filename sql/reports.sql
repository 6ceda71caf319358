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
