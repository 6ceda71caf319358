use pgrx::prelude::*;

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::test_support::{error_of, one};
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query failed")
            .unwrap_or(-1)
    }

    /// Rows in which the rollup and a GROUP BY over the source differ (0 when exact).
    fn mismatches(
        rollup: &str,
        source: &str,
        time_col: &str,
        grain: &str,
        group_cols: &[&str],
        cost_col: &str,
    ) -> i64 {
        let g: String = group_cols.iter().map(|c| format!(", {c}")).collect();
        // The shipped log groups by the model each row was priced as (priced_model); a rollup's
        // cost is SUM over the raw rows, NULL when none of its rows is priced.
        let sel: String = group_cols
            .iter()
            .map(|c| {
                if *c == "model" && source == "llm_cost.usage_events" {
                    ", priced_model AS model".to_string()
                } else {
                    format!(", {c}")
                }
            })
            .collect();
        let by: String = (0..group_cols.len())
            .map(|i| format!(", {}", i + 2))
            .collect();
        let q = format!(
            "WITH truth AS (
                SELECT date_trunc('{grain}', {time_col}::timestamptz, 'UTC') AS period_start{sel}, count(*)::bigint AS requests,
                       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
                       sum({cost_col}) AS cost_usd
                  FROM {source} GROUP BY 1{by}),
             mine AS (SELECT period_start{g}, requests, input_tokens, output_tokens, cost_usd FROM {rollup})
             SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM mine) a)
                  + (SELECT count(*) FROM (SELECT * FROM mine EXCEPT SELECT * FROM truth) b)"
        );
        count(&q)
    }

    const DAILY: &[&str] = &["tenant_id", "user_id", "feature", "provider", "model"];

    /// Issue 18: reports group by the model a call was priced as, and an unpriced call is never $0.00.
    #[pg_test]
    fn reports_merge_spellings_and_never_show_unpriced_as_zero() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, provider, input_tokens, output_tokens) VALUES
               ('2026-05-03 10:00+00', 'acme', 'u1', 'chat', 'openai/gpt-4o-mini', 'openai', 1000000, 0),
               ('2026-05-03 11:00+00', 'acme', 'u1', 'chat', 'gpt-4o-mini', NULL, 1000000, 0),
               ('2026-05-03 12:00+00', 'acme', 'u1', 'chat', 'models/gemini-2.5-flash', NULL, 1000000, 0),
               ('2026-05-03 13:00+00', 'acme', 'u1', 'chat', 'Gemini-2.5-Flash', NULL, 1000000, 0),
               ('2026-05-03 14:00+00', 'acme', 'u1', 'chat', 'my-fine-tuned-model', NULL, 1000, 1000),
               ('2026-05-03 15:00+00', 'acme', 'u1', 'chat', 'my-fine-tuned-model', NULL, 1000, 1000)",
        )
        .unwrap();
        assert_eq!(
            one("SELECT string_agg(model || '>' || priced_model, ', ' ORDER BY id) FROM llm_cost.usage_events").as_deref(),
            Some("openai/gpt-4o-mini>gpt-4o-mini, gpt-4o-mini>gpt-4o-mini, models/gemini-2.5-flash>gemini-2.5-flash, Gemini-2.5-Flash>gemini-2.5-flash, my-fine-tuned-model>my-fine-tuned-model, my-fine-tuned-model>my-fine-tuned-model")
        );
        assert_eq!(
            one("SELECT llm_cost.priced_model('openai/gpt-4o-mini')").as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            one("SELECT llm_cost.priced_model('no-such-model')").as_deref(),
            Some("no-such-model")
        );
        // One rollup group per model as priced; the sent spellings stay in the rows.
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL') || ' ' || unpriced_requests, '; ' ORDER BY model)
                   FROM llm_cost.usage_daily WHERE period_start = '2026-05-03'").as_deref(),
            Some("gemini-2.5-flash 2 0.6 0; gpt-4o-mini 2 0.3 0; my-fine-tuned-model 2 NULL 2")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // Reports: the unpriced model is counted and shown as unpriced, never $0.00.
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || llm_cost.format_cost(cost_usd) || ' ' || unpriced_requests, '; ' ORDER BY model)
                   FROM llm_cost.spend_by_model WHERE month = '2026-05-01'").as_deref(),
            Some("gemini-2.5-flash 2 $0.60 0; gpt-4o-mini 2 $0.30 0; my-fine-tuned-model 2 unpriced 2")
        );
        assert_eq!(
            one("SELECT llm_cost.format_cost(sum(cost_usd)) FROM llm_cost.usage_monthly")
                .as_deref(),
            Some("$0.90")
        );
        // A reprice once the model has a price moves its rows to their priced group.
        Spi::run("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('my-fine-tuned-model', 'gpt-4o')").unwrap();
        Spi::run("SELECT llm_cost.reprice('llm_cost.usage_events')").unwrap();
        assert_eq!(
            one("SELECT string_agg(model || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL'), '; ' ORDER BY model)
                   FROM llm_cost.usage_daily WHERE period_start = '2026-05-03'").as_deref(),
            Some("gemini-2.5-flash 2 0.6; gpt-4o 2 0.025; gpt-4o-mini 2 0.3")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
    }

    #[pg_test]
    fn track_maps_a_priced_model_column_of_your_table() {
        Spi::run(
            "CREATE TABLE public.pm_calls (created_at timestamptz NOT NULL DEFAULT now(), llm text, as_priced text, vc varchar(10),
                                          input_tokens int, output_tokens int, cost_usd numeric)",
        )
        .unwrap();
        for (sql, code) in [
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'nope')", "42703"),
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'vc')", "42804"),
            ("PERFORM llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'llm')", "22023"),
        ] {
            let got = error_of(sql);
            assert!(got.starts_with(code), "{sql}: {got}");
        }
        Spi::run("SELECT llm_cost.track('public.pm_calls', model_column => 'llm', priced_model_column => 'as_priced')").unwrap();
        Spi::run(
            "SELECT llm_cost.create_rollup('public.pm_daily', 'public.pm_calls', 'day', '{llm}')",
        )
        .unwrap();
        Spi::run("INSERT INTO public.pm_calls (llm, input_tokens, output_tokens) VALUES ('openai/gpt-4o-mini', 1000000, 0), ('GPT-4o-mini', 1000000, 0), ('mystery', 1, 1)").unwrap();
        assert_eq!(
            one("SELECT string_agg(llm || ' ' || requests || ' ' || coalesce(cost_usd::text, 'NULL'), '; ' ORDER BY llm) FROM public.pm_daily").as_deref(),
            Some("gpt-4o-mini 2 0.3; mystery 1 NULL")
        );
        // An UPDATE of the model follows it.
        Spi::run("UPDATE public.pm_calls SET llm = 'gpt-4o' WHERE llm = 'mystery'").unwrap();
        assert_eq!(
            one("SELECT string_agg(DISTINCT as_priced, ',') FROM public.pm_calls").as_deref(),
            Some("gpt-4o,gpt-4o-mini")
        );
        assert_eq!(
            one(
                "SELECT string_agg(llm || ' ' || requests, '; ' ORDER BY llm) FROM public.pm_daily"
            )
            .as_deref(),
            Some("gpt-4o 1; gpt-4o-mini 2")
        );
    }

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
        // Provided costs with more decimals than estimates ever have are summed exactly too.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens, cost_usd) VALUES
                    ('2026-03-02 13:00+00', 'acme', 'u3', 'gpt-4o', 1, 1, 0.123456789012345678901), ('2026-03-02 13:00+00', 'acme', 'u3', 'gpt-4o', 1, 1, 1.5)").unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.usage_daily WHERE user_id = 'u3'"
            )
            .unwrap()
            .as_deref(),
            Some("1.623456789012345678901")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // A 10,000-row statement wrote one summary row per group, not 10,000.
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_daily_stripes WHERE user_id = 'u2'"),
            1
        );
        assert_eq!(
            count("SELECT requests FROM llm_cost.usage_daily WHERE user_id = 'u2'"),
            10000
        );
        // Errors, unpriced calls and latency.
        assert_eq!(
            Spi::get_one::<String>("SELECT format('%s %s %s %s', requests, error_requests, latency_ms_sum, latency_ms_max) FROM llm_cost.usage_daily WHERE user_id = 'u1'").unwrap().as_deref(),
            Some("2 1 2400 1500")
        );
        assert_eq!(
            count("SELECT unpriced_requests FROM llm_cost.usage_daily WHERE model = 'mystery'"),
            1
        );
        // UPDATE moves rows between groups and periods.
        Spi::run("UPDATE llm_cost.usage_events SET model = 'gpt-4o', occurred_at = occurred_at + interval '1 day' WHERE user_id = 'u1'").unwrap();
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_daily WHERE model = 'claude-sonnet-4-5'"),
            0
        );
        // DELETE does not change a rollup: it is a ledger of what happened.
        let before = Spi::get_one::<String>(
            "SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily",
        )
        .unwrap();
        Spi::run("DELETE FROM llm_cost.usage_events").unwrap();
        let after = Spi::get_one::<String>(
            "SELECT sum(cost_usd)::text || '/' || sum(requests) FROM llm_cost.usage_daily",
        )
        .unwrap();
        assert_eq!(before, after);
    }

    /// COPY FROM adds rows to the rollups from the cost trigger when nothing can skip or change
    /// a row after it, and through the rollup row trigger otherwise; both are exact.
    #[pg_test]
    fn copy_rows_reach_rollups_exactly_once() {
        let paths = || {
            Spi::get_two::<i64, i64>("SELECT copy_rows, trigger_rows FROM llm_cost._rollup_paths()")
                .unwrap()
        };
        let (c0, w0) = paths();
        let (c0, w0) = (c0.unwrap(), w0.unwrap());
        Spi::run("COPY (SELECT '2026-08-0' || (1 + g % 3), 't' || g % 4, 'u' || g % 7, 'chat', CASE WHEN g % 2 = 0 THEN 'gpt-4o' ELSE 'claude-sonnet-4-5' END, g, g % 13
                        FROM generate_series(1, 3000) g) TO '/tmp/llm_cost_pg_test_copy.tsv'").unwrap();
        let copy = |t: &str| {
            format!("COPY {t} (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy.tsv'")
        };
        Spi::run(&copy("llm_cost.usage_events")).unwrap();
        assert_eq!(paths(), (Some(c0 + 3000), Some(w0)));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // The statement's copy of the trigger list was switched, not the table's: INSERT goes through the trigger.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-08-01', 't1', 'gpt-4o', 5)").unwrap();
        assert_eq!(paths(), (Some(c0 + 3000), Some(w0 + 1)));
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-08-01'"), 3001);
        // A COPY that fails halfway leaves nothing, in a subtransaction too.
        Spi::run("ALTER TABLE llm_cost.usage_events ADD CONSTRAINT small CHECK (input_tokens < 2500) NOT VALID").unwrap();
        let err = error_of(&copy("llm_cost.usage_events"));
        assert!(err.starts_with("23514"), "{err}");
        Spi::run(&format!(
            "DO $$ BEGIN {}; EXCEPTION WHEN check_violation THEN NULL; END $$",
            copy("llm_cost.usage_events")
        ))
        .unwrap();
        Spi::run("ALTER TABLE llm_cost.usage_events DROP CONSTRAINT small").unwrap();
        let c1 = paths().0.unwrap(); // the counters are per backend, not transactional
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-08-01'"), 3001);
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // A BEFORE trigger after the cost trigger could skip rows: the row trigger counts them instead.
        Spi::run("CREATE FUNCTION skip_even() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.input_tokens % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$").unwrap();
        Spi::run("CREATE TRIGGER zz_skip BEFORE INSERT ON llm_cost.usage_events FOR EACH ROW EXECUTE FUNCTION skip_even()").unwrap();
        Spi::run(&copy("llm_cost.usage_events")).unwrap();
        assert_eq!(paths(), (Some(c1), Some(w0 + 1 + 1500)));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        Spi::run("DROP TRIGGER zz_skip ON llm_cost.usage_events").unwrap();
        // A partitioned table: the fast path runs on each partition.
        Spi::run("CREATE TABLE t_pc (occurred_at timestamptz NOT NULL, tenant_id text, user_id text, feature text, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (occurred_at)").unwrap();
        Spi::run("CREATE TABLE t_pc_a PARTITION OF t_pc FOR VALUES FROM ('2026-08-01') TO ('2026-08-03')").unwrap();
        Spi::run("CREATE TABLE t_pc_b PARTITION OF t_pc FOR VALUES FROM ('2026-08-03') TO ('2026-09-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_pc', time_column => 'occurred_at')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('pc_daily', 't_pc', 'day', '{tenant_id,model}')")
            .unwrap();
        Spi::run(&copy("t_pc")).unwrap();
        assert_eq!(paths(), (Some(c1 + 3000), Some(w0 + 1 + 1500)));
        assert_eq!(
            mismatches(
                "pc_daily",
                "t_pc",
                "occurred_at",
                "day",
                &["tenant_id", "model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM pc_daily"), 3000);
    }

    /// COPY FROM into a plain tracked table is priced without the row trigger (`features/copy/batched.rs`): every
    /// row priced exactly as the trigger would, rollups exact, the application's WHERE clause
    /// respected, bad input rejecting the whole COPY, and the table's triggers intact afterwards.
    #[cfg(llm_cost_copy_shim)]
    #[pg_test]
    fn copy_prices_rows_without_the_row_trigger() {
        let paths = crate::test_support::paths;
        let wrong = "SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND (cost_usd IS DISTINCT FROM
                       llm_cost.estimate_cost(model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, occurred_at)
                       OR cost_source IS DISTINCT FROM CASE WHEN llm_cost.resolve_model(model) IS NULL THEN 'unpriced' ELSE 'estimated' END
                       OR provider IS DISTINCT FROM llm_cost.provider_of(model))";
        Spi::run("COPY (SELECT '2026-09-0' || (1 + g % 3), 't' || g % 4, 'u' || g % 7, 'chat',
                               CASE g % 3 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'anthropic/claude-sonnet-4-5' ELSE 'no-such-model-x' END, g, g % 13, g % 5
                        FROM generate_series(1, 3000) g) TO '/tmp/llm_cost_pg_test_copy2.tsv'").unwrap();
        let copy = |extra: &str| {
            format!("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy2.tsv' {extra}")
        };
        let (c0, t0, p0) = paths();
        Spi::run(&copy("")).unwrap();
        assert_eq!(paths(), (c0 + 3000, t0, p0 + 3000));
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01'"),
            3000
        );
        assert_eq!(count(wrong), 0);
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND cost_source = 'unpriced' AND cost_usd IS NULL"), 1000);
        // COPY fills the priced model like INSERT does.
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE occurred_at >= '2026-09-01' AND priced_model IS NULL"), 0);
        assert_eq!(
            count("SELECT rows FROM llm_cost.unpriced_models WHERE model = 'no-such-model-x'"),
            1000
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // The application's WHERE clause runs first: filtered rows are neither priced nor counted.
        Spi::run(&copy("WHERE input_tokens <= 100")).unwrap();
        assert_eq!(paths(), (c0 + 3100, t0, p0 + 3100));
        assert_eq!(count("SELECT sum(requests)::bigint FROM llm_cost.usage_daily WHERE period_start >= '2026-09-01'"), 3100);
        // Spelling _copy_row() out as well prices and counts each row once.
        Spi::run(&copy("WHERE input_tokens <= 10 AND llm_cost._copy_row()")).unwrap();
        assert_eq!(paths(), (c0 + 3110, t0, p0 + 3110));
        assert_eq!(count(wrong), 0);
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // The table's own trigger list is untouched: an INSERT goes through the triggers.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-09-01', 't1', 'gpt-4o', 1000000)").unwrap();
        assert_eq!(paths(), (c0 + 3110, t0 + 1, p0 + 3110));
        assert_eq!(one("SELECT cost_usd::text || ' ' || cost_source FROM llm_cost.usage_events WHERE input_tokens = 1000000").as_deref(), Some("2.5 estimated"));
        // Bad input rejects the whole COPY (in a subtransaction too), and leaves the triggers on.
        Spi::run("COPY (SELECT '2026-09-02', 'bad', 'u', 'chat', 'gpt-4o', CASE WHEN g = 500 THEN -5 ELSE g END, 1, 0
                        FROM generate_series(1, 1000) g) TO '/tmp/llm_cost_pg_test_copy3.tsv'").unwrap();
        let bad = "COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy3.tsv'";
        let err = error_of(bad);
        assert!(
            err.starts_with("22023: input_tokens must not be negative (got -5)"),
            "{err}"
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'bad'"),
            0
        );
        assert_eq!(count("SELECT coalesce(sum(requests), 0)::bigint FROM llm_cost.usage_daily WHERE tenant_id = 'bad'"), 0);
        // A NULL model: the COPY path's own 23502 (before the NOT NULL constraint), nothing stored.
        Spi::run("COPY (SELECT '2026-09-02', 'nullm', 'u', 'chat', CASE WHEN g = 7 THEN NULL ELSE 'gpt-4o' END, g, 1, 0
                        FROM generate_series(1, 10) g) TO '/tmp/llm_cost_pg_test_copy6.tsv'").unwrap();
        let err = error_of("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens) FROM '/tmp/llm_cost_pg_test_copy6.tsv'");
        assert!(
            err.starts_with("23502") && err.contains("llm_cost needs the model name"),
            "{err}"
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.usage_events WHERE tenant_id = 'nullm'"),
            0
        );
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-09-01', 't1', 'gpt-4o', 2000000)").unwrap();
        assert_eq!(
            one("SELECT cost_usd::text FROM llm_cost.usage_events WHERE input_tokens = 2000000")
                .as_deref(),
            Some("5")
        );
        assert_eq!(paths().1, t0 + 2);
        // Provided costs are kept and marked.
        Spi::run("COPY (SELECT '2026-09-03', 'prov', 'u', 'chat', 'gpt-4o', 10, 10, 0.125) TO '/tmp/llm_cost_pg_test_copy4.tsv'").unwrap();
        Spi::run("COPY llm_cost.usage_events (occurred_at, tenant_id, user_id, feature, model, input_tokens, output_tokens, cost_usd) FROM '/tmp/llm_cost_pg_test_copy4.tsv'").unwrap();
        assert_eq!(one("SELECT cost_usd::text || ' ' || cost_source || ' ' || provider FROM llm_cost.usage_events WHERE tenant_id = 'prov'").as_deref(), Some("0.125 provided openai"));
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // llm_cost.batch_copy = off: the same COPY through the row triggers, the same rows.
        Spi::run("SET LOCAL llm_cost.batch_copy = off").unwrap();
        let (c1, t1, p1) = paths();
        Spi::run(&copy("WHERE input_tokens <= 50")).unwrap();
        Spi::run("RESET llm_cost.batch_copy").unwrap();
        assert_eq!(paths(), (c1 + 50, t1, p1));
        assert_eq!(count(wrong), 1); // the provided row above
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        // Not called from COPY: an error, not a silent no-op.
        let err = error_of("PERFORM llm_cost._copy_row()");
        assert!(err.starts_with("0A000"), "{err}");
        // A table of the shape of the shared api_usage_log schema: NOT NULL DEFAULT 0 cost, no
        // cost_source, generated total_tokens (its rollup reads no generated column).
        Spi::run("CREATE TABLE t_nn (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT '2026-09-05', contributor text, model text NOT NULL,
                  input_tokens int NOT NULL, output_tokens int NOT NULL, total_tokens int GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
                  estimated_cost_usd numeric(12,8) NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_nn', cost_column => 'estimated_cost_usd')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('nn_monthly', 't_nn', 'month', '{contributor}')")
            .unwrap();
        Spi::run("COPY (SELECT 'c' || g % 3, CASE WHEN g % 10 = 0 THEN 'mystery' ELSE 'gpt-4o-mini' END, 1000 + g, 77 FROM generate_series(1, 500) g) TO '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        let p3 = paths().2;
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths().2, p3 + 500);
        assert_eq!(count("SELECT count(*) FROM t_nn WHERE estimated_cost_usd IS DISTINCT FROM coalesce(round(llm_cost.estimate_cost(model, input_tokens, output_tokens, 0, 0, created_at), 8), 0)"), 0);
        assert_eq!(
            count("SELECT count(*) FROM t_nn WHERE estimated_cost_usd = 0"),
            50
        );
        assert_eq!(
            count("SELECT unpriced_requests FROM nn_monthly WHERE contributor = 'c1'"),
            17
        );
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        // Another BEFORE row trigger (after ours): COPY goes through the row triggers. (DDL on
        // this test's own table: pg_tests run side by side, and usage_events is everyone's.)
        Spi::run("CREATE FUNCTION keep_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$").unwrap();
        Spi::run(
            "CREATE TRIGGER zz_keep BEFORE INSERT ON t_nn FOR EACH ROW EXECUTE FUNCTION keep_all()",
        )
        .unwrap();
        let (c2, t2, p2) = paths();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c2, t2 + 500, p2));
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        Spi::run("DROP TRIGGER zz_keep ON t_nn").unwrap();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c2 + 500, t2 + 500, p2 + 500));
        assert_eq!(
            count("SELECT requests FROM nn_monthly WHERE contributor = 'c1'"),
            3 * 167
        );
        // Where PostgreSQL refuses COPY FROM, its own error comes through.
        let err = error_of("SET LOCAL transaction_read_only = on; COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'");
        assert!(
            err.starts_with("25006: cannot execute COPY FROM in a read-only transaction"),
            "{err}"
        );
        // A BEFORE STATEMENT trigger runs after COPY took its copy of the trigger list and the
        // relation cache has the real one back: its INSERT into the same table is priced.
        Spi::run("CREATE FUNCTION bs_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF pg_trigger_depth() = 1 THEN
                  INSERT INTO t_nn (contributor, model, input_tokens, output_tokens) VALUES ('bs', 'gpt-4o', 1000000, 0); END IF; RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER aa_bs BEFORE INSERT ON t_nn FOR EACH STATEMENT EXECUTE FUNCTION bs_insert()").unwrap();
        let (c3, t3, p3) = paths();
        Spi::run("COPY t_nn (contributor, model, input_tokens, output_tokens) FROM '/tmp/llm_cost_pg_test_copy5.tsv'").unwrap();
        assert_eq!(paths(), (c3 + 500, t3 + 1, p3 + 500));
        assert_eq!(
            one("SELECT estimated_cost_usd::text FROM t_nn WHERE contributor = 'bs'").as_deref(),
            Some("2.50000000")
        );
        Spi::run("DROP TRIGGER aa_bs ON t_nn").unwrap();
        assert_eq!(
            mismatches(
                "nn_monthly",
                "t_nn",
                "created_at",
                "month",
                &["contributor"],
                "estimated_cost_usd"
            ),
            0
        );
        // Where the triggers would not fire (replica role, as when restoring), neither does this.
        let p1 = paths().2;
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        Spi::run(&copy("WHERE input_tokens <= 3")).unwrap();
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        assert_eq!(paths().2, p1);
        assert_eq!(count("SELECT count(*) FROM llm_cost.usage_events WHERE input_tokens <= 3 AND cost_source IS NULL"), 3);
    }

    /// Only rows actually stored count (not those an ON CONFLICT clause or a later BEFORE trigger
    /// skipped), partitions feed their root's rollups, and a caught error in another trigger keeps
    /// the statement's sums.
    #[pg_test]
    fn inserted_rows_reach_rollups_exactly_once() {
        Spi::run("CREATE TABLE t_uq (id int PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT '2026-06-01', model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_uq')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('uq_daily', 't_uq', 'day', '{model}')").unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1000, 10 FROM generate_series(1, 10) g").unwrap();
        // ON CONFLICT DO NOTHING: 5 of 10 rows are new.
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1000, 10 FROM generate_series(6, 15) g ON CONFLICT DO NOTHING").unwrap();
        // ON CONFLICT DO UPDATE: the conflicting rows are updates (amounts moved), not inserts.
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 2000, 10 FROM generate_series(14, 17) g ON CONFLICT (id) DO UPDATE SET input_tokens = excluded.input_tokens").unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || input_tokens FROM uq_daily").as_deref(),
            Some("17 21000")
        );
        assert_eq!(
            mismatches(
                "uq_daily",
                "t_uq",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        // A BEFORE trigger that runs after llm_cost_price and skips rows.
        Spi::run("CREATE FUNCTION skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$").unwrap();
        Spi::run(
            "CREATE TRIGGER zz_skip BEFORE INSERT ON t_uq FOR EACH ROW EXECUTE FUNCTION skip_odd()",
        )
        .unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1, 1 FROM generate_series(101, 110) g").unwrap();
        assert_eq!(
            one("SELECT requests::text FROM uq_daily").as_deref(),
            Some("22")
        );
        // Another AFTER trigger that catches an error (a subtransaction that aborts) for every row.
        Spi::run("CREATE FUNCTION catch_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN NULL; END; RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER catch_all AFTER INSERT ON t_uq FOR EACH ROW EXECUTE FUNCTION catch_all()").unwrap();
        Spi::run("INSERT INTO t_uq (id, model, input_tokens, output_tokens) SELECT g, 'gpt-4o', 1, 1 FROM generate_series(200, 219) g").unwrap();
        assert_eq!(
            one("SELECT requests::text FROM uq_daily").as_deref(),
            Some("32")
        );
        assert_eq!(
            mismatches(
                "uq_daily",
                "t_uq",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        // A partitioned source: rows through the root and straight into a partition.
        Spi::run("CREATE TABLE t_part (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (created_at)").unwrap();
        Spi::run("CREATE TABLE t_part_jun PARTITION OF t_part FOR VALUES FROM ('2026-06-01') TO ('2026-07-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_part')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('part_daily', 't_part', 'day', '{model}')")
            .unwrap();
        // A partition created later, with its columns in another order (other attribute numbers).
        Spi::run("CREATE TABLE t_part_jul (model text, cost_usd numeric, output_tokens int, input_tokens int, created_at timestamptz NOT NULL)").unwrap();
        Spi::run("ALTER TABLE t_part ATTACH PARTITION t_part_jul FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')").unwrap();
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) SELECT '2026-06-20'::timestamptz + g * interval '1 day', CASE WHEN g % 2 = 0 THEN 'gpt-4o' ELSE 'claude-sonnet-4-5' END, 1000 * g, g FROM generate_series(1, 20) g").unwrap();
        Spi::run("INSERT INTO t_part_jul (created_at, model, input_tokens, output_tokens) VALUES ('2026-07-30', 'gpt-4o', 7, 7)").unwrap();
        // Rows written straight into a partition are written at the next statement on the table (or before commit).
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) VALUES ('2026-06-02', 'o3', 5, 5)").unwrap();
        assert_eq!(
            mismatches(
                "part_daily",
                "t_part",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM part_daily"), 22);
        // Pending sums across savepoints (rows straight into a partition wait for the next flush):
        // a committed savepoint hands its sums to the parent, merged with the parent's for the same
        // group (costs with more than 16 decimals included); a rolled-back one drops its own.
        Spi::run(
            "DO $$ BEGIN
               INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 1, 1, 0.00000000000000001);
               BEGIN
                 INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 2, 2, 0.00000000000000002);
               EXCEPTION WHEN others THEN NULL; END;
               BEGIN
                 INSERT INTO t_part_jun (created_at, model, input_tokens, output_tokens, cost_usd) VALUES ('2026-06-03', 'o3', 4, 4, 1);
                 RAISE EXCEPTION 'undo';
               EXCEPTION WHEN others THEN NULL; END;
             END $$",
        )
        .unwrap();
        Spi::run("INSERT INTO t_part (created_at, model, input_tokens, output_tokens) VALUES ('2026-06-04', 'o3', 5, 5)").unwrap();
        assert_eq!(one("SELECT requests || ' ' || input_tokens || ' ' || cost_usd FROM part_daily WHERE period_start = '2026-06-03' AND model = 'o3'").as_deref(), Some("2 3 0.00000000000000003"));
        assert_eq!(
            mismatches(
                "part_daily",
                "t_part",
                "created_at",
                "day",
                &["model"],
                "cost_usd"
            ),
            0
        );
    }

    /// Drops this backend's cached rollup definitions (what any invalidation of a source does).
    #[pg_extern]
    fn forget_rollup_definitions() {
        crate::features::rollups::forget_all();
    }

    #[pg_test]
    fn rollups_sharing_columns_and_definitions_reloaded_mid_statement() {
        // Three rollups of one source at different grains, overlapping group columns: each row is
        // one pending entry, projected onto each rollup when written.
        Spi::run("CREATE TABLE t_multi (created_at timestamptz NOT NULL, team text, model text, input_tokens int, output_tokens int, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_multi')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_hourly', 't_multi', 'hour', '{model, team}')")
            .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_monthly', 't_multi', 'month', '{team}')")
            .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('m_total', 't_multi', 'week', '{}')").unwrap();
        Spi::run(
            "INSERT INTO t_multi SELECT '2026-06-29 22:00+00'::timestamptz + (g % 7) * interval '10 hours', 'team' || (g % 3),
                    (ARRAY['gpt-4o', 'o3', 'claude-sonnet-4-5'])[1 + g % 2], 100 * g, g, CASE WHEN g % 5 = 0 THEN 0.00000000000000001 * g END
               FROM generate_series(1, 200) g",
        )
        .unwrap();
        assert_eq!(
            mismatches(
                "m_hourly",
                "t_multi",
                "created_at",
                "hour",
                &["model", "team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "m_monthly",
                "t_multi",
                "created_at",
                "month",
                &["team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches("m_total", "t_multi", "created_at", "week", &[], "cost_usd"),
            0
        );
        assert_eq!(count("SELECT count(*) FROM m_monthly"), 6); // June and July, three teams
                                                                // Definitions dropped between the rows of one statement (here by another AFTER trigger;
                                                                // in life by any invalidation of the source): rows summed with old and new definitions
                                                                // (pending entries that never merge) are written as one summary row per group.
        Spi::run("CREATE FUNCTION forget_defs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM tests.forget_rollup_definitions(); RETURN NULL; END $$").unwrap();
        Spi::run("CREATE TRIGGER zz_forget AFTER INSERT ON t_multi FOR EACH ROW EXECUTE FUNCTION forget_defs()").unwrap();
        Spi::run("INSERT INTO t_multi SELECT '2026-06-01 10:00+00', 'reload', 'o3', 10, 1 FROM generate_series(1, 4)").unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || input_tokens FROM m_hourly WHERE team = 'reload'")
                .as_deref(),
            Some("4 40")
        );
        assert_eq!(
            count("SELECT count(*) FROM m_monthly_stripes WHERE team = 'reload'"),
            1
        );
        assert_eq!(
            mismatches(
                "m_monthly",
                "t_multi",
                "created_at",
                "month",
                &["team"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches("m_total", "t_multi", "created_at", "week", &[], "cost_usd"),
            0
        );
    }

    #[pg_test]
    fn rows_an_update_moves_between_partitions_move_in_the_rollups() {
        Spi::run("CREATE TABLE t_mv (occurred_at timestamptz NOT NULL, tenant_id text, model text, input_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0, cost_usd numeric, cost_source text) PARTITION BY RANGE (occurred_at)").unwrap();
        Spi::run("CREATE TABLE t_mv_jun PARTITION OF t_mv FOR VALUES FROM ('2026-06-01') TO ('2026-07-01')").unwrap();
        Spi::run("CREATE TABLE t_mv_jul PARTITION OF t_mv FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')").unwrap();
        Spi::run("SELECT llm_cost.track('t_mv', time_column => 'occurred_at')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('mv_daily', 't_mv', 'day', '{tenant_id, model}')")
            .unwrap();
        Spi::run("INSERT INTO t_mv (occurred_at, tenant_id, model, input_tokens, output_tokens, cost_usd) SELECT '2026-06-28'::timestamptz + g * interval '7 hours', 't' || (g % 2), 'gpt-4o', 1000 * g, g, CASE WHEN g = 4 THEN 0.5 END FROM generate_series(1, 12) g").unwrap();
        assert_eq!(count("SELECT count(*) FROM t_mv_jul"), 2);
        // Corrections of the event time: some rows change partition (June <-> July), some stay.
        Spi::run("UPDATE t_mv SET occurred_at = occurred_at + interval '2 days' WHERE input_tokens IN (3000, 4000, 5000)").unwrap();
        Spi::run("UPDATE t_mv SET occurred_at = occurred_at - interval '3 days' WHERE input_tokens IN (11000, 12000)").unwrap();
        Spi::run("UPDATE t_mv SET tenant_id = 'moved' || tenant_id, occurred_at = '2026-07-15' WHERE input_tokens = 1000").unwrap();
        assert_eq!(
            one("SELECT string_agg(input_tokens::text, ',' ORDER BY input_tokens) FROM t_mv_jul")
                .as_deref(),
            Some("1000,4000,5000")
        );
        assert_eq!(
            mismatches(
                "mv_daily",
                "t_mv",
                "occurred_at",
                "day",
                &["tenant_id", "model"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(count("SELECT sum(requests)::bigint FROM mv_daily"), 12);
        // A moved row keeps what it was: estimated stays estimated, provided stays provided.
        assert_eq!(one("SELECT string_agg(cost_source, ',' ORDER BY input_tokens) FROM t_mv WHERE input_tokens IN (1000, 3000, 4000)").as_deref(), Some("estimated,estimated,provided"));
        assert_eq!(
            one("SELECT cost_usd::text FROM t_mv WHERE input_tokens = 4000").as_deref(),
            Some("0.5")
        );
        // Deleting rows (straight, not moved) leaves the rollup as it was.
        Spi::run("DELETE FROM t_mv WHERE input_tokens > 6000").unwrap();
        assert_eq!(count("SELECT sum(requests)::bigint FROM mv_daily"), 12);
    }

    /// The flush writes stripes tables directly (src/features/rollups/stripes.rs): groups equal in SQL but spelled
    /// differently meet in one row even within one statement, aborted subtransactions leave no
    /// trace, plain extra indexes on a stripes table are kept, expression indexes are refused.
    #[pg_test]
    fn direct_stripe_writes_edge_cases() {
        Spi::run("CREATE TABLE t_tier (created_at timestamptz NOT NULL DEFAULT '2026-06-01', model text, input_tokens int, output_tokens int, cost_usd numeric, tier numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_tier')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('tier_daily', 't_tier', 'day', '{tier}')").unwrap();
        // 1.0 and 1.00 are different bytes but one group: two sums for one stripe row in one flush.
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1.0), ('gpt-4o', 1000, 0, 1.00), ('gpt-4o', 1000, 0, NULL)").unwrap();
        assert_eq!(count("SELECT count(*) FROM tier_daily_stripes"), 2);
        assert_eq!(Spi::get_one::<String>("SELECT string_agg(requests || ':' || cost_usd * 10000, ' ' ORDER BY tier NULLS LAST) FROM tier_daily").unwrap().as_deref(), Some("2:50.0000 1:25.0000"));
        // A subtransaction that fails after inserting leaves the rollup as it was.
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1); RAISE EXCEPTION 'boom'");
        assert!(err.contains("boom"), "{err}");
        Spi::run("DO $$ BEGIN BEGIN INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 1); RAISE EXCEPTION 'boom'; EXCEPTION WHEN others THEN NULL; END; INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 2); END $$").unwrap();
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT string_agg(requests::text, ' ' ORDER BY tier NULLS LAST) FROM tier_daily"
            )
            .unwrap()
            .as_deref(),
            Some("2 1 1")
        );
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
        // A plain index a DBA adds on the stripes table is maintained (new rows and updates).
        Spi::run("CREATE INDEX tier_stripes_tier ON tier_daily_stripes (tier, requests)").unwrap();
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) SELECT 'gpt-4o', 10, 0, g % 5 FROM generate_series(1, 50) g").unwrap();
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        Spi::run("SET LOCAL enable_bitmapscan = off").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM tier_daily_stripes WHERE tier = 1 AND requests = 12"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM tier_daily_stripes WHERE tier = 4 AND requests = 10"),
            1
        );
        Spi::run("RESET enable_seqscan").unwrap();
        Spi::run("RESET enable_bitmapscan").unwrap();
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
        // An expression index cannot be maintained without the executor: a clear error, nothing stored.
        Spi::run("CREATE INDEX tier_stripes_expr ON tier_daily_stripes ((tier * 2))").unwrap();
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1, 0, 9)");
        assert!(err.starts_with("0A000: llm_cost: index tier_stripes_expr on the rollup stripes table tier_daily_stripes has expressions"), "{err}");
        Spi::run("DROP INDEX tier_stripes_expr").unwrap();
        // A sum past bigint is an error (22003), never a wrapped count.
        Spi::run("UPDATE tier_daily_stripes SET input_tokens = input_tokens + 9223372036854774000 WHERE tier = 2").unwrap();
        let err = error_of("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1000, 0, 2)");
        assert!(
            err.starts_with("22003: llm_cost: rollup sum out of range for bigint"),
            "{err}"
        );
        Spi::run("UPDATE tier_daily_stripes SET input_tokens = input_tokens - 9223372036854774000 WHERE tier = 2").unwrap();
        Spi::run("INSERT INTO t_tier (model, input_tokens, output_tokens, tier) VALUES ('gpt-4o', 1, 0, 9)").unwrap();
        assert_eq!(
            mismatches(
                "tier_daily",
                "t_tier",
                "created_at",
                "day",
                &["tier"],
                "cost_usd"
            ),
            0
        );
    }

    #[pg_test]
    fn shared_schema_monthly_and_platform_wide_with_backfill() {
        Spi::run(include_str!("../../../tests/data/api_usage_log.sql")).unwrap();
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
        assert_eq!(
            mismatches(
                "usage_by_contributor",
                "api_usage_log",
                "created_at",
                "month",
                &["contributor_id", "provider"],
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "usage_platform",
                "api_usage_log",
                "created_at",
                "month",
                &[],
                "cost_usd"
            ),
            0
        );
        // The group column keeps its source type.
        assert_eq!(
            Spi::get_one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'usage_by_contributor'::regclass AND attname = 'contributor_id'").unwrap().as_deref(),
            Some("uuid")
        );
        assert_eq!(
            count("SELECT count(*) FROM llm_cost.rollups WHERE source = 'api_usage_log'::regclass"),
            2
        );
        // Comments for GraphQL layers.
        let c = Spi::get_one::<String>(
            "SELECT obj_description('usage_by_contributor'::regclass, 'pg_class')",
        )
        .unwrap()
        .unwrap();
        assert!(
            c.starts_with(
                "@primaryKey row_key\nLLM usage and cost per contributor_id, provider per month"
            ),
            "{c}"
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT row_key FROM usage_by_contributor WHERE contributor_id IS NULL AND provider = 'openai' ORDER BY period_start LIMIT 1").unwrap().as_deref(),
            Some(r#"["2026-01-01T00:00:00+00:00", null, "openai"]"#)
        );
        assert!(
            Spi::get_one::<String>("SELECT col_description('usage_platform'::regclass, 3)")
                .unwrap()
                .is_some()
        );
        // Dropping one rollup keeps the other fed.
        Spi::run("SELECT llm_cost.drop_rollup('usage_by_contributor')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname IN ('usage_by_contributor', 'usage_by_contributor_stripes')"), 0);
        Spi::run("INSERT INTO api_usage_log (contributor_id, model, endpoint, input_tokens, output_tokens, created_at) VALUES (NULL, 'gpt-4o', '/c', 5, 5, '2026-02-01')").unwrap();
        assert_eq!(
            mismatches(
                "usage_platform",
                "api_usage_log",
                "created_at",
                "month",
                &[],
                "cost_usd"
            ),
            0
        );
        Spi::run("SELECT llm_cost.drop_rollup('usage_platform')").unwrap();
        assert_eq!(count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'api_usage_log'::regclass AND tgname LIKE 'llm_cost_rollup%'"), 0);
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
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT sum(cost_usd)::text FROM llm_cost.usage_daily WHERE tenant_id = 't'"
            )
            .unwrap()
            .as_deref(),
            Some("4.5")
        );
        Spi::run(
            "UPDATE llm_cost.model_prices SET input_usd_per_mtok = 1.5 WHERE model = 'acme-r'",
        )
        .unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>(
            "SELECT * FROM llm_cost.reprice('llm_cost.usage_events', '2026-05-01', '2026-06-01')",
        )
        .unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(diff.map(|d| d.to_string()).as_deref(), Some("1.5"));
        // Provided cost untouched, July outside the range untouched.
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(cost_usd::text || ':' || cost_source, ' ' ORDER BY occurred_at) FROM llm_cost.usage_events WHERE tenant_id = 't'").unwrap().as_deref(),
            Some("1.5:estimated 3:estimated 0.5:provided 1:estimated")
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_daily",
                "llm_cost.usage_events",
                "occurred_at",
                "day",
                DAILY,
                "cost_usd"
            ),
            0
        );
        assert_eq!(
            mismatches(
                "llm_cost.usage_monthly",
                "llm_cost.usage_events",
                "occurred_at",
                "month",
                &["tenant_id", "user_id"],
                "cost_usd"
            ),
            0
        );
        // Unpriced rows whose model got a price are priced by reprice too.
        Spi::run("INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, model, input_tokens) VALUES ('2026-05-05', 'u', 'late-model', 1000000)").unwrap();
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'late-model', 4)").unwrap();
        let (n, diff) = Spi::get_two::<i64, pgrx::AnyNumeric>(
            "SELECT * FROM llm_cost.reprice('llm_cost.usage_events')",
        )
        .unwrap();
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
    fn without_citus_the_citus_paths_stay_shut() {
        // No Citus here: no table is distributed, none is a shard, this is no coordinator.
        Spi::run("CREATE TABLE public.t_plain_42 (at timestamptz NOT NULL DEFAULT now(), team text, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text)").unwrap();
        Spi::run("SELECT llm_cost.track('public.t_plain_42', time_column => 'at')").unwrap();
        assert_eq!(
            one("SELECT row(d.*)::text FROM llm_cost._citus_distribution('public.t_plain_42') d"),
            Some("(,,)".into())
        );
        assert_eq!(
            one("SELECT row(d.*)::text FROM llm_cost._citus_shard_logical('public.t_plain_42') d"),
            Some("(,,)".into())
        );
        assert_eq!(
            one("SELECT llm_cost._citus_coordinator()::text"),
            Some("false".into())
        );
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups('public.t_plain_42')"),
            "55000: public.t_plain_42 is not a Citus distributed table"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups(NULL)"),
            "22004: llm_cost.distribute_rollups: source must not be NULL"
        );
        Spi::run("CREATE ROLE r_not_owner NOLOGIN; SET ROLE r_not_owner").unwrap();
        assert_eq!(
            error_of("PERFORM llm_cost.distribute_rollups('public.t_plain_42')"),
            "42501: must be owner of table public.t_plain_42 to distribute its rollups"
        );
        Spi::run("RESET ROLE").unwrap();
        // A rollup's keys are its group columns, its trigger has no argument.
        Spi::run("SELECT llm_cost.create_rollup('public.t_plain_42_daily', 'public.t_plain_42', 'day', '{team}')").unwrap();
        assert_eq!(
            one("SELECT llm_cost._rollup_keys(r)::text FROM llm_cost.rollups r WHERE r.rollup = 'public.t_plain_42_daily'::regclass"),
            Some("{team}".into())
        );
        assert_eq!(
            one("SELECT tgnargs::text FROM pg_trigger WHERE tgrelid = 'public.t_plain_42'::regclass AND tgname = 'llm_cost_rollup'"),
            Some("0".into())
        );
        // A hand-made shard trigger (what a shard's carries: the mapping by column name) on a
        // plain table never writes anywhere: its rows are refused.
        Spi::run(
            r#"CREATE TRIGGER llm_cost_rollup_7 AFTER INSERT ON public.t_plain_42 FOR EACH ROW EXECUTE FUNCTION llm_cost.rollup_row_trigger(
               '{"time": "at", "cost": "cost_usd", "model": "model", "input": "input_tokens", "output": "output_tokens", "zone": "UTC",
                 "rollups": [{"id": 1, "grain": "day", "time_zone": "UTC", "groups": ["team"], "stripes": "public.t_plain_42_daily_stripes",
                              "stripes_groups": ["team"]}]}')"#,
        )
        .unwrap();
        Spi::run("DROP TRIGGER llm_cost_rollup ON public.t_plain_42").unwrap();
        assert_eq!(
            error_of("INSERT INTO public.t_plain_42 (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1, 1)"),
            "55000: llm_cost: public.t_plain_42 is not a shard of a Citus distributed table, but its rollup trigger is one for shards"
        );
        assert_eq!(
            one("SELECT count(*)::text FROM public.t_plain_42_daily"),
            Some("0".into())
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
            error_of(
                "PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{requests}')"
            ),
            "42701: cannot group by \"requests\": a rollup has a column of that name"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.create_rollup('x', 'public.untracked', 'day', '{model}', 'Mars/Olympus')"),
            "22023: time zone \"Mars/Olympus\" not recognized"
        );
        assert_eq!(
            error_of("PERFORM llm_cost.drop_rollup('public.untracked')"),
            "42704: public.untracked is not an llm_cost rollup"
        );
        // Hourly and weekly grains, other time zones.
        Spi::run(
            "SELECT llm_cost.create_rollup('public.hourly', 'public.untracked', 'hour', '{model}')",
        )
        .unwrap();
        Spi::run("SELECT llm_cost.create_rollup('public.weekly_paris', 'public.untracked', 'week', '{}', 'Europe/Paris')").unwrap();
        Spi::run("INSERT INTO public.untracked (model, input_tokens, output_tokens, created_at) VALUES ('gpt-4o', 1, 1, '2026-06-03 23:30+00')").unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT period_start::text FROM public.hourly")
                .unwrap()
                .as_deref(),
            Some("2026-06-03 23:00:00+00")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT period_start AT TIME ZONE 'Europe/Paris' || ' ' || (period_end AT TIME ZONE 'Europe/Paris') FROM public.weekly_paris").unwrap().as_deref(),
            Some("2026-06-01 00:00:00 2026-06-08 00:00:00")
        );
        // untrack drops the table's rollups too.
        Spi::run("SELECT llm_cost.untrack('public.untracked')").unwrap();
        assert_eq!(count("SELECT count(*) FROM llm_cost.rollups WHERE rollup::text IN ('hourly', 'weekly_paris')"), 0);
    }

    #[pg_test]
    fn report_views() {
        Spi::run(
            "INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens) VALUES
               ('t', 'ann', 'chat', 'claude-sonnet-4-5', 100000, 0), ('t', 'ann', 'chat', 'gpt-4o', 1000000, 0),
               ('t', 'ann', 'search', 'gpt-4o', 1000000, 0), ('t', 'bob', 'chat', 'claude-sonnet-4-5', 200000, 0)",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(period || '=' || (cost_usd = 5.9), ' ' ORDER BY period) FROM llm_cost.spend_summary").unwrap().as_deref(),
            Some("this month=true this week=true today=true")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT predominant_model || ' ' || requests || ' ' || avg_cost_per_request_usd FROM llm_cost.user_stats WHERE user_id = 'ann'").unwrap().as_deref(),
            Some("gpt-4o 3 1.76666667")
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT predominant_model FROM llm_cost.feature_stats WHERE feature = 'chat'"
            )
            .unwrap()
            .as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT user_id FROM llm_cost.top_users WHERE spend_rank = 1")
                .unwrap()
                .as_deref(),
            Some("ann")
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.spend_by_model WHERE model = 'gpt-4o'"
            )
            .unwrap()
            .as_deref(),
            Some("5.0")
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT requests FROM llm_cost.daily_trend").unwrap(),
            Some(4)
        );
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT cost_usd::text FROM llm_cost.spend_by_feature WHERE feature = 'search'"
            )
            .unwrap()
            .as_deref(),
            Some("2.5")
        );
    }

    /// Hardening item 6: NaN and Infinity costs are refused (22023) on INSERT, UPDATE and COPY;
    /// the totals stay numbers.
    #[pg_test]
    fn non_finite_costs_are_refused_everywhere() {
        Spi::run("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, 0.5)").unwrap();
        for v in ["'NaN'", "'Infinity'", "'-Infinity'"] {
            let e = error_of(&format!("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens, cost_usd) VALUES ('gpt-4o', 1, 1, {v})"));
            assert!(
                e.starts_with("22023: cost_usd must be a finite number"),
                "{v}: {e}"
            );
            let e = error_of(&format!("UPDATE llm_cost.usage_events SET cost_usd = {v}"));
            assert!(e.starts_with("22023"), "{v}: {e}");
        }
        // A tracked table of the application's, and COPY (the batched path and the row trigger).
        Spi::run("CREATE TABLE t_nan (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost numeric NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_nan', cost_column => 'cost')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_nan_total', 't_nan', 'month', '{}')").unwrap();
        Spi::run("COPY (SELECT 'gpt-4o', 1, 1, 'NaN') TO '/tmp/llm_cost_pg_test_nan.tsv'").unwrap();
        for batch in ["on", "off"] {
            Spi::run(&format!("SET llm_cost.batch_copy = {batch}")).unwrap();
            let e = error_of("COPY t_nan (model, input_tokens, output_tokens, cost) FROM '/tmp/llm_cost_pg_test_nan.tsv'");
            assert!(
                e.starts_with("22023: cost must be a finite number"),
                "{batch}: {e}"
            );
        }
        Spi::run("RESET llm_cost.batch_copy").unwrap();
        assert_eq!(
            one("SELECT count(*)::text FROM t_nan").as_deref(),
            Some("0")
        );
        Spi::run("DELETE FROM llm_cost.usage_events").unwrap();
        assert_eq!(
            one("SELECT sum(cost_usd)::text FROM llm_cost.usage_daily").as_deref(),
            Some("0.5")
        );
        assert_eq!(
            one("SELECT bool_and(cost_usd <> 'NaN')::text FROM llm_cost.spend_summary").as_deref(),
            Some("true")
        );
    }

    /// Hardening item 8: without cost_source, a NOT NULL DEFAULT 0 cost column; an unknown model
    /// priced later and repriced leaves the rollup's unpriced_requests at 0, as a rebuild would.
    #[pg_test]
    fn reprice_without_cost_source_moves_the_row_out_of_unpriced() {
        Spi::run("CREATE TABLE t_rp (created_at timestamptz NOT NULL DEFAULT '2026-10-01', team text, model text, input_tokens int, output_tokens int, cost numeric(14,8) NOT NULL DEFAULT 0)").unwrap();
        Spi::run("SELECT llm_cost.track('t_rp', cost_column => 'cost')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_rp_daily', 't_rp', 'day', '{team}')").unwrap();
        Spi::run("INSERT INTO t_rp (team, model, input_tokens, output_tokens) VALUES ('a', 'acme-later-1', 1000000, 0), ('a', 'gpt-4o', 0, 0), ('b', 'gpt-4o', 1000000, 0)").unwrap();
        let state = || {
            one("SELECT string_agg(team || ':' || requests || '/' || unpriced_requests || '/' || trim_scale(cost_usd), ' ' ORDER BY team) FROM t_rp_daily").unwrap()
        };
        // The zero-token call is priced (its estimate is 0), the unknown model is not.
        assert_eq!(state(), "a:2/1/0 b:1/0/2.5");
        Spi::run("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-later-1', 4, 8)").unwrap();
        // A price alone does not change what was stored.
        assert_eq!(state(), "a:2/1/0 b:1/0/2.5");
        Spi::run("SELECT * FROM llm_cost.reprice('t_rp')").unwrap();
        assert_eq!(state(), "a:2/0/4 b:1/0/2.5");
        Spi::run("SELECT llm_cost.rebuild_rollup('t_rp_daily')").unwrap();
        assert_eq!(state(), "a:2/0/4 b:1/0/2.5");
    }

    /// Hardening item 10: a type change of a grouped column is refused; so is a tracked column
    /// changed to a type the cost trigger cannot read. Other changes go through.
    #[pg_test]
    fn column_type_changes_llm_cost_cannot_follow_are_refused() {
        Spi::run("CREATE TABLE t_ty (created_at timestamptz NOT NULL DEFAULT now(), team int, note int, model text, input_tokens int, output_tokens int, cost_usd numeric, provider text)").unwrap();
        Spi::run("SELECT llm_cost.track('t_ty', provider_column => 'provider')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_ty_daily', 't_ty', 'day', '{team}')").unwrap();
        let e = error_of("ALTER TABLE t_ty ALTER team TYPE bigint");
        assert!(e.starts_with("0A000: cannot change the type of a column of public.t_ty that llm_cost rollup public.t_ty_daily groups by: team (bigint, summed as integer)"), "{e}");
        let e = error_of("ALTER TABLE t_ty ALTER team TYPE text");
        assert!(e.starts_with("0A000"), "{e}");
        // The provider column (the only mapped one PostgreSQL lets change type under the cost
        // trigger's UPDATE OF list) to a type the trigger cannot fill.
        let e = error_of("ALTER TABLE t_ty ALTER provider TYPE int USING 0");
        assert!(
            e.starts_with("42804: column \"provider\" of table public.t_ty has type integer"),
            "{e}"
        );
        // Not grouped, or still a text type: fine.
        assert_eq!(error_of("ALTER TABLE t_ty ALTER note TYPE bigint"), "ok");
        assert_eq!(
            error_of("ALTER TABLE t_ty ALTER provider TYPE varchar(40)"),
            "ok"
        );
        Spi::run("INSERT INTO t_ty (team, note, model, input_tokens, output_tokens) VALUES (7, 5000000000, 'gpt-4o', 5000000, 0)").unwrap();
        assert_eq!(
            one("SELECT team || ' ' || input_tokens || ' ' || cost_usd FROM t_ty_daily").as_deref(),
            Some("7 5000000 12.5")
        );
        assert_eq!(one("SELECT provider FROM t_ty").as_deref(), Some("openai"));
        // Past the event trigger (event triggers off): the rollup refuses to write the wrong type.
        Spi::run("SET session_replication_role = replica; ALTER TABLE t_ty ALTER team TYPE bigint; RESET session_replication_role;").unwrap();
        let e = error_of("INSERT INTO t_ty (team, model, input_tokens, output_tokens) VALUES (5000000000, 'gpt-4o', 1, 0)");
        assert!(
            e.starts_with(
                "42804: llm_cost: rollup public.t_ty_daily groups by columns whose type differs"
            ),
            "{e}"
        );
    }

    /// Hardening item 11: pending sums that overflow bigint fail with 22003, never wrap.
    #[pg_test]
    fn overflowing_sums_fail_instead_of_wrapping() {
        Spi::run("CREATE TABLE t_ov (created_at timestamptz NOT NULL DEFAULT now(), model text, input_tokens bigint, output_tokens bigint, cost_usd numeric)").unwrap();
        Spi::run("SELECT llm_cost.track('t_ov')").unwrap();
        Spi::run("SELECT llm_cost.create_rollup('t_ov_total', 't_ov', 'month', '{}')").unwrap();
        let e = error_of("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0), ('nope', 5000000000000000000, 0)");
        assert!(e.starts_with("22003"), "{e}");
        assert_eq!(
            one("SELECT count(*)::text FROM t_ov_total").as_deref(),
            Some("0")
        );
        Spi::run("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0)").unwrap();
        let e = error_of("INSERT INTO t_ov (model, input_tokens, output_tokens) VALUES ('nope', 5000000000000000000, 0)");
        assert!(e.starts_with("22003"), "{e}");
        assert_eq!(
            one("SELECT input_tokens::text FROM t_ov_total").as_deref(),
            Some("5000000000000000000")
        );
    }

    /// Hardening item 15: the stripes table and its indexes stay locked until the transaction
    /// that wrote uncommitted row versions there ends.
    #[pg_test]
    fn stripes_locks_are_held_to_the_end_of_the_transaction() {
        Spi::run("INSERT INTO llm_cost.usage_events (model, input_tokens, output_tokens) VALUES ('gpt-4o', 1, 1)").unwrap();
        assert_eq!(
            one("SELECT count(*)::text FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'RowExclusiveLock'
                  AND relation IN (SELECT 'llm_cost.usage_daily_stripes'::regclass UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = 'llm_cost.usage_daily_stripes'::regclass)").as_deref(),
            Some("2")
        );
    }

    /// Hardening item 7 (in one session): rebuild_rollup writes the sums still pending first.
    #[pg_test]
    fn rebuild_after_rows_straight_into_a_partition_counts_them_once() {
        Spi::run(
            "CREATE TABLE t_pp (created_at timestamptz NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric) PARTITION BY RANGE (created_at);
             CREATE TABLE t_pp_1 PARTITION OF t_pp FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             SELECT llm_cost.track('t_pp');
             SELECT llm_cost.create_rollup('t_pp_m', 't_pp', 'month', '{}');
             INSERT INTO t_pp_1 (created_at, model, input_tokens, output_tokens) VALUES ('2026-03-01', 'gpt-4o', 1000000, 0);
             SELECT llm_cost.rebuild_rollup('t_pp_m');
             SELECT llm_cost._flush_pending_sums();",
        )
        .unwrap();
        assert_eq!(
            one("SELECT requests || ' ' || cost_usd FROM t_pp_m").as_deref(),
            Some("1 2.5")
        );
        // Rows left pending outside a savepoint: a rebuild inside it is refused, not wrong.
        Spi::run("INSERT INTO t_pp_1 (created_at, model, input_tokens, output_tokens) VALUES ('2026-03-02', 'gpt-4o', 1000000, 0)").unwrap();
        let e = error_of("PERFORM llm_cost.rebuild_rollup('t_pp_m')");
        assert!(e.starts_with("55000"), "{e}");
    }

    /// reprice and rebuild_rollup act on a table's behalf: as its owner, under a
    /// security-restricted operation. A superuser repricing a table whose owner's trigger grants
    /// the owner superuser when a superuser runs it grants nothing; others may not run them.
    #[pg_test]
    fn reprice_and_rebuild_run_as_the_table_owner() {
        Spi::run(
            "CREATE ROLE t_rp_evil NOLOGIN; CREATE SCHEMA t_rp_s AUTHORIZATION t_rp_evil; CREATE ROLE t_rp_other NOLOGIN;
             SET ROLE t_rp_evil;
             CREATE TABLE t_rp_s.calls (created_at timestamptz NOT NULL DEFAULT '2026-10-01', model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text);
             CREATE TABLE t_rp_s.seen (who text);
             CREATE FUNCTION t_rp_s.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
                 INSERT INTO t_rp_s.seen VALUES (current_user);
                 IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                     EXECUTE 'ALTER ROLE t_rp_evil SUPERUSER';
                 END IF;
                 RETURN NEW;
             END $f$;
             SELECT llm_cost.track('t_rp_s.calls');
             SELECT llm_cost.create_rollup('t_rp_s.calls_m', 't_rp_s.calls', 'month', '{}');
             CREATE TRIGGER grab BEFORE UPDATE ON t_rp_s.calls FOR EACH ROW EXECUTE FUNCTION t_rp_s.grab();
             INSERT INTO t_rp_s.calls (model, input_tokens, output_tokens) VALUES ('acme-rp-later', 1000000, 0);
             RESET ROLE;
             INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-rp-later', 3, 0);",
        )
        .unwrap();
        assert_eq!(one("SELECT rows_changed || ' ' || cost_difference FROM llm_cost.reprice('t_rp_s.calls')").as_deref(), Some("1 3"));
        assert_eq!(
            one("SELECT rolsuper::text FROM pg_roles WHERE rolname = 't_rp_evil'").as_deref(),
            Some("false")
        );
        assert_eq!(
            one("SELECT string_agg(who, ',') FROM t_rp_s.seen").as_deref(),
            Some("t_rp_evil")
        );
        assert_eq!(
            one("SELECT cost_usd::text FROM t_rp_s.calls_m").as_deref(),
            Some("3")
        );
        assert_eq!(
            one("SELECT llm_cost.rebuild_rollup('t_rp_s.calls_m')::text").as_deref(),
            Some("1")
        );
        assert_eq!(
            one("SELECT current_user::text").as_deref(),
            Some("postgres")
        );
        // Not the owner: refused.
        Spi::run("SET ROLE t_rp_other").unwrap();
        for sql in ["PERFORM llm_cost.reprice('t_rp_s.calls')", "PERFORM llm_cost.rebuild_rollup('t_rp_s.calls_m')",
                    "PERFORM llm_cost.reprice('llm_cost.usage_events')",
                    "PERFORM llm_cost._as_table_owner('reprice', 'llm_cost.usage_events'::regclass::oid, '{}')"] {
            let e = error_of(sql);
            assert!(e.starts_with("42501"), "{sql}: {e}");
        }
        Spi::run("RESET ROLE").unwrap();
    }
}
