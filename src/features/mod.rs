//! Features: the SQL objects llm_cost offers, built on `pg` (plumbing) and `llm_cost_core`.
//! Imports point down, never in a circle (`scripts/check_layers.py`): `copy` (COPY FROM) uses
//! `pricing` (how a row is priced: the catalog, the cost trigger, the SQL functions), which uses
//! `rollups` (how a rollup is written); `budgets` reads rollups' tables of sums. What must reach
//! up is registered by `lib.rs`: rollups learn which groups budgets watch and how to estimate a
//! row, the cost trigger learns whom to hand its rows in COPY. `backfill` uses `pricing`
//! (it prices old rows as inserts). `anomalies`, `maintenance`, `retention`, `registry` and
//! `security` stand alone (`anomalies` runs the anomaly report through SQL).

pub mod anomalies;
pub mod backfill;
pub mod budgets;
pub mod copy;
pub mod maintenance;
pub mod pricing;
pub mod registry;
pub mod retention;
pub mod rollups;
pub mod security;
