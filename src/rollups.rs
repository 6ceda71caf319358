//! Rollups: striped summary tables kept by a statement trigger (SQL in `sql/rollups.sql`).
//! Rust provides the stripe number: this backend's slot, unique among live backends, so two
//! concurrent writers never upsert the same summary row.

use pgrx::prelude::*;

/// This backend's slot number (1..max_connections+workers), unique among running backends.
#[pg_extern(volatile, parallel_restricted, name = "_stripe")]
pub fn stripe() -> i32 {
    backend_slot()
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
fn backend_slot() -> i32 {
    unsafe { pg_sys::MyBackendId }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn backend_slot() -> i32 {
    unsafe { pg_sys::MyProcNumber + 1 }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).expect("query failed").unwrap_or(-1)
    }

    fn error_of(sql: &str) -> String {
        Spi::run(&format!(
            "DO $do$ BEGIN {sql}; PERFORM set_config('t.err', 'ok', true);
               EXCEPTION WHEN OTHERS THEN PERFORM set_config('t.err', SQLSTATE || ': ' || SQLERRM, true); END $do$"
        ))
        .unwrap();
        Spi::get_one::<String>("SELECT current_setting('t.err')").unwrap().unwrap()
    }

    /// Rows in which the rollup and a GROUP BY over the source differ (0 when exact).
    fn mismatches(rollup: &str, source: &str, time_col: &str, grain: &str, group_cols: &[&str], cost_col: &str) -> i64 {
        let g: String = group_cols.iter().map(|c| format!(", {c}")).collect();
        let q = format!(
            "WITH truth AS (
                SELECT date_trunc('{grain}', {time_col}::timestamptz, 'UTC') AS period_start{g}, count(*)::bigint AS requests,
                       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
                       coalesce(sum({cost_col}), 0) AS cost_usd
                  FROM {source} GROUP BY 1{g}),
             mine AS (SELECT period_start{g}, requests, input_tokens, output_tokens, cost_usd FROM {rollup})
             SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
                  + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)"
        );
        count(&q)
    }

    const DAILY: &[&str] = &["tenant_id", "user_id", "feature", "provider", "model"];

    #[pg_test]
    fn default_rollups_follow_inserts_updates_not_deletes() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, latency_ms, error) VALUES
               ('2026-03-01 10:00+00', 'acme', 'u1', 'chat', 'claude-sonnet-4-5', 1000, 200, 900, NULL),
               ('2026-03-01 11:00+00', 'acme', 'u1', 'chat', 'claude-sonnet-4-5', 3000, 100, 1500, 'timeout'),
               ('2026-03-02 09:00+00', 'acme', NULL, 'search', 'gpt-4o', 500, 50, 300, NULL),
               ('2026-03-02 09:30+00', NULL, NULL, NULL, 'mystery', 10, 10, NULL, NULL)",
        )
        .unwrap();
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens) SELECT '2026-03-02 12:00+00', 'acme', 'u2', 'gpt-4o-mini', g, g FROM generate_series(1, 10000) g").unwrap();
        assert_eq!(mismatches("llm_cost.usage_daily", "llm_cost.usage_events", "occurred_at", "day", DAILY, "cost_usd"), 0);
        assert_eq!(mismatches("llm_cost.usage_monthly", "llm_cost.usage_events", "occurred_at", "month", &["tenant_id", "user_id"], "cost_usd"), 0);
        // A 10,000-row statement wrote one summary row per group, not 10,000.
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u2'"), 1);
        assert_eq!(count("SELECT requests FROM llm_cost.usage_daily WHERE user_id = 'u2'"), 10000);
        // Errors, unpriced calls and latency.
        assert_eq!(
            Spi::get_one::<String>("SELECT format('%s %s %s %s', requests, error_requests, latency_ms_sum, latency_ms_max) FROM llm_cost.usage_daily WHERE user_id = 'u1'").unwrap().as_deref(),
            Some("2 1 2400 1500")
        );
        assert_eq!(count("SELECT unpriced_requests FROM llm_cost.usage_daily WHERE model = 'mystery'"), 1);
        // UPDATE moves rows between groups and periods.
        Spi::run("UPDATE llm_cost.usage_events SET model = 'gpt-4o', occurred_at = occurred_at + interval '1 day' WHERE user_id = 'u1'").unwrap();
        assert_eq!(mismatches("llm_cost.usage_daily", "llm_cost.usage_events", "occurred_at", "day", DAILY, "cost_usd"), 0);
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_daily WHERE model = 'claude-sonnet-4-5'"), 0);
        // DELETE does not change a rollup: it is a ledger of what happened.
        let before = Spi::get_one::<String>("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily").unwrap();
        Spi::run("DELETE FROM llm_cost.usage_events").unwrap();
        let after = Spi::get_one::<String>("SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily").unwrap();
        assert_eq!(before, after);
    }

    #[pg_test]
    fn shared_schema_monthly_and_platform_wide_with_backfill() {
        Spi::run(include_str!("../tests/data/api_usage_log.sql")).unwrap();
        Spi::run("SELECT llm_cost.track('public.api_usage_log', provider_column => 'provider', add_cost_column => true)").unwrap();
        Spi::run("INSERT INTO contributor (id, handle) VALUES ('00000000-0000-0000-0000-000000000001', 'a'), ('00000000-0000-0000-0000-000000000002', 'b')").unwrap();
        // Rows before the rollups exist are backfilled.
        Spi::run(
            "INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at) VALUES
               ('00000000-0000-0000-0000-000000000001', 'claude', 'claude-sonnet-4-5', '/a', 1000, 100, '2026-01-15'),
               (NULL, 'openai', 'gpt-4o', '/b', 2000, 200, '2026-01-20')",
        )
        .unwrap();
        let v = Spi::get_one::<String>("SELECT llm_cost.create_rollup('usage_by_contributor', 'public.api_usage_log', 'month', '{contributor_id,provider}')::text").unwrap();
        assert_eq!(v.as_deref(), Some("usage_by_contributor"));
        Spi::run("SELECT llm_cost.create_rollup('public.usage_platform', 'public.api_usage_log', 'month', '{}')").unwrap();
        Spi::run(
            "INSERT INTO api_usage_log (contributor_id, provider, model, endpoint, input_tokens, output_tokens, created_at)
             SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE ('00000000-0000-0000-0000-00000000000' || (1 + g % 2))::uuid END,
                    CASE WHEN g % 2 = 0 THEN 'claude' ELSE 'openai' END, CASE WHEN g % 2 = 0 THEN 'claude-haiku-4-5' ELSE 'gpt-4.1' END,
                    '/x', g, g, timestamptz '2026-01-01' + g * interval '1 hour'
               FROM generate_series(1, 2000) g",
        )
        .unwrap();
        assert_eq!(mismatches("usage_by_contributor", "api_usage_log", "created_at", "month", &["contributor_id", "provider"], "cost_usd"), 0);
        assert_eq!(mismatches("usage_platform", "api_usage_log", "created_at", "month", &[], "cost_usd"), 0);
        // The group column keeps its source type.
        assert_eq!(
            Spi::get_one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'usage_by_contributor'::regclass AND attname = 'contributor_id'").unwrap().as_deref(),
            Some("uuid")
        );
        assert_eq!(count("SELECT count(*) FROM llm_cost.rollups WHERE source = 'api_usage_log'::regclass"), 2);
        // Comments for GraphQL layers.
        let c = Spi::get_one::<String>("SELECT obj_description('usage_by_contributor'::regclass, 'pg_class')").unwrap().unwrap();
        assert!(c.contains("@primaryKey period_start,contributor_id,provider"), "{c}");
        assert!(Spi::get_one::<String>("SELECT col_description('usage_platform'::regclass, 3)").unwrap().is_some());
        // Dropping one rollup keeps the other fed.
        Spi::run("SELECT llm_cost.drop_rollup('usage_by_contributor')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname IN ('usage_by_contributor', 'usage_by_contributor_stripes')"), 0);
        Spi::run("INSERT INTO api_usage_log (contributor_id, model, endpoint, input_tokens, output_tokens, created_at) VALUES (NULL, 'gpt-4o', '/c', 5, 5, '2026-02-01')").unwrap();
        assert_eq!(mismatches("usage_platform", "api_usage_log", "created_at", "month", &[], "cost_usd"), 0);
        Spi::run("SELECT llm_cost.drop_rollup('usage_platform')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'api_usage_log'::regclass AND tgname LIKE 'llm_cost_rollup%'"), 0);
        assert_eq!(count("SELECT count(*) FROM pg_proc WHERE proname LIKE '_llm_cost_rollup_%'"), 2); // usage_events' own
    }

    #[pg_test]
    fn reprice_fixes_rows_and_rollups_together() {
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-r', 1, 0)").unwrap();
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens, output_tokens, cost_usd) VALUES
               ('2026-05-01', 't', 'acme-r', 1000000, 0, NULL), ('2026-05-02', 't', 'acme-r', 2000000, 0, NULL),
               ('2026-05-03', 't', 'acme-r', 1000000, 0, 0.5), ('2026-07-01', 't', 'acme-r', 1000000, 0, NULL)",
        )
        .unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT sum(cost_usd)::text FROM llm_cost.usage_daily WHERE tenant_id = 't'").unwrap().as_deref(), Some("4.5"));
        Spi::run("UPDATE llm_cost.model_prices SET input_usd_per_mtok = 1.5 WHERE model = 'acme-r'").unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>("SELECT * FROM llm_cost.reprice('llm_cost.usage_events', '2026-05-01', '2026-06-01')").unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(diff.map(|d| d.to_string()).as_deref(), Some("1.5"));
        // Provided cost untouched, July outside the range untouched.
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(cost_usd::text || ':' || cost_source, ' ' ORDER BY occurred_at) FROM llm_cost.usage_events WHERE tenant_id = 't'").unwrap().as_deref(),
            Some("1.5:estimated 3:estimated 0.5:provided 1:estimated")
        );
        assert_eq!(mismatches("llm_cost.usage_daily", "llm_cost.usage_events", "occurred_at", "day", DAILY, "cost_usd"), 0);
        assert_eq!(mismatches("llm_cost.usage_monthly", "llm_cost.usage_events", "occurred_at", "month", &["tenant_id", "user_id"], "cost_usd"), 0);
        // Unpriced rows whose model got a price are priced by reprice too.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-05-05', 'u', 'late-model', 1000000)").unwrap();
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'late-model', 4)").unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>("SELECT * FROM llm_cost.reprice('llm_cost.usage_events')").unwrap();
        // The late model's row, and July's acme-r row (outside the first range) at the new price.
        assert_eq!(n, Some(2));
        assert_eq!(diff.map(|d| d.to_string()).as_deref(), Some("4.5"));
        assert_eq!(Spi::get_one::<String>("SELECT cost_usd::text || ' ' || unpriced_requests FROM llm_cost.usage_daily WHERE tenant_id = 'u'").unwrap().as_deref(), Some("4 0"));
    }

    #[pg_test]
    fn rebuild_rollup_recomputes_from_raw_rows() {
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) SELECT '2026-04-01'::timestamptz + g * interval '1 hour', 'r', 'gpt-4o', 1000 FROM generate_series(0, 71) g").unwrap();
        // Corrupt a stripe, then rebuild two of the three days.
        Spi::run("UPDATE llm_cost.usage_daily_stripes SET requests = requests + 100 WHERE tenant_id = 'r'").unwrap();
        let n = Spi::get_one::<i64>("SELECT llm_cost.rebuild_rollup('llm_cost.usage_daily', '2026-04-02 05:00+00', '2026-04-03 01:00+00')").unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(requests::text, ' ' ORDER BY period_start) FROM llm_cost.usage_daily WHERE tenant_id = 'r'").unwrap().as_deref(),
            Some("124 24 24")
        );
    }

    #[pg_test]
    fn create_rollup_refuses_bad_arguments() {
        Spi::run("CREATE TABLE public.untracked (model text, input_tokens int, output_tokens int, created_at timestamptz, cost_usd numeric, requests int)").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{}')"),
            "55000: table public.untracked is not tracked by llm_cost"
        );
        Spi::run("SELECT llm_cost.track('public.untracked')").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'year', '{}')"),
            "22023: grain must be hour, day, week or month, not \"year\""
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{nope}')"),
            "42703: group_by column \"nope\" does not exist in table public.untracked"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{requests}')"),
            "42701: cannot group by \"requests\": a rollup has a column of that name"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{model}', 'Mars/Olympus')"),
            "22023: time zone \"Mars/Olympus\" not recognized"
        );
        assert_eq!(error_of("PERFORM llm_cost.drop_rollup('public.untracked')"), "42704: public.untracked is not an llm_cost rollup");
        // Hourly and weekly grains, other time zones.
        Spi::run("SELECT llm_cost.create_rollup('public.hourly', 'public.untracked', 'hour', '{model}')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('public.weekly_paris', 'public.untracked', 'week', '{}', 'Europe/Paris')").unwrap();
        Spi::run("INSERT INTO public.untracked (model, input_tokens, output_tokens, created_at) VALUES ('gpt-4o', 1, 1, '2026-06-03 23:30+00')").unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT period_start::text FROM public.hourly").unwrap().as_deref(), Some("2026-06-03 23:00:00+00"));
        assert_eq!(
            Spi::get_one::<String>("SELECT period_start AT TIME ZONE 'Europe/Paris' || ' ' || (period_end AT TIME ZONE 'Europe/Paris') FROM public.weekly_paris").unwrap().as_deref(),
            Some("2026-06-01 00:00:00 2026-06-08 00:00:00")
        );
        // untrack drops the table's rollups too.
        Spi::run("SELECT llm_cost.untrack('public.untracked')").unwrap();
        assert_eq!(count("SELECT count(*) FROM llm_cost.rollups WHERE rollup::text IN ('hourly', 'weekly_paris')"), 0);
    }
}
