//! Features: the SQL objects llm_cost offers, built on `pg` (plumbing) and `core`. Imports point
//! down this list, never up: `copy` (COPY FROM path) uses `usage` (the cost trigger), which uses
//! `rollups` (which writes through `stripes`); `maintenance` (reprice and rebuild as the table's
//! owner), `retention`, `registry`, `security` and `pricing_sql` stand alone.

pub mod maintenance;
pub mod pricing_sql;
pub mod registry;
pub mod retention;
pub mod rollups;
pub mod security;
pub mod stripes;
pub mod usage;
#[cfg(llm_cost_copy_shim)]
pub mod copy;
