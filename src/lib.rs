//! llm_cost: an exact, self-maintaining ledger of what LLM calls cost, inside PostgreSQL.
//!
//! Functional core: `pricing` (exact cost arithmetic) and `catalog` (model-name resolution) are
//! plain Rust. Postgres shell: `cache` (per-backend catalog cache), `pricing_sql` (SQL functions).

use pgrx::prelude::*;

pub mod cache;
pub mod catalog;
#[cfg(llm_cost_copy_shim)]
pub mod copy;
pub mod numeric;
pub mod pending;
pub mod pricing;
pub mod pricing_sql;
pub mod privilege;
pub mod registry;
pub mod retention;
pub mod rollups;
pub mod security;
pub mod stripes;
#[cfg(any(test, feature = "pg_test"))]
pub mod test_support;
pub mod usage;

::pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    usage::init_gucs();
    retention::init_gucs();
    #[cfg(llm_cost_copy_shim)]
    copy::install_hooks();
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        retention::PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
        retention::register_launcher();
    }
}

extension_sql_file!("../sql/catalog.sql", name = "catalog_tables", bootstrap);
extension_sql_file!("../sql/prices.sql", name = "shipped_prices", requires = ["catalog_tables"]);
extension_sql_file!("../sql/catalog_protect.sql", name = "catalog_protect", requires = ["shipped_prices"]);
extension_sql!(
    r#"
CREATE TRIGGER model_prices_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost.catalog_changed();
CREATE TRIGGER model_aliases_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.model_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost.catalog_changed();
"#,
    name = "catalog_invalidation",
    requires = ["catalog_protect", cache::catalog_changed]
);
extension_sql_file!(
    "../sql/usage.sql",
    name = "usage",
    requires = [
        "catalog_invalidation",
        usage::usage_cost_trigger,
        usage::usage_statement_end,
        pricing_sql::resolve_model,
        pricing_sql::provider_of,
        registry::_registry_put,
        registry::_registry_delete
    ]
);
extension_sql_file!("../sql/rollups.sql", name = "rollups", requires = ["usage", rollups::stripe, rollups::rollup_row_trigger]);
extension_sql_file!("../sql/reports.sql", name = "reports", requires = ["rollups"]);
extension_sql_file!("../sql/retention.sql", name = "retention", requires = ["reports"]);
extension_sql_file!("../sql/security.sql", name = "security", requires = ["retention", security::current_principal]);
extension_sql!(
    r#"
DO $$
BEGIN
    IF NOT llm_cost._preloaded() THEN
        RAISE NOTICE 'llm_cost is not in shared_preload_libraries: everything works, but old usage rows are purged only when you call llm_cost.run_retention()'
              USING HINT = 'Add llm_cost to shared_preload_libraries and restart to have the background worker purge them.';
    END IF;
END $$;
"#,
    name = "preload_notice",
    requires = ["security"],
    finalize
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn num(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).expect("query failed")
    }

    #[pg_test]
    fn sonnet_costs_18() {
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000000, 1000000)::text").as_deref(), Some("18"));
        assert_eq!(
            num("SELECT llm_cost.estimate_cost('anthropic/claude-sonnet-4-5-20250929', 1000000, 1000000)::text").as_deref(),
            Some("18")
        );
        assert_eq!(Spi::get_one::<bool>("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000000, 1000000) = 18").unwrap(), Some(true));
    }

    #[pg_test]
    fn unknown_model_is_null_not_zero() {
        assert_eq!(num("SELECT llm_cost.estimate_cost('no-such-model', 1, 1)::text"), None);
        assert_eq!(num("SELECT llm_cost.resolve_model('no-such-model')"), None);
    }

    #[pg_test]
    fn null_arguments_give_null() {
        assert_eq!(num("SELECT llm_cost.estimate_cost(NULL, 1, 1)::text"), None);
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-4o', NULL, 1)::text"), None);
    }

    #[pg_test(error = "input_tokens must not be negative")]
    fn negative_input_tokens() {
        Spi::run("SELECT llm_cost.estimate_cost('gpt-4o', -1, 1)").unwrap();
    }

    #[pg_test(error = "cache_write_tokens must not be negative")]
    fn negative_cache_write_tokens_in_explain() {
        Spi::run("SELECT llm_cost.explain_cost('gpt-4o', 1, 1, 0, -3)").unwrap();
    }

    #[pg_test]
    fn negative_tokens_sqlstate_is_22023() {
        Spi::run(
            "DO $$ BEGIN PERFORM llm_cost.estimate_cost('gpt-4o', 1, -1);
               EXCEPTION WHEN OTHERS THEN PERFORM set_config('t.state', SQLSTATE || ':' || SQLERRM, true); END $$",
        )
        .unwrap();
        assert_eq!(num("SELECT current_setting('t.state')").as_deref(), Some("22023:output_tokens must not be negative"));
    }

    #[pg_test]
    fn bigint_max_does_not_overflow() {
        let v = num("SELECT llm_cost.estimate_cost('claude-opus-4-1-20250805', 9223372036854775807, 9223372036854775807, 9223372036854775807, 9223372036854775807)::text").unwrap();
        // (15 + 75 + 1.5 + 18.75) * (2^63-1) / 1e6
        assert_eq!(v, "1016876767063239.03272175");
        assert_eq!(
            Spi::get_one::<bool>(&format!("SELECT {v}::numeric * 1000000 = 110.25 * 9223372036854775807::numeric")).unwrap(),
            Some(true)
        );
    }

    #[pg_test]
    fn cache_tokens_and_fallback() {
        // Anthropic: cache read 0.3, write 3.75 per 1M.
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000, 500, 20000, 4000)::text").as_deref(), Some("0.0315"));
        // claude-3-haiku publishes no cache prices: the input price (0.25) applies to both.
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-3-haiku-20240307', 0, 0, 1000000, 1000000)::text").as_deref(), Some("0.5"));
    }

    #[pg_test]
    fn long_context_tier() {
        // gpt-5.4: 2.5/15 below 272k prompt tokens, 5/22.5 from 272k.
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-5.4', 271999, 0)::text").as_deref(), Some("0.6799975"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-5.4', 272000, 1000000)::text").as_deref(), Some("23.86"));
        // Cached prompt tokens count towards the tier.
        assert_eq!(num("SELECT llm_cost.estimate_cost('gpt-5.4', 200000, 0, 72000)::text").as_deref(), Some("1.036"));
    }

    #[pg_test]
    fn price_history_by_event_time() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
             VALUES ('acme', 'acme-1', 10, 20, '-infinity', '2026-01-01'),
                    ('acme', 'acme-1', 1, 2, '2026-01-01', 'infinity')",
        )
        .unwrap();
        assert_eq!(num("SELECT llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2025-12-31 23:59:59+00')::text").as_deref(), Some("10"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('acme-1', 1000000, 0, 0, 0, '2026-01-01 00:00:00+00')::text").as_deref(), Some("1"));
    }

    #[pg_test(error = "price rows of acme acme-2 (tier min_input_tokens 0) overlap in time")]
    fn overlapping_prices_rejected() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
             VALUES ('acme', 'acme-2', 10, 20, '-infinity', '2026-02-01'),
                    ('acme', 'acme-2', 1, 2, '2026-01-01', 'infinity')",
        )
        .unwrap();
    }

    #[pg_test]
    fn own_rows_override_shipped_and_shipped_rows_are_read_only() {
        Spi::run(
            "INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, note)
             VALUES ('anthropic', 'claude-sonnet-4-5-20250929', 2, 10, 'negotiated')",
        )
        .unwrap();
        assert_eq!(num("SELECT llm_cost.estimate_cost('claude-sonnet-4-5', 1000000, 1000000)::text").as_deref(), Some("12"));
        Spi::run(
            "DO $$ BEGIN UPDATE llm_cost.model_prices SET input_usd_per_mtok = 0 WHERE id = 3;
               EXCEPTION WHEN insufficient_privilege THEN PERFORM set_config('t.ro', 'refused', true); END $$",
        )
        .unwrap();
        assert_eq!(num("SELECT current_setting('t.ro', true)").as_deref(), Some("refused"));
    }

    #[pg_test]
    fn bad_prices_rejected() {
        for bad in ["-1", "1000000", "0.00000000001"] {
            let r = Spi::run(&format!(
                "DO $$ BEGIN INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'bad', {bad});
                   EXCEPTION WHEN check_violation THEN PERFORM set_config('t.bad', 'refused', true); END $$"
            ));
            assert!(r.is_ok());
            assert_eq!(num("SELECT current_setting('t.bad', true)").as_deref(), Some("refused"), "{bad}");
            Spi::run("SELECT set_config('t.bad', '', true)").unwrap();
        }
    }

    #[pg_test]
    fn aliases_resolve_and_invalidate_within_transaction() {
        assert_eq!(num("SELECT llm_cost.resolve_model('house-llm')"), None);
        Spi::run("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('house-llm', 'gpt-4o')").unwrap();
        assert_eq!(num("SELECT llm_cost.resolve_model('House-LLM')").as_deref(), Some("gpt-4o"));
        assert_eq!(num("SELECT llm_cost.estimate_cost('house-llm', 1000000, 0)::text").as_deref(), Some("2.5"));
    }

    #[pg_test]
    fn resolution_spellings() {
        let cases = [
            ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
            ("CLAUDE-SONNET-4-5", "claude-sonnet-4-5-20250929"),
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
            ("openrouter/anthropic/claude-sonnet-4.5", "claude-sonnet-4-5-20250929"),
            ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
            ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5-20250929"),
            ("openai/gpt-4o-2024-08-06", "gpt-4o"),
            ("google/gemini-2.5-flash", "gemini-2.5-flash"),
            ("deepseek-chat", "deepseek-chat"),
        ];
        for (name, want) in cases {
            assert_eq!(num(&format!("SELECT llm_cost.resolve_model('{name}')")).as_deref(), Some(want), "{name}");
        }
        assert_eq!(num("SELECT llm_cost.provider_of('us.anthropic.claude-sonnet-4-5-20250929-v1:0')").as_deref(), Some("anthropic"));
        assert_eq!(num("SELECT llm_cost.provider_of('gemini-2.5-pro')").as_deref(), Some("google"));
        assert_eq!(num("SELECT llm_cost.provider_of('zzz')"), None);
    }

    #[pg_test]
    fn format_cost_sql() {
        assert_eq!(num("SELECT llm_cost.format_cost(0)").as_deref(), Some("$0.00"));
        assert_eq!(num("SELECT llm_cost.format_cost(0.0012345)").as_deref(), Some("$0.0012"));
        assert_eq!(num("SELECT llm_cost.format_cost(0.45)").as_deref(), Some("$0.45"));
        assert_eq!(num("SELECT llm_cost.format_cost(1234.567)").as_deref(), Some("$1,234.57"));
        assert_eq!(num("SELECT llm_cost.format_cost(NULL)"), None);
    }

    #[pg_test]
    fn explain_cost_parts() {
        let j = Spi::get_one::<pgrx::JsonB>("SELECT llm_cost.explain_cost('anthropic/claude-sonnet-4-5', 1000, 500, 20000, 4000)")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(j["resolved_model"], "claude-sonnet-4-5-20250929");
        assert_eq!(j["price_row"]["id"], 3);
        assert_eq!(j["parts_usd"]["input"].to_string(), "0.003");
        assert_eq!(j["parts_usd"]["cache_write"].to_string(), "0.015");
        assert_eq!(j["cost_usd"].to_string(), "0.0315");
        let u = Spi::get_one::<pgrx::JsonB>("SELECT llm_cost.explain_cost('nope', 1, 1)").unwrap().unwrap().0;
        assert!(u["cost_usd"].is_null());
    }

    #[pg_test]
    fn catalog_matches_reference_prices() {
        // Every published reference price (tests/data/reference-prices.csv) is in the catalog.
        let csv = include_str!("../tests/data/reference-prices.csv");
        let mut checked = 0;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (provider, model, input, output, min) = (f[0], f[1], f[3], f[4], f[8]);
            let output = if output.is_empty() { "0" } else { output };
            let cache = |v: &str| if v.is_empty() { "NULL".to_string() } else { v.to_string() };
            let q = format!(
                "SELECT count(*) FROM llm_cost.model_prices WHERE origin = 'llm_cost' AND provider = '{provider}' AND model = '{model}'
                   AND min_input_tokens = {min} AND input_usd_per_mtok = {input} AND output_usd_per_mtok = {output}
                   AND cache_read_usd_per_mtok IS NOT DISTINCT FROM {}::numeric
                   AND cache_write_5m_usd_per_mtok IS NOT DISTINCT FROM {}::numeric
                   AND cache_write_1h_usd_per_mtok IS NOT DISTINCT FROM {}::numeric AND source_url <> ''",
                cache(f[5]), cache(f[6]), cache(f[7])
            );
            assert_eq!(Spi::get_one::<i64>(&q).unwrap(), Some(1), "{line}");
            checked += 1;
        }
        assert_eq!(checked, 46);
        let models = Spi::get_one::<i64>("SELECT count(DISTINCT (provider, model)) FROM llm_cost.model_prices").unwrap().unwrap();
        assert!(models >= 45, "{models}");
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
