-- A timestamp (without time zone) or date time column means one instant for the table (UTC, or
-- the zone given to track()), whatever each writer's TimeZone: the same row lands in the same
-- period at the same price, and rebuilds, reprice and retention agree.
-- (Moved from the #[pg_test]s of src/features/usage.rs.)
INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
VALUES ('acme', 'acme-tz', 10, 0, '-infinity', '2026-03-02 00:00+00'), ('acme', 'acme-tz', 1, 0, '2026-03-02 00:00+00', 'infinity');
CREATE TABLE t_ts (at timestamp NOT NULL, writer text, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
CREATE TABLE t_paris (at timestamp NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
CREATE TABLE t_day (at date NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
SELECT llm_cost.track('t_ts', time_column => 'at') IS NOT NULL AS tracked;
SELECT llm_cost.track('t_paris', time_column => 'at', time_zone => 'Europe/Paris') IS NOT NULL AS tracked;
SELECT llm_cost.track('t_day', time_column => 'at') IS NOT NULL AS tracked;
SELECT log_table, time_zone FROM llm_cost.tracked_tables WHERE log_table IN ('t_ts'::regclass, 't_paris'::regclass, 't_day'::regclass) ORDER BY 1::text;
SELECT llm_cost.create_rollup('t_ts_daily', 't_ts', 'day', '{}');
SELECT llm_cost.create_rollup('t_paris_daily', 't_paris', 'day', '{}');
SELECT llm_cost.create_rollup('t_day_daily', 't_day', 'day', '{}');
-- Three writers in three zones.
SET TimeZone = 'America/Los_Angeles';
INSERT INTO t_ts VALUES ('2026-03-01 23:30', 'Los Angeles', 'acme-tz', 1000000, 0);
INSERT INTO t_paris VALUES ('2026-03-02 00:30', 'acme-tz', 1000000, 0);
INSERT INTO t_day VALUES ('2026-03-02', 'acme-tz', 1000000, 0);
SET TimeZone = 'Asia/Tokyo';
INSERT INTO t_ts VALUES ('2026-03-01 23:30', 'Tokyo', 'acme-tz', 1000000, 0);
INSERT INTO t_paris VALUES ('2026-03-02 00:30', 'acme-tz', 1000000, 0);
INSERT INTO t_day VALUES ('2026-03-02', 'acme-tz', 1000000, 0);
SET TimeZone = 'UTC';
INSERT INTO t_ts VALUES ('2026-03-01 23:30', 'UTC', 'acme-tz', 1000000, 0);
INSERT INTO t_paris VALUES ('2026-03-02 00:30', 'acme-tz', 1000000, 0);
INSERT INTO t_day VALUES ('2026-03-02', 'acme-tz', 1000000, 0);
-- 23:30 UTC on 1 March: the old price (10) and one day for all three writers; 00:30 in Paris is
-- 23:30 UTC the day before; a date is midnight UTC: the new price.
SELECT writer, cost_usd FROM t_ts ORDER BY writer;
SELECT 't_ts_daily' AS rollup, period_start, requests, cost_usd FROM t_ts_daily
UNION ALL SELECT 't_paris_daily', period_start, requests, cost_usd FROM t_paris_daily
UNION ALL SELECT 't_day_daily', period_start, requests, cost_usd FROM t_day_daily ORDER BY 1;
-- Rebuilding and repricing from another TimeZone changes nothing.
SET TimeZone = 'Pacific/Auckland';
SELECT llm_cost.rebuild_rollup('t_ts_daily') IS NOT NULL AS rebuilt, llm_cost.rebuild_rollup('t_paris_daily') IS NOT NULL AS rebuilt,
       llm_cost.rebuild_rollup('t_day_daily') IS NOT NULL AS rebuilt;
SELECT llm_cost.reprice('t_ts', '2026-03-01 23:00+00', '2026-03-02 00:00+00') IS NOT NULL AS repriced;
SET TimeZone = 'UTC';
SELECT 't_ts_daily' AS rollup, period_start, requests, cost_usd FROM t_ts_daily
UNION ALL SELECT 't_paris_daily', period_start, requests, cost_usd FROM t_paris_daily
UNION ALL SELECT 't_day_daily', period_start, requests, cost_usd FROM t_day_daily ORDER BY 1;
SELECT DISTINCT cost_usd FROM t_ts;
-- Retention's cutoff too: 23:15 UTC keeps the 23:30 rows, whatever the purger's TimeZone (read in
-- Tokyo, 23:30 would be 14:30 UTC and purged); 23:45 UTC purges them.
SELECT llm_cost.set_retention('t_ts', now() - timestamptz '2026-03-01 23:15+00') IS NOT NULL AS set;
SET TimeZone = 'Asia/Tokyo';
SELECT rows_deleted FROM llm_cost.run_retention() WHERE log_table = 't_ts'::regclass;
SET TimeZone = 'UTC';
SELECT llm_cost.set_retention('t_ts', now() - timestamptz '2026-03-01 23:45+00') IS NOT NULL AS set;
SELECT rows_deleted FROM llm_cost.run_retention() WHERE log_table = 't_ts'::regclass;
-- A zone PostgreSQL does not know is refused when tracking.
SELECT llm_cost.track('t_day', time_column => 'at', time_zone => 'Mars/Olympus');
