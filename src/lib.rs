//! llm_cost: an exact, self-maintaining ledger of what LLM calls cost, inside PostgreSQL.
//!
//! Three layers, imports pointing down only (docs/design.md; `scripts/check_layers.py` fails on
//! an upward import or a circle): the crate `llm_cost_core` (plain Rust, no pgrx: pricing, model
//! resolution, usage objects, the row and budget decisions, numeric) ← `pg` (Postgres plumbing:
//! SQL with a pinned search_path, errors, row access, transaction lifecycle and pending state,
//! relation-change notifications, money, privileges) ← `features` (pricing: the catalog, the cost
//! trigger and the SQL functions; rollups; COPY; budgets; retention; registry; security) ← this
//! file, which only wires them: start-up and the order of the SQL.

#![allow(long_running_const_eval)] // the shipped price list is a large SQL file embedded at compile time

use pgrx::prelude::*;

pub mod features;
pub mod pg;
#[cfg(any(test, feature = "pg_test"))]
pub mod test_support;

#[allow(unused_imports)] // named in the SQL ordering below
use features::pricing::usage;
#[allow(unused_imports)] // named in the SQL ordering below
use features::{anomalies, budgets, registry, retention, rollups, security};

::pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    usage::init_gucs();
    features::pricing::catalog::init_gucs();
    retention::init_gucs();
    // The transaction's lifecycle: rollup sums are written before the unknown models are recorded.
    // Budgets look at the groups whose sums were written, before the unknown models are recorded.
    pg::lifecycle::join(&rollups::LIFECYCLE);
    pg::lifecycle::join(&budgets::LIFECYCLE);
    pg::lifecycle::join(&usage::LIFECYCLE);
    // A writer of the price catalog publishes the version it commits, last.
    pg::lifecycle::join(&features::pricing::catalog::LIFECYCLE);
    // What was sent to Citus workers of the principal is forgotten with the transaction.
    pg::lifecycle::join(&security::LIFECYCLE);
    rollups::watch_written(budgets::watches);
    // Rollups tell a default cost from a free call with the catalog's estimate.
    rollups::estimate_with(features::pricing::catalog::estimate_by_name);
    // A relation changed: the price catalog, the cost trigger's mappings and the rollup
    // definitions go stale.
    pg::relcache::on_relation_change(features::pricing::catalog::relation_changed);
    pg::relcache::on_relation_change(usage::forget_table);
    pg::relcache::on_relation_change(budgets::forget);
    // The cost trigger hands each row it priced on INSERT to the COPY fast path.
    usage::after_insert_priced(features::copy::fast_path);
    #[cfg(llm_cost_copy_shim)]
    features::copy::batched::install_hooks();
    // The principal reaches the Citus workers of a transaction block.
    security::install_hooks();
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        retention::PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
        // One price catalog per server (per catalog version), in shared memory.
        pg::shared::init();
        retention::register_launcher();
    }
}

extension_sql_file!("../sql/catalog.sql", name = "catalog_tables", bootstrap);
extension_sql_file!(
    "../sql/prices.sql",
    name = "shipped_prices",
    requires = ["catalog_tables"]
);
extension_sql_file!(
    "../sql/catalog_protect.sql",
    name = "catalog_protect",
    requires = ["shipped_prices"]
);
extension_sql!(
    r#"
CREATE TRIGGER model_prices_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost.catalog_changed();
CREATE TRIGGER model_aliases_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.model_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost.catalog_changed();
CREATE TRIGGER providers_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON llm_cost.providers
    FOR EACH STATEMENT EXECUTE FUNCTION llm_cost.catalog_changed();
"#,
    name = "catalog_invalidation",
    requires = [
        "catalog_protect",
        features::pricing::catalog::catalog_changed
    ]
);
extension_sql_file!(
    "../sql/estimate.sql",
    name = "estimate",
    requires = ["catalog_invalidation"]
);
extension_sql_file!(
    "../sql/import.sql",
    name = "import",
    requires = [
        "estimate",
        features::pricing::sql::provider_id,
        features::pricing::sql::_price_document
    ]
);
extension_sql_file!(
    "../sql/usage_objects.sql",
    name = "usage_objects",
    requires = ["import", features::pricing::sql::_usage_tokens]
);
extension_sql_file!(
    "../sql/citus.sql",
    name = "citus",
    requires = ["usage_objects"]
);
extension_sql_file!(
    "../sql/usage.sql",
    name = "usage",
    requires = [
        "citus",
        rollups::stripe,
        features::pricing::usage::usage_cost_trigger,
        features::pricing::usage::usage_statement_end,
        features::pricing::sql::resolve_model,
        features::pricing::sql::provider_of,
        registry::_registry_put,
        registry::_registry_delete
    ]
);
extension_sql_file!(
    "../sql/rollups.sql",
    name = "rollups",
    requires = [
        "usage",
        rollups::stripe,
        rollups::rollup_row_trigger,
        rollups::stripes::stripes_layout,
        rollups::stripes::sums_layout,
        rollups::is_unpriced,
        rollups::cost_stored,
        rollups::hist::hist_add,
        rollups::hist::hist_of,
        features::pricing::sql::cache_savings,
        features::pricing::sql::cache_write_extra
    ]
);
extension_sql_file!(
    "../sql/backfill.sql",
    name = "backfill",
    requires = [
        "rollups",
        features::backfill::_backfill_step,
        features::maintenance::_as_table_owner
    ]
);
extension_sql_file!(
    "../sql/reports.sql",
    name = "reports",
    requires = ["backfill"]
);
extension_sql_file!(
    "../sql/retention.sql",
    name = "retention",
    requires = ["reports"]
);
extension_sql_file!(
    "../sql/security.sql",
    name = "security",
    requires = ["retention", security::current_principal]
);
extension_sql_file!(
    "../sql/budgets.sql",
    name = "budgets",
    requires = [
        "security",
        budgets::_budgets_changed,
        budgets::_budget_write,
        budgets::check_budget
    ]
);
extension_sql_file!(
    "../sql/anomalies.sql",
    name = "anomalies",
    requires = [
        "budgets",
        anomalies::_anomaly_write,
        anomalies::_anomaly_sweep
    ]
);
extension_sql!(
    r#"
DO $$
BEGIN
    IF NOT llm_cost._preloaded() THEN
        RAISE NOTICE 'llm_cost is not in shared_preload_libraries: everything works, but old usage rows are purged only when you call llm_cost.run_retention()'
              USING HINT = 'Add llm_cost to shared_preload_libraries and restart to have the background worker purge them.';
    END IF;
END $$;
-- On a Citus coordinator with workers: the price catalog on every node (sql/citus.sql).
SELECT llm_cost.citus_setup();
"#,
    name = "preload_notice",
    requires = ["anomalies"],
    finalize
);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
